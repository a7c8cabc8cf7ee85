"""BSON documents built straight from Arrow columns, with no Python object per value.

`encode(columns)` gives one binary value per row: exactly the bytes `bson.encode` writes for the same
document as a dict (fields in the given order, `_id` moved first), ready to wrap in a `RawBSONDocument`.
Every field becomes a few binary arrays (type-and-name prefix, length, value, terminator) and a single
`binary_join_element_wise` lays each row's pieces end to end; a null piece adds nothing to its row.

Column types map to BSON as a Python value of that type would: string → string, int64 → int32 when it
fits and int64 otherwise (as `bson` does for a Python int), float64 → double, timestamp[ms] → UTC
datetime, list<string> → array, null → null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.reader import strings

DOUBLE, STRING, ARRAY, DATETIME, NULL, INT32, INT64 = 0x01, 0x02, 0x04, 0x09, 0x0A, 0x10, 0x12
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_NUL = pa.scalar(b"\x00", pa.binary())
_NOTHING = pa.scalar(b"", pa.binary())  # scalars made once: a Python literal is converted on every call


class _Row:
    """The pieces of every row's document, and the document's size so far."""

    def __init__(self, n: int):
        self.n = n
        self.pieces: list[pa.Array | pa.Scalar] = []
        self.size = np.full(n, 5, dtype=np.int64)  # int32 length prefix + terminating NUL

    def add(self, piece: pa.Array | pa.Scalar | None, size) -> None:
        if piece is not None:
            self.pieces.append(piece)
        self.size += size


def encode(columns: dict[str, pa.Array]) -> pa.BinaryArray:
    """One BSON document per row; `_id`, if present, is written first, the others in the given order."""
    names = sorted(columns, key=lambda name: name != "_id")  # stable: keeps the given order otherwise
    n = len(columns[names[0]])
    row = _Row(n)
    for name in names:
        _field(row, name.encode(), columns[name])
    if row.size.max(initial=0) > _INT32_MAX:
        raise ValueError("a document is larger than BSON allows")
    return pc.binary_join_element_wise(_fixed(row.size, "<i4"), *row.pieces, _NUL, _NOTHING, null_handling="skip")


def _field(row: _Row, key: bytes, values: pa.Array) -> None:
    if b"\x00" in key:
        raise ValueError(f"field name {key!r} holds a NUL byte, which BSON cannot store")
    kind = values.type
    valid = strings.valid(values)
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        _string(row, key, values, valid)
    elif pa.types.is_integer(kind):
        _integer(row, key, values, valid)
    elif pa.types.is_floating(kind):
        _number(row, key, DOUBLE, pc.cast(values, pa.float64()), "<f8", valid)
    elif pa.types.is_timestamp(kind) and kind.unit == "ms" and kind.tz is None:
        _number(row, key, DATETIME, values.view(pa.int64()), "<i8", valid)
    elif pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        _array(row, key, values, valid)
    elif pa.types.is_null(kind):
        row.add(_prefix(key, NULL), len(key) + 2)
    else:
        raise TypeError(f"no BSON encoding for {key.decode()!r} of type {kind}")


def _string(row: _Row, key: bytes, values: pa.Array, valid: np.ndarray, as_type: int = STRING) -> None:
    """type, key, NUL, int32 (bytes + 1), the UTF-8 bytes, NUL."""
    lengths = _lengths(values)
    row.add(_choice(key, valid, as_type), len(key) + 2)
    if not valid.any():
        return
    row.add(_fixed(lengths + 1, "<i4", valid), np.where(valid, lengths + 5, 0))
    row.add(values.cast(pa.binary()), 0)
    row.add(_NUL if valid.all() else _fixed(np.zeros(row.n, np.uint8), "u1", valid), 0)


def _integer(row: _Row, key: bytes, values: pa.Array, valid: np.ndarray) -> None:
    numbers = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy()
    small = valid & (numbers >= _INT32_MIN) & (numbers <= _INT32_MAX)
    large = valid & ~small
    if not large.any():
        row.add(_choice(key, valid, INT32), len(key) + 2)
        row.add(_fixed(numbers, "<i4", valid), np.where(valid, 4, 0))
        return
    types = np.where(small, INT32, np.where(large, INT64, NULL)).astype(np.uint8)
    row.add(_typed_prefix(key, types), len(key) + 2)
    row.add(_fixed(numbers, "<i4", small), np.where(small, 4, 0))
    row.add(_fixed(numbers, "<i8", large), np.where(large, 8, 0))


def _number(row: _Row, key: bytes, bson_type: int, values: pa.Array, dtype: str, valid: np.ndarray) -> None:
    zero = pa.scalar(0, values.type)
    row.add(_choice(key, valid, bson_type), len(key) + 2)
    row.add(_fixed(pc.fill_null(values, zero).to_numpy(), dtype, valid), np.where(valid, 8, 0))


def _array(row: _Row, key: bytes, values: pa.Array, valid: np.ndarray) -> None:
    """An array is an embedded document whose keys are "0", "1", ...; its items are encoded as fields are."""
    row.add(_choice(key, valid, ARRAY), len(key) + 2)
    if not valid.any():
        return
    counts = pc.fill_null(pc.list_value_length(values), 0).to_numpy().astype(np.int64)
    ends = np.cumsum(counts)
    items = values.flatten()  # minds slicing, and skips what null lists may hide
    index = pa.array(np.arange(len(items), dtype=np.int64) - np.repeat(ends - counts, counts))  # place in its list
    item_valid = strings.valid(items)
    lengths = _lengths(items)
    longest = int(counts.max(initial=0))
    labels = [str(i).encode() + b"\x00" for i in range(longest)]
    prefix = pa.array([bytes([STRING]) + label for label in labels], pa.binary()).take(index)
    if not item_valid.all():
        nulls = pa.array([bytes([NULL]) + label for label in labels], pa.binary()).take(index)
        prefix = pc.if_else(pa.array(item_valid), prefix, nulls)
    encoded = pc.binary_join_element_wise(
        prefix,
        _fixed(lengths + 1, "<i4", item_valid),
        items.cast(pa.binary()),
        _fixed(np.zeros(len(items), np.uint8), "u1", item_valid),
        _NOTHING,
        null_handling="skip",
    )
    item_size = pc.binary_length(encoded).to_numpy().astype(np.int64)
    totals = np.concatenate(([0], np.cumsum(item_size)))
    size = 5 + totals[ends] - totals[ends - counts]
    offsets = pa.array(np.concatenate(([0], ends)).astype(np.int32))
    body = pc.binary_join(pa.ListArray.from_arrays(offsets, encoded, mask=pa.array(~valid)), _NOTHING)
    row.add(_fixed(size, "<i4", valid), np.where(valid, size, 0))
    row.add(body, 0)
    row.add(_fixed(np.zeros(row.n, np.uint8), "u1", valid), 0)


# -- pieces ----------------------------------------------------------------------------------------------


def _lengths(values: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(values), 0).to_numpy().astype(np.int64)


def _prefix(key: bytes, bson_type: int) -> pa.Scalar:
    return pa.scalar(bytes([bson_type]) + key + b"\x00", pa.binary())


def _choice(key: bytes, valid: np.ndarray, bson_type: int) -> pa.Scalar | pa.Array:
    """The element's type and name: `bson_type` where valid, null's type elsewhere."""
    if valid.all():
        return _prefix(key, bson_type)
    if not valid.any():
        return _prefix(key, NULL)
    return _typed_prefix(key, np.where(valid, bson_type, NULL).astype(np.uint8))


def _typed_prefix(key: bytes, types: np.ndarray) -> pa.Array:
    """type byte + key + NUL per row, as a binary array of equal-length values."""
    width = len(key) + 2
    template = np.frombuffer(b"\x00" + key + b"\x00", dtype=np.uint8)
    table = np.tile(template, (len(types), 1))
    table[:, 0] = types
    return _binary(table.reshape(-1), width, len(types))


def _fixed(numbers: np.ndarray, dtype: str, valid: np.ndarray | None = None) -> pa.Array:
    """Each number's little-endian bytes as a binary value; null where not `valid` (skipped when joined)."""
    data = np.ascontiguousarray(numbers, dtype=dtype)
    return _binary(data.view(np.uint8), data.itemsize, len(data), valid)


def _binary(data: np.ndarray, width: int, n: int, valid: np.ndarray | None = None) -> pa.Array:
    """A binary array over `data` (n values of `width` bytes each), without copying it."""
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    bitmap = None
    null_count = 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - valid.sum())
    return pa.BinaryArray.from_buffers(
        pa.binary(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=null_count
    )
