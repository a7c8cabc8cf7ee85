"""The SQLite store's tasks, keys and workers (app/store/sqlite/{tasks,keys,workers}.py): every step of the task
state machine, the races that matter (threads and real processes on one file), a busy file, and the same calls
on the MongoDB store (app/store/mongo/) over mongomock and over FerretDB, whose answers the SQLite ones must
equal.

Time is a clock the test moves (app.store.tasks.now, which both stores read): a lease runs out because the clock
passed it, and both stores see the very same instants, so their answers compare whole.
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
from bson.errors import InvalidDocument

from app import tasks
from app.store import tasks as shared_tasks
from app.store.errors import Unavailable
from app.store.mongo import MongoStore
from app.store.mongo import tasks as mongo_tasks
from app.store.sqlite import SqliteStore, ms
from tests.support.mongomock_db import mongomock_client

LEASE = 60
START = datetime(2026, 3, 1, 12, 0, 0, 123000)


class Clock:
    """app.store.tasks.now for a test: moves only when told."""

    def __init__(self):
        self.t = START

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta) -> None:
        self.t += timedelta(**delta)


def set_clock(monkeypatch, clock: Clock) -> Clock:
    """Every reader of the clock: both stores' tasks and app.tasks.create."""
    for module in (shared_tasks, mongo_tasks, tasks):
        monkeypatch.setattr(module, "now", clock)
    return clock


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return set_clock(monkeypatch, Clock())


def open_store(path, busy_ms: int = 30_000) -> SqliteStore:
    store = SqliteStore(str(path), busy_ms=busy_ms)
    store.setup()
    return store


@pytest.fixture
def sqlite_store(tmp_path):
    store = open_store(tmp_path / "service.sqlite3")
    yield store
    store.close()


def mongomock_store() -> MongoStore:
    store = MongoStore(mongomock_client()["records"])
    store.setup()
    return store


def ferretdb_store(request) -> MongoStore:
    store = MongoStore(request.getfixturevalue("ferret_db"))
    store.setup()
    return store


@pytest.fixture(params=["sqlite", "mongomock", "ferretdb"])
def impl(request):
    """The same test on the SQLite store and on the MongoDB store, over mongomock and over a real server."""
    if request.param == "ferretdb":
        return ferretdb_store(request)
    if request.param == "mongomock":
        return mongomock_store()
    return request.getfixturevalue("sqlite_store")


def keeps_field_order(store) -> bool:
    """SQLite and a real server return `_id` first; mongomock keeps the order the caller's dict had."""
    return store.name == "sqlite" or isinstance(store.db.client, pymongo.MongoClient)


def new_task(store, task_id: str, **extra) -> dict:
    """A pending task as app.tasks.create builds and stores it."""
    extra.setdefault("path", f"/up/{task_id}.csv")
    return tasks.create(store, task_id=task_id, kind="movies", filename=f"{task_id}.csv", size=100, **extra)


def outcome(call, *args, **kwargs):
    """What a call gave: its value, or the name of the exception it raised."""
    try:
        return call(*args, **kwargs)
    except (tasks.LostTask, tasks.Cancelled) as e:
        return f"raised {type(e).__name__}({e})"


# -- records in, records out ---------------------------------------------------------------------------------


def test_a_task_is_read_back_as_mongodb_returns_it(impl, clock):
    odd = {
        "nested": {"list": [1, 2.5, "x", None, {"deep": [datetime(2001, 2, 3, 4, 5, 6, 789999)]}], "empty": {}},
        "big": 2**62,
        "unicode": "Amélie — 東京",
        "at": datetime(1969, 12, 31, 23, 59, 59, 999999),  # before the epoch: BSON floors it, as MongoDB does
        "flag": False,
    }
    doc = new_task(impl, "t1", owner={"key_id": "key_1", "name": "one"}, **odd)
    assert isinstance(doc["_id"], ObjectId)  # given in the caller's dict, as pymongo's insert_one does
    got = impl.tasks.get("t1")
    assert got == {
        **doc,
        "nested": {"list": [1, 2.5, "x", None, {"deep": [datetime(2001, 2, 3, 4, 5, 6, 789000)]}], "empty": {}},
        "at": datetime(1969, 12, 31, 23, 59, 59, 999000),
    }
    if keeps_field_order(impl):
        assert list(got)[0] == "_id"
    assert (got["status"], got["attempts"], got["created_at"], got["warnings"], got["rejects"]) == (
        "pending",
        0,
        START,
        {},
        [],
    )
    assert impl.tasks.get("nope") is None


def test_a_task_id_stored_twice_is_refused_and_the_first_kept(sqlite_store, clock):
    first = new_task(sqlite_store, "same", filename_hint="first")
    with pytest.raises(sqlite3.IntegrityError):
        new_task(sqlite_store, "same", filename_hint="second")
    assert sqlite_store.tasks.get("same") == first
    assert sqlite_store.tasks.page(1, 10) == ([first], 1)


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


# -- the state machine ----------------------------------------------------------------------------------------


def test_claim_the_named_one_then_the_oldest_then_nothing(impl, clock):
    new_task(impl, "mid")
    created = new_task(impl, "new")
    clock.advance(seconds=1)
    new_task(impl, "newest")
    named = impl.tasks.claim("w1", LEASE, 3, task_id="new")
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
    assert impl.tasks.get("new") == named
    assert impl.tasks.claim("w2", LEASE, 3, task_id="new") is None  # taken, lease running
    assert impl.tasks.claim("w2", LEASE, 3, task_id="nope") is None
    assert impl.tasks.claim("w2", LEASE, 3)["task_id"] == "mid"  # created in the same millisecond as "new"
    assert impl.tasks.claim("w2", LEASE, 3)["task_id"] == "newest"
    assert impl.tasks.claim("w2", LEASE, 3) is None


def test_update_records_progress_and_renews_the_lease(impl, clock):
    new_task(impl, "t")
    impl.tasks.claim("w1", 5, 3)
    clock.advance(seconds=3)
    assert impl.tasks.update("t", "w1", LEASE, rows_read=10, percent=50.0, checkpoint={"line": 12}) is None
    got = impl.tasks.get("t")
    assert (got["rows_read"], got["percent"], got["checkpoint"], got["updated_at"], got["lease_expires_at"]) == (
        10,
        50.0,
        {"line": 12},
        clock.t,
        clock.t + timedelta(seconds=LEASE),
    )


def test_a_lease_run_out_is_claimed_again_and_the_old_owner_locked_out(impl, clock):
    new_task(impl, "t")
    impl.tasks.claim("w1", LEASE, 3)
    impl.tasks.update("t", "w1", LEASE, rows_read=5, checkpoint={"line": 7})
    clock.advance(seconds=LEASE)
    assert impl.tasks.claim("w2", LEASE, 3) is None  # at the lease's last millisecond: still w1's
    impl.tasks.update("t", "w1", LEASE, rows_read=6)  # a late owner nobody took over from writes on
    clock.advance(seconds=LEASE, milliseconds=1)
    retaken = impl.tasks.claim("w2", LEASE, 3)
    assert (retaken["worker"], retaken["attempts"], retaken["claims"], retaken["rows_read"], retaken["checkpoint"]) == (
        "w2",
        2,
        2,
        6,
        {"line": 7},
    )
    before = impl.tasks.get("t")
    assert outcome(impl.tasks.update, "t", "w1", LEASE, rows_read=99) == "raised LostTask(t)"
    assert outcome(impl.tasks.renew, "t", "w1", LEASE) == "raised LostTask(t)"
    assert outcome(impl.tasks.finish, "t", "w1", tasks.COMPLETED) == "raised LostTask(t)"
    assert impl.tasks.give_up("t", "w1") is False
    assert impl.tasks.release("t", "w1") is None
    assert impl.tasks.get("t") == before  # none of the old owner's writes landed


def test_out_of_attempts_is_not_claimed_and_settled_as_failed(impl, clock):
    new_task(impl, "t", path="/up/t.csv")
    new_task(impl, "other")
    impl.tasks.claim("w1", LEASE, 2, task_id="t")
    clock.advance(seconds=LEASE + 1)
    impl.tasks.claim("w2", LEASE, 2, task_id="t")
    clock.advance(seconds=LEASE + 1)
    assert impl.tasks.claim("w3", LEASE, 2, task_id="t") is None
    assert impl.tasks.settle_abandoned(3) == []  # a third attempt is allowed: not settled
    settled = impl.tasks.settle_abandoned(2)
    t_id = impl.tasks.get("t")["_id"]
    assert settled == [{"_id": t_id, "task_id": "t", "path": "/up/t.csv", "status": "failed"}]
    got = impl.tasks.get("t")
    assert (got["status"], got["error"], got["attempts"], got["finished_at"], got["updated_at"]) == (
        "failed",
        "gave up after 2 attempts: each worker stopped before finishing",
        2,
        clock.t,
        clock.t,
    )
    assert "lease_expires_at" not in got and got["worker"] == "w2"
    assert impl.tasks.settle_abandoned(2) == []
    assert impl.tasks.get("other")["status"] == "pending"


def test_settle_abandoned_cancels_a_cancelled_task_whose_worker_vanished(impl, clock):
    new_task(impl, "t")
    new_task(impl, "live")
    new_task(impl, "nopath")
    impl.tasks.claim("w1", LEASE, 3, task_id="t")
    impl.tasks.claim("w2", 3 * LEASE, 3, task_id="live")
    impl.tasks.claim("w3", LEASE, 1, task_id="nopath")
    impl.tasks.request_cancel("t")
    impl.tasks.request_cancel("live")
    assert impl.tasks.settle_abandoned(1) == []  # leases still running
    clock.advance(seconds=LEASE + 1)
    settled = impl.tasks.settle_abandoned(1)
    ids = {name: impl.tasks.get(name)["_id"] for name in ("t", "nopath")}
    assert settled == [
        {"_id": ids["t"], "task_id": "t", "path": "/up/t.csv", "status": "cancelled"},  # the cancelled first
        {"_id": ids["nopath"], "task_id": "nopath", "path": "/up/nopath.csv", "status": "failed"},
    ]
    got = impl.tasks.get("t")
    assert (got["status"], got["cancel_requested"], got["finished_at"], "error" in got) == (
        "cancelled",
        True,
        clock.t,
        False,
    )
    assert impl.tasks.get("live")["status"] == "processing"


def test_cancel_a_pending_task_and_a_processing_one(impl, clock):
    pending = new_task(impl, "p")
    new_task(impl, "r")
    impl.tasks.claim("w1", LEASE, 3, task_id="r")
    clock.advance(seconds=1)
    cancelled = impl.tasks.request_cancel("p")
    assert cancelled == {
        **pending,
        "status": "cancelled",
        "cancel_requested": True,
        "finished_at": clock.t,
        "updated_at": clock.t,
    }
    assert impl.tasks.get("p") == cancelled
    asked = impl.tasks.request_cancel("r")
    assert (asked["status"], asked["cancel_requested"], asked["worker"], asked["updated_at"]) == (
        "processing",
        True,
        "w1",
        clock.t,
    )
    assert impl.tasks.request_cancel("p") is None and impl.tasks.request_cancel("nope") is None
    assert outcome(impl.tasks.update, "r", "w1", LEASE, rows_read=3) == "raised Cancelled(r)"
    assert impl.tasks.get("r")["rows_read"] == 0
    clock.advance(seconds=5)
    assert outcome(impl.tasks.renew, "r", "w1", LEASE) == "raised Cancelled(r)"
    assert impl.tasks.get("r")["lease_expires_at"] == clock.t + timedelta(seconds=LEASE)  # kept to record it
    clock.advance(seconds=LEASE + 1)
    assert impl.tasks.claim("w2", LEASE, 3) is None  # a cancelled task is never claimed again
    impl.tasks.finish("r", "w1", tasks.CANCELLED, rows_read=2)
    got = impl.tasks.get("r")
    assert (got["status"], got["rows_read"], got["duration_s"]) == (
        "cancelled",
        2,
        LEASE + 7.0,
    )  # claimed 1 + 5 + 61 s before
    assert impl.tasks.request_cancel("r") is None


def test_release_hands_back_without_counting_and_cancels_if_asked(impl, clock):
    new_task(impl, "t")
    new_task(impl, "c")
    impl.tasks.claim("w1", LEASE, 3, task_id="t")
    impl.tasks.update("t", "w1", LEASE, rows_read=4, checkpoint={"line": 6})
    clock.advance(seconds=2)
    assert impl.tasks.release("t", "w2") is None  # not w2's: nothing changes
    assert impl.tasks.get("t")["worker"] == "w1"
    impl.tasks.release("t", "w1")
    got = impl.tasks.get("t")
    assert (got["status"], got["attempts"], got["checkpoint"], got["rows_read"], got["updated_at"]) == (
        "pending",
        0,
        {"line": 6},
        4,
        clock.t,
    )
    assert "worker" not in got and "lease_expires_at" not in got
    again = impl.tasks.claim("w2", LEASE, 3, task_id="t")
    assert (again["attempts"], again["worker"], again["claims"]) == (1, "w2", 2)
    impl.tasks.claim("w1", LEASE, 3, task_id="c")
    impl.tasks.update("c", "w1", LEASE, checkpoint={"line": 3})
    impl.tasks.request_cancel("c")
    impl.tasks.release("c", "w1")
    got = impl.tasks.get("c")
    assert (got["status"], got["finished_at"], got["duration_s"]) == ("cancelled", clock.t, 0.0)
    assert "checkpoint" not in got and "lease_expires_at" not in got


def test_finish_completes_and_clears_the_lease_and_checkpoint(impl, clock):
    new_task(impl, "t")
    impl.tasks.claim("w1", LEASE, 3)
    impl.tasks.update("t", "w1", LEASE, checkpoint={"line": 9})
    clock.advance(seconds=12, milliseconds=345)
    impl.tasks.finish("t", "w1", tasks.COMPLETED, rows_read=8, rows_inserted=8)
    got = impl.tasks.get("t")
    assert (got["status"], got["rows_read"], got["rows_inserted"], got["finished_at"], got["duration_s"]) == (
        "completed",
        8,
        8,
        clock.t,
        12.345,
    )
    assert "checkpoint" not in got and "lease_expires_at" not in got
    assert outcome(impl.tasks.finish, "t", "w1", tasks.FAILED) == "raised LostTask(t)"
    assert outcome(impl.tasks.update, "t", "w1", LEASE, rows_read=1) == "raised LostTask(t)"
    assert impl.tasks.get("t") == got
    assert impl.tasks.claim("w2", LEASE, 3) is None


def test_give_up_ends_the_lease_so_another_worker_takes_the_next_attempt(impl, clock):
    new_task(impl, "t")
    impl.tasks.claim("w1", LEASE, 3)
    assert impl.tasks.give_up("t", "w2") is False
    clock.advance(seconds=1)
    assert impl.tasks.give_up("t", "w1") is True
    assert impl.tasks.get("t")["lease_expires_at"] == clock.t
    assert impl.tasks.claim("w2", LEASE, 3) is None  # the lease ends now: not yet before now
    clock.advance(milliseconds=1)
    taken = impl.tasks.claim("w2", LEASE, 3)
    assert (taken["worker"], taken["attempts"]) == ("w2", 2)
    assert impl.tasks.give_up("t", "w1") is False


def test_expire_results_marks_old_results_once(impl, clock):
    for name in ("old", "old_none", "young", "no_result", "failed"):
        new_task(impl, name)
        impl.tasks.claim("w", LEASE, 3, task_id=name)
    impl.tasks.finish("old", "w", tasks.COMPLETED, result_path="/r/old.csv")
    impl.tasks.finish("old_none", "w", tasks.COMPLETED, result_path=None)  # present, even as None: $exists
    impl.tasks.finish("no_result", "w", tasks.COMPLETED)
    impl.tasks.finish("failed", "w", tasks.FAILED, result_path="/r/failed.csv")
    clock.advance(hours=2)
    impl.tasks.finish("young", "w", tasks.COMPLETED, result_path="/r/young.csv")
    assert impl.tasks.expire_results(2) == []  # finished exactly 2 hours ago: not over
    clock.advance(milliseconds=1)
    ids = {name: impl.tasks.get(name)["_id"] for name in ("old", "old_none")}
    assert impl.tasks.expire_results(2) == [
        {"_id": ids["old"], "task_id": "old", "result_path": "/r/old.csv"},
        {"_id": ids["old_none"], "task_id": "old_none", "result_path": None},
    ]
    assert impl.tasks.get("old")["result_removed_at"] == clock.t
    assert impl.tasks.expire_results(2) == []
    clock.advance(hours=2)
    assert [t["task_id"] for t in impl.tasks.expire_results(2)] == ["young"]
    assert "result_removed_at" not in impl.tasks.get("failed")


# -- listings and counts -------------------------------------------------------------------------------------


def test_page_newest_first_with_its_tie_break_filters_and_totals(impl, clock):
    owners = {"a": {"key_id": "key_a", "name": "A"}, "b": {"key_id": "key_b", "name": "B"}, "n": None}
    for i in range(12):
        if i % 4 == 0:
            clock.advance(seconds=1)  # four tasks each second: ties broken by _id, newest first
        new_task(impl, f"t{i:02d}", owner=owners["abn"[i % 3]])
    impl.tasks.claim("w", LEASE, 3, task_id="t03")
    impl.tasks.claim("w", LEASE, 3, task_id="t06")
    newest_first = [f"t{i:02d}" for i in reversed(range(12))]

    def names(page):
        docs, total = page
        return [d["task_id"] for d in docs], total

    assert names(impl.tasks.page(1, 5)) == (newest_first[:5], 12)
    assert names(impl.tasks.page(3, 5)) == (newest_first[10:], 12)
    assert names(impl.tasks.page(4, 5)) == ([], 12)
    assert names(impl.tasks.page(1, 100, "key_a")) == (["t09", "t06", "t03", "t00"], 4)
    assert names(impl.tasks.page(2, 3, "key_a")) == (["t00"], 4)
    assert names(impl.tasks.page(1, 100, None, "processing")) == (["t06", "t03"], 2)
    assert names(impl.tasks.page(1, 100, "key_a", "pending")) == (["t09", "t00"], 2)
    assert names(impl.tasks.page(1, 100, "key_nobody")) == ([], 0)
    docs, _ = impl.tasks.page(1, 1)
    assert docs == [impl.tasks.get("t11")]


def test_count_active_counts_a_keys_pending_and_processing_up_to_the_limit(impl, clock):
    mine = {"key_id": "key_a", "name": "A"}
    for i in range(5):
        new_task(impl, f"a{i}", owner=mine)
    new_task(impl, "b0", owner={"key_id": "key_b", "name": "B"})
    new_task(impl, "n0", owner=None)
    impl.tasks.claim("w", LEASE, 3, task_id="a0")
    impl.tasks.claim("w", LEASE, 3, task_id="a1")
    impl.tasks.finish("a1", "w", tasks.COMPLETED)
    impl.tasks.request_cancel("a2")
    assert impl.tasks.count_active("key_a", 10) == 3  # a0 processing, a3 and a4 pending
    assert impl.tasks.count_active("key_a", 2) == 2
    assert impl.tasks.count_active("key_b", 10) == 1
    assert impl.tasks.count_active("key_nobody", 10) == 0


def test_with_status_answers_for_many_ids(impl, clock):
    for i in range(1200):
        new_task(impl, f"t{i:04d}")
    for i in range(0, 1200, 100):
        impl.tasks.claim("w", LEASE, 3, task_id=f"t{i:04d}")
    impl.tasks.finish("t0500", "w", tasks.COMPLETED)
    asked = [f"t{i:04d}" for i in range(1200)] + ["t0100", "nope"]  # over two SQL chunks, a repeat, an unknown
    assert impl.tasks.with_status(asked, (tasks.PROCESSING,)) == {f"t{i:04d}" for i in range(0, 1200, 100)} - {"t0500"}
    assert impl.tasks.with_status(asked, tasks.FINISHED) == {"t0500"}
    assert impl.tasks.with_status([], tasks.FINISHED) == set()
    assert impl.tasks.with_status(["t0001"], ()) == set()


# -- keys and workers ----------------------------------------------------------------------------------------


def key(key_id: str, created_at: datetime, **extra) -> dict:
    return {
        "_id": key_id,
        "name": key_id,
        "role": "reader",
        "hash": "h" * 64,
        "prefix": "mcat_",
        "created_at": created_at,
        "last_used_at": None,
        "revoked_at": None,
        **extra,
    }


def test_keys_insert_get_touch_listing_and_revoke(impl):
    t = START
    for key_id, created in (("key_c", t), ("key_a", t), ("key_b", t - timedelta(seconds=1))):
        impl.keys.insert(key(key_id, created))
    assert [k["_id"] for k in impl.keys.listing()] == ["key_b", "key_a", "key_c"]  # created_at, then _id
    assert impl.keys.get("key_a") == key("key_a", t) and impl.keys.get("key_zz") is None
    impl.keys.touch("key_a", t + timedelta(minutes=5, microseconds=1500))
    assert impl.keys.get("key_a")["last_used_at"] == t + timedelta(minutes=5, milliseconds=1)
    impl.keys.revoke("key_a", t + timedelta(hours=1))
    impl.keys.revoke("key_a", t + timedelta(hours=2))  # already revoked: the first time stays
    impl.keys.revoke("key_zz", t)
    got = impl.keys.get("key_a")  # revoked, still read back
    assert (got["revoked_at"], got["last_used_at"]) == (
        t + timedelta(hours=1),
        t + timedelta(minutes=5, milliseconds=1),
    )
    assert impl.keys.listing() == [impl.keys.get(k) for k in ("key_b", "key_a", "key_c")]
    assert impl.keys.any_live() is True
    impl.keys.revoke("key_b", t)
    impl.keys.revoke("key_c", t)
    assert impl.keys.any_live() is False


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


def test_no_keys_is_no_live_key(impl):
    assert impl.keys.any_live() is False and impl.keys.listing() == []


def test_workers_beat_forget_and_alive(impl):
    t = START
    impl.workers.beat("w1", "host", 11, t, None)
    impl.workers.beat("w2", "host", 12, t, "task-a")
    assert impl.workers.alive(t - timedelta(milliseconds=1)) == 2
    assert impl.workers.alive(t) == 0  # a beat at `since` is not after it
    impl.workers.beat("w1", "host", 11, t + timedelta(seconds=10), "task-b")  # the same worker, once
    assert impl.workers.alive(t - timedelta(seconds=1)) == 2
    assert impl.workers.alive(t + timedelta(seconds=5)) == 1
    impl.workers.forget("w1")
    impl.workers.forget("nobody")
    assert impl.workers.alive(t - timedelta(seconds=1)) == 1


# -- the same story on both stores gives the same answers ---------------------------------------------------


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
    mongodb = mongomock_store() if reference == "mongomock" else ferretdb_store(request)
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


def claimed_records(store) -> dict:
    docs, _ = store.tasks.page(1, 1000)
    return {d["task_id"]: d for d in docs}


def test_racing_threads_claim_each_task_once(sqlite_store):
    for i in range(60):
        new_task(sqlite_store, f"t{i:02d}")
    claims: dict[str, list[str]] = {}
    errors = []
    start = threading.Barrier(4)

    def work(name: str):
        try:
            start.wait()
            while (task := sqlite_store.tasks.claim(name, LEASE, 3)) is not None:  # each thread its connection
                claims.setdefault(task["task_id"], []).append(name)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(claims) == [f"t{i:02d}" for i in range(60)]
    assert {k: v for k, v in claims.items() if len(v) > 1} == {}
    records = claimed_records(sqlite_store)
    assert {k: (d["worker"], d["attempts"], d["claims"]) for k, d in records.items()} == {
        k: (v[0], 1, 1) for k, v in claims.items()
    }


def test_racing_threads_for_a_lease_run_out_one_takes_it_once(sqlite_store, clock):
    new_task(sqlite_store, "t")
    sqlite_store.tasks.claim("w0", LEASE, 3)
    clock.advance(seconds=LEASE + 1)
    won, start = [], threading.Barrier(6)

    def work(name: str):
        start.wait()
        if sqlite_store.tasks.claim(name, LEASE, 3) is not None:
            won.append(name)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1
    got = sqlite_store.tasks.get("t")
    assert (got["worker"], got["attempts"], got["claims"]) == (won[0], 2, 2)
    assert outcome(sqlite_store.tasks.update, "t", "w0", LEASE, rows_read=1) == "raised LostTask(t)"


def test_a_value_bson_cannot_hold_changes_nothing_and_the_next_call_works(sqlite_store, clock):
    new_task(sqlite_store, "t")
    sqlite_store.tasks.claim("w1", LEASE, 3)
    before = sqlite_store.tasks.get("t")
    with pytest.raises(InvalidDocument):  # as pymongo refuses it
        sqlite_store.tasks.update("t", "w1", LEASE, rows_read=1, odd={1, 2})
    assert sqlite_store.tasks.get("t") == before  # rolled back, the file's lock let go
    sqlite_store.tasks.update("t", "w1", LEASE, rows_read=2)
    assert sqlite_store.tasks.get("t")["rows_read"] == 2


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
    records = claimed_records(open_store(path))
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
