"""GET /api/v1/process/<task_id> and GET /api/v1/processes: where a task stands."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app import params, tasks
from app.errors import APIError
from app.services import services

bp = Blueprint("tasks", __name__, url_prefix="/api/v1")


@bp.get("/process/<task_id>")
def get_task(task_id: str):
    task = tasks.get(services().db, task_id)
    if task is None:
        raise APIError(404, "task_not_found", f"No task with id {task_id!r}.")
    return jsonify(tasks.public(task))


@bp.get("/processes")
def list_tasks():
    args = request.args
    params.reject_unknown(args, ("page", "limit", "status"))
    page = params.integer(args, "page", 1, 1, 1_000_000)
    limit = params.integer(args, "limit", 10, 1, 100)
    status = params.choice(args, "status", None, tasks.STATUSES)
    return jsonify(tasks.page(services().db, status, page, limit))
