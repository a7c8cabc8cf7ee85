"""A small cache of serialized responses in Redis with a TTL. It fails open: with Redis away, callers compute.

Values are stored as the bytes a response sends, so a hit is one GET and no parsing or re-encoding.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import redis

from app.config import Config
from app.store import clients

log = logging.getLogger(__name__)


def connect(config: Config) -> redis.Redis:
    """The cache's Redis client; one per process and URL."""
    return clients.shared("redis", config.REDIS_URL or "embedded", lambda: _new_client(config))


def _new_client(config: Config) -> redis.Redis:
    if config.embedded_redis:
        from app.embedded import redis_client

        log.warning("REDIS_URL is not set: using an embedded Redis stand-in (in-memory, not persisted)")
        return redis_client()
    # Short timeouts: a cache that hangs is worse than no cache.
    return redis.Redis.from_url(config.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


class Cache:
    def __init__(self, client: redis.Redis, ttl: int, prefix: str = "cache:"):
        self.client, self.ttl, self.prefix = client, ttl, prefix
        self._last_warning = 0.0

    def key(self, namespace: str, params: dict) -> str:
        """Same parameters, same key, whatever their order in the URL."""
        return f"{self.prefix}{namespace}:{json.dumps(params, sort_keys=True, separators=(',', ':'))}"

    def get_or_compute(self, key: str, compute: Callable[[], bytes]) -> tuple[bytes, bool]:
        """The cached bytes and True, or the computed ones (stored for `ttl` seconds) and False."""
        try:
            cached = self.client.get(key)
            if isinstance(cached, bytes):  # None: a miss (a str only from a client that decodes, not ours)
                return cached, True
        except redis.RedisError as e:
            self._warn(e)
            return compute(), False
        value = compute()
        try:
            self.client.set(key, value, ex=self.ttl)
        except redis.RedisError as e:
            self._warn(e)
        return value, False

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError as e:
            self._warn(e)
            return False

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:  # one line per outage burst, not one per request
            self._last_warning = now
            log.warning("Redis unavailable, serving from MongoDB: %s", error)
