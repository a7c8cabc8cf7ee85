"""The worker loop: wait for a wake-up, claim a task, run it, report, repeat; heartbeat throughout.

A message names a task, but the loop does not depend on it: after every task, and every
RECOVERY_SECONDS when idle, it sweeps the store for pending or abandoned tasks, so a lost message or a
dead worker delays a task and never loses it. While a task runs, a thread keeps its lease (app/worker/lease.py):
renewed on a timer however long one write takes, given up when the job makes no progress for STALL_SECONDS.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from app import tasks
from app.broker.taskqueue import Consumer
from app.config import Config
from app.jobs import registry
from app.jobs.registry import JobFailed, RetryLater
from app.store import connect, of
from app.store import errors as store_errors
from app.store.errors import ERRORS, UNAVAILABLE
from app.store.retry import Backoff
from app.worker import cleanup, heartbeats
from app.worker.lease import Lease, Stalled

log = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 10  # how often a long task logs its progress


class Stopping(Exception):
    """The worker was asked to stop between two batches."""


class Worker:
    def __init__(self, config: Config, store=None, name: str | None = None):
        self.config = config
        self.store = of(store) if store is not None else connect(config)  # a test may hand in a Database
        os.makedirs(config.RESULT_FOLDER, exist_ok=True)
        self.id = name or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self._last_beat = 0.0
        self._current: str | None = None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, consumer: Consumer | None = None) -> None:
        consumer = consumer or Consumer(self.config)
        log.info("worker %s: listening on %s", self.id, consumer.endpoint)
        self.store.warning(self.config.MONGO_WRITE_OPS)
        next_sweep = 0.0  # sweep at once: tasks may have arrived while no worker ran
        try:
            while not self.stop_event.is_set():
                self.heartbeat()
                message = consumer.receive(timeout=1.0)
                if message is None and time.monotonic() < next_sweep:
                    continue
                consumer.pause()  # while busy, wake-ups go to idle workers
                try:
                    if message is not None:
                        self.work(message["task_id"])
                    self.sweep()  # pending tasks whose wake-up went astray, oldest first
                finally:
                    consumer.resume()
                next_sweep = time.monotonic() + self.config.RECOVERY_SECONDS
        finally:
            consumer.close()
            heartbeats.forget(self.store, self.id)
            log.info("worker %s: stopped", self.id)

    def stop(self) -> None:
        self.stop_event.set()

    def sweep(self) -> None:
        """The maintenance pass: settle abandoned tasks, remove files left over, run every claimable task."""
        try:
            for task in tasks.settle_abandoned(self.store, self.config.MAX_ATTEMPTS):
                log.error("task %s: %s, its worker having vanished", task["task_id"], task["status"])
                cleanup.upload(task)
            cleanup.sweep(self.store, self.config)
            while not self.stop_event.is_set() and self.work():
                pass
        except ERRORS as e:
            log.error("worker %s: the store is unavailable during sweep: %s", self.id, e)
        except Exception:  # never let one bad record end the loop
            log.exception("worker %s: sweep failed", self.id)

    def work(self, task_id: str | None = None) -> bool:
        """Claim one task (the named one, else the oldest claimable) and run it; False if none."""
        try:
            task = tasks.claim(self.store, self.id, self.config.LEASE_SECONDS, self.config.MAX_ATTEMPTS, task_id)
        except ERRORS as e:
            log.error("worker %s: cannot claim a task, the store is unavailable: %s", self.id, e)
            return False
        if task is None:
            return False
        self.run_task(task)
        return True

    # -- one task ---------------------------------------------------------------------------------
    def run_task(self, task: tasks.Task) -> None:
        task_id = task["task_id"]
        self._current = task_id
        self.heartbeat(force=True)
        checkpoint = task.get("checkpoint")
        log.info(
            "task %s: started %s (%r, %d bytes, attempt %d%s)",
            task_id,
            task["kind"],
            task.get("filename"),
            task.get("size", 0),
            task["attempts"],
            f", resuming at line {checkpoint['line']}" if checkpoint else "",
        )
        try:
            fields = self._execute(task)
            tasks.finish(self.store, task_id, self.id, tasks.COMPLETED, **fields)
            log.info(
                "task %s: completed: %s",
                task_id,
                ", ".join(f"{fields[name]} {name}" for name in tasks.SUMMARY_FIELDS if name in fields),
            )
            cleanup.upload(task)
        except Stopping:
            self._record(task, tasks.release, self.store, task_id, self.id)
            log.info("task %s: handed back at its last checkpoint (worker stopping)", task_id)
        except tasks.Cancelled as e:  # rows written stay, and the record says how many
            if self._record(task, tasks.finish, self.store, task_id, self.id, tasks.CANCELLED, **e.fields):
                log.info("task %s: cancelled; rows written so far stay", task_id)
                cleanup.upload(task)
        except Stalled as e:  # the lease's thread has said why, and given the task up
            log.warning("task %s: stopped working on it: %s", task_id, e)
        except tasks.LostTask:
            log.warning("task %s: lost to another worker (lease expired); stopped working on it", task_id)
        except UNAVAILABLE as e:
            # The store is away (or its file busy): the lease will run out and another attempt will start.
            log.error("task %s: the store is unavailable, leaving it for a retry: %s", task_id, e)
        except RetryLater as e:  # the job's word: the next attempt (after the lease) resumes at the checkpoint
            log.error("task %s: %s; leaving it for a retry", task_id, e)
        except Exception as e:  # the same error would come back on every attempt: fail now, with the reason
            message = _explain(e)
            expected = (JobFailed, OSError, *ERRORS)
            log.error("task %s: failed: %s", task_id, message, exc_info=not isinstance(e, expected))
            if self._record(task, tasks.finish, self.store, task_id, self.id, tasks.FAILED, error=message):
                cleanup.upload(task)
        finally:
            self._current = None

    def _record(self, task: tasks.Task, change, *args, **kwargs) -> bool:
        """Apply a final change to the task record; if the store refuses, the lease settles it later."""
        try:
            change(*args, **kwargs)
            return True
        except Exception as e:  # the store away, the task lost, a record it refuses: the lease settles it later
            log.error("task %s: could not record the outcome, its lease will bring it back: %s", task["task_id"], e)
            return False

    def _execute(self, task: tasks.Task) -> dict:
        """Run the task's job to the end, its lease kept meanwhile; returns the fields its record gets on completion."""
        kind = registry.get(task["kind"])
        lease = Lease(
            self.store, task["task_id"], self.id, self.config.LEASE_SECONDS, self.config.STALL_SECONDS, self.heartbeat
        )
        # Every write the job makes, and every progress update, first checks that the task is still ours.
        retry = Backoff(self.config.MONGO_RETRIES + 1, self.config.MONGO_RETRY_DELAY_MS / 1000, before=lease.check)
        result_path = (
            os.path.abspath(os.path.join(self.config.RESULT_FOLDER, f"{task['task_id']}.csv"))
            if kind.leaves_result
            else None
        )
        job = registry.Job(
            task=task,
            config=self.config,
            store=self.store,
            on_progress=self._progress_recorder(task, lease, retry),
            retry=retry,
            result_path=result_path,
        )
        with lease:
            fields = kind.run(job)
        return {**fields, "result_path": result_path} if kind.leaves_result else fields

    def _progress_recorder(self, task: tasks.Task, lease: Lease, retry: Backoff):
        """The job's `on_progress(fields, checkpoint=None)`: records progress and stops the job when it must."""
        last_log = [time.monotonic()]

        def on_progress(fields: dict, checkpoint: dict | None = None) -> None:
            lease.progressed()
            saved = fields if checkpoint is None else {**fields, "checkpoint": checkpoint}
            try:
                retry.call(
                    tasks.update,
                    self.store,
                    task["task_id"],
                    self.id,
                    self.config.LEASE_SECONDS,
                    what="progress update",
                    **saved,
                )
            except tasks.Cancelled as e:
                e.fields = fields
                raise
            self.heartbeat()
            if time.monotonic() - last_log[0] >= PROGRESS_LOG_SECONDS:
                last_log[0] = time.monotonic()
                log.info(
                    "task %s: %.1f%%, %d rows read, %d rejected, %.0f rows/s",
                    task["task_id"],
                    fields["percent"],
                    fields["rows_read"],
                    fields["rows_rejected"],
                    fields["rows_per_sec"],
                )
            # A job that checkpoints (movies) goes on from there; one that does not (plays) starts over, unless
            # it is only writing its result (percent 100), which is quicker to finish than to redo.
            if self.stop_event.is_set() and (checkpoint is not None or fields["percent"] < 100):
                raise Stopping()

        return on_progress

    # -- liveness ---------------------------------------------------------------------------------
    def heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.config.HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        heartbeats.beat(self.store, self.id, self._current)


def _explain(error: Exception) -> str:
    """A message a person can act on: the job's reason, or what the store's failure calls for, else the error."""
    if isinstance(error, JobFailed):
        return error.reason
    explained = store_errors.explain(error)
    if explained is not None:
        return explained
    return f"{type(error).__name__}: {error}"
