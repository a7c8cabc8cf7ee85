"""The SQLite store's own matters for tasks, keys and workers (app/store/sqlite/{tasks,keys,workers}.py): the file
reopened, its times and update operators, an aware datetime, processes racing on one file, a busy file, and a whole
story of calls whose answers must equal the MongoDB store's, over mongomock and over FerretDB, call by call.

Each step of the state machine, keys and workers, on every store: tests/test_store_contract.py.

Time is a clock the test moves (tests/support/clock.py): a lease runs out because the clock passed it, and both
stores see the very same instants, so their answers compare whole.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import bson
import pymongo
import pytest
from bson import ObjectId

from app import tasks
from app.store.errors import Unavailable
from app.store.mongo import MongoStore
from app.store.sqlite import SqliteStore, ms
from tests.conftest import mongo_database
from tests.support.clock import START, Clock, set_clock
from tests.support.mongomock_db import mongomock_client
from tests.support.records import key, new_task, outcome

pytestmark = pytest.mark.sqlite

LEASE = 60


def open_store(path, busy_ms: int = 30_000) -> SqliteStore:
    store = SqliteStore(str(path), busy_ms=busy_ms)
    store.setup()
    return store


# -- records in, records out ---------------------------------------------------------------------------------


def test_records_survive_reopening_the_file(tmp_path, clock):
    store = open_store(tmp_path / "s.sqlite3")
    new_task(store, "t")
    claimed = store.tasks.claim("w1", LEASE, 3)
    store.keys.insert({"_id": "key_1", "name": "a", "created_at": START, "revoked_at": None})
    store.close()
    again = open_store(tmp_path / "s.sqlite3")
    assert again.tasks.get("t") == claimed
    assert [k["_id"] for k in again.keys.listing()] == ["key_1"]


def test_milliseconds_agree_with_bson_for_every_datetime():
    """The time columns must order exactly as the records' datetimes: ms() floors as BSON truncates."""
    base = datetime(2026, 1, 1)
    for i in range(20_000):
        t = base + timedelta(microseconds=i * 7_919_113)  # spread over 44 hours, every sub-millisecond part
        stored = bson.decode(bson.encode({"t": t}))["t"]
        assert ms(t) == ms(stored) == (stored - datetime(1970, 1, 1)) // timedelta(milliseconds=1)
        assert ms(stored) * 1000 == int((stored - datetime(1970, 1, 1)) / timedelta(microseconds=1))


@pytest.mark.parametrize(
    "set_, unset, inc",
    [
        ({"b": 2, "new": [1, {"x": None}]}, (), None),
        ({"n.deep": 5, "n.fresh": "f", "made.on.the.way": 1}, ("a", "missing", "n.keep", "none.x"), None),
        (None, ("n",), {"count": -1, "fresh": 2.5, "n.keep": 1}),
    ],
)
def test_update_operators_applied_in_python_give_what_mongodb_gives(set_, unset, inc):
    """records.apply, the SQLite store's $set/$unset/$inc, on the same document and changes as mongomock."""
    from app.store.sqlite import records

    doc = {"_id": 1, "a": 1, "b": "x", "count": 3, "n": {"keep": 1, "deep": 0}}
    collection = mongomock_client()["ops"]["docs"]
    collection.insert_one(dict(doc, n=dict(doc["n"])))
    operators = {"$set": set_, "$unset": {name: "" for name in unset}, "$inc": inc}
    collection.update_one({"_id": 1}, {op: v for op, v in operators.items() if v})
    assert records.apply(dict(doc, n=dict(doc["n"])), set_, unset, inc) == collection.find_one({"_id": 1})


def test_a_dotted_set_through_a_value_that_is_not_a_document_is_refused_as_a_server_refuses_it(ferret_db):
    """mongomock differs: it lets such a $set through; FerretDB refuses it, as MongoDB does."""
    from app.store.sqlite import records

    with pytest.raises(ValueError, match="not a document"):
        records.apply({"_id": 1, "a": 5}, {"a.b": 1})
    collection = ferret_db["docs"]
    collection.insert_one({"_id": 1, "a": 5})
    with pytest.raises(pymongo.errors.WriteError):
        collection.update_one({"_id": 1}, {"$set": {"a.b": 1}})


def test_an_aware_datetime_is_stored_as_its_utc_instant(sqlite_store):
    """As BSON stores it: read back naive UTC, and ordered by that instant."""
    plus_two = timezone(timedelta(hours=2))
    sqlite_store.keys.insert(key("key_aware", datetime(2026, 3, 1, 13, 0, tzinfo=plus_two)))  # 11:00 UTC
    sqlite_store.keys.insert(key("key_naive", datetime(2026, 3, 1, 12, 0)))
    listed = sqlite_store.keys.listing()
    assert [(k["_id"], k["created_at"]) for k in listed] == [
        ("key_aware", datetime(2026, 3, 1, 11, 0)),
        ("key_naive", datetime(2026, 3, 1, 12, 0)),
    ]


# -- the same story on SQLite and on MongoDB gives the same answers -----------------------------------------


def same_form(value):
    """Answers compared across stores: each ObjectId (different on each) as a placeholder."""
    if isinstance(value, ObjectId):
        return "<ObjectId>"
    if isinstance(value, dict):
        return {k: same_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [same_form(v) for v in value]
    if isinstance(value, set):
        return sorted(value)
    return value


def story(store, clock: Clock) -> list:
    """Every step of the state machine, with what each call answered."""
    said = []

    def say(label, call, *args, **kwargs):
        said.append((label, same_form(outcome(call, *args, **kwargs))))

    k1, k2 = {"key_id": "key_1", "name": "one"}, {"key_id": "key_2", "name": "two"}
    new_task(store, "a", owner=k1)
    clock.advance(milliseconds=1)
    for name, owner in (("b", k2), ("c", None), ("d", k1)):  # created in the same millisecond
        new_task(store, name, owner=owner)
    say("claim oldest", store.tasks.claim, "w1", LEASE, 2)
    say("claim a taken", store.tasks.claim, "w2", LEASE, 2, task_id="a")
    say("claim c", store.tasks.claim, "w2", LEASE, 2, task_id="c")
    clock.advance(seconds=5)
    say("progress a", store.tasks.update, "a", "w1", LEASE, rows_read=5, percent=10.0, checkpoint={"line": 6})
    say("renew c", store.tasks.renew, "c", "w2", LEASE)
    for args in ((1, 2), (2, 2), (1, 10, "key_1"), (1, 10, None, "processing"), (1, 10, "key_1", "pending")):
        say(f"page {args}", store.tasks.page, *args)
    say("active key_1", store.tasks.count_active, "key_1", 5)
    say("processing", store.tasks.with_status, ["a", "b", "c", "x"], (tasks.PROCESSING,))
    clock.advance(seconds=LEASE + 1)
    say("late progress a", store.tasks.update, "a", "w1", LEASE, rows_read=6)
    clock.advance(seconds=LEASE + 1)
    say("retake a", store.tasks.claim, "w3", LEASE, 2)
    say("old owner progress", store.tasks.update, "a", "w1", LEASE, rows_read=99)
    say("old owner renew", store.tasks.renew, "a", "w1", LEASE)
    say("old owner gives up", store.tasks.give_up, "a", "w1")
    say("old owner finish", store.tasks.finish, "a", "w1", tasks.COMPLETED)
    say("old owner release", store.tasks.release, "a", "w1")
    say("cancel c", store.tasks.request_cancel, "c")
    say("renew cancelled c", store.tasks.renew, "c", "w2", LEASE)
    say("progress cancelled c", store.tasks.update, "c", "w2", LEASE, rows_read=1)
    say("release cancelled c", store.tasks.release, "c", "w2")
    say("cancel b", store.tasks.request_cancel, "b")
    say("cancel b again", store.tasks.request_cancel, "b")
    say("claim d", store.tasks.claim, "w2", LEASE, 2)
    say("d gives up", store.tasks.give_up, "d", "w2")
    clock.advance(milliseconds=1)
    say("claim d again", store.tasks.claim, "w1", LEASE, 2)
    say("release d", store.tasks.release, "d", "w1")
    say("claim d once more", store.tasks.claim, "w1", 3 * LEASE, 2)  # outlives the next step's clock
    clock.advance(seconds=LEASE + 1)
    say("settle", store.tasks.settle_abandoned, 2)
    say("finish d", store.tasks.finish, "d", "w1", tasks.COMPLETED, rows_read=3, result_path="/r/d.csv")
    clock.advance(hours=25)
    say("expire", store.tasks.expire_results, 24)
    say("expire again", store.tasks.expire_results, 24)
    say("everything", store.tasks.page, 1, 100)
    say("active key_1 at the end", store.tasks.count_active, "key_1", 5)
    return said


@pytest.mark.parametrize("reference", ["mongomock", "ferretdb"])
def test_the_whole_story_answers_alike_on_sqlite_and_mongodb(sqlite_store, reference, request, monkeypatch):
    told = {}
    mongodb = MongoStore(mongo_database(reference, request))
    mongodb.setup()
    for name, store in (("sqlite", sqlite_store), ("mongodb", mongodb)):
        told[name] = story(store, set_clock(monkeypatch, Clock()))
    assert [label for label, _ in told["sqlite"]] == [label for label, _ in told["mongodb"]]
    for (label, on_sqlite), (_, on_mongodb) in zip(told["sqlite"], told["mongodb"]):
        assert on_sqlite == on_mongodb, label
    final = dict(told["sqlite"])
    assert [(t["task_id"], t["status"]) for t in final["everything"][0]] == [
        ("d", "completed"),
        ("c", "cancelled"),
        ("b", "cancelled"),
        ("a", "failed"),
    ]
    assert final["expire"] == [{"_id": "<ObjectId>", "task_id": "d", "result_path": "/r/d.csv"}]


# -- races and a busy file ------------------------------------------------------------------------------------


def claim_all(path: str, name: str, start, results) -> None:
    """A worker process of its own: opens the file, waits for the others, claims until nothing is left."""
    taken = []
    try:
        store = SqliteStore(path)
        start.wait()
        while (task := store.tasks.claim(name, LEASE, 3)) is not None:
            taken.append(task["task_id"])
    except Exception as e:  # told to the test, which fails naming it
        taken.append(f"{type(e).__name__}: {e}")
    results.put((name, taken))


@pytest.mark.slow
def test_racing_processes_on_one_file_claim_each_task_once(tmp_path):
    path = str(tmp_path / "service.sqlite3")
    store = open_store(path)
    for i in range(90):
        new_task(store, f"t{i:02d}")
    store.close()
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=claim_all, args=(path, f"p{i}", start, results)) for i in range(3)]
    for p in procs:
        p.start()
    taken = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    every = [t for names in taken.values() for t in names]
    assert sorted(every) == [f"t{i:02d}" for i in range(90)]  # each task once, none left
    records = {d["task_id"]: d for d in open_store(path).tasks.page(1, 1000)[0]}
    assert {k: (d["worker"], d["attempts"]) for k, d in records.items()} == {
        t: (name, 1) for name, names in taken.items() for t in names
    }


def hold_the_file(path) -> sqlite3.Connection:
    """Another connection in the middle of a write transaction: the file's write lock is taken."""
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_busy_file_is_waited_for_and_the_call_then_succeeds(tmp_path, clock):
    path = tmp_path / "service.sqlite3"
    store = open_store(path, busy_ms=20_000)
    new_task(store, "t")
    holder = hold_the_file(path)
    got = {}

    def claim():
        try:
            got["task"] = store.tasks.claim("w1", LEASE, 3)
        except Exception as e:  # pragma: no cover - reported below
            got["error"] = e

    waiter = threading.Thread(target=claim)
    waiter.start()
    try:
        waiter.join(1.0)
        assert waiter.is_alive() and got == {}  # waiting for the file, not failed
    finally:
        holder.execute("COMMIT")
        holder.close()
        waiter.join(30)
    assert (got["task"]["task_id"], got["task"]["worker"]) == ("t", "w1")
    assert store.tasks.get("t") == got["task"]


def test_a_file_busy_past_the_wait_raises_unavailable_and_changes_nothing(tmp_path, clock):
    path = tmp_path / "service.sqlite3"
    store = open_store(path, busy_ms=200)
    new_task(store, "t")
    store.tasks.claim("w1", LEASE, 3)
    before = store.tasks.get("t")
    holder = hold_the_file(path)
    try:
        for write in (
            lambda: store.tasks.update("t", "w1", LEASE, rows_read=1),  # Unavailable, not LostTask
            lambda: store.tasks.finish("t", "w1", tasks.COMPLETED),
            lambda: store.tasks.claim("w2", LEASE, 3),
            lambda: store.keys.insert(key("key_a", START)),
            lambda: store.workers.beat("w1", "h", 1, START, None),
        ):
            with pytest.raises(Unavailable, match="busy"):
                write()
        assert store.tasks.get("t") == before  # reads go on meanwhile
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.tasks.update("t", "w1", LEASE, rows_read=1)  # free again
    assert store.tasks.get("t")["rows_read"] == 1


def test_a_long_write_does_not_block_reads(tmp_path, clock):
    path = tmp_path / "service.sqlite3"
    store = open_store(path, busy_ms=200)
    new_task(store, "t")
    holder = hold_the_file(path)
    try:
        holder.execute("DELETE FROM tasks")  # not committed: readers see the file as it was
        assert store.tasks.get("t")["status"] == "pending"
        assert [d["task_id"] for d in store.tasks.page(1, 10)[0]] == ["t"]
        assert store.tasks.with_status(["t"], (tasks.PENDING,)) == {"t"}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
