"""Task and key records as the service makes them, for the tests of the stores (tests/test_store_contract.py,
tests/test_sqlite_records.py)."""

from __future__ import annotations

from datetime import datetime

from app import tasks


def new_task(store, task_id: str, **extra) -> dict:
    """A pending task as app.tasks.create builds and stores it."""
    extra.setdefault("path", f"/up/{task_id}.csv")
    return tasks.create(store, task_id=task_id, kind="movies", filename=f"{task_id}.csv", size=100, **extra)


def outcome(call, *args, **kwargs):
    """What a call gave: its value, or the name of the exception it raised."""
    try:
        return call(*args, **kwargs)
    except (tasks.LostTask, tasks.Cancelled) as e:
        return f"raised {type(e).__name__}({e})"


def key(key_id: str, created_at: datetime, **extra) -> dict:
    """An API key's record as app/api/keys.py stores it."""
    return {
        "_id": key_id,
        "name": key_id,
        "role": "reader",
        "hash": "h" * 64,
        "prefix": "mcat_",
        "created_at": created_at,
        "last_used_at": None,
        "revoked_at": None,
        **extra,
    }
