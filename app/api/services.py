"""What a request handler needs, built once per app: settings, database, cache, queue producer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from pymongo.database import Database

from app.broker.taskqueue import Producer
from app.config import Config
from app.store.cache import Cache


@dataclass
class Services:
    config: Config
    db: Database
    cache: Cache
    producer: Producer


def services() -> Services:
    return current_app.extensions["movie_service"]
