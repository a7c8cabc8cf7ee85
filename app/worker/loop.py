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

import pyarrow as pa

from app import tasks
from app.broker.taskqueue import Consumer
from app.config import Config
from app.jobs import registry
from app.jobs.movies.pipeline import HelperDied
from app.jobs.plays.aggregate import PlaysFailed
from app.store import connect, of
from app.store import errors as store_errors
from app.store.errors import ERRORS, UNAVAILABLE
from app.store.files import remove
from app.store.retry import Backoff
from app.worker import heartbeats
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
        """The maintenance pass: settle abandoned tasks, drop old results, run every claimable task."""
        try:
            for task in tasks.settle_abandoned(self.store, self.config.MAX_ATTEMPTS):
                log.error("task %s: %s, its worker having vanished", task["task_id"], task["status"])
                remove(task.get("path"))
            self._clean_uploads()
            self._clean_partial_results()
            for task in tasks.expire_results(self.store, self.config.RESULT_TTL_HOURS):
                log.info("task %s: result removed after %d hours", task["task_id"], self.config.RESULT_TTL_HOURS)
                remove(task.get("result_path"))
            while not self.stop_event.is_set() and self.work():
                pass
        except ERRORS as e:
            log.error("worker %s: the store is unavailable during sweep: %s", self.id, e)
        except Exception:  # never let one bad record end the loop
            log.exception("worker %s: sweep failed", self.id)

    def _clean_uploads(self) -> None:
        """Remove uploads whose task is finished: a worker killed between recording the end and removing
        the file leaves one behind. Files of tasks still live are never touched."""
        folder = self.config.UPLOAD_FOLDER
        try:
            stored = {name[:-4]: name for name in os.listdir(folder) if name.endswith(".csv")}
        except OSError:
            return
        if stored:
            for task_id in self.store.tasks.with_status(list(stored), tasks.FINISHED):
                remove(os.path.join(folder, stored[task_id]))

    def _clean_partial_results(self) -> None:
        """Remove the half-written results (`<task>.csv.<attempt>.part`) of writers that died mid-write.

        A live writer's file is its task's, which is processing, and changes as it is written (the writer
        renews its lease meanwhile); anything else is left over.
        """
        folder = self.config.RESULT_FOLDER
        try:
            parts = [name for name in os.listdir(folder) if name.endswith(".part")]
        except OSError:
            return
        if not parts:
            return
        owners = {name: name.split(".", 1)[0] for name in parts}
        running = self.store.tasks.with_status(list(set(owners.values())), (tasks.PROCESSING,))
        stale_before = time.time() - 2 * self.config.LEASE_SECONDS
        for name, task_id in owners.items():
            path = os.path.join(folder, name)
            try:
                if task_id not in running or os.path.getmtime(path) < stale_before:
                    remove(path)
                    log.info("removed a half-written result left by a stopped writer: %s", name)
            except OSError:
                pass  # gone meanwhile: its writer finished

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
            remove(task["path"])
        except Stopping:
            self._record(task, tasks.release, self.store, task_id, self.id)
            log.info("task %s: handed back at its last checkpoint (worker stopping)", task_id)
        except tasks.Cancelled as e:  # rows written stay, and the record says how many
            if self._record(task, tasks.finish, self.store, task_id, self.id, tasks.CANCELLED, **e.fields):
                log.info("task %s: cancelled; rows written so far stay", task_id)
                remove(task["path"])
        except Stalled as e:  # the lease's thread has said why, and given the task up
            log.warning("task %s: stopped working on it: %s", task_id, e)
        except tasks.LostTask:
            log.warning("task %s: lost to another worker (lease expired); stopped working on it", task_id)
        except UNAVAILABLE as e:
            # The store is away (or its file busy): the lease will run out and another attempt will start.
            log.error("task %s: the store is unavailable, leaving it for a retry: %s", task_id, e)
        except HelperDied as e:  # killed, out of memory: the next attempt (after the lease) resumes at the checkpoint
            log.error("task %s: %s; leaving it for a retry", task_id, e)
        except Exception as e:  # the same error would come back on every attempt: fail now, with the reason
            message = _explain(e)
            expected = (OSError, UnicodeDecodeError, pa.ArrowException, *ERRORS)
            log.error("task %s: failed: %s", task_id, message, exc_info=not isinstance(e, expected))
            if self._record(task, tasks.finish, self.store, task_id, self.id, tasks.FAILED, error=message):
                remove(task["path"])
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
            # A movies job goes on from this checkpoint; a plays job starts over, unless it is only writing
            # its result (percent 100), which is quicker to finish than to redo.
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
    """A message a person can act on."""
    if isinstance(error, FileNotFoundError):
        return "the uploaded file is missing on the worker's disk; upload it again"
    if isinstance(error, UnicodeDecodeError):
        return "the file is not valid UTF-8 text; save it as UTF-8 and upload it again"
    if isinstance(error, pa.ArrowInvalid) and "straddl" in str(error):
        return f"a row is larger than the worker's read block (BLOCK_SIZE); split the row or raise BLOCK_SIZE: {error}"
    explained = store_errors.explain(error)
    if explained is not None:
        return explained
    if isinstance(error, PlaysFailed):  # a total past 64 bits, past MAX_PLAY_GROUPS: its own words
        return str(error)
    if isinstance(error, pa.ArrowInvalid):
        return f"the file could not be read as CSV: {error}"
    return f"{type(error).__name__}: {error}"
