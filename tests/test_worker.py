"""The worker loop over a real ZeroMQ broker: wake-ups, sweeps, leases, heartbeats, clean stops."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import pytest

from app import tasks
from app.broker.taskqueue import Broker, Producer
from app.worker.heartbeats import alive_workers
from app.worker.loop import Worker
from tests.conftest import SAMPLE_MOVIES


def queue_sample(db, upload_dir, task_id="t1"):
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"{task_id}.csv"
    shutil.copy(SAMPLE_MOVIES, path)
    tasks.create(db, task_id=task_id, kind="movies", filename="movies.csv", path=str(path), size=path.stat().st_size)
    return path


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def running(config, db):
    """A broker and a worker thread on it; yields (worker, producer)."""
    broker = Broker(config).start()
    worker = Worker(config.with_overrides(RECOVERY_SECONDS=3600), store=db, name="w1")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    producer = Producer(config)
    yield worker, producer
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    producer.close()
    broker.stop()


def status(db, task_id):
    return db.processes.find_one({"task_id": task_id})["status"]


def test_message_wakes_the_worker(running, db, upload_dir):
    worker, producer = running
    time.sleep(0.3)  # the start-up sweep has run and found nothing
    path = queue_sample(db, upload_dir)
    producer.send("t1", "movies")
    assert wait_until(lambda: status(db, "t1") == "completed")
    assert db.movies.count_documents({}) == 10
    assert not path.exists()  # the upload is removed once its task is done


def test_task_queued_while_no_worker_ran_is_picked_up_at_start(config, db, upload_dir):
    queue_sample(db, upload_dir)  # no message is ever sent
    broker = Broker(config).start()
    worker = Worker(config, store=db, name="late")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: status(db, "t1") == "completed")
    finally:
        worker.stop()
        thread.join(timeout=10)
        broker.stop()


def test_heartbeat_makes_the_worker_visible_and_stop_removes_it(running, db):
    assert wait_until(lambda: alive_workers(db, 30) == 1)
    assert db.workers.find_one({"_id": "w1"})["beat_at"] is not None


def test_stopped_worker_is_no_longer_alive(config, db):
    broker = Broker(config).start()
    worker = Worker(config, store=db, name="gone")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert wait_until(lambda: alive_workers(db, 30) == 1)
    worker.stop()
    thread.join(timeout=10)
    broker.stop()
    assert alive_workers(db, 30) == 0


def test_abandoned_task_is_claimed_again_after_its_lease(db, worker, upload_dir):
    queue_sample(db, upload_dir)
    dead = tasks.claim(db, "dead-worker", lease_seconds=60, max_attempts=3)
    assert dead["status"] == "processing" and worker.work() is False  # leased: nobody else may take it
    db.processes.update_one({"task_id": "t1"}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=1)}})
    assert worker.work() is True
    task = db.processes.find_one({"task_id": "t1"})
    assert task["status"] == "completed" and task["attempts"] == 2 and task["worker"] == "test-worker"
    assert db.movies.count_documents({}) == 10


def test_dead_worker_cannot_write_after_losing_its_task(db, worker, upload_dir):
    queue_sample(db, upload_dir)
    tasks.claim(db, "dead-worker", lease_seconds=60, max_attempts=3)
    db.processes.update_one({"task_id": "t1"}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=1)}})
    worker.work()
    with pytest.raises(tasks.LostTask):
        tasks.update(db, "t1", "dead-worker", 60, rows_read=1)
    assert status(db, "t1") == "completed"


def test_task_fails_after_max_attempts(db, worker, upload_dir):
    path = queue_sample(db, upload_dir)
    for attempt in range(3):
        tasks.claim(db, f"dying-{attempt}", lease_seconds=60, max_attempts=3)
        db.processes.update_one({"task_id": "t1"}, {"$set": {"lease_expires_at": tasks.now() - timedelta(seconds=1)}})
    worker.sweep()
    task = db.processes.find_one({"task_id": "t1"})
    assert task["status"] == "failed" and "gave up after 3 attempts" in task["error"]
    assert db.movies.count_documents({}) == 0
    assert not path.exists()  # no retry will come: the upload is removed


def test_stop_between_batches_hands_the_task_back(db, config, upload_dir, tmp_path):
    from moviecat.generate import generate_movies

    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / "big.csv"
    generate_movies(str(path), rows=5_000, seed=4)
    tasks.create(db, task_id="big", kind="movies", filename="big.csv", path=str(path), size=path.stat().st_size)
    worker = Worker(config, store=db, name="stopping")
    worker.stop()  # asked to stop before the first batch is done
    assert worker.work() is True
    task = db.processes.find_one({"task_id": "big"})
    assert task["status"] == "pending" and task["attempts"] == 0 and "worker" not in task
    assert path.exists()  # kept for the next worker
    # One batch of 1000 movies (a few repeat an earlier row of the batch: updates).
    assert task["rows_inserted"] + task["rows_updated"] == 1000
    assert db.movies.count_documents({}) == task["rows_inserted"] > 900
    # The rows read up to there include the rejected ones.
    assert task["checkpoint"]["rows_read"] == task["rows_read"] == 1000 + task["rows_rejected"]
    assert task["rows_rejected"] > 0 and task["checkpoint"]["line"] > 1000
    assert Worker(config, store=db, name="next").work() is True
    assert status(db, "big") == "completed"


def test_unknown_kind_fails_with_a_reason(db, worker, upload_dir):
    queue_sample(db, upload_dir)
    db.processes.update_one({"task_id": "t1"}, {"$set": {"kind": "songs"}})
    worker.work()
    task = db.processes.find_one({"task_id": "t1"})
    assert task["status"] == "failed" and "unknown task kind 'songs'" in task["error"]


def test_write_the_server_refuses_fails_at_once(db, worker, upload_dir, monkeypatch):
    from pymongo.errors import BulkWriteError

    path = queue_sample(db, upload_dir)

    def refuse(*args, **kwargs):
        raise BulkWriteError(
            {
                "writeErrors": [{"index": 0, "code": 52, "errmsg": "The dollar ($) prefixed field"}],
                "nInserted": 0,
                "nUpserted": 0,
                "nMatched": 0,
            }
        )

    monkeypatch.setattr("app.jobs.movies.kind.ingest_movies", refuse)
    worker.work()
    task = db.processes.find_one({"task_id": "t1"})
    assert task["status"] == "failed" and "BulkWriteError" in task["error"] and task["attempts"] == 1
    assert not path.exists()


def test_mongodb_outage_mid_task_leaves_it_for_a_retry(db, worker, upload_dir, monkeypatch):
    from pymongo.errors import AutoReconnect

    path = queue_sample(db, upload_dir)

    def outage(*args, **kwargs):
        raise AutoReconnect("connection reset")

    monkeypatch.setattr("app.jobs.movies.kind.ingest_movies", outage)
    worker.work()
    task = db.processes.find_one({"task_id": "t1"})
    assert task["status"] == "processing" and "error" not in task  # the lease will bring it back
    assert path.exists()


def test_row_larger_than_a_block_loads_with_the_rest(db, config, upload_dir):
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / "wide.csv"
    path.write_text('title,overview\nA,short\nB,"' + "x" * 200_000 + '"\nC,short\n', encoding="utf-8")
    tasks.create(db, task_id="wide", kind="movies", filename="wide.csv", path=str(path), size=path.stat().st_size)
    Worker(config.with_overrides(BLOCK_SIZE=65536), store=db, name="small-blocks").work()
    task = db.processes.find_one({"task_id": "wide"})
    assert task["status"] == "completed", task.get("error")
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (3, 3, 0)
    assert len(db.movies.find_one({"title": "B"})["overview"]) == 200_000


def dies_after_one_block(path, block_size, batch_size, start_line=2, max_row_mb=64, form="bson"):
    """Stands in for app.jobs.movies.prepare.prepare in the helper: one block, then the helper is killed
    (say, by OOM)."""
    import itertools
    import os

    from app.jobs.movies.prepare import prepare

    yield from itertools.islice(prepare(path, block_size, batch_size, start_line, max_row_mb, form), 1)
    os._exit(137)


@pytest.mark.slow
def test_a_helper_that_dies_leaves_the_task_for_a_retry_from_its_checkpoint(db, config, upload_dir, monkeypatch):
    from moviecat.generate import generate_movies
    from tests.support.reference import load

    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / "big.csv"
    generate_movies(str(path), rows=12_000, seed=9)  # a few of the helper's cleaning units
    expected = load(path)
    tasks.create(db, task_id="big", kind="movies", filename="big.csv", path=str(path), size=path.stat().st_size)
    config = config.with_overrides(INGEST_HELPER_MIN_MB=0, BLOCK_SIZE=64 * 1024, LEASE_SECONDS=2)
    monkeypatch.setattr("app.jobs.movies.ingest.prepare", dies_after_one_block)
    assert Worker(config, store=db, name="first").work() is True
    task = db.processes.find_one({"task_id": "big"})
    # Not failed, and the upload kept: the lease brings it back, as if the worker itself had died.
    assert task["status"] == "processing" and task["attempts"] == 1 and path.exists()
    assert 2 < task["checkpoint"]["line"] and task["rows_read"] < expected["rows_read"]

    monkeypatch.undo()
    time.sleep(2.5)  # the lease runs out
    assert Worker(config, store=db, name="second").work() is True
    done = db.processes.find_one({"task_id": "big"})
    assert done["status"] == "completed" and done["attempts"] == 2
    assert done["rows_read"] == expected["rows_read"] and done["rows_rejected"] == len(expected["rejects"])
    assert {d["_id"]: d for d in db.movies.find()} == expected["documents"]


def test_sweep_removes_half_written_results_of_writers_that_died(db, config, worker):
    import os
    from pathlib import Path

    results = Path(config.RESULT_FOLDER)
    results.mkdir(parents=True, exist_ok=True)
    for task_id, status in (("done", "completed"), ("live", "processing"), ("old", "processing")):
        tasks.create(db, task_id=task_id, kind="plays", filename="p.csv", path="/nowhere", size=1)
        db.processes.update_one({"task_id": task_id}, {"$set": {"status": status}})
    files = {
        name: results / name
        for name in (
            "done.csv.1a2b3c4d.part",
            "live.csv.5e6f7a8b.part",
            "old.csv.9c0d1e2f.part",
            "gone.csv.3a4b5c6d.part",
            "done.csv",
        )
    }
    for path in files.values():
        path.write_text("Song,Date,Total Number of Plays for Date\n")
    an_hour_ago = time.time() - 3600  # older than two leases: its writer stopped writing long ago
    os.utime(files["old.csv.9c0d1e2f.part"], (an_hour_ago, an_hour_ago))

    worker.sweep()
    # Kept: the result itself, and the file a live writer is writing.
    assert sorted(p.name for p in results.iterdir()) == ["done.csv", "live.csv.5e6f7a8b.part"]


class IdleConsumer:
    """A queue that never has a message: each receive waits its timeout and returns nothing."""

    endpoint = "tcp://idle"

    def receive(self, timeout):
        time.sleep(min(timeout, 0.2))
        return None

    def pause(self):
        pass

    def resume(self):
        pass

    def close(self):
        pass


@pytest.mark.slow
def test_an_idle_worker_sweeps_again_every_recovery_seconds(config, db):
    """A lost wake-up is found by the sweep: once at start, then again and again while nothing arrives."""
    worker = Worker(config.with_overrides(RECOVERY_SECONDS=1), store=db, name="idle")
    sweeps = []
    worker.sweep = lambda: sweeps.append(time.monotonic())
    thread = threading.Thread(target=worker.run, args=(IdleConsumer(),))
    thread.start()
    time.sleep(3.5)
    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(sweeps) >= 3, sweeps  # at start, then after each RECOVERY_SECONDS of silence
    assert all(b - a >= 0.9 for a, b in zip(sweeps, sweeps[1:])), sweeps  # not on every empty receive
