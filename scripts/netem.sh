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
                  [--corrupt 0.1%] [--rate 10mbit] [--limit 1000]
  $PROG clear DEV [--netns NS]
  $PROG show  DEV [--netns NS]
  $PROG check                      say whether this kernel has netem

Applies the impairment to packets LEAVING DEV (egress), like 'tc qdisc ... netem'.
Percentages accept "5%" or "5". Needs root and the sch_netem kernel module.
Without netem, use sockbench's built-in link emulator instead:
  sockbench link --a-netns A --b-netns B --loss 5% ...
  scripts/lab.sh up --emulator --loss 5%
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
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
      sockbench link --a-netns A --b-netns B ...   (same flags; --rate is --link-rate there)
EOF
    exit 3
}

# "5" -> "5%", "5%" -> "5%"; refuse anything that is not a number.
pct() {
    local v=${1%\%}
    [[ $v =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "'$1' is not a percentage (write e.g. 5% or 0.1%)"
    echo "${v}%"
}

dur() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || die "'$1' is not a duration (write e.g. 20ms)"
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
[[ -n $dev && $dev != -* ]] || die "$cmd needs a device name, e.g. $PROG $cmd eth0"
shift

netns=""
loss="" losscorr="" delay="" jitter="" reorder="" gap="" dup="" corrupt="" rate="" limit=""
orig_flags=()
while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 || $1 == -h || $1 == --help ]] || die "$1 needs a value"
    [[ $1 == --netns ]] || orig_flags+=("$1" "$2")
    case "$1" in
    --netns) netns=$2 ;;
    --loss) loss=$(pct "$2") ;;
    --loss-correlation) losscorr=$(pct "$2") ;;
    --delay) delay=$(dur "$2") ;;
    --jitter) jitter=$(dur "$2") ;;
    --reorder) reorder=$(pct "$2") ;;
    --reorder-gap) gap=$2 ;;
    --duplicate) dup=$(pct "$2") ;;
    --corrupt) corrupt=$(pct "$2") ;;
    --rate) rate=$2 ;;
    --limit) limit=$2 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift 2
done

need_root
tcns=()
[[ -n $netns ]] && tcns=(-n "$netns")
ip "${tcns[@]}" link show dev "$dev" >/dev/null 2>&1 ||
    die "no device '$dev'${netns:+ in namespace $netns} (see: ip ${netns:+-n $netns }link)"

case "$cmd" in
show)
    tc "${tcns[@]}" qdisc show dev "$dev"
    ;;
clear)
    if tc "${tcns[@]}" qdisc show dev "$dev" | grep -q "qdisc netem"; then
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
        die "--loss-correlation needs --loss"
    fi
    if [[ -n $delay || -n $jitter ]]; then
        args+=(delay "${delay:-0ms}")
        [[ -n $jitter ]] && args+=("$jitter")
    fi
    if [[ -n $reorder ]]; then
        # netem reorders only delayed traffic: the chosen packets skip the delay.
        [[ -n $delay ]] || echo "$PROG: note: netem reorders only with --delay; packets picked by --reorder skip it" >&2
        args+=(reorder "$reorder")
        [[ -n $gap ]] && args+=(gap "$gap")
    fi
    [[ -n $dup ]] && args+=(duplicate "$dup")
    [[ -n $corrupt ]] && args+=(corrupt "$corrupt")
    [[ -n $rate ]] && args+=(rate "$rate")
    [[ -n $limit ]] && args+=(limit "$limit")
    [[ ${#args[@]} -gt 0 ]] || die "apply needs at least one impairment (see --help)"
    have_netem || netem_missing "${orig_flags[@]}"
    tc "${tcns[@]}" qdisc replace dev "$dev" root netem "${args[@]}"
    echo "applied on $dev${netns:+ (namespace $netns)}: netem ${args[*]}"
    ;;
esac
