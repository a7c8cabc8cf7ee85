"""Helpers the tests share: the real service (service.py), FerretDB (ferretdb.py), the reference cleaning
(reference.py); and the two facts every one of them needs (the benchmarks in bench/ use them too)."""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


_handed_out: set[int] = set()

# Under pytest-xdist (make test, make check) each worker takes its ports from a block of its own, below the
# kernel's ephemeral range (32768 and up): with bind(0) a port one worker was given, and has not yet listened on,
# could be handed to another worker's server in between.
_WORKER = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
_BLOCK = 1000
_FIRST = 20_000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _candidates():
    """Ports to try: the worker's own block, from a random start (so a rerun does not retry the same ones),
    or whatever bind(0) gives outside xdist."""
    if _WORKER is None:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                yield s.getsockname()[1]
    start = _FIRST + (int(_WORKER.group(1)) % 12) * _BLOCK
    offset = random.randrange(_BLOCK)
    for i in range(_BLOCK):
        port = start + (offset + i) % _BLOCK
        if _bindable(port):
            yield port
    raise RuntimeError(f"no free port left in {start}-{start + _BLOCK - 1}")


def free_port() -> int:
    """A port nothing listens on, never one this process was given before: two asked for in a row (ZMQ_PORT,
    ZMQ_INTAKE_PORT) would otherwise now and then be the same one, which the settings refuse."""
    for port in _candidates():
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise AssertionError("unreachable")
