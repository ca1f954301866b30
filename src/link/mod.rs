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
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cancel::Cancel;

pub use crate::grammar::Cidr;
pub use counters::{Counts, LinkCounters};
pub use impair::{GilbertElliott, Impairment, JitterDist};
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
    stop: Cancel,
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
        let stop = Cancel::new();
        let counters = Arc::new(SharedCounters::default());
        let t0 = crate::clock::mono();
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
                    stop.cancel();
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
        self.stop.cancel();
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
    stop: &Cancel,
    t0: Instant,
) {
    let mut scratch = vec![0u8; BUF_SIZE];
    let mut out = dst.file();
    let mut write = |b: &[u8]| out.write(b).map(|_| ());
    let mut inp = src.file();
    'outer: while !stop.is_cancelled() {
        pipe.release_due(crate::clock::since(t0), &mut write);
        let wait = pipe.next_deadline().map_or(MAX_WAIT, |d| {
            d.saturating_sub(crate::clock::since(t0)).min(MAX_WAIT)
        });
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
                    Some(s) => pipe.admit(crate::clock::since(t0), s, n),
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

/// What `sockbench link` runs: built and checked by `config` from the flags.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub a_to_b: Impairment,
    pub b_to_a: Impairment,
    /// None: a fresh seed, printed.
    pub seed: Option<u64>,
    /// Network namespace of side A (None: this one); never the same as side B's.
    pub a_netns: Option<String>,
    pub a_dev: String,
    pub a_addr: Cidr,
    pub b_netns: Option<String>,
    pub b_dev: String,
    pub b_addr: Cidr,
    /// Directory for link.csv (rewritten every second and on exit).
    pub out: Option<PathBuf>,
    pub label: String,
    /// Stop by itself after this long (None: when `stop` is set).
    pub duration: Option<Duration>,
}

/// A seed from the clock and pid, for runs that did not ask for one (printed, so repeatable).
pub fn fresh_seed() -> u64 {
    let t = crate::clock::system()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ (u64::from(std::process::id()) << 32);
    crate::traffic::splitmix64(&mut x)
}

/// Run `sockbench link` until `stop` is set or the duration passes; returns the final counts.
pub fn run(args: &LinkSettings, stop: &Cancel) -> anyhow::Result<LinkCounters> {
    let (a_to_b, b_to_a) = (args.a_to_b.clone(), args.b_to_a.clone());
    // Missing privilege is for the user to fix (run as root), like a bad flag: exit 2.
    tun::check_privileges().map_err(crate::error::usage)?;
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
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let run_id = format!(
        "{}-{}",
        crate::clock::system()
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
    let started = crate::clock::mono();
    let mut last_write = crate::clock::mono();
    while !stop.is_cancelled() {
        if args
            .duration
            .is_some_and(|d| crate::clock::since(started) >= d)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Some(p) = &csv_path {
            if crate::clock::since(last_write) >= Duration::from_secs(1) {
                link.counters().write_csv(p, &run_id, &args.label)?;
                last_write = crate::clock::mono();
            }
        }
    }
    let counts = link.stop();
    if let Some(p) = &csv_path {
        counts.write_csv(p, &run_id, &args.label)?;
        eprintln!("sockbench link: counts written to {}", p.display());
    }
    Ok(counts)
}
