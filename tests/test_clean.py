"""Tests for the cleaning rules (app.clean) and for turning a raw batch into movie documents (movies.clean_batch)."""
from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import clean, movies
from app.csvstream import Reject


def run(parser, values):
    """Parse a list of Python strings/None; give back (python values, bad count)."""
    parsed, bad = parser(pa.array(values, type=pa.string()))
    return parsed.to_pylist(), bad


# --- parse_int ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("30000000.0", 30000000),
        ("81", 81),
        ("1e3", 1000),
        (" 7 ", 7),
        ("\t7\n", 7),
        ("-5", -5),
        ("007", 7),
        ("-0.0", 0),
        ("1.5e1", 15),
        ("123456789012345678", 123456789012345678),
        ("-123456789012345678", -123456789012345678),
        ("9007199254740991.0", 2**53 - 1),
    ],
)
def test_parse_int_good_values(text, expected):
    assert run(clean.parse_int, [text]) == ([expected], 0)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_parse_int_missing_is_null_and_not_counted(text):
    assert run(clean.parse_int, [text]) == ([None], 0)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "12.5",  # a fraction is not an integer
        "1.25e1",
        "12x",
        "inf",
        "nan",
        "1e400",  # overflows a float
        "1,000",
        "1234567890123456789",  # 19 digits: beyond the exact whole-number path
        "9007199254740992.0",  # 2**53 as a float: 2**53 + 1 would read the same, so not exact
        "9007199254740993.0",  # must not be silently rounded to 9007199254740992
    ],
)
def test_parse_int_bad_values_are_null_and_counted(text):
    assert run(clean.parse_int, [text]) == ([None], 1)


def test_parse_int_mixed_batch_keeps_positions_and_counts_only_bad():
    values = ["30000000.0", "81", "1e3", " 7 ", "", None, "abc", "12.5", "12x", "inf", "1e400", "123456789012345678"]
    parsed, bad = run(clean.parse_int, values)
    assert parsed == [30000000, 81, 1000, 7, None, None, None, None, None, None, None, 123456789012345678]
    assert bad == 5


def test_parse_int_leading_plus_sign():
    assert run(clean.parse_int, ["+3", "+12"]) == ([3, 12], 0)
    batch = pa.RecordBatch.from_pydict({"title": ["A", "B"], "budget": ["+3", "5"]})
    docs = movies.clean_batch(batch, np.array([2, 3])).documents
    assert [d["budget"] for d in docs] == [3, 5]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1))
def test_parse_int_reads_float_written_integers_exactly(n):
    # |n| < 2**53: every such integer is exact as a float; 2**53 itself is rejected on purpose (see above).
    assert run(clean.parse_int, [f"{n}.0", f"{n}"]) == ([n, n], 0)


# --- parse_float -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("7.7", 7.7), ("10", 10.0), (" 6.5 ", 6.5), ("-.5", -0.5), ("1E3", 1000.0), ("+3", 3.0), ("5.", 5.0)],
)
def test_parse_float_good_values(text, expected):
    assert run(clean.parse_float, [text]) == ([expected], 0)


@pytest.mark.parametrize("text", ["abc", "7,7", "0x10", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "1.2.3"])
def test_parse_float_bad_values_are_null_and_counted(text):
    assert run(clean.parse_float, [text]) == ([None], 1)


def test_parse_float_mixed_batch():
    parsed, bad = run(clean.parse_float, ["7.7", "", None, "x", "nan", "inf", "0"])
    assert parsed == [7.7, None, None, None, None, None, 0.0]
    assert bad == 3


# --- parse_date --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1995-10-30", datetime(1995, 10, 30)),
        (" 1995-10-30 ", datetime(1995, 10, 30)),
        ("5/3/1995", datetime(1995, 5, 3)),  # M/D/YYYY: May 3rd
        ("05/03/1995", datetime(1995, 5, 3)),
        ("12/31/1899", datetime(1899, 12, 31)),  # before 1970
        ("1899-12-31", datetime(1899, 12, 31)),
        ("2/29/2000", datetime(2000, 2, 29)),  # leap year
        ("2000-02-29", datetime(2000, 2, 29)),
    ],
)
def test_parse_date_good_values(text, expected):
    assert run(clean.parse_date, [text]) == ([expected], 0)


@pytest.mark.parametrize(
    "text",
    [
        "2020-02-30",  # no such day (strptime alone would roll over into March)
        "2/29/2001",  # not a leap year
        "4/31/2000",
        "13/1/2000",  # no month 13
        "0/1/2000",
        "1/0/2000",
        "2020-1-5",  # ISO needs two-digit month and day
        "1995-13-01",
        "30/10/1995",  # D/M/YYYY is not accepted
        "1995/10/30",
        "not a date",
    ],
)
def test_parse_date_impossible_or_unknown_is_null_and_counted(text):
    assert run(clean.parse_date, [text]) == ([None], 1)


def test_parse_date_counts_missing_values_too():
    # Documented: a movie without a date is worth a warning, so missing counts alongside unparseable.
    assert "missing" in clean.parse_date.__doc__
    parsed, bad = run(clean.parse_date, ["1995-10-30", "", "   ", None, "nope", "5/3/1995"])
    assert parsed == [datetime(1995, 10, 30), None, None, None, None, datetime(1995, 5, 3)]
    assert bad == 4


def test_parse_date_year_zero_is_bad_not_a_crash():
    assert run(clean.parse_date, ["0000-01-01", "1/1/0000"]) == ([None, None], 2)
    batch = pa.RecordBatch.from_pydict({"title": ["A"], "release_date": ["0000-01-01"]})
    result = movies.clean_batch(batch, np.array([2]))
    assert result.documents[0]["_id"] == "undated/A"
    assert result.warnings == {"release_date": 1}


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1800, 1, 1), max_value=date(2200, 12, 31)))
def test_parse_date_any_day_in_both_formats(day):
    expected = datetime(day.year, day.month, day.day)
    texts = [day.isoformat(), f"{day.month}/{day.day}/{day.year}", f"{day.month:02d}/{day.day:02d}/{day.year}"]
    assert run(clean.parse_date, texts) == ([expected] * 3, 0)


# --- parse_languages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("['English', 'Français']", ["English", "Français"]),
        ("[]", []),
        ("[ ]", []),
        ("['English']", ["English"]),
        ("['English','Deutsch']", ["English", "Deutsch"]),
        ("['']", [""]),
        ("['a', '']", ["a", ""]),
        ("[', ']", [", "]),
        ("[\"O'zbek\", 'English']", ["O'zbek", "English"]),
        ("['a\\'b']", ["a'b"]),  # escaped quote, as Python's repr writes it
        ("['a\\\\b']", ["a\\b"]),  # escaped backslash
        ("['\\u00e9', '\\x41']", ["é", "A"]),
        ("['日本語', 'Español']", ["日本語", "Español"]),
    ],
)
def test_parse_languages_good_values(text, expected):
    assert run(clean.parse_languages, [text]) == ([expected], 0)


@pytest.mark.parametrize("text", ["", "  ", None])
def test_parse_languages_missing_is_null_and_not_counted(text):
    assert run(clean.parse_languages, [text]) == ([None], 0)


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "English",
        "['unterminated",
        "['a' 'b']",
        "[,]",
        "['a',,'b']",
        "['a'], ['b']",
        "[1, 2]",
        "[b'x']",
        "[f'x']",
        "['a' + 'b']",
        "__import__('os')",
        "{'English'}",
    ],
)
def test_parse_languages_bad_values_are_null_and_counted(text):
    assert run(clean.parse_languages, [text]) == ([None], 1)


def test_parse_languages_mixed_batch_fast_and_slow_paths():
    values = ["['English', 'Français']", "[]", None, "[\"O'zbek\", 'English']", "garbage", "", "['x']"]
    parsed, bad = run(clean.parse_languages, values)
    assert parsed == [["English", "Français"], [], None, ["O'zbek", "English"], None, None, ["x"]]
    assert bad == 1


def test_parse_languages_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"[__import__('os').system('touch {marker}')]",
        f"[str(__import__('os').system('touch {marker}'))]",  # would even be a list of strings if eval'd
        f"['a' if __import__('os').system('touch {marker}') else 'b']",
        f"['x', __import__('os').system('touch {marker}')]",
    ]
    parsed, bad = run(clean.parse_languages, payloads)
    assert parsed == [None] * len(payloads)
    assert bad == len(payloads)
    assert not marker.exists()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"))), max_size=8))
def test_parse_languages_reads_back_any_python_list_repr(items):
    assert run(clean.parse_languages, [repr(items)]) == ([items], 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="'\" ,[]\\abé日", max_size=6), max_size=5))
def test_parse_languages_reads_back_lists_heavy_in_quotes_and_separators(items):
    assert run(clean.parse_languages, [repr(items)]) == ([items], 0)


# --- movies.clean_batch ------------------------------------------------------------------------------------


def test_clean_batch_documents_rejects_and_warnings():
    batch = pa.RecordBatch.from_pydict(
        {
            "title": ["Toy Story", "", "  Heat  ", None, "Balto"],
            "release_date": ["1995-10-30", "1995-12-15", "not a date", "2000-01-01", "12/22/1995"],
            "budget": ["30000000.0", "1", "abc", "2", ""],
            "vote_average": ["7.7", "1", "", "2", "x"],
            "production_company_id": ["007", "1", "", "3", "12"],
            "languages": ["['English']", "[]", "garbage", "[]", "[]"],
            "mystery": ["42", "a", "", "b", "  "],
        },
        schema=pa.schema([(name, pa.string()) for name in
                          ("title", "release_date", "budget", "vote_average", "production_company_id",
                           "languages", "mystery")]),
    )
    result = movies.clean_batch(batch, np.array([2, 3, 5, 9, 10]))

    assert result.rejects == [Reject(3, "missing title"), Reject(9, "missing title")]
    assert result.warnings == {"release_date": 1, "budget": 1, "vote_average": 1, "languages": 1}

    absent = {name: None for name in ("homepage", "original_language", "original_title", "overview", "revenue",
                                      "runtime", "status", "vote_count", "genre_id")}
    assert result.documents == [
        {**absent, "_id": "1995-10-30/Toy Story", "title": "Toy Story", "release_date": datetime(1995, 10, 30),
         "year": 1995, "budget": 30000000, "vote_average": 7.7, "production_company_id": "007",
         "languages": ["English"], "mystery": "42"},
        {**absent, "_id": "undated/Heat", "title": "Heat", "release_date": None, "year": None, "budget": None,
         "vote_average": None, "production_company_id": None, "languages": None, "mystery": None},
        {**absent, "_id": "1995-12-22/Balto", "title": "Balto", "release_date": datetime(1995, 12, 22),
         "year": 1995, "budget": None, "vote_average": None, "production_company_id": "12", "languages": [],
         "mystery": None},
    ]
    first = result.documents[0]
    assert type(first["year"]) is int and type(first["budget"]) is int
    assert type(first["production_company_id"]) is str and type(first["mystery"]) is str


def test_clean_batch_all_titles_missing():
    batch = pa.RecordBatch.from_pydict({"title": ["", None, "   "], "budget": ["1", "2", "3"]})
    result = movies.clean_batch(batch, np.array([4, 7, 8]))
    assert result.documents == []
    assert result.rejects == [Reject(4, "missing title"), Reject(7, "missing title"), Reject(8, "missing title")]
    assert result.warnings == {}


def test_clean_batch_title_only_file():
    batch = pa.RecordBatch.from_pydict({"title": ["Solo"]})
    result = movies.clean_batch(batch, np.array([2]))
    assert result.rejects == []
    # No release_date column: every movie is undated, and that is worth a warning.
    assert result.warnings == {"release_date": 1}
    [doc] = result.documents
    assert doc["_id"] == "undated/Solo"
    assert set(doc) == set(movies.COLUMNS) | {"year", "_id"}
    assert all(doc[name] is None for name in doc if name not in ("title", "_id"))
