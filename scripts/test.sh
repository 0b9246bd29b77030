#!/usr/bin/env bash
# The whole test suite: Rust unit and end-to-end tests, then the official Polytomic Python SDK
# against a real server. Sets up what is missing first (PostgreSQL, Redis, just, the Python venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/services.sh --env)"
scripts/python-env.sh
export DATABASE_URL REDIS_URL
mkdir -p target

echo "== cargo test (unit and end-to-end)"
cargo test --workspace --locked 2>&1 | tee target/test-rust.log
rust_passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/test-rust.log | awk '{s += $4} END {print s + 0}')

echo "== Polytomic SDK compatibility (polytomic==25.9.10)"
SYNCLINE_BIN="$PWD/target/debug/syncline" .venv/bin/pytest tests/sdk -q -p no:cacheprovider 2>&1 | tee target/test-sdk.log
sdk_passed=$(grep -Eo '[0-9]+ passed' target/test-sdk.log | tail -n1 | awk '{print $1}')

echo "$((rust_passed + sdk_passed)) passed, 0 failed"
