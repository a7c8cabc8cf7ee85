"""GET /api/v1/ping: a liveness probe that needs nothing but the API process itself."""

from __future__ import annotations

import redis
from pymongo import MongoClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from tests.conftest import free_port


def test_ping_answers_ok(client):
    response = client.get("/api/v1/ping")
    assert response.status_code == 200
    assert response.get_json() == {"ok": True}
    assert response.headers["Content-Type"] == "application/json"


def test_ping_answers_while_mongodb_and_redis_are_down(config, producer):
    # Nothing listens on these ports: what the API sees when both servers are gone.
    dead_mongo = MongoClient(f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=200)["test"]
    dead_redis = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    app = create_app(config, store=dead_mongo, redis_client=dead_redis, producer=producer)
    client = app.test_client()  # no key: ping needs none, and the database is down
    assert client.get("/api/v1/health").get_json()["status"] == "degraded"
    response = client.get("/api/v1/ping")
    assert response.status_code == 200 and response.get_json() == {"ok": True}


def test_ping_takes_only_get(client):
    assert client.post("/api/v1/ping").status_code == 405
