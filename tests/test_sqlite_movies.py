"""The SQLite store's movies (app/store/sqlite/movies.py) against what MongoDB does, on mongomock: the same
batches written by the current `write_movies` and read back by the API's query (routes/movies.py `_find`) give
the same counts, the same documents and the same pages, totals included.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import sys
import threading
import uuid
from datetime import datetime

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from app.api.routes.movies import _find
from app.embedded import embedded_client
from app.jobs.movies.ingest import documents, write_movies
from app.jobs.movies.prepare import prepare
from app.jobs.movies.schema import COLUMNS
from app.store import movies as catalogue
from app.store.serialize import to_json
from app.store.sqlite import SqliteStore
from app.tools.generate import generate_movies
from tests.support.sqlite_stubs import stub_missing_concerns

BLOCK = 64 * 1024
SORTS = [(sort_by, order) for sort_by in catalogue.SORT_FIELDS for order in (1, -1)]


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch):
    stub_missing_concerns(lambda name, module: monkeypatch.setitem(sys.modules, name, module))
    store = SqliteStore(str(tmp_path / "data" / "service.sqlite3"))
    store.setup()
    yield store
    store.close()


@pytest.fixture
def mongo():
    return embedded_client()[f"t_{uuid.uuid4().hex[:12]}"]


def batches(path, batch_size: int = 100) -> list[tuple[list[RawBSONDocument], tuple, list]]:
    """The file's batches as the ingest writes them: (documents, absent, ids)."""
    return [
        (documents(batch), batch.absent, batch.ids)
        for block in prepare(str(path), BLOCK, batch_size)
        for batch in block
        if batch.ids
    ]


def write_both(sqlite_store, mongo, path, batch_size: int = 100) -> list[tuple[int, int]]:
    """Each batch written to both stores; their counts must agree batch by batch. Returns the counts."""
    counts = []
    for docs, absent, ids in batches(path, batch_size):
        expected = write_movies(mongo.movies, docs, 0, absent, ids)
        assert sqlite_store.movies.write(docs, 0, absent, ids) == expected
        counts.append(expected)
    return counts


def mongo_page(mongo, year, language, sort_by, order, skip, limit) -> tuple[list[dict], int]:
    q = {"year": year, "language": language, "sort_by": sort_by, "order": order, "offset": skip, "limit": limit}
    cursor, total = _find(mongo, q)
    return list(cursor), total


def sqlite_page(store, year, language, sort_by, order, skip, limit) -> tuple[list[dict], int]:
    rows, total = store.movies.page(year, language, sort_by, order, skip, limit)
    with rows as found:
        return list(found), total


def as_json(docs: list[dict]) -> str:
    """What the API sends for these movies (Flask sorts keys)."""
    return json.dumps([to_json(doc) for doc in docs], sort_keys=True)


def everything(store) -> dict:
    found, _ = sqlite_page(store, None, None, "title", 1, 0, 10**9)
    return {doc["_id"]: doc for doc in found}


def assert_same_catalogue(sqlite_store, mongo) -> None:
    """Every movie, every count, and pages of every filter × sort, as MongoDB gives them."""
    expected = {doc["_id"]: doc for doc in mongo.movies.find()}
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
                mine = sqlite_page(sqlite_store, year, language, sort_by, order, skip, limit)
                theirs = mongo_page(mongo, year, language, sort_by, order, skip, limit)
                assert mine == theirs, (year, language, sort_by, order, skip, limit)
                assert as_json(mine[0]) == as_json(theirs[0])


def write_csv(path, rows: list[dict], header=COLUMNS) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header, restval="")
        writer.writeheader()
        writer.writerows(rows)


def raw(key, **fields) -> RawBSONDocument:
    return RawBSONDocument(bson.encode({"_id": key, **fields}))


# -- a generated file, as the API reads it ----------------------------------------------------------------


def test_a_generated_file_gives_mongodbs_counts_documents_pages_and_totals(sqlite_store, mongo, tmp_path):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=1500, seed=5)
    counts = write_both(sqlite_store, mongo, path)
    inserted, updated = map(sum, zip(*counts))
    assert inserted == mongo.movies.count_documents({}) > 1300 and updated > 0  # the file has repeats
    assert_same_catalogue(sqlite_store, mongo)


def test_a_replayed_batch_changes_nothing_and_the_same_file_again_inserts_nothing(sqlite_store, mongo, tmp_path):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=600, seed=8)
    conn = sqlite_store.conn
    first = []
    for docs, absent, ids in batches(path):  # each batch twice, as after a crash before its checkpoint
        first.append(write_movies(mongo.movies, docs, 0, absent, ids))
        assert sqlite_store.movies.write(docs, 0, absent, ids) == first[-1]
        before = (conn.total_changes, list(conn.execute("SELECT rowid, * FROM movies ORDER BY rowid")))
        assert sqlite_store.movies.write(docs, 0, absent, ids) == (0, len(ids))
        assert (conn.total_changes, list(conn.execute("SELECT rowid, * FROM movies ORDER BY rowid"))) == before
    again = write_both(sqlite_store, mongo, path)
    assert [i for i, _ in again] == [0] * len(again)
    assert sum(u for _, u in again) == sum(i + u for i, u in first)
    assert_same_catalogue(sqlite_store, mongo)


def test_changed_rows_are_rewritten_and_a_changed_language_moves_the_counts(sqlite_store, mongo, tmp_path):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=400, seed=2)
    write_both(sqlite_store, mongo, path)
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["title"].strip() and r["release_date"][:2] in ("19", "20")]
    changed = rows[:30:3]
    for i, row in enumerate(changed):
        row["overview"], row["vote_average"], row["original_language"] = f"changed {i}", f"{i}.25", "xx"
    later = tmp_path / "later.csv"
    write_csv(later, changed, header=list(changed[0]))
    assert write_both(sqlite_store, mongo, later) == [(0, len(changed))]
    assert sqlite_page(sqlite_store, None, "xx", "title", 1, 0, 100)[1] == len({r["title"] for r in changed})
    assert_same_catalogue(sqlite_store, mongo)


# -- write: the semantics of write_movies -----------------------------------------------------------------


def test_repeats_in_a_batch_the_last_one_wins_and_stored_movies_count_as_updated(sqlite_store, mongo):
    steps = [
        [raw("a", v=1), raw("b", v=1)],
        [raw("c", v=1), raw("a", v=2), raw("c", v=2), raw("b", v=1), raw("a", v=3), raw("c", v=3)],
        [raw("c", v=1), raw("a", v=2), raw("c", v=2), raw("b", v=1), raw("a", v=3), raw("c", v=3)],  # replayed
        [raw("d", v=1), raw("d", v=2)],
    ]
    counts = [(2, 0), (1, 5), (0, 6), (1, 1)]
    for batch, expected in zip(steps, counts):
        assert write_movies(mongo.movies, batch) == expected
        assert sqlite_store.movies.write(batch) == expected
    assert everything(sqlite_store) == {doc["_id"]: doc for doc in mongo.movies.find()}
    assert everything(sqlite_store)["a"] == {"_id": "a", "v": 3}  # no contract field is made up
    assert sqlite_store.movies.write([]) == (0, 0)


def test_a_file_without_some_columns_leaves_stored_movies_their_values_and_gives_new_ones_nulls(
    sqlite_store, mongo, tmp_path
):
    full = tmp_path / "full.csv"
    rows = [
        {"title": "Kept", "release_date": "1999-03-04", "budget": "100", "overview": "old", "languages": "['en']"},
        {"title": "Other", "release_date": "1999-05-06", "budget": "5", "vote_average": "6.5"},
    ]
    write_csv(full, rows)
    write_both(sqlite_store, mongo, full)
    partial = tmp_path / "partial.csv"  # no budget, no languages, no release_date (so no year either)
    write_csv(
        partial,
        [{"title": "Kept", "overview": "new", "director": "X"}, {"title": "New", "overview": "n", "director": "Y"}],
        header=["title", "overview", "director"],
    )
    write_both(sqlite_store, mongo, partial)
    assert_same_catalogue(sqlite_store, mongo)
    kept = everything(sqlite_store)["1999-03-04/Kept"]
    assert (kept["budget"], kept["overview"], kept["languages"], kept["year"]) == (100, "old", ["en"], 1999)
    new = everything(sqlite_store)["undated/New"]
    assert (new["budget"], new["languages"], new["director"], new["year"]) == (None, None, "Y", None)
    # the same file again, and one with the columns of the contract: the extra column is replaced away
    write_both(sqlite_store, mongo, partial)
    write_both(sqlite_store, mongo, full)
    assert_same_catalogue(sqlite_store, mongo)


def test_stored_movies_that_keep_their_fields_are_written_whole_again_only_if_the_file_differs(
    sqlite_store, mongo, tmp_path
):
    path = tmp_path / "a.csv"
    write_csv(
        path,
        [{"title": "A", "release_date": "2001-01-01", "director": "x", "budget": "7"}],
        ["title", "release_date", "director", "budget"],
    )
    write_both(sqlite_store, mongo, path)
    conn = sqlite_store.conn
    changes = conn.total_changes
    write_both(sqlite_store, mongo, path)  # absent fields, nothing new: nothing written
    assert conn.total_changes == changes
    assert_same_catalogue(sqlite_store, mongo)


# -- odd values -------------------------------------------------------------------------------------------


def test_odd_values_of_a_file_read_back_exactly_and_sort_as_on_mongodb(sqlite_store, mongo, tmp_path):
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
    write_both(sqlite_store, mongo, path)
    assert_same_catalogue(sqlite_store, mongo)
    stored = everything(sqlite_store)
    zero = stored["2000-01-01/Zero"]["vote_average"]
    assert zero == 0 and math.copysign(1, zero) == -1
    assert stored["2000-01-01/Zero"]["budget"] == 999999999999999999
    assert stored["0001-01-01/Émile 🎬"]["release_date"] == datetime(1, 1, 1)
    assert stored["9999-12-31/émile"]["languages"] == ["", "Français"]
    assert type(stored["9999-12-31/émile"]["vote_average"]) is float


def test_documents_of_any_shape_read_back_equal_to_what_mongodb_returns(sqlite_store, mongo):
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
    assert sqlite_store.movies.write(docs) == write_movies(mongo.movies, docs) == (len(docs), 0)
    given = {bson.decode(d.raw)["_id"]: bson.decode(d.raw) for d in docs}
    got, theirs = everything(sqlite_store), {doc["_id"]: doc for doc in mongo.movies.find()}
    nan = [d.pop("nan") for d in (got, theirs, given)]
    assert got == theirs == given
    assert all(math.isnan(d.pop("vote_average")) for d in nan) and nan[0] == nan[1] == nan[2]
    assert everything(sqlite_store)["bool"]["languages"] == [True, 1]
    assert [type(v) for v in everything(sqlite_store)["bool"]["languages"]] == [bool, int]
    assert sqlite_store.movies.write(docs) == (0, len(docs))  # and replayed, nothing differs
    with pytest.raises(TypeError):
        sqlite_store.movies.write([RawBSONDocument(bson.encode({"_id": 1, "title": "x"}))])


# -- reading ----------------------------------------------------------------------------------------------


def test_nulls_sort_lowest_and_ties_follow_the_id_in_either_order(sqlite_store, mongo):
    docs = [
        raw(f"{i:03d}/{t}", title=t, vote_average=v, release_date=None, year=None, original_language="en")
        for i, (t, v) in enumerate([("b", None), ("a", 5.0), ("b", 5.0), ("a", None), ("c", 1.0), ("a", 5.0)])
    ]
    sqlite_store.movies.write(docs[::-1])
    write_movies(mongo.movies, docs[::-1])
    for sort_by, order in SORTS:
        for skip in range(7):
            mine = sqlite_page(sqlite_store, None, "en", sort_by, order, skip, 2)
            assert mine == mongo_page(mongo, None, "en", sort_by, order, skip, 2)
    ratings, _ = sqlite_page(sqlite_store, None, None, "rating", 1, 0, 10)
    assert [d["_id"] for d in ratings] == ["000/b", "003/a", "004/c", "001/a", "002/b", "005/a"]


def test_every_filter_and_sort_is_served_by_its_index_never_by_a_sort(sqlite_store):
    """What keeps pages fast at millions of movies: each query walks one index, with no sort step."""
    for year in (None, 1995):
        for language in (None, "en"):
            for sort_by, order in SORTS:
                rows, _ = sqlite_store.movies.page(year, language, sort_by, order, 0, 10)
                with rows:
                    pass
    conn = sqlite_store.conn
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert len({i for i in indexes if i.startswith("movies_by_")}) == 12
    for cols in catalogue.index_specs():
        filters = [name for name, _ in cols[:-2]]
        field = cols[-2][0]
        where = " AND ".join(f"{name} = ?" for name in filters)
        for direction in ("ASC", "DESC"):
            sql = (
                "EXPLAIN QUERY PLAN SELECT * FROM movies"
                + (f" WHERE {where}" if where else "")
                + f" ORDER BY {field} {direction}, _id {direction} LIMIT 10"
            )
            plan = " ".join(str(r[-1]) for r in conn.execute(sql, [1] * len(filters)))
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


def test_two_writers_at_once_count_every_movie_once(sqlite_store, monkeypatch):
    """Two uploads of overlapping movies at the same time (each its own connection): every movie is
    inserted by exactly one of them, whichever comes first, and the counts add up."""
    other = SqliteStore(sqlite_store.path)
    results = {}

    def upload(store, name, start):
        inserted = updated = 0
        for b in range(20):
            batch = [raw(f"m{start + b * 50 + i}", title="t", year=2000 + i % 3) for i in range(50)]
            i, u = store.movies.write(batch)
            inserted, updated = inserted + i, updated + u
        results[name] = (inserted, updated)

    threads = [
        threading.Thread(target=upload, args=(sqlite_store, "a", 0)),
        threading.Thread(target=upload, args=(other, "b", 500)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    distinct = 1500  # m0..m1499: m500..m999 written by both
    assert results["a"][0] + results["b"][0] == distinct == sqlite_store.movies.count()
    assert results["a"][1] + results["b"][1] == 2000 - distinct
    assert sum(sqlite_page(sqlite_store, y, None, "title", 1, 0, 1)[1] for y in (2000, 2001, 2002)) == distinct
