"""Reading the settings: `load_config` parses the environment and `.env` against the table (app/settings.py).

A value is parsed by its setting's type and checked against its entry (bounds, choices, prefixes, ...), then
the rules between settings are checked; a bad value raises ConfigError naming the variable, which stops
start-up with that one line (app/logs.py). The start-up checks of the world around (folders writable, ports
free, a signing key shared by API processes) are here too.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import replace
from typing import Any

from dotenv import load_dotenv

from app.settings import RULES, TABLE, Setting, Settings, Value


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


class Config(Settings):
    """The settings a command runs with (`load_config`), and what follows from them."""

    @property
    def embedded_mongo(self) -> bool:
        return not self.MONGO_URI

    @property
    def embedded_redis(self) -> bool:
        return not self.REDIS_URL

    @property
    def max_upload_bytes(self) -> int:
        return self.MAX_UPLOAD_MB * 1024 * 1024

    @property
    def max_row_bytes(self) -> int:
        return self.MAX_ROW_MB * 1024 * 1024

    @property
    def min_free_bytes(self) -> int:
        return self.MIN_FREE_MB * 1024 * 1024

    @property
    def queue_endpoint(self) -> str:
        """Where workers PULL from the broker."""
        return f"tcp://{self.ZMQ_HOST}:{self.ZMQ_PORT}"

    @property
    def intake_endpoint(self) -> str:
        """Where API processes PUSH to the broker."""
        return f"tcp://{self.ZMQ_HOST}:{self.ZMQ_INTAKE_PORT}"

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with some settings changed, unchecked (tests; a command uses load_config)."""
        return replace(self, **overrides)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _one_of(words: tuple[str, ...]) -> str:
    """'a, b or c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def parse(entry: Setting, raw: str) -> Value:
    """`raw`, from the environment, as the setting's type; ConfigError if its entry does not allow it."""
    if isinstance(entry.default, bool):
        return _bool(entry, raw)
    if isinstance(entry.default, int):
        return _int(entry, raw)
    return _str(entry, raw.strip())


def _bool(entry: Setting, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(f"{entry.name} must be true or false, got {raw!r}")


def _int(entry: Setting, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{entry.name} must be an integer, got {raw!r}") from None
    if entry.bounds and not entry.bounds[0] <= value <= entry.bounds[1]:
        raise ConfigError(f"{entry.name} must be between {entry.bounds[0]} and {entry.bounds[1]}, got {value}")
    return value


def _str(entry: Setting, value: str) -> str:
    name = entry.name
    if entry.required and not value:
        raise ConfigError(f"{name} must not be empty")
    if entry.choices and value.upper() not in entry.choices:
        raise ConfigError(f"{name} must be {_one_of(entry.choices)}, got {value!r}")
    if value and entry.prefixes and not value.startswith(entry.prefixes):
        raise ConfigError(f"{name} must start with {_one_of(entry.prefixes)}, got {value!r}")
    if value and len(value) < entry.min_chars:
        raise ConfigError(f"{name} must be at least {entry.min_chars} characters, got {len(value)}")
    return value


def allowed(entry: Setting) -> str:
    """What `parse` lets through, in words (docs/configuration.md's "allowed" column)."""
    if isinstance(entry.default, bool):
        return "true or false"
    if isinstance(entry.default, int):
        return f"{entry.bounds[0]} to {entry.bounds[1]}" if entry.bounds else "any integer"
    said = []
    if entry.required:
        said.append("not empty")
    if entry.choices:
        said.append(f"{_one_of(entry.choices)} (any case)")
    if entry.prefixes:
        said.append(f"empty, or starting with {_one_of(entry.prefixes)}")
    if entry.min_chars:
        said.append(f"empty, or at least {entry.min_chars} characters")
    return "; ".join(said) or "any"


def load_config(env: dict[str, str] | None = None, dotenv: bool = True) -> Config:
    """Build the Config from `env` (default: os.environ, after loading `.env` without overriding)."""
    if env is None:
        if dotenv:
            load_dotenv(override=False)
        env = dict(os.environ)
    values: dict[str, Any] = {e.name: parse(e, env[e.name]) for e in TABLE if e.name in env}
    config = Config(**values)
    for rule in RULES:
        if not rule.holds(config):
            raise ConfigError(rule.refusal(config))
    return config


def check_folders(config: Config) -> None:
    """At start: UPLOAD_FOLDER and RESULT_FOLDER exist (created if need be) and a file can be written in each."""
    for name in ("UPLOAD_FOLDER", "RESULT_FOLDER"):
        path = getattr(config, name)
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, f".write-test-{os.getpid()}")
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as e:
            raise ConfigError(f"{name} {path!r} is not a writable folder: {e.strerror or e}") from None


def check_listen(config: Config) -> None:
    """At start of the API: PORT, ZMQ_PORT and ZMQ_INTAKE_PORT can be listened on (none already taken)."""
    for name, host in (("PORT", config.HOST), ("ZMQ_PORT", config.ZMQ_HOST), ("ZMQ_INTAKE_PORT", config.ZMQ_HOST)):
        port = getattr(config, name)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn and ZeroMQ bind
                probe.bind((host, port))
        except OSError as e:
            why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
            raise ConfigError(f"{name} {port} on {host} cannot be listened on: {why}") from None


def check_secret_key(config: Config) -> None:
    """At start of the API: tokens need one signing key shared by every API process, unless embedded."""
    if config.AUTH and not config.SECRET_KEY and not config.embedded_mongo:
        raise ConfigError(
            "SECRET_KEY must be set when MONGO_URI is set (every API process signs the page's "
            "tokens with it); e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
