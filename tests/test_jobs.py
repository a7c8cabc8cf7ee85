"""The job-kind registry (app/jobs): each kind's header rules, and that the upload route and the worker go by
the registry alone, so a kind registered there is accepted, recorded, queued and run with nothing else changed."""

from __future__ import annotations

import ast
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest

from app.jobs import registry as jobs
from app.jobs.registry import JobKind, JobRefused
from tests.support import REPO

UPLOAD = "/api/v1/upload"


@pytest.mark.parametrize("name", sorted(jobs.KINDS))
def test_every_kind_recognises_and_accepts_its_own_header(name):
    kind = jobs.KINDS[name]
    header = list(kind.expected)
    assert kind.name == name and jobs.get(name) is kind
    assert kind.fits(header)
    kind.check(header)  # raises nothing
    assert jobs.choose(header, None) is kind and jobs.choose(header, name) is kind


@pytest.mark.parametrize("name", sorted(jobs.KINDS))
def test_every_kind_refuses_a_header_it_cannot_take_as_a_422(name):
    kind = jobs.KINDS[name]
    with pytest.raises(JobRefused) as refused:
        kind.check(["not", "a", "known", "column"])
    assert refused.value.status == 422 and refused.value.code and refused.value.message


def test_the_built_in_kinds_and_their_rules():
    assert jobs.names() == ["movies", "plays"]
    movies, plays = jobs.get("movies"), jobs.get("plays")
    assert (movies.leaves_result, plays.leaves_result) == (False, True)
    assert movies.task_fields(["title", "budget"])["columns_missing"] == [
        c for c in movies.expected if c not in ("title", "budget")
    ]
    assert plays.task_fields(["Song", "Date", "Number of Plays"]) == {}
    assert jobs.choose(["Number of Plays", "Song", "Date"], None) is plays
    assert jobs.choose(["budget", "title"], None) is movies
    with pytest.raises(JobRefused) as refused:
        jobs.choose(["title", "year"], None)
    assert (refused.value.status, refused.value.code) == (422, "bad_columns")


def test_an_unknown_kind_is_refused_when_asked_for_and_fails_when_run():
    with pytest.raises(JobRefused) as refused:
        jobs.choose(["title"], "songs")
    assert (refused.value.status, refused.value.code) == (400, "bad_kind")
    assert refused.value.message == "kind must be one of movies, plays, got 'songs'."
    with pytest.raises(ValueError, match="unknown task kind 'songs'"):
        jobs.get("songs")


@pytest.mark.server
def test_the_registry_and_the_worker_load_no_flask():
    code = (
        "import sys, app.jobs.registry, app.worker.loop; "
        "print(sorted(m for m in ('flask', 'werkzeug') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- a third kind, registered here only ------------------------------------------------------------------


def _run_ratings(job: jobs.Job) -> dict:
    rows = Path(job.task["path"]).read_text().splitlines()[1:]
    job.on_progress({"rows_read": len(rows), "rows_rejected": 0, "percent": 100.0, "rows_per_sec": 1.0})
    Path(job.result_path).write_text(f"stars\n{sum(int(row.split(',')[1]) for row in rows)}\n")
    return {"rows_read": len(rows), "rows_rejected": 0, "percent": 100.0, "ran_by": job.config.BLOCK_SIZE}


def _check_ratings(header: list[str]) -> None:
    if header != ["user", "stars"]:
        raise JobRefused(422, "bad_columns", "A ratings file has exactly the columns user,stars.")


RATINGS = JobKind(
    name="ratings",
    fits=lambda header: header == ["user", "stars"],
    check=_check_ratings,
    run=_run_ratings,
    expected=("user", "stars"),
    described="'user,stars' for ratings",
    leaves_result=True,
    task_fields=lambda header: {"columns_seen": len(header)},
)


@pytest.fixture
def ratings(monkeypatch):
    monkeypatch.setitem(jobs.KINDS, "ratings", RATINGS)
    return RATINGS


def test_a_kind_registered_in_the_registry_is_accepted_queued_and_run(ratings, client, db, producer, worker, config):
    response = client.post(
        UPLOAD, data={"file": (io.BytesIO(b"user,stars\nann,4\nbob,5\n"), "r.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    task_id = response.get_json()["task_id"]
    assert response.get_json()["kind"] == "ratings" and producer.sent == [(task_id, "ratings")]
    task = db.processes.find_one({"task_id": task_id})
    assert task["kind"] == "ratings" and task["columns_seen"] == 2 and task["status"] == "pending"

    assert worker.work(task_id)
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert (task["rows_read"], task["ran_by"]) == (2, config.BLOCK_SIZE)
    assert task["result_path"] == str(Path(config.RESULT_FOLDER).resolve() / f"{task_id}.csv")
    assert Path(task["result_path"]).read_text() == "stars\n9\n"
    assert not Path(task["path"]).exists()  # the upload is removed once the job is done


def test_a_registered_kind_is_named_in_the_refusals(ratings, client):
    body = client.post(
        UPLOAD, data={"file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv"), "kind": "songs"}, content_type="multipart/form-data"
    ).get_json()
    assert body["error"]["message"] == "kind must be one of movies, plays, ratings, got 'songs'."
    body = client.post(
        UPLOAD, data={"file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")}, content_type="multipart/form-data"
    ).get_json()
    assert body["error"]["code"] == "unrecognised_header"
    assert body["error"]["expected"]["ratings"] == ["user", "stars"]
    assert body["error"]["message"].endswith(", or 'user,stars' for ratings.")
    body = client.post(
        UPLOAD,
        data={"file": (io.BytesIO(b"user,stars,x\nann,4,1\n"), "r.csv"), "kind": "ratings"},
        content_type="multipart/form-data",
    ).get_json()
    assert body["error"] == {"code": "bad_columns", "message": "A ratings file has exactly the columns user,stars."}


# -- how a kind's run ends a task other than by completing it (app/jobs/errors.py) ----------------------------


def _run_failing(job: jobs.Job) -> dict:
    raise jobs.JobFailed("line 3 gives 7 stars, out of 5; fix it and upload the file again")


def _run_later(job: jobs.Job) -> dict:
    raise jobs.RetryLater("the ratings service is away")


@pytest.mark.parametrize(
    ("run", "status", "error", "upload_kept"),
    [
        (_run_failing, "failed", "line 3 gives 7 stars, out of 5; fix it and upload the file again", False),
        (_run_later, "processing", None, True),  # left to its lease, for another attempt
    ],
)
def test_a_kind_ends_a_task_by_raising_job_failed_or_retry_later(
    monkeypatch, db, worker, upload_dir, run, status, error, upload_kept
):
    from app import tasks

    monkeypatch.setitem(jobs.KINDS, "ratings", dataclasses.replace(RATINGS, run=run))
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / "r.csv"
    path.write_text("user,stars\nann,4\nbob,7\n")
    tasks.create(db, task_id="r", kind="ratings", filename="r.csv", path=str(path), size=path.stat().st_size)
    assert worker.work("r")
    task = db.processes.find_one({"task_id": "r"})
    assert (task["status"], task.get("error"), task["attempts"]) == (status, error, 1)
    assert path.exists() == upload_kept


def test_the_worker_imports_nothing_of_the_kinds_but_the_registry():
    """Nor PyArrow: what a kind's modules raise, the kind translates (app/jobs/errors.py)."""
    imported = set()
    for path in (REPO / "app" / "worker").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert "app.jobs.registry" in imported
    assert sorted(m for m in imported if m.startswith(("app.jobs.", "pyarrow"))) == [
        "app.jobs.registry",
        "app.jobs.registry.JobFailed",
        "app.jobs.registry.RetryLater",
    ]
