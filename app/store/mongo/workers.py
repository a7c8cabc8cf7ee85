"""Workers' heartbeats in MongoDB's `workers` collection."""

from __future__ import annotations

from datetime import datetime

from pymongo.collection import Collection


class Workers:
    def __init__(self, collection: Collection):
        self.collection = collection

    def beat(self, worker_id: str, host: str, pid: int, at: datetime, task_id: str | None) -> None:
        self.collection.update_one(
            {"_id": worker_id}, {"$set": {"host": host, "pid": pid, "beat_at": at, "task_id": task_id}}, upsert=True
        )

    def forget(self, worker_id: str) -> None:
        self.collection.delete_one({"_id": worker_id})

    def alive(self, since: datetime) -> int:
        return self.collection.count_documents({"beat_at": {"$gt": since}})
