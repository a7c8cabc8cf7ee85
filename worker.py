"""`python worker.py`: one ingest worker, on the API's store (MONGO_URI, or the SQLite file in DATA_FOLDER)."""

from __future__ import annotations

import logging
import signal
import sys

from app import logs
from app.worker.loop import Worker

log = logging.getLogger("app.worker")


def main() -> int:
    config = logs.start_command()
    try:
        worker = Worker(config)
        worker.store.setup()
    except Exception as e:  # a foreign file at DATA_FOLDER, a server refusing: one line, then out
        log.error("worker cannot start: %s", e)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
