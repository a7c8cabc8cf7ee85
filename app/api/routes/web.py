"""GET /: the content team's page (upload with live progress, recent tasks, the movie catalogue).

One template, one stylesheet and the script's ES modules (app/templates, app/static; main.js imports the
rest): no CDN and no build step, so it works offline. The page only talks to the JSON API; it keeps no state
on the server. It signs in by exchanging an API key (typed, or from a sign-in address's #key= fragment) for a
token, which it keeps in sessionStorage and sends as `Authorization: Bearer` (data-auth="off" in the
template: AUTH=false, none).
"""

from __future__ import annotations

import mimetypes

from flask import Blueprint, make_response, render_template

from app.api.auth import ANYONE, requires
from app.api.services import services

bp = Blueprint("web", __name__)

# A browser runs a module script only if it is served as JavaScript (with `nosniff`, strictly so). Flask's
# static route asks the mimetypes module, which reads the host's tables (/etc/mime.types, or the Windows
# registry, where .js can be text/plain): the one right answer is set here instead.
mimetypes.add_type("text/javascript", ".js")

# Only our own files: no inline script or style, nothing from another origin.
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@bp.get("/")
@requires(ANYONE)  # the page holds no data: it signs in, then asks the API with a token
def index():
    config = services().config
    response = make_response(
        render_template("index.html", max_upload_mb=config.MAX_UPLOAD_MB, cache_ttl=config.CACHE_TTL, auth=config.AUTH)
    )
    response.headers["Content-Security-Policy"] = CSP
    return response
