"""The SQLite store's own matters for movies (app/store/sqlite/movies.py): odd values and documents of any shape
read back as MongoDB returns them (the same batches written to mongomock by `write_movies` and read back by the
API's query give the same counts, documents and pages, totals included), each filter × sort served by an index,
typed columns in the file, and a movie the file leaves unchanged not written again.

What every store must do with movies (counts, repeats, missing columns, pages, racing writers):
tests/test_store_contract.py.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from datetime import datetime

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from app.api.routes.movies import _find
from app.jobs.movies.ingest import documents
from app.jobs.movies.prepare import prepare
from app.jobs.movies.schema import COLUMNS
from app.store import movies as catalogue
from app.store.mongo.movies import write_movies
from app.store.serialize import to_json

pytestmark = pytest.mark.sqlite

BLOCK = 64 * 1024
SORTS = [(sort_by, order) for sort_by in catalogue.SORT_FIELDS for order in (1, -1)]


def batches(path, batch_size: int = 100) -> list[tuple[list[RawBSONDocument], tuple, list]]:
    """The file's batches as the ingest writes them: (documents, absent, ids)."""
    return [
        (documents(batch), batch.absent, batch.ids)
        for block in prepare(str(path), BLOCK, batch_size)
        for batch in block
        if batch.ids
    ]


def write_both(sqlite_store, db, path, batch_size: int = 100) -> list[tuple[int, int]]:
    """Each batch written to the SQLite store and to mongomock; their counts must agree batch by batch; the counts."""
    counts = []
    for docs, absent, ids in batches(path, batch_size):
        expected = write_movies(db.movies, docs, 0, absent, ids)
        assert sqlite_store.movies.write(docs, 0, absent, ids) == expected
        counts.append(expected)
    return counts


def page_of(store, year, language, sort_by, order, skip, limit) -> tuple[list[dict], int]:
    """The page the API's query reads from `store` (the SQLite store, or a mongomock Database), and the total."""
    q = {"year": year, "language": language, "sort_by": sort_by, "order": order, "offset": skip, "limit": limit}
    rows, total = _find(store, q)
    with rows as found:
        return list(found), total


def as_json(docs: list[dict]) -> str:
    """What the API sends for these movies (Flask sorts keys)."""
    return json.dumps([to_json(doc) for doc in docs], sort_keys=True)


def everything(store) -> dict:
    found, _ = page_of(store, None, None, "title", 1, 0, 10**9)
    return {doc["_id"]: doc for doc in found}


def assert_same_catalogue(sqlite_store, db) -> None:
    """Every movie, every count, and pages of every filter × sort, as MongoDB gives them."""
    expected = {doc["_id"]: doc for doc in db.movies.find()}
    assert everything(sqlite_store) == expected
    assert sqlite_store.movies.count() == len(expected)
    years = sorted({d.get("year") for d in expected.values() if type(d.get("year")) is int}) or [2000]
    languages = sorted({d.get("original_language") for d in expected.values() if d.get("original_language")})
    languages = languages or ["en"]
    filters = [(None, None), (years[len(years) // 2], None), (None, languages[0]), (None, "zz")]
    filters.append((years[len(years) // 2], languages[0]))
    for year, language in filters:
        for sort_by, order in SORTS:
            for skip, limit in ((0, 10), (7, 25), (0, 10**6), (10**6, 10)):
                mine = page_of(sqlite_store, year, language, sort_by, order, skip, limit)
                theirs = page_of(db, year, language, sort_by, order, skip, limit)
                assert mine == theirs, (year, language, sort_by, order, skip, limit)
                assert as_json(mine[0]) == as_json(theirs[0])


def write_csv(path, rows: list[dict], header=COLUMNS) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def raw(key, **fields) -> RawBSONDocument:
    return RawBSONDocument(bson.encode({"_id": key, **fields}))


# -- write ------------------------------------------------------------------------------------------------


def test_a_file_lacking_columns_again_writes_nothing(sqlite_store, db, tmp_path):
    """The SQLite store compares even a movie given only some fields with the stored one, and writes nothing when
    it is unchanged (the MongoDB store sends such a movie's `$set` every time; for whole movies every store writes
    nothing: test_store_contract's test_a_stored_movie_is_not_rewritten_when_the_file_has_it_unchanged)."""
    path = tmp_path / "a.csv"
    write_csv(
        path,
        [{"title": "A", "release_date": "2001-01-01", "director": "x", "budget": "7"}],
        ["title", "release_date", "director", "budget"],
    )
    write_both(sqlite_store, db, path)
    conn = sqlite_store.conn
    changes = conn.total_changes
    write_both(sqlite_store, db, path)  # absent fields, nothing new: nothing written
    assert conn.total_changes == changes
    assert_same_catalogue(sqlite_store, db)


# -- odd values -------------------------------------------------------------------------------------------


def test_odd_values_of_a_file_read_back_exactly_and_sort_as_on_mongodb(sqlite_store, db, tmp_path):
    rows = [
        {"title": "Zero", "release_date": "2000-01-01", "vote_average": "-0", "budget": "999999999999999999"},
        {"title": "Zéro", "release_date": "2000-01-01", "vote_average": "0", "revenue": "-999999999999999999"},
        {"title": "Émile 🎬", "release_date": "0001-01-01", "vote_average": "7.0", "languages": "[]"},
        {"title": "émile", "release_date": "9999-12-31", "vote_average": "7", "languages": "['', 'Français']"},
        {"title": "Undated", "vote_average": "1e308", "runtime": "2147483648", "original_language": "en"},
        {"title": "undated", "vote_average": "5e-324", "runtime": "-2147483649", "original_language": "en"},
        {"title": "Tie", "release_date": "1990-01-01", "vote_average": "7.0", "original_language": "en"},
        {"title": "Tie", "release_date": "1990-01-02", "vote_average": "7.0", "original_language": "en"},
        {"title": "Tie", "vote_average": "", "original_language": "en", "homepage": "  "},
        {"title": "a\u00a0b", "release_date": "1/2/1990", "vote_average": "bad", "overview": '"quoted"\nline'},
    ]
    path = tmp_path / "odd.csv"
    write_csv(path, rows)
    write_both(sqlite_store, db, path)
    assert_same_catalogue(sqlite_store, db)
    stored = everything(sqlite_store)
    zero = stored["2000-01-01/Zero"]["vote_average"]
    assert zero == 0 and math.copysign(1, zero) == -1
    assert stored["2000-01-01/Zero"]["budget"] == 999999999999999999
    assert stored["0001-01-01/Émile 🎬"]["release_date"] == datetime(1, 1, 1)
    assert stored["9999-12-31/émile"]["languages"] == ["", "Français"]
    assert type(stored["9999-12-31/émile"]["vote_average"]) is float


def test_documents_of_any_shape_read_back_equal_to_what_mongodb_returns(sqlite_store, db):
    """Not what a file makes, but what the interface takes: NaN, fields of another type, missing fields,
    lists of anything, extra fields of any BSON type."""
    docs = [
        raw("nan", title="N", vote_average=float("nan"), year=2000),
        raw("inf", title="I", vote_average=float("-inf"), languages=[1, None, "x", [2]]),
        raw("types", title=5, budget="lots", release_date="soon", year=1.5, languages="en", vote_average=3),
        raw("extras", title="E", when=datetime(2001, 2, 3, 4, 5, 6, 7000), n=2**40, flag=True, f=1.5, d={"a": [1]}),
        raw("nested", title="L", languages=[datetime(2000, 1, 1)], extra="x", odd=b"\x00"),
        raw("time", title="T", release_date=datetime(2000, 1, 2, 3, 4, 5), year=2000),
        raw("bool", title="B", languages=[True, 1]),
    ]
    assert sqlite_store.movies.write(docs) == write_movies(db.movies, docs) == (len(docs), 0)
    given = {bson.decode(d.raw)["_id"]: bson.decode(d.raw) for d in docs}
    got, theirs = everything(sqlite_store), {doc["_id"]: doc for doc in db.movies.find()}
    nan = [d.pop("nan") for d in (got, theirs, given)]
    assert got == theirs == given
    assert all(math.isnan(d.pop("vote_average")) for d in nan) and nan[0] == nan[1] == nan[2]
    assert everything(sqlite_store)["bool"]["languages"] == [True, 1]
    assert [type(v) for v in everything(sqlite_store)["bool"]["languages"]] == [bool, int]
    assert sqlite_store.movies.write(docs) == (0, len(docs))  # and replayed, nothing differs
    with pytest.raises(TypeError):
        sqlite_store.movies.write([RawBSONDocument(bson.encode({"_id": 1, "title": "x"}))])


# -- reading ----------------------------------------------------------------------------------------------


def test_every_filter_and_sort_is_served_by_its_index_never_by_a_sort(sqlite_store):
    """What keeps pages fast at millions of movies: each query walks one index, with no sort step (a year and a
    language: the year's index, which holds the language after `_id`)."""
    conn = sqlite_store.conn
    asked: list[str] = []
    conn.set_trace_callback(asked.append)
    for year in (None, 1995):
        for language in (None, "en"):
            for sort_by, order in SORTS:
                rows, _ = sqlite_store.movies.page(year, language, sort_by, order, 0, 10)
                with rows:
                    pass
    conn.set_trace_callback(None)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert len({i for i in indexes if i.startswith("movies_by_")}) == 9
    pages = [sql for sql in asked if sql.startswith("SELECT") and " ORDER BY " in sql]
    assert len(pages) == 4 * len(SORTS)
    for sql in pages:
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "TEMP B-TREE" not in plan and "INDEX movies_by_" in plan, (sql, plan)


def test_the_file_holds_typed_columns_a_user_can_query(sqlite_store, tmp_path):
    path = tmp_path / "m.csv"
    write_csv(
        path,
        [
            {"title": "A", "release_date": "1995-10-20", "vote_average": "7", "budget": "3", "languages": "[]"},
            {"title": "B", "director": "x"},
        ],
        header=list(COLUMNS) + ["director"],
    )
    for docs, absent, ids in batches(path):
        sqlite_store.movies.write(docs, 0, absent, ids)
    with sqlite3.connect(sqlite_store.path) as conn:
        rows = conn.execute(
            "SELECT title, typeof(vote_average), vote_average, release_date, year, typeof(budget), languages, extra"
            " FROM movies ORDER BY title"
        ).fetchall()
    assert rows == [
        ("A", "real", 7.0, "1995-10-20", 1995, "integer", "[]", '{"director":null}'),
        ("B", "null", None, None, None, "null", None, '{"director":"x"}'),
    ]
