"""How a job kind's run ends a task other than by completing it: the errors the worker understands.

`JobFailed(reason)`: the same error would come back on every attempt, so the task fails now with `reason`,
in words the uploader can act on. `RetryLater`: this attempt stops and the task is left to its lease, as if
the worker had died; the next attempt goes on from the task's checkpoint. A kind translates what its own
modules raise into these (app/jobs/movies/kind.py, app/jobs/plays/kind.py), so the worker needs to know
nothing of them. Any other error fails the task too, its type named in the reason.

Standard library only: the worker imports this through the registry, and any process may.
"""

from __future__ import annotations


class JobFailed(Exception):
    """The task fails with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryLater(Exception):
    """This attempt stops; another one, after the task's lease runs out, goes on from its checkpoint."""
