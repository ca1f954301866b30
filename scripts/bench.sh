#!/usr/bin/env bash
# bench.sh: sockbench side by side with iperf3 (UDP message rate) and sockperf (UDP round-trip latency)
# on loopback, in one bounded run; prints a table and writes results/bench/bench.csv.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

DURATION=4
SIZE=64
ECHO_RATE=10000
OUT=$REPO/results/bench
INSTALL=1
BUILD=1

usage() {
    cat <<EOF
Usage: $PROG [--duration SECS] [--out DIR] [--no-install] [--no-build]

Compares sockbench with iperf3 and sockperf on loopback (127.0.0.1 only), same run, same machine:
  1. UDP message rate, unpaced, $SIZE-byte messages, SECS seconds each:
       sockbench udp recv + sockbench udp send --rate 0 --size $SIZE   (summary CSV: msgs_per_s, loss_pct)
       iperf3 -s + iperf3 -c -u -b 0 -l $SIZE -J                         (JSON: packets, lost_packets)
  2. Round-trip latency, $SIZE-byte messages at $ECHO_RATE msg/s, SECS seconds each:
       sockbench udp send --echo --rate $ECHO_RATE --size $SIZE       (latency_* columns are RTT with --echo)
       sockperf server + sockperf ping-pong -m $SIZE --mps $ECHO_RATE --full-rtt
Prints a table (tool, metric, value, ratio sockbench/other) and writes it as CSV, with the date, kernel and
CPU model, to DIR/bench.csv (default results/bench/bench.csv); raw outputs of every tool land in DIR/raw/.

Options:
  --duration SECS  seconds per measurement, 1..20 (default $DURATION); the whole script stays under 3 minutes
                   once built (about 4 x SECS + 20 s)
  --out DIR        output directory (default results/bench)
  --no-install     do not apt-get install missing iperf3/sockperf/jq (fail instead)
  --no-build       use target/release/sockbench as it is (or \$SOCKBENCH) instead of cargo build --release
  -h, --help       this help

Builds with 'cargo build --release' first (not counted in the time bound). Installs iperf3, sockperf and jq
with apt-get (Debian 12 packages; 'apt-get update' once) when missing; that needs root or sudo.
Every process it starts is killed by PID on exit, Ctrl-C or TERM; ports are picked free.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}
note() { echo "$PROG: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --duration) [[ $# -ge 2 ]] || die "--duration needs a value"; DURATION=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 20)) ||
    die "--duration '$DURATION' must be a whole number of seconds from 1 to 20"

# ---- processes: every one we start is recorded and killed by PID ------------------------------------------
PIDS=()
WORK=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
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

# Start "$@" in the background, bounded by timeout(1); the PID lands in $LAST_PID.
LAST_PID=
start_bg() {
    local secs=$1 log=$2
    shift 2
    timeout -k 2 "$secs" "$@" >"$log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Wait for a process we started; returns its exit status without tripping set -e.
wait_pid() {
    local rc=0
    wait "$1" || rc=$?
    return "$rc"
}

# ---- free ports ------------------------------------------------------------------------------------------
# A port is free when no TCP or UDP socket (v4 or v6) holds it; read from /proc so no tool is needed.
port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -qs -- "$hex" /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6
}
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        USED_PORTS+="$p "
        echo "$p"
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
SUDO=
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=sudo; fi
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v sockperf >/dev/null || missing+=(sockperf)
command -v jq >/dev/null || missing+=(jq)
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $INSTALL -eq 1 ]] || die "missing: ${missing[*]} (run without --no-install, or apt-get install ${missing[*]})"
    command -v apt-get >/dev/null || die "missing: ${missing[*]}, and no apt-get to install them; install them first"
    [[ $(id -u) -eq 0 || -n $SUDO ]] || die "missing: ${missing[*]}; installing needs root: sudo apt-get install ${missing[*]}"
    note "installing ${missing[*]} with apt-get"
    $SUDO apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi

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

mkdir -p "$OUT/raw" || die "cannot create $OUT"
CSV=$OUT/bench.csv
: >"$CSV.tmp" || die "cannot write $CSV"
WORK=$(mktemp -d)
RAW=$OUT/raw
BOUND=$((DURATION + 25)) # per process: the measurement plus set-up, linger and report

DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
KERNEL=$(uname -r)
CPU=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
CPU=${CPU:-unknown}
NCPU=$(nproc 2>/dev/null || echo "?")
IPERF_V=$(iperf3 --version 2>/dev/null | head -1 | awk '{print $2}')
SOCKPERF_V=$(sockperf --version 2>/dev/null | awk '/version/ {print $3; exit}')
SB_V=$("$BIN" --version 2>/dev/null | awk '{print $2}')

# Rows: test, tool, metric, unit, value, better (higher|lower)
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }

# Column $2 of the last row of summary CSV $1, by header name.
csv_col() {
    awk -F, -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { v = $c } END { if (c == "") exit 1; print v }' "$1"
}

# ---- 1. UDP message rate ---------------------------------------------------------------------------------
note "1/4 sockbench UDP rate: ${DURATION}s unpaced, ${SIZE} B"
P=$(free_port)
start_bg "$BOUND" "$RAW/sockbench_rate_recv.log" "$BIN" udp recv --listen "127.0.0.1:$P" --once
RPID=$LAST_PID
wait_listen tcp "$P" "$RPID" || die "sockbench udp recv did not start: $(cat "$RAW/sockbench_rate_recv.log")"
rm -rf "$WORK/rate"
start_bg "$BOUND" "$RAW/sockbench_rate_send.log" "$BIN" udp send "127.0.0.1:$P" --rate 0 --count 1000M \
    --duration "${DURATION}s" --size "$SIZE" --out "$WORK/rate" --label bench-rate
wait_pid "$LAST_PID" || die "sockbench udp send failed: $(tail -3 "$RAW/sockbench_rate_send.log")"
wait_pid "$RPID" || true
cp "$WORK/rate/summary.csv" "$RAW/sockbench_rate_summary.csv"
S=$WORK/rate/summary.csv
sb_sent=$(csv_col "$S" sent)
sb_dur=$(csv_col "$S" duration_s)
row udp_rate sockbench sent_per_s msg/s "$(awk -v a="$sb_sent" -v d="$sb_dur" 'BEGIN {printf "%.0f", a / d}')" higher
row udp_rate sockbench received_per_s msg/s "$(csv_col "$S" msgs_per_s | awk '{printf "%.0f", $1}')" higher
row udp_rate sockbench loss_pct % "$(csv_col "$S" loss_pct)" lower

note "2/4 iperf3 UDP rate: ${DURATION}s, -b 0 -l ${SIZE}"
P=$(free_port)
start_bg "$BOUND" "$RAW/iperf3_server.log" iperf3 -s -1 -B 127.0.0.1 -p "$P"
RPID=$LAST_PID
wait_listen tcp "$P" "$RPID" || die "iperf3 -s did not start: $(cat "$RAW/iperf3_server.log")"
start_bg "$BOUND" "$RAW/iperf3_client.log" iperf3 -c 127.0.0.1 -p "$P" -u -b 0 -l "$SIZE" -t "$DURATION" -J
wait_pid "$LAST_PID" || die "iperf3 -c failed: $(jq -r '.error // empty' "$RAW/iperf3_client.log" 2>/dev/null)"
wait_pid "$RPID" || true
J=$RAW/iperf3_client.log
# iperf3 3.12: sum_received.packets is the highest sequence number seen, so delivered = packets - lost.
row udp_rate iperf3 sent_per_s msg/s "$(jq -r '.end.sum_sent | .packets / .seconds | floor' "$J")" higher
row udp_rate iperf3 received_per_s msg/s \
    "$(jq -r '.end.sum_received | (.packets - .lost_packets) / .seconds | floor' "$J")" higher
row udp_rate iperf3 loss_pct % "$(jq -r '.end.sum_received.lost_percent * 10000 | round / 10000' "$J")" lower

# ---- 2. round-trip latency -------------------------------------------------------------------------------
N=$((ECHO_RATE * DURATION))
note "3/4 sockbench UDP echo: ${DURATION}s at ${ECHO_RATE} msg/s, ${SIZE} B"
P=$(free_port)
start_bg "$BOUND" "$RAW/sockbench_echo_recv.log" "$BIN" udp recv --listen "127.0.0.1:$P" --once
RPID=$LAST_PID
wait_listen tcp "$P" "$RPID" || die "sockbench udp recv did not start: $(cat "$RAW/sockbench_echo_recv.log")"
rm -rf "$WORK/echo"
start_bg "$BOUND" "$RAW/sockbench_echo_send.log" "$BIN" udp send "127.0.0.1:$P" --echo --rate "$ECHO_RATE" \
    --count "$N" --duration "${DURATION}s" --size "$SIZE" --out "$WORK/echo" --label bench-echo
wait_pid "$LAST_PID" || die "sockbench udp send --echo failed: $(tail -3 "$RAW/sockbench_echo_send.log")"
wait_pid "$RPID" || true
cp "$WORK/echo/summary.csv" "$RAW/sockbench_echo_summary.csv"
S=$WORK/echo/summary.csv
for m in mean p50 p90 p99 p999 max; do
    row rtt sockbench "rtt_${m}_us" us "$(csv_col "$S" "latency_${m}_us")" lower
done
row rtt sockbench loss_pct % "$(csv_col "$S" loss_pct)" lower

note "4/4 sockperf ping-pong: ${DURATION}s at ${ECHO_RATE} msg/s, ${SIZE} B"
P=$(free_port)
start_bg "$BOUND" "$RAW/sockperf_server.log" sockperf server -i 127.0.0.1 -p "$P"
RPID=$LAST_PID
wait_listen udp "$P" "$RPID" || die "sockperf server did not start: $(cat "$RAW/sockperf_server.log")"
start_bg "$BOUND" "$RAW/sockperf_client.log" sockperf ping-pong -i 127.0.0.1 -p "$P" -m "$SIZE" \
    -t "$DURATION" --mps "$ECHO_RATE" --full-rtt
wait_pid "$LAST_PID" || die "sockperf ping-pong failed: $(tail -3 "$RAW/sockperf_client.log")"
kill -TERM "$RPID" 2>/dev/null || true
wait_pid "$RPID" || true
L=$WORK/sockperf.txt
sed 's/\x1b\[[0-9;]*m//g' "$RAW/sockperf_client.log" >"$L"
sp() { awk -v k="$1" 'index($0, k) { sub(/.*= */, ""); sub(/ .*/, ""); print; exit }' "$L"; }
row rtt sockperf rtt_mean_us us "$(awk '/avg-rtt=/ { sub(/.*avg-rtt=/, ""); sub(/ .*/, ""); print; exit }' "$L")" lower
row rtt sockperf rtt_p50_us us "$(sp 'percentile 50.000')" lower
row rtt sockperf rtt_p90_us us "$(sp 'percentile 90.000')" lower
row rtt sockperf rtt_p99_us us "$(sp 'percentile 99.000')" lower
row rtt sockperf rtt_p999_us us "$(sp 'percentile 99.900')" lower
row rtt sockperf rtt_max_us us "$(sp '<MAX> observation')" lower
row rtt sockperf loss_pct % "$(awk '/# dropped messages =/ { sub(/.*# dropped messages = */, ""); sub(/;.*/, ""); d = $0 }
    /\[Valid Duration\]/ { sub(/.*SentMessages=/, ""); sub(/;.*/, ""); s = $0 }
    END { if (s > 0) printf "%.4f", d * 100 / s; else print "" }' "$L")" lower

# ---- table and CSV ---------------------------------------------------------------------------------------
# ratio = sockbench / other for the same test and metric, on the sockbench row. For *_per_s higher is better;
# for latencies and loss lower is better.
value_of() {
    local r
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t tool m _ v _ <<<"$r"
        [[ $t == "$1" && $tool == "$2" && $m == "$3" ]] && { echo "$v"; return; }
    done
}
echo "date,kernel,cpu_model,cpus,test,tool,tool_version,metric,unit,value,better,ratio_sockbench_over_other" >"$CSV.tmp"
printf '\n%-10s %-10s %-16s %14s %8s  %s\n' test tool metric value unit "sockbench/other"
for r in "${ROWS[@]}"; do
    IFS='|' read -r t tool m u v better <<<"$r"
    ratio=
    if [[ $tool == sockbench ]]; then
        other=iperf3
        [[ $t == rtt ]] && other=sockperf
        ov=$(value_of "$t" "$other" "$m")
        ratio=$(awk -v a="$v" -v b="$ov" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.3f", a / b }')
    fi
    case $tool in
    sockbench) ver=$SB_V ;;
    iperf3) ver=$IPERF_V ;;
    sockperf) ver=$SOCKPERF_V ;;
    esac
    printf '%-10s %-10s %-16s %14s %8s  %s\n' "$t" "$tool" "$m" "${v:-n/a}" "$u" "$ratio"
    printf '%s,%s,"%s",%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$DATE" "$KERNEL" "${CPU//\"/}" "$NCPU" "$t" "$tool" "$ver" \
        "$m" "$u" "$v" "$better" "$ratio" >>"$CSV.tmp"
done
mv "$CSV.tmp" "$CSV"
echo
echo "$DATE  kernel $KERNEL  CPU $CPU ($NCPU CPUs)  sockbench $SB_V, iperf3 $IPERF_V, sockperf $SOCKPERF_V"
echo "udp_rate: higher per_s is better; rtt and loss: lower is better. CSV: $CSV (raw outputs in $RAW)"
