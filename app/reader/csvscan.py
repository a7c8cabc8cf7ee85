"""Where CSV records start and end in a file's bytes, for the rows PyArrow cannot read in one block.

PyArrow gives no byte offsets, only rows. When a row is larger than a read block, `app.reader.csvstream` knows
the line it starts on; `LineStarts` turns that line into a byte offset (by counting line ends, at memory
speed), and `scan_record` reads that one record from there, by the rules of PyArrow's own lexer, to find
where it ends, whether a quote in it is never closed, and (up to a limit) its bytes. Memory stays
bounded by the piece size and that limit, whatever the size of the record or of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

PIECE = 1 << 20  # bytes read at a time

_FIELD_START, _IN_FIELD, _IN_QUOTES, _QUOTE_IN_QUOTES, _AFTER_CR = range(5)
_QUOTE, _LF = 0x22, 0x0A
# In an unquoted field only a line end, or a comma that opens a quoted field, changes the state: one
# search skips every other byte, so a plain field costs nothing per byte in Python.
_EVENT = re.compile(rb'[\r\n]|,"|,\Z')


class RecordEnd:
    """Finds where one record ends, fed its bytes piece by piece, as PyArrow's lexer reads them.

    A quote opens a quoted field only at the start of a field; inside one, `""` is a quote; after the
    closing quote the field goes on, unquoted, to the next comma or line end. A record ends at LF, CR LF
    or CR outside quotes, or at the end of the file.
    """

    def __init__(self):
        self.state = _FIELD_START
        self.seen = 0  # bytes consumed so far (up to and with the line end, once found)
        self.quote = -1  # where (from the record's start) the current quoted field's opening quote is
        self.ends_in_lf = False  # the line end found is LF or CR LF (not counted as a line inside the record)

    @property
    def unclosed(self) -> bool:
        """At the end of the file: the last quoted field was never closed."""
        return self.state == _IN_QUOTES

    def feed(self, piece: bytes) -> int | None:
        """Where in `piece` the record ends (just past its line end), or None if it goes on."""
        pos, n, base, state = 0, len(piece), self.seen, self.state
        while pos < n:
            if state == _FIELD_START:
                if piece[pos] == _QUOTE:
                    self.quote, pos, state = base + pos, pos + 1, _IN_QUOTES
                else:
                    state = _IN_FIELD
            elif state == _IN_FIELD:
                found = _EVENT.search(piece, pos)
                if found is None:
                    pos = n
                    break
                pos = found.end()
                char = piece[found.start()]
                if char == _LF:
                    return self._ended(base, pos, lf=True)
                if char == 0x0D:
                    state = _AFTER_CR
                elif pos - found.start() == 2:  # `,"`: a quoted field opens
                    self.quote, state = base + pos - 1, _IN_QUOTES
                else:  # a comma at the end of the piece: the next piece starts a field
                    state = _FIELD_START
            elif state == _IN_QUOTES:
                at = piece.find(b'"', pos)
                if at < 0:
                    pos = n
                    break
                pos, state = at + 1, _QUOTE_IN_QUOTES
            elif state == _QUOTE_IN_QUOTES:
                if piece[pos] == _QUOTE:  # a doubled quote: still quoted
                    pos, state = pos + 1, _IN_QUOTES
                else:
                    state = _IN_FIELD
            else:  # _AFTER_CR: CR LF is one line end, a lone CR another
                lf = piece[pos] == _LF
                return self._ended(base, pos + lf, lf=lf)
        self.state, self.seen = state, base + n
        return None

    def _ended(self, base: int, pos: int, lf: bool) -> int:
        self.seen, self.ends_in_lf = base + pos, lf
        return pos


@dataclass(frozen=True)
class Record:
    """One record of a file, as `scan_record` found it."""

    start: int
    end: int  # just past its line end, or the end of the file
    data: bytearray | None  # its bytes, line end included; None if there are more than the limit
    newlines: int  # LF bytes inside it (its own line end not counted): the record spans newlines + 1 lines
    unclosed_quote: int | None  # LF bytes before the quote that is never closed; None if every quote closes

    @property
    def size(self) -> int:
        return self.end - self.start


def scan_record(file: BinaryIO, start: int, keep: int) -> Record:
    """The record that starts at byte `start`, its bytes kept only if it is at most `keep` bytes long."""
    file.seek(start)
    data: bytearray | None = bytearray()
    scanner, newlines, quote_newlines, stop = RecordEnd(), 0, 0, None
    while stop is None and (piece := file.read(PIECE)):
        before, quote = scanner.seen, scanner.quote
        stop = scanner.feed(piece)
        end = len(piece) if stop is None else stop
        if scanner.quote != quote:  # a quoted field opened in this piece: note on which line
            quote_newlines = newlines + piece.count(b"\n", 0, scanner.quote - before)
        newlines += piece.count(b"\n", 0, end)
        if data is not None and len(data) + end > keep:
            data = None  # too big to keep: only its end is still wanted
        elif data is not None:
            data += memoryview(piece)[:end]
    if scanner.ends_in_lf:
        newlines -= 1
    unclosed = quote_newlines if stop is None and scanner.unclosed else None
    return Record(start, start + scanner.seen, data, newlines, unclosed)


class LineStarts:
    """The byte offset where a line starts, counted forward from the last line found: one read of the
    file, at most, however many lines are asked for (in increasing order)."""

    def __init__(self, file: BinaryIO, line: int, offset: int, line_end: bytes = b"\n"):
        self.file, self.line, self.offset = file, line, offset
        self.line_end = line_end  # what ends a line: LF (also for CR LF files), or CR in an old Mac file

    def find(self, line: int) -> int:
        if line < self.line:
            raise ValueError(f"line {line} is before line {self.line}, the last found")
        need, offset = line - self.line, self.offset
        self.file.seek(offset)
        while need:
            piece = self.file.read(PIECE)
            if not piece:
                raise ValueError(f"the file has no line {line}")
            count = piece.count(self.line_end)
            if count < need:
                need, offset = need - count, offset + len(piece)
                continue
            ends = np.flatnonzero(np.frombuffer(piece, dtype=np.uint8) == self.line_end[0])
            offset, need = offset + int(ends[need - 1]) + 1, 0
        self.move(line, offset)
        return offset

    def move(self, line: int, offset: int) -> None:
        """Line `line` starts at `offset` (known otherwise): later counts start there."""
        self.line, self.offset = line, offset
