#!/usr/bin/env bash
# The project's test command (README): formatting, lints, then every test.
# Installs the Python plotting dependencies if they are missing, because a test runs scripts/plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "test.sh: installing the plotting dependencies (scripts/requirements.txt)" >&2
    python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
else
    cargo test --no-fail-fast "$@"
fi
