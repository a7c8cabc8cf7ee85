"""Helpers the tests share: the real service (service.py), FerretDB (ferretdb.py), the reference cleaning
(reference.py); and the two facts every one of them needs (the benchmarks in bench/ use them too)."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this process was given before: two asked for in a row (ZMQ_PORT,
    ZMQ_INTAKE_PORT) would otherwise now and then be the same one, which the settings refuse."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
