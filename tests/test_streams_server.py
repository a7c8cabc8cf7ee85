"""Progress streams against the real server, as a hostile or careless client holds them (issue 23, #7 and #8).

- A revoked key's open streams end within SSE_RECHECK_SECONDS (1 s here), not after SSE_MAX_SECONDS (300 s
  by default); a token's stream ends with its key too, and a reconnect is answered 401.
- One uploader opening eight streams gets SSE_STREAMS_PER_KEY of them and 429 `too_many_streams_for_key` for
  the rest; another key still gets its own, and the process-wide cap still answers 503 `too_many_streams`.

No worker (WORKERS=0): an uploaded task stays pending, so its streams stay open until the server
ends them.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import SAMPLE_MOVIES
from tests.support.service import Service
from tests.test_events import Stream

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

WAIT_SECONDS = 10  # how long a test waits for a stream the server should end within about 1 s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = Service(
        tmp_path_factory.mktemp("streams"),
        WORKERS="0",
        WEB_THREADS="12",
        SSE_MAX_STREAMS="5",
        SSE_STREAMS_PER_KEY="2",
        SSE_RECHECK_SECONDS="1",
        SSE_KEEPALIVE_SECONDS="1",
        SSE_POLL_MS="100",
        SSE_MAX_SECONDS="60",  # without the re-check, a revoked key's stream would end only then
    )
    yield service.start()
    service.stop()


def new_uploader(server) -> tuple[str, str]:
    status, _, body = server.request(
        "POST",
        "/api/v1/keys",
        json.dumps({"name": f"streamer {uuid.uuid4().hex[:6]}", "role": "uploader"}),
        {"Content-Type": "application/json"},
    )
    assert status == 201, body
    return body["key"]["id"], body["secret"]


def pending_task(server, secret: str) -> str:
    status, _, body = server.upload(SAMPLE_MOVIES, "movies.csv", key=secret)
    assert status == 202, body
    return body["task_id"]


def token_for(server, secret: str) -> str:
    status, _, body = server.request("POST", "/api/v1/auth/token", key=secret)
    assert status == 200, body
    return body["access_token"]


def opened(stream: Stream) -> Stream:
    assert stream.status == 200, stream.response.read()[:300]
    assert stream.message().startswith("retry: ")
    assert stream.message().startswith("event: progress\n")
    return stream


def refused(stream: Stream, status: int, code: str) -> dict:
    assert stream.status == status
    error = json.loads(stream.response.read())["error"]
    stream.close()
    assert error["code"] == code, error
    return error


def test_revoking_a_key_ends_its_open_streams_within_seconds(server):
    key_id, secret = new_uploader(server)
    task_id = pending_task(server, secret)
    by_key = opened(Stream(server, task_id, key=secret, timeout=WAIT_SECONDS))
    by_token = opened(Stream(server, task_id, key=token_for(server, secret), timeout=WAIT_SECONDS))
    try:
        status, _, body = server.request("DELETE", f"/api/v1/keys/{key_id}")
        assert status == 200 and body["key"]["revoked_at"]
        revoked = time.monotonic()
        for stream in (by_key, by_token):
            rest = stream.response.read().decode()  # to the end of the stream: the server closes it
            assert time.monotonic() - revoked < WAIT_SECONDS, "the revoked key's stream went on"
            assert "event:" not in rest, rest  # keep-alives only: the task did not end, the credential did
    finally:
        by_key.close()
        by_token.close()
    again = Stream(server, task_id, key=secret)  # what EventSource does next: 401, the page signs out
    assert again.status == 401
    again.close()


def test_one_key_cannot_take_every_stream_slot(server):
    _, greedy = new_uploader(server)
    _, other = new_uploader(server)
    greedy_task, other_task = pending_task(server, greedy), pending_task(server, other)
    held = []
    try:
        attempts = [Stream(server, greedy_task, key=greedy) for _ in range(8)]
        held += [opened(s) for s in attempts if s.status == 200]
        assert len(held) == 2
        for stream in attempts[2:]:
            error = refused(stream, 429, "too_many_streams_for_key")
            assert error["limit"] == 2 and stream.response.getheader("Retry-After") == "3"
            assert f"GET /api/v1/process/{greedy_task}" in error["message"]

        held += [opened(Stream(server, other_task, key=other)) for _ in range(2)]  # the other key gets its own
        refused(Stream(server, other_task, key=other), 429, "too_many_streams_for_key")
        held.append(opened(Stream(server, other_task)))  # the admin key: the 5th and last slot of the process
        error = refused(Stream(server, other_task), 503, "too_many_streams")
        assert error["limit"] == 5

        # A closed stream gives its key's slot back (noticed at its next keep-alive write, every second here).
        held.pop(0).close()
        deadline = time.monotonic() + WAIT_SECONDS
        while (again := Stream(server, greedy_task, key=greedy)).status != 200:
            refused(again, 429, "too_many_streams_for_key")  # the key's cap is checked first
            assert time.monotonic() < deadline, "the closed stream's slot was never given back to its key"
            time.sleep(0.3)
        held.append(opened(again))
    finally:
        for stream in held:
            stream.close()
