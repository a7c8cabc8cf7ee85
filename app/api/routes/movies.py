"""GET /api/v1/movies: the catalogue, paginated, filtered and sorted, through a short Redis cache.

A page is built, cached and sent whole, so it is bounded in bytes as well as rows: its movies hold at most
MAX_PAGE_KB of JSON. Past it the page is cut short, with `"truncated": true` and `"next_offset"`, the first
movie left out, for `?offset=` (docs/api.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from app.api import params, views
from app.api.auth import requires
from app.api.errors import APIError
from app.api.services import services
from app.store import movies, of
from app.store.serialize import to_json

bp = Blueprint("movies", __name__, url_prefix="/api/v1")

KNOWN = ("page", "offset", "limit", "year", "language", "sort_by", "order")
MAX_PAGE = 1_000_000
MAX_LIMIT = 100
MAX_OFFSET = MAX_PAGE * MAX_LIMIT  # as deep as `page` reaches


def parse_query(args) -> dict:
    params.reject_unknown(args, KNOWN)
    if "page" in args and "offset" in args:
        raise APIError(400, "invalid_parameter", "Invalid 'offset': give page or offset, not both.", parameter="offset")
    return {
        "page": params.integer(args, "page", 1, 1, MAX_PAGE),
        "offset": params.integer(args, "offset", None, 0, MAX_OFFSET),
        "limit": params.integer(args, "limit", 10, 1, MAX_LIMIT),
        "year": params.integer(args, "year", None, 1, 9999),
        "language": params.text(args, "language", r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?", "a language code such as en"),
        "sort_by": params.choice(args, "sort_by", "release_date", tuple(movies.SORT_FIELDS)),
        "order": int(params.choice(args, "order", "1", ("1", "-1"))),
    }


def _skip(q: dict) -> int:
    offset = q.get("offset")
    return offset if offset is not None else (q["page"] - 1) * q["limit"]


def _find(store, q: dict):
    """The page's movies (read inside `with`), and how many match."""
    return of(store).movies.page(q["year"], q["language"], q["sort_by"], q["order"], _skip(q), q["limit"])


def find_movies(store, q: dict) -> dict:
    """The page as a dict, whole (no byte bound): what the store is asked, for tests of the stores."""
    cursor, total = _find(store, q)
    with cursor as found:
        return views.page("movies", [to_json(doc) for doc in found], q["page"], q["limit"], total)


def render(store, q: dict, max_bytes: int) -> bytes:
    """The response body, as jsonify() writes it (compact), its movies cut short past `max_bytes` of JSON.

    Each movie is encoded once, as it comes from the cursor, and the encoding stops at the first one that does
    not fit: memory holds the page, one movie and the driver's batch, never more. A page holds at least one
    movie (a movie alone bigger than the bound is sent alone), so paging always moves on.
    """
    dumps = current_app.json.dumps
    cursor, total = _find(store, q)
    items: list[bytes] = []
    size, truncated = 0, False
    with cursor as found:
        for doc in found:
            item = dumps(to_json(doc), separators=(",", ":")).encode()
            size += len(item) + (1 if items else 0)  # the comma before it
            if size > max_bytes and items:
                truncated = True
                break
            items.append(item)
    page = views.page("movies", [], q["page"], q["limit"], total)
    if q.get("offset") is not None:
        del page["page"]
        page["offset"] = q["offset"]
    if truncated:
        page["truncated"] = True
        page["next_offset"] = _skip(q) + len(items)
    head, tail = dumps(page, separators=(",", ":")).encode().split(b'"movies":[]', 1)
    return head + b'"movies":[' + b",".join(items) + b"]" + tail + b"\n"


@bp.get("/movies")
@requires("reader")
def list_movies():
    svc = services()
    q = parse_query(request.args)
    max_bytes = svc.config.MAX_PAGE_KB * 1024
    body, hit = svc.cache.get_or_compute(svc.cache.key("movies", q), lambda: render(svc.store, q, max_bytes))
    return Response(body, mimetype="application/json", headers={"X-Cache": "hit" if hit else "miss"})
