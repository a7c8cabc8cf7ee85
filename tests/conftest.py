"""Shared fixtures: an app wired to in-process MongoDB (mongomock) and Redis (fakeredis) stand-ins, and a
real MongoDB-compatible server (FerretDB) for the tests that need one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fakeredis
import pymongo
import pytest

from app import create_app
from app.config import load_config
from app.store.mongo import MongoStore
from app.store.sqlite import SqliteStore
from app.worker.loop import Worker
from tests.support import REPO, contract, free_port
from tests.support import ferretdb as ferretdb_support
from tests.support.auth import signed_in
from tests.support.clock import Clock, set_clock
from tests.support.ferretdb import FerretDB
from tests.support.mongomock_db import mongomock_client

SHARED_DATA = REPO / "tests" / "data"  # copies of ../shared/data, so a clone tests anywhere
SAMPLE_MOVIES = SHARED_DATA / "movies_data_assignment.head10.csv"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(what: str, why: str) -> None:
    """A service a test needs is missing: under CI that fails the test, elsewhere it skips with `why`."""
    if under_ci():
        pytest.fail(f"CI requires {what}: {why}")
    pytest.skip(why)


class RecordingProducer:
    """Stands in for the ZeroMQ producer in in-process API tests; the real one has tests of its own."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send(self, task_id: str, kind: str) -> bool:
        self.sent.append((task_id, kind))
        return True


@pytest.fixture(scope="session", autouse=True)
def answers_in_the_contract():
    """Every answer a test receives, from Flask's test client or the real server, is checked against the
    OpenAPI document (tests/support/contract.py): a test that gets an answer outside it fails."""
    with pytest.MonkeyPatch.context() as patch:
        contract.install(patch)
        yield


@pytest.fixture
def config(tmp_path):
    env = {
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "RESULT_FOLDER": str(tmp_path / "results"),
        "DATA_FOLDER": str(tmp_path / "data"),
        "ZMQ_PORT": str(free_port()),
        "ZMQ_INTAKE_PORT": str(free_port()),
        "HEARTBEAT_SECONDS": "1",
    }
    return load_config(env)


@pytest.fixture
def db():
    return mongomock_client()["test"]


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture
def producer():
    return RecordingProducer()


@pytest.fixture
def app(config, db, redis_client, producer):
    return create_app(config, store=db, redis_client=redis_client, producer=producer)


@pytest.fixture
def client(app):
    """A test client that sends an admin key with every request (tests of access control use `anonymous`)."""
    return signed_in(app)


@pytest.fixture
def anonymous(app):
    """A test client that sends no credentials."""
    return app.test_client()


@pytest.fixture
def worker(config, db):
    return Worker(config, store=db, name="test-worker")


@pytest.fixture
def upload_dir(config) -> Path:
    return Path(config.UPLOAD_FOLDER)


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory) -> FerretDB:
    """One FerretDB server (SQLite backend, a temporary data folder, a free port) for the whole session."""
    why = ferretdb_support.available()
    if why:
        require("FerretDB", why)
    server = FerretDB(tmp_path_factory.mktemp("ferretdb")).start()
    yield server
    server.stop()


@pytest.fixture
def ferret_db(ferretdb):
    """A database of its own on the session's FerretDB, dropped afterwards."""
    client = pymongo.MongoClient(ferretdb.uri, serverSelectionTimeoutMS=10_000)
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
    client.close()


def mongo_database(kind: str, request):
    """A fresh database of the MongoDB store: mongomock's (the fast double) or the session's FerretDB's."""
    if kind == "mongomock":
        return mongomock_client()[f"t_{uuid.uuid4().hex[:12]}"]
    return request.getfixturevalue("ferret_db")


@pytest.fixture
def sqlite_store(tmp_path):
    """The SQLite store on a fresh file of its own, set up as at a start."""
    made = SqliteStore(str(tmp_path / "data" / "service.sqlite3"))
    made.setup()
    yield made
    made.close()


@pytest.fixture(params=["sqlite", "mongomock", "ferretdb"])
def store(request):
    """The same test on every store, set up as at a start: SQLite (the embedded default), and the MongoDB store
    over mongomock (its fast double) and over a real server (FerretDB)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store")
    made = MongoStore(mongo_database(request.param, request))
    made.setup()
    return made


@pytest.fixture(params=["mongomock", "ferretdb"])
def mongo_db(request):
    """For tests about MongoDB itself: the Database (no indexes yet), on the stand-in and on a real server."""
    return mongo_database(request.param, request)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The task records' clock, moved by the test (tests/support/clock.py)."""
    return set_clock(monkeypatch, Clock())


STORES = ("sqlite", "mongomock", "ferretdb")
STORE_PARAMS = ("store", "mongo_db", "reference")  # the parameters whose values name a store


def _stores_of(item) -> set[str]:
    """Which stores a test talks to: "sqlite" (the SQLite store), "ferretdb" (a real server), "mongomock"."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    found = {params[name] for name in STORE_PARAMS if params.get(name) in STORES}
    names = set(getattr(item, "fixturenames", ()))
    if names & {"ferretdb", "ferret_db"}:
        found.add("ferretdb")
    if "db" in names:
        found.add("mongomock")
    if "sqlite_store" in names:
        found.add("sqlite")
    return found


HEAVY = ("slow", "server", "browser", "ferretdb")  # the tiers make check leaves out


def _heavy_first(items: list) -> list:
    """The files with the most heavy tests first, each file's tests together and in their order: under
    pytest-xdist (--dist loadfile) a file is one unit of work, handed out in this order, so the long files start
    at once instead of ending the run on one worker while the other idles."""
    by_file: dict[str, list] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    heavy = {path: sum(any(t.get_closest_marker(m) for m in HEAVY) for t in tests) for path, tests in by_file.items()}
    return [item for path in sorted(by_file, key=lambda p: -heavy[p]) for item in by_file[path]]


def pytest_collection_modifyitems(config, items):
    for item in items:
        for store in _stores_of(item):
            item.add_marker(store)
    items[:] = _heavy_first(items)


_ran: dict[str, int] = {}


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        for store in STORES:
            if store in report.keywords:
                _ran[store] = _ran.get(store, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if _ran:
        version = ferretdb_support.version() if ferretdb_support.available() is None else "not built"
        terminalreporter.write_line(
            f"stores: {_ran.get('sqlite', 0)} passed tests ran on the SQLite store, "
            f"{_ran.get('ferretdb', 0)} on FerretDB {version} (SQLite), "
            f"{_ran.get('mongomock', 0)} on mongomock (the rest need no store, or run the service on its own file)"
        )
