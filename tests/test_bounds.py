"""Memory bounds of requests and jobs (docs/security.md, "Memory bounds"), each at its limit and one past it,
on the real server (`python run.py`, embedded mode) with small settings, sent as an attacker would.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import uuid

import pytest

from app.jobs.movies import schema
from tests.support import REPO
from tests.support.service import Service, multipart, send_until_answered

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

MOVIES = b"title,release_date\nHeat,1995-12-15\n"
FORM_FIELDS, FORM_KB = 3, 1
PLAY_GROUPS, PLAY_SONGS_MB = 4, 1
PAGE_KB = 4


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bounds")
    service = Service(
        workdir,
        MAX_FORM_FIELDS=str(FORM_FIELDS),
        MAX_FORM_KB=str(FORM_KB),
        MAX_PLAY_GROUPS=str(PLAY_GROUPS),
        MAX_PLAY_SONGS_MB=str(PLAY_SONGS_MB),
        MAX_PAGE_KB=str(PAGE_KB),
        CACHE_TTL="1",
    )
    service.server = service.start()
    service.uploads = workdir / "uploads"
    yield service
    service.stop()


@pytest.fixture
def server(service):
    return service.server


def upload_form(server, fields: list[tuple[str, bytes]], data: bytes | None = MOVIES):
    body, headers = multipart(data, "form.csv", fields)
    return server.request("POST", "/api/v1/upload", body, headers)


def assert_error(status, headers, body, want_status: int, code: str) -> dict:
    assert (status, body["error"]["code"]) == (want_status, code), body
    assert headers["Content-Type"] == "application/json"
    return body["error"]


@pytest.fixture
def nothing_stored(service):
    """A refused upload leaves no new file and no new task."""
    files, tasks = set(service.uploads.iterdir()), task_count(service.server)
    yield
    assert set(service.uploads.iterdir()) <= files and task_count(service.server) == tasks


def task_count(server) -> int:
    return server.request("GET", "/api/v1/processes?limit=1")[2]["total_docs"]


# -- form fields: MAX_FORM_FIELDS and MAX_FORM_KB ----------------------------------------------------------


def test_max_form_fields_fields_and_the_file_are_accepted(server):
    fields = [("kind", b"movies"), ("note", b"x"), ("other", b"y")]
    status, _, body = upload_form(server, fields)
    assert status == 202 and body["kind"] == "movies", body


def test_one_field_more_is_413_too_many_fields(server, nothing_stored):
    fields = [("kind", b"movies"), ("note", b"x"), ("other", b"y"), ("fourth", b"z")]
    error = assert_error(*upload_form(server, fields), 413, "too_many_fields")
    assert error["limit"] == FORM_FIELDS and "MAX_FORM_FIELDS = 3" in error["message"]


def test_a_file_part_under_another_name_counts_as_a_field(server, nothing_stored):
    body, headers = multipart(MOVIES, "form.csv", [("a", b"1"), ("b", b"2"), ("c", b"3")])
    boundary = headers["Content-Type"].split("boundary=")[1]
    other = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="other"; filename="x.csv"\r\n\r\nignored\r\n'
    ).encode()
    status, _, answer = server.request("POST", "/api/v1/upload", other + body, headers)
    assert (status, answer["error"]["code"]) == (413, "too_many_fields"), answer


def with_unnamed_parts(dispositions: list[str]) -> tuple[bytes, dict]:
    """A form of the file after parts whose Content-Disposition has no `name`, as no browser sends them."""
    body, headers = multipart(MOVIES, "form.csv")
    boundary = headers["Content-Type"].split("boundary=")[1]
    parts = "".join(f"--{boundary}\r\nContent-Disposition: {d}\r\n\r\nx\r\n" for d in dispositions)
    return parts.encode() + body, headers


@pytest.mark.parametrize("disposition", ["form-data", 'form-data; filename="x.csv"'], ids=["field", "file"])
def test_parts_with_no_name_count_as_fields(server, disposition):
    """They were a 500 (the form's count read the name of a part that has none)."""
    status, _, answer = server.request("POST", "/api/v1/upload", *with_unnamed_parts([disposition] * FORM_FIELDS))
    assert status == 202, answer
    status, _, answer = server.request("POST", "/api/v1/upload", *with_unnamed_parts([disposition] * (FORM_FIELDS + 1)))
    assert (status, answer["error"]["code"]) == (413, "too_many_fields"), answer


def test_fields_of_exactly_max_form_kb_are_accepted(server):
    value = b"v" * (FORM_KB * 1024 - len("kind") - len("movies") - len("n"))  # names and values count
    status, _, body = upload_form(server, [("kind", b"movies"), ("n", value)])
    assert status == 202, body


def test_one_byte_past_max_form_kb_is_413_form_too_large(server, nothing_stored):
    value = b"v" * (FORM_KB * 1024 - len("kind") - len("movies") - len("n") + 1)
    error = assert_error(*upload_form(server, [("kind", b"movies"), ("n", value)]), 413, "form_too_large")
    assert error["limit_kb"] == FORM_KB and "MAX_FORM_KB = 1 KiB" in error["message"]


def test_the_attack_of_issue_23_is_refused_early_twice_at_once(server, nothing_stored):
    """3,200 fields of 64 KiB and no file, two at once: refused after the first field, not after 200 MB."""
    boundary = uuid.uuid4().hex
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n'.encode() + b"a" * 65536 + b"\r\n"
    results = []

    def attack():
        results.append(send_until_answered(server.port, server.key, 3200, part, boundary))

    threads = [threading.Thread(target=attack) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2
    for sent, answer in results:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer[:500]
        assert json.loads(body)["error"]["code"] == "form_too_large"
        assert sent < 3200 * len(part) // 10, sent  # the rest of the 200 MB was never read
    status, _, body = server.request("GET", "/api/v1/ping")
    assert status == 200


# -- the plays aggregation: MAX_PLAY_GROUPS and MAX_PLAY_SONGS_MB -------------------------------------------


def plays_file(pairs: list[tuple[str, str]]) -> bytes:
    return b"Song,Date,Number of Plays\n" + b"".join(f"{song},{day},1\n".encode() for song, day in pairs)


def run_plays(server, tmp_path, data: bytes) -> dict:
    path = tmp_path / "plays.csv"
    path.write_bytes(data)
    status, _, body = server.upload(path, "plays.csv")
    assert status == 202 and body["kind"] == "plays", body
    return server.wait_for(body["task_id"])


def assert_worker_goes_on(server, tmp_path):
    task = run_plays(server, tmp_path, plays_file([("After", "2020-01-01")] * 3))
    assert task["status"] == "completed" and task["groups"] == 1, task


def test_max_play_groups_pairs_are_totalled(server, tmp_path):
    pairs = [(song, day) for song in ("A", "B") for day in ("2020-01-01", "2020-01-02")]
    task = run_plays(server, tmp_path, plays_file(pairs * 2))
    assert task["status"] == "completed" and task["groups"] == PLAY_GROUPS, task
    status, _, result = server.request("GET", task["result_url"], raw=True)
    assert status == 200 and result.count(b",2\n") == PLAY_GROUPS


@pytest.mark.parametrize("shape", ["one song, five days", "five songs"])
def test_one_pair_more_fails_the_task_with_the_reason(server, tmp_path, shape):
    if shape == "five songs":  # refused as the songs are numbered
        pairs = [(f"Song {n}", "2020-01-01") for n in range(PLAY_GROUPS + 1)]
    else:  # refused as the pairs are merged
        pairs = [("A", f"2020-01-0{n}") for n in range(1, PLAY_GROUPS + 2)]
    task = run_plays(server, tmp_path, plays_file(pairs))
    assert task["status"] == "failed", task
    assert task["error"].startswith(
        f"the file has more than MAX_PLAY_GROUPS = {PLAY_GROUPS} distinct (song, date) pairs"
    ), task
    assert "result_url" not in task
    assert_worker_goes_on(server, tmp_path)


def test_song_names_of_max_play_songs_mb_are_totalled(server, tmp_path):
    half = (PLAY_SONGS_MB << 20) // 2
    task = run_plays(server, tmp_path, plays_file([("a" * half, "2020-01-01"), ("b" * half, "2020-01-01")]))
    assert task["status"] == "completed" and task["groups"] == 2, task


def test_one_byte_of_song_names_more_fails_the_task(server, tmp_path):
    half = (PLAY_SONGS_MB << 20) // 2
    task = run_plays(server, tmp_path, plays_file([("a" * half, "2020-01-01"), ("b" * (half + 1), "2020-01-01")]))
    assert task["status"] == "failed", task
    assert task["error"].startswith("the file's distinct song names hold more than MAX_PLAY_SONGS_MB = 1 MiB"), task
    assert_worker_goes_on(server, tmp_path)


# -- a movie's text fields: a maximum each (docs/cleaning.md) --------------------------------------------------


def movies_csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def run_movies(server, tmp_path, data: bytes) -> dict:
    path = tmp_path / "movies.csv"
    path.write_bytes(data)
    status, _, body = server.upload(path, "movies.csv")
    assert status == 202 and body["kind"] == "movies", body
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed", task
    return task


def stored_titles(server, year: int) -> list[str]:
    """Every movie of `year` by title, following `next_offset` where a page was cut short (MAX_PAGE_KB)."""
    titles, query = [], f"/api/v1/movies?year={year}&sort_by=title&limit=100"
    status, _, body = server.request("GET", query)
    while True:
        assert status == 200, body
        titles += [movie["title"] for movie in body["movies"]]
        if not body.get("truncated"):
            return titles
        status, _, body = server.request("GET", f"{query}&offset={body['next_offset']}")


def test_text_fields_at_their_maximum_are_stored_and_one_byte_more_is_rejected_with_its_line(server, tmp_path):
    title_max, overview_max, other_max = (
        schema.TEXT_MAX_BYTES["title"],
        schema.TEXT_MAX_BYTES["overview"],
        schema.OTHER_MAX_BYTES,
    )
    assert (title_max, overview_max, other_max) == (1024, 262144, 4096)  # as docs/cleaning.md says
    title = "é" * (title_max // 2)  # 1024 bytes of UTF-8, 512 characters
    rows = [
        [title, "1931-01-01", "o" * overview_max, "e" * other_max],  # line 2: every field at its maximum
        [title + "x", "1931-01-01", "short", ""],  # line 3: a title one byte over
        ["Long overview", "1931-01-01", "o" * (overview_max + 1), ""],  # line 4
        ["Long extra", "1931-01-01", "short", "e" * (other_max + 1)],  # line 5: a column outside the contract
        ["  " + "t" * title_max + "  ", "1931-01-01", "", ""],  # line 6: trimmed, the title is at its maximum
        ["Fine", "1931-01-01", "short", "fine"],  # line 7
    ]
    task = run_movies(server, tmp_path, movies_csv(["title", "release_date", "overview", "my_notes"], rows))
    assert task["rejects"] == [
        {"line": 3, "reason": "title is 1025 bytes, more than its maximum of 1024 (docs/cleaning.md)"},
        {"line": 4, "reason": "overview is 262145 bytes, more than its maximum of 262144 (docs/cleaning.md)"},
        {"line": 5, "reason": "my_notes is 4097 bytes, more than its maximum of 4096 (docs/cleaning.md)"},
    ]
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (6, 3, 3)
    assert stored_titles(server, 1931) == ["Fine", "t" * title_max, title]
    status, _, body = server.request("GET", "/api/v1/movies?year=1931&sort_by=title&order=-1&limit=1")
    assert body["movies"][0]["overview"] == "o" * overview_max and body["movies"][0]["my_notes"] == "e" * other_max


def test_a_long_column_name_is_cut_in_the_reason(server, tmp_path):
    name = "n" * 300
    task = run_movies(server, tmp_path, movies_csv(["title", "release_date", name], [["X", "1932-01-01", "v" * 5000]]))
    assert task["rejects"] == [
        {"line": 2, "reason": f"{'n' * 64}… is 5000 bytes, more than its maximum of 4096 (docs/cleaning.md)"}
    ]


def test_docs_state_each_fields_maximum():
    text = (REPO / "docs" / "cleaning.md").read_text(encoding="utf-8")
    table = {name: int(size) for name, size in re.findall(r"^\| `([a-z_]+)` \| ([0-9]+) \|", text, re.M)}
    assert table == schema.TEXT_MAX_BYTES
    assert f"| any other column | {schema.OTHER_MAX_BYTES} |" in text


# -- a page of movies: MAX_PAGE_KB --------------------------------------------------------------------------


def page_bytes(server, query: str) -> tuple[bytes, dict]:
    """The raw body of a page (asked after the cache's 1 s has passed) and its JSON."""
    time.sleep(1.1)
    status, headers, raw = server.request("GET", f"/api/v1/movies?{query}", raw=True)
    assert status == 200 and headers["X-Cache"] == "miss", raw[:300]
    return raw, json.loads(raw)


def movie_json(server, year: int, offset: int) -> bytes:
    """Movie `offset` of `year`, by title, as the server writes it in a page."""
    raw, _ = page_bytes(server, f"year={year}&sort_by=title&limit=1&offset={offset}")
    return raw.split(b'"movies":[', 1)[1].rsplit(b'],"offset":', 1)[0]


def three_movies(server, tmp_path, year: int, last_overview: int) -> list[int]:
    rows = [[title, f"{year}-05-25", "x" * (1000 if title != "C" else last_overview)] for title in "ABC"]
    run_movies(server, tmp_path, movies_csv(["title", "release_date", "overview"], rows))
    return [len(movie_json(server, year, n)) for n in range(3)]


def test_a_page_of_exactly_max_page_kb_is_whole_and_one_byte_more_is_cut_with_where_to_go_on(server, tmp_path):
    sizes = three_movies(server, tmp_path, 1977, 1000)
    fit = 1000 + PAGE_KB * 1024 - (sum(sizes) + 2)  # C's overview for movies + 2 commas = MAX_PAGE_KB exactly
    assert sum(three_movies(server, tmp_path, 1977, fit)) + 2 == PAGE_KB * 1024
    raw, page = page_bytes(server, "year=1977&sort_by=title&limit=3")
    assert [m["title"] for m in page["movies"]] == ["A", "B", "C"]
    assert set(page) == {"limit", "movies", "page", "total_docs", "total_pages"}
    assert len(raw) < PAGE_KB * 1024 + 200  # the page's own fields aside

    three_movies(server, tmp_path, 1977, fit + 1)
    _, page = page_bytes(server, "year=1977&sort_by=title&limit=3")
    assert [m["title"] for m in page["movies"]] == ["A", "B"]
    assert (page["truncated"], page["next_offset"], page["total_docs"], page["page"]) == (True, 2, 3, 1)
    _, rest = page_bytes(server, f"year=1977&sort_by=title&limit=3&offset={page['next_offset']}")
    assert [m["title"] for m in rest["movies"]] == ["C"] and len(rest["movies"][0]["overview"]) == fit + 1
    assert "truncated" not in rest and rest["offset"] == 2


def test_a_movie_alone_past_the_bound_is_sent_alone(server, tmp_path):
    extras = [f"c{n}" for n in range(3)]
    run_movies(
        server,
        tmp_path,
        movies_csv(
            ["title", "release_date", *extras],
            [["Wide", "1978-01-01", *["w" * 4000] * 3], ["Next", "1978-01-02", "", "", ""]],
        ),
    )
    _, page = page_bytes(server, "year=1978&limit=2")
    assert [m["title"] for m in page["movies"]] == ["Wide"] and page["next_offset"] == 1


def test_page_and_offset_together_are_refused(server):
    status, _, body = server.request("GET", "/api/v1/movies?page=2&offset=10")
    assert (status, body["error"]["code"], body["error"]["parameter"]) == (400, "invalid_parameter", "offset")


# -- any other request body: BODY_LIMIT (app/__init__.py) ---------------------------------------------------


def key_request(size: int) -> bytes:
    """A valid key-creation body of exactly `size` bytes (JSON padded with spaces)."""
    body = json.dumps({"name": f"padded {size}", "role": "reader"}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_json_body_of_body_limit_is_read_and_one_byte_more_is_413(server, chunked):
    from app import BODY_LIMIT

    def post(body: bytes):
        headers = {"Content-Type": "application/json"}
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        return server.request("POST", "/api/v1/keys", body, headers)

    status, _, body = post(key_request(BODY_LIMIT))
    assert status == 201 and body["key"]["name"] == f"padded {BODY_LIMIT}", body
    status, headers, body = post(key_request(BODY_LIMIT + 1))
    assert (status, body["error"]["code"]) == (413, "request_entity_too_large"), body
    assert headers["Content-Type"] == "application/json"
