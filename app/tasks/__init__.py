"""Task records and their state machine; MongoDB's `processes` collection is the truth.

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

from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = "pending", "processing", "completed", "failed", "cancelled"
STATUSES = (PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)

PROGRESS_FIELDS = (
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_rejected",
    "bytes_read",
    "percent",
    "rows_per_sec",
)
SUMMARY_FIELDS = ("rows_read", "rows_inserted", "rows_updated", "rows_rejected", "groups", "rows_per_sec")


class LostTask(Exception):
    """The task is no longer this worker's (its lease ran out and another worker took it)."""


class Cancelled(Exception):
    """Someone cancelled the task while this worker was running it."""

    def __init__(self, task_id: str):
        super().__init__(task_id)
        self.fields: dict = {}  # the progress the worker had made: recorded with the cancellation


def now() -> datetime:
    """UTC, millisecond precision: what BSON stores, so values read back compare equal."""
    t = datetime.now(UTC).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def create(
    db: Database, *, task_id: str, kind: str, filename: str, path: str, size: int, owner: dict | None = None, **extra
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
    db.processes.insert_one(doc)
    return doc


def get(db: Database, task_id: str) -> dict | None:
    return db.processes.find_one({"task_id": task_id})


def claim(db: Database, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None):
    """Atomically take one task: the named one, else the oldest pending or abandoned one.

    Progress and checkpoint are left as the last attempt recorded them: a movies task goes on from there.
    A claim is won by inserting `<task_id>/<claim number>` into `claims`: an insert of an existing `_id`
    fails on every server, where a conditional update is not always atomic (FerretDB applies two racing
    `find_one_and_update`s to the same task). The `claims` counter on the task only grows.
    """
    t = now()
    claimable = {
        "$or": [
            {"status": PENDING},
            {"status": PROCESSING, "lease_expires_at": {"$lt": t}},
        ],
        "attempts": {"$lt": max_attempts},
        "cancel_requested": {"$ne": True},
    }
    if task_id is not None:
        claimable["task_id"] = task_id
    lost: list[str] = []  # tasks another worker claimed under our eyes
    while True:
        query = {**claimable, "task_id": {"$nin": lost}} if lost and task_id is None else claimable
        found = db.processes.find_one(query, {"task_id": 1, "claims": 1}, sort=[("created_at", ASCENDING)])
        if found is None:
            return None
        number = found.get("claims", 0) + 1
        claim_id = f"{found['task_id']}/{number}"
        try:
            db.claims.insert_one({"_id": claim_id, "worker": worker_id, "at": t})
            task = db.processes.find_one_and_update(
                {**claimable, "_id": found["_id"], "claims": found.get("claims")},
                {
                    "$set": {
                        "status": PROCESSING,
                        "worker": worker_id,
                        "lease_expires_at": t + timedelta(seconds=lease_seconds),
                        "started_at": t,
                        "updated_at": t,
                        "claims": number,
                    },
                    "$inc": {"attempts": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # Lost to another worker, or to one that died between its insert and its update: that one's
            # claim would keep the task from everyone, so it goes once a lease has passed; then try again.
            stale = {"_id": claim_id, "at": {"$lt": t - timedelta(seconds=lease_seconds)}}
            if db.claims.delete_one(stale).deleted_count:
                continue
            task = None
        if task is not None:
            return task
        if task_id is not None:
            return None
        lost.append(found["task_id"])


def settle_abandoned(db: Database, max_attempts: int) -> list[dict]:
    """Finish the tasks whose worker vanished and that nobody may take over; returns them (their files can go).

    Out of attempts → failed; cancelled while running → cancelled.
    """
    t = now()
    expired = {"status": PROCESSING, "lease_expires_at": {"$lt": t}}
    outcomes = (
        ({"cancel_requested": True}, CANCELLED, None),
        (
            {"attempts": {"$gte": max_attempts}, "cancel_requested": {"$ne": True}},
            FAILED,
            f"gave up after {max_attempts} attempts: each worker stopped before finishing",
        ),
    )
    settled = []
    for condition, status, error in outcomes:
        query = {**expired, **condition}
        for task in db.processes.find(query, {"task_id": 1, "path": 1}):
            fields = {"status": status, "finished_at": t, "updated_at": t, **({"error": error} if error else {})}
            result = db.processes.update_one(
                {**query, "task_id": task["task_id"]}, {"$set": fields, "$unset": {"lease_expires_at": ""}}
            )
            if result.modified_count:
                settled.append({**task, "status": status})
    return settled


def request_cancel(db: Database, task_id: str) -> dict | None:
    """Cancel a pending task now, or ask its worker to stop at the next batch; returns the task after.

    None if the task is already finished (completed, failed or cancelled) or unknown.
    """
    t = now()
    changes = {
        PENDING: {"status": CANCELLED, "cancel_requested": True, "finished_at": t, "updated_at": t},
        PROCESSING: {"cancel_requested": True, "updated_at": t},
    }
    for status in (PENDING, PROCESSING, PENDING):  # the last: handed back between the first two looks
        task = db.processes.find_one_and_update(
            {"task_id": task_id, "status": status}, {"$set": changes[status]}, return_document=ReturnDocument.AFTER
        )
        if task is not None:
            return task
    return None


def expire_results(db: Database, ttl_hours: int) -> list[dict]:
    """Mark result files (of kinds that leave one) finished over `ttl_hours` ago as removed; returns their tasks."""
    t = now()
    query = {
        "status": COMPLETED,
        "result_path": {"$exists": True},
        "finished_at": {"$lt": t - timedelta(hours=ttl_hours)},
        "result_removed_at": {"$exists": False},
    }
    expired = []
    for task in db.processes.find(query, {"task_id": 1, "result_path": 1}):
        if db.processes.update_one(
            {**query, "task_id": task["task_id"]}, {"$set": {"result_removed_at": t}}
        ).modified_count:
            expired.append(task)
    return expired


def _mine(task_id: str, worker_id: str) -> dict:
    """The owner check of every write a worker makes to its task: progress, lease renewal, the outcome."""
    return {"task_id": task_id, "status": PROCESSING, "worker": worker_id}


def update(db: Database, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None:
    """Record progress and renew the lease; LostTask if the task is no longer ours, Cancelled if cancelled."""
    t = now()
    result = db.processes.update_one(
        {**_mine(task_id, worker_id), "cancel_requested": {"$ne": True}},
        {"$set": {**fields, "updated_at": t, "lease_expires_at": t + timedelta(seconds=lease_seconds)}},
    )
    if result.matched_count == 0:
        _not_ours(db, task_id, worker_id)


def renew(db: Database, task_id: str, worker_id: str, lease_seconds: int) -> None:
    """Extend the lease by `lease_seconds` from now; LostTask if the task is no longer ours.

    A task cancelled meanwhile keeps its lease (its worker needs it to record the cancellation) and
    raises Cancelled, so the worker stops at its next step.
    """
    t = now()
    task = db.processes.find_one_and_update(  # no projection: FerretDB 1.24 refuses one here
        _mine(task_id, worker_id), {"$set": {"lease_expires_at": t + timedelta(seconds=lease_seconds)}}
    )
    if task is None:
        raise LostTask(task_id)
    if task.get("cancel_requested"):
        raise Cancelled(task_id)


def give_up(db: Database, task_id: str, worker_id: str) -> bool:
    """End our lease now, so that any worker may claim the task (a new attempt); False if it was not ours."""
    return db.processes.update_one(_mine(task_id, worker_id), {"$set": {"lease_expires_at": now()}}).matched_count > 0


def _not_ours(db: Database, task_id: str, worker_id: str):
    task = db.processes.find_one(_mine(task_id, worker_id), {"_id": 1})
    raise Cancelled(task_id) if task is not None else LostTask(task_id)


def finish(db: Database, task_id: str, worker_id: str, status: str, **fields) -> None:
    t = now()
    task = db.processes.find_one({"task_id": task_id}, {"started_at": 1})
    started = task.get("started_at") if task else None
    result = db.processes.update_one(
        _mine(task_id, worker_id),
        {
            "$set": {
                **fields,
                "status": status,
                "finished_at": t,
                "updated_at": t,
                "duration_s": round((t - started).total_seconds(), 3) if started else None,
            },
            "$unset": {"lease_expires_at": "", "checkpoint": ""},
        },
    )
    if result.matched_count == 0:
        raise LostTask(task_id)


def page(db: Database, query: dict, page_number: int, limit: int) -> tuple[list[dict], int]:
    """One page of the tasks matching `query`, newest first, and how many match in all."""
    total = db.processes.count_documents(query)
    cursor = (
        db.processes.find(query)
        .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        .skip((page_number - 1) * limit)
        .limit(limit)
    )
    return list(cursor), total


def release(db: Database, task_id: str, worker_id: str) -> None:
    """Hand a task back untouched by failure (a clean shutdown): it does not count as an attempt.

    A task someone asked to cancel meanwhile is cancelled instead of going back to the pool.
    """
    mine = _mine(task_id, worker_id)
    result = db.processes.update_one(
        {**mine, "cancel_requested": {"$ne": True}},
        {
            "$set": {"status": PENDING, "updated_at": now()},
            "$unset": {"worker": "", "lease_expires_at": ""},
            "$inc": {"attempts": -1},
        },
    )
    if result.matched_count == 0 and db.processes.find_one(mine, {"_id": 1}) is not None:
        finish(db, task_id, worker_id, CANCELLED)
