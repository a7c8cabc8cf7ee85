"""Play-count aggregation: value rules, running totals, the result file's bytes, against a plain-Python reference."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.plays import aggregate
from app.jobs.plays import rules as plays
from app.jobs.plays.aggregate import Totals, TotalTooLarge, aggregate_plays
from moviecat.generate import generate_plays
from tests.conftest import SHARED_DATA
from tests.support import reference

EXAMPLE = SHARED_DATA / "plays_example_input.csv"
EXAMPLE_RESULT = (
    b"Song,Date,Total Number of Plays for Date\n"
    b"In The End,2020-01-01,1500\n"
    b"In The End,2020-01-02,500\n"
    b"Umbrella,2020-01-01,150\n"
    b"Umbrella,2020-01-02,250\n"
)


def run(path, tmp_path, **kwargs):
    out = tmp_path / "result.csv"
    fields = aggregate_plays(
        str(path),
        str(out),
        block_size=kwargs.pop("block_size", 1 << 20),
        max_rejects=kwargs.pop("max_rejects", 1000),
        **kwargs,
    )
    return fields, out.read_bytes()


def write(tmp_path, text: str, name="plays.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


# -- values ---------------------------------------------------------------------------------------------


def test_dates_in_both_styles_are_the_same_day():
    parsed = plays.parse_day(pa.array(["2020-01-02", "20200102", " 20200229 ", "0001-01-01", "99991231"]))
    assert parsed.to_pylist() == [
        date(2020, 1, 2),
        date(2020, 1, 2),
        date(2020, 2, 29),
        date(1, 1, 1),
        date(9999, 12, 31),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "2021-02-29",
        "20210229",
        "2020-13-01",
        "20201301",
        "2020/01/05",
        "2020-1-5",
        "yesterday",
        "",
        "0000-01-01",
        "202001011",
        "2020-01-01T00:00",
    ],
)
def test_impossible_or_other_dates_are_null(text):
    assert plays.parse_day(pa.array([text])).to_pylist() == [None]


@pytest.mark.parametrize(
    "text, value",
    [
        ("0", 0),
        ("000", 0),
        ("12", 12),
        (" 7 ", 7),
        ("007", 7),
        ("9223372036854775807", 2**63 - 1),
        ("0009223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),
        ("99999999999999999999", None),
        ("", None),
        ("  ", None),
        ("-3", None),
        ("+4", None),
        ("1.5", None),
        ("1e3", None),
        ("many", None),
        ("1 000", None),
    ],
)
def test_play_counts_are_non_negative_64_bit_integers(text, value):
    assert plays.parse_count(pa.array([text])).to_pylist() == [value]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="0123456789-/ +.x", max_size=12), min_size=1, max_size=30))
@pytest.mark.slow
def test_value_rules_agree_with_the_reference(texts):
    days = plays.parse_day(pa.array(texts)).to_pylist()
    assert [d and d.isoformat() for d in days] == [reference.plays_day(t) for t in texts]
    assert plays.parse_count(pa.array(texts)).to_pylist() == [reference.plays_count(t) for t in texts]


# -- files ----------------------------------------------------------------------------------------------


def test_the_example_file_gives_exactly_the_expected_result(tmp_path):
    fields, result = run(EXAMPLE, tmp_path)
    assert result == EXAMPLE_RESULT
    assert fields["groups"] == 4 and fields["rows_read"] == 7 and fields["rows_rejected"] == 0
    assert fields["result_size"] == len(EXAMPLE_RESULT) and fields["percent"] == 100.0


def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_is_totalled(tmp_path):
    path = write(
        tmp_path,
        (
            "Song,Date,Number of Plays\r\n"
            "Umbrella,20200101,5\r\n"
            ",2020-01-01,1\r\n"  # line 3: no song
            "Umbrella,2020-02-30,1\r\n"  # line 4: no such day
            "Umbrella,2020-01-01,-1\r\n"  # line 5: negative
            "just one field\r\n"  # line 6: wrong field count
            "\r\n"  # line 7: blank, skipped
            '"Umbrella\r\nRemix",2020-01-01,1.5\r\n'  # line 8 (two lines): not an integer
            "Umbrella,2020-01-01,7\r\n"
            " Umbrella ,2020-01-02,1\r\n"
        ),
    )
    fields, result = run(path, tmp_path)
    assert result == b"Song,Date,Total Number of Plays for Date\nUmbrella,2020-01-01,12\nUmbrella,2020-01-02,1\n"
    assert fields["rejects"] == [
        {"line": 3, "reason": "missing song"},
        {"line": 4, "reason": "bad date '2020-02-30': expected YYYY-MM-DD or YYYYMMDD"},
        {"line": 5, "reason": "bad play count '-1': expected a whole number from 0 to 9223372036854775807"},
        {"line": 6, "reason": "expected 3 fields, found 1"},
        {"line": 8, "reason": "bad play count '1.5': expected a whole number from 0 to 9223372036854775807"},
    ]
    assert fields["rows_rejected"] == 5 and fields["rows_read"] == 8 and fields["groups"] == 2


def test_columns_may_come_in_any_order_and_songs_needing_quotes_are_quoted(tmp_path):
    path = write(
        tmp_path,
        (
            "Number of Plays,Song,Date\n"
            '3,"Hello, Goodbye",2020-01-01\n'
            '4,"Say ""Hi""",2020-01-01\n'
            "5,Café Tacvba,20200101\n"
            "6,Café Tacvba,2020-01-01\n"
        ),
    )
    _, result = run(path, tmp_path)
    assert (
        result
        == (
            "Song,Date,Total Number of Plays for Date\n"
            'Café Tacvba,2020-01-01,11\n"Hello, Goodbye",2020-01-01,3\n"Say ""Hi""",2020-01-01,4\n'
        ).encode()
    )
    assert list(csv.reader(io.StringIO(result.decode())))[2] == ["Hello, Goodbye", "2020-01-01", "3"]


def test_totals_are_exact_64_bit_integers(tmp_path):
    big = 2**62
    path = write(tmp_path, f"Song,Date,Number of Plays\nA,2020-01-01,{big}\nA,2020-01-01,{big - 1}\nB,2020-01-01,1\n")
    fields, result = run(path, tmp_path)
    assert result.splitlines()[1:] == [f"A,2020-01-01,{2**63 - 1}".encode(), b"B,2020-01-01,1"]


def test_a_total_beyond_64_bits_fails_the_job_with_the_reason(tmp_path):
    path = write(tmp_path, f"Song,Date,Number of Plays\nA,2020-01-01,{2**62}\nA,20200101,{2**62}\n")
    with pytest.raises(TotalTooLarge, match="exceeds 9223372036854775807"):
        run(path, tmp_path)
    assert list(tmp_path.glob("result.csv*")) == []  # no result, not even a partial one


@pytest.mark.parametrize("text", ["Song,Date,Number of Plays\n", "Song,Date,Number of Plays"])
def test_a_header_only_file_gives_a_header_only_result(tmp_path, text):
    fields, result = run(write(tmp_path, text), tmp_path)
    assert result == b"Song,Date,Total Number of Plays for Date\n" and fields["groups"] == 0


def test_running_totals_fold_as_they_grow_and_match_one_pass():
    songs = ["b", "a", "b", "Ä"] * 50
    days = [date(2020, 1, 1), date(1, 1, 1), date(2020, 1, 1), date(9999, 12, 31)] * 50
    totals = Totals(merge_rows=16)
    for start in range(0, 200, 10):
        totals.add(
            pa.array(songs[start : start + 10]),
            pa.array(days[start : start + 10], pa.date32()),
            pa.array(range(start, start + 10), pa.int64()),
        )
        assert totals.buffered < 16  # the buffer stays bounded
    expected = {}
    for song, day, count in zip(songs, days, range(200)):
        expected[song, day] = expected.get((song, day), 0) + count
    rows = [row for table in totals.ordered(2) for row in table.to_pylist()]
    assert [(r["song"], r["day"], r["plays"]) for r in rows] == [(s, d, p) for (s, d), p in sorted(expected.items())]


@pytest.mark.parametrize("bom, newline", [(False, "\n"), (True, "\r\n")])
@pytest.mark.slow
def test_a_generated_file_matches_the_reference_exactly(tmp_path, monkeypatch, bom, newline):
    """300,000 rows, small blocks and folds, mixed date styles, bad rows: the same bytes as plain Python."""
    monkeypatch.setattr(aggregate, "MERGE_ROWS", 20_000)
    path = tmp_path / "generated.csv"
    generate_plays(str(path), rows=300_000, seed=7, songs=300, days=60, bad_rate=0.001, bom=bom, newline=newline)
    text = path.read_text(encoding="utf-8-sig")
    assert re.search(r",\d{4}-\d{2}-\d{2},", text) and re.search(r",\d{8},", text)  # both date styles
    expected, expected_rejects = reference.plays_totals(path)

    fields, result = run(path, tmp_path, block_size=64 * 1024, max_rejects=10_000)

    assert result == expected
    assert fields["groups"] == len(expected.splitlines()) - 1
    assert [r["line"] for r in fields["rejects"]] == [line for line, _ in expected_rejects]
    assert fields["rows_rejected"] == len(expected_rejects) > 0
    assert fields["rows_read"] == 300_000


def test_progress_is_reported_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(aggregate, "PROGRESS_SECONDS", 0)
    path = tmp_path / "generated.csv"
    generate_plays(str(path), rows=20_000, seed=1)
    seen = []
    run(path, tmp_path, block_size=64 * 1024, on_progress=seen.append)
    percents = [fields["percent"] for fields in seen]
    assert len(seen) > 5 and percents == sorted(percents) and percents[-1] == 100.0
    assert seen[-1]["rows_read"] == 20_000


def test_an_overflow_across_merges_is_caught_too():
    totals = Totals(merge_rows=1)
    one = (pa.array(["A"]), pa.array([date(2020, 1, 1)], pa.date32()))
    totals.add(*one, pa.array([2**62], pa.int64()))
    totals.add(*one, pa.array([2**62 - 1], pa.int64()))
    assert [t.to_pylist() for t in totals.ordered(10)] == [[{"song": "A", "day": date(2020, 1, 1), "plays": 2**63 - 1}]]
    with pytest.raises(TotalTooLarge):
        totals.add(*one, pa.array([1], pa.int64()))


# -- rows larger than a block, and quotes that never close ---------------------------------------------------


@pytest.fixture
def big_fields():
    """The reference reads with Python's csv module, which refuses fields over 128 KiB unless told otherwise."""
    limit = csv.field_size_limit(1 << 30)
    yield
    csv.field_size_limit(limit)


def test_big_rows_are_totalled_alone_and_one_over_max_row_mb_is_rejected_with_its_line(tmp_path, big_fields):
    """A 200 kB song (3 blocks) counts; a 1.2 MB one (MAX_ROW_MB=1) is rejected; lines after both stay exact."""
    path = tmp_path / "generated.csv"
    generate_plays(str(path), rows=20_000, seed=3, songs=50, days=10, bad_rate=0.002)
    lines = path.read_bytes().decode().split("\n")
    long_song = '"Long, ' + "la " * 70_000 + '\nremix"'
    too_long = '"Too long ' + "na\n" * 400_000 + '"'
    lines[5_000:5_000] = [f"{long_song},2020-01-01,3", f"{long_song},20200101,4"]  # lines 5001-5004
    lines[12_000:12_000] = [f"{too_long},2020-01-01,5"]  # line 12003, over 400 001 lines
    path.write_bytes("\n".join(lines).encode())
    (tmp_path / "without.csv").write_bytes("\n".join(lines[:12_000] + lines[12_001:]).encode())
    expected, expected_rejects = reference.plays_totals(tmp_path / "without.csv")

    fields, result = run(path, tmp_path, block_size=64 * 1024, max_rejects=10_000, max_row_mb=1)

    assert result == expected
    assert b"Long, la la" in result
    too_long_size = len(f"{too_long},2020-01-01,5\n".encode())
    reject = {
        "line": 12_003,
        "reason": f"the row is larger than MAX_ROW_MB (1 MiB): {too_long_size:,} bytes, lines 12003 to 412003",
    }
    assert reject in fields["rejects"]
    assert [r["line"] for r in fields["rejects"] if r != reject] == [
        line if line < 12_003 else line + 400_001 for line, _ in expected_rejects
    ]
    assert any(line > 12_003 for line, _ in expected_rejects)
    assert fields["rows_read"] == 20_003 and fields["rows_rejected"] == len(expected_rejects) + 1


def test_a_quote_never_closed_is_rejected_naming_its_line_and_the_plays_before_count(tmp_path):
    path = write(
        tmp_path,
        "Song,Date,Number of Plays\nUmbrella,2020-01-01,100\nIn The End,2020-01-02,5\n"
        '"Heat,2020-01-01,1\nUmbrella,2020-01-01,50\n' + "Umbrella,2020-01-01,1\n" * 20_000,
    )
    fields, result = run(path, tmp_path, block_size=64 * 1024)
    assert result == b"Song,Date,Total Number of Plays for Date\nIn The End,2020-01-02,5\nUmbrella,2020-01-01,100\n"
    assert fields["rejects"] == [
        {
            "line": 4,
            "reason": "unclosed quote: the quote opened on line 4 is never closed, it runs to the end of the file",
        }
    ]
    assert (fields["rows_read"], fields["rows_rejected"], fields["groups"]) == (3, 1, 2)
