"""The table of settings: each declared once, as one entry of `Settings`, with everything said about it.

An entry is ``NAME: type = setting(default, group, help, bounds=(low, high))``: the type is the annotation
(bool, int or str), and the rest is what `load_config` checks (app/config.py), what `.env.example` and
docs/configuration.md say (both written from here by ``make docs``), and what a Python reader sees
(``defaults.PORT``, ``config.PORT``). A `Rule` below the table is a check between two settings.
Comments in the table say why a bound or default is what it is; what a user needs goes in `help`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

Value = bool | int | str
V = TypeVar("V", bound=int | str)  # bool is an int


@dataclass(frozen=True)
class Setting:
    """One entry of the table, as `load_config` and the docs read it (`TABLE`)."""

    name: str
    default: Value
    group: str  # the heading it is listed under in .env.example and docs/configuration.md
    help: str  # for users: plain text, "\n" a new line in .env.example; setting names become code in the docs
    bounds: tuple[int, int] | None = None  # int: lowest and highest allowed, both included
    choices: tuple[str, ...] = ()  # str: one of these, in any case
    prefixes: tuple[str, ...] = ()  # str: empty, or starting with one of these
    min_chars: int = 0  # str: empty, or at least this many characters
    required: bool = False  # str: not empty
    secret: bool = False  # kept out of Config's repr, hence out of any log line


def setting(
    default: V,
    group: str,
    help: str,
    *,
    bounds: tuple[int, int] | None = None,
    choices: tuple[str, ...] = (),
    prefixes: tuple[str, ...] = (),
    min_chars: int = 0,
    required: bool = False,
    secret: bool = False,
) -> V:
    """A field of `Settings` holding its entry; typed as its default, so `config.PORT` is an int to mypy too."""
    entry = Setting("", default, group, help, bounds, choices, prefixes, min_chars, required, secret)
    return field(default=default, repr=not secret, metadata={_ENTRY: entry})


_ENTRY = "setting"

API = "API server"
STORAGE = "Storage"
STREAMS = "Progress streams (GET /api/v1/process/<id>/events, Server-Sent Events)"
UPLOADS = "Uploads"
QUEUE = "Queue (ZeroMQ broker)"
WORKER = "Worker"
ACCESS = "Access"

PORTS = (1, 65535)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    """Every setting, in the order (and under the groups) of .env.example and docs/configuration.md."""

    FLASK_APP: str = setting("run.py", API, "The entry point, for `flask` commands.")
    DEBUG: bool = setting(False, API, "Flask debug mode and the debugger; never in production.")
    HOST: str = setting("127.0.0.1", API, "The address the API listens on (0.0.0.0: every interface).")
    PORT: int = setting(5000, API, "The port the API listens on; checked free at start.", bounds=PORTS)
    WEB_CONCURRENCY: int = setting(
        2, API, "API processes (gunicorn workers); forced to 1 when MONGO_URI is empty.", bounds=(1, 64)
    )
    WEB_THREADS: int = setting(
        16,
        API,
        "Threads per API process; each open progress stream (the web page's live bar) holds one while it lasts.",
        bounds=(1, 256),
    )
    # Headers are read by gunicorn's event loop (app/api/serving.py), so a slow client holds no thread meanwhile.
    HEADER_TIMEOUT_SECONDS: int = setting(
        10,
        API,
        "Seconds a client has to send its request headers (after connecting or after its previous request), "
        "else 408. Waiting for them holds no thread: gunicorn's event loop reads them (app/api/serving.py).",
        bounds=(1, 3600),
    )
    # 30 s per 64 KiB: a floor of about 2 kB/s. The first 64 KiB are waited for by the event loop, too.
    BODY_TIMEOUT_SECONDS: int = setting(
        30,
        API,
        "Seconds within which each 64 KiB of a request body (or its rest) must arrive, else 408 and the upload "
        "is dropped.",
        bounds=(1, 3600),
    )
    WORKERS: int = setting(
        1,
        API,
        "Worker processes run.py starts beside the API when MONGO_URI is empty (0: none, tasks wait).",
        bounds=(0, 16),
    )
    # 30 s per 64 KiB: a floor of about 2 kB/s. What a client has not taken yet is sent by the event loop.
    WRITE_TIMEOUT_SECONDS: int = setting(
        30,
        API,
        "Seconds within which a client must take each 64 KiB of its answer, else the connection is cut. The rest "
        "of an answer is sent by gunicorn's event loop: a slow reader holds no thread (app/api/serving.py).",
        bounds=(1, 3600),
    )
    # Result files are sent from disk anyway and count nothing here.
    WRITE_BUFFER_MB: int = setting(
        8,
        API,
        "MB of an answer a connection may leave in memory for the event loop; the rest waits in a temporary file.",
        bounds=(1, 1024),
    )
    WRITE_BUFFER_TOTAL_MB: int = setting(
        128,
        API,
        "MB of answers all connections of one API process may leave in memory (past it, temporary files).",
        bounds=(1, 65536),
    )
    LOG_LEVEL: str = setting("INFO", API, "Logging level of every command (API, broker, worker).", choices=LEVELS)

    MONGO_URI: str = setting(
        "",
        STORAGE,
        "Empty: the embedded store, one SQLite file in DATA_FOLDER, kept across restarts. "
        "e.g. mongodb://127.0.0.1:27017",
        prefixes=("mongodb://", "mongodb+srv://"),
    )
    MONGO_DB: str = setting("movies_service", STORAGE, "The database the service's collections live in.")
    REDIS_URL: str = setting(
        "",
        STORAGE,
        "Empty: an embedded in-memory stand-in (fakeredis), not persisted. e.g. redis://127.0.0.1:6379/0",
        prefixes=("redis://", "rediss://", "unix://"),
    )
    DATA_FOLDER: str = setting(
        "data",
        STORAGE,
        "The embedded store's folder (when MONGO_URI is empty): its file is DATA_FOLDER/service.sqlite3.",
        required=True,
    )
    # Writers take turns on the file, and one batch takes well under a second.
    SQLITE_BUSY_MS: int = setting(
        30_000,
        STORAGE,
        "Milliseconds a write waits for the embedded store's file while another process writes, before it is retried.",
        bounds=(100, 600_000),
    )
    CACHE_TTL: int = setting(5, STORAGE, "Seconds a cached /api/v1/movies page lives.", bounds=(1, 86400))
    # A page is built, cached and sent whole, so its bytes are bounded as well as its rows: 256 MiB at most.
    MAX_PAGE_KB: int = setting(
        1024,
        STORAGE,
        "KiB of movies (as JSON) one /api/v1/movies page may hold (1 to 262144). Past it the page holds the "
        'movies that fit (at least one) and says "truncated": true and "next_offset", where to go on with ?offset=.',
        bounds=(1, 256 * 1024),
    )

    SSE_MAX_STREAMS: int = setting(
        8,
        STREAMS,
        "Open streams per API process, fewer than WEB_THREADS; beyond it 503, and the web page polls instead "
        "(0: always).",
        bounds=(0, 255),
    )
    SSE_POLL_MS: int = setting(
        500,
        STREAMS,
        "How often a stream reads its task, in milliseconds; an event is sent only when the task changed.",
        bounds=(50, 60_000),
    )
    SSE_KEEPALIVE_SECONDS: int = setting(
        15,
        STREAMS,
        "A keep-alive comment this often, so proxies do not close a quiet stream (and a closed tab frees its thread).",
        bounds=(1, 3600),
    )
    SSE_MAX_SECONDS: int = setting(
        300, STREAMS, "A stream closes after this many seconds; the browser reconnects by itself.", bounds=(1, 86400)
    )
    SSE_STREAMS_PER_KEY: int = setting(
        3,
        STREAMS,
        "Open streams one key (with AUTH=false, one client address) may hold per API process; beyond it 429 "
        "too_many_streams_for_key, so one uploader cannot take every slot (0: no cap per key, only "
        "SSE_MAX_STREAMS).",
        bounds=(0, 255),
    )
    SSE_RECHECK_SECONDS: int = setting(
        5,
        STREAMS,
        "An open stream checks its key is not revoked (and its token not expired) this often, and ends if it is.",
        bounds=(1, 3600),
    )

    UPLOAD_FOLDER: str = setting(
        "uploads",
        UPLOADS,
        "Where uploads are stored until their task ends. Both folders are created if missing and must be "
        "writable: checked at start (exit 2 otherwise).",
        required=True,
    )
    RESULT_FOLDER: str = setting(
        "results",
        UPLOADS,
        "Where plays jobs write their result CSVs (shared storage, like UPLOAD_FOLDER, when workers run on other "
        "hosts).",
        required=True,
    )
    # 1 TiB: far beyond any CSV this service is meant for, and small enough that a typo (an extra zero or three)
    # is caught at start instead of turning the size check off.
    MAX_UPLOAD_MB: int = setting(
        4096,
        UPLOADS,
        "Largest accepted upload, in MiB (at most 1048576, 1 TiB: a bigger value is a typo, refused at start).",
        bounds=(1, 1 << 20),
    )
    MAX_COLUMNS: int = setting(  # a movies file has 15
        500,
        UPLOADS,
        "Columns a header line may have (1 to 10000); more: 422 too_many_columns. The header line itself may be "
        "at most 65536 bytes, its line ending (LF, CRLF or CR) not counted; longer: 422 bad_header.",
        bounds=(1, 10_000),
    )
    MIN_FREE_MB: int = setting(
        512,
        UPLOADS,
        "Free space (MiB) an upload must leave in UPLOAD_FOLDER's filesystem, checked against Content-Length "
        'before it is read and again as it streams in: 507 insufficient_storage; /api/v1/health reports "disk": '
        '"low" (0: off).',
        bounds=(0, 1 << 20),
    )
    # Form fields are held in memory while the upload is read, so their count and total bytes are bounded.
    MAX_FORM_FIELDS: int = setting(
        16,
        UPLOADS,
        "Form fields other than the file a multipart upload may carry (the web page sends one, kind); one more is "
        "refused at once, 413 too_many_fields, the rest of the body unread (0: the file part only).",
        bounds=(0, 1000),
    )
    MAX_FORM_KB: int = setting(  # held in memory: 16 MiB at most
        64,
        UPLOADS,
        "KiB the names and values of those fields may hold together (1 to 16384); passing it: 413 form_too_large "
        "at once.",
        bounds=(1, 16 * 1024),
    )
    # Each holds a thread of WEB_THREADS until its body is in, so they cannot take every thread; 0 would refuse all.
    MAX_UPLOADS_RECEIVING: int = setting(
        4,
        UPLOADS,
        "Uploads one API process reads at once, fewer than WEB_THREADS (each holds a thread while its body "
        "arrives, and a client may send it at 64 KiB per BODY_TIMEOUT_SECONDS); one more: 503 too_many_uploads "
        "with Retry-After.",
        bounds=(1, 255),
    )
    UPLOADS_PER_KEY: int = setting(
        2,
        UPLOADS,
        "Of those, one key's at once (admin keys exempt); one more: 429 too_many_uploads_for_key (0: no cap per key).",
        bounds=(0, 255),
    )

    ZMQ_HOST: str = setting(
        "127.0.0.1",
        QUEUE,
        "The broker's address: workers connect to ZMQ_PORT, API processes to ZMQ_INTAKE_PORT (0.0.0.0: every "
        "interface).",
    )
    ZMQ_PORT: int = setting(5555, QUEUE, "Broker → workers: workers connect their PULL socket here.", bounds=PORTS)
    ZMQ_INTAKE_PORT: int = setting(
        5556, QUEUE, "API → broker: API processes connect their PUSH socket here.", bounds=PORTS
    )

    # A block is parsed at once, so it bounds the memory of reading; a bigger row is read alone (MAX_ROW_MB).
    BLOCK_SIZE: int = setting(1 << 20, WORKER, "Bytes PyArrow reads per block.", bounds=(64 * 1024, 8 * 1024 * 1024))
    # A row is held whole, parsed and cleaned: a few times this much memory. 1 GiB: beyond it, a typo.
    MAX_ROW_MB: int = setting(
        64,
        WORKER,
        "A row bigger than a block is read alone, up to this many MiB (1 to 1024, and at least BLOCK_SIZE); a "
        "bigger row is rejected with its line, and the rest of the file still loads. A movie must also fit "
        "MongoDB's 16 MB.",
        bounds=(1, 1024),
    )
    BATCH_SIZE: int = setting(1000, WORKER, "Movies per bulk write (and per progress update).", bounds=(1, 100_000))
    INGEST_HELPER_MIN_MB: int = setting(
        8,
        WORKER,
        "Movie files at least this big (MB) are parsed and encoded in a helper process while the worker writes: "
        "both cores at work. Starting the helper costs about 0.3 s. 0: always.",
        bounds=(0, 1_000_000),
    )
    MAX_REJECTS_KEPT: int = setting(
        100, WORKER, "Rejected rows kept on a task with their line and reason.", bounds=(0, 10_000)
    )
    HEARTBEAT_SECONDS: int = setting(
        5,
        WORKER,
        "How often a worker records that it is alive, in seconds; smaller than WORKER_TIMEOUT.",
        bounds=(1, 3600),
    )
    WORKER_TIMEOUT: int = setting(
        30, WORKER, "A worker silent this long is reported gone by /api/v1/health.", bounds=(2, 86400)
    )
    RECOVERY_SECONDS: int = setting(
        10, WORKER, "An idle worker sweeps for unclaimed tasks this often.", bounds=(1, 86400)
    )
    LEASE_SECONDS: int = setting(
        60,
        WORKER,
        "A claimed task becomes claimable again when its worker is silent this long (it renews the lease every "
        "third of it).",
        bounds=(2, 86400),
    )
    MAX_ATTEMPTS: int = setting(3, WORKER, "Claims of one task before it is failed.", bounds=(1, 100))
    # FerretDB 1.24 holds one of its 100 pooled backend connections per matched update until the command ends, so
    # 100 rewrites in one command hang it: run it with at most 100 / (concurrent writers), e.g. 25.
    MONGO_WRITE_OPS: int = setting(
        0,
        WORKER,
        "Rewrites of stored movies per bulk_write command (new movies go in one insert); 0: all in one. On "
        "FerretDB 1.24 use 25 (docs/stores.md).",
        bounds=(0, 100_000),
    )
    MONGO_SOCKET_TIMEOUT_SECONDS: int = setting(
        60,
        WORKER,
        "A MongoDB call with no answer this long fails, and is retried, instead of waiting forever.",
        bounds=(1, 3600),
    )
    MONGO_RETRIES: int = setting(
        5,
        WORKER,
        "A write MongoDB refuses for a connection reason is retried this often, the first after "
        "MONGO_RETRY_DELAY_MS, each next one after twice as long; then the attempt stops and the lease brings the "
        "task back.",
        bounds=(0, 100),
    )
    MONGO_RETRY_DELAY_MS: int = setting(
        500,
        WORKER,
        "The first retry's delay, in milliseconds; doubled for each next one (0.5 s, 1 s, 2 s, 4 s, 8 s).",
        bounds=(0, 60_000),
    )
    RESULT_TTL_HOURS: int = setting(
        24,
        WORKER,
        "Hours a plays job's result CSV is kept after the job completes (then GET .../result answers 410).",
        bounds=(1, 24 * 365),
    )
    CSV_FORMULA_GUARD: bool = setting(
        True,
        WORKER,
        "A plays result cell (a song) starting with =, +, -, @, a tab or a carriage return is written with a "
        "leading ' so that a spreadsheet shows it instead of running it as a formula (OWASP CSV injection). "
        "false: as uploaded.",
    )
    MAX_PLAY_GROUPS: int = setting(
        2_000_000,
        WORKER,
        "Distinct (song, day) pairs a plays job may total; it holds them in memory, about 100 bytes a pair and "
        "250 a distinct song. One more fails the task with that reason (the worker goes on). 2000000: about "
        "700 MB at worst.",
        bounds=(1, 1_000_000_000),
    )
    MAX_PLAY_SONGS_MB: int = setting(
        256,
        WORKER,
        "MiB of distinct song names (UTF-8) a plays job may hold; past it the task fails with that reason.",
        bounds=(1, 1 << 20),
    )
    # 10 minutes: above one MongoDB call's whole retry budget (60 s socket timeout x 6 tries + 15.5 s of backoff
    # = 376 s) and the slowest batch measured (~200 s, FerretDB).
    STALL_SECONDS: int = setting(
        600,
        WORKER,
        "A job that makes no progress (no batch written, no stretch of file read) for this many seconds is taken "
        "as stuck: its worker stops renewing the lease and gives the task up, and another worker retakes it (an "
        "attempt). The lease itself is renewed every LEASE_SECONDS / 3 however long one write takes.",
        bounds=(1, 7 * 86400),
    )

    AUTH: bool = setting(
        True,
        ACCESS,
        "Every route needs an API key (python -m app.tools.keys create ...) or a token of the right role. false: "
        "no authentication; anyone who reaches the port may do anything, and every start logs a warning.",
    )
    # 32 characters at least: a shorter signing key could be guessed from one token.
    SECRET_KEY: str = setting(
        "",
        ACCESS,
        "Signs the page's tokens (JWT, HS256); at least 32 characters. Empty: a random one per start, allowed only "
        "with MONGO_URI empty. With MONGO_URI set it is required, the same in every API process.\n"
        "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        min_chars=32,
        secret=True,
    )
    TOKEN_TTL_SECONDS: int = setting(
        3600, ACCESS, "Seconds a token from POST /api/v1/auth/token lasts.", bounds=(60, 86400)
    )
    RATE_LIMIT_PER_MINUTE: int = setting(
        600,
        ACCESS,
        "Per-key limits; beyond one the answer is 429 with Retry-After (rate_limited, too_many_active_tasks, "
        "upload_quota_exceeded); 0 turns one off. Counted in Redis at REDIS_URL, shared by every API process "
        "(empty: in each process's memory). Redis unreachable: the limits are not enforced and a warning is "
        "logged.\nRequests a key may make per minute (without a key: per address); /, ping, health and static "
        "files don't count.",
        bounds=(0, 1_000_000),
    )
    MAX_ACTIVE_TASKS: int = setting(
        20,
        ACCESS,
        "Tasks a key may have pending or processing at once; checked before an upload's body is read. Admin keys "
        "are exempt.",
        bounds=(0, 100_000),
    )
    # At most 1 PiB: a typo beyond.
    UPLOAD_MB_PER_DAY: int = setting(
        51200,
        ACCESS,
        "MiB a key may upload per day (51200: 50 GiB). An upload with a Content-Length is counted and checked "
        "before it is read; a chunked one (no length) once it has arrived, so it may go over once and the next "
        "are refused. Admins exempt.",
        bounds=(0, 1 << 30),
    )


TABLE: tuple[Setting, ...] = tuple(replace(f.metadata[_ENTRY], name=f.name) for f in fields(Settings))
defaults = Settings()  # every default by name, typed: `from app.settings import defaults; defaults.MAX_ROW_MB`


@dataclass(frozen=True)
class Rule:
    """A check between settings. `says` names each as {NAME}, or {NAME:unit}; `holds` is true when they agree.

    Refused, a value is shown after its name ("MAX_ROW_MB (1 MiB) must be at least BLOCK_SIZE (2097152 bytes)");
    in the docs, only its unit ("MAX_ROW_MB (MiB) must be at least BLOCK_SIZE (bytes)").
    """

    says: str
    holds: Callable[[Settings], bool]

    def refusal(self, settings: Settings) -> str:
        """What load_config says when the rule does not hold: the rule, with the values it was given."""

        def shown(m: re.Match[str]) -> str:
            value = getattr(settings, m[1])
            text = repr(value) if isinstance(value, str) else str(value)
            return f"{m[1]} ({text}{' ' + m[2] if m[2] else ''})"

        return _NAMED.sub(shown, self.says)

    def text(self) -> str:
        """The rule as the docs state it."""
        return _NAMED.sub(lambda m: f"{m[1]} ({m[2]})" if m[2] else m[1], self.says)

    def names(self) -> list[str]:
        return [m[1] for m in _NAMED.finditer(self.says)]


_NAMED = re.compile(r"\{([A-Z][A-Z0-9_]*)(?::([^}]*))?\}")

RULES: tuple[Rule, ...] = (
    Rule(
        "{RESULT_FOLDER} and {UPLOAD_FOLDER} must differ: both name files <task_id>.csv",
        lambda s: os.path.abspath(s.RESULT_FOLDER) != os.path.abspath(s.UPLOAD_FOLDER),
    ),
    Rule(
        "{ZMQ_PORT} and {ZMQ_INTAKE_PORT} must differ: the broker listens on both",
        lambda s: s.ZMQ_PORT != s.ZMQ_INTAKE_PORT,
    ),
    Rule(
        "{MAX_ROW_MB:MiB} must be at least {BLOCK_SIZE:bytes}: a row that fits in a block is always read",
        lambda s: s.MAX_ROW_MB << 20 >= s.BLOCK_SIZE,
    ),
    Rule(
        "{HEARTBEAT_SECONDS} must be smaller than {WORKER_TIMEOUT}: a worker is reported gone after WORKER_TIMEOUT "
        "without one",
        lambda s: s.HEARTBEAT_SECONDS < s.WORKER_TIMEOUT,
    ),
    Rule(
        "{SSE_MAX_STREAMS} must be smaller than {WEB_THREADS}: each open progress stream holds one thread",
        lambda s: s.SSE_MAX_STREAMS < s.WEB_THREADS,
    ),
    Rule(
        "{MAX_UPLOADS_RECEIVING} must be smaller than {WEB_THREADS}: each upload holds one thread while its body "
        "arrives",
        lambda s: s.MAX_UPLOADS_RECEIVING < s.WEB_THREADS,
    ),
)
