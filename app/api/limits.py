"""Per-key limits, so that one key (a runaway script, a leaked secret) cannot crowd out the others.

    RATE_LIMIT_PER_MINUTE  requests a key may make in a minute, refused or not; without a key (none, or a
                           bad one), its client address is counted instead. /, ping, health and the page's
                           static files do not count.
    MAX_ACTIVE_TASKS       tasks a key may have pending or processing at once, counted in MongoDB when an
                           upload starts, before its body is read
    UPLOAD_MB_PER_DAY      bytes a key may upload in a day: an upload with a Content-Length is counted, and
                           refused if it does not fit, before its body is read; a chunked one (its length
                           unknown) is refused only once the day's bytes are spent, and counted when stored.
                           What is counted is what was stored: an upload refused or cut off after it was
                           counted gives its announced bytes back when its request ends, and a stored one
                           keeps only its file's size (not its multipart envelope)

Beyond one: 429 with `Retry-After` (seconds) and the error naming it: `rate_limited`, `too_many_active_tasks`,
`upload_quota_exceeded`, each with its `limit`. 0 turns a limit off. Admin keys, and everyone with AUTH=false,
are exempt from the task and byte limits (an admin can make itself any key anyway), not from the rate
(with AUTH=false it is counted per client address).

The counters are Flask-Limiter's, in fixed windows that start with a key's first counted request: in Redis
(the cache's client, so REDIS_URL and its timeouts), shared by every API process; with REDIS_URL empty, in
this process's memory (embedded: one API process). Redis unreachable: the limits fail open, the request is
served uncounted, and a warning is logged at most every WARN_EVERY seconds, not once per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import redis
from flask import Flask, current_app, g, has_app_context, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage

from app.api import auth
from app.api.errors import APIError, error_response
from app.config import Config

log = logging.getLogger(__name__)

EXEMPT_ENDPOINTS = ("health.health", "health.ping", "web.index", "static")
ACTIVE_RETRY_SECONDS = 5  # Retry-After for too_many_active_tasks: about what a small file's task takes
WARN_EVERY = 10  # seconds: at most one "Redis unreachable" warning this often, per app
STORAGE_ERRORS = (redis.RedisError, StorageError, OSError)
MIB = 1 << 20
BYTES_SCOPE = "upload-bytes"
# Gives bytes back to a counter, never below 0 and keeping its expiry: a refund after the day's window
# ended (the counter gone) must not start a new window with room to spare.
GIVE_BACK = b"""
local left = tonumber(redis.call('get', KEYS[1]) or '0')
if left <= 0 then return 0 end
left = math.max(left - tonumber(ARGV[1]), 0)
redis.call('set', KEYS[1], left, 'KEEPTTL')
return left
"""


def identity() -> str:
    """Whose counter a request counts against: its key, or its client address when it has none."""
    principal = auth.current()
    if principal is not None and principal.key_id:
        return f"key:{principal.key_id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def storage_for(client) -> tuple[str, dict]:
    """Flask-Limiter's storage: the Redis the cache uses (its connection pool, so its URL and timeouts), or
    memory when that is the embedded stand-in (fakeredis runs no Lua, which the Redis storage needs)."""
    if type(client).__module__.startswith("fakeredis"):
        return "memory://", {}
    return "redis://", {"connection_pool": client.connection_pool}


class Limits:
    """One app's limits: Flask-Limiter counts the requests; its storage and strategy count the upload bytes."""

    def __init__(self, config: Config, redis_client):
        self.config = config
        self.upload_bytes: RateLimitItem | None = (
            parse(f"{config.UPLOAD_MB_PER_DAY * MIB} per day") if config.UPLOAD_MB_PER_DAY else None
        )
        uri, options = storage_for(redis_client)
        self.limiter = Limiter(
            identity,
            application_limits=[f"{config.RATE_LIMIT_PER_MINUTE} per minute"] if config.RATE_LIMIT_PER_MINUTE else [],
            strategy="fixed-window",
            storage_uri=uri,
            storage_options=options,
            swallow_errors=True,  # Redis down: serve the request uncounted (its error is logged, see _Outage)
            headers_enabled=False,  # Retry-After on a 429 is ours; no X-RateLimit-* lookups on every answer
        )
        self.limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
        self._warned_at = -math.inf
        self._lock = threading.Lock()

    def install(self, app: Flask) -> None:
        """Flask-Limiter's before_request hook (between auth's two, app/api/auth.py) and the 429 answer."""
        self.limiter.init_app(app)
        app.errorhandler(RateLimitExceeded)(self.rate_limited)
        app.teardown_request(self.unstored_upload)

    # -- requests per minute ------------------------------------------------------------------------------

    def rate_limited(self, e: RateLimitExceeded):
        limit = e.limit.limit
        exceeded = self.limiter.current_limit  # this request's: set when Flask-Limiter refused it
        window = limit.get_expiry()
        retry = self._retry_after(lambda: exceeded.window.reset_time, window) if exceeded else window
        who = "key" if identity().startswith("key:") else "address"
        return too_many(
            "rate_limited",
            f"This {who} has made more than RATE_LIMIT_PER_MINUTE = {limit.amount} requests in a "
            f"minute; retry after {retry} s.",
            retry,
            limit=limit.amount,
        )

    # -- uploads ------------------------------------------------------------------------------------------

    def admit_upload(self) -> None:
        """Before an upload's body is read: 429 if its key has too many active tasks or no bytes left today."""
        principal = auth.current()
        if principal is None or principal.admin or principal.key_id is None:  # no key: AUTH=false's admin
            return
        if self.config.MAX_ACTIVE_TASKS:
            self._check_active(principal.key_id, self.config.MAX_ACTIVE_TASKS)
        if self.upload_bytes is None:
            return
        length = request.content_length
        if length is None:  # chunked: refused only once the day's bytes are spent; counted by counted_upload()
            self._take_bytes(1, test_only=True)
        elif length <= (current_app.config.get("MAX_CONTENT_LENGTH") or length):  # a bigger one is refused 413
            if self._take_bytes(max(length, 1)):
                g.upload_bytes_taken = max(length, 1)  # given back by unstored_upload() unless it is stored

    def counted_upload(self, size: int) -> None:
        """After an upload was stored: it counts its file's `size`. A chunked one is counted now (the next are
        refused if that spent the day's bytes); one counted by its Content-Length gives back the rest."""
        principal = auth.current()
        if self.upload_bytes is None or principal is None or principal.admin:
            return
        taken = g.pop("upload_bytes_taken", None)
        if taken is not None:
            self._give_back(taken - max(size, 1))
            return
        if request.content_length is not None:  # not counted before it was read (over MAX_CONTENT_LENGTH)
            return
        try:
            self.limiter.limiter.hit(self.upload_bytes, identity(), BYTES_SCOPE, cost=max(size, 1))
        except STORAGE_ERRORS as e:
            self.storage_down(e)

    def unstored_upload(self, error: BaseException | None = None) -> None:
        """When a request ends: an upload counted before its body was read, and then refused or cut off (nothing
        stored), gives its bytes back. 25 uploads announcing gigabytes and sending 8 bytes cost nothing."""
        taken = g.pop("upload_bytes_taken", None)
        if taken is not None:
            self._give_back(taken)

    def _give_back(self, cost: int) -> None:
        if cost <= 0 or self.upload_bytes is None:
            return
        storage = self.limiter.limiter.storage
        key = self.upload_bytes.key_for(identity(), BYTES_SCOPE)
        try:
            if isinstance(storage, RedisStorage):
                give_back = storage.get_connection().register_script(GIVE_BACK)
                give_back(keys=[storage.prefixed_key(key)], args=[cost])
            elif isinstance(storage, MemoryStorage):  # its decr stops at 0 and keeps the expiry
                storage.decr(key, cost)
        except STORAGE_ERRORS as e:
            self.storage_down(e)

    def _check_active(self, key_id: str, limit: int) -> None:
        active = current_app.extensions["movie_service"].store.tasks.count_active(key_id, limit)
        if active >= limit:
            raise too_many_error(
                "too_many_active_tasks",
                f"This key has MAX_ACTIVE_TASKS = {limit} tasks pending or processing; "
                f"upload again when one has finished (retry after {ACTIVE_RETRY_SECONDS} s).",
                ACTIVE_RETRY_SECONDS,
                limit=limit,
            )

    def _take_bytes(self, cost: int, test_only: bool = False) -> bool:
        """Count `cost` bytes against the key's day, or 429 if they do not fit (nothing is counted then).
        True if they were counted (not `test_only`, and Redis answered)."""
        item, who = self.upload_bytes, identity()
        if item is None:  # UPLOAD_MB_PER_DAY = 0: nothing to count
            return False
        window = self.limiter.limiter  # Flask-Limiter's fixed-window strategy over its storage
        try:
            # test first, so that a refused upload is not counted; then hit, which counts atomically and
            # refuses this one too should another upload of the same key have taken the room meanwhile (its
            # bytes are then given back)
            if window.test(item, who, BYTES_SCOPE, cost=cost):
                if test_only:
                    return False
                if window.hit(item, who, BYTES_SCOPE, cost=cost):
                    return True
                self._give_back(cost)
            stats = window.get_window_stats(item, who, BYTES_SCOPE)
        except STORAGE_ERRORS as e:
            self.storage_down(e)
            return False
        mb, left = self.config.UPLOAD_MB_PER_DAY, stats.remaining
        retry = self._retry_after(lambda: stats.reset_time, item.get_expiry())
        quota = f"the daily upload quota of UPLOAD_MB_PER_DAY = {mb} MB"
        if cost > item.amount:
            why = f"This upload ({cost / MIB:.1f} MB) is larger than {quota}"
        elif test_only or left == 0:
            why = f"This key has used up {quota}"
        else:
            why = f"This upload ({cost / MIB:.1f} MB) is more than the {left / MIB:.1f} MB left today of {quota}"
        raise too_many_error(
            "upload_quota_exceeded", f"{why}; retry after {retry} s.", retry, limit=mb, remaining_bytes=left
        )

    # -- Redis away ---------------------------------------------------------------------------------------

    def _retry_after(self, reset_at, window: int) -> int:
        """Whole seconds until `reset_at()` (a timestamp), at least 1; the whole window if Redis cannot say."""
        try:
            return max(1, math.ceil(reset_at() - time.time()))
        except STORAGE_ERRORS as e:
            self.storage_down(e)
            return window

    def storage_down(self, error: BaseException | None) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._warned_at < WARN_EVERY:
                return
            self._warned_at = now
        log.warning("Redis unreachable: limits are not enforced (failing open) until it answers again: %s", error)


def too_many_error(code: str, message: str, retry: int, **extra) -> APIError:
    return APIError(429, code, message, headers={"Retry-After": str(retry)}, retry_after=retry, **extra)


def too_many(code: str, message: str, retry: int, **extra):
    response, status = error_response(429, code, message, retry_after=retry, **extra)
    response.headers["Retry-After"] = str(retry)
    return response, status


class _Outage(logging.Filter):
    """Flask-Limiter logs each request it could not count (swallow_errors) with a traceback: in a flood, one
    per request. This turns those into the app's rate-limited warning (Limits.storage_down) and drops them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not has_app_context():
            return True
        limits = current_app.extensions.get("movie_limits")
        if limits is None:
            return True
        limits.storage_down(record.exc_info[1])
        return False


def _filter_once() -> None:
    logger = logging.getLogger("flask-limiter")
    if not any(isinstance(f, _Outage) for f in logger.filters):
        logger.addFilter(_Outage())


def create(app: Flask, config: Config, redis_client) -> Limits:
    """The app's limits; their hooks go in with auth's (`auth.install(app, between=limits.install)`)."""
    limits = app.extensions["movie_limits"] = Limits(config, redis_client)
    _filter_once()
    return limits


def current() -> Limits:
    return current_app.extensions["movie_limits"]


def warn_if_per_process(config: Config) -> None:
    """At start: with several API processes and no Redis, each counts on its own."""
    if config.embedded_redis and not config.embedded_mongo and config.WEB_CONCURRENCY > 1:
        log.warning(
            "REDIS_URL is empty: each of the %d API processes counts the per-key limits on its own, so a "
            "key gets up to %d times each; set REDIS_URL to share them",
            config.WEB_CONCURRENCY,
            config.WEB_CONCURRENCY,
        )
