"""Generate realistic CSV test files of any size: ``python -m moviecat.generate movies --rows N out.csv``.

Kinds: ``movies`` (the movie catalogue upload format) and ``plays`` (``Song,Date,Number of Plays``).
Output is streamed in chunks (memory stays flat), deterministic for a given ``--seed``, and salted with
the messy cases the ingest service must survive: odd dates, bad numbers, embedded newlines, duplicates.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.jobs.movies.schema import COLUMNS as MOVIE_HEADER  # the upload formats, as the service reads them
from app.jobs.plays.rules import COLUMNS as PLAYS_HEADER

log = logging.getLogger("moviecat.generate")

NEWLINES = {"crlf": "\r\n", "lf": "\n"}
MIB = 1024 * 1024
CHUNK_ROWS = 4000

# Column positions in MOVIE_HEADER, named so the special cases below read clearly.
(
    BUDGET,
    HOMEPAGE,
    ORIG_LANG,
    ORIG_TITLE,
    OVERVIEW,
    RELEASE_DATE,
    REVENUE,
    RUNTIME,
    STATUS,
    TITLE,
    VOTE_AVERAGE,
    VOTE_COUNT,
    COMPANY_ID,
    GENRE_ID,
    LANGUAGES,
) = range(len(MOVIE_HEADER))


# ---------------------------------------------------------------------------------------------------------
# Shared helpers (also meant for other generators, e.g. `plays`)
# ---------------------------------------------------------------------------------------------------------


class ProgressBar:
    """A self-updating progress line on stderr; does nothing when disabled."""

    def __init__(self, label: str, total: float, enabled: bool, stream: IO[str] | None = None, interval: float = 0.25):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self._width = 0

    def update(self, done: float, rows: int, nbytes: int, force: bool = False) -> None:
        """`done` is in the unit of `total` (rows or bytes); redraws at most every `interval` seconds."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval and not force:
            return
        self._last = now
        pct = min(100.0, 100.0 * done / self.total) if self.total else 100.0
        rate = nbytes / MIB / max(now - self.start, 1e-9)
        line = f"{self.label}: {pct:5.1f}%  {rows:,} rows  {nbytes / MIB:,.1f} MiB  {rate:.1f} MiB/s"
        self.stream.write("\r" + line.ljust(self._width))  # pad over a longer previous line
        self._width = len(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()


def show_progress(flag: bool) -> bool:
    """Progress is shown when asked for, or by default when stderr is an interactive terminal."""
    if flag:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class CsvQuoter:
    """Quote one value exactly as csv.writer (QUOTE_MINIMAL, same line terminator) would.

    Generators quote their value pools once with this and then build lines with str.join, which is
    several times faster than csv.writer on every row while producing the very same bytes.
    """

    def __init__(self, newline: str = "\r\n"):
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, quoting=csv.QUOTE_MINIMAL, lineterminator=newline)
        self._cut = len(newline) + 1
        self._memo: dict[str, str] = {}  # pools repeat values a lot ("0.0", dates)

    def __call__(self, value: str) -> str:
        quoted = self._memo.get(value)
        if quoted is None:
            self._buf.seek(0)
            self._buf.truncate()
            # A second, empty field: csv quotes a lone empty field, which must not leak in here.
            self._writer.writerow((value, ""))
            quoted = self._memo[value] = self._buf.getvalue()[: -self._cut]
        return quoted


def write_csv(
    path: str,
    header: Sequence[str],
    make_chunk: Callable[[int], str | bytes | memoryview | list],
    rows: int | None = None,
    size_mb: float | None = None,
    newline: str = "\r\n",
    progress: bool = False,
    label: str = "generate",
    chunk_rows: int = CHUNK_ROWS,
    bom: bool = False,
) -> dict:
    """Write `header` then chunks from `make_chunk(n)` until `rows` rows or `size_mb` MiB are written.

    `make_chunk(n)` returns n rows either as lists of values (written with csv.writer), as ready CSV
    text (n lines, each ending in `newline`) or as that text already UTF-8 encoded (bytes or a
    memoryview, e.g. of an Arrow buffer). Text is encoded here so the byte count is exact, which
    `--size-mb` needs. `n` is at most `chunk_rows`. `bom` puts a UTF-8 byte order mark before the
    header. `path` "-" means stdout.
    """
    if (rows is None) == (size_mb is None):
        raise ValueError("give exactly one of rows or size_mb")
    if rows is not None and rows < 0:
        raise ValueError("rows must be >= 0")
    if size_mb is not None and size_mb < 0:
        raise ValueError("size_mb must be >= 0")
    target_bytes = int(size_mb * MIB) if size_mb is not None else 0
    bar = ProgressBar(label, rows if rows is not None else target_bytes, progress)

    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator=newline)
    writer.writerow(header)
    out = sys.stdout.buffer if path == "-" else open(path, "wb")
    written = 0
    try:
        head = (("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8")
        out.write(head)
        nbytes = len(head)
        while True:
            if rows is not None:
                n = min(chunk_rows, rows - written)
            else:
                remaining = target_bytes - nbytes
                # Size the last chunks from the average row so we stop just past the target.
                avg = (nbytes / written) if written else 400.0
                n = min(chunk_rows, int(remaining / avg) + 1) if remaining > 0 else 0
            if n <= 0:
                break
            chunk = make_chunk(n)
            if isinstance(chunk, (bytes, bytearray, memoryview)):
                data = memoryview(chunk)
            else:
                if not isinstance(chunk, str):
                    buf.seek(0)
                    buf.truncate()
                    writer.writerows(chunk)
                    chunk = buf.getvalue()
                data = memoryview(chunk.encode("utf-8"))
            out.write(data)
            written += n
            nbytes += data.nbytes
            bar.update(written if rows is not None else nbytes, written, nbytes)
        bar.update(written if rows is not None else nbytes, written, nbytes, force=True)
    finally:
        bar.close()
        if out is sys.stdout.buffer:
            out.flush()
        else:
            out.close()
    return {"rows": written, "bytes": nbytes}


# ---------------------------------------------------------------------------------------------------------
# Movie value pools. Built once per seed so each row costs one RNG call and a few list lookups.
# ---------------------------------------------------------------------------------------------------------

ADJECTIVES = (
    "Dark Silent Broken Golden Last Hidden Lost Crimson Endless Frozen Wild Secret Burning Empty Distant "
    "Electric Iron Midnight Quiet Savage Bitter Velvet Hollow Restless Shattered Forgotten Scarlet Wicked "
    "Brave Lonely Perfect Final Eternal Sudden Fallen Invisible Little Big Strange Sweet Deadly Northern "
    "Southern Paper Glass Silver Black White Blue Red Green Lucky Crazy Second Open Sacred Rising Twisted"
).split()
NOUNS = (
    "River Night Heart City Road Storm Kingdom Garden Shadow Dream Empire Island Mirror Summer Winter Ghost "
    "Horizon Machine Promise Harbor Forest Desert Voyage Secret Frontier Station Hunter Witness Letter Crown "
    "Stranger Memory Circus Signal Planet Valley Tide Engine Bridge Castle Echo Fire Rain Angel Wolf Dragon "
    "Child Soldier Mountain Ocean Season Border Game Code Song House Window Train Orchard Lighthouse Comet"
).split()
NAMES = (
    "Anna Ben Clara David Elena Frank Grace Henry Iris Jack Kate Leo Maya Nina Oscar Paul Rosa Sam Tom Vera "
    "Zoë José Björn Renée François Søren Chloé Álvaro Jürgen Inés Noël Mateo Yuki Olga Ahmed Priya"
).split()
PLACES = (
    "Paris;Tokyo;New York;a small town in Ohio;Berlin;the Scottish Highlands;Montréal;São Paulo;Kraków;"
    "Reykjavík;a remote island;Los Angeles;the Australian outback;Marseille;Saint Petersburg;Kyoto;"
    "a space station orbiting Mars;1920s Chicago;post-war Vienna;the Mojave Desert"
).split(";")
ROLES = (
    "detective",
    "schoolteacher",
    "retired boxer",
    "young widow",
    "con artist",
    "nurse",
    "pilot",
    "struggling musician",
    "journalist",
    "farmer",
    "lawyer",
    "teenage runaway",
    "chef",
    "astronaut",
    "thief",
    "priest",
    "scientist",
    "taxi driver",
    "ballerina",
    "soldier",
)
GOALS = (
    "find the truth about her father",
    "win back the woman he loves",
    "save the family farm",
    "escape the city before dawn",
    "stop a conspiracy that reaches the top",
    "clear his name",
    "finish one last job",
    "protect a child nobody else believes",
    "solve a string of murders",
    "survive the longest winter in memory",
    "reunite the old band",
    "get home in time for Christmas",
)
EVENTS = (
    "a mysterious stranger arrives",
    "the war finally ends",
    "the factory closes",
    "a letter arrives from the past",
    "the storm cuts off the town",
    "an old friend is found dead",
    "the lottery numbers come up",
    "the lights go out all over the city",
    "a comet is sighted",
    "the circus comes to town",
)
COMPLICATIONS = (
    "nothing goes according to plan",
    "the past has a way of catching up",
    "someone on the inside is lying",
    "time is running out",
    "love gets in the way",
    "the police are always one step behind",
    "the truth is stranger than anyone imagined",
)
# Names of languages as the source data spells them (note the Latin "P" in "Pусский").
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "Français",
    "es": "Español",
    "de": "Deutsch",
    "it": "Italiano",
    "ru": "Pусский",
    "ja": "日本語",
    "zh": "普通话",
    "ko": "한국어/조선말",
    "pt": "Português",
    "hi": "हिन्दी",
}
LANG_WEIGHTS = {"en": 70, "fr": 7, "es": 5, "de": 4, "it": 3, "ja": 4, "ru": 2, "zh": 2, "ko": 1, "pt": 1, "hi": 1}
NATIVE_TITLES = {
    "fr": ["Ça commence aujourd'hui", "Amélie", "La Haine", "Les Misérables", "Le Mépris", "À bout de souffle"],
    "es": ["El laberinto del fauno", "Mar adentro", "Niños del mañana", "La lengua de las mariposas"],
    "de": ["Das Leben der Anderen", "Lola rennt", "Der Himmel über Berlin", "Die Brücke am Fluß"],
    "it": ["La dolce vita", "Ladri di biciclette", "Nuovo Cinema Paradiso", "Perché no?"],
    "ja": ["東京物語", "七人の侍", "千と千尋の神隠し", "羅生門"],
    "ru": ["Pусский ковчег", "Сталкер", "Летят журавли", "Брат"],
    "zh": ["卧虎藏龙", "霸王别姬", "花样年华", "活着"],
    "ko": ["올드보이", "기생충", "살인의 추억"],
    "pt": ["Cidade de Deus", "Central do Brasil", "Tropa de Elite"],
    "hi": ["शोले", "लगान", "दीवार"],
}
NON_ASCII_TITLES = [
    "Amélie",
    "Pусский ковчег",
    "東京物語",
    "Ça commence aujourd'hui",
    "Crème brûlée",
    "Mañana",
    "Smörgåsbord Days",
    "Der Himmel über Berlin",
    "Ōkami",
    "Café Noir",
]
AWKWARD_TITLES = [
    'Hello, "Stranger"',
    "Love, Actually, Again",
    'The "Perfect" Crime',
    'Yes, No, "Maybe"',
    "Don't Look, Don't Touch",
    'She Said "Goodbye"',
]
STATUSES = ["Released"] * 96 + ["Post Production", "In Production", "Rumored", "Planned"]
GENRES = [28, 12, 16, 35, 80, 99, 18, 10751, 14, 36, 27, 10402, 9648, 10749, 878, 10770, 53, 10752, 37]
BAD_NUMBERS = ["abc", "12x", ""]
BAD_NUMBER_FIELDS = [BUDGET, REVENUE, RUNTIME, VOTE_AVERAGE, VOTE_COUNT]
BAD_DATES = ["not a date", "2020-13-45", "1999-02-30", "unknown", "31.12.1999"]
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1).toordinal(), dt.date(2025, 12, 31).toordinal()


def _f(x: float) -> str:
    """Floats the way the source data writes them: 30000000.0, 7.7, 0.0."""
    return repr(float(x))


def _build_titles(rng: random.Random) -> list[str]:
    titles = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    titles += [f"The {a} {n}" for a in ADJECTIVES for n in NOUNS]
    titles += [f"{n} of the {m}" for n in NOUNS for m in NOUNS if n != m]
    titles += [f"{name}'s {n}" for name in NAMES for n in NOUNS]
    # A few percent carry non-ASCII text, commas or quotes, as real catalogues do.
    extra = [t for ts in NATIVE_TITLES.values() for t in ts] + NON_ASCII_TITLES + AWKWARD_TITLES
    titles += [f"{t} {n}" for t in extra for n in NOUNS[:12]]
    titles = list(dict.fromkeys(titles))  # ordered dedupe keeps it deterministic
    rng.shuffle(titles)
    return titles


def _sentence(rng: random.Random) -> str:
    c = rng.choice
    kind = rng.randrange(7)
    if kind == 0:
        return f"{c(NAMES)}, a {c(ADJECTIVES).lower()} {c(ROLES)} from {c(PLACES)}, must {c(GOALS)}."
    if kind == 1:
        return f"When {c(EVENTS)}, {c(NAMES)} has to {c(GOALS)}."
    if kind == 2:
        return f"{c(NAMES)} and {c(NAMES)} set out to {c(GOALS)}, but {c(COMPLICATIONS)}."
    if kind == 3:
        return f'Everyone calls it "the {c(ADJECTIVES).lower()} {c(NOUNS).lower()}", but {c(NAMES)} knows better.'
    if kind == 4:
        return (
            f"Set in {c(PLACES)} in {rng.randrange(1900, 2026)}, the story follows {c(NAMES)}, "
            f"a {c(ROLES)} who {c(['cannot forget', 'refuses to accept', 'keeps running from'])} the past."
        )
    if kind == 5:
        return f"{c(NAMES)} – {c(ADJECTIVES).lower()} and {c(ADJECTIVES).lower()} – is a {c(ROLES)} with a secret..."
    return f"It's {c(PLACES)}, and {c(COMPLICATIONS)}; {c(NAMES)} knows it's now or never."


def _build_overviews(rng: random.Random, n: int = 4096) -> list[str]:
    pool = []
    for _ in range(n):
        text = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
        u = rng.random()
        if u < 0.01:  # multi-line overviews must survive as quoted CSV fields
            text = text.replace(". ", ".\n", 1) + "\n\nWritten by hand."
        elif u < 0.015:
            text = text.replace(". ", ".\r\n", 1) + "\r\n(Windows line break)"
        elif u < 0.02:
            text = ""
        pool.append(text)
    return pool


def _build_money(rng: random.Random, n: int = 4096) -> list[tuple]:
    """(budget, revenue, runtime, status, vote_average, vote_count), loosely correlated like real data."""
    pool = []
    for _ in range(n):
        budget = (
            0
            if rng.random() < 0.55
            else rng.choice([1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200]) * rng.choice([100_000, 1_000_000])
            + rng.randrange(0, 20) * 50_000
        )
        if budget and rng.random() < 0.8:
            revenue = int(budget * rng.lognormvariate(0.5, 1.0))
        else:
            revenue = 0 if rng.random() < 0.7 else rng.randrange(10_000, 50_000_000)
        runtime = "" if rng.random() < 0.01 else str(max(0, int(rng.gauss(100, 22))))
        votes = 0 if rng.random() < 0.05 else int(rng.paretovariate(0.6) * 3)
        average = 0.0 if votes == 0 else round(min(10.0, max(0.0, rng.gauss(6.0, 1.2))), 1)
        pool.append((_f(budget), _f(revenue), runtime, rng.choice(STATUSES), _f(average), _f(votes)))
    return pool


def _build_languages(rng: random.Random, n: int = 1024) -> list[tuple]:
    """(original_language, languages list-string, native titles or None)."""
    codes, weights = list(LANG_WEIGHTS), list(LANG_WEIGHTS.values())
    pool = []
    for _ in range(n):
        code = rng.choices(codes, weights)[0]
        u = rng.random()
        if u < 0.05:
            langs = []
        else:
            langs = [LANGUAGE_NAMES[code]]
            if u > 0.6:  # several spoken languages, in no particular order
                others = rng.sample([c for c in codes if c != code], rng.randint(1, 3))
                langs += [LANGUAGE_NAMES[c] for c in others]
                rng.shuffle(langs)
        native = NATIVE_TITLES.get(code) if rng.random() < 0.5 else None
        pool.append((code, str(langs), native))
    return pool


def _build_dates(rng: random.Random, n: int = 16384) -> tuple[list[str], list[str]]:
    """Parallel pools of ISO and M/D/YYYY dates, 1900..2025, skewed towards recent years."""
    span = LAST_DAY - FIRST_DAY
    iso, mdy = [], []
    for _ in range(n):
        u = rng.random()
        t = rng.random() if u < 0.15 else rng.random() ** 0.5  # a uniform floor keeps the 1900s present
        d = dt.date.fromordinal(FIRST_DAY + int(span * t))
        iso.append(d.isoformat())
        mdy.append(f"{d.month}/{d.day}/{d.year}")
    return iso, mdy


class MovieRows:
    """Deterministic stream of movie rows; `chunk(n)` returns the next n rows as CSV text.

    Every pool value is CSV-quoted once up front (see CsvQuoter), so a row is one RNG draw, a few list
    lookups and a str.join. The stream depends only on the seed, not on chunk sizes, so a shorter file
    is a prefix of a longer one.
    """

    # Forced into the first rows in rotation, so even small files show every kind of mess.
    SPECIALS = (
        "non_ascii_title",
        "empty_title",
        "mdy_date",
        "empty_date",
        "overview_lf",
        "overview_crlf",
        "overview_quotes",
        "awkward_title",
        "no_languages",
        "many_languages",
        "bad_number",
        "bad_date",
        "duplicate",
        "old_date",
        "empty_runtime",
    )
    SPECIAL_ROWS = 3 * len(SPECIALS)

    def __init__(self, seed: int = 0, newline: str = "\r\n"):
        rng = random.Random(seed)
        q = self.quote = CsvQuoter(newline)
        self.newline = newline
        self.titles = [q(t) for t in _build_titles(rng)]
        self.overviews = [q(t) for t in _build_overviews(rng)]
        self.money = [tuple(q(v) for v in m) for m in _build_money(rng)]
        self.languages = [
            (q(code), q(langs), [q(t) for t in native] if native else None)
            for code, langs, native in _build_languages(rng)
        ]
        iso, mdy = _build_dates(rng)
        self.iso_dates, self.mdy_dates = [q(d) for d in iso], [q(d) for d in mdy]
        self.ids = [(q(str(1 + int(rng.random() ** 3 * 99_999))), q(str(rng.choice(GENRES)))) for _ in range(4096)]
        self.homepages = [
            q(
                ""
                if rng.random() < 0.8
                else f"http://www.{rng.choice(ADJECTIVES).lower()}{rng.choice(NOUNS).lower()}{rng.randrange(1000)}.com/"
            )
            for _ in range(256)
        ]
        self.bad_dates = [q(v) for v in BAD_DATES]
        self.bad_numbers = [q(v) for v in BAD_NUMBERS]
        self.rng = rng
        self.i = 0
        self.recent: list[tuple[str, str]] = []  # (title, date) identities a duplicate can repeat

    def chunk(self, n: int) -> str:
        # Locals for speed: this loop is the whole cost of generating a gigabyte.
        getrandbits = self.rng.getrandbits
        titles, overviews, money, languages = self.titles, self.overviews, self.money, self.languages
        iso_dates, mdy_dates, ids, homepages = self.iso_dates, self.mdy_dates, self.ids, self.homepages
        bad_dates, bad_numbers, recent = self.bad_dates, self.bad_numbers, self.recent
        n_titles, n_bad_dates = len(titles), len(bad_dates)
        out: list[str] = []
        append = out.append
        start = self.i
        for i in range(start, start + n):
            r = getrandbits(96)  # one draw, sliced into a pool index per field group
            m = money[r & 4095]
            lang = languages[(r >> 12) & 1023]
            d = (r >> 22) & 16383
            ident = ids[(r >> 38) & 4095]
            a = (r >> 50) & 1023  # picks the anomaly, if any
            x = r >> 60  # spare bits for details
            q, k = divmod(i, n_titles)
            title = titles[k]
            if q:  # sequel numbers keep titles distinct past the pool size; stay inside the quotes
                title = f'{title[:-1]} {q + 1}"' if title[0] == '"' else f"{title} {q + 1}"
            native = lang[2]
            row = [
                m[0],
                homepages[x & 255],
                lang[0],
                native[x % len(native)] if native else title,
                overviews[(x >> 8) & 4095],
                iso_dates[d],
                m[1],
                m[2],
                m[3],
                title,
                m[4],
                m[5],
                ident[0],
                ident[1],
                lang[1],
            ]
            if a < 102:  # ~10% of rows carry one anomaly; the ranges set the rates
                x >>= 20
                if a < 10:  # ~1% repeat an earlier row's identity (title + date)
                    if recent:
                        row[TITLE], row[RELEASE_DATE] = recent[x % len(recent)]
                elif a < 41:  # ~3%
                    row[RELEASE_DATE] = ""
                elif a < 72:  # ~3%
                    row[RELEASE_DATE] = mdy_dates[d]
                elif a < 82:  # ~1%
                    row[RELEASE_DATE] = bad_dates[x % n_bad_dates]
                elif a < 92:  # ~1%
                    row[BAD_NUMBER_FIELDS[x % 5]] = bad_numbers[(x >> 3) % 3]
                else:  # ~1%
                    row[TITLE] = ""
            if i < self.SPECIAL_ROWS:
                self._special(i, row, x)
            if (i < 64 or not i & 31) and row[TITLE]:
                if len(recent) < 1024:
                    recent.append((row[TITLE], row[RELEASE_DATE]))
                else:
                    recent[(i >> 5) & 1023] = (row[TITLE], row[RELEASE_DATE])
            append(",".join(row))
        self.i = start + n
        if not out:
            return ""
        nl = self.newline
        return nl.join(out) + nl

    def _special(self, i: int, row: list[str], x: int) -> None:
        kind = self.SPECIALS[i % len(self.SPECIALS)]
        turn = i // len(self.SPECIALS)
        q = self.quote
        if kind == "non_ascii_title":
            row[TITLE] = row[ORIG_TITLE] = q(NON_ASCII_TITLES[turn % len(NON_ASCII_TITLES)])
        elif kind == "empty_title":
            row[TITLE] = ""
        elif kind == "mdy_date":
            row[RELEASE_DATE] = ["5/3/1995", "12/31/1955", "7/4/2001"][turn % 3]
        elif kind == "empty_date":
            row[RELEASE_DATE] = ""
        elif kind == "overview_lf":
            row[OVERVIEW] = q("First line of the plot.\nSecond line, after a break.\n\nA new paragraph.")
        elif kind == "overview_crlf":
            row[OVERVIEW] = q("Typed on Windows.\r\nSecond line, with a comma.\r\n")
        elif kind == "overview_quotes":
            row[OVERVIEW] = q('He said "hi", then left. Nobody, not even "the doctor", saw him again.')
        elif kind == "awkward_title":
            row[TITLE] = row[ORIG_TITLE] = q(AWKWARD_TITLES[turn % len(AWKWARD_TITLES)])
        elif kind == "no_languages":
            row[LANGUAGES] = "[]"
        elif kind == "many_languages":
            row[LANGUAGES] = q(str(["English", "Français", "Español", "Pусский", "日本語"][turn % 2 :]))
        elif kind == "bad_number":
            row[BAD_NUMBER_FIELDS[turn % 5]] = self.bad_numbers[turn % 3]
        elif kind == "bad_date":
            row[RELEASE_DATE] = self.bad_dates[turn % 2]
        elif kind == "duplicate":
            if self.recent:
                row[TITLE], row[RELEASE_DATE] = self.recent[x % len(self.recent)]
        elif kind == "old_date":
            row[RELEASE_DATE] = ["1927-10-06", "1955-12-31", "1969-07-20"][turn % 3]
        elif kind == "empty_runtime":
            row[RUNTIME] = ""


def generate_movies(
    path: str,
    rows: int | None = None,
    size_mb: float | None = None,
    seed: int = 0,
    newline: str = "\r\n",
    *,
    progress: bool = False,
) -> dict:
    """Write a movie CSV with exactly `rows` data rows, or at least `size_mb` MiB; returns {"rows", "bytes"}."""
    source = MovieRows(seed, newline)
    return write_csv(
        path, MOVIE_HEADER, source.chunk, rows=rows, size_mb=size_mb, newline=newline, progress=progress, label="movies"
    )


# ---------------------------------------------------------------------------------------------------------
# Plays: Song,Date,Number of Plays. Tens of millions of short rows, so rows are built a block at a time
# with Arrow compute (take from prebuilt cell arrays, one element-wise join), not in a Python loop.
# ---------------------------------------------------------------------------------------------------------

SONG_FORMS = (
    "{a} {n}",
    "The {a} {n}",
    "{n} of {m}",
    "{x}'s {n}",
    "{n} in the {m}",
    "{a} {n} Blues",
    "Take Me to the {n}",
    "Don't Stop the {n}",
    "Love Me Like a {n}",
    "{a} {n} ({v})",
    "Dancing in the {n}",
    "{a} Little {n}",
    "Goodbye {a} {n}",
    "{x} and the {n}",
    "{a} {n} (feat. {x})",
    "Waiting for the {n}",
    "Somewhere in the {n}",
    "I Still Remember {x}",
    "All the {a} {n}s",
    "{n} on the {a} {m}",
)
QUOTED_SONG_FORMS = (
    "{n}, {m}, {n}",
    "Hello, {x}",
    'Say "{n}"',
    'The "{a}" {n}',
    "{a}, {a} {n}",
    'Oh {x}, "{n}"',
)  # commas and quotes: these need CSV quoting
NON_ASCII_SONGS = (
    "Café Tacvba",
    "Mañana",
    "Пусть",
    "Bésame Mucho",
    "Déjà Vu",
    "Für Elise",
    "Señorita",
    "Mädchen",
    "Água de Beber",
    "Ça plane pour moi",
    "Группа крови",
    "Кукушка",
    "La Bohème",
    "Niño Perdido",
    "Sakura 桜",
    "Jóga",
    "Pусская зима",
)
NON_ASCII_SONG_FORMS = ("{u}", "{u} ({v})", "{u} {n}")
SONG_VERSIONS = ("Live", "Remix", "Acoustic", "Demo", "Radio Edit", "Remastered", "Reprise")
SONG_LENGTHS = range(13, 26)  # with the few short bare NON_ASCII_SONGS: rows average ~34 bytes
BAD_PLAY_DATES = ("2020-02-30", "2020/01/05", "yesterday", "20201301", "")
BAD_PLAY_COUNTS = ("-3", "1.5", "many", "")
BAD_PLAY_KINDS = ("empty_song", "bad_date", "bad_plays", "field_count")
BIG_PLAYS_RATE = 0.001  # share of rows with a count far above the usual 0..1000, up to 10**12
PLAYS_BLOCK = 65536  # rows built per Arrow pass


def _build_songs(rng: random.Random, n: int) -> list[str]:
    """n distinct song titles, mostly 13 to 25 characters; ~2.5% need CSV quoting, ~7% are non-ASCII."""
    c = rng.choice
    names: dict[str, None] = {}
    misses = 0
    while len(names) < n and misses < 1000:  # stop once the forms run dry; numbered copies fill the rest
        u = rng.random()
        forms = QUOTED_SONG_FORMS if u < 0.02 else NON_ASCII_SONG_FORMS if u < 0.04 else SONG_FORMS
        form = c(forms)
        name = form.format(
            a=c(ADJECTIVES), n=c(NOUNS), m=c(NOUNS), x=c(NAMES), v=c(SONG_VERSIONS), u=c(NON_ASCII_SONGS)
        )
        if (len(name) in SONG_LENGTHS or form == "{u}") and name not in names:
            names[name] = None
            misses = 0
        else:
            misses += 1
    songs = list(names)
    base = len(songs)
    songs += [f"{songs[i % base]} {i // base + 1}" for i in range(base, n)]
    return songs


class PlayRows:
    """Deterministic stream of play rows; `chunk(n)` returns the next n rows as UTF-8 CSV bytes.

    Rows are built PLAYS_BLOCK at a time and handed out in slices, so the stream depends only on the
    options, not on chunk sizes: a shorter file is a prefix of a longer one. Bad rows are spread evenly,
    one at a random place in each stretch of 1/bad_rate rows, and cycle through BAD_PLAY_KINDS.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        songs: int = 10_000,
        start: str | dt.date = "2020-01-01",
        days: int = 365,
        bad_rate: float = 0.0001,
        newline: str = "\n",
    ):
        if songs < 1 or days < 1:
            raise ValueError("songs and days must be >= 1")
        if not 0 <= bad_rate <= 1:
            raise ValueError("bad_rate must be between 0 and 1")
        first = start if isinstance(start, dt.date) else dt.date.fromisoformat(start)
        if days > dt.date.max.toordinal() - first.toordinal() + 1:
            raise ValueError(f"{days} days from {first} go past {dt.date.max}")
        days_ = [first + dt.timedelta(days=i) for i in range(days)]
        rng = random.Random(seed)
        q = self.quote = CsvQuoter(newline)
        self.songs = [q(s) for s in _build_songs(rng, songs)]
        # Half the rows write the day as YYYY-MM-DD, half as YYYYMMDD: pool index = day + days * style.
        self.dates = [d.isoformat() for d in days_] + [d.isoformat().replace("-", "") for d in days_]
        self.song_cells = pa.array([s + "," for s in self.songs], pa.string())
        self.date_cells = pa.array([d + "," for d in self.dates], pa.string())
        self.newline, self.end = newline, pa.scalar(newline, pa.string())
        self.nprng = np.random.default_rng(rng.getrandbits(128))
        self.rng = rng
        self.bad_rate = bad_rate
        self.bad_count = 0  # bad rows handed out so far
        self._bad_k = 0  # the next bad row is the k-th one; it is row self._bad_at (None: no bad rows at all)
        self._bad_at: int | None = self._bad_position(0) if bad_rate else None
        self._first = 0  # stream index of the current block's first row
        self._data = memoryview(b"")  # the current block's lines, back to back
        self._offsets = np.zeros(1, np.int64)  # where each line starts in _data, plus the end
        self._bad = np.zeros(0, np.int64)  # block positions of its bad rows, ascending
        self._pos = 0  # the next block row to hand out

    def _bad_position(self, k: int) -> int:
        lo, hi = math.ceil(k / self.bad_rate), math.ceil((k + 1) / self.bad_rate)
        return lo + int(self.rng.random() * (hi - lo))

    def _bad_line(self, k: int, song: str, date: str, plays: str) -> str:
        kind, turn = BAD_PLAY_KINDS[k % len(BAD_PLAY_KINDS)], k // len(BAD_PLAY_KINDS)
        fields: tuple[str, ...]  # three cells, or a wrong number of them
        if kind == "empty_song":
            fields = ("", date, plays)
        elif kind == "bad_date":
            fields = (song, self.quote(BAD_PLAY_DATES[turn % len(BAD_PLAY_DATES)]), plays)
        elif kind == "bad_plays":
            fields = (song, date, self.quote(BAD_PLAY_COUNTS[turn % len(BAD_PLAY_COUNTS)]))
        else:  # a song alone, no count, or a count split by a thousands separator
            fields = ((song,), (song, date), (song, date, plays, "500"))[turn % 3]
        return ",".join(fields) + self.newline

    def _next_block(self) -> None:
        rng, n = self.nprng, PLAYS_BLOCK
        self._first += len(self._offsets) - 1
        song = rng.integers(0, len(self.songs), n)
        date = rng.integers(0, len(self.dates), n)
        plays = rng.integers(0, 1001, n)
        big = np.flatnonzero(rng.random(n) < BIG_PLAYS_RATE)
        plays[big] = np.minimum(10.0 ** rng.uniform(3, 12.05, len(big)), 10**12)
        lines = pc.binary_join_element_wise(
            pc.take(self.song_cells, song),
            pc.take(self.date_cells, date),
            pa.array(plays).cast(pa.string()),
            self.end,
            "",
        )
        where: list[int] = []  # block positions of the bad rows
        bad: list[str] = []  # their lines
        while self._bad_at is not None and self._bad_at < self._first + n:
            i = self._bad_at - self._first
            where.append(i)
            bad.append(self._bad_line(self._bad_k, self.songs[song[i]], self.dates[date[i]], str(plays[i])))
            self._bad_k += 1
            self._bad_at = self._bad_position(self._bad_k)
        if bad:
            mask = np.zeros(n, bool)
            mask[where] = True
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(bad, pa.string()))
        self._bad = np.array(where, np.int64)
        self._offsets = np.frombuffer(lines.buffers()[1], np.int32, n + 1, 4 * lines.offset).astype(np.int64)
        self._data = memoryview(lines.buffers()[2])
        self._pos = 0

    def chunk(self, n: int) -> bytes | memoryview:
        parts = []
        while n > 0:
            if self._pos == len(self._offsets) - 1:
                self._next_block()
            start, end = self._pos, min(self._pos + n, len(self._offsets) - 1)
            parts.append(self._data[self._offsets[start] : self._offsets[end]])
            self.bad_count += int(np.searchsorted(self._bad, end) - np.searchsorted(self._bad, start))
            n -= end - start
            self._pos = end
        return parts[0] if len(parts) == 1 else b"".join(parts)


def generate_plays(
    path: str,
    rows: int | None = None,
    size_mb: float | None = None,
    seed: int = 0,
    *,
    songs: int = 10_000,
    start: str | dt.date = "2020-01-01",
    days: int = 365,
    bad_rate: float = 0.0001,
    bom: bool = False,
    newline: str = "\n",
    progress: bool = False,
) -> dict:
    """Write a plays CSV with exactly `rows` data rows, or at least `size_mb` MiB.

    Each row is a song from a pool of `songs` titles, a day in [start, start + days) as YYYY-MM-DD or
    YYYYMMDD, and a play count; about `bad_rate` of the rows are malformed. The defaults give ~30 million
    rows per GB over ~3.6 million (song, day) pairs. Returns {"rows", "bytes", "bad_rows"}.
    """
    source = PlayRows(seed, songs=songs, start=start, days=days, bad_rate=bad_rate, newline=newline)
    result = write_csv(
        path,
        PLAYS_HEADER,
        source.chunk,
        rows=rows,
        size_mb=size_mb,
        newline=newline,
        progress=progress,
        label="plays",
        chunk_rows=PLAYS_BLOCK,
        bom=bom,
    )
    return {**result, "bad_rows": source.bad_count}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


T = TypeVar("T")  # what an argparse type parses its text to


def _checked(cast: Callable[[str], T], ok: Callable[[T], bool], message: str) -> Callable[[str], T]:
    """An argparse type: `cast` the text, then reject values for which `ok` is false with `message`."""

    def parse(text: str) -> T:
        value = cast(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(message)
        return value

    parse.__name__ = cast.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


_non_negative_int = _checked(int, lambda v: v >= 0, "must be >= 0")
_positive_int = _checked(int, lambda v: v > 0, "must be > 0")
_positive_float = _checked(float, lambda v: v > 0, "must be > 0")  # also rejects nan
_rate = _checked(float, lambda v: 0 <= v <= 1, "must be between 0 and 1")


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def add_output_args(parser: argparse.ArgumentParser, newline: str = "crlf") -> None:
    """Arguments every generator subcommand shares: output path, size, seed, newline, progress."""
    parser.add_argument("output", help='CSV file to write ("-" for stdout)')
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--rows", type=_non_negative_int, help="write exactly this many data rows")
    size.add_argument("--size-mb", type=_positive_float, help="write rows until the file is at least this many MiB")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument(
        "--newline", choices=sorted(NEWLINES), default=newline, help=f"line terminator (default {newline})"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress line even if stderr is not a tty")


def run_generator(name: str, func: Callable[..., dict], args: argparse.Namespace, **options) -> int:
    """Run one generator with the shared arguments plus its own `options`; log the one-line summary."""
    start = time.monotonic()
    try:
        result = func(
            args.output,
            rows=args.rows,
            size_mb=args.size_mb,
            seed=args.seed,
            newline=NEWLINES[args.newline],
            progress=show_progress(args.progress),
            **options,
        )
    except OSError as exc:
        log.error("%s: cannot write %s: %s", name, args.output, exc)
        return 1
    except ValueError as exc:  # options argparse cannot check alone, e.g. --start plus --days past 9999
        log.error("%s: %s", name, exc)
        return 2
    elapsed = time.monotonic() - start
    mib = result["bytes"] / MIB
    bad = f" ({result['bad_rows']} bad)" if "bad_rows" in result else ""
    log.info(
        "wrote %d rows%s, %.1f MiB to %s in %.1fs (%.1f MiB/s)",
        result["rows"],
        bad,
        mib,
        args.output,
        elapsed,
        mib / max(elapsed, 1e-9),
    )
    return 0


def build_parser(prog: str = "python -m moviecat.generate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Generate realistic CSV test files, streamed and reproducible."
    )
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    movies = sub.add_parser("movies", help="movie catalogue CSV (the upload format of /api/v1/upload)")
    add_output_args(movies)
    movies.set_defaults(run=lambda args: run_generator("movies", generate_movies, args))
    plays = sub.add_parser("plays", help="song plays CSV: Song,Date,Number of Plays")
    add_output_args(plays, newline="lf")
    plays.add_argument("--songs", type=_positive_int, default=10_000, help="distinct songs (default 10000)")
    plays.add_argument("--days", type=_positive_int, default=365, help="distinct days (default 365)")
    plays.add_argument("--start", type=_iso_date, default="2020-01-01", help="first day (default 2020-01-01)")
    plays.add_argument("--bad-rate", type=_rate, default=0.0001, help="share of malformed rows (default 0.0001)")
    plays.add_argument("--bom", action="store_true", help="start the file with a UTF-8 byte order mark")
    plays.set_defaults(
        run=lambda args: run_generator(
            "plays",
            generate_plays,
            args,
            songs=args.songs,
            days=args.days,
            start=args.start,
            bad_rate=args.bad_rate,
            bom=args.bom,
        )
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m moviecat.generate") -> int:
    args = build_parser(prog).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # the summary line is the point of running it; keep it if root is quieter
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
