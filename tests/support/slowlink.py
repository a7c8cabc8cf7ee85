"""A slow link between MongoDB clients and their server: a TCP proxy on loopback that holds the replies to
chosen commands (by default, writes to `movies`) for `delay` seconds, and passes everything else at once.

It reads the wire protocol's message headers (length, requestID, responseTo, opCode) in both directions and,
for OP_MSG requests, the command's first field (`{"insert": "movies", ...}`): the reply whose responseTo
names a chosen request is held. Each connection has a thread per direction, so a held reply holds only its
own connection, as a slow network path would; the driver's other pooled connections (a lease renewal, a
heartbeat) go on. `delay` may be changed while clients are connected.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

OP_MSG = 2013
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
WRITES = ("insert", "update", "delete")


def command_of(message: bytes) -> tuple[str, str]:
    """(command name, its string argument, e.g. the collection) of an OP_MSG request; ("", "") otherwise."""
    _, _, _, op = HEADER.unpack_from(message)
    if op != OP_MSG:
        return "", ""
    at = HEADER.size + 4  # flagBits
    while at < len(message):
        kind = message[at]
        at += 1
        (size,) = struct.unpack_from("<i", message, at)
        if kind == 0:  # the command document: its first element names the command
            element = at + 4
            kind_of_value = message[element]
            end = message.index(b"\0", element + 1)
            name = message[element + 1 : end].decode()
            if kind_of_value != 0x02:  # not a string
                return name, ""
            (length,) = struct.unpack_from("<i", message, end + 1)
            return name, message[end + 5 : end + 4 + length].decode()
        at += size  # a document sequence (kind 1): its size covers itself
    return "", ""


def movies_writes(name: str, argument: str) -> bool:
    return name in WRITES and argument == "movies"


class SlowLink:
    def __init__(self, upstream_port: int, delay: float, slow: Callable[[str, str], bool] = movies_writes):
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay, self.slow = delay, slow
        self.held = 0  # replies held so far
        self._next_delay: float | None = None  # for the next held reply only (hold_next)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> SlowLink:
        threading.Thread(target=self._accept, daemon=True, name="slowlink-accept").start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def hold_next(self, seconds: float) -> None:
        """Hold the next chosen reply `seconds` instead of `delay` (a server that stops answering one write)."""
        with self._lock:
            self._next_delay = seconds

    def _delay(self) -> float:
        with self._lock:
            delay, self._next_delay = (self.delay, None) if self._next_delay is None else (self._next_delay, None)
            self.held += 1
            return delay

    def close(self) -> None:
        self._closed = True
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            pending: set[int] = set()  # requestIDs whose replies are held
            threading.Thread(target=self._requests, args=(client, server, pending), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, pending), daemon=True).start()

    def _requests(self, source: socket.socket, target: socket.socket, pending: set[int]) -> None:
        for message in _messages(source):
            if self.slow(*command_of(message)):
                pending.add(HEADER.unpack_from(message)[1])
            if not _send(target, message):
                break
        _end(source, target)

    def _replies(self, source: socket.socket, target: socket.socket, pending: set[int]) -> None:
        for message in _messages(source):
            answering = HEADER.unpack_from(message)[2]
            if answering in pending:
                pending.discard(answering)
                time.sleep(self._delay())
            if not _send(target, message):
                break
        _end(source, target)


def _messages(sock: socket.socket):
    """Whole wire-protocol messages, until the connection ends."""
    while True:
        header = _read(sock, HEADER.size)
        if header is None:
            return
        (length,) = struct.unpack_from("<i", header)
        body = _read(sock, length - HEADER.size)
        if body is None:
            return
        yield header + body


def _read(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _end(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
