"""A clean block's movies as the SQLite table's rows, built from its Arrow columns: what the ingest's helper process
sends a SQLite store instead of BSON (Movies.form, app/jobs/movies/prepare.py).

Each row is exactly the tuple `Movies._row` makes of the document `bson.decode` would give for the same movie
(tests/test_sqlite_rows.py holds them equal), but made column by column: the writer then neither decodes BSON
nor converts a value in Python, which was most of its time (docs/performance.md). A row some field of which no
typed column holds exactly (-0.0) is made the slow way, from its document. Runs in the helper: PyArrow and
NumPy, no driver.
"""

from __future__ import annotations

import bson
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.jobs.movies.encode import encode
from app.reader import clean, strings
from app.store.sqlite import movies

_MS_PER_DAY = 86_400_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Bytes JSON writes escaped (ensure_ascii=False): a language holding one is written by json, not by joining.
_ESCAPED = strings.byte_set(b'"\\' + bytes(range(0x20)))
_KNOWN = frozenset(("_id",) + movies.FIELDS)
_OPEN, _CLOSE, _BETWEEN, _NOTHING = pa.scalar('["'), pa.scalar('"]'), pa.scalar('","'), pa.scalar("")


def rows(columns: dict[str, pa.Array]) -> list[tuple]:
    """The table's row of each movie: `_id`, the typed columns (movies.FIELDS), `extra`, `odd`."""
    n = len(columns["_id"])
    slow = np.zeros(n, dtype=bool)  # rows made from their document instead
    values = []
    for name in movies.FIELDS:
        column = columns.get(name)
        if column is None:
            values.append([None] * n)
            continue
        if name == "release_date":
            text, odd = _dates(column)
            slow |= odd
            values.append(text)
        elif name == "languages":
            text, odd = _languages(column)
            slow |= odd
            values.append(text)
        else:
            if name == "vote_average":
                slow |= _negative_zero(column)
            elif pa.types.is_integer(column.type):
                slow |= _wide(column)
            values.append(column.to_pylist())
    extra = [name for name in columns if name not in _KNOWN]
    if not all(pa.types.is_string(columns[name].type) for name in extra):
        slow[:] = True  # only text beyond the contract fits `extra`: never so from a CSV
    values.append(_extra(columns, extra) if extra else [None] * n)
    values.append([None] * n)  # odd
    made = list(zip(columns["_id"].to_pylist(), *values))
    if slow.any():
        at = np.flatnonzero(slow)
        for i, row in zip(at.tolist(), _the_slow_way(columns, at)):
            made[i] = row
    return made


def _dates(column: pa.Array) -> tuple[list, np.ndarray]:
    """`YYYY-MM-DD` of each day; a time of day other than midnight (never from a CSV's date) goes the slow way."""
    if pa.types.is_null(column.type):
        return [None] * len(column), np.zeros(len(column), dtype=bool)
    ms = pc.fill_null(column.view(pa.int64()), 0).to_numpy()
    return clean.format_day(column).to_pylist(), ms % _MS_PER_DAY != 0


def _languages(column: pa.Array) -> tuple[list, np.ndarray]:
    """Each list as JSON text: `["a","b"]` joined by Arrow when no item needs escaping, else the slow way."""
    n = len(column)
    if pa.types.is_null(column.type):
        return [None] * n, np.zeros(n, dtype=bool)
    items = column.flatten()
    odd = np.zeros(n, dtype=bool)
    flagged = strings.rows_with(items, _ESCAPED) | ~strings.valid(items)
    if flagged.any():
        odd[pc.list_parent_indices(column).to_numpy()[flagged]] = True
    joined = pc.binary_join_element_wise(_OPEN, pc.binary_join(column, _BETWEEN), _CLOSE, _NOTHING)
    empty = pc.fill_null(pc.equal(pc.list_value_length(column), 0), False)
    text = pc.if_else(empty, pa.scalar("[]"), joined)
    return text.to_pylist(), odd


def _negative_zero(column: pa.Array) -> np.ndarray:
    if not pa.types.is_floating(column.type):
        return np.zeros(len(column), dtype=bool)
    numbers = pc.fill_null(column, 1.0).to_numpy()
    return (numbers == 0) & np.signbit(numbers)


def _extra(columns: dict[str, pa.Array], names: list[str]) -> list:
    """The file's columns beyond the contract, one JSON object a row (null values kept, as a document has them)."""
    lists = [columns[name].to_pylist() for name in names]
    return [movies.JSON(dict(zip(names, row))) for row in zip(*lists)]


def _wide(column: pa.Array) -> np.ndarray:
    """Integers beyond 32 bits: BSON holds them as int64, which reads back as bson.Int64, kept in `odd`."""
    numbers = pc.fill_null(column, 0).to_numpy()
    return (numbers < _INT32_MIN) | (numbers > _INT32_MAX)


def _the_slow_way(columns: dict[str, pa.Array], at: np.ndarray) -> list[tuple]:
    """Rows `at` as the BSON path makes them: encoded, decoded, converted (Movies._row)."""
    take = pa.array(at)
    encoded = encode({name: column.take(take) for name, column in columns.items()})
    documents = bson.decode_all(encoded.buffers()[2].to_pybytes()[: strings.offsets(encoded)[-1]])
    convert = movies.Movies(None)
    return [convert._row(doc) for doc in documents]
