"""A big load into the SQLite store (Movies.loading, app/store/sqlite/movies.py): the page indexes are dropped
while it writes and built again when it ends. What a user must not notice: the same movies and the same pages as
a load without it, pages answering during the load, every index back after a load that fails, after a crash (at
the next start) and after two loads at once. Thresholds are lowered so that small files take the bulk path.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from app.jobs.movies.ingest import ingest_movies
from app.store.sqlite import SqliteStore
from app.store.sqlite import movies as sqlite_movies
from moviecat.generate import generate_movies
from tests.test_sqlite_movies import BLOCK, SORTS, everything
from tests.test_sqlite_movies import page_of as sqlite_page

ALL = set(sqlite_movies.INDEXES)


def indexes(path: str) -> set[str]:
    """The page indexes in the file, seen from a connection of its own."""
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return names & ALL


def open_store(tmp_path, name: str) -> SqliteStore:
    store = SqliteStore(str(tmp_path / name / "service.sqlite3"))
    store.setup()
    return store


def ingest(store, path, on_progress=lambda fields, checkpoint: None) -> dict:
    return ingest_movies(
        str(path),
        store.movies,
        block_size=BLOCK,
        batch_size=200,
        max_rejects=10_000,
        in_process_from=1 << 40,
        on_progress=on_progress,
    )


def filters(store) -> list[tuple]:
    docs = everything(store).values()
    years = sorted({d["year"] for d in docs if type(d.get("year")) is int})
    languages = sorted({d["original_language"] for d in docs if d.get("original_language")})
    year, language = years[len(years) // 2], languages[0]
    return [(None, None), (year, None), (None, language), (year, language)]


def pages(store, where: list[tuple]) -> list:
    return [
        sqlite_page(store, year, language, sort_by, order, skip, 10)
        for year, language in where
        for sort_by, order in SORTS
        for skip in (0, 37)
    ]


@pytest.fixture
def bulk(monkeypatch):
    monkeypatch.setattr(sqlite_movies, "BULK_MIN_ROWS", 100)


@pytest.fixture
def gen(tmp_path):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=2_000, seed=41)
    return path


@pytest.mark.slow
def test_a_bulk_load_stores_the_same_movies_and_pages_as_a_plain_one_and_keeps_pages_answering(
    tmp_path, gen, monkeypatch
):
    plain, big = open_store(tmp_path, "plain"), open_store(tmp_path, "bulk")
    seen = {"plain": [], "bulk": []}

    def watch(name, store):
        """After each batch: the indexes in the file, and pages read by another connection (another process's)."""
        reader = SqliteStore(store.path)

        def on_progress(fields, checkpoint):
            seen[name].append((indexes(store.path), everything(reader), pages(reader, where)))

        return on_progress

    scout = open_store(tmp_path, "scout")
    ingest(scout, gen)
    where = filters(scout)  # a year and a language the file has, for the pages read during the loads

    ingest(plain, gen, watch("plain", plain))  # 2,000 movies: under BULK_MIN_ROWS, the indexes stay
    monkeypatch.setattr(sqlite_movies, "BULK_MIN_ROWS", 100)
    ingest(big, gen, watch("bulk", big))

    assert [s[0] for s in seen["plain"]] == [ALL] * len(seen["plain"])
    assert [s[0] for s in seen["bulk"]] == [set()] * len(seen["bulk"])  # dropped for the whole load
    assert len(seen["bulk"]) == len(seen["plain"]) >= 10
    for during_bulk, during_plain in zip(seen["bulk"], seen["plain"]):
        assert during_bulk[1:] == during_plain[1:]  # batch by batch, the same movies and pages meanwhile
    assert indexes(big.path) == ALL
    assert everything(big) == everything(plain) and len(everything(big)) > 1_900
    assert big.movies.count() == plain.movies.count()
    where = filters(plain)
    assert pages(big, where) == pages(plain, where)


def test_a_load_that_fails_midway_leaves_every_index_and_the_committed_batches(tmp_path, gen, bulk, monkeypatch):
    class Stop(Exception):
        pass

    def stop_after(batches):
        done = []

        def on_progress(fields, checkpoint):
            done.append(fields["rows_inserted"])
            if len(done) == batches:
                raise Stop

        return on_progress, done

    big, plain = open_store(tmp_path, "bulk"), open_store(tmp_path, "plain")
    on_progress, done = stop_after(4)
    with pytest.raises(Stop):
        ingest(big, gen, on_progress)
    assert indexes(big.path) == ALL
    monkeypatch.setattr(sqlite_movies, "BULK_MIN_ROWS", 10**9)  # the same four batches, indexes kept throughout
    with pytest.raises(Stop):
        ingest(plain, gen, stop_after(4)[0])
    assert big.movies.count() == done[-1] == plain.movies.count() > 0
    assert everything(big) == everything(plain)
    where = filters(plain)
    assert pages(big, where) == pages(plain, where)


def test_a_crash_during_a_load_is_healed_at_the_next_start(tmp_path, gen, bulk):
    store = open_store(tmp_path, "data")
    ingest(store, gen)
    expected = everything(store)
    where = filters(store)
    expected_pages = pages(store, where)
    store.movies._drop_indexes()  # as a load starts; then the process is killed: nothing builds them again
    store.close()
    assert indexes(store.path) == set()

    again = SqliteStore(store.path)
    assert pages(again, where) == expected_pages  # still answering, unindexed
    again.setup()
    assert indexes(store.path) == ALL
    assert everything(again) == expected and pages(again, where) == expected_pages
    plan = " ".join(
        str(r[-1])
        for r in again.conn.execute("EXPLAIN QUERY PLAN SELECT * FROM movies ORDER BY title DESC, _id DESC LIMIT 10")
    )
    assert "TEMP B-TREE" not in plan and "INDEX movies_by_title_id" in plan


def test_a_small_load_into_a_bigger_catalogue_keeps_the_indexes(tmp_path, gen, bulk):
    store = open_store(tmp_path, "data")
    ingest(store, gen)
    small = tmp_path / "small.csv"
    generate_movies(str(small), rows=500, seed=42)  # above BULK_MIN_ROWS, below the catalogue's 2,000
    seen = []
    ingest(store, small, lambda fields, checkpoint: seen.append(indexes(store.path)))
    assert seen and all(found == ALL for found in seen)


@pytest.mark.slow
def test_two_loads_at_once_store_every_movie_and_end_with_every_index(tmp_path, bulk):
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    generate_movies(str(first), rows=1_000, seed=43)
    generate_movies(str(second), rows=2_000, seed=44)
    one, other = open_store(tmp_path, "data"), SqliteStore(str(tmp_path / "data" / "service.sqlite3"))
    started, first_done = threading.Event(), threading.Event()
    during_second: list[set] = []
    errors = []

    def load_first():
        try:
            ingest(one, first, lambda fields, checkpoint: started.wait(30))  # the second is loading too
        except BaseException as e:
            errors.append(e)
        finally:
            first_done.set()

    def on_second(fields, checkpoint):
        started.set()
        if fields["rows_read"] >= 1_000:
            first_done.wait(30)  # the first ended (and rebuilt) while this one still writes
            during_second.append(indexes(other.path))

    thread = threading.Thread(target=load_first)
    thread.start()
    try:
        ingest(other, second, on_second)
    finally:
        thread.join()
    assert not errors

    reference = open_store(tmp_path, "reference")
    ingest(reference, first)
    ingest(reference, second)
    assert indexes(one.path) == ALL
    assert during_second and during_second[-1] == ALL  # built by the first to end, the second still writing
    got, want = everything(one), everything(reference)
    assert got.keys() == want.keys() and one.movies.count() == len(want) == reference.movies.count()
    both = {key for key in want if got[key] != want[key]}
    assert len(both) <= 2  # only a movie in both files may differ: whichever file wrote it last
    assert one.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    where = filters(reference)
    totals = [sqlite_page(one, y, lang, "title", 1, 0, 1)[1] for y, lang in where]
    assert totals == [sqlite_page(reference, y, lang, "title", 1, 0, 1)[1] for y, lang in where]
