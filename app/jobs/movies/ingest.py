"""Ingest a movie CSV: blocks are parsed, cleaned and encoded to BSON (in a helper process, for big
files) while this process bulk-writes them BATCH_SIZE movies at a time, checkpointing after each write."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from bson.raw_bson import RawBSONDocument

from app.jobs.helper import ahead
from app.jobs.movies.prepare import Batch, prepare
from app.settings import defaults
from app.store.interface import Movies
from app.store.retry import ONCE, Backoff
from app.tasks.progress import Progress

log = logging.getLogger(__name__)

# jemalloc hands freed blocks back sooner than PyArrow's default (mimalloc): measured on a 1 GB file, the
# helper peaked at 169 MB instead of 204 MB, at the same speed.
HELPER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}
# What the store is told to expect (Movies.loading): the bytes left over this. Generated files measure 366-373
# bytes a row (1 GB: 2,878,328 rows); a file of longer rows is told a few more movies than it holds.
BYTES_PER_MOVIE = 370


def documents(batch: Batch) -> list[RawBSONDocument] | list[tuple]:
    """The batch's movies in the store's form: each the raw BSON prepared for it, or the SQLite row."""
    if batch.rows is not None:
        return batch.rows
    data, bounds = batch.documents, batch.bounds
    return [RawBSONDocument(data[a:b]) for a, b in zip(bounds, bounds[1:])]


def ingest_movies(
    path: str,
    movies: Movies,
    *,
    block_size: int,
    batch_size: int,
    max_rejects: int,
    on_progress: Callable[[dict, dict], None] = lambda fields, checkpoint: None,
    checkpoint: dict | None = None,
    retry: Backoff = ONCE,
    in_process_from: int = 0,
    write_chunk: int = 0,
    max_row_mb: int = defaults.MAX_ROW_MB,
) -> dict:
    """Load the file into the store's `movies`, from `checkpoint` on if given; returns the final fields.

    After each batch is written, `on_progress(fields, checkpoint)`: a later attempt given that
    checkpoint goes on with the next batch. With at least `in_process_from` bytes to go, blocks are
    prepared in a helper process while this one writes. Each batch goes to the server `write_chunk`
    upserts per command (0: the whole batch in one). A row bigger than a block is read alone, up to
    `max_row_mb` MiB, and rejected beyond (see app/reader/csvstream.py).
    """
    progress = Progress.resume(os.path.getsize(path), checkpoint)
    in_process = progress.bytes_total - progress.bytes_read >= in_process_from
    expected = (progress.bytes_total - progress.bytes_read) // BYTES_PER_MOVIE
    with (
        movies.loading(expected),
        ahead(
            prepare,
            path,
            block_size,
            batch_size,
            progress.line,
            max_row_mb,
            getattr(movies, "form", "bson"),
            in_process=in_process,
            env=HELPER_ENV,
        ) as blocks,
    ):
        for block in blocks:
            for batch in block:
                if batch.ids:
                    inserted, updated = retry.call(
                        movies.write,
                        documents(batch),
                        write_chunk,
                        batch.absent,
                        batch.ids,
                        what="bulk write",
                    )
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
