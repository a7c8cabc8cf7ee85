"""The store contract (app/store/interface.py): every test through `store` runs on each implementation, the
SQLite store (the embedded default, a file of its own), and the MongoDB store over mongomock (its fast test
double) and over FerretDB (a real MongoDB-compatible server). They reach the store only as the service does:
`store.movies`, `store.tasks`, `store.keys`, `store.workers`, app.tasks, the ingest, the API's query and the app.

Time is a clock the test moves (tests/support/clock.py): a lease runs out because the clock passed it.

Tests about MongoDB itself (its indexes, its errors' details, its commands, what the stand-in does otherwise)
take `mongo_db`, the Database on mongomock and on FerretDB. Where the two disagree the code follows the real
server; each such case is a test named `test_mongomock_differs_...` (or `..._ferretdb_differs_...` where
FerretDB is the odd one out next to MongoDB) that pins what the real server does, and the stand-in's behaviour
where it matters. What a user relies on in such a test has a twin through `store`.

The SQLite store's own matters (a busy file, processes racing on one file, reopening it, odd values read back
as MongoDB returns them): tests/test_sqlite_records.py and tests/test_sqlite_movies.py.
"""

from __future__ import annotations

import csv
import threading
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta

import bson
import fakeredis
import pymongo
import pytest
from bson import ObjectId
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError

from app import create_app, tasks
from app.api.routes.movies import find_movies
from app.jobs.movies.ingest import ingest_movies
from app.store import mongo, movies
from app.store.errors import ERRORS
from app.store.mongo import MongoStore
from app.store.mongo import movies as mongo_movies
from app.store.mongo.movies import write_movies
from app.store.serialize import to_json
from app.store.sqlite import SqliteStore
from moviecat.generate import generate_movies
from tests.conftest import RecordingProducer
from tests.support import free_port
from tests.support.auth import signed_in
from tests.support.clock import START
from tests.support.mongomock_db import mongomock_client
from tests.support.records import key, new_task, outcome
from tests.support.reference import COLUMNS, load

LEASE = 60
BLOCK = 64 * 1024
BATCH = 50  # FerretDB 1.24 never answers an update command of 100 or more upserts (see the report)


def is_real(db) -> bool:
    """A Database of a real server (FerretDB), not mongomock's."""
    return isinstance(db.client, pymongo.MongoClient)


def keeps_field_order(store) -> bool:
    """SQLite and a real server return `_id` first; mongomock keeps the order the caller's dict had."""
    return store.name == "sqlite" or is_real(store.db)


@contextmanager
def another_worker(store):
    """The same store as another worker opens it: SQLite, the same file; FerretDB, a client of its own.
    mongomock, in-memory per client (and not thread safe), can only share its one client."""
    if store.name == "sqlite":
        other = SqliteStore(store.path)
        try:
            yield other
        finally:
            other.close()
    elif is_real(store.db):
        host, port = store.db.client.address
        with pymongo.MongoClient(host, port, serverSelectionTimeoutMS=10_000) as client:
            yield MongoStore(client[store.db.name])
    else:
        yield store


def raw(key, **fields) -> RawBSONDocument:
    return RawBSONDocument(bson.encode({"_id": key, **fields}))


def is_mongomock(store) -> bool:
    return store.name == "mongodb" and not is_real(store.db)


def race(store, count: int, work) -> list:
    """`work(name, store)` in `count` threads at once, each a worker of its own (another_worker); the errors.
    mongomock is not thread safe: there the threads take turns, and only the bookkeeping is checked."""
    errors, start = [], threading.Barrier(count)
    turns = threading.Lock() if is_mongomock(store) else nullcontext()

    def run(name: str):
        try:
            with another_worker(store) as mine:
                start.wait()
                with turns:
                    work(name, mine)
        except Exception as e:  # pragma: no cover - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(1, count + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def stored(store) -> dict:
    """Every stored movie, as the store reads it back."""
    rows, _ = store.movies.page(None, None, "title", 1, 0, 10**9)
    with rows as found:
        return {doc["_id"]: doc for doc in found}


def as_bson(doc) -> bytes:
    """A movie's fields, values and types, as BSON; its fields in name order, as the API sends them (the SQLite
    store reads the contract's fields back before any other, whatever order they were written in)."""
    doc = bson.decode(doc.raw) if isinstance(doc, RawBSONDocument) else doc
    return bson.encode(dict(sorted(doc.items())))


def stored_bytes(store) -> dict:
    """Every stored movie as BSON (as_bson)."""
    return {key: as_bson(doc) for key, doc in stored(store).items()}


def given_bytes(documents: list[RawBSONDocument]) -> dict:
    """What stored_bytes gives when each of these is stored (the last of a repeated `_id`)."""
    return {doc["_id"]: as_bson(doc) for doc in documents}


def ingest(path, store, **kw) -> dict:
    return ingest_movies(str(path), store.movies, block_size=BLOCK, batch_size=BATCH, max_rejects=10_000, **kw)


def total(store, year=None, language=None) -> int:
    return find_movies(
        store, {"year": year, "language": language, "sort_by": "title", "order": 1, "page": 1, "limit": 1}
    )["total_docs"]


# -- ingest: inserts, rewrites and their counts -----------------------------------------------------------


@pytest.mark.slow
def test_upload_reupload_and_changed_rows_give_exact_documents_and_counts(store, tmp_path):
    """First upload inserts every movie (repeats in the file are updates); the same file again inserts
    nothing and changes nothing; a later file with changed rows updates exactly those, and a changed language
    moves them between the language's counts (one run on FerretDB, which writes about a hundred upserts a
    second, so one file serves the three steps)."""
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=300, seed=21)
    expected = load(path)
    docs = expected["documents"]
    assert expected["valid"] > len(docs) > 250 and expected["rejects"]

    fields = ingest(path, store)
    assert stored(store) == docs
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_updated"], fields["rows_rejected"]) == (
        expected["rows_read"],
        len(docs),
        expected["valid"] - len(docs),
        len(expected["rejects"]),
    )
    assert fields["rejects"] == expected["rejects"]
    assert store.movies.count() == total(store) == len(docs)

    fields = ingest(path, store)  # the same file again
    assert (fields["rows_inserted"], fields["rows_updated"]) == (0, expected["valid"])
    assert stored(store) == docs

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, [r for r in reader if r["title"].strip()]
    changed = rows[:40:4]  # ten known movies, each given a new overview, rating and language
    for i, row in enumerate(changed):
        row["overview"], row["vote_average"], row["original_language"] = f"changed overview {i}", f"{i}.5", "xx"
    new = dict(changed[0], title="A Movie Nobody Uploaded Before", release_date="2001-02-03")
    later = tmp_path / "later.csv"
    with open(later, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(changed + [new])
    update = load(later)
    assert len(update["documents"]) == 11 and len(set(update["documents"]) & set(docs)) == 10
    english = total(store, language="en")
    was_english = sum(docs[k]["original_language"] == "en" for k in update["documents"] if k in docs)
    fields = ingest(later, store)
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_updated"]) == (11, 1, 10)
    after = stored(store)
    assert after == {**docs, **update["documents"]} and len(after) == len(docs) + 1
    assert after["2001-02-03/A Movie Nobody Uploaded Before"]["year"] == 2001
    assert [after[k]["overview"] for k in update["documents"]][:3] == [
        "changed overview 0",
        "changed overview 1",
        "changed overview 2",
    ]
    assert [after[k]["vote_average"] for k in update["documents"]][:3] == [0.5, 1.5, 2.5]
    assert (total(store, language="xx"), total(store, language="en")) == (11, english - was_english)
    assert was_english and store.movies.count() == total(store) == len(docs) + 1


def test_a_batch_inserts_new_movies_rewrites_stored_ones_and_the_last_repeat_wins(store):
    """Counts per document given: a new movie is inserted, a stored one or a repeat is an update."""
    assert store.movies.write([raw("a", v=1), raw("b", v=1)]) == (2, 0)
    # c is new and repeated (its last occurrence is stored), a is stored and repeated, b is stored.
    batch = [raw("c", v=1), raw("a", v=2), raw("c", v=2), raw("b", v=1), raw("a", v=3), raw("c", v=3)]
    assert store.movies.write(batch) == (1, 5)
    expected = given_bytes([raw("a", v=3), raw("b", v=1), raw("c", v=3)])
    assert stored_bytes(store) == expected  # no contract field made up, none left out
    assert store.movies.write(batch) == (0, 6)  # the batch replayed, as after a crash: nothing changes
    assert stored_bytes(store) == expected
    assert store.movies.write([raw("d", v=1), raw("d", v=2)], chunk=1) == (1, 1)  # a repeat in one batch
    assert stored(store)["d"] == {"_id": "d", "v": 2}
    assert store.movies.write([]) == (0, 0)
    assert store.movies.count() == 4


def rewrites(store, monkeypatch):
    """What the store writes from here on, as a function to call later: on SQLite the rows its file changes, on
    MongoDB the stored movies write_movies sends again (their inserts are refused, which changes nothing)."""
    if store.name == "sqlite":
        conn = store.conn
        before = conn.total_changes
        return lambda: conn.total_changes - before
    sent: list[int] = []
    real = mongo_movies._write_chunk
    monkeypatch.setattr(mongo_movies, "_write_chunk", lambda c, r: sent.append(len(r)) or real(c, r))
    return lambda: sum(sent)


def test_a_stored_movie_is_not_rewritten_when_the_file_has_it_unchanged(store, monkeypatch):
    """A re-upload or a replayed batch counts every stored movie as updated and writes none of them again;
    a movie that changed is written."""
    first = [raw(f"m{i}", v=i, year=2000) for i in range(40)]
    assert store.movies.write(first) == (40, 0)
    written = rewrites(store, monkeypatch)
    assert store.movies.write(first) == (0, 40)
    assert written() == 0
    assert stored_bytes(store) == given_bytes(first)
    again = [*first[:30], *(raw(f"m{i}", v=-i, year=2000) for i in range(30, 40)), raw("new", v=0)]
    assert store.movies.write(again) == (1, 40)
    assert written() >= 10
    assert stored_bytes(store) == given_bytes(again)


class WriteCommands(pymongo.monitoring.CommandListener):
    """The write commands a client sends, as the server receives them."""

    def __init__(self):
        self.names: list[str] = []

    def started(self, event):
        if event.command_name in ("insert", "update", "delete"):
            self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_mongodb_gets_one_insert_and_one_update_of_only_the_changed_movies(mongo_db, monkeypatch):
    """A re-upload sends its insert, reads the refused movies once, and rewrites only those that changed, in
    one command: on FerretDB 1.24 each rewrite by `_id` reads the whole collection."""
    first = [raw(f"m{i}", v=i) for i in range(40)]
    assert write_movies(mongo_db.movies, first) == (40, 0)
    again = [*first[:30], *(raw(f"m{i}", v=-i) for i in range(30, 40)), raw("new", v=0)]
    if not is_real(mongo_db):  # mongomock has no command monitoring: its rewrites are counted instead
        written = rewrites(MongoStore(mongo_db), monkeypatch)
        assert write_movies(mongo_db.movies, again) == (1, 40)
        assert written() == 10
        return
    listener = WriteCommands()
    host, port = mongo_db.client.address
    with pymongo.MongoClient(host, port, event_listeners=[listener]) as client:
        assert write_movies(client[mongo_db.name].movies, again) == (1, 40)
    assert listener.names == ["insert", "update"]  # one insert, one update command of the ten changed


def test_a_batch_without_some_fields_keeps_what_it_lacks_on_a_stored_movie(store):
    """A stored movie gets only the fields the file has; a new movie is inserted whole, as any other."""
    store.movies.write([raw("a", title="A", budget=5, overview="kept", year=2001)])
    partial = [raw("a", title="A", budget=None, overview=None, year=2001), raw("b", title="B", budget=None)]
    assert store.movies.write(partial, absent=("budget", "overview")) == (1, 1)
    assert stored(store) == {
        "a": {"_id": "a", "title": "A", "budget": 5, "overview": "kept", "year": 2001},
        "b": {"_id": "b", "title": "B", "budget": None},
    }
    assert store.movies.write([raw("a", title="A2", budget=None, overview=None)], absent=("budget",)) == (0, 1)
    assert stored(store)["a"] == {"_id": "a", "title": "A2", "budget": 5, "overview": None, "year": 2001}


@pytest.mark.slow
def test_an_ingest_of_a_file_without_some_columns_keeps_the_stored_fields(store, tmp_path):
    """A file lacking columns updates only what it has; its new movies get nulls for the rest; a file with every
    column of the contract replaces the movie whole again (a column outside the contract goes with it)."""
    full = tmp_path / "full.csv"
    row = {"title": "Heat", "release_date": "1995-12-15", "budget": "60000000", "overview": "A heist", "runtime": "170"}
    with open(full, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, restval="")
        writer.writeheader()
        writer.writerow({**row, "languages": "['en']"})
    assert ingest(full, store)["rows_inserted"] == 1
    partial = tmp_path / "partial.csv"
    partial.write_text(
        "title,release_date,overview,director\nHeat,1995-12-15,Two men,X\nHeat,12/15/1995,Last wins,Y\nRonin,,,Z\n"
    )
    fields = ingest(partial, store)
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_updated"]) == (3, 1, 2)
    heat = stored(store)["1995-12-15/Heat"]
    assert (heat["budget"], heat["runtime"], heat["languages"], heat["overview"], heat["year"], heat["director"]) == (
        60000000,
        170,
        ["en"],
        "Last wins",
        1995,
        "Y",
    )
    ronin = stored(store)["undated/Ronin"]
    assert ronin == load(partial)["documents"]["undated/Ronin"]
    assert (ronin["budget"], ronin["languages"], ronin["director"], ronin["year"]) == (None, None, "Z", None)
    before = stored(store)
    assert ingest(partial, store)["rows_inserted"] == 0  # the same file again: nothing changes
    assert stored(store) == before
    assert ingest(full, store)["rows_updated"] == 1
    assert stored(store)["1995-12-15/Heat"] == load(full)["documents"]["1995-12-15/Heat"]
    assert "director" not in stored(store)["1995-12-15/Heat"]


def test_same_new_movies_written_at_once_end_up_once(store):
    """Three uploads of the same new movies at once (each its own connection, as three workers): every movie is
    stored once and counted once: the write that wins counts it inserted, the others updated."""
    keys = [f"m{i:03d}" for i in range(150)]
    docs = [raw(k, title=k, year=2000 + i % 3) for i, k in enumerate(keys)]
    inserted, updated = [], []

    def upload(name: str, mine):
        for i in range(0, len(keys), 10):
            a, b = mine.movies.write(docs[i : i + 10])
            inserted.append(a)
            updated.append(b)

    assert race(store, 3, upload) == []
    assert stored(store) == {k: {"_id": k, "title": k, "year": 2000 + i % 3} for i, k in enumerate(keys)}
    assert (sum(inserted), sum(updated)) == (150, 300)
    assert [total(store, year=y) for y in (2000, 2001, 2002)] == [50, 50, 50]
    assert store.movies.count() == total(store) == 150


@pytest.mark.slow
def test_a_movie_over_16_mb_is_rejected_alone(store, tmp_path):
    """The ingest refuses a movie MongoDB could not hold, whichever store it writes to: the same file gives the
    same catalogue on every store."""
    path = tmp_path / "huge.csv"
    # Each text field has a maximum (an extra column's is 4 KiB): 4,400 of them full make an 18 MB movie.
    columns, full = 4_400, "x" * 4096
    extras = ",".join(f"c{n}" for n in range(columns))
    huge = ",".join([full] * columns)
    path.write_text(f"title,{extras}\nSmall{',' * columns}\nHuge,{huge}\nAlso small{',' * columns}\n", encoding="utf-8")
    fields = ingest_movies(str(path), store.movies, block_size=40 * 1024 * 1024, batch_size=BATCH, max_rejects=10)
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_rejected"]) == (3, 2, 1)
    assert fields["rejects"] == [{"line": 3, "reason": "the movie is larger than MongoDB's 16 MB document limit"}]
    assert sorted(stored(store)) == ["undated/Also small", "undated/Small"]


# -- the catalogue: every filter and sort, paged to the end -----------------------------------------------


@pytest.fixture
def catalogue(store, tmp_path):
    path = tmp_path / "catalogue.csv"
    generate_movies(str(path), rows=240, seed=5)
    docs = list(load(path)["documents"].values())
    assert store.movies.write([RawBSONDocument(bson.encode(doc)) for doc in docs]) == (len(docs), 0)
    return docs


def mongo_order(docs: list[dict], field: str, order: int) -> list[str]:
    """MongoDB's order: nulls (and missing) before any value, then by value, ties by _id; -1 reverses both."""

    def key(d):
        v = d.get(field)
        return (0, 0, d["_id"]) if v is None else (1, v, d["_id"])

    return [d["_id"] for d in sorted(docs, key=key, reverse=order == -1)]


def all_pages(store, q: dict, limit: int) -> tuple[list[dict], list[dict]]:
    movies_, answers, page = [], [], 1
    while True:
        answer = find_movies(store, {**q, "page": page, "limit": limit})
        answers.append(answer)
        if not answer["movies"]:
            return movies_, answers
        movies_ += answer["movies"]
        page += 1


def test_every_filter_and_sort_pages_to_the_full_sorted_list(store, catalogue):
    """Each page holds the very movies the API would send (as JSON) in MongoDB's order, totals included."""
    by_id = {d["_id"]: d for d in catalogue}
    years = [d["year"] for d in catalogue if d["year"] is not None]
    year = max(set(years), key=lambda y: (sum(1 for x in years if x == y), y))
    filters = [(None, None), (year, None), (None, "en"), (year, "en")]
    checked = 0
    for y, lang in filters:
        subset = [
            d for d in catalogue if (y is None or d["year"] == y) and (lang is None or d["original_language"] == lang)
        ]
        assert subset, (y, lang)
        limit = max(2, len(subset) // 3)  # three pages or so, the last one short
        for sort_by, field in movies.SORT_FIELDS.items():
            for order in (1, -1):
                q = {"year": y, "language": lang, "sort_by": sort_by, "order": order}
                found, answers = all_pages(store, q, limit)
                assert found == [to_json(by_id[key]) for key in mongo_order(subset, field, order)], q
                total_pages = -(-len(subset) // limit)
                assert [a["total_docs"] for a in answers] == [len(subset)] * (total_pages + 1)
                assert [a["total_pages"] for a in answers] == [total_pages] * (total_pages + 1)
                assert [len(a["movies"]) for a in answers[:-1]] == (
                    [limit] * (total_pages - 1) + [len(subset) - limit * (total_pages - 1)]
                )
                checked += 1
    assert checked == 24
    assert any(d["vote_average"] is None for d in catalogue) and any(d["release_date"] is None for d in catalogue)
    nobody = find_movies(store, {"year": None, "language": "zz", "sort_by": "title", "order": 1, "page": 1, "limit": 5})
    assert (nobody["movies"], nobody["total_docs"], nobody["total_pages"]) == ([], 0, 0)
    past = find_movies(
        store, {"year": None, "language": None, "sort_by": "rating", "order": -1, "page": 99, "limit": 5}
    )
    assert (past["movies"], past["total_docs"]) == ([], len(catalogue))


def test_nulls_sort_lowest_and_ties_follow_the_id_in_either_order(store):
    docs = [
        {"_id": f"{i:03d}/{t}", "title": t, "vote_average": v, "release_date": None, "year": None}
        for i, (t, v) in enumerate([("b", None), ("a", 5.0), ("b", 5.0), ("a", None), ("c", 1.0), ("a", 5.0)])
    ]
    for doc in docs:
        doc["original_language"] = "en"
    store.movies.write([RawBSONDocument(bson.encode(doc)) for doc in reversed(docs)])
    for sort_by, field in movies.SORT_FIELDS.items():
        for order in (1, -1):
            expected = mongo_order(docs, field, order)
            for skip in range(7):
                q = {"year": None, "language": "en", "sort_by": sort_by, "order": order, "offset": skip}
                page = find_movies(store, {**q, "page": 1, "limit": 2})
                assert [m["_id"] for m in page["movies"]] == expected[skip : skip + 2], (sort_by, order, skip)
    assert mongo_order(docs, "vote_average", 1) == ["000/b", "003/a", "004/c", "001/a", "002/b", "005/a"]


def test_the_api_answers_pages_from_the_store(store, catalogue, config):
    app = create_app(config, store=store, redis_client=fakeredis.FakeRedis(), producer=RecordingProducer())
    client = signed_in(app)
    en = [d for d in catalogue if d["original_language"] == "en"]
    expected = mongo_order(en, "vote_average", -1)
    r = client.get("/api/v1/movies?language=en&sort_by=rating&order=-1&limit=7&page=2")
    assert r.status_code == 200 and r.headers["X-Cache"] == "miss"
    body = r.get_json()
    assert [m["_id"] for m in body["movies"]] == expected[7:14]
    assert (body["total_docs"], body["total_pages"], body["page"], body["limit"]) == (len(en), -(-len(en) // 7), 2, 7)
    first = body["movies"][0]
    doc = next(d for d in catalogue if d["_id"] == first["_id"])
    assert first["title"] == doc["title"] and first["vote_average"] == doc["vote_average"]
    r = client.get("/api/v1/movies?language=en&sort_by=rating&order=-1&limit=7&page=2")
    assert r.headers["X-Cache"] == "hit" and r.get_json() == body


# -- task records and their state machine -----------------------------------------------------------------


def test_a_task_is_read_back_as_mongodb_returns_it(store, clock):
    odd = {
        "nested": {"list": [1, 2.5, "x", None, {"deep": [datetime(2001, 2, 3, 4, 5, 6, 789999)]}], "empty": {}},
        "big": 2**62,
        "unicode": "Amélie — 東京",
        "at": datetime(1969, 12, 31, 23, 59, 59, 999999),  # before the epoch: BSON floors it, as MongoDB does
        "flag": False,
        "kind_hint": "x",
    }
    doc = new_task(store, "t1", owner={"key_id": "key_1", "name": "one"}, **odd)
    assert isinstance(doc["_id"], ObjectId)  # given in the caller's dict, as pymongo's insert_one does
    got = tasks.get(store, "t1")
    assert got == {
        **doc,
        "nested": {"list": [1, 2.5, "x", None, {"deep": [datetime(2001, 2, 3, 4, 5, 6, 789000)]}], "empty": {}},
        "at": datetime(1969, 12, 31, 23, 59, 59, 999000),
    }
    if keeps_field_order(store):
        assert list(got)[0] == "_id"
    fields = ("status", "attempts", "rows_read", "rows_inserted", "percent", "warnings", "rejects", "size")
    assert {k: got[k] for k in (*fields, "bytes_total", "created_at", "updated_at")} == {
        "status": "pending",
        "attempts": 0,
        "rows_read": 0,
        "rows_inserted": 0,
        "percent": 0,
        "warnings": {},
        "rejects": [],
        "size": 100,
        "bytes_total": 100,
        "created_at": START,
        "updated_at": START,
    }
    assert tasks.get(store, "nope") is None


def test_a_task_id_stored_twice_is_refused_and_the_first_kept(store, clock):
    first = new_task(store, "same", filename_hint="first")
    with pytest.raises(ERRORS):  # the store's own error (MongoDB's duplicate key, SQLite's constraint)
        new_task(store, "same", filename_hint="second")
    assert tasks.get(store, "same") == first
    assert store.tasks.page(1, 10) == ([first], 1)


def test_claim_the_named_one_then_the_oldest_then_nothing(store, clock):
    new_task(store, "mid")
    created = new_task(store, "new")
    clock.advance(seconds=1)
    new_task(store, "newest")
    named = tasks.claim(store, "w1", LEASE, 3, task_id="new")
    assert named == {
        **created,
        "status": "processing",
        "worker": "w1",
        "attempts": 1,
        "claims": 1,
        "started_at": clock.t,
        "updated_at": clock.t,
        "lease_expires_at": clock.t + timedelta(seconds=LEASE),
    }
    assert tasks.get(store, "new") == named
    assert tasks.claim(store, "w2", LEASE, 3, task_id="new") is None  # taken, lease running
    assert tasks.claim(store, "w2", LEASE, 3, task_id="nope") is None
    assert tasks.claim(store, "w2", LEASE, 3)["task_id"] == "mid"  # created in the same millisecond as "new"
    assert tasks.claim(store, "w2", LEASE, 3)["task_id"] == "newest"
    assert tasks.claim(store, "w2", LEASE, 3) is None


def test_update_records_progress_and_renews_the_lease(store, clock):
    new_task(store, "t")
    tasks.claim(store, "w1", 5, 3)
    clock.advance(seconds=3)
    assert tasks.update(store, "t", "w1", LEASE, rows_read=10, percent=50.0, checkpoint={"line": 12}) is None
    got = tasks.get(store, "t")
    assert (got["rows_read"], got["percent"], got["checkpoint"], got["updated_at"], got["lease_expires_at"]) == (
        10,
        50.0,
        {"line": 12},
        clock.t,
        clock.t + timedelta(seconds=LEASE),
    )


def test_a_lease_run_out_is_claimed_again_and_the_old_owner_locked_out(store, clock):
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    tasks.update(store, "t", "w1", LEASE, rows_read=5, checkpoint={"line": 7})
    clock.advance(seconds=LEASE)
    assert tasks.claim(store, "w2", LEASE, 3) is None  # at the lease's last millisecond: still w1's
    tasks.update(store, "t", "w1", LEASE, rows_read=6)  # a late owner nobody took over from writes on
    clock.advance(seconds=LEASE, milliseconds=1)
    retaken = tasks.claim(store, "w2", LEASE, 3)
    assert (retaken["worker"], retaken["attempts"], retaken["claims"], retaken["rows_read"], retaken["checkpoint"]) == (
        "w2",
        2,
        2,
        6,
        {"line": 7},
    )
    before = tasks.get(store, "t")
    assert outcome(tasks.update, store, "t", "w1", LEASE, rows_read=99) == "raised LostTask(t)"
    assert outcome(tasks.renew, store, "t", "w1", LEASE) == "raised LostTask(t)"
    assert outcome(tasks.finish, store, "t", "w1", tasks.COMPLETED) == "raised LostTask(t)"
    assert tasks.give_up(store, "t", "w1") is False
    assert tasks.release(store, "t", "w1") is None
    assert tasks.get(store, "t") == before  # none of the old owner's writes landed


def test_out_of_attempts_is_not_claimed_and_settled_as_failed(store, clock):
    new_task(store, "t", path="/up/t.csv")
    new_task(store, "other")
    tasks.claim(store, "w1", LEASE, 2, task_id="t")
    clock.advance(seconds=LEASE + 1)
    tasks.claim(store, "w2", LEASE, 2, task_id="t")
    clock.advance(seconds=LEASE + 1)
    assert tasks.claim(store, "w3", LEASE, 2, task_id="t") is None
    assert tasks.settle_abandoned(store, 3) == []  # a third attempt is allowed: not settled
    settled = tasks.settle_abandoned(store, 2)
    t_id = tasks.get(store, "t")["_id"]
    assert settled == [{"_id": t_id, "task_id": "t", "path": "/up/t.csv", "status": "failed"}]
    got = tasks.get(store, "t")
    assert (got["status"], got["error"], got["attempts"], got["finished_at"], got["updated_at"]) == (
        "failed",
        "gave up after 2 attempts: each worker stopped before finishing",
        2,
        clock.t,
        clock.t,
    )
    assert "lease_expires_at" not in got and got["worker"] == "w2"
    assert tasks.settle_abandoned(store, 2) == []
    assert tasks.get(store, "other")["status"] == "pending"


def test_settle_abandoned_cancels_a_cancelled_task_whose_worker_vanished(store, clock):
    new_task(store, "t")
    new_task(store, "live")
    new_task(store, "nopath")
    tasks.claim(store, "w1", LEASE, 3, task_id="t")
    tasks.claim(store, "w2", 3 * LEASE, 3, task_id="live")
    tasks.claim(store, "w3", LEASE, 1, task_id="nopath")
    tasks.request_cancel(store, "t")
    tasks.request_cancel(store, "live")
    assert tasks.settle_abandoned(store, 1) == []  # leases still running
    clock.advance(seconds=LEASE + 1)
    settled = tasks.settle_abandoned(store, 1)
    ids = {name: tasks.get(store, name)["_id"] for name in ("t", "nopath")}
    assert settled == [
        {"_id": ids["t"], "task_id": "t", "path": "/up/t.csv", "status": "cancelled"},  # the cancelled first
        {"_id": ids["nopath"], "task_id": "nopath", "path": "/up/nopath.csv", "status": "failed"},
    ]
    got = tasks.get(store, "t")
    assert (got["status"], got["cancel_requested"], got["finished_at"], "error" in got) == (
        "cancelled",
        True,
        clock.t,
        False,
    )
    assert tasks.get(store, "live")["status"] == "processing"


def test_cancel_a_pending_task_and_a_processing_one(store, clock):
    pending = new_task(store, "p")
    new_task(store, "r")
    tasks.claim(store, "w1", LEASE, 3, task_id="r")
    clock.advance(seconds=1)
    cancelled = tasks.request_cancel(store, "p")
    assert cancelled == {
        **pending,
        "status": "cancelled",
        "cancel_requested": True,
        "finished_at": clock.t,
        "updated_at": clock.t,
    }
    assert tasks.get(store, "p") == cancelled
    asked = tasks.request_cancel(store, "r")
    assert (asked["status"], asked["cancel_requested"], asked["worker"], asked["updated_at"]) == (
        "processing",
        True,
        "w1",
        clock.t,
    )
    assert tasks.request_cancel(store, "p") is None and tasks.request_cancel(store, "nope") is None
    assert outcome(tasks.update, store, "r", "w1", LEASE, rows_read=3) == "raised Cancelled(r)"
    assert tasks.get(store, "r")["rows_read"] == 0
    clock.advance(seconds=5)
    assert outcome(tasks.renew, store, "r", "w1", LEASE) == "raised Cancelled(r)"
    assert tasks.get(store, "r")["lease_expires_at"] == clock.t + timedelta(seconds=LEASE)  # kept to record it
    clock.advance(seconds=LEASE + 1)
    assert tasks.claim(store, "w2", LEASE, 3) is None  # a cancelled task is never claimed again
    tasks.finish(store, "r", "w1", tasks.CANCELLED, rows_read=2)
    got = tasks.get(store, "r")
    assert (got["status"], got["rows_read"], got["duration_s"]) == (
        "cancelled",
        2,
        LEASE + 7.0,
    )  # claimed 1 + 5 + 61 s before
    assert tasks.request_cancel(store, "r") is None


def test_release_hands_back_without_counting_and_cancels_if_asked(store, clock):
    new_task(store, "t")
    new_task(store, "c")
    tasks.claim(store, "w1", LEASE, 3, task_id="t")
    tasks.update(store, "t", "w1", LEASE, rows_read=4, checkpoint={"line": 6})
    clock.advance(seconds=2)
    assert tasks.release(store, "t", "w2") is None  # not w2's: nothing changes
    assert tasks.get(store, "t")["worker"] == "w1"
    tasks.release(store, "t", "w1")
    got = tasks.get(store, "t")
    assert (got["status"], got["attempts"], got["checkpoint"], got["rows_read"], got["updated_at"]) == (
        "pending",
        0,
        {"line": 6},
        4,
        clock.t,
    )
    assert "worker" not in got and "lease_expires_at" not in got
    again = tasks.claim(store, "w2", LEASE, 3, task_id="t")
    assert (again["attempts"], again["worker"], again["claims"]) == (1, "w2", 2)
    tasks.claim(store, "w1", LEASE, 3, task_id="c")
    tasks.update(store, "c", "w1", LEASE, checkpoint={"line": 3})
    tasks.request_cancel(store, "c")
    tasks.release(store, "c", "w1")
    got = tasks.get(store, "c")
    assert (got["status"], got["finished_at"], got["duration_s"]) == ("cancelled", clock.t, 0.0)
    assert "checkpoint" not in got and "lease_expires_at" not in got


def test_finish_completes_and_clears_the_lease_and_checkpoint(store, clock):
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    tasks.update(store, "t", "w1", LEASE, checkpoint={"line": 9})
    clock.advance(seconds=12, milliseconds=345)
    tasks.finish(store, "t", "w1", tasks.COMPLETED, rows_read=8, rows_inserted=8)
    got = tasks.get(store, "t")
    assert (got["status"], got["rows_read"], got["rows_inserted"], got["finished_at"], got["duration_s"]) == (
        "completed",
        8,
        8,
        clock.t,
        12.345,
    )
    assert "checkpoint" not in got and "lease_expires_at" not in got
    assert outcome(tasks.finish, store, "t", "w1", tasks.FAILED) == "raised LostTask(t)"
    assert outcome(tasks.update, store, "t", "w1", LEASE, rows_read=1) == "raised LostTask(t)"
    assert tasks.get(store, "t") == got
    assert tasks.claim(store, "w2", LEASE, 3) is None


def test_give_up_ends_the_lease_so_another_worker_takes_the_next_attempt(store, clock):
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    assert tasks.give_up(store, "t", "w2") is False
    clock.advance(seconds=1)
    assert tasks.give_up(store, "t", "w1") is True
    assert tasks.get(store, "t")["lease_expires_at"] == clock.t
    assert tasks.claim(store, "w2", LEASE, 3) is None  # the lease ends now: not yet before now
    clock.advance(milliseconds=1)
    taken = tasks.claim(store, "w2", LEASE, 3)
    assert (taken["worker"], taken["attempts"]) == ("w2", 2)
    assert tasks.give_up(store, "t", "w1") is False


def test_expire_results_marks_old_results_once(store, clock):
    for name in ("old", "old_none", "young", "no_result", "failed"):
        new_task(store, name)
        tasks.claim(store, "w", LEASE, 3, task_id=name)
    tasks.finish(store, "old", "w", tasks.COMPLETED, result_path="/r/old.csv")
    tasks.finish(store, "old_none", "w", tasks.COMPLETED, result_path=None)  # present, even as None: $exists
    tasks.finish(store, "no_result", "w", tasks.COMPLETED)
    tasks.finish(store, "failed", "w", tasks.FAILED, result_path="/r/failed.csv")
    clock.advance(hours=2)
    tasks.finish(store, "young", "w", tasks.COMPLETED, result_path="/r/young.csv")
    assert store.tasks.expire_results(2) == []  # finished exactly 2 hours ago: not over
    clock.advance(milliseconds=1)
    ids = {name: tasks.get(store, name)["_id"] for name in ("old", "old_none")}
    assert store.tasks.expire_results(2) == [
        {"_id": ids["old"], "task_id": "old", "result_path": "/r/old.csv"},
        {"_id": ids["old_none"], "task_id": "old_none", "result_path": None},
    ]
    assert tasks.get(store, "old")["result_removed_at"] == clock.t
    assert store.tasks.expire_results(2) == []
    clock.advance(hours=2)
    assert [t["task_id"] for t in store.tasks.expire_results(2)] == ["young"]
    assert "result_removed_at" not in tasks.get(store, "failed")


def test_a_value_bson_cannot_hold_changes_nothing_and_the_next_call_works(store, clock):
    """Refused as pymongo refuses it, before anything is written. mongomock differs: it has written the fields
    before the one it cannot encode."""
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    before = tasks.get(store, "t")
    with pytest.raises(InvalidDocument):
        tasks.update(store, "t", "w1", LEASE, rows_read=1, odd={1, 2})
    if is_mongomock(store):
        assert tasks.get(store, "t") == {**before, "rows_read": 1}
    else:
        assert tasks.get(store, "t") == before  # nothing written (on SQLite: rolled back, the file's lock let go)
    tasks.update(store, "t", "w1", LEASE, rows_read=2)
    assert tasks.get(store, "t")["rows_read"] == 2


def test_racing_workers_claim_each_task_once(store):
    for i in range(40):
        new_task(store, f"t{i:02d}")
    claims: dict[str, list[str]] = {}

    def work(name: str, mine):
        while (task := tasks.claim(mine, name, LEASE, 3)) is not None:
            claims.setdefault(task["task_id"], []).append(name)

    assert race(store, 4, work) == []
    assert sorted(claims) == [f"t{i:02d}" for i in range(40)]
    assert {k: v for k, v in claims.items() if len(v) > 1} == {}
    records = {d["task_id"]: d for d in store.tasks.page(1, 100)[0]}
    assert {k: (d["worker"], d["attempts"], d["claims"]) for k, d in records.items()} == {
        k: (v[0], 1, 1) for k, v in claims.items()
    }


def test_racing_workers_for_a_lease_run_out_one_takes_it_once(store, clock):
    new_task(store, "t")
    tasks.claim(store, "w0", LEASE, 3)
    clock.advance(seconds=LEASE + 1)
    won = []

    def work(name: str, mine):
        if tasks.claim(mine, name, LEASE, 3) is not None:
            won.append(name)

    assert race(store, 6, work) == []
    assert len(won) == 1
    got = tasks.get(store, "t")
    assert (got["worker"], got["attempts"], got["claims"]) == (won[0], 2, 2)
    assert outcome(tasks.update, store, "t", "w0", LEASE, rows_read=1) == "raised LostTask(t)"


def test_mongodb_a_claimer_that_died_between_its_claim_and_its_update_blocks_the_task_for_one_lease_only(
    mongo_db, clock
):
    """A claim on MongoDB is won by inserting `<task_id>/<claim number>` into `claims`: that record alone, left by
    a worker that died before it updated the task, would keep the task from every worker for good."""
    mongo.ensure_indexes(mongo_db)
    new_task(mongo_db, "t")
    mongo_db.claims.insert_one({"_id": "t/1", "worker": "dead", "at": clock.t})
    assert tasks.claim(mongo_db, "w1", LEASE, 3) is None  # within a lease of the dead one's claim: not yet
    clock.advance(seconds=LEASE + 1)
    claimed = tasks.claim(mongo_db, "w1", LEASE, 3)
    assert (claimed["task_id"], claimed["worker"], claimed["attempts"], claimed["claims"]) == ("t", "w1", 1, 1)
    assert mongo_db.claims.find_one({"_id": "t/1"})["worker"] == "w1"


# -- listings and counts -------------------------------------------------------------------------------------


def test_page_newest_first_with_its_tie_break_filters_and_totals(store, clock):
    owners = {"a": {"key_id": "key_a", "name": "A"}, "b": {"key_id": "key_b", "name": "B"}, "n": None}
    for i in range(12):
        if i % 4 == 0:
            clock.advance(seconds=1)  # four tasks each second: ties broken by _id, newest first
        new_task(store, f"t{i:02d}", owner=owners["abn"[i % 3]])
    tasks.claim(store, "w", LEASE, 3, task_id="t03")
    tasks.claim(store, "w", LEASE, 3, task_id="t06")
    newest_first = [f"t{i:02d}" for i in reversed(range(12))]

    def names(page):
        docs, total = page
        return [d["task_id"] for d in docs], total

    assert names(store.tasks.page(1, 5)) == (newest_first[:5], 12)
    assert names(store.tasks.page(3, 5)) == (newest_first[10:], 12)
    assert names(store.tasks.page(4, 5)) == ([], 12)
    assert names(store.tasks.page(1, 100, "key_a")) == (["t09", "t06", "t03", "t00"], 4)
    assert names(store.tasks.page(2, 3, "key_a")) == (["t00"], 4)
    assert names(store.tasks.page(1, 100, None, "processing")) == (["t06", "t03"], 2)
    assert names(store.tasks.page(1, 100, "key_a", "pending")) == (["t09", "t00"], 2)
    assert names(store.tasks.page(1, 100, "key_nobody")) == ([], 0)
    docs, _ = store.tasks.page(1, 1)
    assert docs == [tasks.get(store, "t11")]


def test_count_active_counts_a_keys_pending_and_processing_up_to_the_limit(store, clock):
    mine = {"key_id": "key_a", "name": "A"}
    for i in range(5):
        new_task(store, f"a{i}", owner=mine)
    new_task(store, "b0", owner={"key_id": "key_b", "name": "B"})
    new_task(store, "n0", owner=None)
    tasks.claim(store, "w", LEASE, 3, task_id="a0")
    tasks.claim(store, "w", LEASE, 3, task_id="a1")
    tasks.finish(store, "a1", "w", tasks.COMPLETED)
    tasks.request_cancel(store, "a2")
    assert store.tasks.count_active("key_a", 10) == 3  # a0 processing, a3 and a4 pending
    assert store.tasks.count_active("key_a", 2) == 2
    assert store.tasks.count_active("key_b", 10) == 1
    assert store.tasks.count_active("key_nobody", 10) == 0


@pytest.mark.slow
def test_with_status_answers_for_many_ids(store, clock):
    for i in range(1200):
        new_task(store, f"t{i:04d}")
    for i in range(0, 1200, 100):
        tasks.claim(store, "w", LEASE, 3, task_id=f"t{i:04d}")
    tasks.finish(store, "t0500", "w", tasks.COMPLETED)
    asked = [f"t{i:04d}" for i in range(1200)] + ["t0100", "nope"]  # over two SQL chunks, a repeat, an unknown
    processing = {f"t{i:04d}" for i in range(0, 1200, 100)} - {"t0500"}
    assert store.tasks.with_status(asked, (tasks.PROCESSING,)) == processing
    assert store.tasks.with_status(asked, tasks.FINISHED) == {"t0500"}
    assert store.tasks.with_status([], tasks.FINISHED) == set()
    assert store.tasks.with_status(["t0001"], ()) == set()


# -- keys and workers ----------------------------------------------------------------------------------------


def test_keys_insert_get_touch_listing_and_revoke(store):
    t = START
    assert store.keys.any_live() is False and store.keys.listing() == []
    for key_id, created in (("key_c", t), ("key_a", t), ("key_b", t - timedelta(seconds=1))):
        store.keys.insert(key(key_id, created))
    assert [k["_id"] for k in store.keys.listing()] == ["key_b", "key_a", "key_c"]  # created_at, then _id
    assert store.keys.get("key_a") == key("key_a", t) and store.keys.get("key_zz") is None
    store.keys.touch("key_a", t + timedelta(minutes=5, microseconds=1500))
    assert store.keys.get("key_a")["last_used_at"] == t + timedelta(minutes=5, milliseconds=1)
    store.keys.revoke("key_a", t + timedelta(hours=1))
    store.keys.revoke("key_a", t + timedelta(hours=2))  # already revoked: the first time stays
    store.keys.revoke("key_zz", t)
    got = store.keys.get("key_a")  # revoked, still read back
    assert (got["revoked_at"], got["last_used_at"]) == (
        t + timedelta(hours=1),
        t + timedelta(minutes=5, milliseconds=1),
    )
    assert store.keys.listing() == [store.keys.get(k) for k in ("key_b", "key_a", "key_c")]
    assert store.keys.any_live() is True
    store.keys.revoke("key_b", t)
    store.keys.revoke("key_c", t)
    assert store.keys.any_live() is False


def test_workers_beat_forget_and_alive(store):
    t = START
    store.workers.beat("w1", "host", 11, t, None)
    store.workers.beat("w2", "host", 12, t, "task-a")
    assert store.workers.alive(t - timedelta(milliseconds=1)) == 2
    assert store.workers.alive(t) == 0  # a beat at `since` is not after it
    store.workers.beat("w1", "host", 11, t + timedelta(seconds=10), "task-b")  # the same worker, once
    assert store.workers.alive(t - timedelta(seconds=1)) == 2
    assert store.workers.alive(t + timedelta(seconds=5)) == 1
    store.workers.forget("w1")
    store.workers.forget("nobody")
    assert store.workers.alive(t - timedelta(seconds=1)) == 1


# -- MongoDB itself: indexes ------------------------------------------------------------------------------


def declared(db) -> dict:
    return {
        name: {ix["name"]: (dict(ix["key"]), bool(ix.get("unique"))) for ix in getattr(db, name).list_indexes()}
        for name in ("movies", "processes", "workers")
    }


def test_indexes_read_back_as_declared(mongo_db):
    mongo.ensure_indexes(mongo_db)
    mongo.ensure_indexes(mongo_db)  # start-up runs it every time: a no-op the second time
    spec_names = {"_".join(f"{f}_{d}" for f, d in spec): (dict(spec), False) for spec in movies.index_specs()}
    assert len(spec_names) == 12
    assert declared(mongo_db) == {
        "movies": {"_id_": ({"_id": 1}, False), **spec_names},
        "processes": {
            "_id_": ({"_id": 1}, False),
            "task_id_1": ({"task_id": 1}, True),
            "created_at_-1": ({"created_at": -1}, False),
            "status_1_created_at_-1": ({"status": 1, "created_at": -1}, False),
            "owner.key_id_1_created_at_-1": ({"owner.key_id": 1, "created_at": -1}, False),
            "owner.key_id_1_status_1": ({"owner.key_id": 1, "status": 1}, False),
        },
        "workers": {"_id_": ({"_id": 1}, False), "beat_at_1": ({"beat_at": 1}, False)},
    }
    # key order is part of an index: year before the sort field, _id last
    keys = {ix["name"]: list(ix["key"].items()) for ix in mongo_db.movies.list_indexes()}
    assert keys["year_1_original_language_1_title_1__id_1"] == [
        ("year", 1),
        ("original_language", 1),
        ("title", 1),
        ("_id", 1),
    ]


def test_mongomock_differs_list_indexes_order(mongo_db):
    """mongomock differs: it lists indexes in creation order; FerretDB lists `_id_` first, then by name.
    (The code reads indexes by name only, so it depends on neither.)"""
    mongo.ensure_indexes(mongo_db)
    names = [ix["name"] for ix in mongo_db.processes.list_indexes()]
    if is_real(mongo_db):
        assert names == [
            "_id_",
            "created_at_-1",
            "owner.key_id_1_created_at_-1",
            "owner.key_id_1_status_1",
            "status_1_created_at_-1",
            "task_id_1",
        ]
    else:
        assert names == [
            "_id_",
            "task_id_1",
            "created_at_-1",
            "status_1_created_at_-1",
            "owner.key_id_1_created_at_-1",
            "owner.key_id_1_status_1",
        ]


# -- MongoDB itself: the errors the code maps ---------------------------------------------------------------


def test_mongomock_differs_duplicate_key_error_details(mongo_db):
    """A duplicate task_id is refused by the unique index with code 11000 (what the code reads; the refusal a
    user sees is test_a_task_id_stored_twice_is_refused_and_the_first_kept). mongomock differs: its
    DuplicateKeyError names the index (`keyPattern`, `keyValue`); FerretDB's carries only the code and message."""
    mongo.ensure_indexes(mongo_db)
    new_task(mongo_db, "same")
    with pytest.raises(DuplicateKeyError) as e:
        new_task(mongo_db, "same")
    assert e.value.code == 11000
    assert mongo_db.processes.count_documents({"task_id": "same"}) == 1
    details = e.value.details
    if is_real(mongo_db):
        assert "keyValue" not in details and details["code"] == 11000 and "E11000" in details["errmsg"]
    else:
        assert details["keyPattern"] == {"task_id": 1} and details["keyValue"] == {"task_id": "same"}


def clash_batch(db) -> list[ReplaceOne]:
    """Five upserts, two of which (1 and 3) miss the stored document they collide with: duplicate keys."""
    db.movies.insert_many([{"_id": "b", "v": 0}, {"_id": "d", "v": 0}])

    def ok(key):
        return ReplaceOne({"_id": key}, RawBSONDocument(bson.encode({"_id": key, "v": 1})), upsert=True)

    def clash(key):  # misses the stored document, so its upsert inserts the same _id
        return ReplaceOne({"_id": key, "v": 5}, {"_id": key, "v": 5}, upsert=True)

    return [ok("a"), clash("b"), ok("c"), clash("d"), ok("b")]


def mongo_stored(db) -> dict:
    return {doc["_id"]: doc for doc in db.movies.find()}


def test_mongomock_differs_a_duplicate_key_in_an_unordered_bulk_upsert(mongo_db):
    """mongomock differs (and so does MongoDB, whose behaviour mongomock has here) on an upsert batch with
    duplicate keys; write_movies' rewrites (its only upserts) filter on `_id` alone, so they meet a duplicate
    key only if another upload inserts the movie between the two (test_same_new_movies_written_at_once_end_up_once).

    mongomock, like MongoDB: every other request applied, writeErrors at indexes 1 and 3 with code 11000,
    nUpserted 2, nMatched 1.
    FerretDB 1.24: the unordered batch stops at the first conflict, the error names index 0 (not 1), and the
    reply has no `n`/`nModified`, so pymongo itself fails (KeyError 'nModified') before any BulkWriteError.
    An insert_many with duplicate keys is answered as MongoDB does on both (test_an_insert_with_duplicate_...).
    """
    batch = clash_batch(mongo_db)
    if is_real(mongo_db):
        with pytest.raises(KeyError, match="nModified"):
            mongo_db.movies.bulk_write(batch, ordered=False)
        answer = mongo_db.command(
            "update",
            "movies",
            ordered=False,
            updates=[
                {"q": {"_id": "d", "v": 5}, "u": {"_id": "d", "v": 5}, "upsert": True},
                {"q": {"_id": "c"}, "u": {"_id": "c", "v": 2}, "upsert": True},
            ],
        )
        assert [(e["index"], e["code"]) for e in answer["writeErrors"]] == [(0, 11000)]
        assert "n" not in answer and "nModified" not in answer
        assert mongo_stored(mongo_db) == {
            "a": {"_id": "a", "v": 1},
            "b": {"_id": "b", "v": 0},
            "d": {"_id": "d", "v": 0},
        }
        return
    with pytest.raises(BulkWriteError) as e:
        mongo_db.movies.bulk_write(batch, ordered=False)
    details = e.value.details
    assert [(err["index"], err["code"]) for err in details["writeErrors"]] == [(1, 11000), (3, 11000)]
    assert (details["nUpserted"], details["nMatched"]) == (2, 1)
    assert mongo_stored(mongo_db) == {
        "a": {"_id": "a", "v": 1},
        "b": {"_id": "b", "v": 1},
        "c": {"_id": "c", "v": 1},
        "d": {"_id": "d", "v": 0},
    }


def test_an_insert_with_duplicate_keys_is_answered_alike_on_both(mongo_db):
    """What write_movies reads from a refused insert: nInserted and the index of each duplicate, code 11000."""
    mongo_db.movies.insert_many([{"_id": i} for i in range(0, 10, 2)])
    with pytest.raises(BulkWriteError) as e:
        mongo_db.movies.insert_many([{"_id": i, "v": 1} for i in [0, 1, 2, 3, 3, 5]], ordered=False)
    details = e.value.details
    assert details["nInserted"] == 3
    assert [(err["index"], err["code"]) for err in details["writeErrors"]] == [(0, 11000), (2, 11000), (4, 11000)]
    assert sorted((d["_id"], d.get("v")) for d in mongo_db.movies.find()) == [
        (0, None),
        (1, 1),
        (2, None),
        (3, 1),
        (4, None),
        (5, 1),
        (6, None),
        (8, None),
    ]


def test_mongomock_differs_documents_over_16_mb_are_refused_only_on_insert_one(mongo_db):
    """mongomock differs: it stores a 17 MB document however it is written. Against FerretDB pymongo
    refuses it in insert_one (DocumentTooLarge, before sending), but an insert_many of it, the ingest's
    write, is sent and FerretDB 1.24 stores it (MongoDB would answer a write error). No store can be relied
    on to refuse it, which is why the ingest rejects such a movie itself (test_a_movie_over_16_mb_is_rejected_alone)."""
    doc = {"_id": "huge", "overview": "x" * (17 * 1024 * 1024)}
    if is_real(mongo_db):
        with pytest.raises(DocumentTooLarge):
            mongo_db.movies.insert_one(doc)
        assert mongo_db.movies.count_documents({}) == 0
    else:
        mongo_db.movies.insert_one(doc)
        mongo_db.movies.delete_one({"_id": "huge"})
    assert write_movies(mongo_db.movies, [RawBSONDocument(bson.encode(doc))]) == (1, 0)
    assert len(mongo_db.movies.find_one({"_id": "huge"})["overview"]) == 17 * 1024 * 1024


def test_unreachable_server_answers_503_and_the_health_says_so(config):
    """Not a store of either kind: a client of a port nobody listens on, as when MongoDB is down."""
    client = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )
    try:
        app = create_app(config, store=client["dead"], redis_client=fakeredis.FakeRedis(), producer=RecordingProducer())
        web = app.test_client()  # a key the server cannot look up: that too is 503, not 401
        web.environ_base["HTTP_AUTHORIZATION"] = "Bearer mcat_" + "k" * 43
        unavailable = {
            "error": {"code": "database_unavailable", "message": "The database is unreachable; try again shortly."}
        }
        for url in (
            "/api/v1/movies",
            "/api/v1/movies?year=1995&sort_by=title",
            "/api/v1/process/x",
            "/api/v1/processes",
        ):
            r = web.get(url)
            assert (r.status_code, r.get_json()) == (503, unavailable), url
        r = web.get("/api/v1/health")
        assert r.status_code == 200
        health = r.get_json()
        assert isinstance(health.pop("disk_free_mb"), int)
        assert health == {
            "status": "degraded",
            "mongo": "unreachable",
            "redis": "ok",
            "worker": "none alive",
            "workers_alive": 0,
            "disk": "ok",
        }
        assert web.get("/api/v1/ping").get_json() == {"ok": True}
    finally:
        client.close()


def test_a_worker_on_ferretdb_is_told_to_chunk_its_writes(ferret_db):
    """FerretDB says who it is in buildInfo; MongoDB (and the stand-in) get no such warning."""
    warning = mongo.warn_about_server(ferret_db, write_ops=0)
    assert warning is not None and "set MONGO_WRITE_OPS=25 (it is 0)" in warning and "FerretDB v1.24.2" in warning
    assert mongo.warn_about_server(ferret_db, write_ops=25) is None
    assert "set MONGO_WRITE_OPS=25 (it is 1000)" in mongo.warn_about_server(ferret_db, write_ops=1000)
    assert mongo.warn_about_server(mongomock_client()["x"], write_ops=0) is None


def test_ferretdb_differs_an_update_command_rewriting_100_stored_documents_never_answers(ferretdb, tmp_path):
    """Why MONGO_WRITE_OPS exists: FerretDB 1.24 holds one of its 100 pooled backend connections per update
    that matches a stored document until the command ends. 99 answer; 100 never do (MongoDB takes 100,000).
    Inserts are not held so: 1,000 in one command answer, and so do 1,000 refused as duplicate keys, which
    is why the setting chunks only the rewrites of stored movies. On a server of its own, since the hang
    outlives the command."""
    from tests.support.ferretdb import FerretDB

    with FerretDB(tmp_path / "own") as server:
        with pymongo.MongoClient(server.uri) as patient:
            inserts = patient["t"]["m"]
            assert len(inserts.insert_many([{"_id": i, "x": 0} for i in range(1000)]).inserted_ids) == 1000
            with pytest.raises(BulkWriteError) as refused:
                inserts.insert_many([{"_id": i, "x": 1} for i in range(1000)], ordered=False)
        assert refused.value.details["nInserted"] == 0 and len(refused.value.details["writeErrors"]) == 1000
        client = pymongo.MongoClient(server.uri, socketTimeoutMS=3000)
        coll = client["t"]["m"]
        rewrite = [ReplaceOne({"_id": i}, {"_id": i, "x": 1}, upsert=True) for i in range(100)]
        assert coll.bulk_write(rewrite[:99], ordered=False).matched_count == 99
        with pytest.raises(pymongo.errors.NetworkTimeout):
            coll.bulk_write(rewrite, ordered=False)
        client.close()
        server.kill()
