"""One client per process and server: pymongo's and redis-py's clients are thread-safe and pool their
connections, so a process makes one for each address it talks to and shares it (app/store/mongo.py,
app/store/cache.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: a store made here makes its client here too
_clients: dict[tuple[str, str], Any] = {}  # each what its (store, address)'s make() made: shared() gives it back


def shared(store: str, address: str, make: Callable[[], T]) -> T:
    """This process's client of `store` at `address`, made by `make()` the first time it is asked for."""
    with _lock:
        client = _clients.get((store, address))
        if client is None:
            client = _clients[(store, address)] = make()
    return client
