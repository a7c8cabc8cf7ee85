"""Helpers the benchmarks share: start a server script on free ports, wait for it, measure its memory.

A server is started as `python <script>` from the repository root with the embedded stand-ins
(whatever a `.env` says) and its own temporary folders, ports and log file, then stopped with SIGTERM.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.api import keys
from tests.support import free_port
from tests.support.service import Server as HTTP  # the tests' HTTP helper: one copy of it

REPO = Path(__file__).resolve().parents[1]
MB = 1e6  # rates and sizes are in 10^6 bytes, as in the other benchmarks


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path
    key: str | None = None  # sent as `Authorization: Bearer` with every request

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict, bytes]:
        """One request on a fresh connection, sending the key: (status, headers, body bytes)."""
        return HTTP(self.port, self.key, timeout=60).request(method, path, body, headers, raw=True)


def server_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """run.py's environment: the embedded store and Redis, free ports, folders under `workdir`."""
    env = {**os.environ, "MONGO_URI": "", "REDIS_URL": ""}  # embedded, whatever a .env says
    env.update(
        PORT=str(free_port()),
        ZMQ_PORT=str(free_port()),
        ZMQ_INTAKE_PORT=str(free_port()),
        UPLOAD_FOLDER=str(workdir / "uploads"),
        RESULT_FOLDER=str(workdir / "results"),
        DATA_FOLDER=str(workdir / "data"),
        LOG_LEVEL="WARNING",
        RATE_LIMIT_PER_MINUTE="0",
    )  # a benchmark measures the server, not its limit
    env.update(overrides)
    return env


@contextmanager
def serve(script: str, env: dict[str, str], log_path: Path, timeout: float = 60):
    """Run `python <script>` (relative to the repository) until the block ends; yields a Server."""
    port = int(env["PORT"])
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, script], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, port, log_path)
    try:
        wait_until_serving(server, timeout)
        server.key = keys.printed_secret(log_path.read_text(errors="replace"))  # an embedded start prints one
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_serving(server: Server, timeout: float) -> None:
    """Until an HTTP request gets any answer: gunicorn binds before its worker has loaded the app."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.request("GET", "/")
            return
        except (OSError, http.client.HTTPException):
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up; its log ends:\n{server.log_tail()}") from None
            time.sleep(0.1)


def _tree_sum(pid: int, measure) -> float:
    """measure(process) summed over a process and all its descendants (gunicorn's arbiter and its workers)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += measure(p)
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(pid: int) -> int:
    """Resident bytes of the process tree."""
    return _tree_sum(pid, lambda p: p.memory_info().rss)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process tree has used."""
    return _tree_sum(pid, lambda p: sum(p.cpu_times()[:2]))


class Watch:
    """`with Watch(pid) as w:` samples the process tree's RSS every `interval` s and counts its CPU time;
    then w.before, w.peak, w.growth (bytes) and w.cpu_seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.before = self.peak = 0
        self.cpu_seconds = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Watch:
        self.before = self.peak = tree_rss(self.pid)
        self.cpu_seconds = -tree_cpu(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))
        self.cpu_seconds += tree_cpu(self.pid)

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, tree_rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.before
