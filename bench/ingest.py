"""Time the worker's movie ingest against PyArrow's bare parse and the original system's way, and check it.

    python bench/ingest.py --size-mb 1024
    python bench/ingest.py --input movies.csv --no-check

Generates a movie file (or takes one), warms the page cache, then measures, each in a fresh Python
process of its own (wall time of the work alone, peak RSS of the process and of any helper it starts):

  floor     PyArrow's streaming CSV parse alone, 1 MiB blocks, one thread, every column a string:
            what no pipeline built on it can beat.
  pipeline  the worker's real `ingest_movies`, helper process and all, with a collection that records
            what reaches `insert_many` (every movie is new to it): the documents, and their BSON bytes.
  original  the original system's approach: read the whole file, slice 1000 rows, `to_pylist`, clean
            each record in plain Python, one ReplaceOne per movie; its documents are dicts, so the
            recording collection encodes them with `bson.encode`, the work the driver would do.

Then, untimed, every document the pipeline produces is compared, byte for byte, with `bson.encode` of
what the plain-Python reference cleaning (tests/support/reference.py) makes of the same row. The script exits
1 if any differs. Targets: the pipeline at least 3x the original (stretch 5x), at most 300 MB peak RSS
(writer and helper together). MB is 10^6 bytes; RSS is in MiB. The last line is JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _measure import ChildPeaks, rss_mb, run_child, warm

OUT = REPO / "bench" / "out"  # git-ignored
TARGET, STRETCH, MEMORY_TARGET = 3.0, 5.0, 300.0


class RecordingCollection:
    """Stands in for a MongoDB collection: counts the write requests and document bytes it is given."""

    def __init__(self):
        import bson
        from bson.raw_bson import RawBSONDocument

        self.encode, self.raw = bson.encode, RawBSONDocument
        self.requests = self.bytes = 0

    def insert_many(self, documents, ordered=True):
        self.bytes += sum(len(document.raw) for document in documents)  # the worker's raw BSON, sent as it is
        self.requests += len(documents)

    def bulk_write(self, requests, ordered=True):
        for request in requests:
            document = request._doc  # pymongo keeps a ReplaceOne's document there
            # Raw BSON goes to the server as it is; a dict must first be encoded, as the driver would.
            self.bytes += len(document.raw if isinstance(document, self.raw) else self.encode(document))
        self.requests += len(requests)
        return _Result(len(requests))


class _Result:
    def __init__(self, n: int):
        self.upserted_count, self.matched_count = n, 0


# -- the three ways, each run in a child ------------------------------------------------------------------


def floor(path: str) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from app.reader import csvstream

    header = csvstream.read_header(path)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 20, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in header}),
    )
    rows = sum(batch.num_rows for batch in reader)
    return {"rows": rows, "documents": 0, "bytes": 0}


def pipeline(path: str) -> dict:
    from app.jobs.movies.ingest import ingest_movies
    from app.settings import defaults
    from app.store.mongo.movies import Movies as MongoMovies

    collection = RecordingCollection()
    fields = ingest_movies(
        path,
        MongoMovies(collection),
        block_size=defaults.BLOCK_SIZE,
        batch_size=defaults.BATCH_SIZE,
        max_rejects=defaults.MAX_REJECTS_KEPT,
        in_process_from=defaults.INGEST_HELPER_MIN_MB * 1_000_000,
    )
    # Every movie row it wrote (a movie repeated in a batch is sent once, as its last occurrence).
    written = fields["rows_inserted"] + fields["rows_updated"]
    return {"rows": fields["rows_read"], "documents": written, "bytes": collection.bytes}


def original(path: str) -> dict:
    """Read it all, slice 1000 rows, to_pylist, clean each record in Python, one ReplaceOne per movie."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from pymongo import ReplaceOne

    collection = RecordingCollection()
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
        read_options=pacsv.ReadOptions(column_names=None),
    )
    table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
    rows = table.num_rows
    for start in range(0, rows, 1000):
        documents = [doc for doc in map(_clean_record, table.slice(start, 1000).to_pylist()) if doc]
        collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in documents], ordered=False)
    return {"rows": rows, "documents": collection.requests, "bytes": collection.bytes}


_INTS = ("budget", "revenue", "runtime", "vote_count")


def _clean_record(row: dict) -> dict | None:
    title = (row.get("title") or "").strip()
    if not title:
        return None
    doc = {}
    for key, value in row.items():
        value = (value or "").strip()
        if key in _INTS:
            doc[key] = _number(value, int)
        elif key == "vote_average":
            doc[key] = _number(value, float)
        elif key == "release_date":
            doc[key] = _date(value)
        elif key == "languages":
            doc[key] = _languages(value)
        else:
            doc[key] = value or None
    doc["title"] = title
    day = doc.get("release_date")
    doc["year"] = day.year if day else None
    doc["_id"] = f"{day:%Y-%m-%d}/{title}" if day else f"undated/{title}"
    return doc


def _number(value: str, kind):
    try:
        return kind(float(value)) if value else None
    except (ValueError, OverflowError):
        return None


def _date(value: str):
    for form in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(value, form)
        except ValueError:
            pass
    return None


def _languages(value: str):
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    return parsed if isinstance(parsed, list) else None


WAYS = {"floor": floor, "pipeline": pipeline, "original": original}


def run_one(way: str, path: str) -> dict:
    """In the child: time `way` alone, and report its figures and peaks."""
    with ChildPeaks() as helpers:
        start = time.perf_counter()
        figures = WAYS[way](path)
        seconds = time.perf_counter() - start
    return {**figures, "seconds": seconds, "peak_rss_mb": rss_mb("VmHWM"), "helper_peak_rss_mb": helpers.largest_mb}


# -- the check -----------------------------------------------------------------------------------------------


def check(path: Path) -> tuple[int, str | None]:
    """Every pipeline document against bson.encode of the reference's: (documents compared, first difference)."""
    import bson

    from app.jobs.movies.prepare import prepare
    from app.settings import defaults
    from tests.support import reference

    def produced():
        for block in prepare(str(path), defaults.BLOCK_SIZE, defaults.BATCH_SIZE):
            for batch in block:
                yield from (batch.documents[a:b] for a, b in zip(batch.bounds, batch.bounds[1:]))

    n = 0
    expected = (doc for _, doc, reject in reference.read(path) if not reject)
    for n, (mine, theirs) in enumerate(zip(produced(), expected, strict=False), 1):
        if mine != bson.encode(theirs):
            return n, f"document {n}: pipeline {bson.decode(mine)} != reference {theirs}"
    leftover = sum(1 for _ in produced()) - n, sum(1 for _ in expected)
    if any(leftover):
        return n, f"counts differ after {n} documents: {leftover}"
    return n, None


# -- the parent ----------------------------------------------------------------------------------------------


def measure(way: str, path: Path) -> dict:
    print(f"running {way}...", flush=True)
    r = run_child(__file__, "--run-one", way, str(path))
    r.update(
        mb_s=path.stat().st_size / 1e6 / r["seconds"],
        rows_s=r["rows"] / r["seconds"],
        total_peak_rss_mb=r["peak_rss_mb"] + r["helper_peak_rss_mb"],
    )
    return r


def show(name: str, r: dict) -> None:
    helper = f" + helper {r['helper_peak_rss_mb']:.1f}" if r["helper_peak_rss_mb"] else ""
    print(
        f"{name:>9}: {r['seconds']:7.2f} s, {r['mb_s']:7.1f} MB/s, {r['rows_s']:>10,.0f} rows/s, "
        f"peak RSS {r['peak_rss_mb']:.1f}{helper} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB)")
    parser.add_argument("--input", "--file", dest="input", help="ingest this file instead of generating one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-original", action="store_true", help="do not run the original approach")
    parser.add_argument("--no-check", action="store_true", help="skip the document-by-document check")
    parser.add_argument("--run-one", nargs=2, metavar=("WAY", "INPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(*args.run_one)))
        return 0

    workdir = None
    if args.input:
        path = Path(args.input)
    else:
        from moviecat.generate import generate_movies

        OUT.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="ingest-", dir=OUT))
        path = workdir / "movies.csv"
        start = time.perf_counter()
        made = generate_movies(str(path), size_mb=args.size_mb, seed=args.seed)
        print(f"generated {path}: {made['rows']:,} rows in {time.perf_counter() - start:.1f} s (not counted)")
    size = path.stat().st_size
    try:
        warm(path)
        runs = {way: measure(way, path) for way in WAYS if not (way == "original" and args.skip_original)}
        compared, difference = (0, None) if args.no_check else check(path)
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    pipe, base, bare = runs["pipeline"], runs.get("original"), runs["floor"]
    print(
        f"file: {size / 1e6:.1f} MB, {pipe['rows']:,} rows, "
        f"{pipe['documents']:,} documents ({pipe['bytes'] / 1e6:.1f} MB of BSON)"
    )
    for name, r in (("floor", bare), ("pipeline", pipe), ("original", base)):
        if r:
            show(name, r)
    ratio = base and pipe["mb_s"] / base["mb_s"]
    if ratio:
        verdict = "met" if ratio >= TARGET else "NOT met"
        stretch = "met" if ratio >= STRETCH else "not met"
        print(
            f"pipeline / original: {ratio:.2f}x (target >= {TARGET:g}x: {verdict}; stretch {STRETCH:g}x: {stretch})"
            f"; memory {pipe['total_peak_rss_mb']:.0f} MB vs {base['total_peak_rss_mb']:.0f} MB"
        )
    print(
        f"pipeline / floor: {pipe['mb_s'] / bare['mb_s']:.2f}; peak RSS {pipe['total_peak_rss_mb']:.1f} MB "
        f"(target <= {MEMORY_TARGET:g}: {'met' if pipe['total_peak_rss_mb'] <= MEMORY_TARGET else 'NOT met'})"
    )
    if not args.no_check:
        print(
            f"check: {compared:,} documents, byte for byte as the reference cleaning: "
            f"{'yes' if difference is None else 'NO, ' + difference}"
        )

    def r(x, digits=1):
        return None if x is None else round(x, digits)

    print(
        json.dumps(
            {
                "pipeline_mb_s": r(pipe["mb_s"]),
                "baseline_mb_s": r(base and base["mb_s"]),
                "floor_mb_s": r(bare["mb_s"]),
                "ratio": r(ratio, 2),
                "ratio_to_floor": r(pipe["mb_s"] / bare["mb_s"], 3),
                "peak_rss_mb": r(pipe["total_peak_rss_mb"]),
                "writer_peak_rss_mb": r(pipe["peak_rss_mb"]),
                "helper_peak_rss_mb": r(pipe["helper_peak_rss_mb"]),
                "baseline_peak_rss_mb": r(base and base["peak_rss_mb"]),
                "floor_peak_rss_mb": r(bare["peak_rss_mb"]),
                "pipeline_rows_s": r(pipe["rows_s"], 0),
                "baseline_rows_s": r(base and base["rows_s"], 0),
                "floor_rows_s": r(bare["rows_s"], 0),
                "rows": pipe["rows"],
                "documents": pipe["documents"],
                "size_mb": r(size / 1e6),
                "identical": None if args.no_check else difference is None,
                "documents_checked": compared,
            }
        )
    )
    return 1 if difference else 0


if __name__ == "__main__":
    sys.exit(main())
