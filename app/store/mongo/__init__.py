"""The MongoDB store: the client, the collections and their indexes, and MongoStore, which the service reaches
them through (app/store/interface.py). Production and many hosts; FerretDB in the tests; mongomock
(tests/support/mongomock_db.py) as the fast test double.
"""

from __future__ import annotations

import logging

import pymongo
from pymongo.database import Database

from app.config import Config
from app.store import clients
from app.store.mongo.keys import Keys
from app.store.mongo.movies import Movies
from app.store.mongo.tasks import Tasks
from app.store.mongo.workers import Workers
from app.store.movies import index_specs

log = logging.getLogger(__name__)


class MongoStore:
    name = "mongodb"
    is_store = True

    def __init__(self, db: Database):
        self.db = db
        self.movies = Movies(db.movies)
        self.tasks = Tasks(db)
        self.keys = Keys(db.api_keys)
        self.workers = Workers(db.workers)

    def setup(self) -> None:
        ensure_indexes(self.db)

    def ping(self) -> bool:
        return ping(self.db)

    def warning(self, write_ops: int) -> str | None:
        return warn_about_server(self.db, write_ops)


def connect(config: Config) -> Database:
    """The service's database; one client per process and URI, as pymongo recommends."""
    return clients.shared("mongo", config.MONGO_URI, lambda: _new_client(config))[config.MONGO_DB]


def _new_client(config: Config):
    return pymongo.MongoClient(
        config.MONGO_URI,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        socketTimeoutMS=config.MONGO_SOCKET_TIMEOUT_SECONDS * 1000,
    )


def ensure_indexes(db: Database) -> None:
    for spec in index_specs():
        db.movies.create_index(spec)
    db.processes.create_index("task_id", unique=True)
    db.processes.create_index([("created_at", pymongo.DESCENDING)])
    db.processes.create_index([("status", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
    db.processes.create_index([("owner.key_id", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
    db.processes.create_index([("owner.key_id", pymongo.ASCENDING), ("status", pymongo.ASCENDING)])  # active tasks
    db.workers.create_index("beat_at")


FERRETDB_WRITE_OPS = 25  # what FerretDB 1.24 takes with a few workers writing at once (docs/stores.md)


def warn_about_server(db: Database, write_ops: int) -> str | None:
    """The warning a worker logs when its server needs settings MongoDB does not; None if none does."""
    try:
        info = db.client.server_info()
    except Exception as e:  # the worker's own retries deal with an unreachable server
        log.debug("buildInfo failed: %s", e)
        return None
    ferretdb = info.get("ferretdbVersion")  # FerretDB's buildInfo says who it is; MongoDB's has no such key
    if ferretdb is None or 0 < write_ops <= FERRETDB_WRITE_OPS:
        return None
    message = (
        f"MONGO_URI is FerretDB {ferretdb}: set MONGO_WRITE_OPS={FERRETDB_WRITE_OPS} "
        f"(it is {write_ops}); FerretDB never answers bulk writes that re-write 100 or more stored movies"
    )
    log.warning(message)
    return message


def ping(db: Database) -> bool:
    try:
        db.command("ping")
        return True
    except Exception as e:  # any failure means "not reachable" to the health check
        log.warning("MongoDB ping failed: %s", e)
        return False
