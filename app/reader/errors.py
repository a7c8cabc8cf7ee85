"""What went wrong reading a CSV, in words the uploader can act on: for a job kind to fail its task with.

The one place that knows PyArrow's errors by their text.
"""

from __future__ import annotations

import pyarrow as pa

# What reading an upload may raise that would come back on every attempt.
ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, UnicodeDecodeError, pa.ArrowException)


def straddles(error: pa.ArrowInvalid) -> bool:
    """PyArrow's error for a row that does not fit in a read block."""
    return "straddl" in str(error)


def explain(error: BaseException) -> str:
    """A message a person can act on, for one of ERRORS."""
    if isinstance(error, FileNotFoundError):
        return "the uploaded file is missing on the worker's disk; upload it again"
    if isinstance(error, UnicodeDecodeError):
        return "the file is not valid UTF-8 text; save it as UTF-8 and upload it again"
    if isinstance(error, pa.ArrowInvalid) and straddles(error):
        return f"a row is larger than the worker's read block (BLOCK_SIZE); split the row or raise BLOCK_SIZE: {error}"
    if isinstance(error, pa.ArrowInvalid):
        return f"the file could not be read as CSV: {error}"
    return f"{type(error).__name__}: {error}"
