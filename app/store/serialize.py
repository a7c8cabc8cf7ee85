"""MongoDB values to JSON: ObjectIds as strings, dates as ISO-8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId


def iso(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds") + "Z"


def to_json(value):
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, ObjectId):
        return str(value)
    return value
