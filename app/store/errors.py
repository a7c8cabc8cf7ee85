"""The errors a store raises, whichever it is: what callers catch instead of a driver's exceptions."""

from __future__ import annotations

import sqlite3

from pymongo.errors import ConnectionFailure, PyMongoError


class Unavailable(Exception):
    """The store cannot answer now (unreachable, or busy past its wait): try again later; nothing is lost."""


# Any failure of a store's call; the API answers it 503, a worker retries it, then fails or hands the task back.
ERRORS: tuple[type[BaseException], ...] = (PyMongoError, sqlite3.Error, Unavailable)
# Failures that say nothing about the task: the server is away, or the file busy. A worker hands the task back.
UNAVAILABLE: tuple[type[BaseException], ...] = (ConnectionFailure, Unavailable)
