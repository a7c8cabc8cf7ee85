"""What the commands show: progress bars and tables (rich) on a terminal; plain lines when the output is a
file or a pipe, with no bar, no colour and no escape sequence, so scripts and logs read it as text.

Every string that came from the server (titles, file names, messages) passes through `one_line` before it
is shown: a control character in a movie's title must not drive the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich import box
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as BarTask
from rich.table import Table
from rich.text import Text

from moviecat.client import one_line


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class Amounts(ProgressColumn):
    """Bytes sent and their rate (kB, MB, GB) for the upload's bar; rows read and rows/s (the worker's own
    figures) for the task's."""

    def render(self, task: BarTask) -> Text:
        if task.fields.get("unit") == "bytes":
            speed = task.finished_speed or task.speed or 0
            total = f"/{decimal(int(task.total))}" if task.total else ""
            rate = f"  {decimal(int(speed))}/s" if speed else ""  # rich needs two samples for a rate
            return Text(f"{decimal(int(task.completed))}{total}{rate}")
        return Text(f"{task.fields.get('rows', 0):,} rows  {task.fields.get('rate', 0):,.0f} rows/s")


class Bars:
    """The upload's two bars on stderr: bytes sent, then the worker's progress through the file. Drawn only
    when stderr is a terminal; otherwise every call does nothing."""

    def __init__(self, console: Console | None = None):
        self.console = console or stderr_console()
        self.progress = Progress(
            TextColumn("{task.description:<7}"),
            BarColumn(),
            TaskProgressColumn(),
            Amounts(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        )

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def add(self, label: str, total: float | None, unit: str) -> TaskID:
        return self.progress.add_task(label, total=total, unit=unit, rows=0, rate=0.0)

    def advance(self, bar: TaskID, amount: int) -> None:
        self.progress.advance(bar, amount)

    def task(self, bar: TaskID, record: dict) -> None:
        """Show a task record: the share of its file read (the percent and time left), its rows and rate."""
        total = record.get("bytes_total") or record.get("size") or None
        done = record.get("bytes_read") or 0
        if record.get("status") == "completed" and total:
            done = total
        self.progress.update(
            bar,
            total=total,
            completed=done,
            rows=int(record.get("rows_read") or 0),
            rate=float(record.get("rows_per_sec") or 0),
        )


def table(
    rows: Sequence[Sequence[object]], headers: Sequence[str], caption: str | None = None, whole: Sequence[str] = ()
) -> None:
    """A table on stdout: drawn on a terminal; tab-separated lines (headers first) otherwise. The columns in
    `whole` (ids to copy) are never cut nor wrapped; the others give way on a narrow terminal."""
    cells = [[one_line("" if value is None else str(value), 120) for value in row] for row in rows]
    console = Console(highlight=False)
    if not console.is_terminal:
        for line in [list(headers), *cells]:
            click.echo("\t".join(line))
        return
    drawn = Table(caption=caption, caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    for header in headers:
        drawn.add_column(header, no_wrap=header in whole)
    for row in cells:
        drawn.add_row(*(Text(value) for value in row))
    console.print(drawn)
