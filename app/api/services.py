"""What a request handler needs, built once per app: settings, store, cache, queue producer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.broker.taskqueue import Producer
from app.config import Config
from app.store.cache import Cache
from app.store.interface import Store


@dataclass
class Services:
    config: Config
    store: Store
    cache: Cache
    producer: Producer


def services() -> Services:
    return current_app.extensions["movie_service"]
