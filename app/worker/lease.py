"""Keeping a task's lease while its job runs: a thread renews it on a timer, whatever one write takes.

The job's own thread may spend minutes in one bulk write (a slow server, a slow link); the lease must not run
out meanwhile, or another worker takes the task and this one's work is wasted. So a small thread renews it
every LEASE_SECONDS / 3 (two renewals may fail before it runs out). Renewing proves only that the process is
alive, not that its job moves: a job that has made no progress for STALL_SECONDS is taken as stuck, and the
thread gives the task up (ends the lease at once) so another worker retakes it as a new attempt.

The thread never stops the job itself: it records why the task is no longer ours, and the job's thread
finds out at its next step (`check()`, before each write and progress update) and stops there, so a worker
that lost its task writes nothing more, whether to the task record or to the movies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app import tasks
from app.store.errors import ERRORS

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.25  # a renewal that failed for a connection reason is tried again this soon, then doubling


class Stalled(tasks.LostTask):
    """The job made no progress for STALL_SECONDS: the task was given up for another attempt."""


class Lease:
    """One task's lease, renewed from a thread of its own from `start()` until `close()`."""

    def __init__(
        self,
        store,
        task_id: str,
        worker_id: str,
        lease_seconds: float,
        stall_seconds: float,
        beat: Callable[[], None] = lambda: None,
    ):
        self.store, self.task_id, self.worker_id = store, task_id, worker_id
        self.lease_seconds, self.stall_seconds = lease_seconds, stall_seconds
        self.every = lease_seconds / 3
        self.beat = beat  # the worker's heartbeat: a worker busy in one long write is still alive
        self.lost: tasks.LostTask | tasks.Cancelled | None = None  # set by the thread, raised by check()
        self._progress_at = time.monotonic()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{task_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed.set()
        self._thread.join()

    # -- the job's side ------------------------------------------------------------------------------
    def progressed(self) -> None:
        """The job moved on (a batch written, a stretch of the file read): it is not stuck."""
        self._progress_at = time.monotonic()

    def check(self) -> None:
        """Raise why the task is no longer ours (LostTask, Stalled) or must stop (Cancelled); else nothing."""
        if self.lost is not None:
            raise self.lost

    # -- the thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        retry_in = FIRST_RETRY_SECONDS
        wait = self.every
        while not self._closed.wait(wait):
            idle = time.monotonic() - self._progress_at
            if idle >= self.stall_seconds:
                self._give_up(idle)
                return
            try:
                tasks.renew(self.store, self.task_id, self.worker_id, self.lease_seconds)
            except tasks.Cancelled as e:  # renewed still: the job records the cancellation at its next step
                self.lost = e
            except tasks.LostTask as e:
                self.lost = e
                return
            except ERRORS as e:  # the store away for a moment: try again soon, well within the lease
                log.warning("task %s: lease renewal failed, retrying in %.2fs: %s", self.task_id, retry_in, e)
                wait, retry_in = min(retry_in, self.every), retry_in * 2
                continue
            self.beat()
            wait, retry_in = self.every, FIRST_RETRY_SECONDS

    def _give_up(self, idle: float) -> None:
        self.lost = Stalled(
            f"{self.task_id}: no progress for {idle:.0f} s (STALL_SECONDS {self.stall_seconds:g}); given up"
        )
        log.error(
            "task %s: no progress for %.0f s (STALL_SECONDS is %g): the job looks stuck; giving the task up for "
            "another attempt",
            self.task_id,
            idle,
            self.stall_seconds,
        )
        try:
            tasks.give_up(self.store, self.task_id, self.worker_id)
        except ERRORS as e:  # the lease, no longer renewed, runs out by itself
            log.warning("task %s: could not end the lease early, it runs out by itself: %s", self.task_id, e)
