"""The plays job: a `Song,Date,Number of Plays` file, totalled per (song, day) into a result file (app/aggregate.py).

Totals live in memory until the end: a retake starts over.
"""
from __future__ import annotations

from app import plays
from app.aggregate import aggregate_plays
from app.jobs.kind import Job, JobKind, JobRefused


def check(header: list[str]) -> None:
    if not plays.fits(header):
        raise JobRefused(
            422, "bad_columns",
            f"A plays file has exactly the columns {','.join(plays.COLUMNS)}; got {','.join(header)}.",
            expected=list(plays.COLUMNS),
        )


def run(job: Job) -> dict:
    c = job.config
    return aggregate_plays(
        job.task["path"], job.result_path, block_size=c.BLOCK_SIZE, max_rejects=c.MAX_REJECTS_KEPT,
        on_progress=job.on_progress, formula_guard=c.CSV_FORMULA_GUARD, max_row_mb=c.MAX_ROW_MB,
    )


KIND = JobKind(
    name="plays", fits=plays.fits, check=check, run=run, expected=plays.COLUMNS,
    described=f"'{','.join(plays.COLUMNS)}' for play counts", leaves_result=True,
)
