"""GET /api/v1/process/<task_id>/events: a task's progress as Server-Sent Events, until it ends.

MongoDB is the truth and has no change feed we can rely on (mongomock has none), so each stream reads its
task every SSE_POLL_MS and sends an event only when the public record changed:

    retry: 3000                      the browser's reconnect delay
    event: progress                  one per change, the task record as JSON (the GET …/process/<id> body)
    event: end                       once the task is completed, failed or cancelled; then the stream closes

A stream holds one gunicorn thread for as long as it is open, so a process serves at most SSE_MAX_STREAMS
of them (fewer than WEB_THREADS: uploads and queries always have threads left); beyond that it answers
503 `too_many_streams` and the page polls instead. A stream closes after SSE_MAX_SECONDS (EventSource
reconnects by itself), and a comment every SSE_KEEPALIVE_SECONDS keeps proxies from closing a quiet one and
lets the server notice a closed tab: a write fails (the second after the tab closed; the first still lands
in the socket's buffer) and the thread is freed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app
from pymongo.errors import PyMongoError

from app import tasks
from app.api import auth, views
from app.api.auth import requires
from app.api.errors import APIError
from app.api.routes.tasks import find
from app.api.services import services
from app.config import Config

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__, url_prefix="/api/v1")

RETRY_MS = 3000  # EventSource waits this long before reconnecting to a stream that closed


@bp.record_once
def _limit_streams(state) -> None:
    config = state.app.extensions["movie_service"].config
    state.app.extensions["event_streams"] = (
        threading.BoundedSemaphore(config.SSE_MAX_STREAMS) if config.SSE_MAX_STREAMS else None
    )


def message(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), sort_keys=True)}\n\n"


def progress(
    db, task_id: str, config: Config, admin: bool = False, clock=time.monotonic, sleep=time.sleep
) -> Iterator[str]:
    """The stream's text: a progress event per change of the task (as `admin` may see it), `end` at its end."""
    yield f"retry: {RETRY_MS}\n\n"
    started = last_write = clock()
    last = None
    while True:
        try:
            task = tasks.get(db, task_id)
        except PyMongoError as e:  # the client reconnects, or polls, and is answered 503 until MongoDB is back
            log.warning("event stream of task %s: database unavailable: %s", task_id, e)
            return
        if task is None:  # removed while we watched it
            return
        record = views.task(task, admin)
        if record != last:
            yield message("progress", record)
            last, last_write = record, clock()
        if record["status"] in tasks.FINISHED:
            yield message("end", {"task_id": task_id, "status": record["status"]})
            return
        if clock() - started >= config.SSE_MAX_SECONDS:
            return
        if clock() - last_write >= config.SSE_KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_write = clock()
        sleep(config.SSE_POLL_MS / 1000)


@bp.get("/process/<task_id>/events")
@requires("uploader")
def task_events(task_id: str):
    svc = services()
    find(task_id)  # 404 for an unknown task, before taking a slot
    slots = current_app.extensions["event_streams"]
    if slots is None or not slots.acquire(blocking=False):
        raise APIError(
            503,
            "too_many_streams",
            f"Too many progress streams are open on this server; poll GET /api/v1/process/{task_id} instead.",
            limit=svc.config.SSE_MAX_STREAMS,
        )
    released = threading.Lock()

    def release() -> None:
        # On close, not in the generator's `finally`: a stream the client left before its first read is
        # closed without ever being started, and its finally would never run.
        if released.acquire(blocking=False):
            slots.release()

    response = Response(progress(svc.db, task_id, svc.config, auth.current().admin), mimetype="text/event-stream")
    response.call_on_close(release)
    response.headers["X-Accel-Buffering"] = "no"  # nginx would otherwise hold events back in its buffer
    return response
