"""`moviecat`: one command with subcommands, for the people who run uploads and for the servers.

Client commands (any machine that reaches the API): upload, status, tasks, cancel, result, movies. They take
the server's URL and a key from --url/--key or MOVIECAT_URL/MOVIECAT_KEY. Exit status: 0 done, 1 the API
refused (one line on stderr: `moviecat: error: STATUS CODE: message`) or the task failed or was cancelled,
2 a usage error.

Server commands (from the checkout): serve (`python run.py`), worker (`python worker.py`), broker
(`python -m app.broker`), keys (`python -m app.tools.keys`), generate (test CSVs, `moviecat.generate`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import click

from moviecat import __version__
from moviecat.client import FINISHED, APIError, Client, StreamUnavailable, one_line

DEFAULT_URL = "http://127.0.0.1:5000"
POLL_SECONDS = 0.5  # between two reads of a task when its events stream is refused
SHOWN_REJECTS = 5  # the first rejected rows in an upload's summary (the task record keeps more)


def main(argv: list[str] | None = None) -> int:
    """The console script: returns the exit status instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="moviecat", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except APIError as e:
        fail(str(e))
        return 1
    except Failed as e:
        return e.code
    return 0


class Failed(Exception):
    """The command's outcome was reported already; exit with `code`."""

    def __init__(self, code: int = 1):
        self.code = code


def fail(line: str) -> None:
    click.echo(f"moviecat: error: {line}", err=True)


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="moviecat")
@click.option(
    "--url", envvar="MOVIECAT_URL", default=DEFAULT_URL, show_default=True, help="The API (env MOVIECAT_URL)."
)
@click.option(
    "--key",
    envvar="MOVIECAT_KEY",
    help="An API key or token (env MOVIECAT_KEY; prefer it: a flag is visible to other users in `ps`).",
)
@click.pass_context
def cli(ctx: click.Context, url: str, key: str | None) -> None:
    """Upload CSVs to the movie ingest service, follow their tasks and browse the catalogue."""
    ctx.obj = {"url": url, "key": key}


def client_of(ctx: click.Context) -> Client:
    made = Client(ctx.obj["url"], ctx.obj["key"])
    ctx.call_on_close(made.close)
    return made


# -- client commands --------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["movies", "plays"]), help="The job kind (default: from the header).")
@click.option("--wait", is_flag=True, help="Follow the task to its end, then summarise it.")
@click.pass_context
def upload(ctx: click.Context, file: Path, kind: str | None, wait: bool) -> None:
    """Upload FILE (streamed from disk) and print its task's id; with --wait, follow it to the end.

    Exit status 1 when the upload is refused, or (with --wait) when the task fails or is cancelled."""
    from moviecat.output import Bars

    client = client_of(ctx)
    record = None
    with Bars() as bars:
        sent = bars.add("upload", file.stat().st_size, "bytes")
        answer = client.upload(file, kind, lambda n: bars.advance(sent, n))
        task_id = str(answer["task_id"])
        if wait:
            rows = bars.add(str(answer.get("kind", "task")), None, "rows")
            record = follow(client, task_id, lambda record: bars.task(rows, record))
    if record is None:
        click.echo(one_line(task_id))  # alone, for scripts: TASK=$(moviecat upload FILE)
        return
    summarise(record)


def follow(client: Client, task_id: str, show) -> dict:
    """The task's final record, `show`ing each one on the way: from its events stream, opened again when it
    closes (after SSE_MAX_SECONDS), or by polling when streams are refused (429/503) or the stream breaks."""
    import httpx

    streaming = True
    while True:
        heard = 0
        if streaming:
            try:
                for record in client.events(task_id):
                    heard += 1
                    show(record)
            except (StreamUnavailable, httpx.TransportError):
                streaming = False
        record = client.task(task_id)  # the final record after `end`, and a check on a stream that closed
        show(record)
        if record.get("status") in FINISHED:
            return record
        if not heard:  # polling, or a stream that closed at once (a proxy's): wait, never a busy loop
            time.sleep(POLL_SECONDS)


def summarise(record: dict) -> None:
    """The finished task in a few lines on stdout; a failed or cancelled one raises Failed (exit 1)."""
    task_id, status = one_line(str(record.get("task_id"))), record.get("status")
    counts = f"{record.get('rows_read', 0):,} rows read, "
    if record.get("kind") == "plays":
        counts += f"{record.get('groups', 0):,} song-day totals, "
    else:
        counts += f"{record.get('rows_inserted', 0):,} inserted, {record.get('rows_updated', 0):,} updated, "
    counts += f"{record.get('rows_rejected', 0):,} rejected"
    took = f" in {record['duration_s']:.2f} s" if isinstance(record.get("duration_s"), int | float) else ""
    click.echo(f"task {task_id} {status}: {counts}{took}")
    rejects = record.get("rejects") or []
    for reject in rejects[:SHOWN_REJECTS]:
        click.echo(f"  line {reject.get('line')}: {one_line(str(reject.get('reason')), 200)}")
    more = int(record.get("rows_rejected") or 0) - min(len(rejects), SHOWN_REJECTS)
    if rejects and more > 0:
        click.echo(f"  … and {more:,} more (moviecat status {task_id} --json shows the first {len(rejects)})")
    if status == "completed" and record.get("result_url"):
        click.echo(f"result: {record.get('result_size', 0):,} bytes; moviecat result {task_id} downloads it")
    if status == "failed":
        fail(f"task {task_id} failed: {one_line(str(record.get('error', 'no reason recorded')))}")
        raise Failed(1)
    if status == "cancelled":
        fail(f"task {task_id} was cancelled")
        raise Failed(1)


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="The whole task record, as the API answers it.")
@click.pass_context
def status(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """A task's state and progress."""
    record = client_of(ctx).task(task_id)
    if as_json:
        click.echo(dumps(record))
        return
    fields = [
        ("task", record.get("task_id")),
        ("kind", record.get("kind")),
        ("status", record.get("status")),
        ("file", f"{record.get('filename')} ({record.get('size', 0):,} bytes)"),
        ("progress", f"{record.get('percent', 0)}%, {record.get('rows_read', 0):,} rows read"),
        ("inserted", record.get("rows_inserted")),
        ("updated", record.get("rows_updated")),
        ("rejected", record.get("rows_rejected")),
        ("groups", record.get("groups")),
        ("created", record.get("created_at")),
        ("finished", record.get("finished_at")),
        ("result", record.get("result_url")),
        ("error", record.get("error")),
    ]
    for name, value in fields:
        if value is not None:
            click.echo(f"{name:<9} {one_line(str(value))}")


@cli.command()
@click.option("--status", "state", type=click.Choice(["pending", "processing", "completed", "failed", "cancelled"]))
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--limit", type=int, default=10, show_default=True, help="at most 100")
@click.option("--json", "as_json", is_flag=True, help="The API's answer as it is.")
@click.pass_context
def tasks(ctx: click.Context, state: str | None, page: int, limit: int, as_json: bool) -> None:
    """Tasks, newest first (an uploader sees its own; an admin every one)."""
    from moviecat.output import table

    answer = client_of(ctx).tasks(status=state, page=page, limit=limit)
    if as_json:
        click.echo(dumps(answer))
        return
    rows = [
        [
            t.get("task_id"),
            t.get("kind"),
            t.get("status"),
            f"{t.get('percent', 0)}%",
            t.get("rows_read"),
            t.get("filename"),
            str(t.get("created_at") or "")[:19].replace("T", " "),  # to the second, as people read it
        ]
        for t in answer.get("processes", [])
    ]
    caption = f"page {answer.get('page')} of {answer.get('total_pages')}, {answer.get('total_docs')} tasks"
    table(
        rows,
        ["task", "kind", "status", "done", "rows", "file", "created"],
        caption,
        whole=["task", "kind", "status", "done", "rows", "created"],
    )


@cli.command()
@click.argument("task_id")
@click.pass_context
def cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel a pending task, or ask a processing one to stop after its current batch."""
    code, record = client_of(ctx).cancel(task_id)
    if code == 202:
        click.echo(f"task {one_line(task_id)}: cancel requested; it stops after its current batch")
    else:
        click.echo(f"task {one_line(task_id)} {one_line(str(record.get('status')))}")


@cli.command()
@click.argument("task_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write it (- for stdout; default: the name the server gives, in the current folder).",
)
@click.pass_context
def result(ctx: click.Context, task_id: str, output: str | None) -> None:
    """Download a plays task's result CSV, with a progress bar."""
    from moviecat.output import Bars

    client = client_of(ctx)
    if output == "-":
        client.download(task_id, sys.stdout.buffer, lambda size, name: None, lambda n: None)
        sys.stdout.buffer.flush()
        return
    # written beside its final name, then renamed: an interrupted download leaves no partial file there
    partial = Path(f"{output or task_id}.part.{os.getpid()}")
    chosen: dict[str, str | None] = {"name": output}
    try:
        with Bars() as bars, open(partial, "wb") as out:
            bar = bars.add("result", None, "bytes")

            def started(size: int | None, name: str | None) -> None:
                bars.progress.update(bar, total=size)
                chosen["name"] = chosen["name"] or name or f"{task_id}.csv"

            written = client.download(task_id, out, started, lambda n: bars.advance(bar, n))
        target = Path(str(chosen["name"]))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"wrote {written:,} bytes to {one_line(str(target))}", err=True)


@cli.command()
@click.option("--year", type=int)
@click.option("--language", help="original_language, e.g. en")
@click.option("--sort-by", type=click.Choice(["release_date", "rating", "title"]))
@click.option("--order", type=click.Choice(["1", "-1"]), help="1 ascending, -1 descending")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--limit", type=int, default=10, show_default=True, help="at most 100")
@click.option("--json", "as_json", is_flag=True, help="The API's answer as it is.")
@click.pass_context
def movies(ctx: click.Context, year, language, sort_by, order, page, limit, as_json) -> None:
    """Browse the catalogue: a table of movies."""
    from moviecat.output import table

    answer = client_of(ctx).movies(year=year, language=language, sort_by=sort_by, order=order, page=page, limit=limit)
    if as_json:
        click.echo(dumps(answer))
        return
    rows = [
        [
            m.get("title"),
            m.get("year"),
            str(m.get("release_date") or "")[:10],
            m.get("original_language"),
            m.get("vote_average"),
            m.get("vote_count"),
            m.get("runtime"),
        ]
        for m in answer.get("movies", [])
    ]
    caption = f"page {answer.get('page')} of {answer.get('total_pages')}, {answer.get('total_docs')} movies"
    if answer.get("truncated"):
        caption += f" (page cut at the size bound: ask --json for next_offset {answer.get('next_offset')})"
    table(rows, ["title", "year", "released", "lang", "rating", "votes", "runtime"], caption)


# -- server commands: the checkout's own entry points, under one name ---------------------------------------

PASS_ON = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def checkout_script(name: str) -> str:
    """run.py or worker.py beside the `app` package: the server commands run from the checkout (`make run`
    installs this command there, editable); a wheel installed elsewhere holds no such script."""
    spec = importlib.util.find_spec("app")
    script = Path(spec.origin).parent.parent / name if spec and spec.origin else None
    if script is None or not script.is_file():
        raise click.ClickException(
            f"{name} is not beside the app package: run the server commands from the service's checkout "
            "(pip install -e . there)"
        )
    return str(script)


@cli.command()
def serve() -> None:
    """Run the service: API, broker and (embedded store) workers, as `python run.py` does."""
    os.execv(sys.executable, [sys.executable, checkout_script("run.py")])


@cli.command()
def worker() -> None:
    """Run one ingest worker, as `python worker.py` does."""
    os.execv(sys.executable, [sys.executable, checkout_script("worker.py")])


@cli.command()
def broker() -> None:
    """Run the ZeroMQ broker on its own, as `python -m app.broker` does (serve starts one for you)."""
    from app.broker.__main__ import main as broker_main

    raise SystemExit(broker_main())


@cli.command(context_settings=PASS_ON, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def keys(args: tuple[str, ...]) -> None:
    """Manage API keys in the store: create --name N --role R, list, revoke KEY_ID (see keys --help)."""
    from app.tools.keys import main as keys_main

    raise Failed(keys_main(list(args), prog="moviecat keys"))


@cli.command(context_settings=PASS_ON, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def generate(args: tuple[str, ...]) -> None:
    """Write test CSVs of any size: movies|plays --rows N or --size-mb M OUT (see generate --help)."""
    from moviecat.generate import main as generate_main

    raise Failed(generate_main(list(args), prog="moviecat generate"))
