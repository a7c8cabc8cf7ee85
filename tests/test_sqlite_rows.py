"""The SQLite table's rows made column by column in the ingest's helper (app/jobs/movies/rows.py, the "sqlite"
form) are the very rows the BSON path makes (each document encoded, decoded, converted by Movies._row): for odd
values, escapes, wide integers and extra columns, and a file stored either way leaves the same table."""

from __future__ import annotations

import bson
import pytest

from app.jobs.movies.encode import encode
from app.jobs.movies.ingest import ingest_movies
from app.jobs.movies.rows import rows
from app.jobs.movies.schema import clean_block
from app.reader import csvstream
from app.store.sqlite import SqliteStore
from app.store.sqlite import movies as sqlite_movies
from moviecat.generate import generate_movies
from tests.test_sqlite_movies import write_csv

pytestmark = pytest.mark.sqlite

ODD = [
    {"title": "Zero", "release_date": "2000-01-01", "vote_average": "-0", "budget": "999999999999999999"},
    {"title": "Zéro", "release_date": "2000-01-01", "vote_average": "0", "revenue": "-999999999999999999"},
    {"title": "Émile 🎬", "release_date": "0001-01-01", "vote_average": "7.0", "languages": "[]"},
    {"title": "émile", "release_date": "9999-12-31", "vote_average": "7", "languages": "['', 'Français']"},
    {"title": "Undated", "vote_average": "1e308", "runtime": "2147483648", "original_language": "en"},
    {"title": "undated", "vote_average": "5e-324", "runtime": "-2147483649", "revenue": "2147483647"},
    {"title": "Quotes", "languages": """["O'zbek", 'say "hi"', 'back\\\\slash']""", "vote_average": "-0.0"},
    {"title": "Tab", "languages": "['a\\tb', '\u2028', 'ü']", "homepage": "  ", "status": ""},
    {"title": "Bad", "release_date": "2020-02-30", "vote_average": "bad", "languages": "not a list"},
    {"title": "a\u00a0b", "release_date": "1/2/1990", "overview": '"quoted"\nline', "vote_count": "1e3"},
    {"title": "Tie", "release_date": "1990-01-01", "vote_average": "7.0", "original_language": "en"},
]


def both_ways(path, block: int = 4096) -> tuple[list[tuple], list[tuple]]:
    """Every row of the file made column by column, and made the BSON way."""
    fast, slow = [], []
    convert = sqlite_movies.Movies(None)
    for chunk in csvstream.coalesce(csvstream.stream(str(path), block, start_line=2, max_row_mb=1), 4096):
        cleaned = clean_block(chunk.batch, chunk.lines)
        if not len(cleaned):
            continue
        fast += rows(cleaned.columns)
        slow += [convert._row(bson.decode(doc)) for doc in encode(cleaned.columns).to_pylist()]
    return fast, slow


def typed(made: list[tuple]) -> list[tuple]:
    return [tuple((type(value), value) for value in row) for row in made]


def test_odd_rows_are_made_as_the_bson_path_makes_them(tmp_path):
    path = tmp_path / "odd.csv"
    write_csv(path, ODD)
    fast, slow = both_ways(path)
    assert len(fast) == len(ODD)
    assert typed(fast) == typed(slow)
    assert any(row[-1] is not None for row in fast)  # some went into `odd`: -0.0, wide integers


def test_extra_and_missing_columns_are_made_as_the_bson_path_makes_them(tmp_path):
    path = tmp_path / "extra.csv"
    header = ["title", "director", "release_date", "languages", "notes"]
    write_csv(
        path,
        [
            {"title": "A", "director": "Varda", "release_date": "1962-04-11", "notes": '{"x": 1}'},
            {"title": "B", "director": "", "languages": "['en']", "notes": "ü\\"},
        ],
        header,
    )
    fast, slow = both_ways(path)
    assert typed(fast) == typed(slow)
    assert (
        fast[0][-2] == '{"director":"Varda","notes":"{\\"x\\": 1}"}'
        and fast[1][-2] == '{"director":null,"notes":"ü\\\\"}'
    )


def test_a_generated_file_is_made_as_the_bson_path_makes_it(tmp_path):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=3000, seed=7)
    fast, slow = both_ways(path)
    assert len(fast) > 2900
    assert typed(fast) == typed(slow)


def table(store: SqliteStore) -> list[tuple]:
    return store.conn.execute("SELECT * FROM movies ORDER BY _id").fetchall()


def test_a_file_ingested_as_rows_leaves_the_table_the_bson_path_leaves(tmp_path, monkeypatch):
    path = tmp_path / "movies.csv"
    generate_movies(str(path), rows=1500, seed=3)
    with open(path, "a", encoding="utf-8", newline="") as f:  # and the odd rows, twice: updates of stored movies
        write_csv(tmp_path / "odd.csv", ODD + ODD)
        f.write((tmp_path / "odd.csv").read_text(encoding="utf-8").split("\n", 1)[1])
    stores = {}
    for form in ("sqlite", "bson"):
        store = stores[form] = SqliteStore(str(tmp_path / form / "service.sqlite3"))
        store.setup()
        monkeypatch.setattr(type(store.movies), "form", form)
        fields = ingest_movies(str(path), store.movies, block_size=64 * 1024, batch_size=100, max_rejects=100)
        stores[form] = (store, fields)
    (rows_store, rows_fields), (bson_store, bson_fields) = stores["sqlite"], stores["bson"]
    rows_fields.pop("rows_per_sec"), bson_fields.pop("rows_per_sec")
    assert rows_fields == bson_fields and rows_fields["rows_updated"] >= len(ODD)
    assert table(rows_store) == table(bson_store)
    counts = "SELECT * FROM movie_counts ORDER BY 1, 2"
    assert rows_store.conn.execute(counts).fetchall() == bson_store.conn.execute(counts).fetchall()
