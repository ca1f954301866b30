#!/usr/bin/env bash
# lab.sh: a two-host lab on one machine: namespaces sb-lab-a (198.18.0.1) and sb-lab-b
# (198.18.0.2), joined by a veth pair with netem, or by sockbench's userspace link emulator.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
NS_A=sb-lab-a
NS_B=sb-lab-b
ADDR_A=198.18.0.1
ADDR_B=198.18.0.2
PREFIX=30
if [[ -d /run && -w /run ]]; then STATE=/run/sockbench-lab; else STATE=/tmp/sockbench-lab; fi

usage() {
    cat <<EOF
Usage:
  $PROG up [--emulator | --netem] [--symmetric] [--seed N] [--spare-tcp-port PORT] [impairment flags]
  $PROG down
  $PROG status

Builds two network namespaces, $NS_A ($ADDR_A) and $NS_B ($ADDR_B). Run programs in them with
  ip netns exec $NS_A <command>
Impairments apply to A->B (add --symmetric for both ways) and use netem.sh's flags:
  --loss 5% --loss-correlation 25% --delay 20ms --jitter 5ms --reorder 2% --reorder-gap 3
  --duplicate 1% --corrupt 0.1% --rate 10mbit --limit 1000
The hosts are joined by a veth pair with netem when the kernel has it; otherwise (or with
--emulator) by two TUN devices with 'sockbench link' forwarding between them in the
background (its counts are in $STATE/link.csv). --netem insists on netem (exit 3 where the
kernel has none; scripts/vm.sh runs this script in a VM that has it). The binary is
\$SOCKBENCH, or target/release/sockbench (built with cargo if missing; the emulator only).
--spare-tcp-port PORT (netem only, repeatable): netem impairs only TCP and UDP, and not TCP to
or from PORT: the control connection of a UDP receiver listening on PORT. netem's drop counter
('$PROG status') then counts the UDP data alone. The emulator ignores it (it counts per protocol).
'down' removes everything and is safe to run twice. Needs root.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}
# Bad input: exit 2 (the project's usage status).
bad() {
    echo "$PROG: $*" >&2
    exit 2
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "needs root (creates namespaces and devices): run with sudo"
    command -v ip >/dev/null || die "'ip' is missing: apt-get install iproute2"
}

ns_exists() { ip netns list | awk '{print $1}' | grep -x "$1" >/dev/null; }

# The PID of our background link process, if it is still that process.
link_pid() {
    [[ -f $STATE/link.pid ]] || return 1
    local pid
    pid=$(cat "$STATE/link.pid")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -- "--a-netns $NS_A" >/dev/null || return 1
    echo "$pid"
}

find_binary() {
    local bin=${SOCKBENCH:-$REPO/target/release/sockbench}
    if [[ ! -x $bin ]]; then
        [[ -z ${SOCKBENCH:-} ]] || die "\$SOCKBENCH=$bin is not an executable"
        command -v cargo >/dev/null || die "$bin is missing and cargo is not installed; build sockbench or set SOCKBENCH"
        echo "$PROG: building sockbench (cargo build --release)..." >&2
        (cd "$REPO" && cargo build --release --quiet) || die "cargo build failed"
    fi
    "$bin" link --help >/dev/null 2>&1 || die "$bin has no 'link' subcommand (set SOCKBENCH to a binary that has one)"
    echo "$bin"
}

cmd_down() {
    need_root
    local pid
    if pid=$(link_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            echo "$PROG: link process $pid did not stop, killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        if [[ -f $STATE/link.log ]]; then
            echo "final link counts:"
            sed -n '/^dir /,$p' "$STATE/link.log"
        fi
    fi
    local ns
    for ns in $NS_A $NS_B; do
        if ns_exists "$ns"; then
            ip netns del "$ns"
            echo "removed namespace $ns"
        fi
    done
    rm -rf "$STATE"
}

cmd_status() {
    local up=0 ns
    for ns in $NS_A $NS_B; do
        if ns_exists "$ns"; then
            up=1
            echo "namespace $ns:"
            ip -n "$ns" -br addr show | sed 's/^/  /'
            ip -n "$ns" -br link show | grep -v '^lo' | while read -r dev _; do
                # The netem line and its counters ("dropped" = what netem dropped, losses included).
                tc -n "$ns" -s qdisc show dev "${dev%@*}" 2>/dev/null | grep -A1 'qdisc netem' | sed 's/^/  /' || true
            done
        else
            echo "namespace $ns: absent"
        fi
    done
    [[ -f $STATE/mode ]] && echo "link: $(cat "$STATE/mode")"
    local pid
    if pid=$(link_pid); then
        echo "link process: pid $pid, running"
        if [[ -s $STATE/link.csv ]]; then
            echo "counts ($STATE/link.csv, updated every second):"
            awk -F, 'NR==1 || ($6 > 0)' "$STATE/link.csv" | column -t -s, | sed 's/^/  /'
        fi
    elif [[ -f $STATE/link.pid ]]; then
        echo "link process: NOT running (see $STATE/link.log)"
    fi
    [[ $up -eq 1 ]] || echo "lab is down"
}

cmd_up() {
    need_root
    local emulator=0 netem=0 symmetric=0 seed="" netem_flags=() link_flags=() spare=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
        --emulator) emulator=1; shift; continue ;;
        --netem) netem=1; shift; continue ;;
        --symmetric) symmetric=1; shift; continue ;;
        -h | --help) usage; exit 0 ;;
        esac
        [[ $# -ge 2 ]] || bad "$1 needs a value (see --help)"
        case "$1" in
        --seed) seed=$2 ;;
        --spare-tcp-port) spare+=("$1" "$2") ;;
        --loss | --loss-correlation | --delay | --jitter | --reorder | --reorder-gap | --duplicate | --corrupt)
            netem_flags+=("$1" "$2")
            link_flags+=("$1" "$2")
            ;;
        --rate) netem_flags+=("$1" "$2"); link_flags+=(--link-rate "$2") ;;
        --limit) netem_flags+=("$1" "$2"); link_flags+=(--queue "$2") ;;
        *) bad "unknown option '$1' (see --help)" ;;
        esac
        shift 2
    done
    [[ $emulator -eq 0 || $netem -eq 0 ]] || bad "--emulator and --netem exclude each other"
    if ns_exists $NS_A || ns_exists $NS_B; then
        die "the lab is already up ($PROG status); run '$PROG down' first"
    fi
    if [[ $emulator -eq 0 ]] && ! "$HERE/netem.sh" check >/dev/null 2>&1; then
        if [[ $netem -eq 1 ]]; then
            echo "$PROG: --netem, but this kernel has no sch_netem (kernel $(uname -r)); either" >&2
            echo "  run the lab in a VM whose kernel has it: scripts/vm.sh setup; scripts/vm.sh run -- $0 up ..., or" >&2
            echo "  use the built-in emulator: $0 up --emulator ..." >&2
            exit 3
        fi
        echo "$PROG: no netem in this kernel; using the built-in link emulator" >&2
        emulator=1
    fi
    if [[ $emulator -eq 1 && ${#spare[@]} -gt 0 ]]; then
        echo "$PROG: note: --spare-tcp-port is for netem; the emulator impairs all traffic and counts it per protocol" >&2
        spare=()
    fi
    local bin=""
    [[ $emulator -eq 1 ]] && bin=$(find_binary)

    mkdir -p "$STATE"
    trap 'echo "$PROG: setup failed, cleaning up" >&2; cmd_down >/dev/null 2>&1 || true' ERR
    ip netns add $NS_A
    ip netns add $NS_B
    ip -n $NS_A link set lo up
    ip -n $NS_B link set lo up

    if [[ $emulator -eq 0 ]]; then
        echo "veth + netem" >"$STATE/mode"
        ip link add sbveth-a netns $NS_A type veth peer name sbveth-b netns $NS_B
        ip -n $NS_A addr add $ADDR_A/$PREFIX dev sbveth-a
        ip -n $NS_B addr add $ADDR_B/$PREFIX dev sbveth-b
        ip -n $NS_A link set sbveth-a up
        ip -n $NS_B link set sbveth-b up
        if [[ ${#netem_flags[@]} -gt 0 ]]; then
            "$HERE/netem.sh" apply sbveth-a --netns $NS_A "${netem_flags[@]}" "${spare[@]}"
            if [[ $symmetric -eq 1 ]]; then
                "$HERE/netem.sh" apply sbveth-b --netns $NS_B "${netem_flags[@]}" "${spare[@]}"
            fi
        fi
    else
        echo "userspace emulator ($bin link)" >"$STATE/mode"
        local args=(link --a-netns $NS_A --b-netns $NS_B --a-dev sbtun0 --b-dev sbtun0
            --a-addr $ADDR_A/$PREFIX --b-addr $ADDR_B/$PREFIX --out "$STATE" --label lab)
        [[ $symmetric -eq 1 ]] && args+=(--symmetric)
        [[ -n $seed ]] && args+=(--seed "$seed")
        args+=("${link_flags[@]}")
        setsid "$bin" "${args[@]}" >"$STATE/link.log" 2>&1 </dev/null &
        echo $! >"$STATE/link.pid"
        # Wait until both devices are up with their addresses, or the process has died.
        local ok=0
        for _ in $(seq 100); do
            if ip -n $NS_A -br addr show dev sbtun0 2>/dev/null | grep "$ADDR_A" >/dev/null &&
                ip -n $NS_B -br addr show dev sbtun0 2>/dev/null | grep "$ADDR_B" >/dev/null; then
                ok=1
                break
            fi
            link_pid >/dev/null || break
            sleep 0.1
        done
        if [[ $ok -ne 1 ]]; then
            echo "$PROG: the link did not come up; its output:" >&2
            sed 's/^/  /' "$STATE/link.log" >&2 || true
            trap - ERR
            cmd_down >/dev/null 2>&1 || true
            exit 1
        fi
        # Let the subnet route settle before reporting.
        sleep 0.1
    fi
    trap - ERR
    echo "lab up: $NS_A ($ADDR_A) <-> $NS_B ($ADDR_B) via $(cat "$STATE/mode")"
    [[ ${#netem_flags[@]} -gt 0 ]] && echo "impairment A->B: ${netem_flags[*]}$([[ $symmetric -eq 1 ]] && echo ' (both ways)')"
    echo "try: ip netns exec $NS_A ping $ADDR_B    |    $PROG status    |    $PROG down"
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
-h | --help | help) usage ;;
"") usage >&2; exit 2 ;;
*) echo "$PROG: unknown command '$1'" >&2; usage >&2; exit 2 ;;
esac
