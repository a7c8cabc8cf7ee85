"""Hostile uploads against the real server (`python run.py`, gunicorn gthread, embedded mode), over sockets.

A cut-off body (raw or multipart, Content-Length or chunked) leaves no task, no file and one log line;
client filenames are cleaned and bounded, downloads carry an RFC 6266 Content-Disposition, and no
client text can start a line of the server's log.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from urllib.parse import quote

import pytest

from tests.support.service import Service

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

PLAYS = b"Song,Date,Number of Plays\nUmbrella,2020-01-01,100\nUmbrella,2020-01-01,50\nIn The End,2020-01-02,500\n"
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


def request_head(key: str, path: str, headers: dict) -> bytes:
    """A POST's head, sending `key` as an uploader would."""
    headers = {"Authorization": f"Bearer {key}", **headers}
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
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ "
        r"WARNING app\.api\.intake \[\d+\] upload refused: ",
        line,
    ), line
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
    head = request_head(
        server.key, "/api/v1/upload?filename=cut.csv", {"Content-Type": "text/csv", "Content-Length": "1000000"}
    )
    answer = send_cut(server, head, movies_body(5000)[:5000], how)
    if how == "shutdown":
        error = assert_incomplete_answer(answer)
        assert "after 5000 of the 1000000 bytes" in error["message"]
    assert_nothing_left(service, clean)


@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_multipart_body_shorter_than_content_length(service, server, clean, how):
    boundary = uuid.uuid4().hex
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    head = request_head(
        server.key,
        "/api/v1/upload",
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": "1000000"},
    )
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
    head = request_head(
        server.key, "/api/v1/upload?filename=cut.csv", {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"}
    )
    answer = send_cut(server, head, body, how)
    if how == "shutdown":
        assert_incomplete_answer(answer)
    assert_nothing_left(service, clean)


def test_multipart_chunked_cut(service, server, clean):
    boundary = uuid.uuid4().hex
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    head = request_head(
        server.key,
        "/api/v1/upload",
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"},
    )
    answer = send_cut(server, head, chunk(start + movies_body(5000)[:5000]), "shutdown")
    assert_incomplete_answer(answer)
    assert_nothing_left(service, clean)


@pytest.mark.parametrize("kind", ["raw", "multipart", "chunked"])
def test_whole_body_still_accepted(service, server, kind):
    """A body exactly as announced, over the same raw socket: 202 and the task completes."""
    data = movies_body(5000)
    if kind == "raw":
        head = request_head(
            server.key,
            "/api/v1/upload?filename=whole.csv",
            {"Content-Type": "text/csv", "Content-Length": str(len(data))},
        )
        body = data
    elif kind == "multipart":
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="whole.csv"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = request_head(
            server.key,
            "/api/v1/upload",
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))},
        )
    else:
        body = chunk(data[:3000]) + chunk(data[3000:]) + b"0\r\n\r\n"
        head = request_head(
            server.key,
            "/api/v1/upload?filename=whole.csv",
            {"Content-Type": "text/csv", "Transfer-Encoding": "chunked", "Connection": "close"},
        )
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


# -- 2. filenames are bounded and safe ------------------------------------------------------------------

FORGED = "2026-01-01 00:00:00,000 ERROR app.forged [1] FORGED"


def multipart(filename_param: str, data: bytes = PLAYS):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; {filename_param}\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload_named(server, via: str, name: str, route: str = "/api/v1/upload"):
    if via == "query":
        return server.request("POST", f"{route}?filename={quote(name, safe='')}", PLAYS, {"Content-Type": "text/csv"})
    if via == "multipart*":  # RFC 2231/5987 form: any character, percent-encoded
        body, headers = multipart(f"filename*=UTF-8''{quote(name, safe='')}")
    else:  # a plain quoted filename, its bytes as UTF-8
        body, headers = multipart(f'filename="{name}"')
    return server.request("POST", route, body, headers)


def expected_disposition(ascii_name: str, name: str) -> str:
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


NAMES = [
    # (id, how it is sent, the name sent, the name stored, the download's ASCII fallback)
    ("crlf-query", "query", f"a\r\n{FORGED}.csv", f"a{FORGED}.csv", None),
    ("crlf-multipart", "multipart*", f"b\r\n{FORGED}.csv", f"b{FORGED}.csv", None),
    ("nul-query", "query", "nu\x00l.csv", "nul.csv", None),
    ("nul-multipart", "multipart*", "nu\x00l.csv", "nul.csv", None),
    ("nul-multipart-raw", "multipart", "nu\x00l.csv", "nul.csv", None),
    ("c1-del", "query", "c\x85\x9b\x7fone.csv", "cone.csv", None),
    ("bidi", "multipart", "invoice\u202egpj.csv", "invoicegpj.csv", None),
    ("bidi-isolates", "query", "\u2066x\u2069\u202a\u202b\u202c\u202dy\u2067\u2068.csv", "xy.csv", None),
    ("non-ascii", "multipart", "Amélie – 日本.csv", "Amélie – 日本.csv", "Amelie _ __"),
    ("non-ascii-query", "query", "Amélie – 日本.csv", "Amélie – 日本.csv", "Amelie _ __"),
    ("quote-backslash", "multipart*", 'q"u\\o.csv', 'q"u\\o.csv', "q_u_o"),
]


@pytest.mark.parametrize("via,sent,stored,fallback", [n[1:] for n in NAMES], ids=[n[0] for n in NAMES])
def test_filename_is_cleaned_stored_and_downloads(service, server, via, sent, stored, fallback):
    status, _, body = upload_named(server, via, sent)
    assert status == 202, body
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed", task
    assert task["filename"] == stored
    download = stored[:-4] + "-totals.csv"
    want = expected_disposition((fallback + "-totals.csv") if fallback else download, download)
    for path in (task["result_url"], f"/result/{body['task_id']}"):
        status, headers, data = server.request("GET", path, raw=True)
        assert status == 200, data
        assert headers["Content-Disposition"] == want
        assert data.startswith(b"Song,Date,Total Number of Plays for Date")
    assert_log_unforged(service)


def assert_log_unforged(service):
    lines = service.log().splitlines()
    assert not [ln for ln in lines if ln.startswith(FORGED[:10]) or "FORGED" in ln.split(" ", 1)[0]], lines[-20:]
    assert not [ln for ln in lines if ln.startswith("2026-01-01")]
    # the names appear escaped, as Python literals
    for ln in lines:
        assert "\x00" not in ln and "\u202e" not in ln and "\x85" not in ln


@pytest.mark.parametrize("via", ["multipart", "multipart*"])
def test_500000_character_name_is_cut_to_255_bytes(service, server, via):
    name = "n" * 499_996 + ".csv"
    status, _, body = upload_named(server, via, name)
    assert status == 202, str(body)[:500]
    task = server.wait_for(body["task_id"])
    assert task["filename"] == "n" * 251 + ".csv"
    assert len(task["filename"].encode()) == 255
    status, headers, _ = server.request("GET", task["result_url"], raw=True)
    assert status == 200
    # the download name is bounded the same way, keeping "-totals.csv"
    download = "n" * 244 + "-totals.csv"
    assert headers["Content-Disposition"] == expected_disposition(download, download)
    assert max(len(ln) for ln in service.log().splitlines()) < 2000


def test_long_multibyte_name_is_cut_on_a_character(server):
    status, _, body = upload_named(server, "multipart", "日" * 100_000 + ".csv")  # 300 KB of part header
    assert status == 202, str(body)[:500]
    task = server.wait_for(body["task_id"])
    assert task["filename"] == "日" * 83 + ".csv"  # 249 + 4 bytes: an 84th character would pass 255


def test_part_header_beyond_the_multipart_buffer_is_413(service, server):
    """500,000 three-byte characters (1.5 MB of header) do not fit the multipart reader's buffer: refused whole."""
    before = task_ids(server)
    status, _, body = upload_named(server, "multipart", "日" * 499_996 + ".csv")
    assert status == 413 and body["error"]["code"] == "request_entity_too_large", body
    assert task_ids(server) == before
    assert sorted(p.name for p in service.uploads.iterdir()) == []


def test_long_non_csv_name_is_refused_without_echoing_it(server):
    status, _, body = upload_named(server, "multipart", "x" * 500_000 + ".txt")
    assert status == 415 and body["error"]["code"] == "not_csv"
    assert len(body["error"]["message"]) < 400


def test_name_of_control_characters_only_is_empty(server):
    status, _, body = upload_named(server, "query", "\r\n\x00")
    assert status == 400 and body["error"]["code"] == "empty_filename"


@pytest.mark.parametrize("column", ["a.b", "runtime.minutes"])
def test_a_column_name_with_a_dot_is_refused_and_the_stored_movie_is_unchanged(service, server, tmp_path, column):
    """MongoDB reads a dot in a field name as a path: a movie rewritten with only the fields its file carries
    ($set) got `a: {"b": …}` beside the `a.b` its insert stored, and `runtime.minutes` was dropped silently
    (or failed the write, on MongoDB), while the task said completed."""
    stored = tmp_path / "stored.csv"
    stored.write_text("title,release_date,budget,runtime\nDotted,2002-01-01,5,90\n")
    status, _, body = server.upload(stored, "stored.csv")
    assert status == 202, body
    assert server.wait_for(body["task_id"])["status"] == "completed"
    before = task_ids(server)
    dotted = tmp_path / "dotted.csv"
    dotted.write_text(f"title,release_date,{column}\nDotted,2002-01-01,v\n")
    status, _, body = server.upload(dotted, "dotted.csv")
    assert (status, body["error"]["code"]) == (422, "bad_columns"), body
    assert column in body["error"]["message"]
    assert task_ids(server) == before
    _, _, page = server.request("GET", "/api/v1/movies?year=2002")
    (movie,) = [m for m in page["movies"] if m["title"] == "Dotted"]
    assert (movie["budget"], movie["runtime"]) == (5, 90)
    assert "a" not in movie and "a.b" not in movie and "runtime.minutes" not in movie
