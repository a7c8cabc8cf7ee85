"""API keys in MongoDB's `api_keys` collection, found by `_id` (a primary-key look-up on any server)."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING
from pymongo.collection import Collection


class Keys:
    def __init__(self, collection: Collection):
        self.collection = collection

    def insert(self, doc: dict) -> None:
        self.collection.insert_one(doc)

    def get(self, key_id: str) -> dict | None:
        return self.collection.find_one({"_id": key_id})

    def touch(self, key_id: str, at: datetime) -> None:
        self.collection.update_one({"_id": key_id}, {"$set": {"last_used_at": at}})

    def listing(self) -> list[dict]:
        return list(self.collection.find({}).sort([("created_at", ASCENDING), ("_id", ASCENDING)]))

    def revoke(self, key_id: str, at: datetime) -> None:
        self.collection.update_one({"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": at}})

    def any_live(self) -> bool:
        return self.collection.find_one({"revoked_at": None}, {"_id": 1}) is not None
