"""The task records and their state machine on SQLite (app/tasks/__init__.py says what each step means; the
MongoDB store, app/store/mongo/tasks.py, gives the same answers).

Each record is kept whole as its BSON (app/store/sqlite/records.py), beside the columns its queries filter and
sort on. Every step is one write transaction: the record is read, the conditions of MongoDB's query checked on
it, the change applied and written back. `BEGIN IMMEDIATE` holds the file's write lock from the start, so two
workers (threads or processes) claiming at once take turns and never get the same task: the `claims` records
MongoDB needs because a server may apply two racing updates to one task have nothing to guard here; the
`claims` counter on the task still counts each claim.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from bson import ObjectId

from app.store import tasks as shared  # the clock is read as shared.now(): a test moves it there
from app.store.sqlite import ms, records
from app.store.tasks import CANCELLED, COMPLETED, FAILED, PENDING, PROCESSING, Cancelled, LostTask, Task

# `id` has no type: an ObjectId's bytes stay a BLOB, a string TEXT, and they sort as on MongoDB. Times are
# milliseconds since the epoch. `cancel_requested` is 1 when the record's field is True (MongoDB's `$ne: true`
# is its 0). `result_kept_since` is the finished_at of a completed task whose result file is still there.
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id NOT NULL UNIQUE,
    task_id TEXT NOT NULL UNIQUE,
    status TEXT,
    owner_key_id TEXT,
    created_at INTEGER,
    lease_expires_at INTEGER,
    attempts INTEGER,
    cancel_requested INTEGER NOT NULL,
    result_kept_since INTEGER,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (owner_key_id, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_by_owner_status ON tasks (owner_key_id, status, created_at, id);
CREATE INDEX IF NOT EXISTS tasks_results_kept ON tasks (result_kept_since) WHERE result_kept_since IS NOT NULL
"""

COLUMNS = (
    "id",
    "task_id",
    "status",
    "owner_key_id",
    "created_at",
    "lease_expires_at",
    "attempts",
    "cancel_requested",
    "result_kept_since",
    "doc",
)
INSERT = f"INSERT INTO tasks ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
SAVE = f"UPDATE tasks SET {', '.join(f'{c} = ?' for c in COLUMNS)} WHERE seq = ?"
# The `claimable` query of app/store/mongo/tasks.py: pending, or processing with its lease run out; attempts left;
# not cancelled; the oldest first (tasks created in the same millisecond by `_id`, as the listing breaks ties).
# Each status is its own walk of tasks_by_status, stopping at the first row that qualifies, so a claim costs
# the same with 10 or 100,000 tasks waiting (an `OR` of the two would sort every pending task each time).
CLAIMABLE = """
SELECT seq, doc FROM (
    SELECT * FROM (
        SELECT seq, doc, created_at, id FROM tasks
        WHERE status = 'pending' AND attempts < :max_attempts AND cancel_requested = 0 {named}
        ORDER BY created_at, id LIMIT 1)
    UNION ALL
    SELECT * FROM (
        SELECT seq, doc, created_at, id FROM tasks
        WHERE status = 'processing' AND lease_expires_at < :t AND attempts < :max_attempts
          AND cancel_requested = 0 {named}
        ORDER BY created_at, id LIMIT 1))
ORDER BY created_at, id LIMIT 1
"""
IN_CHUNK = 500  # task ids per `IN (...)`: well under SQLite's limit on parameters


class Tasks:
    def __init__(self, store):
        self.store = store

    def insert(self, doc: Task) -> None:
        """Store a new task; as pymongo's insert_one, gives `doc` an ObjectId `_id` if it has none.
        A task_id already stored raises sqlite3.IntegrityError (MongoDB: DuplicateKeyError)."""
        if "_id" not in doc:
            doc["_id"] = ObjectId()
        with self.store.transaction() as conn:
            conn.execute(INSERT, _columns(doc))

    def get(self, task_id: str) -> Task | None:
        with self.store.reading() as conn:
            row = conn.execute("SELECT doc FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return _task(records.decode(row[0])) if row else None

    def claim(self, worker_id: str, lease_seconds: int, max_attempts: int, task_id: str | None = None) -> Task | None:
        """Take one task (the named one, else the oldest claimable); returns it after the claim, or None."""
        t = shared.now()
        sql = CLAIMABLE.format(named="AND task_id = :task_id" if task_id is not None else "")
        with self.store.transaction() as conn:
            row = conn.execute(sql, {"t": ms(t), "max_attempts": max_attempts, "task_id": task_id}).fetchone()
            if row is None:
                return None
            seq, doc = row[0], records.decode(row[1])
            change = {
                "status": PROCESSING,
                "worker": worker_id,
                "lease_expires_at": t + timedelta(seconds=lease_seconds),
                "started_at": t,
                "updated_at": t,
                "claims": doc.get("claims", 0) + 1,
            }
            return _save(conn, seq, records.apply(doc, change, inc={"attempts": 1}))

    def settle_abandoned(self, max_attempts: int) -> list[Task]:
        """Expired leases: cancelled if cancel was asked, failed when out of attempts. Returns each settled task
        as MongoDB's code does: {_id, task_id, path, status}, the cancelled ones first."""
        t = shared.now()
        error = f"gave up after {max_attempts} attempts: each worker stopped before finishing"
        settled: list[Task] = []
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, attempts, cancel_requested, doc FROM tasks"
                " WHERE status = 'processing' AND lease_expires_at < ? ORDER BY seq",
                (ms(t),),
            ).fetchall()
            cancelled = [row for row in rows if row[2]]
            failed = [row for row in rows if not row[2] and row[1] is not None and row[1] >= max_attempts]
            for group, status, fields in (
                (cancelled, CANCELLED, {}),
                (failed, FAILED, {"error": error}),
            ):
                for seq, _, _, blob in group:
                    doc = records.decode(blob)
                    settled.append(_task({**records.projected(doc, ("task_id", "path")), "status": status}))
                    change = {"status": status, "finished_at": t, "updated_at": t, **fields}
                    _save(conn, seq, records.apply(doc, change, unset=("lease_expires_at",)))
        return settled

    def request_cancel(self, task_id: str) -> Task | None:
        """Cancel a pending task now, or ask its worker to stop; the task after, or None if finished or unknown."""
        t = shared.now()
        changes = {
            PENDING: {"status": CANCELLED, "cancel_requested": True, "finished_at": t, "updated_at": t},
            PROCESSING: {"cancel_requested": True, "updated_at": t},
        }
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            if found is None:
                return None
            seq, doc = found
            change = changes.get(doc.get("status", ""))
            if change is None:
                return None
            return _save(conn, seq, records.apply(doc, change))

    def expire_results(self, ttl_hours: int) -> list[Task]:
        """Mark result files finished over `ttl_hours` ago as removed; returns {_id, task_id, result_path} each."""
        t = shared.now()
        expired: list[Task] = []
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, doc FROM tasks WHERE result_kept_since < ? ORDER BY result_kept_since, seq",
                (ms(t - timedelta(hours=ttl_hours)),),
            ).fetchall()
            for seq, blob in rows:
                doc = records.decode(blob)
                expired.append(_task(records.projected(doc, ("task_id", "result_path"))))
                _save(conn, seq, records.apply(doc, {"result_removed_at": t}))
        return expired

    def update(self, task_id: str, worker_id: str, lease_seconds: int, **fields) -> None:
        """Record progress and renew the lease; LostTask if the task is no longer ours, Cancelled if cancelled."""
        t = shared.now()
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            mine = found is not None and _mine(found[1], worker_id)
            if found is not None and mine and not _cancel_requested(found[1]):
                change = {**fields, "updated_at": t, "lease_expires_at": t + timedelta(seconds=lease_seconds)}
                _save(conn, found[0], records.apply(found[1], change))
                return
        raise Cancelled(task_id) if mine else LostTask(task_id)

    def renew(self, task_id: str, worker_id: str, lease_seconds: float) -> None:
        """Extend the lease; LostTask if not ours. A task cancelled meanwhile keeps the lease and raises Cancelled."""
        t = shared.now()
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            if found is None or not _mine(found[1], worker_id):
                found = None
            else:
                lease = {"lease_expires_at": t + timedelta(seconds=lease_seconds)}
                _save(conn, found[0], records.apply(found[1], lease))
        if found is None:
            raise LostTask(task_id)
        if _cancel_requested(found[1]):  # raised after the commit: the lease is kept
            raise Cancelled(task_id)

    def give_up(self, task_id: str, worker_id: str) -> bool:
        """End our lease now, so that any worker may claim the task; False if it was not ours."""
        t = shared.now()
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            if found is None or not _mine(found[1], worker_id):
                return False
            _save(conn, found[0], records.apply(found[1], {"lease_expires_at": t}))
            return True

    def finish(self, task_id: str, worker_id: str, status: str, **fields) -> None:
        t = shared.now()
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            if found is not None and _mine(found[1], worker_id):
                _finish(conn, found[0], found[1], status, fields, t)
                return
        raise LostTask(task_id)

    def release(self, task_id: str, worker_id: str) -> None:
        """Hand a task back (not counted as an attempt); one asked to cancel meanwhile is cancelled instead."""
        t = shared.now()
        with self.store.transaction() as conn:
            found = _load(conn, task_id)
            if found is None or not _mine(found[1], worker_id):
                return
            seq, doc = found
            if _cancel_requested(doc):
                _finish(conn, seq, doc, CANCELLED, {}, t)
                return
            change = {"status": PENDING, "updated_at": t}
            _save(conn, seq, records.apply(doc, change, unset=("worker", "lease_expires_at"), inc={"attempts": -1}))

    def page(
        self, page_number: int, limit: int, owner_key_id: str | None = None, status: str | None = None
    ) -> tuple[list[Task], int]:
        """One page of tasks, newest first (`created_at`, then `_id`, descending), and how many match."""
        where, params = _filters(owner_key_id, status)
        with self.store.reading() as conn:
            total = conn.execute(f"SELECT count(*) FROM tasks {where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT doc FROM tasks {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                (*params, limit or -1, (page_number - 1) * limit),  # limit 0: no limit, as MongoDB's
            ).fetchall()
        return [_task(records.decode(row[0])) for row in rows], total

    def count_active(self, owner_key_id: str, limit: int) -> int:
        """How many of the key's tasks are pending or processing, counting up to `limit` at most (0: all)."""
        with self.store.reading() as conn:
            return conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM tasks"
                " WHERE owner_key_id = ? AND status IN ('pending', 'processing') LIMIT ?)",
                (owner_key_id, limit or -1),
            ).fetchone()[0]

    def with_status(self, task_ids: list[str], statuses: tuple[str, ...]) -> set[str]:
        """Which of `task_ids` have one of `statuses`."""
        ids, wanted = list(dict.fromkeys(task_ids)), list(statuses)
        found: set[str] = set()
        if not ids or not wanted:
            return found
        with self.store.reading() as conn:
            for i in range(0, len(ids), IN_CHUNK):
                chunk = ids[i : i + IN_CHUNK]
                sql = (
                    f"SELECT task_id FROM tasks WHERE task_id IN ({', '.join('?' * len(chunk))})"
                    f" AND status IN ({', '.join('?' * len(wanted))})"
                )
                found.update(row[0] for row in conn.execute(sql, (*chunk, *wanted)))
        return found


def _mine(doc: dict, worker_id: str) -> bool:
    """app/store/mongo/tasks.py's _mine: the owner check of every write a worker makes to its task."""
    return doc.get("status") == PROCESSING and doc.get("worker") == worker_id


def _cancel_requested(doc: Mapping[str, Any]) -> bool:
    return doc.get("cancel_requested") is True


def _finish(conn: sqlite3.Connection, seq: int, doc: dict, status: str, fields: dict, t: datetime) -> None:
    started = doc.get("started_at")
    change = {
        **fields,
        "status": status,
        "finished_at": t,
        "updated_at": t,
        "duration_s": round((t - started).total_seconds(), 3) if started else None,
    }
    _save(conn, seq, records.apply(doc, change, unset=("lease_expires_at", "checkpoint")))


def _load(conn: sqlite3.Connection, task_id: str) -> tuple[int, dict] | None:
    row = conn.execute("SELECT seq, doc FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return (row[0], records.decode(row[1])) if row else None


def _save(conn: sqlite3.Connection, seq: int, doc: dict) -> Task:
    """Write the record and its columns back; returns it as read back (datetimes to the millisecond)."""
    columns = _columns(doc)
    conn.execute(SAVE, (*columns, seq))
    return _task(records.decode(columns[-1]))


def _task(doc: dict) -> Task:
    """A record of this table as the steps return it: written by insert() and the steps, so a Task's fields
    (the BSON it was read from says nothing of types)."""
    return cast(Task, doc)


def _columns(doc: Mapping[str, Any]) -> tuple:
    owner = doc.get("owner")
    key_id = owner.get("key_id") if isinstance(owner, dict) else None
    attempts = doc.get("attempts")
    finished = records.time_column(doc.get("finished_at"))
    kept = doc.get("status") == COMPLETED and "result_path" in doc and "result_removed_at" not in doc
    return (
        records.id_key(doc["_id"]),
        doc["task_id"],
        doc.get("status"),
        key_id if isinstance(key_id, str) else None,
        records.time_column(doc.get("created_at")),
        records.time_column(doc.get("lease_expires_at")),
        attempts if isinstance(attempts, int | float) and not isinstance(attempts, bool) else None,
        1 if _cancel_requested(doc) else 0,
        finished if kept else None,
        records.encode(doc),
    )


def _filters(owner_key_id: str | None, status: str | None) -> tuple[str, tuple]:
    clauses = [(c, v) for c, v in (("owner_key_id = ?", owner_key_id), ("status = ?", status)) if v is not None]
    if not clauses:
        return "", ()
    return "WHERE " + " AND ".join(c for c, _ in clauses), tuple(v for _, v in clauses)
