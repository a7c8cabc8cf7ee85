"""Issue 23's three memory attacks against the production server (`python run.py`, embedded, one worker inside):
how much its process tree grows, at its peak and after, with the default bounds (docs/security.md).

    python bench/memory_bounds.py
    python bench/memory_bounds.py --songs 10000000

1. form fields: two uploads at once of 3,200 fields of 64 KiB and no file (issue: +486 MB, kept);
2. movie pages: ten movies with an 8 MB overview (issue: +828 MB over four pages of limit=100), then ten at
   the overview's maximum and 90 small ones, and four pages of limit=100 with different sorts;
3. plays: a file of `--songs` distinct songs, one day each (issue: 10^7 songs, +2.1 GB).
Each line gives the tree's resident memory before, at its peak (sampled every 20 ms) and after, in MB
(10^6 bytes), and what the client saw. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import MB, Watch, serve, server_env, tree_rss  # noqa: E402
from tests.support.service import Server as HTTP  # noqa: E402
from tests.support.service import multipart, send_until_answered  # noqa: E402


def upload(server, data: bytes, name: str) -> dict:
    body, headers = multipart(data, name)
    status, _, answer = server.request("POST", "/api/v1/upload", body, headers)
    assert status == 202, answer[:300]
    return HTTP(server.port, server.key, timeout=600).wait_for(json.loads(answer)["task_id"], timeout=1800)


def measured(server, what: str, run) -> dict:
    with Watch(server.proc.pid) as watch:
        seen = run()
    time.sleep(1)
    after = tree_rss(server.proc.pid)
    figures = {
        "before_mb": round(watch.before / MB),
        "peak_mb": round(watch.peak / MB),
        "after_mb": round(after / MB),
        "growth_mb": round(watch.growth / MB),
        "seen": seen,
    }
    print(
        f"{what}: {figures['before_mb']} MB before, peak {figures['peak_mb']} (+{figures['growth_mb']}), "
        f"{figures['after_mb']} after; {seen}",
        flush=True,
    )
    return figures


def form_fields(server) -> str:
    boundary = uuid.uuid4().hex
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\n'.encode() + b"a" * 65536 + b"\r\n"
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(send_until_answered(server.port, server.key, 3200, part, boundary))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return "; ".join(
        f"{answer.split(b' ', 2)[1].decode()} after {sent / MB:.1f} of {3200 * len(part) / MB:.0f} MB sent"
        for sent, answer in results
    )


def movies_file(rows: list[tuple[str, str]]) -> bytes:
    return b"title,release_date,overview\n" + b"".join(f"{t},1990-01-01,{o}\n".encode() for t, o in rows)


def huge_overviews(server) -> str:
    task = upload(server, movies_file([(f"Huge {n}", "x" * 8_000_000) for n in range(10)]), "huge.csv")
    return f"task {task['status']}, {task['rows_inserted']} stored, {task['rows_rejected']} rejected"


def pages(server) -> str:
    rows = [(f"Max {n}", "x" * 262_144) for n in range(10)] + [(f"Small {n}", "short") for n in range(90)]
    upload(server, movies_file(rows), "max.csv")
    sizes = []
    for sort in ("title&order=1", "title&order=-1", "rating&order=1", "release_date&order=-1"):
        status, _, body = server.request("GET", f"/api/v1/movies?limit=100&sort_by={sort}")
        page = json.loads(body)
        sizes.append(f"{len(body) / MB:.2f} MB/{len(page['movies'])} movies")
    return "pages of " + ", ".join(sizes)


def plays(server, songs: int) -> str:
    data = b"Song,Date,Number of Plays\n" + b"".join(b"Song %09d,2020-01-01,1\n" % n for n in range(songs))
    task = upload(server, data, "plays.csv")
    return f"{len(data) / MB:.0f} MB file, task {task['status']}: {task.get('error', '')[:80]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=3_000_000, help="distinct songs in the plays file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = server_env(work, MIN_FREE_MB="0")
        with serve("run.py", env, work / "server.log") as server:
            HTTP(server.port, server.key).request("GET", "/api/v1/movies")  # warm: the first answer loads code
            out = {
                "form_fields": measured(server, "form fields", lambda: form_fields(server)),
                "huge_overviews": measured(server, "8 MB overviews", lambda: huge_overviews(server)),
                "pages": measured(server, "movie pages", lambda: pages(server)),
                "plays": measured(server, f"plays, {args.songs:,} songs", lambda: plays(server, args.songs)),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
