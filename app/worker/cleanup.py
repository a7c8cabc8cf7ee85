"""The files a worker removes, as the task records say: each upload once its task has ended, plays results
RESULT_TTL_HOURS after completion, and what a worker that died left behind (the uploads of ended tasks,
half-written results). Files of tasks still live are never touched.
"""

from __future__ import annotations

import logging
import os
import time

from app import tasks
from app.config import Config
from app.store.files import remove

log = logging.getLogger(__name__)


def upload(task: tasks.Task) -> None:
    """The task's upload, once the task has ended (completed, failed or cancelled): it will not be read again."""
    remove(task.get("path"))


def sweep(store, config: Config) -> None:
    """What is left over: the worker's maintenance pass runs this between tasks."""
    leftover_uploads(store, config.UPLOAD_FOLDER)
    half_written_results(store, config.RESULT_FOLDER, config.LEASE_SECONDS)
    expired_results(store, config.RESULT_TTL_HOURS)


def leftover_uploads(store, folder: str) -> None:
    """Uploads whose task is finished: a worker killed between recording the end and removing the file
    leaves one behind."""
    try:
        stored = {name[:-4]: name for name in os.listdir(folder) if name.endswith(".csv")}
    except OSError:
        return
    if stored:
        for task_id in tasks.with_status(store, list(stored), tasks.FINISHED):
            remove(os.path.join(folder, stored[task_id]))


def half_written_results(store, folder: str, lease_seconds: int) -> None:
    """The half-written results (`<task>.csv.<attempt>.part`) of writers that died mid-write.

    A live writer's file is its task's, which is processing, and changes as it is written (the writer
    renews its lease meanwhile); anything else is left over.
    """
    try:
        parts = [name for name in os.listdir(folder) if name.endswith(".part")]
    except OSError:
        return
    if not parts:
        return
    owners = {name: name.split(".", 1)[0] for name in parts}
    running = tasks.with_status(store, list(set(owners.values())), (tasks.PROCESSING,))
    stale_before = time.time() - 2 * lease_seconds
    for name, task_id in owners.items():
        path = os.path.join(folder, name)
        try:
            if task_id not in running or os.path.getmtime(path) < stale_before:
                remove(path)
                log.info("removed a half-written result left by a stopped writer: %s", name)
        except OSError:
            pass  # gone meanwhile: its writer finished


def expired_results(store, ttl_hours: int) -> None:
    """Results kept past `ttl_hours` after completion; their tasks are marked so (`GET …/result` answers 410)."""
    for task in tasks.expire_results(store, ttl_hours):
        log.info("task %s: result removed after %d hours", task["task_id"], ttl_hours)
        remove(task.get("result_path"))
