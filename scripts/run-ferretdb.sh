#!/usr/bin/env bash
# The whole service on a real MongoDB-compatible server, its data kept across restarts:
#
#   make run-ferretdb            (or: bash scripts/run-ferretdb.sh, with .venv made by make run)
#
# Starts FerretDB (SQLite backend, data in FERRETDB_DATA, default .services/ferretdb-data) on
# 127.0.0.1:FERRETDB_PORT (27017), one `python worker.py`, and `python run.py` (API + broker) with
# MONGO_URI pointing at it. Ctrl-C stops all three; the next start finds the catalogue and tasks as they were.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
PORT_DB=${FERRETDB_PORT:-27017}
DATA=${FERRETDB_DATA:-.services/ferretdb-data}
bash scripts/test-services.sh ferretdb >/dev/null || { bash scripts/test-services.sh ferretdb; exit 1; }

mkdir -p "$DATA/state"
export MONGO_URI="mongodb://127.0.0.1:$PORT_DB/"
export MONGO_WRITE_OPS="${MONGO_WRITE_OPS:-25}"  # app/store/mongo.py FERRETDB_WRITE_OPS: FerretDB 1.24 hangs on bigger bulk writes

pids=()
stop() { trap - EXIT INT TERM; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

.services/bin/ferretdb --handler=sqlite "--sqlite-url=file:$PWD/$DATA/" --listen-addr="127.0.0.1:$PORT_DB" \
  --debug-addr=127.0.0.1:0 --state-dir="$PWD/$DATA/state" --telemetry=disable --log-level=warn \
  >>"$DATA/ferretdb.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  if "$PY" -c "import pymongo,sys; pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=200).admin.command('ping')" \
      "$MONGO_URI" 2>/dev/null; then break; fi
  kill -0 "${pids[0]}" 2>/dev/null || { echo "FerretDB did not start; see $DATA/ferretdb.log" >&2; exit 1; }
  sleep 0.1
done
echo "FerretDB $(.services/bin/ferretdb --version | sed -n 's/^version: //p') on $MONGO_URI, data in $DATA"

"$PY" worker.py &
pids+=($!)
"$PY" run.py &
pids+=($!)
wait -n "${pids[@]}"  # any of the three ending ends the others
