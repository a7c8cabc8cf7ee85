"""The movie schema: the CSV contract, cleaning a block into document fields, and a movie's identity.

How the stored movies are queried, sorted and indexed is the store's: app/store/movies.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.reader import clean
from app.reader.csvstream import Reject
from app.store import movies

# The header of the real data, in order (a stored movie's fields: app/store/movies.py); `title` is the only column a
# file must have.
COLUMNS = movies.COLUMNS
REQUIRED = ("title",)
INT_COLUMNS = ("budget", "revenue", "runtime", "vote_count")
FLOAT_COLUMNS = ("vote_average",)
PARSED_COLUMNS = INT_COLUMNS + FLOAT_COLUMNS + ("release_date",)  # stored as numbers or dates, never as text
# The most UTF-8 bytes each text field may hold (docs/cleaning.md); a row with a longer value is rejected with
# its line, so that no stored movie, and no page of them, grows with what a client chose to send. Generous:
# the real data's longest overview is under 1 KB.
TEXT_MAX_BYTES = {
    "title": 1024,  # after trimming
    "original_title": 1024,
    "overview": 256 * 1024,  # room for rows bigger than a read block, 64 times below MongoDB's 16 MB
    "homepage": 2048,
    "original_language": 64,
    "status": 64,
    "production_company_id": 256,
    "genre_id": 256,
    "languages": 4096,  # the list as written, before it is parsed
}
OTHER_MAX_BYTES = 4096  # a column outside the contract, kept as text
NAME_SHOWN = 64  # characters of a column name quoted in a reject reason
UNDATED = "undated"
_UNDATED = pa.scalar(UNDATED)
_SLASH = pa.scalar("/")


@dataclass
class CleanBlock:
    """A block's movies as Arrow columns, and what could not be read in them."""

    columns: dict[str, pa.Array]  # the stored fields in document order: `_id`, the file's columns, `year`
    lines: np.ndarray  # the line each movie starts on
    rejects: list[Reject] = field(default_factory=list)  # rows without a title, or with a text field too long
    unreadable: dict[str, np.ndarray] = field(default_factory=dict)  # per column: which values became null

    def __len__(self) -> int:
        return len(self.lines)

    def warnings(self, start: int = 0, end: int | None = None) -> dict[str, int]:
        """Per column, how many of movies[start:end] had a value that could not be read."""
        counts = {name: int(mask[start:end].sum()) for name, mask in self.unreadable.items()}
        return {name: count for name, count in counts.items() if count}


def identity(title: pa.Array, release_date: pa.Array) -> pa.Array:
    """A movie's `_id`: `"<YYYY-MM-DD>/<title>"`, or `"undated/<title>"` when it has no date.

    The date part is fixed-width or the word `undated`, so the first `/` always ends it and two
    different (title, date) pairs can never share an id. The title is compared exactly, as written
    (after trimming surrounding spaces): all undated rows with the same title are one movie.
    """
    day = pc.fill_null(clean.format_day(release_date), _UNDATED)
    return pc.binary_join_element_wise(day, title, _SLASH)


def max_bytes(name: str) -> int | None:
    """The most UTF-8 bytes column `name`'s value may hold; None for a column stored as a number or date."""
    return None if name in PARSED_COLUMNS else TEXT_MAX_BYTES.get(name, OTHER_MAX_BYTES)


def _too_long(batch: pa.RecordBatch, title: pa.Array) -> dict[int, str]:
    """Rows with a text value longer than its maximum (max_bytes), each with the reason for its first one."""
    reasons: dict[int, str] = {}
    for name in batch.schema.names:
        limit = max_bytes(name)
        if limit is None:
            continue
        values = title if name == "title" else batch.column(name)
        lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(lengths > limit).tolist():
            shown = name if len(name) <= NAME_SHOWN else name[:NAME_SHOWN] + "…"
            reasons.setdefault(i, f"{shown} is {lengths[i]} bytes, more than its maximum of {limit} (docs/cleaning.md)")
    return reasons


def absent(names: list[str]) -> tuple[str, ...]:
    """The stored fields a file with these columns does not carry: a stored movie keeps its own values of them."""
    missing = tuple(name for name in COLUMNS if name not in names)
    return missing + ("year",) if "release_date" in missing else missing


def clean_block(batch: pa.RecordBatch, lines: np.ndarray) -> CleanBlock:
    """Turn a block of raw string columns into movie fields ready to encode; rows without a title, or with a text
    value longer than its maximum (max_bytes), are rejected."""
    title = clean.trimmed(batch.column("title")) if batch.num_rows else pa.array([], pa.string())
    keep = pc.is_valid(title).to_numpy(zero_copy_only=False)
    reasons = {int(i): "missing title" for i in np.flatnonzero(~keep)}
    for i, reason in _too_long(batch, title).items():
        reasons.setdefault(i, reason)
    rejects = [Reject(int(lines[i]), reason) for i, reason in sorted(reasons.items())]
    if rejects:
        keep[list(reasons)] = False
        mask = pa.array(keep)
        batch, title, lines = batch.filter(mask), title.filter(mask), lines[keep]
    if batch.num_rows == 0:
        return CleanBlock({}, lines, rejects)

    names = batch.schema.names
    unreadable: dict[str, np.ndarray] = {}
    columns: dict[str, pa.Array] = {"_id": None}  # placeholder: `_id` leads the document
    null = pa.nulls(batch.num_rows, pa.string())

    for name in COLUMNS + tuple(n for n in names if n not in COLUMNS):
        raw = batch.column(name) if name in names else null
        bad = None
        if name == "title":
            value = title
        elif name in INT_COLUMNS:
            value, bad = clean.parse_int(raw)
        elif name in FLOAT_COLUMNS:
            value, bad = clean.parse_float(raw)
        elif name == "release_date":
            value, bad = clean.parse_date(raw)
        elif name == "languages":
            value, bad = clean.parse_languages(raw)
        else:
            value = clean.blank_to_null(raw)
        columns[name] = value
        if bad is not None and bad.any():
            unreadable[name] = bad

    columns["year"] = pc.year(columns["release_date"])
    columns["_id"] = identity(title, columns["release_date"])
    return CleanBlock(columns, lines, rejects, unreadable)
