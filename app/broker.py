"""`python -m app.broker`: the ZeroMQ broker on its own (run.py starts one for you)."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from app import logs
from app.queue import Broker

log = logging.getLogger("app.broker")


def main() -> int:
    config = logs.start_command()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    broker = Broker(config).start()
    done.wait()
    broker.stop()
    log.info("broker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
