"""Task records and their state machine; MongoDB's `processes` collection is the truth.

    pending ──claim──► processing ──► completed | failed
                           └── lease runs out ──► claimable again (attempts + 1; after MAX_ATTEMPTS: failed)

A worker owns a task while its lease lasts and renews it with every progress update; an update that finds
the task no longer its own raises LostTask, so two workers never write progress for one task.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from app.serialize import to_json

PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
STATUSES = (PENDING, PROCESSING, COMPLETED, FAILED)

PROGRESS_FIELDS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_rejected", "bytes_read", "percent", "rows_per_sec",
)
HIDDEN_FIELDS = ("path",)  # server-side details a client has no use for


class LostTask(Exception):
    """The task is no longer this worker's (its lease ran out and another worker took it)."""


def now() -> datetime:
    """UTC, millisecond precision: what BSON stores, so values read back compare equal."""
    t = datetime.now(timezone.utc).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def create(db: Database, *, task_id: str, kind: str, filename: str, path: str, size: int, **extra) -> dict:
    t = now()
    doc = {
        "task_id": task_id, "kind": kind, "status": PENDING, "filename": filename, "path": path,
        "size": size, "bytes_total": size, "created_at": t, "updated_at": t, "attempts": 0,
        **{name: 0 for name in PROGRESS_FIELDS}, "warnings": {}, "rejects": [], **extra,
    }
    db.processes.insert_one(doc)
    return doc


def get(db: Database, task_id: str) -> dict | None:
    return db.processes.find_one({"task_id": task_id})


def claim(db: Database, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None):
    """Atomically take one task: the named one, else the oldest pending or abandoned one."""
    t = now()
    claimable = {"$or": [
        {"status": PENDING},
        {"status": PROCESSING, "lease_expires_at": {"$lt": t}},
    ], "attempts": {"$lt": max_attempts}}
    if task_id is not None:
        claimable["task_id"] = task_id
    return db.processes.find_one_and_update(
        claimable,
        {"$set": {
            "status": PROCESSING, "worker": worker_id, "lease_expires_at": t + timedelta(seconds=lease_seconds),
            "started_at": t, "updated_at": t, **{name: 0 for name in PROGRESS_FIELDS},
            "warnings": {}, "rejects": [],
        }, "$inc": {"attempts": 1}},
        sort=[("created_at", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    )


def fail_exhausted(db: Database, max_attempts: int) -> list[dict]:
    """Fail the tasks whose lease ran out on their last attempt; returns them (their files can go)."""
    t = now()
    expired = {"status": PROCESSING, "lease_expires_at": {"$lt": t}, "attempts": {"$gte": max_attempts}}
    failed = []
    for task in db.processes.find(expired, {"task_id": 1, "path": 1}):
        result = db.processes.update_one(
            {**expired, "task_id": task["task_id"]},
            {"$set": {"status": FAILED, "finished_at": t, "updated_at": t,
                      "error": f"gave up after {max_attempts} attempts: each worker stopped before finishing"},
             "$unset": {"lease_expires_at": ""}},
        )
        if result.modified_count:
            failed.append(task)
    return failed


def update(db: Database, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None:
    """Record progress and renew the lease; raise LostTask if the task is no longer ours."""
    t = now()
    result = db.processes.update_one(
        {"task_id": task_id, "status": PROCESSING, "worker": worker_id},
        {"$set": {**fields, "updated_at": t, "lease_expires_at": t + timedelta(seconds=lease_seconds)}},
    )
    if result.matched_count == 0:
        raise LostTask(task_id)


def finish(db: Database, task_id: str, worker_id: str, status: str, **fields) -> None:
    t = now()
    task = db.processes.find_one({"task_id": task_id}, {"started_at": 1})
    started = task.get("started_at") if task else None
    result = db.processes.update_one(
        {"task_id": task_id, "status": PROCESSING, "worker": worker_id},
        {"$set": {**fields, "status": status, "finished_at": t, "updated_at": t,
                  "duration_s": round((t - started).total_seconds(), 3) if started else None},
         "$unset": {"lease_expires_at": ""}},
    )
    if result.matched_count == 0:
        raise LostTask(task_id)


def page(db: Database, status: str | None, page_number: int, limit: int) -> dict:
    query = {"status": status} if status else {}
    total = db.processes.count_documents(query)
    cursor = (db.processes.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
              .skip((page_number - 1) * limit).limit(limit))
    return {
        "limit": limit, "page": page_number, "processes": [public(doc) for doc in cursor],
        "total_docs": total, "total_pages": math.ceil(total / limit) if total else 0,
    }


def public(doc: dict) -> dict:
    return to_json({k: v for k, v in doc.items() if k not in HIDDEN_FIELDS})


def release(db: Database, task_id: str, worker_id: str) -> None:
    """Hand a task back untouched by failure (a clean shutdown): it does not count as an attempt."""
    db.processes.update_one(
        {"task_id": task_id, "status": PROCESSING, "worker": worker_id},
        {"$set": {"status": PENDING, "updated_at": now()}, "$unset": {"worker": "", "lease_expires_at": ""},
         "$inc": {"attempts": -1}},
    )
