"""Ingest a movie CSV: stream blocks, clean and bulk-write BATCH_SIZE rows at a time, checkpoint after each."""
from __future__ import annotations

import os
from typing import Callable

from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from app import csvstream, movies
from app.progress import Progress
from app.retry import ONCE, Backoff

DUPLICATE_KEY = 11000


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
    on_progress: Callable[[dict, dict], None] = lambda fields, checkpoint: None,
    checkpoint: dict | None = None,
    retry: Backoff = ONCE,
) -> dict:
    """Load the file into `collection`, from `checkpoint` on if given; returns the final fields.

    Rows go in batches of `batch_size` rows, each cleaned and written as one bulk write; after each,
    `on_progress(fields, checkpoint)`: a later attempt given that checkpoint goes on with the next batch.
    """
    progress = Progress.resume(os.path.getsize(path), checkpoint)
    for chunk in csvstream.stream(path, block_size, start_line=progress.line):
        progress.bytes_read = chunk.bytes_read
        invalid = chunk.invalid
        n = chunk.batch.num_rows
        for start in range(0, max(n, 1), batch_size):
            end = start + batch_size
            end_line = int(chunk.lines[end]) if end < n else chunk.next_line
            skipped = [r for r in invalid if r.line < end_line]  # wrong field counts among these rows
            invalid = invalid[len(skipped):]
            rows = chunk.batch.slice(start, batch_size)
            cleaned = movies.clean_batch(rows, chunk.lines[start:end]) if rows.num_rows else movies.CleanBatch([])
            progress.reject(sorted(skipped + cleaned.rejects, key=lambda r: r.line), max_rejects)
            progress.rows_read += rows.num_rows + len(skipped)
            for name, count in cleaned.warnings.items():
                progress.warnings[name] = progress.warnings.get(name, 0) + count
            if cleaned.documents:
                inserted, updated = retry.call(write_movies, collection, cleaned.documents, what="bulk write")
                progress.rows_inserted += inserted
                progress.rows_updated += updated
            progress.line = end_line
            on_progress(progress.fields(), progress.checkpoint())
    progress.bytes_read = progress.bytes_total
    return progress.fields()
