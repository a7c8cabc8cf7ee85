"""Read a CSV file as Arrow record batches, one PyArrow block at a time, with physical line numbers.

Every column is read as a string (cleaning is the job kinds' business), rows whose field count does not
match the header are set aside rather than failing the file, and each row carries the line it starts on,
so a rejection can point a person at the exact place in the file, embedded newlines and all.
"""
from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from app import strings

_EMPTY = pa.scalar("")  # made once: converting a Python literal per call is surprisingly slow
_NEWLINE = strings.byte_set(b"\n")


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str

    def as_dict(self) -> dict:
        return {"line": self.line, "reason": self.reason}


@dataclass
class Chunk:
    batch: pa.RecordBatch  # good rows, every column a string, names stripped of surrounding spaces
    lines: np.ndarray  # the physical line each good row starts on
    invalid: list[Reject] = field(default_factory=list)  # rows with the wrong number of fields
    bytes_read: int = 0
    next_line: int = 2  # the line the next chunk starts on: where a resumed read picks up


def read_header(path: str) -> list[str]:
    """The column names of the file's first record (a UTF-8 BOM is dropped)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f), [])


def stream(path: str, block_size: int, start_line: int = 2) -> Iterator[Chunk]:
    """Yield the file's rows as Chunks, one per PyArrow block; memory stays bounded by block_size.

    With `start_line`, rows that start before that line are parsed (to find where rows begin) but not
    yielded: how a task resumes from its checkpoint.
    """
    header = read_header(path)
    names = [name.strip() for name in header]  # ` title` is `title`, as the upload check reads it
    pending: list = []  # the rows PyArrow skipped (pyarrow.csv.InvalidRow), not yet placed

    def on_invalid(row) -> str:
        pending.append(row)
        return "skip"

    source = pa.OSFile(path, "rb")
    try:
        reader = _open(source, block_size, header, on_invalid)
    except pa.ArrowInvalid as e:
        source.close()
        if "Empty CSV file" not in str(e):
            raise
        if len(",".join(header).encode()) >= block_size:  # PyArrow says "empty" when the header fills the block
            raise ValueError(f"the header is longer than a read block ({block_size} bytes): "
                             "raise BLOCK_SIZE to read this file") from None
        return  # a header and nothing after it, not even a line end
    next_record, next_line = 2, 2  # record 1 / line 1 is the header
    size, blocks = os.path.getsize(path), 0
    try:
        # When no row of the file is good, PyArrow yields no batch: the skipped rows still need placing.
        for batch in itertools.chain(reader, [None]):
            if batch is None:
                if not pending:
                    break
                batch = pa.RecordBatch.from_pylist([], schema=reader.schema)
            blocks += 1
            n = batch.num_rows
            mine = []
            while pending and pending[0].number <= next_record + n + len(mine):
                mine.append(pending.pop(0))
            lines, invalid, consumed = _place(batch, mine, next_record, next_line, len(header))
            next_record += n + len(mine)
            next_line += consumed
            if next_line <= start_line:
                continue  # done before the checkpoint
            batch = batch.rename_columns(names)
            if lines.size and lines[0] < start_line:
                after = lines >= start_line
                batch, lines = batch.filter(pa.array(after)), lines[after]
            if invalid and invalid[0].line < start_line:
                invalid = [r for r in invalid if r.line >= start_line]
            batch, lines = _drop_blank(batch, lines)
            # PyArrow reads ahead (some 30 MiB), so the file position overstates progress; each batch is
            # one block, less a partial row carried into the next.
            yield Chunk(batch, lines, invalid, min(blocks * block_size, size), next_line)
    finally:
        source.close()


def coalesce(chunks: Iterable[Chunk], rows: int) -> Iterator[Chunk]:
    """Consecutive chunks joined until each holds at least `rows` good rows (the last may hold fewer).

    Reading stays one block at a time; cleaning a few blocks' rows at once pays each compute call's
    fixed cost (some microseconds, a few hundred calls a block) less often.
    """
    pending: list[Chunk] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += chunk.batch.num_rows
        if held >= rows:
            yield _joined(pending)
            pending, held = [], 0
    if pending:
        yield _joined(pending)


def _joined(chunks: list[Chunk]) -> Chunk:
    if len(chunks) == 1:
        return chunks[0]
    batches = [c.batch for c in chunks if c.batch.num_rows]
    batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0] if batches else chunks[-1].batch
    return Chunk(batch, np.concatenate([c.lines for c in chunks]), [r for c in chunks for r in c.invalid],
                 chunks[-1].bytes_read, chunks[-1].next_line)


def _open(source, block_size: int, header: list[str], on_invalid) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        source,
        # use_threads=False: PyArrow then numbers the invalid rows it hands us, which places them exactly.
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False
        ),
    )


def _drop_blank(batch: pa.RecordBatch, lines: np.ndarray):
    """Drop rows whose every field is empty: blank lines (PyArrow reads them as such) carry no data."""
    if batch.num_rows == 0 or batch.num_columns == 0:
        return batch, lines
    blank = pc.equal(batch.column(0), _EMPTY)
    if not pc.any(blank).as_py():
        return batch, lines
    for column in batch.columns[1:]:
        blank = pc.and_(blank, pc.equal(column, _EMPTY))
    keep = pc.invert(blank)
    return batch.filter(keep), lines[keep.to_numpy(zero_copy_only=False)]


def _newlines_per_row(batch: pa.RecordBatch) -> np.ndarray:
    counts = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        counts += strings.count_in(column, _NEWLINE)
    return counts


def _place(batch, invalid_rows, first_record, first_line, n_fields):
    """Work out where every record of a block starts, good rows and skipped rows interleaved."""
    spans = _newlines_per_row(batch) + 1
    if not invalid_rows:
        starts = np.empty(len(spans), dtype=np.int64)
        starts[0:1] = 0
        np.cumsum(spans[:-1], out=starts[1:])
        return starts + first_line, [], int(spans.sum())
    total = len(spans) + len(invalid_rows)
    is_invalid = np.zeros(total, dtype=bool)
    all_spans = np.empty(total, dtype=np.int64)
    positions = [row.number - first_record for row in invalid_rows]
    is_invalid[positions] = True
    all_spans[~is_invalid] = spans
    all_spans[is_invalid] = [row.text.count("\n") + 1 for row in invalid_rows]
    starts = np.concatenate(([0], np.cumsum(all_spans[:-1]))) + first_line
    rejects = []
    for line, row in zip(starts[is_invalid], invalid_rows):
        if row.text.strip():  # a blank line is no record; it only moves the line count
            # PyArrow's count: Python's csv module refuses a field over 128 KiB, which would fail the file.
            rejects.append(Reject(int(line), f"expected {n_fields} fields, found {row.actual_columns}"))
    return starts[~is_invalid], rejects, int(all_spans.sum())
