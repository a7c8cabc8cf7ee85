"""Worker registration: each worker's heartbeat record in `workers`, and who counts as alive.

Its own module so that the API's health check can count workers without importing the worker loop (and
with it PyArrow and the whole ingest stack).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from pymongo.database import Database
from pymongo.errors import PyMongoError

from app import tasks

log = logging.getLogger(__name__)


def beat(db: Database, worker_id: str, task_id: str | None) -> None:
    """Say `worker_id` is alive (and what it works on); a failure is logged, the next beat tries again."""
    try:
        db.workers.update_one(
            {"_id": worker_id},
            {"$set": {"host": socket.gethostname(), "pid": os.getpid(), "beat_at": tasks.now(), "task_id": task_id}},
            upsert=True,
        )
    except PyMongoError as e:
        log.warning("worker %s: heartbeat failed: %s", worker_id, e)


def forget(db: Database, worker_id: str) -> None:
    """A clean exit takes its record along; if that fails, the record simply goes stale."""
    try:
        db.workers.delete_one({"_id": worker_id})
    except PyMongoError as e:
        log.warning("worker %s: could not remove its heartbeat: %s", worker_id, e)


def alive_workers(db: Database, timeout: int) -> int:
    """Workers heard from within the last `timeout` seconds."""
    return db.workers.count_documents({"beat_at": {"$gt": tasks.now() - timedelta(seconds=timeout)}})
