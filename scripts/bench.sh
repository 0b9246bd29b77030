#!/usr/bin/env bash
# Benchmarks: `scripts/bench.sh model-sync [--source postgres|mariadb] [--rows N] [--runs N]`.
# Builds into CARGO_TARGET_DIR (default target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/services.sh --env)"
export DATABASE_URL REDIS_URL MARIADB_URL
name="${1:-model-sync}"
shift || true
cargo build --locked --profile bench -p syncline -p syncline-bench
# The bench profile builds into release/.
bin="${CARGO_TARGET_DIR:-target}/release"
exec "$bin/syncline-bench" "$name" --bin "$bin/syncline" "$@"
