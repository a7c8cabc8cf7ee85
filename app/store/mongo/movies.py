"""Movies in MongoDB's `movies` collection: written insert-first, read a page at a time through its indexes.

Why insert first, and what each server does with the `_id` index: docs/stores.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.errors import BulkWriteError

from app.store import movies

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
REPLY_WITHOUT_COUNTS_TRIES = 3  # a lone upsert that lost a race matches the winner's movie on its next try


class Movies:
    form = "bson"  # what the ingest prepares for write() (interface.Movies.form)

    def __init__(self, collection: Collection):
        self.collection = collection

    def write(
        self, documents: list[RawBSONDocument], chunk: int = 0, absent: tuple[str, ...] = (), ids: list | None = None
    ) -> tuple[int, int]:
        return write_movies(self.collection, documents, chunk, absent, ids)

    def page(
        self, year: int | None, language: str | None, sort_by: str, order: int, skip: int, limit: int
    ) -> tuple[AbstractContextManager[Iterator[dict]], int]:
        query = movies.query(year, language)
        # Unfiltered, the collection's own count is exact enough and needs no scan.
        total = self.collection.count_documents(query) if query else self.collection.estimated_document_count()
        cursor = self.collection.find(query).sort(movies.sort_spec(sort_by, order)).skip(skip).limit(limit)
        return _closing(cursor), total

    def count(self) -> int:
        return self.collection.estimated_document_count()

    def loading(self, rows: int) -> AbstractContextManager[None]:
        return nullcontext()  # the server keeps its indexes through a load


@contextmanager
def _closing(cursor: Cursor) -> Iterator[Cursor]:
    with cursor:
        yield cursor


def write_movies(
    collection: Collection,
    documents: list[RawBSONDocument],
    chunk: int = 0,
    absent: tuple[str, ...] = (),
    ids: list | None = None,
) -> tuple[int, int]:
    """Store the movies, inserting first; returns (inserted, updated), counted per document given.

    A movie repeated in `documents` is stored as its last occurrence (the earlier ones count as updated).
    The movies are inserted in one unordered command; those refused as duplicate keys (stored before, or
    inserted by another upload meanwhile) are looked up in one query, and those that differ from the file are
    written again by `_id`, `chunk` per command (0: all in one): replaced whole, or, when the file lacks the
    fields `absent`, given only the fields it has ($set). Replaying the same documents writes nothing.
    """
    ids = [doc["_id"] for doc in documents] if ids is None else ids
    last = {key: i for i, key in enumerate(ids)}
    keep = sorted(last.values())
    repeats = len(ids) - len(keep)  # earlier occurrences: each one an update by the one after it
    inserted, refused = _insert(collection, [documents[i] for i in keep])
    refused = [keep[i] for i in refused]
    stored = {} if absent else _stored(collection, [ids[i] for i in refused])
    # A movie stored byte for byte as the file has it (a re-upload, a replayed batch) is not written again:
    # it counts as updated, as a matched rewrite would, and costs no write (on FerretDB 1.24 a rewrite by
    # `_id` reads the collection to find its movie; the look-up above reads it once for the whole batch).
    again = [_rewrite(documents[i], ids[i], absent) for i in refused if stored.get(ids[i]) != documents[i].raw]
    step = chunk or len(again) or 1
    updated = repeats + len(refused) - len(again)
    for start in range(0, len(again), step):
        i, u = _write_chunk(collection, again[start : start + step])
        inserted, updated = inserted + i, updated + u
    return inserted, updated


def _insert(collection: Collection, documents: list[RawBSONDocument]) -> tuple[int, list[int]]:
    """Insert unordered; returns how many were inserted and the indexes refused as duplicate keys."""
    if not documents:
        return 0, []
    try:
        collection.insert_many(sendable(collection, documents), ordered=False)
        return len(documents), []
    except BulkWriteError as e:
        errors = e.details.get("writeErrors", [])
        if not errors or any(err.get("code") != DUPLICATE_KEY for err in errors):
            raise
        return e.details["nInserted"], sorted(err["index"] for err in errors)


def _stored(collection: Collection, keys: list) -> dict:
    """The stored movies among `keys`, each as its BSON bytes (mongomock keeps no bytes: its documents, encoded)."""
    if not keys:
        return {}
    if type(collection).__module__.startswith("mongomock"):  # `{_id: value}` is its one dictionary look-up
        found = (collection.find_one({"_id": key}) for key in keys)  # (tests/support/mongomock_db.py); `$in` scans
        return {doc["_id"]: bson.encode(doc) for doc in found if doc is not None}
    if not hasattr(collection, "with_options"):  # a writer that cannot be read back (a test's or a bench's
        return {}  # recording double): every refused movie is rewritten, which is correct, only slower
    raw = collection.with_options(codec_options=bson.CodecOptions(document_class=RawBSONDocument))
    return {doc["_id"]: doc.raw for doc in raw.find({"_id": {"$in": keys}})}


def sendable(collection: Collection, documents: list[RawBSONDocument]) -> list:
    """What `collection.insert_many` takes: the raw BSON itself, except on mongomock (the embedded stand-in),
    whose insert_many refuses RawBSONDocument: it gets the documents decoded."""
    if type(collection).__module__.startswith("mongomock"):
        return [bson.decode(doc.raw) for doc in documents]
    return documents


def _rewrite(document: RawBSONDocument, key, absent: tuple[str, ...]) -> ReplaceOne | UpdateOne:
    """The write of a movie that is already stored: the whole document, or only the fields the file has."""
    if not absent:
        return ReplaceOne({"_id": key}, document, upsert=True)
    carried = {name: value for name, value in bson.decode(document.raw).items() if name not in absent}
    del carried["_id"]
    # Were the movie gone meanwhile, the upsert still stores every field, the absent ones empty as on insert.
    return UpdateOne({"_id": key}, {"$set": carried, "$setOnInsert": dict.fromkeys(absent)}, upsert=True)


def _write_chunk(collection: Collection, requests: list) -> tuple[int, int]:
    try:
        return _upsert(collection, requests)
    except KeyError as e:
        if not _reply_without_counts(e):
            raise
        # FerretDB (1.24) answers a write that lost a duplicate-key race without the counts MongoDB
        # always sends, and pymongo fails reading that reply; how much of the command was applied is
        # unknown. Upserts are idempotent: write each again on its own, and count what those say (an
        # upsert the failed command had applied then counts as updated).
        log.warning(
            "the server's reply to a bulk write had no %r count; writing its %d upserts one by one",
            e.args[0],
            len(requests),
        )
    inserted = updated = 0
    for request in requests:
        for attempt in range(1, REPLY_WITHOUT_COUNTS_TRIES + 1):
            try:
                i, u = _upsert(collection, [request])
                break
            except KeyError as e:  # lost the race again: the movie now exists, so the next try matches it
                if not _reply_without_counts(e) or attempt == REPLY_WITHOUT_COUNTS_TRIES:
                    raise
        inserted, updated = inserted + i, updated + u
    return inserted, updated


def _reply_without_counts(error: KeyError) -> bool:
    return bool(error.args) and error.args[0] in ("n", "nModified")


def _upsert(collection: Collection, requests: list) -> tuple[int, int]:
    try:
        result = collection.bulk_write(requests, ordered=False)
        return result.upserted_count, result.matched_count
    except BulkWriteError as e:
        # A movie removed and re-inserted by another upload between our insert and this upsert: the upsert
        # loses the race. Replaying the losers turns them into updates; anything else is a real failure.
        errors = e.details.get("writeErrors", [])
        if not errors or any(err.get("code") != DUPLICATE_KEY for err in errors):
            raise
        inserted = e.details.get("nUpserted", 0)
        updated = e.details.get("nMatched", 0)
        retry = [requests[err["index"]] for err in errors]
        result = collection.bulk_write(retry, ordered=False)
        return inserted + result.upserted_count, updated + result.matched_count
