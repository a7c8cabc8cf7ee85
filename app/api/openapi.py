"""The API's contract: an OpenAPI 3.1 document, served at /api/v1/openapi.json and browsable at /docs.

One source of truth, built from the code it describes: the paths and methods come from the app's url_map,
who may call each from its route's `requires(...)` (app/api/auth.py: 401 and 403 follow from it), and the
query parameters' bounds and choices from the constants the routes check them with. What each operation
takes and answers is written here, once, by endpoint (`_operations`): a route with no entry fails the build,
so a new route cannot go undescribed. The tests validate every answer they receive against this document
(tests/support/contract.py), and Schemathesis fuzzes the real server with it (tests/test_fuzz.py).
"""

from __future__ import annotations

import functools
import re

from flask import Flask

from app import tasks
from app.api import keys
from app.api.auth import ALGORITHM, ANYONE
from app.api.limits import EXEMPT_ENDPOINTS
from app.api.routes import movies
from app.jobs import registry
from app.store.movies import SORT_FIELDS

TITLE = "Movie ingest API"
VERSION = "1"
ERROR = {"$ref": "#/components/schemas/Error"}
TASK = {"$ref": "#/components/schemas/Task"}
KEY = {"$ref": "#/components/schemas/Key"}
NOT_DOCUMENTED = ("static", "docs.asset")  # files, not API operations (docs/api.md lists them)
JSON_ERROR = {"application/json": {"schema": ERROR}}


def _error(description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": JSON_ERROR}
    if headers:
        answer["headers"] = headers
    return answer


def _json(description: str, schema: dict, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _object(required: list[str], properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _text(media: str, description: str) -> dict:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _integer(low: int, high: int, default: int | None = None) -> dict:
    schema = {"type": "integer", "minimum": low, "maximum": high}
    return schema | ({"default": default} if default is not None else {})


TASK_ID = {
    "name": "task_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
    "description": "The task's id, as the upload answered it.",
}
PAGE = _query("page", _integer(1, 1_000_000, 1), "Page number, from 1.")
LIMIT = _query("limit", _integer(1, 100, 10), "Items per page.")
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "string"}},
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": 'The scheme to use: `Bearer realm="movie-ingest"`, with `error="invalid_token"` for a bad one.',
        "required": True,
        "schema": {"type": "string", "pattern": '^Bearer realm="movie-ingest"'},
    }
}
X_CACHE = {
    "X-Cache": {
        "description": "`hit` when the page came from the cache (exactly the bytes the miss sent), else `miss`.",
        "required": True,
        "schema": {"type": "string", "enum": ["hit", "miss"]},
    }
}
CSV = {"text/csv": {"schema": {"type": "string"}}}
TOO_MANY_UPLOADS = _error(
    "`too_many_uploads`: this API process already has MAX_UPLOADS_RECEIVING uploads arriving; or "
    "`database_unavailable`.",
    RETRY_AFTER,
)
UPLOAD_REFUSALS = {
    "400": _error(
        "No `file` part, several, an empty filename, malformed multipart, a malformed chunked body, an unknown "
        "`kind`, or a body cut off (`incomplete_body`)."
    ),
    "408": _error("The body did not arrive within BODY_TIMEOUT_SECONDS."),
    "413": _error(
        "Over MAX_UPLOAD_MB (`file_too_large`), too many form fields (`too_many_fields`), or form fields too big."
    ),
    "415": _error("Not a `.csv` file, or another content type."),
    "422": _error(
        "The file cannot be a job: empty, a header only, a header of no known kind, bad or too many columns, not UTF-8."
    ),
    "429": _error(
        "`too_many_active_tasks`, `upload_quota_exceeded` or `too_many_uploads_for_key`: a per-key limit.",
        RETRY_AFTER,
    ),
    "503": TOO_MANY_UPLOADS,
    "507": _error("`insufficient_storage`: storing it would leave less than MIN_FREE_MB free."),
}
# Empty is taken as absent (the kind the header says), as a form's "automatic" choice sends it; found by make fuzz.
KIND = {"type": "string", "enum": [*registry.names(), ""]}
SAMPLE_PLAYS = "Song,Date,Number of Plays\nUmbrella,2020-01-01,100\nUmbrella,2020-01-01,50\n"
# What a client can do next with an answer's ids (OpenAPI links; Schemathesis follows them too).
TASK_LINKS = {
    name: {"operationId": op, "parameters": {"task_id": "$response.body#/task_id"}}
    for name, op in (
        ("task", "tasks_get_task"),
        ("events", "events_task_events"),
        ("result", "tasks_get_result"),
        ("cancel", "tasks_cancel_task"),
    )
}
PROGRESS_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "progress"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": TASK},
    },
}
END_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "end"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": _object(
                ["task_id", "status"],
                {"task_id": {"type": "string"}, "status": {"enum": list(tasks.FINISHED)}},
            ),
        },
    },
}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "string",
                        "contentMediaType": "text/csv",
                        "description": "The CSV file.",
                        "examples": [SAMPLE_PLAYS],
                    },
                    "kind": KIND | {"description": "Overrides the header's kind; empty: the header's, as when absent."},
                },
                "required": ["file"],
            }
        },
        "text/csv": {"schema": {"type": "string", "examples": [SAMPLE_PLAYS]}},
    },
}
UPLOAD_QUERY = [
    _query("filename", {"type": "string"}, "The file's name, for a raw `text/csv` body (default `upload.csv`)."),
    _query("kind", KIND, "The job kind, overriding the header's; empty: the header's, as when absent."),
]


def _schemas() -> dict:
    timestamp = {"type": ["string", "null"], "format": "date-time"}
    return {
        "Error": {
            "type": "object",
            "description": "Every error's one shape; details such as `parameter`, `expected`, `limit`, "
            "`task_status` or `retry_after` sit beside `code` and `message`.",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                        "message": {"type": "string"},
                        "parameter": {"type": "string"},
                        "limit": {"type": "integer"},
                        "retry_after": {"type": "integer"},
                        "task_status": {"type": "string", "enum": list(tasks.STATUSES)},
                    },
                }
            },
        },
        "Task": {
            "type": "object",
            "description": "A task record (docs/api.md): its state, progress, rejects; a plays task's result.",
            "required": ["task_id", "kind", "status", "filename", "size", "created_at", "updated_at"],
            "properties": {
                "task_id": {"type": "string"},
                "kind": {"type": "string"},
                "status": {"type": "string", "enum": list(tasks.STATUSES)},
                "filename": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "owner": {
                    "type": ["object", "null"],
                    "properties": {"key_id": {"type": "string"}, "name": {"type": "string"}},
                },
                "created_at": timestamp,
                "updated_at": timestamp,
                "started_at": timestamp,
                "finished_at": timestamp,
                "attempts": {"type": "integer", "minimum": 0},
                "worker": {"type": "string", "description": "host.pid.nonce: admins only."},
                "rows_read": {"type": "integer", "minimum": 0},
                "rows_inserted": {"type": "integer", "minimum": 0},
                "rows_updated": {"type": "integer", "minimum": 0},
                "rows_rejected": {"type": "integer", "minimum": 0},
                "bytes_read": {"type": "integer", "minimum": 0},
                "bytes_total": {"type": "integer", "minimum": 0},
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
                "rows_per_sec": {"type": "number", "minimum": 0},
                "rejects": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"line": {"type": "integer"}, "reason": {}}},
                },
                "warnings": {"type": "object"},
                "error": {"type": ["string", "null"]},
                "cancel_requested": {"type": "boolean"},
                "result_url": {"type": "string"},
                "result_size": {"type": "integer", "minimum": 0},
                "groups": {"type": "integer", "minimum": 0},
            },
        },
        "Movie": {
            "type": "object",
            "description": "A movie as stored from its row (docs/cleaning.md); `_id` is `<release_date>/<title>`.",
            "required": ["_id", "title"],
            "properties": {"_id": {"type": "string"}, "title": {"type": "string"}},
        },
        "Key": {
            "type": "object",
            "required": ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"],
            "properties": {
                "id": {"type": "string", "pattern": f"^key_[0-9a-f]{{{keys.ID_HEX}}}$"},
                "name": {"type": "string"},
                "role": {"type": "string", "enum": list(keys.ROLES)},
                "prefix": {"type": "string"},
                "created_at": timestamp,
                "last_used_at": timestamp,
                "revoked_at": timestamp,
            },
        },
    }


def _page(name: str, item: dict, extra: dict | None = None) -> dict:
    return {
        "type": "object",
        "required": ["limit", name, "total_docs", "total_pages"],
        "properties": {
            "limit": {"type": "integer"},
            name: {"type": "array", "items": item},
            "page": {"type": "integer"},
            "total_docs": {"type": "integer", "minimum": 0},
            "total_pages": {"type": "integer", "minimum": 0},
            **(extra or {}),
        },
    }


def _operations() -> dict[str, dict]:
    """What each endpoint takes and answers, by endpoint name (Flask's `blueprint.function`)."""
    accepted: dict[str, object] = {"type": "object", "required": ["task_id", "kind", "message"]}
    accepted["properties"] = {"task_id": {"type": "string"}, "kind": {"type": "string"}, "message": {"type": "string"}}
    return {
        "uploads.upload": {
            "summary": "Upload a CSV and queue it",
            "description": "A multipart form with a `file` part, or a raw `text/csv` body named by `?filename=`. "
            "The job kind comes from the header, or from `kind`.",
            "parameters": UPLOAD_QUERY,
            "requestBody": UPLOAD_BODY,
            "responses": {"202": _json("Stored and queued.", accepted) | {"links": TASK_LINKS}, **UPLOAD_REFUSALS},
        },
        "legacy.upload": {
            "summary": "Upload a CSV (the first system's route)",
            "description": "Kept for scripts written against the first system: as POST /api/v1/upload, answering "
            "only the task's id.",
            "parameters": UPLOAD_QUERY,
            "requestBody": UPLOAD_BODY,
            "responses": {
                "202": _json("Stored and queued.", _object(["task_id"], {"task_id": {"type": "string"}}))
                | {
                    "links": {
                        "result": {"operationId": "legacy_result", "parameters": {"task_id": "$response.body#/task_id"}}
                    }
                },
                **UPLOAD_REFUSALS,
            },
        },
        "legacy.result": {
            "summary": "A plays task's result (the first system's route)",
            "parameters": [TASK_ID],
            "responses": {
                "200": {"description": "The result CSV.", "content": CSV},
                "404": _json(
                    "Not ready, not found, or no result.",
                    _object(["status"], {"status": {"const": "Processing or not found"}}),
                ),
            },
        },
        "tasks.get_task": {
            "summary": "A task's record",
            "parameters": [TASK_ID],
            "responses": {"200": _json("The task.", TASK), "404": _error("`task_not_found` (or another key's task).")},
        },
        "tasks.cancel_task": {
            "summary": "Cancel a task",
            "parameters": [TASK_ID],
            "responses": {
                "200": _json("It was pending: now cancelled.", TASK),
                "202": _json("It is processing: `cancel_requested`, it stops after its current batch.", TASK),
                "404": _error("`task_not_found`."),
                "409": _error("`not_cancellable`: already finished."),
            },
        },
        "tasks.get_result": {
            "summary": "A plays task's result CSV",
            "parameters": [TASK_ID],
            "responses": {
                "200": {
                    "description": "The result, as an attachment named `<upload's name>-totals.csv`.",
                    "headers": {"Content-Disposition": {"required": True, "schema": {"type": "string"}}},
                    "content": CSV,
                },
                "404": _error("`task_not_found`, or `no_result` for a movies task."),
                "409": _error("`not_ready`: pending or processing."),
                "410": _error("`task_failed`, `task_cancelled` or `result_gone`."),
            },
        },
        "tasks.list_tasks": {
            "summary": "Tasks, newest first",
            "description": "The caller's tasks; an admin's: everyone's.",
            "parameters": [
                PAGE,
                LIMIT,
                _query("status", {"type": "string", "enum": list(tasks.STATUSES)}, "Only tasks in this state."),
            ],
            "responses": {
                "200": _json("A page of tasks.", _page("processes", TASK)),
                "400": _error("`invalid_parameter`, naming it."),
            },
        },
        "events.task_events": {
            "summary": "A task's progress as Server-Sent Events",
            "description": "A `retry:` hint, `event: progress` with the task record at each change, then "
            "`event: end` with `{task_id, status}` once it is finished; `: keep-alive` comments between.",
            "parameters": [TASK_ID],
            "responses": {
                "200": {
                    "description": "The event stream. Its schema is that of each event (OpenAPI 3.1 has no "
                    "`itemSchema`): a `progress` event's data is the task record, an `end` event's its id and "
                    "final status, both as JSON.",
                    "content": {"text/event-stream": {"schema": {"oneOf": [PROGRESS_EVENT, END_EVENT]}}},
                },
                "404": _error("`task_not_found`."),
                "429": _error("`too_many_streams_for_key`: SSE_STREAMS_PER_KEY open for this key.", RETRY_AFTER),
                "503": _error(
                    "`too_many_streams`: SSE_MAX_STREAMS open in this process (poll instead); "
                    "or `database_unavailable`."
                ),
            },
        },
        "movies.list_movies": {
            "summary": "The movie catalogue",
            "description": "Filtered, sorted and paged; cut short past MAX_PAGE_KB of JSON, with `truncated` and "
            "`next_offset` to go on with `offset`.",
            "parameters": [
                PAGE,
                _query("offset", _integer(0, movies.MAX_OFFSET), "Start at this movie, instead of `page`."),
                _query("limit", _integer(1, movies.MAX_LIMIT, 10), "Movies per page."),
                _query("year", _integer(1, 9999), "Only movies released that year."),
                _query(
                    "language",
                    {"type": "string", "pattern": r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?$"},
                    "Original language code, such as `en`.",
                ),
                _query("sort_by", {"type": "string", "enum": list(SORT_FIELDS), "default": "release_date"}, "Sort by."),
                _query("order", {"type": "string", "enum": ["1", "-1"], "default": "1"}, "1 ascending, -1 descending."),
            ],
            "responses": {
                "200": _json(
                    "A page of movies.",
                    _page(
                        "movies",
                        {"$ref": "#/components/schemas/Movie"},
                        {
                            "offset": {"type": "integer"},
                            "truncated": {"const": True},
                            "next_offset": {"type": "integer"},
                        },
                    ),
                    X_CACHE,
                ),
                "400": _error("`invalid_parameter`, naming it."),
            },
        },
        "keys.list_keys": {
            "summary": "Every API key (never a secret)",
            "responses": {"200": _json("The keys.", _object(["keys"], {"keys": {"type": "array", "items": KEY}}))},
        },
        "keys.create_key": {
            "summary": "Create an API key",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name", "role"],
                            "properties": {
                                "name": {"type": "string", "pattern": f"^{keys.NAME_PATTERN.pattern}$"},
                                "role": {"type": "string", "enum": list(keys.ROLES)},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(
                    "The key, and its secret: shown in this answer only.",
                    {
                        "type": "object",
                        "required": ["key", "secret"],
                        "properties": {"key": KEY, "secret": {"type": "string", "pattern": f"^{keys.SECRET_PREFIX}"}},
                    },
                ),
                "400": _error("`bad_request` (not such an object) or `bad_key` (a bad name or role)."),
            },
        },
        "keys.revoke_key": {
            "summary": "Revoke an API key, and every token made from it",
            "parameters": [
                {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            ],
            "responses": {
                "200": _json("The revoked key.", {"type": "object", "required": ["key"], "properties": {"key": KEY}}),
                "404": _error("`key_not_found`."),
            },
        },
        "auth.token": {
            "summary": "A short-lived token (JWT) for an API key",
            "responses": {
                "200": _json(
                    "The token.",
                    {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in", "role", "name"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"const": "Bearer"},
                            "expires_in": {"type": "integer", "minimum": 1},
                            "role": {"type": "string", "enum": list(keys.ROLES)},
                            "name": {"type": "string"},
                        },
                    },
                ),
                "400": _error("`key_required`: a token was sent, not a key."),
            },
        },
        "health.health": {
            "summary": "Is every part of the service up?",
            "responses": {
                "200": _json(
                    "What is up, and how much disk is free.",
                    {
                        "type": "object",
                        "required": ["status", "mongo", "redis", "worker", "workers_alive", "disk", "disk_free_mb"],
                        "properties": {
                            "status": {"enum": ["ok", "degraded"]},
                            "mongo": {"enum": ["ok", "unreachable"]},
                            "redis": {"enum": ["ok", "unreachable"]},
                            "worker": {"enum": ["ok", "none alive"]},
                            "workers_alive": {"type": "integer", "minimum": 0},
                            "disk": {"enum": ["ok", "low", "unknown"]},
                            "disk_free_mb": {"type": ["integer", "null"]},
                        },
                    },
                )
            },
        },
        "health.ping": {
            "summary": "Is this API process answering?",
            "responses": {"200": _json("Yes.", _object(["ok"], {"ok": {"const": True}}))},
        },
        "docs.openapi_document": {
            "summary": "This document",
            "responses": {"200": _json("The OpenAPI 3.1 document.", {"type": "object", "required": ["openapi"]})},
        },
        "docs.docs": {
            "summary": "The API, browsable and tryable (Swagger UI, served from this process)",
            "responses": {"200": _text("text/html", "The page.")},
        },
        "web.index": {
            "summary": "The web page",
            "responses": {"200": _text("text/html", "The page.")},
        },
    }


def _common(endpoint: str, role: str | None) -> dict:
    """The answers every operation may give, from who may call it and how it is limited."""
    common = {
        "413": _error("`request_entity_too_large`: a body over 64 KiB (BODY_LIMIT) to any route but an upload."),
        # answered by the HTTP server before the app sees the request (docs/security.md, hostile input)
        "414": _error("`uri_too_long`: a request line over 4094 bytes."),
        "431": _error("`request_header_fields_too_large`: a header over 8190 bytes."),
        "500": _error("`internal_error`: an unexpected failure, logged."),
    }
    if role is not ANYONE:
        common["401"] = _error("`unauthorized`: no credentials, or bad ones.", WWW_AUTHENTICATE)
        common["503"] = _error("`database_unavailable`: the store is unreachable; try again shortly.")
        if role != "reader":
            common["403"] = _error(f"`forbidden`: this needs the {role} role.")
    if endpoint not in EXEMPT_ENDPOINTS:
        common["429"] = _error("`rate_limited`: more than RATE_LIMIT_PER_MINUTE requests this minute.", RETRY_AFTER)
    return common


def _operation(endpoint: str, role: str | None, described: dict) -> dict:
    op = {"operationId": endpoint.replace(".", "_"), "tags": [endpoint.split(".")[0]], **described}
    op["responses"] = {**_common(endpoint, role), **described["responses"]}
    if role is ANYONE:
        op["security"] = []  # no credentials read
    else:
        op["x-required-role"] = role
        op["description"] = (op.get("description", "") + f" Needs the `{role}` role, or a higher one.").strip()
    return op


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: `/process/<task_id>` → `/process/{task_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@functools.cache
def described_endpoints() -> frozenset[str]:
    return frozenset(_operations())


def build(app: Flask, strict: bool = True) -> dict:
    """The document for `app`'s routes; KeyError names a route that has no entry in `_operations()`
    (`strict=False`: such a route, one a test added, is left out)."""
    described = _operations()
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in NOT_DOCUMENTED or (not strict and rule.endpoint not in described):
            continue
        if rule.endpoint not in described:
            raise KeyError(f"route {rule.rule} ({rule.endpoint}) has no description in app/api/openapi.py")
        role = getattr(app.view_functions[rule.endpoint], "required_role", "admin")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(
                rule.endpoint, role, described[rule.endpoint]
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Upload huge CSVs of movies or play counts, follow their tasks, browse the catalogue. "
            "Every error has one shape (`Error`). Roles: `reader` < `uploader` < `admin`; each operation "
            "says the least it needs (`x-required-role`). The prose, with real commands: docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`mcat_…`, docs/security.md), or a token from "
                    f"POST /api/v1/auth/token ({ALGORITHM} JWT, valid TOKEN_TTL_SECONDS, ended by revoking its key).",
                }
            },
        },
    }
