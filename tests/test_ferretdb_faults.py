"""Faults of the database itself, on a real server: FerretDB stopped (SIGTERM) or killed (SIGKILL) under the
real processes (`python run.py`, `python worker.py`), then started again on the same data folder and port.

Each test has a FerretDB of its own, so stopping it touches no other test. What must hold whatever happens:
a task ends `completed` with exactly the file's documents and counters, or `failed` with its reason, never
`completed` on partial data; the API answers (503 JSON while the database is away), it does not hang.

- an outage shorter than the retry budget (MONGO_RETRIES, MONGO_RETRY_DELAY_MS): the write is retried and
  the same attempt goes on;
- one longer: the attempt gives up, the lease brings the task back, and once the server is back a worker
  resumes at the checkpoint (attempt 2);
- everything killed after a task completed: FerretDB started again on its folder has every document and the
  task's record, and a freshly started API serves them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from app.store.serialize import to_json
from moviecat.generate import generate_movies
from tests.conftest import require
from tests.support import ferretdb as ferretdb_support
from tests.support.ferretdb import FerretDB
from tests.support.reference import load
from tests.test_processes import FINISHED, Cluster, assert_same_documents, mid_file, started_lines

pytestmark = [pytest.mark.ferretdb, pytest.mark.server]

# Enough rows that the ingest is still writing when the test stops the server: new movies are inserted, at
# about a thousand a second here, so the 1,200 rows this once had were written before the server went down.
ROWS = 6_000
# Not 250: FerretDB 1.24.2 (SQLite) holds one of its 100 SQLite connections for every statement of an update
# command that matches an existing document until the command ends (a `defer` in a loop, msg_update.go), so a
# bulk write replaying more than 100 movies already stored never returns. A batch replayed after an outage is
# exactly that. Rewriting a stored movie also scans the table (no `_id` pushdown), hence small batches.
BATCH = 100
# pymongo waits serverSelectionTimeoutMS (5 s, app/store/mongo.py) for a server before an operation fails.
SELECTION_SECONDS = 5
API_ANSWER_SECONDS = SELECTION_SECONDS + 5  # a request during an outage is answered within this
ALL_SIGNALS = os.environ.get("SIGNALS") == "all"
SHORT_SIGNALS = ["SIGTERM", "SIGKILL"] if ALL_SIGNALS else ["SIGTERM"]
LONG_SIGNALS = ["SIGTERM", "SIGKILL"] if ALL_SIGNALS else ["SIGKILL"]


@pytest.fixture
def server(tmp_path):
    """A FerretDB of this test's own, on a data folder the test may stop, kill and restart it on."""
    why = ferretdb_support.available()
    if why:
        require("FerretDB", why)
    db = FerretDB(tmp_path / "ferretdb").start()
    yield db
    db.kill()
    log = db.log()
    print(f"----- ferretdb (port {db.port}): {db.log_path} -----\n{log[-2000:]}")


@pytest.fixture
def cluster(server, tmp_path):
    made = Cluster(server, tmp_path / "cluster", BATCH_SIZE=str(BATCH), MAX_ATTEMPTS="3")
    yield made
    made.close()
    print(made.logs())


def configure(cluster: Cluster, **settings: str) -> None:
    """Settings for the processes started from now on."""
    cluster.env.update(settings)


def finished(cluster: Cluster, task_id: str, timeout: float) -> dict:
    return cluster.wait_for(
        f"task {task_id} to finish",
        lambda: (t := cluster.task(task_id)) is not None and t["status"] in FINISHED and t,
        timeout=timeout,
        interval=0.2,
    )


def ask_during_outage(cluster: Cluster, task_id: str) -> dict:
    """GET /api/v1/process/<id> while the database is away: status, body and how long the answer took."""
    began = time.monotonic()
    status, body = cluster.get(f"/api/v1/process/{task_id}")
    return {"status": status, "body": body, "seconds": time.monotonic() - began}


def assert_unavailable(answer: dict, cluster: Cluster) -> None:
    assert answer["status"] == 503, (answer, cluster.logs())
    assert answer["body"]["error"]["code"] == "database_unavailable", answer
    assert answer["seconds"] < API_ANSWER_SECONDS, answer


def assert_exact(cluster: Cluster, done: dict, expected: dict, path: Path) -> None:
    """Completed on the whole file: every movie once with the reference's contents, the counters exact."""
    assert done["status"] == "completed", (done, cluster.logs())
    assert_same_documents(cluster.movies(), expected["documents"])
    assert done["rows_read"] == expected["rows_read"], done
    assert done["rows_rejected"] == len(expected["rejects"]) and done["rejects"] == expected["rejects"][:100]
    assert done["rows_inserted"] + done["rows_updated"] == expected["valid"], done
    assert done["percent"] == 100.0 and done["bytes_read"] == path.stat().st_size, done
    assert "checkpoint" not in done and "lease_expires_at" not in done, done


def interrupt(server: FerretDB, how: str) -> None:
    if how == "SIGTERM":
        server.stop()
    else:
        server.kill()
    assert not server.alive()


def start_ingest(cluster: Cluster, tmp_path: Path, seed: int) -> tuple[Path, dict, str, dict]:
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=ROWS, seed=seed)
    expected = load(path)
    cluster.start_api()
    cluster.start_worker()
    cluster.wait_for("the worker's heartbeat", lambda: cluster.db.workers.count_documents({}) == 1, timeout=60)
    task_id = cluster.upload(path)
    task = mid_file(cluster, task_id, ROWS, least=0.2)
    return path, expected, task_id, task


# -- an outage within the retry budget: the write is retried, the attempt goes on ----------------------


# Each signal with one outage length, to keep the file's run near a minute; the other two pairings pass too
# (`SIGNALS=all` runs them).
@pytest.mark.parametrize("how", SHORT_SIGNALS)
def test_short_outage_the_write_is_retried_and_the_attempt_goes_on(server, cluster, tmp_path, how):
    # Budget: 6 tries, 0.5 s then doubling between them, each waiting up to 5 s for a server: ~40 s.
    configure(cluster, MONGO_RETRIES="5", MONGO_RETRY_DELAY_MS="500")
    path, expected, task_id, task = start_ingest(cluster, tmp_path, seed=21 if how == "SIGTERM" else 22)
    (worker,) = cluster.workers()

    down = time.monotonic()
    interrupt(server, how)
    answer = ask_during_outage(cluster, task_id)  # ~5 s: the outage lasts at least this long
    # Longer than the worker's wait for a server (serverSelectionTimeoutMS, 5 s).
    time.sleep(max(0.0, 7 - (time.monotonic() - down)))
    server.start()
    outage = time.monotonic() - down
    print(
        f"{how}: FerretDB down {outage:.1f} s at line {task['checkpoint']['line']}; the API answered "
        f"{answer['status']} in {answer['seconds']:.1f} s"
    )
    assert_unavailable(answer, cluster)

    done = finished(cluster, task_id, timeout=60)
    assert_exact(cluster, done, expected, path)
    # The same attempt went on: whatever it sent during the outage waited for the server or was retried
    # ("retrying in" in its log), never given up. Which of the two depends on where in a batch the outage
    # falls: a batch is now one quick insert, and pymongo waits up to 5 s for a server before failing.
    assert done["attempts"] == 1, (done, cluster.logs())
    assert "leaving it for a retry" not in worker.text(), worker.tail()
    assert worker.alive(), cluster.logs()

    status, public = cluster.get(f"/api/v1/process/{task_id}")
    assert status == 200 and public["status"] == "completed" and public["rows_read"] == expected["rows_read"]


# -- an outage beyond the retry budget: the attempt gives up, the lease brings the task back ------------


@pytest.mark.parametrize("how", LONG_SIGNALS)
def test_long_outage_the_attempt_gives_up_and_the_next_resumes_at_the_checkpoint(server, cluster, tmp_path, how):
    # Budget: 2 tries 0.2 s apart, the second waiting up to 5 s for a server: ~5.5 s. The outage lasts
    # until the worker gave up, and 5 s more (the API's second answer): ~10-13 s.
    configure(cluster, MONGO_RETRIES="1", MONGO_RETRY_DELAY_MS="200")
    path, expected, task_id, task = start_ingest(cluster, tmp_path, seed=31 if how == "SIGTERM" else 32)
    (worker,) = cluster.workers()

    down = time.monotonic()
    interrupt(server, how)
    answer = ask_during_outage(cluster, task_id)
    cluster.wait_for(
        "the worker to give the attempt up",
        lambda: "the store is unavailable, leaving it for a retry" in worker.text(),
        timeout=30,
        interval=0.2,
    )
    gave_up = time.monotonic() - down
    late = ask_during_outage(cluster, task_id)  # the API still answers, still 503: a server wait of 5 s
    server.start()
    outage = time.monotonic() - down

    # Back: the task is as the failed attempt left it, processing with its checkpoint, or already retaken.
    left = cluster.task(task_id)
    assert left["status"] in ("processing", "completed"), (left, cluster.logs())
    done = finished(cluster, task_id, timeout=60)
    print(
        f"{how}: FerretDB down {outage:.1f} s at line {task['checkpoint']['line']}; the attempt gave up after "
        f"{gave_up:.1f} s; the API answered {answer['status']} in {answer['seconds']:.1f} s and "
        f"{late['status']} in {late['seconds']:.1f} s; {done['attempts']} attempts"
    )
    assert_unavailable(answer, cluster)
    assert_unavailable(late, cluster)
    assert_exact(cluster, done, expected, path)

    # The second attempt resumed at a checkpoint past the point where the server went away, not at line 2.
    assert done["attempts"] == 2, (done, cluster.logs())
    taken = started_lines(worker, task_id)
    assert len(taken) == 2 and "attempt 2, resuming at line" in taken[1], (taken, worker.tail())
    resumed_at = int(taken[1].rsplit("resuming at line ", 1)[1].rstrip(")"))
    assert resumed_at >= task["checkpoint"]["line"], (resumed_at, task["checkpoint"])
    assert worker.alive(), cluster.logs()

    status, public = cluster.get(f"/api/v1/process/{task_id}")
    assert status == 200 and public["status"] == "completed" and public["attempts"] == 2


# -- everything killed after a task completed: nothing lost -------------------------------------------


def all_movies(cluster: Cluster) -> tuple[int, dict]:
    """Every movie GET /api/v1/movies pages through (100 a page), by `_id`; and the total it reports."""
    seen: dict = {}
    page, pages, total = 1, 1, None
    while page <= pages:
        status, body = cluster.get(f"/api/v1/movies?limit=100&page={page}&sort_by=title")
        assert status == 200, (status, body)
        pages, total = body["total_pages"], body["total_docs"]
        for movie in body["movies"]:
            assert movie["_id"] not in seen, movie["_id"]
            seen[movie["_id"]] = movie
        page += 1
    return total, seen


def test_everything_killed_after_completion_nothing_is_lost(server, cluster, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=1_000, seed=41)
    expected = load(path)
    api = cluster.start_api()
    worker = cluster.start_worker()
    task_id = cluster.upload(path)
    done = finished(cluster, task_id, timeout=60)
    assert_exact(cluster, done, expected, path)

    # The machine lost: the database, the API and the worker all die at once, nothing flushed.
    server.kill()
    for proc in (api, worker):
        proc.kill()
    time.sleep(1)
    server.start()

    record = cluster.task(task_id)  # the test's own client reconnects to the same port
    assert record is not None, cluster.logs()
    for name in (
        "status",
        "attempts",
        "rows_read",
        "rows_rejected",
        "rows_inserted",
        "rows_updated",
        "bytes_read",
        "percent",
        "rejects",
        "finished_at",
    ):
        assert record[name] == done[name], (name, record[name], done[name])
    assert_exact(cluster, record, expected, path)

    # A freshly started API on the same database answers with them.
    api.log_path = api.log_path.rename(api.log_path.with_name("api-before-the-crash.log"))
    cluster.start_api()
    status, public = cluster.get(f"/api/v1/process/{task_id}")
    assert status == 200, (status, public)
    assert public["status"] == "completed" and public["attempts"] == done["attempts"]
    for name in ("rows_read", "rows_rejected", "rows_inserted", "rows_updated"):
        assert public[name] == done[name], (name, public[name], done[name])
    total, served = all_movies(cluster)
    assert total == len(expected["documents"]) == len(served)
    wanted = {movie_id: json.loads(json.dumps(to_json(doc))) for movie_id, doc in expected["documents"].items()}
    assert_same_documents(served, wanted)
