#!/usr/bin/env bash
# vm.sh: real `tc netem` on kernels that have no sch_netem: one command inside a throwaway QEMU guest that
# boots Debian's own kernel (unpacked from its package, never installed), with the repository shared at
# the same absolute path, read-write.
set -euo pipefail

PROG=vm.sh
HERE=$(cd "$(dirname "$0")" && pwd -P)
REPO=$(dirname "$HERE")
CACHE=${SOCKBENCH_VM_CACHE:-$REPO/target/vm}
INIT=$HERE/vm/init.sh
# Bump when the layout of the assets changes in a way the key below does not see.
ASSET_FORMAT=1
# Inserted by path at boot, before /usr (and so modprobe's tree) exists; dependencies come first on their own.
BOOT_MODULES="virtio_pci virtio_console 9pnet_virtio 9p overlay"
# Loaded once /usr is there; the rest of NET_MODULES load on demand (the kernel runs busybox modprobe).
LOAD_MODULES="veth sch_netem"
NET_MODULES="veth sch_netem sch_prio sch_tbf sch_htb sch_fq_codel sch_ingress ifb cls_u32 cls_flower
  cls_matchall cls_fw cls_basic act_mirred act_gact em_u32 dummy tun"
DEFAULT_TIMEOUT=300
DEFAULT_MEM=512

usage() {
    cat <<EOF
Usage:
  $PROG setup                     install QEMU, busybox-static and cpio (Debian packages) and build the
                                  VM's kernel and initramfs into $CACHE (idempotent; quick once done)
  $PROG check                     exit 0 if a VM can run here, else say why and exit 3
  $PROG run [--mem MB] [--timeout S] [--smp N] [--share DIR[:ro]] [-e NAME=VALUE] [--timings]
            [--console] [--keep] -- CMD [ARGS...]

'run' boots a throwaway VM (Debian's kernel, which has sch_netem, veth and 9p), runs CMD in it as root
and powers it off. Inside, the repository is at the same path as here, read-write (what CMD writes under
it, e.g. sockbench --out, is on the host afterwards), and the host's /usr is shared read-only (so ip, tc,
bash, python3 and binaries built here run unchanged). CMD runs in the current directory if that is inside
the repository, else in the repository. Its stdout, stderr and exit code are passed back.

Options of run:
  --mem MB        guest memory (default $DEFAULT_MEM)
  --timeout S     limit for the whole VM, boot included (default $DEFAULT_TIMEOUT); exit 124 when hit
  --smp N         guest CPUs (default: 2, or 1 on a one-CPU host)
  --share DIR     also share DIR (read-write; DIR:ro for read-only) at the same path
  -e NAME=VALUE   set an environment variable for CMD (the guest starts with a minimal environment)
  --timings       print boot and total times on stderr
  --console       print the guest kernel's console log on stderr at the end
  --keep          keep the run directory (console log, QEMU command line) and print its path

KVM is used where it works; elsewhere (no /dev/kvm, or a PVM /dev/kvm that runs only PVM guest kernels)
TCG, software emulation: same results, slower CPU. One line on stderr says which. SOCKBENCH_VM_ACCEL=tcg|kvm
forces one. The VM has no network device: only what CMD builds inside (namespaces, veth pairs).
Exit status of run: CMD's; 124 timeout; 125 the VM failed (the console's tail is printed); 2 bad usage.
Cache: $CACHE (SOCKBENCH_VM_CACHE overrides), about 150 MB. Needs root for setup's apt-get.
EOF
}

die() { # die MESSAGE [STATUS]
    echo "$PROG: $1" >&2
    exit "${2:-1}"
}
note() { echo "$PROG: $*" >&2; }

# ---------------------------------------------------------------- packages (setup)

missing_packages() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    # The initramfs needs a static busybox: nothing else exists before the host's /usr is mounted.
    if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
    command -v cpio >/dev/null 2>&1 || need+=(cpio)
    # The guest runs the host's ip and tc (its /usr is the host's).
    command -v tc >/dev/null 2>&1 || need+=(iproute2)
    echo "${need[*]}"
}

APT_LOG=""
apt_get() { # apt-get ARGS..., output to $APT_LOG; waits (bounded) while another apt or dpkg holds its lock
    local try rc
    for try in $(seq 30); do
        rc=0
        timeout 900 apt-get -q -o DPkg::Lock::Timeout=300 "$@" >>"$APT_LOG" 2>&1 </dev/null || rc=$?
        [[ $rc -ne 0 ]] && tail -3 "$APT_LOG" | grep -iE 'could not get lock|unable to lock' >/dev/null || return $rc
        [[ $try -eq 1 ]] && note "apt is busy (another install); waiting for its lock"
        sleep 10
    done
    return 1
}

install_packages() { # PACKAGE...
    [[ $(id -u) -eq 0 ]] || die "setup must install $*: run it as root (sudo scripts/vm.sh setup)"
    command -v apt-get >/dev/null || die "setup installs Debian packages ($*) and needs apt-get"
    export DEBIAN_FRONTEND=noninteractive
    note "installing $* (Debian packages; log: $APT_LOG)"
    apt_get update || die "apt-get update failed; see $APT_LOG"
    local opts=()
    # Some images carry qemu-utils from bookworm-backports, which breaks bookworm's qemu-system-common
    # (<< 8.0): a plain install would remove qemu-utils. QEMU then comes from backports too, through a
    # private apt configuration (no file under /etc/apt changes).
    if [[ " $* " == *" qemu-system-x86 "* ]] &&
        dpkg-query -W -f='${Status} ${Version}\n' qemu-utils 2>/dev/null | grep 'installed .*bpo' >/dev/null; then
        local st=$CACHE/apt codename
        codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
        mkdir -p "$st/lists/partial" "$st/cache/archives/partial"
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true
            printf '\nTypes: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\n' "$codename"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        } >"$st/sources.sources"
        [[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$st/sources.list" || : >"$st/sources.list"
        opts=(-o "Dir::Etc::SourceList=$st/sources.list" -o "Dir::Etc::SourceParts=$st"
            -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache" -t "$codename-backports")
        note "qemu-utils comes from $codename-backports here, so QEMU does too"
        apt_get "${opts[@]:0:8}" update || die "apt-get update (with $codename-backports) failed; see $APT_LOG"
    fi
    apt_get install -y --no-install-recommends "${opts[@]}" "$@" || die "apt-get install $* failed; see $APT_LOG"
    # The private lists and the downloaded .debs served this install only (about 40 MB).
    if [[ ${#opts[@]} -gt 0 ]]; then rm -rf "$CACHE/apt"; fi
    local left
    left=$(missing_packages)
    [[ -z $left ]] || die "still missing after apt-get install: $left"
}

# ---------------------------------------------------------------- assets

# What the assets are built from, besides the kernel package: a change to init.sh or to a module list
# rebuilds them.
asset_key() {
    { echo "$ASSET_FORMAT $BOOT_MODULES $LOAD_MODULES $NET_MODULES"; cat "$INIT"; } | sha256sum | cut -c1-16
}

assets_ready() {
    [[ -s $CACHE/initramfs.cpio && -s $CACHE/kernel-version && -f $CACHE/assets.key ]] &&
        [[ -s $CACHE/vmlinux || -s $CACHE/vmlinuz ]] &&
        [[ $(cat "$CACHE/assets.key") == "$(asset_key)" ]]
}

kernel_package() { # what linux-image-amd64 depends on (e.g. linux-image-6.1.0-57-amd64), or nothing
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

# Downloads the kernel package (never installs it: no postinst, nothing in /boot or /lib/modules) and
# builds vmlinux, vmlinuz, initramfs.cpio and kernel-version in $CACHE.
build_assets() {
    local bb=/bin/busybox kpkg deb
    kpkg=$(kernel_package)
    if [[ -z $kpkg ]]; then
        apt_get update || true
        kpkg=$(kernel_package)
    fi
    if [[ -z $kpkg ]]; then # no apt lists: a package already downloaded will do
        deb=$(ls "$CACHE"/deb/linux-image-*.deb 2>/dev/null | head -1 || true)
        [[ -n $deb ]] || die "cannot tell which kernel package linux-image-amd64 is (apt-get update, then retry)"
        kpkg=$(basename "$deb" | cut -d_ -f1)
    fi
    deb=$(ls "$CACHE"/deb/"$kpkg"_*.deb 2>/dev/null | head -1 || true)
    if [[ -z $deb ]]; then
        note "downloading $kpkg (apt-get download; it is unpacked into the cache, not installed)"
        rm -rf "$CACHE/deb"
        mkdir -p "$CACHE/deb"
        chmod 0777 "$CACHE/deb" # apt downloads as its _apt user
        if ! (cd "$CACHE/deb" && apt_get download "$kpkg"); then
            # The lists may name a version the mirror no longer has.
            apt_get update || true
            (cd "$CACHE/deb" && apt_get download "$kpkg") || die "apt-get download $kpkg failed; see $APT_LOG"
        fi
        deb=$(ls "$CACHE"/deb/"$kpkg"_*.deb | head -1)
    fi

    local work
    work=$(mktemp -d "$CACHE/build.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "rm -rf '$work'" EXIT
    local kroot=$work/kroot st=$work/initramfs kver moddir
    mkdir -p "$kroot"
    dpkg-deb -x "$deb" "$kroot"
    kver=$(basename "$(ls -d "$kroot"/lib/modules/*/ | head -1)")
    moddir=$kroot/lib/modules/$kver
    # The package has no modules.dep (depmod runs in its postinst), and the host may have no kmod.
    "$bb" depmod -b "$kroot" "$kver"

    # Staging: the guest's /bin /sbin /lib /lib64 point into /usr as on the host; busybox lives apart in
    # /vm/bin, last on PATH.
    mkdir -p "$st"
    (
        cd "$st"
        mkdir -p vm/bin "vm/modules/$kver" dev proc sys run tmp usr etc root mnt var/tmp
        ln -s usr/bin bin
        ln -s usr/sbin sbin
        ln -s usr/lib lib
        ln -s usr/lib64 lib64
        cp "$bb" vm/bin/busybox
        for a in $("$bb" --list); do [[ $a == busybox ]] || ln -s busybox "vm/bin/$a"; done
        install -m 0755 "$INIT" init
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >etc/passwd
        printf 'root:x:0:\nnogroup:x:65534:\n' >etc/group
        printf '127.0.0.1 localhost\n::1 localhost\n' >etc/hosts
        printf 'passwd: files\ngroup: files\nhosts: files\n' >etc/nsswitch.conf
        echo sockbench-vm >etc/hostname
    )

    # The modules and everything they depend on, dependencies first (the insmod order).
    local -A seen=()
    local order=() boot_order=() m p
    resolve() { # module name -> its path relative to moddir, from modules.dep
        awk -v n="$1" -F: '{p=$1; b=p; sub(/.*\//,"",b); sub(/\.ko(\.[a-z]+)?$/,"",b);
            gsub(/-/,"_",b); m=n; gsub(/-/,"_",m); if (b==m) {print p; exit}}' "$moddir/modules.dep"
    }
    visit() {
        local path=$1 d
        [[ -n ${seen[$path]:-} ]] && return 0
        seen[$path]=1
        for d in $(awk -v p="$path" -F: '$1==p {print $2; exit}' "$moddir/modules.dep"); do visit "$d"; done
        order+=("$path")
    }
    for m in $BOOT_MODULES $NET_MODULES; do
        p=$(resolve "$m")
        if [[ -z $p ]]; then
            grep -q "/${m//_/[_-]}.ko" "$moddir/modules.builtin" 2>/dev/null && continue
            die "kernel $kver has no module $m"
        fi
        visit "$p"
        [[ " $BOOT_MODULES " == *" $m "* ]] && boot_order=("${order[@]}")
    done
    for p in "${order[@]}"; do
        mkdir -p "$st/vm/modules/$kver/$(dirname "$p")"
        cp "$moddir/$p" "$st/vm/modules/$kver/$p"
    done
    cp "$moddir/modules.builtin" "$moddir/modules.order" "$st/vm/modules/$kver/" 2>/dev/null || true
    # busybox depmod wants BASE/lib/modules/VER: a scratch tree for the selected modules only.
    mkdir -p "$work/depmod/lib/modules"
    cp -a "$st/vm/modules/$kver" "$work/depmod/lib/modules/"
    "$bb" depmod -b "$work/depmod" "$kver"
    cp "$work/depmod/lib/modules/$kver"/modules.* "$st/vm/modules/$kver/"
    printf '%s\n' "${boot_order[@]}" >"$st/vm/boot-modules"
    echo "$LOAD_MODULES" >"$st/vm/load-modules"
    echo "$kver" >"$st/vm/kernel-version"

    (cd "$st" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$work/initramfs.cpio"
    cp "$kroot/boot/vmlinuz-$kver" "$work/vmlinuz"
    # The uncompressed ELF kernel has a PVH entry note: QEMU boots it directly, skipping the firmware's
    # bzImage path and the in-guest xz decompression, about 3 s of a 5.5 s boot under TCG.
    local py
    rm -f "$work/vmlinux"
    for py in python3 /usr/bin/python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        "$py" - "$work/vmlinuz" "$work/vmlinux" <<'PY' && break
import lzma, sys
data = open(sys.argv[1], 'rb').read()
i = data.find(b'\xfd7zXZ\x00')
if i < 0:
    sys.exit(1)
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[i:])
if out[:4] != b'\x7fELF':
    sys.exit(1)
open(sys.argv[2], 'wb').write(out)
PY
        rm -f "$work/vmlinux"
    done
    [[ -s $work/vmlinux ]] || note "no uncompressed kernel (python3 with lzma missing?): booting the bzImage, about 3 s slower"

    # Into place; the key last, so a half-built cache is never taken for a built one.
    rm -f "$CACHE/assets.key" "$CACHE/vmlinux"
    [[ -s $work/vmlinux ]] && mv "$work/vmlinux" "$CACHE/vmlinux"
    mv "$work/vmlinuz" "$CACHE/vmlinuz"
    mv "$work/initramfs.cpio" "$CACHE/initramfs.cpio"
    echo "$kver" >"$CACHE/kernel-version"
    asset_key >"$CACHE/assets.key"
    rm -rf "$work"
    trap - EXIT
    note "built: kernel $kver, initramfs $(du -h "$CACHE/initramfs.cpio" | cut -f1), ${#order[@]} modules"
}

cmd_setup() {
    [[ $# -eq 0 ]] || die "setup takes no arguments (see --help)" 2
    local t0 missing
    t0=$(date +%s.%N)
    missing=$(missing_packages)
    if [[ -n $missing ]] || ! assets_ready; then
        mkdir -p "$CACHE"
        APT_LOG=$CACHE/apt.log
        # One setup at a time; a second one waits here, then finds everything done.
        exec 9>"$CACHE/.setup.lock"
        flock -w 1800 9 || die "another 'vm.sh setup' held $CACHE/.setup.lock for 30 minutes"
        missing=$(missing_packages)
        # shellcheck disable=SC2086 # a list of package names
        [[ -z $missing ]] || install_packages $missing
        assets_ready || build_assets
        flock -u 9
    fi
    note "ready in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}') s: kernel $(cat "$CACHE/kernel-version"), cache $CACHE ($(du -sh "$CACHE" | cut -f1))"
}

# ---------------------------------------------------------------- accelerator

# Sets ACCEL (kvm or tcg) and ACCEL_NOTE (the line run prints).
pick_accel() {
    local want=${SOCKBENCH_VM_ACCEL:-auto} why=""
    if [[ ! -e /dev/kvm ]]; then
        why="no /dev/kvm"
    elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
        why="/dev/kvm is not usable by $(id -un)"
    elif [[ -d /sys/module/kvm_pvm ]]; then
        why="/dev/kvm is PVM (kvm_pvm), which runs only PVM guest kernels, not Debian's"
    elif ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
        why="the CPU shows no vmx or svm"
    fi
    case $want in
    auto) [[ -z $why ]] && ACCEL=kvm || ACCEL=tcg ;;
    kvm) ACCEL=kvm ;;
    tcg) ACCEL=tcg why="SOCKBENCH_VM_ACCEL=tcg" ;;
    *) die "SOCKBENCH_VM_ACCEL must be auto, kvm or tcg, not '$want'" 2 ;;
    esac
    if [[ $ACCEL == kvm ]]; then
        ACCEL_NOTE="KVM (hardware virtualisation)"
    else
        ACCEL_NOTE="TCG (software emulation, slower CPU; same kernel and netem): $why"
    fi
}

cmd_check() {
    [[ $# -eq 0 ]] || die "check takes no arguments (see --help)" 2
    local why=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || why+=("qemu-system-x86_64 is missing")
    command -v tc >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 || why+=("ip/tc (iproute2) are missing: the guest runs the host's")
    [[ -x /usr/bin/bash ]] || why+=("/usr/bin/bash is missing: the guest runs the host's")
    assets_ready || why+=("the VM's kernel and initramfs are not built in $CACHE (or are out of date)")
    if [[ ${#why[@]} -gt 0 ]]; then
        local w
        for w in "${why[@]}"; do echo "$PROG: cannot run a VM here: $w" >&2; done
        echo "$PROG: fix: sudo scripts/vm.sh setup" >&2
        exit 3
    fi
    pick_accel
    echo "a VM can run here: kernel $(cat "$CACHE/kernel-version"), $ACCEL_NOTE"
}

# ---------------------------------------------------------------- run

RUN="" QPID="" CATPID=""
cleanup() {
    set +e # every step runs, whatever the one before did
    local qp=""
    [[ -n $RUN && -s $RUN/qemu.pid ]] && qp=$(cat "$RUN/qemu.pid" 2>/dev/null)
    # Only if that PID is still our QEMU (its command line names our run directory).
    if [[ $qp =~ ^[0-9]+$ ]] && ! tr '\0' ' ' <"/proc/$qp/cmdline" 2>/dev/null | grep -F "$RUN/" >/dev/null; then qp=""; fi
    # timeout(1) passes TERM on to QEMU; QEMU gets 3 s to go, then SIGKILL by its own PID.
    if [[ -n $QPID ]]; then kill -TERM "$QPID" 2>/dev/null; fi
    if [[ -n $qp ]]; then
        kill -TERM "$qp" 2>/dev/null
        for _ in $(seq 30); do
            [[ -d /proc/$qp ]] || break
            sleep 0.1
        done
        kill -KILL "$qp" 2>/dev/null
    fi
    if [[ -n $CATPID ]]; then kill "$CATPID" 2>/dev/null; fi
    if [[ -n $RUN ]]; then
        if [[ ${KEEP:-0} -eq 1 ]]; then note "kept $RUN"; else rm -rf "$RUN"; fi
    fi
    return 0
}

cmd_run() {
    local mem=$DEFAULT_MEM timeout=$DEFAULT_TIMEOUT smp timings=0 console=0 shares=() envs=()
    KEEP=0
    smp=$(($(nproc) >= 2 ? 2 : 1))
    while [[ $# -gt 0 ]]; do
        case $1 in
        --) shift; break ;;
        --timings) timings=1; shift; continue ;;
        --console) console=1; shift; continue ;;
        --keep) KEEP=1; shift; continue ;;
        -h | --help) usage; exit 0 ;;
        --mem | --timeout | --smp | --share | -e) ;;
        *) die "unknown option '$1' for run (the command comes after --; see --help)" 2 ;;
        esac
        [[ $# -ge 2 ]] || die "$1 needs a value (see --help)" 2
        case $1 in
        --mem) mem=$2 ;;
        --timeout) timeout=$2 ;;
        --smp) smp=$2 ;;
        --share) shares+=("$2") ;;
        -e) envs+=("$2") ;;
        esac
        shift 2
    done
    [[ $# -gt 0 ]] || die "run needs a command after --, e.g. $PROG run -- target/release/sockbench --version" 2
    [[ $mem =~ ^[0-9]+$ ]] && ((mem >= 96 && mem <= 65536)) || die "--mem must be 96..65536 (MB), not '$mem'" 2
    [[ $timeout =~ ^[0-9]+$ ]] && ((timeout >= 1)) || die "--timeout must be a whole number of seconds, not '$timeout'" 2
    [[ $smp =~ ^[0-9]+$ ]] && ((smp >= 1 && smp <= 64)) || die "--smp must be 1..64, not '$smp'" 2
    local e
    for e in "${envs[@]}"; do
        [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "-e needs NAME=VALUE, not '$e'" 2
    done
    command -v qemu-system-x86_64 >/dev/null 2>&1 || die "qemu-system-x86_64 is missing: run scripts/vm.sh setup" 125
    assets_ready || die "the VM is not set up (or init.sh changed since): run scripts/vm.sh setup" 125
    pick_accel

    RUN=$(mktemp -d "${TMPDIR:-/tmp}/sockbench-vm.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    mkdir -p "$RUN/ctl"

    # Shares: the repository read-write, then --share; each at its host path. Parents mount first.
    local fsargs=() n=0 s dir mode cwd
    : >"$RUN/ctl/mounts.unsorted"
    for s in "$REPO" "${shares[@]}"; do
        mode=rw
        [[ $s == *:ro ]] && { mode=ro; s=${s%:ro}; }
        [[ $s == *:rw ]] && s=${s%:rw}
        dir=$(cd "$s" 2>/dev/null && pwd -P) || die "--share: no such directory '$s'" 2
        [[ $dir =~ ^/[A-Za-z0-9._/+@-]*$ ]] || die "--share: '$dir' has characters 9p mount lines cannot carry (use letters, digits, ._+@-)" 2
        case $dir/ in
        / | /proc/* | /sys/* | /dev/* | /vm/* | /usr/ | /run/vmctl/*) die "--share: $dir cannot be shared at the same path in the guest" 2 ;;
        esac
        n=$((n + 1))
        local ro="" cache=mmap
        [[ $mode == ro ]] && { ro=",readonly=on"; cache=loose; }
        fsargs+=(-fsdev "local,id=fs$n,path=$dir,security_model=none,multidevs=remap$ro"
            -device "virtio-9p-pci,fsdev=fs$n,mount_tag=sh$n")
        echo "sh$n $dir $mode $cache" >>"$RUN/ctl/mounts.unsorted"
    done
    # The host's /usr/bin/awk and friends are symlinks through /etc/alternatives: share it too (read-only),
    # else they dangle and busybox's applets answer instead.
    if [[ -d /etc/alternatives ]]; then
        fsargs+=(-fsdev "local,id=fsalt,path=/etc/alternatives,security_model=none,readonly=on"
            -device "virtio-9p-pci,fsdev=fsalt,mount_tag=alternatives")
        echo "alternatives /etc/alternatives ro loose" >>"$RUN/ctl/mounts.unsorted"
    fi
    awk '{print length($2), $0}' "$RUN/ctl/mounts.unsorted" | sort -n | cut -d' ' -f2- >"$RUN/ctl/mounts"
    rm -f "$RUN/ctl/mounts.unsorted"

    cwd=$(pwd -P)
    case $cwd/ in "$REPO"/*) ;; *) cwd=$REPO ;; esac
    {
        echo "# written by scripts/vm.sh"
        for e in "${envs[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
        printf 'cd -- %q || exit 126\n' "$cwd"
        printf 'exec'
        printf ' %q' "$@"
        printf '\n'
    } >"$RUN/ctl/cmd"

    # hvc0 -> our stdout (the stdio chardev); hvc1 -> a FIFO drained by a cat that holds our fd 2 (QEMU
    # reopening /proc/self/fd/2 would make a second file description: two writers overwriting each other).
    mkfifo "$RUN/stderr.fifo"
    cat "$RUN/stderr.fifo" >&2 &
    CATPID=$!
    local kernel=$CACHE/vmlinux accel_args cpu
    [[ -s $kernel ]] || kernel=$CACHE/vmlinuz
    if [[ $ACCEL == kvm ]]; then
        accel_args=kvm cpu=host
    else
        accel_args=tcg,thread=multi,tb-size=128 cpu=max
    fi
    local append="console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init mitigations=off random.trust_cpu=on
i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd cryptomgr.notests"
    # -M pc, not microvm: under TCG microvm has no usable clocksource but jiffies (4 ms), useless for netem.
    local qemu=(qemu-system-x86_64 -accel "$accel_args" -cpu "$cpu" -M pc -m "$mem" -smp "$smp"
        -nodefaults -no-user-config -display none -nic none -no-reboot
        -kernel "$kernel" -initrd "$CACHE/initramfs.cpio" -append "${append//$'\n'/ } ${SOCKBENCH_VM_APPEND:-}"
        -pidfile "$RUN/qemu.pid" -serial "file:$RUN/console.log"
        -device virtio-serial-pci -chardev stdio,id=hout,signal=off -device virtconsole,chardev=hout
        -chardev "file,id=herr,path=$RUN/stderr.fifo" -device virtconsole,chardev=herr
        -fsdev "local,id=fsctl,path=$RUN/ctl,security_model=none" -device virtio-9p-pci,fsdev=fsctl,mount_tag=vmctl
        -fsdev "local,id=fsusr,path=/usr,security_model=none,multidevs=remap,readonly=on"
        -device virtio-9p-pci,fsdev=fsusr,mount_tag=hostusr
        "${fsargs[@]}")
    printf '%q ' "${qemu[@]}" >"$RUN/qemu-cmdline"

    note "$ACCEL_NOTE"
    local t0 t1 qrc=0
    t0=$(date +%s.%N)
    timeout -k 5 "$timeout" "${qemu[@]}" </dev/null &
    QPID=$!
    wait "$QPID" || qrc=$?
    QPID=""
    t1=$(date +%s.%N)
    # The cat ends when QEMU closes the FIFO; if QEMU died before opening it, cat still waits in open().
    for _ in $(seq 10); do
        [[ -d /proc/$CATPID ]] || break
        sleep 0.2
    done
    kill "$CATPID" 2>/dev/null || true
    wait "$CATPID" 2>/dev/null || true
    CATPID=""

    if [[ $timings -eq 1 ]]; then
        local started=""
        [[ -f $RUN/ctl/started ]] && started=$(stat -c %.9Y "$RUN/ctl/started")
        awk -v t0="$t0" -v t1="$t1" -v s="$started" -v a="$ACCEL" -v m="$mem" -v c="$smp" 'BEGIN {
            printf "vm.sh: timings: boot to command %s s, total %.2f s (%s, %s MB, %s CPUs)\n",
                (s == "" ? "?" : sprintf("%.2f", s - t0)), t1 - t0, a, m, c }' >&2
    fi
    [[ $console -eq 1 ]] && { echo "---- guest console ----" >&2; cat "$RUN/console.log" >&2 || true; }
    if [[ -f $RUN/ctl/exit ]]; then
        exit "$(cat "$RUN/ctl/exit")"
    fi
    local rc
    if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
        note "the VM hit the ${timeout} s timeout (--timeout); stopped"
        rc=124
    else
        note "the VM ended (qemu exit $qrc) without the command's exit code"
        [[ -f $RUN/ctl/init-error ]] && cat "$RUN/ctl/init-error" >&2
        echo "---- guest console (last 30 lines) ----" >&2
        tail -n 30 "$RUN/console.log" >&2 || true
        rc=125
    fi
    exit $rc
}

case ${1:-} in
setup) shift; cmd_setup "$@" ;;
check) shift; cmd_check "$@" ;;
run) shift; cmd_run "$@" ;;
-h | --help | help) usage ;;
"") usage >&2; exit 2 ;;
*) die "unknown command '$1' (setup, check or run; see --help)" 2 ;;
esac
