"""Slow clients on the real server (`python run.py`): they hold no thread, and are cut with a 408.

gunicorn's own gthread worker gave each connection a thread as soon as its first byte arrived, so a few
clients sending their headers a byte at a time stopped every other request (app/api/serving.py). Timing is not
measured here (bench/slow_clients.py does): only that ping answers at all while the slow ones are open, and
that the timeouts cut them.
"""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import pytest

from tests.support.service import Service

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(
        tmp_path_factory.mktemp("slow"),
        EMBEDDED_WORKERS="0",
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    )
    service.server = service.start()
    yield service
    service.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def trickle_until_answered(sock: socket.socket, limit: float, data: bytes = b"a", every: float = 0.25):
    """Send `data` a byte every `every` s until the server closes the connection; (seconds, its answer)."""
    started = time.monotonic()
    answer = b""
    sent = 0
    while time.monotonic() - started < limit:
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk  # the server closes after its answer
            continue
        try:
            sock.send(data[sent % len(data) : sent % len(data) + 1])
            sent += 1
        except OSError:
            break
    return time.monotonic() - started, answer


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_ping_answers_while_twenty_slow_header_clients_are_open(service):
    slow = [connect(service.port) for _ in range(20)]
    try:
        for sock in slow:  # each starts a request and stalls inside its headers, as a byte-a-second client does
            sock.sendall(b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        time.sleep(0.5)  # gthread would now have a thread blocked in each of them
        status, _, body = service.server.request("GET", "/api/v1/ping")
        assert (status, body) == (200, {"ok": True})
        still_open = [s for s in slow if not select.select([s], [], [], 0)[0]]
        assert len(still_open) == 20, "ping should answer before the slow clients were cut"
    finally:
        for sock in slow:
            sock.close()


def test_slow_headers_are_cut_with_408_after_the_header_timeout(service):
    with connect(service.port) as sock:
        sock.sendall(b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        elapsed, answer = trickle_until_answered(sock, limit=30, data=b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert b"Connection: close" in answer
    assert HEADER_TIMEOUT - 0.2 <= elapsed < HEADER_TIMEOUT + 10


def test_a_client_that_sends_nothing_is_closed_after_the_header_timeout(service):
    with connect(service.port) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert HEADER_TIMEOUT - 0.2 <= time.monotonic() - started < HEADER_TIMEOUT + 10


@pytest.mark.parametrize("sent_first", [0, 200_000], ids=["from-the-start", "after-200KB"])
def test_a_slow_upload_body_is_cut_and_leaves_no_task_and_no_file(service, sent_first):
    """From the start: cut by the event loop; after 200 KB (streamed to a partial file by a thread): cut there."""
    rows = b"title,release_date\n" + b"Slow Movie,2000-01-01\n" * 50_000
    head = (
        b"POST /api/v1/upload?filename=slow.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        b"Authorization: Bearer " + service.server.key.encode() + b"\r\n"
        b"Content-Length: " + str(len(rows)).encode() + b"\r\n\r\n"
    )
    with connect(service.port) as sock:
        sock.sendall(head + rows[:sent_first])
        elapsed, answer = trickle_until_answered(sock, limit=30, data=rows[sent_first : sent_first + 1000])
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT - 0.2 <= elapsed < BODY_TIMEOUT + 10
    uploads = service.env["UPLOAD_FOLDER"]
    assert sorted(p.name for p in Path(uploads).iterdir()) == []
    status, _, listing = service.server.request("GET", "/api/v1/processes")
    assert status == 200 and listing["total_docs"] == 0, listing


def test_pipelined_requests_on_one_connection_are_all_answered(service):
    """The read-ahead hands complete requests on, pipelined ones included."""
    with connect(service.port) as sock:
        request = b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request * 3)  # pipelined: three answers on one connection
        answer = b""
        deadline = time.monotonic() + 30
        while answer.count(b'{"ok":true}') < 3 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.count(b"HTTP/1.1 200") == 3
