"""Run a generator in a helper process, a step ahead of whoever consumes it: two cores at work.

Any job kind may use it (the movies ingest does, app/jobs/movies/ingest.py); it imports nothing of the kinds.

Threads would not do: the preparing stage makes many short calls into PyArrow and needs the GIL
between them, which a consumer busy building Python objects holds; measured, two threads together
were slower than one. A process has its own GIL. Items cross a pipe as pickles, which also bounds how
far the helper runs ahead: it blocks on writing until the consumer has read what came before.

The helper is `python -m app.jobs.helper` (__main__.py), not `multiprocessing`: spawning that way re-imports the
parent's `__main__`, which gunicorn, pytest and scripts all make differently. If the consumer dies, the
helper's next write fails and it exits; it ignores SIGTERM and SIGINT, which the consumer handles.
"""

from __future__ import annotations

import importlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


class HelperDied(RuntimeError):
    """The helper process ended without finishing (killed, out of memory): worth another attempt."""


_ITEM, _ERROR, _END = "item", "error", "end"
_ROOT = Path(__file__).resolve().parents[3]  # where `app` can be imported from


@contextmanager
def ahead(
    generate: Callable[..., Iterator[T]], *args, in_process: bool = True, env: dict[str, str] | None = None
) -> Iterator[Iterator[T]]:
    """`generate(*args)`'s items, made in a helper process if `in_process`, else inline.

    `generate` must be a module-level function, and its arguments and items picklable. Its errors are
    raised here, in order. Leaving the block early stops the helper. `env`: defaults for the helper's
    environment (what this process's environment sets wins).
    """
    if not in_process:
        items = generate(*args)
        try:
            yield items
        finally:
            getattr(items, "close", lambda: None)()
        return
    env = {
        **(env or {}),
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    # A process group of its own: a signal to the consumer's group (Ctrl-C, a service manager) is the
    # consumer's to handle; the helper stops when the consumer closes the pipe or kills it.
    # -P: the worker's working directory is not put on the helper's path (an `app.py` there would shadow us).
    helper = subprocess.Popen(
        [sys.executable, "-P", "-m", "app.jobs.helper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        process_group=0,
    )
    stdin, stdout = helper.stdin, helper.stdout
    if stdin is None or stdout is None:  # both PIPE above: never (typeshed's Popen cannot say so)
        raise RuntimeError("the ingest helper process has no pipes")
    try:
        pickle.dump((generate.__module__, generate.__qualname__, args), stdin)
        stdin.close()
        yield _receive(helper, stdout)
    finally:
        stdout.close()
        if helper.poll() is None:
            helper.kill()
        helper.wait()


def in_thread(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced on a thread of its own, up to `depth` ahead; for a stage that releases the GIL
    for long stretches (PyArrow's CSV parse), beside one that holds it often. Errors arrive in order."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if not _put(ready, stop, (_ITEM, item)):
                    return
            _put(ready, stop, (_END, None))
        except BaseException as e:  # raised on the consuming thread
            _put(ready, stop, (_ERROR, e))
        finally:
            getattr(items, "close", lambda: None)()  # a generator's `finally` (open files) runs here

    thread = threading.Thread(target=produce, name="prepare-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = ready.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise payload
            yield payload
    finally:
        stop.set()
        thread.join()


def _put(ready: queue.Queue, stop: threading.Event, item) -> bool:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _receive(helper: subprocess.Popen, stdout: IO[bytes]) -> Iterator:
    while True:
        try:
            kind, payload = pickle.load(stdout)
        except EOFError:
            raise HelperDied(f"the ingest helper process died (exit code {helper.wait()})") from None
        if kind == _END:
            return
        if kind == _ERROR:
            raise payload
        yield payload


def serve(source, sink) -> None:
    """In the helper (app/jobs/helper/__main__.py): read what to run, send every item, then the end or the error."""
    module, name, args = pickle.load(source)
    try:
        generate = getattr(importlib.import_module(module), name)  # inside: a failure here reaches the consumer
        for item in generate(*args):
            _send(sink, _ITEM, item)
    except Exception as e:  # handed to the consumer, raised there
        _send(sink, _ERROR, _picklable(e))
        return
    _send(sink, _END, None)


def _send(sink, kind: str, payload) -> None:
    pickle.dump((kind, payload), sink, protocol=pickle.HIGHEST_PROTOCOL)
    sink.flush()


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # some exceptions cannot cross; their text can
        return RuntimeError(f"{type(error).__name__}: {error}")
