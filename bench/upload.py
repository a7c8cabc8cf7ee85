"""Upload a large movie file to the production server (`python run.py`) and measure it.

    python bench/upload.py --size-mb 1024

Starts the server (embedded stand-ins, no in-process worker so ingest does not blur the figures),
uploads the file with curl as multipart (-F) and as a raw text/csv body (-T, which streams from
disk where --data-binary would read the whole file into curl first), and prints
MB/s and the API process's memory growth during each upload; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.tools.generate import generate_movies  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.02)


def measure(pid: int, command: list[str], size: int) -> dict:
    before = tree_rss(pid)
    sampler = Sampler(pid)
    sampler.start()
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    body = json.loads(out)
    assert "task_id" in body, body
    return {"seconds": round(elapsed, 2), "mb_s": round(size / 1e6 / elapsed, 1),
            "rss_before_mb": round(before / 1e6, 1), "rss_growth_mb": round((sampler.peak - before) / 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB)")
    parser.add_argument("--file", help="upload this file instead of generating one")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    path = Path(args.file) if args.file else workdir / "movies.csv"
    if not args.file:
        generate_movies(str(path), size_mb=args.size_mb, seed=1)
    size = path.stat().st_size
    port = free_port()
    env = {**os.environ, "MONGO_URI": "", "REDIS_URL": ""}  # embedded, whatever a .env says
    env.update(PORT=str(port), ZMQ_PORT=str(free_port()), ZMQ_INTAKE_PORT=str(free_port()),
               UPLOAD_FOLDER=str(workdir / "uploads"), EMBEDDED_WORKERS="0", LOG_LEVEL="WARNING",
               MAX_UPLOAD_MB=str(int(size / (1 << 20)) + 16))
    server = subprocess.Popen([sys.executable, "run.py"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/v1/upload"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        results = {
            "multipart": measure(server.pid, ["curl", "-sS", "-F", f"file=@{path}", url], size),
            "raw": measure(server.pid, ["curl", "-sS", "-X", "POST", "-T", str(path), "-H", "Content-Type: text/csv",
                                        f"{url}?filename=movies.csv"], size),
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
        for f in (workdir / "uploads").glob("*"):
            f.unlink()
        if not args.file:
            path.unlink()

    print(f"file: {size / 1e6:.0f} MB")
    for name, r in results.items():
        print(f"{name:>9}: {r['seconds']:>6.2f} s  {r['mb_s']:>7.1f} MB/s  API memory {r['rss_before_mb']:.0f} MB "
              f"→ +{r['rss_growth_mb']:.1f} MB during the upload")
    print(json.dumps({
        "file_mb": round(size / 1e6, 1),
        "multipart_mb_s": results["multipart"]["mb_s"], "raw_mb_s": results["raw"]["mb_s"],
        "multipart_rss_growth_mb": results["multipart"]["rss_growth_mb"],
        "raw_rss_growth_mb": results["raw"]["rss_growth_mb"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
