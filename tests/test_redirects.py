"""No answer of the service sends a client to another host (issue 23, #10).

Werkzeug's URL map redirects a path with `//` (merge_slashes) and one without a rule's trailing slash
(strict_slashes) with a 308 whose Location is built from the Host header the client sent: an open redirect.
Sent here as an attacker would, over a raw connection to the real server with `Host: attacker.example`.
"""

from __future__ import annotations

import http.client
import json

import pytest
from flask import Flask

from app import _App
from tests.conftest import SAMPLE_MOVIES
from tests.support.service import Service, multipart

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

HOST = "attacker.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("redirects"), WORKERS="0")
    yield service.start()
    service.stop()


def send(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """`path` exactly as given (no client tidies it) and the attacker's Host; (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        conn.putheader("Authorization", f"Bearer {server.key}")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def assert_json_404(status, headers, body):
    assert status == 404, (status, headers, body[:200])
    assert "Location" not in headers and HOST not in body.decode("utf-8", "replace")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "not_found"


def test_an_upload_to_a_double_slash_path_is_a_json_404_not_a_redirect(server):
    data, headers = multipart(SAMPLE_MOVIES.read_bytes(), "movies.csv")
    assert_json_404(*send(server, "POST", "/api/v1//upload", data, headers))
    status, _, listing = server.request("GET", "/api/v1/processes")
    assert status == 200 and listing["total_docs"] == 0  # nothing was stored under another path either


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "//"),
        ("GET", "//api/v1/movies"),
        ("GET", "/api/v1//movies?limit=1"),
        ("GET", "/static//main.js"),
        ("POST", "//upload"),
        ("GET", "/api/v1/movies/"),  # a trailing slash the rule lacks
        ("GET", "/api/v1/ping/"),
        ("GET", "/api/v1/process//events"),
    ],
)
def test_no_path_is_answered_with_a_redirect(server, method, path):
    assert_json_404(*send(server, method, path))


def test_the_documented_paths_still_answer(server):
    assert send(server, "GET", "/api/v1/ping")[0] == 200
    assert send(server, "GET", "/")[0] == 200
    assert send(server, "GET", "/static/main.js")[0] == 200


def test_a_rule_with_a_trailing_slash_is_not_redirected_to_either():
    """No route has one today (but `/`); one added later must not bring strict_slashes' redirect back."""
    app: Flask = _App(__name__)
    app.add_url_rule("/reports/", "reports", lambda: "ok")
    client = app.test_client()
    assert client.get("/reports/").status_code == 200
    answer = client.get("/reports", headers={"Host": HOST})
    assert answer.status_code == 404 and "Location" not in answer.headers
