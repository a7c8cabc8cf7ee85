"""POST /api/v1/upload: store the file, recognise its job kind, record a pending task, wake a worker."""
from __future__ import annotations

import logging
import os

from flask import Blueprint, jsonify, request

from app import auth, limits, movies, plays, tasks
from app.auth import requires
from app.errors import APIError
from app.services import services
from app.upload import Upload, receive

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__, url_prefix="/api/v1")

RESERVED = ("_id", "year")  # fields the service computes itself
EXPECTED = {"movies": list(movies.COLUMNS), "plays": list(plays.COLUMNS)}


def choose_kind(header: list[str], requested: str | None) -> str:
    """The job kind: as requested (`kind` form field or query parameter), else recognised from the header."""
    if requested is not None and requested not in tasks.KINDS:
        raise APIError(400, "bad_kind", f"kind must be one of {', '.join(tasks.KINDS)}, got {requested!r}.")
    kind = requested or ("plays" if plays.fits(header) else "movies" if "title" in header else None)
    if kind is None:
        raise APIError(
            422, "unrecognised_header",
            "The header fits no job kind. Expected 'Song,Date,Number of Plays' for play counts, "
            "or movie columns including 'title' (" + ",".join(movies.COLUMNS) + ").",
            expected=EXPECTED,
        )
    (check_movie_header if kind == "movies" else check_plays_header)(header)
    return kind


def check_plays_header(header: list[str]) -> None:
    if not plays.fits(header):
        raise APIError(
            422, "bad_columns",
            f"A plays file has exactly the columns {','.join(plays.COLUMNS)}; got {','.join(header)}.",
            expected=EXPECTED["plays"],
        )


def check_movie_header(header: list[str]) -> None:
    missing = [name for name in movies.REQUIRED if name not in header]
    if missing:
        raise APIError(
            422, "missing_columns", f"The header lacks the required column(s): {', '.join(missing)}.",
            missing=missing, expected=EXPECTED["movies"],
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise APIError(422, "duplicate_columns", f"The header repeats column(s): {', '.join(duplicated)}.")
    # MongoDB refuses field names with NUL and treats a leading $ as an operator.
    unusable = [name for name in header if name in RESERVED or name == "" or name.startswith("$") or "\0" in name]
    if unusable:
        raise APIError(422, "bad_columns", f"The header has column names the service cannot store: {unusable}.")


def accept() -> tuple[Upload, str]:
    """Receive the request's file and queue it; returns the upload and its job kind."""
    svc = services()
    c = svc.config
    quota = limits.current()
    quota.admit_upload()  # 429 before the body is read: too many active tasks, or no upload bytes left today
    received = receive(request, c.UPLOAD_FOLDER, c.max_upload_bytes, c.MAX_COLUMNS, c.min_free_bytes)
    try:
        kind = choose_kind(received.header, received.fields.get("kind") or request.args.get("kind") or None)
        extra = {"columns_missing": [c for c in movies.COLUMNS if c not in received.header]} if kind == "movies" else {}
        tasks.create(
            svc.db, task_id=received.task_id, kind=kind, filename=received.filename, path=received.path,
            size=received.size, owner=auth.current().owner(), **extra,
        )
    except BaseException:
        os.remove(received.path)
        raise
    quota.counted_upload(received.size)  # a chunked upload's bytes, now that they are known
    log.info("task %s: received %s %r (%d bytes)", received.task_id, kind, received.filename, received.size)
    svc.producer.send(received.task_id, kind)
    return received, kind


@bp.post("/upload")
@requires("uploader")
def upload():
    received, kind = accept()
    return jsonify({
        "message": "File uploaded successfully and queued for processing", "task_id": received.task_id,
        "kind": kind,
    }), 202
