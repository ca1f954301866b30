#!/vm/bin/busybox sh
# PID 1 of the vm.sh guest (copied into the initramfs as /init by `scripts/vm.sh setup`).
#
# Mounts the host's shares over 9p (the host's /usr read-only under a tmpfs overlay that adds this kernel's
# modules; the repository read-write at its host path), runs /run/vmctl/cmd as its child with stdout and
# stderr relayed to the two virtio consoles, writes the exit code to /run/vmctl/exit and powers off.
# Whatever goes wrong, it powers off: the host side then reports "no exit code" (125) with the console tail.
bb=/vm/bin/busybox
KVER=$($bb cat /vm/kernel-version)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/vm/bin
export HOME=/root TERM=dumb LANG=C.UTF-8

log() { echo "[vm-init $($bb cut -d' ' -f1 /proc/uptime 2>/dev/null)] $*"; }
die() {
    log "FATAL: $*"
    [ -d /run/vmctl ] && echo "vm init: $*" >/run/vmctl/init-error 2>/dev/null
    $bb sync
    $bb poweroff -f
    $bb sleep 5
    exit 1
}

$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
# What udev would add: bash's process substitution needs /dev/fd.
$bb ln -sf /proc/self/fd /dev/fd
$bb ln -sf /proc/self/fd/0 /dev/stdin
$bb ln -sf /proc/self/fd/1 /dev/stdout
$bb ln -sf /proc/self/fd/2 /dev/stderr
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t tmpfs -o mode=0755 tmpfs /run
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
$bb hostname sockbench-vm
# The host has no kmod; busybox's modprobe reads the modules.dep made at build time.
echo /vm/bin/modprobe >/proc/sys/kernel/modprobe

# Boot modules go in by path, in the dependency order computed at build time: /usr (and so
# /usr/lib/modules) exists only once 9p works.
while read -r ko; do
    $bb insmod "/vm/modules/$KVER/$ko" 2>/dev/null || log "insmod $ko failed"
done </vm/boot-modules

mount9p() { # TAG DIR OPTIONS: the virtio device may show up a little after the driver loads
    $bb mkdir -p "$2" 2>/dev/null
    i=0
    while ! $bb mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,$3" "$1" "$2" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && return 1
        $bb usleep 10000
    done
}

mount9p vmctl /run/vmctl "rw,cache=none" || die "cannot mount the control share (vmctl)"

# /usr = overlay(upper: tmpfs with lib/modules/$KVER, lower: the host's /usr). The guest's /bin, /sbin,
# /lib and /lib64 are the same symlinks into /usr as on a merged-/usr Debian host, so the host's absolute
# symlinks (/usr/sbin/ip -> /bin/ip) resolve to iproute2, not to busybox.
$bb mkdir -p /run/vm/usr-rw
$bb mount -t tmpfs -o mode=0755 tmpfs /run/vm/usr-rw
$bb mkdir -p /run/vm/usr-rw/upper/lib/modules /run/vm/usr-rw/work
$bb cp -a "/vm/modules/$KVER" /run/vm/usr-rw/upper/lib/modules/
mount9p hostusr /run/vm/host-usr "ro,cache=loose" || die "cannot mount the host's /usr (tag hostusr)"
$bb mount -t overlay overlay \
    -o lowerdir=/run/vm/host-usr,upperdir=/run/vm/usr-rw/upper,workdir=/run/vm/usr-rw/work /usr ||
    die "cannot mount the /usr overlay"

# /run/vmctl/mounts: one share a line, "TAG GUESTPATH ro|rw CACHE", parents before children.
while read -r tag path mode cache; do
    [ -n "$tag" ] || continue
    mount9p "$tag" "$path" "$mode,cache=$cache" || die "cannot mount share $tag on $path"
done </run/vmctl/mounts

for m in $($bb cat /vm/load-modules); do
    $bb modprobe "$m" 2>/dev/null || log "modprobe $m failed"
done
$bb ip link set lo up

i=0
while [ ! -e /dev/hvc1 ]; do
    i=$((i + 1))
    [ $i -gt 500 ] && die "no /dev/hvc0 and /dev/hvc1 (virtio consoles)"
    $bb usleep 10000
done

# The command writes to FIFOs, not to the hvc TTYs: a TTY would turn \n into \r\n and make programs draw
# progress bars. Two cats relay them. init keeps both TTYs open: their raw mode is lost at the last close.
exec 3>/dev/hvc0 4>/dev/hvc1
$bb stty raw -echo <&3 2>/dev/null
$bb stty raw -echo <&4 2>/dev/null
$bb mkfifo /run/vm/out /run/vm/err
$bb cat /run/vm/out >&3 &
CAT1=$!
$bb cat /run/vm/err >&4 &
CAT2=$!
$bb cut -d' ' -f1 /proc/uptime >/run/vmctl/started
SHELL_BIN=/vm/bin/sh
[ -x /usr/bin/bash ] && SHELL_BIN=/usr/bin/bash
$SHELL_BIN /run/vmctl/cmd </dev/null >/run/vm/out 2>/run/vm/err 3>&- 4>&-
rc=$?
echo "$rc" >/run/vmctl/exit.tmp && $bb mv /run/vmctl/exit.tmp /run/vmctl/exit
$bb cut -d' ' -f1 /proc/uptime >/run/vmctl/finished
# Let the relays drain; a background child of the command that still holds a FIFO gets 2 s.
# (busybox's kill -0 is true for unreaped zombies, hence wait plus a watchdog.)
($bb sleep 2; $bb kill $CAT1 $CAT2 2>/dev/null) &
wait $CAT1 $CAT2 2>/dev/null
$bb sync
# Unmount the read-write shares, deepest first, so every write has reached the host.
$bb awk '$3=="9p" && $4 ~ /^rw/ {print $2}' /proc/mounts | $bb sort -r | while read -r m; do
    $bb umount "$m" 2>/dev/null
done
$bb poweroff -f
$bb sleep 10
