"""Schemathesis against the real server process (`python run.py`, embedded), with a key of each role.

It reads the document the server serves (/api/v1/openapi.json) and sends what the document allows and what
it does not (every phase: boundary values, generated requests, then sequences that follow its links: an
upload, then its task's record, events, result and cancel). Every answer must be in the contract: no 5xx,
each status, content type, header and body as documented. The server must still be up at the end with no
traceback in its log. The run prints how many requests it sent (counted from its HAR report).

The budget: FUZZ_EXAMPLES examples per operation and phase (10 here: about a minute and a half on 2 busy
cores); `make fuzz` sends more, with a fresh seed. The seed is fixed unless FUZZ_SEED is set (a number, or
`random`), so CI runs the same requests each time; the one printed reproduces a run.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service import Service

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("FUZZ_SEED") or "26"
if SEED == "random":  # make fuzz: a new seed each run, printed so that it can be repeated
    SEED = str(random.SystemRandom().randrange(1, 2**31))
# Every check of the contract and of the API's behaviour, but two that do not fit this API:
# - "schema-valid data is accepted" cannot hold where the document cannot say a rule (`page` and `offset`
#   exclude each other; a `file` part must carry a filename): those refusals are documented 400s, which
#   status_code_conformance checks;
# - "a deleted resource is gone" (use_after_free): DELETE /api/v1/process/<id> cancels a task, whose record
#   stays, and DELETE /api/v1/keys/<id> revokes a key, which stays listed (docs/api.md). Found by `make fuzz`.
CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance,use_after_free"]
# (role, arguments): revoking keys runs alone and last, so that the admin cannot revoke its own key (listed
# by GET /api/v1/keys) in the middle of the other operations.
RUNS = [
    ("admin", ["--exclude-operation-id", "keys_revoke_key"]),
    ("uploader", ["--phases", "examples,fuzzing,stateful"]),
    ("reader", ["--phases", "fuzzing"]),
    ("admin", ["--include-operation-id", "keys_revoke_key", "--phases", "fuzzing"]),
]
pytestmark = [pytest.mark.fuzz, pytest.mark.server]  # the real server process: the server tier


def make_key(server, role: str) -> str:
    body = json.dumps({"name": f"fuzz {role}", "role": role}).encode()
    status, _, made = server.request("POST", "/api/v1/keys", body, {"Content-Type": "application/json"})
    assert status == 201, made
    return made["secret"]


def schemathesis(url: str, secret: str, report: Path, extra: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    """One run of Schemathesis' command line; returns it and its JSON report."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {secret}",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "har,json",
        "--report-dir",
        str(report),
        *CHECKS,
        *extra,
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    # cwd: its cache of failures (.schemathesis/) stays with the report, out of the repository
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=report.parent)
    (summary,) = report.glob("json-*.json")
    return run, json.loads(summary.read_text())


def answers(report: Path) -> list[tuple[str, str, int]]:
    """(method, url, status) of every request the run sent, from its HAR report."""
    (har,) = report.glob("har-*.json")
    entries = json.loads(har.read_text())["log"]["entries"]
    return [(e["request"]["method"], e["request"]["url"], e["response"]["status"]) for e in entries]


def failures(output: str) -> str:
    """What Schemathesis said of its failures (each with the curl that reproduces it), long URLs cut."""
    start = output.find("FAILURES")
    text = output[start if start >= 0 else -4000 :]
    return re.sub(r"(\S{300})\S+", r"\1…", text)[:8000]


def test_the_fuzzer_finds_no_answer_outside_the_contract(tmp_path, capsys):
    service = Service(tmp_path, SSE_MAX_SECONDS="2", MAX_ACTIVE_TASKS="0")
    server = service.start()
    try:
        secrets = {"admin": server.key, "uploader": make_key(server, "uploader"), "reader": make_key(server, "reader")}
        sent, cases = {}, 0
        for number, (role, extra) in enumerate(RUNS):
            report = tmp_path / f"report-{number}-{role}"
            run, summary = schemathesis(server.url, secrets[role], report, extra)
            got = answers(report)
            sent[role] = sent.get(role, 0) + len(got)
            cases += summary["test_cases"]["generated"]
            errors = [(m, u[:300], s) for m, u, s in got if s >= 500]
            said = f"as {role}:\n{failures(run.stdout)}{run.stderr[-2000:]}"
            assert errors == [], f"5xx answers {errors[:10]} {said}"
            assert summary["failures"] == [] and summary["errors"] == [], said
            assert run.returncode == 0, said
        assert server.request("GET", "/api/v1/ping")[0] == 200
    finally:
        log = service.stop()
    assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]
    with capsys.disabled():
        total = sum(sent.values())
        per_role = ", ".join(f"{role} {n}" for role, n in sent.items())
        print(
            f"\nfuzz: {total} requests sent ({per_role}), {cases} test cases, 0 answers 5xx or outside the "
            f"contract; budget {EXAMPLES} examples per operation, seed {SEED}"
        )
