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

Slots are shared fairly: one key (with AUTH=false, one client address) holds at most SSE_STREAMS_PER_KEY of
them in a process, and beyond that is answered 429 `too_many_streams_for_key`, so one uploader opening eight
streams leaves the others theirs. A stream checks its credential every SSE_RECHECK_SECONDS, as a request
would: once its key is revoked (or its token expired) it ends, and the client's reconnect is answered 401.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from flask import Blueprint, Response, current_app, request

from app import tasks
from app.api import auth, keys, limits, views
from app.api.auth import requires
from app.api.errors import APIError
from app.api.routes.tasks import find
from app.api.services import services
from app.config import Config
from app.store.errors import ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__, url_prefix="/api/v1")

RETRY_MS = 3000  # EventSource waits this long before reconnecting to a stream that closed


@bp.record_once
def _limit_streams(state) -> None:
    config = state.app.extensions["movie_service"].config
    state.app.extensions["event_streams"] = (
        threading.BoundedSemaphore(config.SSE_MAX_STREAMS) if config.SSE_MAX_STREAMS else None
    )
    state.app.extensions["event_streams_per_key"] = PerKey(config.SSE_STREAMS_PER_KEY)


class PerKey:
    """Open streams per key in this process, at most `cap` each (0: no cap)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.open: Counter[str] = Counter()
        self.lock = threading.Lock()

    def take(self, who: str) -> bool:
        with self.lock:
            if self.cap and self.open[who] >= self.cap:
                return False
            self.open[who] += 1
            return True

    def give(self, who: str) -> None:
        with self.lock:
            self.open[who] -= 1
            if self.open[who] <= 0:
                del self.open[who]


def message(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), sort_keys=True)}\n\n"


def progress(
    store,
    task_id: str,
    config: Config,
    admin: bool = False,
    clock=time.monotonic,
    sleep=time.sleep,
    allowed: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """The stream's text: a progress event per change of the task (as `admin` may see it), `end` at its end.
    `allowed()`, asked every SSE_RECHECK_SECONDS: False (a revoked key, an expired token) ends the stream."""
    yield f"retry: {RETRY_MS}\n\n"
    started = last_write = checked = clock()
    last = None
    while True:
        if allowed is not None and clock() - checked >= config.SSE_RECHECK_SECONDS:
            checked = clock()
            try:
                if not allowed():
                    log.info("event stream of task %s: its credential is no longer valid; closed", task_id)
                    return
            except ERRORS as e:
                log.warning("event stream of task %s: database unavailable: %s", task_id, e)
                return
        try:
            task = tasks.get(store, task_id)
        except ERRORS as e:  # the client reconnects, or polls, and is answered 503 until MongoDB is back
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


def still_valid(store, principal: auth.Principal) -> Callable[[], bool] | None:
    """What an open stream asks every SSE_RECHECK_SECONDS: is its key still live, its token unexpired?
    None with AUTH=false (no credential to check)."""
    key_id = principal.key_id
    if key_id is None:
        return None
    expires = None
    if principal.via == "token":  # checked when the request came in: its claims decode
        credential = request.headers.get("Authorization", "").partition(" ")[2].strip()
        expires = auth.decode_token(credential)["exp"]

    def allowed() -> bool:
        if expires is not None and time.time() >= expires:
            return False
        return keys.by_id(store, key_id) is not None

    return allowed


def take_slot(task_id: str, config: Config) -> Callable[[], None]:
    """A slot for one more stream, for this key and in this process, or 429/503; returns its release."""
    who = limits.identity()
    per_key = current_app.extensions["event_streams_per_key"]
    if not per_key.take(who):
        raise limits.too_many_error(
            "too_many_streams_for_key",
            f"This key has SSE_STREAMS_PER_KEY = {per_key.cap} progress streams open on this server; close "
            f"one, or poll GET /api/v1/process/{task_id} instead.",
            RETRY_MS // 1000,
            limit=per_key.cap,
        )
    slots = current_app.extensions["event_streams"]
    if slots is None or not slots.acquire(blocking=False):
        per_key.give(who)
        raise APIError(
            503,
            "too_many_streams",
            f"Too many progress streams are open on this server; poll GET /api/v1/process/{task_id} instead.",
            limit=config.SSE_MAX_STREAMS,
        )
    released = threading.Lock()

    def release() -> None:
        if released.acquire(blocking=False):
            slots.release()
            per_key.give(who)

    return release


@bp.get("/process/<task_id>/events")
@requires("uploader")
def task_events(task_id: str):
    svc = services()
    find(task_id)  # 404 for an unknown task, before taking a slot
    principal = auth.required()
    allowed = still_valid(svc.store, principal)
    # Released on close, not in the generator's `finally`: a stream the client left before its first read is
    # closed without ever being started, and its finally would never run.
    release = take_slot(task_id, svc.config)
    stream = progress(svc.store, task_id, svc.config, principal.admin, allowed=allowed)
    response = Response(stream, mimetype="text/event-stream")
    response.call_on_close(release)
    response.headers["X-Accel-Buffering"] = "no"  # nginx would otherwise hold events back in its buffer
    return response
