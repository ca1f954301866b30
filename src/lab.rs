//! A private two-host lab inside this process: two network namespaces (`sb-<pid>-<n>-a`, `-b`)
//! joined by one of two engines: TUN devices and the userspace link emulator, or a veth pair with
//! `tc netem` on it ([`netem`]).
//!
//! Host A has 198.18.0.1/30 and host B 198.18.0.2/30 (RFC 2544 benchmarking space) on
//! `sbtun0` (emulator) or `sbveth0` (netem); `lo` is up in both. [`Lab::spawn_in`] runs a closure on
//! a new thread that has entered one host's namespace; sockets it creates live there, and threads it
//! spawns start in that namespace too (threads share the creating thread's namespaces; see the
//! `threads_inherit_namespace` test). Everything is removed by [`Lab::down`] or on drop, even
//! when a test panics; [`cleanup_stale`] removes what a killed process left behind.

pub mod netem;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;

use crate::link::tun::{self, TunDevice, NETNS_DIR};
use crate::link::{Impairment, Link, LinkCounters};
use crate::traffic::Protocol;

pub use netem::NetemCounters;

/// Address of host A.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of host B.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Prefix length of the point-to-point subnet.
pub const PREFIX_LEN: u8 = 30;
/// The TUN device in each namespace (emulator engine).
pub const DEV: &str = "sbtun0";

/// The receiver's port for compare's TCP session in the lab, and for its UDP session (whose control
/// connection is TCP on the same number). Fixed, because netem's filters steer by them; the namespaces are
/// the lab's own, so nothing else can hold them.
pub const TCP_PORT: u16 = 5300;
pub const UDP_PORT: u16 = 5301;

/// The receiver's port for a session of `proto` in the lab.
pub fn data_port(proto: Protocol) -> u16 {
    match proto {
        Protocol::Tcp => TCP_PORT,
        Protocol::Udp => UDP_PORT,
    }
}

/// What joins the lab's two hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    /// Two TUN devices and sockbench's userspace link emulator (needs /dev/net/tun).
    #[default]
    Emulator,
    /// A veth pair with `tc netem` on the sending end (needs sch_netem).
    Netem,
}

impl Engine {
    /// As on the command line (`--engine`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Emulator => "emulator",
            Engine::Netem => "netem",
        }
    }
}

/// What the lab's link does.
#[derive(Debug, Clone, Default)]
pub struct LabConfig {
    pub a_to_b: Impairment,
    pub b_to_a: Impairment,
    /// The emulator's seed (netem draws its own random numbers).
    pub seed: u64,
    pub engine: Engine,
    /// --load: netem takes TCP to the UDP session's port too (its bulk flows).
    pub load: bool,
}

/// One of the two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    A,
    B,
}

/// What the link counted, in the terms of its engine (both write `link.csv`).
#[derive(Debug, Clone, PartialEq)]
pub enum GroundTruth {
    Emulator(LinkCounters),
    Netem(NetemCounters),
}

impl GroundTruth {
    /// Write `link.csv` (the emulator's schema; netem leaves the cells it cannot fill empty).
    pub fn write_csv(
        &self,
        path: &std::path::Path,
        run_id: &str,
        label: &str,
    ) -> anyhow::Result<()> {
        match self {
            GroundTruth::Emulator(c) => c.write_csv(path, run_id, label),
            GroundTruth::Netem(c) => crate::report::export::write_file(path, &c.csv(run_id, label)),
        }
    }
}

enum Wire {
    Emulator(Link),
    Netem(Box<NetemState>),
}

/// The netem engine's state: the veth pair and the tc tree die with the namespaces.
struct NetemState {
    /// a_to_b, b_to_a.
    imps: [Impairment; 2],
    /// The session whose port netem impairs now.
    steered: Option<Protocol>,
    /// --load: TCP to a UDP session's port goes through its netem too.
    load: bool,
    /// The counters of finished sessions' netems, per direction: (TCP's, UDP's).
    done: [(Option<netem::QdiscStats>, Option<netem::QdiscStats>); 2],
}

impl NetemState {
    /// Does direction `i` get a netem? The data direction always (an unimpaired netem still counts, as the
    /// emulator does), the other one when it is impaired.
    fn counted(&self, i: usize) -> bool {
        i == 0 || !self.imps[i].is_none()
    }
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A running lab. Drop tears it down.
pub struct Lab {
    names: [String; 2],
    /// Namespaces created so far (removed on teardown).
    created: Vec<String>,
    wire: Option<Wire>,
    final_counts: LinkCounters,
}

impl Lab {
    /// `Ok(())` if this process can build a lab with the emulator; otherwise what is missing and what to do.
    pub fn available() -> Result<(), String> {
        Lab::privileged()?;
        Lab::engine_available(Engine::Emulator)
    }

    /// `Ok(())` if this process may build namespaces (CAP_NET_ADMIN) and has `ip`; otherwise what is missing
    /// and what to do.
    pub fn privileged() -> Result<(), String> {
        if !tun::has_cap_net_admin() {
            return Err(
                "needs CAP_NET_ADMIN (to create namespaces and devices): run as root, e.g. with sudo".into(),
            );
        }
        match std::process::Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err("the `ip` command (iproute2) is missing: apt-get install iproute2".into()),
        }
    }

    /// `Ok(())` if `engine` can run here (given the privilege); otherwise what is missing, as a phrase.
    pub fn engine_available(engine: Engine) -> Result<(), String> {
        match engine {
            Engine::Emulator => tun::check_privileges(),
            Engine::Netem => netem::available(),
        }
    }

    /// Create both namespaces and join them with the engine's link.
    pub fn up(cfg: LabConfig) -> anyhow::Result<Lab> {
        Lab::privileged()
            .and_then(|()| Lab::engine_available(cfg.engine))
            .map_err(anyhow::Error::msg)?;
        let _ = cleanup_stale();
        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut lab = Lab {
            names: [format!("sb-{pid}-{n}-a"), format!("sb-{pid}-{n}-b")],
            created: Vec::new(),
            wire: None,
            final_counts: LinkCounters::default(),
        };
        // From here on, an early return drops `lab`, which removes what was made.
        for name in lab.names.clone() {
            tun::ip(None, &["netns", "add", &name])?;
            lab.created.push(name.clone());
            tun::ip(Some(&name), &["link", "set", "dev", "lo", "up"])?;
        }
        let (a_addr, b_addr) = (
            format!("{ADDR_A}/{PREFIX_LEN}"),
            format!("{ADDR_B}/{PREFIX_LEN}"),
        );
        match cfg.engine {
            Engine::Emulator => {
                let ta = TunDevice::open_in_netns(DEV, Some(&lab.names[0]))?;
                let tb = TunDevice::open_in_netns(DEV, Some(&lab.names[1]))?;
                tun::configure(Some(&lab.names[0]), DEV, &a_addr)?;
                tun::configure(Some(&lab.names[1]), DEV, &b_addr)?;
                lab.wire = Some(Wire::Emulator(
                    Link::start(ta, tb, cfg.a_to_b, cfg.b_to_a, cfg.seed)
                        .context("cannot start the link")?,
                ));
            }
            Engine::Netem => {
                netem::build(&lab.names[0], &lab.names[1], &a_addr, &b_addr)?;
                lab.wire = Some(Wire::Netem(Box::new(NetemState {
                    imps: [cfg.a_to_b, cfg.b_to_a],
                    steered: None,
                    load: cfg.load,
                    done: [(None, None), (None, None)],
                })));
                // compare's first session; [`Lab::steer`] moves netem to the next one.
                lab.steer(Protocol::Tcp)?;
            }
        }
        Ok(lab)
    }

    /// The engine joining the hosts.
    pub fn engine(&self) -> Engine {
        match self.wire {
            Some(Wire::Netem(_)) => Engine::Netem,
            _ => Engine::Emulator,
        }
    }

    /// The host's address on the lab link.
    pub fn addr(&self, h: Host) -> IpAddr {
        IpAddr::V4(match h {
            Host::A => ADDR_A,
            Host::B => ADDR_B,
        })
    }

    /// The host's network namespace name (usable with `ip netns exec`).
    pub fn ns_name(&self, h: Host) -> &str {
        match h {
            Host::A => &self.names[0],
            Host::B => &self.names[1],
        }
    }

    /// Run `f` on a new thread inside host `h`'s network namespace (only that thread moves).
    /// Sockets it makes belong to that host; threads it spawns start there as well.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        h: Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<anyhow::Result<T>> {
        let ns = self.ns_name(h).to_string();
        std::thread::spawn(move || {
            tun::enter_netns(&ns)?;
            Ok(f())
        })
    }

    /// Live counters of the emulator's link (`None` with netem: see [`Lab::counters`]).
    pub fn link_counters(&self) -> Option<LinkCounters> {
        match &self.wire {
            Some(Wire::Emulator(l)) => Some(l.counters()),
            Some(Wire::Netem(_)) => None,
            None => Some(self.final_counts.clone()),
        }
    }

    /// With netem: impair the session of `proto` from now on (its port; see [`netem`]), keeping the counts of
    /// the session before. A no-op with the emulator, which impairs everything and counts per protocol.
    pub fn steer(&mut self, proto: Protocol) -> anyhow::Result<()> {
        let Lab { names, wire, .. } = self;
        let Some(Wire::Netem(st)) = wire else {
            return Ok(());
        };
        if st.steered == Some(proto) {
            return Ok(());
        }
        // Direction i leaves host i: a_to_b from A (the sender), b_to_a from B (the receiver).
        for (i, ns) in names.iter().enumerate() {
            if !st.counted(i) {
                continue;
            }
            if let Some(prev) = st.steered {
                let stats = Some(netem::read_stats(ns)?);
                match prev {
                    Protocol::Tcp => st.done[i].0 = stats,
                    Protocol::Udp => st.done[i].1 = stats,
                }
            }
            let how = (st.steered.is_some(), st.load);
            netem::steer(ns, &st.imps[i], i == 1, proto, how)?;
        }
        st.steered = Some(proto);
        Ok(())
    }

    /// What the link has counted so far: the emulator's counters, or netem's (the running session's read
    /// with `tc`).
    pub fn counters(&self) -> anyhow::Result<GroundTruth> {
        let Some(Wire::Netem(st)) = &self.wire else {
            return Ok(GroundTruth::Emulator(
                self.link_counters().unwrap_or_default(),
            ));
        };
        let mut dirs: [Option<netem::NetemDirection>; 2] = [None, None];
        for (i, ns) in self.names.iter().enumerate() {
            if !st.counted(i) {
                continue;
            }
            let (mut tcp, mut udp) = st.done[i];
            let live = st.steered.map(|p| netem::read_stats(ns).map(|s| (p, s)));
            match live.transpose()? {
                Some((Protocol::Tcp, s)) => tcp = Some(s),
                Some((Protocol::Udp, s)) => udp = Some(s),
                None => {}
            }
            dirs[i] = Some(netem::NetemDirection {
                impairment: st.imps[i].clone(),
                tcp,
                udp,
            });
        }
        Ok(GroundTruth::Netem(NetemCounters { dirs }))
    }

    /// Stop the link and remove both namespaces; returns the emulator's final counts (empty with netem,
    /// whose counts [`Lab::finish`] returns).
    pub fn down(mut self) -> LinkCounters {
        self.teardown();
        self.final_counts.clone()
    }

    /// Stop the link and remove both namespaces; returns what the link counted, in its engine's terms.
    pub fn finish(mut self) -> anyhow::Result<GroundTruth> {
        // netem's counters go with its namespace: read them first (the teardown runs on drop anyway).
        if let Some(Wire::Netem(_)) = &self.wire {
            return self.counters();
        }
        self.teardown();
        Ok(GroundTruth::Emulator(self.final_counts.clone()))
    }

    /// Idempotent: stop the link (closing the TUN fds removes the devices), delete namespaces (the veth
    /// pair and its qdiscs go with them).
    fn teardown(&mut self) {
        if let Some(Wire::Emulator(link)) = self.wire.take() {
            self.final_counts = link.stop();
        }
        for name in self.created.drain(..) {
            if let Err(e) = tun::ip(None, &["netns", "del", &name]) {
                eprintln!("sockbench lab: could not remove namespace {name}: {e:#}");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Parse a lab namespace name `sb-<pid>-<n>-a|b` into its owner pid.
fn lab_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("sb-")?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let _n: u32 = parts.next()?.parse().ok()?;
    let side = parts.next()?;
    (parts.next().is_none() && (side == "a" || side == "b")).then_some(pid)
}

/// Remove lab namespaces whose owning process is gone. Returns the names removed.
pub fn cleanup_stale() -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).with_context(|| format!("cannot list {NETNS_DIR}")),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = lab_owner(&name) else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        tun::ip(None, &["netns", "del", &name])?;
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Direction, Proto};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::time::{Duration, Instant};

    /// Lab tests run one at a time: `Lab::up` removes stale namespaces, which must not race
    /// with the test that fakes one.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Root-only tests: skip loudly, or fail when CI=true. Hold the guard for the whole test.
    fn lab_or_skip(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
        match Lab::available() {
            Ok(()) => Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner())),
            Err(why) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{test}: lab unavailable under CI: {why}");
                }
                eprintln!("SKIPPED {test}: {why}");
                None
            }
        }
    }

    /// SO_RCVBUFFORCE (root): a receive buffer above rmem_max, so a starved receiver thread
    /// on a busy machine does not lose datagrams after the link.
    fn force_rcvbuf(s: &UdpSocket, bytes: usize) -> std::io::Result<()> {
        crate::sys::socket::SockOpt::RcvBufForce(bytes).set(s)
    }

    /// The `Udp:` lines of this thread's namespace's /proc/net/snmp (InDatagrams, RcvbufErrors...).
    fn udp_snmp() -> String {
        std::fs::read_to_string("/proc/thread-self/net/snmp")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Udp:"))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn netns_exists(name: &str) -> bool {
        std::path::Path::new(NETNS_DIR).join(name).exists()
    }

    #[test]
    fn owner_parse() {
        assert_eq!(lab_owner("sb-123-0-a"), Some(123));
        assert_eq!(lab_owner("sb-123-7-b"), Some(123));
        assert_eq!(lab_owner("sb-lab-a"), None);
        assert_eq!(lab_owner("sb-123-0-c"), None);
        assert_eq!(lab_owner("sb-123-0-a-x"), None);
    }

    #[test]
    fn udp_loss_receiver_matches_forwarded() {
        let Some(_serial) = lab_or_skip("udp_loss_receiver_matches_forwarded") else {
            return;
        };
        let cfg = LabConfig {
            a_to_b: Impairment {
                loss: 0.05,
                ..Default::default()
            },
            seed: 1,
            ..Default::default()
        };
        let lab = Lab::up(cfg).unwrap();
        let names = [
            lab.ns_name(Host::A).to_string(),
            lab.ns_name(Host::B).to_string(),
        ];
        let dst = SocketAddr::new(lab.addr(Host::B), 9000);
        let recv_sock = lab
            .spawn_in(Host::B, move || -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind(dst)?;
                force_rcvbuf(&s, 8 << 20)?;
                Ok(s)
            })
            .join()
            .unwrap()
            .unwrap()
            .unwrap();
        recv_sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut got = 0u64;
            while recv_sock.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        const N: u32 = 2000;
        let sender = lab.spawn_in(Host::A, move || -> std::io::Result<()> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            let start = Instant::now();
            for i in 0..N {
                let mut msg = [0u8; 64];
                msg[..4].copy_from_slice(&i.to_be_bytes());
                s.send_to(&msg, dst)?;
                // Pace at about 20k/s so nothing is lost before or after the link.
                if i % 20 == 19 {
                    let due = Duration::from_micros(50) * (i + 1);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            Ok(())
        });
        sender.join().unwrap().unwrap().unwrap();
        let got = receiver.join().unwrap();
        let c = lab
            .link_counters()
            .unwrap()
            .get(Direction::AtoB, Proto::Udp);
        eprintln!("sent {N}, received {got}, link: {c:?}");
        assert_eq!(c.entered, u64::from(N), "all datagrams entered the link");
        let snmp = lab.spawn_in(Host::B, udp_snmp).join().unwrap().unwrap();
        assert_eq!(
            got, c.forwarded,
            "receiver count equals the link's forwarded; B's UDP MIB: {snmp}"
        );
        assert_eq!(c.forwarded + c.dropped, u64::from(N));
        assert!((60..=140).contains(&c.dropped), "about 5% dropped: {c:?}");
        let fin = lab.down();
        assert_eq!(fin.get(Direction::AtoB, Proto::Udp).forwarded, got);
        for n in &names {
            assert!(!netns_exists(n), "{n} left behind");
        }
    }

    #[test]
    fn tcp_udp_and_ping_both_ways() {
        let Some(_serial) = lab_or_skip("tcp_udp_and_ping_both_ways") else {
            return;
        };
        let lab = Lab::up(LabConfig {
            seed: 2,
            ..Default::default()
        })
        .unwrap();
        let b = SocketAddr::new(lab.addr(Host::B), 9001);
        let listener = lab
            .spawn_in(Host::B, move || TcpListener::bind(b))
            .join()
            .unwrap()
            .unwrap()
            .unwrap();
        let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let (mut c, _) = listener.accept()?;
            let mut v = Vec::new();
            c.read_to_end(&mut v)?;
            c.write_all(b"thanks")?;
            Ok(v)
        });
        let client = lab.spawn_in(Host::A, move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Write};
            let mut s = TcpStream::connect_timeout(&b, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(&vec![7u8; 100_000])?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut r = Vec::new();
            s.read_to_end(&mut r)?;
            Ok(r)
        });
        assert_eq!(client.join().unwrap().unwrap().unwrap(), b"thanks");
        assert_eq!(server.join().unwrap().unwrap(), vec![7u8; 100_000]);

        // UDP from B to A.
        let a = SocketAddr::new(lab.addr(Host::A), 9002);
        let ua = lab
            .spawn_in(Host::A, move || UdpSocket::bind(a))
            .join()
            .unwrap()
            .unwrap()
            .unwrap();
        ua.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        lab.spawn_in(Host::B, move || {
            UdpSocket::bind("0.0.0.0:0")?.send_to(b"hi", a)
        })
        .join()
        .unwrap()
        .unwrap()
        .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(ua.recv(&mut buf).unwrap(), 2);

        // ping, if the binary is here.
        let ping = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.ns_name(Host::A),
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
            ])
            .arg(lab.addr(Host::B).to_string())
            .output();
        match ping {
            Ok(o) if o.status.success() => {
                let c = lab.link_counters().unwrap();
                assert_eq!(c.get(Direction::AtoB, Proto::Icmp).forwarded, 2);
                assert_eq!(c.get(Direction::BtoA, Proto::Icmp).forwarded, 2);
            }
            Ok(o) => eprintln!(
                "ping not checked: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("ping not checked: {e}"),
        }
        let c = lab.down();
        assert!(c.get(Direction::AtoB, Proto::Tcp).forwarded > 60);
        assert!(c.get(Direction::BtoA, Proto::Tcp).forwarded > 10);
        assert_eq!(c.get(Direction::BtoA, Proto::Udp).forwarded, 1);
    }

    #[test]
    fn threads_inherit_namespace() {
        let Some(_serial) = lab_or_skip("threads_inherit_namespace") else {
            return;
        };
        let lab = Lab::up(LabConfig::default()).unwrap();
        let own = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let (outer, inner) = lab
            .spawn_in(Host::A, || {
                let outer = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
                let inner =
                    std::thread::spawn(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
                        .join()
                        .unwrap();
                (outer, inner)
            })
            .join()
            .unwrap()
            .unwrap();
        assert_ne!(own, outer, "spawn_in thread is in the lab namespace");
        assert_eq!(outer, inner, "its child thread inherits the namespace");
        let names = [
            lab.ns_name(Host::A).to_string(),
            lab.ns_name(Host::B).to_string(),
        ];
        drop(lab);
        for n in &names {
            assert!(!netns_exists(n));
        }
    }

    #[test]
    fn panicking_test_still_cleans_up() {
        let Some(_serial) = lab_or_skip("panicking_test_still_cleans_up") else {
            return;
        };
        let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let n2 = names.clone();
        let r = std::panic::catch_unwind(move || {
            let lab = Lab::up(LabConfig::default()).unwrap();
            n2.lock().unwrap().push(lab.ns_name(Host::A).to_string());
            n2.lock().unwrap().push(lab.ns_name(Host::B).to_string());
            panic!("boom");
        });
        assert!(r.is_err());
        for n in names.lock().unwrap().iter() {
            assert!(!netns_exists(n), "{n} survived a panic");
        }
    }

    #[test]
    fn stale_namespaces_are_removed() {
        let Some(_serial) = lab_or_skip("stale_namespaces_are_removed") else {
            return;
        };
        // A pid above pid_max cannot be running.
        let name = "sb-4194305-0-a";
        tun::ip(None, &["netns", "add", name]).unwrap();
        // (A lab starting in a parallel test may clean it up first; either way it must go.)
        let _ = cleanup_stale().unwrap();
        assert!(!netns_exists(name));
    }
}
