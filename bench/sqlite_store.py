"""Component figure: the SQLite store's movies (app/store/sqlite/movies.py) under the real ingest pipeline; its pages.

    python bench/sqlite_store.py --size-mb 1024

The file is loaded twice, side by side, each into a fresh store file: with the bulk mode the ingest asks for
(`Movies.loading`: the 9 page indexes dropped during the load, built again at its end) and without it (every
index kept up to date batch by batch); printed as seconds and ratios. `--no-bulk` or `--bulk-only` runs one.
Half way through the bulk load, two pages are read from another connection, unindexed: their time is printed.

Not the service end to end (no HTTP, no broker, no worker loop: bench/end_to_end.py measures those): a movie
file is generated under /tmp (not timed), then this process runs what `ingest_movies` runs, the helper process
preparing blocks (app/jobs/movies/prepare.py through app.jobs.helper.ahead) while this one writes each batch with
`SqliteStore.movies.write`, into a fresh file, in the store's form (the SQLite table's rows, made in the helper:
app/jobs/movies/rows.py). Printed: rows/s, MB/s, seconds, the time spent in `write`, peak RSS of this process
and of the helper, the file's size. Then, on the loaded file, every filter × sort of
`/api/v1/movies` at offset 0 and at a deep offset: p50/p99 of `page()` + reading its rows over `--runs` runs,
each on a fresh connection (SQLite's page cache empty, the OS's warm, as for a query the Redis cache missed),
and the totals `page()` gives, next to what `COUNT(*)` over the catalogue's indexes would cost.
MB is 10^6 bytes; RSS is in MiB. Everything generated is deleted at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _measure import ChildPeaks, rss_mb, warm  # noqa: E402

MB = 1_000_000


class IndexTimes(logging.Handler):
    """Collects the seconds of each index build the store logs (app/store/sqlite/movies.py `_build_indexes`)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("index %s built"):
            self.seconds.append(record.args[1])


def ingest(path: Path, store, batch_size: int, probe_at: int = 0) -> dict:
    """The pipeline of ingest_movies with the SQLite store's writer, inside `store.movies.loading()` as the ingest
    asks; returns the figures. After `probe_at` rows (0: never), two pages are timed from another connection."""
    from app.jobs.helper import ahead
    from app.jobs.movies.ingest import BYTES_PER_MOVIE, HELPER_ENV, documents
    from app.jobs.movies.prepare import prepare
    from app.settings import defaults

    rows = inserted = updated = 0
    in_write = 0.0
    probed: dict = {}
    start, cpu = time.perf_counter(), time.process_time()
    with ChildPeaks() as helper:
        args = (prepare, str(path), defaults.BLOCK_SIZE, batch_size, 2, defaults.MAX_ROW_MB, store.movies.form)
        with store.movies.loading(path.stat().st_size // BYTES_PER_MOVIE):
            with ahead(*args, in_process=True, env=HELPER_ENV) as blocks:
                for block in blocks:
                    for batch in block:
                        rows += batch.rows_read
                        if batch.ids:
                            t = time.perf_counter()
                            i, u = store.movies.write(documents(batch), 0, batch.absent, batch.ids)
                            in_write += time.perf_counter() - t
                            inserted, updated = inserted + i, updated + u
                        if probe_at and not probed and rows >= probe_at:
                            probed = probe(store.path, inserted)
            loaded, loaded_cpu = time.perf_counter(), time.process_time()
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "inserted": inserted,
        "updated": updated,
        "seconds": seconds,
        "in_write": in_write,
        "indexing": seconds - (loaded - start),
        "cpu_load": loaded_cpu - cpu,  # this process's CPU seconds (SQLite's work included): less the machine's load
        "cpu_indexing": time.process_time() - loaded_cpu,
        "helper_mb": helper.largest_mb,
        "probed": probed,
    }


def probe(store_path: str, stored: int) -> dict:
    """Pages read during the load, from a connection of their own: the indexes may be missing."""
    with sqlite3.connect(store_path) as conn:
        indexes = conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'movies_by_%'").fetchone()[0]
    found = {"stored": stored, "indexes": indexes}
    for label, args in (
        ("rating -1", (None, None, "rating", -1, 0, 10)),
        ("language=en title", (None, "en", "title", 1, 0, 10)),
    ):
        _, p99, _ = timed(store_path, read_page(*args), 1)
        found[label] = p99
    return found


def load(path: Path, size: int, work: Path, name: str, batch_size: int, bulk: bool, probe_at: int) -> dict:
    """One load of the file into a fresh store file; prints its figures and returns them."""
    from app.store.sqlite import SqliteStore
    from app.store.sqlite import movies as sqlite_movies

    store_path = str(work / name / "service.sqlite3")
    store = SqliteStore(store_path)
    store.setup()
    times = IndexTimes()
    logger = logging.getLogger(sqlite_movies.__name__)
    logger.addHandler(times)
    logger.setLevel(logging.DEBUG)
    kept = sqlite_movies.BULK_MIN_ROWS
    sqlite_movies.BULK_MIN_ROWS = kept if bulk else 1 << 62
    try:
        got = ingest(path, store, batch_size, probe_at=probe_at)
    finally:
        sqlite_movies.BULK_MIN_ROWS = kept
        logger.removeHandler(times)
    s = got["seconds"]
    label = "bulk " if bulk else "plain"
    print(
        f"{label}: {s:.1f} s, {got['rows'] / s:,.0f} rows/s, {size / MB / s:.2f} MB/s; "
        f"{got['inserted']:,} inserted, {got['updated']:,} updated; in write(): {got['in_write']:.1f} s; "
        f"index build at the end: {got['indexing']:.1f} s"
        + (f" ({len(times.seconds)} indexes, slowest {max(times.seconds):.1f} s)" if times.seconds else "")
    )
    print(
        f"  CPU of this process (the writer): {got['cpu_load']:.1f} s while loading, {got['cpu_indexing']:.1f} s "
        f"building indexes; {1e6 * (got['cpu_load'] + got['cpu_indexing']) / max(got['rows'], 1):.0f} us a row"
    )
    files = {p.name: p.stat().st_size for p in (work / name).iterdir()}
    print("  store files: " + ", ".join(f"{n} {b / MB:,.0f} MB" for n, b in sorted(files.items())))
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    print(f"  after a checkpoint: {os.path.getsize(store_path) / MB:,.0f} MB")
    if got["probed"]:
        p = got["probed"]
        print(
            f"  during the load, at {p['stored']:,} movies stored, {p['indexes']} page indexes in the file: "
            f"page rating -1 {p['rating -1']:,.0f} ms, language=en title {p['language=en title']:,.0f} ms "
            "(one read each, fresh connection)"
        )
    got["path"], got["slowest_index"] = store_path, max(times.seconds, default=0.0)
    return got


def timed(store_path: str, run, runs: int) -> tuple[float, float, object]:
    """p50 and p99 in ms of `run(store)`, each run on a fresh connection; and the last result."""
    from app.store.sqlite import SqliteStore

    times, result = [], None
    for _ in range(runs):
        store = SqliteStore(store_path)
        _ = store.conn  # opened before the clock starts: a server's connections are open
        t = time.perf_counter()
        result = run(store)
        times.append((time.perf_counter() - t) * 1000)
        store.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))], result


def read_page(year, language, sort_by, order, skip, limit):
    def run(store):
        rows, total = store.movies.page(year, language, sort_by, order, skip, limit)
        with rows as found:
            return len(list(found)), total

    return run


def pages(store_path: str, runs: int, deep: int) -> None:
    from app.store import movies as catalogue
    from app.store.sqlite import SqliteStore

    conn = SqliteStore(store_path).conn
    year, in_year = conn.execute(
        "SELECT year, sum(n) FROM movie_counts WHERE typeof(year) = 'integer' GROUP BY year ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    language, in_language = conn.execute(
        "SELECT original_language, sum(n) FROM movie_counts WHERE typeof(original_language) = 'text'"
        " GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    print(f"filters: the largest year ({year}: {in_year:,} movies) and language ({language}: {in_language:,})")
    print(f"{'filter':<22}{'sort':<16}{'offset':>9}{'rows':>6}{'total':>11}{'p50 ms':>9}{'p99 ms':>9}")
    worst = {0: 0.0, deep: 0.0}
    for filters in ((None, None), (year, None), (None, language), (year, language)):
        label = " ".join(f"{k}={v}" for k, v in zip(("year", "language"), filters) if v is not None) or "none"
        for sort_by in catalogue.SORT_FIELDS:
            for order in (1, -1):
                for skip in (0, deep):
                    p50, p99, (n, total) = timed(store_path, read_page(*filters, sort_by, order, skip, 10), runs)
                    worst[skip] = max(worst[skip], p99)
                    print(f"{label:<22}{f'{sort_by} {order:+d}':<16}{skip:>9,}{n:>6}{total:>11,}{p50:>9.2f}{p99:>9.2f}")
    print(f"worst p99: {worst[0]:.2f} ms at offset 0 (target 50 ms), {worst[deep]:.2f} ms at offset {deep:,}")
    for label, run in (
        ("count()", lambda s: s.movies.count()),
        (f"total, language={language}", lambda s: s.movies.page(None, language, "title", 1, 0, 1)[1]),
        ("COUNT(*) (not used)", lambda s: s.conn.execute("SELECT count(*) FROM movies").fetchone()[0]),
        (
            f"COUNT(*) language={language} (not used)",
            lambda s: s.conn.execute("SELECT count(*) FROM movies WHERE original_language = ?", (language,)).fetchone()[
                0
            ],
        ),
    ):
        p50, p99, n = timed(store_path, run, max(3, runs // 4))
        print(f"{label:<40}{n:>11,}  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100, help="size of the generated movie file, MiB")
    parser.add_argument("--batch-size", type=int, default=None, help="movies per write (default: BATCH_SIZE)")
    parser.add_argument("--runs", type=int, default=20, help="runs per page measured")
    parser.add_argument("--deep", type=int, default=200_000, help="the deep offset measured")
    parser.add_argument("--seed", type=int, default=1)
    one = parser.add_mutually_exclusive_group()
    one.add_argument("--no-bulk", action="store_true", help="only the load that keeps every index up to date")
    one.add_argument("--bulk-only", action="store_true", help="only the load in bulk mode")
    args = parser.parse_args()

    from app.settings import defaults
    from moviecat.generate import generate_movies

    batch_size = args.batch_size or defaults.BATCH_SIZE
    work = Path(tempfile.mkdtemp(prefix="sqlite-store-bench-", dir="/tmp"))
    try:
        path = work / "movies.csv"
        made = generate_movies(str(path), size_mb=args.size_mb, seed=args.seed)
        size = path.stat().st_size
        warm(path)
        print("SQLite store, component figure (bench/sqlite_store.py): the ingest pipeline into SqliteStore.movies")
        print(f"file: {size / MB:,.1f} MB, {made['rows']:,} rows (generated, not timed); batch {batch_size}")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
        modes = [False] if args.no_bulk else [True] if args.bulk_only else [True, False]
        got = {}
        for bulk in modes:
            got[bulk] = load(path, size, work, "bulk" if bulk else "plain", batch_size, bulk, made["rows"] // 2)
        if len(got) == 2:
            b, p = got[True], got[False]
            print(
                f"plain / bulk: {p['seconds'] / b['seconds']:.2f}x the time end to end; "
                f"write() {p['in_write'] / b['in_write']:.2f}x; bulk's index build is "
                f"{100 * b['indexing'] / b['seconds']:.0f}% of its time"
            )
        helper = max(g["helper_mb"] for g in got.values())
        print(f"peak RSS: this process {rss_mb('VmHWM'):.0f} MiB (all loads), helper {helper:.0f} MiB")
        first = got[modes[0]]
        pages(first["path"], args.runs, min(args.deep, first["inserted"] // 2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
