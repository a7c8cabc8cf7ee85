"""Time the ways to update movies that are already stored, on every store this machine can start.

    python bench/updates.py                       # 5,000 stored movies, 500 of them written again
    python bench/updates.py --stored 20000 --updates 1000 --stores ferretdb

For each store (mongomock, the embedded stand-in; FerretDB on SQLite; FerretDB on a throwaway PostgreSQL
cluster, tests/support/postgres.py) and each method, a fresh `movies` collection with the service's indexes
(app/store/mongo.ensure_indexes) gets `--stored` generated movies (the worker's own cleaning and BSON,
app/jobs/movies/prepare.py), then `--updates` of them, spread evenly over the collection, are written again
and timed, once with one field changed (`vote_count`, a later file) and once as they are (a re-upload).
Methods:

  replace_one      one `replace_one({_id}, doc)` per movie
  bulk_replace     `bulk_write` of `ReplaceOne({_id}, doc)`, --chunk per command
  bulk_set         `bulk_write` of `UpdateOne({_id}, {$set: fields})`, --chunk per command (a partial header)
  insert_first     the service's write (app/jobs/movies/ingest.write_movies): insert_many, every movie refused
                   as a duplicate key, then bulk_replace of the refused
  find_then_split  `find({_id: {$in}}, {_id: 1})`, then bulk_replace of those found (insert_many the rest)
  delete_insert    `delete_many({_id: {$in}})` then `insert_many`: no update command at all, but the movies
                   are missing to readers between the two, and lost if the worker dies there

After each method the stored bytes of every movie are compared with the documents written ("exact"), and
the collection must still hold `--stored` movies. Then `--updates` movies not stored yet are written by
`upsert` (bulk_write of `ReplaceOne(..., upsert=True)`, the service's write before insert-first) and by
`insert_first`. On FerretDB --chunk is the write chunk the service uses there (25, app/store/mongo.py
FERRETDB_WRITE_OPS: 100 matched updates in one command hang it); on mongomock a batch goes whole. Prints
documents/s per method and store, and each one's ratio to the fastest for the same movies on that store;
the last line is JSON. Figures move 20% or more between runs on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bson  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import ReplaceOne, UpdateOne  # noqa: E402

STORES = ("mongomock", "ferretdb", "ferretdb-postgresql")
METHODS = ("replace_one", "bulk_replace", "bulk_set", "insert_first", "find_then_split", "delete_insert")
NEW_METHODS = ("upsert", "insert_first")  # for movies not stored yet: the service's old write, and its new one
INSERT_CHUNK = 1000  # the service's BATCH_SIZE: how the stored movies are loaded (untimed)


def movies(count: int, seed: int) -> list[tuple[str, RawBSONDocument]]:
    """`count` distinct movies as the worker encodes them: (id, raw BSON)."""
    from app.jobs.movies.prepare import prepare
    from moviecat.generate import generate_movies

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/movies.csv"
        generate_movies(path, rows=int(count * 1.1) + 100, seed=seed)
        found: dict[str, RawBSONDocument] = {}
        for block in prepare(path, 1 << 20, 1000):
            for batch in block:
                data, bounds = batch.documents, batch.bounds
                for key, a, b in zip(batch.ids, bounds, bounds[1:]):
                    found[key] = RawBSONDocument(data[a:b])
    if len(found) < count:
        raise SystemExit(f"the generated file has {len(found)} distinct movies, fewer than {count}")
    return list(found.items())[:count]


def in_chunks(collection, requests: list, chunk: int) -> None:
    step = chunk or len(requests)
    for start in range(0, len(requests), step):
        collection.bulk_write(requests[start : start + step], ordered=False)


def replace_one(coll, items, chunk):
    for key, doc in items:
        coll.replace_one({"_id": key}, doc)


def bulk_replace(coll, items, chunk):
    in_chunks(coll, [ReplaceOne({"_id": key}, doc) for key, doc in items], chunk)


def bulk_set(coll, items, chunk):
    sets = []
    for key, doc in items:
        fields = bson.decode(doc.raw)
        del fields["_id"]
        sets.append(UpdateOne({"_id": key}, {"$set": fields}))
    in_chunks(coll, sets, chunk)


def insert_first(coll, items, chunk):
    from app.store.mongo.movies import write_movies

    write_movies(coll, [doc for _, doc in items], chunk, ids=[key for key, _ in items])


def upsert(coll, items, chunk):
    in_chunks(coll, [ReplaceOne({"_id": key}, doc, upsert=True) for key, doc in items], chunk)


def find_then_split(coll, items, chunk):
    from app.store.mongo.movies import sendable

    found = {d["_id"] for d in coll.find({"_id": {"$in": [key for key, _ in items]}}, {"_id": 1})}
    in_chunks(coll, [ReplaceOne({"_id": key}, doc) for key, doc in items if key in found], chunk)
    new = [doc for key, doc in items if key not in found]
    if new:
        coll.insert_many(sendable(coll, new), ordered=False)


def delete_insert(coll, items, chunk):
    from app.store.mongo.movies import sendable

    coll.delete_many({"_id": {"$in": [key for key, _ in items]}})
    coll.insert_many(sendable(coll, [doc for _, doc in items]), ordered=False)


def stored_bytes(coll, keys: list[str]) -> dict:
    from pymongo.collection import Collection

    if not isinstance(coll, Collection):
        return {d["_id"]: bson.encode(d) for d in coll.find({"_id": {"$in": keys}})}
    options = bson.CodecOptions(document_class=RawBSONDocument)
    return {d["_id"]: d.raw for d in coll.with_options(codec_options=options).find({"_id": {"$in": keys}})}


def changed(items: list) -> list:
    """The same movies with one more vote each: a row of a later file that really changes the movie."""
    out = []
    for key, doc in items:
        fields = bson.decode(doc.raw)
        fields["vote_count"] = (fields.get("vote_count") or 0) + 1
        out.append((key, RawBSONDocument(bson.encode(fields))))
    return out


def measure(db, method: Callable, stored: list, updates: list, chunk: int) -> dict:
    from app.store import mongo
    from app.store.mongo.movies import sendable

    db.movies.drop()
    mongo.ensure_indexes(db)
    docs = [doc for _, doc in stored]
    for start in range(0, len(docs), INSERT_CHUNK):
        db.movies.insert_many(sendable(db.movies, docs[start : start + INSERT_CHUNK]), ordered=False)
    start = time.perf_counter()
    method(db.movies, updates, chunk)
    seconds = time.perf_counter() - start
    keys = [key for key, _ in updates]
    exact = stored_bytes(db.movies, keys) == {key: doc.raw for key, doc in updates}
    exact = exact and db.movies.count_documents({}) == len({key for key, _ in stored + updates})
    return {"seconds": round(seconds, 3), "docs_per_sec": round(len(updates) / seconds, 1), "exact": exact}


class Store:
    """A store to measure on: its database, and how to stop it."""

    def __init__(self, name: str, root: Path):
        self.name, self.root, self.stops = name, root, []

    def __enter__(self):
        if self.name == "mongomock":
            from tests.support.mongomock_db import mongomock_client as embedded_client

            return embedded_client()["bench_updates"]
        import pymongo

        from tests.support.ferretdb import FerretDB

        url = None
        if self.name == "ferretdb-postgresql":
            from tests.support.postgres import PostgreSQL

            cluster = PostgreSQL().start()
            self.stops.append(cluster.stop)
            url = cluster.url
        server = FerretDB(self.root / self.name, postgresql_url=url).start()
        self.stops.insert(0, server.stop)
        client = pymongo.MongoClient(server.uri, socketTimeoutMS=600_000)
        self.stops.insert(0, client.close)
        return client["bench_updates"]

    def __exit__(self, *exc):
        for stop in self.stops:
            stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=5000, help="movies stored before the timed writes")
    parser.add_argument("--updates", type=int, default=500, help="stored movies written again, timed")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--chunk", type=int, default=None, help="updates per command (default: the service's)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    from app.store.mongo import FERRETDB_WRITE_OPS

    everything = movies(args.stored + args.updates, args.seed)
    stored, new = everything[: args.stored], everything[args.stored :]
    step = max(len(stored) // args.updates, 1)
    same = stored[::step][: args.updates]
    cases = {
        "changed": (changed(same), args.methods.split(",")),
        "same": (same, args.methods.split(",")),
        "new": (new, NEW_METHODS),
    }
    results: dict[str, dict] = {}
    print(
        f"{args.stored:,} stored movies; {len(same):,} of them (every {step}th) written again with one field"
        f" changed, and as they are; {len(new):,} new ones written; timed",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as tmp:
        for name in args.stores.split(","):
            chunk = args.chunk if args.chunk is not None else (0 if name == "mongomock" else FERRETDB_WRITE_OPS)
            with Store(name, Path(tmp)) as db:
                results[name] = {}
                for case, (items, methods) in cases.items():
                    for method in methods:
                        r = measure(db, globals()[method], stored, items, chunk)
                        results[name][f"{case}: {method}"] = r
                        print(f"  {name:20} {case:8} {method:16} {r}", flush=True)
    print()
    print(f"| movies written | method | {' | '.join(results)} |")
    print(f"|---|---|{'---|' * len(results)}")
    for case, (_, methods) in cases.items():
        for method in methods:
            cells = []
            for by_method in results.values():
                fastest = max(r["docs_per_sec"] for k, r in by_method.items() if k.startswith(case + ":"))
                r = by_method[f"{case}: {method}"]
                flag = "" if r["exact"] else " NOT EXACT"
                cells.append(f"{r['docs_per_sec']:,.0f}/s ({r['docs_per_sec'] / fastest:.2f}){flag}")
            print(f"| {case} | {method} | {' | '.join(cells)} |")
    print(json.dumps({"stored": args.stored, "updates": args.updates, "results": results}))


if __name__ == "__main__":
    main()
