"""The `moviecat upload` client's memory and speed on a large file, against the real server (`python run.py`).

    python bench/cli_upload.py --size-mb 1024
    python bench/cli_upload.py --input big.csv

The service runs embedded (SQLite store, in-process cache) with WORKERS=0, so the tasks stay pending and
ingest does not share the cores with the upload. The command runs as a user runs it, in a process of its
own with its output to a pipe (no bar), once with the large file and once with the 10-row sample: its peak
resident memory (VmHWM, sampled every 20 ms) should be the same for both, as it streams the file from disk
in 64 KiB reads. Then curl sends the large file the same way (multipart, `-F`), as the speed to compare
with; the machine's other load weighs on both alike. Each upload's stored size is checked against the
file's. MB is 10^6 bytes. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._measure import rss_mb, warm
from bench._server import MB, serve, server_env
from moviecat.generate import generate_movies

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "movies_data_assignment.head10.csv"


def upload(server, path: Path) -> dict:
    """`python -m moviecat upload PATH` in a child: its seconds, peak RSS (MiB) and the stored task."""
    env = {**os.environ, "MOVIECAT_URL": server.base_url, "MOVIECAT_KEY": server.key, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "moviecat", "upload", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0.0]

    def sample() -> None:
        while child.poll() is None:
            try:
                peak[0] = max(peak[0], rss_mb("VmHWM", child.pid))
            except (OSError, RuntimeError):  # it just exited
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    seconds = time.monotonic() - started
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"moviecat upload failed ({child.returncode}): {err.strip()}")
    task_id = out.strip()
    status, _, body = server.request("GET", f"/api/v1/process/{task_id}")
    task = json.loads(body)
    return {"seconds": seconds, "peak_rss_mb": peak[0], "stored": task["size"], "status": task["status"]}


def curl(server, path: Path) -> dict:
    """The same upload with `curl -F`: its seconds and the stored task's size."""
    started = time.monotonic()
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-H",
            f"Authorization: Bearer {server.key}",
            "-F",
            f"file=@{path}",
            f"{server.base_url}/api/v1/upload",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.monotonic() - started
    status, _, body = server.request("GET", f"/api/v1/process/{json.loads(out)['task_id']}")
    return {"seconds": seconds, "stored": json.loads(body)["size"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB; default 1024)")
    parser.add_argument("--input", help="upload this CSV instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-upload-") as tmp:
        workdir = Path(tmp)
        path = Path(args.input) if args.input else workdir / "movies.csv"
        if not args.input:
            generate_movies(str(path), size_mb=args.size_mb, seed=1)
        size = path.stat().st_size
        warm(path)
        env = server_env(workdir, WORKERS="0", MAX_UPLOAD_MB=str(size // (1 << 20) + 16))
        with serve("run.py", env, workdir / "server.log") as server:
            small = upload(server, SAMPLE)
            large = upload(server, path)
            baseline = curl(server, path)
    checks = (("sample", small, SAMPLE.stat().st_size), ("large", large, size), ("curl", baseline, size))
    for name, run, file_size in checks:
        assert run["stored"] == file_size, f"{name}: stored {run['stored']} of {file_size} bytes"
    print(f"file: {size / MB:,.1f} MB ({path.name}); the sample: {SAMPLE.stat().st_size:,} bytes")
    print(
        f"moviecat upload, large: {large['seconds']:.1f} s, {size / MB / large['seconds']:.1f} MB/s, "
        f"client peak RSS {large['peak_rss_mb']:.1f} MiB; stored {large['stored']:,} bytes ({large['status']})"
    )
    print(f"moviecat upload, sample: {small['seconds']:.1f} s, client peak RSS {small['peak_rss_mb']:.1f} MiB")
    ratio = baseline["seconds"] / large["seconds"]
    curl_rate = size / MB / baseline["seconds"]
    print(f"curl -F, large: {baseline['seconds']:.1f} s, {curl_rate:.1f} MB/s; moviecat: {ratio:.2f}x its speed")
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    print(f"the large file's upload took {growth:+.1f} MiB more client memory than the sample's")
    figures = {"bytes": size, "large": large, "sample": small, "curl": baseline, "growth_mb": round(growth, 1)}
    print(json.dumps(figures | {"speed_vs_curl": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
