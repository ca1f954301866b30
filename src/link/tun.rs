//! TUN devices (IFF_TUN | IFF_NO_PI: raw IP packets, no offloads) and network-namespace helpers.
//!
//! A TUN device is created in the network namespace of the *thread* that opens it, so
//! [`TunDevice::open_in_netns`] opens it from a short-lived thread that first `setns()`s into
//! the target namespace. The device lives as long as the returned fd (non-persistent), so
//! dropping the [`TunDevice`] removes it. Threads spawned from a thread that has entered a
//! namespace inherit that namespace (clone(2) without CLONE_NEWNET shares the caller's
//! namespaces; tested in `lab.rs`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;

use anyhow::{bail, Context};

use crate::sys;

/// Where `ip netns add` puts namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// One open TUN device. Reads and writes whole IP packets.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
    name: String,
}

impl TunDevice {
    /// Create (or attach to) TUN device `name` in the calling thread's network namespace.
    /// The fd is non-blocking; use `poll` before reading.
    pub fn open(name: &str) -> io::Result<TunDevice> {
        Ok(TunDevice {
            file: sys::tun::open_tun(name)?,
            name: name.to_string(),
        })
    }

    /// Create TUN device `name` inside network namespace `netns` (a name under /run/netns),
    /// or in this process's namespace when `netns` is `None`.
    pub fn open_in_netns(name: &str, netns: Option<&str>) -> anyhow::Result<TunDevice> {
        let name_owned = name.to_string();
        let ns = netns.map(str::to_string);
        let res = std::thread::spawn(move || -> anyhow::Result<TunDevice> {
            if let Some(ns) = &ns {
                enter_netns(ns)?;
            }
            TunDevice::open(&name_owned).map_err(|e| tun_error(&name_owned, e))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread opening TUN device {name} panicked"))?;
        res.with_context(|| match netns {
            Some(ns) => format!("in network namespace {ns}"),
            None => "in this network namespace".to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn tun_error(name: &str, e: io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => anyhow::anyhow!(
            "cannot open /dev/net/tun ({e}): load the tun module (modprobe tun) or, in a container, pass the device (--device /dev/net/tun)"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => anyhow::anyhow!(
            "cannot create TUN device {name} ({e}): needs CAP_NET_ADMIN; run as root (sudo) or grant the capability"
        ),
        Some(libc::EBUSY) => anyhow::anyhow!(
            "cannot create TUN device {name} ({e}): an interface of that name is in use; pick another with --a-dev/--b-dev"
        ),
        _ => anyhow::anyhow!("cannot create TUN device {name}: {e}"),
    }
}

/// Move the calling thread into network namespace `name` (from /run/netns). Only this thread
/// moves; threads it spawns afterwards start in the same namespace.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = format!("{NETNS_DIR}/{name}");
    let f = File::open(&path).with_context(|| {
        format!("cannot open network namespace {path} (does it exist? `ip netns list`)")
    })?;
    if let Err(e) = sys::netns::enter_netns(&f) {
        bail!("cannot enter network namespace {name}: {e} (needs CAP_SYS_ADMIN; run as root)");
    }
    Ok(())
}

/// Run `ip [-n netns] args...`, turning a failure into an error that shows the command.
pub fn ip(netns: Option<&str>, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    let out = cmd.output().context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}{}` failed: {}",
            netns.map(|n| format!("-n {n} ")).unwrap_or_default(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Give a TUN device its address, MTU 1500 and a deep enough device queue, no IPv6 link-local
/// address (so the link carries only the traffic under test), and bring it up.
pub fn configure(netns: Option<&str>, dev: &str, addr_cidr: &str) -> anyhow::Result<()> {
    ip(
        netns,
        &[
            "link",
            "set",
            "dev",
            dev,
            "mtu",
            "1500",
            "txqueuelen",
            "10000",
        ],
    )?;
    // Older iproute2 lacks addrgenmode; it only keeps IPv6 chatter off the link.
    let _ = ip(netns, &["link", "set", "dev", dev, "addrgenmode", "none"]);
    ip(netns, &["addr", "add", addr_cidr, "dev", dev])?;
    ip(netns, &["link", "set", "dev", dev, "up"])?;
    Ok(())
}

/// Why this process cannot build TUN links, or `Ok(())`. One line each, with the fix.
pub fn check_privileges() -> Result<(), String> {
    if !has_cap_net_admin() {
        return Err(
            "needs CAP_NET_ADMIN (to create TUN devices and namespaces): run as root, e.g. with sudo".into(),
        );
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(
            "/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, pass --device /dev/net/tun".into(),
        );
    }
    Ok(())
}

/// CAP_NET_ADMIN (bit 12) in the effective set, from /proc/self/status.
pub fn has_cap_net_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return sys::is_root();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}
