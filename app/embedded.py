"""The in-memory stand-in the service's cache runs on when `REDIS_URL` is empty: fakeredis, in the API process,
lost when it exits. app/store/cache.py imports this module only then; with a real Redis nothing here loads.

(With `MONGO_URI` empty the store is the SQLite file in DATA_FOLDER: app/store/sqlite/.)
"""

from __future__ import annotations


def redis_client():
    """A fakeredis client: Redis commands on an in-memory store."""
    import fakeredis

    return fakeredis.FakeRedis()
