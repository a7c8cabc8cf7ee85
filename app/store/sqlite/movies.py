"""The catalogue in the SQLite file: one row per movie, a typed column per field of the contract.

A user can read the file with `sqlite3` (`SELECT title, year FROM movies WHERE ...`): numbers are INTEGER or
REAL, `release_date` is ISO-8601 text (`1995-10-20`, which sorts as dates do), `languages` a JSON array (`[]`
and NULL kept apart), and the columns a file carries beyond the contract (app/jobs/movies/schema.py) one JSON
object in `extra`. What no typed column can hold exactly (-0.0, NaN, a field of another type, a field missing
from a document) is kept in `odd`, as BSON, so every movie reads back equal to what MongoDB returns for it.

Pages are served from an index per filter × sort (app/store/movies.py), each ending in `_id` as MongoDB's sort
does; how many movies match comes from `movie_counts`, kept per (year, original_language) in the write
transaction, so no count scans the catalogue.

A big load (`loading()`, around an upload) drops those indexes and builds them again when it ends: each movie then
goes into one B-tree instead of 13, and each index is built once, by a sort. Pages answer meanwhile, unindexed.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from operator import itemgetter

import bson
from bson.raw_bson import RawBSONDocument

from app.store import movies as catalogue

log = logging.getLogger(__name__)

FIELDS = catalogue.FIELDS  # the contract's fields, each a typed column, in the table's order
_TEXT: tuple[str, ...] = ("homepage", "original_language", "original_title", "overview", "status", "title")
_TEXT += ("production_company_id", "genre_id")
_SQL_TYPE = {"vote_average": "REAL", "release_date": "TEXT", "languages": "TEXT", "year": "INTEGER"}
_SQL_TYPE |= {name: "TEXT" for name in _TEXT}
_SQL_TYPE |= {name: "INTEGER" for name in ("budget", "revenue", "runtime", "vote_count")}
_PY_TYPE = {"REAL": float, "INTEGER": int, "TEXT": str}
# The Python type each field has in a document (as bson.decode gives it); None is always allowed.
TYPES = {name: _PY_TYPE[_SQL_TYPE[name]] for name in FIELDS} | {"release_date": datetime, "languages": list}
ROW = ("_id",) + FIELDS + ("extra", "odd")  # the table's columns in order
_VALUES = itemgetter(*FIELDS)
_RELEASE, _LANGUAGES, _VOTE = (FIELDS.index(name) for name in ("release_date", "languages", "vote_average"))
_YEAR, _LANGUAGE = FIELDS.index("year") + 1, FIELDS.index("original_language") + 1  # in a row, after `_id`
_COUNTED = itemgetter(_YEAR, _LANGUAGE)
_NOTHING = b""  # movie_counts' key for a NULL year or language: a BLOB equals no year and no language code
IN_CHUNK = 10_000  # ids per `_id IN (...)` look-up, below SQLite's 32,766 parameters
# SQLite's page cache for the connection that writes movies (KiB; the default is 2 MB): each movie goes into
# the `_id` B-tree at a random place (and into 9 more when the page indexes are kept), so the cache decides how many
# pages are read again per batch. Measured once, ad hoc, on a quiet machine (85,000 movies of a 30 MB file, 1,000 a
# batch, same batches): 2,091 rows/s with the default, 2,663 with 256 MB. An index build's sort holds as much again
# before it spills to a temporary file, so the worker's RSS grows by up to twice this: 256 MB made it peak at
# 608 MiB on a 1 GB file, over the 500 MB bound (docs/performance.md).
WRITE_CACHE_KIB = 128 * 1024
# Pages the WAL may hold before a commit copies it into the file, during a bulk load (SQLite's default: 1,000, 4 MB).
# Each commit appends every page it changed, and a random `_id` puts most of a batch in pages of their own, so with
# the default nearly every commit also ran a checkpoint (and its fsync). Measured ad hoc, 400,000 rows, 1,000 a
# commit: 13.1 s CPU and 3.0 GB written with 1,000; 11.2 s and 2.1 GB with 10,000.
LOAD_CHECKPOINT_PAGES = 10_000
# When a load drops the page indexes (see loading()). Below BULK_MIN_ROWS the 13 B-trees a small load touches stay
# in the write cache, so dropping gains little while every page meanwhile is a scan and a sort.
BULK_MIN_ROWS = 50_000
# And the load at least BULK_MIN_SHARE times the catalogue: the indexes are rebuilt over the whole catalogue, so a
# small load into a big catalogue would pay for sorting millions of stored movies to save writing a few.
BULK_MIN_SHARE = 1.0


def _filters(year: int | None, language: str | None) -> tuple[list[str], list]:
    """The API's filters as SQL conditions (column first, as the index names read them) and their parameters."""
    where: list[str] = []
    params: list[int | str] = []
    if year is not None:
        where.append("year = ?")
        params.append(year)
    if language is not None:
        where.append("original_language = ?")
        params.append(language)
    return where, params


def _index_name(columns: tuple[str, ...]) -> str:
    return "movies_by_" + "_".join(c.lstrip("_") for c in columns)


def _index_columns() -> list[tuple[str, ...]]:
    """One index per filter × sort, as catalogue.index_specs() asks, every field ascending (SQLite walks an index
    backwards for order -1); but a year's index also serves that year and a language: it ends in
    `original_language` after `_id`, so the language is read from the index entry while it is walked in the page's
    order (a year holds ~1.3% of the catalogue). Nine indexes instead of twelve: a bulk load builds each one by a
    sort of the whole catalogue, the largest part of its time (docs/performance.md)."""
    columns = []
    for spec in catalogue.index_specs():
        names = tuple(name for name, _ in spec)
        if names[0] == "year" and names[1] == "original_language":
            continue  # the year's index, below
        columns.append(names + ("original_language",) if names[0] == "year" else names)
    return columns


def _index_for(year: int | None, language: str | None, field: str) -> str:
    """The index that serves a page: the year's when a year is asked, else the language's, else the sort's."""
    if year is not None:
        return _index_name(("year", field, "_id", "original_language"))
    if language is not None:
        return _index_name(("original_language", field, "_id"))
    return _index_name((field, "_id"))


# The page indexes: name -> its CREATE statement (SqliteStore.setup() makes the missing ones).
INDEXES = {
    _index_name(cols): f"CREATE INDEX IF NOT EXISTS {_index_name(cols)} ON movies ({', '.join(cols)})"
    for cols in _index_columns()
}
# Indexes of files made before (one per year × language × sort, and the year's without the language): dropped.
_FORMER = [
    _index_name(tuple(name for name, _ in spec))
    for spec in catalogue.index_specs()
    if spec[0][0] == "year" and _index_name(tuple(name for name, _ in spec)) not in INDEXES
]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS movies (\n  _id TEXT PRIMARY KEY NOT NULL,\n"
    + "".join(f"  {name} {_SQL_TYPE[name]},\n" for name in FIELDS)
    + "  extra TEXT,  -- the file's columns beyond the contract: a JSON object, in the file's order\n"
    + "  odd BLOB  -- BSON of what no typed column holds exactly (-0.0, NaN, another type, a missing field)\n);\n"
    + "".join(f"{sql};\n" for sql in INDEXES.values())
    + "".join(f"DROP INDEX IF EXISTS {name};\n" for name in _FORMER)
    + "CREATE TABLE IF NOT EXISTS movie_counts (\n"
    "  year, original_language, n INTEGER NOT NULL,  -- a NULL key is stored as X'': UNIQUE sees NULLs apart\n"
    "  PRIMARY KEY (year, original_language)\n) WITHOUT ROWID;\n"
    "CREATE INDEX IF NOT EXISTS movie_counts_by_language ON movie_counts (original_language);\n"
    "CREATE TABLE IF NOT EXISTS movie_total (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL);\n"
    "INSERT OR IGNORE INTO movie_total VALUES (1, 0)"
)

_COLUMN_LIST = ", ".join(ROW)
_INSERT = f"INSERT INTO movies ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(ROW))})"
_UPDATE = f"UPDATE movies SET {', '.join(f'{name} = ?' for name in ROW[1:])} WHERE rowid = ?"
_COUNT = (
    "INSERT INTO movie_counts VALUES (?, ?, ?) ON CONFLICT (year, original_language) DO UPDATE SET n = n + excluded.n"
)
JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode


class Movies:
    form = "sqlite"  # the ingest sends rows of the table, made in its helper (app/jobs/movies/rows.py)

    def __init__(self, store):
        self.store = store
        self._plain: set[tuple] = set()  # type signatures of documents whose every field fits its column
        self._languages: dict[tuple, str] = {}  # languages lists as JSON text: few distinct ones, many repeats

    # -- writes -----------------------------------------------------------------------------------------

    def write(
        self, documents: list[RawBSONDocument], chunk: int = 0, absent: tuple[str, ...] = (), ids: list | None = None
    ) -> tuple[int, int]:
        """Store a batch of movies in one transaction; returns (inserted, updated) (interface.Movies.write)."""
        if not documents:
            return 0, 0
        if type(documents[0]) is tuple:  # the ingest's rows (form "sqlite"), made in its helper process
            made = documents
            docs = None
            ids = [row[0] for row in made]
        else:
            docs = bson.decode_all(b"".join(doc.raw for doc in documents))
            ids = [doc["_id"] for doc in docs] if ids is None else ids
        last = {key: i for i, key in enumerate(ids)}
        repeats = len(ids) - len(last)  # earlier occurrences: each one an update by the one after it
        if docs is None:
            rows = {key: made[i] for key, i in last.items()}  # in the batch's order: the last one wins
        else:
            rows = {key: self._row(docs[i]) for key, i in last.items()}
        self.store.conn.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")  # this connection's; a no-op once set
        with self.store.transaction() as conn:
            stored = self._stored(conn, list(rows))
            new = [row for key, row in rows.items() if key not in stored]
            again = []  # (old row, new row, rowid) of stored movies that change
            for key, (rowid, old) in stored.items():
                row = rows[key] if not absent else self._row(_merged(self._doc(old), self._doc(rows[key]), absent))
                if row != old:
                    again.append((old, row, rowid))
            conn.executemany(_INSERT, new)
            conn.executemany(_UPDATE, [row[1:] + (rowid,) for _, row, rowid in again])
            self._count(conn, new, again)
        return len(new), repeats + len(stored)

    @contextmanager
    def loading(self, rows: int) -> Iterator[None]:
        """A load of about `rows` movies (interface.Movies.loading): when it is big next to the catalogue, the page
        indexes are dropped for its length and built again at its end, each in its own transaction.

        Two loads at once: each rebuilds what is missing when it ends (CREATE INDEX IF NOT EXISTS), so the first
        to end builds the indexes while the other still writes (correct, that one slower), and the last to end
        finds them all there or builds them. No count of loads is kept in the file: a crashed load would leave
        it wrong, and nobody would rebuild; here SqliteStore.setup() makes whatever is missing at the next start.
        """
        if rows < BULK_MIN_ROWS or rows < BULK_MIN_SHARE * self.count():
            yield
            return
        log.info("a load of about %d movies: the page indexes are dropped until it ends", rows)
        conn = self.store.conn
        try:
            self._drop_indexes()
            _checkpoint_every(conn, LOAD_CHECKPOINT_PAGES)
            yield
        except BaseException:
            try:
                self._build_indexes()
            except Exception:  # the load's own error is the one to report; setup() builds them at the next start
                log.exception("the page indexes could not be built again after a failed load")
            raise
        finally:
            _checkpoint_every(conn, 1000)
        self._build_indexes()

    def _drop_indexes(self) -> None:
        for name in INDEXES:  # each its own short transaction: other writers get the file in between
            with self.store.transaction() as conn:
                conn.execute(f"DROP INDEX IF EXISTS {name}")

    def _build_indexes(self) -> None:
        """One index per transaction, so heartbeats, leases and other uploads write between two builds."""
        self.store.conn.execute(f"PRAGMA cache_size = -{WRITE_CACHE_KIB}")  # the sort's memory before it spills
        start = time.perf_counter()
        for name, sql in INDEXES.items():
            t = time.perf_counter()
            with self.store.transaction() as conn:
                conn.execute(sql)
            log.debug("index %s built in %.1f s", name, time.perf_counter() - t)
        log.info("the page indexes built again in %.1f s", time.perf_counter() - start)

    def _stored(self, conn, keys: list) -> dict:
        """The stored movies among `keys`: _id -> (rowid, row)."""
        found = {}
        for start in range(0, len(keys), IN_CHUNK):
            part = keys[start : start + IN_CHUNK]
            sql = f"SELECT rowid, {_COLUMN_LIST} FROM movies WHERE _id IN ({', '.join('?' * len(part))})"
            for rowid, *row in conn.execute(sql, part):
                found[row[0]] = (rowid, tuple(row))
        return found

    def _count(self, conn, new: list[tuple], again: list[tuple]) -> None:
        """movie_counts and movie_total follow the movies written (an update may change a movie's language)."""
        delta = Counter(map(_COUNTED, new))  # counted in C: a loop in Python was a tenth of a load's time
        for old, row, _ in again:
            before, after = (old[_YEAR], old[_LANGUAGE]), (row[_YEAR], row[_LANGUAGE])
            if before != after:
                delta[before] = delta.get(before, 0) - 1
                delta[after] = delta.get(after, 0) + 1
        conn.executemany(_COUNT, [(_key(y), _key(lang), n) for (y, lang), n in delta.items() if n])
        if new:
            conn.execute("UPDATE movie_total SET n = n + ?", (len(new),))

    def _row(self, doc: dict) -> tuple:
        """A document as the table's row: typed columns, then `extra` and `odd`."""
        key = doc["_id"]
        if type(key) is not str:
            raise TypeError(f"a movie's _id must be a string, not {type(key).__name__}")
        try:
            values = _VALUES(doc)
        except KeyError:
            return _odd_row(doc)
        signature = tuple(map(type, values))
        if signature not in self._plain:
            if not all(t is type(None) or t is TYPES[name] for t, name in zip(signature, FIELDS)):
                return _odd_row(doc)
            self._plain.add(signature)
        vote = values[_VOTE]
        if vote is not None and (vote != vote or (vote == 0 and math.copysign(1.0, vote) < 0)):
            return _odd_row(doc)  # NaN (SQLite stores NULL) or -0.0 (SQLite stores 0)
        values = list(values)
        if values[_RELEASE] is not None:
            values[_RELEASE] = _date_text(values[_RELEASE])
        languages = values[_LANGUAGES]
        if languages is not None:
            try:
                values[_LANGUAGES] = self._languages_text(languages)
            except (TypeError, ValueError):
                return _odd_row(doc)  # an item JSON cannot hold
        extra = None
        if len(doc) > len(FIELDS) + 1:
            others = {name: value for name, value in doc.items() if name not in _KNOWN}
            if not all(value is None or type(value) is str for value in others.values()):
                return _odd_row(doc)
            extra = JSON(others)
        return (key, *values, extra, None)

    def _languages_text(self, languages: list) -> str:
        if not set(map(type, languages)) <= _STR:
            return JSON(languages)  # not memoized: 1 and True are equal keys, but not the same JSON
        memo = tuple(languages)
        text = self._languages.get(memo)
        if text is None:
            if len(self._languages) >= 50_000:  # a file of ever new lists: keep the memory bounded
                self._languages.clear()
            text = self._languages[memo] = JSON(languages)
        return text

    # -- reads ------------------------------------------------------------------------------------------

    def page(
        self, year: int | None, language: str | None, sort_by: str, order: int, skip: int, limit: int
    ) -> tuple[AbstractContextManager[Iterator[dict]], int]:
        where, params = _filters(year, language)
        field = catalogue.SORT_FIELDS[sort_by]
        index = _index_for(year, language, field)
        direction = "ASC" if order == 1 else "DESC"
        sql = (
            f"SELECT {_COLUMN_LIST} FROM movies INDEXED BY {index}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {field} {direction}, _id {direction} LIMIT ? OFFSET ?"
        )
        total = self._total(year, language)
        return self._rows(sql, (*params, limit, skip), f" INDEXED BY {index}"), total

    @contextmanager
    def _rows(self, sql: str, params: tuple, indexed: str) -> Iterator[Iterator[dict]]:
        with self.store.reading() as conn:
            try:
                cursor = conn.execute(sql, params)
            except sqlite3.OperationalError as e:
                if "no such index" not in str(e):
                    raise
                # A load dropped it (loading()): the same answer from a scan and a sort, slower.
                cursor = conn.execute(sql.replace(indexed, ""), params)
            try:
                yield (self._doc(row) for row in cursor)
            finally:
                cursor.close()

    def _total(self, year: int | None, language: str | None) -> int:
        if year is None and language is None:
            return self.count()
        where, params = _filters(year, language)
        with self.store.reading() as conn:
            found = conn.execute(f"SELECT sum(n) FROM movie_counts WHERE {' AND '.join(where)}", params).fetchone()
        return found[0] or 0

    def count(self) -> int:
        with self.store.reading() as conn:
            return conn.execute("SELECT n FROM movie_total").fetchone()[0]

    @staticmethod
    def _doc(row: tuple) -> dict:
        """A row as the document MongoDB would return for the movie."""
        doc = dict(zip(ROW, row))
        extra, odd = doc.pop("extra"), doc.pop("odd")
        if doc["release_date"] is not None:
            doc["release_date"] = datetime.fromisoformat(doc["release_date"])
        if doc["languages"] is not None:
            doc["languages"] = json.loads(doc["languages"])
        if extra is not None:
            doc.update(json.loads(extra))
        if odd is not None:
            exact = bson.decode(odd)
            for name in exact["unset"]:
                del doc[name]
            doc.update(exact["set"])
        return doc


_KNOWN = frozenset(("_id",) + FIELDS)
_STR = {str}


def _checkpoint_every(conn: sqlite3.Connection, pages: int) -> None:
    try:
        conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
    except sqlite3.Error as e:  # never the error that matters: the load's own is
        log.warning("could not set the WAL's checkpoint interval: %s", e)


def _key(value):
    return _NOTHING if value is None else value


def _date_text(value: datetime) -> str:
    """`1995-10-20`, or with its time when it has one: ISO-8601 text sorts as the dates do (years 1-9999)."""
    if value.hour or value.minute or value.second or value.microsecond:
        return value.isoformat()
    return value.date().isoformat()


def _odd_row(doc: dict) -> tuple:
    """The slow way, for a document some field of which no typed column holds exactly: such a field's column
    holds NULL (or 0.0 for -0.0, so that it sorts as MongoDB sorts it), and `odd` the field itself, or that
    the document lacks it."""
    values, odd, unset = [], {}, []
    for name in FIELDS:
        value = doc.get(name)
        if name not in doc:
            unset.append(name)
        elif value is not None and type(value) is not TYPES[name]:
            odd[name], value = value, None
        elif name == "vote_average" and isinstance(value, float) and (value != value or value == 0):
            if value != value or math.copysign(1.0, value) < 0:
                odd[name] = value
            value = None if value != value else 0.0
        elif name == "release_date" and isinstance(value, datetime):
            value = _date_text(value)
        elif name == "languages" and value is not None:
            try:
                value = JSON(value)
                if json.loads(value) != doc[name]:
                    raise ValueError("not kept exactly")
            except (TypeError, ValueError):
                odd[name], value = doc[name], None
        values.append(value)
    extra = {name: value for name, value in doc.items() if name not in _KNOWN}
    plain = {name: value for name, value in extra.items() if value is None or type(value) is str}
    odd |= {name: value for name, value in extra.items() if name not in plain}
    exact = bson.encode({"set": odd, "unset": unset}) if odd or unset else None
    return (doc["_id"], *values, JSON(plain) if plain else None, exact)


def _merged(stored: dict, doc: dict, absent: tuple[str, ...]) -> dict:
    """MongoDB's `$set` of the fields the file has (all but `absent`) on the stored movie."""
    merged = dict(stored)
    merged.update((name, value) for name, value in doc.items() if name not in absent)
    return merged
