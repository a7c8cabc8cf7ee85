"""Tests for the cleaning rules (app.reader.clean) and for turning a raw block into movie documents
(movies.clean_block)."""

from __future__ import annotations

from datetime import date, datetime

import bson
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jobs.movies import schema as movies
from app.jobs.movies.encode import encode
from app.reader import clean
from app.reader.csvstream import Reject
from tests.support import reference


def run(parser, values):
    """Parse a list of Python strings/None; give back (python values, bad count)."""
    parsed, bad = parser(pa.array(values, type=pa.string()))
    assert bad.dtype == bool and len(bad) == len(values)
    return parsed.to_pylist(), int(bad.sum())


class Cleaned:
    """What clean_block makes of a batch, with its documents encoded as the writer does and decoded back."""

    def __init__(self, batch, lines):
        block = movies.clean_block(batch, np.array(lines))
        self.rejects, self.warnings = block.rejects, block.warnings()
        self.documents = [bson.decode(raw) for raw in encode(block.columns).to_pylist()] if len(block) else []


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
    docs = Cleaned(batch, [2, 3]).documents
    assert [d["budget"] for d in docs] == [3, 5]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1))
@pytest.mark.slow
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
    # A movie without a date is worth a warning, so missing counts alongside unparseable.
    parsed, bad = run(clean.parse_date, ["1995-10-30", "", "   ", None, "nope", "5/3/1995"])
    assert parsed == [datetime(1995, 10, 30), None, None, None, None, datetime(1995, 5, 3)]
    assert bad == 4


def test_parse_date_year_zero_is_bad_not_a_crash():
    assert run(clean.parse_date, ["0000-01-01", "1/1/0000"]) == ([None, None], 2)
    batch = pa.RecordBatch.from_pydict({"title": ["A"], "release_date": ["0000-01-01"]})
    result = Cleaned(batch, [2])
    assert result.documents[0]["_id"] == "undated/A"
    assert result.warnings == {"release_date": 1}


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1800, 1, 1), max_value=date(2200, 12, 31)))
@pytest.mark.slow
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
@pytest.mark.slow
def test_parse_languages_reads_back_any_python_list_repr(items):
    assert run(clean.parse_languages, [repr(items)]) == ([items], 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="'\" ,[]\\abé日", max_size=6), max_size=5))
@pytest.mark.slow
def test_parse_languages_reads_back_lists_heavy_in_quotes_and_separators(items):
    assert run(clean.parse_languages, [repr(items)]) == ([items], 0)


# --- movies.clean_block ------------------------------------------------------------------------------------


def test_clean_block_documents_rejects_and_warnings():
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
        schema=pa.schema(
            [
                (name, pa.string())
                for name in (
                    "title",
                    "release_date",
                    "budget",
                    "vote_average",
                    "production_company_id",
                    "languages",
                    "mystery",
                )
            ]
        ),
    )
    result = Cleaned(batch, [2, 3, 5, 9, 10])

    assert result.rejects == [Reject(3, "missing title"), Reject(9, "missing title")]
    assert result.warnings == {"release_date": 1, "budget": 1, "vote_average": 1, "languages": 1}

    absent = {
        name: None
        for name in (
            "homepage",
            "original_language",
            "original_title",
            "overview",
            "revenue",
            "runtime",
            "status",
            "vote_count",
            "genre_id",
        )
    }
    assert result.documents == [
        {
            **absent,
            "_id": "1995-10-30/Toy Story",
            "title": "Toy Story",
            "release_date": datetime(1995, 10, 30),
            "year": 1995,
            "budget": 30000000,
            "vote_average": 7.7,
            "production_company_id": "007",
            "languages": ["English"],
            "mystery": "42",
        },
        {
            **absent,
            "_id": "undated/Heat",
            "title": "Heat",
            "release_date": None,
            "year": None,
            "budget": None,
            "vote_average": None,
            "production_company_id": None,
            "languages": None,
            "mystery": None,
        },
        {
            **absent,
            "_id": "1995-12-22/Balto",
            "title": "Balto",
            "release_date": datetime(1995, 12, 22),
            "year": 1995,
            "budget": None,
            "vote_average": None,
            "production_company_id": "12",
            "languages": [],
            "mystery": None,
        },
    ]
    first = result.documents[0]
    assert type(first["year"]) is int and type(first["budget"]) is int
    assert type(first["production_company_id"]) is str and type(first["mystery"]) is str


def test_clean_block_all_titles_missing():
    batch = pa.RecordBatch.from_pydict({"title": ["", None, "   "], "budget": ["1", "2", "3"]})
    result = Cleaned(batch, [4, 7, 8])
    assert result.documents == []
    assert result.rejects == [Reject(4, "missing title"), Reject(7, "missing title"), Reject(8, "missing title")]
    assert result.warnings == {}


def test_clean_block_title_only_file():
    batch = pa.RecordBatch.from_pydict({"title": ["Solo"]})
    result = Cleaned(batch, [2])
    assert result.rejects == []
    # No release_date column: every movie is undated, and that is worth a warning.
    assert result.warnings == {"release_date": 1}
    [doc] = result.documents
    assert doc["_id"] == "undated/Solo"
    assert set(doc) == set(movies.COLUMNS) | {"year", "_id"}
    assert all(doc[name] is None for name in doc if name not in ("title", "_id"))


# --- the fast paths agree with the plain-Python rules --------------------------------------------------------
# Each parser reads most values in one vectorised pass and the odd ones value by value; any mix of the two
# must give what tests/support/reference.py gives, value for value, and count as bad exactly the unreadable ones.


number_text = (
    st.text(alphabet="0123456789.eE-+ x", max_size=12)
    | st.integers(-(2**60), 2**60).map(str)
    | st.floats(allow_nan=True).map(repr)
    | st.integers(-(2**55), 2**55).map(lambda n: f"{n}.0")
)
date_text = (
    st.text(alphabet="0123456789-/ ", max_size=11)
    | st.dates().map(date.isoformat)
    | st.dates().map(lambda d: f"{d.month}/{d.day}/{d.year}")
    | st.sampled_from(["2020-02-30", "2021-02-29", "0000-01-01"])
)


def agree(parser, rule, texts, missing_is_bad=False):
    parsed, bad = parser(pa.array(texts, type=pa.string()))
    expected = [rule(t) for t in texts]
    assert parsed.to_pylist() == expected
    assert bad.tolist() == [e is None and (missing_is_bad or t.strip() != "") for t, e in zip(texts, expected)]


@settings(max_examples=300, deadline=None)
@given(st.lists(number_text, min_size=1, max_size=20))
@pytest.mark.slow
def test_parse_int_agrees_with_the_reference(texts):
    agree(clean.parse_int, reference.to_int, texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(number_text, min_size=1, max_size=20))
@pytest.mark.slow
def test_parse_float_agrees_with_the_reference(texts):
    agree(clean.parse_float, reference.to_float, texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(date_text, min_size=1, max_size=20))
@pytest.mark.slow
def test_parse_date_agrees_with_the_reference(texts):
    agree(clean.parse_date, reference.to_date, texts, missing_is_bad=True)


@given(
    st.lists(
        st.none()
        | st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)).map(
            lambda d: d.replace(hour=0, minute=0, second=0, microsecond=0)
        ),
        max_size=20,
    )
)
@pytest.mark.slow
def test_format_day_writes_iso_days(days):
    formatted = clean.format_day(pa.array(days, pa.timestamp("ms"))).to_pylist()
    assert formatted == [None if d is None else f"{d.year:04d}-{d.month:02d}-{d.day:02d}" for d in days]


# --- cases a review found -----------------------------------------------------------------------------------


def test_negative_zero_stays_negative_whichever_path_reads_it():
    # " -0" goes value by value; "1.2.3" makes Arrow refuse the block's cast, so "-0" does too.
    for texts in (["-0"], [" -0"], ["-0", "1.2.3"]):
        parsed, _ = clean.parse_float(pa.array(texts))
        assert str(parsed.to_pylist()[0]) == "-0.0", texts


def test_languages_edge_shapes():
    assert run(clean.parse_languages, ["[']"]) == ([None], 1)  # not ['']: the quotes overlap
    assert run(clean.parse_languages, ["['a', ]", "['a',]"]) == ([["a"], ["a"]], 0)  # trailing comma
    assert run(clean.parse_languages, ["[u'Fran\\xe7ais', r'a\\n']"]) == ([["Français", "a\\n"]], 0)  # py2, raw
    assert run(clean.parse_languages, ["[b'a']"]) == ([None], 1)  # bytes are not language names


@pytest.mark.parametrize(
    "parser, text",
    [(clean.parse_int, "١٢٣"), (clean.parse_int, "１２３"), (clean.parse_float, "١٢٣"), (clean.parse_date, "١/٢/٢٠٢٠")],
)
def test_only_ascii_digits_are_digits(parser, text):
    assert run(parser, [text]) == ([None], 1)
    rule = {
        clean.parse_int: reference.to_int,
        clean.parse_float: reference.to_float,
        clean.parse_date: reference.to_date,
    }[parser]
    assert rule(text) is None
