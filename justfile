# Syncline tasks. `just --list` shows them.

# Run the end-to-end demo and leave the API running on http://localhost:5100.
demo:
    scripts/demo.sh

# Run every test: Rust unit and end-to-end tests, then the Polytomic SDK and sign-in suites.
test:
    scripts/test.sh

# Format, then lint with warnings as errors.
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Benchmarks against physical-limit baselines: `just bench model-sync [--source mariadb]`, `bulk-sync`, `cdc`, `events`.
bench name="model-sync" *args="":
    scripts/bench.sh {{name}} {{args}}

# Start (or install and start) PostgreSQL, Redis and MariaDB.
services:
    scripts/services.sh

# Apply database migrations to DATABASE_URL.
migrate:
    cargo run --quiet -p syncline -- migrate
