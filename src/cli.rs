//! The command line: clap derive, help written as doc comments, value parsers for sizes, rates and durations.
//! Raw strings stop here; `config` turns these into validated settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::traffic::Schedule;

/// Measure what TCP guarantees and UDP does not: loss, duplication, reordering, message boundaries,
/// latency and jitter, exactly, with CSV reports.
#[derive(Parser, Debug)]
#[command(
    name = "sockbench",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream sockets: every byte delivered once and in order, no message boundaries.
    Tcp {
        #[command(subcommand)]
        role: Role,
    },
    /// Datagram sockets: message boundaries kept, no delivery or order guarantee.
    Udp {
        #[command(subcommand)]
        role: Role,
    },
    /// Run a TCP and a UDP session with identical traffic in one process and print them side by side.
    ///
    /// With impairment flags (or none, when the private lab is available) and CAP_NET_ADMIN, it builds a
    /// two-host lab of network namespaces joined by the built-in link emulator; otherwise it runs on loopback.
    Compare(CompareArgs),
    /// The userspace link emulator: forward IP packets between two TUN devices, impaired per direction.
    Link(crate::link::LinkArgs),
    /// Watch the listen backlog at work: a server that does not accept, and clients that connect at once.
    Backlog(crate::experiments::backlog::BacklogArgs),
    /// Ports: "address in use" explained, and receivers sharing a port with SO_REUSEPORT.
    Ports(crate::experiments::share::PortsArgs),
}

#[derive(Subcommand, Debug)]
pub enum Role {
    /// Send numbered messages to a receiver and write the report (CSV files land on this side).
    Send(SendArgs),
    /// Receive sessions from senders until Ctrl-C (or after one with --once).
    Recv(RecvArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// The receiver: HOST[:PORT], a name or an IPv4/IPv6 address ([::1]:5301). Default port: 5300 tcp, 5301 udp.
    pub host: String,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrafficArgs {
    /// Messages to send [default: 10000; compare: 2000].
    #[arg(long, short = 'n', value_parser = parse_count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 10s, 500ms, 2m), or after --count messages, whichever comes first.
    #[arg(long, short = 't', value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Messages per second on an absolute schedule (e.g. 1000, 50k, 1.5M); 0 = as fast as possible [default: 1000].
    #[arg(long, short = 'r', value_parser = parse_rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Whole message size in bytes, header included (48 at least; UDP at most 65507) [default: 64].
    /// Mixed sizes: a range `64..1400` (uniform) or a list `64,512,1400`, chosen per message from the session id
    /// and sequence number, so the receiver knows each message's size.
    #[arg(long, short = 's', value_parser = parse_size_spec, allow_hyphen_values = true)]
    pub size: Option<SizeSpec>,
    /// Send times: periodic (equal gaps) or poisson (exponential gaps, RFC 3432).
    #[arg(long, value_enum, default_value_t = Schedule::Periodic)]
    pub schedule: Schedule,
    /// The receiver reflects every message; latency becomes the round-trip time (needs --size 64 or more).
    #[arg(long)]
    pub echo: bool,
    /// How long the receiver waits for stragglers after the sender is done [default: 4 control round trips,
    /// at least 500ms; a UDP session that has everything ends at once].
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub linger: Option<Duration>,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Directory for the CSV reports (summary.csv is appended; per-run files beside it).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Free text copied into every CSV row, for sweeps (e.g. loss=5%).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Also write one CSV row per message: <run_id>_<protocol>_messages.csv.
    #[arg(long)]
    pub per_message: bool,
    /// Show the socket calls each side made on the data path (socket, setsockopt, bind, listen, accept,
    /// connect, send, recv, close) on stderr, and write <run_id>_<protocol>_trace.csv.
    #[arg(long)]
    pub trace: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RecvArgs {
    /// Address to listen on [default: 0.0.0.0:5300 tcp, 0.0.0.0:5301 udp; UDP data and its TCP control share
    /// the port number].
    #[arg(long, short = 'l')]
    pub listen: Option<String>,
    /// Exit after the first session.
    #[arg(long)]
    pub once: bool,
    /// Also keep the receiver's own CSV copy in this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print each session's socket calls (socket, bind, listen, accept, recv, close) on stderr, and with
    /// --out write <run_id>_<protocol>_trace.csv there.
    #[arg(long)]
    pub trace: bool,
    /// Share the port with other receivers started with --reuse-port (SO_REUSEPORT): the kernel spreads
    /// connections between them. TCP only; see `sockbench ports` for the experiment.
    #[arg(long)]
    pub reuse_port: bool,
    #[command(flatten)]
    pub caps: CapArgs,
}

/// Limits a receiver puts on what a sender may ask; a session beyond them is refused with the reason.
#[derive(Args, Debug, Clone)]
pub struct CapArgs {
    /// Longest session accepted; a session still running then is cut (complete=false).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub max_duration: Duration,
    /// Highest message rate accepted, messages per second (unpaced senders are bounded by --max-duration).
    #[arg(long, value_parser = parse_rate, default_value = "10M")]
    pub max_rate: f64,
    /// Largest message accepted, bytes.
    #[arg(long, value_parser = parse_size, default_value = "1048576")]
    pub max_size: usize,
    /// Most sessions served at the same time.
    #[arg(long, default_value_t = 64)]
    pub max_sessions: usize,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub impair: crate::link::ImpairArgs,
    /// Run on loopback even when the private lab could be built.
    #[arg(long)]
    pub loopback: bool,
}

fn parse_number(s: &str, what: &str) -> Result<f64, String> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a {what}"))?;
    if !v.is_finite() {
        return Err(format!("'{s}' is not a {what}"));
    }
    Ok(v * mult)
}

/// Messages per second: a number with an optional k/M/G suffix; 0 means as fast as possible.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let v = parse_number(
        s,
        "rate (e.g. 1000, 50k, 1.5M, or 0 for as fast as possible)",
    )?;
    if v < 0.0 {
        return Err(format!(
            "rate '{s}' is negative: give messages per second, or 0 for as fast as possible"
        ));
    }
    Ok(v)
}

/// A positive whole number of messages, k/M/G suffixes allowed.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let v = parse_number(s, "message count (e.g. 10000 or 1M)")?;
    if v < 1.0 || v.fract() != 0.0 || v > 1e15 {
        return Err(format!(
            "count '{s}' must be a whole number of messages, 1 or more"
        ));
    }
    Ok(v as u64)
}

/// Bytes: a positive whole number (k = 1024 bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, mult) = match t.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (t, 1),
    };
    let v: i64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size in bytes (e.g. 64 or 1400)"))?;
    if v <= 0 {
        return Err(format!(
            "size '{s}' must be a positive number of bytes (48 at least: the header)"
        ));
    }
    Ok(v as usize * mult)
}

/// `--size` as typed: one size, a range, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(usize),
    Range(usize, usize),
    List(Vec<usize>),
}

pub fn parse_size_spec(s: &str) -> Result<SizeSpec, String> {
    if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (parse_size(a)?, parse_size(b)?);
        if a > b {
            return Err(format!(
                "size range '{s}' runs backwards: write the smaller size first"
            ));
        }
        return Ok(SizeSpec::Range(a, b));
    }
    if s.contains(',') {
        let list = s
            .split(',')
            .map(parse_size)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(SizeSpec::List(list));
    }
    parse_size(s).map(SizeSpec::Fixed)
}

/// A duration: 10s, 500ms, 2m, 1h30m, or a bare number of seconds (0.5).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "duration '{s}' is negative: give e.g. 10s or 500ms"
        ));
    }
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("'{s}' is not a duration (e.g. 10s, 500ms, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_rate("1.5k"), Ok(1500.0));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_count("1M"), Ok(1_000_000));
        assert!(parse_count("0").is_err());
        assert!(parse_count("1.5").is_err());
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size_spec("64"), Ok(SizeSpec::Fixed(64)));
        assert_eq!(parse_size_spec("1..1400"), Ok(SizeSpec::Range(1, 1400)));
        assert_eq!(
            parse_size_spec("64,512,1400"),
            Ok(SizeSpec::List(vec![64, 512, 1400]))
        );
        assert!(parse_size_spec("1400..64").is_err());
        assert!(parse_size_spec("64,,9").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-5").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-2s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
