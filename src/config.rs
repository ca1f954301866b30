//! Validated settings built once from the command line. Rules that span several flags live here and nowhere
//! else; nothing deeper sees a raw string.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{CapArgs, OutputArgs, RecvArgs, SendArgs, SizeSpec, TrafficArgs};
use crate::error::usage;
use crate::traffic::{Caps, Protocol, SizeMix, Traffic, DEFAULT_COUNT, DEFAULT_RATE, DEFAULT_SIZE};
use crate::wire;

fn raise_to_header(n: usize, what: &str) -> usize {
    if n < wire::HEADER_LEN {
        eprintln!(
            "sockbench: sizes in the --size {what} below the {}-byte header are raised to {}",
            wire::HEADER_LEN,
            wire::HEADER_LEN
        );
        wire::HEADER_LEN
    } else {
        n
    }
}

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
            size: DEFAULT_SIZE,
            mix: None,
            schedule: a.schedule,
            echo: a.echo,
            linger: a.linger,
            per_message,
        };
        let mut t = t;
        match &a.size {
            None => {}
            Some(SizeSpec::Fixed(n)) => t.size = *n,
            Some(SizeSpec::Range(lo, hi)) => {
                let lo = raise_to_header((*lo).min(*hi), "range");
                t.size = (*hi).max(lo);
                t.mix = (lo < t.size).then_some(SizeMix::Range(lo, t.size));
            }
            Some(SizeSpec::List(list)) => {
                let list: Vec<usize> = list.iter().map(|&n| raise_to_header(n, "list")).collect();
                t.size = list.iter().copied().max().unwrap_or(DEFAULT_SIZE);
                t.mix = (list.iter().any(|&n| n != t.size)).then_some(SizeMix::List(list));
            }
        }
        if t.echo && t.mix.as_ref().is_some_and(|m| m.min() < wire::MIN_ECHO_LEN) {
            return Err(usage(format!(
                "--echo needs every message to be {} bytes or more: raise the smallest --size",
                wire::MIN_ECHO_LEN
            )));
        }
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
}

#[derive(Debug, Clone)]
pub struct Output {
    pub dir: PathBuf,
    pub label: String,
    pub trace: bool,
}

impl Output {
    pub fn from_args(a: &OutputArgs) -> anyhow::Result<Output> {
        if a.label.contains(['\n', '\r']) {
            return Err(usage("--label must be one line"));
        }
        Ok(Output {
            dir: a.out.clone(),
            label: a.label.clone(),
            trace: a.trace,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SendConfig {
    pub protocol: Protocol,
    /// What the user typed, for the report's `peer` column.
    pub peer_name: String,
    pub target: SocketAddr,
    /// Every address the name resolved to, `target` first: the sender tries them in order, so a name that
    /// resolves to ::1 first still reaches an IPv4-only receiver.
    pub alternatives: Vec<SocketAddr>,
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
        let alternatives = resolve_all(&a.host, protocol.default_port())?;
        let target = alternatives[0];
        Ok(SendConfig {
            protocol,
            peer_name: a.host.clone(),
            target,
            alternatives,
            traffic,
            output,
        })
    }
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
}

#[derive(Debug, Clone)]
pub struct RecvConfig {
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub once: bool,
    pub out: Option<PathBuf>,
    pub caps: Caps,
    pub trace: bool,
    pub reuse_port: bool,
}

impl RecvConfig {
    pub fn from_args(protocol: Protocol, a: &RecvArgs) -> anyhow::Result<RecvConfig> {
        if a.reuse_port && protocol == Protocol::Udp {
            return Err(usage(
                "--reuse-port is for tcp recv: the kernel spreads UDP datagrams by their own addresses, apart from \
                 the session's control connection, so a receiver would get datagrams of sessions it does not know",
            ));
        }
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
            trace: a.trace,
            reuse_port: a.reuse_port,
        })
    }

    /// A quiet single-session receiver inside this process (compare, experiments), default caps.
    pub fn in_process(protocol: Protocol, listen: SocketAddr) -> RecvConfig {
        RecvConfig {
            protocol,
            listen,
            once: true,
            out: None,
            caps: Caps::default(),
            trace: false,
            reuse_port: false,
        }
    }
}

/// Split HOST[:PORT] (IPv6 as [addr]:port or a bare address) and resolve it; the first address wins.
pub fn resolve(spec: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    Ok(resolve_all(spec, default_port)?[0])
}

/// Every address HOST[:PORT] resolves to, in the resolver's order (never empty).
pub fn resolve_all(spec: &str, default_port: u16) -> anyhow::Result<Vec<SocketAddr>> {
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
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            usage(format!(
                "cannot resolve host '{host}' ({e}): check the name or give an IP address"
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(usage(format!(
            "host '{host}' has no address: give an IP address"
        )));
    }
    Ok(addrs)
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
            size: Some(SizeSpec::Fixed(20)),
            ..base.clone()
        };
        assert!(Traffic::from_args(&small, false, Some(Protocol::Udp), 1).is_err());
        let big = TrafficArgs {
            size: Some(SizeSpec::Fixed(70_000)),
            ..base.clone()
        };
        assert!(Traffic::from_args(&big, false, Some(Protocol::Udp), 1).is_err());
        assert!(Traffic::from_args(&big, false, Some(Protocol::Tcp), 1).is_ok());
        let echo = TrafficArgs {
            size: Some(SizeSpec::Fixed(48)),
            echo: true,
            ..base.clone()
        };
        assert!(Traffic::from_args(&echo, false, Some(Protocol::Tcp), 1).is_err());
    }

    #[test]
    fn mixed_sizes_are_deterministic_and_in_range() {
        let a = TrafficArgs {
            size: Some(SizeSpec::Range(1, 1400)),
            ..TrafficArgs::default()
        };
        let t = Traffic::from_args(&a, false, Some(Protocol::Tcp), 10).unwrap();
        assert_eq!((t.size, t.min_size()), (1400, wire::HEADER_LEN));
        let sizes: Vec<usize> = (0..1000).map(|s| t.size_of(7, s)).collect();
        assert!(sizes
            .iter()
            .all(|&n| (wire::HEADER_LEN..=1400).contains(&n)));
        assert!(
            sizes.iter().collect::<std::collections::HashSet<_>>().len() > 500,
            "spread over the range"
        );
        assert_eq!(
            sizes,
            (0..1000).map(|s| t.size_of(7, s)).collect::<Vec<_>>()
        );
        let l = TrafficArgs {
            size: Some(SizeSpec::List(vec![64, 512, 1400])),
            ..TrafficArgs::default()
        };
        let t = Traffic::from_args(&l, false, Some(Protocol::Udp), 10).unwrap();
        let seen: std::collections::HashSet<usize> = (0..200).map(|s| t.size_of(1, s)).collect();
        assert_eq!(seen, [64, 512, 1400].into_iter().collect());
        let same = TrafficArgs {
            size: Some(SizeSpec::List(vec![100, 100])),
            ..TrafficArgs::default()
        };
        assert_eq!(Traffic::from_args(&same, false, None, 1).unwrap().mix, None);
    }
}
