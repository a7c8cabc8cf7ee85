"""The movie ingest service: upload → queue → worker → ingest → store → API."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Config

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, *, db=None, redis_client=None, producer=None) -> Flask:
    """The application factory; dependencies may be passed in (tests), else built from `config`."""
    # Imported here: processes that only ingest (the worker's helper) then load no Flask, Redis or ZeroMQ.
    from flask import Flask

    from app import cache, errors, mongo
    from app.config import load_config
    from app.queue import Producer
    from app.services import Services

    config = config or load_config()
    app = Flask(__name__)
    app.config.update(
        DEBUG=config.DEBUG,
        MAX_CONTENT_LENGTH=config.max_upload_bytes + (1 << 20),  # room for the multipart envelope
    )
    os.makedirs(config.UPLOAD_FOLDER, exist_ok=True)
    os.makedirs(config.RESULT_FOLDER, exist_ok=True)
    db = db if db is not None else mongo.connect(config)
    try:
        mongo.ensure_indexes(db)
    except Exception as e:  # the API still starts; reads answer 503 until MongoDB is back
        log.error("could not create MongoDB indexes: %s", e)
    app.extensions["movie_service"] = Services(
        config=config,
        db=db,
        cache=cache.Cache(redis_client if redis_client is not None else cache.connect(config), config.CACHE_TTL),
        producer=producer or Producer(config),
    )
    errors.register(app)
    from app.routes import events, health, legacy, movies, tasks, uploads, web

    for module in (uploads, tasks, events, movies, health, legacy, web):
        app.register_blueprint(module.bp)
    return app
