"""The test-only MongoDB server (tests/mongo_server.py), driven through real pymongo clients."""
from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import bson
import pymongo
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from app import mongo, tasks
from app.config import load_config
from app.ingest import write_movies
from tests.mongo_server import MongoServer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    with MongoServer() as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    c = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=3000)
    yield c
    c.close()


@pytest.fixture
def db(client):
    return client[f"t{uuid.uuid4().hex[:8]}"]  # a database of its own per test


def test_uri_and_handshake(server, client):
    assert server.uri == f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
    assert client.admin.command("ping")["ok"] == 1
    hello = client.admin.command("hello")
    assert hello["isWritablePrimary"] and hello["maxWireVersion"] >= 9
    assert "logicalSessionTimeoutMinutes" not in hello
    assert client.server_info()["version"] == "7.0.0"


def test_insert_find_sort_skip_limit_projection(db):
    db.c.insert_many([{"n": i, "even": i % 2 == 0, "tag": f"t{i}"} for i in range(10)])
    assert [d["n"] for d in db.c.find({"even": True}).sort("n", -1)] == [8, 6, 4, 2, 0]
    assert [d["n"] for d in db.c.find().sort([("even", 1), ("n", 1)]).skip(3).limit(4)] == [7, 9, 0, 2]
    assert db.c.find_one({"n": 3}, {"tag": 1, "_id": 0}) == {"tag": "t3"}
    assert len(list(db.c.find().batch_size(3))) == 10  # served through getMore
    assert len(list(db.c.find().limit(-2))) == 2  # a single batch


def test_updates_upserts_and_replace(db):
    db.c.insert_one({"_id": "a", "count": 1, "name": "x"})
    result = db.c.update_one({"_id": "a"}, {"$set": {"name": "y"}, "$inc": {"count": 2}})
    assert (result.matched_count, result.modified_count, result.upserted_id) == (1, 1, None)
    assert db.c.find_one({"_id": "a"}) == {"_id": "a", "count": 3, "name": "y"}
    result = db.c.update_one({"_id": "b"}, {"$set": {"name": "new"}}, upsert=True)
    assert (result.matched_count, result.upserted_id) == (0, "b")
    assert db.c.update_one({"_id": "zz"}, {"$set": {"x": 1}}).matched_count == 0
    result = db.c.replace_one({"_id": "a"}, {"only": True})
    assert result.matched_count == 1 and db.c.find_one({"_id": "a"}) == {"_id": "a", "only": True}
    assert db.c.update_many({}, {"$set": {"all": 1}}).modified_count == 2


def test_bulk_replace_upserts_unordered(db):
    docs = [{"_id": f"m{i}", "title": f"movie {i}"} for i in range(3)]
    result = db.movies.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
    assert (result.upserted_count, result.matched_count) == (3, 0)
    again = docs[1:] + [{"_id": "m3", "title": "movie 3"}]
    result = db.movies.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in again], ordered=False)
    assert (result.upserted_count, result.matched_count) == (1, 2)
    requests = [ReplaceOne({"_id": d["_id"]}, RawBSONDocument(bson.encode(d)), upsert=True)
                for d in docs + [{"_id": "m9", "title": "nine"}]]
    assert write_movies(db.movies, requests) == (1, 3)  # the service's own writer, with raw BSON as it sends
    assert db.movies.find_one({"_id": "m9"}) == {"_id": "m9", "title": "nine"}
    assert db.movies.count_documents({}) == 5


def test_bulk_duplicate_key(db):
    db.c.create_index("slug", unique=True)
    db.c.insert_one({"_id": 1, "slug": "taken"})
    with pytest.raises(BulkWriteError) as caught:
        db.c.bulk_write([
            ReplaceOne({"_id": 2}, {"slug": "free"}, upsert=True),
            ReplaceOne({"_id": 3}, {"slug": "taken"}, upsert=True),
            UpdateOne({"_id": 1}, {"$set": {"seen": True}}),
        ], ordered=False)
    details = caught.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 11000)]
    assert (details["nUpserted"], details["nMatched"], details["nModified"]) == (1, 1, 1)
    with pytest.raises(BulkWriteError) as caught:  # ordered: stops at the first error
        db.c.insert_many([{"_id": 10}, {"_id": 1}, {"_id": 11}])
    assert caught.value.details["nInserted"] == 1 and caught.value.details["writeErrors"][0]["code"] == 11000
    assert db.c.find_one({"_id": 11}) is None


def test_find_one_and_update_or_filter_sort_after(db):
    t = datetime(2024, 1, 1)
    db.c.insert_many([
        {"_id": 1, "status": "done", "created": t, "attempts": 0},
        {"_id": 2, "status": "processing", "lease": t + timedelta(hours=1), "created": t + timedelta(1), "attempts": 0},
        {"_id": 3, "status": "pending", "created": t + timedelta(3), "attempts": 0},
        {"_id": 4, "status": "processing", "lease": t - timedelta(hours=1), "created": t + timedelta(2), "attempts": 0},
        {"_id": 5, "status": "pending", "created": t - timedelta(1), "attempts": 9},
    ])
    claimable = {"$or": [{"status": "pending"}, {"status": "processing", "lease": {"$lt": t}}], "attempts": {"$lt": 3}}
    update = {"$set": {"status": "processing", "worker": "w", "lease": t + timedelta(1)}, "$inc": {"attempts": 1}}
    got = db.c.find_one_and_update(claimable, update, sort=[("created", 1)], return_document=ReturnDocument.AFTER)
    assert got == {"_id": 4, "status": "processing", "lease": t + timedelta(1), "created": t + timedelta(2),
                   "attempts": 1, "worker": "w"}
    got = db.c.find_one_and_update(claimable, update, sort=[("created", 1)], projection={"status": 1})
    assert got == {"_id": 3, "status": "pending"}  # BEFORE by default, projected
    assert db.c.find_one_and_update(claimable, update) is None
    got = db.c.find_one_and_update({"_id": 7}, {"$set": {"x": 1}}, upsert=True, return_document=ReturnDocument.AFTER)
    assert got == {"_id": 7, "x": 1}
    assert db.c.find_one_and_delete({"_id": 7}) == {"_id": 7, "x": 1} and db.c.find_one({"_id": 7}) is None


def test_datetimes_set_round_trip_and_compare(db):
    t = datetime(2024, 5, 6, 7, 8, 9, 123000)
    db.c.insert_one({"_id": 1})
    db.c.update_one({"_id": 1}, {"$set": {"at": t}})
    assert db.c.find_one({"_id": 1})["at"] == t and isinstance(db.c.find_one({"_id": 1})["at"], datetime)
    assert db.c.count_documents({"at": {"$lt": t + timedelta(milliseconds=1)}}) == 1
    assert db.c.count_documents({"at": {"$lt": t}}) == 0


def test_counts_indexes_deletes(db):
    db.c.insert_many([{"k": i % 3} for i in range(10)])
    assert db.c.count_documents({"k": 0}) == 4 and db.c.count_documents({}, skip=2, limit=5) == 5
    assert db.c.estimated_document_count() == 10 and db.empty.estimated_document_count() == 0
    assert db.empty.count_documents({}) == 0
    assert sorted(db.c.distinct("k")) == [0, 1, 2]
    db.u.create_index([("email", 1)], unique=True, name="by_email")
    db.u.insert_one({"email": "a@x"})
    with pytest.raises(DuplicateKeyError):
        db.u.insert_one({"email": "a@x"})
    assert db.u.index_information()["by_email"]["unique"] is True
    assert db.c.delete_one({"k": 0}).deleted_count == 1
    assert db.c.delete_many({"k": {"$in": [0, 1]}}).deleted_count == 6
    assert db.c.count_documents({}) == 3
    assert set(db.list_collection_names()) == {"c", "u"}
    db.c.drop()
    assert db.list_collection_names() == ["u"]


def test_errors_are_replies_not_dead_connections(db):
    with pytest.raises(OperationFailure) as caught:
        db.command("noSuchCommand")
    assert caught.value.code == 59
    with pytest.raises(OperationFailure) as caught:
        db.command({"find": "c", "filter": 5})  # mongomock raises a TypeError
    assert caught.value.code == 8
    assert db.command("ping")["ok"] == 1


def test_two_processes_share_the_data(server, db):
    db.shared.insert_one({"_id": "from-test", "at": datetime(2024, 1, 1)})
    script = (
        "import sys, pymongo\n"
        "db = pymongo.MongoClient(sys.argv[1])[sys.argv[2]]\n"
        "db.shared.insert_one({'_id': 'from-child', 'seen': db.shared.count_documents({})})\n"
        "print(db.shared.find_one({'_id': 'from-test'})['at'].isoformat())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, server.uri, db.name],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "2024-01-01T00:00:00"
    assert db.shared.find_one({"_id": "from-child"}) == {"_id": "from-child", "seen": 1}


def test_racing_claims_each_doc_once(server, db):
    db.jobs.insert_many([{"_id": i, "status": "pending", "created": i} for i in range(50)])
    claims: dict[str, list[int]] = {}
    start = threading.Barrier(8)

    def claimer(name: str) -> None:
        client = pymongo.MongoClient(server.uri)  # own connections: real concurrency on the socket side
        jobs, mine = client[db.name].jobs, []
        client.admin.command("ping")
        start.wait(timeout=10)
        while (doc := jobs.find_one_and_update(
                {"$or": [{"status": "pending"}, {"status": "stale"}]},
                {"$set": {"status": "claimed", "by": name}}, sort=[("created", 1)],
                return_document=ReturnDocument.AFTER)) is not None:
            assert doc["by"] == name
            mine.append(doc["_id"])
        claims[name] = mine
        client.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    claimed = [i for mine in claims.values() for i in mine]
    assert len(claims) == 8 and sorted(claimed) == list(range(50))  # every doc once, no doc twice
    assert {d["by"] for d in db.jobs.find()} == {name for name, mine in claims.items() if mine}


def _task_story(db) -> list:
    """The task state machine through app.tasks; what it observes, to compare across backends."""
    mongo.ensure_indexes(db)
    seen = []
    for i in range(3):
        tasks.create(db, task_id=f"t{i}", kind="movies", filename=f"f{i}.csv", path=f"/tmp/f{i}", size=10 + i)
        time.sleep(0.002)  # distinct created_at, so "oldest first" is defined
    with pytest.raises(DuplicateKeyError):
        tasks.create(db, task_id="t0", kind="movies", filename="x", path="x", size=1)
    first = tasks.claim(db, "w1", lease_seconds=60, max_attempts=3)
    named = tasks.claim(db, "w2", lease_seconds=60, max_attempts=3, task_id="t2")
    seen += [(first["task_id"], first["status"], first["attempts"], first["worker"]),
             (named["task_id"], named["worker"])]
    tasks.update(db, "t0", "w1", 60, rows_read=5, percent=50.0)
    with pytest.raises(tasks.LostTask):
        tasks.update(db, "t0", "w2", 60, rows_read=1)
    tasks.finish(db, "t0", "w1", tasks.COMPLETED, rows_read=10)
    done = tasks.get(db, "t0")
    seen += [(done["status"], done["rows_read"], "lease_expires_at" in done, done["duration_s"] >= 0)]
    # an abandoned lease is claimable again, with one more attempt
    db.processes.update_one({"task_id": "t2"}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=5)}})
    again = tasks.claim(db, "w3", 60, 3, task_id="t2")
    seen += [(again["task_id"], again["attempts"], again["worker"], isinstance(again["lease_expires_at"], datetime))]
    with pytest.raises(tasks.LostTask):  # w2's lease ran out and w3 took the task over
        tasks.finish(db, "t2", "w2", tasks.COMPLETED)
    tasks.finish(db, "t2", "w3", tasks.FAILED, error="boom")
    seen += [(tasks.get(db, "t2")["status"], tasks.get(db, "t2")["error"], tasks.get(db, "t2")["worker"])]
    listing = tasks.page(db, None, 1, 2)
    seen += [(listing["total_docs"], listing["total_pages"], [p["task_id"] for p in listing["processes"]])]
    seen += [tasks.page(db, tasks.PENDING, 1, 10)["total_docs"], tasks.claim(db, "w4", 60, 1)["task_id"],
             tasks.claim(db, "w5", 60, 3) is None]
    return seen


def test_app_tasks_behave_as_on_mongomock(db):
    mock = mongo.embedded_client()[db.name]
    on_server, on_mongomock = _task_story(db), _task_story(mock)
    assert on_server == on_mongomock
    assert on_server[0] == ("t0", tasks.PROCESSING, 1, "w1") and on_server[1] == ("t2", "w2")
    assert db.processes.index_information() == mock.processes.index_information()


def test_app_mongo_connect_with_uri(server):
    config = load_config(env={"MONGO_URI": server.uri, "MONGO_DB": "connect_test"})
    db = mongo.connect(config)
    assert isinstance(db.client, pymongo.MongoClient) and mongo.ping(db)
    db.workers.update_one({"_id": "w"}, {"$set": {"beat_at": tasks.now()}}, upsert=True)
    from app.worker import alive_workers
    assert alive_workers(db, timeout=30) == 1


def _raw_request(port: int, op_code: int, payload: bytes) -> tuple[int, int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(payload), 77, 0, op_code) + payload)
        header = sock.recv(16, socket.MSG_WAITALL)
        length, _, response_to, reply_op = struct.unpack("<iiii", header)
        return response_to, reply_op, sock.recv(length - 16, socket.MSG_WAITALL)


def test_wire_op_query_handshake_and_op_msg_sequences(server):
    query = struct.pack("<i", 0) + b"admin.$cmd\0" + struct.pack("<ii", 0, -1) + bson.encode({"isMaster": 1})
    response_to, op_code, body = _raw_request(server.port, 2004, query)
    assert (response_to, op_code) == (77, 1)
    assert bson.decode(body[20:])["ismaster"] is True  # after flags, cursorID, startingFrom, numberReturned

    docs = b"".join(bson.encode({"_id": i}) for i in range(3))
    sequence = struct.pack("<i", 4 + len(b"documents\0") + len(docs)) + b"documents\0" + docs
    msg = (struct.pack("<I", 1) + b"\0" + bson.encode({"insert": "raw", "$db": "wire"}) + b"\1" + sequence
           + b"\0\0\0\0")  # flag bit 0: a (here unchecked) checksum trails
    response_to, op_code, body = _raw_request(server.port, 2013, msg)
    assert (response_to, op_code) == (77, 2013)
    assert bson.decode(body[5:]) == {"n": 3, "ok": 1.0}


def test_stop_drops_connections():
    server = MongoServer().start()
    c = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=100)
    c.t.c.insert_one({"x": 1})
    server.stop()
    with pytest.raises(pymongo.errors.PyMongoError):
        c.t.c.find_one()
    c.close()


def test_standalone_process():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.mongo_server", "--port", str(port)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on mongodb://127.0.0.1:%d/" % port in proc.stderr.readline()
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=3000)
        client.t.c.insert_one({"_id": 1})
        assert client.t.c.find_one() == {"_id": 1}
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
