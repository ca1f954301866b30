#!/usr/bin/env bash
# sweep.sh: TCP and UDP side by side ('sockbench compare') over a grid of path conditions,
# all into one results/<name>/ folder, then scripts/plot.py on it.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

usage() {
    cat <<EOF
Usage: $PROG [--name NAME] [--size BYTES] [--rate R] [--count N] [--quick]
             [--all-messages] [--seed N] [--no-plot]

Runs 'sockbench compare' (a TCP session, then a UDP session with identical traffic) once per
path condition, each with --label set to the condition, all appending to
results/NAME/summary.csv, then runs scripts/plot.py results/NAME (plots in results/NAME/plots).

Default grid (17 conditions, 34 sessions):
  sweep=loss       loss 0, 0.5, 1, 2, 5, 10 %   at delay 10 ms
  sweep=delay      delay 0, 10, 50 ms            at loss 1 %
  sweep=reorder    reorder 0, 1, 2, 5 % (gap 3)  at delay 10 ms
  sweep=duplicate  duplicate 0, 1, 2, 5 %        at delay 10 ms
Labels look like 'loss=5%,delay=10ms,sweep=loss'. Zero levels are passed explicitly
(e.g. --loss 0%): without any impairment flag, compare would apply its default impairment.
Every condition uses the same --seed, so a re-run makes the same impairment decisions.

Options:
  --name NAME     results/NAME (default: sweep-YYYY-MM-DD, UTC); a NAME containing '/' is
                  used as the directory itself. An existing summary.csv is appended to.
  --size BYTES    message size, header included (default 64)
  --rate R        messages per second (default 1000; 0 = as fast as possible)
  --count N       messages per session (default 3000; --quick: 300)
  --quick         a tiny grid for tests: loss 0 and 5 %, reorder 2 %, duplicate 2 %, at
                  delay 10 ms; per-message CSVs for all of them
  --all-messages  per-message CSVs for every condition (default: only loss=5%, to keep the
                  folder small: about 80 bytes per message per session)
  --seed N        impairment seed (default 1)
  --no-plot       only the CSVs
  -h, --help      this text

Time: the default grid (3000 messages at 1000 msg/s) took 2 min 3 s on a 2-core VM
(118 s for the 17 conditions + 4 s of plotting; see results/README.md): roughly
17 x (2 x count/rate + 1 s). It scales with --count/--rate. --quick takes about 10 s.

Outputs, in results/NAME/: summary.csv (two rows per condition, TCP and UDP, sharing a
run_id), <run_id>_{tcp,udp}_latency.csv, <run_id>_link.csv (the emulator's own counts),
<run_id>_{tcp,udp}_messages.csv (see --all-messages), sweep.log (what ran and how long),
plots/*.png and plots/*.svg.

The path: 'sockbench compare' builds its own two-host lab (network namespaces joined by
sockbench's built-in userspace link emulator) for every condition, whether or not this
kernel has sch_netem; compare has no netem mode. The emulator implements netem's model
(same flag vocabulary). For a veth + netem path by hand, see scripts/lab.sh.

Needs root (namespaces, TUN devices). Ctrl-C (or SIGTERM) stops the running compare
gracefully, which removes its lab; the rows already written are kept (they are complete
sessions; the interrupted one is marked complete=false). Nothing is left running and no
namespace is left behind. Exit status: 0 done, 1 a failure, 2 bad usage, 130 interrupted.
The binary is \$SOCKBENCH, or target/release/sockbench (built with cargo if missing).
EOF
}

die() { # die MESSAGE [EXIT_STATUS]
    echo "$PROG: $1" >&2
    exit "${2:-1}"
}

name="" size=64 rate=1000 count="" quick=0 all_messages=0 seed=1 plot=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) quick=1; shift; continue ;;
    --all-messages) all_messages=1; shift; continue ;;
    --no-plot) plot=0; shift; continue ;;
    esac
    case "$1" in
    --name | --size | --rate | --count | --seed) ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
    esac
    [[ $# -ge 2 ]] || die "$1 needs a value (see --help)" 2
    case "$1" in
    --name) name=$2 ;;
    --size) size=$2 ;;
    --rate) rate=$2 ;;
    --count) count=$2 ;;
    --seed) seed=$2 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
    esac
    shift 2
done
[[ -n $count ]] || { [[ $quick -eq 1 ]] && count=300 || count=3000; }
[[ -n $name ]] || name="sweep-$(date -u +%F)"
[[ $name == */* ]] && outdir=$name || outdir=$REPO/results/$name
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a whole number, not '$seed'" 2

[[ $(id -u) -eq 0 ]] || die "needs root: compare builds network namespaces (run with sudo)" 2
command -v ip >/dev/null || die "'ip' is missing: apt-get install iproute2"

bin=${SOCKBENCH:-$REPO/target/release/sockbench}
if [[ ! -x $bin ]]; then
    [[ -z ${SOCKBENCH:-} ]] || die "\$SOCKBENCH=$bin is not an executable"
    command -v cargo >/dev/null || die "$bin is missing and cargo is not installed; build sockbench or set SOCKBENCH"
    echo "$PROG: building sockbench (cargo build --release)..." >&2
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed"
fi
# Validate the traffic flags once, before anything runs (exit 2 on a bad value).
check_dir=$(mktemp -d)
check_rc=0
"$bin" compare --loopback --count 1 --rate "$rate" --size "$size" --out "$check_dir" >/dev/null 2>&1 || check_rc=$?
rm -rf "$check_dir"
[[ $check_rc -eq 0 ]] ||
    die "sockbench refused --size $size --rate $rate (see: $bin compare --loopback --count 1 --size $size --rate $rate)" 2

# The grid: "sweep|label|compare flags", one line per condition.
grid=()
add() { grid+=("$1|$2|$3"); }
if [[ $quick -eq 1 ]]; then
    for l in 0 5; do add loss "loss=$l%,delay=10ms,sweep=loss" "--loss $l% --delay 10ms"; done
    add reorder "reorder=2%,delay=10ms,sweep=reorder" "--reorder 2% --reorder-gap 3 --delay 10ms"
    add duplicate "duplicate=2%,delay=10ms,sweep=duplicate" "--duplicate 2% --delay 10ms"
    all_messages=1
else
    for l in 0 0.5 1 2 5 10; do add loss "loss=$l%,delay=10ms,sweep=loss" "--loss $l% --delay 10ms"; done
    for d in 0 10 50; do add delay "delay=${d}ms,loss=1%,sweep=delay" "--loss 1% --delay ${d}ms"; done
    for r in 0 1 2 5; do
        add reorder "reorder=$r%,delay=10ms,sweep=reorder" "--reorder $r% --reorder-gap 3 --delay 10ms"
    done
    for p in 0 1 2 5; do add duplicate "duplicate=$p%,delay=10ms,sweep=duplicate" "--duplicate $p% --delay 10ms"; done
fi

# --- cleanup: the running compare (our child), and any lab namespace it left behind ---
child=""
interrupted=0
remove_child_labs() { # namespaces sb-<pid>-<n>-{a,b} of a compare we started and that is gone
    local pid=$1 ns
    [[ -n $pid && ! -d /proc/$pid ]] || return 0
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^sb-$pid-[0-9]+-[ab]$" || true); do
        echo "$PROG: removing namespace $ns left by compare (pid $pid)" >&2
        ip netns del "$ns" 2>/dev/null || true
    done
}
stop_child() {
    local pid=$child
    [[ -n $pid ]] || return 0
    if [[ -d /proc/$pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true # compare: write what it has, remove its lab
        for _ in $(seq 150); do             # up to 15 s
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            echo "$PROG: compare (pid $pid) did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    wait "$pid" 2>/dev/null || true
    remove_child_labs "$pid"
    child=""
}
on_signal() {
    interrupted=1
    trap '' INT TERM HUP
    echo >&2
    echo "$PROG: interrupted; stopping the running compare (its rows are marked complete=false)" >&2
    stop_child
    echo "$PROG: partial results kept in $outdir" >&2
    exit 130
}
trap on_signal INT TERM HUP
trap 'stop_child' EXIT

mkdir -p "$outdir"
log=$outdir/sweep.log
note() { echo "$*" | tee -a "$log" >&2; }

if "$HERE/netem.sh" check >/dev/null 2>&1; then
    path_note="this kernel has sch_netem, but compare always uses its built-in emulator (scripts/lab.sh is the netem path)"
else
    path_note="no sch_netem in this kernel; compare uses its built-in emulator (as it always does)"
fi
start=$(date +%s)
note "== $PROG $(date -u +%FT%TZ): ${#grid[@]} conditions x (TCP, UDP), $count x $size B at $rate msg/s, seed $seed -> $outdir"
note "   path: $path_note"
note "   $("$bin" --version 2>/dev/null || echo sockbench), kernel $(uname -r), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
note "   load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows up as latency outliers)"

i=0
failed=0
for entry in "${grid[@]}"; do
    i=$((i + 1))
    IFS='|' read -r sweep label flags <<<"$entry"
    pm=()
    if [[ $all_messages -eq 1 || $label == loss=5%,* ]]; then pm=(--per-message); fi
    # shellcheck disable=SC2206 # flags are our own, space-separated
    args=(compare --count "$count" --rate "$rate" --size "$size" --seed "$seed" $flags
        --label "$label" --out "$outdir" "${pm[@]}")
    t0=$(date +%s.%N)
    # Its own session: a Ctrl-C on the terminal reaches only this script, which then stops
    # compare with exactly one SIGTERM (a second signal would make compare exit at once).
    setsid "$bin" "${args[@]}" >"$outdir/.compare.out" 2>&1 </dev/null &
    child=$!
    rc=0
    wait "$child" || rc=$?
    child=""
    t1=$(date +%s.%N)
    summary=$(awk '/^  lost +[0-9]/{l=$2" / "$3} /^  p99 /{p=$2$3" / "$4$5} END{print "lost TCP/UDP " l ", p99 " p}' "$outdir/.compare.out")
    note "$(printf '[%2d/%d] %-40s %5.1f s  %s' "$i" "${#grid[@]}" "$label" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$summary")"
    if [[ $rc -ne 0 ]]; then
        failed=$((failed + 1))
        note "   compare failed (exit $rc): $bin ${args[*]}"
        sed 's/^/   /' "$outdir/.compare.out" | tail -5 | tee -a "$log" >&2
    fi
done
rm -f "$outdir/.compare.out"
took=$(($(date +%s) - start))
note "== grid done in ${took} s ($((took / 60)) min $((took % 60)) s); $failed condition(s) failed; load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $plot -eq 1 ]]; then
    if ! python3 -c 'import matplotlib' 2>/dev/null; then
        note "$PROG: matplotlib is missing, so no plots: python3 -m pip install -r scripts/requirements.txt, then python3 scripts/plot.py $outdir"
        exit 1
    fi
    python3 "$HERE/plot.py" "$outdir" 2>&1 | tee -a "$log" >&2 || {
        note "$PROG: plot.py failed; the CSVs in $outdir are complete"
        exit 1
    }
    note "== plots in $outdir/plots; total $(($(date +%s) - start)) s"
fi
[[ $failed -eq 0 ]] || exit 1
