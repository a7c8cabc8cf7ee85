"""Ingest a movie CSV: blocks are parsed, cleaned and encoded to BSON (in a helper process, for big
files) while this process bulk-writes them BATCH_SIZE movies at a time, checkpointing after each write."""
from __future__ import annotations

import os
from typing import Callable

from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from app.pipeline import ahead
from app.prepare import Batch, prepare
from app.progress import Progress
from app.retry import ONCE, Backoff

DUPLICATE_KEY = 11000
# jemalloc hands freed blocks back sooner than PyArrow's default (mimalloc): measured on a 1 GB file, the
# helper peaked at 169 MB instead of 204 MB, at the same speed.
HELPER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}


def requests(batch: Batch) -> list[ReplaceOne]:
    """The batch as upserts by `_id`, each document the raw BSON prepared for it."""
    data, bounds = batch.documents, batch.bounds
    return [ReplaceOne({"_id": key}, RawBSONDocument(data[a:b]), upsert=True)
            for key, a, b in zip(batch.ids, bounds, bounds[1:])]


def write_movies(collection: Collection, requests: list[ReplaceOne]) -> tuple[int, int]:
    """Upsert by `_id`; returns (inserted, updated). Replaying a batch changes nothing."""
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
    in_process_from: int = 0,
) -> dict:
    """Load the file into `collection`, from `checkpoint` on if given; returns the final fields.

    After each batch is written, `on_progress(fields, checkpoint)`: a later attempt given that
    checkpoint goes on with the next batch. With at least `in_process_from` bytes to go, blocks are
    prepared in a helper process while this one writes.
    """
    progress = Progress.resume(os.path.getsize(path), checkpoint)
    in_process = progress.bytes_total - progress.bytes_read >= in_process_from
    with ahead(prepare, path, block_size, batch_size, progress.line, in_process=in_process, env=HELPER_ENV) as blocks:
        for block in blocks:
            for batch in block:
                if batch.ids:
                    inserted, updated = retry.call(write_movies, collection, requests(batch), what="bulk write")
                    progress.rows_inserted += inserted
                    progress.rows_updated += updated
                progress.rows_read += batch.rows_read
                progress.reject(batch.rejects, max_rejects)
                for name, count in batch.warnings.items():
                    progress.warnings[name] = progress.warnings.get(name, 0) + count
                progress.bytes_read = max(progress.bytes_read, batch.bytes_read)  # a resumed run starts mid-chunk
                progress.line = batch.end_line
                on_progress(progress.fields(), progress.checkpoint())
    progress.bytes_read = progress.bytes_total
    return progress.fields()
