"""What the SQLite store's record tables (tasks, keys) share: each record kept whole as its BSON, beside the columns
its queries need, and MongoDB's update operators applied to it in Python.

A record goes in and comes out as the dict pymongo would return: BSON is MongoDB's own encoding, so nested
documents, lists, integers, floats and naive datetimes (truncated to the millisecond) read back exactly as a
server returns them, `_id` first. A change is made inside `store.transaction()`: the record is read, the
conditions of MongoDB's query checked in Python, the operators applied, the record and its columns written back.
The transaction holds the file's write lock from its start, so nothing changes between the read and the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, overload

import bson
from bson import ObjectId

from app.store.sqlite import ms


def encode(doc: Mapping[str, Any]) -> bytes:
    return bson.encode(doc)


def decode(data: bytes) -> dict:
    return bson.decode(data)


def new_id(doc: dict) -> None:
    """As pymongo's insert_one: a record without `_id` is given an ObjectId, in the caller's dict too."""
    if "_id" not in doc:
        doc["_id"] = ObjectId()


def id_key(value) -> bytes | str | int:
    """A record's `_id` as a column that sorts like MongoDB sorts it: an ObjectId by its 12 bytes (time first),
    a string or an integer as itself (numbers before strings before ObjectIds, as on MongoDB)."""
    if isinstance(value, ObjectId):
        return value.binary
    if isinstance(value, str | int) and not isinstance(value, bool):
        return value
    raise TypeError(f"an _id must be an ObjectId, a string or an integer here, not {type(value).__name__}")


def time_column(value) -> int | None:
    """A datetime field as its column (milliseconds); anything else (absent, None, another type) is NULL, which
    matches no time comparison, as on MongoDB, where a date compares only with dates."""
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:  # BSON stores an aware datetime as its UTC instant
        value = value.astimezone(UTC).replace(tzinfo=None)
    return ms(value)


def apply(doc: dict, set_: dict | None = None, unset: tuple[str, ...] = (), inc: dict | None = None) -> dict:
    """MongoDB's `$set`, `$unset` and `$inc` on `doc` (in place; returned): a field set anew goes last, one
    already there keeps its place; a dotted name reaches into nested documents."""
    for name, value in (set_ or {}).items():
        parent, key = _parent(doc, name)
        parent[key] = value
    for name in unset:
        holder, key = _parent(doc, name, create=False)
        if holder is not None:
            holder.pop(key, None)
    for name, step in (inc or {}).items():
        parent, key = _parent(doc, name)
        parent[key] = parent.get(key, 0) + step
    return doc


@overload
def _parent(doc: dict, name: str, create: Literal[True] = True) -> tuple[dict, str]: ...
@overload
def _parent(doc: dict, name: str, create: Literal[False]) -> tuple[dict | None, str]: ...
def _parent(doc: dict, name: str, create: bool = True) -> tuple[dict | None, str]:
    """The document that holds `name` (dotted: nested), and its key there; made where missing if `create`,
    else None when missing."""
    *path, key = name.split(".")
    for part in path:
        if part not in doc:
            if not create:
                return None, key
            doc[part] = {}
        elif not isinstance(doc[part], dict):
            if not create:
                return None, key
            raise ValueError(f"cannot set {name!r}: {part!r} is not a document")  # as MongoDB refuses it
        doc = doc[part]
    return doc, key


def projected(doc: dict, fields: tuple[str, ...]) -> dict:
    """`doc` reduced to `_id` and `fields` in the record's own order, as MongoDB answers a projection."""
    return {k: v for k, v in doc.items() if k == "_id" or k in fields}
