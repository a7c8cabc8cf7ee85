"""The worker's ingest, file to MongoDB, checked document by document against tests/support/reference.py."""

from __future__ import annotations

import shutil
from datetime import datetime

import pytest

from app import tasks
from app.jobs.movies.ingest import ingest_movies
from app.store.mongo.movies import Movies as MongoMovies
from app.worker.loop import Worker
from moviecat.generate import generate_movies
from tests.conftest import SAMPLE_MOVIES
from tests.support.reference import load

UNCLOSED = "unclosed quote: the quote opened on line {} is never closed, it runs to the end of the file"


def stored(db) -> dict:
    return {doc["_id"]: doc for doc in db.movies.find()}


def queue_file(db, path, upload_dir, name="movies.csv") -> str:
    upload_dir.mkdir(parents=True, exist_ok=True)
    target = upload_dir / f"{name}.{db.processes.count_documents({})}.csv"
    shutil.copy(path, target)
    task_id = f"task-{db.processes.count_documents({})}"
    tasks.create(db, task_id=task_id, kind="movies", filename=name, path=str(target), size=target.stat().st_size)
    return task_id


def test_sample_file_gives_exact_documents(db, worker, upload_dir):
    task_id = queue_file(db, SAMPLE_MOVIES, upload_dir)
    assert worker.work() is True
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert (task["rows_read"], task["rows_inserted"], task["rows_updated"], task["rows_rejected"]) == (10, 10, 0, 0)
    assert stored(db) == load(SAMPLE_MOVIES)["documents"]
    toy = db.movies.find_one({"_id": "1995-10-30/Toy Story"})
    assert toy["release_date"] == datetime(1995, 10, 30) and toy["year"] == 1995
    assert toy["budget"] == 30000000 and toy["vote_count"] == 5415 and toy["vote_average"] == 7.7
    assert toy["production_company_id"] == "3" and toy["languages"] == ["English"]
    jumanji = db.movies.find_one({"title": "Jumanji"})
    assert jumanji["languages"] == ["English", "Français"]
    exhale = db.movies.find_one({"title": "Waiting to Exhale"})
    assert '""good man""' not in exhale["overview"] and '"good man"' in exhale["overview"]


# The generator's mix of good, odd and hostile rows at a size every run affords, and at the full 50,000 rows
# (about 60 s on two cores) in the slow tier: `make test` runs both, `make check` the first.
GENERATED_ROWS = [pytest.param(1_000, id="1000-rows"), pytest.param(50_000, id="50000-rows", marks=pytest.mark.slow)]


@pytest.mark.parametrize("rows", GENERATED_ROWS)
@pytest.mark.parametrize("helper_from_mb", [0, 1000], ids=["helper-process", "inline"])
def test_generated_file_matches_reference(db, config, upload_dir, tmp_path, helper_from_mb, rows):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=rows, seed=7)
    expected = load(path)
    task_id = queue_file(db, path, upload_dir)
    worker = Worker(config.with_overrides(INGEST_HELPER_MIN_MB=helper_from_mb), store=db, name="w")
    assert worker.work() is True
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    docs = stored(db)
    assert len(docs) == len(expected["documents"])
    mismatched = [i for i, d in expected["documents"].items() if docs.get(i) != d]
    assert mismatched == [], (
        mismatched[:3],
        [docs.get(i) for i in mismatched[:1]],
        [expected["documents"][i] for i in mismatched[:1]],
    )
    assert task["rows_read"] == expected["rows_read"]
    assert task["rows_rejected"] == len(expected["rejects"]) > 0
    assert task["rejects"] == expected["rejects"][:100]
    assert task["rows_inserted"] == len(expected["documents"])
    assert task["rows_updated"] == expected["valid"] - len(expected["documents"])
    assert task["bytes_read"] == task["bytes_total"] == path.stat().st_size
    assert task["percent"] == 100.0 and task["rows_per_sec"] > 0
    assert task["warnings"]["release_date"] > 0 and task["warnings"]["budget"] > 0


def test_same_file_twice_updates_instead_of_duplicating(db, worker, upload_dir):
    queue_file(db, SAMPLE_MOVIES, upload_dir)
    worker.work()
    first = stored(db)
    second_id = queue_file(db, SAMPLE_MOVIES, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": second_id})
    assert (task["rows_inserted"], task["rows_updated"]) == (0, 10)
    assert stored(db) == first


def test_later_upload_of_known_movie_updates_it(db, worker, upload_dir, tmp_path):
    header = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "update.csv"
    path.write_text(
        header + "\n1.0,,en,Toy Story,new overview,1995-10-30,2.0,82,Released,Toy Story,9.9,1.0,3,16,[]\n",
        encoding="utf-8",
    )
    queue_file(db, SAMPLE_MOVIES, upload_dir)
    worker.work()
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    toy = db.movies.find_one({"_id": "1995-10-30/Toy Story"})
    assert (toy["overview"], toy["vote_average"], toy["languages"], toy["runtime"]) == ("new overview", 9.9, [], 82)
    assert db.movies.count_documents({}) == 10
    task = db.processes.find_one({"task_id": task_id})
    assert (task["rows_inserted"], task["rows_updated"]) == (0, 1)


@pytest.mark.slow
def test_progress_is_reported_after_every_batch(db, tmp_path):
    path = tmp_path / "gen.csv"
    generate_movies(str(path), rows=3_500, seed=1)
    seen, checkpoints = [], []

    def on_progress(fields, checkpoint=None):
        seen.append(fields)
        if checkpoint:
            checkpoints.append(checkpoint)

    final = ingest_movies(
        str(path), MongoMovies(db.movies), block_size=1 << 20, batch_size=1000, max_rejects=100, on_progress=on_progress
    )
    assert len(seen) >= 4  # 3 500 rows at 1 000 per batch
    lines = path.read_bytes().count(b"\n")
    assert checkpoints[-1]["line"] == lines + 1 and checkpoints[-1]["rows_read"] == 3_500  # after the last line
    assert [s["rows_inserted"] + s["rows_updated"] for s in seen] == sorted(
        s["rows_inserted"] + s["rows_updated"] for s in seen
    )
    assert final["rows_inserted"] + final["rows_updated"] == seen[-1]["rows_inserted"] + seen[-1]["rows_updated"]
    assert final["percent"] == 100.0
    # The file (1.3 MB) is about one read block, yet percent moves batch by batch, in step with the rows.
    percents = [s["percent"] for s in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert len([p for p in percents if 0 < p < 100]) >= 3
    for s in seen:
        assert abs(s["percent"] - 100 * s["rows_read"] / 3_500) < 1  # not a block ahead of the rows


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_quoting_newlines_bom_and_non_ascii(db, worker, upload_dir, tmp_path, newline):
    rows = [
        "title,overview,release_date,original_language,languages",
        '"Amélie, the movie","She said ""hi"",' + "\r\n" + 'then left",2001-04-25,fr,"[\'Français\']"',
        '東京物語,"line one' + "\n" + "line two\",5/3/1953,ja,\"['日本語', 'English']\"",
        ",no title here,2001-01-01,en,[]",
        "Pусский,,,ru,[]",
    ]
    path = tmp_path / "odd.csv"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join(rows).encode("utf-8") + newline.encode())
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed"
    amelie = db.movies.find_one({"_id": "2001-04-25/Amélie, the movie"})
    assert amelie["overview"] == 'She said "hi",\r\nthen left' and amelie["languages"] == ["Français"]
    tokyo = db.movies.find_one({"title": "東京物語"})
    assert tokyo["release_date"] == datetime(1953, 5, 3) and tokyo["languages"] == ["日本語", "English"]
    assert tokyo["overview"] == "line one\nline two"
    assert db.movies.find_one({"_id": "undated/Pусский"})["year"] is None
    assert task["rejects"] == [{"line": 6, "reason": "missing title"}]
    assert task["warnings"] == {"release_date": 1}
    assert stored(db) == load(path)["documents"]


def test_unterminated_quote_is_rejected_not_fatal(db, worker, upload_dir, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'title,overview\nA,ok\n"unterminated,quote\n')
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed"
    assert task["rejects"] == [{"line": 3, "reason": UNCLOSED.format(3)}]
    assert [m["title"] for m in db.movies.find()] == ["A"]


def test_file_corrupted_after_upload_fails_with_a_reason(db, worker, upload_dir, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"title,overview\nA,ok\nB,\xff\xfe\n")
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "failed"
    assert "not valid UTF-8" in task["error"]


def test_missing_upload_fails_with_a_reason(db, worker, upload_dir):
    task_id = queue_file(db, SAMPLE_MOVIES, upload_dir)
    (upload_dir / db.processes.find_one({"task_id": task_id})["path"].split("/")[-1]).unlink()
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "failed" and "upload it again" in task["error"]


def test_file_where_every_row_has_the_wrong_width_reports_every_reject(db, worker, upload_dir, tmp_path):
    path = tmp_path / "allbad.csv"
    path.write_text("title,budget\nX,1,extra\nY,2,extra\n", encoding="utf-8")
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed"
    assert (task["rows_read"], task["rows_rejected"]) == (2, 2)
    assert task["rejects"] == [
        {"line": 2, "reason": "expected 2 fields, found 3"},
        {"line": 3, "reason": "expected 2 fields, found 3"},
    ]
    assert db.movies.count_documents({}) == 0


def test_broken_escape_in_languages_is_a_counted_bad_value(db, worker, upload_dir, tmp_path):
    path = tmp_path / "escape.csv"
    path.write_text("title,languages\nA,\"['\\x41']\"\nB,\"['\\x']\"\n", encoding="utf-8")
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert db.movies.find_one({"title": "A"})["languages"] == ["A"]
    assert db.movies.find_one({"title": "B"})["languages"] is None
    assert task["warnings"]["languages"] == 1


def test_old_mac_line_endings_load(db, worker, upload_dir, tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b"title,budget\rA,1\rB,2\r")
    task_id = queue_file(db, path, upload_dir)
    worker.work()
    assert db.processes.find_one({"task_id": task_id})["status"] == "completed"
    assert sorted((m["title"], m["budget"]) for m in db.movies.find()) == [("A", 1), ("B", 2)]


def test_lines_of_separators_quotes_or_spaces_count_as_the_reference_says(db, worker, upload_dir, tmp_path):
    path = tmp_path / "odd.csv"
    header = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()[0]
    row = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()[1]
    blank_row = "," * header.count(",")
    lines = [header, row, ",,", '""', "   ", blank_row, "", row.replace("Toy Story", "Toy Story 2"), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    expected = load(path)
    task_id = queue_file(db, path, upload_dir)
    assert worker.work() is True
    task = db.processes.find_one({"task_id": task_id})
    # ",," and '""' are rows with the wrong number of fields; spaces, empty lines and all-empty rows are no rows.
    assert (
        task["rejects"]
        == expected["rejects"]
        == [{"line": 3, "reason": "expected 15 fields, found 3"}, {"line": 4, "reason": "expected 15 fields, found 1"}]
    )
    assert task["rows_read"] == expected["rows_read"] == 4
    assert stored(db) == expected["documents"]


# -- how a batch reaches the server ------------------------------------------------------------------------


class CountingMovies:
    """`movies` that records every command: ("insert", n) and ("write", n); `lose_races` bulk writes of more
    than one request fail as pymongo fails on FerretDB's reply without counts (after the server applied them)."""

    def __init__(self, collection, lose_races: int = 0, missing: str = "nModified"):
        self.collection, self.lose_races, self.missing = collection, lose_races, missing
        self.commands: list[tuple[str, int]] = []

    def insert_many(self, documents, ordered=True):
        from app.store.mongo.movies import sendable

        self.commands.append(("insert", len(documents)))
        return self.collection.insert_many(sendable(self.collection, documents), ordered=ordered)

    def bulk_write(self, requests, ordered=True):
        self.commands.append(("write", len(requests)))
        result = self.collection.bulk_write(requests, ordered=ordered)
        if self.lose_races and len(requests) > 1:
            self.lose_races -= 1
            raise KeyError(self.missing)
        return result


def movie_documents(n: int, offset: int = 0, **fields):
    import bson
    from bson.raw_bson import RawBSONDocument

    docs = [{"_id": f"2000-01-01/M{i}", "title": f"M{i}", **fields} for i in range(offset, offset + n)]
    return [RawBSONDocument(bson.encode(d)) for d in docs]


def test_a_batch_is_inserted_in_one_command_and_only_stored_movies_are_rewritten_in_chunks(db):
    from app.store.mongo.movies import write_movies

    movies = CountingMovies(db.movies)
    assert write_movies(movies, movie_documents(1000), chunk=25) == (1000, 0)
    assert movies.commands == [("insert", 1000)]
    # 995-999 are stored: refused by the insert, then replaced 2 per command.
    assert write_movies(movies, movie_documents(10, offset=995, v=1), chunk=2) == (5, 5)
    assert movies.commands[1:] == [("insert", 10), ("write", 2), ("write", 2), ("write", 1)]
    assert write_movies(movies, movie_documents(10, offset=995, v=2), chunk=0) == (0, 10)  # 0: all in one
    assert movies.commands[-2:] == [("insert", 10), ("write", 10)]
    assert db.movies.count_documents({}) == 1005 and db.movies.count_documents({"v": 2}) == 10


def test_a_reply_without_counts_is_written_again_upsert_by_upsert(db, caplog):
    """FerretDB 1.24 answers an upsert that lost a duplicate-key race without `n`/`nModified`."""
    from app.store.mongo.movies import write_movies

    db.movies.insert_many([{"_id": f"2000-01-01/M{i}"} for i in range(30)])
    movies = CountingMovies(db.movies, lose_races=1)
    assert write_movies(movies, movie_documents(30), chunk=10) == (0, 30)
    assert movies.commands == [("insert", 30), ("write", 10)] + [("write", 1)] * 10 + [("write", 10)] * 2
    assert sorted((d["_id"], d["title"]) for d in db.movies.find()) == sorted(
        (f"2000-01-01/M{i}", f"M{i}") for i in range(30)
    )
    assert "had no 'nModified' count; writing its 10 upserts one by one" in caplog.text


def test_any_other_key_error_in_a_write_is_not_taken_for_a_lost_race(db):
    from app.store.mongo.movies import write_movies

    db.movies.insert_many([{"_id": f"2000-01-01/M{i}"} for i in range(5)])
    with pytest.raises(KeyError, match="upserted"):
        write_movies(CountingMovies(db.movies, lose_races=1, missing="upserted"), movie_documents(5))


# -- rows larger than a block, and quotes that never close ---------------------------------------------------

SMALL_BLOCK = 64 * 1024


@pytest.fixture
def big_fields():
    """The reference reads with Python's csv module, which refuses fields over 128 KiB unless told otherwise."""
    import csv

    limit = csv.field_size_limit(1 << 30)
    yield
    csv.field_size_limit(limit)


def movie_row(title: str, overview: str, date: str = "2001-02-03") -> str:
    """One movie as a CSV line of the contract's columns, quoted as a spreadsheet would."""
    import csv
    import io

    from app.jobs.movies.schema import COLUMNS

    values = {"title": title, "overview": overview, "release_date": date, "budget": "1000", "languages": "['English']"}
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([values.get(name, "") for name in COLUMNS])
    return out.getvalue()


def movies_around(tmp_path, *middle: str, seed: int = 3, rows: int = 1500):
    """A generated movie file with `middle` (CSV lines) between its two halves; and the line `middle` starts on."""
    halves = []
    for part in range(2):
        generate_movies(str(tmp_path / f"half{part}.csv"), rows=rows, seed=seed + part)
        halves.append((tmp_path / f"half{part}.csv").read_bytes().decode("utf-8"))
    header, first = halves[0].split("\r\n", 1)
    second = halves[1].split("\r\n", 1)[1]
    path = tmp_path / "movies.csv"
    path.write_text(header + "\r\n" + first + "".join(middle) + second, encoding="utf-8", newline="")
    return path, 2 + first.count("\n")


def long_overview(size: int) -> str:
    words = ["plot", "twist,", 'a "quote"', "new\nline", "café"]
    return " ".join(words[i % len(words)] for i in range(size // 7))


@pytest.mark.slow
def test_a_movie_row_three_blocks_long_loads_alone_and_every_movie_after_it_too(
    db, config, upload_dir, tmp_path, big_fields
):
    big = movie_row("Long Story", long_overview(3 * SMALL_BLOCK))
    path, big_line = movies_around(tmp_path, big)
    expected = load(path)
    task_id = queue_file(db, path, upload_dir)
    Worker(config.with_overrides(BLOCK_SIZE=SMALL_BLOCK), store=db, name="w").work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert stored(db) == expected["documents"]
    assert db.movies.find_one({"_id": "2001-02-03/Long Story"})["overview"] == long_overview(3 * SMALL_BLOCK)
    assert (task["rows_read"], task["rows_rejected"]) == (expected["rows_read"], len(expected["rejects"]))
    assert task["rejects"] == expected["rejects"][:100]
    assert any(r["line"] > big_line for r in task["rejects"])  # rejects after the big row keep their lines
    assert task["bytes_read"] == task["bytes_total"] == path.stat().st_size


def test_a_row_over_max_row_mb_is_rejected_alone_with_its_line_and_the_rest_loads(db, config, upload_dir, tmp_path):
    huge = movie_row("Too Long", "0123456789\n" * 150_000)  # 1.65 MB over 150 001 lines; MAX_ROW_MB=1
    after = movie_row("", "no title") + movie_row("After", "fine")
    path = tmp_path / "movies.csv"
    text = movie_row("Before", "fine") + huge + after
    header = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()[0]
    path.write_text(header + "\r\n" + text, encoding="utf-8", newline="")
    task_id = queue_file(db, path, upload_dir)
    Worker(config.with_overrides(BLOCK_SIZE=SMALL_BLOCK, MAX_ROW_MB=1), store=db, name="w").work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert task["rejects"] == [
        {
            "line": 3,
            "reason": f"the row is larger than MAX_ROW_MB (1 MiB): {len(huge.encode()):,} bytes, lines 3 to 150003",
        },
        {"line": 150_004, "reason": "missing title"},
    ]
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (4, 2, 2)
    (tmp_path / "without.csv").write_text(header + "\r\n" + movie_row("Before", "fine") + after, newline="")
    assert stored(db) == load(tmp_path / "without.csv")["documents"]


@pytest.mark.slow
def test_a_resumed_ingest_after_a_big_row_ends_as_one_that_never_stopped(db, tmp_path, big_fields):
    path, big_line = movies_around(tmp_path, movie_row("Long Story", long_overview(3 * SMALL_BLOCK)), rows=800)
    whole = ingest_movies(
        str(path),
        MongoMovies(db.movies),
        block_size=SMALL_BLOCK,
        batch_size=100,
        max_rejects=100,
        in_process_from=1 << 40,
    )
    expected = stored(db)
    db.movies.drop()

    class Stop(Exception):
        pass

    saved = []

    def stop_after_the_big_row(fields, checkpoint):
        if checkpoint["line"] > big_line + 200:
            saved.append(checkpoint)
            raise Stop

    with pytest.raises(Stop):
        ingest_movies(
            str(path),
            MongoMovies(db.movies),
            block_size=SMALL_BLOCK,
            batch_size=100,
            max_rejects=100,
            in_process_from=1 << 40,
            on_progress=stop_after_the_big_row,
        )
    resumed = ingest_movies(
        str(path),
        MongoMovies(db.movies),
        block_size=SMALL_BLOCK,
        batch_size=100,
        max_rejects=100,
        in_process_from=1 << 40,
        checkpoint=saved[0],
    )
    assert stored(db) == expected
    counters = ("rows_read", "rows_inserted", "rows_updated", "rows_rejected", "rejects", "warnings", "bytes_read")
    assert {k: resumed[k] for k in counters} == {k: whole[k] for k in counters}


@pytest.mark.slow
def test_a_movie_over_16_mb_read_alone_is_rejected_alone_and_a_5_mb_one_loads(db, config, upload_dir, tmp_path):
    # Each text field has a maximum (docs/cleaning.md; an extra column's is 4 KiB): a big movie has many full ones.
    columns, full = 4_400, "x" * 4096
    header = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()[0] + "".join(f",c{n}" for n in range(columns))

    def row(title: str, filled: int) -> str:
        return movie_row(title, "short")[:-2] + f",{full}" * filled + "," * (columns - filled) + "\r\n"

    path = tmp_path / "huge.csv"
    rows = [row("Small", 0), row("Huge", columns), row("Five", 1_280), row("Also small", 0)]  # 18 MB, 5.2 MB
    path.write_text(header + "\r\n" + "".join(rows), encoding="utf-8", newline="")
    task_id = queue_file(db, path, upload_dir)
    Worker(config.with_overrides(BLOCK_SIZE=SMALL_BLOCK), store=db, name="w").work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert task["rejects"] == [{"line": 3, "reason": "the movie is larger than MongoDB's 16 MB document limit"}]
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (4, 3, 1)
    assert sorted(stored(db)) == ["2001-02-03/Also small", "2001-02-03/Five", "2001-02-03/Small"]
    five = db.movies.find_one({"title": "Five"})
    assert [five[f"c{n}"] for n in (0, 1_279, 1_280)] == [full, full, None]


@pytest.mark.parametrize("block_size", [SMALL_BLOCK, 1 << 20], ids=["rest-over-a-block", "rest-in-a-block"])
def test_a_quote_never_closed_is_rejected_naming_its_line_and_the_rows_before_load(
    db, config, upload_dir, tmp_path, block_size
):
    sample = SAMPLE_MOVIES.read_text(encoding="utf-8").splitlines()
    good = tmp_path / "good.csv"
    good.write_text("\n".join(sample[:6]) + "\n", encoding="utf-8")  # the header and five movies, lines 2-6
    # Some 300 kB without a quote (a later quote would close it): more than a 64 KiB block, less than 1 MiB.
    rest = "".join(movie_row(f"Film {i}", "plain") for i in range(5000))
    assert '"' not in rest and 64 * 1024 < len(rest) < 1 << 20
    path = tmp_path / "unclosed.csv"
    path.write_text("\n".join(sample[:6]) + '\n5,"Heat,1995-12-15,Michael Mann\n' + rest, encoding="utf-8")
    task_id = queue_file(db, path, upload_dir)
    Worker(config.with_overrides(BLOCK_SIZE=block_size), store=db, name="w").work()
    task = db.processes.find_one({"task_id": task_id})
    assert task["status"] == "completed", task.get("error")
    assert task["rejects"] == [{"line": 7, "reason": UNCLOSED.format(7)}]
    assert (task["rows_read"], task["rows_inserted"], task["rows_rejected"]) == (6, 5, 1)
    assert stored(db) == load(good)["documents"]
