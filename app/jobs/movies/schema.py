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

# The header of the real data, in order; `title` is the only column a file must have.
COLUMNS = (
    "budget",
    "homepage",
    "original_language",
    "original_title",
    "overview",
    "release_date",
    "revenue",
    "runtime",
    "status",
    "title",
    "vote_average",
    "vote_count",
    "production_company_id",
    "genre_id",
    "languages",
)
REQUIRED = ("title",)
INT_COLUMNS = ("budget", "revenue", "runtime", "vote_count")
FLOAT_COLUMNS = ("vote_average",)
UNDATED = "undated"
_UNDATED = pa.scalar(UNDATED)
_SLASH = pa.scalar("/")


@dataclass
class CleanBlock:
    """A block's movies as Arrow columns, and what could not be read in them."""

    columns: dict[str, pa.Array]  # the stored fields in document order: `_id`, the file's columns, `year`
    lines: np.ndarray  # the line each movie starts on
    rejects: list[Reject] = field(default_factory=list)  # rows without a title
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


def absent(names: list[str]) -> tuple[str, ...]:
    """The stored fields a file with these columns does not carry: a stored movie keeps its own values of them."""
    missing = tuple(name for name in COLUMNS if name not in names)
    return missing + ("year",) if "release_date" in missing else missing


def clean_block(batch: pa.RecordBatch, lines: np.ndarray) -> CleanBlock:
    """Turn a block of raw string columns into movie fields ready to encode; rows without a title are rejected."""
    title = clean.trimmed(batch.column("title")) if batch.num_rows else pa.array([], pa.string())
    has_title = pc.is_valid(title)
    missing = np.flatnonzero(~has_title.to_numpy(zero_copy_only=False))
    rejects = [Reject(int(lines[i]), "missing title") for i in missing]
    if rejects:
        batch, title, lines = batch.filter(has_title), title.filter(has_title), np.delete(lines, missing)
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
