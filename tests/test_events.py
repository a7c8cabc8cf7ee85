"""GET /api/v1/process/<task_id>/events: a task's progress as Server-Sent Events.

In-process (Flask test client, a thread moving the task along) for the stream's content and its slots;
against the real server (gunicorn) for streaming to the end of a real ingest, and for the cap on open
streams keeping threads free for everything else.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from app import create_app, tasks
from app.api.routes import events
from app.config import ConfigError, load_config
from moviecat.generate import generate_movies
from tests.conftest import SAMPLE_MOVIES
from tests.support.auth import signed_in
from tests.support.service import Service

RANK = {"pending": 0, "processing": 1, "completed": 2}


def parse(text: str) -> list[tuple[str, object]]:
    """An event stream as (field, value) pairs: ("retry", 3000), ("comment", …), (event name, data)."""
    messages = []
    for block in text.split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        if lines[0].startswith(":"):
            messages.append(("comment", lines[0][1:].strip()))
        elif lines[0].startswith("retry: "):
            messages.append(("retry", int(lines[0][len("retry: ") :])))
        else:
            assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, block
            messages.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
    return messages


def assert_follows_to_the_end(messages, task_id):
    assert messages[0] == ("retry", events.RETRY_MS)
    names = [name for name, _ in messages[1:] if name != "comment"]
    assert names[-1] == "end" and set(names[:-1]) == {"progress"}, names
    records = [data for name, data in messages if name == "progress"]
    assert all(r["task_id"] == task_id for r in records)
    percents = [r["percent"] for r in records]
    assert percents == sorted(percents), percents  # never goes back
    ranks = [RANK[r["status"]] for r in records]
    assert ranks == sorted(ranks), [r["status"] for r in records]
    assert records[-1]["status"] == "completed" and records[-1]["percent"] == 100.0
    assert messages[-1] == ("end", {"task_id": task_id, "status": "completed"})
    assert len({json.dumps(r, sort_keys=True) for r in records}) == len(records)  # one event per change
    return records


# -- in-process ---------------------------------------------------------------------------------------


@pytest.fixture
def make_client(config, db, redis_client, producer):
    def make(**settings):
        settings = {"SSE_POLL_MS": 20, **settings}
        return signed_in(
            create_app(config.with_overrides(**settings), store=db, redis_client=redis_client, producer=producer)
        )

    return make


def new_task(db, task_id="t1") -> str:
    tasks.create(db, task_id=task_id, kind="movies", filename="m.csv", path="/nonexistent/m.csv", size=1000)
    return task_id


STEPS = (10.0, 40.0, 75.0, 100.0)


def move_along(db, task_id: str, step: float = 0.1) -> None:
    """What a worker does to a task, slowly enough for a 20 ms poll to see every step."""
    time.sleep(step)
    tasks.claim(db, "w1", lease_seconds=60, max_attempts=3, task_id=task_id)
    for percent in STEPS:
        time.sleep(step)
        tasks.update(db, task_id, "w1", 60, percent=percent, rows_read=int(percent * 10), bytes_read=int(percent * 10))
    time.sleep(step)
    tasks.finish(db, task_id, "w1", tasks.COMPLETED, percent=100.0, rows_read=1000, bytes_read=1000)


def test_stream_follows_a_task_to_its_end(make_client, db):
    client = make_client()
    task_id = new_task(db)
    worker = threading.Thread(target=move_along, args=(db, task_id))
    worker.start()
    response = client.get(f"/api/v1/process/{task_id}/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Accel-Buffering"] == "no"
    text = b"".join(response.response).decode()  # returns once the server closed the stream
    response.close()
    worker.join()

    records = assert_follows_to_the_end(parse(text), task_id)
    assert [r["status"] for r in records][0] == "pending"
    seen = [r["percent"] for r in records if r["status"] == "processing"]
    assert set(seen) <= {0.0, *STEPS} and len(set(seen) & set(STEPS)) >= 3, seen  # a 20 ms poll sees most steps
    assert records[-1] == client.get(f"/api/v1/process/{task_id}").get_json()


def test_a_finished_task_sends_its_record_and_ends(make_client, db):
    client = make_client()
    task_id = new_task(db)
    tasks.request_cancel(db, task_id)
    messages = parse(client.get(f"/api/v1/process/{task_id}/events").get_data(as_text=True))
    assert [name for name, _ in messages] == ["retry", "progress", "end"]
    assert messages[1][1]["status"] == "cancelled" and messages[2][1]["status"] == "cancelled"


def test_unknown_task_is_a_json_404(make_client):
    response = make_client().get("/api/v1/process/nope/events")
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "task_not_found"


def test_keep_alive_comments_and_a_bounded_lifetime(config, db):
    task_id = new_task(db)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    settings = config.with_overrides(SSE_POLL_MS=500, SSE_KEEPALIVE_SECONDS=2, SSE_MAX_SECONDS=5)
    messages = parse("".join(events.progress(db, task_id, settings, clock=lambda: now[0], sleep=sleep)))
    assert [name for name, _ in messages] == ["retry", "progress", "comment", "comment"]
    assert messages[2] == ("comment", "keep-alive")
    assert now[0] == 5.0  # closed at SSE_MAX_SECONDS; the browser reconnects


def test_a_stream_ends_at_the_first_check_after_its_credential_went(config, db):
    task_id = new_task(db)
    now, checks = [0.0], []

    def sleep(seconds):
        now[0] += seconds

    def allowed():
        checks.append(now[0])
        return now[0] < 4  # the key is revoked at 4 s

    settings = config.with_overrides(SSE_POLL_MS=500, SSE_RECHECK_SECONDS=3, SSE_MAX_SECONDS=300)
    stream = events.progress(db, task_id, settings, clock=lambda: now[0], sleep=sleep, allowed=allowed)
    messages = parse("".join(stream))
    assert [name for name, _ in messages] == ["retry", "progress"]
    assert checks == [3.0, 6.0] and now[0] == 6.0  # checked every SSE_RECHECK_SECONDS, ended at the first False


def test_per_key_slots_are_counted_apart_and_given_back():
    per_key = events.PerKey(2)
    assert [per_key.take("key:a") for _ in range(3)] == [True, True, False]
    assert per_key.take("key:b")  # another key has its own
    per_key.give("key:a")
    assert per_key.take("key:a") and not per_key.take("key:a")
    for _ in range(2):
        per_key.give("key:a")
    per_key.give("key:b")
    assert per_key.open == {}  # nothing kept for keys with no stream open
    assert all(events.PerKey(0).take("key:a") for _ in range(300))  # 0: no cap per key


def test_stream_ends_quietly_when_the_database_goes(config, db, monkeypatch, caplog):
    task_id = new_task(db)
    stream = events.progress(db, task_id, config.with_overrides(SSE_POLL_MS=50), sleep=lambda s: None)
    assert [next(stream), next(stream)[:15]] == [f"retry: {events.RETRY_MS}\n\n", "event: progress"]

    def unreachable(*args):
        raise ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr(tasks, "get", unreachable)
    assert list(stream) == []
    assert "database unavailable" in caplog.text


def test_streams_beyond_the_cap_get_503_and_a_closed_one_frees_its_slot(make_client, db):
    client = make_client(SSE_MAX_STREAMS=2)
    task_id = new_task(db)
    url = f"/api/v1/process/{task_id}/events"
    first, second = client.get(url, buffered=False), client.get(url, buffered=False)
    assert first.status_code == second.status_code == 200
    refused = client.get(url)
    assert refused.status_code == 503 and refused.mimetype == "application/json"
    assert refused.get_json()["error"]["code"] == "too_many_streams"
    assert f"GET /api/v1/process/{task_id}" in refused.get_json()["error"]["message"]
    first.close()  # never read: the slot is freed on close all the same
    third = client.get(url, buffered=False)
    assert third.status_code == 200
    second.close()
    third.close()


def test_no_streams_at_all_when_the_cap_is_zero(make_client, db):
    response = make_client(SSE_MAX_STREAMS=0).get(f"/api/v1/process/{new_task(db)}/events")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "too_many_streams"


def test_streams_must_leave_threads_for_other_requests():
    with pytest.raises(ConfigError, match=r"SSE_MAX_STREAMS \(4\) must be smaller than WEB_THREADS \(4\)"):
        load_config({"WEB_THREADS": "4", "SSE_MAX_STREAMS": "4"})
    assert load_config({"WEB_THREADS": "4", "SSE_MAX_STREAMS": "3", "MAX_UPLOADS_RECEIVING": "3"}).SSE_MAX_STREAMS == 3


# -- the real server ----------------------------------------------------------------------------------


class Stream:
    """An event stream read over a socket of its own, as a browser holds one."""

    def __init__(self, server, task_id: str, key: str | None = None, timeout: float = 30):
        """`key`: the secret (or token) to open it with; the server's admin key by default."""
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
        self.conn.request(
            "GET",
            f"/api/v1/process/{task_id}/events",
            headers={"Accept": "text/event-stream", "Authorization": f"Bearer {key or server.key}"},
        )
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def message(self) -> str:
        """The next message (up to its blank line), as the server flushed it."""
        lines = []
        while True:
            line = self.response.readline().decode()
            if line in ("\n", ""):
                return "".join(lines)
            lines.append(line)

    def close(self):
        self.conn.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    service = Service(
        tmp_path_factory.mktemp("events-live"), SSE_POLL_MS="100", BATCH_SIZE="250", BLOCK_SIZE=str(256 * 1024)
    )  # small blocks: percent moves several times on a small file
    yield service.start()
    service.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    # No worker: an uploaded task stays pending, so its streams stay open for as long as the test likes.
    service = Service(
        tmp_path_factory.mktemp("events-capped"),
        WORKERS="0",
        WEB_THREADS="4",
        SSE_MAX_STREAMS="2",
        MAX_UPLOADS_RECEIVING="2",
        SSE_KEEPALIVE_SECONDS="1",
        SSE_POLL_MS="100",
    )
    yield service.start()
    service.stop()


@pytest.mark.server
def test_real_server_streams_an_ingest_to_its_end(live, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=6_000, seed=5)
    status, _, body = live.upload(path, "movies.csv")
    assert status == 202
    stream = Stream(live, body["task_id"])
    assert stream.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    text = stream.response.read().decode()  # to the end: the server closes the stream once the task is done
    stream.close()
    records = assert_follows_to_the_end(parse(text), body["task_id"])
    assert records[-1]["rows_read"] == 6_000 and records[-1]["bytes_read"] == path.stat().st_size
    assert any(r["status"] == "processing" and 0 < r["percent"] < 100 for r in records), [
        (r["status"], r["percent"]) for r in records
    ]


@pytest.mark.server
def test_streams_at_the_cap_leave_threads_for_other_requests(capped):
    status, _, body = capped.upload(SAMPLE_MOVIES, "movies.csv")
    assert status == 202
    task_id = body["task_id"]
    held = [Stream(capped, task_id) for _ in range(2)]
    try:
        for stream in held:  # both open and flushing: gunicorn does not buffer them
            assert stream.status == 200
            assert stream.message() == f"retry: {events.RETRY_MS}\n"
            assert stream.message().startswith("event: progress\n")

        for path in ("/api/v1/movies?limit=5", "/api/v1/health", f"/api/v1/process/{task_id}", "/"):
            started = time.monotonic()
            status, _, _ = capped.request("GET", path, raw=True)
            assert status == 200 and time.monotonic() - started < 2.0, path

        extra = Stream(capped, task_id)
        assert extra.status == 503
        assert json.loads(extra.response.read())["error"]["code"] == "too_many_streams"
        extra.close()

        # A closed tab: the server notices at its next keep-alive write (every second here) and frees the slot.
        held.pop().close()
        deadline = time.monotonic() + 15
        while True:
            again = Stream(capped, task_id)
            if again.status == 200:
                held.append(again)
                break
            again.close()
            assert time.monotonic() < deadline, "the closed stream's slot was never freed"
            time.sleep(0.5)
    finally:
        for stream in held:
            stream.close()
