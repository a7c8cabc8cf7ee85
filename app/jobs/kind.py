"""What a job kind is made of: the record a kind fills in, the error its checks raise, and what a run is handed.

Nothing here imports Flask: the worker uses these too. The upload route turns a JobRefused into the API's
error answer, with the same status, code, message and fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Config
    from app.store.interface import Store
    from app.store.retry import Backoff
    from app.store.tasks import KindFields, Task


class JobRefused(Exception):
    """An upload no job kind will take, as the API answers it: `{"error": {"code", "message", **extra}}`."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass(frozen=True)
class Job:
    """What the worker hands a kind's `run`: the claimed task, and the means to do it and report on it."""

    task: Task
    config: Config
    store: Store
    on_progress: Callable[..., None]  # on_progress(fields, checkpoint=None): records progress, renews the lease
    retry: Backoff
    result_path: str | None = None  # where the result file goes, for a kind that leaves one


def no_fields(header: list[str]) -> KindFields:
    return {}


@dataclass(frozen=True)
class JobKind:
    """One kind of job: how its files are recognised and checked, how it runs, and what it leaves."""

    name: str  # the task's `kind`, and the `kind` a client may ask for
    fits: Callable[[list[str]], bool]  # is this header one of ours? (asked in the registry's order)
    check: Callable[[list[str]], None]  # raises JobRefused when the header will not do for this kind
    run: Callable[[Job], dict]  # does the job; returns the fields the task record gets on completion
    expected: tuple[str, ...]  # the columns an error shows this kind expects
    described: str  # what this kind expects, as the "fits no job kind" message puts it
    leaves_result: bool = False  # a result file (RESULT_FOLDER/<task_id>.csv), recorded as `result_path`
    task_fields: Callable[[list[str]], KindFields] = no_fields  # extra fields of the task record, from the header
