"""Slow clients against the real service (`python run.py`): do ping and a cached movie page keep answering?

    python bench/slow_clients.py                      # 200 slow senders, 60 s
    python bench/slow_clients.py --seconds 20 --connections 50
    python bench/slow_clients.py --readers            # 200 slow readers of large answers, 60 s

N connections (default 200) each send one byte per second for --seconds (default 60): most send a request's
headers byte by byte (they never finish them in that time); a share (--body-share, default 0.25) send
complete upload headers at once, then their text/csv body byte by byte. Meanwhile two probes ask
`GET /api/v1/ping` and `GET /api/v1/movies` (its cache warmed first) every 100 ms on fresh connections,
each with a 5 s timeout. A slow connection that receives an answer stops sending; it counts as cut with
408 (and after how long) or as closed without an answer. Everything talks to 127.0.0.1 and stops by itself.

With --readers, the slow connections are readers instead: each asks for a large answer at once and then
reads one byte a second. Half ask for a plays result of about --result-mb MB (uploaded and aggregated
first, by an embedded worker), half for a `limit=100` page of movies whose overviews are --overview-kb KB
long (two pages, three sorts: six different answers of about 100 overviews each). A reader counts as cut
if the server closed or reset its connection before the answer's end; the server's peak memory (its
process tree's RSS) is reported too. The probes start once every reader's answer has begun (the 200
requests arrive at once; how long the server took to begin them all is reported): what is measured is
the service while the readers stay, not the burst of their requests.

The last line is JSON: connections, seconds, p50/p99 of ping and of movies (in ms; an attempt that timed
out or was refused counts with the time it took), their errors, and how the slow connections ended.
Targets: slow senders, both p99 under 1000 ms; slow readers, both under 100 ms; no error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import Watch, serve, server_env
from tests.support.service import multipart

PROBE_TIMEOUT = 5.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class Probe(threading.Thread):
    """GET `path` every `interval` s until `stop` is set; latencies in ms, errors counted."""

    def __init__(self, port: int, path: str, interval: float, stop: threading.Event, headers: dict | None = None):
        super().__init__(daemon=True)
        self.port, self.path, self.interval, self.stop = port, path, interval, stop
        self.headers = headers or {}
        self.latencies: list[float] = []
        self.when: list[float] = []  # seconds since the probe started, of each attempt
        self.errors = {"timeout": 0, "refused": 0, "other": 0, "status": 0}

    def run(self) -> None:
        first = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT)
            try:
                conn.request("GET", self.path, headers=self.headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.errors["status"] += 1
            except TimeoutError:
                self.errors["timeout"] += 1
            except ConnectionRefusedError:
                self.errors["refused"] += 1
            except (OSError, http.client.HTTPException):
                self.errors["other"] += 1
            finally:
                conn.close()
            elapsed = time.monotonic() - started
            self.latencies.append(elapsed * 1000)
            self.when.append(started - first)
            self.stop.wait(max(0.0, self.interval - elapsed))

    def summary(self) -> dict:
        return {
            "n": len(self.latencies),
            "p50_ms": percentile(self.latencies, 0.5),
            "p99_ms": percentile(self.latencies, 0.99),
            "max_ms": percentile(self.latencies, 1.0),
            "slowest_at_s": [
                round(self.when[i]) for i in sorted(range(len(self.when)), key=self.latencies.__getitem__)[-6:]
            ],
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
        }


class SlowConnection:
    def __init__(self, port: int, payload: bytes, prefix: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.payload, self.sent = payload, 0
        self.answer = b""
        self.ended: float | None = None
        self.how = None  # "408", "answered <status>", "closed", "reset"
        if prefix:
            self._send_all(prefix)

    def _send_all(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def poll(self) -> None:
        """Read whatever the server sent; note how the connection ended."""
        if self.ended is not None:
            return
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self._end("closed" if not self.answer else self._status())
                    return
                self.answer += data
                if b"\r\n\r\n" in self.answer:
                    self._end(self._status())
                    return
        except BlockingIOError:
            return
        except OSError:
            self._end("reset" if not self.answer else self._status())

    def _status(self) -> str:
        line = self.answer.split(b"\r\n", 1)[0].split()
        code = line[1].decode() if len(line) > 1 else "?"
        return "408" if code == "408" else f"answered {code}"

    def _end(self, how: str) -> None:
        self.ended, self.how = time.monotonic(), how
        self.sock.close()

    def send_byte(self) -> None:
        if self.ended is not None or self.sent >= len(self.payload):
            return
        try:
            self.sock.send(self.payload[self.sent : self.sent + 1])
            self.sent += 1
        except BlockingIOError:
            pass
        except OSError:
            self.poll()
            if self.ended is None:
                self._end("reset")


def slow_payloads(n: int, seconds: float, body_share: float, key: str) -> list[tuple[bytes, bytes]]:
    """(sent at once, sent a byte a second) per connection; neither finishes its request within `seconds`.

    The uploads carry a valid key: an attacker with one is the harder case (a request without one is
    answered 401 before its body is read).
    """
    pad = b"a" * (int(seconds) + 30)
    out = []
    bodies = round(n * body_share)
    for i in range(n):
        if i < bodies:
            body = b"title,year\n" + b"x" * (int(seconds) + 30 + 64 * 1024)
            head = (
                b"POST /api/v1/upload?filename=slow.csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + key.encode() + b"\r\n"
                b"Content-Type: text/csv\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            out.append((head, body))
        else:
            out.append((b"", b"GET /api/v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + pad + b"\r\n\r\n"))
    return out


# --- slow readers ----------------------------------------------------------------------------------------------


def upload_and_wait(server, data: bytes, filename: str) -> dict:
    body, headers = multipart(data, filename)
    status, _, answer = server.request("POST", "/api/v1/upload", body, headers)
    if status != 202:
        raise RuntimeError(f"upload of {filename}: {status} {answer[:300]!r}")
    task_id = json.loads(answer)["task_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status, _, answer = server.request("GET", f"/api/v1/process/{task_id}")
        if status != 200:
            raise RuntimeError(f"task {task_id}: {status} {answer[:300]!r}")
        task = json.loads(answer)
        if task["status"] in ("completed", "failed", "cancelled"):
            return task
        time.sleep(0.2)
    raise RuntimeError(f"task {task_id} did not finish")


def large_answers(server, result_mb: float, overview_kb: int) -> tuple[list[str], dict[str, int]]:
    """Paths of the large answers the readers ask for, and the size of each kind (bytes)."""
    songs = int(result_mb * 1e6 / 26)  # "Song 0000001,2020-01-01,1\n"
    plays = "Song,Date,Number of Plays\n" + "".join(f"Song {i:07d},2020-01-01,1\n" for i in range(songs))
    task = upload_and_wait(server, plays.encode(), "plays.csv")
    if task["status"] != "completed":
        raise RuntimeError(f"the plays task ended {task['status']}: {task.get('error')}")
    result = task["result_url"]
    header = "budget,homepage,original_language,original_title,overview,release_date,revenue,runtime,status,title"
    rows = [
        f"1000,,en,Long {i},{'x' * (overview_kb * 1000)},2000-01-{1 + i % 28:02d},1000,90,Released,Long {i}"
        for i in range(200)
    ]
    task = upload_and_wait(server, ("\n".join([header, *rows]) + "\n").encode(), "movies.csv")
    if task["status"] != "completed":
        raise RuntimeError(f"the movies task ended {task['status']}: {task.get('error')}")
    pages = [
        f"/api/v1/movies?limit=100&page={page}&sort_by={sort}"
        for page in (1, 2)
        for sort in ("release_date", "rating", "title")
    ]
    sizes = {
        "result": len(server.request("GET", result)[2]),
        "page": max(len(server.request("GET", path)[2]) for path in pages),  # also warms their cache
    }
    return [result, *pages], sizes


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # Linux's tcpi_state: reset by the server, or closed by it


class SlowReader:
    """Asks for `path` at once, then reads one byte a second. Its socket still holds megabytes to read when the
    server cuts it, so the cut is seen in the connection's TCP state, not by reading up to it."""

    def __init__(self, port: int, path: str, key: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.read = 0
        self.ended: float | None = None
        self.how = None  # "reset", "closed"

    def read_byte(self) -> None:
        if self.ended is not None:
            return
        try:
            data = self.sock.recv(1)
        except BlockingIOError:
            return
        except OSError:
            self._end("reset")
            return
        if not data:
            self._end("closed")
            return
        self.read += len(data)
        state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        if state in (TCP_CLOSE, TCP_CLOSE_WAIT):
            self._end("reset" if state == TCP_CLOSE else "closed")

    def _end(self, how: str) -> None:
        self.ended, self.how = time.monotonic(), how
        self.sock.close()


def run_readers(args, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="slow-readers-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir, WORKERS="1", **overrides)
        with serve("run.py", env, workdir / "server.log") as server:
            paths, sizes = large_answers(server, args.result_mb, args.overview_kb)
            for _ in range(3):  # warm the small movie page's cache
                server.request("GET", "/api/v1/movies")
            with Watch(server.proc.pid, interval=0.2) as memory:
                readers, refused = [], 0
                for i in range(args.connections):
                    path = paths[0] if i % 2 == 0 else paths[1 + (i // 2) % (len(paths) - 1)]
                    try:
                        readers.append(SlowReader(server.port, path, server.key))
                    except OSError:
                        refused += 1
                answering = time.monotonic()
                waiting = [r.sock for r in readers]
                while waiting and time.monotonic() - answering < 60:  # every answer has begun: the burst is over
                    ready, _, _ = select.select(waiting, [], [], 1)
                    waiting = [sock for sock in waiting if sock not in ready]
                answering = time.monotonic() - answering
                stop = threading.Event()
                probes = [
                    Probe(server.port, path, args.interval, stop, server.auth_header)
                    for path in ("/api/v1/ping", "/api/v1/movies")
                ]
                for probe in probes:
                    probe.start()
                started = time.monotonic()
                while time.monotonic() - started < args.seconds:
                    for reader in readers:
                        reader.read_byte()
                    time.sleep(max(0.0, 1 - (time.monotonic() - started) % 1))
                stop.set()
                for probe in probes:
                    probe.join(PROBE_TIMEOUT + 1)
            cut = [r.ended - r.opened for r in readers if r.ended is not None]
            ends: dict[str, int] = {}
            for reader in readers:
                ends[reader.how or "open at end"] = ends.get(reader.how or "open at end", 0) + 1
                if reader.ended is None:
                    reader.sock.close()
    ping, movies = (p.summary() for p in probes)
    return {
        "readers": args.connections,
        "seconds": args.seconds,
        "answer_bytes": sizes,
        "settings": overrides,
        "ping_p50_ms": ping["p50_ms"],
        "ping_p99_ms": ping["p99_ms"],
        "movies_p50_ms": movies["p50_ms"],
        "movies_p99_ms": movies["p99_ms"],
        "errors": ping["errors"] + movies["errors"],
        "ping": ping,
        "movies": movies,
        "refused_readers": refused,
        "all_answers_begun_s": round(answering, 1),
        "answers_not_begun": len(waiting),
        "cut": len(cut),
        "cut_after_s": {
            "min": round(min(cut), 1),
            "median": round(statistics.median(cut), 1),
            "max": round(max(cut), 1),
        }
        if cut
        else None,
        "reader_ends": ends,
        "server_rss_mb": {"before": round(memory.before / 1e6), "peak": round(memory.peak / 1e6)},
        "server_cpu_s": round(memory.cpu_seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=200, help="slow connections (default 200)")
    parser.add_argument("--seconds", type=float, default=60, help="how long they send (default 60)")
    parser.add_argument(
        "--body-share",
        type=float,
        default=0.25,
        help="share of them that send a slow upload body rather than slow headers (default 0.25)",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    parser.add_argument("--readers", action="store_true", help="slow readers of large answers instead of senders")
    parser.add_argument("--result-mb", type=float, default=4, help="--readers: the plays result's size (default 4)")
    parser.add_argument(
        "--overview-kb", type=int, default=8, help="--readers: each large movie's overview, in kB (default 8)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server, e.g. --env HEADER_TIMEOUT=10 (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.env)
    if args.readers:
        print(json.dumps(run_readers(args, overrides)))
        return 0

    with tempfile.TemporaryDirectory(prefix="slow-bench-") as tmp:
        workdir = Path(tmp)
        env = server_env(workdir, WORKERS="0", **overrides)
        with serve("run.py", env, workdir / "server.log") as server:
            for _ in range(3):  # warm the movie page's cache
                server.request("GET", "/api/v1/movies")
            conns = []
            refused = 0
            for head, body in slow_payloads(args.connections, args.seconds, args.body_share, server.key):
                try:
                    conns.append(SlowConnection(server.port, body, head))
                except OSError:
                    refused += 1
            stop = threading.Event()
            probes = [
                Probe(server.port, path, args.interval, stop, server.auth_header)
                for path in ("/api/v1/ping", "/api/v1/movies")
            ]
            for probe in probes:
                probe.start()
            started = time.monotonic()
            next_byte = started
            while time.monotonic() - started < args.seconds:
                now = time.monotonic()
                if now >= next_byte:
                    for conn in conns:
                        conn.send_byte()
                    next_byte += 1
                for conn in conns:
                    conn.poll()
                time.sleep(0.05)
            stop.set()
            for probe in probes:
                probe.join(PROBE_TIMEOUT + 1)
            for conn in conns:
                conn.poll()
            cut = [c.ended - c.opened for c in conns if c.how == "408"]
            ends: dict[str, int] = {}
            for conn in conns:
                ends[conn.how or "open at end"] = ends.get(conn.how or "open at end", 0) + 1
                if conn.ended is None:
                    conn.sock.close()
    ping, movies = (p.summary() for p in probes)
    result = {
        "connections": args.connections,
        "seconds": args.seconds,
        "body_share": args.body_share,
        "settings": overrides,
        "ping_p50_ms": ping["p50_ms"],
        "ping_p99_ms": ping["p99_ms"],
        "movies_p50_ms": movies["p50_ms"],
        "movies_p99_ms": movies["p99_ms"],
        "ping": ping,
        "movies": movies,
        "errors": ping["errors"] + movies["errors"],
        "refused_slow": refused,
        "cut_408": len(cut),
        "cut_408_after_s": {
            "min": round(min(cut), 1),
            "median": round(statistics.median(cut), 1),
            "max": round(max(cut), 1),
        }
        if cut
        else None,
        "slow_ends": ends,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
