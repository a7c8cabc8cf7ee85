"""Per-key limits (app/api/limits.py), in process: requests per minute, active tasks, upload bytes per day.

Each limit is hit exactly (N allowed, the next one 429 with its code and a Retry-After), per key, with 0
turning it off; a refused upload leaves no file and no task; with Redis away, requests are served and one
warning is logged. The same against the real server and a real Redis: tests/test_limits_server.py.
"""

from __future__ import annotations

import io
import logging
import time

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from app.api import keys
from app.config import ConfigError, load_config
from tests.conftest import SAMPLE_MOVIES
from tests.support import free_port
from tests.support.auth import signed_in

MIB = 1 << 20
UPLOAD = "/api/v1/upload"
TASKS = "/api/v1/processes"


def limited_app(config, db, producer, redis_client=None, **settings):
    """An app with these settings (the rest as the `config` fixture has them), counting in memory by default."""
    return create_app(
        config.with_overrides(**settings),
        store=db,
        producer=producer,
        redis_client=redis_client if redis_client is not None else fakeredis.FakeRedis(),
    )


def assert_429(response, code: str) -> dict:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    retry = response.headers["Retry-After"]
    assert retry.isdigit() and int(retry) > 0, retry
    body = response.get_json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code and error["message"] and error["retry_after"] == int(retry)
    return error


def csv_of(size: int) -> bytes:
    """A movies CSV of exactly `size` bytes (at least 8)."""
    return b"title\n" + b"x" * (size - 7) + b"\n"


def post_raw(client, body: bytes, url: str = UPLOAD):
    """A raw text/csv upload: its Content-Length is exactly len(body)."""
    return client.post(f"{url}?filename=movies.csv", data=body, content_type="text/csv")


def post_chunked(client, body: bytes):
    """A raw upload without a Content-Length, as `Transfer-Encoding: chunked` arrives."""
    return client.post(
        f"{UPLOAD}?filename=movies.csv",
        input_stream=io.BytesIO(body),
        content_type="text/csv",
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )


def post_sample(client, url: str = UPLOAD):
    with open(SAMPLE_MOVIES, "rb") as f:
        return client.post(url, data={"file": (f, "movies.csv")}, content_type="multipart/form-data")


def stored(upload_dir) -> list[str]:
    return sorted(p.name for p in upload_dir.iterdir())


# -- requests per minute --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["reader", "uploader", "admin"])
def test_the_request_after_the_limit_is_429_rate_limited(config, db, producer, role):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=5)
    client = signed_in(app, role)
    for _ in range(5):
        assert client.get("/api/v1/movies").status_code == 200
    error = assert_429(client.get("/api/v1/movies"), "rate_limited")
    assert error["limit"] == 5 and "RATE_LIMIT_PER_MINUTE = 5" in error["message"]
    retry = assert_429(client.post("/api/v1/auth/token"), "rate_limited")["retry_after"]
    assert retry <= 60  # the window is a minute, and it started with the first request
    for header in ("X-Content-Type-Options", "Cache-Control"):  # still the service's own answer
        assert header in client.get("/api/v1/movies").headers


def test_each_key_has_its_own_count(config, db, producer):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=3)
    first, second = signed_in(app, "reader", "first"), signed_in(app, "reader", "second")
    for _ in range(3):
        assert first.get("/api/v1/movies").status_code == 200
    assert_429(first.get("/api/v1/movies"), "rate_limited")
    for _ in range(3):
        assert second.get("/api/v1/movies").status_code == 200
    assert_429(second.get("/api/v1/movies"), "rate_limited")


def test_every_route_of_a_key_shares_one_count(config, db, producer):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=4)
    client = signed_in(app, "uploader")
    for path in ("/api/v1/movies", TASKS, "/api/v1/movies", "/result/none"):
        assert client.get(path).status_code in (200, 404)
    assert_429(client.get(TASKS), "rate_limited")
    assert_429(post_sample(client), "rate_limited")


def test_ping_health_the_page_and_static_files_do_not_count(config, db, producer):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=2)
    client = signed_in(app, "reader")
    for _ in range(5):
        for path in ("/api/v1/ping", "/api/v1/health", "/", "/static/main.js"):
            assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/movies").status_code == 200
    assert client.get("/api/v1/movies").status_code == 200
    assert_429(client.get("/api/v1/movies"), "rate_limited")
    assert client.get("/api/v1/ping").status_code == 200  # a limited key's monitor still gets an answer
    assert app.test_client().get("/api/v1/health").status_code == 200


def test_refused_requests_count_too_by_key_or_by_address(config, db, producer):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=3)
    reader = signed_in(app, "reader")
    for _ in range(3):
        assert reader.get("/api/v1/keys").status_code == 403  # authenticated, but not allowed: still counted
    assert_429(reader.get("/api/v1/keys"), "rate_limited")

    nobody = app.test_client()  # no key: counted by client address
    for _ in range(3):
        assert nobody.get(TASKS).status_code == 401
    error = assert_429(nobody.get(TASKS), "rate_limited")
    assert "This address" in error["message"]
    assert_429(nobody.get(TASKS, headers={"Authorization": "Bearer mcat_guessed"}), "rate_limited")
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "127.0.0.2"
    assert other.get(TASKS, headers={"Authorization": "Bearer mcat_guessed"}).status_code == 401
    assert signed_in(app, "reader").get("/api/v1/movies").status_code == 200  # a key on the same address


def test_rate_limit_zero_is_off(config, db, producer):
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=0)
    client = signed_in(app, "reader")
    assert all(client.get("/api/v1/movies").status_code == 200 for _ in range(30))


# -- active tasks ---------------------------------------------------------------------------------------


def test_the_upload_after_max_active_tasks_is_429(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, MAX_ACTIVE_TASKS=2)
    uploader = signed_in(app, "uploader")
    assert [post_sample(uploader).status_code for _ in range(2)] == [202, 202]  # no worker: both stay pending
    before = stored(upload_dir)

    error = assert_429(post_sample(uploader), "too_many_active_tasks")
    assert error["limit"] == 2 and "MAX_ACTIVE_TASKS = 2" in error["message"]
    assert error["retry_after"] == 5
    legacy = assert_429(post_sample(uploader, "/upload"), "too_many_active_tasks")  # the old route, the same limit
    assert legacy == error
    assert stored(upload_dir) == before and len(before) == 2  # no file, no task, nothing queued
    assert db.processes.count_documents({}) == 2 and len(producer.sent) == 2

    assert post_sample(signed_in(app, "uploader", "another")).status_code == 202  # another key: unaffected
    db.processes.update_one({"owner.name": "test uploader"}, {"$set": {"status": "processing"}})
    assert_429(post_sample(uploader), "too_many_active_tasks")  # processing counts as active too
    db.processes.update_one({"owner.name": "test uploader", "status": "processing"}, {"$set": {"status": "completed"}})
    assert post_sample(uploader).status_code == 202  # one finished: room for one more
    assert_429(post_sample(uploader), "too_many_active_tasks")


def test_admin_keys_are_exempt_from_the_task_and_byte_limits(config, db, producer):
    app = limited_app(config, db, producer, MAX_ACTIVE_TASKS=1, UPLOAD_MB_PER_DAY=1)
    admin = signed_in(app, "admin")
    assert [post_raw(admin, csv_of(MIB)).status_code for _ in range(3)] == [202, 202, 202]


def test_too_many_active_tasks_is_refused_before_the_body_is_read(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, MAX_ACTIVE_TASKS=1)
    uploader = signed_in(app, "uploader")
    assert post_sample(uploader).status_code == 202
    before = stored(upload_dir)

    class Unread(io.BytesIO):
        reads = 0

        def read(self, *args):
            Unread.reads += 1
            return super().read(*args)

        readinto = readline = read

    body = Unread(csv_of(1000))
    response = uploader.post(
        f"{UPLOAD}?filename=big.csv", input_stream=body, content_type="text/csv", headers={"Content-Length": "1000"}
    )
    assert_429(response, "too_many_active_tasks")
    assert Unread.reads == 0 and stored(upload_dir) == before


def test_max_active_tasks_zero_is_off(config, db, producer):
    app = limited_app(config, db, producer, MAX_ACTIVE_TASKS=0)
    uploader = signed_in(app, "uploader")
    assert [post_sample(uploader).status_code for _ in range(25)] == [202] * 25  # more than the default 20


# -- upload bytes per day -------------------------------------------------------------------------------


def test_the_upload_beyond_the_days_bytes_is_429(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=1)
    uploader = signed_in(app, "uploader")
    assert post_raw(uploader, csv_of(MIB - 100)).status_code == 202
    assert post_raw(uploader, csv_of(100)).status_code == 202  # exactly the day's MiB
    before = stored(upload_dir)

    error = assert_429(post_raw(uploader, csv_of(8)), "upload_quota_exceeded")
    assert error["limit"] == 1 and error["remaining_bytes"] == 0 and "UPLOAD_MB_PER_DAY = 1" in error["message"]
    assert 86_000 < error["retry_after"] <= 86_400  # the day's window started with the first upload
    assert_429(post_sample(uploader, "/upload"), "upload_quota_exceeded")  # the old route, the same quota
    assert stored(upload_dir) == before and db.processes.count_documents({}) == 2 and len(producer.sent) == 2

    assert post_raw(signed_in(app, "uploader", "another"), csv_of(MIB)).status_code == 202  # its own day


def test_a_refused_upload_does_not_count(config, db, producer):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=1)
    uploader = signed_in(app, "uploader")
    assert post_raw(uploader, csv_of(600 * 1024)).status_code == 202
    error = assert_429(post_raw(uploader, csv_of(600 * 1024)), "upload_quota_exceeded")
    assert error["remaining_bytes"] == MIB - 600 * 1024
    assert post_raw(uploader, csv_of(MIB - 600 * 1024)).status_code == 202  # what was left is still there
    assert_429(post_raw(uploader, csv_of(8)), "upload_quota_exceeded")


def test_an_upload_refused_once_read_gives_its_bytes_back(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=1)
    uploader = signed_in(app, "uploader")
    unknown = b"colour,shape\n" + b"x" * (600 * 1024) + b"\n"  # counted by its Content-Length, then refused
    for _ in range(3):
        response = post_raw(uploader, unknown)
        assert 400 <= response.status_code < 500 and response.status_code != 429, response.get_json()
    assert stored(upload_dir) == []
    assert post_raw(uploader, csv_of(MIB)).status_code == 202  # the whole day's MiB: nothing else was counted
    assert_429(post_raw(uploader, csv_of(8)), "upload_quota_exceeded")  # and that one was


def test_an_upload_larger_than_the_whole_quota_is_refused_unread(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=1)
    uploader = signed_in(app, "uploader")
    error = assert_429(post_raw(uploader, csv_of(MIB + 1)), "upload_quota_exceeded")
    assert "larger than the daily upload quota" in error["message"]
    assert stored(upload_dir) == [] and db.processes.count_documents({}) == 0
    assert post_raw(uploader, csv_of(MIB)).status_code == 202  # nothing was counted


def test_an_upload_too_big_for_max_upload_is_413_and_not_counted(config, db, producer):
    app = limited_app(config, db, producer, MAX_UPLOAD_MB=1, UPLOAD_MB_PER_DAY=3)
    uploader = signed_in(app, "uploader")
    assert post_raw(uploader, csv_of(2 * MIB + 1)).status_code == 413  # over MAX_CONTENT_LENGTH: unread, uncounted
    assert [post_raw(uploader, csv_of(MIB)).status_code for _ in range(3)] == [202, 202, 202]
    assert_429(post_raw(uploader, csv_of(8)), "upload_quota_exceeded")


def test_a_chunked_upload_counts_when_stored_and_refuses_the_next(config, db, producer, upload_dir):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=1)
    uploader = signed_in(app, "uploader")
    assert post_chunked(uploader, csv_of(MIB // 2)).status_code == 202
    # its size unknown until it has arrived: accepted while bytes are left, so it may end past the quota...
    assert post_chunked(uploader, csv_of(MIB)).status_code == 202
    before = stored(upload_dir)
    # ...and then the day's are spent: the next ones are refused, chunked or not
    assert "used up" in assert_429(post_chunked(uploader, csv_of(8)), "upload_quota_exceeded")["message"]
    assert_429(post_raw(uploader, csv_of(8)), "upload_quota_exceeded")
    assert stored(upload_dir) == before and db.processes.count_documents({}) == 2


def test_upload_mb_per_day_zero_is_off(config, db, producer):
    app = limited_app(config, db, producer, UPLOAD_MB_PER_DAY=0)
    uploader = signed_in(app, "uploader")
    assert [post_raw(uploader, csv_of(MIB)).status_code for _ in range(3)] == [202, 202, 202]
    assert post_chunked(uploader, csv_of(MIB)).status_code == 202


# -- Redis away -----------------------------------------------------------------------------------------


def test_redis_down_limits_fail_open_with_one_warning(config, db, producer, upload_dir, caplog):
    # nothing listens on this port; retries off, as the app's own client (from_url) has them
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    app = limited_app(
        config, db, producer, redis_client=dead, RATE_LIMIT_PER_MINUTE=2, UPLOAD_MB_PER_DAY=1, MAX_ACTIVE_TASKS=5
    )
    uploader = signed_in(app, "uploader")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert [uploader.get(TASKS).status_code for _ in range(10)] == [200] * 10  # past the rate: uncounted
        assert post_raw(uploader, csv_of(MIB + 1)).status_code == 202  # past the day's bytes: uncounted
        assert post_chunked(uploader, csv_of(MIB)).status_code == 202
        assert post_sample(uploader, "/upload").status_code == 202
    assert time.monotonic() - started < 10  # a refused connection fails fast; no retries per request
    assert len(stored(upload_dir)) == 3 and db.processes.count_documents({}) == 3

    warnings = [r for r in caplog.records if r.name == "app.api.limits"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one per outage, not one per request
    assert warnings[0].levelno == logging.WARNING and "not enforced" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.name == "flask-limiter"]  # its per-request tracebacks are folded in


def test_the_active_task_limit_holds_with_redis_down(config, db, producer):
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    app = limited_app(config, db, producer, redis_client=dead, MAX_ACTIVE_TASKS=1)
    uploader = signed_in(app, "uploader")
    assert post_sample(uploader).status_code == 202
    assert_429(post_sample(uploader), "too_many_active_tasks")  # counted in MongoDB, not Redis


# -- settings -------------------------------------------------------------------------------------------


def test_defaults_and_bounds():
    config = load_config({})
    assert (config.RATE_LIMIT_PER_MINUTE, config.MAX_ACTIVE_TASKS, config.UPLOAD_MB_PER_DAY) == (600, 20, 51200)
    zero = load_config({"RATE_LIMIT_PER_MINUTE": "0", "MAX_ACTIVE_TASKS": "0", "UPLOAD_MB_PER_DAY": "0"})
    assert (zero.RATE_LIMIT_PER_MINUTE, zero.MAX_ACTIVE_TASKS, zero.UPLOAD_MB_PER_DAY) == (0, 0, 0)
    for name, bad in (
        ("RATE_LIMIT_PER_MINUTE", "-1"),
        ("MAX_ACTIVE_TASKS", "100001"),
        ("UPLOAD_MB_PER_DAY", str((1 << 30) + 1)),
        ("RATE_LIMIT_PER_MINUTE", "lots"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_config({name: bad})


def test_a_revoked_key_is_refused_before_it_is_counted(config, db, producer):
    """A revoked key's requests are 401 and count against its address, not against the key."""
    app = limited_app(config, db, producer, RATE_LIMIT_PER_MINUTE=2)
    doc, secret = keys.create(db, "gone", "reader")
    keys.revoke(db, doc["_id"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert [client.get("/api/v1/movies", headers=headers).status_code for _ in range(2)] == [401, 401]
    assert_429(client.get("/api/v1/movies", headers=headers), "rate_limited")
