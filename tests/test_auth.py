"""Keys, roles, tokens and ownership, in process: what each caller is answered, and what is stored.

The same rules against the real server process, route by route, are in tests/test_access.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time

import jwt
import pytest

from app import create_app
from app.api import auth, keys
from app.config import ConfigError, check_secret_key, load_config
from tests.conftest import SAMPLE_MOVIES
from tests.support import REPO
from tests.support.auth import bearer, signed_in

PLAYS = b"Song,Date,Number of Plays\nUmbrella,2020-01-01,100\n"


def upload(client, data=PLAYS, name="p.csv", url="/api/v1/upload"):
    return client.post(url, data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def secret_of(header: dict) -> str:
    return header["Authorization"].split(" ", 1)[1]


def token_for(client) -> str:
    response = client.post("/api/v1/auth/token")
    assert response.status_code == 200, response.json
    return response.json["access_token"]


@pytest.fixture
def uploader(app):
    return signed_in(app, "uploader", "loader")


@pytest.fixture
def other(app):
    return signed_in(app, "uploader", "someone else")


@pytest.fixture
def reader(app):
    return signed_in(app, "reader")


# -- who may call what ------------------------------------------------------------------------------


def test_every_route_declares_the_role_it_needs(app):
    undeclared = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not hasattr(app.view_functions[rule.endpoint], "required_role")
    ]
    assert undeclared == []


def test_a_route_that_declares_nothing_is_for_admins_only(app, db):
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: {"ok": True})
    for role, status in (("reader", 403), ("uploader", 403), ("admin", 200)):
        assert app.test_client().get("/api/v1/forgotten", headers=bearer(db, role)).status_code == status, role
    assert app.test_client().get("/api/v1/forgotten").status_code == 401


def test_no_credentials_is_401_with_a_bearer_challenge(anonymous):
    response = anonymous.get("/api/v1/movies")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="movie-ingest"'
    assert response.json["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in response.json["error"]["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "bearer mcat_unknown",
        "Bearer " + "x" * 5000,
        "Token abc",
        "Bearer mcat_" + "A" * 43,
        "Bearer mcat_" + "0" * 16 + "A" * 43,
        "Bearer not.a.jwt",
    ],
)
def test_a_bad_credential_is_401_invalid_token_and_is_not_echoed(anonymous, header):
    response = anonymous.get("/api/v1/movies", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="movie-ingest", error="invalid_token"'
    assert response.json["error"]["message"] in (
        "The Authorization header must be 'Bearer <secret>'.",
        "This API key is unknown or revoked.",
        "The token is not valid.",
    )  # fixed words: nothing the client sent comes back


def test_public_routes_answer_anyone_and_ignore_a_stale_token(anonymous):
    for path in ("/", "/api/v1/ping", "/api/v1/health", "/static/main.js"):
        for headers in ({}, {"Authorization": "Bearer expired.or.bad"}):
            assert anonymous.get(path, headers=headers).status_code == 200, (path, headers)


def test_a_reader_browses_but_may_not_upload_or_see_tasks(reader):
    assert reader.get("/api/v1/movies").status_code == 200
    response = upload(reader)
    assert response.status_code == 403
    assert response.json["error"] == {
        "code": "forbidden",
        "message": "A reader key may not do this; it needs the uploader role.",
        "role": "reader",
        "required_role": "uploader",
    }
    assert reader.get("/api/v1/processes").status_code == 403
    assert reader.get("/api/v1/keys").status_code == 403


def test_a_refused_upload_leaves_no_file_and_no_task(reader, anonymous, db, upload_dir):
    assert upload(reader).status_code == 403
    assert upload(anonymous).status_code == 401
    assert db.processes.count_documents({}) == 0
    assert list(upload_dir.iterdir()) == []


# -- owners -----------------------------------------------------------------------------------------


def test_a_task_records_its_owner_and_only_the_owner_and_admins_see_it(uploader, other, client, db):
    response = upload(uploader)
    assert response.status_code == 202
    task_id = response.json["task_id"]
    stored = db.processes.find_one({"task_id": task_id})
    key = db.api_keys.find_one({"name": "loader"})
    assert stored["owner"] == {"key_id": key["_id"], "name": "loader"}

    assert uploader.get(f"/api/v1/process/{task_id}").json["owner"] == {"key_id": key["_id"], "name": "loader"}
    assert client.get(f"/api/v1/process/{task_id}").status_code == 200  # an admin
    for path in (
        f"/api/v1/process/{task_id}",
        f"/api/v1/process/{task_id}/result",
        f"/api/v1/process/{task_id}/events",
        "/api/v1/process/no-such-task",
    ):
        response = other.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "task_not_found"  # the same as for a task that does not exist
    assert other.delete(f"/api/v1/process/{task_id}").status_code == 404
    assert db.processes.find_one({"task_id": task_id})["status"] == "pending"  # not cancelled by the other
    assert other.get(f"/result/{task_id}").status_code == 404


def test_a_listing_holds_only_the_callers_tasks_and_an_admin_sees_all(uploader, other, client):
    mine = {upload(uploader).json["task_id"] for _ in range(3)}
    theirs = {upload(other).json["task_id"] for _ in range(2)}
    listed = uploader.get("/api/v1/processes?limit=100").json
    assert {t["task_id"] for t in listed["processes"]} == mine and listed["total_docs"] == 3
    assert {t["task_id"] for t in other.get("/api/v1/processes").json["processes"]} == theirs
    assert {t["task_id"] for t in client.get("/api/v1/processes").json["processes"]} == mine | theirs


def test_the_workers_host_and_pid_are_shown_to_admins_only(uploader, client, worker):
    task_id = upload(uploader).json["task_id"]
    worker.work()
    assert client.get(f"/api/v1/process/{task_id}").json["worker"] == "test-worker"
    assert "worker" not in uploader.get(f"/api/v1/process/{task_id}").json
    assert all("worker" not in t for t in uploader.get("/api/v1/processes").json["processes"])
    events = uploader.get(f"/api/v1/process/{task_id}/events").get_data(as_text=True)
    assert '"status":"completed"' in events and "test-worker" not in events
    assert "test-worker" in client.get(f"/api/v1/process/{task_id}/events").get_data(as_text=True)


def test_the_owner_downloads_the_result_through_the_first_systems_route(uploader, other, worker):
    task_id = upload(uploader, url="/upload").json["task_id"]
    worker.work()
    expected = b"Song,Date,Total Number of Plays for Date\nUmbrella,2020-01-01,100\n"
    assert uploader.get(f"/result/{task_id}").data == expected
    assert other.get(f"/result/{task_id}").json == {"status": "Processing or not found"}


# -- tokens -----------------------------------------------------------------------------------------


def test_a_key_gets_a_token_that_works_in_its_place(app, uploader):
    response = uploader.post("/api/v1/auth/token")
    body = response.json
    assert response.status_code == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["role"] == "uploader" and body["name"] == "loader"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600 and claims["role"] == "uploader" and claims["sub"].startswith("key_")
    with_token = app.test_client()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert upload(with_token).status_code == 401  # nothing without it
    response = with_token.post("/api/v1/upload", data={"file": (io.BytesIO(PLAYS), "p.csv")}, headers=headers)
    assert response.status_code == 202
    assert with_token.get("/api/v1/processes", headers=headers).json["total_docs"] == 1


def test_a_token_cannot_get_another_token(app, uploader):
    token = token_for(uploader)
    response = app.test_client().post("/api/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and response.json["error"]["code"] == "key_required"


def forged(app, **changes) -> str:
    t = int(time.time())
    claims = {"sub": "key_x", "role": "admin", "iat": t, "exp": t + 60, "iss": auth.ISSUER, **changes}
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, app.extensions["token_secret"], algorithm="HS256"
    )


def unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_expired_tampered_unsigned_and_wrongly_signed_tokens_are_refused(app, db, uploader):
    key_id = db.api_keys.find_one({"name": "loader"})["_id"]
    good = token_for(uploader)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    elevated = base64.urlsafe_b64encode(json.dumps({**claims, "role": "admin"}).encode()).rstrip(b"=").decode()
    t = int(time.time())
    cases = {
        "expired": (forged(app, sub=key_id, iat=t - 7200, exp=t - 3600), "The token has expired"),
        "tampered": (f"{header}.{elevated}.{signature}", "The token is not valid."),
        "alg none": (unsigned({**claims}), "The token is not valid."),
        "wrong key": (
            jwt.encode(claims, "another-secret-of-at-least-32-characters", algorithm="HS256"),
            "The token is not valid.",
        ),
        "no exp": (forged(app, sub=key_id, exp=None), "The token is not valid."),
        "other issuer": (forged(app, sub=key_id, iss="elsewhere"), "The token is not valid."),
        "unknown key": (forged(app, sub="key_nobody"), "The key this token was issued for has been revoked."),
    }
    for name, (token, message) in cases.items():
        response = app.test_client().get("/api/v1/processes", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json["error"]["message"].startswith(message), (name, response.json)
    assert app.test_client().get("/api/v1/processes", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_revoking_a_key_ends_its_secret_and_its_tokens_at_once(app, db, client):
    made = client.post("/api/v1/keys", json={"name": "temp", "role": "uploader"}).json
    key_client = app.test_client()
    key_header = {"Authorization": f"Bearer {made['secret']}"}
    token = key_client.post("/api/v1/auth/token", headers=key_header).json["access_token"]
    token_header = {"Authorization": f"Bearer {token}"}
    assert key_client.get("/api/v1/processes", headers=token_header).status_code == 200

    revoked = client.delete(f"/api/v1/keys/{made['key']['id']}")
    assert revoked.status_code == 200 and revoked.json["key"]["revoked_at"] is not None
    for header in (key_header, token_header):
        assert key_client.get("/api/v1/processes", headers=header).status_code == 401
    assert client.delete("/api/v1/keys/key_nobody").status_code == 404


# -- keys -------------------------------------------------------------------------------------------


def test_an_admin_creates_lists_and_revokes_keys_and_the_secret_is_shown_once(client, db):
    response = client.post("/api/v1/keys", json={"name": "loader", "role": "uploader"})
    assert response.status_code == 201
    made = response.json
    secret = made["secret"]
    assert secret.startswith("mcat_" + made["key"]["id"][4:]) and len(secret) == 5 + 16 + 43
    assert made["key"]["prefix"] == secret[:25] and made["key"]["role"] == "uploader"
    assert set(made["key"]) == {"id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"}
    listed = client.get("/api/v1/keys").get_data(as_text=True)
    assert secret not in listed and secret[25:] not in listed and "hash" not in listed
    assert made["key"]["id"] in listed


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "role": "root"},
        {"name": "", "role": "reader"},
        {"name": "a" * 65, "role": "reader"},
        {"name": "evil\nname", "role": "reader"},
        {"name": "$where", "role": "reader"},
        {"role": "reader"},
        {"name": "x", "role": "reader", "extra": 1},
        ["not", "an", "object"],
        {"name": {"$ne": 1}, "role": "reader"},
    ],
)
def test_a_bad_key_request_is_400_and_creates_nothing(client, db, body):
    before = db.api_keys.count_documents({})
    response = client.post("/api/v1/keys", json=body)
    assert response.status_code == 400 and response.json["error"]["code"] in ("bad_key", "bad_request")
    assert db.api_keys.count_documents({}) == before


def test_only_the_hash_of_a_secret_is_stored_and_last_use_is_recorded(store):
    doc, secret = keys.create(store, "loader", "uploader")
    stored = store.keys.get(doc["_id"])
    assert stored["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored) and secret[25:] not in repr(stored)
    assert stored["last_used_at"] is None
    found = keys.by_secret(store, secret)
    keys.touch(store, found)
    assert store.keys.get(doc["_id"])["last_used_at"] is not None
    keys.revoke(store, doc["_id"])
    assert keys.by_secret(store, secret) is None and keys.by_id(store, doc["_id"]) is None


# -- settings ---------------------------------------------------------------------------------------


def test_auth_off_lets_anyone_in_and_warns(config, db, redis_client, producer, caplog):
    app = create_app(config.with_overrides(AUTH=False), store=db, redis_client=redis_client, producer=producer)
    assert upload(app.test_client()).status_code == 202
    assert app.test_client().get("/api/v1/processes").json["total_docs"] == 1
    with caplog.at_level(logging.WARNING, logger="app.api.auth"):
        auth.warn_if_off(config.with_overrides(AUTH=False))
    assert "AUTH=false: authentication is off" in caplog.text


def test_secret_key_rules():
    with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 characters, got 5"):
        load_config({"SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="SECRET_KEY must be set when MONGO_URI is set"):
        check_secret_key(load_config({"MONGO_URI": "mongodb://db:27017"}))
    check_secret_key(load_config({"MONGO_URI": "mongodb://db:27017", "AUTH": "false"}))
    check_secret_key(load_config({}))  # embedded: a random key per start
    assert "SECRET_KEY" not in repr(load_config({"SECRET_KEY": "s" * 40}))


def test_tokens_signed_with_secret_key_are_accepted_by_another_app_with_the_same_key(
    config, db, redis_client, producer
):
    shared = config.with_overrides(SECRET_KEY="k" * 40)
    one, two = (create_app(shared, store=db, redis_client=redis_client, producer=producer) for _ in range(2))
    token = token_for(signed_in(one, "uploader"))
    assert two.test_client().get("/api/v1/processes", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# -- the command line -------------------------------------------------------------------------------


def keys_command(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.tools.keys", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "MONGO_URI": "", "REDIS_URL": "", **env},
        timeout=60,
    )


@pytest.mark.server
def test_the_command_refuses_an_embedded_file_that_is_not_the_services(tmp_path):
    (tmp_path / "service.sqlite3").write_bytes(b"not a database" * 100)
    done = keys_command("list", DATA_FOLDER=str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("cannot open the store: ") and str(tmp_path / "service.sqlite3") in done.stderr
    assert (tmp_path / "service.sqlite3").read_bytes() == b"not a database" * 100


@pytest.mark.server
def test_the_command_creates_lists_and_revokes_keys_on_a_real_server(ferretdb, ferret_db):
    env = {"MONGO_URI": ferretdb.uri, "MONGO_DB": ferret_db.name}
    created = keys_command("create", "--name", "loader", "--role", "uploader", **env)
    assert created.returncode == 0, created.stderr
    first, secret = created.stdout.strip().splitlines()
    key_id = first.split()[1]
    assert first == f"created {key_id} (loader, uploader). Its secret, shown only this once:"
    assert keys.by_secret(ferret_db, secret)["_id"] == key_id

    listed = keys_command("list", **env)
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"]
    assert row.split()[:4] == [key_id, "loader", "uploader", secret[:25]] and secret not in listed.stdout

    revoked = keys_command("revoke", key_id, **env)
    assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked {key_id} (loader, uploader) at ")
    assert keys.by_secret(ferret_db, secret) is None
    assert keys_command("revoke", "key_nobody", **env).returncode == 1
    bad = keys_command("create", "--name", "x", "--role", "root", **env)
    assert bad.returncode == 2 and "invalid choice: 'root'" in bad.stderr


def test_the_sample_upload_works_as_before_for_an_uploader(uploader, worker):
    response = uploader.post("/api/v1/upload", data={"file": (io.BytesIO(SAMPLE_MOVIES.read_bytes()), "m.csv")})
    worker.work()
    assert uploader.get(f"/api/v1/process/{response.json['task_id']}").json["rows_inserted"] == 10


# -- the first key ----------------------------------------------------------------------------------


def test_an_embedded_start_with_no_key_makes_an_admin_key_and_prints_it_never_logs_it(config, db, capsys, caplog):
    import run

    with caplog.at_level(logging.DEBUG):
        run.first_key(config, db)
    printed = capsys.readouterr().err
    secret = printed.split("#key=", 1)[1].split()[0]
    assert f"Sign in to the page:  http://127.0.0.1:{config.PORT}/#key={secret}\n" in printed
    assert keys.by_secret(db, secret)["role"] == "admin"
    assert secret not in caplog.text
    run.first_key(config, db)  # a key exists now: nothing more is made or printed
    assert capsys.readouterr().err == "" and db.api_keys.count_documents({}) == 1


def test_a_start_on_a_real_database_with_no_key_says_how_to_make_one(config, db, capsys, caplog):
    import run

    with caplog.at_level(logging.WARNING, logger="app.run"):
        run.first_key(config.with_overrides(MONGO_URI="mongodb://db:27017"), db)
    assert "python -m app.tools.keys create --name admin --role admin" in caplog.text
    assert capsys.readouterr().err == "" and db.api_keys.count_documents({}) == 0


def test_a_secret_with_a_real_key_id_but_another_random_part_is_refused(app, db):
    doc, secret = keys.create(db, "loader", "uploader")
    forged_secret = secret[:21] + ("B" if secret[21] != "B" else "C") + secret[22:]
    assert keys.by_secret(db, forged_secret) is None and keys.by_secret(db, secret)["_id"] == doc["_id"]
    response = app.test_client().get("/api/v1/movies", headers={"Authorization": f"Bearer {forged_secret}"})
    assert response.status_code == 401
