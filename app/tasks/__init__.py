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

from app.store import of
from app.store.tasks import (  # noqa: F401  (the names callers know the task vocabulary by)
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    PENDING,
    PROCESSING,
    PROGRESS_FIELDS,
    STATUSES,
    SUMMARY_FIELDS,
    Cancelled,
    LostTask,
    now,
)


def create(
    store, *, task_id: str, kind: str, filename: str, path: str, size: int, owner: dict | None = None, **extra
) -> dict:
    """A pending task; `owner` ({key_id, name} of the API key that uploaded it) decides who may see it."""
    t = now()
    doc = {
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
        **{name: 0 for name in PROGRESS_FIELDS},
        "warnings": {},
        "rejects": [],
        **extra,
    }
    of(store).tasks.insert(doc)
    return doc


# Each step of the machine, as the store behind `store` implements it (app/store/interface.py: Tasks). `store` is a
# Store, or a pymongo Database (taken as its MongoStore: tests and tools hand one in).
def get(store, *args, **kwargs):
    return of(store).tasks.get(*args, **kwargs)


def claim(store, *args, **kwargs):
    return of(store).tasks.claim(*args, **kwargs)


def settle_abandoned(store, *args, **kwargs):
    return of(store).tasks.settle_abandoned(*args, **kwargs)


def request_cancel(store, *args, **kwargs):
    return of(store).tasks.request_cancel(*args, **kwargs)


def expire_results(store, *args, **kwargs):
    return of(store).tasks.expire_results(*args, **kwargs)


def update(store, *args, **kwargs):
    return of(store).tasks.update(*args, **kwargs)


def renew(store, *args, **kwargs):
    return of(store).tasks.renew(*args, **kwargs)


def give_up(store, *args, **kwargs):
    return of(store).tasks.give_up(*args, **kwargs)


def finish(store, *args, **kwargs):
    return of(store).tasks.finish(*args, **kwargs)


def page(store, *args, **kwargs):
    return of(store).tasks.page(*args, **kwargs)


def release(store, *args, **kwargs):
    return of(store).tasks.release(*args, **kwargs)


def count_active(store, *args, **kwargs):
    return of(store).tasks.count_active(*args, **kwargs)


def with_status(store, *args, **kwargs):
    return of(store).tasks.with_status(*args, **kwargs)
