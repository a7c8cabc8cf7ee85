"""`python run.py`: the API under gunicorn, plus the ZeroMQ broker, plus (embedded store) the workers.

gunicorn's threaded workers hand the request body to the app as it arrives, so uploads stream to disk; its
event loop reads each request's headers first and sends what a slow reader has not taken of its answer
(app/api/serving.py), so slow clients hold no thread.
With MONGO_URI set: a broker process, WEB_CONCURRENCY API processes; run workers with `python worker.py`.
With MONGO_URI unset: the store is one SQLite file in DATA_FOLDER; a broker process, one API process (its cache
and rate limits live in its memory when REDIS_URL is empty too) and WORKERS `python worker.py` processes on the
same file, over real ZeroMQ TCP sockets. Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import threading

from gunicorn.app.base import BaseApplication

from app import create_app, logs
from app.api import auth, limits
from app.config import Config

log = logging.getLogger("app.run")


class Server(BaseApplication):
    def __init__(self, config: Config):
        self.config = config
        super().__init__()

    def load_config(self):
        c = self.config
        from app.api.serving import GuardedThreadWorker

        GuardedThreadWorker.header_timeout = c.HEADER_TIMEOUT_SECONDS  # inherited by the forked workers
        GuardedThreadWorker.body_timeout = c.BODY_TIMEOUT_SECONDS
        GuardedThreadWorker.write_timeout = c.WRITE_TIMEOUT_SECONDS
        GuardedThreadWorker.write_buffer_bytes = c.WRITE_BUFFER_MB << 20
        GuardedThreadWorker.write_buffer_total_bytes = c.WRITE_BUFFER_TOTAL_MB << 20
        settings = {
            "bind": f"{c.HOST}:{c.PORT}",
            "workers": 1 if c.embedded_mongo else c.WEB_CONCURRENCY,  # one process: the page's tokens are signed
            # with a key made at start, and embedded Redis lives in that process
            # gthread, with headers and a body's first 64 KiB read by the event loop, and the rest of an answer
            # sent by it: slow senders and slow readers hold no thread
            "worker_class": "app.api.serving.GuardedThreadWorker",
            "threads": c.WEB_THREADS,
            "timeout": 120,
            "graceful_timeout": 10,
            "loglevel": c.LOG_LEVEL.lower(),
            "accesslog": "-",
            "control_socket_disable": True,  # not used; and several servers on one host would share its path
        }
        for key, value in settings.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self):
        app = create_app(self.config)
        if self.config.AUTH:
            first_key(self.config, app.extensions["movie_service"].store)
        return app


def first_key(config: Config, store) -> None:
    """With no key yet, nobody could sign in: embedded, make one admin key and print where to sign in.

    Printed to the terminal, not logged: log collectors must never hold a secret. The secret rides in the
    URL's fragment, which a browser never sends, so it reaches no access log either (as notebook servers do).
    """
    from app.api import keys

    if keys.any_key(store):
        if config.embedded_mongo:
            log.info(
                "API keys exist in %s; sign in with one of them, or make another with "
                "`python -m app.tools.keys create --name NAME --role admin`",
                config.DATA_FOLDER,
            )
        return
    if not config.embedded_mongo:
        log.warning(
            "no API key exists yet, so nobody can sign in: create one with "
            "`python -m app.tools.keys create --name admin --role admin`"
        )
        return
    doc, secret = keys.create(store, "embedded admin", "admin")
    host = "127.0.0.1" if config.HOST in ("0.0.0.0", "::") else config.HOST
    sys.stderr.write(
        f"\n  Sign in to the page:  {keys.sign_in_url(f'http://{host}:{config.PORT}', secret)}\n"
        f"  or use the API with:  Authorization: Bearer {secret}\n"
        f"  (admin key {doc['_id']}, kept in {config.DATA_FOLDER}; shown this once: more keys at /api/v1/keys\n"
        f"   or with `python -m app.tools.keys create --name NAME --role ROLE`)\n\n"
    )
    sys.stderr.flush()


def gunicorn_refusal() -> str | None:
    """Why app/api/serving.py cannot serve on the installed gunicorn (another release than it was written for,
    or one whose gthread insides differ), or None."""
    import gunicorn

    try:
        from app.api import serving
    except ImportError as e:  # gthread lost a name serving.py imports
        return f"gunicorn {gunicorn.__version__}: {e}"
    return "; ".join(serving.gunicorn_problems()) or None


def _start_broker() -> subprocess.Popen | None:
    """`python -m app.broker` as a child; None if it could not bind its sockets (it logs why)."""
    read, write = os.pipe()
    broker = subprocess.Popen([sys.executable, "-m", "app.broker", "--ready-fd", str(write)], pass_fds=(write,))
    os.close(write)
    ready, _, _ = select.select([read], [], [], 30)
    answer = os.read(read, 16) if ready else b""  # b"" also when the broker exited before it was ready
    os.close(read)
    if answer != b"ready":
        broker.kill()
        broker.wait()
        return None
    return broker


class Workers:
    """WORKERS `python worker.py` children on the embedded store, each replaced when it dies (killed, out of
    memory): its task's lease runs out and the new one resumes it from the checkpoint. A worker that dies at
    once, again and again (a store it cannot open), is restarted ever more slowly, up to once a minute."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

    def __init__(self, count: int):
        self.children = [self._spawn() for _ in range(count)]
        self.stopping = threading.Event()
        self.delay = 1.0
        threading.Thread(target=self._watch, name="workers", daemon=True).start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, self.SCRIPT])

    def _watch(self) -> None:
        while not self.stopping.wait(self.delay):
            for i, child in enumerate(self.children):
                if child.poll() is not None and not self.stopping.is_set():
                    # gunicorn's arbiter may have reaped it first, so its exit status is not always known
                    log.error("worker process %d exited; starting another", child.pid)
                    self.children[i] = self._spawn()
                    self.delay = min(self.delay * 2, 60.0)
                    break
            else:
                self.delay = 1.0

    def stop(self) -> None:
        self.stopping.set()
        _stop(self.children)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM each (a worker hands its task back at the next batch), then wait; SIGKILL what lingers."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> int:
    config = logs.start_command(listen=True)
    refusal = gunicorn_refusal()
    if refusal:
        log.error(
            "refusing to start: %s. Install the gunicorn that requirements.txt pins, or check app/api/serving.py "
            "against this one and add it to GUNICORN_VERSIONS (docs/architecture.md: Pinned to one gunicorn)",
            refusal,
        )
        return 1
    if config.embedded_mongo:
        from app.store import connect

        try:
            connect(config).setup()  # the file is made (or checked) once, before any process opens it
        except Exception as e:
            log.error("the embedded store cannot be used: %s", e)
            return 1
    broker = _start_broker()
    if broker is None:
        log.error(
            "the ZeroMQ broker did not start (is ZMQ_PORT %d or ZMQ_INTAKE_PORT %d taken?); see its error above",
            config.ZMQ_PORT,
            config.ZMQ_INTAKE_PORT,
        )
        return 1
    workers = Workers(config.WORKERS) if config.embedded_mongo else None
    auth.warn_if_off(config)
    limits.warn_if_per_process(config)
    log.info(
        "serving on http://%s:%d (%s)",
        config.HOST,
        config.PORT,
        f"embedded store {os.path.join(config.DATA_FOLDER, 'service.sqlite3')}, {config.WORKERS} worker(s)"
        if config.embedded_mongo
        else config.MONGO_DB,
    )
    try:
        Server(config).run()
    finally:
        if workers is not None:  # first: a worker may still hand its task back
            workers.stop()
        _stop([broker])
    return 0


if __name__ == "__main__":
    sys.exit(main())
