#!/usr/bin/env bash
# netem.sh: impair a network device with tc netem, with flags in sockbench's vocabulary,
# and a clear explanation (and an alternative) when the kernel has no netem.
set -euo pipefail

PROG=$(basename "$0")

usage() {
    cat <<EOF
Usage:
  $PROG apply DEV [--netns NS] [--loss 5%] [--loss-correlation 25%] [--delay 20ms]
                  [--jitter 5ms] [--reorder 2%] [--reorder-gap 3] [--duplicate 1%]
                  [--corrupt 0.1%] [--rate 10mbit] [--limit 1000] [--spare-tcp-port PORT]...
  $PROG clear DEV [--netns NS]
  $PROG show  DEV [--netns NS]     the qdiscs with their counters (netem's "dropped" = its losses)
  $PROG check                      say whether this kernel has netem (exit 0 yes, 3 no)

Applies the impairment to packets LEAVING DEV (egress), like 'tc qdisc ... netem'.
Percentages accept "5%" or "5". Needs root and the sch_netem kernel module.

--spare-tcp-port PORT (repeatable): only TCP and UDP go through netem, and TCP to or from PORT does
not. A sockbench UDP receiver on port P takes its control connection on TCP port P: spare P and that
connection is neither impaired nor counted in netem's drops, which then equal UDP's losses exactly.
(A prio qdisc at the root steers the packets: band 1 unimpaired, band 2 netem; ARP, ICMP and other
traffic stay unimpaired.)

Without netem, either use sockbench's built-in link emulator:
  sockbench link --a-netns A --b-netns B --loss 5% ...
  scripts/lab.sh up --emulator --loss 5%
or get real netem in a throwaway VM (Debian's kernel under QEMU, the repository shared):
  scripts/vm.sh setup && scripts/vm.sh run -- scripts/lab.sh up --loss 5% ...
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
    [[ $(id -u) -eq 0 ]] || die "needs root (tc changes qdiscs): run with sudo"
    command -v tc >/dev/null || die "'tc' is missing: apt-get install iproute2"
    command -v ip >/dev/null || die "'ip' is missing: apt-get install iproute2"
}

# Exit status 0 if a netem qdisc can be created; tried on lo in a throwaway namespace,
# so nothing on the host is touched.
have_netem() {
    local ns="sb-netemcheck-$$" ok=1
    ip netns add "$ns" 2>/dev/null || return 1
    if ip -n "$ns" link set lo up 2>/dev/null &&
        tc -n "$ns" qdisc add dev lo root netem delay 1ms 2>/dev/null; then
        ok=0
    fi
    ip netns del "$ns" 2>/dev/null || true
    return $ok
}

netem_missing() {
    cat >&2 <<EOF
$PROG: this kernel has no netem qdisc (sch_netem): 'tc qdisc add ... netem' is refused
  (kernel $(uname -r)). To fix, either:
  - load it: modprobe sch_netem   (Ubuntu: apt-get install linux-modules-extra-\$(uname -r);
    Fedora: dnf install kernel-modules-extra; in a container, load it on the host), or
  - use sockbench's built-in userspace link emulator, which needs only /dev/net/tun:
      scripts/lab.sh up --emulator $*
      sockbench link --a-netns A --b-netns B ...   (same flags; --rate is --link-rate there), or
  - run it in a throwaway VM whose kernel has netem (QEMU; the repository is shared at its path):
      scripts/vm.sh setup; scripts/vm.sh run -- scripts/netem.sh ...
EOF
    exit 3
}

# "5" -> "5%", "5%" -> "5%"; refuse anything that is not a number.
pct() {
    local v=${1%\%}
    [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$v" 'BEGIN{exit !(v <= 100)}' ||
        bad "$2: '$1' is not a percentage (write e.g. 5% or 0.1%)"
    echo "${v}%"
}

dur() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || bad "$2: '$1' is not a duration (write e.g. 20ms)"
    echo "$1"
}

count() {
    [[ $1 =~ ^[0-9]+$ && $1 -ge 1 ]] || bad "$2: '$1' is not a whole number (write e.g. 3)"
    echo "$1"
}

cmd=${1:-}
case "$cmd" in
-h | --help | help | "")
    usage
    [[ -n $cmd ]] && exit 0 || exit 2
    ;;
check)
    need_root
    if have_netem; then
        echo "netem is available"
        exit 0
    fi
    netem_missing
    ;;
apply | clear | show) ;;
*)
    echo "$PROG: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
shift
dev=${1:-}
[[ -n $dev && $dev != -* ]] || bad "$cmd needs a device name, e.g. $PROG $cmd eth0"
shift

netns=""
loss="" losscorr="" delay="" jitter="" reorder="" gap="" dup="" corrupt="" rate="" limit=""
spare=()
orig_flags=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    esac
    [[ $# -ge 2 ]] || bad "$1 needs a value (see --help)"
    [[ $1 == --netns ]] || orig_flags+=("$1" "$2")
    case "$1" in
    --netns) netns=$2 ;;
    --loss) loss=$(pct "$2" "$1") ;;
    --loss-correlation) losscorr=$(pct "$2" "$1") ;;
    --delay) delay=$(dur "$2" "$1") ;;
    --jitter) jitter=$(dur "$2" "$1") ;;
    --reorder) reorder=$(pct "$2" "$1") ;;
    --reorder-gap) gap=$(count "$2" "$1") ;;
    --duplicate) dup=$(pct "$2" "$1") ;;
    --corrupt) corrupt=$(pct "$2" "$1") ;;
    --rate)
        # tc's rate units: bit, kbit, mbit, gbit, bps (bytes), kbps, ...
        [[ ${2,,} =~ ^[0-9]+(\.[0-9]+)?([kmgt]i?)?(bit|bps)$ ]] || bad "--rate: '$2' is not a rate (write e.g. 10mbit)"
        rate=$2
        ;;
    --limit) limit=$(count "$2" "$1") ;;
    --spare-tcp-port)
        [[ $2 =~ ^[0-9]+$ && $2 -ge 1 && $2 -le 65535 ]] || bad "--spare-tcp-port: '$2' is not a port (1-65535)"
        spare+=("$2")
        ;;
    *) bad "unknown option '$1' (see --help)" ;;
    esac
    shift 2
done
[[ $cmd == apply || ${#orig_flags[@]} -eq 0 ]] || bad "$cmd takes only --netns (impairments are for apply)"

need_root
tcns=()
[[ -n $netns ]] && tcns=(-n "$netns")
if [[ -n $netns ]] && ! ip netns list | awk '{print $1}' | grep -xF -- "$netns" >/dev/null; then
    bad "--netns: no namespace '$netns' (see: ip netns list)"
fi
ip "${tcns[@]}" link show dev "$dev" >/dev/null 2>&1 ||
    bad "no device '$dev'${netns:+ in namespace $netns} (see: ip ${netns:+-n $netns }link)"

# The tree of --spare-tcp-port, as tc batch lines: a prio root with two bands, band 1 a plain pfifo, band 2
# netem; u32 filters send TCP on a spared port to band 1 (checked first), the rest of TCP and UDP to band 2,
# IPv4 and IPv6 alike (IPv6 without extension headers). What no filter claims (ARP, ICMP, neighbour
# discovery) takes the priomap's band 1. tc wants one filter priority per protocol: 1-2 spare, 3-4 impair.
spare_tree() {
    echo "qdisc add dev $dev root handle 1: prio bands 2 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"
    # An explicit limit: a pfifo's default is the device's txqueuelen, which may be tiny.
    echo "qdisc add dev $dev parent 1:1 handle 11: pfifo limit 1000"
    echo "qdisc add dev $dev parent 1:2 handle 12: netem ${args[*]}"
    local p v proto m
    for v in 4 6; do
        proto=ip m=ip
        [[ $v == 6 ]] && proto=ipv6 m=ip6
        for p in "${spare[@]}"; do
            echo "filter add dev $dev parent 1: protocol $proto prio $((v == 4 ? 1 : 2)) u32 match $m protocol 6 0xff match $m dport $p 0xffff flowid 1:1"
            echo "filter add dev $dev parent 1: protocol $proto prio $((v == 4 ? 1 : 2)) u32 match $m protocol 6 0xff match $m sport $p 0xffff flowid 1:1"
        done
        for p in 6 17; do
            echo "filter add dev $dev parent 1: protocol $proto prio $((v == 4 ? 3 : 4)) u32 match $m protocol $p 0xff flowid 1:2"
        done
    done
}

case "$cmd" in
show)
    tc "${tcns[@]}" -s qdisc show dev "$dev"
    if tc "${tcns[@]}" qdisc show dev "$dev" | grep "qdisc prio 1: root" >/dev/null; then
        echo "filters (band 1:1 unimpaired, 1:2 netem):"
        tc "${tcns[@]}" filter show dev "$dev" parent 1: | sed 's/^/  /'
    fi
    ;;
clear)
    if tc "${tcns[@]}" qdisc show dev "$dev" | grep "qdisc netem" >/dev/null; then
        # The root is netem itself, or the prio of --spare-tcp-port above it: both go.
        tc "${tcns[@]}" qdisc del dev "$dev" root
        echo "netem removed from $dev"
    else
        echo "no netem on $dev"
    fi
    ;;
apply)
    args=()
    if [[ -n $loss ]]; then
        args+=(loss "$loss")
        [[ -n $losscorr ]] && args+=("$losscorr")
    elif [[ -n $losscorr ]]; then
        bad "--loss-correlation needs --loss"
    fi
    if [[ -n $delay || -n $jitter ]]; then
        args+=(delay "${delay:-0ms}")
        [[ -n $jitter ]] && args+=("$jitter")
    fi
    # "reorder 0%" is no reordering, and tc refuses a gap without a reorder probability: a grid's zero
    # level (--reorder 0% --reorder-gap 3) means plain netem.
    if [[ -n $reorder ]] && awk -v v="${reorder%\%}" 'BEGIN{exit !(v == 0)}'; then
        reorder="" gap=""
    fi
    if [[ -n $reorder ]]; then
        # netem reorders only delayed traffic: the chosen packets skip the delay.
        [[ -n $delay ]] || echo "$PROG: note: netem reorders only with --delay; packets picked by --reorder skip it" >&2
        args+=(reorder "$reorder")
        [[ -n $gap ]] && args+=(gap "$gap")
    elif [[ -n $gap ]]; then
        bad "--reorder-gap needs --reorder"
    fi
    [[ -n $dup ]] && args+=(duplicate "$dup")
    [[ -n $corrupt ]] && args+=(corrupt "$corrupt")
    [[ -n $rate ]] && args+=(rate "$rate")
    [[ -n $limit ]] && args+=(limit "$limit")
    [[ ${#args[@]} -gt 0 ]] || bad "apply needs at least one impairment (see --help)"
    # One tc process for the whole tree (process starts are slow in an emulated VM). Whatever root qdisc
    # was there goes: an earlier netem, or the prio of an earlier --spare-tcp-port with its filters.
    batch=()
    if tc "${tcns[@]}" qdisc show dev "$dev" | grep -E "^qdisc (netem|prio) [0-9a-f]+: root" >/dev/null; then
        batch+=("qdisc del dev $dev root")
    fi
    if [[ ${#spare[@]} -eq 0 ]]; then
        batch+=("qdisc add dev $dev root netem ${args[*]}")
        what="netem ${args[*]}"
    else
        mapfile -t -O ${#batch[@]} batch <<<"$(spare_tree)"
        what="netem ${args[*]} on TCP and UDP, except TCP port ${spare[*]}"
    fi
    if ! err=$(printf '%s\n' "${batch[@]}" | tc "${tcns[@]}" -batch - 2>&1); then
        # No half-built tree stays behind (a netem or prio root now is ours: the batch replaced any other).
        if tc "${tcns[@]}" qdisc show dev "$dev" | grep -E "^qdisc (netem|prio) [0-9a-f]+: root" >/dev/null; then
            tc "${tcns[@]}" qdisc del dev "$dev" root 2>/dev/null || true
        fi
        # Only now, as it costs a namespace: is it netem that is missing?
        have_netem || netem_missing "${orig_flags[@]}"
        die "tc refused the netem setup on $dev: $err"
    fi
    echo "applied on $dev${netns:+ (namespace $netns)}: $what"
    ;;
esac
