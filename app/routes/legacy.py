"""The first system's routes, kept for scripts written against them: POST /upload, GET /result/<task_id>."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app import auth, tasks
from app.auth import requires
from app.errors import APIError
from app.routes.tasks import result_file
from app.routes.uploads import accept
from app.services import services

bp = Blueprint("legacy", __name__)


@bp.post("/upload")
@requires("uploader")
def upload():
    received, _ = accept()
    return jsonify({"task_id": received.task_id}), 202


@bp.get("/result/<task_id>")
@requires("uploader")
def result(task_id: str):
    task = tasks.get(services().db, task_id)
    if task is not None and auth.may_see(task) and task["status"] == tasks.COMPLETED:
        try:
            return result_file(task)
        except APIError:
            pass
    return jsonify({"status": "Processing or not found"}), 404
