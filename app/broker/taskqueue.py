"""The task queue over ZeroMQ: the broker, the API's producer and the worker's consumer, and the message format.

    API processes ──PUSH──► [ broker: PULL :ZMQ_INTAKE_PORT → PUSH :ZMQ_PORT ] ──► PULL── workers

The broker is the only socket that binds, so any number of API processes and workers, on any hosts,
connect to one stable address. A message only wakes a worker: the task record in MongoDB is the truth,
and a worker that never gets the message still finds the task when it sweeps for pending work.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import zmq

from app.config import Config

log = logging.getLogger(__name__)


def encode(task_id: str, kind: str) -> bytes:
    return json.dumps({"task_id": task_id, "kind": kind}).encode()


def decode(message: bytes) -> dict | None:
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("task_id"), str):
        return None
    return data


class Broker:
    """Forwards messages from the intake (API side) to the queue (worker side), in a thread of its own.

    Not `zmq.proxy`: with no worker connected (all busy: a worker leaves the queue while it runs a task)
    and a message waiting, it polls the readable intake in a loop and burns a core. Here a message is
    taken from the intake only when the one before it has gone out, and an undeliverable message waits
    in a poll for a worker to connect.
    """

    def __init__(self, config: Config):
        self.config = config
        self.context = zmq.Context()
        self._thread: threading.Thread | None = None
        self._control = f"inproc://broker-control-{id(self)}"

    def start(self) -> Broker:
        intake = self.context.socket(zmq.PULL)
        intake.bind(self.config.intake_endpoint)  # ZMQ_HOST=0.0.0.0 listens on every interface
        queue = self.context.socket(zmq.PUSH)
        queue.bind(self.config.queue_endpoint)
        control = self.context.socket(zmq.PAIR)
        control.bind(self._control)

        def run():
            try:
                forward(intake, queue, control)
            except zmq.ContextTerminated:
                pass
            finally:
                for sock in (intake, queue, control):
                    sock.close(linger=0)

        self._thread = threading.Thread(target=run, name="zmq-broker", daemon=True)
        self._thread.start()
        log.info("broker: intake %s → queue %s", self.config.intake_endpoint, self.config.queue_endpoint)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        stopper = self.context.socket(zmq.PAIR)
        stopper.connect(self._control)
        stopper.send(b"TERMINATE")
        self._thread.join(timeout=5)
        stopper.close(linger=0)
        self.context.term()
        self._thread = None


def forward(intake: zmq.Socket, queue: zmq.Socket, control: zmq.Socket) -> None:
    """Move messages from `intake` to `queue` until `control` says stop; idle while nothing can move."""
    take, give = zmq.Poller(), zmq.Poller()
    for poller, socket, event in ((take, intake, zmq.POLLIN), (give, queue, zmq.POLLOUT)):
        poller.register(socket, event)
        poller.register(control, zmq.POLLIN)
    held = None  # a message taken from the intake, not yet handed to a worker
    while True:
        ready = dict((give if held else take).poll())
        if control in ready:
            return
        if held is None:
            try:
                held = intake.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
        try:
            queue.send_multipart(held, zmq.NOBLOCK)
            held = None
        except zmq.Again:  # no worker can take it yet: wait (in poll) until one can
            pass


class Producer:
    """The API side. One socket per process, guarded by a lock: ZeroMQ sockets are not thread-safe."""

    def __init__(self, config: Config):
        self.endpoint = config.intake_endpoint
        self._lock = threading.Lock()
        self._socket: zmq.Socket | None = None
        self._pid: int | None = None  # the process that opened it

    def send(self, task_id: str, kind: str) -> bool:
        """Wake a worker; never blocks. False when the message could not be queued (the sweep covers it)."""
        with self._lock:
            try:
                self._ensure_socket().send(encode(task_id, kind), zmq.NOBLOCK)
                return True
            except zmq.ZMQError as e:
                log.warning("task %s: queue message not sent (%s); a worker sweep will pick it up", task_id, e)
                return False

    def _ensure_socket(self) -> zmq.Socket:
        if self._socket is None or self._pid != os.getpid():  # a forked child needs its own socket
            self._socket = zmq.Context.instance().socket(zmq.PUSH)
            self._socket.setsockopt(zmq.LINGER, 2000)
            self._socket.connect(self.endpoint)
            self._pid = os.getpid()
        return self._socket

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class Consumer:
    """The worker side: receive wake-up messages, waiting at most `timeout` seconds.

    A worker pauses (leaves the queue) while it runs a task: PUSH only deals to connected peers, and over TCP
    a peer that is connected but not reading would soak up messages in socket buffers whatever the
    high-water marks say. Paused, its share goes to the idle workers instead.
    """

    def __init__(self, config: Config, context: zmq.Context | None = None):
        self.context = context or zmq.Context.instance()
        self.endpoint = config.queue_endpoint
        self.socket: zmq.Socket | None = None  # None while paused
        self.resume()

    def receive(self, timeout: float) -> dict | None:
        if self.socket is None:  # a paused worker asks for no message: a bug in its loop, not a queue's state
            raise RuntimeError("Consumer.receive() while paused")
        if not self.socket.poll(int(timeout * 1000)):
            return None
        message = decode(self.socket.recv())
        if message is None:
            log.warning("ignored a malformed queue message")
        return message

    def pause(self) -> None:
        """Leave the queue. Closing the socket (not just disconnecting) is what makes the broker let go."""
        self.close()

    def resume(self) -> None:
        if self.socket is None:
            self.socket = socket = self.context.socket(zmq.PULL)
            # A worker should not hoard messages meant for its idle peers.
            socket.setsockopt(zmq.RCVHWM, 1)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(self.endpoint)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
