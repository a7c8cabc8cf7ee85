"""What every store's tasks share: the statuses, the errors a worker's write to its task raises, the clock.

The state machine itself is described in app/tasks/__init__.py; each store implements it (app/store/interface.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = "pending", "processing", "completed", "failed", "cancelled"
STATUSES = (PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)

PROGRESS_FIELDS = (
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_rejected",
    "bytes_read",
    "percent",
    "rows_per_sec",
)
SUMMARY_FIELDS = ("rows_read", "rows_inserted", "rows_updated", "rows_rejected", "groups", "rows_per_sec")


class LostTask(Exception):
    """The task is no longer this worker's (its lease ran out and another worker took it)."""


class Cancelled(Exception):
    """Someone cancelled the task while this worker was running it."""

    def __init__(self, task_id: str):
        super().__init__(task_id)
        self.fields: dict = {}  # the progress the worker had made: recorded with the cancellation


def now() -> datetime:
    """UTC, millisecond precision: what BSON stores, so values read back compare equal."""
    t = datetime.now(UTC).replace(tzinfo=None)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
