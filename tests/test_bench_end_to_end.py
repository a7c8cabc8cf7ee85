"""bench/end_to_end.py runs at a tiny size on the embedded store and FerretDB/SQLite: the table it prints has
a row per store, FerretDB's baseline stored exactly the movies the service did and sqlite-utils every row of
the file, the embedded store's page latencies, sqlite-utils ratio and restart are there, and a run past its
time limit is reported as unfinished instead of hanging (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, require
from tests.support import ferretdb as ferretdb_support
from tests.support.reference import load

pytestmark = [pytest.mark.ferretdb, pytest.mark.server]
HEADER = "store                file MB      rows   stored s"


def bench(*args: str, timeout: float = 240) -> tuple[list[str], dict]:
    out = subprocess.run(
        [sys.executable, "bench/end_to_end.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    return lines, json.loads(lines[-1])


def table(lines: list[str]) -> list[list[str]]:
    """The rows of the main table: from its header to the first blank line, the rule under it skipped."""
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    end = lines.index("", start)
    return [line.split() for line in lines[start + 2 : end]]


def test_end_to_end_bench_on_embedded_and_ferretdb(tmp_path):
    why = ferretdb_support.available()
    if why:
        require("FerretDB", why)
    lines, figures = bench(
        "--size-mb", "0.2", "--stores", "embedded,ferretdb", "--workers", "1", "--page-requests", "3",
        "--deep-requests", "2", "--workdir", str(tmp_path),
    )  # fmt: skip
    rows = table(lines)
    assert [r[0] for r in rows] == ["embedded", "ferretdb"]
    # store, MB, rows, 4 service and 4 baseline figures, 2 ratios, movies (embedded: and sqlite-utils' rows)
    assert len(rows[1]) == 14, rows
    runs = figures["runs"]
    assert figures["counts_match"] is True
    # What the file holds, by the project's plain-Python cleaning: the generator's rejects and repeats out.
    from moviecat.generate import generate_movies

    path = tmp_path / "movies.csv"
    generate_movies(str(path), size_mb=0.2, seed=1)
    expected = load(path)
    for run in runs:
        assert run["rows"] == expected["rows_read"]
        assert run["stored"] == len(expected["documents"])
        assert run["ratio"] > 0 and run["ratio_stored"] > 0 and run["mb_s"] > 0 and run["baseline_mb_s"] > 0
        assert set(run["page_ms"]) == {"release_date", "rating", "title", "year=2000"}
        assert set(run["baseline_page_ms"]) == {"release_date", "rating", "title"}
    embedded, ferret = runs
    movies, read = f"{len(expected['documents']):,}", f"{expected['rows_read']:,}"
    assert rows[0][13:] == [movies, "(sqlite-utils:", read, "rows,", "every", "row)"]
    assert rows[1][13] == movies
    assert embedded["baseline_stored"] == expected["rows_read"]  # sqlite-utils: every row, as read
    assert ferret["baseline_stored"] == len(expected["documents"])
    assert embedded["sqlite_utils_ratio"] > 0 and "sqlite_utils_ratio" not in ferret
    # run.py's children are found: its gunicorn worker, the broker and the worker.py it started
    assert {"api (arbiter)", "api (worker)", "broker", "worker-1"} <= set(embedded["service_peaks_mb"])
    assert set(embedded["baseline_server_peaks_mb"]) == {"sqlite-utils"}
    assert {"api (arbiter)", "api (worker)", "broker", "ferretdb", "worker-1"} <= set(ferret["service_peaks_mb"])
    assert "ferretdb" in ferret["baseline_server_peaks_mb"]
    assert_latency(embedded["latency"], len(expected["documents"]))
    assert embedded["restart"] | {"start_s": 0} == {
        "identical": True,
        "compared": 6,
        "differ": [],
        "key_works": True,
        "second_start_printed_key": False,
        "start_s": 0,
    }
    assert "latency" not in ferret and "restart" not in ferret
    assert any("byte for byte identical; the first start's admin key signs in" in line for line in lines)


def assert_latency(latency: dict, movies: int) -> None:
    """Every filter x sort x order, each with its 3 first pages and 2 deep ones; no filter: every movie."""
    combos = [(q["filter"], q["sort_by"], q["order"]) for q in latency["per_query"]]
    filters = ("none", "year=2020", "language=en", "year+language")
    sorts = ("release_date", "rating", "title")
    assert combos == [(f, s, o) for f in filters for s in sorts for o in (1, -1)]
    for q in latency["per_query"]:
        assert q["first"]["n"] == 3 and q["deep"]["n"] == 2
        assert 0 < q["first"]["p50"] <= q["first"]["p99"] <= q["first"]["max"]
        if q["filter"] == "none":
            assert q["total_docs"] == movies
    assert latency["first"]["n"] == 72 and latency["deep"]["n"] == 48


def test_a_run_past_its_time_limit_is_reported_not_waited_for():
    lines, figures = bench("--size-mb", "0.2", "--stores", "embedded", "--time-limit", "0.001", timeout=120)
    (row,) = table(lines)
    assert " ".join(row).count("did not finish in 0.001 s") == 2  # the service and the baseline
    assert figures["runs"][0]["status"] in ("pending", "processing")
    assert "ratio" not in figures["runs"][0]
