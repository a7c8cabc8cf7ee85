"""The movie ingest service: upload → queue → worker → ingest → store → API."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Config

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, *, store=None, redis_client=None, producer=None) -> Flask:
    """The application factory; dependencies may be passed in (tests), else built from `config`."""
    # Imported here: processes that only ingest (the worker's helper) then load no Flask, Redis or ZeroMQ.
    from app.api import auth, errors, limits
    from app.api.services import Services
    from app.broker.taskqueue import Producer
    from app.config import load_config
    from app.store import cache, connect, of
    from app.store.sqlite import ForeignFile

    config = config or load_config()
    app = _App(__name__)
    app.config.update(
        DEBUG=config.DEBUG,
        MAX_CONTENT_LENGTH=config.max_upload_bytes + (1 << 20),  # room for the multipart envelope
    )
    os.makedirs(config.UPLOAD_FOLDER, exist_ok=True)
    os.makedirs(config.RESULT_FOLDER, exist_ok=True)
    store = of(store) if store is not None else connect(config)  # a test may hand in a pymongo Database
    try:
        store.setup()
    except ForeignFile:  # not ours to overwrite: the start stops, naming the file
        raise
    except Exception as e:  # the API still starts; reads answer 503 until the store is back
        log.error("could not set up the %s store: %s", store.name, e)
    redis_client = redis_client if redis_client is not None else cache.connect(config)
    app.extensions["movie_service"] = Services(
        config=config,
        store=store,
        cache=cache.Cache(redis_client, config.CACHE_TTL),
        producer=producer or Producer(config),
    )
    errors.register(app)
    app.before_request(refuse_empty_segments)  # first: a 404 before a credential is even read
    # who is asking, then the per-key limits count the request, then may they (app/api/auth.py, app/api/limits.py)
    auth.install(app, between=limits.create(app, config, redis_client).install)
    app.before_request(bound_body)
    app.after_request(security_headers)
    from app.api.routes import auth as auth_routes
    from app.api.routes import docs, events, health, keys, legacy, movies, tasks, uploads, web

    for module in (uploads, tasks, events, movies, keys, auth_routes, health, legacy, web, docs):
        app.register_blueprint(module.bp)
    return app


UPLOAD_ENDPOINTS = ("uploads.upload", "legacy.upload")  # stream their bodies to disk (app/api/intake.py)
BODY_LIMIT = 64 * 1024  # bytes of any other request's body (a JSON object to /api/v1/keys): read whole, into memory


def bound_body():
    """Every body but an upload's is read whole into memory: at most BODY_LIMIT bytes of it, else 413.

    werkzeug holds a chunked body (no Content-Length) to the limit by cutting it there, silently: read it
    here instead, up to one byte past the limit, so that a longer one is refused too, not cut.
    """
    import io

    from flask import request
    from werkzeug.exceptions import RequestEntityTooLarge

    if request.endpoint in UPLOAD_ENDPOINTS:
        return
    request.max_content_length = BODY_LIMIT
    if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        body = request.environ["wsgi.input"].read(BODY_LIMIT + 1)
        if len(body) > BODY_LIMIT:
            raise RequestEntityTooLarge()
        request.environ["wsgi.input"] = io.BytesIO(body)
        request.environ["CONTENT_LENGTH"] = str(len(body))


def _App(name: str) -> Flask:
    """Flask that never answers with a redirect of its URL map.

    Werkzeug's map answers a path with `//` (merge_slashes) or without a rule's trailing slash (strict_slashes)
    with a 308 whose Location is built from the request's Host header: `POST /api/v1//upload` with
    `Host: attacker.example` was sent on to http://attacker.example/…. Every such redirect is a JSON 404
    instead, whichever rule or setting would have made it: a client sends the path the API documents.
    """
    from flask import Flask
    from werkzeug.exceptions import NotFound
    from werkzeug.routing import RequestRedirect

    class App(Flask):
        def raise_routing_exception(self, request):
            if isinstance(request.routing_exception, RequestRedirect):
                raise NotFound()
            super().raise_routing_exception(request)

    return App(name)


def refuse_empty_segments() -> None:
    """A path with `//` anywhere is a 404, as the client sent it (gunicorn turns a leading `//` into `/`
    before Flask sees it, werkzeug would redirect one further on): one answer for every such path."""
    from urllib.parse import urlsplit

    from flask import request
    from werkzeug.exceptions import NotFound

    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    target = raw.partition("?")[0]
    if not target.startswith("/"):  # absolute-form, `GET http://host/path`: its path
        target = urlsplit(target).path
    if "//" in target:
        raise NotFound()


def security_headers(response):
    """Headers every answer carries, set here once rather than route by route.

    `nosniff` keeps a browser from reading a JSON or CSV answer as HTML or script; `no-referrer` keeps task
    ids in URLs out of other sites' logs. Nothing but the page's static files may be stored by a browser
    or a proxy: task records, results, errors and movie pages alike are `no-store` (a movie page changes
    with every upload, and the server already caches it in Redis for CACHE_TTL). Static files keep Flask's
    `no-cache` with an ETag: a browser keeps them and revalidates, and a 304 costs next to nothing.
    """
    from flask import request

    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint not in ("static", "docs.asset") or response.status_code >= 400:
        response.headers["Cache-Control"] = "no-store"
    return response
