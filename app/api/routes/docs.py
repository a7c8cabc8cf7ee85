"""The contract and its browsable docs: GET /api/v1/openapi.json, GET /docs (Swagger UI) and its files.

Swagger UI's files come from the flask-swagger-ui package, which ships them (its dist folder), and are
served by this process, so /docs works offline; the page's own start-up script is app/static/docs.js, so its
Content-Security-Policy allows no inline script and nothing from another origin.
"""

from __future__ import annotations

import os

import flask_swagger_ui
from flask import Blueprint, current_app, jsonify, make_response, render_template, send_from_directory

from app.api import openapi
from app.api.auth import ANYONE, requires
from app.api.routes.web import CSP

bp = Blueprint("docs", __name__)
ASSETS = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")


def document() -> dict:
    """The app's document, built once (the routes do not change while it runs)."""
    built = current_app.extensions.get("openapi")
    if built is None:
        built = current_app.extensions["openapi"] = openapi.build(current_app)
    return built


@bp.get("/api/v1/openapi.json")
@requires(ANYONE)
def openapi_document():
    return jsonify(document())


@bp.get("/docs")
@requires(ANYONE)
def docs():
    response = make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = CSP
    return response


@bp.get("/docs/<path:filename>")
@requires(ANYONE)
def asset(filename: str):
    """Swagger UI's script, stylesheet and icons, from the package."""
    return send_from_directory(ASSETS, filename, max_age=0)
