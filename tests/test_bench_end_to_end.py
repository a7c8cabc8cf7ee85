"""bench/end_to_end.py runs at a tiny size on the embedded store and FerretDB/SQLite: the table it prints has
a row per store, the baseline stored exactly the movies the service did, and a run past its time limit is
reported as unfinished instead of hanging (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, require
from tests.support import ferretdb as ferretdb_support
from tests.support.reference import load

pytestmark = pytest.mark.ferretdb
HEADER = "store                file MB     rows   stored s"


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
    lines, figures = bench("--size-mb", "0.2", "--stores", "embedded,ferretdb", "--workers", "1")
    rows = table(lines)
    assert [r[0] for r in rows] == ["embedded", "ferretdb"]
    assert all(len(r) == 14 for r in rows), rows  # store, MB, rows, 4 service and 4 baseline figures, 2 ratios, movies
    runs = figures["runs"]
    assert figures["counts_match"] is True
    # What the file holds, by the project's plain-Python cleaning: the generator's rejects and repeats out.
    from app.tools.generate import generate_movies

    path = tmp_path / "movies.csv"
    generate_movies(str(path), size_mb=0.2, seed=1)
    expected = load(path)
    for run in runs:
        assert run["rows"] == expected["rows_read"]
        assert run["stored"] == run["baseline_stored"] == len(expected["documents"])
        assert run["ratio"] > 0 and run["ratio_stored"] > 0 and run["mb_s"] > 0 and run["baseline_mb_s"] > 0
        assert set(run["page_ms"]) == {"release_date", "rating", "title", "year=2000"}
        assert set(run["baseline_page_ms"]) == {"release_date", "rating", "title"}
    assert {"api (arbiter)", "api (worker)"} <= set(runs[0]["service_peaks_mb"])
    assert {"api (arbiter)", "api (worker)", "broker", "ferretdb", "worker-1"} <= set(runs[1]["service_peaks_mb"])
    assert "ferretdb" in runs[1]["baseline_server_peaks_mb"]


def test_a_run_past_its_time_limit_is_reported_not_waited_for():
    lines, figures = bench("--size-mb", "0.2", "--stores", "embedded", "--time-limit", "0.001", timeout=120)
    (row,) = table(lines)
    assert " ".join(row).count("did not finish in 0.001 s") == 2  # the service and the baseline
    assert figures["runs"][0]["status"] in ("pending", "processing")
    assert "ratio" not in figures["runs"][0]
