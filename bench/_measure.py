"""Helpers the file benchmarks share: run one measurement in a fresh interpreter, and read its memory.

Each measurement runs in a Python process of its own, so its peak RSS is that run's alone and it pays
only for the imports it needs. The child prints one JSON line; the parent reads it back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path


def rss_mb(field: str, pid: int | str = "self") -> float:
    """VmHWM (peak) or VmRSS (now) of a process, MiB.

    Not getrusage's ru_maxrss: on Linux a child starts with its parent's peak at fork (it survives the
    exec), so the parent's RSS would hide the child's.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class ChildPeaks:
    """Samples the peak RSS (VmHWM) of this process's children while it runs: helper processes."""

    def __init__(self, every: float = 0.05):
        self.every, self.peaks = every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def largest_mb(self) -> float:
        return max(self.peaks.values(), default=0.0)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.every):
            for child in me.children(recursive=True):
                try:
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss_mb("VmHWM", child.pid))
                except (OSError, RuntimeError):
                    pass  # it just exited


def run_child(script: str, *args: str) -> dict:
    """`python <script> <args>` in a fresh interpreter; the dict its last output line holds."""
    out = subprocess.run(
        [sys.executable, str(Path(script).resolve()), *args], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def warm(path: Path) -> None:
    """Read the file once so every run finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass
