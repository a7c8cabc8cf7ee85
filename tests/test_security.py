"""Security of what the service sends: result CSVs that cannot attack a spreadsheet (OWASP CSV injection),
and the headers every answer carries (nosniff, Referrer-Policy, Cache-Control), on the real server."""

from __future__ import annotations

import io
import json
import re
import socket
from datetime import date

import pyarrow as pa
import pytest

from app.config import ConfigError, load_config
from app.jobs.plays.aggregate import Totals, _csv_lines, _formula_led, write_result
from app.worker.loop import Worker
from tests.conftest import REPO, SAMPLE_MOVIES
from tests.support.service import Service

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

HOSTILE = (
    b"Song,Date,Number of Plays\n"
    b"=cmd|' /C calc'!A0,2020-01-01,1\n"
    b"@SUM(1+1),2020-01-01,2\n"
    b"+1+1,2020-01-01,3\n"
    b"-2+3,2020-01-01,4\n"
    b'"=HYPERLINK(""http://x"",""y"")",2020-01-01,5\n'
    b"\tTab led,2020-01-01,6\n"
    b'"\rCR led",2020-01-01,7\n'
    b"Plain,2020-01-01,8\n"
)
STATIC = REPO / "app" / "static"
# Sorted by code point. Songs are trimmed when read, so the tab- and CR-led ones arrive without them
# (the writer's own guard for those is tested below, on songs that bypass the reader).
HOSTILE_GUARDED = (
    b"Song,Date,Total Number of Plays for Date\n"
    b"'+1+1,2020-01-01,3\n"
    b"'-2+3,2020-01-01,4\n"
    b'"\'=HYPERLINK(""http://x"",""y"")",2020-01-01,5\n'
    b"'=cmd|' /C calc'!A0,2020-01-01,1\n"
    b"'@SUM(1+1),2020-01-01,2\n"
    b"CR led,2020-01-01,7\n"
    b"Plain,2020-01-01,8\n"
    b"Tab led,2020-01-01,6\n"
)
HOSTILE_RAW = (
    b"Song,Date,Total Number of Plays for Date\n"
    b"+1+1,2020-01-01,3\n"
    b"-2+3,2020-01-01,4\n"
    b'"=HYPERLINK(""http://x"",""y"")",2020-01-01,5\n'
    b"=cmd|' /C calc'!A0,2020-01-01,1\n"
    b"@SUM(1+1),2020-01-01,2\n"
    b"CR led,2020-01-01,7\n"
    b"Plain,2020-01-01,8\n"
    b"Tab led,2020-01-01,6\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("security"))
    yield service.start()
    service.stop()


@pytest.fixture(scope="module")
def hostile_task(server, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.csv"
    path.write_bytes(HOSTILE)
    status, headers, body = server.upload(path, "hostile.csv")
    assert status == 202, body
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed" and task["groups"] == 8, task
    return {"id": body["task_id"], "upload_headers": headers, "task": task}


# -- CSV injection ----------------------------------------------------------------------------------------


def test_a_downloaded_result_has_every_formula_neutralised(server, hostile_task):
    status, headers, data = server.request("GET", hostile_task["task"]["result_url"], raw=True)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert data == HOSTILE_GUARDED


def test_the_first_systems_result_route_serves_the_same_guarded_file(server, hostile_task):
    status, _, data = server.request("GET", f"/result/{hostile_task['id']}", raw=True)
    assert status == 200 and data == HOSTILE_GUARDED


def test_with_the_guard_off_the_raw_values_come_back(client, config, db):
    response = client.post(
        "/api/v1/upload", data={"file": (io.BytesIO(HOSTILE), "hostile.csv")}, content_type="multipart/form-data"
    )
    task_id = response.get_json()["task_id"]
    assert Worker(config.with_overrides(CSV_FORMULA_GUARD=False), store=db, name="unguarded").work(task_id)
    assert client.get(f"/api/v1/process/{task_id}/result").get_data() == HOSTILE_RAW


def test_tab_and_cr_led_songs_are_neutralised_and_quoting_is_kept(tmp_path):
    """Songs straight into the totals (the reader would trim these): the writer guards them all the same."""
    songs = ["\tTab", "\rCR", "\r\n", "=1,2", '@"q"', "-", "a=b", "'already", "Plain", "x\ty"]
    totals = Totals()
    totals.add(
        pa.array(songs), pa.array([date(2020, 1, 1)] * len(songs), pa.date32()), pa.array(range(len(songs)), pa.int64())
    )
    path = tmp_path / "out.csv"
    size = write_result(totals, str(path))
    assert path.read_bytes() == (
        b"Song,Date,Total Number of Plays for Date\n"
        b"'\tTab,2020-01-01,0\n"
        b'"\'\r\n",2020-01-01,2\n'
        b'"\'\rCR",2020-01-01,1\n'
        b"'already,2020-01-01,7\n"
        b"'-,2020-01-01,5\n"
        b'"\'=1,2",2020-01-01,3\n'
        b'"\'@""q""",2020-01-01,4\n'
        b"Plain,2020-01-01,8\n"
        b"a=b,2020-01-01,6\n"
        b"x\ty,2020-01-01,9\n"
    )
    assert size == path.stat().st_size
    write_result(totals, str(path), formula_guard=False)
    assert path.read_bytes() == (
        b"Song,Date,Total Number of Plays for Date\n"
        b"\tTab,2020-01-01,0\n"
        b'"\r\n",2020-01-01,2\n'
        b'"\rCR",2020-01-01,1\n'
        b"'already,2020-01-01,7\n"
        b"-,2020-01-01,5\n"
        b'"=1,2",2020-01-01,3\n'
        b'"@""q""",2020-01-01,4\n'
        b"Plain,2020-01-01,8\n"
        b"a=b,2020-01-01,6\n"
        b"x\ty,2020-01-01,9\n"
    )


def test_formula_detection_reads_any_string_array():
    songs = ["=a", "b", "", "+c", "@", "-d", "\te", "\rf", "g=", "ü=", "=ü"]
    expected = [True, False, False, True, True, True, True, True, False, False, True]
    assert _formula_led(pa.array(songs)).tolist() == expected
    assert _formula_led(pa.array(songs, pa.large_string())).tolist() == expected  # the regex way
    assert _formula_led(pa.array(songs).slice(3, 4)).tolist() == expected[3:7]  # an offset into the buffers
    assert _formula_led(pa.array(["", ""])).tolist() == [False, False]  # no data buffer at all
    assert _formula_led(pa.array([], pa.string())).tolist() == []
    assert _formula_led(pa.array(["x", ""])).tolist() == [False, False]  # an empty last string


def test_a_clean_file_is_written_exactly_as_before():
    table = pa.table(
        {
            "song": pa.array(["In The End", 'Say "hi", ok']),
            "day": pa.array([date(2020, 1, 1)] * 2, pa.date32()),
            "plays": pa.array([1, 2], pa.int64()),
        }
    )
    expected = b'In The End,2020-01-01,1\n"Say ""hi"", ok",2020-01-01,2\n'
    assert bytes(_csv_lines(table)) == bytes(_csv_lines(table, formula_guard=False)) == expected


def test_the_guard_setting():
    assert load_config({}).CSV_FORMULA_GUARD is True
    assert load_config({"CSV_FORMULA_GUARD": "false"}).CSV_FORMULA_GUARD is False
    with pytest.raises(ConfigError, match=r"^CSV_FORMULA_GUARD\b"):
        load_config({"CSV_FORMULA_GUARD": "sometimes"})


# -- response headers -------------------------------------------------------------------------------------


def assert_secured(headers, cache_control="no-store"):
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == cache_control


def test_an_upload_202_is_not_stored(hostile_task):
    assert_secured(hostile_task["upload_headers"])


def test_a_task_status_and_its_result_are_not_stored(server, hostile_task):
    status, headers, _ = server.request("GET", f"/api/v1/process/{hostile_task['id']}")
    assert status == 200
    assert_secured(headers)
    status, headers, _ = server.request("GET", "/api/v1/processes?limit=1")
    assert status == 200
    assert_secured(headers)
    status, headers, _ = server.request("GET", hostile_task["task"]["result_url"], raw=True)
    assert status == 200
    assert_secured(headers)
    status, headers, data = server.request("GET", f"/api/v1/process/{hostile_task['id']}/events", raw=True)
    assert status == 200 and b"event: end" in data
    assert_secured(headers)


def test_a_movies_page_is_not_stored(server):
    for _ in range(2):  # a miss, then the same bytes from the cache
        status, headers, body = server.request("GET", "/api/v1/movies?limit=1")
        assert status == 200 and "movies" in body
        assert_secured(headers)
    assert headers["X-Cache"] == "hit"


def test_errors_are_not_stored(server):
    status, headers, body = server.request("GET", "/api/v1/no-such-route")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert_secured(headers)
    status, headers, body = server.request("DELETE", "/api/v1/movies")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and "GET" in headers["Allow"]
    assert_secured(headers)
    status, headers, body = server.request("GET", "/api/v1/process/nope")
    assert status == 404
    assert_secured(headers)
    status, headers, _ = server.request("GET", "/static/no-such-file.js", raw=True)
    assert status == 404
    assert_secured(headers)


def test_the_page_is_not_stored_and_keeps_its_csp(server):
    status, headers, data = server.request("GET", "/", raw=True)
    assert status == 200 and b"<html" in data.lower()
    assert_secured(headers)
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_static_files_may_be_cached_and_revalidated(server):
    status, headers, data = server.request("GET", "/static/main.js", raw=True)
    assert status == 200 and data
    assert_secured(headers, cache_control="no-cache")  # kept, and checked again with its ETag
    status, again, data = server.request("GET", "/static/main.js", headers={"If-None-Match": headers["ETag"]}, raw=True)
    assert status == 304 and data == b""
    assert_secured(again, cache_control="no-cache")


def test_the_page_loads_its_script_as_modules_each_served_as_javascript(server):
    """A module script runs only if it is served as JavaScript (with nosniff, no other type is tried), from an
    origin the CSP allows: main.js and every module it imports, followed as the browser does, and no file
    in app/static that neither the page nor /docs loads."""
    status, headers, page = server.request("GET", "/", raw=True)
    assert re.findall(rb"<script\b[^>]*>", page) == [b'<script type="module" src="/static/main.js">']
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy.get("script-src", policy["default-src"]) == "'self'"  # no inline script, no other origin
    loaded, waiting = set(), ["main.js"]
    status, _, docs = server.request("GET", "/docs", raw=True)  # the API docs page starts Swagger UI from its own file
    waiting += re.findall(r'src="/static/([\w-]+\.js)"', docs.decode())
    while waiting:
        name = waiting.pop()
        if name in loaded:
            continue
        loaded.add(name)
        status, headers, data = server.request("GET", f"/static/{name}", raw=True)
        assert status == 200, name
        assert headers["Content-Type"] == "text/javascript; charset=utf-8", name
        assert_secured(headers, cache_control="no-cache")
        waiting += re.findall(r"""\bfrom '\./([\w-]+\.js)';""", data.decode())
    assert loaded == {path.name for path in STATIC.glob("*.js")}


def raw_exchange(server, data: bytes) -> tuple[int, dict, bytes]:
    """Send bytes no HTTP client would, read the answer to the end (the server closes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes,status,code",
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /api/v1/ping HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /api/v1/ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (
            b"POST /api/v1/upload?filename=m.csv HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\ntitle\r\n0\r\n\r\n",
            400,
            "bad_chunked_body",
        ),
    ],
    ids=["request line", "http version", "long uri", "big header", "bad chunk"],
)
def test_requests_gunicorn_cannot_parse_get_json_errors(server, request_bytes, status, code):
    got, headers, body = raw_exchange(server, request_bytes.replace(b"{key}", server.key.encode()))
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert_secured(headers)
    error = json.loads(body)["error"]
    assert error["code"] == code and 0 < len(error["message"]) <= 200


# -- upload limits: header size and width, disk space (on the real server) -----------------------------------

HEAD_LIMIT = 64 * 1024  # app.api.intake.HEAD_LIMIT: bytes of the header line, its line ending not counted


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server of its own, default limits (MAX_COLUMNS=500), so that its upload folder can be watched."""
    workdir = tmp_path_factory.mktemp("limits")
    service = Service(workdir, WORKERS="0")  # tasks stay pending: their files stay put, countable
    server = service.start()
    yield server, workdir / "uploads"
    service.stop()


def post_raw(server, data: bytes, chunked: bool = False):
    headers = {"Content-Type": "text/csv"}
    if chunked:  # no Content-Length: the body comes in chunks of unknown total
        headers["Transfer-Encoding"] = "chunked"
        data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
    return server.request("POST", "/api/v1/upload?filename=limits.csv", data, headers)


def task_count(server) -> int:
    return server.request("GET", "/api/v1/processes?limit=1")[2]["total_docs"]


def assert_refused(server, uploads, data, status, code, **expected):
    """The request is refused with the project's error shape, and leaves neither a file nor a task."""
    files, tasks = sorted(p.name for p in uploads.iterdir()), task_count(server)
    got, headers, body = post_raw(server, data, chunked=expected.pop("chunked", False))
    assert (got, body["error"]["code"]) == (status, code), body
    assert headers["Content-Type"] == "application/json"
    assert set(body) == {"error"} and body["error"]["message"]
    for key, value in expected.items():
        assert body["error"][key] == value, body
    assert sorted(p.name for p in uploads.iterdir()) == files and task_count(server) == tasks
    return body["error"]


def header_of(columns: int) -> bytes:
    return ",".join(["title"] + [f"c{n}" for n in range(1, columns)]).encode()


def test_a_header_of_max_columns_is_accepted(limited):
    server, _ = limited
    status, _, body = post_raw(server, header_of(500) + b"\nToy Story" + b",1" * 499 + b"\n")
    assert status == 202 and body["kind"] == "movies", body


def test_a_header_of_one_column_more_is_refused(limited):
    server, uploads = limited
    error = assert_refused(
        server, uploads, header_of(501) + b"\nToy Story" + b",1" * 500 + b"\n", 422, "too_many_columns", limit=500
    )
    assert "MAX_COLUMNS" in error["message"] and "501" in error["message"]


def long_header(size: int) -> bytes:
    """A movies header line of exactly `size` bytes: title and one very long column name."""
    return b"title," + b"x" * (size - len(b"title,"))


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_header_of_exactly_head_limit_bytes_is_accepted(limited, newline):
    server, _ = limited
    head = long_header(HEAD_LIMIT)
    assert len(head) == HEAD_LIMIT
    status, _, body = post_raw(server, head + newline + b"Toy Story,1" + newline)
    assert status == 202, body


@pytest.mark.parametrize("rows", [b"\nToy Story,1\n", b""])  # the line ended, or still going when refused
def test_a_header_one_byte_over_head_limit_is_refused(limited, rows):
    """Before, the check only ran while no line end had been read: a long header inside one read passed."""
    server, uploads = limited
    error = assert_refused(server, uploads, long_header(HEAD_LIMIT + 1) + rows, 422, "bad_header", limit=HEAD_LIMIT)
    assert str(HEAD_LIMIT) in error["message"]


def test_a_header_of_four_times_head_limit_is_refused(limited):
    server, uploads = limited
    assert_refused(server, uploads, long_header(4 * HEAD_LIMIT) + b"\nToy Story,1\n", 422, "bad_header")


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A server whose MIN_FREE_MB is above the free space of its upload folder's filesystem: a disk "full"."""
    import shutil

    workdir = tmp_path_factory.mktemp("full-disk")
    free_mb = shutil.disk_usage(workdir).free >> 20
    floor = free_mb + 10_000
    if floor > 1 << 20:
        pytest.skip(f"{free_mb} MB free: above MIN_FREE_MB's upper bound")
    service = Service(workdir, MIN_FREE_MB=str(floor))
    server = service.start()
    (workdir / "uploads").mkdir(exist_ok=True)
    yield server, workdir / "uploads", free_mb
    service.stop()


def test_health_reports_a_low_disk_as_degraded_with_the_free_mb(full_disk):
    server, _, free_mb = full_disk
    status, _, body = server.request("GET", "/api/v1/health")
    assert status == 200
    assert body["status"] == "degraded" and body["disk"] == "low", body
    assert body["mongo"] == body["redis"] == body["worker"] == "ok"
    assert abs(body["disk_free_mb"] - free_mb) < 1000, (body, free_mb)


def test_health_reports_the_disk_ok_on_a_server_with_room(limited):
    server, _ = limited
    body = server.request("GET", "/api/v1/health")[2]
    assert body["disk"] == "ok" and isinstance(body["disk_free_mb"], int) and body["disk_free_mb"] > 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_that_would_leave_less_than_min_free_mb_gets_507(full_disk, chunked):
    server, uploads, _ = full_disk
    error = assert_refused(server, uploads, SAMPLE_MOVIES.read_bytes(), 507, "insufficient_storage", chunked=chunked)
    assert "MIN_FREE_MB" in error["message"]


def test_a_multipart_upload_on_a_full_disk_gets_507(full_disk, tmp_path):
    server, uploads, _ = full_disk
    path = tmp_path / "movies.csv"
    path.write_bytes(SAMPLE_MOVIES.read_bytes())
    status, _, body = server.upload(path, "movies.csv")
    assert status == 507 and body["error"]["code"] == "insufficient_storage", body
    assert list(uploads.iterdir()) == [] and task_count(server) == 0
