#!/usr/bin/env bash
# The whole test suite: Rust unit and end-to-end tests, then the official Polytomic Python SDK
# against a real server, then web sign-in against a real OpenID Connect provider, then
# dagster-polytomic against a real server. Sets up what is missing first (PostgreSQL, Redis,
# MariaDB, just, the Python venvs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/services.sh --env)"
scripts/python-env.sh
scripts/python-env.sh dagster
export DATABASE_URL REDIS_URL MARIADB_URL
mkdir -p target

echo "== cargo test (unit and end-to-end)"
cargo test --workspace --locked 2>&1 | tee target/test-rust.log
rust_passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/test-rust.log | awk '{s += $4} END {print s + 0}')

# The server binary the Python suites run, built as `cargo build` makes it (the test build
# above may leave an older one in place).
cargo build --locked -p syncline

# The Python suites against the built server: the official Polytomic SDK (polytomic==25.9.10),
# web sign-in against a real OpenID Connect provider (oidc-provider-mock), then dagster-polytomic
# in its own venv (it needs the 1.x SDK).
python_passed=0
for suite in sdk signin dagster; do
    case "$suite" in dagster) venv=.venv-dagster ;; *) venv=.venv ;; esac
    echo "== tests/$suite"
    SYNCLINE_BIN="$PWD/target/debug/syncline" "$venv/bin/pytest" "tests/$suite" -q -p no:cacheprovider 2>&1 | tee "target/test-$suite.log"
    python_passed=$((python_passed + $(grep -Eo '[0-9]+ passed' "target/test-$suite.log" | tail -n1 | awk '{print $1}')))
done

echo "$((rust_passed + python_passed)) passed, 0 failed"
