"""The first system's routes, kept for scripts written against them: POST /upload, GET /result/<task_id>."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app import tasks
from app.api import auth
from app.api.auth import requires
from app.api.errors import APIError
from app.api.routes.tasks import result_file
from app.api.routes.uploads import accept
from app.api.services import services

bp = Blueprint("legacy", __name__)


@bp.post("/upload")
@requires("uploader")
def upload():
    received, _ = accept()
    return jsonify({"task_id": received.task_id}), 202


@bp.get("/result/<task_id>")
@requires("uploader")
def result(task_id: str):
    task = tasks.get(services().store, task_id)
    if task is not None and auth.may_see(task) and task["status"] == tasks.COMPLETED:
        try:
            return result_file(task)
        except APIError:
            pass
    return jsonify({"status": "Processing or not found"}), 404
