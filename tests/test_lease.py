"""A task's lease: the owner check every worker write carries (on every store), and the thread that renews the
lease on a timer, gives a stuck job's task up, and tells the job when the task is no longer its own.

The same with real processes on a real server (a slow link, SIGSTOP, a hung helper): tests/test_lease_server.py.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app import tasks
from app.store.retry import Backoff
from app.worker.lease import Lease, Stalled

LEASE = 60


def new_task(db, task_id: str = "t") -> dict:
    return tasks.create(db, task_id=task_id, kind="movies", filename="f.csv", path=f"/up/{task_id}.csv", size=10)


def record(store, task_id: str = "t") -> dict:
    return {k: v for k, v in tasks.get(store, task_id).items() if k != "_id"}


def wait_until(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


# -- the owner check, on every store ------------------------------------------------------------------------


def test_renew_extends_the_lease_of_its_owner_only(store):
    new_task(store)
    claimed = tasks.claim(store, "w1", 5, 3)
    tasks.renew(store, "t", "w1", LEASE)
    renewed = record(store)
    assert renewed["lease_expires_at"] - claimed["lease_expires_at"] >= timedelta(seconds=LEASE - 5)
    assert {k: v for k, v in renewed.items() if k != "lease_expires_at"} == {
        k: v for k, v in claimed.items() if k not in ("lease_expires_at", "_id")
    }  # nothing else changes: a renewal is not progress
    with pytest.raises(tasks.LostTask):
        tasks.renew(store, "t", "w2", LEASE)
    assert record(store) == renewed


def test_a_stale_owner_can_neither_renew_nor_write_progress_over_the_new_owners(store):
    new_task(store)
    tasks.claim(store, "w1", LEASE, 3)
    tasks.update(store, "t", "w1", LEASE, rows_read=5, checkpoint={"line": 7})
    tasks.give_up(store, "t", "w1")
    time.sleep(0.002)  # times have millisecond precision: the claim's "now" must be later than the end
    retaken = tasks.claim(store, "w2", LEASE, 3)
    assert (retaken["worker"], retaken["attempts"]) == ("w2", 2)
    tasks.update(store, "t", "w2", LEASE, rows_read=9, checkpoint={"line": 11})
    theirs = record(store)
    with pytest.raises(tasks.LostTask):
        tasks.update(store, "t", "w1", LEASE, rows_read=6, checkpoint={"line": 8})
    with pytest.raises(tasks.LostTask):
        tasks.renew(store, "t", "w1", LEASE)
    assert tasks.give_up(store, "t", "w1") is False
    with pytest.raises(tasks.LostTask):
        tasks.finish(store, "t", "w1", tasks.COMPLETED, rows_read=6)
    assert record(store) == theirs
    assert (theirs["worker"], theirs["rows_read"], theirs["checkpoint"]) == ("w2", 9, {"line": 11})


def test_give_up_makes_the_task_claimable_at_once_as_a_new_attempt(store):
    new_task(store)
    tasks.claim(store, "w1", LEASE, 3)
    assert tasks.claim(store, "w2", LEASE, 3) is None  # leased
    assert tasks.give_up(store, "t", "w1") is True
    time.sleep(0.002)  # times have millisecond precision: the claim's "now" must be later than the end
    retaken = tasks.claim(store, "w2", LEASE, 3)
    assert (retaken["worker"], retaken["attempts"], retaken["status"]) == ("w2", 2, "processing")


def test_renew_of_a_cancelled_task_keeps_the_lease_and_says_cancelled(store):
    new_task(store)
    claimed = tasks.claim(store, "w1", 5, 3)
    tasks.request_cancel(store, "t")
    with pytest.raises(tasks.Cancelled):
        tasks.renew(store, "t", "w1", LEASE)
    assert record(store)["lease_expires_at"] > claimed["lease_expires_at"]  # time left to record the cancel
    tasks.finish(store, "t", "w1", tasks.CANCELLED)
    assert record(store)["status"] == "cancelled"


# -- the renewing thread ------------------------------------------------------------------------------------


def lease_of(db, lease_seconds: float = 0.3, stall_seconds: float = 60, beat=lambda: None) -> Lease:
    new_task(db)
    tasks.claim(db, "w1", lease_seconds, 3)
    return Lease(db, "t", "w1", lease_seconds, stall_seconds, beat)


def test_the_lease_is_renewed_on_a_timer_while_the_job_is_busy(db):
    beats = []
    lease = lease_of(db, lease_seconds=0.3, beat=lambda: beats.append(1))
    with lease:
        first = record(db)["lease_expires_at"]
        renewed = wait_until(lambda: (r := record(db)["lease_expires_at"]) > first + timedelta(seconds=0.15) and r)
        lease.check()  # nothing to say: still ours
    assert renewed > first and len(beats) >= 1
    after = record(db)["lease_expires_at"]
    time.sleep(0.3)
    assert record(db)["lease_expires_at"] == after  # closed: no more renewals


def test_a_job_without_progress_for_stall_seconds_gives_its_task_up(db):
    lease = lease_of(db, lease_seconds=0.3, stall_seconds=0.5)
    with lease:
        for _ in range(5):  # a job that moves keeps its task past the stall time
            time.sleep(0.2)
            lease.progressed()
        lease.check()
        began = time.monotonic()
        wait_until(lambda: lease.lost is not None)
        waited = time.monotonic() - began
    assert 0.4 <= waited < 2, waited
    with pytest.raises(Stalled):
        lease.check()
    with pytest.raises(tasks.LostTask):  # a Stalled is a lost task to whoever catches that
        lease.check()
    assert record(db)["lease_expires_at"] <= tasks.now()  # ended at once: another worker may claim it
    time.sleep(0.002)
    assert tasks.claim(db, "w2", LEASE, 3)["attempts"] == 2


def test_a_renewal_that_finds_another_owner_stops_the_jobs_next_write(db):
    lease = lease_of(db, lease_seconds=0.3)
    retry = Backoff(attempts=3, first_delay=0.01, before=lease.check)
    writes = []
    with lease:
        retry.call(writes.append, "batch 1")
        db.processes.update_one({"task_id": "t"}, {"$set": {"worker": "w2"}})  # taken over meanwhile
        wait_until(lambda: lease.lost is not None)
        with pytest.raises(tasks.LostTask):
            retry.call(writes.append, "batch 2")
    assert writes == ["batch 1"]
    assert record(db)["worker"] == "w2"


def test_a_renewal_that_finds_a_cancel_stops_the_job_with_cancelled(db):
    lease = lease_of(db, lease_seconds=0.3)
    with lease:
        tasks.request_cancel(db, "t")
        wait_until(lambda: lease.lost is not None)
        with pytest.raises(tasks.Cancelled):
            lease.check()
    tasks.finish(db, "t", "w1", tasks.CANCELLED)  # the lease was kept for this
    assert record(db)["status"] == "cancelled"
