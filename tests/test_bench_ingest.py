"""bench/ingest.py runs end to end on a small file and checks the pipeline's documents (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a benchmark run end to end: the slow tier (make check leaves it out)


def test_ingest_benchmark_small_run_checks_every_document():
    out = subprocess.run(
        [sys.executable, "bench/ingest.py", "--size-mb", "2"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    figures = json.loads(lines[-1])
    assert figures["identical"] is True and figures["documents_checked"] == figures["documents"] > 5000
    assert figures["rows"] > figures["documents"]  # the generator's rejects
    # 2 MB is below INGEST_HELPER_MIN_MB: the worker, so the benchmark, ingests it without a helper process.
    assert figures["helper_peak_rss_mb"] == 0
    for key in ("pipeline_mb_s", "baseline_mb_s", "floor_mb_s", "ratio", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert any(line.startswith("check:") and line.endswith("yes") for line in lines)
