"""The helper process, `python -m app.jobs.helper`: what `ahead` (app/jobs/helper/__init__.py) starts.

A module of its own rather than a `__main__` block in __init__.py: `-m` imports the package first, and
that module would then run a second time as `__main__`.
"""

from __future__ import annotations

import os
import signal
import sys

from app.jobs.helper import serve

if __name__ == "__main__":
    # Also for a service manager that signals every process it started: the consumer decides when to
    # stop, so that it can finish its batch and hand the task back first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the stream of pickles
    try:
        serve(sys.stdin.buffer, sink)
    except BrokenPipeError:  # the consumer stopped early, or is gone
        os._exit(0)
