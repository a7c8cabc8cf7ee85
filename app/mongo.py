"""MongoDB: the client, the collections, and their indexes.

With `MONGO_URI` unset the service runs on an in-memory stand-in (mongomock), shared by everything in
this process and lost when it exits.
"""
from __future__ import annotations

import logging
import threading

import pymongo
from pymongo.database import Database

from app import movies
from app.config import Config

log = logging.getLogger(__name__)

_lock = threading.Lock()
_clients: dict[str, object] = {}


def connect(config: Config) -> Database:
    """The service's database; one client per process and URI, as pymongo recommends."""
    key = config.MONGO_URI or "embedded"
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _new_client(config)
    return client[config.MONGO_DB]


def _new_client(config: Config):
    if config.embedded_mongo:
        import mongomock_ng  # the test double, used here only as the embedded default

        log.warning("MONGO_URI is not set: using an embedded MongoDB stand-in (in-memory, not persisted)")
        return mongomock_ng.MongoClient()
    return pymongo.MongoClient(config.MONGO_URI, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)


def reset_embedded() -> None:
    """Forget the embedded database (tests)."""
    with _lock:
        _clients.pop("embedded", None)


def ensure_indexes(db: Database) -> None:
    for spec in movies.index_specs():
        db.movies.create_index(spec)
    db.processes.create_index("task_id", unique=True)
    db.processes.create_index([("created_at", pymongo.DESCENDING)])
    db.processes.create_index([("status", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
    db.workers.create_index("beat_at")


def ping(db: Database) -> bool:
    try:
        db.command("ping")
        return True
    except Exception as e:  # any failure means "not reachable" to the health check
        log.warning("MongoDB ping failed: %s", e)
        return False
