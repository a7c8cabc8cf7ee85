"""Tests for the test-data generator (moviecat.generate)."""

import ast
import csv
import datetime as dt
import functools
import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # lets the file run without a conftest that sets the path
    sys.path.insert(0, str(ROOT))

from moviecat.generate import MIB, PLAYS_BLOCK, generate_movies, generate_plays, main

HEADER = (
    "budget,homepage,original_language,original_title,overview,release_date,revenue,runtime,status,"
    "title,vote_average,vote_count,production_company_id,genre_id,languages"
)
NUMERIC = {"budget": 0, "revenue": 6, "runtime": 7, "vote_average": 10, "vote_count": 11}
MDY = re.compile(r"[1-9]\d?/[1-9]\d?/\d{4}")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
COMPACT = re.compile(r"\d{8}")


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def run_cli(*argv):
    """`python -m moviecat.generate ARGV` in a subprocess; checks it succeeded quietly, returns stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "moviecat.generate", *map(str, argv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "\r" not in proc.stderr  # no progress line when stderr is not a terminal
    return proc.stderr


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 500-row file shared by the content tests."""
    path = tmp_path_factory.mktemp("gen") / "movies500.csv"
    result = generate_movies(str(path), rows=500, seed=0)
    return path, result, read_rows(path)[1:]


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_header_is_exact_and_crlf(tmp_path):
    path = tmp_path / "m.csv"
    generate_movies(str(path), rows=5)
    assert path.read_bytes().startswith(HEADER.encode() + b"\r\n")


def test_rows_exact_count_and_15_fields(tmp_path):
    path = tmp_path / "m.csv"
    result = generate_movies(str(path), rows=1000, seed=3)
    rows = read_rows(path)
    assert rows[0] == HEADER.split(",")
    assert len(rows) - 1 == 1000
    assert all(len(r) == 15 for r in rows)
    assert result == {"rows": 1000, "bytes": path.stat().st_size}


def test_zero_rows_writes_header_only(tmp_path):
    path = tmp_path / "m.csv"
    assert generate_movies(str(path), rows=0)["rows"] == 0
    assert path.read_bytes() == HEADER.encode() + b"\r\n"


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    paths = [tmp_path / f"{i}.csv" for i in range(3)]
    for path, seed in zip(paths, (7, 7, 8)):
        generate_movies(str(path), rows=300, seed=seed)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_shorter_file_is_prefix_of_longer(tmp_path):
    short, long = tmp_path / "s.csv", tmp_path / "l.csv"
    generate_movies(str(short), rows=100, seed=1)
    generate_movies(str(long), rows=9000, seed=1)  # crosses a chunk boundary
    assert long.read_bytes().startswith(short.read_bytes())


def test_size_mb_reaches_target_without_big_overshoot(tmp_path):
    path = tmp_path / "m.csv"
    result = generate_movies(str(path), size_mb=1)
    size = path.stat().st_size
    assert MIB <= size < MIB + 16 * 1024
    assert result["bytes"] == size
    assert len(read_rows(path)) - 1 == result["rows"]


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_output_is_exactly_what_csv_writer_produces(tmp_path, newline):
    # Rows are pre-quoted for speed; re-serialising the parsed rows must give the same bytes.
    path = tmp_path / "m.csv"
    generate_movies(str(path), rows=2000, seed=5, newline=newline)
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator=newline).writerows(read_rows(path))
    assert buf.getvalue().encode("utf-8") == path.read_bytes()


def test_variety_present_in_500_rows(sample):
    _, _, rows = sample
    titles = [r[9] for r in rows]
    dates = [r[5] for r in rows]
    overviews = [r[4] for r in rows]
    languages = [ast.literal_eval(r[14]) for r in rows]

    assert "" in titles
    assert any(any(ord(ch) > 127 for ch in t) for t in titles)
    assert any("," in t and '"' in t for t in titles)
    assert "" in dates
    assert any(MDY.fullmatch(d) for d in dates)
    assert any(d and not ISO.fullmatch(d) and not MDY.fullmatch(d) for d in dates)  # unparseable
    assert any(ISO.fullmatch(d) and d < "1970" for d in dates)
    assert any("\r\n" in o for o in overviews)
    assert any("\n" in o.replace("\r\n", "") for o in overviews)
    assert any("," in o and '"' in o for o in overviews)
    assert [] in languages
    assert any(len(langs) >= 2 for langs in languages)
    assert any(any(ord(ch) > 127 for name in langs for ch in name) for langs in languages)
    assert any(r[i] and not is_number(r[i]) for r in rows for i in NUMERIC.values())
    assert any(r[NUMERIC["runtime"]] == "" for r in rows)
    identities = Counter((t, d) for t, d in zip(titles, dates) if t)
    assert identities.most_common(1)[0][1] >= 2
    assert {r[2] for r in rows} >= {"en", "fr", "es", "ja", "de"}


def test_value_styles_match_source_data(sample):
    _, _, rows = sample
    float_style = re.compile(r"\d+\.\d+")
    for name in ("budget", "revenue", "vote_count", "vote_average"):
        values = [r[NUMERIC[name]] for r in rows]
        assert sum(bool(float_style.fullmatch(v)) for v in values) >= 0.95 * len(rows), name
    assert sum(r[7].isdigit() for r in rows) >= 0.95 * len(rows)
    assert all(r[12].isdigit() and r[13].isdigit() for r in rows)
    assert sum(ISO.fullmatch(r[5]) is not None for r in rows) >= 0.85 * len(rows)
    assert sum(r[8] == "Released" for r in rows) >= 0.85 * len(rows)
    assert len({r[9] for r in rows}) >= 0.9 * len(rows)  # titles mostly unique


def test_main_requires_a_size(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["movies", str(tmp_path / "m.csv")])
    assert exc.value.code == 2


def test_main_lf_newline(tmp_path):
    path = tmp_path / "m.csv"
    assert main(["movies", "--rows", "20", "--newline", "lf", "--seed", "2", str(path)]) == 0
    data = path.read_bytes()
    assert data.startswith(HEADER.encode() + b"\n")
    assert len(read_rows(path)) == 21


def test_cli_subprocess(tmp_path):
    path = tmp_path / "cli.csv"
    assert "wrote 100 rows" in run_cli("movies", "--rows", 100, path)
    rows = read_rows(path)
    assert len(rows) == 101 and all(len(r) == 15 for r in rows)


# ---------------------------------------------------------------------------------------------------------
# plays
# ---------------------------------------------------------------------------------------------------------

PLAYS_HEADER = b"Song,Date,Number of Plays"
PLAYS_ROWS, PLAYS_BAD_RATE = 40_000, 0.005


@functools.cache  # a file repeats a few hundred dates; strptime is slow
def play_date(text, first=dt.date(2020, 1, 1), days=365):
    """The day a good row's date names, or None; both YYYY-MM-DD and YYYYMMDD count."""
    for pattern, fmt in ((ISO, "%Y-%m-%d"), (COMPACT, "%Y%m%d")):
        if pattern.fullmatch(text):
            try:
                day = dt.datetime.strptime(text, fmt).date()
            except ValueError:
                return None
            return day if first <= day < first + dt.timedelta(days=days) else None
    return None


def is_good_play(row, **dates):
    return (
        len(row) == 3
        and row[0] != ""
        and play_date(row[1], **dates) is not None
        and row[2].isascii()
        and row[2].isdigit()
        and int(row[2]) <= 10**12
    )


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    """40,000 rows with default options but 0.5% bad rows, shared by content tests."""
    path = tmp_path_factory.mktemp("plays") / "plays.csv"
    result = generate_plays(str(path), rows=PLAYS_ROWS, seed=0, bad_rate=PLAYS_BAD_RATE)
    return path, result, read_rows(path)


def test_plays_header_newlines_and_bom(tmp_path):
    plain, bom, crlf = tmp_path / "p.csv", tmp_path / "bom.csv", tmp_path / "crlf.csv"
    generate_plays(str(plain), rows=50)
    generate_plays(str(bom), rows=50, bom=True)
    result = generate_plays(str(crlf), rows=50, newline="\r\n")
    data = plain.read_bytes()
    assert data.startswith(PLAYS_HEADER + b"\n") and b"\r" not in data
    assert bom.read_bytes() == b"\xef\xbb\xbf" + data
    assert read_rows(bom)[0] == ["\ufeffSong", "Date", "Number of Plays"]  # what a BOM-blind reader sees
    crlf_data = crlf.read_bytes()
    assert crlf_data.startswith(PLAYS_HEADER + b"\r\n") and crlf_data.count(b"\n") == crlf_data.count(b"\r\n") == 51
    assert result["bytes"] == len(crlf_data)


@pytest.mark.parametrize("rows", [0, 1, 999, PLAYS_BLOCK, PLAYS_BLOCK + 1])
def test_plays_exact_row_count(tmp_path, rows):
    path = tmp_path / "p.csv"
    result = generate_plays(str(path), rows=rows, seed=2)
    data = path.read_bytes()
    assert data.count(b"\n") == rows + 1 and data.endswith(b"\n")
    assert len(read_rows(path)) == rows + 1
    assert result["rows"] == rows and result["bytes"] == len(data)


def test_plays_size_mb_reaches_target_without_big_overshoot(tmp_path):
    path = tmp_path / "p.csv"
    result = generate_plays(str(path), size_mb=2.5, seed=1)
    size = path.stat().st_size
    assert 2.5 * MIB <= size < 2.5 * MIB + 4096
    assert result["bytes"] == size
    assert path.read_bytes().count(b"\n") - 1 == result["rows"]


def test_plays_same_seed_same_bytes_and_prefix(tmp_path):
    paths = [tmp_path / f"{i}.csv" for i in range(4)]
    generate_plays(str(paths[0]), rows=PLAYS_BLOCK + 500, seed=7)
    generate_plays(str(paths[1]), rows=PLAYS_BLOCK + 500, seed=7)
    generate_plays(str(paths[2]), rows=2000, seed=8)
    generate_plays(str(paths[3]), size_mb=0.25, seed=7)  # other chunk sizes, same stream
    a, b, c, d = (p.read_bytes() for p in paths)
    assert a == b
    assert c[:5000] != a[:5000]
    assert a.startswith(d)


def test_plays_default_row_length(tmp_path):
    # ~34 bytes a row: a 1 GB file holds ~30 million rows over 10,000 songs x 365 days.
    path = tmp_path / "p.csv"
    result = generate_plays(str(path), rows=PLAYS_BLOCK)
    assert 33 <= result["bytes"] / result["rows"] <= 36


def test_plays_good_rows_parse_and_bad_rows_match_the_rate(plays):
    _, result, rows = plays
    assert rows[0] == ["Song", "Date", "Number of Plays"]
    bad = [r for r in rows[1:] if not is_good_play(r)]
    assert result["rows"] == PLAYS_ROWS
    assert len(bad) == result["bad_rows"]
    assert abs(len(bad) - PLAYS_ROWS * PLAYS_BAD_RATE) <= 2
    assert [] not in bad  # never a blank line
    # Every kind of bad row, each kind ~a quarter of them.
    kinds = Counter()
    for r in bad:
        if len(r) != 3:
            kinds["fields"] += 1
        elif r[0] == "":
            kinds["song"] += 1
        elif play_date(r[1]) is None:
            kinds["date"] += 1
        else:
            kinds["plays"] += 1
    assert set(kinds) == {"fields", "song", "date", "plays"}
    assert min(kinds.values()) >= len(bad) // 5
    assert {len(r) for r in bad} >= {1, 2, 3, 4}
    dates = {r[1] for r in bad if len(r) == 3 and r[0]}
    assert {"2020-02-30", "2020/01/05", "yesterday", "20201301"} <= dates
    assert {"-3", "1.5", "many"} <= {r[2] for r in bad if len(r) == 3}


def test_plays_no_bad_rows_at_rate_zero(tmp_path):
    path = tmp_path / "p.csv"
    result = generate_plays(str(path), rows=20_000, bad_rate=0)
    rows = read_rows(path)[1:]
    assert result["bad_rows"] == 0
    assert all(is_good_play(r) for r in rows)


def test_plays_values(plays):
    _, _, rows = plays
    good = [r for r in rows[1:] if is_good_play(r)]
    iso = sum(bool(ISO.fullmatch(r[1])) for r in good)
    assert 0.45 <= iso / len(good) <= 0.55  # the rest are YYYYMMDD
    assert len({play_date(r[1]) for r in good}) == 365
    counts = [int(r[2]) for r in good]
    assert sum(c <= 1000 for c in counts) >= 0.99 * len(counts)
    assert 0 in counts and 1000 in counts
    assert max(counts) > 10**9
    songs = {r[0] for r in good}
    assert 9500 <= len(songs) <= 10_000  # 4 draws a song: ~98% are drawn
    assert all(4 <= len(s) <= 25 for s in songs)
    assert any("," in s for s in songs) and any('"' in s for s in songs)
    assert {"Mañana", "Пусть", "Café Tacvba"} <= songs
    assert 0.02 <= sum(not s.isascii() for s in songs) / len(songs) <= 0.15


def test_plays_output_is_exactly_what_csv_writer_produces(plays):
    # Songs with commas and quotes are quoted so that they round-trip through csv.reader and csv.writer.
    path, _, rows = plays
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerows(rows)
    assert buf.getvalue().encode("utf-8") == path.read_bytes()


def test_plays_options(tmp_path):
    path = tmp_path / "p.csv"
    generate_plays(str(path), rows=3000, seed=4, songs=20, days=5, start="2021-12-30", bad_rate=0)
    rows = read_rows(path)[1:]
    assert all(is_good_play(r, first=dt.date(2021, 12, 30), days=5) for r in rows)
    assert len({r[0] for r in rows}) == 20
    assert {r[1] for r in rows} == {
        "2021-12-30",
        "2021-12-31",
        "2022-01-01",
        "2022-01-02",
        "2022-01-03",
        "20211230",
        "20211231",
        "20220101",
        "20220102",
        "20220103",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"rows": 5, "size_mb": 1},
        {"rows": 5, "bad_rate": 1.5},
        {"rows": 5, "songs": 0},
        {"rows": 5, "start": "2020-02-30"},
    ],
)
def test_plays_rejects_bad_options(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_plays(str(tmp_path / "p.csv"), **kwargs)


def test_main_plays_rejects_bad_options(tmp_path):
    for argv in (
        ["--rows", "5", "--bad-rate", "2"],
        ["--rows", "5", "--start", "2020-13-01"],
        ["--rows", "5", "--days", "0"],
        ["--bad-rate", "0.1"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(["plays", *argv, str(tmp_path / "p.csv")])
        assert exc.value.code == 2


def test_cli_plays_subprocess(tmp_path):
    path, same = tmp_path / "cli.csv", tmp_path / "api.csv"
    stderr = run_cli(
        "plays",
        "--rows",
        1000,
        "--seed",
        3,
        "--bad-rate",
        0.01,
        "--bom",
        "--newline",
        "crlf",
        "--songs",
        500,
        "--days",
        30,
        "--start",
        "2022-02-01",
        path,
    )
    assert "wrote 1000 rows (10 bad)" in stderr
    generate_plays(
        str(same), rows=1000, seed=3, bad_rate=0.01, bom=True, newline="\r\n", songs=500, days=30, start="2022-02-01"
    )
    assert path.read_bytes() == same.read_bytes()
    assert path.read_bytes().startswith(b"\xef\xbb\xbf" + PLAYS_HEADER + b"\r\n")
