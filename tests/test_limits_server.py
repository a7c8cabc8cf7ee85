"""Per-key limits against the real server process (`python run.py`) counting in a real Redis.

What a client hammering the service sees over HTTP: the request past RATE_LIMIT_PER_MINUTE is 429 with
Retry-After, counted in Redis (REDIS_TEST_URL, default db 15 of 127.0.0.1:6379, as tests/test_redis_real.py);
the upload past MAX_ACTIVE_TASKS (WORKERS=0: tasks stay pending) or past UPLOAD_MB_PER_DAY is 429
and leaves no file and no task. Without a Redis the tests skip, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest
import redis

from tests.conftest import SAMPLE_MOVIES, require
from tests.support.service import Service

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
MIB = 1 << 20


@pytest.fixture(scope="module")
def real_redis():
    client = redis.Redis.from_url(URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as e:
        require("a real Redis", f"no Redis server at {URL} ({e}); start one with `redis-server --port 6379 --save ''`")
    yield client
    client.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, real_redis):
    workdir = tmp_path_factory.mktemp("limits")
    svc = Service(
        workdir,
        REDIS_URL=URL,
        WORKERS="0",
        RATE_LIMIT_PER_MINUTE="5",
        MAX_ACTIVE_TASKS="2",
        UPLOAD_MB_PER_DAY="1",
    )
    server = svc.start()
    svc.server, svc.workdir = server, workdir
    yield svc
    svc.stop()
    for name in real_redis.scan_iter("LIMITS:*"):  # this run's counters: its keys' ids are in theirs
        if any(key_id in name.decode() for key_id in MADE):
            real_redis.delete(name)


MADE: list[str] = []  # ids of the keys the tests made


def new_key(server, role: str) -> tuple[str, str]:
    """(id, secret) of a new key, made over HTTP with the server's admin key (one of its requests)."""
    status, _, body = server.request(
        "POST",
        "/api/v1/keys",
        json.dumps({"name": f"{role} {uuid.uuid4().hex[:6]}", "role": role}),
        {"Content-Type": "application/json"},
    )
    assert status == 201, body
    MADE.append(body["key"]["id"])
    return body["key"]["id"], body["secret"]


def assert_429(status, headers, body, code: str) -> dict:
    assert status == 429, body
    retry = headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and int(retry) > 0, headers
    assert body["error"]["code"] == code and body["error"]["retry_after"] == int(retry)
    return body["error"]


def raw_upload(server, body: bytes, key: str):
    return server.request("POST", "/api/v1/upload?filename=movies.csv", body, {"Content-Type": "text/csv"}, key=key)


def uploads(workdir) -> list[str]:
    return sorted(p.name for p in (workdir / "uploads").iterdir() if not p.name.startswith("."))


def test_the_sixth_request_in_a_minute_is_429_counted_in_redis(service, real_redis):
    server = service.server
    key_id, secret = new_key(server, "reader")
    answers = [server.request("GET", "/api/v1/movies", key=secret) for _ in range(8)]
    assert [status for status, _, _ in answers[:5]] == [200] * 5
    for status, headers, body in answers[5:]:  # an attacker hammering on gets 429 after 429
        error = assert_429(status, headers, body, "rate_limited")
        assert error["limit"] == 5 and int(headers["Retry-After"]) <= 60
    counters = [k.decode() for k in real_redis.scan_iter(f"*{key_id}*")]
    assert counters and real_redis.get(counters[0]) is not None  # in the real Redis, not in the process
    assert real_redis.ttl(counters[0]) <= 60

    _, other = new_key(server, "reader")  # another key (and the admin, who made it) still get in
    assert server.request("GET", "/api/v1/movies", key=other)[0] == 200
    assert server.request("GET", "/api/v1/ping", key=secret)[0] == 200  # ping does not count


def test_the_upload_past_max_active_tasks_is_429_and_leaves_nothing(service):
    server, workdir = service.server, service.workdir
    _, secret = new_key(server, "uploader")
    before = uploads(workdir)
    for _ in range(2):
        status, _, body = server.upload(SAMPLE_MOVIES, "movies.csv", key=secret)
        assert status == 202, body  # no worker: both stay pending
    stored = uploads(workdir)
    assert len(stored) == len(before) + 2

    error = assert_429(*server.upload(SAMPLE_MOVIES, "movies.csv", key=secret), "too_many_active_tasks")
    assert error["limit"] == 2
    assert_429(*server.upload(SAMPLE_MOVIES, "movies.csv", url="/upload", key=secret), "too_many_active_tasks")
    assert uploads(workdir) == stored
    status, _, listing = server.request("GET", "/api/v1/processes", key=secret)
    assert status == 200 and listing["total_docs"] == 2


def test_the_upload_past_the_days_bytes_is_429_and_leaves_nothing(service):
    server, workdir = service.server, service.workdir
    _, secret = new_key(server, "uploader")
    first = b"title\n" + b"x" * (MIB - 64 * 1024) + b"\n"
    status, _, body = raw_upload(server, first, secret)
    assert status == 202, body
    stored = uploads(workdir)

    # 64 KiB more does not fit: refused before it is read, and the client still reads the JSON answer
    error = assert_429(*raw_upload(server, b"title\n" + b"x" * (64 * 1024) + b"\n", secret), "upload_quota_exceeded")
    assert error["limit"] == 1 and error["remaining_bytes"] < 64 * 1024
    assert uploads(workdir) == stored
    status, _, listing = server.request("GET", "/api/v1/processes", key=secret)
    assert status == 200 and listing["total_docs"] == 1


# -- what a quota counts: what was stored (issue 23, #6) ------------------------------------------------------


@pytest.fixture(scope="module")
def quota_service(tmp_path_factory, real_redis):
    """A day's quota of 4 GiB, as big as the largest upload (MAX_UPLOAD_MB): one 4 GiB announcement would
    spend it all. No per-minute limit: the attack sends 25 uploads."""
    svc = Service(
        tmp_path_factory.mktemp("quota"),
        REDIS_URL=URL,
        WORKERS="0",
        MAX_ACTIVE_TASKS="0",
        UPLOAD_MB_PER_DAY="4096",
        MAX_UPLOAD_MB="4096",
    )
    svc.server = svc.start()
    yield svc
    svc.stop()
    for name in real_redis.scan_iter("LIMITS:*"):
        if any(key_id in name.decode() for key_id in MADE):
            real_redis.delete(name)


def cut_off_upload(server, secret: str, announced: int, sent: bytes) -> bytes:
    """An upload announcing `announced` bytes that sends `sent` and stops (its write side closed); the answer."""
    head = (
        f"POST /api/v1/upload?filename=movies.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: text/csv\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + sent)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):  # to the end: the server has finished with the request
            answer += chunk
    return answer


def test_cut_off_uploads_give_their_announced_bytes_back(quota_service, real_redis):
    server = quota_service.server
    key_id, secret = new_key(server, "uploader")
    announced = 4 << 30
    for _ in range(25):  # 4 GiB, 2 GiB, … 256 bytes: each counted before its body is read, then cut off
        answer = cut_off_upload(server, secret, announced, b"title\nab")
        assert not answer.startswith(b"HTTP/1.1 2"), answer[:200]
        announced //= 2

    data = b"title\nThe Matrix\n"
    status, _, body = raw_upload(server, data, secret)
    assert status == 202, body  # not 429 upload_quota_exceeded for 24 h
    status, _, listing = server.request("GET", "/api/v1/processes", key=secret)
    assert status == 200 and listing["total_docs"] == 1  # the cut-off uploads left no task
    counters = [k for k in real_redis.scan_iter("LIMITS:*") if key_id in k.decode() and b"upload-bytes" in k]
    assert len(counters) == 1 and int(real_redis.get(counters[0])) == len(data)  # what was stored, no more


def test_a_stored_multipart_upload_counts_its_file_not_its_envelope(quota_service, real_redis):
    server = quota_service.server
    key_id, secret = new_key(server, "uploader")
    status, _, body = server.upload(SAMPLE_MOVIES, "movies.csv", key=secret)
    assert status == 202, body
    counters = [k for k in real_redis.scan_iter("LIMITS:*") if key_id in k.decode() and b"upload-bytes" in k]
    assert int(real_redis.get(counters[0])) == SAMPLE_MOVIES.stat().st_size
