"""Hostile rows against the real service (`python run.py`, embedded mode), uploaded over HTTP: a row bigger
than BLOCK_SIZE, one bigger than MAX_ROW_MB, and a quote that never closes. What a user sees: the task's
record and the catalogue.
"""

from __future__ import annotations

import csv
import io

import pytest

from app.jobs.movies.schema import COLUMNS
from tests.support.service import Service

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

BLOCK = 64 * 1024
UNCLOSED = "unclosed quote: the quote opened on line {} is never closed, it runs to the end of the file"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("hostile-rows"), BLOCK_SIZE=str(BLOCK), MAX_ROW_MB="1")
    yield service.start()
    service.stop()


def movie_lines(*movies: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for movie in movies:
        writer.writerow([movie.get(name, "") for name in COLUMNS])
    return out.getvalue()


def catalogue(server, year: int) -> list[tuple[str, int]]:
    status, _, page = server.request("GET", f"/api/v1/movies?year={year}&limit=100&sort_by=title")
    assert status == 200
    return [(movie["_id"], len(movie["overview"] or "")) for movie in page["movies"]]


def upload(server, tmp_path, name: str, text: str) -> dict:
    path = tmp_path / name
    path.write_bytes(text.encode())
    status, _, body = server.upload(path, name)
    assert status == 202, body
    task = server.wait_for(body["task_id"])
    assert task["status"] == "completed", task
    return task


def test_a_row_of_three_blocks_loads_and_one_over_max_row_mb_is_rejected_with_its_line(server, tmp_path):
    long_overview = "A long, long story.\n" * 10_000  # 200 kB over 10 000 lines: three blocks
    too_long = "Far too long.\n" * 100_000  # 1.4 MB: more than MAX_ROW_MB=1
    text = movie_lines(
        {"title": "Before", "overview": "short", "release_date": "2001-01-01"},  # line 2
        {"title": "Long", "overview": long_overview, "release_date": "2001-01-02"},  # lines 3-10003
        {"title": "Too Long", "overview": too_long, "release_date": "2001-01-03"},  # lines 10004-110004
        {"title": "", "overview": "no title", "release_date": "2001-01-04"},  # line 110005
        {"title": "After", "overview": "short", "release_date": "2001-01-05", "budget": "many"},  # line 110006
    )
    too_long_row = movie_lines({"title": "Too Long", "overview": too_long, "release_date": "2001-01-03"})
    size = len(too_long_row.encode()) - len(movie_lines().encode())
    task = upload(server, tmp_path, "big-rows.csv", text)
    assert (task["rows_read"], task["rows_inserted"], task["rows_updated"], task["rows_rejected"]) == (5, 3, 0, 2)
    assert task["rejects"] == [
        {"line": 10_004, "reason": f"the row is larger than MAX_ROW_MB (1 MiB): {size:,} bytes, lines 10004 to 110004"},
        {"line": 110_005, "reason": "missing title"},
    ]
    assert task["warnings"] == {"budget": 1}
    assert task["bytes_read"] == task["bytes_total"] == len(text.encode()) and task["percent"] == 100.0
    assert catalogue(server, 2001) == [
        ("2001-01-05/After", 5),
        ("2001-01-01/Before", 5),
        ("2001-01-02/Long", len(long_overview)),
    ]


def test_a_quote_never_closed_is_rejected_naming_its_line_and_the_movies_before_load(server, tmp_path):
    good = movie_lines(*({"title": f"Film {i}", "overview": "fine", "release_date": "2002-01-01"} for i in range(5)))
    rest = "".join(f"{i},,en,Later {i},plain,2002-02-02,,,,Later {i},,,,,[]\r\n" for i in range(5000))
    text = good + '5,"Heat,1995-12-15,Michael Mann\r\n' + rest  # the quote opens on line 7; 300 kB follow
    task = upload(server, tmp_path, "unclosed.csv", text)
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (6, 5, 1)
    assert task["rejects"] == [{"line": 7, "reason": UNCLOSED.format(7)}]
    assert catalogue(server, 2002) == [(f"2002-01-01/Film {i}", 4) for i in range(5)]


def test_a_plays_file_with_a_quote_never_closed_totals_the_rows_before(server, tmp_path):
    text = (
        "Song,Date,Number of Plays\nUmbrella,2020-01-01,100\nUmbrella,2020-01-01,50\nIn The End,2020-01-02,5\n"
        '"Heat,2020-01-01,1\n' + "Umbrella,2020-01-01,1\n" * 20_000
    )
    task = upload(server, tmp_path, "plays-unclosed.csv", text)
    assert (task["rows_read"], task["rows_rejected"], task["groups"]) == (4, 1, 2)
    assert task["rejects"] == [{"line": 5, "reason": UNCLOSED.format(5)}]
    status, _, result = server.request("GET", task["result_url"], raw=True)
    assert status == 200
    assert result == b"Song,Date,Total Number of Plays for Date\nIn The End,2020-01-02,5\nUmbrella,2020-01-01,150\n"


def movie_page(server, year: int, sort_by: str) -> dict:
    """The year's movies by title; each read with its own sort, since a page is cached for CACHE_TTL."""
    status, _, page = server.request("GET", f"/api/v1/movies?year={year}&limit=100&sort_by={sort_by}")
    assert status == 200
    return {movie["title"]: movie for movie in page["movies"]}


def test_a_file_without_some_columns_updates_only_the_fields_it_has(server, tmp_path):
    """Issue 23 #9: `title,release_date` and one row for a stored movie erased its budget, overview, rating
    and runtime. The stored movie keeps every field the file lacks; a new movie in it is stored as always."""
    full = {
        "title": "Partial Header",
        "release_date": "1987-06-05",
        "budget": "1000",
        "overview": "kept overview",
        "vote_average": "7.5",
        "runtime": "101",
        "languages": "['English']",
    }
    upload(server, tmp_path, "full.csv", movie_lines(full))
    before = movie_page(server, 1987, "title")["Partial Header"]
    assert (before["budget"], before["overview"], before["vote_average"], before["runtime"]) == (
        1000,
        "kept overview",
        7.5,
        101,
    )

    task = upload(
        server, tmp_path, "partial.csv", "title,release_date\r\nPartial Header,1987-06-05\r\nNew One,6/7/1987\r\n"
    )
    assert (task["rows_read"], task["rows_inserted"], task["rows_updated"], task["rows_rejected"]) == (2, 1, 1, 0)
    assert task["columns_missing"] == [c for c in COLUMNS if c not in ("title", "release_date")]
    after = movie_page(server, 1987, "release_date")
    assert after["Partial Header"] == before
    new = after["New One"]
    assert new["_id"] == "1987-06-07/New One" and new["release_date"] == "1987-06-07T00:00:00Z"
    assert {
        name: new[name] for name in ("budget", "overview", "vote_average", "runtime", "languages")
    } == dict.fromkeys(("budget", "overview", "vote_average", "runtime", "languages"))
