"""POST /api/v1/upload: storing the file, recording the task, waking a worker, and refusing bad input cleanly."""

from __future__ import annotations

import io
import uuid

import pytest
from pymongo.errors import ServerSelectionTimeoutError
from werkzeug.datastructures import FileStorage
from werkzeug.test import EnvironBuilder, encode_multipart
from werkzeug.wrappers import Request

from app import create_app
from tests.conftest import SAMPLE_MOVIES
from tests.support.auth import signed_in

UPLOAD = "/api/v1/upload"
MESSAGE = "File uploaded successfully and queued for processing"
CONTRACT = (
    "budget",
    "homepage",
    "original_language",
    "original_title",
    "overview",
    "release_date",
    "revenue",
    "runtime",
    "status",
    "title",
    "vote_average",
    "vote_count",
    "production_company_id",
    "genre_id",
    "languages",
)


def post_file(client, data: bytes, filename: str = "movies.csv", field: str = "file"):
    return client.post(UPLOAD, data={field: (io.BytesIO(data), filename)}, content_type="multipart/form-data")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def assert_nothing_left(upload_dir, db, producer):
    assert sorted(p.name for p in upload_dir.iterdir()) == []
    assert db.processes.count_documents({}) == 0
    assert producer.sent == []


# -- the happy path -------------------------------------------------------------------------------------


def test_multipart_upload_stores_file_records_task_and_queues_it(client, db, producer, worker, upload_dir, monkeypatch):
    sample = SAMPLE_MOVIES.read_bytes()
    record_existed_at_send = []
    real_send = producer.send

    def send(task_id, kind):
        record_existed_at_send.append(db.processes.find_one({"task_id": task_id}) is not None)
        return real_send(task_id, kind)

    monkeypatch.setattr(producer, "send", send)

    with open(SAMPLE_MOVIES, "rb") as f:
        response = client.post(UPLOAD, data={"file": (f, "movies.csv")}, content_type="multipart/form-data")

    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"message", "task_id", "kind"} and body["kind"] == "movies"
    assert body["message"] == MESSAGE
    task_id = body["task_id"]
    assert uuid.UUID(task_id).version == 4
    assert str(uuid.UUID(task_id)) == task_id

    record = db.processes.find_one({"task_id": task_id})
    assert record is not None
    assert record["status"] == "pending"
    assert record["filename"] == "movies.csv"
    assert record["size"] == len(sample)
    assert db.processes.count_documents({}) == 1

    assert producer.sent == [(task_id, "movies")]
    assert record_existed_at_send == [True]

    stored = list(upload_dir.iterdir())
    assert len(stored) == 1
    assert stored[0].name != "movies.csv"
    assert stored[0].read_bytes() == sample
    assert record["path"].endswith(stored[0].name)

    assert worker.work() is True
    done = db.processes.find_one({"task_id": task_id})
    assert done["status"] == "completed"
    assert done["rows_inserted"] == 10
    assert done["rows_rejected"] == 0
    assert db.movies.count_documents({}) == 10
    assert list(upload_dir.iterdir()) == []  # the worker removes the file it has loaded


def test_raw_text_csv_body_is_accepted(client, db, producer, worker, upload_dir):
    sample = SAMPLE_MOVIES.read_bytes()
    response = client.post(f"{UPLOAD}?filename=m.csv", data=sample, content_type="text/csv")

    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    assert response.get_json() == {"message": MESSAGE, "task_id": task_id, "kind": "movies"}
    record = db.processes.find_one({"task_id": task_id})
    assert (record["status"], record["filename"], record["size"]) == ("pending", "m.csv", len(sample))
    assert producer.sent == [(task_id, "movies")]
    [stored] = list(upload_dir.iterdir())
    assert stored.read_bytes() == sample and stored.name != "m.csv"

    assert worker.work() is True
    assert db.processes.find_one({"task_id": task_id})["rows_inserted"] == 10


def test_title_only_file_is_accepted_and_other_columns_are_null(client, db, worker):
    response = post_file(client, b"title\nLonely Movie\n")
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]

    assert worker.work() is True
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed"
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (1, 1, 0)

    [movie] = list(db.movies.find())
    assert movie["title"] == "Lonely Movie"
    for name in CONTRACT:
        if name != "title":
            assert movie[name] is None, name
    assert movie["year"] is None


# -- bad input: refused with a specific code, and nothing left behind -----------------------------------


def test_no_file_part(client, db, producer, upload_dir):
    response = client.post(UPLOAD, data={"other": "value"}, content_type="multipart/form-data")
    assert_error(response, 400, "missing_file")
    assert_nothing_left(upload_dir, db, producer)


def test_file_under_another_part_name(client, db, producer, upload_dir):
    response = post_file(client, SAMPLE_MOVIES.read_bytes(), field="upload")
    assert_error(response, 400, "missing_file")
    assert_nothing_left(upload_dir, db, producer)


def test_empty_filename(client, db, producer, upload_dir):
    response = post_file(client, b"", filename="")
    assert_error(response, 400, "empty_filename")
    assert_nothing_left(upload_dir, db, producer)


def test_not_a_csv_name(client, db, producer, upload_dir):
    response = post_file(client, SAMPLE_MOVIES.read_bytes(), filename="movies.txt")
    assert_error(response, 415, "not_csv")
    assert_nothing_left(upload_dir, db, producer)


def test_raw_body_with_non_csv_name(client, db, producer, upload_dir):
    response = client.post(f"{UPLOAD}?filename=m.txt", data=SAMPLE_MOVIES.read_bytes(), content_type="text/csv")
    assert_error(response, 415, "not_csv")
    assert_nothing_left(upload_dir, db, producer)


def test_json_body(client, db, producer, upload_dir):
    response = client.post(UPLOAD, data=b'{"title": "x"}', content_type="application/json")
    assert_error(response, 415, "unsupported_media_type")
    assert_nothing_left(upload_dir, db, producer)


def test_empty_file(client, db, producer, upload_dir):
    response = post_file(client, b"")
    assert_error(response, 422, "empty_file")
    assert_nothing_left(upload_dir, db, producer)


@pytest.mark.parametrize("content", [b"title\n", b"title", b"budget,title\r\n", b"title\n\n"])
def test_header_without_rows(client, db, producer, upload_dir, content):
    response = post_file(client, content)
    assert_error(response, 422, "no_rows")
    assert_nothing_left(upload_dir, db, producer)


def test_header_of_no_known_kind_names_both_expected_headers(client, db, producer, upload_dir):
    response = post_file(client, b"budget,original_title\n1,Toy Story\n")
    error = assert_error(response, 422, "unrecognised_header")
    assert "Song,Date,Number of Plays" in error["message"] and "'title'" in error["message"]
    assert error["expected"] == {"movies": list(CONTRACT), "plays": ["Song", "Date", "Number of Plays"]}
    assert_nothing_left(upload_dir, db, producer)


def test_movies_kind_requested_without_title_names_the_missing_column(client, db, producer, upload_dir):
    response = client.post(
        UPLOAD,
        data={"file": (io.BytesIO(b"budget,original_title\n1,Toy Story\n"), "m.csv"), "kind": "movies"},
        content_type="multipart/form-data",
    )
    error = assert_error(response, 422, "missing_columns")
    assert "title" in error["message"]
    assert error["missing"] == ["title"]
    assert_nothing_left(upload_dir, db, producer)


def test_title_column_name_is_case_sensitive(client, db, producer, upload_dir):
    assert_error(post_file(client, b"Title\nToy Story\n"), 422, "unrecognised_header")
    assert_nothing_left(upload_dir, db, producer)


def test_not_utf8(client, db, producer, upload_dir):
    response = post_file(client, b"title\n\xff\xfe bad\n")
    assert_error(response, 422, "not_utf8")
    assert_nothing_left(upload_dir, db, producer)


def test_not_utf8_raw_body(client, db, producer, upload_dir):
    response = client.post(f"{UPLOAD}?filename=m.csv", data=b"title\n\xff\xfe bad\n", content_type="text/csv")
    assert_error(response, 422, "not_utf8")
    assert_nothing_left(upload_dir, db, producer)


def test_duplicate_column_names(client, db, producer, upload_dir):
    response = post_file(client, b"title,budget,title\nA,1,B\n")
    error = assert_error(response, 422, "duplicate_columns")
    assert "title" in error["message"]
    assert_nothing_left(upload_dir, db, producer)


def test_empty_column_name(client, db, producer, upload_dir):
    assert_error(post_file(client, b"title,\nA,1\n"), 422, "bad_columns")
    assert_nothing_left(upload_dir, db, producer)


def test_reserved_column_name(client, db, producer, upload_dir):
    error = assert_error(post_file(client, b"title,year\nA,1999\n"), 422, "bad_columns")
    assert "year" in error["message"]
    assert_nothing_left(upload_dir, db, producer)


def test_header_line_too_long(client, db, producer, upload_dir):
    assert_error(post_file(client, b"title," + b"x" * (70 * 1024)), 422, "bad_header")
    assert_nothing_left(upload_dir, db, producer)


def test_multipart_without_boundary(client, db, producer, upload_dir):
    response = client.post(UPLOAD, data=b"title\nA\n", content_type="multipart/form-data")
    assert response.status_code == 400
    assert set(response.get_json()["error"]) == {"code", "message"}
    assert_nothing_left(upload_dir, db, producer)


def test_database_down_while_recording_the_task(client, db, producer, upload_dir, monkeypatch):
    def down(*args, **kwargs):
        raise ServerSelectionTimeoutError("no servers")

    monkeypatch.setattr("app.api.routes.uploads.tasks.create", down)
    assert_error(post_file(client, SAMPLE_MOVIES.read_bytes()), 503, "database_unavailable")
    assert_nothing_left(upload_dir, db, producer)  # the stored file is removed, no worker is woken


def test_queue_message_not_sent_still_accepts(client, db, producer, monkeypatch):
    monkeypatch.setattr(producer, "send", lambda task_id, kind: False)  # the broker is away; a sweep covers it
    response = post_file(client, SAMPLE_MOVIES.read_bytes())
    assert response.status_code == 202
    assert db.processes.find_one({"task_id": response.get_json()["task_id"]})["status"] == "pending"


@pytest.fixture
def small_app(config, db, redis_client, producer):
    return create_app(config.with_overrides(MAX_UPLOAD_MB=1), store=db, redis_client=redis_client, producer=producer)


def test_file_over_the_limit_multipart(small_app, db, producer, upload_dir):
    big = b"title\n" + b"x" * (2 << 20) + b"\n"  # 2 MB, limit 1 MB
    response = post_file(signed_in(small_app), big)
    # Either the body-size guard or the file-size check may answer; both must be a 413 in the JSON shape.
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] in ("file_too_large", "request_entity_too_large")
    assert set(response.get_json()["error"]) == {"code", "message"}
    assert_nothing_left(upload_dir, db, producer)


def test_file_just_over_the_limit_multipart(small_app, db, producer, upload_dir):
    big = b"title\n" + b"x" * (1 << 20) + b"\n"  # within the envelope allowance, over the file limit
    assert_error(post_file(signed_in(small_app), big), 413, "file_too_large")
    assert_nothing_left(upload_dir, db, producer)


def test_file_over_the_limit_raw(small_app, db, producer, upload_dir):
    big = b"title\n" + b"x" * (2 << 20) + b"\n"
    response = signed_in(small_app).post(f"{UPLOAD}?filename=m.csv", data=big, content_type="text/csv")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] in ("file_too_large", "request_entity_too_large")
    assert_nothing_left(upload_dir, db, producer)


def test_file_at_the_limit_is_accepted(small_app, db, producer, upload_dir):
    body = b"title\n" + b"x" * ((1 << 20) - 7) + b"\n"
    assert len(body) == 1 << 20
    response = signed_in(small_app).post(f"{UPLOAD}?filename=m.csv", data=body, content_type="text/csv")
    assert response.status_code == 202
    assert db.processes.find_one({"task_id": response.get_json()["task_id"]})["size"] == 1 << 20


# -- a client that goes away mid-upload -----------------------------------------------------------------


def _truncated_post(client, path: str, body: bytes, content_type: str, sent: int):
    """A request announcing len(body) bytes whose input ends after `sent`: werkzeug raises ClientDisconnected."""
    environ = EnvironBuilder(path=path, method="POST").get_environ()
    environ["CONTENT_TYPE"] = content_type
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input"] = io.BytesIO(body[:sent])
    return client.open(Request(environ))


def test_disconnect_mid_raw_upload_leaves_nothing(client, db, producer, upload_dir):
    sample = SAMPLE_MOVIES.read_bytes()
    response = _truncated_post(client, f"{UPLOAD}?filename=m.csv", sample, "text/csv", 1000)
    assert response.status_code == 400
    assert set(response.get_json()["error"]) == {"code", "message"}
    assert_nothing_left(upload_dir, db, producer)


def test_disconnect_mid_multipart_upload_leaves_nothing(client, db, producer, upload_dir):
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(SAMPLE_MOVIES.read_bytes()), "movies.csv")})
    content_type = f'multipart/form-data; boundary="{boundary}"'
    # the same body, complete, is accepted: the truncation is what makes the difference
    whole = _truncated_post(client, UPLOAD, body, content_type, len(body))
    assert whole.status_code == 202
    db.processes.delete_many({})
    producer.sent.clear()
    for p in upload_dir.iterdir():
        p.unlink()

    response = _truncated_post(client, UPLOAD, body, content_type, 2000)
    assert response.status_code == 400
    assert set(response.get_json()["error"]) == {"code", "message"}
    assert_nothing_left(upload_dir, db, producer)


def test_a_whole_multipart_body_without_its_closing_boundary_is_refused(client, db, producer, upload_dir):
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(b"title\nA\n"), "m.csv")})
    cut = body[: body.rindex(f"--{boundary}--".encode())]  # the file's part whole, the form's end missing
    response = client.post(UPLOAD, data=cut, content_type=f'multipart/form-data; boundary="{boundary}"')
    assert_error(response, 400, "bad_multipart")
    assert_nothing_left(upload_dir, db, producer)


# -- errors outside the upload itself -------------------------------------------------------------------


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/api/v1/nope"), 404, "not_found")


def test_wrong_method_is_json_405(client, db, upload_dir):
    response = client.delete(UPLOAD)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unexpected_exception_is_json_500_without_traceback(client, monkeypatch):
    def boom(db, task_id):
        raise RuntimeError("secret internals at /srv/app.py line 42")

    monkeypatch.setattr("app.api.routes.tasks.tasks.get", boom)
    response = client.get("/api/v1/process/x")
    error = assert_error(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internals" not in text and "RuntimeError" not in text
    assert set(error) == {"code", "message"}


def test_database_down_is_json_503(client, monkeypatch):
    def down(db, task_id):
        raise ServerSelectionTimeoutError("localhost:27017: [Errno 111] Connection refused")

    monkeypatch.setattr("app.api.routes.tasks.tasks.get", down)
    response = client.get("/api/v1/process/x")
    error = assert_error(response, 503, "database_unavailable")
    assert "27017" not in error["message"]


# -- bugs -----------------------------------------------------------------------------------------------


def test_header_with_space_before_title_is_accepted_and_ingested(client, db, worker):
    response = post_file(client, b"budget, title\n1, Spaced Out\n")
    if response.status_code == 422:  # refusing the header up front would be a fix too
        assert response.get_json()["error"]["code"]
        return
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    assert worker.work() is True
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert task["rows_inserted"] == 1


@pytest.mark.slow
def test_multi_megabyte_multipart_upload_is_stored_byte_for_byte(client, db, upload_dir, tmp_path):
    # Several full 1 MiB reads: the multipart decoder's buffer must never be mistaken for a form field.
    from moviecat.generate import generate_movies

    path = tmp_path / "big.csv"
    generate_movies(str(path), size_mb=6, seed=2)
    data = path.read_bytes()
    response = post_file(client, data, "big.csv")
    assert response.status_code == 202, response.get_json()
    task = db.processes.find_one({"task_id": response.get_json()["task_id"]})
    assert task["size"] == len(data)
    stored = list(upload_dir.iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == data


@pytest.mark.parametrize(
    "header, code",
    [
        (b'title,"budget\nA,1\n', "bad_header"),  # unterminated quote
        (b"title,$x\nA,1\n", "bad_columns"),  # MongoDB reads $ as an operator
        (b"title,a\x00b\nA,1\n", "bad_columns"),  # MongoDB refuses NUL in names
        (b"title,a.b\nA,1\n", "bad_columns"),  # and reads a dot as a path
    ],
)
def test_headers_mongodb_cannot_store_are_refused(client, db, producer, upload_dir, header, code):
    assert_error(post_file(client, header), 422, code)
    assert_nothing_left(upload_dir, db, producer)


def test_old_mac_line_endings_are_accepted(client, db, worker):
    response = post_file(client, b"title,budget\rA,1\rB,2\r")
    assert response.status_code == 202, response.get_json()
    worker.work()
    assert db.movies.count_documents({}) == 2


def test_two_file_parts_are_refused(client, db, producer, upload_dir):
    two = [(io.BytesIO(b"title\nA\n"), "a.csv"), (io.BytesIO(b"title\nB\n"), "b.csv")]
    response = client.post(UPLOAD, data={"file": two}, content_type="multipart/form-data")
    assert_error(response, 400, "multiple_files")
    assert_nothing_left(upload_dir, db, producer)


# -- free disk space (MIN_FREE_MB, 512 by default) --------------------------------------------------------

MB = 1 << 20


def test_an_upload_whose_content_length_would_cross_min_free_mb_is_refused_before_it_is_read(
    client, db, producer, upload_dir, monkeypatch
):
    from app.api import intake

    body = b"title\n" + b"A Movie\n" * (MB // 8)  # 1 MiB: enough to take the last MiB above the floor
    monkeypatch.setattr(intake, "free_bytes", lambda folder: 512 * MB + len(body) // 2)
    response = client.post(UPLOAD + "?filename=m.csv", data=body, content_type="text/csv")
    error = assert_error(response, 507, "insufficient_storage")
    assert error["min_free_mb"] == 512 and "MIN_FREE_MB" in error["message"]
    assert_nothing_left(upload_dir, db, producer)


def test_an_upload_is_stopped_when_free_space_falls_below_min_free_mb_while_it_streams(
    client, db, producer, upload_dir, monkeypatch
):
    """Content-Length said it fits, but the disk filled (another writer, or a lying length) as it came in."""
    from app.api import intake

    free = iter([600 * MB, 600 * MB, 100 * MB])  # before: room; after the first write: room; then: full
    monkeypatch.setattr(intake, "free_bytes", lambda folder: next(free, 100 * MB))
    monkeypatch.setattr(intake, "CHUNK", 64 * 1024)
    body = b"title\n" + b"A Movie\n" * (MB // 8)
    response = client.post(UPLOAD + "?filename=m.csv", data=body, content_type="text/csv")
    assert_error(response, 507, "insufficient_storage")
    assert_nothing_left(upload_dir, db, producer)
    assert next(free, None) is None  # the streaming check ran


def test_min_free_mb_zero_turns_the_check_off(config, db, redis_client, producer, upload_dir, monkeypatch):
    from app.api import intake

    monkeypatch.setattr(intake, "free_bytes", lambda folder: 0)
    app = create_app(config.with_overrides(MIN_FREE_MB=0), store=db, redis_client=redis_client, producer=producer)
    assert post_file(signed_in(app), SAMPLE_MOVIES.read_bytes()).status_code == 202


def test_too_many_columns_is_refused_as_soon_as_the_header_line_ends(client, db, producer, upload_dir):
    error = assert_error(post_file(client, b"title" + b",c" * 500 + b"\n" + b"x" * (2 * MB)), 422, "too_many_columns")
    assert error["limit"] == 500
    assert_nothing_left(upload_dir, db, producer)
