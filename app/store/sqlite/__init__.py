"""The embedded store: movies, tasks, keys and workers in one SQLite file (the standard library's sqlite3).

Every process (the API, the broker's neighbours, each worker) opens the file itself; each thread has its own
connection. WAL lets readers go on while one writer writes; writers take turns (`BEGIN IMMEDIATE`), each
waiting up to `busy_ms` for the file before giving up with `Unavailable`, which callers retry like an
unreachable server. docs/architecture.md says what that bounds.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from app.store.errors import Unavailable

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4D436174  # "MCat": PRAGMA application_id marks the file as this service's
SCHEMA_VERSION = 1  # PRAGMA user_version; a file of a later version is refused, not guessed at
FILE_NAME = "service.sqlite3"
# Bytes kept on the file's disk, in `<file>.reserve`, and given up when the disk fills: room for the writes that
# record why the task failed, its heartbeats and leases. Made again at the next start.
RESERVE_BYTES = 8 << 20
EPOCH = datetime(1970, 1, 1)


class ForeignFile(Exception):
    """The file at the data path is not this service's store (or cannot be read): the start stops, naming it."""


def path_in(folder: str) -> str:
    return os.path.join(folder, FILE_NAME)


def ms(value: datetime | None) -> int | None:
    """A naive UTC datetime (as app.tasks.now gives) as milliseconds since the epoch: how times sort in SQL."""
    if value is None:
        return None
    # Integer arithmetic, floored as BSON truncates: total_seconds() * 1000 is a float, one in 160 off by one.
    return (value - EPOCH) // timedelta(milliseconds=1)


class SqliteStore:
    name = "sqlite"
    is_store = True

    def __init__(self, path: str, busy_ms: int = 30_000):
        self.path, self.busy_ms = path, busy_ms
        self._local = threading.local()
        from app.store.sqlite import keys, movies, tasks, workers  # each concern keeps its own SQL

        self.movies = movies.Movies(self)
        self.tasks = tasks.Tasks(self)
        self.keys = keys.Keys(self)
        self.workers = workers.Workers(self)
        self._schemas = (movies.SCHEMA, tasks.SCHEMA, keys.SCHEMA, workers.SCHEMA)

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # a forked child opens its own
            conn = self._local.conn = self._open()
            self._local.pid = os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
            conn.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; WAL keeps the file whole
        except sqlite3.DatabaseError as e:
            raise ForeignFile(f"{self.path}: not a SQLite file this service can use ({e})") from e
        return conn

    def setup(self) -> None:
        """Check the file is ours (or new), then create the tables and indexes that are missing."""
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        conn = self.conn
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise ForeignFile(f"{self.path}: not a SQLite file this service can use ({e})") from e
        if tables and app_id != APPLICATION_ID:
            raise ForeignFile(
                f"{self.path}: a SQLite file of something else (application_id {app_id}), not this service's"
            )
        if version > SCHEMA_VERSION:
            raise ForeignFile(
                f"{self.path}: made by a newer version of the service (schema {version} > {SCHEMA_VERSION})"
            )
        with self.transaction() as c:
            for schema in self._schemas:
                for statement in schema.split(";"):
                    if statement.strip():
                        c.execute(statement)
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._keep_reserve()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the file's writer lock is taken at the start, so what is read inside is what
        the writes apply to (claims, leases, counts). A file busy past `busy_ms` raises Unavailable."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _translated(e) from e
        try:
            yield conn
        except BaseException as e:
            _rollback(conn)
            self._if_full(e)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            _rollback(conn)
            self._if_full(e)
            raise _translated(e) from e

    def _if_full(self, error: BaseException) -> None:
        """The disk is full: give up the reserve, so that the failure can still be recorded."""
        if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
            try:
                os.remove(self.path + ".reserve")
                log.error("the disk of %s is full: its %d MB reserve is given up", self.path, RESERVE_BYTES >> 20)
            except FileNotFoundError:
                pass

    def _keep_reserve(self) -> None:
        path = self.path + ".reserve"
        try:
            if os.path.getsize(path) >= RESERVE_BYTES:
                return
        except OSError:
            pass
        try:
            with open(path, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError as e:
            log.warning("could not keep %d MB free beside %s: %s", RESERVE_BYTES >> 20, self.path, e)
            try:
                os.remove(path)
            except OSError:
                pass

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read: one consistent snapshot of the file (WAL), never waiting for a writer."""
        conn = self.conn
        try:
            yield conn
        except sqlite3.OperationalError as e:
            raise _translated(e) from e

    def ping(self) -> bool:
        try:
            self.conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error as e:
            log.warning("SQLite store %s does not answer: %s", self.path, e)
            return False

    def warning(self, write_ops: int) -> str | None:
        return None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo the transaction, if SQLite has not already: on a full disk (SQLITE_FULL) and some I/O errors it rolls
    back by itself, and a ROLLBACK then would fail and hide the error that matters."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            log.warning("rollback failed: %s", e)


def _translated(error: sqlite3.OperationalError) -> Exception:
    """A busy or locked file is a wait that ran out, not a failure of the task: Unavailable, retried."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return Unavailable(f"the store's file is busy: {text}")
    return error
