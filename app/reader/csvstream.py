"""Read a CSV file as Arrow record batches, one PyArrow block at a time, with physical line numbers.

Every column is read as a string (cleaning is the job kinds' business), rows whose field count does not
match the header are set aside rather than failing the file, and each row carries the line it starts on,
so a rejection can point a person at the exact place in the file, embedded newlines and all. A row too big
for a block is read alone, up to MAX_ROW_MB (see `_Reading`), and a quote left open at the end of the file
is reported, not read as one value holding every line after it.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from app.reader import csvscan, strings
from app.reader.errors import straddles
from app.settings import defaults

log = logging.getLogger(__name__)

MIB = 1 << 20
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


def stream(path: str, block_size: int, start_line: int = 2, max_row_mb: int = defaults.MAX_ROW_MB) -> Iterator[Chunk]:
    """Yield the file's rows as Chunks, one per PyArrow block; memory stays bounded by block_size.

    A row larger than a block is read alone, in a chunk of its own, if it is at most `max_row_mb` MiB;
    a larger one is rejected, and the rest of the file is read as before. A file that ends inside a quote
    has its last row rejected, naming the line the quote opened on (PyArrow would make the rest of the file
    one value). With `start_line`, rows that start before that line are parsed (to find where rows begin)
    but not yielded: how a task resumes from its checkpoint.
    """
    header = read_header(path)
    names = [name.strip() for name in header]  # ` title` is `title`, as the upload check reads it
    with _Reading(path, header, block_size, max_row_mb, start_line) as reading:
        for chunk in reading.chunks():
            if chunk.next_line <= start_line:
                continue  # done before the checkpoint
            batch, lines, invalid = chunk.batch.rename_columns(names), chunk.lines, chunk.invalid
            if lines.size and lines[0] < start_line:
                after = lines >= start_line
                batch, lines = batch.filter(pa.array(after)), lines[after]
            if invalid and invalid[0].line < start_line:
                invalid = [r for r in invalid if r.line >= start_line]
            batch, lines = _drop_blank(batch, lines)
            yield Chunk(batch, lines, invalid, chunk.bytes_read, chunk.next_line)


class _Reading:
    """One pass over a file: PyArrow streams it block by block, and a row too big for a block is read alone.

    PyArrow stops at such a row ("straddles two block boundaries"). Its line is known, which `LineStarts`
    turns into a byte offset; `scan_record` finds where it ends; PyArrow parses its bytes alone and then
    goes on, with a new reader, from the row after it.
    """

    def __init__(self, path: str, header: list[str], block_size: int, max_row_mb: int, start_line: int):
        self.path, self.header, self.block_size, self.start_line = path, header, block_size, start_line
        self.max_row_mb = max_row_mb
        self.size = os.path.getsize(path)
        self.file = open(path, "rb")  # for the scans; PyArrow reads through its own handle
        self._lines: csvscan.LineStarts | None = None

    def __enter__(self) -> _Reading:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def chunks(self) -> Iterator[Chunk]:
        offset, line = None, 2  # None: PyArrow reads the header from the start of the file
        while True:
            big = yield from self._segment(offset, line)
            if big is None:
                return
            chunk, offset = self._oversized(big)
            yield chunk
            line = chunk.next_line
            if offset >= self.size:
                return

    @property
    def lines(self) -> csvscan.LineStarts:
        """Where each line starts, counted from the end of the header (line 1, as this module counts it)."""
        if self._lines is None:
            header = csvscan.scan_record(self.file, 0, keep=0)
            self.file.seek(max(header.end - 1, 0))
            line_end = b"\r" if self.file.read(1) == b"\r" else b"\n"  # a lone CR ends lines in old Mac files
            self._lines = csvscan.LineStarts(self.file, 2, header.end, line_end)
        return self._lines

    def _segment(self, offset: int | None, first_line: int):
        """Chunks read by one PyArrow reader from byte `offset` on (None: the file, header and all).

        Returns the line of a row too big for a block, where it had to stop, or None at the end of the file.
        The chunk with the last record is held back until the reader ends: at the end of the file, that
        record may hold a quote never closed, and the last chunk has read the whole file.
        """
        pending: list = []  # the rows PyArrow skipped (pyarrow.csv.InvalidRow), not yet placed
        source = pa.OSFile(self.path, "rb")
        try:
            if offset is not None:
                source.seek(offset)
            try:
                reader = self._open(source, _set_aside(pending), offset is None)
            except pa.ArrowInvalid as e:
                if not straddles(e):
                    raise
                return first_line  # the first row is already too big
            if reader is None:
                return None
            next_record = 2 if offset is None else 1  # record 1 is the header, when PyArrow reads one
            next_line, blocks, too_big = first_line, 0, False
            held: list[Chunk] = []  # the latest chunk with a record in it, and any empty ones after it
            last_text: str | None = None  # the raw text of that record, if PyArrow skipped it
            for batch in _batches(reader, pending):
                if batch is None:
                    too_big = True
                    continue
                blocks += 1
                n = batch.num_rows
                mine: list = []  # of `pending`: the skipped rows that belong before this batch's end
                while pending and pending[0].number <= next_record + n + len(mine):
                    mine.append(pending.pop(0))
                lines, invalid, consumed = _place(batch, mine, next_record, next_line, len(self.header))
                next_record += n + len(mine)
                next_line += consumed
                # PyArrow reads ahead (some 30 MiB), so the file position overstates progress; each batch is
                # one block, less a partial row carried into the next.
                bytes_read = min((offset or 0) + blocks * self.block_size, self.size)
                chunk = Chunk(batch, lines, invalid, bytes_read, next_line)
                if n or mine:
                    yield from held
                    held = [chunk]
                    last_text = mine[-1].text if mine and mine[-1].number == next_record - 1 else None
                else:
                    held.append(chunk)
        finally:
            source.close()
        if too_big:
            yield from held
            return next_line
        if held:
            held[0] = self._closed(held[0], last_text)
            # PyArrow parses the last block with the row left over from the one before: it may count as one.
            held[-1] = replace(held[-1], bytes_read=self.size)
        yield from held
        return None

    def _open(self, source, on_invalid, with_header: bool) -> pacsv.CSVStreamingReader | None:
        """A PyArrow reader of `source`, or None if there is nothing to read."""
        try:
            return pacsv.open_csv(source, **_options(self.block_size, self.header, on_invalid, with_header))
        except pa.ArrowInvalid as e:
            if "Empty CSV file" not in str(e):
                raise
        # PyArrow says "empty" when the header fills the block
        if with_header and len(",".join(self.header).encode()) >= self.block_size:
            raise ValueError(
                f"the header is longer than a read block ({self.block_size} bytes): raise BLOCK_SIZE to read this file"
            ) from None
        return None

    def _oversized(self, line: int) -> tuple[Chunk, int]:
        """The row on `line`, larger than a block: read alone, or rejected if larger than MAX_ROW_MB.

        Returns its chunk, and the byte offset where the next row starts.
        """
        record = csvscan.scan_record(self.file, self.lines.find(line), keep=self.max_row_mb * MIB)
        next_line = line + record.newlines + 1
        self.lines.move(next_line, record.end)
        batch, lines, invalid = self._empty(), np.empty(0, dtype=np.int64), []
        if record.unclosed_quote is not None:
            invalid = [Reject(line, _unclosed(line + record.unclosed_quote))]
        elif record.data is None:
            spans = f", lines {line} to {next_line - 1}" if record.newlines else ""
            invalid = [
                Reject(line, f"the row is larger than MAX_ROW_MB ({self.max_row_mb} MiB): {record.size:,} bytes{spans}")
            ]
        elif line >= self.start_line:  # before it, a resumed read only needs to know where the row ends
            batch, lines, invalid = self._parse(record.data, line)
        log.debug(
            "%s: line %d holds a row of %d bytes, larger than a read block (%d bytes)",
            os.path.basename(self.path),
            line,
            record.size,
            self.block_size,
        )
        return Chunk(batch, lines, invalid, record.end, next_line), record.end

    def _parse(self, data: bytearray, line: int) -> tuple[pa.RecordBatch, np.ndarray, list[Reject]]:
        """One record's bytes, parsed by PyArrow as the rest of the file is, in a block that fits them."""
        skipped: list = []
        options = _options(len(data) + 1, self.header, _set_aside(skipped), with_header=False)
        table = pacsv.read_csv(pa.py_buffer(data), **options)
        if table.num_rows + len(skipped) != 1:  # csvscan cuts records where PyArrow does: tested, but be sure
            raise ValueError(f"line {line}: a row read alone gave {table.num_rows + len(skipped)} rows")
        if not skipped:
            return table.combine_chunks().to_batches()[0], np.array([line], dtype=np.int64), []
        row = skipped[0]
        if not row.text.strip():  # spaces only: no record, as a blank line is none
            return self._empty(), np.empty(0, dtype=np.int64), []
        fields = f"expected {len(self.header)} fields, found {row.actual_columns}"
        return self._empty(), np.empty(0, dtype=np.int64), [Reject(line, fields)]

    def _closed(self, chunk: Chunk, last_text: str | None) -> Chunk:
        """`chunk`, its last row rejected if the file ends inside a quote that row opened: PyArrow then
        reads the rest of the file into that one field, silently."""
        if last_text is not None:  # PyArrow skipped the row: its raw text says whether a quote stays open
            raw = last_text.encode()
            scanner = csvscan.RecordEnd()
            if scanner.feed(raw) is not None or not scanner.unclosed:
                return chunk
            line = chunk.invalid[-1].line
            reason = _unclosed(line + raw.count(b"\n", 0, scanner.quote))
            return replace(chunk, invalid=chunk.invalid[:-1] + [Reject(line, reason)])
        if not len(chunk.lines):
            return chunk
        batch, line = chunk.batch, int(chunk.lines[-1])
        value = batch.column(batch.num_columns - 1)[batch.num_rows - 1].as_py()
        # Cheap first: an unclosed last field runs to the end of the file, so the file ends with it as written.
        written = b'"' + value.encode().replace(b'"', b'""')
        self.file.seek(max(self.size - len(written), 0))
        if self.file.read() != written:
            return chunk
        record = csvscan.scan_record(self.file, self.lines.find(line), keep=0)  # to be sure: from the row's start
        if record.unclosed_quote is None:
            return chunk
        reject = Reject(line, _unclosed(line + record.unclosed_quote))
        return replace(
            chunk, batch=batch.slice(0, batch.num_rows - 1), lines=chunk.lines[:-1], invalid=chunk.invalid + [reject]
        )

    def _empty(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_pylist([], schema=pa.schema([(name, pa.string()) for name in self.header]))


def _unclosed(quote_line: int) -> str:
    return f"unclosed quote: the quote opened on line {quote_line} is never closed, it runs to the end of the file"


def _set_aside(rows: list):
    """A PyArrow invalid-row handler: the row goes to `rows`, to be placed by its number and rejected."""

    def on_invalid(row) -> str:
        rows.append(row)
        return "skip"

    return on_invalid


def _batches(reader: pacsv.CSVStreamingReader, pending: list) -> Iterator[pa.RecordBatch | None]:
    """The reader's batches, None where it stops at a row too big for a block; then, while skipped rows
    are left to place, an empty batch for them (PyArrow yields none for a block without good rows)."""
    try:
        yield from reader
    except pa.ArrowInvalid as e:
        if not straddles(e):
            raise
        yield None
    if pending:
        yield pa.RecordBatch.from_pylist([], schema=reader.schema)


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
    return Chunk(
        batch,
        np.concatenate([c.lines for c in chunks]),
        [r for c in chunks for r in c.invalid],
        chunks[-1].bytes_read,
        chunks[-1].next_line,
    )


def _options(block_size: int, header: list[str], on_invalid, with_header: bool) -> dict:
    """PyArrow's options: every column a string, rows of the wrong width handed to `on_invalid`."""
    return {
        # use_threads=False: PyArrow then numbers the invalid rows it hands us, which places them exactly.
        "read_options": pacsv.ReadOptions(
            block_size=block_size, use_threads=False, column_names=None if with_header else header
        ),
        "parse_options": pacsv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False
        ),
    }


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
            rejects.append(Reject(int(line), f"expected {n_fields} fields, found {row.actual_columns}"))
    return starts[~is_invalid], rejects, int(all_spans.sum())
