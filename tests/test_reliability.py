"""Faults injected in-process: crashes at and inside batches, flaky writes, cancels, Redis away, old results.

Each test breaks one thing and checks what a user would see afterwards: the task's status and counters,
and the exact documents in `movies` (none missing, none twice).
"""

from __future__ import annotations

import io
import os
import threading
from datetime import timedelta

import pytest
import redis
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, BulkWriteError

from app import create_app, tasks
from app.store.mongo.movies import sendable
from app.worker.loop import Worker
from moviecat.generate import generate_movies
from tests.support import ferretdb as ferretdb_support
from tests.support.auth import signed_in
from tests.support.reference import load, read
from tests.test_api_plays import EXAMPLE
from tests.test_ingest import queue_file, stored

ROWS = 4_000


class Crash(BaseException):
    """The process dies here: nothing in the worker catches it, nothing is recorded."""


class FlakyMovies:
    """`movies` that writes `budget` documents, then dies (mid-batch if the budget ends inside one).

    Each batch starts with an insert_many: `batches` counts them, `inserted_ids` holds the movies sent.
    """

    def __init__(self, collection, budget: int | None = None, failures: int = 0, error=Crash):
        self.collection, self.budget, self.failures, self.error = collection, budget, failures, error
        self.written = self.batches = 0
        self.inserted_ids: set = set()

    def insert_many(self, documents, ordered=True):
        self.batches += 1
        self.inserted_ids.update(doc["_id"] for doc in documents)

        def insert(docs, ordered):
            return self.collection.insert_many(sendable(self.collection, docs), ordered=ordered)

        return self._apply(insert, documents, ordered)

    def bulk_write(self, requests, ordered=True):
        return self._apply(self.collection.bulk_write, requests, ordered)

    def _apply(self, send, items, ordered):
        if self.failures:
            self.failures -= 1
            raise AutoReconnect("connection reset by peer")
        if self.budget is not None and self.written + len(items) > self.budget:
            room = self.budget - self.written
            if room > 0:
                self.written += room
                try:
                    send(items[:room], ordered=ordered)
                except BulkWriteError:  # some were refused (duplicate keys): the process dies all the same
                    pass
            raise self.error("killed")
        self.written += len(items)
        return send(items, ordered=ordered)


class WithMovies:
    """A database whose `movies` collection is replaced; everything else is the real one."""

    def __init__(self, db, movies):
        self._db, self.movies = db, movies

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "movies.csv"
    generate_movies(str(path), rows=ROWS, seed=11)
    return path, load(path)


def expire_lease(db, task_id):
    db.processes.update_one({"task_id": task_id}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=1)}})


@pytest.mark.parametrize("budget", [0, 500, 999, 1000, 1001, 2500, 3000, 3900])
@pytest.mark.slow
def test_a_crash_anywhere_is_resumed_from_the_last_batch_with_exact_results(db, config, upload_dir, movie_file, budget):
    path, expected = movie_file
    config = config.with_overrides(BATCH_SIZE=500)
    task_id = queue_file(db, path, upload_dir)
    flaky = FlakyMovies(db.movies, budget=budget)

    with pytest.raises(Crash):
        Worker(config, store=WithMovies(db, flaky), name="doomed").work()

    crashed = tasks.get(db, task_id)
    assert crashed["status"] == "processing" and crashed["worker"] == "doomed"
    checkpoint = crashed.get("checkpoint", {})
    committed = checkpoint.get("rows_inserted", 0) + checkpoint.get("rows_updated", 0)
    assert committed == 500 * (flaky.batches - 1)  # the checkpoint is the last whole batch written

    expire_lease(db, task_id)
    survivor = FlakyMovies(db.movies)
    assert Worker(config, store=WithMovies(db, survivor), name="survivor").work() is True

    task = tasks.get(db, task_id)
    assert task["status"] == "completed" and task["attempts"] == 2 and task["worker"] == "survivor"
    assert stored(db) == expected["documents"]  # none missing, none twice, every field right
    assert task["rows_read"] == expected["rows_read"] and task["rows_rejected"] == len(expected["rejects"])
    assert [r["line"] for r in task["rejects"]] == [r["line"] for r in expected["rejects"]][:100]
    # resumed, not restarted: the survivor wrote exactly the movies of the rows after the last checkpoint
    after = {doc["_id"] for line, doc, reject in read(path) if not reject and line >= checkpoint.get("line", 0)}
    assert survivor.inserted_ids == after
    assert list(upload_dir.iterdir()) == []


@pytest.mark.slow
def test_a_crash_before_any_checkpoint_restarts_from_the_top(db, config, upload_dir, movie_file):
    path, expected = movie_file
    task_id = queue_file(db, path, upload_dir)
    with pytest.raises(Crash):
        Worker(config, store=WithMovies(db, FlakyMovies(db.movies, budget=0)), name="doomed").work()
    assert "checkpoint" not in tasks.get(db, task_id)
    expire_lease(db, task_id)
    Worker(config, store=db, name="survivor").work()
    assert stored(db) == expected["documents"]


@pytest.mark.slow
def test_transient_write_errors_are_retried_with_backoff(db, config, upload_dir, movie_file, caplog):
    path, expected = movie_file
    config = config.with_overrides(MONGO_RETRIES=3, MONGO_RETRY_DELAY_MS=1)
    task_id = queue_file(db, path, upload_dir)
    flaky = FlakyMovies(db.movies, failures=3)
    Worker(config, store=WithMovies(db, flaky), name="w").work()
    task = tasks.get(db, task_id)
    assert task["status"] == "completed" and task["attempts"] == 1
    assert stored(db) == expected["documents"]
    assert sum("bulk write failed (attempt" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.slow
def test_a_write_that_keeps_failing_never_completes_the_task(db, config, upload_dir, movie_file):
    path, expected = movie_file
    config = config.with_overrides(MONGO_RETRIES=2, MONGO_RETRY_DELAY_MS=1)
    task_id = queue_file(db, path, upload_dir)
    Worker(config, store=WithMovies(db, FlakyMovies(db.movies, failures=10**6)), name="w").work()
    task = tasks.get(db, task_id)
    assert task["status"] == "processing"  # left for its lease to run out; then another attempt
    assert (upload_dir / path.name).exists() or any(upload_dir.iterdir())  # the upload is kept for it
    expire_lease(db, task_id)
    Worker(config, store=db, name="later").work()
    assert tasks.get(db, task_id)["status"] == "completed" and stored(db) == expected["documents"]


def test_out_of_attempts_the_task_fails_with_the_reason_and_its_file_goes(db, config, upload_dir, movie_file):
    path, _ = movie_file
    config = config.with_overrides(MAX_ATTEMPTS=2)
    task_id = queue_file(db, path, upload_dir)
    upload = tasks.get(db, task_id)["path"]
    for budget in (500, 1500):
        with pytest.raises(Crash):
            Worker(config, store=WithMovies(db, FlakyMovies(db.movies, budget=budget)), name="doomed").work()
        expire_lease(db, task_id)
    Worker(config, store=db, name="sweeper").sweep()
    task = tasks.get(db, task_id)
    assert task["status"] == "failed" and "gave up after 2 attempts" in task["error"]
    assert not os.path.exists(upload)


# -- cancel ---------------------------------------------------------------------------------------------


def test_cancel_a_pending_task(client, db, upload_dir):
    task_id = client.post("/api/v1/upload", data={"file": (EXAMPLE.open("rb"), "p.csv")}).get_json()["task_id"]
    response = client.delete(f"/api/v1/process/{task_id}")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert list(upload_dir.iterdir()) == []
    again = client.delete(f"/api/v1/process/{task_id}")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_cancellable"
    assert client.delete("/api/v1/process/nope").status_code == 404


def test_cancel_a_processing_task_stops_it_at_the_next_batch(client, db, config, upload_dir, movie_file):
    path, expected = movie_file
    config = config.with_overrides(BATCH_SIZE=500)
    task_id = queue_file(db, path, upload_dir)
    answers = []

    class CancelAfterTwoBatches(FlakyMovies):
        def _apply(self, send, items, ordered):
            result = super()._apply(send, items, ordered)
            if self.written >= 2 * 450 and not answers:
                answers.append(client.delete(f"/api/v1/process/{task_id}"))
            return result

    Worker(config, store=WithMovies(db, CancelAfterTwoBatches(db.movies)), name="w").work()
    assert answers[0].status_code == 202 and answers[0].get_json()["cancel_requested"] is True
    task = client.get(f"/api/v1/process/{task_id}").get_json()
    assert task["status"] == "cancelled"
    # Two batches of 500 movies were written; the rows read up to there include the rejected ones.
    assert task["rows_inserted"] + task["rows_updated"] == 1000
    assert task["rows_read"] == 1000 + task["rows_rejected"] and task["rows_rejected"] > 0
    assert db.movies.count_documents({}) == task["rows_inserted"] > 0  # rows stay
    assert list(upload_dir.iterdir()) == []
    assert client.delete(f"/api/v1/process/{task_id}").status_code == 409


def test_a_cancelled_task_whose_worker_died_is_settled_not_retaken(db, config, upload_dir, movie_file):
    path, _ = movie_file
    task_id = queue_file(db, path, upload_dir)
    tasks.claim(db, "dead", 60, 3, task_id)
    tasks.request_cancel(db, task_id)
    expire_lease(db, task_id)
    worker = Worker(config, store=db, name="w")
    worker.sweep()
    assert tasks.get(db, task_id)["status"] == "cancelled" and db.movies.count_documents({}) == 0


def test_completed_task_cannot_be_cancelled(client, db, worker):
    task_id = client.post("/api/v1/upload", data={"file": (EXAMPLE.open("rb"), "p.csv")}).get_json()["task_id"]
    worker.work(task_id)
    response = client.delete(f"/api/v1/process/{task_id}")
    assert response.status_code == 409 and response.get_json()["error"]["task_status"] == "completed"


# -- disk hygiene ---------------------------------------------------------------------------------------


def test_result_files_are_removed_after_their_ttl(client, db, config, worker):
    task_id = client.post("/api/v1/upload", data={"file": (EXAMPLE.open("rb"), "p.csv")}).get_json()["task_id"]
    worker.work(task_id)
    result = tasks.get(db, task_id)["result_path"]
    worker.sweep()
    assert os.path.exists(result)  # young: kept
    db.processes.update_one({"task_id": task_id}, {"$set": {"finished_at": tasks.now() - timedelta(hours=25)}})
    worker.sweep()
    assert not os.path.exists(result)
    answer = client.get(f"/api/v1/process/{task_id}/result")
    assert answer.status_code == 410 and answer.get_json()["error"]["code"] == "result_gone"
    assert "result_url" not in client.get(f"/api/v1/process/{task_id}").get_json()


# -- Redis away -----------------------------------------------------------------------------------------


def test_with_redis_down_uploads_status_and_movies_keep_working(config, db, producer, worker, caplog):
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    client = signed_in(create_app(config, store=db, redis_client=dead, producer=producer))
    heat = io.BytesIO(b"title,release_date\nHeat,1995-12-15\n")
    upload = client.post("/api/v1/upload", data={"file": (heat, "m.csv")})
    assert upload.status_code == 202
    worker.work(upload.get_json()["task_id"])
    assert client.get(f"/api/v1/process/{upload.get_json()['task_id']}").get_json()["status"] == "completed"
    movies = client.get("/api/v1/movies?year=1995")
    assert movies.status_code == 200 and [m["title"] for m in movies.get_json()["movies"]] == ["Heat"]
    assert "Redis unavailable" in caplog.text


# -- two uploads of one file at once --------------------------------------------------------------------


def test_two_uploads_of_the_same_file_at_once_leave_each_movie_once(
    config, redis_client, producer, tmp_path, ferretdb, ferret_db, caplog
):
    """Two clients, two workers, each with its own connection to one real server (mongomock is not thread-safe).

    Movies are inserted first: of two inserts of the same movie the unique `_id` refuses one as a duplicate
    key, and that worker rewrites the movie, counted as updated. So each movie is counted inserted exactly
    once over the two tasks, and the documents are exact.
    """
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=600, seed=11)  # FerretDB's rewrites scan the collection: keep it small
    expected = load(path)
    data = path.read_bytes()
    answers = []

    def db():
        return MongoClient(ferretdb.uri)[ferret_db.name]

    app = create_app(config, store=db(), redis_client=redis_client, producer=producer)

    def upload():
        answers.append(signed_in(app).post("/api/v1/upload", data={"file": (io.BytesIO(data), "m.csv")}))

    run_together([upload, upload])
    assert [a.status_code for a in answers] == [202, 202]

    write_ops = int(ferretdb_support.SERVICE_SETTINGS["MONGO_WRITE_OPS"])
    config = config.with_overrides(BATCH_SIZE=100, MONGO_WRITE_OPS=write_ops)
    run_together([Worker(config, store=db(), name=f"w{i}").work for i in range(2)])
    done = [tasks.get(db(), a.get_json()["task_id"]) for a in answers]
    assert [t["status"] for t in done] == ["completed", "completed"]
    assert {t["worker"] for t in done} == {"w0", "w1"}
    assert stored(db()) == expected["documents"]
    writes = expected["rows_read"] - len(expected["rejects"])
    assert [t["rows_inserted"] + t["rows_updated"] for t in done] == [writes, writes]
    assert sum(t["rows_inserted"] for t in done) == len(expected["documents"])  # each movie inserted once
    assert "writing its" not in caplog.text  # no rewrite lost a race: the movies it rewrites exist


def run_together(functions) -> None:
    threads = [threading.Thread(target=f) for f in functions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_the_sweep_removes_uploads_left_behind_by_finished_tasks(db, worker, upload_dir, movie_file):
    path, _ = movie_file
    done, live = queue_file(db, path, upload_dir), queue_file(db, path, upload_dir)
    for task_id in (done, live):  # as the upload route names them
        os.replace(tasks.get(db, task_id)["path"], upload_dir / f"{task_id}.csv")
    db.processes.update_one({"task_id": done}, {"$set": {"status": "completed"}})  # killed before removing it
    db.processes.update_one({"task_id": live}, {"$set": {"status": "processing", "attempts": 99}})
    worker.sweep()
    assert sorted(p.name for p in upload_dir.iterdir()) == [f"{live}.csv"]


def test_a_cancel_landing_while_the_worker_hands_the_task_back_cancels_it(db, config, upload_dir, movie_file):
    path, _ = movie_file
    task_id = queue_file(db, path, upload_dir)
    tasks.claim(db, "stopping", 60, 3, task_id)
    assert tasks.request_cancel(db, task_id)["status"] == "processing"  # 202: it stops at the next batch
    tasks.release(db, task_id, "stopping")  # SIGTERM: the worker hands it back
    assert tasks.get(db, task_id)["status"] == "cancelled"  # not pending forever, unclaimable


def test_a_cancelled_plays_task_has_no_result(client, db, worker):
    task_id = client.post("/api/v1/upload", data={"file": (EXAMPLE.open("rb"), "p.csv")}).get_json()["task_id"]
    client.delete(f"/api/v1/process/{task_id}")
    answer = client.get(f"/api/v1/process/{task_id}/result")
    assert answer.status_code == 410 and answer.get_json()["error"]["code"] == "task_cancelled"


def test_sigterm_after_a_plays_file_is_read_lets_the_result_be_written(client, db, worker, monkeypatch):
    from app.jobs.plays.aggregate import Totals

    task_id = client.post("/api/v1/upload", data={"file": (EXAMPLE.open("rb"), "p.csv")}).get_json()["task_id"]
    real_fold = Totals.fold

    def fold_after_sigterm(self):
        worker.stop()  # arrives once the last row is read: finishing is quicker than starting over
        return real_fold(self)

    monkeypatch.setattr(Totals, "fold", fold_after_sigterm)
    worker.work(task_id)
    assert tasks.get(db, task_id)["status"] == "completed"


def test_workers_racing_for_tasks_each_claim_a_task_exactly_once(ferretdb, ferret_db):
    """Four workers, each with its own connection to a real server, claim 40 tasks as fast as they can:
    no task twice."""
    db = ferret_db
    for n in range(40):
        tasks.create(db, task_id=f"t{n:02}", kind="movies", filename="m.csv", path=f"/nowhere/{n}", size=1)
    claimed: dict[str, list[str]] = {}

    def claim_all(name):
        mine = claimed.setdefault(name, [])
        own = MongoClient(ferretdb.uri)[db.name]
        while (task := tasks.claim(own, name, 60, 3)) is not None:
            mine.append(task["task_id"])

    run_together([lambda n=n: claim_all(f"w{n}") for n in range(4)])
    every = sorted(t for ids in claimed.values() for t in ids)
    assert every == [f"t{n:02}" for n in range(40)]  # each once, none missing
    assert sum(1 for ids in claimed.values() if ids) > 1  # they really raced
    assert {d["worker"] for d in db.processes.find()} == {w for w, ids in claimed.items() if ids}
