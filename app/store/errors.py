"""The errors a store raises, whichever it is: what callers catch instead of a driver's exceptions."""

from __future__ import annotations

import sqlite3

from pymongo.errors import ConnectionFailure, PyMongoError


class Unavailable(Exception):
    """The store cannot answer now (unreachable, or busy past its wait): try again later; nothing is lost."""


# Any failure of a store's call; the API answers it 503, a worker retries it, then fails or hands the task back.
ERRORS: tuple[type[Exception], ...] = (PyMongoError, sqlite3.Error, Unavailable)


def explain(error: BaseException) -> str | None:
    """What a person can do about a store's failure, when there is something to say; else None."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and ("disk is full" in text or "disk I/O error" in text):
        return (
            f"the embedded store's disk is full ({text}): the movies of every batch before this one are stored; "
            "free space in DATA_FOLDER's filesystem and upload the file again"
        )
    return None


# Failures that say nothing about the task: the server is away, or the file busy. A worker hands the task back.
UNAVAILABLE: tuple[type[Exception], ...] = (ConnectionFailure, Unavailable)
