"""Plays jobs through the HTTP API: kind recognition, progress, the result download, the first system's routes."""

from __future__ import annotations

import io
import os

import pytest

from app import tasks
from tests.conftest import SAMPLE_MOVIES
from tests.test_api_upload import assert_error, assert_nothing_left
from tests.test_plays import EXAMPLE, EXAMPLE_RESULT

PLAYS_HEADER = b"Song,Date,Number of Plays\n"


def upload(client, data: bytes, filename="plays.csv", url="/api/v1/upload", **fields):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post(url, data=form, content_type="multipart/form-data")


def result_of(client, task_id):
    return client.get(f"/api/v1/process/{task_id}/result")


def test_the_example_file_end_to_end(client, db, producer, worker):
    response = upload(client, EXAMPLE.read_bytes(), filename="plays_example_input.csv")
    assert response.status_code == 202
    body = response.get_json()
    task_id = body["task_id"]
    assert body["kind"] == "plays" and producer.sent == [(task_id, "plays")]

    pending = client.get(f"/api/v1/process/{task_id}").get_json()
    assert pending["status"] == "pending" and pending["kind"] == "plays" and "result_url" not in pending
    assert assert_error(result_of(client, task_id), 409, "not_ready")["task_status"] == "pending"

    assert worker.work(task_id)

    task = client.get(f"/api/v1/process/{task_id}").get_json()
    assert task["status"] == "completed"
    assert (task["groups"], task["rows_read"], task["rows_rejected"], task["percent"]) == (4, 7, 0, 100.0)
    assert task["result_url"] == f"/api/v1/process/{task_id}/result"
    assert "result_path" not in task and "path" not in task

    download = client.get(task["result_url"])
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == (
        "attachment; filename=\"plays_example_input-totals.csv\"; filename*=UTF-8''plays_example_input-totals.csv"
    )
    assert download.get_data() == EXAMPLE_RESULT


def test_a_task_being_processed_has_no_result_yet(client, db, worker):
    task_id = upload(client, EXAMPLE.read_bytes()).get_json()["task_id"]
    tasks.claim(db, "someone", 60, 3, task_id)
    error = assert_error(result_of(client, task_id), 409, "not_ready")
    assert error["task_status"] == "processing" and "processing" in error["message"]


def test_rejected_rows_are_kept_on_the_task(client, worker):
    data = PLAYS_HEADER + b"A,2020-01-01,1\n,2020-01-01,1\nA,2020-13-01,1\nA,20200101,x\n"
    task_id = upload(client, data).get_json()["task_id"]
    worker.work(task_id)
    task = client.get(f"/api/v1/process/{task_id}").get_json()
    assert task["status"] == "completed" and task["rows_rejected"] == 3 and task["groups"] == 1
    assert [r["line"] for r in task["rejects"]] == [3, 4, 5]
    assert result_of(client, task_id).get_data() == b"Song,Date,Total Number of Plays for Date\nA,2020-01-01,1\n"


def test_raw_body_with_kind_in_the_query(client, worker):
    response = client.post(
        "/api/v1/upload?filename=p.csv&kind=plays", data=EXAMPLE.read_bytes(), content_type="text/csv"
    )
    assert response.status_code == 202 and response.get_json()["kind"] == "plays"
    worker.work(response.get_json()["task_id"])
    assert result_of(client, response.get_json()["task_id"]).get_data() == EXAMPLE_RESULT


# -- choosing the kind ----------------------------------------------------------------------------------


def test_a_movie_file_is_recognised_as_movies(client):
    assert upload(client, SAMPLE_MOVIES.read_bytes(), "m.csv").get_json()["kind"] == "movies"


def test_kind_field_overrides_recognition(client, db, producer, upload_dir):
    error = assert_error(upload(client, EXAMPLE.read_bytes(), kind="movies"), 422, "missing_columns")
    assert error["missing"] == ["title"]
    error = assert_error(upload(client, SAMPLE_MOVIES.read_bytes(), kind="plays"), 422, "bad_columns")
    assert error["expected"] == ["Song", "Date", "Number of Plays"]
    assert_nothing_left(upload_dir, db, producer)


def test_explicit_kind_matching_the_file_is_accepted(client):
    assert upload(client, EXAMPLE.read_bytes(), kind="plays").get_json()["kind"] == "plays"


def test_unknown_kind_is_a_clear_400(client, db, producer, upload_dir):
    error = assert_error(upload(client, EXAMPLE.read_bytes(), kind="songs"), 400, "bad_kind")
    assert "movies, plays" in error["message"]
    assert_nothing_left(upload_dir, db, producer)


@pytest.mark.parametrize(
    "header", [b"Song,Date\n", b"Song,Date,Number of Plays,Extra\n", b"song,date,number of plays\n"]
)
def test_a_header_near_the_plays_one_fits_no_kind(client, db, producer, upload_dir, header):
    error = assert_error(upload(client, header + b"A,2020-01-01,1\n"), 422, "unrecognised_header")
    assert error["expected"]["plays"] == ["Song", "Date", "Number of Plays"]
    assert_nothing_left(upload_dir, db, producer)


@pytest.mark.parametrize(
    "data, code", [(b"", "empty_file"), (PLAYS_HEADER, "no_rows"), (b"\xef\xbb\xbf" + PLAYS_HEADER, "no_rows")]
)
def test_empty_and_header_only_plays_files_are_refused(client, db, producer, upload_dir, data, code):
    assert_error(upload(client, data), 422, code)
    assert_nothing_left(upload_dir, db, producer)


# -- the result endpoint's answers ----------------------------------------------------------------------


def test_result_of_an_unknown_task_is_404(client):
    assert_error(result_of(client, "no-such-task"), 404, "task_not_found")


def test_a_movies_task_has_no_result_file(client, worker):
    task_id = upload(client, SAMPLE_MOVIES.read_bytes(), "m.csv").get_json()["task_id"]
    worker.work(task_id)
    assert "a movies job" in assert_error(result_of(client, task_id), 404, "no_result")["message"]


def test_a_failed_task_answers_410_with_its_reason(client, worker, upload_dir):
    data = PLAYS_HEADER + f"A,2020-01-01,{2**62}\nA,2020-01-01,{2**62}\n".encode()
    task_id = upload(client, data).get_json()["task_id"]
    worker.work(task_id)
    task = client.get(f"/api/v1/process/{task_id}").get_json()
    assert task["status"] == "failed" and "exceeds 9223372036854775807" in task["error"]
    error = assert_error(result_of(client, task_id), 410, "task_failed")
    assert "exceeds 9223372036854775807" in error["message"]
    assert list(upload_dir.iterdir()) == []


def test_a_result_file_gone_from_disk_answers_410(client, db, worker):
    task_id = upload(client, EXAMPLE.read_bytes()).get_json()["task_id"]
    worker.work(task_id)
    os.remove(tasks.get(db, task_id)["result_path"])
    assert_error(result_of(client, task_id), 410, "result_gone")


# -- the first system's routes --------------------------------------------------------------------------


def test_legacy_upload_and_result(client, worker):
    response = upload(client, EXAMPLE.read_bytes(), url="/upload")
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    assert response.get_json() == {"task_id": task_id}

    waiting = client.get(f"/result/{task_id}")
    assert (waiting.status_code, waiting.get_json()) == (404, {"status": "Processing or not found"})

    worker.work(task_id)
    ready = client.get(f"/result/{task_id}")
    assert ready.status_code == 200 and ready.mimetype == "text/csv"
    assert ready.get_data() == EXAMPLE_RESULT


def test_legacy_result_of_an_unknown_task(client):
    response = client.get("/result/nope")
    assert (response.status_code, response.get_json()) == (404, {"status": "Processing or not found"})


def test_legacy_upload_refuses_bad_input_with_the_same_json_errors(client, db, producer, upload_dir):
    assert_error(upload(client, b"", url="/upload"), 422, "empty_file")
    assert_nothing_left(upload_dir, db, producer)
