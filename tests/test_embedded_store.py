"""The embedded default as a user runs it: `python run.py` with MONGO_URI unset, the API, the broker and WORKERS
`python worker.py` processes on one SQLite file in DATA_FOLDER. Kept across restarts, refused when the file is not
the service's, resumed when a worker is killed mid-file, failed with its reason when the disk fills up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.api import keys
from app.store.serialize import to_json
from app.store.sqlite import SqliteStore, path_in
from moviecat.generate import generate_movies
from tests.conftest import SAMPLE_MOVIES
from tests.support import REPO
from tests.support.reference import cleaned_rows, load
from tests.support.service import Service

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

PAGES = (
    "/api/v1/movies?limit=100",
    "/api/v1/movies?year=1995&sort_by=title&limit=5",
    "/api/v1/movies?language=en&sort_by=rating&order=-1&limit=7",
    "/api/v1/movies?sort_by=release_date&order=-1&page=2&limit=3",
)


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def worker_pids(service: Service) -> list[int]:
    pids = []
    for pid in children(service.proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"worker.py") for part in cmdline):
            pids.append(pid)
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stored_movies(data_folder: Path) -> dict:
    """Every stored movie as the API shows it, by `_id`, read through the store interface."""

    store = SqliteStore(path_in(str(data_folder)))
    cursor, total = store.movies.page(None, None, "title", 1, 0, 10**9)
    with cursor as found:
        movies = {doc["_id"]: to_json(doc) for doc in found}
    store.close()
    assert len(movies) == total
    return movies


def expected_movies(path: Path) -> dict:
    return {key: to_json(doc) for key, doc in load(path)["documents"].items()}


def test_a_restart_serves_the_catalogue_and_the_tasks_byte_for_byte(tmp_path):
    service = Service(tmp_path)
    server = service.start()
    assert server.key, "the first start prints the admin sign-in"
    status, _, body = server.upload(SAMPLE_MOVIES, "movies.csv")
    assert status == 202
    task_id = body["task_id"]
    assert server.wait_for(task_id)["status"] == "completed"
    before = {path: server.request("GET", path, raw=True)[2] for path in (*PAGES, f"/api/v1/process/{task_id}")}
    first_log = service.stop()
    assert "Sign in to the page" in first_log

    again = Service(tmp_path)
    again.port = service.port  # the same address, as a user restarting `make run` has
    again.env = {**service.env}
    restarted = again.start()
    restarted.key = server.key  # the key made at the first start still opens it
    try:
        for path, body in before.items():
            status, headers, now = restarted.request("GET", path, raw=True)
            assert status == 200, now
            assert now == body, path
        log = again.log()
        assert "Sign in to the page" not in log and keys.printed_secret(log) is None  # no second admin key
        assert "API keys exist" in log and "python -m app.tools.keys create" in log
    finally:
        again.stop()


def start_fails(tmp_path: Path) -> str:
    service = Service(tmp_path)
    done = subprocess.run(service.command, cwd=REPO, env=service.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    return done.stdout + done.stderr


def test_a_file_that_is_not_sqlite_at_the_data_path_stops_the_start_naming_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "service.sqlite3").write_bytes(b"these are somebody's notes, not a database\n" * 100)
    output = start_fails(tmp_path)
    lines = [line for line in output.splitlines() if "service.sqlite3" in line]
    assert len(lines) == 1 and str(data / "service.sqlite3") in lines[0], output
    assert (data / "service.sqlite3").read_bytes().startswith(b"these are somebody's notes")  # left as it was


def test_another_programs_sqlite_file_at_the_data_path_stops_the_start_naming_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "service.sqlite3") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    output = start_fails(tmp_path)
    lines = [line for line in output.splitlines() if "service.sqlite3" in line]
    assert len(lines) == 1 and "something else" in lines[0], output
    with sqlite3.connect(data / "service.sqlite3") as conn:
        assert conn.execute("SELECT * FROM invoices").fetchall() == [(1, 9.5)]


def test_the_keys_command_makes_a_key_in_the_embedded_file_that_the_running_service_accepts(tmp_path):
    service = Service(tmp_path, WORKERS="0")
    server = service.start()
    try:
        env = {**service.env}
        done = subprocess.run(
            [sys.executable, "-m", "app.tools.keys", "create", "--name", "loader", "--role", "reader"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        secret = done.stdout.strip().splitlines()[-1]
        status, _, body = server.request("GET", "/api/v1/movies", key=secret)
        assert status == 200 and body["total_docs"] == 0
        status, _, _ = server.upload(SAMPLE_MOVIES, "movies.csv", key=secret)
        assert status == 403  # a reader may browse, not upload
        listed = subprocess.run(
            [sys.executable, "-m", "app.tools.keys", "list"], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert "loader" in listed.stdout and "embedded admin" in listed.stdout
    finally:
        service.stop()


def test_ctrl_c_stops_the_api_the_broker_and_every_worker(tmp_path):
    service = Service(tmp_path, WORKERS="2")
    service.start()
    workers = worker_pids(service)
    assert len(workers) == 2
    everyone = children(service.proc.pid)
    assert len(everyone) >= 4  # the API process, the broker, two workers
    os.killpg(service.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
    service.proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in everyone) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in everyone if alive(pid)]


def test_a_worker_killed_mid_file_is_replaced_and_the_file_resumes_from_its_checkpoint_with_exact_rows(tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=30_000, seed=24)
    service = Service(tmp_path, WORKERS="1", LEASE_SECONDS="3", BLOCK_SIZE=str(1 << 20), INGEST_HELPER_MIN_MB="1000")
    server = service.start()
    try:
        status, _, body = server.upload(path, "movies.csv")
        assert status == 202
        task_id = body["task_id"]
        deadline = time.monotonic() + 120
        while True:
            task = server.request("GET", f"/api/v1/process/{task_id}")[2]
            if task["rows_read"] > 0 or task["status"] not in ("pending", "processing"):
                break  # a batch written, and its checkpoint
            assert time.monotonic() < deadline, task
            time.sleep(0.05)
        assert task["status"] == "processing" and task["rows_read"] < 30_000, "the file must still be mid-way"
        (victim,) = worker_pids(service)
        os.kill(victim, signal.SIGKILL)
        done = server.wait_for(task_id, timeout=300)
        assert done["status"] == "completed", done
        assert done["attempts"] == 2
        assert done["rows_read"] == 30_000
        log = service.log()
        assert f"worker process {victim} exited" in log
        assert "resuming at line" in log
    finally:
        service.stop()
    assert stored_movies(tmp_path / "data") == expected_movies(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
def test_a_full_disk_fails_the_task_with_its_reason_and_keeps_the_batches_written_whole(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # 16 MB: the store's 8 MB reserve (app/store/sqlite/__init__.py) and 8 MB for the file
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)], check=True)
    try:
        path = tmp_path / "movies.csv"
        generate_movies(str(path), rows=40_000, seed=25)  # about 15 MB of movies: more than the 8 MB the file may take
        service = Service(tmp_path, WORKERS="1")
        server = service.start()
        try:
            status, _, body = server.upload(path, "movies.csv")
            assert status == 202
            task = server.wait_for(body["task_id"], timeout=300)
        finally:
            service.stop()
        assert task["status"] == "failed", task
        assert "disk is full" in task["error"] and "DATA_FOLDER" in task["error"]
        assert 0 < task["rows_inserted"] < 40_000
        stored = stored_movies(data)
        # The batches written are whole and in file order: the stored movies are the file's first ones, each as one
        # of its rows has it. The record's counts are those of its last progress, at most a batch behind.
        versions: dict[str, list] = {}
        for doc in cleaned_rows(path):
            versions.setdefault(doc["_id"], []).append(to_json(doc))
        assert set(stored) == set(list(versions)[: len(stored)])
        assert all(movie in versions[key] for key, movie in stored.items())
        assert task["rows_inserted"] <= len(stored) <= task["rows_inserted"] + 1000
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_the_file_is_this_services_and_holds_typed_columns_a_user_can_query(tmp_path):
    service = Service(tmp_path)
    server = service.start()
    try:
        status, _, body = server.upload(SAMPLE_MOVIES, "movies.csv")
        assert server.wait_for(body["task_id"])["status"] == "completed"
    finally:
        service.stop()
    with sqlite3.connect(tmp_path / "data" / "service.sqlite3") as conn:
        rows = conn.execute("SELECT title, year, vote_average FROM movies WHERE year = 1995 ORDER BY title LIMIT 2")
        assert rows.fetchall() == [("Father of the Bride Part II", 1995, 5.7), ("GoldenEye", 1995, 6.6)]
    assert json.dumps(stored_movies(tmp_path / "data"), sort_keys=True) == json.dumps(
        expected_movies(SAMPLE_MOVIES), sort_keys=True
    )
