#!/usr/bin/env bash
# bench.sh: the benchmark of issue 13. sockbench and its anchors (iperf3, sockperf) measured alternately, in
# rounds, on loopback, with the sender and the receiver pinned to fixed CPUs; one table of medians, ratios and
# targets, and results/bench/bench.csv (medians) with every round's raw values in results/bench/raw/.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

ROUNDS=3
DURATION=5
QUICK=0
OUT=$REPO/results/bench
INSTALL=1
BUILD=1
ALL_TESTS="udp_rate udp_rate_1200 rtt_udp rtt_tcp tcp_bulk pacing_10k memory_1e7"
TESTS=$ALL_TESTS
MEM_COUNT=10M  # memory_1e7: messages
MEM_CAP=90     # memory_1e7: seconds at most (10^7 at the ~0.3M msg/s of a 2-core VM is about 30 s)
OVERHEAD=1.5   # seconds per measurement beyond --duration: start, handshake, linger, report (measured ~1 s)
BUDGET=600     # the whole run, set-up excluded

usage() {
    cat <<EOF
Usage: $PROG [--rounds N] [--duration SECS] [--quick] [--tests LIST] [--out DIR] [--no-install] [--no-build]

The benchmark of issue 13, on loopback (127.0.0.1 only). Each round measures every test once, sockbench and
its anchor one after the other (sockbench first in odd rounds, the anchors first in even ones), each for the
same SECS; the sender/client runs on one CPU and the receiver/server on another (taskset), for every tool.

  test           metric                       sockbench                                  anchor                     target
  udp_rate       received_per_s (+ sent_per_s, loss_pct)  udp send --rate 0 --size 64       iperf3 -u -b 0 -l 64       >= 2.0x iperf3
                                                                                          sockperf throughput -m 64  >= 1.5x sockperf
  udp_rate_1200  goodput_mbps (+ loss_pct)    udp send --rate 0 --size 1200              iperf3 -u -b 0 -l 1200     >= 1.5x iperf3
  rtt_udp        rtt_p50_us, rtt_p999_us      udp send --echo --outstanding 1 --rate 0   sockperf ping-pong -m 64   p50 <= 1.0x, p99.9 <= 1.5x
  rtt_tcp        rtt_p50_us, rtt_p999_us      tcp send --echo --outstanding 1 --rate 0   sockperf ping-pong --tcp   p50 <= 1.0x, p99.9 <= 1.5x
  tcp_bulk       goodput_gbps                 tcp send --size 128k --rate 0              iperf3 -l 128K             >= 0.95x iperf3
  pacing_10k     sender_cpu_pct, lag_p99_us   udp send --rate 10000 --size 64            (none)                     <= 20 %, < 20 us
  memory_1e7     rss_mib (sender, receiver)   udp send --count 10M --rate 0 --per-message (none; once, not per round) < 32 MiB each

Prints one table (test, metric, sockbench median, anchor, anchor median, ratio, target, pass/fail) and the
machine; writes DIR/bench.csv (one row per tool and metric, value = median of the rounds) and DIR/raw/
(rounds.csv with every round's value, and every tool's own output). Default DIR: results/bench.

Options:
  --rounds N       rounds, 1..20 (default $ROUNDS; issue 13 asks for 3 or more)
  --duration SECS  seconds per measurement, 1..30 (default $DURATION)
  --quick          smoke run: 1 round of 1 s, memory_1e7 cut at 1 s (about 30 s in all); not a result
  --tests LIST     only these tests, comma-separated (default: all of them)
  --out DIR        output directory (default results/bench)
  --no-install     do not apt-get install missing tools (fail instead)
  --no-build       use target/release/sockbench as it is (or \$SOCKBENCH) instead of cargo build --release
  -h, --help       this help

Time: about ROUNDS x 12 x (SECS + $OVERHEAD) s plus up to $MEM_CAP s for memory_1e7 (default: about 4.5 min);
a combination over $BUDGET s is refused. The build and the apt-get install come on top.
Needs: iperf3, iperf, sockperf, jq, GNU time and taskset; missing ones are installed with apt-get (Debian
packages, root or sudo). \$SOCKBENCH names the binary to measure (default: this checkout's release build).
Every process it starts runs under timeout(1) and is killed by PID on exit, Ctrl-C or TERM; ports are free.
Exit: 0 every figure measured (whatever the targets say), 1 a figure could not be measured (the lines
before the table say why: a tool failed, or sockbench lacks a flag or a summary column), 2 bad usage,
130 interrupted.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}
usage_error() {
    echo "$PROG: $* (see --help)" >&2
    exit 2
}
note() { echo "$PROG: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --rounds | --duration | --tests | --out)
        [[ $# -ge 2 ]] || usage_error "$1 needs a value"
        case $1 in
        --rounds) ROUNDS=$2 ;;
        --duration) DURATION=$2 ;;
        --tests) TESTS=${2//,/ } ;;
        --out) OUT=$2 ;;
        esac
        shift 2
        ;;
    --quick) QUICK=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    *) usage_error "unknown argument '$1'" ;;
    esac
done
if [[ $QUICK -eq 1 ]]; then
    ROUNDS=1 DURATION=1 MEM_CAP=1
fi
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((10#$ROUNDS >= 1 && 10#$ROUNDS <= 20)) ||
    usage_error "--rounds '$ROUNDS' must be a whole number from 1 to 20, e.g. --rounds 3"
[[ $DURATION =~ ^[0-9]+$ ]] && ((10#$DURATION >= 1 && 10#$DURATION <= 30)) ||
    usage_error "--duration '$DURATION' must be a whole number of seconds from 1 to 30, e.g. --duration 5"
ROUNDS=$((10#$ROUNDS)) DURATION=$((10#$DURATION))
for t in $TESTS; do
    [[ " $ALL_TESTS " == *" $t "* ]] || usage_error "--tests: no test '$t'; the tests are: ${ALL_TESTS// /,}"
done
[[ -n ${TESTS// /} ]] || usage_error "--tests needs at least one test, e.g. --tests udp_rate,rtt_udp"
has_test() { [[ " $TESTS " == *" $1 "* ]]; }

# Measurements per round: udp_rate 3, udp_rate_1200 2, rtt_udp 2, rtt_tcp 2, tcp_bulk 2, pacing_10k 1.
PER_ROUND=0
for t in $TESTS; do
    case $t in
    udp_rate) PER_ROUND=$((PER_ROUND + 3)) ;;
    pacing_10k) PER_ROUND=$((PER_ROUND + 1)) ;;
    memory_1e7) ;;
    *) PER_ROUND=$((PER_ROUND + 2)) ;;
    esac
done
ESTIMATE=$(awk -v r="$ROUNDS" -v n="$PER_ROUND" -v d="$DURATION" -v o="$OVERHEAD" -v m="$(has_test memory_1e7 && echo "$MEM_CAP" || echo 0)" \
    'BEGIN { printf "%d", r * n * (d + o) + (m > 0 ? m + 5 : 0) }')
((ESTIMATE <= BUDGET)) ||
    usage_error "--rounds $ROUNDS --duration $DURATION would take about ${ESTIMATE} s; the bench stays under $BUDGET s: lower --rounds or --duration"

# ---- processes: every one we start is recorded, and killed by PID unless it was already reaped ------------
PIDS=()
WORK=
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

# Start "$@" in the background under timeout(1) (which passes INT and TERM on, and kills its process group when
# the time is up); the PID (timeout's) lands in $LAST_PID.
LAST_PID=
start_bg() {
    local secs=$1 log=$2
    shift 2
    timeout -k 2 "$secs" "$@" >"$log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Wait for a process we started and forget it (its PID may be reused later); returns its exit status.
wait_pid() {
    local rc=0
    wait "$1" || rc=$?
    forget_pid "$1"
    return "$rc"
}

# Signal a process we started, give it 5 s to finish, then KILL it; it is reaped and forgotten either way.
stop_pid() {
    local pid=$1 sig=$2
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid "$pid" || true
}

# ---- free ports ------------------------------------------------------------------------------------------
# A port is free when no TCP or UDP socket (v4 or v6) holds it; read from /proc so no tool is needed.
port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -qs -- "$hex" /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6
}
USED_PORTS=" "
PORT=
next_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        USED_PORTS+="$p "
        PORT=$p
        return 0
    done
    die "no free port found between 20000 and 60000"
}

# Wait until something listens on TCP (proto tcp) or holds UDP (proto udp) port $2, at most 5 s.
wait_listen() {
    local proto=$1 port=$2 pid=$3 hex
    hex=$(printf ':%04X ' "$port")
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 1
        grep -qs -- "$hex" "/proc/net/$proto" "/proc/net/${proto}6" && return 0
        sleep 0.1
    done
    return 1
}

# ---- set-up ----------------------------------------------------------------------------------------------
T0=$SECONDS
SUDO=
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=sudo; fi
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v iperf >/dev/null || missing+=(iperf)
command -v sockperf >/dev/null || missing+=(sockperf)
command -v jq >/dev/null || missing+=(jq)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v taskset >/dev/null || missing+=(util-linux)
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $INSTALL -eq 1 ]] || die "missing: ${missing[*]} (run without --no-install, or apt-get install ${missing[*]})"
    command -v apt-get >/dev/null || die "missing: ${missing[*]}, and no apt-get to install them; install them first"
    [[ $(id -u) -eq 0 || -n $SUDO ]] || die "missing: ${missing[*]}; installing needs root: sudo apt-get install ${missing[*]}"
    note "installing ${missing[*]} with apt-get"
    $SUDO apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi

WORK=$(mktemp -d) # scratch: summaries, sockperf's coloured logs, a copy of the binary; removed on exit

if [[ -n ${SOCKBENCH:-} ]]; then
    BIN=$SOCKBENCH
    [[ -x $BIN ]] || die "\$SOCKBENCH=$BIN is not an executable"
else
    BIN=$REPO/target/release/sockbench
    if [[ $BUILD -eq 1 ]]; then
        command -v cargo >/dev/null || die "cargo is not installed; install Rust (https://rustup.rs) or set SOCKBENCH"
        note "building (cargo build --release)"
        (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
    [[ -x $BIN ]] || die "$BIN is missing: run cargo build --release, or drop --no-build"
fi

# A rebuild during the run must not mix two versions in one table: measure a private copy.
cp "$BIN" "$WORK/sockbench" || die "cannot copy $BIN"
BIN_SHOWN=$BIN
BIN=$WORK/sockbench
SB_SHA=$(sha256sum "$BIN" | cut -c1-12)

# Fixed placement: the first two CPUs this process may use; sender/client on the first, receiver/server on
# the second. One CPU only: both on it, and the table's last line says so.
cpu_list() {
    local list part a b
    list=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
    for part in ${list//,/ }; do
        a=${part%-*} b=${part#*-}
        seq "$a" "$b"
    done
}
mapfile -t CPUS < <(cpu_list)
[[ ${#CPUS[@]} -ge 1 ]] || CPUS=(0)
CPU_SEND=${CPUS[0]}
CPU_RECV=${CPUS[1]:-${CPUS[0]}}
if [[ $CPU_SEND == "$CPU_RECV" ]]; then
    PLACEMENT="sender/client and receiver/server both on CPU $CPU_SEND (one CPU available)"
else
    PLACEMENT="sender/client on CPU $CPU_SEND, receiver/server on CPU $CPU_RECV (taskset)"
fi
SEND=(taskset -c "$CPU_SEND")
RECV=(taskset -c "$CPU_RECV")
GTIME=(/usr/bin/time -f '%U %S %e %M')

mkdir -p "$OUT/raw" || die "cannot create $OUT/raw"
CSV=$OUT/bench.csv
: >"$CSV.tmp" || die "cannot write $CSV"
RAW=$OUT/raw
# raw/ holds one run: the files a previous run wrote are removed (and nothing else).
rm -f "$RAW"/rounds.csv "$RAW"/r[0-9]*_* "$RAW"/memory_*
BOUND=$((DURATION + 30)) # per process: the measurement plus set-up, linger and report

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL=$(uname -r)
CPU=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
CPU=${CPU:-unknown}
NCPU=$(nproc 2>/dev/null || echo "?")
# (sockperf --version exits 1; a version is only read, so no status counts here)
IPERF3_V=$( (iperf3 --version || true) 2>/dev/null | awk 'NR == 1 {print $2}')
IPERF_V=$( (iperf --version || true) 2>&1 | awk 'NR == 1 {print $3}')
SOCKPERF_V=$( (sockperf --version || true) 2>/dev/null | awk '/version/ {print $3; exit}')
SB_V=$( ("$BIN" --version || true) 2>/dev/null | awk '{print $2}')

# ---- what this sockbench can do ---------------------------------------------------------------------------
# Flags issue 13 adds may not be there yet: a test that needs one is not run on sockbench's side, and says so.
UDP_HELP=$("$BIN" udp send --help 2>&1 || true)
TCP_HELP=$("$BIN" tcp send --help 2>&1 || true)
lacks_flag() { # lacks_flag HELPTEXT FLAG -> true when the help does not mention FLAG
    ! grep -q -- "$2\b" <<<"$1"
}

# Problems, each said once, then the exit status is 1. Kept in a file: some are found inside $(...).
PROBLEMS=$WORK/problems
: >"$PROBLEMS"
problem() {
    grep -Fxq -- "$1" "$PROBLEMS" && return 0
    echo "$1" >>"$PROBLEMS"
    note "$1"
}

# ---- raw values ------------------------------------------------------------------------------------------
ROUNDS_CSV=$RAW/rounds.csv
echo "round,test,tool,metric,unit,value" >"$ROUNDS_CSV"
ROUND=0
raw() { # raw TEST TOOL METRIC UNIT VALUE
    [[ -n $5 ]] || return 0
    echo "$ROUND,$1,$2,$3,$4,$5" >>"$ROUNDS_CSV"
}

# Column $2 of the last row of summary CSV $1, by header name; exit 1 when there is no such column.
csv_col() {
    awk -F, -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { v = $c } END { if (c == "") exit 1; print v }' "$1"
}

# sb_col TEST SUMMARY COLUMN: the value, or empty with a problem said (no such column, or an empty cell).
sb_col() {
    local v
    if ! v=$(csv_col "$2" "$3"); then
        problem "$1: sockbench's summary.csv has no column '$3' (issue 13 adds it): $1 is not measured; use a sockbench that has it (\$SOCKBENCH)"
        return 0
    fi
    [[ -n $v ]] || problem "$1: sockbench's summary.csv has '$3' empty (see $RAW/)"
    echo "$v"
}

# GNU time's figures of one process (-o file: its last line is "%U %S %e %M").
gtime() { # gtime FILE FIELD(1 user s, 2 sys s, 3 elapsed s, 4 max RSS KiB)
    awk -v f="$2" 'NF == 4 { v = $f } END { print v }' "$1"
}

# ---- sockbench measurements ------------------------------------------------------------------------------
# sb_session TEST TAG PROTO [send args...]: a receiver on CPU_RECV, a sender on CPU_SEND, the summary copied to
# raw/; sets SUMMARY to its path (empty when the session failed, with the reason said). Processes are never
# started inside $(...): the PIDs must reach this shell's cleanup.
SUMMARY=
sb_session() {
    local test=$1 tag=$2 proto=$3
    shift 3
    SUMMARY=
    local base=r${ROUND}_${test}_${tag} dir=$WORK/r${ROUND}_${test}_${tag} rpid
    next_port
    start_bg "$BOUND" "$RAW/${base}_recv.log" "${RECV[@]}" "$BIN" "$proto" recv --listen "127.0.0.1:$PORT" --once
    rpid=$LAST_PID
    if ! wait_listen tcp "$PORT" "$rpid"; then
        stop_pid "$rpid" TERM
        problem "$test: sockbench $proto recv did not start: $(tail -1 "$RAW/${base}_recv.log")"
        return 0
    fi
    start_bg "$BOUND" "$RAW/${base}_send.log" "${SEND[@]}" "${GTIME[@]}" -o "$RAW/${base}_send.time" \
        "$BIN" "$proto" send "127.0.0.1:$PORT" --out "$dir" --label "bench-$test" "$@"
    if ! wait_pid "$LAST_PID"; then
        stop_pid "$rpid" TERM
        problem "$test: sockbench $proto send failed: $(grep -v '^Command exited' "$RAW/${base}_send.log" | tail -1)"
        return 0
    fi
    wait_pid "$rpid" || true
    cp "$dir/summary.csv" "$RAW/${base}_summary.csv"
    SUMMARY=$RAW/${base}_summary.csv
}

# Unpaced UDP, SIZE bytes: delivered msg/s, sent msg/s, loss; goodput at 1200 B.
m_sb_udp_rate() { # TEST SIZE
    local s sent recv mps
    sb_session "$1" sockbench udp --rate 0 --duration "${DURATION}s" --size "$2"
    s=$SUMMARY
    [[ -n $s ]] || return 0
    mps=$(sb_col "$1" "$s" msgs_per_s)
    sent=$(sb_col "$1" "$s" sent)
    recv=$(sb_col "$1" "$s" received)
    if [[ $1 == udp_rate ]]; then
        raw "$1" sockbench received_per_s msg/s "$mps"
        # Sent over the same span as msgs_per_s (duration_s), whatever unit duration_s is written in.
        raw "$1" sockbench sent_per_s msg/s "$(awk -v m="$mps" -v s="$sent" -v r="$recv" \
            'BEGIN { if (m != "" && r > 0) printf "%.0f", m * s / r }')"
    else
        raw "$1" sockbench goodput_mbps Mbit/s "$(sb_col "$1" "$s" goodput_mbps)"
    fi
    raw "$1" sockbench loss_pct % "$(sb_col "$1" "$s" loss_pct)"
}

# Ping-pong: one message in flight, as fast as the replies come.
m_sb_rtt() { # TEST PROTO
    local s help=$UDP_HELP
    [[ $2 == tcp ]] && help=$TCP_HELP
    if lacks_flag "$help" --outstanding; then
        problem "$1: this sockbench has no '$2 send --outstanding' (issue 13 adds it): $1 is not measured on sockbench"
        return 0
    fi
    sb_session "$1" sockbench "$2" --echo --outstanding 1 --rate 0 --duration "${DURATION}s" --size 64
    s=$SUMMARY
    [[ -n $s ]] || return 0
    raw "$1" sockbench rtt_p50_us us "$(sb_col "$1" "$s" latency_p50_us)"
    raw "$1" sockbench rtt_p999_us us "$(sb_col "$1" "$s" latency_p999_us)"
    # Little's law: messages in flight on average = rate x mean round trip, at most 1 in a ping-pong. More
    # means the sender did not wait for each reply, and the figures are not comparable with sockperf's.
    local inflight
    inflight=$(awk -v r="$(sb_col "$1" "$s" msgs_per_s)" -v m="$(sb_col "$1" "$s" latency_mean_us)" \
        'BEGIN { if (r != "" && m != "") printf "%.1f", r * m / 1e6 }')
    if awk -v x="$inflight" 'BEGIN { exit !(x != "" && x > 1.2) }'; then
        problem "$1: sockbench kept $inflight messages in flight on average (msgs_per_s x latency_mean_us), not 1: '--outstanding 1' did not hold, so this is no ping-pong (see $s)"
    fi
}

m_sb_tcp_bulk() {
    local s
    sb_session tcp_bulk sockbench tcp --rate 0 --duration "${DURATION}s" --size 128k
    s=$SUMMARY
    [[ -n $s ]] || return 0
    raw tcp_bulk sockbench goodput_gbps Gbit/s "$(awk -v m="$(sb_col tcp_bulk "$s" goodput_mbps)" \
        'BEGIN { if (m != "") printf "%.3f", m / 1000 }')"
}

# 10000 msg/s for DURATION s. CPU: utime + stime of the sender process (GNU time, from wait4), divided by the
# sending time DURATION: set-up and report count against it, so this errs high, never low.
m_sb_pacing() {
    local s base=r${ROUND}_pacing_10k_sockbench
    sb_session pacing_10k sockbench udp --rate 10000 --duration "${DURATION}s" --size 64
    s=$SUMMARY
    [[ -n $s ]] || return 0
    raw pacing_10k sockbench sender_cpu_pct % "$(awk -v u="$(gtime "$RAW/${base}_send.time" 1)" \
        -v y="$(gtime "$RAW/${base}_send.time" 2)" -v d="$DURATION" 'BEGIN { if (u != "") printf "%.2f", (u + y) * 100 / d }')"
    raw pacing_10k sockbench lag_p99_us us "$(sb_col pacing_10k "$s" pacing_lag_p99_us)"
}

# ---- anchor measurements ---------------------------------------------------------------------------------
# iperf3 with -J: the client's JSON carries the server's counts (end.sum_received).
JSON=
iperf3_run() { # TEST TAG [client args...]; sets JSON to the client's JSON (empty on failure)
    local test=$1 spid base=r${ROUND}_${1}_${2}
    shift 2
    JSON=
    next_port
    start_bg "$BOUND" "$RAW/${base}_server.log" "${RECV[@]}" iperf3 -s -1 -B 127.0.0.1 -p "$PORT"
    spid=$LAST_PID
    if ! wait_listen tcp "$PORT" "$spid"; then
        stop_pid "$spid" TERM
        problem "$test: iperf3 -s did not start: $(tail -1 "$RAW/${base}_server.log")"
        return 0
    fi
    start_bg "$BOUND" "$RAW/${base}_client.json" "${SEND[@]}" iperf3 -c 127.0.0.1 -p "$PORT" -t "$DURATION" -J "$@"
    if ! wait_pid "$LAST_PID"; then
        stop_pid "$spid" TERM
        problem "$test: iperf3 -c failed: $(jq -r '.error // empty' "$RAW/${base}_client.json" 2>/dev/null | head -1)"
        return 0
    fi
    wait_pid "$spid" || true
    JSON=$RAW/${base}_client.json
}

m_iperf3_udp() { # TEST SIZE
    local j
    iperf3_run "$1" iperf3 -u -b 0 -l "$2"
    j=$JSON
    [[ -n $j ]] || return 0
    # iperf3 3.12: sum_received.packets is the highest sequence number seen, so delivered = packets - lost.
    if [[ $1 == udp_rate ]]; then
        raw "$1" iperf3 received_per_s msg/s "$(jq -r '.end.sum_received | (.packets - .lost_packets) / .seconds | floor' "$j")"
        raw "$1" iperf3 sent_per_s msg/s "$(jq -r '.end.sum_sent | .packets / .seconds | floor' "$j")"
    else
        raw "$1" iperf3 goodput_mbps Mbit/s "$(jq -r --argjson n "$2" \
            '.end.sum_received | (.packets - .lost_packets) * $n * 8 / .seconds / 1e6 | . * 1000 | round / 1000' "$j")"
    fi
    raw "$1" iperf3 loss_pct % "$(jq -r '.end.sum_received.lost_percent * 10000 | round / 10000' "$j")"
}

m_iperf3_tcp() {
    local j
    iperf3_run tcp_bulk iperf3 -l 128K
    j=$JSON
    [[ -n $j ]] || return 0
    raw tcp_bulk iperf3 goodput_gbps Gbit/s "$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' "$j")"
}

# sockperf's server counts what it received and says so when stopped with SIGINT; its log and the client's are
# stripped of colour codes.
CLOG='' SLOG=''
sockperf_run() { # TEST TAG PROTO MODE [client args...]; sets CLOG and SLOG (empty on failure)
    local test=$1 proto=$3 mode=$4 spid base=r${ROUND}_${1}_${2} tcp=()
    shift 4
    CLOG='' SLOG=''
    [[ $proto == tcp ]] && tcp=(--tcp)
    next_port
    start_bg "$BOUND" "$WORK/${base}_server.log" "${RECV[@]}" sockperf server -i 127.0.0.1 -p "$PORT" "${tcp[@]+"${tcp[@]}"}"
    spid=$LAST_PID
    if ! wait_listen "$proto" "$PORT" "$spid"; then
        stop_pid "$spid" TERM
        problem "$test: sockperf server did not start: $(tail -1 "$WORK/${base}_server.log")"
        return 0
    fi
    start_bg "$BOUND" "$WORK/${base}_client.log" "${SEND[@]}" sockperf "$mode" -i 127.0.0.1 -p "$PORT" -t "$DURATION" \
        "${tcp[@]+"${tcp[@]}"}" "$@"
    if ! wait_pid "$LAST_PID"; then
        stop_pid "$spid" TERM
        problem "$test: sockperf $mode failed: $(tail -1 "$WORK/${base}_client.log")"
        return 0
    fi
    stop_pid "$spid" INT
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/${base}_client.log" >"$RAW/${base}_client.log"
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/${base}_server.log" >"$RAW/${base}_server.log"
    CLOG=$RAW/${base}_client.log SLOG=$RAW/${base}_server.log
}

# Throughput: the client reports what it sent; delivered is the server's "Total N messages received" (which
# includes the few warm-up messages) over the client's test time.
m_sockperf_tput() {
    local c s sent secs got
    sockperf_run udp_rate sockperf udp throughput -m 64
    c=$CLOG s=$SLOG
    [[ -n $c ]] || return 0
    read -r sent secs < <(awk '/Total of [0-9]+ messages sent in/ { for (i = 1; i <= NF; i++) { if ($i == "of") n = $(i + 1); if ($i == "in") t = $(i + 1) } }
        END { print n, t }' "$c")
    got=$(awk '/Total [0-9]+ messages received/ { for (i = 1; i <= NF; i++) if ($i == "Total") n = $(i + 1) } END { print n }' "$s")
    if [[ -z $got || -z $sent || -z $secs ]]; then
        problem "udp_rate: sockperf's output has no sent/received totals (see $c and $s)"
        return 0
    fi
    raw udp_rate sockperf received_per_s msg/s "$(awk -v g="$got" -v t="$secs" 'BEGIN { printf "%.0f", g / t }')"
    raw udp_rate sockperf sent_per_s msg/s "$(awk -v n="$sent" -v t="$secs" 'BEGIN { printf "%.0f", n / t }')"
    raw udp_rate sockperf loss_pct % "$(awk -v n="$sent" -v g="$got" 'BEGIN { l = 100 * (n - g) / n; printf "%.4f", l < 0 ? 0 : l }')"
}

# Ping-pong, one message in flight (sockperf's default --mps for ping-pong is max), --full-rtt: round trips.
sp_pct() { # sp_pct LOG PERCENTILE: sockperf's "---> percentile 99.900 = 113.207" line
    awk -v k="percentile $2 =" 'index($0, k) { sub(/.*= */, ""); print $1; exit }' "$1"
}
m_sockperf_pp() { # TEST PROTO
    sockperf_run "$1" sockperf "$2" ping-pong -m 64 --full-rtt
    [[ -n $CLOG ]] || return 0
    raw "$1" sockperf rtt_p50_us us "$(sp_pct "$CLOG" 50.000)"
    raw "$1" sockperf rtt_p999_us us "$(sp_pct "$CLOG" 99.900)"
    [[ -n $(sp_pct "$CLOG" 50.000) ]] || problem "$1: sockperf's output has no percentiles (see $CLOG)"
}

# ---- memory: once, 10^7 messages unpaced with --per-message, peak RSS of both sides -----------------------
m_memory() {
    local dir=$WORK/memory rpid sent
    local -a cap=(--duration "${MEM_CAP}s")
    next_port
    note "memory_1e7: $MEM_COUNT messages unpaced, --per-message, at most ${MEM_CAP}s"
    start_bg $((MEM_CAP + 60)) "$RAW/memory_recv.log" "${RECV[@]}" "${GTIME[@]}" -o "$RAW/memory_recv.time" \
        "$BIN" udp recv --listen "127.0.0.1:$PORT" --once
    rpid=$LAST_PID
    if ! wait_listen tcp "$PORT" "$rpid"; then
        stop_pid "$rpid" TERM
        problem "memory_1e7: sockbench udp recv did not start: $(tail -1 "$RAW/memory_recv.log")"
        return 0
    fi
    start_bg $((MEM_CAP + 60)) "$RAW/memory_send.log" "${SEND[@]}" "${GTIME[@]}" -o "$RAW/memory_send.time" \
        "$BIN" udp send "127.0.0.1:$PORT" --count "$MEM_COUNT" --rate 0 --per-message --size 64 \
        "${cap[@]}" --out "$dir" --label bench-memory_1e7
    if ! wait_pid "$LAST_PID"; then
        stop_pid "$rpid" TERM
        problem "memory_1e7: sockbench udp send failed: $(grep -v '^Command exited' "$RAW/memory_send.log" | tail -1)"
        return 0
    fi
    wait_pid "$rpid" || true
    cp "$dir/summary.csv" "$RAW/memory_summary.csv"
    rm -rf "$dir" # the per-message CSV is about 80 bytes a message: 800 MB at 10^7
    sent=$(csv_col "$RAW/memory_summary.csv" sent || true)
    MEM_SENT=$sent
    raw memory_1e7 sockbench-sender rss_mib MiB "$(awk -v k="$(gtime "$RAW/memory_send.time" 4)" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')"
    raw memory_1e7 sockbench-receiver rss_mib MiB "$(awk -v k="$(gtime "$RAW/memory_recv.time" 4)" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')"
}
MEM_SENT=

# ---- the rounds ------------------------------------------------------------------------------------------
# One test's measurements in a round: sockbench first in odd rounds, the anchors first in even ones, so a
# drift of the machine during a round does not always favour the same side.
alternate() { # "sockbench call" "anchor call" ["anchor call"...]
    local sb=$1
    shift
    local a
    if ((ROUND % 2 == 1)); then
        $sb
        for a in "$@"; do $a; done
    else
        for a in "$@"; do $a; done
        $sb
    fi
}

note "$ROUNDS round(s) of ${DURATION}s per measurement, tests: $TESTS; about ${ESTIMATE}s; $PLACEMENT"
T1=$SECONDS
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for t in $TESTS; do
        [[ $t == memory_1e7 ]] && continue
        note "round $ROUND/$ROUNDS: $t"
        case $t in
        udp_rate) alternate "m_sb_udp_rate udp_rate 64" "m_iperf3_udp udp_rate 64" m_sockperf_tput ;;
        udp_rate_1200) alternate "m_sb_udp_rate udp_rate_1200 1200" "m_iperf3_udp udp_rate_1200 1200" ;;
        rtt_udp) alternate "m_sb_rtt rtt_udp udp" "m_sockperf_pp rtt_udp udp" ;;
        rtt_tcp) alternate "m_sb_rtt rtt_tcp tcp" "m_sockperf_pp rtt_tcp tcp" ;;
        tcp_bulk) alternate m_sb_tcp_bulk m_iperf3_tcp ;;
        pacing_10k) m_sb_pacing ;;
        esac
    done
done
ROUND=1
has_test memory_1e7 && m_memory
T2=$SECONDS
LOAD2=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- medians, ratios, targets ----------------------------------------------------------------------------
# median TEST TOOL METRIC: the median over the rounds (the mean of the middle two for an even count).
median() {
    awk -F, -v t="$1" -v o="$2" -v m="$3" 'NR > 1 && $2 == t && $3 == o && $4 == m { print $6 }' "$ROUNDS_CSV" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2];
            else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { # fmt UNIT VALUE: digits to suit the unit
    [[ -n $2 ]] || { echo ""; return; }
    case $1 in
    msg/s) awk -v v="$2" 'BEGIN { printf "%.0f", v }' ;;
    Mbit/s | MiB) awk -v v="$2" 'BEGIN { printf "%.1f", v }' ;;
    %) awk -v v="$2" 'BEGIN { printf "%.2f", v }' ;;
    *) awk -v v="$2" 'BEGIN { printf "%.3f", v }' ;;
    esac
}
# check VALUE OP LIMIT -> PASS, FAIL, or n/a when there is no value
check() {
    [[ -n $1 ]] || { echo n/a; return; }
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        ok = (op == ">=" && v >= l) || (op == "<=" && v <= l) || (op == "<" && v < l)
        print ok ? "PASS" : "FAIL" }'
}

# The table's lines: test|metric|unit|better|anchor|target kind (ratio, value or none)|op|limit
LINES=(
    "udp_rate|received_per_s|msg/s|higher|iperf3|ratio|>=|2.0"
    "udp_rate|received_per_s|msg/s|higher|sockperf|ratio|>=|1.5"
    "udp_rate|sent_per_s|msg/s|higher|iperf3|none||"
    "udp_rate|sent_per_s|msg/s|higher|sockperf|none||"
    "udp_rate|loss_pct|%|lower|iperf3|none||"
    "udp_rate|loss_pct|%|lower|sockperf|none||"
    "udp_rate_1200|goodput_mbps|Mbit/s|higher|iperf3|ratio|>=|1.5"
    "udp_rate_1200|loss_pct|%|lower|iperf3|none||"
    "rtt_udp|rtt_p50_us|us|lower|sockperf|ratio|<=|1.0"
    "rtt_udp|rtt_p999_us|us|lower|sockperf|ratio|<=|1.5"
    "rtt_tcp|rtt_p50_us|us|lower|sockperf|ratio|<=|1.0"
    "rtt_tcp|rtt_p999_us|us|lower|sockperf|ratio|<=|1.5"
    "tcp_bulk|goodput_gbps|Gbit/s|higher|iperf3|ratio|>=|0.95"
    "pacing_10k|sender_cpu_pct|%|lower||value|<=|20"
    "pacing_10k|lag_p99_us|us|lower||value|<|20"
    "memory_1e7|rss_mib|MiB|lower|sockbench-sender|value|<|32"
    "memory_1e7|rss_mib|MiB|lower|sockbench-receiver|value|<|32"
)
version_of() {
    case $1 in
    sockbench*) echo "$SB_V" ;;
    iperf3) echo "$IPERF3_V" ;;
    sockperf) echo "$SOCKPERF_V" ;;
    esac
}
CPU_Q=${CPU//\"/}
csv_row() { # tool metric unit value better ratio target pass (test in $t)
    printf '%s,%s,"%s",%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$DATE" "$KERNEL" "$CPU_Q" "$NCPU" "$t" "$1" \
        "$(version_of "$1")" "$2" "$3" "$4" "$5" "$6" "$ROUNDS" "$7" "$8" >>"$CSV.tmp"
}

echo "date,kernel,cpu_model,cpus,test,tool,tool_version,metric,unit,value,better,ratio_sockbench_over_other,rounds,target,pass" >"$CSV.tmp"
printf '\n%-14s %-15s %14s  %-19s %14s %7s  %-16s %s\n' test metric sockbench anchor "anchor median" ratio target result
SB_DONE=" "
npass=0 nfail=0 nna=0
for line in "${LINES[@]}"; do
    IFS='|' read -r t m u better anchor kind op limit <<<"$line"
    has_test "$t" || continue
    sbtool=sockbench
    [[ $anchor == sockbench-* ]] && sbtool=$anchor anchor=
    sb=$(fmt "$u" "$(median "$t" "$sbtool" "$m")")
    av='' ratio='' target='' result=''
    if [[ -n $anchor ]]; then
        av=$(fmt "$u" "$(median "$t" "$anchor" "$m")")
        ratio=$(awk -v a="$sb" -v b="$av" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.3f", a / b }')
    fi
    case $kind in
    ratio) target="$op ${limit}x" result=$(check "$ratio" "$op" "$limit") ;;
    value) target="$op $limit $u" result=$(check "$sb" "$op" "$limit") ;;
    esac
    case $result in
    PASS) npass=$((npass + 1)) ;;
    FAIL) nfail=$((nfail + 1)) ;;
    n/a) nna=$((nna + 1)) ;;
    esac
    shown=$m
    [[ $sbtool != sockbench ]] && shown="$m (${sbtool#sockbench-})"
    printf '%-14s %-15s %14s  %-19s %14s %7s  %-16s %s\n' "$t" "$shown" "${sb:-n/a}" "${anchor:--}" \
        "${anchor:+${av:-n/a}}" "$ratio" "${target:-(info)}" "$result"
    # bench.csv: one row per tool and metric; the ratio (sockbench over that row's tool) and the target sit on
    # the anchor's row, or on sockbench's own row when the figure has no anchor.
    if [[ $SB_DONE != *" $t/$sbtool/$m "* ]]; then
        SB_DONE+="$t/$sbtool/$m "
        if [[ -n $anchor ]]; then csv_row "$sbtool" "$m" "$u" "$sb" "$better" "" "" ""; else
            csv_row "$sbtool" "$m" "$u" "$sb" "$better" "" "$target" "$result"
        fi
    fi
    [[ -n $anchor ]] && csv_row "$anchor" "$m" "$u" "$av" "$better" "$ratio" "$target" "$result"
done
mv "$CSV.tmp" "$CSV"

echo
if has_test memory_1e7 && [[ -n $MEM_SENT ]]; then
    echo "memory_1e7: the sender sent $MEM_SENT messages (asked: $MEM_COUNT, cut at ${MEM_CAP}s)"
fi
echo "targets: $npass pass, $nfail fail, $nna not measured; ratio = sockbench median / anchor median; (info) has no target"
echo "machine: $DATE, kernel $KERNEL, $CPU, $NCPU CPUs; $PLACEMENT; load average $LOAD1 before, $LOAD2 after"
echo "tools: sockbench $SB_V ($BIN_SHOWN, sha256 $SB_SHA...), iperf3 $IPERF3_V, sockperf $SOCKPERF_V, iperf $IPERF_V (installed, not measured)"
echo "run: $ROUNDS round(s) x ${DURATION}s; measuring took $((T2 - T1)) s, set-up $((T1 - T0)) s; CSV $CSV, raw values $ROUNDS_CSV"
if [[ -s $PROBLEMS ]]; then
    note "$(wc -l <"$PROBLEMS") problem(s): the table has figures missing (n/a) or not valid:"
    sed 's/^/  /' "$PROBLEMS" >&2
    exit 1
fi
