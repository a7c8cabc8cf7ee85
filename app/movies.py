"""The movie schema: the CSV contract, cleaning a batch into documents, a movie's identity, and queries."""
from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from app import clean
from app.csvstream import Reject

# The header of the real data, in order; `title` is the only column a file must have.
COLUMNS = (
    "budget", "homepage", "original_language", "original_title", "overview", "release_date", "revenue",
    "runtime", "status", "title", "vote_average", "vote_count", "production_company_id", "genre_id",
    "languages",
)
REQUIRED = ("title",)
INT_COLUMNS = ("budget", "revenue", "runtime", "vote_count")
FLOAT_COLUMNS = ("vote_average",)
UNDATED = "undated"
_UNDATED = pa.scalar(UNDATED)
_SLASH = pa.scalar("/")

# API sort keys → document fields; every sort ends on _id so pages never overlap or skip.
SORT_FIELDS = {"release_date": "release_date", "rating": "vote_average", "title": "title"}


@dataclass
class CleanBatch:
    documents: list[dict]
    rejects: list[Reject] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)


def identity(title: pa.Array, release_date: pa.Array) -> pa.Array:
    """A movie's `_id`: `"<YYYY-MM-DD>/<title>"`, or `"undated/<title>"` when it has no date.

    The date part is fixed-width or the word `undated`, so the first `/` always ends it and two
    different (title, date) pairs can never share an id. The title is compared exactly, as written
    (after trimming surrounding spaces): all undated rows with the same title are one movie.
    """
    day = pc.fill_null(pc.strftime(release_date, format="%Y-%m-%d"), _UNDATED)
    return pc.binary_join_element_wise(day, title, _SLASH)


def clean_batch(batch: pa.RecordBatch, lines) -> CleanBatch:
    """Turn a batch of raw string columns into movie documents ready for MongoDB."""
    title = clean.trimmed(batch.column("title"))
    has_title = pc.is_valid(title)
    rejects = [Reject(int(lines[i]), "missing title") for i in pc.indices_nonzero(pc.invert(has_title)).to_pylist()]
    if rejects:
        batch, title = batch.filter(has_title), title.filter(has_title)
    if batch.num_rows == 0:
        return CleanBatch([], rejects)

    names = batch.schema.names
    warnings: dict[str, int] = {}
    columns: dict[str, pa.Array] = {}
    null = pa.nulls(batch.num_rows, pa.string())

    def column(name):
        return batch.column(name) if name in names else null

    for name in COLUMNS + tuple(n for n in names if n not in COLUMNS):
        raw = column(name)
        if name == "title":
            columns[name] = title
            continue
        if name in INT_COLUMNS:
            value, bad = clean.parse_int(raw)
        elif name in FLOAT_COLUMNS:
            value, bad = clean.parse_float(raw)
        elif name == "release_date":
            value, bad = clean.parse_date(raw)
            columns["year"] = pc.year(value)
        elif name == "languages":
            value, bad = clean.parse_languages(raw)
        else:
            value, bad = clean.blank_to_null(raw), 0
        columns[name] = value
        if bad:
            warnings[name] = bad

    columns["_id"] = identity(title, columns["release_date"])
    table = pa.table(columns)
    return CleanBatch(table.to_pylist(), rejects, warnings)


def query(year: int | None, language: str | None) -> dict:
    q = {}
    if year is not None:
        q["year"] = year
    if language is not None:
        q["original_language"] = language
    return q


def sort_spec(sort_by: str, order: int) -> list[tuple[str, int]]:
    return [(SORT_FIELDS[sort_by], order), ("_id", order)]


def index_specs() -> list[list[tuple[str, int]]]:
    """One compound index per (filter combination, sort): equality fields first, then the sort."""
    filters = [(), ("year",), ("original_language",), ("year", "original_language")]
    return [
        [(f, 1) for f in combo] + [(sort_field, 1), ("_id", 1)]
        for combo in filters
        for sort_field in SORT_FIELDS.values()
    ]
