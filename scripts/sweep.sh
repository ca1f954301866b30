#!/usr/bin/env bash
# sweep.sh: TCP and UDP side by side over a grid of path conditions, through netem where the
# kernel has it (scripts/lab.sh) and sockbench's built-in link emulator otherwise, all into one
# results/<name>/ folder, then scripts/plot.py on it.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

usage() {
    cat <<EOF
Usage: $PROG [--name NAME] [--grid default|load] [--size BYTES] [--rate R] [--count N] [--quick]
             [--all-messages] [--seed N] [--no-plot] [--engine auto|compare|lab|netem] [--emulator]

Runs a TCP session, then a UDP session with identical traffic, once per path condition, each
with --label set to the condition, all appending to results/NAME/summary.csv, then runs
scripts/plot.py results/NAME (plots in results/NAME/plots).

Default grid (17 conditions, 34 sessions):
  sweep=loss       loss 0, 0.5, 1, 2, 5, 10 %   at delay 10 ms
  sweep=delay      delay 0, 10, 50 ms            at loss 1 %
  sweep=reorder    reorder 0, 1, 2, 5 % (gap 3)  at delay 10 ms
  sweep=duplicate  duplicate 0, 1, 2, 5 %        at delay 10 ms
Load grid (--grid load: 12 conditions, 24 sessions; latency under load, issue 14):
  sweep=load       bulk TCP flows 0, 1, 4, 16 (compare --load N, cubic) x queue 30, 100,
                   1000 packets, at a 20 Mbit/s bottleneck with 5 ms of delay; each session
                   an idle phase (the first fifth of its messages) then the loaded phase;
                   200 msg/s x 1000 messages unless --rate/--count say otherwise
                   (--quick: flows 0 and 4 x queue 30 and 1000, 500 messages). Through
                   compare's emulator only (its rate limiter is the bounded queue).
Labels look like 'loss=5%,delay=10ms,sweep=loss'. Zero levels are passed explicitly
(e.g. --loss 0%): without any impairment flag, compare would apply its default impairment.
Every condition uses the same --seed (the emulator's; netem has no seed).

Engines (which path the packets take):
  lab      per condition: scripts/lab.sh up <impairment> --seed N (namespaces sb-lab-a and
           sb-lab-b), 'sockbench tcp|udp recv --once' in sb-lab-b, 'sockbench tcp|udp send'
           in sb-lab-a, scripts/lab.sh down. lab.sh joins the hosts with a veth pair and
           tc netem where the kernel has sch_netem, else with the built-in emulator.
           The TCP and UDP sessions get their own run_ids.
  compare  per condition: 'sockbench compare --engine emulator', which builds its own
           private lab with the built-in userspace emulator (seeded, so repeatable). Both
           sessions share one run_id. (compare's own netem engine, --engine netem, is not
           used here: the lab and netem engines below are the netem paths of this script.)
  auto     (default) lab when this kernel has sch_netem (checked like netem.sh/lab.sh do:
           a netem qdisc in a throwaway namespace), compare otherwise. So: netem on hosts
           that have it, the built-in emulator everywhere else.
  netem    the lab engine, through veth + tc netem only: refused where the kernel has no
           sch_netem (run it in a VM that has it: scripts/vm.sh run -- scripts/sweep.sh
           --engine netem ...). The lab engine on netem spares the UDP sessions' control
           connection (lab.sh --spare-tcp-port 5301), so netem's drop counter counts
           the UDP data alone; each condition's line in sweep.log gives it next to UDP's losses.
  --emulator   with the lab engine, make lab.sh use the emulator even where netem exists
           (implies --engine lab when --engine is auto; refused with --engine compare/netem).
The log (sweep.log) says which engine and which path each condition used.

Options:
  --grid G        default (the impairment grid above) or load (the load grid)
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
  --engine E      auto, compare, lab or netem (see above; default auto)
  --emulator      lab engine through the built-in emulator (see above)
  -h, --help      this text

Time, default grid (3000 messages at 1000 msg/s), on a 2-core VM:
  compare          2 min 3 s (118 s for the 17 conditions + 4 s of plotting; see
                   results/README.md): roughly 17 x (2 x count/rate + 1 s)
  lab --emulator   2 min 47 s (164 s for the conditions, 9-11 s each, + 3 s of plotting):
                   roughly 17 x (2 x count/rate + 3.5 s); lab.sh up (0.3 s) and down
                   (about 2 s: it stops the emulator), and the wait for the emulator's
                   once-a-second counts (up to 1.2 s) come on top of the sessions
  lab with netem   no sch_netem on that VM. Inside scripts/vm.sh's VM (TCG, software
                   emulation, where every process start is slow): 287 s for the default
                   grid (14-26 s per condition), --quick 44-85 s (more while the host is
                   busy); see scripts/README.md
It scales with --count/--rate. --quick takes about 10 s (compare) or 20 s (lab).
  --grid load      about 2 min 40 s (12 x (2 x 5 s + 3 s)); --quick about 35 s

Outputs, in results/NAME/: summary.csv (two rows per condition, TCP and UDP; one shared
run_id with compare, one each with lab), <run_id>_{tcp,udp}_latency.csv,
<run_id>_{tcp,udp}_messages.csv (see --all-messages), <run_id>_link.csv (the emulator's own
counts for the condition, both sessions; with lab written under both sessions' run_ids, and
only when the emulator was the path: netem counts nothing), sweep.log (what ran, on which
path, how long), plots/*.png and plots/*.svg.

Needs root (namespaces; the emulator also needs /dev/net/tun). The lab engine uses lab.sh's
fixed namespaces, so it refuses to start while a lab.sh lab is up, and two lab sweeps cannot
run at once. Ctrl-C (or SIGTERM, SIGHUP) stops the running sessions gracefully (compare, or
the lab engine's sender and receiver, by PID: SIGTERM, then SIGKILL after 15 s), removes the
lab (lab.sh down) and exits 130; the rows already written are kept (they are complete
sessions; an interrupted one is marked complete=false). Nothing is left running and no
namespace is left behind. Exit status: 0 done, 1 a failure, 2 bad usage, 130 interrupted.
The binary is \$SOCKBENCH, or target/release/sockbench (built with cargo if missing).
EOF
}

die() { # die MESSAGE [EXIT_STATUS]
    echo "$PROG: $1" >&2
    exit "${2:-1}"
}

name="" size=64 rate="" count="" quick=0 all_messages=0 seed=1 plot=1 engine=auto emulator=0 gridname=default
while [[ $# -gt 0 ]]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) quick=1; shift; continue ;;
    --all-messages) all_messages=1; shift; continue ;;
    --no-plot) plot=0; shift; continue ;;
    --emulator) emulator=1; shift; continue ;;
    esac
    case "$1" in
    --name | --size | --rate | --count | --seed | --engine | --grid) ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
    esac
    [[ $# -ge 2 ]] || die "$1 needs a value (see --help)" 2
    case "$1" in
    --name) name=$2 ;;
    --size) size=$2 ;;
    --rate) rate=$2 ;;
    --count) count=$2 ;;
    --seed) seed=$2 ;;
    --engine) engine=$2 ;;
    --grid) gridname=$2 ;;
    esac
    shift 2
done
case "$gridname" in
default)
    [[ -n $rate ]] || rate=1000
    [[ -n $count ]] || { [[ $quick -eq 1 ]] && count=300 || count=3000; }
    ;;
load)
    [[ -n $rate ]] || rate=200
    [[ -n $count ]] || { [[ $quick -eq 1 ]] && count=500 || count=1000; }
    case "$engine" in
    auto | compare) engine=compare ;;
    *) die "--grid load runs through compare's emulator (its rate limiter is the bounded queue): drop --engine $engine" 2 ;;
    esac
    [[ $emulator -eq 0 ]] || die "--grid load runs through compare's emulator: drop --emulator" 2
    ;;
*) die "--grid must be default or load, not '$gridname'" 2 ;;
esac
[[ -n $name ]] || name="sweep-$(date -u +%F)"
[[ $name == */* ]] && outdir=$name || outdir=$REPO/results/$name
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a whole number, not '$seed'" 2
[[ $count =~ ^[0-9]+(\.[0-9]+)?[kKMG]?$ ]] || die "--count must be a number of messages (e.g. 3000 or 10k), not '$count'" 2
case "$engine" in
auto | compare | lab | netem) ;;
*) die "--engine must be auto, compare, lab or netem, not '$engine'" 2 ;;
esac
if [[ $emulator -eq 1 ]]; then
    [[ $engine != compare ]] || die "--emulator is for the lab engine (the compare engine always uses the emulator)" 2
    [[ $engine != netem ]] || die "--emulator and --engine netem exclude each other (--engine lab --emulator for the emulator)" 2
    engine=lab
fi
# --engine netem: the lab engine, on netem or not at all.
netem_only=0
if [[ $engine == netem ]]; then
    netem_only=1
    engine=lab
fi

[[ $(id -u) -eq 0 ]] || die "needs root: the lab is built from network namespaces (run with sudo)" 2
command -v ip >/dev/null || die "'ip' is missing: apt-get install iproute2"

bin=${SOCKBENCH:-$REPO/target/release/sockbench}
if [[ ! -x $bin ]]; then
    [[ -z ${SOCKBENCH:-} ]] || die "\$SOCKBENCH=$bin is not an executable"
    command -v cargo >/dev/null || die "$bin is missing and cargo is not installed; build sockbench or set SOCKBENCH"
    echo "$PROG: building sockbench (cargo build --release)..." >&2
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed"
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") # absolute: it runs inside ip netns exec
# Validate the traffic flags once, before anything runs (exit 2 on a bad value).
check_dir=$(mktemp -d)
check_rc=0
"$bin" compare --loopback --count 1 --rate "$rate" --size "$size" --out "$check_dir" >/dev/null 2>&1 || check_rc=$?
rm -rf "$check_dir"
[[ $check_rc -eq 0 ]] ||
    die "sockbench refused --size $size --rate $rate (see: $bin compare --loopback --count 1 --size $size --rate $rate)" 2

# Which path: sch_netem is checked the way netem.sh and lab.sh do (netem.sh check: a netem
# qdisc on lo in a throwaway namespace).
have_netem=0
"$HERE/netem.sh" check >/dev/null 2>&1 && have_netem=1
if [[ $engine == auto ]]; then
    [[ $have_netem -eq 1 ]] && engine=lab || engine=compare
fi
if [[ $netem_only -eq 1 && $have_netem -eq 0 ]]; then
    die "--engine netem: this kernel ($(uname -r)) has no sch_netem (scripts/netem.sh check says why); run the sweep in a VM whose kernel has it: scripts/vm.sh setup; scripts/vm.sh run -- scripts/sweep.sh --engine netem ..., or use --engine lab --emulator"
fi
# lab.sh's fixed names and state directory (see scripts/lab.sh).
LAB=$HERE/lab.sh
NS_A=sb-lab-a
NS_B=sb-lab-b
ADDR_B=198.18.0.2
TCP_PORT=5300
UDP_PORT=5301
if [[ -d /run && -w /run ]]; then LAB_STATE=/run/sockbench-lab; else LAB_STATE=/tmp/sockbench-lab; fi
if [[ $engine == lab ]]; then
    [[ -x $LAB ]] || die "$LAB is missing or not executable"
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -xE "$NS_A|$NS_B" >/dev/null; then
        die "a lab.sh lab is already up ($NS_A/$NS_B; another sweep, or one made by hand): see '$LAB status', remove it with '$LAB down'"
    fi
    if [[ $emulator -eq 1 || $have_netem -eq 0 ]]; then
        [[ -e /dev/net/tun ]] || die "/dev/net/tun is missing: the emulator needs it (modprobe tun)"
    fi
    command -v ss >/dev/null || die "'ss' is missing: apt-get install iproute2"
fi

# The grid: "sweep|label|impairment flags", one line per condition.
grid=()
add() { grid+=("$1|$2|$3"); }
if [[ $gridname == load ]]; then
    # The idle phase: the first fifth of each session's messages (whole numbers only here).
    [[ $count =~ ^[0-9]+$ ]] || die "--grid load needs --count as a whole number of messages, not '$count'" 2
    idle=$((count / 5))
    [[ $idle -ge 1 ]] || die "--grid load needs --count 5 or more" 2
    queues="30 100 1000" flows="0 1 4 16"
    [[ $quick -eq 1 ]] && queues="30 1000" flows="0 4"
    for q in $queues; do
        for f in $flows; do
            add load "load=$f,queue=$q,rate=20mbit,delay=5ms,sweep=load" \
                "--load $f --idle-probes $idle --link-rate 20mbit --queue $q --delay 5ms"
        done
    done
elif [[ $quick -eq 1 ]]; then
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

# The longest a lab-engine sender may take: twice the schedule plus 30 s (rate 0: 60 s plus
# 1 s per 10000 messages). Rates may carry k/M/G suffixes, as sockbench accepts them.
sender_limit=$(awk -v r="$rate" -v n="$count" 'function num(x,  m) {
        m = 1; if (x ~ /[kK]$/) m = 1e3; else if (x ~ /M$/) m = 1e6; else if (x ~ /G$/) m = 1e9
        sub(/[kKMG]$/, "", x); return x * m }
    BEGIN { r = num(r); n = num(n)
        if (r > 0) print int(2 * n / r + 30); else print int(60 + n / 10000) }')

# --- cleanup: everything we started, by PID, and the lab we brought up ---
child=""     # the running compare (compare engine)
lab_recv=""  # the running receiver in sb-lab-b (lab engine)
lab_send=""  # the running sender in sb-lab-a (lab engine)
lab_up=0     # 1 from the moment we run 'lab.sh up' until 'lab.sh down' is done
interrupted=0
remove_child_labs() { # namespaces sb-<pid>-<n>-{a,b} of a compare we started and that is gone
    local pid=$1 ns
    [[ -n $pid && ! -d /proc/$pid ]] || return 0
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^sb-$pid-[0-9]+-[ab]$" || true); do
        echo "$PROG: removing namespace $ns left by compare (pid $pid)" >&2
        ip netns del "$ns" 2>/dev/null || true
    done
}
stop_pid() { # stop_pid PID WHAT: SIGTERM (sockbench writes what it has), up to 15 s, then SIGKILL
    local pid=$1 what=$2
    [[ -n $pid ]] || return 0
    if [[ -d /proc/$pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do
            [[ -d /proc/$pid ]] || break
            # A zombie (exited, not yet reaped) is done.
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.1
        done
        if [[ -d /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
            echo "$PROG: $what (pid $pid) did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
stop_child() {
    [[ -n $child ]] || return 0
    local pid=$child
    stop_pid "$pid" compare
    remove_child_labs "$pid"
    child=""
}
lab_down() {
    [[ $lab_up -eq 1 ]] || return 0
    "$LAB" down >>"$outdir/.lab.out" 2>&1 || "$LAB" down >>"$outdir/.lab.out" 2>&1 || true
    lab_up=0
}
stop_lab() {
    stop_pid "$lab_send" "the sender"
    lab_send=""
    stop_pid "$lab_recv" "the receiver"
    lab_recv=""
    lab_down
}
stop_all() {
    stop_child
    stop_lab
}
on_signal() {
    interrupted=1
    trap '' INT TERM HUP
    echo >&2
    echo "$PROG: interrupted; stopping the running sessions (their rows are marked complete=false)" >&2
    stop_all
    rm -f "$outdir/.compare.out" "$outdir/.lab.out" "$outdir/.link.csv" "$outdir"/.lab-{tcp,udp}-{send,recv}.out
    echo "$PROG: partial results kept in $outdir" >&2
    exit 130
}
trap on_signal INT TERM HUP
trap 'stop_all' EXIT

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
log=$outdir/sweep.log
note() { echo "$*" | tee -a "$log" >&2; }

if [[ $engine == compare ]]; then
    if [[ $have_netem -eq 1 ]]; then
        path_note="engine compare: this kernel has sch_netem, but this engine runs compare --engine emulator, its built-in emulator (--engine lab for netem)"
    else
        path_note="engine compare: no sch_netem in this kernel; compare --engine emulator, its built-in emulator"
    fi
elif [[ $emulator -eq 1 ]]; then
    path_note="engine lab: scripts/lab.sh with the built-in emulator (--emulator)"
elif [[ $have_netem -eq 1 ]]; then
    path_note="engine lab: scripts/lab.sh with veth + tc netem$([[ $netem_only -eq 1 ]] && echo ' (--engine netem)'); the UDP sessions' control connection (TCP port $UDP_PORT) bypasses netem"
else
    path_note="engine lab: no sch_netem in this kernel, so scripts/lab.sh uses the built-in emulator"
fi
start=$(date +%s)
note "== $PROG $(date -u +%FT%TZ): ${#grid[@]} conditions x (TCP, UDP), $count x $size B at $rate msg/s, seed $seed -> $outdir"
note "   path: $path_note"
note "   $("$bin" --version 2>/dev/null || echo sockbench), kernel $(uname -r), $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
note "   load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows up as latency outliers)"

# --- compare engine: one 'sockbench compare' per condition ---
# run_compare LABEL FLAGS PM; sets result (one-line summary) and returns compare's status.
run_compare() {
    local label=$1 flags=$2 pm=$3 rc=0
    # shellcheck disable=SC2206 # flags are our own, space-separated
    local args=(compare --engine emulator --count "$count" --rate "$rate" --size "$size" --seed "$seed" $flags
        --label "$label" --out "$outdir" $pm)
    # Its own session: a Ctrl-C on the terminal reaches only this script, which then stops
    # compare with exactly one SIGTERM (a second signal would make compare exit at once).
    setsid "$bin" "${args[@]}" >"$outdir/.compare.out" 2>&1 </dev/null &
    child=$!
    wait "$child" || rc=$?
    child=""
    result=$(awk '/^  lost +[0-9]/{l=$2" / "$3} /^  p99 /{p=$2$3" / "$4$5} END{print "lost TCP/UDP " l ", p99 " p}' "$outdir/.compare.out")
    if [[ $rc -ne 0 ]]; then
        note "   compare failed (exit $rc): $bin ${args[*]}"
        sed 's/^/   /' "$outdir/.compare.out" | tail -5 | tee -a "$log" >&2
    fi
    return $rc
}

# --- lab engine: lab.sh up, a TCP and a UDP session between its hosts, lab.sh down ---
wait_gone() { # wait_gone PID SECONDS: 0 once PID has exited (or is a zombie), 1 at the limit
    local pid=$1 n
    n=$(awk -v s="$2" 'BEGIN{print int(s * 10)}')
    for ((k = 0; k < n; k++)); do
        [[ -d /proc/$pid ]] || return 0
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
        sleep 0.1
    done
    return 1
}
# lab_session PROTO LABEL PM: receiver in B, sender in A; sets run_id, lost, p99; returns 0 if
# both sides ended well.
lab_session() {
    local proto=$1 label=$2 pm=$3 port rc=0 rrc=0 ok=0
    [[ $proto == tcp ]] && port=$TCP_PORT || port=$UDP_PORT
    run_id="" lost="?" p99="?"
    local rout=$outdir/.lab-$proto-recv.out sout=$outdir/.lab-$proto-send.out
    setsid ip netns exec $NS_B "$bin" "$proto" recv --listen "$ADDR_B:$port" --once \
        >"$rout" 2>&1 </dev/null &
    lab_recv=$!
    # Ready when its TCP socket listens (UDP's control connection shares the port number).
    for _ in $(seq 100); do
        if ip netns exec $NS_B ss -Hltn "sport = :$port" 2>/dev/null | grep . >/dev/null; then
            ok=1
            break
        fi
        [[ -d /proc/$lab_recv ]] || break
        sleep 0.05
    done
    if [[ $ok -ne 1 ]]; then
        note "   $proto receiver did not listen on $ADDR_B:$port in $NS_B within 5 s:"
        sed 's/^/   /' "$rout" | tail -5 | tee -a "$log" >&2
        stop_pid "$lab_recv" "the $proto receiver"
        lab_recv=""
        return 1
    fi
    # shellcheck disable=SC2206 # pm is our own
    local args=("$proto" send "$ADDR_B:$port" --count "$count" --rate "$rate" --size "$size"
        --label "$label" --out "$outdir" $pm)
    setsid ip netns exec $NS_A "$bin" "${args[@]}" >"$sout" 2>&1 </dev/null &
    lab_send=$!
    if ! wait_gone "$lab_send" "$sender_limit"; then
        note "   $proto sender still running after $sender_limit s; stopping it"
        stop_pid "$lab_send" "the $proto sender"
    fi
    wait "$lab_send" || rc=$?
    lab_send=""
    # --once: the receiver ends by itself after the session (its linger is a few round trips).
    if ! wait_gone "$lab_recv" 15; then
        note "   $proto receiver still running 15 s after the session; stopping it"
        stop_pid "$lab_recv" "the $proto receiver"
    fi
    wait "$lab_recv" || rrc=$?
    lab_recv=""
    run_id=$(sed -n 's/^sockbench [a-z]* send to .* (run \(.*\))$/\1/p' "$sout" | head -1)
    lost=$(awk '/^  lost +[0-9]/{print $2; exit}' "$sout")
    p99=$(awk '/^  p99 /{print $2 $3; exit}' "$sout")
    if [[ $rc -ne 0 || $rrc -ne 0 || -z $run_id ]]; then
        note "   $proto session failed (sender exit $rc, receiver exit $rrc): ip netns exec $NS_A $bin ${args[*]}"
        sed 's/^/   sender: /' "$sout" | tail -5 | tee -a "$log" >&2
        sed 's/^/   receiver: /' "$rout" | tail -3 | tee -a "$log" >&2
        return 1
    fi
}
# copy_link_csv SINCE LABEL RUN_ID...: once the emulator has rewritten link.csv after SINCE
# (epoch seconds with fraction; it does so every second), write it as DIR/<run_id>_link.csv
# for each RUN_ID, with that run_id and LABEL in its columns.
copy_link_csv() {
    local since=$1 label=$2
    shift 2
    local src=$LAB_STATE/link.csv tmp=$outdir/.link.csv mtime ok=0
    for _ in $(seq 40); do # up to 4 s
        mtime=$(stat -c %.9Y "$src" 2>/dev/null || echo 0)
        if awk -v a="$mtime" -v b="$since" 'BEGIN{exit !(a > b)}'; then
            sleep 0.05 # the file is rewritten in place: let the write finish, then check it
            cp "$src" "$tmp" 2>/dev/null || true
            # Complete: the header and 10 rows (2 directions x tcp, udp, icmp, other, all), each with
            # the header's number of columns.
            if [[ $(awk -F, 'NR == 1 {n = NF} NF == n' "$tmp" 2>/dev/null | wc -l) -eq 11 ]] &&
                [[ $(wc -l <"$tmp") -eq 11 ]]; then
                ok=1
                break
            fi
        fi
        sleep 0.1
    done
    if [[ $ok -ne 1 ]]; then
        note "   the emulator's counts ($src) were not rewritten after the sessions; no link CSV"
        rm -f "$tmp"
        return 1
    fi
    local id
    for id in "$@"; do
        # Columns: schema_version,run_id,label,... (lab.sh's link writes run_id=<its own>, label=lab).
        awk -F, -v OFS=, -v id="$id" -v label="\"$label\"" \
            'NR == 1 {print; next} {$2 = id; $3 = label; print}' "$tmp" >"$outdir/${id}_link.csv"
    done
    rm -f "$tmp"
}
# netem_dropped: the drop counter of the netem qdisc on A's veth (losses and queue overflows), or
# nothing when there is none.
netem_dropped() {
    tc -n $NS_A -s qdisc show dev sbveth-a 2>/dev/null |
        awk '/^qdisc netem/ {n = 1; next} n && /dropped/ {sub(/.*dropped /, ""); sub(/,.*/, ""); print; exit}'
}
# run_lab LABEL FLAGS PM; sets result and returns 0 if everything worked.
run_lab() {
    local label=$1 flags=$2 pm=$3 path=() mode tcp_id udp_id tcp_lost udp_lost tcp_p99 udp_p99 bad=0
    # On netem, the UDP session's control connection (TCP on the UDP port) bypasses netem, so netem's
    # drops during that session are the UDP data's alone; lab.sh ignores this with the emulator.
    if [[ $emulator -eq 1 ]]; then path=(--emulator); else path=(--spare-tcp-port "$UDP_PORT"); fi
    [[ $netem_only -eq 1 ]] && path+=(--netem)
    result=""
    lab_up=1
    # shellcheck disable=SC2206 # flags are our own
    if ! "$LAB" up "${path[@]}" $flags --seed "$seed" >"$outdir/.lab.out" 2>&1 </dev/null; then
        note "   lab.sh up failed: $LAB up ${path[*]} $flags --seed $seed"
        sed 's/^/   /' "$outdir/.lab.out" | tail -5 | tee -a "$log" >&2
        # Someone else's lab appeared since the start: not ours to take down.
        grep -q "already up" "$outdir/.lab.out" && lab_up=0
        lab_down
        return 1
    fi
    mode=$(cat "$LAB_STATE/mode" 2>/dev/null || echo "?")
    lab_session tcp "$label" "$pm" || bad=1
    tcp_id=$run_id tcp_lost=$lost tcp_p99=$p99
    udp_id="" udp_lost="?" udp_p99="?"
    local netem_note="" d0 d1
    if [[ $bad -eq 0 ]]; then
        d0=$(netem_dropped)
        lab_session udp "$label" "$pm" || bad=1
        udp_id=$run_id udp_lost=$lost udp_p99=$p99
        d1=$(netem_dropped)
        [[ -n $d0 && -n $d1 ]] && netem_note=", netem dropped $((d1 - d0)) in the UDP session"
    fi
    local t_end link=""
    t_end=$(date +%s.%N)
    if [[ $bad -eq 0 && $mode == userspace* ]]; then
        if copy_link_csv "$t_end" "$label" "$tcp_id" "$udp_id"; then
            link=", emulator dropped $(awk -F, '$(NF - 10) == "a_to_b" && $(NF - 9) == "udp" {print $(NF - 6)}' "$outdir/${udp_id}_link.csv") UDP"
        else
            bad=1
        fi
    fi
    lab_down
    case "$mode" in userspace*) mode=emulator ;; veth*) mode=netem ;; esac
    result="lost TCP/UDP $tcp_lost / $udp_lost, p99 $tcp_p99 / $udp_p99 ($mode$link$netem_note)"
    return $bad
}

i=0
failed=0
for entry in "${grid[@]}"; do
    i=$((i + 1))
    IFS='|' read -r sweep label flags <<<"$entry"
    pm=""
    if [[ $all_messages -eq 1 || $label == loss=5%,* ]]; then pm=--per-message; fi
    t0=$(date +%s.%N)
    rc=0
    result=""
    if [[ $engine == compare ]]; then
        run_compare "$label" "$flags" "$pm" || rc=$?
    else
        run_lab "$label" "$flags" "$pm" || rc=$?
    fi
    t1=$(date +%s.%N)
    note "$(printf '[%2d/%d] %-40s %5.1f s  %s' "$i" "${#grid[@]}" "$label" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$result")"
    [[ $rc -eq 0 ]] || failed=$((failed + 1))
done
rm -f "$outdir/.compare.out" "$outdir/.lab.out" "$outdir"/.lab-{tcp,udp}-{send,recv}.out
took=$(($(date +%s) - start))
note "== grid done in ${took} s ($((took / 60)) min $((took % 60)) s); $failed condition(s) failed; load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ $plot -eq 1 ]]; then
    # The Python that has matplotlib: scripts/test.sh's .venv/ (Debian's python3 refuses pip), else python3.
    py="$REPO/.venv/bin/python3"
    "$py" -c 'import matplotlib' 2>/dev/null || py=python3
    if ! "$py" -c 'import matplotlib' 2>/dev/null; then
        note "$PROG: no Python with matplotlib, so no plots: run scripts/test.sh once (it makes .venv/), then .venv/bin/python3 scripts/plot.py $outdir"
        exit 1
    fi
    "$py" "$HERE/plot.py" "$outdir" 2>&1 | tee -a "$log" >&2 || {
        note "$PROG: plot.py failed; the CSVs in $outdir are complete"
        exit 1
    }
    note "== plots in $outdir/plots; total $(($(date +%s) - start)) s"
fi
[[ $failed -eq 0 ]] || exit 1
