"""`python -m app.broker`: the ZeroMQ broker on its own (run.py starts one for you)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from app import logs
from app.broker.taskqueue import Broker

log = logging.getLogger("app.broker")


def main() -> int:
    config = logs.start_command()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    broker = Broker(config).start()
    _tell_parent()
    done.wait()
    broker.stop()
    log.info("broker stopped")
    return 0


def _tell_parent() -> None:
    """`--ready-fd N` (run.py passes it): write to that pipe once both sockets are bound."""
    if "--ready-fd" in sys.argv:
        fd = int(sys.argv[sys.argv.index("--ready-fd") + 1])
        os.write(fd, b"ready")
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
