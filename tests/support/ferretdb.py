"""FerretDB, a real MongoDB-compatible server, for the tests: a process on a free port, SQLite underneath, or
PostgreSQL when given a `postgresql_url` (a throwaway cluster from tests/support/postgres.py).

`scripts/test-services.sh` builds the binary into `.services/bin/ferretdb` (FERRETDB_BIN overrides it).
A server keeps its data in `data_dir`: stopped or killed, it can be started again on the same folder, as
the fault tests do. Telemetry is off (it would try to reach the internet); the debug listener takes a free
port and the state folder sits beside the data, so several servers can run at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from app.store.mongo import FERRETDB_WRITE_OPS
from tests.support import REPO, free_port

BINARY = Path(os.environ.get("FERRETDB_BIN", REPO / ".services" / "bin" / "ferretdb"))
BUILD_HINT = "bash scripts/test-services.sh"
# What the service needs to run on FerretDB 1.24: its update handler holds one of 100 pooled backend
# connections per matched upsert until the command ends, so big bulk writes of existing movies hang it.
SERVICE_SETTINGS = {"MONGO_WRITE_OPS": str(FERRETDB_WRITE_OPS)}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process that started it dies (a killed pytest
    would otherwise leave its servers running)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def available() -> str | None:
    """None when the binary runs; otherwise why not, with the command that builds it."""
    if not BINARY.exists():
        return f"no FerretDB at {BINARY}; build it with `{BUILD_HINT}`"
    try:
        out = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=10)
    except OSError as e:
        return f"FerretDB at {BINARY} does not run ({e}); rebuild it with `{BUILD_HINT}`"
    if out.returncode != 0:
        return f"FerretDB at {BINARY} does not run ({out.stderr.strip()[:200]}); rebuild it with `{BUILD_HINT}`"
    return None


def version() -> str:
    out = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=10).stdout
    return next((line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("version: ")), "?")


class FerretDB:
    """One FerretDB process; `uri` is where pymongo reaches it. The port stays the same across restarts.
    `backend` says which handler: "sqlite" (its data in `data_dir`) or "postgresql" (its data in the cluster)."""

    def __init__(self, root: Path, port: int | None = None, postgresql_url: str | None = None):
        self.root = Path(root)
        self.postgresql_url = postgresql_url
        self.data_dir = self.root / "data"
        self.state_dir = self.root / "state"
        self.log_path = self.root / "ferretdb.log"
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if self.postgresql_url else "sqlite"

    def command(self) -> list[str]:
        if self.postgresql_url:
            backend = ["--handler=postgresql", f"--postgresql-url={self.postgresql_url}"]
        else:
            backend = ["--handler=sqlite", f"--sqlite-url=file:{self.data_dir}/"]
        return [
            str(BINARY),
            *backend,
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--debug-addr=127.0.0.1:{free_port()}",
            f"--state-dir={self.state_dir}",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def start(self, timeout: float = 30) -> FerretDB:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"FerretDB did not come up on {self.uri}:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, as an operator stops it; SIGKILL if it will not go."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the machine lost, nothing flushed on the way out."""
        self._end(signal.SIGKILL, 10)

    def _end(self, sig: int, timeout: float) -> None:
        if not self.alive():
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> FerretDB:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
