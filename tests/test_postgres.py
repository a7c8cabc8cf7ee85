"""FerretDB on PostgreSQL, the third store the bench measures: a throwaway cluster (tests/support/postgres.py)
comes up as root or not, FerretDB's PostgreSQL handler answers on it and keeps what it is given, and the
cluster's folder is gone once it is stopped."""

from __future__ import annotations

import pymongo
import pytest

from tests.conftest import require
from tests.support import ferretdb as ferretdb_support
from tests.support import postgres as postgres_support
from tests.support.ferretdb import FerretDB
from tests.support.postgres import PostgreSQL

pytestmark = [pytest.mark.ferretdb, pytest.mark.server]


@pytest.fixture(scope="module")
def cluster():
    why = postgres_support.available()
    if why:
        require("PostgreSQL", why)
    with PostgreSQL(settings={"fsync": "off"}) as pg:
        yield pg


@pytest.fixture(scope="module")
def ferretdb_pg(cluster, tmp_path_factory):
    why = ferretdb_support.available()
    if why:
        require("FerretDB", why)
    server = FerretDB(tmp_path_factory.mktemp("ferretdb-pg"), postgresql_url=cluster.url).start()
    yield server
    server.stop()


def test_ferretdb_on_postgresql_answers_and_keeps_a_document(ferretdb_pg):
    assert ferretdb_pg.backend == "postgresql"
    client = pymongo.MongoClient(ferretdb_pg.uri, serverSelectionTimeoutMS=10_000)
    try:
        assert client.admin.command("ping")["ok"] == 1.0
        movies = client["t_pg"]["movies"]
        movies.insert_one({"_id": "tt1", "title": "Örnek", "year": 1999, "genres": ["Drama"]})
        assert movies.find_one({"_id": "tt1"}) == {"_id": "tt1", "title": "Örnek", "year": 1999, "genres": ["Drama"]}
        assert client["t_pg"].list_collection_names() == ["movies"]
    finally:
        client.drop_database("t_pg")
        client.close()


def test_the_data_lives_in_postgresql(ferretdb_pg, cluster):
    """The document went through FerretDB into the cluster, not into a SQLite file beside FerretDB."""
    client = pymongo.MongoClient(ferretdb_pg.uri, serverSelectionTimeoutMS=10_000)
    try:
        client["t_where"]["movies"].insert_one({"_id": "x"})
        assert not list(ferretdb_pg.data_dir.glob("*.sqlite"))
        out = cluster.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 't_where'")
        assert out == "1"
    finally:
        client.drop_database("t_where")
        client.close()


def test_a_stopped_cluster_leaves_nothing_behind():
    why = postgres_support.available()
    if why:
        require("PostgreSQL", why)
    pg = PostgreSQL(settings={"fsync": "off"}).start()
    root, pid = pg.root, pg.pid
    assert pid and root.exists()
    pg.stop()
    assert not root.exists()
    assert not pg.alive()
