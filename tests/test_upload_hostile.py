"""Hostile uploads against the real server (`python run.py`, gunicorn gthread, embedded mode), over sockets.

A cut-off body (raw or multipart, Content-Length or chunked) leaves no task, no file and one log line.
"""
from __future__ import annotations

import json
import re
import socket
import time
import uuid

import pytest

from tests.service import Service

CUT_LOG = "upload refused: The upload was cut off"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    service = Service(workdir)
    service.server = service.start()
    service.uploads = workdir / "uploads"
    yield service
    service.stop()


@pytest.fixture
def server(service):
    return service.server


def movies_body(size: int) -> bytes:
    """A movies CSV of about `size` bytes."""
    head = b"title,release_date,budget\n"
    rows = b"".join(b"Film %06d,2001-01-01,1000\n" % i for i in range(size // 26 + 1))
    return head + rows


def request_head(path: str, headers: dict) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def send_cut(server, head: bytes, body: bytes, how: str):
    """Send `head` and `body`, then end the connection (`shutdown`: stop writing, read the answer; `close`)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(head + body)
        time.sleep(0.3)  # let the server read what came before the end, as a client that gives up would
        if how == "close":
            return None
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


def parse_response(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
    return status, headers, body


def log_count(service, text: str) -> int:
    return service.log().count(text)


def task_ids(server) -> set[str]:
    status, _, body = server.request("GET", "/api/v1/processes?limit=100")
    assert status == 200
    return {task["task_id"] for task in body["processes"]}


def assert_nothing_left(service, before: tuple[int, set]):
    """No new task, no upload file, and one more cut-off line in the log (it may land just after the socket ends)."""
    cut_logs_before, tasks_before = before
    deadline = time.monotonic() + 10
    while log_count(service, CUT_LOG) <= cut_logs_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log_count(service, CUT_LOG) == cut_logs_before + 1, service.log()[-3000:]
    line = [ln for ln in service.log().splitlines() if CUT_LOG in ln][-1]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ WARNING app\.upload \[\d+\] upload refused: ", line), line
    assert task_ids(service.server) == tasks_before
    assert sorted(p.name for p in service.uploads.iterdir()) == []


def assert_incomplete_answer(answer: bytes):
    status, headers, body = parse_response(answer)
    assert status == 400, answer[:2000]
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["code"] == "incomplete_body"
    assert error["message"].startswith("The upload was cut off")
    return error


@pytest.fixture
def clean(service):
    """What a cut-off test must leave as it was: the count of cut-off log lines, and the tasks."""
    return log_count(service, CUT_LOG), task_ids(service.server)


# -- 1. a cut-off upload is never taken as complete -------------------------------------------------------

@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_raw_body_shorter_than_content_length(service, server, clean, how):
    head = request_head("/api/v1/upload?filename=cut.csv",
                        {"Content-Type": "text/csv", "Content-Length": "1000000"})
    answer = send_cut(server, head, movies_body(5000)[:5000], how)
    if how == "shutdown":
        error = assert_incomplete_answer(answer)
        assert "after 5000 of the 1000000 bytes" in error["message"]
    assert_nothing_left(service, clean)


@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_multipart_body_shorter_than_content_length(service, server, clean, how):
    boundary = uuid.uuid4().hex
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n"
             "Content-Type: text/csv\r\n\r\n").encode()
    head = request_head("/api/v1/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                           "Content-Length": "1000000"})
    answer = send_cut(server, head, start + movies_body(5000)[:5000], how)
    if how == "shutdown":
        assert_incomplete_answer(answer)
    assert_nothing_left(service, clean)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("where", ["between_chunks", "mid_chunk"])
@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_chunked_body_cut_before_last_chunk(service, server, clean, how, where):
    data = movies_body(5000)[:5000]
    body = chunk(data[:2500]) + chunk(data[2500:])
    if where == "mid_chunk":
        body += b"1000\r\n" + data[:100]  # announces 4096 bytes, sends 100
    head = request_head("/api/v1/upload?filename=cut.csv",
                        {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"})
    answer = send_cut(server, head, body, how)
    if how == "shutdown":
        assert_incomplete_answer(answer)
    assert_nothing_left(service, clean)


def test_multipart_chunked_cut(service, server, clean):
    boundary = uuid.uuid4().hex
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n"
             "Content-Type: text/csv\r\n\r\n").encode()
    head = request_head("/api/v1/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                           "Transfer-Encoding": "chunked"})
    answer = send_cut(server, head, chunk(start + movies_body(5000)[:5000]), "shutdown")
    assert_incomplete_answer(answer)
    assert_nothing_left(service, clean)


@pytest.mark.parametrize("kind", ["raw", "multipart", "chunked"])
def test_whole_body_still_accepted(service, server, kind):
    """A body exactly as announced, over the same raw socket: 202 and the task completes."""
    data = movies_body(5000)
    if kind == "raw":
        head = request_head("/api/v1/upload?filename=whole.csv",
                            {"Content-Type": "text/csv", "Content-Length": str(len(data))})
        body = data
    elif kind == "multipart":
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"whole.csv\"\r\n"
                "Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        head = request_head("/api/v1/upload", {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                               "Content-Length": str(len(body))})
    else:
        body = chunk(data[:3000]) + chunk(data[3000:]) + b"0\r\n\r\n"
        head = request_head("/api/v1/upload?filename=whole.csv",
                            {"Content-Type": "text/csv", "Transfer-Encoding": "chunked", "Connection": "close"})
    if kind != "chunked":
        head = head[:-2] + b"Connection: close\r\n\r\n"
    cut_before = log_count(service, CUT_LOG)
    answer = send_cut(server, head, body, "shutdown")
    status, _, payload = parse_response(answer)
    assert status == 202, answer
    task = server.wait_for(json.loads(payload)["task_id"])
    assert task["status"] == "completed" and task["size"] == len(data), task
    assert task["rows_read"] == data.count(b"\n") - 1
    assert log_count(service, CUT_LOG) == cut_before
