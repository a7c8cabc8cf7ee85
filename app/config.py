"""Settings: one home for every knob, read from the environment and `.env`.

Each setting has a default in `defaults.py` and a line in `.env.example`. A bad value stops start-up
with a message naming the variable.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field, fields, replace

from dotenv import load_dotenv

from app import defaults


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, low: int, high: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    return value


@dataclass(frozen=True)
class Config:
    FLASK_APP: str = defaults.FLASK_APP
    DEBUG: bool = defaults.DEBUG
    HOST: str = defaults.HOST
    PORT: int = defaults.PORT
    WEB_CONCURRENCY: int = defaults.WEB_CONCURRENCY
    WEB_THREADS: int = defaults.WEB_THREADS
    HEADER_TIMEOUT_SECONDS: int = defaults.HEADER_TIMEOUT_SECONDS
    BODY_TIMEOUT_SECONDS: int = defaults.BODY_TIMEOUT_SECONDS
    WORKERS: int = defaults.WORKERS
    WRITE_TIMEOUT_SECONDS: int = defaults.WRITE_TIMEOUT_SECONDS
    WRITE_BUFFER_MB: int = defaults.WRITE_BUFFER_MB
    WRITE_BUFFER_TOTAL_MB: int = defaults.WRITE_BUFFER_TOTAL_MB
    MONGO_URI: str = defaults.MONGO_URI
    MONGO_DB: str = defaults.MONGO_DB
    REDIS_URL: str = defaults.REDIS_URL
    DATA_FOLDER: str = defaults.DATA_FOLDER
    SQLITE_BUSY_MS: int = defaults.SQLITE_BUSY_MS
    UPLOAD_FOLDER: str = defaults.UPLOAD_FOLDER
    RESULT_FOLDER: str = defaults.RESULT_FOLDER
    MAX_UPLOAD_MB: int = defaults.MAX_UPLOAD_MB
    MAX_COLUMNS: int = defaults.MAX_COLUMNS
    MIN_FREE_MB: int = defaults.MIN_FREE_MB
    MAX_FORM_FIELDS: int = defaults.MAX_FORM_FIELDS
    MAX_FORM_KB: int = defaults.MAX_FORM_KB
    MAX_UPLOADS_RECEIVING: int = defaults.MAX_UPLOADS_RECEIVING
    UPLOADS_PER_KEY: int = defaults.UPLOADS_PER_KEY
    ZMQ_HOST: str = defaults.ZMQ_HOST
    ZMQ_PORT: int = defaults.ZMQ_PORT
    ZMQ_INTAKE_PORT: int = defaults.ZMQ_INTAKE_PORT
    CACHE_TTL: int = defaults.CACHE_TTL
    MAX_PAGE_KB: int = defaults.MAX_PAGE_KB
    SSE_MAX_STREAMS: int = defaults.SSE_MAX_STREAMS
    SSE_POLL_MS: int = defaults.SSE_POLL_MS
    SSE_KEEPALIVE_SECONDS: int = defaults.SSE_KEEPALIVE_SECONDS
    SSE_MAX_SECONDS: int = defaults.SSE_MAX_SECONDS
    SSE_STREAMS_PER_KEY: int = defaults.SSE_STREAMS_PER_KEY
    SSE_RECHECK_SECONDS: int = defaults.SSE_RECHECK_SECONDS
    BLOCK_SIZE: int = defaults.BLOCK_SIZE
    MAX_ROW_MB: int = defaults.MAX_ROW_MB
    BATCH_SIZE: int = defaults.BATCH_SIZE
    INGEST_HELPER_MIN_MB: int = defaults.INGEST_HELPER_MIN_MB
    MAX_REJECTS_KEPT: int = defaults.MAX_REJECTS_KEPT
    HEARTBEAT_SECONDS: int = defaults.HEARTBEAT_SECONDS
    WORKER_TIMEOUT: int = defaults.WORKER_TIMEOUT
    RECOVERY_SECONDS: int = defaults.RECOVERY_SECONDS
    LEASE_SECONDS: int = defaults.LEASE_SECONDS
    MAX_ATTEMPTS: int = defaults.MAX_ATTEMPTS
    MONGO_WRITE_OPS: int = defaults.MONGO_WRITE_OPS
    MONGO_SOCKET_TIMEOUT_SECONDS: int = defaults.MONGO_SOCKET_TIMEOUT_SECONDS
    MONGO_RETRIES: int = defaults.MONGO_RETRIES
    MONGO_RETRY_DELAY_MS: int = defaults.MONGO_RETRY_DELAY_MS
    RESULT_TTL_HOURS: int = defaults.RESULT_TTL_HOURS
    CSV_FORMULA_GUARD: bool = defaults.CSV_FORMULA_GUARD
    MAX_PLAY_GROUPS: int = defaults.MAX_PLAY_GROUPS
    MAX_PLAY_SONGS_MB: int = defaults.MAX_PLAY_SONGS_MB
    STALL_SECONDS: int = defaults.STALL_SECONDS
    AUTH: bool = defaults.AUTH
    SECRET_KEY: str = field(default=defaults.SECRET_KEY, repr=False)  # never in a log line
    TOKEN_TTL_SECONDS: int = defaults.TOKEN_TTL_SECONDS
    RATE_LIMIT_PER_MINUTE: int = defaults.RATE_LIMIT_PER_MINUTE
    MAX_ACTIVE_TASKS: int = defaults.MAX_ACTIVE_TASKS
    UPLOAD_MB_PER_DAY: int = defaults.UPLOAD_MB_PER_DAY
    LOG_LEVEL: str = defaults.LOG_LEVEL

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

    def with_overrides(self, **overrides) -> Config:
        return replace(self, **overrides)


_PORT = (1, 65535)
_CHECKS = {
    "DEBUG": lambda n, v: _bool(n, v),
    "PORT": lambda n, v: _int(n, v, *_PORT),
    "WEB_CONCURRENCY": lambda n, v: _int(n, v, 1, 64),
    "WEB_THREADS": lambda n, v: _int(n, v, 1, 256),
    "HEADER_TIMEOUT_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "BODY_TIMEOUT_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "WORKERS": lambda n, v: _int(n, v, 0, 16),
    "SQLITE_BUSY_MS": lambda n, v: _int(n, v, 100, 600_000),
    "WRITE_TIMEOUT_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "WRITE_BUFFER_MB": lambda n, v: _int(n, v, 1, 1024),
    "WRITE_BUFFER_TOTAL_MB": lambda n, v: _int(n, v, 1, 65536),
    # 1 TiB: far beyond any CSV this service is meant for, and small enough that a typo (an extra zero or
    # three) is caught at start instead of turning the size check off.
    "MAX_UPLOAD_MB": lambda n, v: _int(n, v, 1, 1 << 20),
    "MAX_COLUMNS": lambda n, v: _int(n, v, 1, 10_000),
    "MIN_FREE_MB": lambda n, v: _int(n, v, 0, 1 << 20),  # 0: no free-space check
    "MAX_FORM_FIELDS": lambda n, v: _int(n, v, 0, 1000),  # 0: the file part only
    "MAX_FORM_KB": lambda n, v: _int(n, v, 1, 16 * 1024),  # held in memory: 16 MiB at most
    "MAX_UPLOADS_RECEIVING": lambda n, v: _int(n, v, 1, 255),  # 0 would refuse every upload
    "UPLOADS_PER_KEY": lambda n, v: _int(n, v, 0, 255),  # 0: no cap per key, only MAX_UPLOADS_RECEIVING
    "ZMQ_PORT": lambda n, v: _int(n, v, *_PORT),
    "ZMQ_INTAKE_PORT": lambda n, v: _int(n, v, *_PORT),
    "CACHE_TTL": lambda n, v: _int(n, v, 1, 86400),
    "MAX_PAGE_KB": lambda n, v: _int(n, v, 1, 256 * 1024),  # built and cached whole: 256 MiB at most
    "SSE_MAX_STREAMS": lambda n, v: _int(n, v, 0, 255),  # 0: no streams, the page polls
    "SSE_POLL_MS": lambda n, v: _int(n, v, 50, 60_000),
    "SSE_KEEPALIVE_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "SSE_MAX_SECONDS": lambda n, v: _int(n, v, 1, 86400),
    "SSE_STREAMS_PER_KEY": lambda n, v: _int(n, v, 0, 255),  # 0: no cap per key, only SSE_MAX_STREAMS
    "SSE_RECHECK_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    # A block is parsed at once, so it bounds the memory of reading; a bigger row is read alone (MAX_ROW_MB).
    "BLOCK_SIZE": lambda n, v: _int(n, v, 64 * 1024, 8 * 1024 * 1024),
    # A row is held whole, parsed and cleaned: a few times this much memory. 1 GiB: beyond it, a typo.
    "MAX_ROW_MB": lambda n, v: _int(n, v, 1, 1024),
    "BATCH_SIZE": lambda n, v: _int(n, v, 1, 100_000),
    "INGEST_HELPER_MIN_MB": lambda n, v: _int(n, v, 0, 1_000_000),
    "MAX_REJECTS_KEPT": lambda n, v: _int(n, v, 0, 10_000),
    "HEARTBEAT_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "WORKER_TIMEOUT": lambda n, v: _int(n, v, 2, 86400),
    "RECOVERY_SECONDS": lambda n, v: _int(n, v, 1, 86400),
    "LEASE_SECONDS": lambda n, v: _int(n, v, 2, 86400),
    "MAX_ATTEMPTS": lambda n, v: _int(n, v, 1, 100),
    "MONGO_WRITE_OPS": lambda n, v: _int(n, v, 0, 100_000),
    "MONGO_SOCKET_TIMEOUT_SECONDS": lambda n, v: _int(n, v, 1, 3600),
    "MONGO_RETRIES": lambda n, v: _int(n, v, 0, 100),
    "MONGO_RETRY_DELAY_MS": lambda n, v: _int(n, v, 0, 60_000),
    "RESULT_TTL_HOURS": lambda n, v: _int(n, v, 1, 24 * 365),
    "CSV_FORMULA_GUARD": lambda n, v: _bool(n, v),
    "MAX_PLAY_GROUPS": lambda n, v: _int(n, v, 1, 1_000_000_000),
    "MAX_PLAY_SONGS_MB": lambda n, v: _int(n, v, 1, 1 << 20),
    "STALL_SECONDS": lambda n, v: _int(n, v, 1, 7 * 86400),
    "AUTH": lambda n, v: _bool(n, v),
    "TOKEN_TTL_SECONDS": lambda n, v: _int(n, v, 60, 86400),
    "RATE_LIMIT_PER_MINUTE": lambda n, v: _int(n, v, 0, 1_000_000),  # 0: off
    "MAX_ACTIVE_TASKS": lambda n, v: _int(n, v, 0, 100_000),  # 0: off
    "UPLOAD_MB_PER_DAY": lambda n, v: _int(n, v, 0, 1 << 30),  # 0: off; at most 1 PiB, a typo beyond
}
SECRET_KEY_CHARS = 32  # at least: a shorter signing key could be guessed from one token


def _check_mongo_uri(value: str) -> str:
    if value and not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"MONGO_URI must start with mongodb:// or mongodb+srv://, got {value!r}")
    return value


def _check_redis_url(value: str) -> str:
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {value!r}")
    return value


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


def load_config(env: dict[str, str] | None = None, dotenv: bool = True) -> Config:
    """Build the Config from `env` (default: os.environ, after loading `.env` without overriding)."""
    if env is None:
        if dotenv:
            load_dotenv(override=False)
        env = dict(os.environ)
    values = {}
    for setting in fields(Config):
        raw = env.get(setting.name)
        if raw is None:
            continue
        check = _CHECKS.get(setting.name)
        values[setting.name] = check(setting.name, raw) if check else raw.strip()
    config = Config(**values)
    for name in ("UPLOAD_FOLDER", "RESULT_FOLDER", "DATA_FOLDER"):
        if not getattr(config, name):
            raise ConfigError(f"{name} must not be empty")
    _check_mongo_uri(config.MONGO_URI)
    _check_redis_url(config.REDIS_URL)
    if config.SECRET_KEY and len(config.SECRET_KEY) < SECRET_KEY_CHARS:
        raise ConfigError(f"SECRET_KEY must be at least {SECRET_KEY_CHARS} characters, got {len(config.SECRET_KEY)}")
    if config.LOG_LEVEL.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {config.LOG_LEVEL!r}")
    if os.path.abspath(config.RESULT_FOLDER) == os.path.abspath(config.UPLOAD_FOLDER):
        raise ConfigError("RESULT_FOLDER and UPLOAD_FOLDER must differ: both name files <task_id>.csv")
    if config.ZMQ_PORT == config.ZMQ_INTAKE_PORT:
        raise ConfigError("ZMQ_PORT and ZMQ_INTAKE_PORT must differ")
    if config.max_row_bytes < config.BLOCK_SIZE:
        raise ConfigError(
            f"MAX_ROW_MB ({config.MAX_ROW_MB} MiB) must be at least BLOCK_SIZE "
            f"({config.BLOCK_SIZE} bytes): a row that fits in a block is always read"
        )
    if config.HEARTBEAT_SECONDS >= config.WORKER_TIMEOUT:
        raise ConfigError("HEARTBEAT_SECONDS must be smaller than WORKER_TIMEOUT")
    if config.SSE_MAX_STREAMS >= config.WEB_THREADS:  # each stream holds a thread: leave some for everything else
        raise ConfigError(
            f"SSE_MAX_STREAMS ({config.SSE_MAX_STREAMS}) must be smaller than WEB_THREADS "
            f"({config.WEB_THREADS}): each open progress stream holds one thread"
        )
    if config.MAX_UPLOADS_RECEIVING >= config.WEB_THREADS:  # each holds a thread while its body arrives
        raise ConfigError(
            f"MAX_UPLOADS_RECEIVING ({config.MAX_UPLOADS_RECEIVING}) must be smaller than WEB_THREADS "
            f"({config.WEB_THREADS}): each upload holds one thread while its body arrives"
        )
    return config
