"""bench/upload.py's baseline: the plain Flask way to take an upload, served exactly as run.py serves the API.

    python bench/plain_flask.py      # reads HOST, PORT, WEB_THREADS, UPLOAD_FOLDER, ... like run.py

`POST /upload` does `request.files['file'].save(path)`: werkzeug parses the whole multipart body into a
temporary file (in TMPDIR) before the view runs, and `save` then copies it to UPLOAD_FOLDER. The server
is run.py's own gunicorn application (same worker class, threads, timeouts, access log), only with this
app loaded and no broker or ingest worker beside it, so the two are compared on equal terms.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from flask import Flask, request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run
from app import logs


def create_app(folder: str) -> Flask:
    os.makedirs(folder, exist_ok=True)
    app = Flask(__name__)

    @app.post("/upload")
    def upload():
        path = os.path.join(folder, f"{uuid.uuid4()}.csv")
        request.files["file"].save(path)
        return {"saved": path}

    return app


def _no_worker(gunicorn_worker) -> None:
    """Replaces run.py's post_worker_init hook: the baseline hosts no broker and no ingest worker."""


class PlainServer(run.Server):
    def load_config(self):
        super().load_config()
        self.cfg.set("post_worker_init", _no_worker)

    def load(self):
        return create_app(self.config.UPLOAD_FOLDER)


if __name__ == "__main__":
    PlainServer(logs.start_command()).run()
