"""bench/ingest_server.py runs end to end into the embedded store and a real FerretDB (no timings asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, require
from tests.support import ferretdb as ferretdb_support

pytestmark = [pytest.mark.ferretdb, pytest.mark.server]


def test_ingest_server_benchmark_small_run_stores_every_movie():
    why = ferretdb_support.available()
    if why:
        require("FerretDB", why)
    # 0.1 MB: FerretDB's upserts cost in proportion to what is stored, so this stays a few seconds.
    command = [sys.executable, "bench/ingest_server.py", "--size-mb", "0.1", "--stores", "embedded,ferretdb"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout.splitlines()[-1])
    assert figures["complete"] is True
    assert figures["embedded_stored"] == figures["ferretdb_stored"] > 200
    assert figures["rows"] > figures["ferretdb_stored"]  # the generator's rejects
    for key in (
        "embedded_mb_s",
        "ferretdb_mb_s",
        "embedded_worker_peak_rss_mb",
        "ferretdb_worker_peak_rss_mb",
        "ferretdb_server_peak_rss_mb",
    ):
        assert figures[key] > 0, key
