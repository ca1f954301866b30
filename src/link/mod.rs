//! The userspace link emulator: two TUN devices joined by one forwarding thread per direction,
//! each impairing packets like `tc netem` (loss, Gilbert-Elliott bursts, delay and jitter,
//! reordering, duplication, corruption, rate limit with a tail-dropping queue) and counting
//! exactly what it did (see [`counters`] for the ground-truth definitions).
//!
//! Used because some kernels (like the one this was built on) have no `sch_netem`.

pub mod counters;
pub mod impair;
pub mod packet;
mod pipeline;
pub mod tun;

use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub use counters::{Counts, LinkCounters};
pub use impair::{GilbertElliott, ImpairArgs, Impairment, JitterDist};
pub use tun::TunDevice;

use counters::SharedCounters;
use pipeline::{Pipeline, BUF_SIZE};

use crate::sys::wait_readable;

/// Direction through the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    AtoB,
    BtoA,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::AtoB, Direction::BtoA];
    /// As written in `link.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::AtoB => "a_to_b",
            Direction::BtoA => "b_to_a",
        }
    }
}

/// IP protocol class of a packet (ICMPv6 counts as `Icmp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Other,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other];
    /// As written in `link.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Other => "other",
        }
    }
}

/// Longest a forwarding thread sleeps before it looks at the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Packets read per wake-up before the delay line is serviced again.
const READ_BATCH: usize = 64;

/// A running emulator between two open TUN devices.
pub struct Link {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<SharedCounters>,
    _a: Arc<TunDevice>,
    _b: Arc<TunDevice>,
}

impl Link {
    /// Start forwarding: packets read from `a` are impaired with `a_to_b` and written to `b`,
    /// and the other way round. `seed` makes the impairment decisions repeatable.
    pub fn start(
        a: TunDevice,
        b: TunDevice,
        a_to_b: Impairment,
        b_to_a: Impairment,
        seed: u64,
    ) -> anyhow::Result<Link> {
        let a = Arc::new(a);
        let b = Arc::new(b);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::default());
        let t0 = Instant::now();
        let mut threads = Vec::new();
        let mut s = seed;
        let seeds = [
            crate::traffic::splitmix64(&mut s),
            crate::traffic::splitmix64(&mut s),
        ];
        for (dir, src, dst, cfg, dseed) in [
            (Direction::AtoB, &a, &b, a_to_b, seeds[0]),
            (Direction::BtoA, &b, &a, b_to_a, seeds[1]),
        ] {
            let pipe = Pipeline::new(dir, &cfg, dseed, counters.clone());
            let (src, dst, stop2) = (src.clone(), dst.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sb-link-{}", dir.name()))
                .spawn(move || forward(dir, &src, &dst, pipe, &stop2, t0));
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    for h in threads {
                        let _ = h.join();
                    }
                    return Err(e).context("cannot start link thread");
                }
            }
        }
        Ok(Link {
            stop,
            threads,
            counters,
            _a: a,
            _b: b,
        })
    }

    /// A live snapshot of the counters.
    pub fn counters(&self) -> LinkCounters {
        self.counters.snapshot()
    }

    /// Stop forwarding, close the TUN devices and return the final counts. Packets still in
    /// the delay line are counted as `unsent_at_stop`.
    pub fn stop(mut self) -> LinkCounters {
        self.halt();
        self.counters.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The forwarding loop of one direction.
fn forward(
    dir: Direction,
    src: &TunDevice,
    dst: &TunDevice,
    mut pipe: Pipeline,
    stop: &AtomicBool,
    t0: Instant,
) {
    let mut scratch = vec![0u8; BUF_SIZE];
    let mut out = dst.file();
    let mut write = |b: &[u8]| out.write(b).map(|_| ());
    let mut inp = src.file();
    'outer: while !stop.load(Ordering::Relaxed) {
        pipe.release_due(t0.elapsed(), &mut write);
        let wait = pipe
            .next_deadline()
            .map_or(MAX_WAIT, |d| d.saturating_sub(t0.elapsed()).min(MAX_WAIT));
        if !wait_readable(src.file(), wait) {
            continue;
        }
        for _ in 0..READ_BATCH {
            let slot = pipe.alloc();
            let buf = match slot {
                Some(s) => pipe.buf_mut(s),
                None => &mut scratch[..],
            };
            match inp.read(buf) {
                Ok(n) => match slot {
                    Some(s) => pipe.admit(t0.elapsed(), s, n),
                    None => pipe.overflow(&scratch[..n]),
                },
                Err(e) => {
                    if let Some(s) = slot {
                        pipe.unalloc(s);
                    }
                    match e.kind() {
                        ErrorKind::WouldBlock | ErrorKind::Interrupted => break,
                        _ => {
                            eprintln!(
                                "sockbench link: {}: read failed: {e}; stopping this direction",
                                dir.name()
                            );
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    pipe.finish();
}

/// An interface address with prefix length, e.g. `198.18.0.1/30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' needs a prefix length, e.g. 198.18.0.1/30"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("'{p}' is not a prefix length (0..{max})"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `sockbench link`: join two network namespaces with the emulator.
#[derive(clap::Args, Debug, Clone)]
pub struct LinkArgs {
    #[command(flatten)]
    pub impair: ImpairArgs,
    /// Network namespace for side A (from `ip netns list`; default: this one)
    #[arg(long, value_name = "NAME")]
    pub a_netns: Option<String>,
    /// TUN device name on side A
    #[arg(long, value_name = "DEV", default_value = "sbtun0")]
    pub a_dev: String,
    /// Address of side A's TUN device
    #[arg(long, value_name = "ADDR/LEN", default_value = "198.18.0.1/30")]
    pub a_addr: Cidr,
    /// Network namespace for side B (default: this one; must differ from side A's)
    #[arg(long, value_name = "NAME")]
    pub b_netns: Option<String>,
    /// TUN device name on side B
    #[arg(long, value_name = "DEV", default_value = "sbtun1")]
    pub b_dev: String,
    /// Address of side B's TUN device
    #[arg(long, value_name = "ADDR/LEN", default_value = "198.18.0.2/30")]
    pub b_addr: Cidr,
    /// Impair both directions (default: A→B only, like netem on A's interface)
    #[arg(long)]
    pub symmetric: bool,
    /// Write the counts to DIR/link.csv (rewritten every second and on exit)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Label written into link.csv
    #[arg(long, default_value = "link")]
    pub label: String,
    /// Stop by itself after this long, e.g. 30s (default: run until interrupted)
    #[arg(long, value_name = "TIME", value_parser = impair::parse_duration)]
    pub duration: Option<Duration>,
}

/// A seed from the clock and pid, for runs that did not ask for one (printed, so repeatable).
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ (u64::from(std::process::id()) << 32);
    crate::traffic::splitmix64(&mut x)
}

/// Run `sockbench link` until `stop` is set or `--duration` passes.
pub fn run_cli(args: &LinkArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    let a_to_b = args.impair.to_impairment().map_err(anyhow::Error::msg)?;
    let b_to_a = if args.symmetric {
        a_to_b.clone()
    } else {
        Impairment::default()
    };
    if args.a_netns == args.b_netns {
        bail!(
            "both sides are in {}: give --a-netns and --b-netns two different namespaces \
             (create them with `ip netns add`, or use scripts/lab.sh up --emulator)",
            args.a_netns
                .as_deref()
                .map_or("this network namespace".to_string(), |n| format!(
                    "namespace {n}"
                ))
        );
    }
    tun::check_privileges().map_err(anyhow::Error::msg)?;
    // Open the output first, so a bad path fails before anything is built.
    let csv_path = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
            let p = dir.join("link.csv");
            LinkCounters::default().write_csv(&p, "", &args.label)?;
            Some(p)
        }
        None => None,
    };
    let seed = args.impair.seed().unwrap_or_else(fresh_seed);
    let run_id = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    );
    let a = TunDevice::open_in_netns(&args.a_dev, args.a_netns.as_deref())?;
    let b = TunDevice::open_in_netns(&args.b_dev, args.b_netns.as_deref())?;
    tun::configure(
        args.a_netns.as_deref(),
        &args.a_dev,
        &args.a_addr.to_string(),
    )?;
    tun::configure(
        args.b_netns.as_deref(),
        &args.b_dev,
        &args.b_addr.to_string(),
    )?;
    let where_ = |ns: &Option<String>| ns.as_deref().unwrap_or("(this namespace)").to_string();
    eprintln!(
        "sockbench link: A {} {} in {} <-> B {} {} in {}; seed {seed}",
        args.a_dev,
        args.a_addr,
        where_(&args.a_netns),
        args.b_dev,
        args.b_addr,
        where_(&args.b_netns)
    );
    eprintln!("  a->b: {}", a_to_b.describe());
    eprintln!("  b->a: {}", b_to_a.describe());
    let link = Link::start(a, b, a_to_b, b_to_a, seed)?;
    let started = Instant::now();
    let mut last_write = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Some(p) = &csv_path {
            if last_write.elapsed() >= Duration::from_secs(1) {
                link.counters().write_csv(p, &run_id, &args.label)?;
                last_write = Instant::now();
            }
        }
    }
    let counts = link.stop();
    if let Some(p) = &csv_path {
        counts.write_csv(p, &run_id, &args.label)?;
        eprintln!("sockbench link: counts written to {}", p.display());
    }
    print!("{}", counts.table());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses() {
        let c: Cidr = "198.18.0.1/30".parse().unwrap();
        assert_eq!(c.to_string(), "198.18.0.1/30");
        assert!("198.18.0.1".parse::<Cidr>().is_err());
        assert!("198.18.0.1/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn link_args_help_is_consistent() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            link: LinkArgs,
        }
        T::command().debug_assert();
    }
}
