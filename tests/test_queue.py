"""ZeroMQ over real TCP sockets between real processes: producer → broker → consumer."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from app.broker.taskqueue import Broker, Consumer, Producer, decode, encode
from tests.conftest import REPO

CONSUMER = """
import json, sys
from app.config import load_config
from app.broker.taskqueue import Consumer
c = Consumer(load_config({"ZMQ_PORT": sys.argv[1], "ZMQ_INTAKE_PORT": sys.argv[2]}))
print("ready", flush=True)
got = []
while True:  # until the queue has been quiet for a while
    m = c.receive(timeout=2 if got else 10)
    if m is None:
        break
    got.append(m)
print(json.dumps(got), flush=True)
"""


def start_consumer(config):
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(config.ZMQ_PORT), str(config.ZMQ_INTAKE_PORT)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_message_format_round_trips():
    assert decode(encode("abc", "movies")) == {"task_id": "abc", "kind": "movies"}
    assert decode(b"not json") is None and decode(b'{"kind": "movies"}') is None


@pytest.mark.server
def test_messages_cross_processes_through_the_broker(config):
    broker = Broker(config).start()
    try:
        consumers = [start_consumer(config), start_consumer(config)]
        time.sleep(0.3)  # let both connect, so the broker spreads the work
        producer = Producer(config)
        sent = [f"task-{i}" for i in range(6)]
        for task_id in sent:
            assert producer.send(task_id, "movies") is True
        received = []
        for proc in consumers:
            out, _ = proc.communicate(timeout=20)
            received.append([m["task_id"] for m in json.loads(out.strip().splitlines()[-1])])
        producer.close()
    finally:
        broker.stop()
    # Every message reaches exactly one worker, and both workers get a share.
    assert sorted(received[0] + received[1]) == sorted(sent)
    assert received[0] and received[1]


@pytest.mark.server
def test_broker_idles_while_no_worker_can_take_a_message_then_delivers_it(config):
    """Every worker busy (none connected) and a message waiting: the broker waits, it does not spin."""
    broker = Broker(config).start()
    producer = Producer(config)
    try:
        for i in range(3):
            assert producer.send(f"waiting-{i}", "movies") is True
        time.sleep(0.3)  # the messages reach the broker, which holds the first
        cpu = time.process_time()  # this process's CPU, the broker's thread included
        time.sleep(1.0)
        assert time.process_time() - cpu < 0.2  # zmq.proxy burnt a whole core here
        consumer = Consumer(config)  # a worker comes back: it gets them all, in order
        got = [consumer.receive(timeout=2.0) for _ in range(3)]
        consumer.close()
    finally:
        producer.close()
        broker.stop()
    assert [m["task_id"] for m in got] == ["waiting-0", "waiting-1", "waiting-2"]


def test_producer_never_blocks_without_a_broker(config):
    producer = Producer(config)
    start = time.monotonic()
    for i in range(10):
        producer.send(f"t{i}", "movies")  # queued locally or dropped; the worker sweep covers it
    assert time.monotonic() - start < 1.0
    producer.close()


def test_consumer_times_out_when_idle(config):
    broker = Broker(config).start()
    try:
        consumer = Consumer(config)
        start = time.monotonic()
        assert consumer.receive(timeout=0.2) is None
        assert time.monotonic() - start >= 0.19
        consumer.close()
    finally:
        broker.stop()


@pytest.mark.server
def test_paused_worker_gets_no_messages_the_idle_one_gets_all(config):
    """A busy worker pauses; everything sent meanwhile goes to the idle one, none waits behind the busy one."""
    broker = Broker(config).start()
    busy, idle = Consumer(config), Consumer(config)
    try:
        time.sleep(0.3)
        busy.pause()
        time.sleep(0.1)
        producer = Producer(config)
        for i in range(20):
            producer.send(f"t{i}", "movies")
        got = []
        while (message := idle.receive(timeout=1.0)) is not None:
            got.append(message["task_id"])
        busy.resume()
        time.sleep(0.2)
        assert busy.receive(timeout=0.2) is None
        producer.send("after", "movies")
        producer.send("after2", "movies")
        late = [m["task_id"] for c in (busy, idle) for m in iter(lambda c=c: c.receive(timeout=0.5), None)]
        producer.close()
    finally:
        busy.close()
        idle.close()
        broker.stop()
    assert got == [f"t{i}" for i in range(20)]
    assert sorted(late) == ["after", "after2"]  # a resumed worker is dealt messages again


@pytest.mark.server
def test_standalone_broker_relays_and_stops_cleanly_on_sigterm(config):
    import os
    import signal

    env = {**os.environ, "ZMQ_PORT": str(config.ZMQ_PORT), "ZMQ_INTAKE_PORT": str(config.ZMQ_INTAKE_PORT)}
    broker = subprocess.Popen(
        [sys.executable, "-m", "app.broker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    consumer = Consumer(config)
    producer = Producer(config)
    try:
        received = None
        for _ in range(50):  # the broker may still be starting: ZeroMQ reconnects by itself
            producer.send("t-standalone", "movies")
            received = consumer.receive(timeout=0.2)
            if received:
                break
        assert received == {"task_id": "t-standalone", "kind": "movies"}
    finally:
        producer.close()
        consumer.close()
        broker.send_signal(signal.SIGTERM)
        output, _ = broker.communicate(timeout=10)
    assert broker.returncode == 0, output
    assert "broker stopped" in output


@pytest.mark.server
def test_worker_command_refuses_an_embedded_file_that_is_not_the_services(tmp_path):
    import os

    (tmp_path / "service.sqlite3").write_bytes(b"a spreadsheet, not a database" * 100)
    env = {**os.environ, "MONGO_URI": "", "DATA_FOLDER": str(tmp_path)}  # set: a developer's .env cannot fill them
    result = subprocess.run(
        [sys.executable, "worker.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "worker cannot start" in line]
    assert len(lines) == 1 and str(tmp_path / "service.sqlite3") in lines[0], result.stderr
    assert (tmp_path / "service.sqlite3").read_bytes() == b"a spreadsheet, not a database" * 100


@pytest.mark.server
def test_run_py_stops_when_its_broker_cannot_start(ferretdb):
    """A taken ZMQ_PORT would leave the API up with every wake-up lost; it must refuse to start instead."""
    import os
    import socket

    from tests.conftest import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "MONGO_URI": ferretdb.uri,
            "ZMQ_PORT": str(port),
            "ZMQ_INTAKE_PORT": str(free_port()),
            "PORT": str(free_port()),
        }
        result = subprocess.run(
            [sys.executable, "run.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    # Refused by the start-up check (app.config.check_listen), as every bad setting is: one line, exit 2.
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"configuration error: ZMQ_PORT {port} on 127.0.0.1 cannot be listened on: already in use"
    ]
