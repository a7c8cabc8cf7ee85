"""Removing files the service is done with."""

from __future__ import annotations

import os


def remove(path: str | None) -> None:
    """Remove `path` if it exists; a file already gone is what we wanted anyway."""
    if path:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
