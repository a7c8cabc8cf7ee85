"""The HTTP API as Python calls, over httpx: every refusal becomes an `APIError` holding one readable line.

Uploads stream the file from disk in 64 KiB reads (httpx's multipart file field), so the client's memory
stays flat whatever the file's size; a callback is told how many bytes each read handed on.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

import httpx

FINISHED = ("completed", "failed", "cancelled")
MAX_MESSAGE = 500  # characters of a server's message shown: a line, not a page
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` as one bounded line: control characters (newlines, escapes that could drive the terminal) become
    spaces, and it is cut to `limit` characters."""
    text = _CONTROL.sub(" ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class APIError(Exception):
    """The API refused (its `{"error": {"code", "message"}}` shape), or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        where = f"{self.status} {self.code}" if self.status else self.code
        return one_line(f"{where}: {self.message}")

    @classmethod
    def of(cls, response: httpx.Response) -> APIError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):  # not the API's shape: a proxy's page, say
            return cls(response.status_code, "http_error", response.reason_phrase or "unexpected answer")


class StreamUnavailable(Exception):
    """The events stream is refused for now (429/503: too many streams): poll instead."""


class _CountedFile(io.FileIO):
    """A file opened for binary reading that reports each read's length: httpx reads the upload from it, 64 KiB
    at a time. Being the file itself (not a wrapper), it is the `IO[bytes]` httpx's `files=` asks for, and httpx
    sizes the body from its descriptor (a Content-Length, not a chunked body)."""

    def __init__(self, path: Path, seen: Callable[[int], None]):
        super().__init__(path, "rb")
        self.seen = seen

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)  # never None: that is a non-blocking descriptor's "nothing yet"
        self.seen(len(data))
        return data


class Client:
    """One server (`url`) and one credential (`key`, an API key or a token)."""

    def __init__(self, url: str, key: str | None, timeout: float = 30.0):
        headers = {"Accept": "application/json", "User-Agent": "moviecat"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise unreachable(self.url, e) from e
        if response.status_code >= 400:
            raise APIError.of(response)
        return response

    def get(self, path: str, params: dict | None = None) -> Any:
        return self._send("GET", path, params=params).json()

    def task(self, task_id: str) -> dict:
        return self.get(f"/api/v1/process/{quote(task_id, safe='')}")

    def tasks(self, **params: Any) -> dict:
        return self.get("/api/v1/processes", {k: v for k, v in params.items() if v is not None})

    def movies(self, **params: Any) -> dict:
        return self.get("/api/v1/movies", {k: v for k, v in params.items() if v is not None})

    def cancel(self, task_id: str) -> tuple[int, dict]:
        response = self._send("DELETE", f"/api/v1/process/{quote(task_id, safe='')}")
        return response.status_code, response.json()

    def upload(self, path: Path, kind: str | None, sent: Callable[[int], None]) -> dict:
        """POST the file as a multipart `file` part, streamed from disk; the API's 202 answer."""
        params = {"kind": kind} if kind else None
        with _CountedFile(path, sent) as f:
            files = {"file": (path.name, f, "text/csv")}
            # the server answers once the whole file is on its disk: allow for that after the last byte
            timeout = httpx.Timeout(self.http.timeout.connect, read=300.0, write=60.0, pool=10.0)
            try:
                response = self.http.post("/api/v1/upload", params=params, files=files, timeout=timeout)
            except httpx.WriteError as e:  # it closed while we sent: it refused the body before reading it all
                cut = f"the server closed the connection while the file was sent ({e})"
                raise APIError(0, "upload_cut", cut) from e
            except httpx.TransportError as e:
                raise unreachable(self.url, e) from e
        if response.status_code >= 400:
            raise APIError.of(response)
        return response.json()

    def events(self, task_id: str) -> Iterator[dict]:
        """The task's records from its Server-Sent Events stream, until its `end` event or the stream closes.
        Raises StreamUnavailable when streams are refused for now, APIError for any other refusal."""
        path = f"/api/v1/process/{quote(task_id, safe='')}/events"
        # a keep-alive comment comes every SSE_KEEPALIVE_SECONDS (15 s): four missed ones mean a dead stream
        timeout = httpx.Timeout(self.http.timeout.connect, read=60.0)
        with self.http.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
            if response.status_code in (429, 503):
                raise StreamUnavailable(f"{response.status_code}")
            if response.status_code >= 400:
                response.read()
                raise APIError.of(response)
            for event, data in sse(response.iter_lines()):
                if event == "progress":
                    yield json.loads(data)
                elif event == "end":
                    return

    def download(
        self,
        task_id: str,
        out: IO[bytes],
        started: Callable[[int | None, str | None], None],
        got: Callable[[int], None],
    ) -> int:
        """Stream the task's result into `out`; `started(size, filename)` once the answer's headers are in,
        `got(n)` after each chunk. Returns the bytes written."""
        path = f"/api/v1/process/{quote(task_id, safe='')}/result"
        written = 0
        try:
            with self.http.stream("GET", path, headers={"Accept": "text/csv"}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise APIError.of(response)
                size = response.headers.get("Content-Length")
                started(int(size) if size and size.isdigit() else None, attachment_name(response))
                for chunk in response.iter_bytes(1 << 16):
                    out.write(chunk)
                    written += len(chunk)
                    got(len(chunk))
        except httpx.TransportError as e:
            raise unreachable(self.url, e) from e
        return written


def unreachable(url: str, e: Exception) -> APIError:
    return APIError(0, "unreachable", f"cannot reach {url}: {e or type(e).__name__}")


def sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) for each message of a text/event-stream (comments and `retry:` skipped)."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


def attachment_name(response: httpx.Response) -> str | None:
    """The file name of a Content-Disposition answer (its UTF-8 `filename*` first), as a bare file name:
    no directory, no control characters, never `.` or `..`."""
    header = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*=UTF-8''([^;]+)", header, re.I)
    if match:
        name = unquote(match.group(1).strip())
    else:
        match = re.search(r'filename="([^"]*)"', header, re.I)
        if not match:
            return None
        name = match.group(1)
    name = one_line(os.path.basename(name.replace("\\", "/")), 255)
    return None if name in ("", ".", "..") else name
