"""gunicorn's threaded worker, with request headers read, and the rest of answers sent, by its event loop.

gunicorn's gthread worker hands every new connection to a thread as soon as its first byte arrives, and the
thread then blocks until the request's headers are complete: sixteen clients sending one byte a second
held all sixteen threads, and ping, reads and the page stopped answering. This worker keeps the rest of
gthread (threads, streaming bodies, keep-alive, graceful SIGTERM) and changes who waits for a slow client:

- The main thread's selector reads a new (or kept-alive) connection's bytes without blocking until its
  headers are complete, and then the first BODY_PREFIX bytes of its body (all of it, if smaller; an
  `Expect: 100-continue` is answered first, so such clients send it). Only then is a thread given the
  connection, with those bytes already in its parser's buffer. Waiting connections cost a buffer, no
  thread (gunicorn's worker_connections, 1000, caps them per process).
- A request line and headers past HEAD_LIMIT (64 KiB) are answered 431 by the loop, at once: what it holds for a
  connection is bounded (its headers, then at most BODY_PREFIX bytes of body).
- Headers not complete within HEADER_TIMEOUT_SECONDS, or the body's first BODY_PREFIX bytes not within
  BODY_TIMEOUT_SECONDS after them, and the loop answers 408 (JSON, `Connection: close`) and closes. A
  connection that sent nothing at all is closed without an answer.
- In the thread, every further BODY_PREFIX bytes of the body must arrive within BODY_TIMEOUT_SECONDS too
  (a floor of 64 KiB per 30 s by default): a read that waits longer raises `BodyTimeout`, a 408 the app
  answers (an upload then removes its partial file and records no task), and the connection closes.

And the other way, for clients that do not read their answer:

- A thread writes its answer through an Outbox: what the socket takes at once is sent, the rest waits in the
  outbox (a reference to the app's bytes, or, for a result file, the open file and a range, sent from disk
  with sendfile as the socket drains). When the app is done, the thread is free: the event loop sends what
  is left as the client reads it, then keeps the connection alive (or closes it) as gthread would.
- Each WRITE_WINDOW bytes waiting must be taken by the client within WRITE_TIMEOUT_SECONDS (a floor of
  64 KiB per 30 s by default; taken means acknowledged by the client's side, read from the kernel's queue),
  else the connection is reset and its outbox freed: by the loop, which looks every second, or by a
  streaming answer's thread at its next write.
- Memory: an outbox holds at most WRITE_BUFFER_MB of the app's bytes, and all of a process's outboxes
  WRITE_BUFFER_TOTAL_MB (files count nothing: an open descriptor each). Past either, the bytes go to a
  temporary file of the outbox's (unlinked, in the system's temp folder), sent from disk like a result: the
  thread never waits for a client. A stream's thread keeps writing until the deadline cuts it.
- Closing a connection after its answer (RFC 9112's linger: half-close, then read what the client still
  sends, for 2 s at most) is done by the loop without blocking it; gthread did it with a blocking read on
  the loop, so a client that neither read nor closed stalled every connection for 2 s.

TLS connections (gunicorn's certfile) are handed over as gthread does: their bytes cannot be read here, and
their answers are written by their thread (run.py serves plain HTTP; TLS is terminated in front of it).

None of gthread's insides used here is gunicorn's public API, so the release this was written for is pinned
(GUNICORN_VERSIONS, requirements.txt) and run.py refuses to start on another (`gunicorn_problems`); what to
check before adding a release is in tests/test_gunicorn_pin.py.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import json
import logging
import os
import selectors
import socket
import struct
import tempfile
import termios
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from types import ModuleType
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import gunicorn
from gunicorn import util
from gunicorn.http.unreader import Unreader
from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

# The gunicorn releases this module was written and tested for: run.py refuses to start on any other.
GUNICORN_VERSIONS = ("27.0.1",)
# What of gunicorn the worker overrides or calls, with the parameters it was written for (self aside).
GUNICORN_HOOKS: tuple[tuple[type | ModuleType, str, tuple[str, ...]], ...] = (
    (ThreadWorker, "__init__", ("args", "kwargs")),
    (ThreadWorker, "init_process", ()),
    (ThreadWorker, "accept", ("listener",)),
    (ThreadWorker, "on_client_socket_readable", ("conn", "client")),
    (ThreadWorker, "enqueue_req", ("conn",)),
    (ThreadWorker, "finish_request", ("conn", "fs")),
    (ThreadWorker, "murder_pending", ()),
    (ThreadWorker, "handle", ("conn",)),
    (ThreadWorker, "handle_request", ("req", "conn")),
    (ThreadWorker, "_keepalive_after", ("conn", "keepalive")),
    (TConn, "__init__", ("cfg", "sock", "client", "server")),
    (TConn, "init", ()),
    (TConn, "close", ("graceful",)),
    (Unreader, "take_buffered", ()),
    (Unreader, "unread", ("data",)),
    (util, "write_error", ("sock", "status_int", "reason", "mesg")),  # a function: no self
)

BODY_PREFIX = 64 * 1024  # body bytes read by the loop before a thread takes a request; also the in-thread window
# A request line and headers longer than this are answered 431 by the loop. The loop holds what a connection sent
# until its headers end, for up to HEADER_TIMEOUT_SECONDS, and a process takes 1000 connections (gunicorn's
# worker_connections): at 1 MiB each, clients that sent big headers and stalled held a gigabyte.
HEAD_LIMIT = 64 * 1024
RECV = 64 * 1024
WRITE_WINDOW = 64 * 1024  # each this many bytes of an answer must be taken within write_timeout
SENDFILE_CHUNK = 1 << 20  # bytes of a file one os.sendfile call may send (the loop serves others between)
LINGER_SECONDS = 2.0  # as gunicorn's close_graceful: how long a closed answer waits for the client's FIN
LINGER_BYTES = 64 * 1024

log = logging.getLogger("app.api.serving")


def gunicorn_problems() -> list[str]:
    """How the installed gunicorn differs from the one this module was written for; empty if it does not."""
    problems = []
    if gunicorn.__version__ not in GUNICORN_VERSIONS:
        problems.append(
            f"gunicorn {gunicorn.__version__} is installed; app/api/serving.py was written for "
            f"{', '.join(GUNICORN_VERSIONS)}"
        )
    for owner, name, expected in GUNICORN_HOOKS:
        found = _parameters(getattr(owner, name, None), method=inspect.isclass(owner))
        if found != expected:
            where = f"{owner.__module__}.{owner.__qualname__}" if inspect.isclass(owner) else owner.__name__
            took = "is missing" if found is None else f"takes ({', '.join(found)})"
            problems.append(f"{where}.{name} {took}, where ({', '.join(expected)}) was expected")
    return problems


def _parameters(function, method: bool) -> tuple[str, ...] | None:
    if not callable(function):
        return None
    names = tuple(inspect.signature(function).parameters)
    return names[1:] if method else names


def _body_timeout() -> Exception:
    # Imported when needed: gunicorn's arbiter imports this module, and Flask and pymongo (app.api.errors) would
    # add some 13 MB to it for nothing.
    from app.api.errors import BodyTimeout

    return BodyTimeout()


def _json_error(status: int, reason: str, message: str) -> bytes:
    """An answer the server writes itself, in the app's error shape and with its security headers."""
    code = reason.lower().replace(" ", "_")
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
        b"Referrer-Policy: no-referrer\r\nCache-Control: no-store\r\n\r\n" + body
    )


def _response_408(message: str) -> bytes:
    return _json_error(408, "Request Timeout", message)


MESSAGE_CHARS = 200  # of gunicorn's own error text, which may quote the request


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answers to requests it cannot parse (a bad request line, headers too large, a bad chunk):
    JSON like every other error, instead of its HTML page."""
    util.write_nonblock(sock, _json_error(status_int, reason, mesg[:MESSAGE_CHARS] or reason))


def _body_wanted(head: bytes) -> tuple[int, bool, bool] | None:
    """(body bytes to wait for, chunked, expects 100-continue) from the header block; None if unreadable."""
    want, chunked, expect = 0, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            try:
                want = min(int(value), BODY_PREFIX)
            except ValueError:
                return None
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"expect" and value == b"100-continue":
            expect = True
    if chunked:
        want = BODY_PREFIX
    return want, chunked, expect


# The upload routes (app/__init__.py's UPLOAD_ENDPOINTS): the only ones whose body may pass BODY_PREFIX.
UPLOAD_PATHS = ("/api/v1/upload", "/upload")
# Wire bytes a chunked body to any other route must end within: its payload is at most BODY_LIMIT (64 KiB), and
# its chunks' framing gets as much again.
CHUNKED_WIRE_LIMIT = 2 * BODY_PREFIX


def _is_upload(head: bytes) -> bool:
    """The request line's target is an upload route (origin- or absolute-form, percent-decoded as werkzeug does)."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3:
        return True  # malformed: gunicorn's parser answers it
    return unquote(urlsplit(parts[1].decode("latin-1")).path) in UPLOAD_PATHS


def _response_413_chunked() -> bytes:
    """Any other body is at most BODY_LIMIT (64 KiB, app/__init__.py). A chunked one whose first BODY_PREFIX bytes
    did not end it was handed to a thread, which waited for the rest: sixteen such requests, with no key, in
    one-byte chunks, held every thread for BODY_TIMEOUT_SECONDS, again and again. The loop refuses it instead."""
    return _json_error(
        413,
        "Request Entity Too Large",
        f"A chunked request body to this route did not end within {CHUNKED_WIRE_LIMIT // 1024} KiB of chunks; only an "
        "upload's may be longer.",
    )


class BodyClock:
    """The socket a thread's parser reads from: each BODY_PREFIX bytes must arrive within `timeout` s."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock, self.timeout = sock, timeout
        self.expired = False
        self.restart()

    def restart(self) -> None:
        self.window_start, self.window_bytes = time.monotonic(), 0

    def recv(self, size: int) -> bytes:
        remaining = self.window_start + self.timeout - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise _body_timeout()
        prior = self.sock.gettimeout()  # gunicorn's keep-alive drain bounds reads with its own timeout
        self.sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            if prior is not None and prior < remaining:
                raise
            self.expired = True
            raise _body_timeout() from None
        finally:
            self.sock.settimeout(prior)
        self.window_bytes += len(data)
        if self.window_bytes >= BODY_PREFIX:
            self.restart()
        return data

    def __getattr__(self, name):
        return getattr(self.sock, name)


class WriteTimeout(BrokenPipeError):
    """The client did not take its answer fast enough: gunicorn treats the connection as gone (EPIPE)."""


class FileSpan:
    """`count` bytes of an open file from `offset`: sent from disk by os.sendfile, never read into memory.
    `owned`: the descriptor is this span's to close (a result file's duplicate), not the outbox's spill file."""

    def __init__(self, fd: int, offset: int, count: int, owned: bool = True):
        self.fd, self.offset, self.count, self.owned = fd, offset, count, owned

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class Budget:
    """The app's bytes waiting in memory in all of a process's outboxes, against WRITE_BUFFER_TOTAL_MB."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.used += n

    def take(self, n: int) -> bool:
        """Count `n` more bytes if they fit."""
        with self.lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True


class Outbox:
    """The socket a thread writes an answer to; what the client does not take at once waits here (see the module).

    Owned by the thread until the app is done, then by the loop: never by both at once.
    """

    def __init__(self, sock: socket.socket, budget: Budget, per_connection: int, timeout: float):
        self.sock, self.budget, self.per_connection, self.timeout = sock, budget, per_connection, timeout
        self.items: deque = deque()  # memoryview | FileSpan, in the order they go out
        self.held = 0  # bytes of memoryviews in `items` (files count nothing)
        self.spill: BinaryIO | None = None  # a temporary file for what is past the memory bounds, while any of it waits
        self.spilled = 0
        self.written = 0  # bytes handed to the kernel
        self.window_start = 0.0
        self.window_base = 0  # bytes the client had taken when the window started
        self.cut = False  # the client was too slow: close at once, send nothing more

    # --- what gunicorn's Response calls ------------------------------------------------------------

    def sendall(self, data) -> None:
        view = memoryview(data if isinstance(data, bytes) else bytes(data)).cast("B")
        if not view:
            return
        with self._nonblocking():
            if not self.items:
                try:  # most answers go out at once: nothing to keep
                    sent = self.sock.send(view)
                    view, self.written = view[sent:], self.written + sent
                except (BlockingIOError, InterruptedError):
                    pass
            if not view:
                return
            if self.held + len(view) <= self.per_connection and self.budget.take(len(view)):
                self._queue(view, len(view))
            else:
                self._spill(view)
            self._push()

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        fd = os.dup(file.fileno())  # the app closes its file when the response ends; the loop may still send
        if count is None:
            count = os.fstat(fd).st_size - offset
        if count > 0:
            self._queue(FileSpan(fd, offset, count), 0)
            with self._nonblocking():
                self._push()
        else:
            os.close(fd)
        return count

    def __getattr__(self, name):
        return getattr(self.sock, name)

    # --- sending ----------------------------------------------------------------------------------

    def taken(self) -> int:
        """Bytes the client's side has taken: written, less what the kernel still holds unacknowledged.

        Counted from the kernel's queue, not from our sends: the socket turns writable only once a good part
        of its buffer (often a megabyte or more) is free, so a client taking 64 KiB a second would look idle."""
        try:
            queued = struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            queued = 0
        return self.written - queued

    def _start_window(self) -> None:
        self.window_start, self.window_base = time.monotonic(), self.taken()

    def expired(self, now: float) -> bool:
        """Bytes are waiting and the client took less than WRITE_WINDOW of them within the deadline (the loop
        asks at least every second, so a window restarts within a second of being taken)."""
        if not self.items:
            return False
        if self.taken() - self.window_base >= WRITE_WINDOW:
            self._start_window()
            return False
        return now - self.window_start > self.timeout

    def drain(self) -> bool:
        """Send what the socket takes now, without waiting; True once nothing is left."""
        while self.items:
            item = self.items[0]
            try:
                if isinstance(item, FileSpan):
                    sent = os.sendfile(self.sock.fileno(), item.fd, item.offset, min(item.count, SENDFILE_CHUNK))
                    if sent == 0:  # the file is shorter than announced: the answer cannot be completed
                        raise OSError(errno.EIO, "result file shorter than its Content-Length")
                    item.offset += sent
                    item.count -= sent
                    done = item.count <= 0
                else:
                    sent = self.sock.send(item, socket.MSG_DONTWAIT)
                    self.items[0] = item = item[sent:]
                    self.held -= sent
                    self.budget.add(-sent)
                    done = not item
            except (BlockingIOError, InterruptedError):
                return False
            self.written += sent
            if done:
                self.items.popleft()
                if isinstance(item, FileSpan):
                    item.close()
        self._close_spill()
        return True

    def _close_spill(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def discard(self) -> None:
        """Forget what was not sent (the connection is being closed)."""
        for item in self.items:
            if isinstance(item, FileSpan):
                item.close()
        self.items.clear()
        self.budget.add(-self.held)
        self.held = 0
        self._close_spill()

    def _queue(self, item, held: int) -> None:
        """Add to what waits; `held` bytes of memory, already counted in the budget."""
        if not self.items:
            self._start_window()  # the clock runs while bytes wait
        self.items.append(item)
        self.held += held

    def _spill(self, view: memoryview) -> None:
        """Past WRITE_BUFFER_MB or WRITE_BUFFER_TOTAL_MB: to a temporary file, sent from disk like a result."""
        if self.spill is None:
            self.spill = tempfile.TemporaryFile(prefix="answer-", buffering=0)  # unlinked: gone when closed
            self.spilled = 0
        offset = self.spilled
        while view:
            n = self.spill.write(view)
            view, self.spilled = view[n:], self.spilled + n
        self._queue(FileSpan(self.spill.fileno(), offset, self.spilled - offset, owned=False), 0)

    def _push(self) -> None:
        """In the thread: send what the socket takes now; cut if the client let a window wait past the deadline
        (a stream's thread learns it at its next write)."""
        if not self.drain() and self.expired(time.monotonic()):
            self._cut()

    @contextmanager
    def _nonblocking(self):
        """The thread's socket blocks (its parser reads the body so); a send here must not, nor os.sendfile."""
        prior = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            yield
        finally:
            self.sock.settimeout(prior)

    def _cut(self) -> None:
        self.cut = True
        raise WriteTimeout(errno.EPIPE, f"the client took less than {WRITE_WINDOW // 1024} KiB in {self.timeout:g} s")


def _peer(conn: TConn) -> str:
    client = conn.client
    return f"{client[0]}:{client[1]}" if isinstance(client, tuple) and len(client) >= 2 else str(client)


class GuardedThreadWorker(ThreadWorker):
    """gthread, with headers (and a body's first BODY_PREFIX bytes) read in the event loop; see the module."""

    header_timeout = 10.0  # run.py sets these from the configuration before gunicorn forks
    body_timeout = 30.0
    write_timeout = 30.0
    write_buffer_bytes = 8 << 20
    write_buffer_total_bytes = 128 << 20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: set[TConn] = set()
        self.writing: dict[TConn, tuple[Outbox, object]] = {}  # the loop sends their rest; then their result
        self.lingering: set[TConn] = set()  # answered and half-closed: waiting for the client's FIN
        self.budget = Budget(self.write_buffer_total_bytes)

    def init_process(self):
        # gunicorn's handle_error writes its answers through util.write_error; this process is ours alone,
        # so swapping that one function (rather than copying handle_error's 90 lines) makes them JSON.
        util.write_error = write_json_error
        super().init_process()

    # --- the loop side ---------------------------------------------------------------------------

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        if self.cfg.is_ssl:
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return
        self._read_ahead(conn, b"")

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: read like a new one's."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if conn.is_http2 or self.cfg.is_ssl:
            self.enqueue_req(conn)
            return
        self._read_ahead(conn, b"")

    def finish_request(self, conn, fs):
        """A thread is done with a connection: send the rest of its answer, then as gthread would (see after)."""
        try:
            result = fs.result() if not fs.cancelled() else False
        except Exception:
            result = None  # the thread failed: close at once, as gthread does
        outbox, conn.outbox = getattr(conn, "outbox", None), None
        if outbox is not None and (outbox.cut or result is None):
            outbox.discard()
        if outbox is not None and outbox.items:
            self._send_rest(conn, outbox, result)
        elif outbox is not None and outbox.cut or result is None:
            self._close_now(conn, reset=outbox is not None and outbox.cut)
        else:
            self._after_answer(conn, result)

    def _after_answer(self, conn, result) -> None:
        """As gthread's finish_request, except that read-ahead left in the parser (a pipelined request) is read
        here too, and that a connection to close lingers in the loop instead of blocking it."""
        if not result:
            self._linger(conn)
            return
        if (
            result
            and result is not _DEFER
            and not conn.is_http2
            and not self.cfg.is_ssl
            and conn.parser is not None
            and conn.parser.unreader.buf.getvalue()
        ):
            self._read_ahead(conn, conn.parser.unreader.take_buffered())
            return
        done: Future[object] = Future()
        done.set_result(result)
        super().finish_request(conn, done)

    # --- the loop side: the rest of an answer, and closing ------------------------------------------

    def _send_rest(self, conn: TConn, outbox: Outbox, result) -> None:
        conn.sock.setblocking(False)
        self.writing[conn] = (outbox, result)
        self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
        self._on_writable(conn, conn.sock)

    def _on_writable(self, conn: TConn, _sock) -> None:
        outbox, result = self.writing[conn]
        try:
            done = outbox.drain()
        except OSError:  # the client left
            self._stop_writing(conn)
            self._close_now(conn)
            return
        if done:
            self._stop_writing(conn)
            self._after_answer(conn, result)

    def _stop_writing(self, conn: TConn) -> None:
        outbox, _ = self.writing.pop(conn)
        outbox.discard()
        self.poller.unregister(conn.sock)

    def _linger(self, conn: TConn) -> None:
        """gunicorn's close_graceful without its blocking read: half-close, read until the client closes (or
        LINGER_SECONDS, or LINGER_BYTES), then close, so that unread bytes do not turn into a reset."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_now(conn)
            return
        conn.sock.setblocking(False)
        conn.linger_until = time.monotonic() + LINGER_SECONDS
        conn.linger_read = 0
        self.lingering.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))

    def _on_linger_readable(self, conn: TConn, _sock) -> None:
        try:
            data = conn.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.linger_read += len(data)
        if not data or conn.linger_read >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: TConn) -> None:
        self.lingering.discard(conn)
        self._unregister(conn)
        self._close_now(conn)

    def _close_now(self, conn: TConn, reset: bool = False) -> None:
        """Close and forget a connection; `reset` frees the kernel's buffer of what the client never took."""
        self.nr_conns -= 1
        if reset:
            try:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        conn.close()

    def _unregister(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _read_ahead(self, conn: TConn, already: bytes) -> None:
        conn.sock.setblocking(False)
        conn.ahead = bytearray(already)
        conn.ahead_head_end = -1
        conn.ahead_want = 0
        conn.ahead_chunked = False
        conn.ahead_deadline = time.monotonic() + self.header_timeout
        self.reading.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_ahead_readable, conn))
        if already:
            self._advance(conn)

    def _on_ahead_readable(self, conn: TConn, _sock) -> None:
        try:
            data = conn.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client stopped sending (closed, or shut its side)
            if conn.ahead_head_end >= 0:
                self._hand_over(conn)  # a request with part of its body: the app refuses it, logs it, keeps nothing
            else:
                self._drop(conn)
            return
        conn.ahead += data
        self._advance(conn)

    def _advance(self, conn: TConn) -> None:
        buf = conn.ahead
        if conn.ahead_head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_LIMIT:
                    self._drop(
                        conn,
                        _json_error(
                            431,
                            "Request Header Fields Too Large",
                            f"The request line and headers are longer than {HEAD_LIMIT // 1024} KiB.",
                        ),
                    )
                return
            conn.ahead_head_end = end + 4
            wanted = _body_wanted(bytes(buf[:end]))
            if wanted is None:
                self._hand_over(conn)  # gunicorn's parser answers the malformed request
                return
            conn.ahead_want, conn.ahead_chunked, expect = wanted
            conn.ahead_deadline = time.monotonic() + self.body_timeout
            if expect and conn.ahead_want and len(buf) == conn.ahead_head_end:
                try:  # gunicorn sends another when the thread starts: a client reads any number of 1xx
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    pass
        body = len(buf) - conn.ahead_head_end
        if conn.ahead_chunked and buf.endswith(b"0\r\n\r\n"):
            self._hand_over(conn)
        elif body >= conn.ahead_want and conn.ahead_chunked and not _is_upload(bytes(buf[: conn.ahead_head_end])):
            if body > CHUNKED_WIRE_LIMIT:  # not an upload: handed over only whole, so no thread waits for its rest
                self._drop(conn, _response_413_chunked())
        elif body >= conn.ahead_want:
            self._hand_over(conn)

    def _hand_over(self, conn: TConn) -> None:
        self._unwatch(conn)
        conn.prebuf, conn.ahead = bytes(conn.ahead), None
        conn.data_ready = True
        self.enqueue_req(conn)

    def _unwatch(self, conn: TConn) -> None:
        self.reading.discard(conn)
        self._unregister(conn)

    def _drop(self, conn: TConn, answer: bytes | None = None) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        if answer:
            try:
                while conn.sock.recv(RECV):  # what the client sent so far: unread bytes would turn close into a reset
                    pass
            except OSError:
                pass
            try:
                conn.sock.send(answer)  # small: fits the socket's send buffer
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, (outbox, _) in self.writing.items() if outbox.expired(now)]:
            log.info(
                "cut %s: it took less than %d KiB of its answer in %g s",
                _peer(conn),
                WRITE_WINDOW // 1024,
                self.write_timeout,
            )
            self._stop_writing(conn)
            self._close_now(conn, reset=True)
        for conn in [c for c in self.lingering if c.linger_until <= now]:
            self._end_linger(conn)
        for conn in [c for c in self.reading if not self.alive or c.ahead_deadline <= now]:
            if not self.alive or not conn.ahead:
                self._drop(conn)  # stopping, or nothing sent: no request to answer
            elif conn.ahead_head_end < 0:
                self._drop(
                    conn, _response_408(f"The request's headers did not arrive within {self.header_timeout:g} s.")
                )
            else:
                self._drop(
                    conn,
                    _response_408(
                        f"The request body did not arrive fast enough (each {BODY_PREFIX // 1024} KiB "
                        f"within {self.body_timeout:g} s)."
                    ),
                )

    # --- the thread side -------------------------------------------------------------------------

    def handle_request(self, req, conn):
        """gthread's, writing through an Outbox (the loop sends what the client has not taken yet)."""
        if self.cfg.is_ssl or conn.is_http2:
            return super().handle_request(req, conn)
        sock = conn.sock
        conn.outbox = Outbox(sock, self.budget, self.write_buffer_bytes, self.write_timeout)
        conn.sock = conn.outbox
        try:
            return super().handle_request(req, conn)
        except WriteTimeout:
            log.info(
                "cut %s: it took less than %d KiB of its answer in %g s",
                _peer(conn),
                WRITE_WINDOW // 1024,
                self.write_timeout,
            )
            raise
        finally:
            conn.sock = sock

    def handle(self, conn):
        prebuf = getattr(conn, "prebuf", None)
        if prebuf is not None:
            conn.prebuf = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(prebuf)
            clock = conn.parser.unreader.sock
            if not isinstance(clock, BodyClock):
                clock = conn.parser.unreader.sock = BodyClock(clock, self.body_timeout)
            clock.expired = False
            clock.restart()
        return super().handle(conn)

    def _keepalive_after(self, conn, keepalive):
        clock = getattr(conn.parser, "unreader", None)
        clock = getattr(clock, "sock", None)
        if isinstance(clock, BodyClock) and clock.expired:
            return False  # cut for a slow body: the rest of it is not waited for
        from app.api.errors import BodyTimeout

        try:
            return super()._keepalive_after(conn, keepalive)
        except BodyTimeout:
            return False
