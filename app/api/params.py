"""Query-string parameters: parsed, bounded, and rejected by name when wrong."""

from __future__ import annotations

import re
from typing import TypeVar

from werkzeug.datastructures import MultiDict

from app.api.errors import APIError

Default = TypeVar("Default")  # what a parameter not given reads as: its type joins the result's


def _invalid(name: str, message: str) -> APIError:
    return APIError(400, "invalid_parameter", f"Invalid '{name}': {message}", parameter=name)


def reject_unknown(args: MultiDict, known: tuple[str, ...]) -> None:
    for name in args:
        if name not in known:
            raise _invalid(name, f"unknown parameter; expected one of {', '.join(known)}")
    for name in known:
        if len(args.getlist(name)) > 1:
            raise _invalid(name, "given more than once")


def integer(args: MultiDict, name: str, default: Default, low: int, high: int) -> int | Default:
    raw = args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d{1,9}", raw.strip()):
        raise _invalid(name, f"must be an integer, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low} and {high}, got {value}")
    return value


def choice(args: MultiDict, name: str, default: Default, choices: tuple[str, ...]) -> str | Default:
    raw = args.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise _invalid(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def text(args: MultiDict, name: str, pattern: str, hint: str) -> str | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not re.fullmatch(pattern, raw):
        raise _invalid(name, f"must be {hint}, got {raw!r}")
    return raw
