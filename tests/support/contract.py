"""Every answer the tests receive is checked against the OpenAPI document (app/api/openapi.py).

tests/conftest.py wraps Flask's test client and the real-server helper (tests/support/service.py `Server`)
with `check`, so no test lists what to check: each answer's status must be one its operation documents, its
content type one of that answer's, its required headers present and valid, and a JSON body valid against
its schema (jsonschema, draft 2020-12, the dialect of OpenAPI 3.1). An answer to a path the document does not
have must be the one error shape, 404 (or 405 for a documented path's other methods). A streamed body (a
progress stream, a file) is not read here: the test reads it.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

UNDOCUMENTED = re.compile(r"^/(static|docs)/.+")  # files: the page's and Swagger UI's, not API operations
SKIPPED_METHODS = ("HEAD", "OPTIONS")  # answered by Flask itself for every route


class Contract:
    """One document, its paths as patterns, and its schemas compiled once."""

    def __init__(self, document: dict):
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:openapi", resource)
        self.paths = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in document["paths"]
        ]
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, pointer: str) -> Draft202012Validator:
        """The validator of the schema at `pointer` in the document (its $refs resolve in the document)."""
        if pointer not in self._validators:
            self._validators[pointer] = Draft202012Validator({"$ref": "urn:openapi#" + pointer}, registry=self.registry)
        return self._validators[pointer]

    def operation(self, method: str, path: str) -> tuple[str | None, dict | None]:
        """(documented path, its operation for `method`); (path, None) for another method; (None, None)."""
        for pattern, documented in self.paths:
            if pattern.match(path):
                return documented, self.document["paths"][documented].get(method.lower())
        return None, None

    def check(self, method: str, path: str, status: int, headers: dict, body: bytes | None) -> None:
        """AssertionError naming what is outside the contract; `body` None: not read (streamed)."""
        method, path = method.upper(), path.partition("?")[0]
        if method in SKIPPED_METHODS or UNDOCUMENTED.match(path):
            return
        headers = {name.lower(): value for name, value in headers.items()}
        documented, op = self.operation(method, path)
        where = f"{method} {path} → {status}"
        if op is None:
            expected = 405 if documented else 404
            assert status == expected, f"{where}: a path/method the document lacks must answer {expected}"
            self._body(where, "/components/schemas/Error", "application/json", headers, body)
            return
        answers = op["responses"]
        code = next((c for c in (str(status), f"{status // 100}XX", "default") if c in answers), None)
        assert code is not None, f"{where}: status not in the document (it has {sorted(answers)})"
        answer = answers[code]
        at = f"/paths/{_escape(documented)}/{method.lower()}/responses/{code}"
        for name, header in answer.get("headers", {}).items():
            value = headers.get(name.lower())
            if value is None:
                assert not header.get("required"), f"{where}: required header {name} missing"
                continue
            self._valid(f"{where}, header {name}", f"{at}/headers/{_escape(name)}/schema", value)
        content = answer.get("content")
        if not content:
            return
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        assert media in content, f"{where}: Content-Type {media!r}, the document says {sorted(content)}"
        self._body(where, f"{at}/content/{_escape(media)}/schema", media, headers, body)

    def _body(self, where: str, pointer: str, media: str, headers: dict, body: bytes | None) -> None:
        if body is None:
            return
        if media != "application/json":
            got = headers.get("content-type", "").partition(";")[0].strip().lower()
            assert got == media, f"{where}: Content-Type {got!r}, expected {media!r}"
            return
        try:
            data = json.loads(body)
        except ValueError:
            raise AssertionError(f"{where}: the body is not JSON: {body[:200]!r}") from None
        self._valid(f"{where}, body", pointer, data)

    def _valid(self, where: str, pointer: str, value) -> None:
        error = next(iter(self.validator(pointer).iter_errors(value)), None)
        if error is not None:
            at = "/".join(str(p) for p in error.absolute_path)
            raise AssertionError(f"{where} is outside the contract at '{at}': {error.message[:500]}")


def _escape(name: str) -> str:
    """A JSON pointer's token: `~` and `/` escaped."""
    return name.replace("~", "~0").replace("/", "~1")


@lru_cache(maxsize=8)
def _for(text: str) -> Contract:
    return Contract(json.loads(text))


def contract_of(document: dict) -> Contract:
    """The Contract for `document`, compiled once per distinct document."""
    return _for(json.dumps(document, sort_keys=True))


def check_test_response(app, response) -> None:
    """A Flask test client's answer, against the document `app` serves."""
    from werkzeug.exceptions import HTTPException

    from app.api import openapi

    request = response.request
    try:
        endpoint = app.url_map.bind("localhost").match(request.path, method=request.method)[0]
    except HTTPException:  # no route: the answer must be the 404 (or 405) error
        endpoint = None
    if endpoint is not None and endpoint not in openapi.described_endpoints() | set(openapi.NOT_DOCUMENTED):
        return  # a route a test added to its own app
    document = app.extensions.get("openapi")
    if document is None:
        document = app.extensions["openapi"] = openapi.build(app, strict=False)
    # Only a JSON body is read (buffered for the test too): a progress stream or a file is the test's to read.
    body = response.get_data() if response.mimetype == "application/json" else None
    contract_of(document).check(request.method, request.path, response.status_code, dict(response.headers), body)


def install(monkeypatch) -> None:
    """Every answer of Flask's test client and of `Server.request` is checked from now on."""
    from flask.testing import FlaskClient

    from tests.support import service

    open_ = FlaskClient.open

    def checked_open(self, *args, **kwargs):
        response = open_(self, *args, **kwargs)
        check_test_response(self.application, response)
        return response

    request = service.Server.request

    def checked_request(self, method, path, body=None, headers=None, raw=False, key=service.AS_KEY):
        status, answer_headers, data = request(self, method, path, body, headers, raw=True, key=key)
        served = getattr(self, "contract", None)
        if served is None:  # the document this server serves, fetched once
            _, _, text = request(self, "GET", "/api/v1/openapi.json", raw=True, key=None)
            served = self.contract = contract_of(json.loads(text))
        served.check(method, path, status, answer_headers, data)
        if raw:
            return status, answer_headers, data
        return status, answer_headers, json.loads(data) if data else None

    monkeypatch.setattr(FlaskClient, "open", checked_open)
    monkeypatch.setattr(service.Server, "request", checked_request)
