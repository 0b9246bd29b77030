#!/usr/bin/env bash
# Benchmarks: `scripts/bench.sh model-sync [--rows N] [--runs N]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/services.sh --env)"
export DATABASE_URL REDIS_URL
name="${1:-model-sync}"
shift || true
cargo build --locked --profile bench -p syncline -p syncline-bench
exec target/release/syncline-bench "$name" --bin target/release/syncline "$@"
