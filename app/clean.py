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

# Arrow scalars, made once: a Python literal passed to a compute function is converted on every call,
# and that conversion retries a failing optional import (dateutil) each time, a real cost per batch.
EMPTY = pa.scalar("")
EMPTY_LIST_TEXT = pa.scalar("[]")
MAX_EXACT = pa.scalar(float(_MAX_EXACT))
YEAR_ONE = pa.scalar(1, pa.int64())


def keep(mask: pa.Array, values: pa.Array) -> pa.Array:
    """`values` where `mask` is true, null elsewhere."""
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def blank_to_null(values: pa.Array) -> pa.Array:
    """Empty or whitespace-only strings become null; others are kept as written."""
    return keep(pc.not_equal(pc.utf8_trim_whitespace(values), EMPTY), values)


def trimmed(values: pa.Array) -> pa.Array:
    """Strings without surrounding whitespace; empty ones become null."""
    text = pc.utf8_trim_whitespace(values)
    return keep(pc.not_equal(text, EMPTY), text)


def _bad(values: pa.Array, parsed: pa.Array) -> int:
    """Values that were present but did not parse."""
    return pc.sum(pc.and_(pc.is_valid(values), pc.is_null(parsed))).as_py() or 0


def parse_float(values: pa.Array) -> tuple[pa.Array, int]:
    text = trimmed(values)
    parsed = _finite_float(text)
    return parsed, _bad(text, parsed)


def _finite_float(text: pa.Array) -> pa.Array:
    """Decimal text (already trimmed) to float64; anything else, or inf and nan, to null."""
    parsed = pc.cast(keep(pc.match_substring_regex(text, _DECIMAL), text), pa.float64())
    return keep(pc.is_finite(parsed), parsed)


def parse_int(values: pa.Array) -> tuple[pa.Array, int]:
    """Integers, also when written as floats (`30000000.0`); fractions and overflows are bad."""
    text = trimmed(values)
    whole = pc.match_substring_regex(text, _WHOLE)
    unsigned = pc.replace_substring_regex(text, r"^\+", "")  # Arrow's cast refuses a leading +
    exact = pc.cast(keep(whole, unsigned), pa.int64())
    as_float = _finite_float(keep(pc.invert(whole), text))
    integral = pc.and_(pc.equal(pc.floor(as_float), as_float), pc.less(pc.abs(as_float), MAX_EXACT))
    from_float = pc.cast(keep(integral, as_float), pa.int64())
    parsed = pc.coalesce(exact, from_float)
    return parsed, _bad(text, parsed)


def parse_date(values: pa.Array) -> tuple[pa.Array, int]:
    """`YYYY-MM-DD` or `M/D/YYYY` to a millisecond timestamp; impossible dates (2020-02-30) are bad.

    The count includes missing values: a movie without a date is worth a warning.
    """
    text = pc.utf8_trim_whitespace(values)
    iso_ok = pc.match_substring_regex(text, _ISO_DATE)
    iso = pc.strptime(keep(iso_ok, text), format="%Y-%m-%d", unit="ms", error_is_null=True)
    # strptime rolls 2020-02-30 over to March; a round trip catches that.
    iso = keep(pc.equal(pc.strftime(iso, format="%Y-%m-%d"), text), iso)

    us_ok = pc.match_substring_regex(text, _US_DATE)
    us_text = keep(us_ok, text)
    us = pc.strptime(us_text, format="%m/%d/%Y", unit="ms", error_is_null=True)
    parts = pc.extract_regex(us_text, _US_DATE)

    def part(name):  # rows that did not match hold "" here
        return pc.cast(blank_to_null(parts.field(name)), pa.int64())

    same_day = pc.and_(pc.equal(pc.month(us), part("month")), pc.equal(pc.day(us), part("day")))
    us = keep(same_day, us)

    parsed = pc.coalesce(iso, us)
    parsed = keep(pc.greater_equal(pc.year(parsed), YEAR_ONE), parsed)  # no year 0 in BSON or Python
    return parsed, pc.sum(pc.is_null(parsed)).as_py() or 0


def parse_languages(values: pa.Array) -> tuple[pa.Array, int]:
    """`"['English', 'Français']"` to `["English", "Français"]`; `"[]"` to `[]`; missing to null."""
    text = trimmed(values)
    simple = pc.match_substring_regex(text, _SIMPLE_LIST)
    inner = pc.replace_substring_regex(keep(simple, text), r"^\['|'\]$", "")
    fast = pc.split_pattern(inner, "', '")
    empty = pc.equal(text, EMPTY_LIST_TEXT)
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
