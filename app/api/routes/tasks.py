"""Where a task stands, its result, cancelling it: /api/v1/process/<task_id>[/result], /api/v1/processes."""

from __future__ import annotations

import logging
import os
from urllib.parse import quote

from flask import Blueprint, jsonify, request, send_file

from app import tasks
from app.api import auth, params, views
from app.api.auth import requires
from app.api.errors import APIError
from app.api.intake import NAME_BYTES, ascii_filename, clean_filename
from app.api.services import services
from app.jobs import registry
from app.store.files import remove

log = logging.getLogger(__name__)
bp = Blueprint("tasks", __name__, url_prefix="/api/v1")
RESULT_SUFFIX = "-totals.csv"  # a result downloads as <upload's name without .csv>-totals.csv


def find(task_id: str) -> tasks.Task:
    """The task, if the caller may see it; else 404, the same answer as for no task at all."""
    task = tasks.get(services().store, task_id)
    if task is None or not auth.may_see(task):
        raise APIError(404, "task_not_found", f"No task with id {task_id[:64]!r}.")
    return task


def show(task: tasks.Task) -> dict:
    return views.task(task, admin=auth.required().admin)


def result_file(task: tasks.Task):
    """The task's result CSV as a streamed download, or the reason there is none (yet)."""
    task_id, status = task["task_id"], task["status"]
    if not registry.get(task["kind"]).leaves_result:
        raise APIError(404, "no_result", f"Task {task_id} is a {task['kind']} job; it has no result file.")
    if status in (tasks.PENDING, tasks.PROCESSING):
        raise APIError(
            409,
            "not_ready",
            f"Task {task_id} is {status}; the result is ready when it is completed.",
            task_status=status,
            percent=task.get("percent", 0),
        )
    if status == tasks.FAILED:
        raise APIError(
            410, "task_failed", f"Task {task_id} failed, so it has no result: {task.get('error')}", task_status=status
        )
    if status == tasks.CANCELLED:
        raise APIError(410, "task_cancelled", f"Task {task_id} was cancelled, so it has no result.", task_status=status)
    gone = APIError(
        410,
        "result_gone",
        f"The result of task {task_id} is no longer stored (results are kept "
        f"{services().config.RESULT_TTL_HOURS} hours); upload the file again.",
        task_status=status,
    )
    path = task.get("result_path")
    if not path or task.get("result_removed_at"):
        raise gone
    stem = os.path.splitext(clean_filename(task.get("filename") or "") or "plays.csv")[0]
    stem = stem.encode("utf-8")[: NAME_BYTES - len(RESULT_SUFFIX)].decode("utf-8", "ignore")  # the whole name fits
    try:
        response = send_file(os.path.abspath(path), mimetype="text/csv", max_age=0)
    except FileNotFoundError:  # removed by the expiry sweep, or lost with its disk
        raise gone from None
    response.headers["Content-Disposition"] = content_disposition(stem + RESULT_SUFFIX)
    return response


def content_disposition(name: str) -> str:
    """RFC 6266 `attachment` for any name: an ASCII `filename` fallback and the exact one in `filename*`."""
    name = clean_filename(name) or "download.csv"
    return f"attachment; filename=\"{ascii_filename(name)}\"; filename*=UTF-8''{quote(name, safe='')}"


@bp.get("/process/<task_id>")
@requires("uploader")
def get_task(task_id: str):
    return jsonify(show(find(task_id)))


@bp.delete("/process/<task_id>")
@requires("uploader")
def cancel_task(task_id: str):
    """Cancel a pending task at once (200), or a processing one at its next batch (202)."""
    store = services().store
    find(task_id)  # someone else's task is not found, and not cancelled
    task = tasks.request_cancel(store, task_id)
    if task is None:
        status = find(task_id)["status"]
        raise APIError(
            409,
            "not_cancellable",
            f"Task {task_id} is already {status}; only pending or processing tasks can be cancelled.",
            task_status=status,
        )
    if task["status"] == tasks.CANCELLED:
        remove(task["path"])
        log.info("task %s: cancelled before it started", task_id)
        return jsonify(show(task)), 200
    log.info("task %s: cancel requested; its worker stops at the next batch", task_id)
    return jsonify(show(task)), 202


@bp.get("/process/<task_id>/result")
@requires("uploader")
def get_result(task_id: str):
    return result_file(find(task_id))


@bp.get("/processes")
@requires("uploader")
def list_tasks():
    """The caller's tasks, newest first (an admin's: everyone's)."""
    args = request.args
    params.reject_unknown(args, ("page", "limit", "status"))
    page = params.integer(args, "page", 1, 1, 1_000_000)
    limit = params.integer(args, "limit", 10, 1, 100)
    status = params.choice(args, "status", None, tasks.STATUSES)
    docs, total = tasks.page(services().store, page, limit, auth.owner_key_id(), status)
    return jsonify(views.page("processes", [show(doc) for doc in docs], page, limit, total))
