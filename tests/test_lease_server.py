"""A task's lease with real processes on the real server (FerretDB): `python run.py` and `python worker.py`
processes (tests/test_processes.py's Cluster), some reaching FerretDB through a slow link (a TCP proxy in the
test, tests/support/slowlink.py, that holds the replies to writes into `movies`).

- writes slower than the lease: the lease is renewed on a timer meanwhile, so the task completes in one
  attempt, although a second worker stands by to take any lease that runs out;
- a worker SIGSTOPped beyond its lease: another takes the task over; the first, resumed, stops without writing
  anything over the new owner's record;
- a job that makes no progress for STALL_SECONDS (a write the server does not answer): the worker gives the task up, and
  another attempt completes it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from moviecat.generate import generate_movies
from tests.support.reference import load
from tests.support.slowlink import SlowLink
from tests.test_ferretdb_faults import assert_exact, finished
from tests.test_processes import FINISHED, Cluster, Proc, mid_file, started_lines

pytestmark = [pytest.mark.ferretdb, pytest.mark.server]

LOST = "lost to another worker (lease expired); stopped working on it"


@pytest.fixture
def cluster(ferretdb, tmp_path):
    made = Cluster(ferretdb, tmp_path / "cluster")
    yield made
    made.close()
    print(made.logs())  # pytest shows it with a failure


@pytest.fixture
def slow_link(ferretdb):
    with SlowLink(ferretdb.port, delay=0) as link:
        yield link


def configure(cluster: Cluster, **settings: str) -> None:
    """Settings for the processes started from now on."""
    cluster.env.update(settings)


def movie_file(tmp_path: Path, rows: int, seed: int) -> tuple[Path, dict]:
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=rows, seed=seed)
    return path, load(path)


def start(cluster: Cluster, workers: int) -> list[Proc]:
    started = [cluster.start_worker() for _ in range(workers)]
    cluster.wait_for("the workers' heartbeats", lambda: cluster.db.workers.count_documents({}) == workers, timeout=60)
    return started


def test_writes_slower_than_the_lease_complete_in_one_attempt(cluster, slow_link, tmp_path):
    # Each write into `movies` is answered 3 s after the 2 s lease would have run out without a renewal; a
    # second worker sweeps every second for a task whose lease ran out.
    lease, slow = 2, 5.0
    path, expected = movie_file(tmp_path, rows=300, seed=41)
    configure(cluster, BATCH_SIZE="100", LEASE_SECONDS=str(lease))
    cluster.start_api()
    configure(cluster, MONGO_URI=slow_link.uri, MONGO_WRITE_OPS="0")  # the workers' path to the server
    workers = start(cluster, 2)
    slow_link.delay = slow

    began = time.monotonic()
    task_id = cluster.upload(path)
    done = finished(cluster, task_id, timeout=120)
    took = time.monotonic() - began
    print(f"{slow_link.held} writes into movies, each answered after {slow} s (lease {lease} s): {took:.1f} s")

    assert_exact(cluster, done, expected, path)
    assert done["attempts"] == 1, (done, cluster.logs())
    assert slow_link.held >= 3, slow_link.held  # three batches at least: each write outlasted the lease
    owner = cluster.owner(done)
    assert [len(started_lines(w, task_id)) for w in workers] == [int(w is owner) for w in workers], cluster.logs()
    assert all(LOST not in w.text() for w in workers), cluster.logs()


def test_a_worker_stopped_beyond_its_lease_resumes_and_writes_nothing_over_the_new_owner(cluster, slow_link, tmp_path):
    # Both workers write through a link that answers each write into `movies` after 0.25 s: the file takes
    # several seconds, however fast the server. The lease is long enough for the new owner to be paused while
    # the old one resumes (~3 s), without its own lease running out (renewed every 8/3 s).
    lease, rows = 8, 600
    path, expected = movie_file(tmp_path, rows=rows, seed=42)
    configure(cluster, BATCH_SIZE="50", LEASE_SECONDS=str(lease))
    cluster.start_api()
    configure(cluster, MONGO_URI=slow_link.uri)
    slow_link.delay = 0.25
    workers = start(cluster, 2)

    task_id = cluster.upload(path)
    task = mid_file(cluster, task_id, rows, least=0.1)
    first = cluster.owner(task)
    second = next(w for w in workers if w is not first)
    first.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    line = cluster.task(task_id)["checkpoint"]["line"]

    # The lease runs out; the second worker takes the task and goes on past where the first stopped.
    def taken_over():
        t = cluster.task(task_id)
        assert t["status"] not in FINISHED, (t, cluster.logs())
        return t["attempts"] == 2 and t.get("checkpoint", {}).get("line", 0) > line and t

    task = cluster.wait_for("the second worker to take over", taken_over, timeout=lease + 30, interval=0.1)
    print(f"taken over {time.monotonic() - stopped_at:.1f} s after the first worker stopped")
    assert cluster.owner(task) is second and time.monotonic() - stopped_at >= lease - 1

    # The new owner paused (well within its lease), the old one resumed: the record must not move at all.
    second.signal(signal.SIGSTOP)
    time.sleep(0.5)  # a write the second had sent lands
    before = cluster.task(task_id)
    first.signal(signal.SIGCONT)
    cluster.wait_for("the first worker to stop", lambda: LOST in first.text(), timeout=20, interval=0.1)
    time.sleep(1)  # anything it would still write
    after = cluster.task(task_id)
    second.signal(signal.SIGCONT)
    print(f"the first worker resumed and stopped; {time.monotonic() - stopped_at:.1f} s after it was stopped")
    assert after == before, (before, after, first.tail())
    assert (after["worker"], after["attempts"], after["status"]) == (before["worker"], 2, "processing")

    done = finished(cluster, task_id, timeout=90)
    assert_exact(cluster, done, expected, path)
    assert (done["attempts"], cluster.owner(done)) == (2, second), (done, cluster.logs())
    assert [len(started_lines(w, task_id)) for w in (first, second)] == [1, 1], cluster.logs()
    assert first.alive() and "Traceback" not in first.text(), first.tail()


def test_a_job_without_progress_for_stall_seconds_gives_its_task_up_to_another_attempt(cluster, slow_link, tmp_path):
    # One write into `movies` is answered only after 15 s (a server that stopped answering it; the driver
    # waits up to MONGO_SOCKET_TIMEOUT_SECONDS, 60): no progress meanwhile, though the worker is alive.
    stall, hung, rows = 4, 15.0, 600
    path, expected = movie_file(tmp_path, rows=rows, seed=43)
    configure(cluster, BATCH_SIZE="50", LEASE_SECONDS="2", STALL_SECONDS=str(stall))
    cluster.start_api()
    configure(cluster, MONGO_URI=slow_link.uri)
    slow_link.delay = 0.25  # each write: the file takes several seconds, however fast the server
    workers = start(cluster, 2)

    task_id = cluster.upload(path)
    first = cluster.owner(mid_file(cluster, task_id, rows, least=0.1))
    second = next(w for w in workers if w is not first)
    slow_link.hold_next(hung)
    began = time.monotonic()
    done = finished(cluster, task_id, timeout=90)
    gave_up = [line for line in first.text().splitlines() if "the job looks stuck" in line]
    print(f"completed {time.monotonic() - began:.1f} s after a write hung for {hung} s; {gave_up}")
    assert_exact(cluster, done, expected, path)
    assert (done["attempts"], cluster.owner(done)) == (2, second), (done, cluster.logs())
    assert len(gave_up) == 1 and f"STALL_SECONDS is {stall}" in gave_up[0], first.tail()

    # Its write answered at last, the first worker finds that the task is no longer its own and stops there.
    cluster.wait_for(
        "the first worker to stop", lambda: "stopped working on it" in first.text(), timeout=hung + 10, interval=0.1
    )
    time.sleep(0.5)
    assert cluster.task(task_id) == done
    assert [len(started_lines(w, task_id)) for w in (first, second)] == [1, 1], cluster.logs()
    assert first.alive() and "Traceback" not in first.text(), first.tail()
