"""Helpers the tests share: the real service (service.py), FerretDB (ferretdb.py), the reference cleaning
(reference.py); and the two facts every one of them needs (the benchmarks in bench/ use them too)."""
from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
