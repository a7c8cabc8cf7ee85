"""Vectorised value parsers: Arrow string arrays in, typed Arrow arrays out, with a count of bad values.

Each parser works on a whole batch with `pyarrow.compute`; only the rare `languages` values that are not
in the common `['a', 'b']` shape fall back to a small Python tokenizer (never `eval`).
"""
from __future__ import annotations

import ast
import re

import pyarrow as pa
import pyarrow.compute as pc

_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_WHOLE = r"^[+-]?\d{1,18}$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_US_DATE = r"^(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})$"
_SIMPLE_LIST = r"^\['[^'\\]*'(, '[^'\\]*')*\]$"
_MAX_EXACT = 2**53  # floats beyond this are not exact integers

LANGUAGES_TYPE = pa.list_(pa.string())


def blank_to_null(values: pa.Array) -> pa.Array:
    """Empty or whitespace-only strings become null; others are kept as written."""
    return pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), ""), None, values)


def _bad(values: pa.Array, parsed: pa.Array) -> int:
    """Values that were present but did not parse."""
    return pc.sum(pc.and_(pc.is_valid(values), pc.is_null(parsed))).as_py() or 0


def parse_float(values: pa.Array) -> tuple[pa.Array, int]:
    text = blank_to_null(pc.utf8_trim_whitespace(values))
    ok = pc.match_substring_regex(text, _DECIMAL)
    parsed = pc.cast(pc.if_else(ok, text, None), pa.float64())
    parsed = pc.if_else(pc.is_finite(parsed), parsed, None)
    return parsed, _bad(text, parsed)


def parse_int(values: pa.Array) -> tuple[pa.Array, int]:
    """Integers, also when written as floats (`30000000.0`); fractions and overflows are bad."""
    text = blank_to_null(pc.utf8_trim_whitespace(values))
    whole = pc.match_substring_regex(text, _WHOLE)
    unsigned = pc.replace_substring_regex(text, r"^\+", "")  # Arrow's cast refuses a leading +
    exact = pc.cast(pc.if_else(whole, unsigned, None), pa.int64())
    as_float, _ = parse_float(pc.if_else(whole, None, text))
    integral = pc.and_(pc.equal(pc.floor(as_float), as_float), pc.less(pc.abs(as_float), _MAX_EXACT))
    from_float = pc.cast(pc.if_else(integral, as_float, None), pa.int64())
    parsed = pc.coalesce(exact, from_float)
    return parsed, _bad(text, parsed)


def parse_date(values: pa.Array) -> tuple[pa.Array, int]:
    """`YYYY-MM-DD` or `M/D/YYYY` to a millisecond timestamp; impossible dates (2020-02-30) are bad.

    The count includes missing values: a movie without a date is worth a warning.
    """
    text = pc.utf8_trim_whitespace(values)
    iso_ok = pc.match_substring_regex(text, _ISO_DATE)
    iso = pc.strptime(pc.if_else(iso_ok, text, None), format="%Y-%m-%d", unit="ms", error_is_null=True)
    # strptime rolls 2020-02-30 over to March; a round trip catches that.
    iso = pc.if_else(pc.equal(pc.strftime(iso, format="%Y-%m-%d"), text), iso, None)

    us_ok = pc.match_substring_regex(text, _US_DATE)
    us_text = pc.if_else(us_ok, text, None)
    us = pc.strptime(us_text, format="%m/%d/%Y", unit="ms", error_is_null=True)
    parts = pc.extract_regex(us_text, _US_DATE)

    def part(name):  # rows that did not match hold "" here
        return pc.cast(blank_to_null(parts.field(name)), pa.int64())

    same_day = pc.and_(pc.equal(pc.month(us), part("month")), pc.equal(pc.day(us), part("day")))
    us = pc.if_else(same_day, us, None)

    parsed = pc.coalesce(iso, us)
    parsed = pc.if_else(pc.greater_equal(pc.year(parsed), 1), parsed, None)  # no year 0 in BSON or Python
    return parsed, pc.sum(pc.is_null(parsed)).as_py() or 0


def parse_languages(values: pa.Array) -> tuple[pa.Array, int]:
    """`"['English', 'Français']"` to `["English", "Français"]`; `"[]"` to `[]`; missing to null."""
    text = blank_to_null(pc.utf8_trim_whitespace(values))
    simple = pc.match_substring_regex(text, _SIMPLE_LIST)
    inner = pc.replace_substring_regex(pc.if_else(simple, text, None), r"^\['|'\]$", "")
    fast = pc.split_pattern(inner, "', '")
    empty = pc.equal(text, "[]")
    parsed = pc.if_else(empty, pa.scalar([], type=LANGUAGES_TYPE), fast)
    rest = pc.and_(pc.is_valid(text), pc.invert(pc.or_(simple, empty)))
    if pc.any(rest).as_py():
        slow = [
            _parse_list_literal(value) if other else None
            for value, other in zip(text.to_pylist(), rest.to_pylist())
        ]
        parsed = pc.coalesce(parsed, pa.array(slow, type=LANGUAGES_TYPE))
    return parsed, _bad(text, parsed)


_STRING = re.compile(r"""\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*(,|$)""", re.S)


def _parse_list_literal(text: str) -> list[str] | None:
    """A Python list of string literals, e.g. `["O'zbek", 'English']`; anything else is None."""
    if len(text) > 10_000 or not (text.startswith("[") and text.endswith("]")):
        return None
    body, items, pos = text[1:-1], [], 0
    if body.strip() == "":
        return []
    while pos < len(body):
        match = _STRING.match(body, pos)
        if not match:
            return None
        # literal_eval of one quoted token: safe, and handles escapes exactly as Python wrote them.
        try:
            items.append(ast.literal_eval(match.group(1)))
        except (SyntaxError, ValueError):  # a broken escape such as '\x'
            return None
        pos = match.end()
        if match.group(2) == "" and pos < len(body):
            return None
    return items
