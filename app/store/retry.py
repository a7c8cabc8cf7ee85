"""Retry with exponential backoff on the errors a flaky MongoDB gives (lost connection, failover, timeout)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from app.store.errors import UNAVAILABLE

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    attempts: int = 1  # 1: no retry
    first_delay: float = 0.5  # seconds; doubled after every failure
    max_delay: float = 30.0
    # Called before each try; what it raises stops the call. A worker checks here that its task is still its
    # own, so a worker that lost its lease writes nothing more (app/worker/lease.py).
    before: Callable[[], None] | None = None

    def call(self, fn: Callable[..., T], *args, what: str = "store operation", **kwargs) -> T:
        """fn(*args, **kwargs), retried while the store is unavailable; the last failure raised. Idempotent fn only."""
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            if self.before is not None:
                self.before()
            try:
                return fn(*args, **kwargs)
            except UNAVAILABLE as e:
                if attempt == self.attempts:
                    raise
                log.warning(
                    "%s failed (attempt %d of %d), retrying in %.1fs: %s", what, attempt, self.attempts, delay, e
                )
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable")


ONCE = Backoff()
