"""Worker registration: each worker's heartbeat record in the store, and who counts as alive.

Its own module so that the API's health check can count workers without importing the worker loop (and
with it PyArrow and the whole ingest stack).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from app.store import of
from app.store.errors import ERRORS
from app.store.tasks import now

log = logging.getLogger(__name__)


def beat(store, worker_id: str, task_id: str | None) -> None:
    """Say `worker_id` is alive (and what it works on); a failure is logged, the next beat tries again."""
    try:
        of(store).workers.beat(worker_id, socket.gethostname(), os.getpid(), now(), task_id)
    except ERRORS as e:
        log.warning("worker %s: heartbeat failed: %s", worker_id, e)


def forget(store, worker_id: str) -> None:
    """A clean exit takes its record along; if that fails, the record simply goes stale."""
    try:
        of(store).workers.forget(worker_id)
    except ERRORS as e:
        log.warning("worker %s: could not remove its heartbeat: %s", worker_id, e)


def alive_workers(store, timeout: int) -> int:
    """Workers heard from within the last `timeout` seconds."""
    return of(store).workers.alive(now() - timedelta(seconds=timeout))
