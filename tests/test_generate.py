"""Tests for the test-data generator (app.tools.generate)."""

import ast
import csv
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

from app.tools.generate import MIB, generate_movies, main  # noqa: E402

HEADER = ("budget,homepage,original_language,original_title,overview,release_date,revenue,runtime,status,"
          "title,vote_average,vote_count,production_company_id,genre_id,languages")
NUMERIC = {"budget": 0, "revenue": 6, "runtime": 7, "vote_average": 10, "vote_count": 11}
MDY = re.compile(r"[1-9]\d?/[1-9]\d?/\d{4}")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


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
    proc = subprocess.run([sys.executable, "-m", "app.tools.generate", "movies", "--rows", "100", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "wrote 100 rows" in proc.stderr
    assert "\r" not in proc.stderr  # no progress line when stderr is not a terminal
    rows = read_rows(path)
    assert len(rows) == 101 and all(len(r) == 15 for r in rows)
