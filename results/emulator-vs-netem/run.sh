#!/usr/bin/env bash
# run.sh: the same small grid of impairments through both of compare's engines, tc netem and the built-in
# emulator, on the same kernel. Needs root, sch_netem and /dev/net/tun: on a machine without netem, run it in
# scripts/vm.sh's VM (Debian's kernel under QEMU), which has both:
#
#   scripts/vm.sh run --timeout 1200 -- results/emulator-vs-netem/run.sh
#   sudo results/emulator-vs-netem/run.sh --host-emulator   # optional: the emulator outside the VM
#   python3 results/emulator-vs-netem/analyze.py          # the table (README.md) and the figure
#
# Writes raw/netem/ and raw/emulator/ beside this script (summary.csv, link and latency CSVs, UDP's
# per-message CSVs gzipped, each compare's output; run.log), or with --host-emulator raw/emulator-host/ (the emulator alone, on whatever kernel runs
# it: its timing without software emulation). The emulator runs with --seed 1; netem has no seed, so its
# numbers change from run to run.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SB=${SOCKBENCH:-$REPO/target/release/sockbench}
[[ -x $SB ]] || { echo "run.sh: $SB is missing: cargo build --release (or set SOCKBENCH)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "run.sh: needs root (the lab's namespaces)" >&2; exit 1; }
# The emulator needs /dev/net/tun; in the VM the tun module loads on demand.
[[ -e /dev/net/tun ]] || modprobe tun 2>/dev/null || true
if [[ ! -e /dev/net/tun ]]; then
    mkdir -p /dev/net && mknod /dev/net/tun c 10 200 || { echo "run.sh: no /dev/net/tun" >&2; exit 1; }
fi

RAW=$HERE/raw
runs=(netem:netem emulator:emulator) # output folder:engine
log=$RAW/run.log
if [[ ${1:-} == --host-emulator ]]; then
    runs=(emulator-host:emulator)
    log=$RAW/run-host.log
elif [[ -n ${1:-} ]]; then
    echo "run.sh: unknown argument '$1' (only --host-emulator)" >&2
    exit 2
fi
for r in "${runs[@]}"; do
    rm -rf "${RAW:?}/${r%%:*}"
    mkdir -p "$RAW/${r%%:*}"
done

# name | traffic | impairment. Counts and rates keep each session at 3 s (about 10 s per compare under TCG).
grid=(
    "loss|--count 3000 --rate 1000|--loss 5%"
    "loss_correlation|--count 3000 --rate 1000|--loss 5% --loss-correlation 25%"
    "gemodel|--count 6000 --rate 2000|--gemodel 2%,25%"
    "jitter_uniform|--count 3000 --rate 1000|--delay 20ms --jitter 5ms"
    "jitter_normal|--count 3000 --rate 1000|--delay 20ms --jitter 5ms --jitter-dist normal"
    "reorder|--count 3000 --rate 1000|--delay 10ms --reorder 2% --reorder-gap 3"
    "duplicate|--count 3000 --rate 1000|--delay 10ms --duplicate 2%"
    "rate|--count 3000 --rate 1000 --size 200|--link-rate 1mbit --queue 50"
    "rate_delay|--count 3000 --rate 1000 --size 200|--link-rate 1mbit --queue 50 --delay 20ms"
    "default|--count 3000 --rate 1000|"
)

mkdir -p "$RAW"
{
    echo "== run.sh $(date -u +%FT%TZ): ${#grid[@]} conditions x (${runs[*]})"
    echo "   $("$SB" --version), kernel $(uname -r), $(nproc) vCPUs, $(tc -V)"
} | tee "$log"
start=$(date +%s)
for entry in "${grid[@]}"; do
    IFS='|' read -r name traffic flags <<<"$entry"
    for r in "${runs[@]}"; do
        dir=$RAW/${r%%:*} engine=${r#*:}
        seed=()
        [[ $engine == emulator ]] && seed=(--seed 1)
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086 # our own flags
        "$SB" compare --engine "$engine" $traffic $flags "${seed[@]}" --per-message --label "$name" \
            --out "$dir" >"$dir/$name.txt" 2>&1 </dev/null || {
            echo "run.sh: $name on $engine failed:" >&2
            tail -5 "$dir/$name.txt" >&2
            exit 1
        }
        # Only UDP's messages are analysed: TCP's go, UDP's are kept compressed.
        rm -f "$dir"/*_tcp_messages.csv
        gzip -9 "$dir"/*_udp_messages.csv
        printf '%-18s %-13s %5.1f s  %s\n' "$name" "${r%%:*}" \
            "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b - a}')" \
            "$(awk '/^  lost +[0-9]/{print "lost TCP/UDP " $2 " / " $3; exit}' "$dir/$name.txt")" | tee -a "$log"
    done
done
echo "== done in $(($(date +%s) - start)) s" | tee -a "$log"
