"""One JSON shape for every error: `{"error": {"code": "...", "message": "..."}}`."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestTimeout

from app.store.errors import ERRORS

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error a client can act on; raised anywhere, rendered by the handler below."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.headers = headers or {}


class BodyTimeout(RequestTimeout):
    """A request body arrived too slowly (BODY_TIMEOUT_SECONDS, app/api/serving.py): 408, and the connection closes."""

    description = "The request body did not arrive fast enough; the connection is closed."


def error_response(status: int, code: str, message: str, **extra):
    body = {"error": {"code": code, "message": message, **extra}}
    return jsonify(body), status


def register(app: Flask) -> None:
    @app.errorhandler(APIError)
    def api_error(e: APIError):
        response, status = error_response(e.status, e.code, e.message, **e.extra)
        response.headers.update(e.headers)
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        response, status = error_response(e.code or 500, code, e.description or e.name)
        if isinstance(e, MethodNotAllowed) and e.valid_methods:
            response.headers["Allow"] = ", ".join(e.valid_methods)
        return response, status

    def database_error(e: Exception):
        log.error("database unavailable: %s", e)
        return error_response(503, "database_unavailable", "The database is unreachable; try again shortly.")

    for error in ERRORS:  # a store away, or busy past its wait, whichever store it is
        app.register_error_handler(error, database_error)

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal_error", "An unexpected error occurred; it has been logged.")
