"""Prepare a movie file for writing: parse, clean and encode each block, and cut it into batches.

This is the part of an ingest that runs in the worker's helper process (see app/jobs/helper/): it
needs PyArrow and NumPy only, no driver, and what it yields is plain data that pickles cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.jobs.helper import in_thread
from app.jobs.movies import rows as sqlite_rows
from app.jobs.movies import schema
from app.jobs.movies.encode import encode
from app.reader import csvstream, strings
from app.reader.csvstream import Reject
from app.settings import defaults

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # MongoDB refuses a bigger document
_NOTHING = pa.scalar("")
CLEAN_ROWS = 4096  # rows cleaned and encoded at once: two read blocks, about; fewer per-call costs


@dataclass
class Batch:
    """Up to BATCH_SIZE movies as raw BSON (or as the SQLite table's rows), and what reading their lines did to the
    counters."""

    ids: list[str]
    documents: bytes  # the block's BSON documents end to end; shared by the block's batches
    bounds: list[int]  # this batch's document i is documents[bounds[i]:bounds[i + 1]]
    end_line: int  # where the rows after this batch start: the checkpoint once it is written
    bytes_read: int
    rows_read: int
    rejects: list[Reject] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # fields the file lacks (schema.absent): a stored movie keeps its own
    rows: list[tuple] | None = None  # in the "sqlite" form: the SQLite table's rows, instead of documents


def prepare(
    path: str,
    block_size: int,
    batch_size: int,
    start_line: int = 2,
    max_row_mb: int = defaults.MAX_ROW_MB,
    form: str = "bson",
) -> Iterator[list[Batch]]:
    """The file's movies from `start_line` on, cleaned and encoded: per block, its batches.

    `form` is what the store writes (Movies.form): "bson", each movie's BSON document; "sqlite", each movie's
    row of the SQLite table (app/jobs/movies/rows.py), made here, on the helper's core, not the writer's."""
    read = csvstream.stream(path, block_size, start_line=start_line, max_row_mb=max_row_mb)
    blocks = csvstream.coalesce(read, CLEAN_ROWS)
    bytes_before = 0  # where the current chunk's bytes start
    for chunk in in_thread(blocks, depth=1):
        block = schema.clean_block(chunk.batch, chunk.lines)
        absent = schema.absent(chunk.batch.schema.names)
        oversized = _oversized(block, form)
        if len(oversized):  # rare: reject those rows
            block = _without(block, oversized)
        if form == "sqlite":
            made = sqlite_rows.rows(block.columns) if len(block) else []
            bounds: list[int] = []  # no BSON: the rows are the batch
            ids, documents = [row[0] for row in made], b""
        else:
            ids, documents, bounds = _encoded(block)
        invalid = chunk.invalid  # rows with the wrong number of fields, by line
        missing = block.rejects  # rows without a title (or too big to store), by line
        line = int(chunk.lines[0]) if len(chunk.lines) else chunk.next_line
        rows_in_chunk, rows_done = max(len(chunk.lines) + len(chunk.invalid), 1), 0
        batches = []
        for start in range(0, max(len(block), 1), batch_size):
            end = min(start + batch_size, len(block))
            end_line = int(block.lines[end]) if end < len(block) else chunk.next_line
            n_invalid = _count_before(invalid, end_line)
            n_missing = _count_before(missing, end_line)
            rows = int(np.searchsorted(chunk.lines, end_line) - np.searchsorted(chunk.lines, line))
            rows_done += rows + n_invalid
            # Bytes read so far, spread over the chunk's batches by rows: progress moves batch by batch,
            # not in jumps of a chunk (a file smaller than one block would go from 0 to 100 %).
            share = min(rows_done, rows_in_chunk)
            bytes_read = bytes_before + (chunk.bytes_read - bytes_before) * share // rows_in_chunk
            batches.append(
                Batch(
                    ids=ids[start:end],
                    documents=documents,
                    bounds=bounds[start : end + 1],
                    rows=made[start:end] if form == "sqlite" else None,
                    end_line=end_line,
                    bytes_read=bytes_read,
                    rows_read=rows + n_invalid,
                    rejects=sorted(invalid[:n_invalid] + missing[:n_missing], key=lambda r: r.line),
                    warnings=block.warnings(start, end),
                    absent=absent,
                )
            )
            invalid, missing, line = invalid[n_invalid:], missing[n_missing:], end_line
        bytes_before = chunk.bytes_read
        yield batches


def _without(block: schema.CleanBlock, rows: np.ndarray) -> schema.CleanBlock:
    """The block less `rows`, which are rejected: each one's document is larger than MongoDB takes."""
    keep = np.ones(len(block), dtype=bool)
    keep[rows] = False
    mask = pa.array(keep)
    too_big = [Reject(int(block.lines[i]), "the movie is larger than MongoDB's 16 MB document limit") for i in rows]
    return schema.CleanBlock(
        {name: values.filter(mask) for name, values in block.columns.items()},
        block.lines[keep],
        sorted(block.rejects + too_big, key=lambda r: r.line),
        {name: bad[keep] for name, bad in block.unreadable.items()},
    )


def _oversized(block: schema.CleanBlock, form: str) -> np.ndarray:
    """The rows whose BSON document would be larger than MongoDB takes (refused on every store alike). Encoded only
    to be sure when the form is not BSON and a row's values come near that size."""
    if not len(block):
        return np.zeros(0, dtype=np.int64)
    if form != "bson":
        near = np.zeros(len(block), dtype=np.int64)
        for name, values in block.columns.items():
            near += len(name) + 16  # a field's type, name, length, terminator; a number's or a date's 8 bytes
            if pa.types.is_list(values.type):  # each item: its type, index, length, terminator
                near += pc.fill_null(pc.list_value_length(values), 0).to_numpy() * 16
                values = pc.binary_join(values, _NOTHING)
            if pa.types.is_string(values.type):
                near += pc.fill_null(pc.binary_length(values), 0).to_numpy()
        if near.max() <= MAX_DOCUMENT_BYTES // 2:
            return np.zeros(0, dtype=np.int64)
    bounds = strings.offsets(encode(block.columns))
    return np.flatnonzero(np.diff(bounds) > MAX_DOCUMENT_BYTES)


def _encoded(block: schema.CleanBlock) -> tuple[list[str], bytes, list[int]]:
    """The block's ids, its documents end to end, and where each one starts (and the last one ends)."""
    if not len(block):
        return [], b"", [0]
    encoded = encode(block.columns)
    return block.columns["_id"].to_pylist(), encoded.buffers()[2].to_pybytes(), strings.offsets(encoded).tolist()


def _count_before(rejects: list[Reject], line: int) -> int:
    n = 0
    while n < len(rejects) and rejects[n].line < line:
        n += 1
    return n
