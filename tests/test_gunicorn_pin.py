"""app/api/serving.py subclasses gunicorn's gthread worker and reads its insides, none of which is gunicorn's
public API: these tests fail on a gunicorn release it was not written for, and run.py refuses to start on one.

To move to another release: install it, read the diff of gunicorn/workers/gthread.py (and of the parser's
Unreader and of util.write_error) against the methods named in serving.GUNICORN_HOOKS and below, run
tests/test_slow_clients.py, tests/test_streams_server.py and tests/test_upload_hostile.py, and only then add
the release to serving.GUNICORN_VERSIONS and pin it in requirements.txt.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import socket
import subprocess
import sys

import gunicorn
import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import TConn, ThreadWorker

from app.api import serving
from app.api.serving import GuardedThreadWorker
from tests.support import REPO
from tests.support.service import Service


def test_the_installed_gunicorn_is_a_release_serving_py_was_written_for():
    assert gunicorn.__version__ in serving.GUNICORN_VERSIONS
    assert serving.gunicorn_problems() == []


def test_every_gthread_method_the_worker_overrides_is_checked_at_start_up():
    overridden = {
        name for name, value in vars(GuardedThreadWorker).items() if callable(value) and hasattr(ThreadWorker, name)
    }
    checked = {name for owner, name, _ in serving.GUNICORN_HOOKS if owner is ThreadWorker}
    assert overridden and overridden <= checked, sorted(overridden - checked)


# Where gthread calls what the worker overrides or sets: a release that stops calling one leaves the override
# dead (the slow-client guards then silently off), whatever its signature.
@pytest.mark.parametrize(
    ("caller", "call"),
    [
        (ThreadWorker.run, "self.murder_pending()"),  # the loop's deadlines: 408s, write timeouts, lingering
        (ThreadWorker.set_accept_enabled, "self.accept"),
        (ThreadWorker.enqueue_req, "self.finish_request"),
        (ThreadWorker.finish_request, "self.on_client_socket_readable"),
        (ThreadWorker.finish_request, "conn.parser.unreader.buf.getvalue()"),  # what _after_answer mirrors
        (ThreadWorker.handle, "not conn.data_ready"),  # set on hand-over: the thread does not wait for bytes
        (ThreadWorker.handle, "self._keepalive_after(conn, self.handle_request(req, conn))"),
        (Worker.handle_error, "util.write_error(client, status_int, reason, mesg)"),  # answers made JSON
    ],
    ids=lambda v: getattr(v, "__qualname__", v),
)
def test_gthread_still_calls_what_the_worker_overrides(caller, call):
    assert call in inspect.getsource(caller)


def test_the_attributes_the_worker_reads_exist_on_real_gthread_objects():
    cfg = Config()
    ours, theirs = socket.socketpair()
    worker = GuardedThreadWorker(0, os.getppid(), [], None, 30, cfg, logging.getLogger("test"))
    try:
        for name in ("cfg", "alive", "nr_conns", "keepalived_conns", "poller"):  # poller: made by init_process
            assert hasattr(worker, name), name
        assert worker.nr_conns == 0 and not worker.cfg.is_ssl
        conn = TConn(cfg, ours, ("127.0.0.1", 1), ("127.0.0.1", 2))
        for name in ("sock", "client", "is_http2", "parser", "data_ready"):
            assert hasattr(conn, name), name
        conn.init()
        unreader = conn.parser.unreader
        assert unreader.sock is ours and isinstance(unreader.buf, io.BytesIO)
        unreader.unread(b"GET / HTTP/1.1\r\n")
        assert unreader.take_buffered() == b"GET / HTTP/1.1\r\n"
    finally:
        worker.tmp.close()
        ours.close()
        theirs.close()


def test_another_release_or_a_changed_hook_is_named_in_the_problems(monkeypatch):
    monkeypatch.setattr(gunicorn, "__version__", "28.0.0")
    monkeypatch.setattr(ThreadWorker, "handle", lambda self, conn, deadline: False)
    monkeypatch.delattr(util, "write_error")
    assert serving.gunicorn_problems() == [
        "gunicorn 28.0.0 is installed; app/api/serving.py was written for " + ", ".join(serving.GUNICORN_VERSIONS),
        "gunicorn.workers.gthread.ThreadWorker.handle takes (conn, deadline), where (conn) was expected",
        "gunicorn.util.write_error is missing, where (sock, status_int, reason, mesg) was expected",
    ]


@pytest.mark.server
def test_run_py_refuses_to_start_on_another_gunicorn(tmp_path):
    service = Service(tmp_path)
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gunicorn, sys; gunicorn.__version__ = '28.0.0'; import run; sys.exit(run.main())",
        ],
        cwd=REPO,
        env=service.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 1, started.stderr
    assert (
        "refusing to start: gunicorn 28.0.0 is installed; app/api/serving.py was written for "
        + ", ".join(serving.GUNICORN_VERSIONS)
    ) in started.stderr
    assert "serving on" not in started.stderr
    with socket.socket() as probe:  # nothing listens: it stopped before the broker and the server
        assert probe.connect_ex(("127.0.0.1", service.port)) != 0
