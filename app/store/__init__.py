"""What the service keeps, and where: one store (app/store/interface.py) with two implementations, MongoDB
(app/store/mongo/: production, many hosts) and SQLite (app/store/sqlite/: the embedded default, one file);
beside it the Redis cache, files on disk, and retries of a store's calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Config
    from app.store.interface import Store


def connect(config: Config) -> Store:
    """This process's store: MongoDB at MONGO_URI, else the SQLite file in DATA_FOLDER. One per process."""
    from app.store import clients

    if config.MONGO_URI:
        from app.store import mongo

        return clients.shared("store", config.MONGO_URI, lambda: mongo.MongoStore(mongo.connect(config)))
    from app.store import sqlite

    path = sqlite.path_in(config.DATA_FOLDER)
    return clients.shared("store", path, lambda: sqlite.SqliteStore(path, config.SQLITE_BUSY_MS))


def of(handle) -> Store:
    """`handle` as a Store: a Store itself, or a pymongo (or mongomock) Database taken as its MongoStore."""
    if getattr(handle, "is_store", False) is True:  # a Database answers any attribute with a collection
        return handle
    from app.store.mongo import MongoStore

    return MongoStore(handle)
