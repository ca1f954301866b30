#!/usr/bin/env bash
# The project's test command (README): checks that the tools are there, makes the Python environment the plot
# tests need, then runs formatting, lints, plot.py's self-test and every test, and lists at the end every test
# that skipped its checks (outside CI; under CI=true such a test fails instead).
#
# Python: scripts/plot.py needs matplotlib. Debian's and Ubuntu's own python3 refuse `pip install` (PEP 668,
# externally managed), so it goes into a virtual environment in .venv/ (git-ignored), made once and reused.
# Where no venv can be made (Debian without python3-venv) or pip cannot install, a python3 that already has
# matplotlib (Debian's python3-matplotlib) is used instead. tests/plot.rs and scripts/sweep.sh look for
# .venv/bin/python3 first, then python3, the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test.sh: $*" >&2; }

command -v cargo >/dev/null 2>&1 ||
    { say "cargo is missing: install Rust with rustup (https://rustup.rs), then rerun"; exit 1; }
cargo fmt --version >/dev/null 2>&1 ||
    { say "rustfmt is missing: rustup component add rustfmt (or apt-get install rustfmt)"; exit 1; }
cargo clippy --version >/dev/null 2>&1 ||
    { say "clippy is missing: rustup component add clippy (or apt-get install rust-clippy)"; exit 1; }

has_matplotlib() { "$1" -c 'import matplotlib' >/dev/null 2>&1; }

# Make or refresh .venv/; prints nothing on success, one line saying why not otherwise.
make_venv() {
    local py=.venv/bin/python3
    if ! "$py" -c 'import sys' >/dev/null 2>&1; then
        # Absent, or made for a python3 that is gone (moved repo, removed interpreter): make it anew.
        rm -rf .venv
        if ! python3 -m venv .venv >/dev/null 2>&1; then
            rm -rf .venv
            echo "python3 cannot make a virtual environment (Debian/Ubuntu: apt-get install python3-venv)"
            return 1
        fi
    fi
    # Reinstall when requirements.txt changed since the last install.
    if has_matplotlib "$py" && cmp -s scripts/requirements.txt .venv/requirements.installed; then
        return 0
    fi
    say "installing scripts/requirements.txt into .venv/ (once)"
    if ! "$py" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt >&2; then
        echo "pip could not install scripts/requirements.txt into .venv/ (pip said why, above)"
        return 1
    fi
    cp scripts/requirements.txt .venv/requirements.installed
}

python=""
if ! command -v python3 >/dev/null 2>&1; then
    say "python3 is missing, so the plot tests cannot run: apt-get install python3 python3-venv"
elif why=$(make_venv); then
    python=.venv/bin/python3
elif has_matplotlib python3; then
    say "$why; using $(command -v python3), which has matplotlib"
    python=python3
else
    say "$why, and $(command -v python3) has no matplotlib: the plot tests cannot run (fix that, or apt-get install python3-matplotlib)"
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
mkdir -p target

if [[ -n $python ]]; then
    PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg "$python" scripts/test_plot.py >target/test_plot.log 2>&1 || {
        cat target/test_plot.log >&2
        say "scripts/test_plot.py failed (plot.py's self-test, output above)"
        exit 1
    }
    say "plot.py self-test: $(tail -n 1 target/test_plot.log)"
fi

# Skipping tests print a line starting with SKIPPED; .config/nextest.toml shows their output even when they
# pass, and the log kept here lists them once more at the end, where nobody can miss them.
log=target/test-output.log
color=()
[[ -t 1 ]] && color=(--color always)
set +e
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${color[@]}" --no-fail-fast "$@" 2>&1 | tee "$log"
else
    say "cargo-nextest is not installed (cargo install cargo-nextest --locked); running cargo test"
    RUST_TEST_NOCAPTURE=1 cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
fi
rc=${PIPESTATUS[0]}
set -e
# One line per skipping test (each names itself), sorted; a test that retried would print twice: count once.
skipped=$(grep -o 'SKIPPED.*' "$log" | sed 's/\x1b\[[0-9;]*m//g' | sort -u || true)
if [[ -n $skipped ]]; then
    say "$(wc -l <<<"$skipped") test(s) passed WITHOUT checking anything, because they could not run here:"
    sed 's/^/    /' <<<"$skipped" >&2
    say "run the tests as root, with /dev/net/tun, iproute2 and python3-venv, to run them (CI=true turns a skip into a failure)"
fi
exit "$rc"
