"""Vectorised value parsers: Arrow string arrays in, typed Arrow arrays out, with a mask of the bad values.

Each parser reads a whole block at once: the common shapes straight from the string bytes with NumPy or
one `pyarrow.compute` call (plain numbers, `YYYY-MM-DD` dates, `['a', 'b']` lists). Only the rare other
values go by the strict rules: numbers and lists one at a time in Python (lists by a small tokenizer,
never `eval`), dates as a small batch of their own.
"""

from __future__ import annotations

import ast
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.reader import strings

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_US_DATE = r"^(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})$"
_MAX_EXACT = 2**53  # floats beyond this are not exact integers

LANGUAGES_TYPE = pa.list_(pa.string())

# Arrow scalars, made once: a Python literal passed to a compute function is converted on every call,
# and that conversion retries a failing optional import (dateutil) each time, a real cost per batch.
EMPTY = pa.scalar("")
EMPTY_LIST_TEXT = pa.scalar("[]")
YEAR_ONE = pa.scalar(1, pa.int64())


def keep(mask: pa.Array, values: pa.Array) -> pa.Array:
    """`values` where `mask` is true, null elsewhere."""
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def blank_to_null(values: pa.Array) -> pa.Array:
    """Empty or whitespace-only strings become null; others are kept as written."""
    blank = pc.or_(pc.equal(values, EMPTY), pc.utf8_is_space(values))  # is_space is false for ""
    if not pc.any(blank).as_py():
        return values
    return keep(pc.invert(blank), values)


def trimmed(values: pa.Array) -> pa.Array:
    """Strings without surrounding whitespace; empty ones become null."""
    text = pc.utf8_trim_whitespace(values)
    return keep(pc.not_equal(text, EMPTY), text)


def parse_float(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    plain, number = _plain_numbers(values)
    ok = plain & np.isfinite(number)
    bad = plain & ~ok
    for i, text in _others(values, plain):
        value = _read_float(text)
        number[i] = value if value is not None else 0.0  # not `value or 0.0`: -0.0 stays -0.0
        ok[i], bad[i] = value is not None, value is None and not text.isspace()
    return pa.array(number, type=pa.float64(), mask=~ok), bad


def parse_int(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Integers, also when written as floats (`30000000.0`); fractions and overflows are bad."""
    plain, number = _plain_numbers(values)
    plain &= np.abs(number) < _MAX_EXACT  # every integer below 2**53 is exact as a float
    ok = plain & (np.floor(number) == number)
    bad = plain & ~ok
    result = np.where(ok, number, 0).astype(np.int64)
    for i, text in _others(values, plain):
        value = _read_int(text)
        result[i], ok[i], bad[i] = value or 0, value is not None, value is None and not text.isspace()
    return pa.array(result, type=pa.int64(), mask=~ok), bad


def _others(values: pa.Array, plain: np.ndarray) -> list[tuple[int, str]]:
    """The non-empty values `_plain_numbers` left, with their rows: few, so read one by one."""
    rows = np.flatnonzero(~plain & strings.non_empty(values))
    return list(zip(rows.tolist(), values.take(pa.array(rows)).to_pylist())) if len(rows) else []


_DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_WHOLE_TEXT = re.compile(r"[+-]?[0-9]{1,18}")


def _read_float(text: str) -> float | None:
    text = text.strip()
    if not _DECIMAL_TEXT.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _read_int(text: str) -> int | None:
    text = text.strip()
    if _WHOLE_TEXT.fullmatch(text):
        return int(text)
    number = _read_float(text)
    if number is not None and number.is_integer() and abs(number) < _MAX_EXACT:
        return int(number)
    return None


_NUMBER_BYTES = strings.byte_set(b"0123456789.eE-")


def _plain_numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Which values are plain numbers, read by one Arrow cast, and those numbers (0 elsewhere).

    Plain: non-empty, only digits, `.`, `e`, `E` and `-`. Arrow's cast reads such text as the decimal
    pattern would, or refuses the whole array (say, for `1.2.3`), and then no value is plain. What is
    not plain (spaces, a `+`, words) is read one value at a time, in Python.
    """
    n = len(values)
    plain = strings.non_empty(values) & ~strings.rows_with(values, ~_NUMBER_BYTES)
    number = np.zeros(n, dtype=np.float64)
    if plain.any():
        try:
            cast = pc.cast(keep(pa.array(plain), values), pa.float64())
        except pa.ArrowInvalid:
            return np.zeros(n, dtype=bool), number
        number = pc.fill_null(cast, 0.0).to_numpy().copy()
    return plain, number


def parse_date(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`YYYY-MM-DD` or `M/D/YYYY` to a millisecond timestamp; impossible dates (2020-02-30) are bad.

    Missing values count as bad: a movie without a date is worth a warning.
    """
    days, ok = _iso_days(values)
    rest = np.flatnonzero(~ok & strings.valid(values))  # other shapes, surrounding spaces, impossible days
    if len(rest):
        slow = _parse_date_text(pc.utf8_trim_whitespace(values.take(pa.array(rest))))
        ok[rest] = slow.is_valid().to_numpy(zero_copy_only=False)
        days[rest] = pc.fill_null(slow.view(pa.int64()), 0).to_numpy() // _MS_PER_DAY
    parsed = pa.array(days * _MS_PER_DAY, type=pa.timestamp("ms"), mask=~ok)
    return parsed, ~ok


def _iso_days(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of the values written exactly `YYYY-MM-DD`, and which those are.

    Read straight from the bytes with NumPy: the common case, at a fraction of strptime's cost.
    """
    n = len(values)
    days, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    data, starts, lengths = strings.layout(values)
    rows = np.flatnonzero((lengths == 10) & strings.valid(values))
    if not len(rows):
        return days, ok
    chars = data[starts[rows, None] + np.arange(10)].astype(np.int64) - ord("0")
    digits = chars[:, [0, 1, 2, 3, 5, 6, 8, 9]]
    shaped = ((digits >= 0) & (digits <= 9)).all(axis=1) & (chars[:, 4] == _DASH) & (chars[:, 7] == _DASH)
    year = chars[:, 0] * 1000 + chars[:, 1] * 100 + chars[:, 2] * 10 + chars[:, 3]
    month = chars[:, 5] * 10 + chars[:, 6]
    day = chars[:, 8] * 10 + chars[:, 9]
    real = shaped & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    real &= day <= _days_in_month(year, np.clip(month, 1, 12))
    ok[rows] = real
    days[rows] = np.where(real, _days_from_civil(year, month, day), 0)
    return days, ok


def _parse_date_text(text: pa.Array) -> pa.Array:
    """The strict reading, for what `_iso_days` did not take: `YYYY-MM-DD` or `M/D/YYYY` (trimmed)."""
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
    return keep(pc.greater_equal(pc.year(parsed), YEAR_ONE), parsed)  # no year 0 in BSON or Python


def format_day(timestamps: pa.Array) -> pa.Array:
    """Timestamps as `YYYY-MM-DD` strings (null stays null), built with NumPy rather than strftime."""
    n = len(timestamps)
    valid = strings.valid(timestamps)
    days = pc.fill_null(timestamps.view(pa.int64()), 0).to_numpy() // _MS_PER_DAY
    year, month, day = _civil_from_days(days)
    chars = np.empty((n, 10), dtype=np.uint8)
    for column, number, width in ((0, year, 4), (5, month, 2), (8, day, 2)):
        for i in range(width):
            chars[:, column + width - 1 - i] = ord("0") + number // 10**i % 10
    chars[:, 4] = chars[:, 7] = ord("-")
    offsets = np.arange(0, 10 * n + 1, 10, dtype=np.int32)
    mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars), mask, int(n - valid.sum()))


_MS_PER_DAY = 86_400_000
_DASH = ord("-") - ord("0")
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return _MONTH_DAYS[month] + ((month == 2) & leap)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = days + 719468
    era = z // 146097
    day_of_era = z - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    return year_of_era + era * 400 + (month <= 2), month, day


def parse_languages(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`"['English', 'Français']"` to `["English", "Français"]`; `"[]"` to `[]`; missing to null.

    The common shape, `['a', 'b']` with no quote or backslash inside an item, is split with Arrow;
    anything else is read one value at a time by a small tokenizer (never `eval`).
    """
    # At least 4 characters: in "[']" the opening and the closing quote would be the same one.
    shaped = pc.and_(
        pc.and_(pc.starts_with(values, "['"), pc.ends_with(values, "']")),
        pc.greater_equal(pc.binary_length(values), _FOUR),
    )
    items = pc.split_pattern(pc.utf8_slice_codeunits(keep(shaped, values), 2, -2), "', '")
    simple = pc.fill_null(shaped, False).to_numpy(zero_copy_only=False)
    flat = items.flatten()
    odd = strings.rows_with(flat, _QUOTES)  # an item holding ' or \ : the split was wrong
    if odd.any():
        simple[pc.list_parent_indices(items).to_numpy()[odd]] = False
    empty = pc.fill_null(pc.equal(values, EMPTY_LIST_TEXT), False).to_numpy(zero_copy_only=False)
    parsed = pc.if_else(pa.array(empty), _NO_LANGUAGES, keep(pa.array(simple), items))
    bad = np.zeros(len(values), dtype=bool)
    others = np.flatnonzero(~simple & ~empty & strings.non_empty(values))
    if len(others):
        slow: list = [None] * len(values)
        for i, text in zip(others.tolist(), values.take(pa.array(others)).to_pylist()):
            text = text.strip()
            slow[i] = _parse_list_literal(text) if text else None
            bad[i] = slow[i] is None and text != ""
        parsed = pc.coalesce(parsed, pa.array(slow, type=LANGUAGES_TYPE))
    return parsed, bad


_QUOTES = strings.byte_set(b"'\\")
_FOUR = pa.scalar(4, pa.int32())
_NO_LANGUAGES = pa.scalar([], type=LANGUAGES_TYPE)


# One string literal (a u or r prefix allowed, as Python 2 and raw reprs write them), then a comma or the end.
_STRING = re.compile(r"""\s*([uUrR]?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"))\s*(,|$)""", re.S)


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
        if match.group(2) == "," and body[pos:].strip() == "":
            break  # a trailing comma, as in ['a', ]
    return items
