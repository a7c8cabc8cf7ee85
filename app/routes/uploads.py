"""POST /api/v1/upload: store the file, record a pending task, wake a worker."""
from __future__ import annotations

import logging
import os

from flask import Blueprint, jsonify, request

from app import movies, tasks
from app.errors import APIError
from app.services import services
from app.upload import receive

log = logging.getLogger(__name__)
bp = Blueprint("uploads", __name__, url_prefix="/api/v1")

RESERVED = ("_id", "year")  # fields the service computes itself


def check_movie_header(header: list[str]) -> None:
    missing = [name for name in movies.REQUIRED if name not in header]
    if missing:
        raise APIError(
            422, "missing_columns", f"The header lacks the required column(s): {', '.join(missing)}.",
            missing=missing, expected=list(movies.COLUMNS),
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise APIError(422, "duplicate_columns", f"The header repeats column(s): {', '.join(duplicated)}.")
    # MongoDB refuses field names with NUL and treats a leading $ as an operator.
    unusable = [name for name in header if name in RESERVED or name == "" or name.startswith("$") or "\0" in name]
    if unusable:
        raise APIError(422, "bad_columns", f"The header has column names the service cannot store: {unusable}.")


@bp.post("/upload")
def upload():
    svc = services()
    received = receive(request, svc.config.UPLOAD_FOLDER, svc.config.max_upload_bytes)
    try:
        check_movie_header(received.header)
        missing = [name for name in movies.COLUMNS if name not in received.header]
        tasks.create(
            svc.db, task_id=received.task_id, kind="movies", filename=received.filename, path=received.path,
            size=received.size, columns_missing=missing,
        )
    except BaseException:
        os.remove(received.path)
        raise
    log.info("task %s: received %s (%d bytes)", received.task_id, received.filename, received.size)
    svc.producer.send(received.task_id, "movies")
    return jsonify({
        "message": "File uploaded successfully and queued for processing", "task_id": received.task_id,
    }), 202
