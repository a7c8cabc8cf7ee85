"""Load GET /api/v1/movies with the cache warm, beside a bare endpoint of the same server: requests/s, latency.

    python bench/api.py                                  # wrk if it is installed, else the Python client
    python bench/api.py --duration 3 --movies 2000 --client python

Starts the production server (`python run.py`: gunicorn gthread, the embedded MongoDB stand-in and its
worker, Redis at --redis-url or the embedded stand-in with --fakeredis), uploads a generated file of
--movies rows and waits for its task. Every movie URL is then checked: its second request must be a
cache hit (X-Cache: hit) whose body is, byte for byte, the page computed from MongoDB (a miss) by an
in-process copy of the service that ingested the same file. Then, for --duration seconds each, in
--rounds alternating rounds, concurrent keep-alive clients load (a) a few movie URLs and (b) GET
/api/v1/ping, which answers a constant, with the same client shape: with wrk, one wrk per URL (three
of the bare one too), --connections and --threads split evenly between them; their requests add up, and
the latencies shown are the worst instance's and round's (the Python client's are exact). Pages are cached for
--cache-ttl seconds (default: longer than the run), so the movie
figures are the cache-hit path; the hit rate is counted from X-Cache by the Python client, or from
Redis's keyspace hits and misses during the run with wrk (server-wide: other clients of that Redis blur
it; unknown with --fakeredis). Client and server share this machine's cores.
Target: cached movie pages at >= 50% of the bare endpoint's requests/s. The last line is JSON.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_config
from bench._server import Server, serve, server_env
from moviecat.generate import generate_movies

MOVIE_PATHS = (
    "/api/v1/movies",
    "/api/v1/movies?year=2015&language=en&sort_by=rating&order=-1&limit=20",
    "/api/v1/movies?sort_by=title&page=5&limit=50",
)
BARE_PATH = "/api/v1/ping"
CACHE_KEYS = "cache:movies:*"  # app.store.cache's prefix and the route's namespace
RATIO_TARGET = 0.5


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    hits: int | None = None  # answers with X-Cache: hit, when the client reads headers
    latencies: list[float] | None = None  # every request's (s), when the client keeps them

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms (nearest rank)."""
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    return at(0.5), at(0.99)


def combine(loads: list[Load], side_by_side: bool) -> Load:
    """Several runs as one: side by side (at the same time) or one after another. Percentiles are exact
    when every run kept its latencies, else the worst run's."""
    requests = sum(x.requests for x in loads)
    seconds = sum(x.seconds for x in loads) / (len(loads) if side_by_side else 1)
    if all(x.latencies is not None for x in loads):
        latencies = [t for x in loads for t in x.latencies]
        p50, p99 = percentiles(latencies)
    else:
        latencies, p50, p99 = None, max(x.p50_ms for x in loads), max(x.p99_ms for x in loads)
    hits = None if any(x.hits is None for x in loads) else sum(x.hits for x in loads)
    return Load(requests, seconds, p50, p99, sum(x.errors for x in loads), hits, latencies)


# -- reference and checks ------------------------------------------------------------------------------------


class _NoQueue:
    def send(self, task_id: str, kind: str) -> bool:
        return True


def reference_pages(csv_path: Path, paths: tuple[str, ...], workdir: Path) -> dict[str, bytes]:
    """Each path's body as MongoDB answers it (a cache miss) in an in-process service fed the same file."""
    import fakeredis

    from app import create_app
    from app.api import keys
    from app.worker.loop import Worker
    from tests.support.mongomock_db import mongomock_client as embedded_client

    config = load_config(
        {"UPLOAD_FOLDER": str(workdir / "reference-uploads"), "RESULT_FOLDER": str(workdir / "reference-results")}
    )
    db = embedded_client()["reference"]
    client = create_app(config, store=db, redis_client=fakeredis.FakeRedis(), producer=_NoQueue()).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + keys.create(db, "bench reference", "admin")[1]
    response = client.post("/api/v1/upload?filename=movies.csv", data=csv_path.read_bytes(), content_type="text/csv")
    if response.status_code != 202:
        raise RuntimeError(f"the reference upload was refused: {response.get_data(as_text=True)}")
    Worker(config, store=db, name="bench-reference").work()
    task = client.get(f"/api/v1/process/{response.json['task_id']}").json
    if task["status"] != "completed":
        raise RuntimeError(f"the reference ingest ended {task['status']}: {task.get('error')}")
    pages = {}
    for path in paths:
        response = client.get(path)
        if response.status_code != 200 or response.headers["X-Cache"] != "miss":
            raise RuntimeError(f"reference {path}: {response.status_code} X-Cache={response.headers.get('X-Cache')}")
        pages[path] = response.data
    return pages


def upload_and_wait(server: Server, csv_path: Path, timeout: float = 300) -> dict:
    """Upload the file to the server and wait for its task; the task record."""
    status, _, body = server.request(
        "POST", "/api/v1/upload?filename=movies.csv", csv_path.read_bytes(), {"Content-Type": "text/csv"}
    )
    if status != 202:
        raise RuntimeError(f"upload refused ({status}): {body!r}")
    task_id = json.loads(body)["task_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = json.loads(server.request("GET", f"/api/v1/process/{task_id}")[2])
        if task["status"] == "completed":
            return task
        if task["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"the ingest task ended {task['status']}: {task.get('error')}")
        time.sleep(0.2)
    raise RuntimeError(f"the ingest task did not finish in {timeout:.0f} s")


def check_cached(server: Server, reference: dict[str, bytes]) -> None:
    """Every movie URL answers a cache hit that is MongoDB's page, byte for byte."""
    for path, expected in reference.items():
        server.request("GET", path)  # fills the cache if it is not yet
        status, headers, body = server.request("GET", path)
        if status != 200 or headers.get("X-Cache") != "hit":
            raise RuntimeError(f"{path}: expected a cache hit, got {status} X-Cache={headers.get('X-Cache')}")
        if body != expected:
            raise RuntimeError(
                f"{path}: the cached page differs from MongoDB's answer:\n{body[:300]!r}\nexpected\n{expected[:300]!r}"
            )


def check_bare(server: Server) -> None:
    status, _, body = server.request("GET", BARE_PATH)
    if status != 200 or json.loads(body) != {"ok": True}:
        raise RuntimeError(f"{BARE_PATH} answered {status}: {body!r}")


# -- wrk --------------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _search(pattern: str, text: str) -> re.Match:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{text}")
    return match


def _ms(text: str) -> float:
    number, unit = _search(r"^([\d.]+)(us|ms|s|m)$", text).groups()
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> Load:
    """wrk --latency's summary: requests, requests/s, the 50% and 99% latencies, errors."""
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    return Load(
        requests=int(_search(r"(\d+) requests in", output)[1]),
        seconds=_ms(_search(r"requests in ([\d.]+\w+),", output)[1]) / 1e3,
        p50_ms=_ms(_search(r"\s50%\s+(\S+)", output)[1]),
        p99_ms=_ms(_search(r"\s99%\s+(\S+)", output)[1]),
        errors=errors,
    )


def wrk_load(
    port: int, paths: list[str], duration: float, connections: int, threads: int, headers: dict | None = None
) -> Load:
    """One wrk per path, all at once, connections and threads split evenly; totals and the worst latencies."""
    each_threads = max(1, threads // len(paths))
    each_connections = max(each_threads, connections // len(paths))
    header_args = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    procs = [
        subprocess.Popen(
            [
                "wrk",
                f"-t{each_threads}",
                f"-c{each_connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                *header_args,
                f"http://127.0.0.1:{port}{path}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in paths
    ]
    return combine([parse_wrk(proc.communicate()[0]) for proc in procs], side_by_side=True)


# -- the Python client ------------------------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    hits: int = 0


def _client_thread(port: int, paths: list[str], first: int, deadline: float, tally: _Tally, headers: dict) -> None:
    """One keep-alive connection, requesting the paths in turn until the deadline."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = first
    while (start := time.perf_counter()) < deadline:
        path, n = paths[n % len(paths)], n + 1
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            tally.errors += 1
            conn.close()  # the next request opens a new connection
            continue
        tally.latencies.append(time.perf_counter() - start)
        tally.errors += response.status != 200
        tally.hits += response.getheader("X-Cache") == "hit"
    conn.close()


def _client_process(
    port: int, paths: list[str], connections: int, first: int, duration: float, headers: dict
) -> _Tally:
    deadline = time.perf_counter() + duration
    tallies = [_Tally() for _ in range(connections)]
    threads = [
        threading.Thread(target=_client_thread, args=(port, paths, first + i, deadline, tally, headers))
        for i, tally in enumerate(tallies)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = [x for t in tallies for x in t.latencies]
    return _Tally(latencies, sum(t.errors for t in tallies), sum(t.hits for t in tallies))


def python_load(
    port: int, paths: list[str], duration: float, connections: int, threads: int, headers: dict | None = None
) -> Load:
    """`connections` client threads, one keep-alive connection each, spread over `threads` processes."""
    processes = max(1, min(threads, connections))
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        tallies = list(
            pool.map(
                _client_process,
                [port] * processes,
                [paths] * processes,
                shares,
                [sum(shares[:i]) for i in range(processes)],
                [duration] * processes,
                [headers or {}] * processes,
            )
        )
    latencies = [x for t in tallies for x in t.latencies]
    if not latencies:
        raise RuntimeError("the Python client completed no request")
    return Load(
        len(latencies),
        duration,
        *percentiles(latencies),
        errors=sum(t.errors for t in tallies),
        hits=sum(t.hits for t in tallies),
        latencies=latencies,
    )


CLIENTS = {"wrk": wrk_load, "python": python_load}


# -- the run ----------------------------------------------------------------------------------------------


def redis_stats(url: str | None) -> tuple[int, int] | None:
    if url is None:
        return None
    stats = redis.Redis.from_url(url).info("stats")
    return stats["keyspace_hits"], stats["keyspace_misses"]


def hit_rate(load: Load, redis_counts: tuple[int, int] | None) -> float | None:
    """From the client's X-Cache count, else from Redis's keyspace (hits, misses) during the movie runs."""
    if load.hits is not None:
        return load.hits / load.requests
    if not redis_counts or not sum(redis_counts):
        return None
    return redis_counts[0] / sum(redis_counts)


def empty_cache(url: str) -> None:
    """Cached pages of an earlier run (other data, a long TTL) must not answer this one."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        raise SystemExit(f"no Redis at {url} ({e}): start one (redis-server) or pass --fakeredis") from None
    for key in client.scan_iter(CACHE_KEYS):
        client.delete(key)


def measure(server: Server, args, redis_url: str | None) -> tuple[Load, Load, float | None]:
    """Movies and bare in alternating rounds, so a machine busy with something else weighs on both alike."""
    run = functools.partial(CLIENTS[args.client], headers=server.auth_header)
    movies, bare = list(MOVIE_PATHS), [BARE_PATH] * len(MOVIE_PATHS)  # the same client shape for both
    for paths in (movies, bare):  # warm-up: connections, the server's thread pool
        run(server.port, paths, 1, args.connections, args.threads)
    each = args.duration / args.rounds
    movie_runs, bare_runs, hits, misses = [], [], 0, 0
    for _ in range(args.rounds):
        before = redis_stats(redis_url)
        movie_runs.append(run(server.port, movies, each, args.connections, args.threads))
        after = redis_stats(redis_url)
        if before and after:
            hits, misses = hits + after[0] - before[0], misses + after[1] - before[1]
        bare_runs.append(run(server.port, bare, each, args.connections, args.threads))
    movie_load = combine(movie_runs, side_by_side=False)
    rate = hit_rate(movie_load, (hits, misses) if redis_url else None)
    return movie_load, combine(bare_runs, side_by_side=False), rate


def client_name(name: str) -> str:
    if name == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
        return " ".join(version[:2]) or "wrk"
    return "Python (http.client threads)"


def report(args, task: dict, movie_load: Load, bare_load: Load, cache_hit_rate: float | None) -> dict:
    config = load_config()
    print(
        f"server: run.py, gunicorn gthread, 1 process x {config.WEB_THREADS} threads (embedded MongoDB), "
        f"Redis {'embedded stand-in' if args.fakeredis else args.redis_url}; {task['rows_inserted']:,} movies"
    )
    print(
        f"client: {client_name(args.client)}, {args.connections} connections, {args.threads} threads, "
        f"{args.duration:g} s per endpoint in {args.rounds} alternating rounds; client and server share "
        f"{os.cpu_count()} cores"
    )
    print(f"checked: {len(MOVIE_PATHS)} movie URLs answer cache hits equal to MongoDB's page, byte for byte")
    print(f"{'endpoint':44} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    rows = [
        (f"GET /api/v1/movies ({len(MOVIE_PATHS)} URLs, cached)", movie_load),
        (f"GET {BARE_PATH} (constant)", bare_load),
    ]
    for label, load in rows:
        print(
            f"{label:44} {load.requests:>9,} {load.rps:>8.0f} {load.p50_ms:>7.2f} {load.p99_ms:>7.2f} {load.errors:>6}"
        )
    ratio = movie_load.rps / bare_load.rps
    rate = "unknown (--fakeredis with wrk)" if cache_hit_rate is None else f"{cache_hit_rate:.2%}"
    print(
        f"movies / bare: {ratio:.2f} (target >= {RATIO_TARGET}: {'met' if ratio >= RATIO_TARGET else 'NOT met'}); "
        f"cache hit rate {rate}"
    )
    return {
        "movies_rps": round(movie_load.rps, 1),
        "bare_rps": round(bare_load.rps, 1),
        "ratio": round(ratio, 3),
        "movies_p50_ms": round(movie_load.p50_ms, 2),
        "movies_p99_ms": round(movie_load.p99_ms, 2),
        "bare_p50_ms": round(bare_load.p50_ms, 2),
        "bare_p99_ms": round(bare_load.p99_ms, 2),
        "cache_hit_rate": None if cache_hit_rate is None else round(cache_hit_rate, 4),
        "errors": movie_load.errors + bare_load.errors,
        "client": args.client,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per endpoint (default 10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the duration is split into this many alternating movies/bare rounds (default 5)",
    )
    parser.add_argument("--connections", type=int, default=32, help="open connections in all (default 32)")
    parser.add_argument(
        "--threads", type=int, default=2, help="client threads in all (wrk), or client processes (python); default 2"
    )
    parser.add_argument("--movies", type=int, default=10_000, help="rows in the generated movie file (default 10000)")
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk if installed)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        help="the Redis the server caches in; its cached movie pages are removed first",
    )
    parser.add_argument("--fakeredis", action="store_true", help="use the embedded Redis stand-in instead")
    parser.add_argument("--cache-ttl", type=int, default=3600, help="CACHE_TTL for the server (default 3600)")
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds, int(args.duration)))  # wrk runs whole seconds
    if args.client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), use --client python")
    redis_url = None if args.fakeredis else args.redis_url
    if redis_url:
        empty_cache(redis_url)

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        csv_path = workdir / "movies.csv"
        generate_movies(str(csv_path), rows=args.movies, seed=1)
        reference = reference_pages(csv_path, MOVIE_PATHS, workdir)
        env = server_env(workdir, REDIS_URL=redis_url or "", CACHE_TTL=str(args.cache_ttl))
        with serve("run.py", env, workdir / "server.log") as server:
            task = upload_and_wait(server, csv_path)
            check_cached(server, reference)
            check_bare(server)
            movie_load, bare_load, cache_hit_rate = measure(server, args, redis_url)
            check_cached(server, reference)  # still hits, still MongoDB's pages
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report(args, task, movie_load, bare_load, cache_hit_rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
