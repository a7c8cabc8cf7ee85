"""Real processes, as production runs them: the API (`python run.py`: gunicorn + the ZeroMQ broker it
spawns) and `python worker.py` workers, over real ZeroMQ TCP sockets, all sharing one MongoDB.

The MongoDB is a real server, the session's FerretDB (tests/support/ferretdb.py); every process gets
`MONGO_URI=<its uri>` and a database of its own per test. Workers are killed with
SIGKILL mid-file (the next worker takes over when the lease runs out and resumes at the checkpoint) or
stopped with SIGTERM (the task is handed back, pending, with its checkpoint).

Every process runs in a process group of its own, logs to a file under the test's tmp_path, and is
killed in teardown; the logs' tails are part of every failure message and printed at teardown.
"""

from __future__ import annotations

import csv
import http.client
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pymongo
import pytest

from app.api import keys
from moviecat.generate import generate_movies
from tests.conftest import REPO, free_port
from tests.support import ferretdb as ferretdb_support
from tests.support.ferretdb import FerretDB
from tests.support.reference import clean_row, load
from tests.support.service import Server

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

LOG_TAIL = 3000  # characters of each process's log shown with a failure
FINISHED = ("completed", "failed", "cancelled")

# Short leases and sweeps, so a dead worker's task is taken over within a few seconds.
FAST = {
    "LEASE_SECONDS": "3",
    "RECOVERY_SECONDS": "1",
    "HEARTBEAT_SECONDS": "1",
    "WORKER_TIMEOUT": "3",
    "INGEST_HELPER_MIN_MB": "0",
}  # every movie file through the helper process, as big files go


# -- processes ------------------------------------------------------------------------------------------


class Proc:
    """A child process in a process group of its own, its stdout and stderr in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_path: Path):
        self.name, self.log_path = name, log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # the group: run.py's broker and gunicorn children go with it
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def state(self) -> str:
        code = self.popen.poll()
        return "running" if code is None else f"exit code {code}"

    def tail(self, chars: int = LOG_TAIL) -> str:
        text = self.text()
        return text if len(text) <= chars else "…" + text[-chars:]


class Cluster:
    """The API and any number of workers on one database, with the helpers the tests drive them by."""

    def __init__(self, server: FerretDB, tmp_path: Path, **settings: str):
        self.tmp_path = tmp_path
        self.upload_dir = tmp_path / "uploads"
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True)
        self.port = free_port()
        self.db_name = f"procs_{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "MONGO_URI": server.uri,
            "MONGO_DB": self.db_name,
            "REDIS_URL": "",  # whatever a .env says
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "ZMQ_HOST": "127.0.0.1",
            "ZMQ_PORT": str(free_port()),
            "ZMQ_INTAKE_PORT": str(free_port()),
            "UPLOAD_FOLDER": str(self.upload_dir),
            "RESULT_FOLDER": str(tmp_path / "results"),
            "WEB_CONCURRENCY": "1",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "RATE_LIMIT_PER_MINUTE": "0",  # the soak polls hard
            **ferretdb_support.SERVICE_SETTINGS,
            **FAST,
            **settings,
        }
        self.client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=10_000)
        self.db = self.client[self.db_name]
        _, secret = keys.create(self.db, "cluster tests", "admin")  # as `python -m app.tools.keys create` would
        self.http = Server(self.port, key=secret)
        self.procs: list[Proc] = []
        self._lock = threading.Lock()  # the soak's chaos thread starts processes too
        self._workers = 0

    # -- starting and stopping ---------------------------------------------------------------------
    def spawn(self, name: str, *args: str) -> Proc:
        with self._lock:
            proc = Proc(name, list(args), self.env, self.log_dir / f"{name}.log")
            self.procs.append(proc)
        return proc

    def start_api(self, timeout: float = 60) -> Proc:
        """`python run.py`, up once it answers /health and its broker has bound both ZeroMQ sockets."""
        api = self.spawn("api", "run.py")
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _, body = self.http.request("GET", "/api/v1/health")
                # run.py does not watch its broker: a broker that failed to bind dies quietly.
                if status == 200 and body["mongo"] == "ok" and "broker: intake" in api.text():
                    return api
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if not api.alive() or "Traceback" in api.text() or time.monotonic() > deadline:
                raise AssertionError(f"the API did not come up within {timeout} s ({api.state()})\n{self.logs()}")
            time.sleep(0.2)

    def start_worker(self) -> Proc:
        with self._lock:
            self._workers += 1
            n = self._workers
        return self.spawn(f"worker-{n}", "worker.py")

    def workers(self) -> list[Proc]:
        with self._lock:
            return [p for p in self.procs if p.name.startswith("worker-")]

    def owner(self, task: dict) -> Proc:
        """The worker process a task's `worker` field ("<host>.<pid>.<hex>") names."""
        pid = int(task["worker"].rsplit(".", 2)[1])
        found = [p for p in self.workers() if p.pid == pid]
        assert found, f"task {task['task_id']} is held by {task['worker']}, none of our workers\n{self.logs()}"
        return found[0]

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.signal(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.client.close()

    # -- looking on --------------------------------------------------------------------------------
    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.pid}, {p.state()}): {p.log_path} -----\n{p.tail()}" for p in list(self.procs)
        )

    def wait_for(self, what: str, check, timeout: float, interval: float = 0.1):
        """Poll `check()` until it returns something truthy; fail with the logs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")
            time.sleep(interval)

    def task(self, task_id: str) -> dict:
        return self.db.processes.find_one({"task_id": task_id})

    def upload(self, path: Path) -> str:
        status, _, body = self.http.upload(path, path.name)
        assert status == 202, (status, body)
        return body["task_id"]

    def get(self, url: str) -> tuple[int, dict]:
        try:
            status, _, body = self.http.request("GET", url)
        except (OSError, http.client.HTTPException) as e:
            raise AssertionError(f"GET {url}: {type(e).__name__}: {e}\n{self.logs()}") from None
        return status, body

    def movies(self) -> dict:
        stored: dict = {}
        duplicates = []
        for doc in self.db.movies.find():
            if doc["_id"] in stored:
                duplicates.append(doc["_id"])
            stored[doc["_id"]] = doc
        assert duplicates == [], f"movies stored twice: {duplicates[:5]}"
        return stored


@pytest.fixture
def start_cluster(ferretdb, tmp_path):
    made: list[Cluster] = []

    def start(**settings: str) -> Cluster:
        cluster = Cluster(ferretdb, tmp_path / f"cluster{len(made)}", **settings)
        made.append(cluster)
        return cluster

    yield start
    for cluster in made:
        cluster.close()
        print(cluster.logs())  # pytest shows it with a failure


def assert_same_documents(stored: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    assert not missing and not extra, (
        f"{len(missing)} missing, e.g. {missing[:3]}; {len(extra)} extra, e.g. {extra[:3]}"
    )
    mismatched = [i for i, doc in expected.items() if stored[i] != doc]
    assert mismatched == [], (len(mismatched), mismatched[:3], [(stored[i], expected[i]) for i in mismatched[:1]])


def mid_file(cluster: Cluster, task_id: str, total_rows: int, least: float):
    """The task once it is processing with at least `least` of its rows behind a checkpoint."""

    def check():
        task = cluster.task(task_id)
        if task is None:
            return None
        assert task["status"] not in FINISHED, (
            f"task {task_id} was {task['status']} before the test could interrupt it; make the file larger\n"
            f"{cluster.logs()}"
        )
        checkpoint = task.get("checkpoint")
        if task["status"] == "processing" and checkpoint and checkpoint["rows_read"] >= least * total_rows:
            return task
        return None

    return cluster.wait_for(f"task {task_id} to be {least:.0%} through its file", check, timeout=60, interval=0.05)


def started_lines(proc: Proc, task_id: str) -> list[str]:
    return [line for line in proc.text().splitlines() if f"task {task_id}: started" in line]


# -- the tests --------------------------------------------------------------------------------------------

# FerretDB 1.24 finds an upsert's movie by scanning the collection (its `_id` index goes unused), so
# writes slow down as the collection grows: files here are small enough to stay in seconds.
ROWS = 1_200
BATCH = 50


def test_worker_killed_mid_file_another_finishes_from_the_checkpoint(start_cluster, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=ROWS, seed=11)
    expected = load(path)
    cluster = start_cluster(BATCH_SIZE=str(BATCH), MAX_ATTEMPTS="3")
    cluster.start_api()
    workers = [cluster.start_worker(), cluster.start_worker()]
    cluster.wait_for("both workers' heartbeats", lambda: cluster.db.workers.count_documents({}) == 2, timeout=60)

    task_id = cluster.upload(path)
    task = mid_file(cluster, task_id, ROWS, least=0.2)
    victim = cluster.owner(task)
    victim.kill()
    survivor = next(w for w in workers if w is not victim)
    task = cluster.task(task_id)  # as the killed worker left it: the survivor goes on from here
    checkpoint = task["checkpoint"]
    assert task["status"] == "processing" and task["attempts"] == 1, task
    assert 2 < checkpoint["line"] and checkpoint["rows_read"] < expected["rows_read"], checkpoint
    assert survivor.alive(), cluster.logs()

    done = cluster.wait_for(
        f"task {task_id} to finish", lambda: (t := cluster.task(task_id))["status"] in FINISHED and t, timeout=60
    )
    assert done["status"] == "completed", (done, cluster.logs())
    assert done["attempts"] == 2, done
    assert cluster.owner(done) is survivor

    # The survivor took over when the lease ran out and resumed at the checkpoint, not at line 2.
    taken = started_lines(survivor, task_id)
    assert len(taken) == 1 and "attempt 2" in taken[0], (taken, survivor.tail())
    assert re.search(rf"resuming at line {checkpoint['line']}\)", taken[0]), (checkpoint["line"], taken)
    assert "resuming" not in started_lines(victim, task_id)[0]

    # Every movie exactly once, with the reference's contents; the counters as if one attempt ran.
    assert_same_documents(cluster.movies(), expected["documents"])
    assert done["rows_read"] == expected["rows_read"]
    assert done["rows_rejected"] == len(expected["rejects"]) and done["rejects"] == expected["rejects"][:100]
    # The counters went on from the checkpoint's: every valid row counted once, none twice, none lost.
    assert done["rows_inserted"] + done["rows_updated"] == expected["valid"]
    assert done["percent"] == 100.0 and done["bytes_read"] == path.stat().st_size
    assert "checkpoint" not in done and "lease_expires_at" not in done

    status, public = cluster.get(f"/api/v1/process/{task_id}")
    assert status == 200 and public["status"] == "completed" and public["attempts"] == 2
    assert not os.path.exists(done["path"]) and list(cluster.upload_dir.iterdir()) == []


def test_sigterm_hands_the_task_back_and_exits_zero(start_cluster, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=ROWS, seed=12)
    expected = load(path)
    # No sweep for 30 s after the worker's first: the upload can only reach it as a ZeroMQ message.
    cluster = start_cluster(BATCH_SIZE=str(BATCH), MAX_ATTEMPTS="3", RECOVERY_SECONDS="30")
    cluster.start_api()
    first = cluster.start_worker()
    cluster.wait_for("the worker's heartbeat", lambda: cluster.db.workers.count_documents({}) == 1, timeout=60)
    time.sleep(1.5)  # its first sweep (one receive timeout after the first heartbeat) is behind it

    task_id = cluster.upload(path)
    cluster.wait_for(
        f"the worker to claim task {task_id} on its ZeroMQ message",
        lambda: cluster.task(task_id)["status"] != "pending",
        timeout=10,
        interval=0.05,
    )
    mid_file(cluster, task_id, ROWS, least=0.1)
    first.signal(signal.SIGTERM)
    try:
        code = first.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not exit within 5 s of SIGTERM\n{cluster.logs()}") from None
    assert code == 0, cluster.logs()
    assert "handed back at its last checkpoint (worker stopping)" in first.text(), first.tail()

    task = cluster.task(task_id)  # the raw record, checkpoint and all
    assert task["status"] == "pending" and task["attempts"] == 0, task
    assert "worker" not in task and "lease_expires_at" not in task, task
    checkpoint = task["checkpoint"]
    assert checkpoint["line"] > 2 and 0 < checkpoint["rows_read"] < expected["rows_read"], checkpoint
    assert task["rows_read"] == checkpoint["rows_read"]
    assert os.path.exists(task["path"])  # kept for the next worker
    assert cluster.db.workers.count_documents({}) == 0  # a clean exit takes its heartbeat record along

    second = cluster.start_worker()
    done = cluster.wait_for(
        f"task {task_id} to finish", lambda: (t := cluster.task(task_id))["status"] in FINISHED and t, timeout=60
    )
    assert done["status"] == "completed" and done["attempts"] == 1, (done, cluster.logs())
    assert cluster.owner(done) is second
    taken = started_lines(second, task_id)
    assert len(taken) == 1 and f"resuming at line {checkpoint['line']})" in taken[0], (checkpoint, taken)
    assert_same_documents(cluster.movies(), expected["documents"])
    assert done["rows_read"] == expected["rows_read"] and done["rows_rejected"] == len(expected["rejects"])
    assert done["rows_inserted"] + done["rows_updated"] == expected["valid"]
    assert not os.path.exists(task["path"])


# -- the soak ---------------------------------------------------------------------------------------------

SOAK_SECONDS = 100  # the whole test, start-up included, is bounded
SOAK_UPLOADS, SOAK_CLIENTS = 20, 4
SOAK_MASTER_ROWS, SOAK_FILE_ROWS = 1_000, 200
CHAOS_SECONDS = 15  # workers come and go this long at most; then the survivors finish the work
MAX_WORKERS = 3


def csv_records(path: Path):
    """(header text, [(fields, raw text)]): each record exactly as written, embedded newlines and all."""
    with open(path, encoding="utf-8", newline="") as f:
        raw: list[str] = []

        def lines():
            for line in f:
                raw.append(line)
                yield line

        reader = csv.reader(lines())
        header = next(reader)
        header_text = "".join(raw)
        raw.clear()
        records = []
        for fields in reader:
            records.append((fields, "".join(raw)))
            raw.clear()
    return header, header_text, records


def overlapping_files(directory: Path, rng: random.Random) -> list[Path]:
    """SOAK_UPLOADS files, each a random subset of the rows of one master file in which no movie appears
    twice: a movie is in several files, always with the same contents, so the final state is known
    whatever order the files are ingested in."""
    master = directory / "master.csv"
    generate_movies(str(master), rows=SOAK_MASTER_ROWS, seed=rng.randrange(1 << 30))
    header, header_text, records = csv_records(master)
    names = [name.strip() for name in header]
    seen, unique = set(), []
    for fields, text in records:
        row = dict(zip(names, fields))
        if len(fields) == len(names) and row["title"].strip():
            movie_id = clean_row(row)["_id"]
            if movie_id in seen:
                continue  # the generator's deliberate duplicates, with other contents: keep the first only
            seen.add(movie_id)
        unique.append(text)
    paths = []
    for n in range(SOAK_UPLOADS):
        chosen = sorted(rng.sample(range(len(unique)), SOAK_FILE_ROWS))
        path = directory / f"soak-{n:02d}.csv"
        path.write_text(header_text + "".join(unique[i] for i in chosen), encoding="utf-8", newline="")
        paths.append(path)
    return paths


@pytest.mark.soak
def test_soak_uploads_while_workers_come_and_go(start_cluster, tmp_path):
    began = time.monotonic()
    deadline = began + SOAK_SECONDS
    seed = int(os.environ.get("SOAK_SEED") or random.randrange(1 << 32))
    print(f"soak seed {seed} (rerun with SOAK_SEED={seed})")
    rng = random.Random(seed)
    paths = overlapping_files(tmp_path, rng)
    expected: dict = {}
    references = {}
    for path in paths:
        references[path.name] = ref = load(path)
        for movie_id, doc in ref["documents"].items():
            assert expected.setdefault(movie_id, doc) == doc, f"{movie_id} differs between files"
    total_rows = sum(ref["valid"] for ref in references.values())
    assert len(expected) < total_rows  # the files overlap

    cluster = start_cluster(BATCH_SIZE="50", MAX_ATTEMPTS="20")
    api = cluster.start_api()
    cluster.start_worker()
    cluster.start_worker()

    # Four clients upload five files each, a little apart, while workers are started and killed.
    uploaded: dict[str, str] = {}  # task_id → file name
    errors: list[str] = []
    mine = [paths[i::SOAK_CLIENTS] for i in range(SOAK_CLIENTS)]
    pauses = [[rng.uniform(0, 1.0) for _ in files] for files in mine]

    def client(files, waits):
        try:
            for path, pause in zip(files, waits):
                time.sleep(pause)
                task_id = cluster.upload(path)
                with cluster._lock:
                    uploaded[task_id] = path.name
        except Exception as e:  # reported by the main thread
            errors.append(f"{type(e).__name__}: {e}")

    stop_chaos = threading.Event()
    chaos_rng = random.Random(rng.random())
    events: list[str] = []
    kills = {"busy": 0, "idle": 0}

    def chaos():
        try:
            # Until a kill has landed mid-file, look often: a 200-row file is part-done for tens of milliseconds.
            while not stop_chaos.wait(chaos_rng.uniform(0.3, 1.0) if kills["busy"] else 0.05):
                alive = [w for w in cluster.workers() if w.alive()]
                # Busy: part way through a file (a checkpoint is written and the task is not done).
                busy_pids = {
                    int(t["worker"].rsplit(".", 2)[1])
                    for t in cluster.db.processes.find(
                        {"status": "processing", "checkpoint": {"$exists": True}}, {"worker": 1}
                    )
                }
                busy = [w for w in alive if w.pid in busy_pids]
                if not kills["busy"] and not busy and alive and chaos_rng.random() < 0.9:
                    continue  # mostly wait for a worker part way through a file, as the fast look would kill too often
                first_kill = busy and not kills["busy"]  # make sure at least one kill lands mid-file
                if not first_kill and (not alive or (len(alive) < MAX_WORKERS and chaos_rng.random() < 0.5)):
                    events.append(f"start {cluster.start_worker().name}")
                    continue
                pool = busy if busy and (first_kill or chaos_rng.random() < 0.75) else alive
                victim = pool[chaos_rng.randrange(len(pool))]
                victim.kill()
                kills["busy" if victim in busy else "idle"] += 1
                events.append(f"kill {victim.name}{' (busy)' if victim in busy else ''}")
        except Exception as e:
            errors.append(f"chaos: {type(e).__name__}: {e}")

    clients = [
        threading.Thread(target=client, args=(files, waits), name=f"client-{n}")
        for n, (files, waits) in enumerate(zip(mine, pauses))
    ]
    chaos_thread = threading.Thread(target=chaos, name="chaos")
    chaos_thread.start()
    for t in clients:
        t.start()
    try:
        for t in clients:
            t.join(timeout=max(deadline - time.monotonic(), 1))
        assert not errors and len(uploaded) == SOAK_UPLOADS, (errors, len(uploaded), cluster.logs())

        def settled():
            return cluster.db.processes.count_documents({"status": {"$in": list(FINISHED)}}) == SOAK_UPLOADS

        chaos_end = began + CHAOS_SECONDS
        while time.monotonic() < chaos_end and not settled():
            time.sleep(0.25)
    finally:
        stop_chaos.set()
        chaos_thread.join(timeout=15)
    assert not errors, errors
    print("chaos:", ", ".join(events))

    # The survivors, and a fresh worker if there are too few, finish the work.
    for _ in range(2 - sum(w.alive() for w in cluster.workers())):
        cluster.start_worker()
    cluster.wait_for(
        f"every task to finish (seed {seed})", settled, timeout=max(deadline - time.monotonic(), 1), interval=0.25
    )

    assert api.alive(), f"the API died\n{cluster.logs()}"
    failures = []
    retaken = 0
    for task_id, name in uploaded.items():
        status, task = cluster.get(f"/api/v1/process/{task_id}")
        ref = references[name]
        if status != 200 or task["status"] != "completed":
            failures.append((name, status, task))
            continue
        retaken += task["attempts"] > 1
        counts = (task["rows_read"], task["rows_rejected"], task["rows_inserted"] + task["rows_updated"])
        if counts != (ref["rows_read"], len(ref["rejects"]), ref["valid"]) or task["rejects"] != ref["rejects"][:100]:
            failures.append((name, counts, (ref["rows_read"], len(ref["rejects"]), ref["valid"])))
    assert failures == [], (f"seed {seed}", failures[:3], cluster.logs())
    assert kills["busy"] >= 1 and retaken >= 1, (f"seed {seed}: no worker died mid-task", events)

    assert cluster.db.movies.count_documents({}) == len(expected), f"seed {seed}"
    assert_same_documents(cluster.movies(), expected)

    # An upload's file goes once its task is done; only a worker killed between recording the task's
    # completion and removing the file can leave it behind.
    killed = {w.pid for w in cluster.workers() if not w.alive()}
    for leftover in cluster.upload_dir.iterdir():
        task = cluster.db.processes.find_one({"path": str(leftover)})
        assert task is not None and int(task["worker"].rsplit(".", 2)[1]) in killed, (leftover, task)
    print(
        f"soak: {len(expected)} movies from {total_rows} valid rows in {SOAK_UPLOADS} files; "
        f"kills {kills}; {retaken} tasks retaken; {time.monotonic() - began:.1f} s"
    )
    assert time.monotonic() - began < SOAK_SECONDS + 5
