"""Tests for settings: the table (app/settings.py), load_config's parsing and checks, and the refusal at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import dotenv
import pytest
from dotenv import dotenv_values

from app import config as config_module
from app import logs
from app.config import Config, ConfigError, allowed, load_config, parse
from app.settings import RULES, TABLE, Settings, defaults
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_when_nothing_is_set():
    config = load_config({})
    assert config == Config()
    assert config.PORT == 5000
    assert config.BATCH_SIZE == 1000
    assert config.BLOCK_SIZE == 1048576
    assert config.CACHE_TTL == 5
    assert config.MAX_UPLOAD_MB >= 1024
    assert config.max_upload_bytes == config.MAX_UPLOAD_MB * 1024 * 1024
    assert config.DEBUG is False
    assert config.HOST == "127.0.0.1"
    assert config.LOG_LEVEL == "INFO"
    assert config.queue_endpoint == "tcp://127.0.0.1:5555"
    assert config.intake_endpoint == "tcp://127.0.0.1:5556"


def test_unset_stores_are_embedded():
    config = load_config({})
    assert config.embedded_mongo is True
    assert config.embedded_redis is True
    empty = load_config({"MONGO_URI": "", "REDIS_URL": ""})
    assert (empty.embedded_mongo, empty.embedded_redis) == (True, True)


def test_overrides_are_parsed_to_their_types():
    config = load_config(
        {
            "PORT": " 8080 ",
            "DEBUG": "yes",
            "BATCH_SIZE": "500",
            "BLOCK_SIZE": "65536",
            "CACHE_TTL": "60",
            "MAX_UPLOAD_MB": "1",
            "HOST": " 0.0.0.0 ",
            "MONGO_URI": "mongodb://db:27017",
            "REDIS_URL": "redis://cache:6379/0",
            "ZMQ_HOST": "10.0.0.5",
            "ZMQ_PORT": "7000",
            "ZMQ_INTAKE_PORT": "7001",
            "LOG_LEVEL": "debug",
        }
    )
    assert config.PORT == 8080 and type(config.PORT) is int
    assert config.DEBUG is True
    assert config.BATCH_SIZE == 500
    assert config.BLOCK_SIZE == 65536
    assert config.CACHE_TTL == 60
    assert config.max_upload_bytes == 1024 * 1024
    assert config.HOST == "0.0.0.0"
    assert config.MONGO_URI == "mongodb://db:27017"
    assert config.embedded_mongo is False
    assert config.embedded_redis is False
    assert config.queue_endpoint == "tcp://10.0.0.5:7000"
    assert config.intake_endpoint == "tcp://10.0.0.5:7001"
    assert config.LOG_LEVEL == "debug"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_debug_flag_values(raw, expected):
    assert load_config({"DEBUG": raw}).DEBUG is expected


def test_other_stores_accepted():
    config = load_config({"MONGO_URI": "mongodb+srv://u:p@cluster/x", "REDIS_URL": "unix:///tmp/redis.sock"})
    assert (config.embedded_mongo, config.embedded_redis) == (False, False)
    assert load_config({"REDIS_URL": "rediss://secure:6380"}).REDIS_URL == "rediss://secure:6380"


@pytest.mark.parametrize(
    "env, name",
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"PORT": ""}, "PORT"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "1.5"}, "BATCH_SIZE"),
        ({"BLOCK_SIZE": "65535"}, "BLOCK_SIZE"),
        ({"MAX_ROW_MB": "0"}, "MAX_ROW_MB"),
        ({"MAX_ROW_MB": "1025"}, "MAX_ROW_MB"),
        ({"MAX_ROW_MB": "2", "BLOCK_SIZE": str(4 * 1024 * 1024)}, "MAX_ROW_MB"),
        ({"CACHE_TTL": "-1"}, "CACHE_TTL"),
        ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"MONGO_URI": "http://x"}, "MONGO_URI"),
        ({"REDIS_URL": "foo"}, "REDIS_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"ZMQ_PORT": "6000", "ZMQ_INTAKE_PORT": "6000"}, "ZMQ_PORT"),
        ({"ZMQ_INTAKE_PORT": "5555"}, "ZMQ_PORT"),  # equal to the default ZMQ_PORT
        ({"HEARTBEAT_SECONDS": "30", "WORKER_TIMEOUT": "30"}, "HEARTBEAT_SECONDS"),
        ({"UPLOAD_FOLDER": "data", "RESULT_FOLDER": "./data"}, "RESULT_FOLDER"),
    ],
)
def test_bad_values_raise_naming_the_variable(env, name):
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        load_config(env)


def test_bad_value_message_shows_what_was_given():
    with pytest.raises(ConfigError) as info:
        load_config({"PORT": "70000"})
    assert str(info.value) == "PORT must be between 1 and 65535, got 70000"
    with pytest.raises(ConfigError) as info:
        load_config({"PORT": "abc"})
    assert str(info.value) == "PORT must be an integer, got 'abc'"


def test_env_example_values_load():
    # `cp .env.example .env` must give a service that starts.
    path = ROOT / ".env.example"
    assert path.is_file()
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    assert sorted(values) == sorted(e.name for e in TABLE)
    assert load_config(values) == Config()


def test_the_mongodb_client_gives_up_on_a_silent_server_after_mongo_socket_timeout_seconds():
    """Without a socket timeout a worker waits forever on a server that stopped answering mid-command."""
    from app.store import mongo

    config = load_config({"MONGO_URI": "mongodb://127.0.0.1:1/", "MONGO_SOCKET_TIMEOUT_SECONDS": "7"})
    client = mongo._new_client(config)
    try:
        assert client.options.pool_options.socket_timeout == 7
    finally:
        client.close()


# -- checked at start: one line on stderr naming the variable, exit 2 ------------------------------------
# In process: the commands' own start-up (app.logs.start_command, as run.py with listen=True and worker.py
# call it) on an environment holding only the case's settings. Two real commands below show the same line.


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """os.environ with no setting but the test's (and its own folders and free ports); `.env` not read."""
    for entry in TABLE:
        monkeypatch.delenv(entry.name, raising=False)
    monkeypatch.setattr(config_module, "load_dotenv", lambda **_: False)
    base = {
        "PORT": str(free_port()),
        "ZMQ_PORT": str(free_port()),
        "ZMQ_INTAKE_PORT": str(free_port()),
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "RESULT_FOLDER": str(tmp_path / "results"),
    }

    def set_to(**settings: str) -> None:
        for name, value in {**base, **settings}.items():
            monkeypatch.setenv(name, value)

    return set_to


def refused_at_start(capsys, listen: bool) -> str:
    """The one line start_command prints before it exits 2."""
    with pytest.raises(SystemExit) as info:
        logs.start_command(listen=listen)
    assert info.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    return lines[0]


def a_file(tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("not a folder")
    return str(tmp_path / "a-file")


BAD_AT_START = {
    "empty UPLOAD_FOLDER": lambda tmp: ({"UPLOAD_FOLDER": ""}, "UPLOAD_FOLDER"),
    "empty RESULT_FOLDER": lambda tmp: ({"RESULT_FOLDER": " "}, "RESULT_FOLDER"),
    "UPLOAD_FOLDER under a file": lambda tmp: ({"UPLOAD_FOLDER": a_file(tmp) + "/uploads"}, "UPLOAD_FOLDER"),
    "UPLOAD_FOLDER is a file": lambda tmp: ({"UPLOAD_FOLDER": a_file(tmp)}, "UPLOAD_FOLDER"),
    "RESULT_FOLDER under /proc": lambda tmp: ({"RESULT_FOLDER": "/proc/results"}, "RESULT_FOLDER"),
    "PORT not a number": lambda tmp: ({"PORT": "abc"}, "PORT"),
    "PORT out of range": lambda tmp: ({"PORT": "65536"}, "PORT"),
    "ZMQ_PORT out of range": lambda tmp: ({"ZMQ_PORT": "0"}, "ZMQ_PORT"),
    "MAX_UPLOAD_MB above its bound": lambda tmp: ({"MAX_UPLOAD_MB": "1048577"}, "MAX_UPLOAD_MB"),
    "MAX_COLUMNS above its bound": lambda tmp: ({"MAX_COLUMNS": "10001"}, "MAX_COLUMNS"),
    "MIN_FREE_MB above its bound": lambda tmp: ({"MIN_FREE_MB": "1048577"}, "MIN_FREE_MB"),
    "MAX_ROW_MB below BLOCK_SIZE": lambda tmp: ({"MAX_ROW_MB": "1", "BLOCK_SIZE": "4194304"}, "MAX_ROW_MB"),
}


@pytest.mark.parametrize("listen", [True, False], ids=["run.py", "worker.py"])
@pytest.mark.parametrize("case", list(BAD_AT_START))
def test_a_bad_path_port_or_size_stops_the_command_with_one_line_and_exit_2(case, listen, environ, capsys, tmp_path):
    settings, name = BAD_AT_START[case](tmp_path)
    environ(**settings)
    assert refused_at_start(capsys, listen).startswith(f"configuration error: {name} ")


@pytest.mark.parametrize("name", ["PORT", "ZMQ_PORT", "ZMQ_INTAKE_PORT"])
def test_run_py_refuses_a_port_already_in_use(name, environ, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ(**{name: str(port)})
        line = refused_at_start(capsys, listen=True)
    assert line == f"configuration error: {name} {port} on 127.0.0.1 cannot be listened on: already in use"


def test_run_py_refuses_an_empty_secret_key_with_mongo_uri_set(environ, capsys):
    environ(MONGO_URI="mongodb://127.0.0.1:1/")
    assert refused_at_start(capsys, listen=True).startswith("configuration error: SECRET_KEY must be set")


def test_the_environment_wins_over_dot_env_which_wins_over_the_defaults(monkeypatch, tmp_path):
    dot_env = tmp_path / ".env"
    dot_env.write_text("PORT=6000\nMAX_ATTEMPTS=7\n")
    for name in ("PORT", "MAX_ATTEMPTS", "BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "7000")
    monkeypatch.setattr(config_module, "load_dotenv", lambda override: dotenv.load_dotenv(dot_env, override=override))
    config = load_config()
    assert (config.PORT, config.MAX_ATTEMPTS, config.BATCH_SIZE) == (7000, 7, 1000)


def start(command: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MONGO_URI": "",
        "REDIS_URL": "",
        "PORT": str(free_port()),
        "ZMQ_PORT": str(free_port()),
        "ZMQ_INTAKE_PORT": str(free_port()),
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "RESULT_FOLDER": str(tmp_path / "results"),
        **settings,
    }
    return subprocess.run([sys.executable, command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_real_commands_stop_on_a_bad_setting_with_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = start("run.py", tmp_path, PORT=str(port))
    worker = start("worker.py", tmp_path, MAX_ROW_MB="1", BLOCK_SIZE="4194304")
    for done in (api, worker):
        assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
        assert "Traceback" not in done.stderr + done.stdout
    assert api.stderr.splitlines() == [
        f"configuration error: PORT {port} on 127.0.0.1 cannot be listened on: already in use"
    ]
    assert worker.stderr.splitlines() == [
        "configuration error: MAX_ROW_MB (1 MiB) must be at least BLOCK_SIZE (4194304 bytes): a row that fits in a "
        "block is always read"
    ]


def test_size_settings_have_upper_bounds():
    assert load_config({"MAX_UPLOAD_MB": "1048576"}).max_upload_bytes == 1 << 40  # 1 TiB
    assert load_config({"MAX_COLUMNS": "10000", "MIN_FREE_MB": "0"}).MIN_FREE_MB == 0
    assert (Config().MAX_COLUMNS, Config().MIN_FREE_MB) == (500, 512)
    with pytest.raises(ConfigError, match=r"^MAX_UPLOAD_MB must be between 1 and 1048576, got 1048577$"):
        load_config({"MAX_UPLOAD_MB": "1048577"})


def test_max_row_mb_defaults_to_64_and_must_hold_a_block():
    assert (Config().MAX_ROW_MB, load_config({}).max_row_bytes) == (64, 64 * 1024 * 1024)
    assert load_config({"MAX_ROW_MB": "1024"}).max_row_bytes == 1 << 30
    assert load_config({"MAX_ROW_MB": "1", "BLOCK_SIZE": "1048576"}).MAX_ROW_MB == 1  # a row of one block: fine
    with pytest.raises(ConfigError, match=r"^MAX_ROW_MB must be between 1 and 1024, got 1025$"):
        load_config({"MAX_ROW_MB": "1025"})
    with pytest.raises(ConfigError) as info:
        load_config({"MAX_ROW_MB": "1", "BLOCK_SIZE": "2097152"})
    assert str(info.value) == (
        "MAX_ROW_MB (1 MiB) must be at least BLOCK_SIZE (2097152 bytes): a row that fits in a block is always read"
    )


def test_uploads_receiving_must_leave_threads_for_other_requests():
    assert (Config().MAX_UPLOADS_RECEIVING, Config().UPLOADS_PER_KEY) == (4, 2)
    small = {"WEB_THREADS": "4", "SSE_MAX_STREAMS": "3"}
    assert load_config({**small, "MAX_UPLOADS_RECEIVING": "3"}).MAX_UPLOADS_RECEIVING == 3
    with pytest.raises(ConfigError, match=r"^MAX_UPLOADS_RECEIVING \(4\) must be smaller than WEB_THREADS \(4\)"):
        load_config(small)
    with pytest.raises(ConfigError, match=r"^MAX_UPLOADS_RECEIVING must be between 1 and 255, got 0$"):
        load_config({"MAX_UPLOADS_RECEIVING": "0"})


# -- the table (app/settings.py): each setting declared once; Config, load_config and the docs read it ---------


def test_config_holds_the_tables_settings_with_their_defaults():
    assert [f.name for f in fields(Config)] == [entry.name for entry in TABLE]
    config = Config()
    for entry in TABLE:
        assert getattr(config, entry.name) == getattr(defaults, entry.name) == entry.default, entry.name


def test_every_entry_is_typed_as_its_default_and_has_a_group_and_help():
    for f, entry in zip(fields(Settings), TABLE, strict=True):
        assert f.type == type(entry.default).__name__, entry.name  # the annotation ("int") and the default agree
        assert entry.group and entry.help.strip(), entry.name
        if type(entry.default) is not int:
            assert entry.bounds is None, f"{entry.name}: bounds are for numbers"
        if type(entry.default) is not str:
            assert not (entry.choices or entry.prefixes or entry.min_chars or entry.required), entry.name
    assert "SECRET_KEY" not in repr(load_config({"SECRET_KEY": "k" * 40}))


@pytest.mark.parametrize("entry", TABLE, ids=lambda entry: entry.name)
def test_what_the_docs_say_is_allowed_is_what_load_config_allows(entry):
    name, said = entry.name, allowed(entry)
    if isinstance(entry.default, bool):
        assert said == "true or false"
        assert (parse(entry, " Yes "), parse(entry, "off")) == (True, False)
        with pytest.raises(ConfigError, match=rf"^{name} must be true or false, got 'maybe'$"):
            parse(entry, "maybe")
    elif isinstance(entry.default, int):
        assert entry.bounds, f"{name}: every number has bounds, so a typo is refused at start"
        low, high = entry.bounds
        assert said == f"{low} to {high}" and low <= entry.default <= high
        assert (parse(entry, str(low)), parse(entry, f" {high} ")) == (low, high)
        for outside in (low - 1, high + 1):
            with pytest.raises(ConfigError, match=rf"^{name} must be between {low} and {high}, got {outside}$"):
                parse(entry, str(outside))
        with pytest.raises(ConfigError, match=rf"^{name} must be an integer, got '1e3'$"):
            parse(entry, "1e3")
    elif entry.required:
        assert said == "not empty" and parse(entry, " x ") == "x"
        with pytest.raises(ConfigError, match=rf"^{name} must not be empty$"):
            parse(entry, " ")
    elif entry.choices:
        assert said.startswith(", ".join(entry.choices[:-1]))
        assert parse(entry, entry.choices[0].lower()) == entry.choices[0].lower()
        with pytest.raises(ConfigError, match=rf"^{name} must be {', '.join(entry.choices[:-1])} or "):
            parse(entry, "LOUD")
    elif entry.prefixes:
        assert said.startswith("empty, or starting with ") and parse(entry, "") == ""
        assert parse(entry, entry.prefixes[-1] + "host") == entry.prefixes[-1] + "host"
        with pytest.raises(ConfigError, match=rf"^{name} must start with .*, got 'http://host'$"):
            parse(entry, "http://host")
    elif entry.min_chars:
        assert said == f"empty, or at least {entry.min_chars} characters" and parse(entry, "") == ""
        assert parse(entry, "k" * entry.min_chars) == "k" * entry.min_chars
        with pytest.raises(ConfigError, match=rf"^{name} must be at least {entry.min_chars} characters, got 3$"):
            parse(entry, "kkk")
    else:
        assert said == "any" and parse(entry, " any thing ") == "any thing"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DATA_FOLDER": " "}, "DATA_FOLDER must not be empty"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'LOUD'"),
        ({"MONGO_URI": "http://x"}, "MONGO_URI must start with mongodb:// or mongodb+srv://, got 'http://x'"),
        ({"REDIS_URL": "foo"}, "REDIS_URL must start with redis://, rediss:// or unix://, got 'foo'"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters, got 5"),
        (
            {"UPLOAD_FOLDER": "x", "RESULT_FOLDER": "./x"},
            "RESULT_FOLDER ('./x') and UPLOAD_FOLDER ('x') must differ: both name files <task_id>.csv",
        ),
        (
            {"ZMQ_INTAKE_PORT": "5555"},
            "ZMQ_PORT (5555) and ZMQ_INTAKE_PORT (5555) must differ: the broker listens on both",
        ),
        (
            {"HEARTBEAT_SECONDS": "30"},
            "HEARTBEAT_SECONDS (30) must be smaller than WORKER_TIMEOUT (30): a worker is reported gone after "
            "WORKER_TIMEOUT without one",
        ),
        (
            {"SSE_MAX_STREAMS": "16"},
            "SSE_MAX_STREAMS (16) must be smaller than WEB_THREADS (16): each open progress stream holds one thread",
        ),
    ],
)
def test_a_refusal_says_what_is_allowed_and_what_was_given(env, message):
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert str(info.value) == message


def test_each_rule_between_settings_is_listed_in_the_docs_as_it_is_checked():
    said = {rule.text(): rule for rule in RULES}
    assert "MAX_ROW_MB (MiB) must be at least BLOCK_SIZE (bytes): a row that fits in a block is always read" in said
    for rule in RULES:
        assert rule.holds(Config()), rule.says  # the defaults keep every rule
        assert all(hasattr(Config(), name) for name in rule.names()), rule.says
