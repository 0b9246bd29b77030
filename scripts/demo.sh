#!/usr/bin/env bash
# The demo: starts Syncline (api, worker and scheduler in one process) on http://localhost:5100,
# creates sample data, an organization, connections, a model and a sync through the API, runs the
# sync twice with progress shown, and leaves the API running (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/services.sh --env)"
echo "== building syncline"
cargo build --locked -p syncline

state_db="${SYNCLINE_DEMO_DB:-syncline}"
server="${DATABASE_URL%/*}"
if ! psql -X -At "$DATABASE_URL" -c "select 1 from pg_database where datname = '$state_db'" | grep -q 1; then
    psql -X -q "$DATABASE_URL" -c "create database $state_db"
fi

mkdir -p .syncline
[ -f .syncline/deployment-key ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > .syncline/deployment-key
export DATABASE_URL="$server/$state_db"
export PORT="${PORT:-5100}"
export POLYTOMIC_URL="${POLYTOMIC_URL:-http://localhost:$PORT}"
export ROOT_USER="${ROOT_USER:-admin@example.com}" DEPLOYMENT="${DEPLOYMENT:-demo}"
export DEPLOYMENT_KEY="${DEPLOYMENT_KEY:-$(cat .syncline/deployment-key)}"
export GOOGLE_CLIENT_ID="${GOOGLE_CLIENT_ID:-unset-for-demo}" GOOGLE_CLIENT_SECRET="${GOOGLE_CLIENT_SECRET:-unset-for-demo}"
export JOB_PAYLOAD_PATH="${JOB_PAYLOAD_PATH:-file://$PWD/.syncline/payloads}"

if curl -fs "http://127.0.0.1:$PORT/status.txt" >/dev/null 2>&1; then
    echo "error: something already listens on port $PORT (a previous demo?): stop it or set PORT" >&2
    exit 1
fi
echo "== starting syncline on $POLYTOMIC_URL (log: .syncline/serve.log)"
target/debug/syncline serve > .syncline/serve.log 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' INT TERM
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/status.txt" >/dev/null 2>&1 && break
    kill -0 $server_pid 2>/dev/null || { cat .syncline/serve.log >&2; exit 1; }
    sleep 0.2
done

target/debug/syncline demo --api "http://127.0.0.1:$PORT" --postgres "$server/postgres"
echo "Deployment key: $DEPLOYMENT_KEY (in .syncline/deployment-key). Press Ctrl-C to stop."
wait $server_pid
