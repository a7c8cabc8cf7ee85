"""Time the worker's ingest pipeline on a large movie file, up to the MongoDB driver, and its memory.

    python bench/ingest.py --size-mb 1024

The collection records what the pipeline hands to `bulk_write` (no server needed), so the figures are
the pipeline's own: read, parse, clean, build documents and write requests. The last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import defaults  # noqa: E402
from app.ingest import ingest_movies  # noqa: E402
from app.tools.generate import generate_movies  # noqa: E402


class Result:
    def __init__(self, n: int):
        self.upserted_count, self.matched_count = n, 0


class RecordingCollection:
    """Counts the write requests and documents it is given, as a driver would receive them."""

    def __init__(self):
        self.requests = self.batches = 0

    def bulk_write(self, requests, ordered=True):
        self.batches += 1
        self.requests += len(requests)
        return Result(len(requests))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB)")
    parser.add_argument("--file", help="ingest this file instead of generating one")
    args = parser.parse_args()
    path = Path(args.file) if args.file else Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "movies.csv"
    if not args.file:
        generate_movies(str(path), size_mb=args.size_mb, seed=1)
    size = path.stat().st_size
    rss_before = peak_rss_mb()

    collection = RecordingCollection()
    start = time.perf_counter()
    fields = ingest_movies(str(path), collection, block_size=defaults.BLOCK_SIZE, batch_size=defaults.BATCH_SIZE,
                           max_rejects=defaults.MAX_REJECTS_KEPT)
    elapsed = time.perf_counter() - start
    if not args.file:
        path.unlink()

    figures = {
        "file_mb": round(size / 1e6, 1), "rows": fields["rows_read"], "documents": collection.requests,
        "seconds": round(elapsed, 2), "pipeline_mb_s": round(size / 1e6 / elapsed, 1),
        "rows_per_s": round(fields["rows_read"] / elapsed), "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(rss_before, 1),
    }
    print(f"{figures['file_mb']:.0f} MB, {figures['rows']} rows in {figures['seconds']} s: "
          f"{figures['pipeline_mb_s']} MB/s, {figures['rows_per_s']} rows/s, peak RSS {figures['peak_rss_mb']} MB")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
