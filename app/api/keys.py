"""API keys: who may call the API, with which role. The store keeps them (app/store/: `api_keys`, or the file's `keys`).

A secret is `mcat_`, the key's id (16 hex digits) and 43 URL-safe characters (256 random bits): the prefix
lets people and secret scanners recognise a leaked one, and the id finds its record by primary key, after
which the SHA-256 of the whole secret must match (compared in constant time). Only that hash is stored. A
slow password hash would add nothing: a secret this random cannot be guessed from its hash, and a fast one
keeps every request cheap. The first characters are kept in clear (`prefix`) to tell keys apart.

    {_id: "key_<16 hex>", name, role, hash, prefix, created_at, last_used_at, revoked_at}
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from app.store import of
from app.store.serialize import to_json
from app.store.tasks import now

ROLES = ("reader", "uploader", "admin")  # each may do what the one before may, and more
SECRET_PREFIX = "mcat_"
ID_HEX = 16  # the key id's hex digits, right after the prefix
SHOWN_CHARS = len(SECRET_PREFIX) + ID_HEX + 4  # of a secret kept in clear: prefix, id and 4 random characters
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
TOUCH_SECONDS = 60  # last_used_at is written at most this often per key, not on every request
# The page's sign-in URL carries a secret in its fragment (run.py prints one); scripts find it with this.
SIGN_IN = re.compile(r"/#key=(" + SECRET_PREFIX + r"[A-Za-z0-9_-]+)")


class BadKey(ValueError):
    """A key cannot be created as asked (bad name or role)."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def sign_in_url(base_url: str, secret: str) -> str:
    return f"{base_url}/#key={secret}"


def printed_secret(text: str) -> str | None:
    """The secret of the first sign-in URL in `text` (a log, a terminal's output), or None."""
    found = SIGN_IN.search(text)
    return found.group(1) if found else None


def looks_like_secret(value: str) -> bool:
    return value.startswith(SECRET_PREFIX)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BadKey("name must be 1 to 64 letters, digits, spaces or . _ @ -, starting with a letter or digit")
    return name


def check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise BadKey(f"role must be one of {', '.join(ROLES)}")
    return role


def create(store, name: object, role: object) -> tuple[dict, str]:
    """A new key, `name` and `role` as the client sent them (BadKey unless they will do); returns its record and
    its secret, which is shown this once and stored nowhere."""
    checked = {"name": check_name(name), "role": check_role(role)}
    id_hex = secrets.token_hex(ID_HEX // 2)
    secret = SECRET_PREFIX + id_hex + secrets.token_urlsafe(32)
    doc = {
        "_id": "key_" + id_hex,
        **checked,
        "hash": digest(secret),
        "prefix": secret[:SHOWN_CHARS],
        "created_at": now(),
        "last_used_at": None,
        "revoked_at": None,
    }
    of(store).keys.insert(doc)
    return doc, secret


def by_secret(store, secret: str) -> dict | None:
    """The live (unrevoked) key with this secret, or None."""
    id_hex = secret[len(SECRET_PREFIX) : len(SECRET_PREFIX) + ID_HEX]
    key = by_id(store, "key_" + id_hex) if len(id_hex) == ID_HEX else None
    return key if key is not None and hmac.compare_digest(key["hash"], digest(secret)) else None


def by_id(store, key_id: str) -> dict | None:
    """The live (unrevoked) key with this id, or None. By `_id` alone: a primary-key lookup on any server."""
    key = of(store).keys.get(key_id)
    return key if key is not None and key["revoked_at"] is None else None


def touch(store, key: dict) -> None:
    """Record that the key was used, at most once a minute (a write per request would double the load)."""
    t = now()
    last = key.get("last_used_at")
    if last is None or t - last >= timedelta(seconds=TOUCH_SECONDS):
        of(store).keys.touch(key["_id"], t)


def listing(store) -> list[dict]:
    return [public(doc) for doc in of(store).keys.listing()]


def revoke(store, key_id: str) -> dict | None:
    """Revoke a key (its secret and its tokens stop working at once); None if there is no such key."""
    keys = of(store).keys
    keys.revoke(key_id, now())
    doc = keys.get(key_id)
    return public(doc) if doc else None


def any_key(store) -> bool:
    return of(store).keys.any_live()


def public(doc: dict) -> dict:
    """A key as an admin sees it: everything but the hash."""
    shown = {k: v for k, v in doc.items() if k not in ("_id", "hash")}
    return to_json({"id": doc["_id"], **shown})
