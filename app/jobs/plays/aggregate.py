"""Aggregate a plays CSV: stream blocks, keep running totals per (song, day), write the sorted result.

Memory grows with the number of distinct (song, day) pairs and songs, not with the file: see Totals. Both are
bounded (MAX_PLAY_GROUPS, MAX_PLAY_SONGS_MB); past one, the job fails with TooManyGroups.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.jobs.errors import JobFailed
from app.jobs.plays import rules
from app.reader import csvstream
from app.settings import defaults
from app.tasks.progress import Progress

MERGE_ROWS = 1_000_000  # rows buffered (16 MB as keys and counts) before they are merged into the totals
WRITE_ROWS = 65_536  # result rows formatted at a time
RENEW_ROWS = 1 << 20  # result rows written between two lease renewals
PROGRESS_SECONDS = 0.5  # aggregation is fast: report at most this often, and at the end
DAY_OFFSET = 719_162  # date32 counts days from 1970; 0001-01-01 is -719162: keys keep days non-negative
_LIMIT = 2**63  # totals must stay below this to be exact int64
_NEEDS_QUOTES = r'[",\r\n]'
_QUOTE, _EMPTY, _COMMA, _APOSTROPHE = (pa.scalar(s) for s in ('"', "", ",", "'"))
# OWASP CSV injection: a cell starting with one of these is read as a formula by spreadsheets.
FORMULA_STARTS = "=+-@\t\r"
_FORMULA_REGEX = r"^[=+\-@\t\r]"  # the same, for the rare array _formula_led cannot read directly
_FORMULA_BYTE = np.zeros(256, dtype=bool)
_FORMULA_BYTE[[ord(c) for c in FORMULA_STARTS]] = True
TOO_LARGE = "a total number of plays exceeds 9223372036854775807, the largest 64-bit integer"
KEYED = pa.schema([("key", pa.int64()), ("plays", pa.int64())])


class PlaysFailed(JobFailed):
    """The file cannot be totalled; the reason says why, in words the uploader can act on."""


class TotalTooLarge(PlaysFailed):
    """A total does not fit in a 64-bit integer."""


class TooManyGroups(PlaysFailed):
    """The totals would pass MAX_PLAY_GROUPS pairs or MAX_PLAY_SONGS_MB of song names."""


def too_many_groups(max_groups: int) -> TooManyGroups:
    return TooManyGroups(
        f"the file has more than MAX_PLAY_GROUPS = {max_groups} distinct (song, date) pairs, which a plays job "
        "totals in memory; split the file, or ask the operator to raise MAX_PLAY_GROUPS"
    )


def too_many_song_bytes(max_song_bytes: int) -> TooManyGroups:
    return TooManyGroups(
        f"the file's distinct song names hold more than MAX_PLAY_SONGS_MB = {max_song_bytes >> 20} MiB, which a "
        "plays job keeps in memory; split the file, or ask the operator to raise MAX_PLAY_SONGS_MB"
    )


class Totals:
    """Running play totals per (song, day), in memory that follows the number of distinct pairs.

    Each song gets a number the first time it is seen; a (song, day) pair is then one integer key,
    song number << 32 | day. Totals are two NumPy arrays sorted by key (16 bytes a pair); cleaned rows
    wait in a buffer of up to `merge_rows`, which is summed on its own and then merged in by binary search.
    More than `max_groups` pairs (checked as each buffer is merged, and by the songs, each a pair at least, as
    soon as they are numbered) or `max_song_bytes` of names raise TooManyGroups.
    """

    def __init__(
        self,
        merge_rows: int = MERGE_ROWS,
        max_groups: int = defaults.MAX_PLAY_GROUPS,
        max_song_bytes: int = defaults.MAX_PLAY_SONGS_MB << 20,
    ):
        self.merge_rows, self.max_groups, self.max_song_bytes = merge_rows, max_groups, max_song_bytes
        self.song_bytes = 0  # UTF-8 bytes of the names in `songs`
        self.songs: list[str] = []  # song number → name
        self.numbers: dict[str, int] = {}  # name → song number
        self.keys = np.empty(0, dtype=np.int64)  # sorted
        self.plays = np.empty(0, dtype=np.int64)
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def add(self, song: pa.Array, day: pa.Array, plays: pa.Array) -> None:
        encoded = pc.dictionary_encode(song)  # names are looked up once per distinct name in the block
        numbers = self._numbers(encoded.dictionary.to_pylist())
        days = pc.cast(day, pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64) + DAY_OFFSET
        keys = (numbers[encoded.indices.to_numpy(zero_copy_only=False)] << 32) | days
        self.buffer.append(pa.Table.from_arrays([pa.array(keys), plays], schema=KEYED))
        self.buffered += len(keys)
        if self.buffered >= self.merge_rows:
            self.fold()

    def _numbers(self, names: list[str]) -> np.ndarray:
        """The song number of each name, numbering the names not seen before."""
        numbers = list(map(self.numbers.get, names))
        if None in numbers:
            new = [name for name, number in zip(names, numbers) if number is None]  # distinct: a dictionary's
            if len(self.songs) + len(new) > self.max_groups:
                raise too_many_groups(self.max_groups)
            self.song_bytes += sum(len(name.encode("utf-8")) for name in new)
            if self.song_bytes > self.max_song_bytes:
                raise too_many_song_bytes(self.max_song_bytes)
            for i, name in enumerate(names):
                if numbers[i] is None:
                    numbers[i] = self.numbers.setdefault(name, len(self.songs))
                    if numbers[i] == len(self.songs):
                        self.songs.append(name)
        return np.array(numbers, dtype=np.int64)

    def fold(self) -> int:
        """Merge the buffer into the totals; returns the number of distinct pairs."""
        if not self.buffer:
            return len(self.keys)
        summed = _sum(pa.concat_tables(self.buffer))
        self.buffer, self.buffered = [], 0
        keys = summed.column("key").to_numpy()
        order = np.argsort(keys)  # sorted needles make the binary searches walk memory in order
        keys, plays = keys[order], summed.column("plays").to_numpy()[order]
        at = np.searchsorted(self.keys, keys)
        found = at < len(self.keys)
        found[found] = self.keys[at[found]] == keys[found]
        if found.any():
            before = self.plays[at[found]]
            after = before + plays[found]
            if (after < before).any():  # both are below 2**63, so an overflow wraps below zero
                raise TotalTooLarge(TOO_LARGE)
            self.plays[at[found]] = after
        new = ~found
        if len(self.keys) + int(new.sum()) > self.max_groups:
            raise too_many_groups(self.max_groups)
        if new.any():
            self.keys = np.insert(self.keys, at[new], keys[new])
            self.plays = np.insert(self.plays, at[new], plays[new])
        return len(self.keys)

    def ordered(self, size: int):
        """The totals as (song, day, plays) tables of up to `size` rows, sorted by song, then day."""
        self.fold()
        rank = np.empty(len(self.songs), dtype=np.int64)
        rank[sorted(range(len(self.songs)), key=self.songs.__getitem__)] = np.arange(len(self.songs))
        days = self.keys & 0xFFFFFFFF
        order = np.argsort((rank[self.keys >> 32] << 32) | days)
        names = pa.array(self.songs, pa.string())
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            yield pa.table(
                {
                    "song": pc.take(names, pa.array(self.keys[rows] >> 32)),
                    "day": pa.array((days[rows] - DAY_OFFSET).astype(np.int32), pa.date32()),
                    "plays": pa.array(self.plays[rows]),
                }
            )


def _sum(rows: pa.Table) -> pa.Table:
    largest = pc.max(rows.column("plays")).as_py() or 0
    if largest * rows.num_rows >= _LIMIT:  # a sum could overflow, and Arrow's int64 sum wraps silently
        return _sum_wide(rows)
    summed = rows.group_by("key").aggregate([("plays", "sum")])
    return pa.Table.from_arrays([summed.column("key"), summed.column("plays_sum")], schema=KEYED)


def _sum_wide(rows: pa.Table) -> pa.Table:
    """The slow, exact way: sum as 38-digit decimals, then check every total fits in int64."""
    wide = rows.set_column(1, "plays", pc.cast(rows.column("plays"), pa.decimal128(38, 0)))
    summed = wide.group_by("key").aggregate([("plays", "sum")])
    if summed.num_rows and pc.max(summed.column("plays_sum")).as_py() >= _LIMIT:
        raise TotalTooLarge(TOO_LARGE)
    return pa.Table.from_arrays([summed.column("key"), pc.cast(summed.column("plays_sum"), pa.int64())], schema=KEYED)


def write_result(
    totals: Totals, path: str, still_mine: Callable[[], None] = lambda: None, *, formula_guard: bool = True
) -> int:
    """Write the totals sorted by song then day as CSV (quoted only where needed); returns the byte count.

    `still_mine` is called every RENEW_ROWS rows: a long write keeps its task's lease. With `formula_guard`
    a song that a spreadsheet would run as a formula is written with a leading `'` (see _csv_lines).
    """
    partial = f"{path}.{uuid.uuid4().hex[:8]}.part"  # a worker that lost the task writes beside, not over
    try:
        with open(partial, "wb") as out:
            out.write((",".join(rules.RESULT_COLUMNS) + "\n").encode())
            for n, rows in enumerate(totals.ordered(WRITE_ROWS), 1):
                out.write(_csv_lines(rows, formula_guard))
                if n % (RENEW_ROWS // WRITE_ROWS) == 0:
                    still_mine()
            size = out.tell()
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return size


def _csv_lines(rows: pa.Table, formula_guard: bool = True) -> memoryview:
    """The rows as CSV text, built column-wise: no Python object per row.

    With `formula_guard`, a song starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
    leading `'` (OWASP's advice against CSV injection) before it is quoted, if it needs quotes. The song is
    the only text from the file: dates and totals are written by us and never start with one of those.
    """
    song = rows.column("song").combine_chunks()
    if formula_guard:
        risky = _formula_led(song)
        if risky.any():
            song = pc.if_else(pa.array(risky), pc.binary_join_element_wise(_APOSTROPHE, song, _EMPTY), song)
    quoted = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(song, '"', '""'), _QUOTE, _EMPTY)
    song = pc.if_else(pc.match_substring_regex(song, _NEEDS_QUOTES), quoted, song)
    day = pc.cast(rows.column("day").combine_chunks(), pa.string())
    total = pc.cast(rows.column("plays").combine_chunks(), pa.string())
    lines = pc.binary_join_element_wise(song, day, total, _EMPTY, _COMMA)  # "song,day,total,"
    lines = pc.binary_replace_slice(lines, -1, 2**31 - 1, "\n")  # that last comma becomes the line end
    return memoryview(lines.buffers()[2])[: _end(lines)]


def _formula_led(strings: pa.Array) -> np.ndarray:
    """Which strings start with a FORMULA_STARTS character, as a NumPy mask.

    All those characters are ASCII, so the first byte of each string decides: read from Arrow's buffers,
    that is one NumPy lookup per block instead of a regular expression per string.
    """
    if strings.type != pa.string() or strings.null_count or strings.buffers()[2] is None:
        return pc.fill_null(pc.match_substring_regex(strings, _FORMULA_REGEX), False).to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    first = data[np.minimum(starts, len(data) - 1)] if len(data) else np.zeros(len(starts), dtype=np.uint8)
    return _FORMULA_BYTE[first] & (ends > starts)  # an empty string starts with nothing


def _end(strings: pa.Array) -> int:
    """Where the last string ends in the data buffer (the offsets buffer's last entry)."""
    offsets = strings.buffers()[1]
    return pa.Array.from_buffers(pa.int32(), len(strings) + 1, [None, offsets])[-1].as_py()


def aggregate_plays(
    path: str,
    result_path: str,
    *,
    block_size: int,
    max_rejects: int,
    on_progress: Callable[[dict], None] = lambda fields: None,  # totals live in memory: there is no checkpoint
    formula_guard: bool = True,  # CSV_FORMULA_GUARD: neutralise songs a spreadsheet would run as formulas
    max_row_mb: int = defaults.MAX_ROW_MB,  # a row bigger than a block is read alone up to this; rejected beyond
    max_groups: int = defaults.MAX_PLAY_GROUPS,  # distinct (song, day) pairs held; TooManyGroups beyond
    max_songs_mb: int = defaults.MAX_PLAY_SONGS_MB,  # MiB of distinct song names held; TooManyGroups beyond
) -> dict:
    """Total the plays of `path` per (song, day) into the CSV `result_path`; returns the final fields."""
    progress = Progress(bytes_total=os.path.getsize(path))
    totals = Totals(max_groups=max_groups, max_song_bytes=max_songs_mb << 20)
    last_report = time.monotonic()
    for chunk in csvstream.stream(path, block_size, max_row_mb=max_row_mb):
        rejects = chunk.invalid
        if chunk.batch.num_rows:
            cleaned = rules.clean_batch(chunk.batch, chunk.lines)
            rejects = sorted(rejects + cleaned.rejects, key=lambda r: r.line)
            totals.add(cleaned.song, cleaned.day, cleaned.plays)
        progress.reject(rejects, max_rejects)
        progress.rows_read += chunk.batch.num_rows + len(chunk.invalid)
        progress.bytes_read = chunk.bytes_read
        if time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            on_progress(progress.fields())
    groups = totals.fold()
    progress.bytes_read = progress.bytes_total
    fields = progress.fields()
    on_progress(fields)
    size = write_result(totals, result_path, still_mine=lambda: on_progress(fields), formula_guard=formula_guard)
    return {**fields, "groups": groups, "result_size": size}
