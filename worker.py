"""`python worker.py`: run one ingest worker (needs MONGO_URI: workers and API share one database)."""

from __future__ import annotations

import signal
import sys

from app import logs
from app.worker.loop import Worker


def main() -> int:
    config = logs.start_command()
    if config.embedded_mongo:
        print(
            "worker.py needs MONGO_URI: with the embedded in-memory database a separate worker process "
            "would see none of the API's tasks. `make run` (python run.py) runs a worker inside the API "
            "process in that mode.",
            file=sys.stderr,
        )
        return 2
    worker = Worker(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
