"""/api/v1/keys: API keys, for admins. GET lists, POST creates (the secret is in that answer only), DELETE revokes."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from app.api import keys
from app.api.auth import requires
from app.api.errors import APIError
from app.api.services import services

log = logging.getLogger(__name__)
bp = Blueprint("keys", __name__, url_prefix="/api/v1")


@bp.get("/keys")
@requires("admin")
def list_keys():
    return jsonify({"keys": keys.listing(services().store)})


@bp.post("/keys")
@requires("admin")
def create_key():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) - {"name", "role"}:
        raise APIError(400, "bad_request", 'Send a JSON object {"name": "...", "role": "reader|uploader|admin"}.')
    try:
        doc, secret = keys.create(services().store, body.get("name"), body.get("role"))
    except keys.BadKey as e:
        raise APIError(400, "bad_key", str(e)) from None
    log.info("API key %s (%s) created", doc["_id"], doc["role"])
    return jsonify({"key": keys.public(doc), "secret": secret}), 201


@bp.delete("/keys/<key_id>")
@requires("admin")
def revoke_key(key_id: str):
    doc = keys.revoke(services().store, key_id)
    if doc is None:
        raise APIError(404, "key_not_found", f"No API key with id {key_id[:64]!r}.")
    log.info("API key %s revoked", doc["id"])
    return jsonify({"key": doc})
