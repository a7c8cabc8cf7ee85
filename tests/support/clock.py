"""A clock the test moves: what the stores' task records read as `now` (app.store.tasks.now, and app.tasks.now
that app.tasks.create reads), so that a lease runs out because time passed it, never because a test wrote an
earlier time into a record, and every store sees the very same instants."""

from __future__ import annotations

from datetime import datetime, timedelta

import app.tasks
from app.store import tasks as store_tasks

START = datetime(2026, 3, 1, 12, 0, 0, 123000)


class Clock:
    """Moves only when told."""

    def __init__(self):
        self.t = START

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta) -> None:
        self.t += timedelta(**delta)


def set_clock(monkeypatch, clock: Clock) -> Clock:
    """Every reader of the clock: both stores' tasks (through app.store.tasks) and app.tasks.create."""
    for module in (store_tasks, app.tasks):
        monkeypatch.setattr(module, "now", clock)
    return clock
