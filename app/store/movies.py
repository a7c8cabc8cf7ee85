"""The catalogue as every store keeps it: a movie's fields, the API's filters and sort keys, and the indexes that
serve them. How a file's rows become a movie (cleaning, identity) is the movie schema's (app/jobs/movies/schema.py).
"""

from __future__ import annotations

# The fields of a stored movie, in order: the movie CSV contract's columns (app/jobs/movies/schema.py reads files
# by them), then `year`, from release_date. A file's other columns are kept too, as text.
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
FIELDS = COLUMNS + ("year",)

# API sort keys → document fields; every sort ends on _id so pages never overlap or skip.
SORT_FIELDS = {"release_date": "release_date", "rating": "vote_average", "title": "title"}


def query(year: int | None, language: str | None) -> dict:
    q: dict[str, int | str] = {}
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
