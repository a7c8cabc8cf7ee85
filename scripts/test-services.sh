#!/usr/bin/env bash
# The services the tests talk to, made ready on this machine: Redis, FerretDB, PostgreSQL, Chromium.
#
#   bash scripts/test-services.sh             (make services: one line per service)
#   bash scripts/test-services.sh --quiet     (make setup, which make test and .ci/run call: prints only what
#                                              it installs, builds or starts, and what is missing)
#   bash scripts/test-services.sh ferretdb    (only FerretDB: make run-ferretdb calls it)
#
# Prints one line per service: ready, or what is missing and the command that brings it. Installs what
# Debian packages (redis-server, postgresql, chromium) when it can, starts Redis on 127.0.0.1:6379 when nothing
# answers there, and builds FerretDB once into .services/bin (git-ignored), reused while its version
# matches. Under CI=true a service that is not ready is an error (exit 1); elsewhere only a warning, and
# the tests that need it skip with the same message.
set -uo pipefail
cd "$(dirname "$0")/.."

FERRETDB_VERSION=v1.24.2  # the last 1.x release: its SQLite backend needs no other server
FERRETDB_BIN=.services/bin/ferretdb
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}  # Debian 12's postgresql; the tests start throwaway clusters

quiet=0
if [ "${1:-}" = "--quiet" ]; then quiet=1; shift; fi
wanted="${*:-redis ferretdb postgresql chromium}"
want() { case " $wanted " in *" $1 "*) return 0;; *) return 1;; esac; }
missing=0
ready() { [ "$quiet" -eq 1 ] || printf '%-9s ready: %s\n' "$1" "$2"; }
doing() { printf '%-9s %s\n' "$1" "$2"; }  # what is installed, built or started: printed even when quiet
lacking() { printf '%-9s MISSING: %s; bring it with: %s\n' "$1" "$2" "$3"; missing=1; }

sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
apt_updated=0
apt_install() {  # apt_install PACKAGE: Debian's package, quietly; returns apt-get's status
  doing "$1" "installing Debian's package (apt-get install $1)"
  if [ "$apt_updated" -eq 0 ]; then $sudo apt-get update -qq >/dev/null 2>&1 && apt_updated=1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1
}

redis_answers() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

# -- Redis ----------------------------------------------------------------------------------------
if ! want redis; then :
elif ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt_install redis-server
fi
if ! want redis; then :
elif ! command -v redis-server >/dev/null; then
  lacking redis "redis-server is not installed" "apt-get install redis-server"
elif redis_answers; then
  ready redis "redis://$REDIS_HOST:$REDIS_PORT (already running)"
else
  mkdir -p .services
  # No persistence: the tests' Redis holds only cache entries and limits.
  redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --logfile "$PWD/.services/redis.log" >/dev/null
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
  if redis_answers; then
    doing redis "started: redis://$REDIS_HOST:$REDIS_PORT (log in .services/redis.log)"
  else
    lacking redis "redis-server did not answer on $REDIS_HOST:$REDIS_PORT (see .services/redis.log)" \
      "redis-server --bind $REDIS_HOST --port $REDIS_PORT --save ''"
  fi
fi

# -- FerretDB -------------------------------------------------------------------------------------
ferretdb_version() { "$FERRETDB_BIN" --version 2>/dev/null | sed -n 's/^version: //p'; }

build_ferretdb() {
  # `go install …@v1.24.2` builds a binary that panics at start: the module as served lacks the
  # build/version/version.txt its release builds write. So build a copy of the module's source with it.
  local src work
  src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>>.services/ferretdb-build.log \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p') || return 1
  [ -n "$src" ] || return 1
  work=.services/src/ferretdb-$FERRETDB_VERSION
  rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work" || return 1
  echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
  (cd "$work" && go build -o "$OLDPWD/$FERRETDB_BIN" ./cmd/ferretdb) >>.services/ferretdb-build.log 2>&1
}

if ! want ferretdb; then :
elif [ "$(ferretdb_version)" != "$FERRETDB_VERSION" ]; then
  if command -v go >/dev/null; then
    mkdir -p .services/bin
    : > .services/ferretdb-build.log
    doing ferretdb "building $FERRETDB_VERSION from the Go module proxy into $FERRETDB_BIN (once; a few minutes)"
    build_ferretdb
  fi
fi
if ! want ferretdb; then :
elif [ "$(ferretdb_version)" = "$FERRETDB_VERSION" ]; then
  ready ferretdb "$FERRETDB_BIN $FERRETDB_VERSION (the tests start it: SQLite backend, a temporary folder, a free port)"
elif command -v go >/dev/null; then
  lacking ferretdb "the build of $FERRETDB_VERSION failed (see .services/ferretdb-build.log)" "bash scripts/test-services.sh"
else
  lacking ferretdb "no Go toolchain to build it" "install Go 1.26, then bash scripts/test-services.sh"
fi

# -- PostgreSQL (FerretDB's other backend; tests/support/postgres.py starts a cluster per test module) ------
pg_ready() { [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ]; }
if want postgresql && ! pg_ready; then
  apt_install postgresql
fi
if ! want postgresql; then :
elif pg_ready && { [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1; }; then
  ready postgresql "$PG_BIN ($("$PG_BIN/postgres" --version 2>/dev/null); the tests start a throwaway cluster on a free port)"
else
  lacking postgresql "no initdb/pg_ctl/postgres in $PG_BIN (or, as root, no postgres account)" "apt-get install postgresql"
fi

# -- Chromium (the browser tests; Playwright never downloads a browser) ----------------------------
if want chromium && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
if ! want chromium; then :
elif [ -x /usr/bin/chromium ]; then
  ready chromium "/usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
else
  lacking chromium "/usr/bin/chromium is not installed" "apt-get install chromium"
fi

if [ "$missing" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "test services: not all ready, and CI=true needs every one" >&2
  exit 1
fi
exit 0
