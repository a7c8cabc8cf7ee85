"""POST /api/v1/auth/token: an API key in, a short-lived token (JWT) out, for the page and for scripts."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api import auth
from app.api.auth import requires
from app.api.errors import APIError
from app.api.services import services

bp = Blueprint("auth", __name__, url_prefix="/api/v1")


@bp.post("/auth/token")
@requires("reader")  # any live key
def token():
    principal = auth.required()
    if principal.via != "key":  # a token cannot extend itself: a stolen one dies when it expires
        raise APIError(400, "key_required", "Send an API key, not a token, to get a token.")
    ttl = services().config.TOKEN_TTL_SECONDS
    return jsonify(
        {
            "access_token": auth.issue_token(principal, ttl),
            "token_type": "Bearer",
            "expires_in": ttl,
            "role": principal.role,
            "name": principal.name,
        }
    )
