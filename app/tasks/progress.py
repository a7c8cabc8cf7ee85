"""A running job's counters, in the shape a task record shows them, and the checkpoint a retake resumes from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_rejected")


@dataclass
class Progress:
    bytes_total: int
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    rejects: list[dict] = field(default_factory=list)
    line: int = 2  # where the rows not yet committed start (line 1 is the header)
    started: float = field(default_factory=time.monotonic)
    rows_at_start: int = 0  # rows done by an earlier attempt: not part of this attempt's rate

    @classmethod
    def resume(cls, bytes_total: int, checkpoint: dict | None) -> Progress:
        """Counters as they stood at `checkpoint` (see `checkpoint()`), or fresh ones."""
        if not checkpoint:
            return cls(bytes_total)
        progress = cls(
            bytes_total,
            **{name: checkpoint[name] for name in COUNTERS},
            bytes_read=checkpoint["bytes_read"],
            warnings=dict(checkpoint["warnings"]),
            rejects=list(checkpoint["rejects"]),
            line=checkpoint["line"],
        )
        progress.rows_at_start = progress.rows_read
        return progress

    def checkpoint(self) -> dict:
        """Everything needed to go on from `line` as if no attempt had stopped there."""
        return {
            "line": self.line,
            **{name: getattr(self, name) for name in COUNTERS},
            "bytes_read": self.bytes_read,
            "warnings": dict(self.warnings),
            "rejects": list(self.rejects),
        }

    def fields(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        percent = 100.0 if self.bytes_total == 0 else min(100.0, 100.0 * self.bytes_read / self.bytes_total)
        return {
            "rows_read": self.rows_read,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "rows_rejected": self.rows_rejected,
            "bytes_read": self.bytes_read,
            "bytes_total": self.bytes_total,
            "percent": round(percent, 2),
            "rows_per_sec": round((self.rows_read - self.rows_at_start) / elapsed, 1),
            "warnings": dict(self.warnings),
            "rejects": list(self.rejects),
        }

    def reject(self, rejects, keep: int) -> None:
        self.rows_rejected += len(rejects)
        room = keep - len(self.rejects)
        if room > 0:
            self.rejects.extend(r.as_dict() for r in rejects[:room])
