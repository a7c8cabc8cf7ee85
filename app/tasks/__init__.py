"""Task records and their state machine; the store keeps them (app/store/: MongoDB's `processes`
collection, or the SQLite file's `tasks` table).

    pending ──claim──► processing ──► completed | failed | cancelled
       │                   ├── lease runs out ──► claimable again (attempts + 1; after MAX_ATTEMPTS: failed;
       │                   │                      cancel requested: cancelled)
       │                   └── clean stop ──► pending (the attempt does not count; cancel requested: cancelled)
       └── cancel ──► cancelled                (a processing task is cancelled at its next batch)

A worker owns a task while its lease lasts; a thread of the worker renews it on a timer, whatever one write
takes, until the job makes no progress for STALL_SECONDS (app/worker/lease.py). Every write a worker makes
to its task (progress, renewal, outcome) carries the same owner check (`_mine`); one that finds the task no
longer its own raises LostTask, so two workers never write progress for one task. Movie
tasks keep a `checkpoint` (the line after the last batch written, and the counters at that point): a
retake goes on from there instead of from the start. Plays tasks keep their totals in memory and start over.
"""

from __future__ import annotations

from typing import Unpack

from app.store import of
from app.store.tasks import (  # noqa: F401  (the names callers know the task vocabulary by)
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    NO_PROGRESS,
    PENDING,
    PROCESSING,
    PROGRESS_FIELDS,
    STATUSES,
    SUMMARY_FIELDS,
    Cancelled,
    KindFields,
    LostTask,
    Owner,
    Task,
    now,
)


def create(
    store,
    *,
    task_id: str,
    kind: str,
    filename: str,
    path: str,
    size: int,
    owner: Owner | None = None,
    **extra: Unpack[KindFields],
) -> Task:
    """A pending task; `owner` ({key_id, name} of the API key that uploaded it) decides who may see it."""
    t = now()
    doc: Task = {
        "task_id": task_id,
        "kind": kind,
        "status": PENDING,
        "owner": owner,
        "filename": filename,
        "path": path,
        "size": size,
        "bytes_total": size,
        "created_at": t,
        "updated_at": t,
        "attempts": 0,
        **NO_PROGRESS,
        "warnings": {},
        "rejects": [],
        **extra,
    }
    of(store).tasks.insert(doc)
    return doc


# Each step of the machine, as the store behind `store` implements it (app/store/interface.py: Tasks). `store` is a
# Store, or a pymongo Database (taken as its MongoStore: tests and tools hand one in).
def get(store, task_id: str) -> Task | None:
    return of(store).tasks.get(task_id)


def claim(store, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None) -> Task | None:
    return of(store).tasks.claim(worker_id, lease_seconds, max_attempts, task_id)


def settle_abandoned(store, max_attempts: int) -> list[Task]:
    return of(store).tasks.settle_abandoned(max_attempts)


def request_cancel(store, task_id: str) -> Task | None:
    return of(store).tasks.request_cancel(task_id)


def expire_results(store, ttl_hours: int) -> list[Task]:
    return of(store).tasks.expire_results(ttl_hours)


def update(store, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None:
    of(store).tasks.update(task_id, worker_id, lease_seconds, **fields)


def renew(store, task_id: str, worker_id: str, lease_seconds: float) -> None:
    of(store).tasks.renew(task_id, worker_id, lease_seconds)


def give_up(store, task_id: str, worker_id: str) -> bool:
    return of(store).tasks.give_up(task_id, worker_id)


def finish(store, task_id: str, worker_id: str, status: str, **fields) -> None:
    of(store).tasks.finish(task_id, worker_id, status, **fields)


def release(store, task_id: str, worker_id: str) -> None:
    of(store).tasks.release(task_id, worker_id)


def page(
    store, page_number: int, limit: int, owner_key_id: str | None = None, status: str | None = None
) -> tuple[list[Task], int]:
    return of(store).tasks.page(page_number, limit, owner_key_id, status)


def count_active(store, owner_key_id: str, limit: int) -> int:
    return of(store).tasks.count_active(owner_key_id, limit)


def with_status(store, task_ids: list[str], statuses: tuple[str, ...]) -> set[str]:
    return of(store).tasks.with_status(task_ids, statuses)
