"""ZeroMQ over real TCP sockets between real processes: producer → broker → consumer."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from app.queue import Broker, Consumer, Producer, decode, encode
from tests.conftest import REPO

CONSUMER = """
import json, sys
from app.config import load_config
from app.queue import Consumer
c = Consumer(load_config({"ZMQ_PORT": sys.argv[1], "ZMQ_INTAKE_PORT": sys.argv[2]}))
print("ready", flush=True)
got = []
while len(got) < int(sys.argv[3]):
    m = c.receive(timeout=10)
    if m is None:
        break
    got.append(m)
print(json.dumps(got), flush=True)
"""


def start_consumer(config, count):
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(config.ZMQ_PORT), str(config.ZMQ_INTAKE_PORT), str(count)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_message_format_round_trips():
    assert decode(encode("abc", "movies")) == {"task_id": "abc", "kind": "movies"}
    assert decode(b"not json") is None and decode(b'{"kind": "movies"}') is None


def test_messages_cross_processes_through_the_broker(config):
    broker = Broker(config).start()
    try:
        consumers = [start_consumer(config, 3), start_consumer(config, 3)]
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
