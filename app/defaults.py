"""Every default in one place; `config.py` reads overrides from the environment and `.env`."""

FLASK_APP = "run.py"
DEBUG = False
HOST = "127.0.0.1"
PORT = 5000
WEB_CONCURRENCY = 2  # API processes (gunicorn workers); forced to 1 in embedded mode
WEB_THREADS = 16  # threads per API process; an open event stream holds one for as long as it lasts
# A client's headers must be complete this long after it connects (or after its previous request), else 408;
# they are read by gunicorn's event loop, so a slow client holds no thread meanwhile (app/api/serving.py).
HEADER_TIMEOUT_SECONDS = 10
# Each 64 KiB of a request body (or its rest) must arrive within this many seconds, else 408 and the upload is
# dropped: a floor of about 2 kB/s by default. The first 64 KiB are waited for by the event loop, too.
BODY_TIMEOUT_SECONDS = 30
WORKERS = 1  # worker processes run.py starts beside the API when MONGO_URI is empty (0: none, tasks wait)
# Each 64 KiB of an answer must be taken by the client within this many seconds, else the connection is cut:
# a floor of about 2 kB/s. What it has not taken yet is sent by gunicorn's event loop, holding no thread.
WRITE_TIMEOUT_SECONDS = 30
# MB of an answer one connection may leave in memory for the event loop to send; past it, the rest waits in a
# temporary file (result files are sent from disk anyway and count nothing).
WRITE_BUFFER_MB = 8
# MB of answers all connections of one API process may leave in memory (past it: temporary files); the bound.
WRITE_BUFFER_TOTAL_MB = 128

MONGO_URI = ""  # empty: the embedded store, a SQLite file in DATA_FOLDER, kept across restarts
MONGO_DB = "movies_service"
REDIS_URL = ""  # empty: embedded in-memory stand-in (fakeredis), not persisted
DATA_FOLDER = "data"  # the embedded store's file (service.sqlite3) lives here, when MONGO_URI is empty
# How long a write waits for the embedded store's file while another process writes, before the call fails as
# "store unavailable" (and is retried): writers take turns, and one batch takes well under a second.
SQLITE_BUSY_MS = 30_000

UPLOAD_FOLDER = "uploads"
RESULT_FOLDER = "results"  # result files of plays jobs
MAX_UPLOAD_MB = 4096  # at most 1048576 (1 TiB)
MAX_COLUMNS = 500  # columns a header may have (a movies file has 15)
MIN_FREE_MB = 512  # an upload that would leave less free in UPLOAD_FOLDER's filesystem is refused (507)
# Form fields other than the file (the page sends one, `kind`): held in memory while the upload is read, so
# their count and total bytes are bounded; passing either refuses the upload (413) at once, the rest unread.
MAX_FORM_FIELDS = 16
MAX_FORM_KB = 64  # KiB of those fields' names and values together
# Uploads whose body one API process reads at once: each holds a thread of WEB_THREADS until its body is in
# (a client may send 64 KiB per BODY_TIMEOUT_SECONDS for hours), so they cannot take every thread; more: 503.
MAX_UPLOADS_RECEIVING = 4
UPLOADS_PER_KEY = 2  # of those, one key's at once (429 beyond; admins exempt), so one cannot take all (0: no cap)

ZMQ_HOST = "127.0.0.1"  # where the broker listens
ZMQ_PORT = 5555  # broker → workers (workers connect PULL here)
ZMQ_INTAKE_PORT = 5556  # API → broker (API processes connect PUSH here)

CACHE_TTL = 5  # seconds a cached movie page lives
# KiB of movies one /api/v1/movies page may hold, as JSON: a page is built, cached and sent whole, so its bytes
# are bounded as well as its rows. Past it the page is cut short and says where to go on (docs/api.md).
MAX_PAGE_KB = 1024

SSE_MAX_STREAMS = 8  # open progress streams per API process (< WEB_THREADS); more get 503 and the page polls
SSE_POLL_MS = 500  # how often a progress stream reads its task
SSE_KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing a quiet stream
SSE_MAX_SECONDS = 300  # a stream closes after this long; the browser reconnects
SSE_STREAMS_PER_KEY = 3  # open progress streams one key may hold per API process, so one cannot take them all
SSE_RECHECK_SECONDS = 5  # an open stream checks its key (revoked?) and token (expired?) this often, then ends

BLOCK_SIZE = 1 << 20  # bytes PyArrow reads per block
MAX_ROW_MB = 64  # a row bigger than a block is read alone up to this many MiB; a bigger one is rejected
BATCH_SIZE = 1000  # movies per bulk write
INGEST_HELPER_MIN_MB = 8  # movie files this big are parsed in a helper process, beside the writer (0: always)
MAX_REJECTS_KEPT = 100  # rejected rows kept on a task, with line and reason

HEARTBEAT_SECONDS = 5  # how often a worker says it is alive
WORKER_TIMEOUT = 30  # a worker silent for longer counts as gone
RECOVERY_SECONDS = 10  # an idle worker looks for unclaimed pending tasks this often
LEASE_SECONDS = 60  # a claimed task returns to the pool if its worker is silent this long
MAX_ATTEMPTS = 3  # claims of one task before it is failed
# Rewrites of stored movies per bulk_write command (0: all of a batch in one; new movies go in one insert
# whatever this says). FerretDB 1.24 holds one of its 100 pooled backend connections per matched update
# until the command ends, so 100 rewrites in one command hang it: run it with at most 100 / (concurrent
# writers), e.g. 25 (docs/stores.md).
MONGO_WRITE_OPS = 0
MONGO_SOCKET_TIMEOUT_SECONDS = 60  # a MongoDB call with no answer this long fails (and is retried) instead of hanging
MONGO_RETRIES = 5  # a failed write is retried this often, with backoff, before the attempt gives up
MONGO_RETRY_DELAY_MS = 500  # the first retry's delay; doubled each time (0.5 s, 1 s, 2 s, 4 s, 8 s)
RESULT_TTL_HOURS = 24  # a plays job's result file is kept this long after the job completes
CSV_FORMULA_GUARD = True  # a result cell starting with = + - @ tab or CR gets a leading ' (OWASP CSV injection)
# A plays job totals in memory: about 100 bytes a distinct (song, day) pair and 250 a distinct song, plus the
# songs' names. Past either bound the task fails with the reason, before the worker runs out of memory.
MAX_PLAY_GROUPS = 2_000_000
MAX_PLAY_SONGS_MB = 256  # MiB of distinct song names (UTF-8) held
# A job with no progress (no batch written, no stretch of file read) this long is stuck: its worker stops renewing
# the lease and gives the task up for another attempt. 10 minutes: above one MongoDB call's whole retry budget
# (60 s socket timeout x 6 tries + 15.5 s of backoff = 376 s) and the slowest batch measured (~200 s, FerretDB).
STALL_SECONDS = 600

# Authentication: every route needs an API key or a token of the right role (docs: README, Security).
# false: anyone who reaches the port may do anything; the service warns at every start.
AUTH = True
# Signs the page's tokens (JWT, HS256). Empty: a random one per start, allowed only when MONGO_URI is empty
# (one API process); with MONGO_URI set it must be set, at least 32 characters, the same in every API process.
SECRET_KEY = ""
TOKEN_TTL_SECONDS = 3600  # how long a token from POST /api/v1/auth/token lasts
# Per-key limits (docs: README, Security): beyond one, 429 with Retry-After; 0 turns one off. Counted in Redis
# (REDIS_URL; in this process's memory when it is empty); Redis unreachable: not enforced, and a warning is logged.
RATE_LIMIT_PER_MINUTE = 600  # requests a key (or, without one, an address) may make a minute; /, ping, health exempt
MAX_ACTIVE_TASKS = 20  # a key's tasks pending or processing at once, checked before an upload is read; admins exempt
UPLOAD_MB_PER_DAY = 51200  # MiB a key may upload in a day (50 GiB); admins exempt

LOG_LEVEL = "INFO"
