"""The helper process that prepares blocks beside the writer: same items, errors in order, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pyarrow as pa
import pytest

from app.jobs.helper import ahead, in_thread
from app.jobs.movies import prepare
from moviecat.generate import generate_movies
from tests.conftest import REPO


# Module-level generators: the helper imports them by name.
def numbers(n):
    yield from range(n)


def fails_after(n):
    yield from range(n)
    raise pa.ArrowInvalid("CSV parse error: Expected 15 columns, got 3")


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no")


def fails_oddly():
    yield 1
    raise Unpicklable("a lock cannot cross")


def dies():
    yield 1
    os._exit(3)


def forever():
    while True:
        yield "x" * 100_000  # bigger than a pipe's buffer: the helper waits on each one


def helpers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "app.jobs.helper" in " ".join(p.cmdline())]


@pytest.mark.server
def test_items_arrive_in_order_from_the_helper():
    with ahead(numbers, 1000) as items:
        assert list(items) == list(range(1000))
    assert helpers() == []


def test_inline_gives_the_same_items_without_a_process():
    with ahead(numbers, 5, in_process=False) as items:
        assert helpers() == []
        assert list(items) == [0, 1, 2, 3, 4]


@pytest.mark.server
def test_an_error_arrives_after_the_items_before_it_with_its_type():
    seen = []
    with pytest.raises(pa.ArrowInvalid, match="Expected 15 columns"):
        with ahead(fails_after, 3) as items:
            for item in items:
                seen.append(item)
    assert seen == [0, 1, 2]


@pytest.mark.server
def test_an_error_that_cannot_be_pickled_arrives_as_its_text():
    with pytest.raises(RuntimeError, match="Unpicklable: a lock cannot cross"):
        with ahead(fails_oddly) as items:
            list(items)


@pytest.mark.server
def test_a_helper_that_dies_is_an_error_not_a_short_file():
    with pytest.raises(RuntimeError, match=r"helper process died \(exit code 3\)"):
        with ahead(dies) as items:
            list(items)


@pytest.mark.server
def test_leaving_early_stops_the_helper():
    with ahead(forever) as items:
        assert next(iter(items)) == "x" * 100_000
        [helper] = helpers()
    assert not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE


@pytest.mark.server
def test_the_helper_ignores_sigterm_so_the_consumer_can_finish_its_batch():
    with ahead(forever) as items:
        items = iter(items)
        next(items)  # the helper is up, and blocked writing the next item
        [helper] = helpers()
        helper.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert [len(next(items)) for _ in range(5)] == [100_000] * 5
        assert helper.is_running() and helper.status() != psutil.STATUS_ZOMBIE


@pytest.mark.server
def test_a_killed_consumer_leaves_no_helper_behind(tmp_path):
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from app.jobs.helper import ahead\nfrom tests.test_pipeline import forever\n"
            "with ahead(forever) as items:\n    next(iter(items))\n    print('ready', flush=True)\n"
            "    import time; time.sleep(60)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout.readline().strip() == "ready"
        [helper] = [p for p in psutil.Process(consumer.pid).children() if "app.jobs.helper" in " ".join(p.cmdline())]
        consumer.kill()  # the consumer only: the helper must notice on its own
        consumer.wait()
        gone, _ = psutil.wait_procs([helper], timeout=10)
        assert gone == [helper]
    finally:
        consumer.kill()


@pytest.mark.server
def test_prepared_blocks_are_the_same_through_the_helper(tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=5_000, seed=3)
    args = (str(path), 64 * 1024, 500, 2)
    with ahead(prepare.prepare, *args, in_process=False) as items:
        inline = list(items)
    with ahead(prepare.prepare, *args) as items:
        helped = list(items)
    assert helped == inline and len(inline) > 1


def test_in_thread_gives_the_items_in_order_and_raises_where_they_stopped():
    assert list(in_thread(iter(range(100)), depth=2)) == list(range(100))
    seen = []
    with pytest.raises(pa.ArrowInvalid, match="Expected 15 columns"):
        for item in in_thread(fails_after(3)):
            seen.append(item)
    assert seen == [0, 1, 2]


def test_in_thread_left_early_stops_its_thread_and_closes_the_source():
    closed = []

    def source():
        try:
            yield from range(1_000_000)
        finally:
            closed.append(threading.current_thread().name)

    items = in_thread(source(), depth=2)
    assert next(items) == 0
    items.close()  # what a for loop's break, or an exception in the consumer, does
    assert closed == ["prepare-read"]
    assert not any(t.name == "prepare-read" for t in threading.enumerate())


def environment(name):
    yield os.environ.get(name)


@pytest.mark.server
def test_the_helper_gets_default_environment_that_the_parent_can_override(monkeypatch):
    with ahead(environment, "INGEST_TEST_SETTING", env={"INGEST_TEST_SETTING": "default"}) as items:
        assert list(items) == ["default"]
    monkeypatch.setenv("INGEST_TEST_SETTING", "operator's")
    with ahead(environment, "INGEST_TEST_SETTING", env={"INGEST_TEST_SETTING": "default"}) as items:
        assert list(items) == ["operator's"]
