"""GET /api/v1/process/<task_id> and GET /api/v1/processes: what a client sees of a task."""

from __future__ import annotations

import io
import re

import pytest

from tests.conftest import SAMPLE_MOVIES

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
PROGRESS = (
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_rejected",
    "bytes_read",
    "bytes_total",
    "percent",
    "rows_per_sec",
)


def upload(client, data: bytes, filename: str = "movies.csv") -> str:
    response = client.post(
        "/api/v1/upload", data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["task_id"]


def get_task(client, task_id: str) -> dict:
    response = client.get(f"/api/v1/process/{task_id}")
    assert response.status_code == 200
    return response.get_json()


def assert_bad_parameter(response, name: str):
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["parameter"] == name
    assert name in error["message"]


# -- one task -------------------------------------------------------------------------------------------


def test_pending_task_shape(client, db):
    sample = SAMPLE_MOVIES.read_bytes()
    task_id = upload(client, sample)
    task = get_task(client, task_id)

    assert OBJECT_ID.match(task["_id"])
    assert task["_id"] == str(db.processes.find_one({"task_id": task_id})["_id"])
    assert task["task_id"] == task_id
    assert task["status"] == "pending"
    assert ISO_Z.match(task["created_at"]) and ISO_Z.match(task["updated_at"])
    assert task["filename"] == "movies.csv"
    assert task["size"] == len(sample)
    for name in PROGRESS:
        assert name in task, name
    assert {name: task[name] for name in PROGRESS} == {
        "rows_read": 0,
        "rows_inserted": 0,
        "rows_updated": 0,
        "rows_rejected": 0,
        "bytes_read": 0,
        "bytes_total": len(sample),
        "percent": 0,
        "rows_per_sec": 0,
    }
    assert "path" not in task
    assert "started_at" not in task and "finished_at" not in task


def test_completed_task_shape(client, worker):
    sample = SAMPLE_MOVIES.read_bytes()
    task_id = upload(client, sample)
    assert worker.work() is True
    task = get_task(client, task_id)

    assert task["status"] == "completed"
    for name in ("created_at", "updated_at", "started_at", "finished_at"):
        assert ISO_Z.match(task[name]), (name, task[name])
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]
    assert isinstance(task["duration_s"], (int, float)) and task["duration_s"] >= 0
    assert task["percent"] == 100
    assert (task["rows_read"], task["rows_inserted"], task["rows_updated"], task["rows_rejected"]) == (10, 10, 0, 0)
    assert task["bytes_read"] == task["bytes_total"] == len(sample)
    assert task["rows_per_sec"] > 0
    assert task["rejects"] == []
    assert "path" not in task
    assert "lease_expires_at" not in task


def test_unknown_task_is_404(client):
    response = client.get("/api/v1/process/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "task_not_found"
    assert set(response.get_json()) == {"error"}


def test_rejected_rows_are_reported_with_line_and_reason(client, db, worker):
    content = (
        b"title,budget\n"  # 1
        b"Alpha,1\n"  # 2
        b",2\n"  # 3  no title
        b"Beta,3,4\n"  # 4  three fields
        b'"Gamma\n'  # 5  a title spanning two lines
        b'Delta",5\n'  # 6
        b"   ,7\n"  # 7  blank title
        b"Epsilon\n"  # 8  one field
        b"Zeta,9\n"  # 9
    )
    task_id = upload(client, content)
    assert worker.work() is True
    task = get_task(client, task_id)

    assert task["status"] == "completed"
    assert sorted(task["rejects"], key=lambda r: r["line"]) == [
        {"line": 3, "reason": "missing title"},
        {"line": 4, "reason": "expected 2 fields, found 3"},
        {"line": 7, "reason": "missing title"},
        {"line": 8, "reason": "expected 2 fields, found 1"},
    ]
    assert task["rows_rejected"] == 4
    assert task["rows_read"] == 7
    assert task["rows_inserted"] == 3
    assert sorted(m["title"] for m in db.movies.find()) == ["Alpha", "Gamma\nDelta", "Zeta"]


def test_same_file_twice_updates_instead_of_duplicating(client, db, worker):
    sample = SAMPLE_MOVIES.read_bytes()
    first = upload(client, sample)
    assert worker.work(first) is True
    second = upload(client, sample)
    assert worker.work(second) is True

    a, b = get_task(client, first), get_task(client, second)
    assert (a["rows_inserted"], a["rows_updated"]) == (10, 0)
    assert (b["status"], b["rows_inserted"], b["rows_updated"]) == ("completed", 0, 10)
    assert db.movies.count_documents({}) == 10


# -- the list -------------------------------------------------------------------------------------------


@pytest.fixture
def three_tasks(client):
    return [upload(client, SAMPLE_MOVIES.read_bytes(), f"m{i}.csv") for i in range(3)]


def test_list_newest_first_with_pagination(client, three_tasks):
    newest_first = list(reversed(three_tasks))
    response = client.get("/api/v1/processes")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"limit", "page", "processes", "total_docs", "total_pages"}
    assert (body["limit"], body["page"], body["total_docs"], body["total_pages"]) == (10, 1, 3, 1)
    assert [t["task_id"] for t in body["processes"]] == newest_first
    assert [t["filename"] for t in body["processes"]] == ["m2.csv", "m1.csv", "m0.csv"]
    assert all("path" not in t for t in body["processes"])

    page1 = client.get("/api/v1/processes?limit=2&page=1").get_json()
    page2 = client.get("/api/v1/processes?limit=2&page=2").get_json()
    page3 = client.get("/api/v1/processes?limit=2&page=3").get_json()
    assert (page1["total_docs"], page1["total_pages"], page1["limit"], page1["page"]) == (3, 2, 2, 1)
    assert [t["task_id"] for t in page1["processes"]] == newest_first[:2]
    assert [t["task_id"] for t in page2["processes"]] == newest_first[2:]
    assert (page2["page"], page2["total_pages"]) == (2, 2)
    assert page3["processes"] == [] and page3["total_docs"] == 3


def test_list_filters_by_status(client, worker, three_tasks):
    assert worker.work(three_tasks[1]) is True

    completed = client.get("/api/v1/processes?status=completed").get_json()
    assert [t["task_id"] for t in completed["processes"]] == [three_tasks[1]]
    assert (completed["total_docs"], completed["total_pages"]) == (1, 1)

    pending = client.get("/api/v1/processes?status=pending").get_json()
    assert [t["task_id"] for t in pending["processes"]] == [three_tasks[2], three_tasks[0]]
    assert all(t["status"] == "pending" for t in pending["processes"])

    failed = client.get("/api/v1/processes?status=failed").get_json()
    assert (failed["processes"], failed["total_docs"], failed["total_pages"]) == ([], 0, 0)


def test_empty_list(client):
    assert client.get("/api/v1/processes").get_json() == {
        "limit": 10,
        "page": 1,
        "processes": [],
        "total_docs": 0,
        "total_pages": 0,
    }


@pytest.mark.parametrize(
    "query, name",
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("page=-1", "page"),
        ("sort=created_at", "sort"),
        ("page=1&page=2", "page"),
    ],
)
def test_list_rejects_bad_parameters(client, query, name):
    assert_bad_parameter(client.get(f"/api/v1/processes?{query}"), name)


def test_list_limit_100_is_allowed(client, three_tasks):
    body = client.get("/api/v1/processes?limit=100").get_json()
    assert body["limit"] == 100 and len(body["processes"]) == 3
