"""The task records in MongoDB's `processes` collection, and the claims that make taking one atomic.

The state machine is app/tasks/__init__.py's; this is how MongoDB (and FerretDB, and mongomock) keep it.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from app.store import tasks as shared  # the clock is read as shared.now(): a test moves it there
from app.store.tasks import CANCELLED, COMPLETED, FAILED, PENDING, PROCESSING, Cancelled, LostTask, Task


def _mine(task_id: str, worker_id: str) -> dict:
    """The owner check of every write a worker makes to its task: progress, lease renewal, the outcome."""
    return {"task_id": task_id, "status": PROCESSING, "worker": worker_id}


class Tasks:
    def __init__(self, db: Database):
        self.db = db

    def insert(self, doc: Task) -> None:
        self.db.processes.insert_one(doc)

    def get(self, task_id: str) -> Task | None:
        return self.db.processes.find_one({"task_id": task_id})

    def claim(self, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None) -> Task | None:
        """Atomically take one task: the named one, else the oldest pending or abandoned one.

        Progress and checkpoint are left as the last attempt recorded them: a movies task goes on from there.
        A claim is won by inserting `<task_id>/<claim number>` into `claims`: an insert of an existing `_id`
        fails on every server, where a conditional update is not always atomic (FerretDB applies two racing
        `find_one_and_update`s to the same task). The `claims` counter on the task only grows.
        """
        t = shared.now()
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
            found = self.db.processes.find_one(query, {"task_id": 1, "claims": 1}, sort=[("created_at", ASCENDING)])
            if found is None:
                return None
            number = found.get("claims", 0) + 1
            claim_id = f"{found['task_id']}/{number}"
            try:
                self.db.claims.insert_one({"_id": claim_id, "worker": worker_id, "at": t})
                task = self.db.processes.find_one_and_update(
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
                if self.db.claims.delete_one(stale).deleted_count:
                    continue
                task = None
            if task is not None:
                return task
            if task_id is not None:
                return None
            lost.append(found["task_id"])

    def settle_abandoned(self, max_attempts: int) -> list[Task]:
        """Finish the tasks whose worker vanished and that nobody may take over; returns them (their files can go).

        Out of attempts → failed; cancelled while running → cancelled.
        """
        t = shared.now()
        expired = {"status": PROCESSING, "lease_expires_at": {"$lt": t}}
        outcomes = (
            ({"cancel_requested": True}, CANCELLED, None),
            (
                {"attempts": {"$gte": max_attempts}, "cancel_requested": {"$ne": True}},
                FAILED,
                f"gave up after {max_attempts} attempts: each worker stopped before finishing",
            ),
        )
        settled: list[Task] = []
        for condition, status, error in outcomes:
            query = {**expired, **condition}
            for task in self.db.processes.find(query, {"task_id": 1, "path": 1}):
                fields = {"status": status, "finished_at": t, "updated_at": t, **({"error": error} if error else {})}
                result = self.db.processes.update_one(
                    {**query, "task_id": task["task_id"]}, {"$set": fields, "$unset": {"lease_expires_at": ""}}
                )
                if result.modified_count:
                    task["status"] = status
                    settled.append(task)
        return settled

    def request_cancel(self, task_id: str) -> Task | None:
        """Cancel a pending task now, or ask its worker to stop at the next batch; returns the task after.

        None if the task is already finished (completed, failed or cancelled) or unknown.
        """
        t = shared.now()
        changes = {
            PENDING: {"status": CANCELLED, "cancel_requested": True, "finished_at": t, "updated_at": t},
            PROCESSING: {"cancel_requested": True, "updated_at": t},
        }
        for status in (PENDING, PROCESSING, PENDING):  # the last: handed back between the first two looks
            task = self.db.processes.find_one_and_update(
                {"task_id": task_id, "status": status}, {"$set": changes[status]}, return_document=ReturnDocument.AFTER
            )
            if task is not None:
                return task
        return None

    def expire_results(self, ttl_hours: int) -> list[Task]:
        """Mark result files (of kinds that leave one) finished over `ttl_hours` ago as removed; returns their tasks."""
        t = shared.now()
        query = {
            "status": COMPLETED,
            "result_path": {"$exists": True},
            "finished_at": {"$lt": t - timedelta(hours=ttl_hours)},
            "result_removed_at": {"$exists": False},
        }
        expired = []
        for task in self.db.processes.find(query, {"task_id": 1, "result_path": 1}):
            if self.db.processes.update_one(
                {**query, "task_id": task["task_id"]}, {"$set": {"result_removed_at": t}}
            ).modified_count:
                expired.append(task)
        return expired

    def update(self, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None:
        """Record progress and renew the lease; LostTask if the task is no longer ours, Cancelled if cancelled."""
        t = shared.now()
        result = self.db.processes.update_one(
            {**_mine(task_id, worker_id), "cancel_requested": {"$ne": True}},
            {"$set": {**fields, "updated_at": t, "lease_expires_at": t + timedelta(seconds=lease_seconds)}},
        )
        if result.matched_count == 0:
            self._not_ours(task_id, worker_id)

    def renew(self, task_id: str, worker_id: str, lease_seconds: float) -> None:
        """Extend the lease by `lease_seconds` from now; LostTask if the task is no longer ours.

        A task cancelled meanwhile keeps its lease (its worker needs it to record the cancellation) and
        raises Cancelled, so the worker stops at its next step.
        """
        t = shared.now()
        task = self.db.processes.find_one_and_update(  # no projection: FerretDB 1.24 refuses one here
            _mine(task_id, worker_id), {"$set": {"lease_expires_at": t + timedelta(seconds=lease_seconds)}}
        )
        if task is None:
            raise LostTask(task_id)
        if task.get("cancel_requested"):
            raise Cancelled(task_id)

    def give_up(self, task_id: str, worker_id: str) -> bool:
        """End our lease now, so that any worker may claim the task (a new attempt); False if it was not ours."""
        return (
            self.db.processes.update_one(
                _mine(task_id, worker_id), {"$set": {"lease_expires_at": shared.now()}}
            ).matched_count
            > 0
        )

    def _not_ours(self, task_id: str, worker_id: str):
        task = self.db.processes.find_one(_mine(task_id, worker_id), {"_id": 1})
        raise Cancelled(task_id) if task is not None else LostTask(task_id)

    def finish(self, task_id: str, worker_id: str, status: str, **fields) -> None:
        t = shared.now()
        task = self.db.processes.find_one({"task_id": task_id}, {"started_at": 1})
        started = task.get("started_at") if task else None
        result = self.db.processes.update_one(
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

    def page(
        self, page_number: int, limit: int, owner_key_id: str | None = None, status: str | None = None
    ) -> tuple[list[Task], int]:
        """One page of the tasks, newest first, and how many match in all."""
        query: dict = {}
        if owner_key_id is not None:
            query["owner.key_id"] = owner_key_id
        if status is not None:
            query["status"] = status
        total = self.db.processes.count_documents(query)
        cursor = (
            self.db.processes.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page_number - 1) * limit)
            .limit(limit)
        )
        return list(cursor), total

    def count_active(self, owner_key_id: str, limit: int) -> int:
        return self.db.processes.count_documents(
            {"owner.key_id": owner_key_id, "status": {"$in": [PENDING, PROCESSING]}}, limit=limit
        )

    def with_status(self, task_ids: list[str], statuses: tuple[str, ...]) -> set[str]:
        found = self.db.processes.find(
            {"task_id": {"$in": task_ids}, "status": {"$in": list(statuses)}}, {"task_id": 1}
        )
        return {doc["task_id"] for doc in found}

    def release(self, task_id: str, worker_id: str) -> None:
        """Hand a task back untouched by failure (a clean shutdown): it does not count as an attempt.

        A task someone asked to cancel meanwhile is cancelled instead of going back to the pool.
        """
        mine = _mine(task_id, worker_id)
        result = self.db.processes.update_one(
            {**mine, "cancel_requested": {"$ne": True}},
            {
                "$set": {"status": PENDING, "updated_at": shared.now()},
                "$unset": {"worker": "", "lease_expires_at": ""},
                "$inc": {"attempts": -1},
            },
        )
        if result.matched_count == 0 and self.db.processes.find_one(mine, {"_id": 1}) is not None:
            self.finish(task_id, worker_id, CANCELLED)
