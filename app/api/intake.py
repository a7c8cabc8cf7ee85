"""Receive an upload: stream the body to UPLOAD_FOLDER as it arrives, checking it on the way.

Accepts `multipart/form-data` (the file in a part named `file`, as `curl -F file=@x.csv` sends it) or
a raw body (`Content-Type: text/csv`, `curl --data-binary @x.csv`, name from `?filename=`). The body
is never held whole in memory: each chunk is validated as UTF-8 incrementally and written straight to
a temporary file beside its final name. Any failure removes that file.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Event, Field, File, MultipartDecoder, NeedData
from werkzeug.utils import secure_filename

from app.api.errors import APIError
from app.settings import defaults
from app.store.files import remove

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # bytes read from the client at a time
UTF8_SLICE = 64 * 1024  # bytes decoded at a time: validation builds a str this size, no bigger
HEAD_LIMIT = 64 * 1024  # bytes of the header line, its line ending (LF, CRLF or CR) not counted; a BOM counts
RAW_TYPES = ("text/csv", "application/csv", "application/octet-stream", "text/plain")
NAME_BYTES = 255  # a filename is kept to this many bytes of UTF-8
# C0, DEL, C1, and the bidi embeddings, overrides and isolates: removed from client filenames
UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Upload:
    task_id: str
    filename: str  # as the client named it
    path: str  # where it is stored, under a server-chosen name
    size: int
    header: list[str]
    fields: dict[str, str] = field(default_factory=dict)  # other form fields


class _Sink:
    """Writes one file part to disk while checking it: UTF-8 throughout, a header line, a data row."""

    def __init__(self, path: str, max_bytes: int, max_columns: int, min_free: int = 0):
        self.path, self.max_bytes, self.max_columns, self.min_free = path, max_bytes, max_columns, min_free
        self.file = open(path, "wb")
        self.size = 0
        self.head = bytearray()
        self.header_done = False
        self.header: list[str] | None = None
        self.has_data = False
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise APIError(
                413, "file_too_large", f"The file is larger than the limit of {self.max_bytes // (1 << 20)} MB."
            )
        view = memoryview(data)
        for start in range(0, len(data), UTF8_SLICE):
            try:
                self.decoder.decode(view[start : start + UTF8_SLICE])
            except UnicodeDecodeError as e:
                offset = self.size - len(data) + start + e.start
                raise APIError(
                    422, "not_utf8", f"The file is not valid UTF-8 text (bad byte at offset {offset})."
                ) from None
        if not self.has_data:
            self._watch_head(data)
        self.file.write(data)
        if self.min_free:  # stop as soon as the disk has filled below the floor (another writer, a lying length)
            check_free(os.path.dirname(self.path), self.min_free)

    def _watch_head(self, data: bytes) -> None:
        if not self.header_done:
            self.head += data
            ends = [i for i in (self.head.find(b"\n"), self.head.find(b"\r")) if i >= 0]  # LF, CRLF or CR
            end = min(ends) if ends else -1
            if (end if end >= 0 else len(self.head)) > HEAD_LIMIT:  # the line so far, or the whole line
                raise APIError(
                    422,
                    "bad_header",
                    f"The header line is longer than the limit of HEAD_LIMIT = "
                    f"{HEAD_LIMIT} bytes (its line ending not counted).",
                    limit=HEAD_LIMIT,
                )
            if end < 0:
                return
            self.header_done = True
            data = bytes(self.head[end + 1 :])
            self.head = self.head[: end + 1]
            self.header = self._parse_header()
        if data.strip(b"\r\n\t ,"):
            self.has_data = True

    def finish(self) -> list[str]:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise APIError(422, "not_utf8", "The file is not valid UTF-8 text (it ends inside a character).") from None
        self.file.close()
        if self.size == 0:
            raise APIError(422, "empty_file", "The file is empty.")
        header = self.header if self.header is not None else self._parse_header()
        if not self.has_data:
            raise APIError(422, "no_rows", "The file has a header but no data rows.")
        return header

    def _parse_header(self) -> list[str]:
        """The header's column names, checked as soon as its line ends: a refused header stops the upload there."""
        try:
            header = next(csv.reader(io.StringIO(self.head.decode("utf-8-sig"), newline=""), strict=True), [])
        except csv.Error as e:
            raise APIError(422, "bad_header", f"The header line is not valid CSV: {e}.") from None
        if len(header) > self.max_columns:
            raise APIError(
                422,
                "too_many_columns",
                f"The header has {len(header)} columns, more than the limit of MAX_COLUMNS = {self.max_columns}.",
                limit=self.max_columns,
            )
        return [name.strip() for name in header]

    def discard(self) -> None:
        self.file.close()
        remove(self.path)


def free_bytes(folder: str) -> int:
    return shutil.disk_usage(folder).free


def check_free(folder: str, min_free: int, incoming: int = 0) -> None:
    """507 if storing `incoming` more bytes would leave less than `min_free` free in `folder`'s filesystem."""
    free = free_bytes(folder)
    if free - incoming < min_free:
        raise APIError(
            507,
            "insufficient_storage",
            f"Not enough free disk space to store this upload: the server keeps MIN_FREE_MB = "
            f"{min_free >> 20} MB free and has {free >> 20} MB.",
            min_free_mb=min_free >> 20,
        )


@dataclass(frozen=True)
class FormLimits:
    """How much of a multipart form other than its file is held in memory (MAX_FORM_FIELDS, MAX_FORM_KB)."""

    fields: int = defaults.MAX_FORM_FIELDS
    bytes: int = defaults.MAX_FORM_KB * 1024


def receive(
    request: Request,
    folder: str,
    max_bytes: int,
    max_columns: int,
    min_free: int = 0,
    form: FormLimits = FormLimits(),
) -> Upload:
    """Store the request's CSV under UPLOAD_FOLDER/<task_id>.csv and return what was received.

    With `min_free`, the upload is refused (507) if its Content-Length would leave less than that free in
    `folder`'s filesystem, and stopped as soon as free space falls below it while it streams in. `form`
    bounds the other form fields: past it, 413 at once.
    """
    content_type, options = parse_options_header(request.headers.get("Content-Type", ""))
    task_id = str(uuid.uuid4())
    final = os.path.join(folder, f"{task_id}.csv")
    partial = final + ".part"
    body = _Body(request.stream, request.content_length)
    try:
        if min_free:
            check_free(folder, min_free, request.content_length or 0)
        if content_type == "multipart/form-data":
            filename, fields, sink = _receive_multipart(
                body, options, partial, max_bytes, max_columns, min_free, _Form(form)
            )
        elif content_type in RAW_TYPES:
            filename = _check_name(request.args.get("filename") or "upload.csv")
            sink = _Sink(partial, max_bytes, max_columns, min_free)
            _copy(body, sink)
            fields = dict(request.args)
        else:
            raise APIError(
                415,
                "unsupported_media_type",
                "Send the CSV as multipart/form-data (a part named 'file') or as a text/csv body.",
            )
        header = sink.finish()
        os.replace(partial, final)
    except APIError as e:
        remove(partial)
        if e.code == "incomplete_body":
            log.warning("upload refused: %s", e.message)  # our own words only, no client text
        elif e.status not in (413, 507):  # read what the client still sends, so it gets our answer, not a
            _drain(request.stream)  # reset; but not a body too big for the limit or the disk
        raise
    except BaseException:
        remove(partial)
        raise
    return Upload(task_id, filename, final, sink.size, header, fields)


class _Body:
    """The request body, read so that a cut-off one is an error, never a shorter file.

    gunicorn marks its input as terminated, so werkzeug does not hold it to its Content-Length: a client
    that stops early just reads as end of body. Here fewer bytes than announced, or a read that fails
    (gunicorn's NoMoreData for a chunked body cut before its last chunk, a reset connection, which
    werkzeug turns into ClientDisconnected), raise `incomplete_body`.
    """

    def __init__(self, stream, expected: int | None):
        self.stream, self.expected, self.received = stream, expected, 0

    def read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except (OSError, ClientDisconnected) as e:  # werkzeug's ClientDisconnected wraps the OSError, for chunked
            raise self._incomplete(f"the connection ended or failed mid-body ({type(e).__name__})") from None
        except ParseException:  # gunicorn's, for a chunked body whose framing is wrong (a bad size line)
            raise APIError(400, "bad_chunked_body", "The chunked body is malformed; nothing was stored.") from None
        if data:
            self.received += len(data)
        elif self.expected is not None and self.received < self.expected:
            raise self._incomplete(
                f"the connection ended after {self.received} of the {self.expected} bytes its Content-Length announced"
            )
        return data

    def _incomplete(self, why: str) -> APIError:
        return APIError(
            400, "incomplete_body", f"The upload was cut off: {why}; nothing was stored. Send the whole file again."
        )


def clean_filename(name: str, limit: int = NAME_BYTES) -> str:
    """`name` without control or bidi characters, cut to `limit` bytes of UTF-8 keeping its extension."""
    name = UNSAFE_NAME_CHARS.sub("", name).strip()
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext.encode("utf-8")) > 16:  # not an extension worth keeping
        stem, ext = name, ""
    room = limit - len(ext.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore") + ext  # "ignore" drops a cut character


def ascii_filename(name: str) -> str:
    """A plain-ASCII stand-in for `name`, fit for a quoted-string: accents dropped, other characters `_`."""
    out = []
    for ch in unicodedata.normalize("NFKD", clean_filename(name)):
        if unicodedata.combining(ch):
            continue
        out.append(ch if " " <= ch <= "~" and ch not in '"\\' else "_")
    return "".join(out)


def _drain(stream) -> None:
    try:
        while stream.read(CHUNK):
            pass
    except Exception:  # the client went away; nothing left to answer
        pass


def _copy(stream, sink: _Sink) -> None:
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            return
        sink.write(chunk)


def _check_name(filename: str) -> str:
    """The client's filename cleaned and bounded (see clean_filename); refused if empty or not .csv."""
    filename = clean_filename(filename)
    if not filename:
        raise APIError(400, "empty_filename", "The file part has an empty filename; choose a file to upload.")
    if not filename.lower().endswith(".csv"):
        raise APIError(415, "not_csv", f"Only .csv files are accepted, got {secure_filename(filename) or filename!r}.")
    return filename


class _Form:
    """The form fields other than the file, counted as they arrive: one past a limit is refused there (413)."""

    def __init__(self, limits: FormLimits):
        self.limits, self.count, self.size = limits, 0, 0
        self.fields: dict[str, str] = {}

    def part(self, name: str) -> None:
        """A new part other than the file (a field, or a file part under another name, which is skipped)."""
        self.count += 1
        if self.count > self.limits.fields:
            raise APIError(
                413,
                "too_many_fields",
                f"The form has more than MAX_FORM_FIELDS = {self.limits.fields} fields besides the file; "
                "send the file and at most that many fields.",
                limit=self.limits.fields,
            )
        self.grow(len(name.encode("utf-8", "replace")))

    def grow(self, n: int) -> None:
        self.size += n
        if self.size > self.limits.bytes:
            raise APIError(
                413,
                "form_too_large",
                f"The form's fields besides the file hold more than MAX_FORM_KB = {self.limits.bytes // 1024} KiB.",
                limit_kb=self.limits.bytes // 1024,
            )


@dataclass
class _FormField:
    """A form field other than the file: its bytes, gathered as they arrive."""

    name: str
    value: bytearray = field(default_factory=bytearray)


@dataclass
class _Multipart:
    """A multipart body's reader between the decoder's events: the file's sink once its part began, the part
    being read (the file's sink, a field, or None for a part skipped), and whether the closing boundary came."""

    new_sink: Callable[[], _Sink]
    form: _Form
    sink: _Sink | None = None
    filename: str = ""
    part: _Sink | _FormField | None = None
    ended: bool = False

    def read(self, decoder: MultipartDecoder) -> None:
        """Every event the decoder can give now, up to the closing boundary."""
        event = decoder.next_event()
        while not isinstance(event, NeedData):
            self.take(event)
            if self.ended:
                return
            event = decoder.next_event()

    def take(self, event: Event) -> None:
        if isinstance(event, File) and event.name == "file":
            if self.sink is not None:
                raise APIError(400, "multiple_files", "Send one file per upload; this form has several 'file' parts.")
            self.filename = _check_name(event.filename or "")
            self.sink = self.part = self.new_sink()
        elif isinstance(event, (Field, File)):  # a field, or a file part under another name (skipped)
            self.form.part(event.name or "")  # a part may have no name: counted all the same
            self.part = _FormField(event.name or "") if isinstance(event, Field) else None
        elif isinstance(event, Data):
            self._data(event)
        elif isinstance(event, Epilogue):
            self.ended = True

    def _data(self, event: Data) -> None:
        if isinstance(self.part, _Sink):
            self.part.write(event.data)
        elif isinstance(self.part, _FormField):
            self.form.grow(len(event.data))
            self.part.value.extend(event.data)
            if not event.more_data:
                self.form.fields[self.part.name] = self.part.value.decode("utf-8", "replace")

    def discard(self) -> None:
        if self.sink is not None:
            self.sink.discard()


def _receive_multipart(
    stream: _Body, options: dict, partial: str, max_bytes: int, max_columns: int, min_free: int, form: _Form
) -> tuple[str, dict[str, str], _Sink]:
    boundary = options.get("boundary", "").encode()
    if not boundary:
        raise APIError(400, "bad_request", "The multipart body has no boundary.")
    # The decoder's own limit applies to its buffer, which holds up to one read plus a partial boundary.
    decoder = MultipartDecoder(boundary, max_form_memory_size=2 * CHUNK + HEAD_LIMIT)
    reader = _Multipart(lambda: _Sink(partial, max_bytes, max_columns, min_free), form)
    try:
        while not reader.ended:
            chunk = stream.read(CHUNK)
            decoder.receive_data(chunk or None)
            reader.read(decoder)
            if not chunk:
                break
        if not reader.ended:
            raise APIError(400, "bad_multipart", "The multipart body ends before its closing boundary.")
    except ValueError as e:  # werkzeug's decoder on a malformed body
        reader.discard()
        raise APIError(400, "bad_multipart", f"The multipart body could not be read: {e}") from None
    except BaseException:
        reader.discard()
        raise
    if reader.sink is None:
        raise APIError(400, "missing_file", "No file part named 'file' in the form; send it with -F file=@movies.csv.")
    return reader.filename, form.fields, reader.sink
