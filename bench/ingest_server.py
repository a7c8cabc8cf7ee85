"""Time the worker's real movie ingest into real stores: the embedded one (mongomock) and FerretDB.

    python bench/ingest_server.py --size-mb 2
    python bench/ingest_server.py --input movies.csv --stores embedded,ferretdb,ferretdb-postgresql

Generates a movie file (or takes one), warms the page cache, then, for each store, runs the worker's
`ingest_movies` (app/jobs/movies/ingest.py: helper process and all) in a fresh Python process of its own, writing
through pymongo into a `movies` collection that has the service's indexes (`app.store.mongo.ensure_indexes`,
as `create_app` makes them; created before the clock starts):

  embedded             `app.embedded.embedded_client()`, the in-memory store of MONGO_URI-less runs (it lives
                       in the worker process, so its documents are in the worker's RSS).
  ferretdb             FerretDB (tests/support/ferretdb.py: SQLite backend), a fresh server and data folder.
  ferretdb-postgresql  the same FerretDB on PostgreSQL: a throwaway cluster (tests/support/postgres.py: initdb
                       into a temporary folder, a free port on 127.0.0.1, as the `postgres` user when root).

Each run reports MB/s (10^6 bytes of file), rows/s, the peak RSS (VmHWM, MiB) of the worker process and of
its ingest helper, and of the server: FerretDB's own VmHWM (a fresh server per run, so the peak is that
run's) and, for PostgreSQL, the largest sum of PSS over its processes, sampled every 50 ms. Untimed, the
stored documents are counted against the inserts the ingest reported and across stores (exit 1 if they
differ). The last line is JSON.

The worker inserts new movies (the `_id` index checks them) and rewrites stored ones by `_id`; FerretDB v1.24
finds a rewrite's document by reading the collection, not through the `_id` index, so a file with many movies
already stored (or repeated) costs in proportion to what is stored (docs/stores.md, bench/updates.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _measure import ChildPeaks, rss_mb, run_child, warm

from tests.support.ferretdb import FerretDB
from tests.support.postgres import PostgreSQL

OUT = REPO / "bench" / "out"  # git-ignored
STORES = ("embedded", "ferretdb", "ferretdb-postgresql")
DB_NAME = "bench_ingest"


# -- in the child: one ingest ---------------------------------------------------------------------------------


def run_one(store: str, path: str, uri: str) -> dict:
    import pymongo

    from app.jobs.movies.ingest import ingest_movies
    from app.settings import defaults
    from app.store import mongo
    from app.store.mongo.movies import Movies as MongoMovies
    from tests.support.mongomock_db import mongomock_client as embedded_client

    client = embedded_client() if store == "embedded" else pymongo.MongoClient(uri)
    db = client[DB_NAME]
    # The service's indexes, as create_app makes them.
    mongo.ensure_indexes(db)
    # FerretDB 1.24 never answers a bulk write re-writing 100 or more stored movies: as make run-ferretdb does.
    chunk = 0 if store == "embedded" else mongo.FERRETDB_WRITE_OPS
    with ChildPeaks() as helpers:
        start = time.perf_counter()
        fields = ingest_movies(
            path,
            MongoMovies(db.movies),
            block_size=defaults.BLOCK_SIZE,
            batch_size=defaults.BATCH_SIZE,
            max_rejects=defaults.MAX_REJECTS_KEPT,
            write_chunk=chunk,
            in_process_from=defaults.INGEST_HELPER_MIN_MB * 1_000_000,
        )
        seconds = time.perf_counter() - start
    peak = rss_mb("VmHWM")
    stored = db.movies.count_documents({})
    return {
        "rows": fields["rows_read"],
        "inserted": fields["rows_inserted"],
        "updated": fields["rows_updated"],
        "stored": stored,
        "seconds": seconds,
        "peak_rss_mb": peak,
        "helper_peak_rss_mb": helpers.largest_mb,
    }


# -- servers --------------------------------------------------------------------------------------------------


class PssPeak:
    """The largest sum of PSS over a process and its descendants (a PostgreSQL server), sampled."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every, self.largest_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _pss_mb(pid: int) -> float:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _sample(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while True:
            total = 0.0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += self._pss_mb(proc.pid)
                except OSError:
                    pass  # it just exited
            self.largest_mb = max(self.largest_mb, total)
            if self._stop.wait(self.every):
                return


# -- the parent -----------------------------------------------------------------------------------------------


def measure(store: str, path: Path, workdir: Path, pg: PostgreSQL | None) -> dict:
    print(f"running {store}...", flush=True)
    if store == "embedded":
        r = run_child(__file__, "--run-one", store, str(path), "")
        server = {}
    else:
        root = Path(tempfile.mkdtemp(prefix=f"{store}-", dir=workdir))
        if store == "ferretdb":
            ferret = FerretDB(root)
        else:
            ferret = FerretDB(root, postgresql_url=pg.create_database(f"ferretdb_{root.name.replace('-', '_')}"))
        ferret.start()
        try:
            import psutil

            sampler = PssPeak(pg.pid) if store == "ferretdb-postgresql" else None
            with sampler or _Nothing():
                r = run_child(__file__, "--run-one", store, str(path), ferret.uri)
            cpu = psutil.Process(ferret.pid).cpu_times()
            server = {
                "server_peak_rss_mb": rss_mb("VmHWM", ferret.pid),
                "server_cpu_s": cpu.user + cpu.system,
                "postgres_peak_pss_mb": sampler.largest_mb if sampler else None,
            }
        finally:
            ferret.stop()
    r.update(server, store=store, mb_s=path.stat().st_size / 1e6 / r["seconds"], rows_s=r["rows"] / r["seconds"])
    return r


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def show(r: dict) -> None:
    helper = f" + helper {r['helper_peak_rss_mb']:.1f}" if r["helper_peak_rss_mb"] else ""
    server = ""
    if r.get("server_peak_rss_mb") is not None:
        server = f"; FerretDB peak RSS {r['server_peak_rss_mb']:.1f} MB, {r['server_cpu_s']:.1f} s CPU"
    if r.get("postgres_peak_pss_mb"):
        server += f"; PostgreSQL peak PSS {r['postgres_peak_pss_mb']:.1f} MB"
    print(
        f"{r['store']:>19}: {r['seconds']:8.2f} s, {r['mb_s']:8.3f} MB/s, {r['rows_s']:>9,.0f} rows/s, "
        f"worker peak RSS {r['peak_rss_mb']:.1f}{helper} MB{server}; "
        f"stored {r['stored']:,} ({r['inserted']:,} inserted, {r['updated']:,} updated)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=2, help="size of the generated file (MiB)")
    parser.add_argument("--input", "--file", dest="input", help="ingest this file instead of generating one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stores",
        default="embedded,ferretdb",
        help=f"comma-separated, of {', '.join(STORES)} (default: embedded,ferretdb)",
    )
    parser.add_argument("--run-one", nargs=3, metavar=("STORE", "INPUT", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(*args.run_one)))
        return 0

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if any(s.startswith("ferretdb") for s in stores):
        from tests.support import ferretdb as ferretdb_support

        why = ferretdb_support.available()
        if why:
            print(f"FerretDB is not available: {why}", file=sys.stderr)
            return 2

    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-server-", dir=OUT))
    pg = None
    try:
        if args.input:
            path = Path(args.input)
        else:
            from moviecat.generate import generate_movies

            path = workdir / "movies.csv"
            start = time.perf_counter()
            made = generate_movies(str(path), size_mb=args.size_mb, seed=args.seed)
            print(f"generated {path}: {made['rows']:,} rows in {time.perf_counter() - start:.1f} s (not counted)")
        size = path.stat().st_size
        if "ferretdb-postgresql" in stores:
            pg = PostgreSQL().start()
        warm(path)
        runs = [measure(store, path, workdir, pg) for store in stores]
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    from tests.support import ferretdb as ferretdb_support

    print(
        f"file: {size / 1e6:.2f} MB, {runs[0]['rows']:,} rows; FerretDB {ferretdb_support.version()}; "
        f"collection with the service's indexes"
    )
    for r in runs:
        show(r)
    # A movie that comes twice in the file is inserted once, then updated: stored = inserted.
    complete = all(r["stored"] == r["inserted"] == runs[0]["stored"] for r in runs)
    print(f"stored documents: {'the same count in every store, one per insert' if complete else 'COUNTS DIFFER'}")

    def rnd(x, digits=2):
        return None if x is None else round(x, digits)

    figures = {"size_mb": rnd(size / 1e6), "rows": runs[0]["rows"], "complete": complete}
    for r in runs:
        key = r["store"].replace("-", "_")
        figures.update(
            {
                f"{key}_seconds": rnd(r["seconds"]),
                f"{key}_mb_s": rnd(r["mb_s"], 4),
                f"{key}_rows_s": rnd(r["rows_s"], 0),
                f"{key}_worker_peak_rss_mb": rnd(r["peak_rss_mb"], 1),
                f"{key}_helper_peak_rss_mb": rnd(r["helper_peak_rss_mb"], 1),
                f"{key}_stored": r["stored"],
            }
        )
        if r.get("server_peak_rss_mb") is not None:
            figures.update(
                {
                    f"{key}_server_peak_rss_mb": rnd(r["server_peak_rss_mb"], 1),
                    f"{key}_server_cpu_s": rnd(r["server_cpu_s"]),
                }
            )
        if r.get("postgres_peak_pss_mb") is not None:
            figures[f"{key}_postgres_peak_pss_mb"] = rnd(r["postgres_peak_pss_mb"], 1)
    print(json.dumps(figures))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
