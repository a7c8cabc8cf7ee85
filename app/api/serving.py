"""gunicorn's threaded worker, with request headers read by its event loop instead of a thread.

gunicorn's gthread worker hands every new connection to a thread as soon as its first byte arrives, and the
thread then blocks until the request's headers are complete: sixteen clients sending one byte a second
held all sixteen threads, and ping, reads and the page stopped answering. This worker keeps the rest of
gthread (threads, streaming bodies, keep-alive, graceful SIGTERM) and changes who waits for a slow client:

- The main thread's selector reads a new (or kept-alive) connection's bytes without blocking until its
  headers are complete, and then the first BODY_PREFIX bytes of its body (all of it, if smaller; an
  `Expect: 100-continue` is answered first, so such clients send it). Only then is a thread given the
  connection, with those bytes already in its parser's buffer. Waiting connections cost a buffer, no
  thread (gunicorn's worker_connections, 1000, caps them per process).
- Headers not complete within HEADER_TIMEOUT_SECONDS, or the body's first BODY_PREFIX bytes not within
  BODY_TIMEOUT_SECONDS after them, and the loop answers 408 (JSON, `Connection: close`) and closes. A
  connection that sent nothing at all is closed without an answer.
- In the thread, every further BODY_PREFIX bytes of the body must arrive within BODY_TIMEOUT_SECONDS too
  (a floor of 64 KiB per 30 s by default): a read that waits longer raises `BodyTimeout`, a 408 the app
  answers (an upload then removes its partial file and records no task), and the connection closes.

TLS connections (gunicorn's certfile) are handed over as gthread does: their bytes cannot be read here.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

BODY_PREFIX = 64 * 1024  # body bytes read by the loop before a thread takes a request; also the in-thread window
HEAD_LIMIT = 1 << 20  # headers longer than this are handed over as they are: gunicorn's parser refuses them
RECV = 64 * 1024


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


class GuardedThreadWorker(ThreadWorker):
    """gthread, with headers (and a body's first BODY_PREFIX bytes) read in the event loop; see the module."""

    header_timeout = 10.0  # run.py sets both from the configuration before gunicorn forks
    body_timeout = 30.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: set[TConn] = set()

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
        """As gthread's, except that read-ahead left in the parser (a pipelined request) is read here too."""
        try:
            result = fs.result() if not fs.cancelled() else False
        except Exception:
            result = False
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
        super().finish_request(conn, fs)

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
                    self._hand_over(conn)
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
        if body >= conn.ahead_want or (conn.ahead_chunked and buf.endswith(b"0\r\n\r\n")):
            self._hand_over(conn)

    def _hand_over(self, conn: TConn) -> None:
        self._unwatch(conn)
        conn.prebuf, conn.ahead = bytes(conn.ahead), None
        conn.data_ready = True
        self.enqueue_req(conn)

    def _unwatch(self, conn: TConn) -> None:
        self.reading.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

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
