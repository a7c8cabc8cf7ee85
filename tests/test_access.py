"""Every route × every kind of caller, against the real server process (`python run.py`), as an attacker
would try it: the expected status of each pair, and that secrets reach neither the log nor an answer.

Callers: anonymous, reader, uploader (owns the tasks), another uploader, admin, the uploader's token, a
revoked key, and expired, tampered and `alg: none` tokens.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import jwt
import pytest

from tests.conftest import SHARED_DATA
from tests.support.service import Service, multipart

pytestmark = pytest.mark.server  # starts real processes: the server tier (make check leaves it out)

SECRET_KEY = secrets.token_urlsafe(32)  # the server's, so the test can forge tokens an attacker could not
PLAYS = b"Song,Date,Number of Plays\nUmbrella,2020-01-01,100\nUmbrella,2020-01-01,50\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("access"), SECRET_KEY=SECRET_KEY, SSE_MAX_SECONDS="2")
    service.server = service.start()
    yield service
    service.stop()


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_key(server, name: str, role: str) -> dict:
    status, _, body = server.request(
        "POST", "/api/v1/keys", json.dumps({"name": name, "role": role}).encode(), {"Content-Type": "application/json"}
    )
    assert status == 201, body
    return body


@pytest.fixture(scope="module")
def world(service):
    """The callers, a completed plays task of the uploader's, and a throwaway key per revocation."""
    server = service.server
    made = {role: make_key(server, f"access {role}", role) for role in ("reader", "uploader", "admin")}
    made["other"] = make_key(server, "access other", "uploader")
    revoked = make_key(server, "access revoked", "uploader")
    assert server.request("DELETE", f"/api/v1/keys/{revoked['key']['id']}")[0] == 200
    uploader = made["uploader"]
    status, _, token = server.request("POST", "/api/v1/auth/token", key=uploader["secret"])
    assert status == 200
    token = token["access_token"]
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, SECRET_KEY, algorithms=["HS256"], issuer="movie-ingest")
    t = int(time.time())
    credentials = {
        "anonymous": None,
        "reader": made["reader"]["secret"],
        "uploader": uploader["secret"],
        "other uploader": made["other"]["secret"],
        "admin": made["admin"]["secret"],
        "uploader's token": token,
        "revoked key": revoked["secret"],
        "expired token": jwt.encode({**claims, "iat": t - 7200, "exp": t - 3600}, SECRET_KEY, algorithm="HS256"),
        "tampered token": f"{header}.{b64({**claims, 'role': 'admin'})}.{signature}",
        "alg none token": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({**claims, 'role': 'admin'})}.",
    }
    body, headers = multipart(PLAYS, "plays.csv")
    status, _, answer = server.request("POST", "/api/v1/upload", body, headers, key=uploader["secret"])
    assert status == 202, answer
    task = server.wait_for(answer["task_id"], key=uploader["secret"])
    assert task["status"] == "completed", task
    return {"server": server, "credentials": credentials, "task_id": answer["task_id"], "token": token}


CALLERS = (
    "anonymous",
    "reader",
    "uploader",
    "other uploader",
    "admin",
    "uploader's token",
    "revoked key",
    "expired token",
    "tampered token",
    "alg none token",
)
BAD = {"revoked key": 401, "expired token": 401, "tampered token": 401, "alg none token": 401}
UPLOAD = {
    "anonymous": 401,
    "reader": 403,
    "uploader": 202,
    "other uploader": 202,
    "admin": 202,
    "uploader's token": 202,
    **BAD,
}
OWNED = {"anonymous": 401, "reader": 403, "other uploader": 404, **BAD}  # + uploader, its token, admin: given
ADMIN = {
    "anonymous": 401,
    "reader": 403,
    "uploader": 403,
    "other uploader": 403,
    "admin": None,
    "uploader's token": 403,
    **BAD,
}


def everyone(status: int) -> dict:
    return dict.fromkeys(CALLERS, status)


def reading(status: int) -> dict:
    return {
        "anonymous": 401,
        **dict.fromkeys(("reader", "uploader", "other uploader", "admin", "uploader's token"), status),
        **BAD,
    }


def owned(status: int) -> dict:
    return {**OWNED, **dict.fromkeys(("uploader", "uploader's token", "admin"), status)}


# (method, path, body kind, expected status per caller); {task} is the uploader's completed plays task.
ROUTES = [
    ("GET", "/", None, everyone(200)),
    ("GET", "/static/main.js", None, everyone(200)),
    ("GET", "/docs", None, everyone(200)),
    ("GET", "/docs/swagger-ui.css", None, everyone(200)),
    ("GET", "/api/v1/openapi.json", None, everyone(200)),
    ("GET", "/api/v1/ping", None, everyone(200)),
    ("GET", "/api/v1/health", None, everyone(200)),
    ("GET", "/api/v1/movies", None, reading(200)),
    ("POST", "/api/v1/upload", "plays", UPLOAD),
    ("POST", "/upload", "plays", UPLOAD),
    ("GET", "/api/v1/processes", None, {**reading(200), "reader": 403}),
    ("GET", "/api/v1/process/{task}", None, owned(200)),
    ("GET", "/api/v1/process/{task}/result", None, owned(200)),
    ("GET", "/api/v1/process/{task}/events", None, owned(200)),
    ("DELETE", "/api/v1/process/{task}", None, owned(409)),  # completed: not cancellable, by anyone
    ("GET", "/result/{task}", None, owned(200)),
    ("GET", "/api/v1/keys", None, {**ADMIN, "admin": 200}),
    ("POST", "/api/v1/keys", "key", {**ADMIN, "admin": 201}),
    ("DELETE", "/api/v1/keys/{key}", None, {**ADMIN, "admin": 200}),
    ("POST", "/api/v1/auth/token", None, {**reading(200), "uploader's token": 400}),
]


def test_the_table_covers_every_route_of_the_app(app):
    covered = {
        (method, path.replace("{task}", "<task_id>").replace("{key}", "<key_id>")) for method, path, _, _ in ROUTES
    }
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}}
    files = {"/static/<path:filename>": "/static/main.js", "/docs/<path:filename>": "/docs/swagger-ui.css"}
    routes = {(m, files.get(r, r)) for m, r in routes}
    assert routes == covered


@pytest.mark.parametrize("method,path,kind,expected", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_each_caller_gets_the_expected_answer(world, method, path, kind, expected):
    server = world["server"]
    answers = {}
    for caller in CALLERS:
        url = path.replace("{task}", world["task_id"])
        if "{key}" in path:  # a fresh key for each try: one that succeeds revokes it
            url = url.replace("{key}", make_key(server, "throwaway", "reader")["key"]["id"])
        body, headers = None, {}
        if kind == "plays":
            body, headers = multipart(PLAYS, "plays.csv")
        elif kind == "key":
            body, headers = (
                json.dumps({"name": "made in the table", "role": "reader"}).encode(),
                {"Content-Type": "application/json"},
            )
        status, response_headers, data = server.request(
            method, url, body, headers, raw=True, key=world["credentials"][caller]
        )
        answers[caller] = status
        if status == 401:
            assert response_headers["WWW-Authenticate"].startswith('Bearer realm="movie-ingest"'), (caller, url)
        if status >= 400 and not (url.startswith("/result/") and status == 404):  # the first system's own 404
            assert json.loads(data)["error"]["code"], (caller, url, data)
    assert answers == expected


def test_an_uploader_sees_only_its_tasks_and_no_worker_host(world):
    server, credentials, task_id = world["server"], world["credentials"], world["task_id"]
    status, _, mine = server.request("GET", "/api/v1/processes?limit=100", key=credentials["uploader"])
    assert status == 200 and mine["processes"]
    assert {t["owner"]["name"] for t in mine["processes"]} == {"access uploader"}
    assert all("worker" not in t for t in mine["processes"])
    _, _, theirs = server.request("GET", "/api/v1/processes?limit=100", key=credentials["other uploader"])
    assert task_id not in {t["task_id"] for t in theirs["processes"]}
    _, _, seen_by_admin = server.request("GET", f"/api/v1/process/{task_id}", key=credentials["admin"])
    assert seen_by_admin["worker"].count(".") == 2  # host.pid.nonce: for admins only


def test_secrets_and_tokens_never_reach_the_log(service, world):
    """Every secret and token the table used, good and bad, is absent from the server's log; the admin key
    the start printed appears only in its two sign-in lines."""
    server = world["server"]
    for bad in ("mcat_" + "B" * 43, "eyJ.fake.token"):
        server.request("GET", "/api/v1/movies", key=bad)
    log = service.log()
    for caller, credential in world["credentials"].items():
        if credential and caller != "admin":
            assert credential not in log, caller
            assert credential[25:] not in log, caller  # the part after the prefix and id
    assert "mcat_" + "B" * 43 not in log and "eyJ.fake.token" not in log
    assert world["credentials"]["admin"] not in log  # made over the API: its secret was only in that answer
    printed = [line for line in log.splitlines() if server.key in line]
    assert len(printed) == 2 and "#key=" in printed[0] and "Authorization: Bearer" in printed[1], printed
    assert "Authorization" not in log.replace(printed[1], "")


def test_auth_off_must_be_asked_for_and_warns_at_start(tmp_path):
    service = Service(tmp_path, AUTH="false")
    server = service.start()
    try:
        status, _, body = server.upload(SHARED_DATA / "plays_example_input.csv", "plays.csv", key=None)
        assert status == 202, body
        assert server.request("GET", "/api/v1/processes", key=None)[0] == 200
    finally:
        log = service.stop()
    assert "AUTH=false: authentication is off; anyone who can reach port" in log
    assert "Sign in to the page" not in log
