#!/usr/bin/env bash
# Run every fuzz target in turn for SECS seconds (default 180), one at a time (the machine has 2 cores), and
# print each one's figures: executions, corpus files and bytes, and whether it found anything.
# Usage: fuzz/run.sh [SECS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-180}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire framer control receiver sender translate)
# cargo-fuzz passes -Z flags to rustc; a stable compiler accepts them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
# Safe Rust all the way down: AddressSanitizer finds nothing here that a panic would not, and costs half
# the executions. Debug assertions (overflow checks) stay on: cargo fuzz builds with them by default.
san=(-s none)
cargo fuzz build "${san[@]}"
mkdir -p logs
for t in "${targets[@]}"; do
    dict=()
    case $t in control|receiver|sender) dict=(-dict=dict/control.dict) ;; esac
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t"/ 2>/dev/null || true
    set +e
    cargo fuzz run "${san[@]}" "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        "${dict[@]}" >"logs/$t.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    files=$(find "corpus/$t" -type f | wc -l)
    bytes=$(du -sb "corpus/$t" | cut -f1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "logs/$t.log" | tail -1)
    echo "$t: exit $rc, ${secs}s, $execs executions, corpus $files files / $bytes bytes, $cov"
done
