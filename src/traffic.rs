//! What a session sends and what a receiver allows: the transport, the traffic (count, rate, sizes,
//! schedule, echo) and the receiver's caps. Plain values shared by config (which builds them from flags),
//! the sessions (which announce and check them) and the report (which prints them); no I/O here.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Tcp => 5300,
            Protocol::Udp => 5301,
        }
    }
    /// Largest message this transport can carry.
    pub fn max_size(self) -> usize {
        match self {
            Protocol::Tcp => 16 << 20,
            Protocol::Udp => wire::MAX_UDP_PAYLOAD,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Equal gaps of 1/rate.
    #[default]
    Periodic,
    /// Exponential gaps with mean 1/rate (RFC 2330 §11.1.1, RFC 3432): sampling cannot phase-lock with
    /// periodic behaviour of the path.
    Poisson,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Periodic => "periodic",
            Schedule::Poisson => "poisson",
        }
    }
}

/// Mixed message sizes. Sizes below the header are raised to it (the header is part of every message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeMix {
    /// Uniform over min..=max.
    Range(usize, usize),
    /// One of these, equally likely.
    List(Vec<usize>),
}

impl SizeMix {
    /// The size drawn by hash `h`. Total for any value (a backwards range or an empty list cannot divide
    /// by zero), although validated traffic never has either.
    fn pick(&self, h: u64) -> usize {
        match self {
            SizeMix::Range(lo, hi) => {
                let (lo, hi) = ((*lo).min(*hi), (*lo).max(*hi));
                let span = (hi - lo) as u64;
                lo + (h % span.saturating_add(1)) as usize
            }
            SizeMix::List(l) if !l.is_empty() => l[(h % l.len() as u64) as usize],
            SizeMix::List(_) => wire::HEADER_LEN,
        }
    }
    pub fn min(&self) -> usize {
        match self {
            SizeMix::Range(lo, hi) => (*lo).min(*hi),
            SizeMix::List(l) => l.iter().copied().min().unwrap_or(wire::HEADER_LEN),
        }
    }
    pub fn max(&self) -> usize {
        match self {
            SizeMix::Range(lo, hi) => (*lo).max(*hi),
            SizeMix::List(l) => l.iter().copied().max().unwrap_or(wire::HEADER_LEN),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            SizeMix::Range(lo, hi) => format!("{lo}..{hi} B"),
            SizeMix::List(l) => format!(
                "{} B",
                l.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        }
    }
}

/// One SplitMix64 step (Steele, Lea, Flood 2014): advances `x` and returns a well-mixed value. The one
/// mixer of the crate: message sizes, seeds and the link emulator's streams all derive from it.
#[inline]
pub fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of (session, seq): cheap, well mixed, and the same on both ends.
#[inline]
fn mix_hash(session: u64, seq: u64) -> u64 {
    let mut x = session ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    splitmix64(&mut x)
}

/// What the sender sends; also what it announces to the receiver in the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub count: u64,
    pub duration: Option<Duration>,
    /// Messages per second; 0 = unpaced.
    pub rate: f64,
    /// The largest message; every message has this size unless `mix` is set.
    pub size: usize,
    /// Mixed message sizes (`--size A..B` or `--size A,B,C`).
    #[serde(default)]
    pub mix: Option<SizeMix>,
    pub schedule: Schedule,
    pub echo: bool,
    pub linger: Option<Duration>,
    pub per_message: bool,
    /// --echo --outstanding: at most this many messages without a reply (sender-side only).
    #[serde(default)]
    pub outstanding: Option<u32>,
    /// How the send loop waits for a send time (sender-side only).
    #[serde(default)]
    pub timer: TimerMode,
    /// UDP: several datagrams per send call where the kernel has GSO (sender-side only).
    #[serde(default = "yes")]
    pub gso: bool,
    /// TCP: one write call per message (sender-side only).
    #[serde(default)]
    pub write_per_message: bool,
    /// --load: the first `idle_probes` messages are the idle phase, the rest cross the path while
    /// `load_flows` bulk TCP flows share it (`crate::load`); 0 and 0 without --load.
    #[serde(default)]
    pub idle_probes: u64,
    #[serde(default)]
    pub load_flows: u32,
    /// Which way the bulk flows go (sender-side only).
    #[serde(default)]
    pub load_direction: crate::load::LoadDirection,
    /// The load flows' congestion control (sender-side only).
    #[serde(default)]
    pub load_cc: String,
    /// --probe-on-load: probes interleaved on one load connection too; --notsent-lowat on the load
    /// connections (sender-side only).
    #[serde(default)]
    pub probe_on_load: bool,
    #[serde(default)]
    pub notsent_lowat: Option<u32>,
}

fn yes() -> bool {
    true
}

pub use crate::clock::TimerMode;

pub const DEFAULT_COUNT: u64 = 10_000;
/// A receiver's default `--max-messages`; also what an unpaced sender bounded only by `--duration` announces.
pub const DEFAULT_MAX_MESSAGES: u64 = 1 << 28;
pub const DEFAULT_RATE: f64 = 1000.0;
pub const DEFAULT_SIZE: usize = 64;

impl Default for Traffic {
    /// `sockbench send`'s defaults: 10000 messages of 64 B at 1000 msg/s, periodic, one way.
    fn default() -> Traffic {
        Traffic {
            count: DEFAULT_COUNT,
            duration: None,
            rate: DEFAULT_RATE,
            size: DEFAULT_SIZE,
            mix: None,
            schedule: Schedule::Periodic,
            echo: false,
            linger: None,
            per_message: false,
            outstanding: None,
            timer: TimerMode::Hybrid,
            // The default rate (1000 msg/s) is paced: `--gso auto` leaves it one datagram per buffer.
            gso: false,
            write_per_message: false,
            idle_probes: 0,
            load_flows: 0,
            load_direction: crate::load::LoadDirection::Up,
            load_cc: crate::load::DEFAULT_LOAD_CC.to_string(),
            probe_on_load: false,
            notsent_lowat: None,
        }
    }
}

impl Traffic {
    /// The size of message `seq` of session `session`: `size`, or drawn from the mix by a hash of both, so the
    /// receiver can check every message's length without being told it.
    #[inline]
    pub fn size_of(&self, session: u64, seq: u64) -> usize {
        match &self.mix {
            None => self.size,
            Some(m) => m.pick(mix_hash(session, seq)),
        }
    }

    /// The smallest message of the session.
    pub fn min_size(&self) -> usize {
        self.mix.as_ref().map_or(self.size, |m| m.min())
    }

    /// The longest the sending phase can take, if bounded by rate and count or by duration.
    pub fn expected_duration(&self) -> Option<Duration> {
        let by_count = (self.rate > 0.0).then(|| {
            Duration::try_from_secs_f64(self.count as f64 / self.rate).unwrap_or(Duration::MAX)
        });
        match (by_count, self.duration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Limits a receiver puts on what a sender may ask; a session beyond them is refused with the reason.
#[derive(Debug, Clone)]
pub struct Caps {
    pub max_duration: Duration,
    pub max_rate: f64,
    pub max_size: usize,
    pub max_sessions: usize,
    /// Most messages one session may announce: the receiver tracks every sequence number below the announced
    /// count, one bit each, so this bounds a session's largest table (2^28 → 32 MiB).
    pub max_messages: u64,
    /// The receiver's memory budget: a session is admitted only if the worst case of every session running,
    /// its own included, fits.
    pub max_memory: u64,
    /// How long a running session's sender may stay silent (no data, no control message) before the session
    /// is cut as vanished; never less than four of its message gaps.
    pub idle_timeout: Duration,
    /// Most --load flows one session may run each way: each is a thread and a socket's buffers here.
    pub max_load_flows: u32,
}

/// A receiver's `--max-load-flows` unless given.
pub const DEFAULT_MAX_LOAD_FLOWS: u32 = 16;

impl Caps {
    /// Why a session asking for `t` over `protocol` is refused, if it is.
    pub fn refuse(&self, protocol: Protocol, t: &Traffic) -> Option<String> {
        if t.size > self.max_size || t.size > protocol.max_size() {
            return Some(format!(
                "message size {} exceeds this receiver's limit of {} bytes (start it with a larger --max-size)",
                t.size,
                self.max_size.min(protocol.max_size())
            ));
        }
        if t.size < wire::HEADER_LEN {
            return Some(format!(
                "message size {} is below the header size {}",
                t.size,
                wire::HEADER_LEN
            ));
        }
        if t.count > self.max_messages {
            return Some(format!(
                "{} messages exceed this receiver's limit of {} per session (send fewer with --count or --duration, \
                 or start the receiver with a larger --max-messages)",
                t.count, self.max_messages
            ));
        }
        if t.rate > self.max_rate {
            return Some(format!(
                "rate {} msg/s exceeds this receiver's limit of {} msg/s (start it with a larger --max-rate)",
                t.rate, self.max_rate
            ));
        }
        if t.load_flows > self.max_load_flows {
            return Some(format!(
                "{} load flows exceed this receiver's limit of {} (use fewer with --load, or start the receiver \
                 with a larger --max-load-flows)",
                t.load_flows, self.max_load_flows
            ));
        }
        if let Some(d) = t.expected_duration() {
            if d > self.max_duration {
                return Some(format!(
                    "the session would last {}, longer than this receiver's limit of {} (start it with a larger --max-duration)",
                    humantime::format_duration(Duration::from_secs(d.as_secs())),
                    humantime::format_duration(self.max_duration)
                ));
            }
        }
        None
    }
}

impl Default for Caps {
    /// The receiver's defaults (`sockbench recv` without cap flags, and receivers inside compare).
    fn default() -> Caps {
        Caps {
            max_duration: Duration::from_secs(3600),
            max_rate: 10e6,
            max_size: 1 << 20,
            max_sessions: 64,
            max_messages: DEFAULT_MAX_MESSAGES,
            max_memory: 1 << 30,
            idle_timeout: Duration::from_secs(30),
            max_load_flows: DEFAULT_MAX_LOAD_FLOWS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_say_why() {
        let caps = Caps {
            max_rate: 100.0,
            ..Caps::default()
        };
        let t = Traffic {
            count: 10,
            ..Traffic::default()
        };
        assert!(caps
            .refuse(Protocol::Udp, &t)
            .unwrap()
            .contains("--max-rate"));
        let long = Traffic {
            count: 100_000_000,
            rate: 1.0,
            ..t.clone()
        };
        let many = Traffic {
            count: 1 << 29,
            rate: 0.0,
            ..t.clone()
        };
        assert!(Caps::default()
            .refuse(Protocol::Udp, &many)
            .unwrap()
            .contains("--max-messages"));
        assert!(Caps::default()
            .refuse(Protocol::Udp, &long)
            .unwrap()
            .contains("--max-duration"));
        assert_eq!(Caps::default().refuse(Protocol::Udp, &t), None);
    }

    #[test]
    fn size_pick_is_total() {
        // A backwards range or an empty list (a hostile hello) must not divide by zero.
        assert!((99..=100).contains(&SizeMix::Range(100, 99).pick(u64::MAX)));
        assert_eq!(SizeMix::List(vec![]).pick(7), wire::HEADER_LEN);
        assert_eq!(SizeMix::Range(0, usize::MAX).pick(5), 5);
    }

    #[test]
    fn expected_duration_never_panics() {
        let t = Traffic {
            count: u64::MAX,
            rate: 1e-300,
            ..Traffic::default()
        };
        assert_eq!(t.expected_duration(), Some(Duration::MAX));
    }
}
