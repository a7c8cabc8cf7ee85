"""The job kinds, by name: what the upload route recognises and checks, and what the worker runs.

Each kind is one package of app/jobs/ whose kind.py holds one JobKind (app/jobs/kind.py), beside the
modules that do its work; a new kind is a package like app/jobs/plays/, added to KINDS below. Headers are
tried against the kinds in KINDS' order, the narrowest first. Nothing here imports Flask: the worker looks
kinds up here too, and learns from here the errors a kind's run ends a task with (JobFailed, RetryLater).
"""

from __future__ import annotations

from app.jobs.errors import JobFailed, RetryLater
from app.jobs.kind import Job, JobKind, JobRefused
from app.jobs.movies import kind as movies
from app.jobs.plays import kind as plays

__all__ = ["KINDS", "Job", "JobFailed", "JobKind", "JobRefused", "RetryLater", "choose", "get", "names"]

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (plays.KIND, movies.KIND)}


def names() -> list[str]:
    """The kinds' names, in alphabetical order (as messages list them)."""
    return sorted(KINDS)


def get(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}") from None


def choose(header: list[str], requested: str | None) -> JobKind:
    """The job kind: as requested (`kind` form field or query parameter), else recognised from the header.

    Raises JobRefused: an unknown kind asked for (400), a header no kind recognises, or one the kind refuses (422).
    """
    if requested is not None and requested not in KINDS:
        raise JobRefused(400, "bad_kind", f"kind must be one of {', '.join(names())}, got {requested!r}.")
    kind = KINDS[requested] if requested is not None else next((k for k in KINDS.values() if k.fits(header)), None)
    if kind is None:
        raise JobRefused(
            422,
            "unrecognised_header",
            "The header fits no job kind. Expected " + ", or ".join(k.described for k in KINDS.values()) + ".",
            expected={name: list(KINDS[name].expected) for name in names()},
        )
    kind.check(header)
    return kind
