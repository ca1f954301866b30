//! Validated settings built once from the command line. Rules that span several flags live here and nowhere
//! else; nothing deeper sees a raw string.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::{CapArgs, OutputArgs, RecvArgs, SendArgs, TrafficArgs};
use crate::error::usage;
use crate::pacing::Schedule;
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

/// What the sender sends; also what it announces to the receiver in the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub count: u64,
    pub duration: Option<Duration>,
    /// Messages per second; 0 = unpaced.
    pub rate: f64,
    pub size: usize,
    pub schedule: Schedule,
    pub echo: bool,
    pub linger: Option<Duration>,
    pub per_message: bool,
}

pub const DEFAULT_COUNT: u64 = 10_000;
pub const DEFAULT_RATE: f64 = 1000.0;
pub const DEFAULT_SIZE: usize = 64;

impl Traffic {
    /// Validate traffic flags for `protocol`. `default_count` differs between send and compare.
    pub fn from_args(
        a: &TrafficArgs,
        per_message: bool,
        protocol: Option<Protocol>,
        default_count: u64,
    ) -> anyhow::Result<Traffic> {
        let t = Traffic {
            count: a.count.unwrap_or(default_count),
            duration: a.duration,
            rate: a.rate.unwrap_or(DEFAULT_RATE),
            size: a.size.unwrap_or(DEFAULT_SIZE),
            schedule: a.schedule,
            echo: a.echo,
            linger: a.linger,
            per_message,
        };
        if t.size < wire::HEADER_LEN {
            return Err(usage(format!(
                "--size {} is smaller than the {}-byte message header: use --size {} or more",
                t.size,
                wire::HEADER_LEN,
                wire::HEADER_LEN
            )));
        }
        let protocols: &[Protocol] = match protocol {
            Some(p) => &[p][..],
            None => &[Protocol::Tcp, Protocol::Udp][..],
        };
        for p in protocols {
            if t.size > p.max_size() {
                return Err(usage(format!(
                    "--size {} is larger than one {} message can be ({} bytes): use a smaller --size",
                    t.size,
                    p,
                    p.max_size()
                )));
            }
        }
        if t.echo && t.size < wire::MIN_ECHO_LEN {
            return Err(usage(format!(
                "--echo needs --size {} or more (header plus the receiver's two timestamps)",
                wire::MIN_ECHO_LEN
            )));
        }
        if t.duration == Some(Duration::ZERO) {
            return Err(usage(
                "--duration 0 would send nothing: give e.g. --duration 10s",
            ));
        }
        Ok(t)
    }

    /// The longest the sending phase can take, if bounded by rate and count or by duration.
    pub fn expected_duration(&self) -> Option<Duration> {
        let by_count =
            (self.rate > 0.0).then(|| Duration::from_secs_f64(self.count as f64 / self.rate));
        match (by_count, self.duration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub dir: PathBuf,
    pub label: String,
}

impl Output {
    pub fn from_args(a: &OutputArgs) -> anyhow::Result<Output> {
        if a.label.contains(['\n', '\r']) {
            return Err(usage("--label must be one line"));
        }
        Ok(Output {
            dir: a.out.clone(),
            label: a.label.clone(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct SendConfig {
    pub protocol: Protocol,
    /// What the user typed, for the report's `peer` column.
    pub peer_name: String,
    pub target: SocketAddr,
    pub traffic: Traffic,
    pub output: Output,
}

impl SendConfig {
    pub fn from_args(protocol: Protocol, a: &SendArgs) -> anyhow::Result<SendConfig> {
        let traffic = Traffic::from_args(
            &a.traffic,
            a.output.per_message,
            Some(protocol),
            DEFAULT_COUNT,
        )?;
        let output = Output::from_args(&a.output)?;
        let target = resolve(&a.host, protocol.default_port())?;
        Ok(SendConfig {
            protocol,
            peer_name: a.host.clone(),
            target,
            traffic,
            output,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Caps {
    pub max_duration: Duration,
    pub max_rate: f64,
    pub max_size: usize,
    pub max_sessions: usize,
}

impl Caps {
    pub fn from_args(a: &CapArgs) -> anyhow::Result<Caps> {
        if a.max_sessions == 0 {
            return Err(usage(
                "--max-sessions 0 would refuse every session: give 1 or more",
            ));
        }
        Ok(Caps {
            max_duration: a.max_duration,
            max_rate: a.max_rate,
            max_size: a.max_size,
            max_sessions: a.max_sessions,
        })
    }

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
        if t.rate > self.max_rate {
            return Some(format!(
                "rate {} msg/s exceeds this receiver's limit of {} msg/s (start it with a larger --max-rate)",
                t.rate, self.max_rate
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
    fn default() -> Caps {
        Caps {
            max_duration: Duration::from_secs(3600),
            max_rate: 10e6,
            max_size: 1 << 20,
            max_sessions: 64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecvConfig {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub once: bool,
    pub out: Option<PathBuf>,
    pub caps: Caps,
}

impl RecvConfig {
    pub fn from_args(protocol: Protocol, a: &RecvArgs) -> anyhow::Result<RecvConfig> {
        let listen = match &a.listen {
            None => SocketAddr::from(([0, 0, 0, 0], protocol.default_port())),
            Some(s) => resolve(s, protocol.default_port())?,
        };
        Ok(RecvConfig {
            protocol,
            listen,
            once: a.once,
            out: a.out.clone(),
            caps: Caps::from_args(&a.caps)?,
        })
    }
}

/// Split HOST[:PORT] (IPv6 as [addr]:port or a bare address) and resolve it; the first address wins.
pub fn resolve(spec: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let (host, port) = split_host_port(spec).ok_or_else(|| {
        usage(format!(
            "'{spec}' is not HOST[:PORT] (IPv6: [::1]:5301); check the address"
        ))
    })?;
    let port = port.unwrap_or(default_port);
    if host.is_empty() {
        return Err(usage(format!(
            "'{spec}' has no host: give e.g. 127.0.0.1:{port}"
        )));
    }
    let mut addrs = (host, port).to_socket_addrs().map_err(|e| {
        usage(format!(
            "cannot resolve host '{host}' ({e}): check the name or give an IP address"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| usage(format!("host '{host}' has no address: give an IP address")))
}

fn split_host_port(spec: &str) -> Option<(&str, Option<u16>)> {
    let s = spec.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.matches(':').count() {
        0 => Some((s, None)),
        1 => {
            let (h, p) = s.split_once(':')?;
            Some((h, Some(p.parse().ok()?)))
        }
        _ => Some((s, None)), // a bare IPv6 address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("example.org"), Some(("example.org", None)));
        assert_eq!(split_host_port("10.1.2.3:99"), Some(("10.1.2.3", Some(99))));
        assert_eq!(split_host_port("[::1]:5301"), Some(("::1", Some(5301))));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("h:notaport"), None);
        assert_eq!(resolve("[::1]:7", 1).unwrap(), "[::1]:7".parse().unwrap());
        assert_eq!(
            resolve("127.0.0.1", 5301).unwrap(),
            "127.0.0.1:5301".parse().unwrap()
        );
    }

    #[test]
    fn cross_flag_rules() {
        let base = TrafficArgs::default();
        let t = Traffic::from_args(&base, false, Some(Protocol::Udp), DEFAULT_COUNT).unwrap();
        assert_eq!((t.count, t.rate, t.size), (10_000, 1000.0, 64));
        let small = TrafficArgs {
            size: Some(20),
            ..base.clone()
        };
        assert!(Traffic::from_args(&small, false, Some(Protocol::Udp), 1).is_err());
        let big = TrafficArgs {
            size: Some(70_000),
            ..base.clone()
        };
        assert!(Traffic::from_args(&big, false, Some(Protocol::Udp), 1).is_err());
        assert!(Traffic::from_args(&big, false, Some(Protocol::Tcp), 1).is_ok());
        let echo = TrafficArgs {
            size: Some(48),
            echo: true,
            ..base.clone()
        };
        assert!(Traffic::from_args(&echo, false, Some(Protocol::Tcp), 1).is_err());
    }

    #[test]
    fn caps_say_why() {
        let caps = Caps {
            max_rate: 100.0,
            ..Caps::default()
        };
        let t = Traffic {
            count: 10,
            duration: None,
            rate: 1000.0,
            size: 64,
            schedule: Schedule::Periodic,
            echo: false,
            linger: None,
            per_message: false,
        };
        assert!(caps
            .refuse(Protocol::Udp, &t)
            .unwrap()
            .contains("--max-rate"));
        let long = Traffic {
            count: 1_000_000_000,
            rate: 1.0,
            ..t.clone()
        };
        assert!(Caps::default()
            .refuse(Protocol::Udp, &long)
            .unwrap()
            .contains("--max-duration"));
        assert_eq!(Caps::default().refuse(Protocol::Udp, &t), None);
    }
}
