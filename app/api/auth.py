"""Who is asking, and may they? Every route declares the least role it needs; two hooks check it.

Clients send `Authorization: Bearer <secret>`: an API key (app/api/keys.py), or a short-lived JWT that
`POST /api/v1/auth/token` gave for one (HS256, signed with SECRET_KEY; `sub` is the key's id). A token is
checked against its key on every request, so revoking a key ends its tokens at once. No cookie carries a
credential, so a form on another site cannot act for someone signed in to the page.

    no credentials, or bad ones → 401 with WWW-Authenticate: Bearer      a role too low → 403
    another owner's task → 404 (app/api/routes/tasks.py), so its existence is not revealed

A route that declares nothing is admin-only: forgetting to declare fails closed.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import jwt
from flask import Flask, current_app, g, request

from app.api import keys
from app.api.errors import APIError
from app.api.services import services
from app.store.tasks import Owner, Task

log = logging.getLogger(__name__)

RANK = {role: rank for rank, role in enumerate(keys.ROLES)}
ANYONE = None  # a route anyone may call
PUBLIC_ENDPOINTS = ("static",)  # Flask's own: the page's script and stylesheet
MAX_CREDENTIAL = 2048  # characters; a key is 48, a token about 300
ALGORITHM = "HS256"
ISSUER = "movie-ingest"


@dataclass(frozen=True)
class Principal:
    key_id: str | None  # None: authentication is off (AUTH=false)
    name: str
    role: str
    via: str  # "key", "token" or "off"

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def owner(self) -> Owner | None:
        """What a task records of who uploaded it."""
        return {"key_id": self.key_id, "name": self.name} if self.key_id else None


NO_AUTH = Principal(None, "anyone (AUTH=false)", "admin", "off")


def requires(role: str | None):
    """Decorator: the least role a route needs; ANYONE (None) for a public route."""

    def mark(view):
        view.required_role = role
        return view

    return mark


def current() -> Principal | None:
    """Who is asking, if anyone said: None in a public route, or before authenticate() ran."""
    return g.get("principal")


def required() -> Principal:
    """Who is asking, in a route that declares a role: authorize() let no request without a principal reach it
    (with AUTH=false, NO_AUTH). Called elsewhere, it is a bug in the route, not the client's fault: 500."""
    principal = current()
    if principal is None:
        raise RuntimeError(f"auth.required() in {request.endpoint!r}, which admits callers without a principal")
    return principal


def install(app: Flask, between=None) -> None:
    """The two hooks: who is asking (authenticate), then may they (authorize). `between(app)` registers hooks
    that run between the two (app/api/limits.py counts the request against its key there, refused or not)."""
    config = app.extensions["movie_service"].config
    # Embedded (one process), a random key is enough: tokens then last until a restart. Elsewhere the
    # start-up check demands SECRET_KEY, so every API process signs and checks with the same one.
    app.extensions["token_secret"] = config.SECRET_KEY.encode() if config.SECRET_KEY else secrets.token_bytes(32)
    app.before_request(authenticate)
    if between is not None:
        between(app)
    app.before_request(authorize)


def authenticate() -> None:
    """Runs before every view: who is asking (g.principal). A bad credential is kept for authorize() to refuse."""
    if request.endpoint is None:  # no route matched: the 404/405 reveals nothing worth guarding
        return
    if not services().config.AUTH:
        g.principal = NO_AUTH
        return
    required = required_role(request.endpoint)
    if required is ANYONE:  # credentials are not even read: a stale token does not fail a health check
        return
    header = request.headers.get("Authorization")
    if header is None:
        return
    try:
        g.principal = identify(header)
    except APIError as e:
        g.refused = e


def required_role(endpoint: str) -> str | None:
    view = current_app.view_functions[endpoint]
    return ANYONE if endpoint in PUBLIC_ENDPOINTS else getattr(view, "required_role", "admin")


def authorize() -> None:
    """Runs before every view, after authenticate: may the principal call this route (else 401 or 403)."""
    if request.endpoint is None or not services().config.AUTH:
        return
    required = required_role(request.endpoint)
    if required is ANYONE:
        return
    refused = g.pop("refused", None)
    if refused is not None:
        raise refused
    principal = current()
    if principal is None:
        raise unauthorized("This needs an API key or a token: send 'Authorization: Bearer <secret>'.", error=None)
    if not principal.may(required):
        raise APIError(
            403,
            "forbidden",
            f"A {principal.role} key may not do this; it needs the {required} role.",
            role=principal.role,
            required_role=required,
        )


def identify(header: str) -> Principal:
    """The key behind an Authorization header, or 401. Nothing the client sent is echoed or logged."""
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL:
        raise unauthorized("The Authorization header must be 'Bearer <secret>'.")
    store = services().store
    if keys.looks_like_secret(credential):
        key, via = keys.by_secret(store, credential), "key"
        if key is None:
            raise unauthorized("This API key is unknown or revoked.")
    else:
        claims = decode_token(credential)
        key, via = keys.by_id(store, claims["sub"]), "token"
        if key is None:
            raise unauthorized("The key this token was issued for has been revoked.")
    keys.touch(store, key)
    return Principal(key["_id"], key["name"], key["role"], via)


def issue_token(principal: Principal, ttl: int) -> str:
    t = int(time.time())
    claims = {"sub": principal.key_id, "role": principal.role, "iat": t, "exp": t + ttl, "iss": ISSUER}
    return jwt.encode(claims, current_app.extensions["token_secret"], algorithm=ALGORITHM)


def decode_token(token: str) -> dict:
    try:
        return jwt.decode(
            token,
            current_app.extensions["token_secret"],
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("The token has expired; get a new one from POST /api/v1/auth/token.") from None
    except jwt.InvalidTokenError:  # tampered, wrongly signed, alg none, malformed, claims missing
        raise unauthorized("The token is not valid.") from None


def unauthorized(message: str, error: str | None = "invalid_token") -> APIError:
    challenge = 'Bearer realm="movie-ingest"' + (f', error="{error}"' if error else "")
    return APIError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def may_see(task: Task) -> bool:
    """Admins see every task; an uploader only those it uploaded."""
    principal = current()
    if principal is None:
        return False
    owner = task.get("owner")
    return principal.admin or (owner is not None and owner.get("key_id") == principal.key_id)


def owner_key_id() -> str | None:
    """Whose tasks the caller may list: their key's id, or None for an admin (everyone's)."""
    principal = required()  # only routes that need a role list tasks
    return None if principal.admin else principal.key_id


def warn_if_off(config) -> None:
    if not config.AUTH:
        log.warning(
            "AUTH=false: authentication is off; anyone who can reach port %d may upload, read, cancel "
            "and manage everything",
            config.PORT,
        )
