"""POST /api/v1/upload: store the file, recognise its job kind (app/jobs), record a pending task, wake a worker."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from app import tasks
from app.api import auth, limits
from app.api.auth import requires
from app.api.errors import APIError
from app.api.intake import FormLimits, Upload, receive
from app.api.services import services
from app.jobs import registry
from app.store.files import remove

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__, url_prefix="/api/v1")


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
    received = receive(request, c.UPLOAD_FOLDER, c.max_upload_bytes, c.MAX_COLUMNS, c.min_free_bytes, form)
    try:
        kind = choose_kind(received.header, received.fields.get("kind") or request.args.get("kind") or None)
        tasks.create(
            svc.db,
            task_id=received.task_id,
            kind=kind.name,
            filename=received.filename,
            path=received.path,
            size=received.size,
            owner=auth.current().owner(),
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
