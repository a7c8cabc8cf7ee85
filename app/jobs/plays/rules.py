"""The play-count job's rules: the columns it reads, what makes a row valid, and how the result looks.

A row is (song, date, plays). The song is trimmed and must not be empty; the date is `YYYY-MM-DD` or
`YYYYMMDD` and a real calendar day; the play count is a non-negative integer that fits in 64 bits.
Any other row is rejected with its line and the reason, and the rest of the file goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.reader.clean import EMPTY, YEAR_ONE, keep
from app.reader.csvstream import Reject

COLUMNS = ("Song", "Date", "Number of Plays")
RESULT_COLUMNS = ("Song", "Date", "Total Number of Plays for Date")

_DASHED = r"^\d{4}-\d{2}-\d{2}$"
_COMPACT = r"^\d{8}$"
_DIGITS = r"^\d{1,19}$"
_INT64_MAX = str(2**63 - 1)  # 19 digits: a 19-digit count fits if it sorts at or below this
ZERO = pa.scalar("0")
DASH = pa.scalar("-")
INT64_MAX = pa.scalar(_INT64_MAX)
NINETEEN = pa.scalar(19, pa.int32())


@dataclass
class CleanPlays:
    song: pa.Array  # trimmed song names of the valid rows
    day: pa.Array  # date32
    plays: pa.Array  # int64
    rejects: list[Reject] = field(default_factory=list)


def fits(header: list[str]) -> bool:
    """Is this a plays file? The three columns, in any order, and nothing else."""
    return len(header) == len(COLUMNS) and set(header) == set(COLUMNS)


def parse_day(values: pa.Array) -> pa.Array:
    """`YYYY-MM-DD` or `YYYYMMDD` to date32; anything else, or an impossible day (2021-02-29), to null."""
    text = pc.utf8_trim_whitespace(values)
    compact = pc.match_substring_regex(text, _COMPACT)
    dashed = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(text, 0, 4),
        pc.utf8_slice_codeunits(text, 4, 6),
        pc.utf8_slice_codeunits(text, 6, 8),
        DASH,
    )
    text = pc.if_else(compact, dashed, text)
    text = keep(pc.match_substring_regex(text, _DASHED), text)
    stamp = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2020-02-30 over to March; a round trip catches that.
    real = pc.and_(pc.equal(pc.strftime(stamp, format="%Y-%m-%d"), text), pc.greater_equal(pc.year(stamp), YEAR_ONE))
    return pc.cast(keep(real, stamp), pa.date32())


def parse_count(values: pa.Array) -> pa.Array:
    """Non-negative whole numbers up to 2**63 - 1 to int64 (leading zeros allowed); anything else to null."""
    written = pc.utf8_trim_whitespace(values)
    text = pc.utf8_ltrim(written, characters="0")
    text = pc.if_else(pc.and_(pc.equal(text, EMPTY), pc.not_equal(written, EMPTY)), ZERO, text)  # "000" is 0
    digits = pc.match_substring_regex(text, _DIGITS)
    in_range = pc.or_(pc.less(pc.utf8_length(text), NINETEEN), pc.less_equal(text, INT64_MAX))
    return pc.cast(keep(pc.and_(digits, in_range), text), pa.int64())


def by_value(values: pa.Array, parse) -> pa.Array:
    """parse(values), computed once per distinct value: a block holds few distinct dates or counts."""
    encoded = pc.dictionary_encode(values)
    return pc.take(parse(encoded.dictionary), encoded.indices)


def clean_batch(batch: pa.RecordBatch, lines: np.ndarray) -> CleanPlays:
    """The valid rows' (song, day, plays); the others as rejects with line and reason."""
    song = by_value(batch.column("Song"), pc.utf8_trim_whitespace)
    day = by_value(batch.column("Date"), parse_day)
    plays = by_value(batch.column("Number of Plays"), parse_count)
    has_song = pc.not_equal(song, EMPTY)
    good = pc.and_(pc.and_(has_song, pc.is_valid(day)), pc.is_valid(plays))
    if pc.all(good).as_py():
        return CleanPlays(song, day, plays)
    good_np = good.to_numpy(zero_copy_only=False)
    rejects = []
    for i in np.flatnonzero(~good_np):
        if not has_song[i].as_py():
            reason = "missing song"
        elif not day[i].is_valid:
            reason = f"bad date {_shown(batch.column('Date')[i])}: expected YYYY-MM-DD or YYYYMMDD"
        else:
            reason = (
                f"bad play count {_shown(batch.column('Number of Plays')[i])}: "
                "expected a whole number from 0 to 9223372036854775807"
            )
        rejects.append(Reject(int(lines[i]), reason))
    return CleanPlays(song.filter(good), day.filter(good), plays.filter(good), rejects)


def _shown(value: pa.Scalar, limit: int = 40) -> str:
    """A value as a reject reason quotes it: short, so a task record stays small whatever the file holds."""
    text = value.as_py()
    return repr(text if len(text) <= limit else text[:limit] + "…")
