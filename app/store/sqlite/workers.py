"""Each worker's heartbeat on SQLite: {_id: worker_id, host, pid, beat_at, task_id} as typed columns (nothing
else is kept, and the health check only counts the recent ones, by the index on `beat_at`)."""

from __future__ import annotations

from datetime import datetime

from app.store.sqlite import ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    host TEXT,
    pid INTEGER,
    beat_at INTEGER NOT NULL,
    task_id TEXT
);
CREATE INDEX IF NOT EXISTS workers_by_beat ON workers (beat_at)
"""


class Workers:
    def __init__(self, store):
        self.store = store

    def beat(self, worker_id: str, host: str, pid: int, at: datetime, task_id: str | None) -> None:
        """Say `worker_id` is alive (and what it works on): its record is created or replaced."""
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, beat_at, task_id) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET"
                " host = excluded.host, pid = excluded.pid, beat_at = excluded.beat_at, task_id = excluded.task_id",
                (worker_id, host, pid, ms(at), task_id),
            )

    def forget(self, worker_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def alive(self, since: datetime) -> int:
        """Workers whose last beat is after `since`."""
        with self.store.reading() as conn:
            return conn.execute("SELECT count(*) FROM workers WHERE beat_at > ?", (ms(since),)).fetchone()[0]
