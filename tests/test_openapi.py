"""The contract (app/api/openapi.py): valid OpenAPI 3.1, true to the app's routes, served with its docs.

Every answer the other tests receive is checked against it (tests/support/contract.py, wired in
tests/conftest.py); the tests here show that check refusing what is outside the contract, so it cannot
pass by accepting everything. /docs is tried in Chromium: Swagger UI lists every operation, and nothing
is loaded from another origin nor refused by the page's Content-Security-Policy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import flask_swagger_ui
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app.api import openapi
from app.api.routes.web import CSP
from tests.support.contract import Contract
from tests.support.service import Service
from tests.test_browser import SHOTS, browser  # noqa: F401  (the Chromium fixture)

FILES = ("static", "docs.asset")  # endpoints that serve files: docs/api.md lists them, the contract does not
ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real service (`python run.py`), no worker."""
    service = Service(tmp_path_factory.mktemp("openapi"), WORKERS="0")
    yield service.start()
    service.stop()


@pytest.fixture
def document(anonymous) -> dict:
    response = anonymous.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises, naming the first error


def test_every_route_and_method_is_in_the_document_and_it_names_no_other(app, document):
    routes = {
        (method.lower(), openapi.openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in FILES
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations the app does not have"
    assert ("get", "/api/v1/process/{task_id}/events") in documented  # the progress stream
    assert {("post", "/upload"), ("get", "/result/{task_id}")} <= documented  # the first system's two routes


def test_a_route_without_a_description_fails_the_build(app):
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "")
    with pytest.raises(KeyError, match="forgotten"):
        openapi.build(app)


def test_each_operation_says_the_role_its_route_needs_and_its_refusals(app, document):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in FILES:
            continue
        role = getattr(app.view_functions[rule.endpoint], "required_role", "admin")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = document["paths"][openapi.openapi_path(rule.rule)][method.lower()]
            where = f"{method} {rule.rule}"
            if role is None:
                assert op["security"] == [] and "401" not in op["responses"], where
                continue
            assert op["x-required-role"] == role, where
            assert "security" not in op and document["security"] == [{"bearer": []}], where
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"], where
            assert ("403" in op["responses"]) == (role != "reader"), where
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }


def test_the_documented_headers_and_error_shape(document):
    movies = document["paths"]["/api/v1/movies"]["get"]["responses"]
    assert movies["200"]["headers"]["X-Cache"]["schema"]["enum"] == ["hit", "miss"]
    assert "Retry-After" in movies["429"]["headers"]
    upload = document["paths"]["/api/v1/upload"]["post"]["responses"]
    assert "Retry-After" in upload["503"]["headers"]
    for path, item in document["paths"].items():
        for op in item.values():
            for status, given in op["responses"].items():
                if int(status) >= 400 and path != "/result/{task_id}":  # the first system's own 404
                    assert given["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


# -- the check every test's answers go through refuses what is outside the contract ----------------------


def answer(contract: Contract, method: str, path: str, status: int, body, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    contract.check(method, path, status, headers, json.dumps(body).encode() if body is not None else None)


def test_the_check_refuses_answers_outside_the_contract(document):
    contract = Contract(document)
    page = {"limit": 10, "movies": [], "page": 1, "total_docs": 0, "total_pages": 0}
    answer(contract, "GET", "/api/v1/movies?year=1995", 200, page, {"X-Cache": "miss"})  # in the contract
    refused = [
        ("GET", "/api/v1/movies", 200, page, {}, "required header X-Cache missing"),
        ("GET", "/api/v1/movies", 200, page, {"X-Cache": "maybe"}, "header X-Cache"),
        ("GET", "/api/v1/movies", 200, {**page, "total_docs": -1}, {"X-Cache": "hit"}, "total_docs"),
        ("GET", "/api/v1/movies", 418, None, {}, "status not in the document"),
        ("GET", "/api/v1/process/abc", 404, {"error": {"code": "task_not_found"}}, {}, "'message' is a required"),
        ("GET", "/api/v1/process/abc", 200, {"task_id": "abc", "status": "lost"}, {}, "outside the contract"),
        ("GET", "/api/v1/nothing", 200, {"ok": True}, {}, "must answer 404"),
        ("PUT", "/api/v1/ping", 404, {"error": {"code": "x", "message": "y"}}, {}, "must answer 405"),
        ("GET", "/api/v1/ping", 200, {"ok": True}, {"Content-Type": "text/html"}, "Content-Type 'text/html'"),
    ]
    for method, path, status, body, headers, why in refused:
        with pytest.raises(AssertionError, match=re.escape(why)):
            answer(contract, method, path, status, body, headers)


@pytest.mark.server
def test_the_real_server_helper_is_checked_too(server):
    """Server.request checks against the document the server serves, fetched once: here a stricter one."""
    assert server.request("GET", "/api/v1/ping")[::2] == (200, {"ok": True})
    document = json.loads(server.request("GET", "/api/v1/openapi.json", raw=True)[2])
    ping = document["paths"]["/api/v1/ping"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    ping["properties"]["ok"] = {"const": False}
    server.contract = Contract(document)
    try:
        with pytest.raises(AssertionError, match="GET /api/v1/ping → 200, body is outside the contract"):
            server.request("GET", "/api/v1/ping")
    finally:
        del server.contract


def test_the_test_client_is_checked_too(client, app):
    """The hook is on: an answer a route gives outside the contract fails the test that receives it."""
    app.view_functions["health.ping"] = lambda: {"ok": "yes"}  # the document says `true`
    with pytest.raises(AssertionError, match="GET /api/v1/ping → 200, body is outside the contract"):
        client.get("/api/v1/ping")


# -- /docs --------------------------------------------------------------------------------------------------


def test_docs_is_served_from_this_process_with_the_pages_csp(anonymous):
    response = anonymous.get("/docs")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CSP
    html = response.get_data(as_text=True)
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert linked and all(url.startswith("/") or url.startswith("data:") for url in linked), linked
    assert "<script>" not in html  # no inline script: the CSP would refuse it
    for url in (u for u in linked if u.startswith("/")):
        asset = anonymous.get(url)
        assert asset.status_code == 200, url
        if url.startswith("/docs/"):  # Swagger UI's own files, byte for byte from the package
            assert asset.get_data() == (ASSETS / url.removeprefix("/docs/")).read_bytes(), url
    assert 'data-url="/api/v1/openapi.json"' in html


def test_the_web_page_links_to_the_docs(anonymous):
    assert 'href="/docs"' in anonymous.get("/").get_data(as_text=True)


@pytest.mark.browser
def test_docs_in_chromium_lists_every_operation_and_loads_nothing_from_elsewhere(browser, server):  # noqa: F811
    page = browser.new_page()
    try:
        requested, refused = [], []
        page.on("request", lambda r: requested.append(r.url))
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        document = json.loads(server.request("GET", "/api/v1/openapi.json", raw=True)[2])
        operations = sum(len(item) for item in document["paths"].values())
        assert page.locator(".opblock").count() == operations
        assert page.locator(".opblock-summary-path", has_text="/api/v1/process/{task_id}/events").count() == 1
        page.screenshot(path=str(SHOTS / "docs.png"), full_page=False)
    finally:
        page.close()
    assert refused == []
    assert requested and all(url.startswith(server.url + "/") or url.startswith("data:") for url in requested), [
        url for url in requested if not url.startswith(server.url)
    ]


# -- found by the fuzzer (tests/test_fuzz.py): each has its test --------------------------------------------


@pytest.mark.server
def test_a_request_line_too_long_is_a_documented_414(server):
    """Found with FUZZ_SEED=4242: a query string of some 10 KB of repeated parameters got gunicorn's 414
    `uri_too_long`, a status the document did not have. Server.request checks the answer against it."""
    query = "&".join(f"limit=x{i}" for i in range(1000))
    status, _, body = server.request("GET", f"/api/v1/movies?{query}")
    assert status == 414 and body["error"]["code"] == "uri_too_long"


def test_an_empty_kind_is_the_headers_kind_and_the_document_allows_it(client, document):
    """Found by `make fuzz` (seed 31652172): `POST /upload?kind=` was accepted (202, the header's kind) while
    the document's `kind` allowed only the kinds' names, so a request it called invalid succeeded."""
    plays = b"Song,Date,Number of Plays\nUmbrella,2020-01-01,100\n"
    response = client.post("/api/v1/upload?kind=&filename=p.csv", data=plays, content_type="text/csv")
    assert response.status_code == 202 and response.get_json()["kind"] == "plays"
    for path in ("/api/v1/upload", "/upload"):
        (kind,) = [p for p in document["paths"][path]["post"]["parameters"] if p["name"] == "kind"]
        assert Draft202012Validator(kind["schema"]).is_valid("")
        assert not Draft202012Validator(kind["schema"]).is_valid("songs")
