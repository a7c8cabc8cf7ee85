"""The `moviecat` command against the real server (`python run.py`, embedded store), run as a user runs it:
a separate process, its output read from a pipe, or from a terminal (a pty) for the progress bars.

`python -m moviecat` is what the console script calls (`moviecat.cli:main`); the packaging test at the end
checks the wheel declares that script.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from rich.filesize import decimal

from moviecat.client import attachment_name, one_line, sse
from moviecat.generate import generate_movies
from tests.support import REPO, free_port
from tests.support.service import Service

SAMPLE_PLAYS = REPO / "tests" / "data" / "plays_example_input.csv"
TOTALS = (
    b"Song,Date,Total Number of Plays for Date\n"
    b"In The End,2020-01-01,1500\nIn The End,2020-01-02,500\nUmbrella,2020-01-01,150\nUmbrella,2020-01-02,250\n"
)
ESCAPE = "\x1b["

pytestmark = pytest.mark.server  # the command against the real server: the server tier (make check leaves it out)


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("cli"))
    server = service.start()
    yield service, server
    service.stop()


@pytest.fixture(scope="module")
def server(running):
    return running[1]


def environment(server, key: str | None = None, **more: str) -> dict[str, str]:
    """The user's environment: the server and key in MOVIECAT_URL/MOVIECAT_KEY, nothing that forces colour."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env.update(PYTHONPATH=str(REPO), MOVIECAT_URL=server.url, MOVIECAT_KEY=server.key if key is None else key)
    env.update(more)
    return env


def moviecat(server, *args, cwd: Path = REPO, key: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The command with its output to pipes (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "moviecat", *map(str, args)],
        cwd=cwd,
        env=environment(server, key, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def in_terminal(server, *args, timeout: float = 300) -> tuple[int, str]:
    """The command in a 120-column pseudo-terminal (stdout and stderr both): its exit status and all it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moviecat", *map(str, args)],
        cwd=REPO,
        env=environment(server, TERM="xterm-256color"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    drawn, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not data:
                    break
                drawn.append(data)
        else:
            proc.kill()
            raise AssertionError(f"moviecat {args} did not finish in {timeout} s")
        return proc.wait(timeout=30), b"".join(drawn).decode(errors="replace")
    finally:
        os.close(master)


def summary(record: dict) -> str:
    """The line `upload --wait` prints for a finished movies task, from the server's record of it."""
    return (
        f"task {record['task_id']} {record['status']}: {record['rows_read']:,} rows read, "
        f"{record['rows_inserted']:,} inserted, {record['rows_updated']:,} updated, "
        f"{record['rows_rejected']:,} rejected in {record['duration_s']:.2f} s"
    )


def task_of(server, task_id: str) -> dict:
    status, _, record = server.request("GET", f"/api/v1/process/{task_id}")
    assert status == 200, record
    return record


def test_upload_wait_follows_the_task_to_its_end_and_prints_the_servers_figures(server, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=2000, seed=26)  # with title-less rows: rejects to show
    done = moviecat(server, "upload", path, "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no terminal: no bar
    task_id = re.match(r"task (\S+) completed: ", done.stdout).group(1)
    record = task_of(server, task_id)
    assert record["status"] == "completed" and record["rows_read"] == 2000 and record["rows_rejected"] > 5
    shown = [f"  line {r['line']}: {r['reason']}" for r in record["rejects"][:5]]
    more = f"  … and {record['rows_rejected'] - 5:,} more (moviecat status {task_id} --json shows the first "
    lines = done.stdout.splitlines()
    assert lines[:6] == [summary(record), *shown]
    assert lines[6].startswith(more) and len(lines) == 7


def test_upload_without_wait_prints_the_task_id_alone(server):
    done = moviecat(server, "upload", SAMPLE_PLAYS, "--kind", "plays")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert done.stdout == f"{task_id}\n" and task_of(server, task_id)["kind"] == "plays"


def test_a_failed_task_exits_1_and_says_why(server, tmp_path):
    path = tmp_path / "overflow.csv"  # the totals overflow a 64-bit integer: the worker fails the task
    path.write_text(f"Song,Date,Number of Plays\nA,2020-01-01,{2**62}\nA,2020-01-01,{2**62}\n")
    done = moviecat(server, "upload", path, "--wait")
    assert done.returncode == 1
    task_id = re.match(r"task (\S+) failed: ", done.stdout).group(1)
    record = task_of(server, task_id)
    assert record["status"] == "failed"
    assert done.stderr == f"moviecat: error: task {task_id} failed: {record['error']}\n"
    assert "exceeds 9223372036854775807" in done.stderr


def test_a_task_cancelled_while_followed_exits_1(server, tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=40_000, seed=11)
    follower = subprocess.Popen(
        [sys.executable, "-m", "moviecat", "upload", path, "--wait"],
        env=environment(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (processing := server.request("GET", "/api/v1/processes?status=processing")[2]["processes"]):
        assert follower.poll() is None and time.monotonic() < deadline, "the task never started"
        time.sleep(0.1)
    task_id = processing[0]["task_id"]
    assert server.request("DELETE", f"/api/v1/process/{task_id}")[0] == 202
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 1
    assert out.startswith(f"task {task_id} cancelled: ")
    assert err == f"moviecat: error: task {task_id} was cancelled\n"


def test_a_result_downloads_byte_for_byte(server, tmp_path):
    done = moviecat(server, "upload", SAMPLE_PLAYS, "--wait")
    assert done.returncode == 0, done.stderr
    task_id = re.match(r"task (\S+) completed: 7 rows read, 4 song-day totals, 0 rejected", done.stdout).group(1)
    assert done.stdout.splitlines()[-1] == f"result: {len(TOTALS)} bytes; moviecat result {task_id} downloads it"
    status, _, served = server.request("GET", f"/api/v1/process/{task_id}/result", raw=True)
    assert status == 200 and served == TOTALS

    named = moviecat(server, "result", task_id, "-o", tmp_path / "out.csv")
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "out.csv").read_bytes() == served
    assert named.stderr == f"wrote {len(TOTALS)} bytes to {tmp_path / 'out.csv'}\n"

    default = moviecat(server, "result", task_id, cwd=tmp_path)  # the name the server gives
    assert default.returncode == 0, default.stderr
    assert (tmp_path / "plays_example_input-totals.csv").read_bytes() == served
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "plays_example_input-totals.csv"]  # no .part

    piped = subprocess.run(
        [sys.executable, "-m", "moviecat", "result", task_id, "-o", "-"],
        env=environment(server),
        capture_output=True,
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stdout == served and piped.stderr == b""


def test_a_refused_upload_is_one_line_and_exit_1(server, tmp_path):
    before = server.request("GET", "/api/v1/processes")[2]["total_docs"]
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,2\n")
    done = moviecat(server, "upload", path, "--wait")
    assert done.returncode == 1 and done.stdout == ""
    refused = r"moviecat: error: 422 unrecognised_header: The header fits no job kind\. [^\n]+\n"
    assert re.fullmatch(refused, done.stderr)
    assert server.request("GET", "/api/v1/processes")[2]["total_docs"] == before


@pytest.mark.parametrize(
    "args, key, line",
    [
        (["status", "nope"], None, r"moviecat: error: 404 task_not_found: No task with id 'nope'\.\n"),
        (["--key", "mcat_wrong", "movies"], None, r"moviecat: error: 401 \w+: [^\n]+\n"),  # the flag wins
        (["tasks"], "", r"moviecat: error: 401 \w+: [^\n]+\n"),
    ],
    ids=["unknown-task", "wrong-key", "no-key"],
)
def test_every_api_error_is_one_line(server, args, key, line):
    done = moviecat(server, *args, key=key)
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(line, done.stderr), done.stderr


def test_an_unreachable_server_is_one_line(server):
    done = moviecat(server, "tasks", MOVIECAT_URL=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(r"moviecat: error: unreachable: cannot reach http://127\.0\.0\.1:\d+: [^\n]+\n", done.stderr)


def test_cancelling_a_finished_task_is_refused_in_one_line(server):
    task_id = moviecat(server, "upload", SAMPLE_PLAYS, "--wait").stdout.split()[1]
    done = moviecat(server, "cancel", task_id)
    assert done.returncode == 1
    assert done.stderr.startswith(f"moviecat: error: 409 not_cancellable: Task {task_id} is already completed;")
    assert done.stderr.count("\n") == 1


def test_status_tasks_and_movies_show_what_the_api_answers(server):
    moviecat(server, "upload", REPO / "tests" / "data" / "movies_data_assignment.head10.csv", "--wait")
    api = server.request("GET", "/api/v1/movies?year=1995&sort_by=title&order=-1&limit=3")[2]
    table = moviecat(server, "movies", "--year", 1995, "--sort-by", "title", "--order", "-1", "--limit", 3)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "title\tyear\treleased\tlang\trating\tvotes\truntime",
        *(
            f"{m['title']}\t{m['year']}\t{m['release_date'][:10]}\t{m['original_language']}\t{m['vote_average']}\t"
            f"{m['vote_count']}\t{m['runtime']}"
            for m in api["movies"]
        ),
    ]
    assert len(api["movies"]) == 3
    as_json = moviecat(server, "movies", "--year", 1995, "--sort-by", "title", "--order", "-1", "--limit", 3, "--json")
    assert json.loads(as_json.stdout) == api

    listed = moviecat(server, "tasks", "--status", "completed", "--limit", 100, "--json")
    assert json.loads(listed.stdout) == server.request("GET", "/api/v1/processes?status=completed&limit=100")[2]
    rows = moviecat(server, "tasks", "--status", "failed").stdout.splitlines()
    assert rows[0] == "task\tkind\tstatus\tdone\trows\tfile\tcreated"
    assert all(row.split("\t")[2] == "failed" for row in rows[1:])

    task_id = json.loads(listed.stdout)["processes"][0]["task_id"]
    shown = moviecat(server, "status", task_id).stdout
    assert f"task      {task_id}\n" in shown and "status    completed\n" in shown
    assert json.loads(moviecat(server, "status", task_id, "--json").stdout) == task_of(server, task_id)


def test_a_terminal_gets_both_bars_and_a_pipe_gets_plain_lines(server, tmp_path):
    path = tmp_path / "movies20k.csv"
    generate_movies(str(path), rows=20_000, seed=7)
    status, drawn = in_terminal(server, "upload", path, "--wait")
    assert status == 0, drawn
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)  # the bars' text, without colours and cursor moves
    frames = [line for line in re.split(r"[\r\n]", text) if line]
    size = decimal(path.stat().st_size)  # the bar's unit: 7.3 MB
    upload_bars = [f for f in frames if re.search(rf"upload .* 100% {size}/{size}", f)]
    row_bars = [f for f in frames if re.search(r"movies .*\d+% .*[\d,]+ rows +[\d,]+ rows/s", f)]
    assert upload_bars and row_bars, drawn
    assert re.search(r"movies .*100% .*20,000 rows", row_bars[-1])
    assert ESCAPE in drawn  # colour and cursor movement: a terminal
    assert re.search(r"task \S+ completed: 20,000 rows read, ", drawn)

    piped = moviecat(server, "upload", path, "--wait")
    assert piped.returncode == 0 and piped.stderr == ""
    assert ESCAPE not in piped.stdout and "\r" not in piped.stdout
    assert re.match(r"task \S+ completed: 20,000 rows read, 0 inserted, ", piped.stdout)  # the same rows again


def test_serve_runs_the_service_and_upload_polls_when_streams_are_refused(tmp_path):
    """`moviecat serve` is `python run.py`; with SSE_MAX_STREAMS=0 every events stream is refused (503), so
    `upload --wait` follows the task by reading its record."""
    service = Service(tmp_path, command=[sys.executable, "-m", "moviecat", "serve"], SSE_MAX_STREAMS="0")
    server = service.start()
    try:
        done = moviecat(server, "upload", SAMPLE_PLAYS, "--wait")
        assert done.returncode == 0, done.stderr
        task_id = re.match(r"task (\S+) completed: 7 rows read, 4 song-day totals", done.stdout).group(1)
    finally:
        log = service.stop()
    assert re.search(rf'"GET /api/v1/process/{task_id}/events HTTP/1.1" 503 ', log)
    assert len(re.findall(rf'"GET /api/v1/process/{task_id} HTTP/1.1" 200 ', log)) >= 1


def test_keys_and_generate_are_subcommands(running, tmp_path):
    service, server = running
    store = {name: service.env[name] for name in ("MONGO_URI", "DATA_FOLDER", "UPLOAD_FOLDER", "RESULT_FOLDER")}
    made = moviecat(server, "keys", "create", "--name", "cli reader", "--role", "reader", **store)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.splitlines()[-1]
    assert moviecat(server, "movies", "--json", key=secret).returncode == 0  # the new key signs in
    assert "cli reader" in moviecat(server, "keys", "list", **store).stdout
    assert moviecat(server, "keys", "--help").stdout.startswith("usage: moviecat keys ")

    wrote = moviecat(server, "generate", "plays", "--rows", 50, "--seed", 3, tmp_path / "p.csv")
    assert wrote.returncode == 0, wrote.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 51


def test_what_the_server_sends_cannot_drive_the_terminal_nor_leave_the_folder():
    """Server strings are shown as one line without control characters; a download's name from
    Content-Disposition is a bare file name, never a path."""
    assert one_line("a\x1b[2Jb\nc\u202ed") == "a [2Jb c d"
    assert one_line("x" * 600) == "x" * 499 + "…"

    def named(disposition: str) -> str | None:
        return attachment_name(httpx.Response(200, headers={"Content-Disposition": disposition}))

    assert named("attachment; filename=\"t.csv\"; filename*=UTF-8''Am%C3%A9lie-totals.csv") == "Amélie-totals.csv"
    assert named("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd") == "passwd"
    assert named('attachment; filename="..\\..\\evil.csv"') == "evil.csv"
    assert named("attachment; filename*=UTF-8''..") is None and named("inline") is None


def test_the_event_stream_is_read_as_the_server_writes_it():
    text = 'retry: 3000\n\n: keep-alive\n\nevent: progress\ndata: {"a":1}\n\nevent: end\ndata: {}\n\n'
    assert list(sse(iter(text.split("\n")))) == [("progress", '{"a":1}'), ("end", "{}")]


def test_the_package_installs_the_moviecat_command(tmp_path):
    """The wheel `pip install .` would install: the console script, the pins of requirements.txt, the page's
    files; built offline from a copy of the sources (no build files left in the checkout)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        (source / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["cp", "-r", str(REPO / "app"), str(REPO / "moviecat"), str(source)], check=True)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path, source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("moviecat-*.whl")
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = zipped.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "[console_scripts]\nmoviecat = moviecat.cli:main" in zipped.read(info).decode()
    pins = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert re.findall(r"^Requires-Dist: (\S+)$", metadata, re.M) == [pin for pin in pins if pin]
    assert {"app/static/main.js", "app/templates/index.html", "moviecat/cli.py", "moviecat/generate.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
