"""Ingest a movie CSV: stream blocks, clean them, bulk-write 1000 movies at a time, report progress."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from app import csvstream, movies

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


@dataclass
class Progress:
    bytes_total: int
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    rejects: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def fields(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        percent = 100.0 if self.bytes_total == 0 else min(100.0, 100.0 * self.bytes_read / self.bytes_total)
        return {
            "rows_read": self.rows_read, "rows_inserted": self.rows_inserted, "rows_updated": self.rows_updated,
            "rows_rejected": self.rows_rejected, "bytes_read": self.bytes_read, "bytes_total": self.bytes_total,
            "percent": round(percent, 2), "rows_per_sec": round(self.rows_read / elapsed, 1),
            "warnings": dict(self.warnings), "rejects": list(self.rejects),
        }

    def reject(self, rejects, keep: int) -> None:
        self.rows_rejected += len(rejects)
        room = keep - len(self.rejects)
        if room > 0:
            self.rejects.extend(r.as_dict() for r in rejects[:room])


def write_movies(collection: Collection, documents: list[dict]) -> tuple[int, int]:
    """Upsert by `_id`; returns (inserted, updated). Replaying a batch changes nothing."""
    requests = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents]
    try:
        result = collection.bulk_write(requests, ordered=False)
        return result.upserted_count, result.matched_count
    except BulkWriteError as e:
        # Two uploads inserting the same new movie at once: one upsert loses the race. Replaying the
        # losers turns them into updates; anything else is a real failure.
        errors = e.details.get("writeErrors", [])
        if not errors or any(err.get("code") != DUPLICATE_KEY for err in errors):
            raise
        inserted = e.details.get("nUpserted", 0)
        updated = e.details.get("nMatched", 0)
        retry = [requests[err["index"]] for err in errors]
        result = collection.bulk_write(retry, ordered=False)
        return inserted + result.upserted_count, updated + result.matched_count


def ingest_movies(
    path: str,
    collection: Collection,
    *,
    block_size: int,
    batch_size: int,
    max_rejects: int,
    on_progress: Callable[[dict], None] = lambda fields: None,
) -> dict:
    """Load the file into `collection`; calls `on_progress` after every batch; returns the final fields."""
    progress = Progress(bytes_total=os.path.getsize(path))
    for chunk in csvstream.stream(path, block_size):
        progress.reject(chunk.invalid, max_rejects)
        cleaned = movies.clean_batch(chunk.batch, chunk.lines) if chunk.batch.num_rows else movies.CleanBatch([])
        progress.reject(cleaned.rejects, max_rejects)
        progress.rows_read += chunk.batch.num_rows + len(chunk.invalid)
        for name, count in cleaned.warnings.items():
            progress.warnings[name] = progress.warnings.get(name, 0) + count
        progress.bytes_read = chunk.bytes_read
        docs = cleaned.documents
        for start in range(0, len(docs), batch_size):
            inserted, updated = write_movies(collection, docs[start:start + batch_size])
            progress.rows_inserted += inserted
            progress.rows_updated += updated
            on_progress(progress.fields())
        if not docs:  # a block of rejects only: still worth a progress update
            on_progress(progress.fields())
    progress.bytes_read = progress.bytes_total
    return progress.fields()
