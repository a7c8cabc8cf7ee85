"""A throwaway PostgreSQL cluster for the tests and benches: Debian's `postgresql` (15), `initdb` into a
temporary folder, the server on a free loopback port with its unix socket in that folder, stopped and the
folder removed at the end. FerretDB's PostgreSQL handler runs on it (tests/support/ferretdb.py).

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user: its folder is made
under the system temp dir (not pytest's, which is private to root) and handed to that user, and every server
command runs through `runuser`. `scripts/test-services.sh` installs the package (PG_BIN overrides where).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
BUILD_HINT = "bash scripts/test-services.sh (apt-get install postgresql)"
RUN_AS = "postgres"  # the account Debian's package creates; used only when we are root
DATABASE = "ferretdb"


def available() -> str | None:
    """None when initdb, pg_ctl and postgres are there (and, as root, the account to run them); else why not."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"no PostgreSQL at {PG_BIN} ({tool} missing); install it with `{BUILD_HINT}`"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and no `{RUN_AS}` account to run PostgreSQL as; `{BUILD_HINT}` creates it"
    return None


def version() -> str:
    out = subprocess.run([str(PG_BIN / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip().rsplit(" ", 1)[-1] or "?"


class PostgreSQL:
    """One cluster, one server. `url` is what FerretDB's `--postgresql-url` takes (database `ferretdb`).

    `settings` are passed as `-c name=value` at start, e.g. {"fsync": "off"} for tests that never crash the
    machine; the default is PostgreSQL's own (durable) configuration, which is what the bench measures.
    """

    def __init__(self, settings: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.root: Path | None = None
        self.url = f"postgres://{self._user()}@127.0.0.1:{self.port}/{DATABASE}"

    @staticmethod
    def _as_other_user() -> bool:
        return os.geteuid() == 0

    @staticmethod
    def _me() -> str:
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self._as_other_user():
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self._env())

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def start(self, timeout: float = 60) -> PostgreSQL:
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.socket_dir.mkdir()
        if self._as_other_user():
            account = pwd.getpwnam(RUN_AS)
            for path in (self.root, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        try:
            self._init_and_start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _init_and_start(self, timeout: float) -> None:
        # trust: the server listens on loopback and a private socket folder only, for the lifetime of a test.
        out = self._run(PG_BIN / "initdb", "-D", self.data_dir, "-U", self._user(), "--auth=trust", "-E", "UTF8")
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.socket_dir}"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        out = self._run(
            PG_BIN / "pg_ctl", "-D", self.data_dir, "-l", self.log_path, "-o", " ".join(options),
            "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{out.stderr[-1000:]}\n{self.log()}")
        self._create_database(timeout)

    def _user(self) -> str:
        return RUN_AS if self._as_other_user() else self._me()

    def _create_database(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = self._run(PG_BIN / "createdb", "-h", self.socket_dir, "-p", str(self.port), DATABASE)
            if out.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb {DATABASE} failed: {out.stderr[-1000:]}")
            time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """Another database in the cluster (e.g. one per FerretDB run); its URL for `--postgresql-url`."""
        out = self._run(PG_BIN / "createdb", "-h", self.socket_dir, "-p", str(self.port), name)
        if out.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {out.stderr[-1000:]}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def psql(self, sql: str) -> str:
        """One statement through psql on the unix socket; its unaligned output, stripped."""
        out = self._run(PG_BIN / "psql", "-h", self.socket_dir, "-p", str(self.port), "-d", DATABASE, "-XAtc", sql)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr[-1000:]}")
        return out.stdout.strip()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (its first line of postmaster.pid), for measuring it."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        return self.root is not None and self.pid is not None

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions), then the folder is removed."""
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            out = self._run(PG_BIN / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
            if out.returncode != 0 and (pid := self.pid):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except (OSError, TypeError):
            return ""

    def __enter__(self) -> PostgreSQL:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
