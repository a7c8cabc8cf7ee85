"""GET /api/v1/movies: pagination, filters, sorting, parameter checks, the Redis cache and its failure mode."""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from tests.conftest import SAMPLE_MOVIES, free_port
from tests.support.auth import signed_in

KEYS = {"limit", "movies", "page", "total_docs", "total_pages"}


def movie(title: str, date: str | None, language: str | None = "en", rating: float | None = 5.0, **extra) -> dict:
    day = datetime.strptime(date, "%Y-%m-%d") if date else None
    return {
        "_id": f"{date or 'undated'}/{title}",
        "title": title,
        "release_date": day,
        "year": day.year if day else None,
        "original_language": language,
        "vote_average": rating,
        **extra,
    }


def get(client, query: str = ""):
    response = client.get(f"/api/v1/movies{'?' + query if query else ''}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def titles(body: dict) -> list[str]:
    return [m["title"] for m in body["movies"]]


@pytest.fixture
def catalogue(db):
    docs = [
        movie("Toy Story", "1995-10-30", "en", 7.7),
        movie("Heat", "1995-12-15", "en", 7.7),
        movie("La Haine", "1995-05-31", "fr", 8.0),
        movie("Amelie", "2001-04-25", "fr", 7.8),
        movie("Spirited Away", "2001-07-20", "ja", 8.5),
        movie("Shrek", "2001-05-18", "en", 7.3),
        movie("Run Lola Run", "1998-08-20", "de", 7.6),
        movie("Titanic", "1997-11-18", "en", 7.5),
        movie("Babe", "1995-07-18", "en", 6.0),
        movie("Clueless", "1995-07-19", "en", 6.9),
        movie("Jumanji", "1995-12-15", "en", 6.9),
        movie("Casino", "1995-11-22", "en", 7.8),
    ]
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    db.movies.insert_many(shuffled)
    return docs


def acceptable_orders(docs, field, order):
    """The id sequences a sort may give: by `field`, ties by `_id` (ascending; for a descending sort,
    either direction, as long as it is one total order)."""
    up = [d["_id"] for d in sorted(docs, key=lambda d: (d[field], d["_id"]))]
    if order == 1:
        return [up]
    ties_desc = list(reversed(up))
    ties_asc = [d["_id"] for d in sorted(sorted(docs, key=lambda d: d["_id"]), key=lambda d: d[field], reverse=True)]
    return [ties_desc, ties_asc]


def by_date(docs, order=1):
    return sorted(docs, key=lambda d: (d["release_date"], d["_id"]), reverse=order == -1)


# -- shape and defaults ---------------------------------------------------------------------------------


def test_defaults_page_1_limit_10_by_release_date(client, catalogue):
    body = get(client).get_json()
    assert set(body) == KEYS
    assert (body["page"], body["limit"], body["total_docs"], body["total_pages"]) == (1, 10, 12, 2)
    assert [m["_id"] for m in body["movies"]] == [d["_id"] for d in by_date(catalogue)[:10]]

    page2 = get(client, "page=2").get_json()
    assert [m["_id"] for m in page2["movies"]] == [d["_id"] for d in by_date(catalogue)[10:]]
    assert get(client, "page=3").get_json()["movies"] == []


def test_empty_catalogue(client):
    assert get(client).get_json() == {"limit": 10, "movies": [], "page": 1, "total_docs": 0, "total_pages": 0}


def test_dates_are_iso_strings_and_ids_strings(client, db):
    db.movies.insert_one(movie("Toy Story", "1995-10-30", "en", 7.7))
    [m] = get(client).get_json()["movies"]
    assert m == {
        "_id": "1995-10-30/Toy Story",
        "title": "Toy Story",
        "release_date": "1995-10-30T00:00:00Z",
        "year": 1995,
        "original_language": "en",
        "vote_average": 7.7,
    }


def test_ingested_sample_reads_back(client, db, worker):
    with open(SAMPLE_MOVIES, "rb") as f:
        response = client.post("/api/v1/upload", data={"file": (f, "movies.csv")}, content_type="multipart/form-data")
    assert response.status_code == 202
    assert worker.work() is True

    body = get(client, "limit=100").get_json()
    assert body["total_docs"] == 10 and len(body["movies"]) == 10
    toy = next(m for m in body["movies"] if m["title"] == "Toy Story")
    assert toy["_id"] == "1995-10-30/Toy Story"
    assert toy["release_date"] == "1995-10-30T00:00:00Z"
    assert toy["year"] == 1995
    assert toy["vote_average"] == 7.7
    assert toy["budget"] == 30000000 and toy["revenue"] == 373554033 and toy["vote_count"] == 5415
    assert toy["languages"] == ["English"]
    assert toy["original_language"] == "en"
    dates = [m["release_date"] for m in body["movies"]]
    assert dates == sorted(dates)
    assert dates[0] == "1995-02-10T00:00:00Z"  # Father of the Bride Part II


def test_limit_100_is_the_maximum(client, db):
    db.movies.insert_many([movie(f"M{i:03}", f"2000-01-{1 + i % 28:02}") for i in range(120)])
    body = get(client, "limit=100").get_json()
    assert (len(body["movies"]), body["limit"], body["total_docs"], body["total_pages"]) == (100, 100, 120, 2)
    assert len(get(client, "limit=100&page=2").get_json()["movies"]) == 20


# -- filters --------------------------------------------------------------------------------------------


def test_year_filter(client, catalogue):
    body = get(client, "year=2001").get_json()
    assert (body["total_docs"], body["total_pages"]) == (3, 1)
    assert titles(body) == ["Amelie", "Shrek", "Spirited Away"]
    assert get(client, "year=1990").get_json()["total_docs"] == 0


def test_language_filter_matches_original_language(client, catalogue):
    body = get(client, "language=fr").get_json()
    assert titles(body) == ["La Haine", "Amelie"]
    assert all(m["original_language"] == "fr" for m in body["movies"])


def test_year_and_language_together(client, catalogue):
    body = get(client, "year=1995&language=fr").get_json()
    assert titles(body) == ["La Haine"] and body["total_docs"] == 1
    assert get(client, "year=2001&language=de").get_json()["total_docs"] == 0


# -- sorting --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sort_by, field", [("rating", "vote_average"), ("title", "title"), ("release_date", "release_date")]
)
@pytest.mark.parametrize("order", [1, -1])
def test_sort(client, catalogue, sort_by, field, order):
    body = get(client, f"sort_by={sort_by}&order={order}&limit=100").get_json()
    assert [m["_id"] for m in body["movies"]] in acceptable_orders(catalogue, field, order)


def test_release_date_descending(client, catalogue):
    body = get(client, "order=-1&limit=3").get_json()
    assert titles(body) == ["Spirited Away", "Shrek", "Amelie"]


def test_rating_ties_broken_by_id_across_pages(client, db):
    docs = [movie(f"Tied {i:02}", f"19{50 + i}-01-01", rating=7.0) for i in range(20)]
    docs += [movie("Top", "2000-01-01", rating=9.0), movie("Bottom", "2000-01-01", rating=1.0)]
    random.Random(3).shuffle(docs)
    db.movies.insert_many(docs)

    for order in (1, -1):
        full = [m["_id"] for m in get(client, f"sort_by=rating&order={order}&limit=100").get_json()["movies"]]
        assert full in acceptable_orders(docs, "vote_average", order)
        walked, page = [], 1
        while True:
            body = get(client, f"sort_by=rating&order={order}&limit=3&page={page}").get_json()
            assert body["total_pages"] == 8
            if not body["movies"]:
                break
            walked += [m["_id"] for m in body["movies"]]
            page += 1
        assert walked == full
        assert len(set(walked)) == len(docs) == 22


# -- bad parameters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, name",
    [
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-5", "limit"),
        ("year=abc", "year"),
        ("year=99999", "year"),
        ("year=0", "year"),
        ("language=e n", "language"),
        ("language=", "language"),
        ("language=english1", "language"),
        ("sort_by=budget", "sort_by"),
        ("sort_by=vote_average", "sort_by"),
        ("order=2", "order"),
        ("order=asc", "order"),
        ("foo=1", "foo"),
        ("year=1995&year=1996", "year"),
    ],
)
def test_invalid_parameters(client, query, name):
    response = client.get(f"/api/v1/movies?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["parameter"] == name
    assert name in body["error"]["message"]


# -- cache ----------------------------------------------------------------------------------------------


def test_second_request_is_a_cache_hit_even_after_the_db_changed(client, db, catalogue):
    first = get(client, "year=1995")
    assert first.headers["X-Cache"] == "miss"
    db.movies.insert_one(movie("Se7en", "1995-09-22", "en", 8.1))

    second = get(client, "year=1995")
    assert second.headers["X-Cache"] == "hit"
    assert second.get_json() == first.get_json()
    assert second.get_json()["total_docs"] == 7  # the cached answer, from before the insert

    assert get(client, "year=1995&limit=20").headers["X-Cache"] == "miss"  # other parameters: fresh
    assert get(client, "year=1995&limit=20").get_json()["total_docs"] == 8


def test_parameter_order_shares_a_cache_entry(client, catalogue, redis_client):
    assert get(client, "year=1995&limit=10").headers["X-Cache"] == "miss"
    assert get(client, "limit=10&year=1995").headers["X-Cache"] == "hit"
    assert len(redis_client.keys("*")) == 1


def test_deleted_key_is_a_miss(client, db, catalogue, redis_client):
    first = get(client, "language=en")
    assert first.headers["X-Cache"] == "miss"
    assert get(client, "language=en").headers["X-Cache"] == "hit"
    keys = redis_client.keys("*")
    assert len(keys) == 1
    assert 0 < redis_client.ttl(keys[0]) <= 5  # CACHE_TTL default

    redis_client.delete(*keys)
    db.movies.insert_one(movie("Se7en", "1995-09-22", "en", 8.1))
    third = get(client, "language=en")
    assert third.headers["X-Cache"] == "miss"
    assert third.get_json()["total_docs"] == first.get_json()["total_docs"] + 1


def test_a_hit_sends_the_bytes_and_headers_of_the_miss(client, catalogue, redis_client):
    first = get(client, "language=fr&sort_by=title")
    second = get(client, "language=fr&sort_by=title")
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
    assert second.data == first.data
    assert {k: v for k, v in second.headers if k != "X-Cache"} == {k: v for k, v in first.headers if k != "X-Cache"}
    assert first.headers["Content-Type"] == "application/json"
    assert int(first.headers["Content-Length"]) == len(first.data)
    # The wire format is jsonify()'s: sorted keys, compact, one trailing newline; Redis holds those bytes.
    assert first.data == (json.dumps(first.get_json(), sort_keys=True, separators=(",", ":")) + "\n").encode()
    [key] = redis_client.keys("*")
    assert redis_client.get(key) == first.data


def test_non_ascii_titles_survive_the_cache(client, db):
    db.movies.insert_one(movie("Amélie", "2001-04-25", "fr", 7.8))
    first, second = get(client), get(client)
    assert second.headers["X-Cache"] == "hit" and second.data == first.data
    assert titles(second.get_json()) == ["Amélie"]


def test_redis_down_still_serves_from_mongo(config, db, producer, caplog):
    # retries off, as in the app's own client (from_url): redis-py's constructor default retries with backoff
    # for ~4 s per command, which only slows the test down.
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    app = create_app(config, store=db, redis_client=dead, producer=producer)
    client = signed_in(app)
    db.movies.insert_many([movie("Heat", "1995-12-15"), movie("Toy Story", "1995-10-30")])

    with caplog.at_level(logging.WARNING, logger="app.store.cache"):
        for _ in range(2):
            response = client.get("/api/v1/movies")
            assert response.status_code == 200
            assert response.headers["X-Cache"] == "miss"
            body = response.get_json()
            assert titles(body) == ["Toy Story", "Heat"] and body["total_docs"] == 2
        bad = client.get("/api/v1/movies?page=0")
        assert bad.status_code == 400

    warnings = [r for r in caplog.records if r.name == "app.store.cache" and r.levelno == logging.WARNING]
    assert warnings, [(r.name, r.getMessage()) for r in caplog.records]


# -- indexes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sort_field", ["release_date", "vote_average", "title"])
def test_indexes_for_filters_and_sorts(app, db, sort_field):
    keys = [[k for k, _ in info["key"]] for info in db.movies.index_information().values()]
    for prefix in ([], ["year"], ["original_language"], ["year", "original_language"]):
        wanted = prefix + [sort_field]
        assert any(k[: len(wanted)] == wanted for k in keys), (wanted, keys)


def test_the_same_parameters_in_any_order_share_one_cached_page(client, redis_client):
    """Cache.key's promise: a query string's order does not split the cache."""
    first = client.get("/api/v1/movies?year=1995&sort_by=title&order=1&limit=5")
    again = client.get("/api/v1/movies?limit=5&order=1&sort_by=title&year=1995")
    assert first.status_code == again.status_code == 200
    assert (first.headers["X-Cache"], again.headers["X-Cache"]) == ("miss", "hit")
    assert again.get_data() == first.get_data()
    assert len(redis_client.keys("*")) == 1


def test_cache_key_is_the_same_for_the_same_parameters_in_any_order(redis_client):
    from app.store.cache import Cache

    cache = Cache(redis_client, ttl=5, prefix="p:")
    forward = cache.key("movies", {"year": 1995, "sort_by": "title", "order": 1, "limit": 5})
    backward = cache.key("movies", {"limit": 5, "order": 1, "sort_by": "title", "year": 1995})
    assert forward == backward
    assert forward != cache.key("movies", {"year": 1995, "sort_by": "title", "order": 1, "limit": 6})
    assert forward != cache.key("tasks", {"year": 1995, "sort_by": "title", "order": 1, "limit": 5})
