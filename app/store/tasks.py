"""What every store's tasks share: the statuses, the errors a worker's write to its task raises, the clock.

The state machine itself is described in app/tasks/__init__.py; each store implements it (app/store/interface.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Required, TypedDict

from bson import ObjectId

PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED = "pending", "processing", "completed", "failed", "cancelled"
STATUSES = (PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)


class Progress(TypedDict, total=False):
    """How far a task's job has got: zero at upload (NO_PROGRESS), written by its worker after each batch."""

    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_rejected: int
    bytes_read: int
    percent: float
    rows_per_sec: float


PROGRESS_FIELDS = tuple(Progress.__annotations__)
NO_PROGRESS: Progress = {  # every field of Progress
    "rows_read": 0,
    "rows_inserted": 0,
    "rows_updated": 0,
    "rows_rejected": 0,
    "bytes_read": 0,
    "percent": 0,
    "rows_per_sec": 0,
}
SUMMARY_FIELDS = ("rows_read", "rows_inserted", "rows_updated", "rows_rejected", "groups", "rows_per_sec")


class Owner(TypedDict):
    """Who uploaded a task: its API key (with AUTH=false the task's owner is None)."""

    key_id: str
    name: str


class KindFields(TypedDict, total=False):
    """What a job kind adds to the record of a task at upload, from the file's header (JobKind.task_fields)."""

    columns_missing: list[str]  # movies: the expected columns the file lacks


class Task(Progress, KindFields, total=False):
    """A task record, as every store keeps and returns it (app/tasks/__init__.py says which step writes what).

    Only `task_id` is in every answer: a sweep answers with the fields it names (settle_abandoned: `task_id`,
    `path`, `status`; expire_results: `task_id`, `result_path`), the other steps with the whole record."""

    _id: ObjectId  # given by the store at insert
    task_id: Required[str]
    kind: str  # the job kind's name (app/jobs/registry.py)
    status: str  # one of STATUSES
    owner: Owner | None
    filename: str  # as the client named it
    path: str  # the upload, until the task is finished
    size: int
    bytes_total: int
    created_at: datetime
    updated_at: datetime
    attempts: int
    warnings: dict[str, int]
    rejects: list[dict[str, Any]]
    # while a worker holds it
    worker: str  # host.pid.nonce
    lease_expires_at: datetime
    started_at: datetime
    claims: int
    checkpoint: dict[str, Any]  # where a retake goes on from (app/tasks/progress.py)
    cancel_requested: bool
    # its end
    finished_at: datetime
    duration_s: float | None
    error: str
    groups: int  # plays: the result's rows
    result_size: int
    result_path: str | None
    result_removed_at: datetime


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
