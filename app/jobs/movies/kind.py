"""The movies kind: a file with a `title` column, written into the `movies` collection (ingest.py).

A retake goes on from the task's checkpoint. The task record notes the known columns the file lacks. A file
that cannot be read fails the task with the reason; a helper process that died leaves it for another attempt.
"""

from __future__ import annotations

from app.jobs.errors import JobFailed, RetryLater
from app.jobs.helper import HelperDied
from app.jobs.kind import Job, JobKind, JobRefused
from app.jobs.movies import schema
from app.jobs.movies.ingest import ingest_movies
from app.reader import errors as reading
from app.store.tasks import KindFields

RESERVED = ("_id", "year")  # fields the service computes itself


def fits(header: list[str]) -> bool:
    return "title" in header


def check(header: list[str]) -> None:
    missing = [name for name in schema.REQUIRED if name not in header]
    if missing:
        raise JobRefused(
            422,
            "missing_columns",
            f"The header lacks the required column(s): {', '.join(missing)}.",
            missing=missing,
            expected=list(schema.COLUMNS),
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise JobRefused(422, "duplicate_columns", f"The header repeats column(s): {', '.join(duplicated)}.")
    # MongoDB refuses field names with NUL and treats a leading $ as an operator, and a dot as a path: a movie
    # rewritten with only the fields its file carries ($set) got `a: {b: …}` beside the `a.b` its insert stored.
    unusable = [
        name for name in header if name in RESERVED or name == "" or name.startswith("$") or "\0" in name or "." in name
    ]
    if unusable:
        raise JobRefused(422, "bad_columns", f"The header has column names the service cannot store: {unusable}.")


def task_fields(header: list[str]) -> KindFields:
    return {"columns_missing": [c for c in schema.COLUMNS if c not in header]}


def run(job: Job) -> dict:
    c = job.config
    try:
        return ingest_movies(
            job.task["path"],
            job.store.movies,
            block_size=c.BLOCK_SIZE,
            batch_size=c.BATCH_SIZE,
            max_rejects=c.MAX_REJECTS_KEPT,
            on_progress=job.on_progress,
            checkpoint=job.task.get("checkpoint"),
            retry=job.retry,
            in_process_from=c.INGEST_HELPER_MIN_MB * 1_000_000,
            write_chunk=c.MONGO_WRITE_OPS,
            max_row_mb=c.MAX_ROW_MB,
        )
    except HelperDied as e:  # killed, out of memory: the next attempt resumes at the checkpoint
        raise RetryLater(str(e)) from e
    except reading.ERRORS as e:  # the same file would fail the same way on every attempt
        raise JobFailed(reading.explain(e)) from e


KIND = JobKind(
    name="movies",
    fits=fits,
    check=check,
    run=run,
    expected=schema.COLUMNS,
    described="movie columns including 'title' (" + ",".join(schema.COLUMNS) + ")",
    task_fields=task_fields,
)
