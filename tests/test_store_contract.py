"""What the code expects of MongoDB, checked against both stores: mongomock (the embedded stand-in every
other in-process test uses) and FerretDB (a real MongoDB-compatible server on SQLite), through `store`.

Where the two disagree the code follows the real server; each such case is a test named
`test_mongomock_differs_...` (or `..._ferretdb_differs_...` where FerretDB is the odd one out next to
MongoDB) that pins what the real server does, and the stand-in's behaviour where it matters.
"""

from __future__ import annotations

import csv
import threading
from datetime import datetime, timedelta

import bson
import fakeredis
import pymongo
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError

from app import create_app, tasks
from app.api.routes.movies import find_movies
from app.jobs.movies.ingest import ingest_movies
from app.store import mongo, movies
from app.store.mongo.movies import Movies as MongoMovies
from app.store.mongo.movies import write_movies
from app.tools.generate import generate_movies
from tests.conftest import RecordingProducer
from tests.support import free_port
from tests.support.auth import signed_in
from tests.support.mongomock_db import mongomock_client as embedded_client
from tests.support.reference import load

LEASE = 60
BLOCK = 64 * 1024
BATCH = 50  # FerretDB 1.24 never answers an update command of 100 or more upserts (see the report)


def is_real(db) -> bool:
    return isinstance(db.client, pymongo.MongoClient)


def other_client_db(db):
    """The same database through a client of its own (a second worker); mongomock, not thread safe and
    in-memory per client, can only share its one client."""
    if not is_real(db):
        return db, (lambda: None)
    host, port = db.client.address
    client = pymongo.MongoClient(host, port, serverSelectionTimeoutMS=10_000)
    return client[db.name], client.close


def stored(db) -> dict:
    return {doc["_id"]: doc for doc in db.movies.find()}


def ingest(path, db, **kw) -> dict:
    return ingest_movies(
        str(path), MongoMovies(db.movies), block_size=BLOCK, batch_size=BATCH, max_rejects=10_000, **kw
    )


# -- ingest: upserts and their counts ---------------------------------------------------------------------


def test_upload_reupload_and_changed_rows_give_exact_documents_and_counts(store, tmp_path):
    """First upload inserts every movie (repeats in the file are updates); the same file again inserts
    nothing and changes nothing; a later file with changed rows updates exactly those (one run on FerretDB,
    which writes about a hundred upserts a second, so one file serves the three steps)."""
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
    assert store.movies.count_documents({}) == store.movies.estimated_document_count() == len(docs)

    fields = ingest(path, store)  # the same file again
    assert (fields["rows_inserted"], fields["rows_updated"]) == (0, expected["valid"])
    assert stored(store) == docs

    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, [r for r in reader if r["title"].strip()]
    changed = rows[:40:4]  # ten known movies, each given a new overview and rating
    for i, row in enumerate(changed):
        row["overview"], row["vote_average"] = f"changed overview {i}", f"{i}.5"
    new = dict(changed[0], title="A Movie Nobody Uploaded Before", release_date="2001-02-03")
    later = tmp_path / "later.csv"
    with open(later, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(changed + [new])
    update = load(later)
    assert len(update["documents"]) == 11 and len(set(update["documents"]) & set(docs)) == 10
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


def raw(key, **fields) -> RawBSONDocument:
    return RawBSONDocument(bson.encode({"_id": key, **fields}))


def stored_bytes(db) -> dict:
    """Each movie as the bytes the server holds (mongomock keeps no bytes: its documents, encoded)."""
    if not is_real(db):
        return {doc["_id"]: bson.encode(doc) for doc in db.movies.find()}
    options = bson.CodecOptions(document_class=RawBSONDocument)
    return {doc["_id"]: doc.raw for doc in db.movies.with_options(codec_options=options).find()}


def test_write_movies_inserts_new_rewrites_stored_and_the_last_repeat_wins(store):
    """Counts per document given: a new movie is inserted, a stored one or a repeat is an update."""
    assert write_movies(store.movies, [raw("a", v=1), raw("b", v=1)]) == (2, 0)
    # c is new and repeated (its last occurrence is stored), a is stored and repeated, b is stored.
    batch = [raw("c", v=1), raw("a", v=2), raw("c", v=2), raw("b", v=1), raw("a", v=3), raw("c", v=3)]
    assert write_movies(store.movies, batch) == (1, 5)
    expected = {"a": raw("a", v=3).raw, "b": raw("b", v=1).raw, "c": raw("c", v=3).raw}
    assert stored_bytes(store) == expected
    assert write_movies(store.movies, batch) == (0, 6)  # the batch replayed, as after a crash: nothing changes
    assert stored_bytes(store) == expected
    assert write_movies(store.movies, [raw("d", v=1), raw("d", v=2)], chunk=1) == (1, 1)  # a repeat in one batch
    assert stored(store)["d"] == {"_id": "d", "v": 2}


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


def test_a_stored_movie_is_not_rewritten_when_the_file_has_it_unchanged(store, monkeypatch):
    """A re-upload or a replayed batch sends its insert, reads the refused movies once, and rewrites only those
    that changed: on FerretDB 1.24 each rewrite by `_id` reads the whole collection."""
    first = [raw(f"m{i}", v=i) for i in range(40)]
    assert write_movies(store.movies, first) == (40, 0)
    again = [*first[:30], *(raw(f"m{i}", v=-i) for i in range(30, 40)), raw("new", v=0)]
    if is_real(store):
        listener = WriteCommands()
        host, port = store.client.address
        client = pymongo.MongoClient(host, port, event_listeners=[listener])
        collection = client[store.name].movies
    else:  # mongomock has no command monitoring: count what reaches the rewrite step instead
        from app.store.mongo import movies as ingest_module

        rewritten: list[int] = []
        real = ingest_module._write_chunk
        monkeypatch.setattr(ingest_module, "_write_chunk", lambda c, r: rewritten.append(len(r)) or real(c, r))
        collection = store.movies
    assert write_movies(collection, again) == (1, 40)  # counts as before: every stored movie counts as updated
    assert stored_bytes(store) == {doc["_id"]: doc.raw for doc in again}
    if is_real(store):
        assert listener.names == ["insert", "update"]  # one insert, one update command of the ten changed
        client.close()
    else:
        assert sum(rewritten) == 10


def test_write_movies_from_a_file_without_some_columns_keeps_what_it_lacks(store):
    """A stored movie gets only the fields the file has; a new movie is inserted whole, as any other."""
    store.movies.insert_one({"_id": "a", "title": "A", "budget": 5, "overview": "kept", "year": 2001})
    partial = [raw("a", title="A", budget=None, overview=None, year=2001), raw("b", title="B", budget=None)]
    assert write_movies(store.movies, partial, absent=("budget", "overview")) == (1, 1)
    assert stored(store) == {
        "a": {"_id": "a", "title": "A", "budget": 5, "overview": "kept", "year": 2001},
        "b": {"_id": "b", "title": "B", "budget": None},
    }
    assert write_movies(store.movies, [raw("a", title="A2", budget=None, overview=None)], absent=("budget",)) == (0, 1)
    assert stored(store)["a"] == {"_id": "a", "title": "A2", "budget": 5, "overview": None, "year": 2001}


def test_an_ingest_of_a_file_without_some_columns_keeps_the_stored_fields(store, tmp_path):
    full = tmp_path / "full.csv"
    full.write_text("title,release_date,budget,overview,runtime\nHeat,1995-12-15,60000000,A heist,170\n")
    assert ingest(full, store)["rows_inserted"] == 1
    partial = tmp_path / "partial.csv"
    partial.write_text("title,release_date,overview\nHeat,1995-12-15,Two men\nHeat,12/15/1995,Last wins\nRonin,,\n")
    fields = ingest(partial, store)
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_updated"]) == (3, 1, 2)
    heat = store.movies.find_one({"_id": "1995-12-15/Heat"})
    assert (heat["budget"], heat["runtime"], heat["overview"], heat["year"]) == (60000000, 170, "Last wins", 1995)
    assert stored(store)["undated/Ronin"] == load(partial)["documents"]["undated/Ronin"]


# -- the catalogue: every filter and sort, paged to the end -----------------------------------------------


@pytest.fixture
def catalogue(store, tmp_path):
    path = tmp_path / "catalogue.csv"
    generate_movies(str(path), rows=240, seed=5)
    docs = list(load(path)["documents"].values())
    store.movies.insert_many(docs)  # what the ingest stores, as the test above shows
    mongo.ensure_indexes(store)
    return docs


def mongo_order(docs: list[dict], field: str, order: int) -> list[str]:
    """MongoDB's order: nulls (and missing) before any value, then by value, ties by _id; -1 reverses both."""

    def key(d):
        v = d.get(field)
        return (0, 0, d["_id"]) if v is None else (1, v, d["_id"])

    return [d["_id"] for d in sorted(docs, key=key, reverse=order == -1)]


def all_pages(db, q: dict, limit: int) -> tuple[list[str], list[dict]]:
    ids, answers, page = [], [], 1
    while True:
        answer = find_movies(db, {**q, "page": page, "limit": limit})
        answers.append(answer)
        if not answer["movies"]:
            return ids, answers
        ids += [m["_id"] for m in answer["movies"]]
        page += 1


def test_every_filter_and_sort_pages_to_the_full_sorted_list(store, catalogue):
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
                ids, answers = all_pages(store, q, limit)
                assert ids == mongo_order(subset, field, order), q
                assert len(ids) == len(set(ids)) == len(subset)
                total_pages = -(-len(subset) // limit)
                assert [a["total_docs"] for a in answers] == [len(subset)] * (total_pages + 1)
                assert [a["total_pages"] for a in answers] == [total_pages] * (total_pages + 1)
                assert [len(a["movies"]) for a in answers[:-1]] == (
                    [limit] * (total_pages - 1) + [len(subset) - limit * (total_pages - 1)]
                )
                checked += 1
    assert checked == 24
    assert any(d["vote_average"] is None for d in catalogue) and any(d["release_date"] is None for d in catalogue)


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


def new_task(db, task_id: str, **extra) -> dict:
    extra.setdefault("path", f"/up/{task_id}")
    return tasks.create(db, task_id=task_id, kind="movies", filename=f"{task_id}.csv", size=100, **extra)


def expire_lease(db, task_id: str) -> None:
    """Time passes: the lease of `task_id` ran out a second ago."""
    db.processes.update_one({"task_id": task_id}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=1)}})


def test_create_stores_the_record_as_given(store):
    mongo.ensure_indexes(store)
    doc = new_task(store, "t1", kind_hint="x")
    got = tasks.get(store, "t1")
    assert got == doc
    assert {
        k: got[k]
        for k in (
            "status",
            "attempts",
            "rows_read",
            "rows_inserted",
            "percent",
            "warnings",
            "rejects",
            "size",
            "bytes_total",
            "kind_hint",
        )
    } == {
        "status": "pending",
        "attempts": 0,
        "rows_read": 0,
        "rows_inserted": 0,
        "percent": 0,
        "warnings": {},
        "rejects": [],
        "size": 100,
        "bytes_total": 100,
        "kind_hint": "x",
    }
    assert got["created_at"] == got["updated_at"] and got["created_at"].microsecond % 1000 == 0
    assert tasks.get(store, "nope") is None


def test_claim_the_named_one_then_the_oldest_then_nothing(store):
    mongo.ensure_indexes(store)
    for name in ("old", "mid", "new"):
        new_task(store, name)
        store.processes.update_one({"task_id": name}, {"$set": {"created_at": datetime(2020, 1, 1 + len(name))}})
    store.processes.update_one({"task_id": "old"}, {"$set": {"created_at": datetime(2019, 1, 1)}})
    named = tasks.claim(store, "w1", LEASE, 3, task_id="new")
    assert (named["task_id"], named["status"], named["worker"], named["attempts"]) == ("new", "processing", "w1", 1)
    lease = timedelta(seconds=LEASE)
    assert named["lease_expires_at"] == named["started_at"] + lease == named["updated_at"] + lease
    assert tasks.claim(store, "w2", LEASE, 3, task_id="new") is None  # taken, lease running
    assert tasks.claim(store, "w2", LEASE, 3)["task_id"] == "old"
    assert tasks.claim(store, "w2", LEASE, 3)["task_id"] == "mid"
    assert tasks.claim(store, "w2", LEASE, 3) is None
    assert tasks.get(store, "new")["worker"] == "w1"


def test_a_claimer_that_died_between_its_claim_and_its_update_blocks_the_task_for_one_lease_only(store):
    """Its `claims` record alone would keep the task from every worker for good."""
    mongo.ensure_indexes(store)
    new_task(store, "t")
    store.claims.insert_one({"_id": "t/1", "worker": "dead", "at": tasks.now()})
    assert tasks.claim(store, "w1", LEASE, 3) is None  # within a lease of the dead one's claim: not yet
    store.claims.update_one({"_id": "t/1"}, {"$set": {"at": tasks.now() - timedelta(seconds=LEASE + 1)}})
    claimed = tasks.claim(store, "w1", LEASE, 3)
    assert (claimed["task_id"], claimed["worker"], claimed["attempts"], claimed["claims"]) == ("t", "w1", 1, 1)
    assert store.claims.find_one({"_id": "t/1"})["worker"] == "w1"


def test_update_records_progress_and_renews_the_lease(store):
    new_task(store, "t")
    claimed = tasks.claim(store, "w1", 5, 3)
    tasks.update(store, "t", "w1", LEASE, rows_read=10, percent=50.0, checkpoint={"line": 12})
    got = tasks.get(store, "t")
    assert (got["rows_read"], got["percent"], got["checkpoint"]) == (10, 50.0, {"line": 12})
    assert got["lease_expires_at"] == got["updated_at"] + timedelta(seconds=LEASE) > claimed["lease_expires_at"]


def test_expired_lease_is_retaken_and_the_old_owner_locked_out(store):
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    tasks.update(store, "t", "w1", LEASE, rows_read=5, checkpoint={"line": 7})
    assert tasks.claim(store, "w2", LEASE, 3) is None  # lease still running
    expire_lease(store, "t")
    retaken = tasks.claim(store, "w2", LEASE, 3)
    assert (retaken["worker"], retaken["attempts"], retaken["rows_read"], retaken["checkpoint"]) == (
        "w2",
        2,
        5,
        {"line": 7},
    )
    with pytest.raises(tasks.LostTask):
        tasks.update(store, "t", "w1", LEASE, rows_read=99)
    with pytest.raises(tasks.LostTask):
        tasks.finish(store, "t", "w1", tasks.COMPLETED)
    assert tasks.get(store, "t")["rows_read"] == 5


def test_out_of_attempts_is_not_claimed_and_settled_as_failed(store):
    new_task(store, "t", path="/up/t.csv")
    tasks.claim(store, "w1", LEASE, 2)
    expire_lease(store, "t")
    tasks.claim(store, "w2", LEASE, 2)
    expire_lease(store, "t")
    assert tasks.claim(store, "w3", LEASE, 2) is None
    settled = tasks.settle_abandoned(store, 2)
    assert [(s["task_id"], s["status"], s["path"]) for s in settled] == [("t", "failed", "/up/t.csv")]
    got = tasks.get(store, "t")
    assert (got["status"], got["error"], got["attempts"]) == (
        "failed",
        "gave up after 2 attempts: each worker stopped before finishing",
        2,
    )
    assert "lease_expires_at" not in got and got["finished_at"] == got["updated_at"]
    assert tasks.settle_abandoned(store, 2) == []


def test_settle_abandoned_cancels_a_cancelled_task_whose_worker_vanished(store):
    new_task(store, "t")
    new_task(store, "live")
    tasks.claim(store, "w1", LEASE, 3, task_id="t")
    tasks.claim(store, "w2", LEASE, 3, task_id="live")
    tasks.request_cancel(store, "t")
    tasks.request_cancel(store, "live")
    assert tasks.settle_abandoned(store, 3) == []  # leases still running
    expire_lease(store, "t")
    assert [s["task_id"] for s in tasks.settle_abandoned(store, 3)] == ["t"]
    assert tasks.get(store, "t")["status"] == "cancelled"
    assert tasks.get(store, "live")["status"] == "processing"


def test_cancel_pending_and_processing(store):
    new_task(store, "p")
    new_task(store, "r")
    tasks.claim(store, "w1", LEASE, 3, task_id="r")
    cancelled = tasks.request_cancel(store, "p")
    assert (cancelled["status"], cancelled["cancel_requested"]) == ("cancelled", True)
    assert cancelled["finished_at"] == cancelled["updated_at"]
    asked = tasks.request_cancel(store, "r")
    assert (asked["status"], asked["cancel_requested"], asked["worker"]) == ("processing", True, "w1")
    assert tasks.request_cancel(store, "p") is None and tasks.request_cancel(store, "nope") is None
    with pytest.raises(tasks.Cancelled):
        tasks.update(store, "r", "w1", LEASE, rows_read=3)
    expire_lease(store, "r")
    assert tasks.claim(store, "w2", LEASE, 3) is None  # a cancelled task is never claimed again
    tasks.finish(store, "r", "w1", tasks.CANCELLED, rows_read=2)
    got = tasks.get(store, "r")
    assert (got["status"], got["rows_read"]) == ("cancelled", 2)
    assert tasks.request_cancel(store, "r") is None


def test_release_hands_back_without_counting_and_cancels_if_asked(store):
    new_task(store, "t")
    new_task(store, "c")
    tasks.claim(store, "w1", LEASE, 3, task_id="t")
    tasks.update(store, "t", "w1", LEASE, rows_read=4, checkpoint={"line": 6})
    tasks.release(store, "t", "w1")
    got = tasks.get(store, "t")
    assert (got["status"], got["attempts"], got["checkpoint"], got["rows_read"]) == ("pending", 0, {"line": 6}, 4)
    assert "worker" not in got and "lease_expires_at" not in got
    again = tasks.claim(store, "w2", LEASE, 3, task_id="t")
    assert (again["attempts"], again["worker"]) == (1, "w2")
    tasks.claim(store, "w1", LEASE, 3, task_id="c")
    tasks.request_cancel(store, "c")
    tasks.release(store, "c", "w1")
    assert tasks.get(store, "c")["status"] == "cancelled"


def test_finish_completes_and_clears_the_lease_and_checkpoint(store):
    new_task(store, "t")
    tasks.claim(store, "w1", LEASE, 3)
    tasks.update(store, "t", "w1", LEASE, checkpoint={"line": 9})
    tasks.finish(store, "t", "w1", tasks.COMPLETED, rows_read=8, rows_inserted=8)
    got = tasks.get(store, "t")
    assert (got["status"], got["rows_read"], got["rows_inserted"]) == ("completed", 8, 8)
    assert "checkpoint" not in got and "lease_expires_at" not in got
    assert got["finished_at"] == got["updated_at"] and got["duration_s"] == round(
        (got["finished_at"] - got["started_at"]).total_seconds(), 3
    )
    with pytest.raises(tasks.LostTask):
        tasks.finish(store, "t", "w1", tasks.FAILED)
    with pytest.raises(tasks.LostTask):
        tasks.update(store, "t", "w1", LEASE, rows_read=1)
    assert tasks.claim(store, "w2", LEASE, 3) is None


def test_racing_workers_claim_each_task_once(store):
    """Four workers (each its own client on FerretDB; mongomock shares its one client) claim 40 tasks."""
    mongo.ensure_indexes(store)
    for i in range(40):
        new_task(store, f"t{i:02d}")
    claims: dict[str, list[str]] = {}
    errors = []
    start = threading.Barrier(4)

    def work(name: str):
        db, close = other_client_db(store)
        try:
            start.wait()
            while (task := tasks.claim(db, name, LEASE, 3)) is not None:
                claims.setdefault(task["task_id"], []).append(name)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(claims) == [f"t{i:02d}" for i in range(40)]
    assert {k: v for k, v in claims.items() if len(v) > 1} == {}
    records = {d["task_id"]: d for d in store.processes.find()}
    assert all(records[k]["worker"] == v[0] and records[k]["attempts"] == 1 for k, v in claims.items())


# -- indexes ----------------------------------------------------------------------------------------------


def declared(db) -> dict:
    return {
        name: {ix["name"]: (dict(ix["key"]), bool(ix.get("unique"))) for ix in getattr(db, name).list_indexes()}
        for name in ("movies", "processes", "workers")
    }


def test_indexes_read_back_as_declared(store):
    mongo.ensure_indexes(store)
    mongo.ensure_indexes(store)  # start-up runs it every time: a no-op the second time
    spec_names = {"_".join(f"{f}_{d}" for f, d in spec): (dict(spec), False) for spec in movies.index_specs()}
    assert len(spec_names) == 12
    assert declared(store) == {
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
    keys = {ix["name"]: list(ix["key"].items()) for ix in store.movies.list_indexes()}
    assert keys["year_1_original_language_1_title_1__id_1"] == [
        ("year", 1),
        ("original_language", 1),
        ("title", 1),
        ("_id", 1),
    ]


def test_mongomock_differs_list_indexes_order(store):
    """mongomock differs: it lists indexes in creation order; FerretDB lists `_id_` first, then by name.
    (The code reads indexes by name only, so it depends on neither.)"""
    mongo.ensure_indexes(store)
    names = [ix["name"] for ix in store.processes.list_indexes()]
    if is_real(store):
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


# -- the database errors the code maps --------------------------------------------------------------------


def test_duplicate_task_id_is_refused_by_the_unique_index(store):
    mongo.ensure_indexes(store)
    new_task(store, "same")
    with pytest.raises(DuplicateKeyError) as e:
        new_task(store, "same")
    assert e.value.code == 11000
    assert store.processes.count_documents({"task_id": "same"}) == 1


def test_mongomock_differs_duplicate_key_error_details(store):
    """mongomock differs: its DuplicateKeyError names the index (`keyPattern`, `keyValue`); FerretDB's
    carries only the code and message. The code reads only `code`, never the details."""
    mongo.ensure_indexes(store)
    new_task(store, "same")
    with pytest.raises(DuplicateKeyError) as e:
        new_task(store, "same")
    details = e.value.details
    if is_real(store):
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


def test_mongomock_differs_a_duplicate_key_in_an_unordered_bulk_upsert(store):
    """mongomock differs (and so does MongoDB, whose behaviour mongomock has here) on an upsert batch with
    duplicate keys; write_movies' rewrites (its only upserts) filter on `_id` alone, so they meet a duplicate
    key only if another upload inserts the movie between the two (test_same_new_movies_written_at_once_end_up_once).

    mongomock, like MongoDB: every other request applied, writeErrors at indexes 1 and 3 with code 11000,
    nUpserted 2, nMatched 1.
    FerretDB 1.24: the unordered batch stops at the first conflict, the error names index 0 (not 1), and the
    reply has no `n`/`nModified`, so pymongo itself fails (KeyError 'nModified') before any BulkWriteError.
    An insert_many with duplicate keys is answered as MongoDB does on both (test_write_movies_inserts_...).
    """
    batch = clash_batch(store)
    if is_real(store):
        with pytest.raises(KeyError, match="nModified"):
            store.movies.bulk_write(batch, ordered=False)
        raw = store.command(
            "update",
            "movies",
            ordered=False,
            updates=[
                {"q": {"_id": "d", "v": 5}, "u": {"_id": "d", "v": 5}, "upsert": True},
                {"q": {"_id": "c"}, "u": {"_id": "c", "v": 2}, "upsert": True},
            ],
        )
        assert [(e["index"], e["code"]) for e in raw["writeErrors"]] == [(0, 11000)]
        assert "n" not in raw and "nModified" not in raw
        assert stored(store) == {"a": {"_id": "a", "v": 1}, "b": {"_id": "b", "v": 0}, "d": {"_id": "d", "v": 0}}
        return
    with pytest.raises(BulkWriteError) as e:
        store.movies.bulk_write(batch, ordered=False)
    details = e.value.details
    assert [(err["index"], err["code"]) for err in details["writeErrors"]] == [(1, 11000), (3, 11000)]
    assert (details["nUpserted"], details["nMatched"]) == (2, 1)
    assert stored(store) == {
        "a": {"_id": "a", "v": 1},
        "b": {"_id": "b", "v": 1},
        "c": {"_id": "c", "v": 1},
        "d": {"_id": "d", "v": 0},
    }


def test_an_insert_with_duplicate_keys_is_answered_alike_on_both(store):
    """What write_movies reads from a refused insert: nInserted and the index of each duplicate, code 11000."""
    store.movies.insert_many([{"_id": i} for i in range(0, 10, 2)])
    with pytest.raises(BulkWriteError) as e:
        store.movies.insert_many([{"_id": i, "v": 1} for i in [0, 1, 2, 3, 3, 5]], ordered=False)
    details = e.value.details
    assert details["nInserted"] == 3
    assert [(err["index"], err["code"]) for err in details["writeErrors"]] == [(0, 11000), (2, 11000), (4, 11000)]
    assert sorted((d["_id"], d.get("v")) for d in store.movies.find()) == [
        (0, None),
        (1, 1),
        (2, None),
        (3, 1),
        (4, None),
        (5, 1),
        (6, None),
        (8, None),
    ]


def test_same_new_movies_written_at_once_end_up_once(store):
    """Three uploads of the same new movies at once: every movie is stored once, and every row is counted
    once: the insert that wins counts it inserted, the others are refused as duplicate keys and rewrite it,
    counted updated. (mongomock is not thread-safe: there only the sum is checked.)"""
    keys = [f"m{i:03d}" for i in range(150)]
    inserted, updated, errors = [], [], []
    start = threading.Barrier(3)

    def upload():
        db, close = other_client_db(store)
        try:
            start.wait()
            docs = [raw(k, title=k) for k in keys]
            for i in range(0, len(keys), 10):
                a, b = write_movies(db.movies, docs[i : i + 10])
                inserted.append(a)
                updated.append(b)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            close()

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert stored(store) == {k: {"_id": k, "title": k} for k in keys}
    assert sum(inserted) + sum(updated) == 450, (sum(inserted), sum(updated))
    if is_real(store):
        assert (sum(inserted), sum(updated)) == (150, 300)


def test_a_movie_over_16_mb_is_rejected_alone(store, tmp_path):
    path = tmp_path / "huge.csv"
    # Each text field has a maximum (an extra column's is 4 KiB): 4,400 of them full make an 18 MB movie.
    columns, full = 4_400, "x" * 4096
    extras = ",".join(f"c{n}" for n in range(columns))
    huge = ",".join([full] * columns)
    path.write_text(f"title,{extras}\nSmall{',' * columns}\nHuge,{huge}\nAlso small{',' * columns}\n", encoding="utf-8")
    fields = ingest_movies(
        str(path), MongoMovies(store.movies), block_size=40 * 1024 * 1024, batch_size=BATCH, max_rejects=10
    )
    assert (fields["rows_read"], fields["rows_inserted"], fields["rows_rejected"]) == (3, 2, 1)
    assert fields["rejects"] == [{"line": 3, "reason": "the movie is larger than MongoDB's 16 MB document limit"}]
    assert sorted(stored(store)) == ["undated/Also small", "undated/Small"]


def test_mongomock_differs_documents_over_16_mb_are_refused_only_on_insert_one(store):
    """mongomock differs: it stores a 17 MB document however it is written. Against FerretDB pymongo
    refuses it in insert_one (DocumentTooLarge, before sending), but an insert_many of it, the ingest's
    write, is sent and FerretDB 1.24 stores it (MongoDB would answer a write error). No store can be relied
    on to refuse it, which is why the ingest rejects such a movie itself (test_a_movie_over_16_mb_is_rejected_alone)."""
    doc = {"_id": "huge", "overview": "x" * (17 * 1024 * 1024)}
    if is_real(store):
        with pytest.raises(DocumentTooLarge):
            store.movies.insert_one(doc)
        assert store.movies.count_documents({}) == 0
    else:
        store.movies.insert_one(doc)
        store.movies.delete_one({"_id": "huge"})
    assert write_movies(store.movies, [RawBSONDocument(bson.encode(doc))]) == (1, 0)
    assert len(store.movies.find_one({"_id": "huge"})["overview"]) == 17 * 1024 * 1024


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
    assert mongo.warn_about_server(embedded_client()["x"], write_ops=0) is None


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
