"""API keys' records on SQLite: {_id, name, role, hash, prefix, created_at, last_used_at, revoked_at}
(app/api/keys.py says what they mean). Each is kept whole as its BSON (app/store/sqlite/records.py), beside its
id (the primary key: every authenticated request looks one up), its creation time (the listing's order) and
whether it is revoked."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from app.store.sqlite import records

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    created_at INTEGER,
    revoked INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_created ON api_keys (created_at, id)
"""


class Keys:
    def __init__(self, store):
        self.store = store

    def insert(self, doc: dict) -> None:
        """Store a new key; an id already stored raises sqlite3.IntegrityError (MongoDB: DuplicateKeyError)."""
        records.new_id(doc)
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO api_keys (id, created_at, revoked, doc) VALUES (?, ?, ?, ?)", _columns(doc))

    def get(self, key_id: str) -> dict | None:
        """The record, revoked or not."""
        with self.store.reading() as conn:
            row = conn.execute("SELECT doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return records.decode(row[0]) if row else None

    def touch(self, key_id: str, at: datetime) -> None:
        self._change(key_id, {"last_used_at": at})

    def listing(self) -> list[dict]:
        """Every key, oldest first (`created_at`, then `_id`)."""
        with self.store.reading() as conn:
            rows = conn.execute("SELECT doc FROM api_keys ORDER BY created_at, id").fetchall()
        return [records.decode(row[0]) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> None:
        """Set `revoked_at` if it is not set yet (MongoDB's `{revoked_at: null}`: missing or None)."""
        self._change(key_id, {"revoked_at": at}, unless_revoked=True)

    def any_live(self) -> bool:
        with self.store.reading() as conn:
            return conn.execute("SELECT 1 FROM api_keys WHERE revoked = 0 LIMIT 1").fetchone() is not None

    def _change(self, key_id: str, change: dict, unless_revoked: bool = False) -> None:
        with self.store.transaction() as conn:
            row = conn.execute("SELECT revoked, doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None or (unless_revoked and row[0]):
                return
            _save(conn, records.apply(records.decode(row[1]), change))


def _save(conn: sqlite3.Connection, doc: dict) -> None:
    conn.execute(
        "UPDATE api_keys SET id = ?, created_at = ?, revoked = ?, doc = ? WHERE id = ?", (*_columns(doc), doc["_id"])
    )


def _columns(doc: dict) -> tuple:
    return (
        records.id_key(doc["_id"]),
        records.time_column(doc.get("created_at")),
        0 if doc.get("revoked_at") is None else 1,
        records.encode(doc),
    )
