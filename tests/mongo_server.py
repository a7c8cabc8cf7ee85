"""A TEST-ONLY MongoDB server: the wire protocol in front of one in-memory mongomock_ng client.

Why: mongomock keeps its data inside one process, but crash/kill tests need several real processes
(an API and workers) sharing one database through pymongo and a `mongodb://` URI, and no mongod can be
installed here. (The PyPI package nx-27017 was tried: it applies `find_one_and_update` with an `$or`
filter to the wrong document and stores `$set` datetimes as strings.)

What it does: OP_MSG (and legacy OP_QUERY for a first handshake) with the commands pymongo 4.x sends
for CRUD, bulk writes, findAndModify, count/aggregate/distinct and indexes; query semantics are
mongomock's. Every command runs under one lock, so each is atomic and the server as a whole is
serializable, like a single mongod. `$db` picks the database on the shared client.

What it does not do: transactions, sessions (the hello reply omits logicalSessionTimeoutMinutes, so
pymongo sends no lsid), auth, TLS, compression, change streams, replica sets; nothing is persisted.

    with MongoServer() as server:
        client = pymongo.MongoClient(server.uri)

    python -m tests.mongo_server --port 27017     # serves until SIGTERM/SIGINT
"""
from __future__ import annotations

import argparse
import itertools
import logging
import signal
import socket
import socketserver
import struct
import sys
import threading
from datetime import datetime, timezone

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

log = logging.getLogger("tests.mongo_server")

CODEC = CodecOptions(tz_aware=False)  # datetimes round-trip as naive UTC, as with pymongo's defaults
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
BATCH_BYTES = 16 * 1024 * 1024 - 64 * 1024  # a reply batch stays under 16 MiB, like mongod's
_connection = threading.local()  # one handler thread per connection: its id, for hello


def _new_client():
    """The app's own embedded stand-in: mongomock with exact `{"_id": value}` look-ups made O(1)."""
    from app.mongo import embedded_client

    return embedded_client()


def _sort(spec):
    return list(spec.items()) if spec else None


def _is_operator_doc(update) -> bool:
    return bool(update) and next(iter(update)).startswith("$")


def _each_write(body: dict, field: str, apply) -> list[dict]:
    """apply(index, op) to each op of a write command, as mongod does: errors are collected per op, and
    an ordered command stops at the first."""
    errors = []
    for i, op in enumerate(body.get(field, [])):
        try:
            apply(i, op)
        except Exception as e:
            errors.append(_write_error(i, e))
            if body.get("ordered", True):
                break
    return errors


def _write_error(index: int, e: Exception) -> dict:
    code = getattr(e, "code", None) or 8
    if not isinstance(e, PyMongoError):
        log.warning("write %d failed: %r", index, e)
    details = getattr(e, "details", None) or {}
    return {"index": index, "code": code, "errmsg": str(e),
            **{k: details[k] for k in ("keyPattern", "keyValue") if k in details}}


class MongoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.client = _new_client()
        self.lock = threading.Lock()  # THE lock: one command at a time
        self._cursors: dict[int, tuple[str, list]] = {}
        self._cursor_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._sockets: set[socket.socket] = set()
        self._tcp = _TCPServer((host, port), _Handler)
        self._tcp.mongo = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._tcp.server_address[1]

    @property
    def uri(self) -> str:
        return f"mongodb://{self._tcp.server_address[0]}:{self.port}/?directConnection=true"

    def start(self) -> "MongoServer":
        self._thread = threading.Thread(target=self._tcp.serve_forever, args=(0.05,), name="mongo-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (clients see the server go away)."""
        if self._thread is not None:
            self._tcp.shutdown()
            self._thread = None
        self._tcp.server_close()
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "MongoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- commands ---------------------------------------------------------------------------------
    def run_command(self, body: dict) -> dict:
        """Run one command (a decoded request body) and return its reply document."""
        name = next(iter(body), "")
        handler = getattr(self, f"_cmd_{name.lower()}", None)
        if handler is None:
            return {"ok": 0.0, "errmsg": f"no such command: '{name}'", "code": 59, "codeName": "CommandNotFound"}
        try:
            with self.lock:
                reply = handler(self.client[body.get("$db", "admin")], body)
            return {**reply, "ok": 1.0}
        except Exception as e:  # an error reply, never a dead connection
            if not isinstance(e, PyMongoError):
                log.exception("command %s failed", name)
            return {"ok": 0.0, "errmsg": str(e), "code": getattr(e, "code", None) or 8}

    def _cmd_hello(self, db, body):
        return {
            "helloOk": True, "isWritablePrimary": True, "ismaster": True, "readOnly": False,
            "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
            "localTime": datetime.now(timezone.utc).replace(tzinfo=None), "minWireVersion": 0,
            "maxWireVersion": 21, "connectionId": getattr(_connection, "id", 0),
        }

    _cmd_ismaster = _cmd_hello

    def _cmd_ping(self, db, body):
        return {}

    _cmd_endsessions = _cmd_ping

    def _cmd_buildinfo(self, db, body):
        return {"version": "7.0.0", "versionArray": [7, 0, 0, 0], "maxBsonObjectSize": 16777216}

    def _cursor(self, ns: str, docs: list, batch_size: int = 0, single_batch: bool = False,
                key: str = "firstBatch", cursor_id: int = 0) -> dict:
        """A reply batch of at most `batch_size` documents and BATCH_BYTES; the rest waits for getMore."""
        batch, size = [], 0
        for doc in docs:
            if batch_size and len(batch) == batch_size:
                break
            raw = RawBSONDocument(bson.encode(doc, codec_options=CODEC))
            if batch and size + len(raw.raw) > BATCH_BYTES:
                break
            batch.append(raw)
            size += len(raw.raw)
        rest = docs[len(batch):]
        if rest and not single_batch:
            cursor_id = cursor_id or next(self._cursor_ids)
            self._cursors[cursor_id] = (ns, rest)
        else:
            cursor_id = 0
        return {"cursor": {"id": bson.Int64(cursor_id), "ns": ns, key: batch}}

    def _cmd_find(self, db, body):
        name = body["find"]
        limit = abs(body.get("limit") or 0)
        docs = list(db[name].find(body.get("filter") or {}, body.get("projection") or None,
                                  skip=body.get("skip") or 0, limit=limit, sort=_sort(body.get("sort"))))
        return self._cursor(f"{db.name}.{name}", docs, body.get("batchSize") or 0,
                            body.get("singleBatch", False) or (body.get("limit") or 0) < 0)

    def _cmd_getmore(self, db, body):
        cursor_id = int(body["getMore"])
        if cursor_id not in self._cursors:
            raise _Failure(f"cursor id {cursor_id} not found", 43)
        ns, docs = self._cursors.pop(cursor_id)
        return self._cursor(ns, docs, body.get("batchSize") or 0, key="nextBatch", cursor_id=cursor_id)

    def _cmd_killcursors(self, db, body):
        ids = [int(i) for i in body.get("cursors", [])]
        killed = [bson.Int64(i) for i in ids if self._cursors.pop(i, None) is not None]
        missing = [bson.Int64(i) for i in ids if i not in killed]
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []}

    def _cmd_insert(self, db, body):
        coll, n = db[body["insert"]], 0

        def insert(i, doc):
            nonlocal n
            coll.insert_one(doc)
            n += 1

        errors = _each_write(body, "documents", insert)
        return {"n": n, **({"writeErrors": errors} if errors else {})}

    def _cmd_update(self, db, body):
        coll, n, modified, upserted = db[body["update"]], 0, 0, []

        def update(i, op):
            nonlocal n, modified
            q, u, upsert = op.get("q") or {}, op["u"], bool(op.get("upsert"))
            if isinstance(u, list):
                raise _Failure("update pipelines are not supported by the test server", 9)
            if not _is_operator_doc(u):
                result = coll.replace_one(q, u, upsert=upsert)
            elif op.get("multi"):
                result = coll.update_many(q, u, upsert=upsert)
            else:
                result = coll.update_one(q, u, upsert=upsert)
            n += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                n += 1
                upserted.append({"index": i, "_id": result.upserted_id})

        errors = _each_write(body, "updates", update)
        reply = {"n": n, "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _cmd_delete(self, db, body):
        coll, n = db[body["delete"]], 0

        def delete(i, op):
            nonlocal n
            q = op.get("q") or {}
            n += (coll.delete_one(q) if op.get("limit") else coll.delete_many(q)).deleted_count

        errors = _each_write(body, "deletes", delete)
        return {"n": n, **({"writeErrors": errors} if errors else {})}

    def _cmd_findandmodify(self, db, body):
        coll = db[body["findAndModify"]]
        query, fields, update = body.get("query") or {}, body.get("fields") or None, body.get("update")
        if isinstance(update, list):
            raise _Failure("update pipelines are not supported by the test server", 9)
        old = coll.find_one(query, sort=_sort(body.get("sort")))  # the one document this command is about
        if body.get("remove"):
            value = coll.find_one_and_delete({"_id": old["_id"]}, projection=fields) if old else None
            return {"value": value, "lastErrorObject": {"n": 1 if old else 0}}
        replace = not _is_operator_doc(update)
        if old is not None:
            modify = coll.find_one_and_replace if replace else coll.find_one_and_update
            value = modify({"_id": old["_id"]}, update, projection=fields,
                           return_document=ReturnDocument.AFTER if body.get("new") else ReturnDocument.BEFORE)
            return {"value": value, "lastErrorObject": {"n": 1, "updatedExisting": True}}
        if not body.get("upsert"):
            return {"value": None, "lastErrorObject": {"n": 0, "updatedExisting": False}}
        result = (coll.replace_one if replace else coll.update_one)(query, update, upsert=True)
        value = coll.find_one({"_id": result.upserted_id}, fields) if body.get("new") else None
        return {"value": value,
                "lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": result.upserted_id}}

    def _cmd_count(self, db, body):
        options = {k: body[k] for k in ("skip", "limit") if body.get(k)}
        return {"n": db[body["count"]].count_documents(body.get("query") or {}, **options)}

    def _cmd_aggregate(self, db, body):
        name = body["aggregate"]
        docs = list(db[name].aggregate(body.get("pipeline", [])))
        return self._cursor(f"{db.name}.{name}", docs, (body.get("cursor") or {}).get("batchSize") or 0)

    def _cmd_distinct(self, db, body):
        return {"values": db[body["distinct"]].distinct(body["key"], body.get("query") or {})}

    def _cmd_createindexes(self, db, body):
        coll = db[body["createIndexes"]]
        created = body["createIndexes"] not in db.list_collection_names()
        before = len(coll.index_information())
        for spec in body.get("indexes", []):
            options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns")}
            coll.create_index(list(spec["key"].items()), **options)
        return {"numIndexesBefore": before, "numIndexesAfter": len(coll.index_information()),
                "createdCollectionAutomatically": created}

    def _cmd_listindexes(self, db, body):
        name = body["listIndexes"]
        return self._cursor(f"{db.name}.{name}", list(db[name].list_indexes()))

    def _cmd_listcollections(self, db, body):
        from mongomock_ng.filtering import filter_applies

        infos = [{"name": n, "type": "collection", "options": {}, "info": {"readOnly": False}}
                 for n in db.list_collection_names()]
        docs = [d for d in infos if filter_applies(body.get("filter") or {}, d)]
        return self._cursor(f"{db.name}.$cmd.listCollections", docs)

    def _cmd_create(self, db, body):
        db.create_collection(body["create"])
        return {}

    def _cmd_drop(self, db, body):
        db.drop_collection(body["drop"])
        return {"ns": f"{db.name}.{body['drop']}"}

    def _cmd_dropdatabase(self, db, body):
        self.client.drop_database(db.name)
        return {"dropped": db.name}

    def _cmd_listdatabases(self, db, body):
        names = self.client.list_database_names()
        if body.get("nameOnly"):
            return {"databases": [{"name": n} for n in names]}
        return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names], "totalSize": 0}


class _Failure(PyMongoError):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# -- wire protocol ----------------------------------------------------------------------------------
class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    mongo: MongoServer


def _decode_op_msg(payload: bytes) -> tuple[int, dict]:
    flags = struct.unpack_from("<I", payload)[0]
    end = len(payload) - (4 if flags & 1 else 0)  # bit 0: a CRC-32C checksum trails the sections
    body, sequences, pos = {}, {}, 4
    while pos < end:
        kind, size = payload[pos], struct.unpack_from("<i", payload, pos + 1)[0]
        section = payload[pos + 1:pos + 1 + size]
        if kind == 0:
            body = bson.decode(section, codec_options=CODEC)
        elif kind == 1:
            nul = section.index(b"\0", 4)
            ident = section[4:nul].decode()
            sequences.setdefault(ident, []).extend(bson.decode_all(section[nul + 1:], codec_options=CODEC))
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
        pos += 1 + size
    for ident, docs in sequences.items():
        body[ident] = body.get(ident, []) + docs
    return flags, body


def _decode_op_query(payload: bytes) -> dict:
    nul = payload.index(b"\0", 4)  # after flags: fullCollectionName, e.g. "admin.$cmd"
    db = payload[4:nul].decode().split(".", 1)[0]
    pos = nul + 1 + 8  # numberToSkip, numberToReturn
    size = struct.unpack_from("<i", payload, pos)[0]
    query = bson.decode(payload[pos:pos + size], codec_options=CODEC)
    if "$query" in query:
        query = query["$query"]
    return {**query, "$db": db}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        mongo, sock = self.server.mongo, self.request
        connection_id = _connection.id = next(mongo._connection_ids)
        mongo._sockets.add(sock)
        try:
            while True:
                header = _recv(sock, 16)
                if header is None:
                    return
                length, request_id, _, op_code = HEADER.unpack(header)
                payload = _recv(sock, length - 16)
                if payload is None:
                    return
                if op_code == OP_MSG:
                    flags, body = _decode_op_msg(payload)
                    reply = bson.encode(mongo.run_command(body), codec_options=CODEC)
                    if flags & 2:  # moreToCome: the client expects no answer (w=0)
                        continue
                    data = struct.pack("<iB", 0, 0) + reply
                elif op_code == OP_QUERY:
                    reply = bson.encode(mongo.run_command(_decode_op_query(payload)), codec_options=CODEC)
                    data, op_code = struct.pack("<iqii", 0, 0, 0, 1) + reply, OP_REPLY
                else:
                    log.warning("connection %d: unsupported opCode %d; closing it", connection_id, op_code)
                    return
                sock.sendall(HEADER.pack(16 + len(data), 0, request_id, op_code) + data)
        except OSError:
            pass  # the client (or stop()) closed the connection
        except Exception:
            log.exception("connection %d: protocol error; closing it", connection_id)
        finally:
            mongo._sockets.discard(sock)


def _recv(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Test-only in-memory MongoDB (mongomock behind the wire protocol)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = MongoServer(args.host, args.port).start()
    log.info("listening on %s", server.uri)
    while not stop.wait(0.5):
        pass
    server.stop()
    log.info("stopped")


if __name__ == "__main__":
    main()
