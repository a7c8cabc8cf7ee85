"""Aggregate a plays CSV: stream blocks, keep running totals per (song, day), write the sorted result.

Memory grows with the number of distinct (song, day) pairs, not with the file: cleaned rows wait in a
buffer until it holds as many rows as the totals (at least MERGE_ROWS), then both are folded into new
totals with Arrow's hash aggregation. The buffer never outgrows the totals by more than MERGE_ROWS, and
each row is folded in about log2(file rows / MERGE_ROWS) times at most.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from app import csvstream, plays
from app.progress import Progress

log = logging.getLogger(__name__)

MERGE_ROWS = 1_000_000  # rows buffered before the first fold (about 30 MB)
WRITE_ROWS = 65_536  # result rows formatted at a time
PROGRESS_SECONDS = 0.5  # aggregation is fast: report at most this often, and at the end
_LIMIT = 2**63  # totals must stay below this to be exact int64
_NEEDS_QUOTES = r'[",\r\n]'
_QUOTE, _TWO_QUOTES, _EMPTY, _COMMA, _NEWLINE = (pa.scalar(s) for s in ('"', '""', "", ",", "\n"))


class TotalTooLarge(ValueError):
    """A total does not fit in a 64-bit integer."""


class Totals:
    """Running play totals per (song, day)."""

    def __init__(self, merge_rows: int = MERGE_ROWS):
        self.merge_rows = merge_rows
        self.table = plays.SCHEMA.empty_table()
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def add(self, rows: pa.Table) -> None:
        self.buffer.append(rows)
        self.buffered += rows.num_rows
        if self.buffered >= max(self.merge_rows, self.table.num_rows):
            self.fold()

    def fold(self) -> pa.Table:
        """Fold the buffer into the totals; returns the totals (one row per pair, in no set order)."""
        if self.buffer:
            rows = pa.concat_tables([self.table, *self.buffer])
            self.buffer, self.buffered = [], 0
            self.table = _sum(rows)
        return self.table


def _sum(rows: pa.Table) -> pa.Table:
    largest = pc.max(rows.column("plays")).as_py() or 0
    if largest * rows.num_rows >= _LIMIT:  # a sum could overflow, and Arrow's int64 sum wraps silently
        return _sum_wide(rows)
    summed = rows.group_by(["song", "day"]).aggregate([("plays", "sum")])
    return pa.Table.from_arrays(
        [summed.column("song"), summed.column("day"), summed.column("plays_sum")], schema=plays.SCHEMA
    )


def _sum_wide(rows: pa.Table) -> pa.Table:
    """The slow, exact way: sum as 38-digit decimals, then check every total fits in int64."""
    wide = rows.set_column(2, "plays", pc.cast(rows.column("plays"), pa.decimal128(38, 0)))
    summed = wide.group_by(["song", "day"]).aggregate([("plays", "sum")])
    if summed.num_rows and pc.max(summed.column("plays_sum")).as_py() >= _LIMIT:
        raise TotalTooLarge("a total number of plays exceeds 9223372036854775807, the largest 64-bit integer")
    return pa.Table.from_arrays(
        [summed.column("song"), summed.column("day"), pc.cast(summed.column("plays_sum"), pa.int64())],
        schema=plays.SCHEMA,
    )


def write_result(totals: pa.Table, path: str) -> int:
    """Write the totals sorted by song then day as CSV (quoted only where needed); returns the byte count."""
    ordered = totals.sort_by([("song", "ascending"), ("day", "ascending")])
    partial = path + ".part"
    try:
        with open(partial, "wb") as out:
            out.write((",".join(plays.RESULT_COLUMNS) + "\n").encode())
            for start in range(0, ordered.num_rows, WRITE_ROWS):
                out.write(_csv_lines(ordered.slice(start, WRITE_ROWS)))
            size = out.tell()
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return size


def _csv_lines(rows: pa.Table) -> memoryview:
    """The rows as CSV text, built column-wise: no Python object per row."""
    song = rows.column("song").combine_chunks()
    quoted = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(song, '"', '""'), _QUOTE, _EMPTY)
    song = pc.if_else(pc.match_substring_regex(song, _NEEDS_QUOTES), quoted, song)
    day = pc.cast(rows.column("day").combine_chunks(), pa.string())
    total = pc.cast(rows.column("plays").combine_chunks(), pa.string())
    lines = pc.binary_join_element_wise(song, day, total, _EMPTY, _COMMA)  # "song,day,total,"
    lines = pc.binary_replace_slice(lines, -1, 2**31 - 1, "\n")  # that last comma becomes the line end
    return memoryview(lines.buffers()[2])[: _end(lines)]


def _end(strings: pa.Array) -> int:
    """Where the last string ends in the data buffer (the offsets buffer's last entry)."""
    offsets = strings.buffers()[1]
    return pa.Array.from_buffers(pa.int32(), len(strings) + 1, [None, offsets])[-1].as_py()


def aggregate_plays(
    path: str,
    result_path: str,
    *,
    block_size: int,
    max_rejects: int,
    on_progress: Callable[[dict], None] = lambda fields: None,  # totals live in memory: there is no checkpoint
) -> dict:
    """Total the plays of `path` per (song, day) into the CSV `result_path`; returns the final fields."""
    progress = Progress(bytes_total=os.path.getsize(path))
    totals = Totals()
    last_report = time.monotonic()
    for chunk in csvstream.stream(path, block_size):
        rejects = chunk.invalid
        if chunk.batch.num_rows:
            cleaned = plays.clean_batch(chunk.batch, chunk.lines)
            rejects = sorted(rejects + cleaned.rejects, key=lambda r: r.line)
            totals.add(cleaned.table)
        progress.reject(rejects, max_rejects)
        progress.rows_read += chunk.batch.num_rows + len(chunk.invalid)
        progress.bytes_read = chunk.bytes_read
        if time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            on_progress(progress.fields())
    result = totals.fold()
    progress.bytes_read = progress.bytes_total
    fields = progress.fields()
    on_progress(fields)
    size = write_result(result, result_path)
    return {**fields, "groups": result.num_rows, "result_size": size}
