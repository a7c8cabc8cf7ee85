"""`make run` as its users run it: a real process, driven over HTTP with real uploads.

With MONGO_URI and REDIS_URL unset it runs the embedded stand-ins, a gunicorn API process, the ZeroMQ
broker and a worker, the worker fed over real TCP sockets.
"""

from __future__ import annotations

import sys

import pytest

from moviecat.generate import generate_movies
from tests.conftest import SAMPLE_MOVIES
from tests.support.reference import load
from tests.support.service import Service
from tests.test_plays import EXAMPLE, EXAMPLE_RESULT

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    venv = sys.prefix  # the environment running the tests; make only checks requirements are in it
    service = Service(
        tmp_path_factory.mktemp("system"),
        ["make", "--no-print-directory", "run", f"VENV={venv}", f"PYTHON={sys.executable}"],
    )
    yield service.start()
    text = service.stop()
    assert "Shutting down: Master" in text, text[-3000:]
    assert "in-memory, not persisted" in text


def test_health_reports_every_part(server):
    status, _, body = server.request("GET", "/api/v1/health")
    assert status == 200
    assert body["status"] == "ok" and body["mongo"] == "ok" and body["redis"] == "ok" and body["worker"] == "ok"


def test_upload_is_ingested_end_to_end(server, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=20_000, seed=3)
    expected = load(path)
    status, _, body = server.upload(path, "movies.csv")
    assert status == 202 and body["message"] == "File uploaded successfully and queued for processing"
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed", task
    assert task["rows_read"] == expected["rows_read"]
    assert task["rows_rejected"] == len(expected["rejects"])
    assert task["percent"] == 100.0 and task["bytes_read"] == path.stat().st_size

    first = min(
        expected["documents"].values(), key=lambda d: (d["vote_average"] is not None, d["vote_average"] or 0, d["_id"])
    )
    status, headers, page = server.request("GET", "/api/v1/movies?sort_by=rating&order=1&limit=1")
    assert status == 200 and page["movies"][0]["_id"] == first["_id"]
    assert page["total_docs"] >= len(expected["documents"])
    status, headers, again = server.request("GET", "/api/v1/movies?order=1&limit=1&sort_by=rating")
    assert headers["X-Cache"] == "hit" and again == page


def test_raw_body_upload_and_task_listing(server):
    status, _, body = server.request(
        "POST", "/api/v1/upload?filename=sample.csv", SAMPLE_MOVIES.read_bytes(), {"Content-Type": "text/csv"}
    )
    assert status == 202
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed" and task["filename"] == "sample.csv"
    status, _, listing = server.request("GET", "/api/v1/processes?limit=1")
    assert listing["processes"][0]["task_id"] == body["task_id"]
    ids, page, pages = [], 1, 1
    while page <= pages:
        status, _, movies = server.request("GET", f"/api/v1/movies?year=1995&language=en&limit=100&page={page}")
        ids += [m["_id"] for m in movies["movies"]]
        page, pages = page + 1, movies["total_pages"]
    assert set(load(SAMPLE_MOVIES)["documents"]) <= set(ids)
    assert len(ids) == len(set(ids)) == movies["total_docs"]


def test_bad_upload_gets_json_error(server, tmp_path):
    path = tmp_path / "no_title.csv"
    path.write_text("budget,overview\n1,x\n")
    status, _, body = server.upload(path, "no_title.csv")
    assert status == 422 and body["error"]["code"] == "unrecognised_header" and "title" in body["error"]["message"]


def test_plays_example_through_both_routes(server):
    status, _, body = server.upload(EXAMPLE, "plays_example_input.csv")
    assert status == 202 and body["kind"] == "plays"
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed" and task["groups"] == 4
    status, headers, data = server.request("GET", task["result_url"], raw=True)
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and data == EXAMPLE_RESULT
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"plays_example_input-totals.csv\"; filename*=UTF-8''plays_example_input-totals.csv"
    )

    status, _, body = server.upload(EXAMPLE, "plays.csv", url="/upload")
    assert status == 202 and set(body) == {"task_id"}
    server.wait_for(body["task_id"])
    assert server.request("GET", f"/result/{body['task_id']}", raw=True)[::2] == (200, EXAMPLE_RESULT)
