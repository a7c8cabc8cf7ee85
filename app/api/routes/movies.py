"""GET /api/v1/movies: the catalogue, paginated, filtered and sorted, through a short Redis cache."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from app.api import params, views
from app.api.auth import requires
from app.api.services import services
from app.store import movies
from app.store.serialize import to_json

bp = Blueprint("movies", __name__, url_prefix="/api/v1")

KNOWN = ("page", "limit", "year", "language", "sort_by", "order")


def parse_query(args) -> dict:
    params.reject_unknown(args, KNOWN)
    return {
        "page": params.integer(args, "page", 1, 1, 1_000_000),
        "limit": params.integer(args, "limit", 10, 1, 100),
        "year": params.integer(args, "year", None, 1, 9999),
        "language": params.text(args, "language", r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?", "a language code such as en"),
        "sort_by": params.choice(args, "sort_by", "release_date", tuple(movies.SORT_FIELDS)),
        "order": int(params.choice(args, "order", "1", ("1", "-1"))),
    }


def find_movies(db, q: dict) -> dict:
    query = movies.query(q["year"], q["language"])
    # Unfiltered, the collection's own count is exact enough and needs no scan.
    total = db.movies.count_documents(query) if query else db.movies.estimated_document_count()
    cursor = (
        db.movies.find(query)
        .sort(movies.sort_spec(q["sort_by"], q["order"]))
        .skip((q["page"] - 1) * q["limit"])
        .limit(q["limit"])
    )
    return views.page("movies", [to_json(doc) for doc in cursor], q["page"], q["limit"], total)


def render(page: dict) -> bytes:
    """The response body, as jsonify() writes it (compact); cached as is, so a hit is never re-encoded."""
    return (current_app.json.dumps(page, separators=(",", ":")) + "\n").encode()


@bp.get("/movies")
@requires("reader")
def list_movies():
    svc = services()
    q = parse_query(request.args)
    body, hit = svc.cache.get_or_compute(svc.cache.key("movies", q), lambda: render(find_movies(svc.db, q)))
    return Response(body, mimetype=current_app.json.mimetype, headers={"X-Cache": "hit" if hit else "miss"})
