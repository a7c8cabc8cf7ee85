"""The movie cache against a real Redis server (127.0.0.1:6379, or REDIS_TEST_URL).

Skips with a message when no server answers, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest
import redis

from app import create_app
from app.store.cache import Cache
from tests.support.auth import signed_in

pytestmark = pytest.mark.server  # talks to a real Redis server: the server tier (make check leaves it out)

URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def real_redis():
    client = redis.Redis.from_url(URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as e:
        message = f"no Redis server at {URL} ({e}); start one with `redis-server --port 6379 --save ''`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI requires a real Redis: {message}")
        pytest.skip(message)
    prefix = f"test:{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def real_client(config, db, producer, real_redis):
    client, prefix = real_redis
    app = create_app(config.with_overrides(CACHE_TTL=1), store=db, redis_client=client, producer=producer)
    app.extensions["movie_service"].cache.prefix = prefix  # keep this test's keys apart
    db.movies.insert_many([{"_id": f"2000-01-0{i}/M{i}", "title": f"M{i}", "year": 2000} for i in range(1, 4)])
    return signed_in(app), client, prefix


def test_hit_within_ttl_and_miss_after(real_client):
    http, client, prefix = real_client
    first = http.get("/api/v1/movies?year=2000")
    assert first.status_code == 200 and first.headers["X-Cache"] == "miss"
    assert first.json["total_docs"] == 3
    keys = list(client.scan_iter(f"{prefix}*"))
    assert len(keys) == 1 and 0 < client.ttl(keys[0]) <= 1
    second = http.get("/api/v1/movies?year=2000")
    assert second.headers["X-Cache"] == "hit" and second.json == first.json
    time.sleep(1.2)
    third = http.get("/api/v1/movies?year=2000")
    assert third.headers["X-Cache"] == "miss"


def test_hit_is_the_stored_bytes_of_the_miss(real_client):
    http, client, prefix = real_client
    first = http.get("/api/v1/movies?sort_by=title&order=-1")
    second = http.get("/api/v1/movies?sort_by=title&order=-1")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert second.data == first.data and second.headers["Content-Type"] == first.headers["Content-Type"]
    [key] = client.scan_iter(f"{prefix}*")
    assert client.get(key) == first.data


def test_parameter_order_shares_an_entry(real_client):
    http, client, prefix = real_client
    assert http.get("/api/v1/movies?year=2000&limit=10").headers["X-Cache"] == "miss"
    assert http.get("/api/v1/movies?limit=10&year=2000").headers["X-Cache"] == "hit"
    assert len(list(client.scan_iter(f"{prefix}*"))) == 1


def test_default_ttl_is_five_seconds(real_redis):
    client, prefix = real_redis
    cache = Cache(client, ttl=5, prefix=prefix)
    value, hit = cache.get_or_compute(cache.key("movies", {"page": 1}), lambda: b'{"x":1}')
    assert (value, hit) == (b'{"x":1}', False)
    assert 4 <= client.ttl(cache.key("movies", {"page": 1})) <= 5


@pytest.mark.slow
def test_outage_falls_back_to_mongodb_and_warns(config, db, producer, caplog):
    # A real client pointed at a port where no Redis listens: what the API sees when Redis goes away.
    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    app = create_app(config, store=db, redis_client=dead, producer=producer)
    db.movies.insert_one({"_id": "2000-01-01/M", "title": "M", "year": 2000})
    with caplog.at_level(logging.WARNING, logger="app.store.cache"):
        response = signed_in(app).get("/api/v1/movies")
    assert response.status_code == 200 and response.json["total_docs"] == 1
    assert response.headers["X-Cache"] == "miss"
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
    health = signed_in(app).get("/api/v1/health").json
    assert health["redis"] == "unreachable" and health["status"] == "degraded"
