"""The `movies` collection as it is read: the API's filters and sort keys, and the indexes that serve them.

What a stored movie holds, and how a file's rows become one, is the movie schema's (app/jobs/movies/schema.py).
"""

from __future__ import annotations

# API sort keys → document fields; every sort ends on _id so pages never overlap or skip.
SORT_FIELDS = {"release_date": "release_date", "rating": "vote_average", "title": "title"}


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
