"""Time the service's play-count aggregation against the original system's plain-Python way, and their memory.

    python bench/plays.py --size-mb 1024

Generates a plays file (1 GiB: about 30 million rows over about 3.6 million (song, day) pairs; the
generation time is printed, not counted), then runs (a) the service's `aggregate_plays` and (b) the
baseline, the original system's csv.reader + dict of totals + sorted() + csv.writer, each in a fresh
Python process of its own, so its peak RSS is that run's alone. Each child times the work only (wall and
CPU, user + sys of all its threads) and reports its peak RSS and its RSS right after its imports: the
fixed cost of importing the service (PyArrow, Flask) apart from the working memory. The page cache is
warmed first, so neither run pays for the disk. Both apply the same rules, so the two result files must be the
same to the byte: the script says whether they are and exits 1 if not.

Target: the service at least 4x the baseline's speed, at no more than its peak memory. `--scaling` adds
a probe, service only, on 1/4, 1/2 and 1x the size with the same song and day pool and on 1x the size
with 4x the songs: peak memory should follow the distinct pairs (groups), not the file size.

MB is 10^6 bytes in the rates and file sizes, as in bench/ingest.py (`--size-mb` is MiB, as the
generator's); RSS is in MiB. The last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import filecmp
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _measure import rss_mb, run_child, warm

# No app import up here: the baseline's child must not pay for PyArrow. The service's child and the
# generator import what they need when they need it.

OUT = REPO / "bench" / "out"  # git-ignored
SONGS = 10_000  # the generator's default pool: with 365 days, about 3.6 million pairs
_DASHED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_COMPACT = re.compile(r"[0-9]{8}")
_DIGITS = re.compile(r"[0-9]+")


def baseline(path: str, result_path: str) -> dict:
    """The original system: csv.reader over the file, a dict of totals, sorted(), csv.writer.

    Same rules as the service: trimmed non-empty song; YYYY-MM-DD or YYYYMMDD and a real day; a whole
    number of plays below 2**63; rows with the wrong field count rejected, blank ones skipped.
    """
    totals: dict[tuple[str, str], int] = {}
    rows = rejected = 0
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader)]
        song_at, date_at, plays_at = (header.index(name) for name in ("Song", "Date", "Number of Plays"))
        for row in reader:
            if not row or (len(row) == len(header) and all(value == "" for value in row)):
                continue
            rows += 1
            if len(row) != len(header):
                rejected += 1
                continue
            song, day, plays = row[song_at].strip(), row[date_at].strip(), row[plays_at].strip()
            if _COMPACT.fullmatch(day):
                day = f"{day[:4]}-{day[4:6]}-{day[6:]}"
            try:
                if not song or not _DASHED.fullmatch(day) or not _DIGITS.fullmatch(plays):
                    raise ValueError(row)
                day = dt.date(int(day[:4]), int(day[5:7]), int(day[8:])).isoformat()  # 2021-02-29 raises
                plays = int(plays)
                if plays >= 2**63:
                    raise ValueError(row)
            except ValueError:
                rejected += 1
                continue
            totals[song, day] = totals.get((song, day), 0) + plays
    with open(result_path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["Song", "Date", "Total Number of Plays for Date"])
        for (song, day), total in sorted(totals.items()):
            writer.writerow([song, day, total])
    return {"rows_read": rows, "rows_rejected": rejected, "groups": len(totals)}


def run_one(which: str, path: str, result_path: str) -> dict:
    """In the child: import what `which` needs, then time it alone. Its figures, for the parent."""
    if which == "service":
        from app.jobs.plays.aggregate import aggregate_plays
        from app.settings import defaults

        def work():
            return aggregate_plays(
                path, result_path, block_size=defaults.BLOCK_SIZE, max_rejects=defaults.MAX_REJECTS_KEPT
            )
    else:

        def work():
            return baseline(path, result_path)

    after_imports = rss_mb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    fields = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "rss_after_imports_mb": after_imports,
        "peak_rss_mb": rss_mb("VmHWM"),
        "rows": fields["rows_read"],
        "rejected": fields["rows_rejected"],
        "groups": fields["groups"],
    }


def measure(which: str, path: Path, result_path: Path) -> dict:
    """Run `which` in a fresh interpreter; add the rates to what it reports."""
    print(f"running the {which}...", flush=True)
    r = run_child(__file__, "--run-one", which, str(path), str(result_path))
    size = path.stat().st_size
    r.update(mb_s=size / 1e6 / r["seconds"], rows_s=r["rows"] / r["seconds"])
    return r


def generate(path: Path, amount: dict, seed: int, songs: int = SONGS) -> None:
    from moviecat.generate import generate_plays, show_progress

    start = time.perf_counter()
    made = generate_plays(str(path), **amount, seed=seed, songs=songs, progress=show_progress(False))
    print(
        f"generated {path.name}: {made['bytes'] / 1e6:.1f} MB, {made['rows']:,} rows "
        f"({made['bad_rows']:,} malformed), {songs:,} songs, in {time.perf_counter() - start:.1f} s "
        "(not counted)",
        flush=True,
    )


def show(name: str, r: dict) -> None:
    print(
        f"{name:>9}: {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU, {r['mb_s']:6.1f} MB/s, "
        f"{r['rows_s']:>10,.0f} rows/s, peak RSS {r['peak_rss_mb']:6.1f} MB "
        f"({r['rss_after_imports_mb']:.1f} MB after imports)"
    )


def first_difference(a: Path, b: Path) -> str:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for n, (la, lb) in enumerate(zip(fa, fb), 1):
            if la != lb:
                return f"line {n}: service {la!r}, baseline {lb!r}"
    return "one file is a prefix of the other"


def scaling(workdir: Path, amount: dict, seed: int, full: tuple[Path, dict] | None) -> list[dict]:
    """Service only: 1/4, 1/2, 1x the size, then 1x with 4x the songs. `full`: a run already made at 1x."""
    ((key, value),) = amount.items()
    points = [(0.25, SONGS), (0.5, SONGS), (1, SONGS), (1, 4 * SONGS)]
    results = []
    for share, songs in points:
        if share == 1 and songs == SONGS and full:
            path, r = full
            size = path.stat().st_size
        else:
            path = workdir / f"plays-{share:g}x-{songs}-songs.csv"
            generate(path, {key: type(value)(value * share)}, seed, songs)
            warm(path)
            r = measure("service", path, workdir / "scaling-result.csv")
            size = path.stat().st_size
            path.unlink()
        results.append(
            {
                "file_mb": round(size / 1e6, 1),
                "songs": songs,
                "rows": r["rows"],
                "groups": r["groups"],
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "working_mb": round(r["peak_rss_mb"] - r["rss_after_imports_mb"], 1),
                "mb_s": round(r["mb_s"], 1),
            }
        )
    (workdir / "scaling-result.csv").unlink(missing_ok=True)
    print("scaling (service only):")
    for p in results:
        print(
            f"  {p['file_mb']:7.1f} MB, {p['songs']:>6,} songs: {p['rows']:>11,} rows, {p['groups']:>11,} groups, "
            f"peak RSS {p['peak_rss_mb']:6.1f} MB (+{p['working_mb']:.1f} MB working), {p['mb_s']:.1f} MB/s"
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--size-mb", type=float, default=1024, help="size of the generated file (MiB)")
    amount.add_argument("--rows", type=int, help="generate this many data rows instead")
    parser.add_argument("--input", help="time this plays file instead of generating one")
    parser.add_argument("--out-dir", help="where files go (default: a new temporary folder under bench/out/)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and the results")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--skip-baseline", action="store_true", help="time the service only")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also run the service on 1/4, 1/2, 1x the size and on 1x with 4x the songs",
    )
    parser.add_argument("--run-one", nargs=3, metavar=("WHICH", "INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        which, path, result_path = args.run_one
        if which not in ("service", "baseline"):
            parser.error("--run-one: WHICH is service or baseline")
        print(json.dumps(run_one(which, path, result_path)))
        return 0

    if args.out_dir:
        workdir = Path(args.out_dir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        OUT.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="plays-", dir=OUT))
    amount = {"rows": args.rows} if args.rows is not None else {"size_mb": args.size_mb}
    path = Path(args.input) if args.input else workdir / "plays.csv"
    service_out, baseline_out = workdir / "result-service.csv", workdir / "result-baseline.csv"
    if not args.input:
        generate(path, amount, args.seed)
    size = path.stat().st_size
    warm(path)

    service = measure("service", path, service_out)
    base = measure("baseline", path, baseline_out) if not args.skip_baseline else None
    identical = counts_agree = None
    print(
        f"file: {size / 1e6:.1f} MB, {service['rows']:,} rows, {service['rejected']:,} rejected, "
        f"{service['groups']:,} (song, day) pairs"
    )
    show("service", service)
    if base:
        show("baseline", base)
        speed, memory = base["seconds"] / service["seconds"], service["peak_rss_mb"] / base["peak_rss_mb"]
        print(
            f"speed ratio {speed:.2f}x (target >= 4x: {'met' if speed >= 4 else 'NOT met'}), "
            f"memory ratio {memory:.2f} (target <= 1: {'met' if memory <= 1 else 'NOT met'})"
        )
        identical = filecmp.cmp(service_out, baseline_out, shallow=False)
        counts_agree = all(service[k] == base[k] for k in ("rows", "rejected", "groups"))
        print(
            f"results identical: {'yes' if identical else 'NO, ' + first_difference(service_out, baseline_out)}"
            f" ({service_out.stat().st_size / 1e6:.1f} MB)"
        )
        if not counts_agree:
            print(
                "counts differ: "
                + ", ".join(f"{k} service {service[k]:,} baseline {base[k]:,}" for k in ("rows", "rejected", "groups"))
            )

    probe = scaling(workdir, amount, args.seed, None if args.input else (path, service)) if args.scaling else None

    failed = identical is False or counts_agree is False
    if args.keep or failed:
        print(f"files kept in {workdir}")
    else:
        for f in (service_out, baseline_out, *([] if args.input else [path])):
            f.unlink(missing_ok=True)
        if not args.out_dir:
            shutil.rmtree(workdir, ignore_errors=True)

    def r(x, digits=1):
        return None if x is None else round(x, digits)

    figures = {
        "service_mb_s": r(service["mb_s"]),
        "baseline_mb_s": r(base and base["mb_s"]),
        "speed_ratio": r(base and base["seconds"] / service["seconds"], 2),
        "service_peak_rss_mb": r(service["peak_rss_mb"]),
        "baseline_peak_rss_mb": r(base and base["peak_rss_mb"]),
        "memory_ratio": r(base and service["peak_rss_mb"] / base["peak_rss_mb"], 2),
        "service_seconds": r(service["seconds"], 2),
        "baseline_seconds": r(base and base["seconds"], 2),
        "service_cpu_seconds": r(service["cpu_seconds"], 2),
        "baseline_cpu_seconds": r(base and base["cpu_seconds"], 2),
        "service_rss_after_imports_mb": r(service["rss_after_imports_mb"]),
        "baseline_rss_after_imports_mb": r(base and base["rss_after_imports_mb"]),
        "rows": service["rows"],
        "rejected": service["rejected"],
        "groups": service["groups"],
        "size_mb": r(size / 1e6),
        "identical": identical,
    }
    if probe:
        figures["scaling"] = probe
    print(json.dumps(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
