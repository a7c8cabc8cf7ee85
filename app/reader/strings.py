"""Byte-level views of Arrow string arrays, for the checks NumPy makes faster than a compute call.

A compute call costs some microseconds before it starts, and a regular expression more; over a
block's few thousand short values, one NumPy pass over the bytes is cheaper.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def layout(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A string array's bytes, and each value's start in them and length (minding slices)."""
    data = values.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    bounds = offsets(values)
    return data, bounds[:-1], np.diff(bounds)


def offsets(values: pa.Array) -> np.ndarray:
    """Where each value of a string or binary array starts in its data, and where the last one ends."""
    return np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1].astype(
        np.int64
    )


def non_empty(values: pa.Array) -> np.ndarray:
    """Which values are present and not the empty string."""
    return valid(values) & (layout(values)[2] > 0)


def byte_set(chars: bytes) -> np.ndarray:
    """A 256-flag table of `chars`, for `rows_with` and `count_in`."""
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


def rows_with(values: pa.Array, table: np.ndarray) -> np.ndarray:
    """Which values hold at least one byte that `table` flags."""
    return count_in(values, table) > 0


def count_in(values: pa.Array, table: np.ndarray) -> np.ndarray:
    """How many bytes that `table` flags each value holds."""
    data, starts, lengths = layout(values)
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    low, high = starts[0], starts[-1] + lengths[-1]
    hits = np.flatnonzero(table[data[low:high]]) + low
    if not len(hits):
        return np.zeros(len(starts), dtype=np.int64)
    return np.bincount(np.searchsorted(starts, hits, side="right") - 1, minlength=len(starts))


def valid(values: pa.Array) -> np.ndarray:
    """The validity of any array as a NumPy bool mask."""
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return values.is_valid().to_numpy(zero_copy_only=False)
