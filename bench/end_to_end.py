"""From upload to browsable, on every store: the real service beside a baseline a user could pick instead.

    python bench/end_to_end.py                                  (10, 50 and 200 MiB; every store it can start)
    python bench/end_to_end.py --size-mb 1 --stores embedded,ferretdb
    python bench/end_to_end.py --size-mb 1024 --stores embedded --time-limit 1500 --workdir /tmp

For each file size a movie file is generated (moviecat/generate.py; not timed) and, for each store:

  embedded             `python run.py` with MONGO_URI unset, as `make run`: the SQLite file in DATA_FOLDER (in
                       the run's folder), gunicorn's arbiter and its one API process, the broker, and WORKERS
                       (`--workers`, default 1) `python worker.py` processes that run.py starts as its children.
  ferretdb             FerretDB 1.24 on SQLite (tests/support/ferretdb.py), a fresh server and data folder;
                       `python run.py` (API + broker) and `--workers` (default 2) separate `python worker.py`.
  ferretdb-postgresql  the same on PostgreSQL 15: a throwaway cluster (tests/support/postgres.py, Debian's
                       defaults, durable) under the same FerretDB.

The service: the file goes up over HTTP (curl -F, as a user would send it), and the clock runs until the
task is `completed` and the first `/api/v1/movies` page of each sort (release_date, rating, title) has
answered, uncached: "to browsable". Then, outside that figure, one filtered page (year=2000). The task's
own counters give the rows; `total_docs` of the first page the movies stored.

Embedded, then, on the full catalogue (still outside that figure, the processes still sampled for memory):
every filter (none, year=2020, language=en, both) x sort x order of /api/v1/movies, uncached (each query
string new to the cache): `--page-requests` first pages (limit=1..100) and `--deep-requests` deep pages
(limit=100 at offset 199,900 + i, page=2000's offset) each, over HTTP one at a time, p50/p99/max. Then a
restart: the service stopped (SIGTERM to its group, as Ctrl-C), started again on the same DATA_FOLDER, and the
task's record, the task list and four pages compared byte for byte; the key the first start printed must sign
in, and the second start must print none.

The baselines, once the service has stopped, so neither inherits the other's memory peak:
- embedded: `sqlite-utils insert <fresh.db> movies <file> --csv`, the tool a user would pick to get a CSV into
  SQLite (every column text, every row as it is, no index), then the same first pages asked of that file
  with Python's sqlite3 (count, ORDER BY field LIMIT 10). Its rows must be all of the file's (exit 1 if not).
  Its own target: sqlite-utils' insert time / the service's time to browsable >= 4 (issue 24).
- FerretDB stores: the original system's approach, in a Python process of its own, into a fresh server of the
  same build and settings: pyarrow's `read_csv` of the whole file (every column as text), 1000-row slices,
  `to_pylist`, each row cleaned in plain Python (tests/support/reference.py, the project's plain-Python
  statement of the service's cleaning rules), `insert_many(ordered=False)` into a collection with the
  service's indexes. Where it differs from the service: a movie repeated in the file keeps its first row (the
  duplicate-key error is counted and ignored; the service keeps the last), and its clock stops when the last
  batch is written (no browsing page asked). The count of stored movies must match the service's (exit 1 if
  not).

Printed per store and size: rows/s and MB/s (10^6 bytes of file) to browsable, the time to the first
browsable page, the peak RSS (VmHWM) of every process (API arbiter and worker, broker, each worker and its
ingest helper, FerretDB, sqlite-utils; PostgreSQL as the largest sum of PSS over its processes, sampled), the
ratio of the baseline's time to the service's (>= 1: the service is at least as fast), per store how the time
per MB grows from the smallest file to the largest, and the embedded store's page latencies, restart and
targets. A run that passes `--time-limit` seconds is stopped and shown as "did not finish in N s". The last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "bench" / "out"  # git-ignored
STORES = ("embedded", "ferretdb", "ferretdb-postgresql")
SORTS = ("release_date", "rating", "title")  # the API's sorts (release_date is also its default)
FILTERED = "?year=2000&sort_by=rating&order=-1"  # one filtered page, after browsable: not in the time
# Embedded, on the full catalogue: every filter x sort x order of /api/v1/movies. 2020: a common year (the
# generator skews release dates towards recent years).
FILTERS = (("none", ""), ("year=2020", "year=2020&"), ("language=en", "language=en&"),
           ("year+language", "year=2020&language=en&"))  # fmt: skip
FILTER_WIDTH = max(len(name) for name, _ in FILTERS)
MAX_LIMIT = 100  # the API's largest page
DEEP_OFFSET = 199_900  # page=2000 with limit=100
RESTART_PAGES = ("sort_by=release_date", "sort_by=rating&order=-1&year=2020", "sort_by=title&language=en&limit=100",
                 f"sort_by=title&order=-1&limit=100&offset={DEEP_OFFSET}")  # fmt: skip
PAGE_P99_TARGET_MS = 50
BROWSABLE_TARGET_S, RSS_TARGET_MB, SQLITE_UTILS_TARGET = 120, 500, 4.0  # at 1 GB (issue 24)
SLICE_ROWS = 1000  # the original system's batch
RATIO_TARGET, RATIO_AIM = 1.0, 2.0
GROWTH_TARGET = 1.5  # time per MB, largest file over smallest, on FerretDB
SERVICE_DB, BASELINE_DB = "bench_e2e", "bench_e2e_baseline"
MB = 1e6


# -- the baseline: the original system's approach, in a process of its own ----------------------------------


def original_load(path: str, collection) -> dict:
    """Whole read_csv, 1000-row slices, to_pylist, per-row cleaning in plain Python, insert_many."""
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv
    from pymongo.errors import BulkWriteError

    from tests.support.reference import clean_row

    with open(path, encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f))
    skipped = []

    def bad_row(row) -> str:  # a row with the wrong number of fields: skipped, as the service rejects it
        skipped.append(row.number)
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=bad_row),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
        ),
    )
    names = [h.strip() for h in header]
    inserted = duplicates = rejected = 0
    for start in range(0, table.num_rows, SLICE_ROWS):
        docs = []
        for row in table.slice(start, SLICE_ROWS).to_pylist():
            row = dict(zip(names, row.values()))
            if not (row.get("title") or "").strip():
                rejected += 1
                continue
            docs.append(clean_row(row))
        if not docs:
            continue
        try:
            inserted += len(collection.insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as e:
            errors = e.details["writeErrors"]
            if any(err["code"] != 11000 for err in errors):
                raise
            duplicates += len(errors)
            inserted += e.details["nInserted"]
    return {
        "rows": table.num_rows + len(skipped),
        "inserted": inserted,
        "duplicates": duplicates,
        "rejected": rejected + len(skipped),
    }


def baseline_child(path: str, uri: str) -> dict:
    import pymongo

    from app.store import mongo

    db = pymongo.MongoClient(uri)[BASELINE_DB]
    mongo.ensure_indexes(db)  # the same indexes as the service's collection, before the clock starts
    start = time.perf_counter()
    result = original_load(path, db.movies)
    result["completed_s"] = time.perf_counter() - start
    result["page_s"] = {sort: first_page(db.movies, sort) for sort in SORTS}
    result["seconds"] = time.perf_counter() - start
    result["stored"] = db.movies.count_documents({})
    result["peak_rss_mb"] = rss_mb(os.getpid())
    return result


def _rows_committed(db: Path) -> int:
    """The rows a stopped sqlite-utils had committed: what it stored in the time the service had."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM movies").fetchone()[0]
    except sqlite3.Error:
        return 0  # the table was not made yet


def sqlite_utils_load(path: Path, workdir: Path, time_limit: float, peaks: Peaks) -> dict:
    """The embedded store's baseline: `sqlite-utils insert <fresh.db> movies <file> --csv`, timed, then the first
    page of each sort asked of that file with Python's sqlite3 (the count, then ORDER BY <field> LIMIT 10: no
    index, every column text, as the tool leaves it). Its process's peak RSS is sampled."""
    import sqlite3

    from app.store import movies as catalogue

    db = workdir / "sqlite-utils.db"
    tool = Path(sys.executable).with_name("sqlite-utils")
    start = time.perf_counter()
    proc = subprocess.Popen([str(tool), "insert", str(db), "movies", str(path), "--csv"], stdout=subprocess.DEVNULL)
    peaks.watch("sqlite-utils", proc.pid)
    try:
        proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"finished": False, "status": "running", "rows_read": _rows_committed(db)}
    if proc.returncode != 0:
        return {"finished": False, "status": f"sqlite-utils exited {proc.returncode}"}
    completed = time.perf_counter() - start
    pages = {}
    with sqlite3.connect(db) as conn:
        for sort in SORTS:
            t = time.perf_counter()
            conn.execute("SELECT count(*) FROM movies").fetchone()
            conn.execute(f"SELECT * FROM movies ORDER BY {catalogue.SORT_FIELDS[sort]} LIMIT 10").fetchall()
            pages[sort] = time.perf_counter() - t
        seconds = time.perf_counter() - start
        stored = conn.execute("SELECT count(*) FROM movies").fetchone()[0]
    return {
        "finished": True,
        "completed_s": completed,
        "seconds": seconds,
        "page_s": pages,
        "rows": stored,  # every row of the file, as read
        "stored": stored,
        "db_mb": db.stat().st_size / MB,
    }


def first_page(collection, sort: str) -> float:
    """The queries the API makes for a first page (app/api/routes/movies.py), straight to the store: seconds."""
    from app.store import movies

    t = time.perf_counter()
    collection.estimated_document_count()
    list(collection.find({}).sort(movies.sort_spec(sort, 1)).limit(10))
    return time.perf_counter() - t


# -- processes and their memory -------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident memory, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _role(root_label: str, proc, is_root: bool, names: dict[int, str]) -> str:
    """A label for a process of a tree: the API's gunicorn arbiter (run.py), its gunicorn worker, the broker,
    each `worker.py` run.py started (embedded: worker-1, worker-2, ... in the order seen) and each worker's
    ingest helper (`<worker> helper`). `names` holds the labels given so far to the tree's worker.py processes."""
    if is_root:
        return f"{root_label} (arbiter)" if root_label == "api" else root_label
    if root_label != "api":  # a worker.py of its own (FerretDB stores): its ingest helper
        return f"{root_label} helper"
    cmdline = " ".join(proc.cmdline())
    if "app.broker" in cmdline:
        return "broker"
    if "app.jobs.helper" in cmdline:
        return f"{_worker_name(proc.ppid(), names)} helper"
    if cmdline.endswith("worker.py"):
        return _worker_name(proc.pid, names)
    return "api (worker)"


def _worker_name(pid: int, names: dict[int, str]) -> str:
    if pid not in names:  # a replaced worker gets the next number
        names[pid] = f"worker-{len(names) + 1}"
    return names[pid]


class Peaks:
    """Samples, every `every` s, the peak RSS of each process of the watched trees, by role; for trees watched
    with `pss=True` (PostgreSQL's many processes sharing their buffers) the largest sum of PSS instead."""

    def __init__(self, every: float = 0.2):
        self.every = every
        self.roots: dict[str, tuple[int, bool]] = {}
        self.mb: dict[str, float] = {}
        self.names: dict[int, str] = {}  # worker.py processes found in the trees, by pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, label: str, pid: int | None, pss: bool = False) -> None:
        if pid:
            self.roots[label] = (pid, pss)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        import psutil

        for label, (pid, pss) in list(self.roots.items()):
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            total = 0.0
            for proc in procs:
                try:
                    if pss:
                        total += pss_mb(proc.pid)
                    else:
                        role = _role(label, proc, proc.pid == pid, self.names)
                        self.mb[role] = max(self.mb.get(role, 0.0), rss_mb(proc.pid))
                except (OSError, psutil.Error):
                    pass  # it just exited
            if pss:
                self.mb[f"{label} (PSS)"] = max(self.mb.get(f"{label} (PSS)", 0.0), total)


class Workers:
    """`python worker.py` processes, each in a process group of its own, logging to files."""

    def __init__(self, env: dict, log_dir: Path):
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self, n: int) -> list[subprocess.Popen]:
        for i in range(1, n + 1):
            with open(self.log_dir / f"worker-{i}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "worker.py"],
                        cwd=REPO,
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        return self.procs

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


# -- one run: one store, one file -----------------------------------------------------------------------------


class Stores:
    """Starts the database servers a store needs, fresh for each run (their memory is that run's)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def start(self, store: str, stack: ExitStack, peaks: Peaks) -> str:
        """The MONGO_URI the service gets ("" for embedded); the servers stop when `stack` closes."""
        if store == "embedded":
            return ""
        from tests.support.ferretdb import FerretDB
        from tests.support.postgres import PostgreSQL

        url = None
        if store == "ferretdb-postgresql":
            pg = stack.enter_context(PostgreSQL())
            peaks.watch("postgres", pg.pid, pss=True)
            url = pg.url
        root = Path(tempfile.mkdtemp(prefix=f"{store}-", dir=self.workdir))
        ferret = stack.enter_context(FerretDB(root, postgresql_url=url))
        peaks.watch("ferretdb", ferret.pid)
        return ferret.uri


def run_service(store: str, uri: str, path: Path, workdir: Path, args, peaks: Peaks, stack: ExitStack) -> dict:
    from tests.support import ferretdb as ferretdb_support
    from tests.support.service import Service

    settings = {"LOG_LEVEL": "WARNING"}
    if uri:
        import pymongo

        from app.api import keys

        settings.update(ferretdb_support.SERVICE_SETTINGS)
        settings.update(MONGO_URI=uri, MONGO_DB=SERVICE_DB, SECRET_KEY=secrets.token_urlsafe(32))
        client = stack.enter_context(pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000))
        _, secret = keys.create(client[SERVICE_DB], "bench", "admin")  # as `python -m app.tools.keys create`
        settings["WORKERS"] = "0"  # not used with MONGO_URI; tells Service.start not to wait for one
    else:  # embedded: run.py starts WORKERS worker.py processes of its own, on DATA_FOLDER=workdir/data
        settings["WORKERS"] = str(workers_for(store, args))
    service = Service(workdir, **settings)
    stack.callback(service.stop)  # before start: a SIGTERM while it starts must stop it too
    http = service.start()
    peaks.watch("api", service.proc.pid)  # run.py: gunicorn's arbiter, with every other process under it
    if uri:
        http.key = secret
        workers = Workers(service.env, workdir)
        stack.callback(workers.stop)
        for i, proc in enumerate(workers.start(workers_for(store, args)), 1):
            peaks.watch(f"worker-{i}", proc.pid)
        wait_for_workers(http, timeout=60)
    result = drive(http, path, args.time_limit)
    if not uri and result["finished"]:  # on the full catalogue, the service still watched for its memory
        result["latency"] = page_latency(http, args.page_requests, args.deep_requests)
        result["restart"] = restart(service, http, result["task_id"], stack)
    return result


def workers_for(store: str, args) -> int:
    return args.workers if args.workers is not None else (1 if store == "embedded" else 2)


# -- the embedded store on its full catalogue: page latency, then a restart -----------------------------------


def page_queries() -> list[tuple[dict, str]]:
    """(what, query) for every filter x sort x order the API offers."""
    return [
        ({"filter": name, "sort_by": sort, "order": order}, f"{where}sort_by={sort}&order={order}")
        for name, where in FILTERS
        for sort in SORTS
        for order in (1, -1)
    ]


def page_latency(http, first: int, deep: int) -> dict:
    """Every filter x sort x order, uncached: `first` first pages (offset=0, limit=1..100, one per value: each query
    string is new to the cache, and a page of up to 100 movies at least as dear as the default 10), and `deep` pages
    at offset 199,900 + i with limit=100 (page=2000 is offset 199,900), over HTTP, one request at a time, the
    combinations interleaved. Milliseconds, as a client sees them; total_docs of each combination."""
    queries = page_queries()
    times = [{"first": [], "deep": []} for _ in queries]
    totals = [0] * len(queries)
    for kind, n, extra in (
        ("first", first, lambda i: f"&limit={i % MAX_LIMIT + 1}&offset=0"),  # offset=0: not drive()'s page=1 keys
        ("deep", deep, lambda i: f"&limit={MAX_LIMIT}&offset={DEEP_OFFSET + i}"),
    ):
        for i in range(n):
            for q, (_, query) in enumerate(queries):
                elapsed, body = timed_page(http, f"?{query}{extra(i)}")
                times[q][kind].append(elapsed * 1000)
                totals[q] = body["total_docs"]
    return {
        "per_query": [
            {
                **what,
                "total_docs": totals[q],
                "first": percentiles(times[q]["first"]),
                "deep": percentiles(times[q]["deep"]),
            }
            for q, (what, _) in enumerate(queries)
        ],
        "first": percentiles([t for kinds in times for t in kinds["first"]]),
        "deep": percentiles([t for kinds in times for t in kinds["deep"]]),
    }


def percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    if not ms:
        return {"n": 0}
    at = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731  nearest rank, no interpolation
    return {"n": len(ms), "p50": round(at(0.50), 2), "p99": round(at(0.99), 2), "max": round(ms[-1], 2)}


def restart(service, http, task_id: str, stack: ExitStack) -> dict:
    """Stop the service (SIGTERM to its group, as Ctrl-C), start it again on the same DATA_FOLDER, and compare
    the bytes of a few pages and of the task's record; the admin key the first start printed signs in."""
    from tests.support.service import Server, Service

    paths = [f"/api/v1/process/{task_id}", "/api/v1/processes"] + [f"/api/v1/movies?{query}" for query in RESTART_PAGES]
    before = {p: http.request("GET", p, raw=True) for p in paths}
    (service.log_path.parent / "server-1.log").write_text(service.stop())
    again = Service(service.log_path.parent, **{k: service.env[k] for k in ("LOG_LEVEL", "WORKERS")})
    stack.callback(again.stop)
    t = time.perf_counter()
    second = again.start()
    started = time.perf_counter() - t
    http2 = Server(again.port, key=http.key)  # the first start's key
    after = {p: http2.request("GET", p, raw=True) for p in paths}
    differ = [p for p in paths if (before[p][0], before[p][2]) != (after[p][0], after[p][2]) or after[p][0] != 200]
    again.stop()
    return {
        "identical": not differ,
        "compared": len(paths),
        "differ": differ,
        "key_works": all(after[p][0] == 200 for p in paths),
        "second_start_printed_key": second.key is not None,
        "start_s": round(started, 2),
    }


def wait_for_workers(http, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http.request("GET", "/api/v1/health")
        if status == 200 and body.get("worker") == "ok":
            return
        time.sleep(0.2)
    raise RuntimeError("no worker reported alive within {timeout} s")


def upload(http, path: Path) -> str:
    """curl -F, streamed from disk as a browser or a script would send it; the task's id."""
    out = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {http.key}", "-F", f"file=@{path};type=text/csv",
         f"{http.url}/api/v1/upload"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)["task_id"]


def drive(http, path: Path, time_limit: float) -> dict:
    """Upload, poll the task until it ends, then the first page of each sort; all timed from the upload."""
    start = time.perf_counter()
    task_id = upload(http, path)
    uploaded = time.perf_counter() - start
    while True:
        _, _, task = http.request("GET", f"/api/v1/process/{task_id}")
        if task["status"] in ("completed", "failed", "cancelled"):
            break
        if time.perf_counter() - start > time_limit:
            return {"finished": False, "status": task["status"], "rows_read": task.get("rows_read")}
        time.sleep(0.25)
    completed = time.perf_counter() - start
    if task["status"] != "completed":
        return {"finished": False, "status": task["status"], "error": str(task.get("error"))[:200]}
    pages = {}
    try:
        for sort in SORTS:
            # A page may take long on a big catalogue: it may use what is left of the run's time.
            http.timeout = max(5.0, time_limit - (time.perf_counter() - start))
            pages[sort], body = timed_page(http, f"?sort_by={sort}")
        browsable = time.perf_counter() - start
        pages["year=2000"], _ = timed_page(http, FILTERED)
    except TimeoutError:
        done = ", ".join(f"{k} {v:.1f} s" for k, v in pages.items())
        return {"finished": False, "status": f"completed in {completed:.0f} s; pages past {time_limit:g} s ({done})"}
    return {
        "finished": True,
        "status": "completed",
        "upload_s": uploaded,
        "completed_s": completed,
        "seconds": browsable,
        "page_s": pages,
        "rows": task["rows_read"],
        "inserted": task["rows_inserted"],
        "updated": task["rows_updated"],
        "stored": body["total_docs"],
        "task_id": task_id,
    }


def timed_page(http, query: str) -> tuple[float, dict]:
    """One uncached page (each query is asked once, so the cache has not seen it): seconds and body."""
    t = time.perf_counter()
    status, headers, body = http.request("GET", "/api/v1/movies" + query)
    assert status == 200 and headers.get("X-Cache") != "hit", (status, headers, body)
    return time.perf_counter() - t, body


def run_baseline(uri: str, path: Path, time_limit: float) -> dict:
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--baseline-one", str(path), uri],
            cwd=REPO, stdout=subprocess.PIPE, text=True, check=True, timeout=time_limit,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"finished": False, "status": "running"}
    result = json.loads(out.stdout.splitlines()[-1])
    result["finished"] = True
    return result


def measure(store: str, path: Path, workdir: Path, args) -> dict:
    """One store, one file: the service, then the baseline into the same server."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{store}-run-", dir=workdir))
    print(f"  {store}: the service...", flush=True)
    with ExitStack() as stack:
        peaks = stack.enter_context(Peaks())
        uri = Stores(run_dir).start(store, stack, peaks)
        try:
            service = run_service(store, uri, path, run_dir, args, peaks, stack)
        except Exception as e:  # a run that breaks is reported, the others still run
            service = {"finished": False, "status": f"error: {type(e).__name__}: {str(e)[:300]}"}
        stack.close()  # stop the service before the baseline: the baseline has the server to itself
        service["peaks"] = dict(peaks.mb)
        if not service["finished"]:
            print(f"    did not finish: {service['status']}", flush=True)
    print(f"  {store}: the baseline...", flush=True)
    with ExitStack() as stack:
        peaks = stack.enter_context(Peaks())
        if store == "embedded":
            baseline = sqlite_utils_load(path, run_dir, args.time_limit, peaks)
        else:
            uri = Stores(run_dir).start(store, stack, peaks)
            baseline = run_baseline(uri, path, args.time_limit)
    baseline["peaks"] = dict(peaks.mb)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"store": store, "service": service, "baseline": baseline}


# -- the report -------------------------------------------------------------------------------------------------


def figures(run: dict, size: int) -> dict:
    """Rates and ratios, for the table and the JSON line. Rates run to `completed` (every movie stored);
    `browsable_s` adds the first page of each sort; the ratios are the baseline's time over the service's."""
    s, b = run["service"], run["baseline"]
    out = {"store": run["store"], "size_mb": round(size / MB, 1)}
    for key, r in (("", s), ("baseline_", b)):
        if not r["finished"]:
            out[f"{key}status"] = r["status"]
            if "rows_read" in r:  # stopped at the time limit: how far it got (None: nothing counted yet)
                out[f"{key}rows_by_time_limit"] = r["rows_read"] or 0
            continue
        out.update(
            {
                f"{key}rows": r["rows"],
                f"{key}stored": r["stored"],
                f"{key}completed_s": round(r["completed_s"], 2),
                f"{key}browsable_s": round(r["seconds"], 2),
                f"{key}rows_s": round(r["rows"] / r["completed_s"]),
                f"{key}mb_s": round(size / MB / r["completed_s"], 3),
                f"{key}s_per_mb": round(r["seconds"] / (size / MB), 4),
                f"{key}page_ms": {k: round(v * 1000, 1) for k, v in r["page_s"].items()},
            }
        )
    if s["finished"]:
        out["upload_s"] = round(s["upload_s"], 2)
    if b["finished"] and "peak_rss_mb" in b:
        out["baseline_peak_rss_mb"] = round(b["peak_rss_mb"], 1)
    if s["finished"] and b["finished"]:
        out["ratio"] = round(b["seconds"] / s["seconds"], 2)
        out["ratio_stored"] = round(b["completed_s"] / s["completed_s"], 2)
        if run["store"] == "embedded":  # sqlite-utils keeps every row as it is: all of the file's rows, as read
            out["counts_match"] = b["stored"] == s["rows"]
            out["sqlite_utils_ratio"] = round(b["completed_s"] / s["seconds"], 2)  # its insert / service browsable
        else:
            out["counts_match"] = s["stored"] == b["stored"]
    for key in ("latency", "restart"):
        if key in s:
            out[key] = s[key]
    out["service_peaks_mb"] = {k: round(v, 1) for k, v in sorted(run["service"]["peaks"].items())}
    out["baseline_server_peaks_mb"] = {k: round(v, 1) for k, v in sorted(run["baseline"]["peaks"].items())}
    return out


def unfinished(status: str | None, time_limit: float) -> str:
    """What a run that did not finish shows instead of its figures."""
    if status in (None, "pending", "processing", "running"):
        return f"did not finish in {time_limit:g} s"
    return status[:60]


def show(rows: list[dict], time_limit: float) -> None:
    head = (
        f"{'':<20}{'':>8}{'':>10}  {'service':-^40}  {'baseline':-^40}  {'ratio':-^14}\n"
        f"{'store':<20}{'file MB':>8}{'rows':>10}  {'stored s':>9}{'rows/s':>8}{'MB/s':>8}{'browsable s':>15}"
        f"  {'stored s':>9}{'rows/s':>8}{'MB/s':>8}{'browsable s':>15}  {'brows.':>7}{'stored':>7}  movies"
    )
    print(head)
    print("-" * len(head.splitlines()[1]))
    for r in rows:
        cells = []
        for key in ("", "baseline_"):
            if f"{key}rows_s" in r:
                cells.append(
                    f"{r[f'{key}completed_s']:>9.1f}{r[f'{key}rows_s']:>8,}{r[f'{key}mb_s']:>8.3f}"
                    f"{r[f'{key}browsable_s']:>15.1f}"
                )
            else:
                cells.append(f"{unfinished(r.get(f'{key}status'), time_limit):>40}"[-40:])
        ratio = f"{r['ratio']:>7.2f}{r['ratio_stored']:>7.2f}" if "ratio" in r else f"{'-':>7}{'-':>7}"
        stored = ""
        if "counts_match" in r and r["store"] == "embedded":
            stored = f"{r['stored']:,} (sqlite-utils: {r['baseline_stored']:,} rows" + (
                ", every row)" if r["counts_match"] else f", the file has {r['rows']:,}: DIFFER)"
            )
        elif "counts_match" in r:
            stored = f"{r['stored']:,}" + ("" if r["counts_match"] else f" (baseline {r['baseline_stored']:,}: DIFFER)")
        rows_read = f"{r['rows']:>10,}" if "rows" in r else f"{r.get('baseline_rows', 0):>10,}"
        print(f"{r['store']:<20}{r['size_mb']:>8.1f}{rows_read}  {cells[0]}  {cells[1]}  {ratio}  {stored}")
    print()
    print("peak RSS (VmHWM, MiB) of every process; postgres: the largest sum of PSS over its processes")
    for r in rows:
        label = f"{r['store']} {r['size_mb']:g} MB"
        print(f"  {label}, service:  " + ", ".join(f"{k} {v:.0f}" for k, v in r["service_peaks_mb"].items()))
        base = [f"process {r['baseline_peak_rss_mb']:.0f}"] if "baseline_peak_rss_mb" in r else []  # its own
        base += [f"{k} {v:.0f}" for k, v in r["baseline_server_peaks_mb"].items()]
        print(f"  {label}, baseline: " + ", ".join(base))
    pages = [r for r in rows if "page_ms" in r or "baseline_page_ms" in r]
    if pages:
        print()
        print(f"uncached first pages (ms) once stored: service over HTTP (then {FILTERED}); baseline, its queries")
        for r in pages:
            for key, who in (("", "service"), ("baseline_", "baseline")):
                if f"{key}page_ms" in r:
                    each = ", ".join(f"{k} {v:.0f}" for k, v in r[f"{key}page_ms"].items())
                    print(f"  {r['store']} {r['size_mb']:g} MB ({r[f'{key}stored']:,} movies), {who}: {each}")


def show_latency(rows: list[dict]) -> None:
    """Embedded, on its full catalogue: p50/p99 per filter x sort x order, first pages and deep ones."""
    for r in rows:
        if "latency" not in r:
            continue
        lat = r["latency"]
        first, deep = lat["first"], lat["deep"]
        print()
        print(
            f"{r['store']} {r['size_mb']:g} MB, /api/v1/movies uncached over HTTP on {r['stored']:,} movies, ms: "
            f"first pages (offset=0, limit=1..100, {first['n'] // len(lat['per_query'])} a query), "
            f"deep pages (limit=100, offset {DEEP_OFFSET:,}+i, {deep['n'] // len(lat['per_query'])} a query)"
        )
        print(f"  {'filter':<{FILTER_WIDTH}} {'sort_by':<12} {'order':>5}  {'total_docs':>10}  "
              f"{'first p50':>9} {'p99':>7} {'max':>7}  {'deep p50':>9} {'p99':>7} {'max':>7}")  # fmt: skip
        for q in lat["per_query"]:
            f, d = q["first"], q["deep"]
            print(
                f"  {q['filter']:<{FILTER_WIDTH}} {q['sort_by']:<12} {q['order']:>5}  {q['total_docs']:>10,}  "
                f"{f['p50']:>9.1f} {f['p99']:>7.1f} {f['max']:>7.1f}  "
                f"{d['p50']:>9.1f} {d['p99']:>7.1f} {d['max']:>7.1f}"
            )
        print(
            f"  {'all':<{FILTER_WIDTH + 19}}  {'':>10}  {first['p50']:>9.1f} {first['p99']:>7.1f} {first['max']:>7.1f}"
            f"  {deep['p50']:>9.1f} {deep['p99']:>7.1f} {deep['max']:>7.1f}"
        )
    for r in rows:
        if "restart" in r:
            x = r["restart"]
            print(
                f"restart ({r['store']} {r['size_mb']:g} MB): stopped, started again on the same DATA_FOLDER in "
                f"{x['start_s']:.1f} s; {x['compared']} answers (the task, the task list, {len(RESTART_PAGES)} pages) "
                + ("byte for byte identical" if x["identical"] else f"DIFFER: {', '.join(x['differ'])}")
                + "; the first start's admin key "
                + ("signs in" if x["key_works"] else "is REFUSED")
                + "; the second start "
                + ("PRINTED a new key" if x["second_start_printed_key"] else "printed no key")
            )


def scaling(rows: list[dict]) -> dict:
    """Per store: time per MB on the largest file over that on the smallest (both finished)."""
    out = {}
    for store in dict.fromkeys(r["store"] for r in rows):
        done = [r for r in rows if r["store"] == store and "s_per_mb" in r]
        if len(done) >= 2:
            small, large = min(done, key=lambda r: r["size_mb"]), max(done, key=lambda r: r["size_mb"])
            out[store] = {
                "from_mb": small["size_mb"],
                "to_mb": large["size_mb"],
                "growth": round(large["s_per_mb"] / small["s_per_mb"], 2),
            }
    return out


def show_targets(rows: list[dict], growth: dict) -> None:
    print()
    if any(r["store"] != "embedded" for r in rows):
        print(f"targets: ratio >= {RATIO_TARGET} on every store (aim {RATIO_AIM} on FerretDB); time per MB on FerretDB")
        print(f"growing < {GROWTH_TARGET}x from the smallest file to the largest")
    for r in rows:
        if r["store"] == "embedded":
            continue  # its baseline is sqlite-utils: its own targets, below
        if "ratio" in r:
            aim = RATIO_AIM if r["store"].startswith("ferretdb") else RATIO_TARGET
            verdict = (
                "met" if r["ratio"] >= aim else ("above 1.0, below the aim" if r["ratio"] >= RATIO_TARGET else "MISSED")
            )
            print(
                f"  ratio {r['store']} {r['size_mb']:g} MB: {r['ratio']:.2f} ({verdict}); "
                f"to stored: {r['ratio_stored']:.2f}"
            )
        else:
            print(f"  ratio {r['store']} {r['size_mb']:g} MB: not measured (a run did not finish)")
    embedded = [r for r in rows if r["store"] == "embedded"]
    if embedded:
        show_embedded_targets(embedded)
    for store, g in growth.items():
        verdict = ""
        if store.startswith("ferretdb"):
            verdict = " (met)" if g["growth"] < GROWTH_TARGET else " (MISSED)"
            if g["from_mb"] > 11 or g["to_mb"] < 190:
                verdict += ", over a range narrower than the target's 10 to 200 MB"
        print(f"  time per MB {store}: x{g['growth']:.2f} from {g['from_mb']:g} to {g['to_mb']:g} MB{verdict}")


def show_embedded_targets(rows: list[dict]) -> None:
    """Issue 24's: at 1 GB, browsable in <= 120 s, every process <= 500 MB, sqlite-utils >= 4x the service's time,
    first pages p99 <= 50 ms on every filter x sort, a restart serving the same bytes."""
    print(
        f"embedded targets (issue 24, at 1 GB): browsable <= {BROWSABLE_TARGET_S} s; every process <= "
        f"{RSS_TARGET_MB} MB peak RSS; sqlite-utils insert s / service browsable s >= {SQLITE_UTILS_TARGET:g}; "
        f"first pages p99 <= {PAGE_P99_TARGET_MS} ms on every filter x sort; restart: the same bytes"
    )
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    for r in rows:
        at = f"embedded {r['size_mb']:g} MB"
        if "browsable_s" in r:
            print(f"  browsable {at}: {r['browsable_s']:.1f} s ({met(r['browsable_s'] <= BROWSABLE_TARGET_S)})")
        if r["service_peaks_mb"]:
            name, top = max(r["service_peaks_mb"].items(), key=lambda kv: kv[1])
            print(f"  largest process {at}: {name} {top:.0f} MiB ({met(top * 1.048576 <= RSS_TARGET_MB)})")
        if "sqlite_utils_ratio" in r:
            ratio = r["sqlite_utils_ratio"]
            print(f"  sqlite-utils / service {at}: {ratio:.2f} ({met(ratio >= SQLITE_UTILS_TARGET)})")
        else:
            print(f"  sqlite-utils / service {at}: not measured (a run did not finish)")
        stopped = {"rows_by_time_limit", "baseline_rows_by_time_limit"} & set(r)
        # a leg stopped by the time limit, the other stopped too or finished (not failed): how far each got
        if (
            stopped
            and {"rows_by_time_limit", "completed_s"} & set(r)
            and {"baseline_rows_by_time_limit", "baseline_completed_s"} & set(r)
        ):
            service = (
                f"the service had read {r['rows_by_time_limit']:,} rows"
                if "rows_by_time_limit" in r
                else f"the service stored all {r['rows']:,} rows in {r['completed_s']:.0f} s"
            )
            baseline = (
                f"sqlite-utils had committed {r['baseline_rows_by_time_limit']:,}"
                if "baseline_rows_by_time_limit" in r
                else f"sqlite-utils stored all {r['baseline_rows']:,} in {r['baseline_completed_s']:.0f} s"
            )
            print(f"  by the time limit {at}: {service}, {baseline}")
        if "latency" in r:
            worst = max(r["latency"]["per_query"], key=lambda q: q["first"]["p99"])
            deep = r["latency"]["deep"]
            p99 = worst["first"]["p99"]
            print(
                f"  first pages {at}: p99 of the slowest query {p99:.1f} ms "
                f"({worst['filter']}, sort_by={worst['sort_by']}, order={worst['order']}) "
                f"({met(p99 <= PAGE_P99_TARGET_MS)}); deep pages at offset {DEEP_OFFSET:,}: "
                f"p50 {deep['p50']:.0f} ms, p99 {deep['p99']:.0f} ms (stated, no target)"
            )
        if "restart" in r:
            x = r["restart"]
            ok = x["identical"] and x["key_works"] and not x["second_start_printed_key"]
            print(f"  restart {at}: {'met' if ok else 'MISSED'}")


# -- main ------------------------------------------------------------------------------------------------------


def available(stores: list[str]) -> dict[str, str]:
    """Why each store that cannot start here cannot."""
    from tests.support import ferretdb as ferretdb_support
    from tests.support import postgres as postgres_support

    why = {}
    for store in stores:
        if store.startswith("ferretdb") and (reason := ferretdb_support.available()):
            why[store] = reason
        elif store == "ferretdb-postgresql" and (reason := postgres_support.available()):
            why[store] = reason
    return why


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", default="10,50,200", help="comma-separated sizes of generated files, MiB")
    parser.add_argument("--stores", default=",".join(STORES), help=f"comma-separated, of {', '.join(STORES)}")
    parser.add_argument(
        "--workers", type=int, help="`python worker.py` processes: beside FerretDB (default 2); embedded, run.py's "
        "WORKERS (default 1, as `make run`)"
    )  # fmt: skip
    parser.add_argument(
        "--page-requests", type=int, default=100, help="embedded: first pages per filter x sort (<= 100)"
    )
    parser.add_argument("--deep-requests", type=int, default=20, help="embedded: deep pages per filter x sort")
    parser.add_argument("--workdir", default=str(OUT), help="where the files, data folders and logs go (deleted)")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds one run may take before it is stopped")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", nargs="+", metavar="OUTPUT", help="print the table of runs saved in outputs")
    parser.add_argument("--baseline-one", nargs=2, metavar=("INPUT", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_one:
        print(json.dumps(baseline_child(*args.baseline_one)))
        return 0

    if args.report:
        rows = saved_runs(args.report)
        return report(rows, list(dict.fromkeys(r["store"] for r in rows)), args)
    # Stopped with SIGTERM (kill, a CI timeout): unwind, so the servers and clusters it started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not 0 < args.page_requests <= MAX_LIMIT:  # one query string per limit: more would repeat (cached) ones
        parser.error(f"--page-requests must be 1 to {MAX_LIMIT}")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if unknown := set(stores) - set(STORES):
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    for store, reason in available(stores).items():
        print(f"{store}: skipped, {reason}")
        stores.remove(store)
    sizes = sorted(float(s) for s in args.size_mb.split(","))

    from moviecat.generate import generate_movies

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="end-to-end-", dir=args.workdir))
    rows = []
    try:
        for size_mb in sizes:
            path = workdir / f"movies-{size_mb:g}.csv"
            made = generate_movies(str(path), size_mb=size_mb, seed=args.seed)
            size = path.stat().st_size
            print(f"file {path.name}: {size / MB:.1f} MB, {made['rows']:,} rows (generated, not timed)", flush=True)
            for store in stores:
                rows.append(figures(measure(store, path, workdir, args), size))
                print(f"    {json.dumps(rows[-1])}", flush=True)  # each run as it ends: a stopped bench keeps them
            path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    return report(rows, stores, args)


def report(rows: list[dict], stores: list[str], args) -> int:
    from tests.support import ferretdb as ferretdb_support

    said = []
    if "embedded" in stores:
        said.append(
            f"embedded: run.py with {workers_for('embedded', args)} worker.py on the SQLite file, baseline "
            "sqlite-utils insert --csv into a fresh file, then the same first pages (sqlite3, ORDER BY field LIMIT 10)"
        )
    if any(store.startswith("ferretdb") for store in stores):
        version = ferretdb_support.version() if ferretdb_support.available() is None else "(binary not found)"
        said.append(
            f"{workers_for('ferretdb', args)} worker.py on FerretDB {version}, baseline read_csv, {SLICE_ROWS}-row "
            "slices, to_pylist, plain-Python cleaning, insert_many, then the same first pages"
        )
    print()
    print(
        "end to end: upload (curl -F) -> task completed -> first /api/v1/movies page of each sort; "
        + "; ".join(said)
        + "; rates to stored; ratio = baseline s / service s, to browsable and to stored"
    )
    show(rows, args.time_limit)
    show_latency(rows)
    growth = scaling(rows)
    show_targets(rows, growth)
    counts_ok = all(r.get("counts_match", True) for r in rows)
    print(json.dumps({"runs": rows, "growth": growth, "counts_match": counts_ok}))
    return 0 if counts_ok else 1


def saved_runs(paths: list[str]) -> list[dict]:
    """The per-run lines ("    {...}") of earlier outputs of this bench, in order: a run stopped midway, or
    sizes run one command at a time, still give their table."""
    rows = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("    {"):
                rows.append(json.loads(line))
    return rows


if __name__ == "__main__":
    sys.exit(main())
