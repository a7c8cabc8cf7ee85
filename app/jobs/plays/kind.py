"""The plays kind: a `Song,Date,Number of Plays` file, totalled per (song, day) into a result file (aggregate.py).

Totals live in memory until the end, bounded by MAX_PLAY_GROUPS and MAX_PLAY_SONGS_MB: a retake starts over.
Past a bound (PlaysFailed), or with a file that cannot be read, the task fails with the reason.
"""

from __future__ import annotations

from app.jobs.errors import JobFailed
from app.jobs.kind import Job, JobKind, JobRefused
from app.jobs.plays import rules
from app.jobs.plays.aggregate import aggregate_plays
from app.reader import errors as reading


def check(header: list[str]) -> None:
    if not rules.fits(header):
        raise JobRefused(
            422,
            "bad_columns",
            f"A plays file has exactly the columns {','.join(rules.COLUMNS)}; got {','.join(header)}.",
            expected=list(rules.COLUMNS),
        )


def run(job: Job) -> dict:
    c = job.config
    if job.result_path is None:  # the worker names one for every kind that leaves a result, as this one does
        raise ValueError("a plays job needs its result_path")
    try:
        return aggregate_plays(
            job.task["path"],
            job.result_path,
            block_size=c.BLOCK_SIZE,
            max_rejects=c.MAX_REJECTS_KEPT,
            on_progress=job.on_progress,
            formula_guard=c.CSV_FORMULA_GUARD,
            max_row_mb=c.MAX_ROW_MB,
            max_groups=c.MAX_PLAY_GROUPS,
            max_songs_mb=c.MAX_PLAY_SONGS_MB,
        )
    except reading.ERRORS as e:  # the same file would fail the same way on every attempt
        raise JobFailed(reading.explain(e)) from e


KIND = JobKind(
    name="plays",
    fits=rules.fits,
    check=check,
    run=run,
    expected=rules.COLUMNS,
    described=f"'{','.join(rules.COLUMNS)}' for play counts",
    leaves_result=True,
)
