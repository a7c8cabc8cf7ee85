"""Upload a large movie file to the production server (`python run.py`) and to the plain Flask way; measure both.

    python bench/upload.py --size-mb 1024
    python bench/upload.py --input big.csv --repeat 5

In one run, with curl over loopback, the same file goes to:
  - the service (run.py: embedded stand-ins; no ingest worker, so ingest does not blur the figures: the
    bench takes the queue's wake-up messages and drops them) as
    multipart (`-F`), as a raw text/csv body streamed from disk (`-T`), and as a raw body with
    `--data-binary @file` (curl reads the whole file into its own memory first, then sends it; curl
    refuses files of 1 GiB or more that way, so a 1024 MiB run skips it: `-T` sends the same request);
  - the baseline, bench/plain_flask.py: a Flask view doing `request.files['file'].save(path)`, served by
    run.py's own gunicorn settings (gthread, same threads), as multipart (`-F`).
Both servers run side by side and the uploads take turns, --repeat rounds of each, so a machine busy with
something else weighs on all of them alike. Each upload reports MB/s, the server's CPU time, and its
resident memory (its whole process tree, sampled every 20 ms) before and at its peak. Shown per kind:
the fastest round's time, rate and CPU; the largest peak and growth of all rounds. Written data is
flushed (`sync`) and removed between uploads. Temporary files, the baseline's spooled upload included,
go to TMPDIR. MB is 10^6 bytes. Client and server share the machine's cores. Targets: the service faster
than the baseline, and its memory growth during an upload under 50 MB. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_config
from bench._server import MB, Server, Watch, serve, server_env
from moviecat.generate import generate_movies

GROWTH_TARGET_MB = 50
CURL_DATA_LIMIT = 1 << 30  # curl (7.88) refuses to read a larger file into memory for --data-binary @file
LABELS = {
    "multipart": "service, multipart (-F)",
    "raw": "service, raw body (-T, streamed)",
    "raw_data_binary": "service, raw body (--data-binary)",
    "baseline": "plain Flask, multipart (-F)",
}


@contextmanager
def drained(zmq_port: int):
    """Take the service's wake-up messages and drop them, as an idle worker would take them.

    With no worker connected, a message waiting in the broker makes zmq.proxy spin a core (libzmq polls
    the readable intake again and again while its PUSH side has no peer), which would tax every upload
    after the first, the baseline's included.
    """
    stop = threading.Event()

    def drain():
        with zmq.Context.instance().socket(zmq.PULL) as sock:
            sock.connect(f"tcp://127.0.0.1:{zmq_port}")
            while not stop.is_set():
                if sock.poll(100):
                    sock.recv()

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def upload(server: Server, command: list[str], size: int, expect: str) -> dict:
    """One curl upload to `server`: its time, rate, and the server's CPU time and memory."""
    os.sync()  # the previous upload's dirty pages are not this one's to write
    with Watch(server.proc.pid) as watch:
        start = time.perf_counter()
        done = subprocess.run(["curl", "-sS", "--fail-with-body", *command], capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"upload failed ({done.returncode}): {done.stdout} {done.stderr}\n{server.log_tail()}")
    return {
        "seconds": elapsed,
        "mb_s": size / MB / elapsed,
        "cpu_s": watch.cpu_seconds,
        "rss_before_mb": watch.before / MB,
        "peak_rss_mb": watch.peak / MB,
        "rss_growth_mb": watch.growth / MB,
    }


def uploads(service: Server, baseline: Server, path: Path, size: int) -> dict[str, tuple[Server, list[str], str]]:
    """Each kind of upload: (server, curl arguments, a string its answer holds)."""
    url = f"{service.base_url}/api/v1/upload"
    auth = ["-H", f"Authorization: Bearer {service.key}"]
    raw = [*auth, "-X", "POST", "-H", "Content-Type: text/csv", f"{url}?filename=movies.csv"]
    kinds = {
        "multipart": (service, [*auth, "-F", f"file=@{path}", url], '"task_id"'),
        "raw": (service, ["-T", str(path), *raw], '"task_id"'),
    }
    if size < CURL_DATA_LIMIT:
        kinds["raw_data_binary"] = (service, ["--data-binary", f"@{path}", *raw], '"task_id"')
    kinds["baseline"] = (baseline, ["-F", f"file=@{path}", f"{baseline.base_url}/upload"], '"saved"')
    return kinds


def summarise(runs: list[dict]) -> dict:
    """The fastest round's time, rate and CPU; the largest memory of all rounds."""
    fastest = max(runs, key=lambda r: r["mb_s"])
    hungriest = max(runs, key=lambda r: r["rss_growth_mb"])
    return {
        "seconds": round(fastest["seconds"], 2),
        "mb_s": round(fastest["mb_s"], 1),
        "cpu_s": round(fastest["cpu_s"], 2),
        "rss_before_mb": round(hungriest["rss_before_mb"], 1),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "rss_growth_mb": round(hungriest["rss_growth_mb"], 1),
    }


def measure(path: Path, size: int, workdir: Path, repeat: int) -> dict:
    service_env = server_env(workdir, WORKERS="0", MAX_UPLOAD_MB=str(size // (1 << 20) + 16))
    with ExitStack() as stack:
        service = stack.enter_context(serve("run.py", service_env, workdir / "service.log"))
        stack.enter_context(drained(int(service_env["ZMQ_PORT"])))
        baseline = stack.enter_context(serve("bench/plain_flask.py", server_env(workdir), workdir / "plain.log"))
        kinds = uploads(service, baseline, path, size)
        runs: dict[str, list[dict]] = {name: [] for name in kinds}
        for _ in range(repeat):
            for name, (server, command, expect) in kinds.items():
                runs[name].append(upload(server, command, size, expect))
                for f in (workdir / "uploads").glob("*"):
                    f.unlink()
    return {name: summarise(r) for name, r in runs.items()}


def report(size: int, repeat: int, results: dict) -> dict:
    print(
        f"file: {size / MB:.0f} MB; servers: gunicorn gthread, 1 process x {load_config().WEB_THREADS} threads "
        f"(run.py's settings, embedded mode); client: curl on the same cores; fastest of {repeat} rounds"
    )
    print(f"{'':36} {'time':>7} {'MB/s':>7} {'CPU':>7}   server RSS before -> peak (growth)")
    for name, label in LABELS.items():
        r = results.get(name)
        if r is None:
            print(f"{label:36} skipped: curl reads at most 1 GiB into memory for --data-binary @file")
            continue
        print(
            f"{label:36} {r['seconds']:>5.2f} s {r['mb_s']:>7.1f} {r['cpu_s']:>5.2f} s   "
            f"{r['rss_before_mb']:>6.1f} -> {r['peak_rss_mb']:>6.1f} MB (+{r['rss_growth_mb']:.1f} MB)"
        )
    figures = {"file_mb": round(size / MB, 1)}
    for name, r in results.items():
        figures.update(
            {
                f"{name}_mb_s": r["mb_s"],
                f"{name}_cpu_s": r["cpu_s"],
                f"{name}_peak_rss_mb": r["peak_rss_mb"],
                f"{name}_rss_growth_mb": r["rss_growth_mb"],
            }
        )
    base = results["baseline"]["mb_s"]
    figures["ratio"] = round(results["multipart"]["mb_s"] / base, 2)  # ours / plain Flask, both multipart
    figures["raw_ratio"] = round(results["raw"]["mb_s"] / base, 2)
    growth = max(r["rss_growth_mb"] for name, r in results.items() if name != "baseline")
    print(
        f"speed vs plain Flask: multipart {figures['ratio']:.2f}x, raw {figures['raw_ratio']:.2f}x "
        f"(target > 1: {'met' if min(figures['ratio'], figures['raw_ratio']) > 1 else 'NOT met'}); "
        f"largest memory growth {growth:.1f} MB (target < {GROWTH_TARGET_MB}: "
        f"{'met' if growth < GROWTH_TARGET_MB else 'NOT met'})"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB; default 1024)")
    parser.add_argument("--input", "--file", dest="input", help="upload this CSV instead of generating one")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every kind of upload (default 3)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        path = Path(args.input) if args.input else workdir / "movies.csv"
        if not args.input:
            generate_movies(str(path), size_mb=args.size_mb, seed=1)
        size = path.stat().st_size
        results = measure(path, size, workdir, max(1, args.repeat))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report(size, max(1, args.repeat), results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
