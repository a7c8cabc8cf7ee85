"""POST /api/v1/upload: store the file, recognise its job kind (app/jobs), record a pending task, wake a worker."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

from flask import Blueprint, current_app, jsonify, request

from app import tasks
from app.api import auth, limits
from app.api.auth import requires
from app.api.errors import APIError
from app.api.intake import FormLimits, Upload, receive
from app.api.routes.events import PerKey
from app.api.services import services
from app.jobs import registry
from app.store.files import remove

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__, url_prefix="/api/v1")

RETRY_SECONDS = 5  # Retry-After of an upload refused for want of a slot


@bp.record_once
def _limit_uploads(state) -> None:
    config = state.app.extensions["movie_service"].config
    state.app.extensions["uploads_receiving"] = (
        threading.BoundedSemaphore(config.MAX_UPLOADS_RECEIVING),
        PerKey(config.UPLOADS_PER_KEY),
    )


@contextmanager
def receiving_slot(config):
    """A slot to read one more upload's body in this process, for this key, or 429/503 (the body unread).

    Each upload's thread waits for its body, and a client may send 64 KiB per BODY_TIMEOUT_SECONDS for
    hours: without a bound, WEB_THREADS such uploads held every thread, and ping, reads and the page hung."""
    slots, per_key = current_app.extensions["uploads_receiving"]
    principal = auth.required()
    # An admin key is exempt, as from the other per-key limits (it can make keys anyway); not AUTH=false's anyone.
    who = None if principal.admin and principal.key_id else limits.identity()
    if who is not None and not per_key.take(who):
        raise limits.too_many_error(
            "too_many_uploads_for_key",
            f"This key has UPLOADS_PER_KEY = {per_key.cap} uploads arriving on this server; retry when one is in.",
            RETRY_SECONDS,
            limit=per_key.cap,
        )
    if not slots.acquire(blocking=False):
        if who is not None:
            per_key.give(who)
        raise APIError(
            503,
            "too_many_uploads",
            f"MAX_UPLOADS_RECEIVING = {config.MAX_UPLOADS_RECEIVING} uploads are arriving on this server; "
            f"retry in {RETRY_SECONDS} s.",
            headers={"Retry-After": str(RETRY_SECONDS)},
            retry_after=RETRY_SECONDS,
            limit=config.MAX_UPLOADS_RECEIVING,
        )
    try:
        yield
    finally:
        slots.release()
        if who is not None:
            per_key.give(who)


def choose_kind(header: list[str], requested: str | None) -> registry.JobKind:
    """The job kind for this header (see registry.choose); a refusal is answered as an API error."""
    try:
        return registry.choose(header, requested)
    except registry.JobRefused as e:
        raise APIError(e.status, e.code, e.message, **e.extra) from None


def accept() -> tuple[Upload, str]:
    """Receive the request's file and queue it; returns the upload and its job kind."""
    svc = services()
    c = svc.config
    quota = limits.current()
    quota.admit_upload()  # 429 before the body is read: too many active tasks, or no upload bytes left today
    form = FormLimits(c.MAX_FORM_FIELDS, c.MAX_FORM_KB * 1024)
    with receiving_slot(c):
        received = receive(request, c.UPLOAD_FOLDER, c.max_upload_bytes, c.MAX_COLUMNS, c.min_free_bytes, form)
    try:
        kind = choose_kind(received.header, received.fields.get("kind") or request.args.get("kind") or None)
        tasks.create(
            svc.store,
            task_id=received.task_id,
            kind=kind.name,
            filename=received.filename,
            path=received.path,
            size=received.size,
            owner=auth.required().owner(),
            **kind.task_fields(received.header),
        )
    except BaseException:
        remove(received.path)
        raise
    quota.counted_upload(received.size)  # a chunked upload's bytes, now that they are known
    log.info("task %s: received %s %r (%d bytes)", received.task_id, kind.name, received.filename, received.size)
    svc.producer.send(received.task_id, kind.name)
    return received, kind.name


@bp.post("/upload")
@requires("uploader")
def upload():
    received, kind = accept()
    return jsonify(
        {
            "message": "File uploaded successfully and queued for processing",
            "task_id": received.task_id,
            "kind": kind,
        }
    ), 202
