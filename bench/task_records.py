"""Time each step of the task state machine, and the task listings, on the SQLite store and on mongomock.

    python bench/task_records.py                    # 2,000 tasks stored, 100 of them run through every step
    python bench/task_records.py --tasks 20000 --steps 300 --stores sqlite   # mongomock takes minutes there

For each store a fresh file (SQLite: app/store/sqlite, on a temporary folder) or database (the MongoDB store,
app/store/mongo, over mongomock, until now the embedded default) gets `--tasks` pending tasks of three owners;
then `--steps` of them are claimed, given 5 progress updates each, and finished, every call timed. Then the
reads the API and the worker's sweep make at that size: a task page (first and deep, all and one owner's),
count_active, with_status of 200 ids, settle_abandoned and expire_results. Prints the median and p99 of each
call in microseconds and the SQLite figure's ratio to mongomock's. Then `--procs` processes on one SQLite file,
each claiming, updating 5 times and finishing tasks until none is left: the calls per second they make together
(writers take turns on the file).
The last line is JSON. Figures move 20% or more between runs on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import tasks  # noqa: E402
from app.store.sqlite import SqliteStore  # noqa: E402

LEASE = 60
OWNERS = ({"key_id": "key_a", "name": "a"}, {"key_id": "key_b", "name": "b"}, {"key_id": "key_c", "name": "c"})


def open_store(name: str, folder: str):
    if name == "sqlite":
        store = SqliteStore(str(Path(folder) / "service.sqlite3"))
    else:
        from app.store.mongo import MongoStore
        from tests.support.mongomock_db import mongomock_client

        store = MongoStore(mongomock_client()["bench"])
    store.setup()
    return store


def create(store, task_id: str, owner: dict) -> None:
    path = f"/up/{task_id}"
    tasks.create(store, task_id=task_id, kind="movies", filename=f"{task_id}.csv", path=path, size=1, owner=owner)


def timed(times: dict, label: str, call, *args, **kwargs):
    t0 = time.perf_counter()
    value = call(*args, **kwargs)
    times.setdefault(label, []).append(time.perf_counter() - t0)
    return value


def run_steps(store, worker: str, times: dict, limit: int | None = None) -> int:
    """Claim, update 5 times and finish tasks until none is left (or `limit` done); returns how many."""
    done = 0
    while limit is None or done < limit:
        task = timed(times, "claim", store.claim, worker, LEASE, 3)
        if task is None:
            break
        for i in range(5):
            fields = {"rows_read": i * 1000, "percent": i * 20.0, "checkpoint": {"line": i * 1000 + 1}}
            timed(times, "update", store.update, task["task_id"], worker, LEASE, **fields)
        timed(times, "finish", store.finish, task["task_id"], worker, tasks.COMPLETED, rows_read=5000)
        done += 1
    return done


def measure(name: str, n_tasks: int, steps: int) -> dict:
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(name, folder)
        for i in range(n_tasks):
            timed(times, "create", create, store, f"t{i:07d}", OWNERS[i % 3])
        store = store.tasks
        run_steps(store, "w1", times, steps)
        ids = [f"t{i:07d}" for i in range(0, n_tasks, max(1, n_tasks // 200))]
        for _ in range(20):
            timed(times, "page 1", store.page, 1, 10)
            timed(times, f"page {n_tasks // 20}", store.page, n_tasks // 20, 10)
            timed(times, "page 1 of key_a", store.page, 1, 10, "key_a")
            timed(times, "count_active", store.count_active, "key_a", 5)
            timed(times, "with_status 200", store.with_status, ids, tasks.FINISHED)
            timed(times, "settle_abandoned", store.settle_abandoned, 3)
            timed(times, "expire_results", store.expire_results, 24)
    return {label: summary(values) for label, values in times.items()}


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6, 1),
        "calls": len(ordered),
    }


def worker_process(path: str, name: str, start, results) -> None:
    store = SqliteStore(path)
    start.wait()
    times: dict = {}
    t0 = time.perf_counter()
    done = run_steps(store.tasks, name, times)
    results.put((name, done, time.perf_counter() - t0, {k: summary(v) for k, v in times.items()}))


def measure_processes(n_procs: int, n_tasks: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "service.sqlite3")
        store = SqliteStore(path)
        store.setup()
        for i in range(n_tasks):
            create(store, f"t{i:07d}", OWNERS[i % 3])
        store.close()
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(n_procs), ctx.Queue()
        procs = [ctx.Process(target=worker_process, args=(path, f"p{i}", start, results)) for i in range(n_procs)]
        for p in procs:
            p.start()
        told = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
    done = sum(t[1] for t in told)
    seconds = max(t[2] for t in told)
    return {
        "procs": n_procs,
        "tasks": done,
        "calls_per_s": round(done * 7 / seconds),  # claim + 5 updates + finish per task
        "update_p99_us": max(t[3]["update"]["p99_us"] for t in told),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--stores", default="sqlite,mongomock")
    args = parser.parse_args()
    results = {name: measure(name, args.tasks, args.steps) for name in args.stores.split(",")}
    labels = list(next(iter(results.values())))
    print(f"{args.tasks} tasks stored, {args.steps} run through claim, 5 updates, finish; microseconds per call")
    print(f"{'call':<22}" + "".join(f"{name + ' median':>18}{name + ' p99':>16}" for name in results) + "  ratio")
    for label in labels:
        row = f"{label:<22}"
        for name in results:
            row += f"{results[name][label]['median_us']:>18,.0f}{results[name][label]['p99_us']:>16,.0f}"
        if {"sqlite", "mongomock"} <= set(results):
            row += f"  {results['mongomock'][label]['median_us'] / results['sqlite'][label]['median_us']:.1f}x"
        print(row)
    together = measure_processes(args.procs, args.steps * args.procs) if args.procs else None
    if together:
        print(
            f"{together['procs']} processes on one SQLite file: {together['tasks']} tasks, "
            f"{together['calls_per_s']:,} calls/s together, update p99 {together['update_p99_us']:,.0f} us"
        )
    print(json.dumps({"tasks": args.tasks, "steps": args.steps, "stores": results, "processes": together}))


if __name__ == "__main__":
    main()
