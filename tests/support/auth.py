"""API keys for in-process tests: a header, or a Flask test client that sends it with every request."""

from __future__ import annotations

from app.api import keys


def bearer(db, role: str = "admin", name: str | None = None) -> dict[str, str]:
    """The Authorization header of a new API key with `role`, stored in `db`."""
    _, secret = keys.create(db, name or f"test {role}", role)
    return {"Authorization": f"Bearer {secret}"}


def signed_in(app, role: str = "admin", name: str | None = None):
    """A test client of `app` sending a new `role` key with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = bearer(app.extensions["movie_service"].store, role, name)[
        "Authorization"
    ]
    return client
