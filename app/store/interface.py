"""What the service asks of a store, by concern: movies, tasks, keys, workers.

Two implementations: app/store/mongo/ (pymongo: MongoDB in production, FerretDB in the tests, mongomock as a fast
test double) and app/store/sqlite/ (the standard library's sqlite3: the embedded default, one file). Routes, jobs
and workers reach a store only through these methods (`store.tasks.claim(...)`), never through a driver.

Records go in and come out as the dicts MongoDB would return: datetimes naive UTC at millisecond precision
(app.tasks.now), `_id` first, every field the writer set. Both implementations must give the same answers for the
same calls; tests/test_store_contract.py runs each test on every implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from bson.raw_bson import RawBSONDocument

from app.store.tasks import Task


class Movies(Protocol):
    # What the ingest prepares for write(), in its helper process (app/jobs/movies/prepare.py): "bson" (the default
    # when a store does not say) or "sqlite", the SQLite table's rows (app/jobs/movies/rows.py).
    form: str

    def write(
        self, documents: list[RawBSONDocument], chunk: int = 0, absent: tuple[str, ...] = (), ids: list | None = None
    ) -> tuple[int, int]:
        """Store a batch of movies (each its BSON, `_id` first, or a row in the store's `form`); returns (inserted,
        updated), per document given.

        A movie repeated in `documents` is stored as its last occurrence (the earlier ones count as updated). A
        movie already stored counts as updated, and is written again only if it differs: replaced whole, or,
        when the file lacks the fields `absent`, given only the fields it has (MongoDB's `$set`). Replaying the
        same batch changes nothing. `chunk`: writes per command, for servers that need it (0: no limit).
        """
        ...

    def page(
        self, year: int | None, language: str | None, sort_by: str, order: int, skip: int, limit: int
    ) -> tuple[AbstractContextManager[Iterator[dict]], int]:
        """The movies matching the filters in the API's order (app/store/movies.py), from `skip` on, at most
        `limit`, as documents; and how many match in all. The iterator is read inside `with`."""
        ...

    def count(self) -> int: ...

    def loading(self, rows: int) -> AbstractContextManager[None]:
        """A load of about `rows` movies is about to be written through write(): the store may prepare for it
        (the SQLite store drops its page indexes and builds them again at the end). When the context exits,
        normally or by an exception, the catalogue is whole, indexed and answering as before; inside it, pages
        still answer, maybe slower."""
        ...


class Tasks(Protocol):
    """The task records and their state machine (app/tasks/__init__.py says what each step means)."""

    def insert(self, doc: Task) -> None: ...
    def get(self, task_id: str) -> Task | None: ...
    def claim(
        self, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None
    ) -> Task | None: ...
    def settle_abandoned(self, max_attempts: int) -> list[Task]: ...
    def request_cancel(self, task_id: str) -> Task | None: ...
    def expire_results(self, ttl_hours: int) -> list[Task]: ...
    def update(self, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None: ...
    def renew(self, task_id: str, worker_id: str, lease_seconds: float) -> None: ...
    def give_up(self, task_id: str, worker_id: str) -> bool: ...
    def finish(self, task_id: str, worker_id: str, status: str, **fields) -> None: ...
    def release(self, task_id: str, worker_id: str) -> None: ...
    def page(
        self, page_number: int, limit: int, owner_key_id: str | None = None, status: str | None = None
    ) -> tuple[list[Task], int]:
        """One page of tasks, newest first (`created_at`, then `_id`, descending), and how many match."""
        ...

    def count_active(self, owner_key_id: str, limit: int) -> int:
        """How many of the key's tasks are pending or processing, counting up to `limit` at most."""
        ...

    def with_status(self, task_ids: list[str], statuses: tuple[str, ...]) -> set[str]:
        """Which of `task_ids` have one of `statuses`."""
        ...


class Keys(Protocol):
    """API keys' records: {_id, name, role, hash, prefix, created_at, last_used_at, revoked_at} (app/api/keys.py)."""

    def insert(self, doc: dict) -> None: ...
    def get(self, key_id: str) -> dict | None:
        """The record, revoked or not."""
        ...

    def touch(self, key_id: str, at: datetime) -> None: ...
    def listing(self) -> list[dict]:
        """Every key, oldest first (`created_at`, then `_id`)."""
        ...

    def revoke(self, key_id: str, at: datetime) -> None:
        """Set `revoked_at` if it is not set yet."""
        ...

    def any_live(self) -> bool: ...


class Workers(Protocol):
    """Each worker's heartbeat: {_id: worker_id, host, pid, beat_at, task_id}."""

    def beat(self, worker_id: str, host: str, pid: int, at: datetime, task_id: str | None) -> None: ...
    def forget(self, worker_id: str) -> None: ...
    def alive(self, since: datetime) -> int:
        """Workers whose last beat is after `since`."""
        ...


class Store(Protocol):
    # Read-only, so that each implementation's own classes satisfy them (an attribute a caller could assign
    # would have to be of these very types).
    @property
    def name(self) -> str: ...  # "mongodb" or "sqlite": for logs, health and docs
    @property
    def movies(self) -> Movies: ...
    @property
    def tasks(self) -> Tasks: ...
    @property
    def keys(self) -> Keys: ...
    @property
    def workers(self) -> Workers: ...

    def setup(self) -> None:
        """Create what the store needs (tables, indexes); idempotent, run at every start."""
        ...

    def ping(self) -> bool:
        """Whether the store answers now (the health check)."""
        ...

    def warning(self, write_ops: int) -> str | None:
        """A warning about the server the settings do not suit (FerretDB's limits), or None."""
        ...
