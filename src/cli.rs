//! The command line of every subcommand: clap derive, help written as doc comments, values parsed by the one
//! grammar per unit (`grammar`). Raw strings stop here; `config` turns these into validated settings and fills
//! every default the user did not give from the one place that defines it. This module imports nothing of the
//! crate but `grammar`, so every other module may build on it without closing an import circle.
//!
//! Every flag that takes a number accepts a leading '-' (`allow_hyphen_values`), so `--loss -5%` reaches the
//! grammar and is refused as negative, instead of clap reading `-5%` as an unknown flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::grammar::{self as g, Cidr, Gemodel, HostPort, SizeSpec};

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
    /// With CAP_NET_ADMIN (root) it builds a two-host lab of network namespaces joined by the built-in link
    /// emulator and applies the impairment flags (or a small default when none is given); without it, it runs
    /// on loopback, and refuses impairment flags it cannot apply.
    Compare(CompareArgs),
    /// The userspace link emulator: forward IP packets between two TUN devices, impaired per direction.
    Link(LinkArgs),
    /// Watch the listen backlog at work: a server that does not accept, and clients that connect at once.
    Backlog(BacklogArgs),
    /// Ports: "address in use" explained, and receivers sharing a port with SO_REUSEPORT.
    Ports(PortsArgs),
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
    #[arg(value_parser = g::host)]
    pub host: HostPort,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Authentication, for both ends.
#[derive(Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// A file holding a secret shared by sender and receiver (16 bytes or more, e.g. from
    /// `head -c 32 /dev/urandom | base64`): both ends prove they know it, and every control frame, message
    /// and echo reply carries a MAC, so nobody without it can start a session, inject or alter a message, or
    /// take over a data connection. Messages grow a 16-byte MAC inside --size (64 bytes at least; 80 with
    /// --echo).
    #[arg(long, env = "SOCKBENCH_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

/// Send times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// Equal gaps of 1/rate.
    Periodic,
    /// Exponential gaps with mean 1/rate (RFC 2330 §11.1.1, RFC 3432).
    Poisson,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrafficArgs {
    /// Messages to send, e.g. 10000 or 1M [default: 10000; compare: 2000; with only --duration, as many as
    /// the rate sends in that time (unpaced: 268435456 = 2^28, what a receiver tracks by default)].
    #[arg(long, short = 'n', value_parser = g::count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 10s, 500ms, 2m (a number needs a unit). With --count too, whichever
    /// comes first; alone, the default count does not cut it short.
    #[arg(long, short = 't', value_parser = g::duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Messages per second on an absolute schedule, e.g. 1000, 50k, 1.5M (0.01 at least); 0 = as fast as
    /// possible [default: 1000].
    #[arg(long, short = 'r', value_parser = g::msg_rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Whole message size in bytes, header included (48 at least; UDP at most 65507; k = 1024) [default: 64].
    /// Mixed sizes: a range `64..1400` (uniform) or a list `64,512,1400`, chosen per message from the session id
    /// and sequence number, so the receiver knows each message's size.
    #[arg(long, short = 's', value_parser = g::size_spec, allow_hyphen_values = true)]
    pub size: Option<SizeSpec>,
    /// Send times: periodic (equal gaps) or poisson (exponential gaps, RFC 3432) [default: periodic].
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,
    /// The receiver reflects every message; latency becomes the round-trip time (needs --size 64 or more).
    #[arg(long)]
    pub echo: bool,
    /// How long the receiver waits for stragglers after the sender is done, e.g. 2s [default: 4 control round
    /// trips, at least 500ms; a UDP session that has everything ends at once].
    #[arg(long, value_parser = g::duration, allow_hyphen_values = true)]
    pub linger: Option<Duration>,
    /// With --echo: at most N messages without a reply at once; the next leaves when a reply comes back (or
    /// one is given up after the linger time). `--outstanding 1 --rate 0` is ping-pong, what sockperf
    /// ping-pong measures [default: no limit, the schedule alone].
    #[arg(long, value_parser = g::outstanding, allow_hyphen_values = true)]
    pub outstanding: Option<u32>,
    /// How the sender waits for a message's send time: hybrid sleeps until shortly before it and spins the
    /// rest (precise, little CPU), sleep only sleeps (least CPU, late by the kernel's wake-up), spin never
    /// sleeps (one core busy) [default: hybrid].
    #[arg(long, value_enum)]
    pub timer: Option<TimerArg>,
    /// UDP: hand the kernel many equal-size datagrams per send call (UDP GSO, Linux 4.18+), each still its own
    /// message with its own header; auto uses it for unpaced runs and at 100k msg/s and more, where the kernel
    /// accepts it (a qdisc such as netem sees a GSO buffer as one packet, so paced runs go one datagram per
    /// buffer); off never uses it [default: auto].
    #[arg(long, value_enum)]
    pub gso: Option<GsoArg>,
    /// TCP: one write call per message, as iperf -l does, instead of several due messages per write.
    #[arg(long)]
    pub write_per_message: bool,
}

/// `--timer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimerArg {
    Hybrid,
    Sleep,
    Spin,
}

/// `--gso`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GsoArg {
    Auto,
    Off,
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
    /// Address to listen on: ADDR:PORT, or a bare PORT for every address [default: 0.0.0.0:5300 tcp,
    /// 0.0.0.0:5301 udp; UDP data and its TCP control share the port number].
    #[arg(long, short = 'l', value_parser = g::listen, allow_hyphen_values = true)]
    pub listen: Option<HostPort>,
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
    pub auth: AuthArgs,
    #[command(flatten)]
    pub caps: CapArgs,
}

/// Limits a receiver puts on what a sender may ask; a session beyond them is refused with the reason.
/// The defaults live in one place (`Caps::default`); a test keeps this help in step with them.
#[derive(Args, Debug, Clone, Default)]
pub struct CapArgs {
    /// Longest session accepted, e.g. 1h; a session still running then is cut (complete=false) [default: 1h].
    #[arg(long, value_parser = g::duration, allow_hyphen_values = true)]
    pub max_duration: Option<Duration>,
    /// Highest message rate accepted, messages per second, e.g. 1M (unpaced senders are bounded by
    /// --max-duration) [default: 10M].
    #[arg(long, value_parser = g::msg_rate, allow_hyphen_values = true)]
    pub max_rate: Option<f64>,
    /// Largest message accepted, bytes (k = 1024) [default: 1048576].
    #[arg(long, value_parser = g::size, allow_hyphen_values = true)]
    pub max_size: Option<usize>,
    /// Most sessions served at the same time [default: 64].
    #[arg(long, value_parser = g::whole_in::<usize>(1, 100_000), allow_hyphen_values = true)]
    pub max_sessions: Option<usize>,
    /// Most messages one session may announce, e.g. 1G; each tracked message costs one bit of memory
    /// [default: 268435456 (2^28, a 32 MiB table)].
    #[arg(long, value_parser = g::count, allow_hyphen_values = true)]
    pub max_messages: Option<u64>,
    /// Memory budget for all sessions' worst case together, e.g. 4G (k/M/G = 1024-based); a session that
    /// would not fit is refused until others end [default: 1G].
    #[arg(long, value_parser = g::size, allow_hyphen_values = true)]
    pub max_memory: Option<usize>,
    /// Cut a running session whose sender has been silent this long (no data, no control message), e.g. 10s;
    /// a slow sender gets at least four of its message gaps [default: 30s].
    #[arg(long, value_parser = g::duration, allow_hyphen_values = true)]
    pub idle_timeout: Option<Duration>,
    /// Most bulk flows a sender's --load may run each way in one session, 0 to 64; each is a thread and a
    /// socket here [default: 16].
    #[arg(long, value_parser = g::whole_in::<u32>(0, crate::load::MAX_LOAD_FLOWS as u64), allow_hyphen_values = true)]
    pub max_load_flows: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub impair: ImpairArgs,
    /// Run on loopback even when the private lab could be built (no impairment flags then).
    #[arg(long)]
    pub loopback: bool,
    /// What joins the lab's hosts: netem (a veth pair with tc netem on the data ports; needs sch_netem) or
    /// emulator (the built-in userspace link emulator) [default: netem where the kernel has it and can apply
    /// the impairment, else emulator]
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<LabEngine>,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The rate limiter's queue discipline: fifo (tail drop, both engines) or fq_codel (RFC 8290: per-flow
    /// queues and CoDel; netem engine only, with --link-rate) [default: fifo]
    #[arg(long, value_name = "QDISC")]
    pub aqm: Option<AqmArg>,
}

/// `--aqm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AqmArg {
    Fifo,
    #[value(name = "fq_codel")]
    FqCodel,
}

/// Latency under load: bulk TCP flows beside the measured session.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Latency under load")]
pub struct LoadArgs {
    /// Bulk TCP flows (unpaced, large writes, read as fast as they come) sharing the path with each measured
    /// session, 0 to 64. Each session first sends an idle phase of probes alone, then the rest with the
    /// load; its row holds both (idle_latency_*, latency_*, load_*, rpm). 0: the two phases without load
    #[arg(long, value_name = "N", value_parser = g::whole_in::<u32>(0, crate::load::MAX_LOAD_FLOWS as u64), allow_hyphen_values = true)]
    pub load: Option<u32>,
    /// Which way the load goes: up (sender to receiver, with the probes), down (receiver to sender), both
    /// [default: up]
    #[arg(long, value_name = "DIR")]
    pub load_direction: Option<LoadDirArg>,
    /// Probes in the idle phase, before the load starts [default: 1 s of them at --rate, at least 20; 1000
    /// unpaced]. Without --count or --duration the loaded phase is four times as long
    #[arg(long, value_name = "N", value_parser = g::count, allow_hyphen_values = true)]
    pub idle_probes: Option<u64>,
    /// The load flows' TCP congestion control, e.g. cubic, reno, bbr; where the kernel refuses it they run its
    /// default, and load_cc says which ran [default: cubic]
    #[arg(long, value_name = "NAME")]
    pub load_cc: Option<String>,
    /// Also interleave timestamped probes with the bulk bytes of one load connection (the receiver sends them
    /// back): they wait behind that connection's own unsent bytes as well as the path's queue
    /// (load_probe_rtt_*)
    #[arg(long)]
    pub probe_on_load: bool,
    /// TCP_NOTSENT_LOWAT on the load connections, bytes (e.g. 16k): the kernel holds at most this much of a
    /// connection's unsent data, so a probe on it waits behind less
    #[arg(long, value_name = "BYTES", value_parser = g::size, allow_hyphen_values = true)]
    pub notsent_lowat: Option<usize>,
}

/// `--load-direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadDirArg {
    Up,
    Down,
    Both,
}

/// The link between compare's two lab hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabEngine {
    /// The kernel's tc netem on a veth pair
    Netem,
    /// sockbench's userspace link emulator between two TUN devices
    Emulator,
}

/// Shape of the delay jitter around --delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JitterDist {
    /// Uniform in [delay - jitter, delay + jitter] (netem's default).
    Uniform,
    /// Normal with mean delay and standard deviation jitter (netem `distribution normal`).
    Normal,
}

/// Impairment flags shared by `sockbench link` and `sockbench compare` (netem vocabulary).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Link impairments (netem-like, applied by the built-in emulator)")]
pub struct ImpairArgs {
    /// Random loss probability, e.g. 5% (a bare 5 also means 5%)
    #[arg(long, value_name = "PCT", value_parser = g::percent, allow_hyphen_values = true)]
    pub loss: Option<f64>,
    /// Correlation of successive loss draws, netem style, e.g. 25%
    #[arg(long, value_name = "PCT", value_parser = g::percent, allow_hyphen_values = true)]
    pub loss_correlation: Option<f64>,
    /// Gilbert-Elliott burst loss as netem's gemodel: p,r[,1-h[,1-k]], e.g. 1%,30%
    #[arg(long, value_name = "P,R[,1-H[,1-K]]", value_parser = g::gemodel, allow_hyphen_values = true)]
    pub gemodel: Option<Gemodel>,
    /// One-way delay, e.g. 20ms (at most 1h)
    #[arg(long, value_name = "TIME", value_parser = g::duration, allow_hyphen_values = true)]
    pub delay: Option<Duration>,
    /// Delay jitter around --delay, e.g. 5ms; packets may be reordered by it, as with netem
    #[arg(long, value_name = "TIME", value_parser = g::duration, allow_hyphen_values = true)]
    pub jitter: Option<Duration>,
    /// Distribution of the jitter
    #[arg(long, value_name = "DIST")]
    pub jitter_dist: Option<JitterDist>,
    /// Fraction of packets held back until the next --reorder-gap packets have passed, e.g. 2%
    #[arg(long, value_name = "PCT", value_parser = g::percent, allow_hyphen_values = true)]
    pub reorder: Option<f64>,
    /// How many later packets overtake a held-back one, 1 to 1000 [default: 1]
    #[arg(long, value_name = "N", value_parser = g::whole_in::<u32>(1, 1000), allow_hyphen_values = true)]
    pub reorder_gap: Option<u32>,
    /// Fraction of packets delivered twice, e.g. 1%
    #[arg(long, value_name = "PCT", value_parser = g::percent, allow_hyphen_values = true)]
    pub duplicate: Option<f64>,
    /// Fraction of packets with one bit flipped in the L4 payload, e.g. 0.1%; checksums are
    /// left stale, so the receiving kernel drops them as it would on a real link
    #[arg(long, value_name = "PCT", value_parser = g::percent, allow_hyphen_values = true)]
    pub corrupt: Option<f64>,
    /// Recompute the UDP checksum after corrupting, so damaged datagrams reach the application
    #[arg(long)]
    pub corrupt_fix_checksum: bool,
    /// Rate limit, e.g. 10mbit or 500kbit (tc units; bps means bytes/s)
    #[arg(long, value_name = "RATE", value_parser = g::bit_rate, allow_hyphen_values = true)]
    pub link_rate: Option<u64>,
    /// Packets the rate limiter queues before it tail-drops, 1 to 1000000 [default: 1000]
    #[arg(long, value_name = "PACKETS", value_parser = g::whole_in::<usize>(1, 1_000_000), allow_hyphen_values = true)]
    pub queue: Option<usize>,
    /// Seed of the impairment randomness (printed, and recorded in summary.csv's impairment column); the
    /// same seed and traffic repeat the same decisions [default: a fresh one]
    #[arg(long, value_name = "N", value_parser = g::seed, allow_hyphen_values = true)]
    pub seed: Option<u64>,
}

impl ImpairArgs {
    /// True if any impairment flag was given (`--seed` alone does not count).
    pub fn any_given(&self) -> bool {
        self.loss.is_some()
            || self.loss_correlation.is_some()
            || self.gemodel.is_some()
            || self.delay.is_some()
            || self.jitter.is_some()
            || self.jitter_dist.is_some()
            || self.reorder.is_some()
            || self.reorder_gap.is_some()
            || self.duplicate.is_some()
            || self.corrupt.is_some()
            || self.corrupt_fix_checksum
            || self.link_rate.is_some()
            || self.queue.is_some()
    }
}

/// `sockbench link`: join two network namespaces with the emulator.
#[derive(Args, Debug, Clone)]
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
    #[arg(long, value_name = "ADDR/LEN", default_value = "198.18.0.1/30", value_parser = g::cidr)]
    pub a_addr: Cidr,
    /// Network namespace for side B (default: this one; must differ from side A's)
    #[arg(long, value_name = "NAME")]
    pub b_netns: Option<String>,
    /// TUN device name on side B
    #[arg(long, value_name = "DEV", default_value = "sbtun1")]
    pub b_dev: String,
    /// Address of side B's TUN device
    #[arg(long, value_name = "ADDR/LEN", default_value = "198.18.0.2/30", value_parser = g::cidr)]
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
    #[arg(long, value_name = "TIME", value_parser = g::duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
}

/// Fill a listen queue and watch what the kernel does with the connections that do not fit.
#[derive(Args, Debug, Clone)]
pub struct BacklogArgs {
    /// Backlog passed to listen(2), 0 to 65535. Linux clamps it to net.core.somaxconn and queues backlog+1
    /// connections.
    #[arg(long, default_value = "5", value_parser = g::whole_in::<u32>(0, 65535), allow_hyphen_values = true)]
    pub backlog: u32,
    /// Number of clients that call connect(2) at the same moment, 1 to 1000.
    #[arg(long, default_value = "20", value_parser = g::whole_in::<u32>(1, 1000), allow_hyphen_values = true)]
    pub clients: u32,
    /// How long the server waits after listen(2) before its first accept(2), e.g. 2s, 1500ms (at most 10m).
    #[arg(long, default_value = "2s", value_parser = g::duration, allow_hyphen_values = true)]
    pub hold: Duration,
    /// Address the server binds (a bare number is a port on every address); port 0 lets the OS pick a free
    /// port. Clients connect to it (0.0.0.0 and :: are reached through loopback).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = g::socket_addr, allow_hyphen_values = true)]
    pub listen: std::net::SocketAddr,
    /// A client still not connected after this long gives up and is reported as failed (1ms to 10m).
    #[arg(long, default_value = "10s", value_parser = g::duration, allow_hyphen_values = true)]
    pub connect_timeout: Duration,
    /// Directory for `backlog.csv` (one row per client). Created if missing.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Flags of `sockbench ports`.
#[derive(Args, Debug, Clone)]
pub struct PortsArgs {
    /// Receivers sharing one port with SO_REUSEPORT, 2 to 16.
    #[arg(long, default_value = "2", value_parser = g::whole_in::<u16>(2, 16), allow_hyphen_values = true)]
    pub receivers: u16,
    /// TCP sessions to run against the shared port (each: a control and a data connection), 1 to 500.
    #[arg(long, default_value = "20", value_parser = g::whole_in::<u16>(1, 500), allow_hyphen_values = true)]
    pub sessions: u16,
    /// Address to share (port 0: one the OS picks; a bare number is a port on every address).
    #[arg(long, default_value = "127.0.0.1:0", value_parser = g::socket_addr, allow_hyphen_values = true)]
    pub listen: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sockbench").chain(args.iter().copied()))
    }

    #[test]
    fn engine_is_one_of_two_names() {
        let e = parse(&["compare", "--engine", "tc"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        let text = e.to_string();
        assert!(
            text.contains("netem") && text.contains("emulator"),
            "{text}"
        );
        let Command::Compare(c) = parse(&["compare", "--engine", "netem"]).unwrap().command else {
            panic!("compare")
        };
        assert_eq!(c.engine, Some(LabEngine::Netem));
    }

    #[test]
    fn negative_values_reach_the_grammar() {
        for (args, says) in [
            (&["compare", "--loss", "-5%"][..], "must not be negative"),
            (&["compare", "--delay", "-10ms"], "must not be negative"),
            (&["compare", "--seed", "-1"], "must not be negative"),
            (
                &["udp", "send", "h", "--rate", "-1"],
                "must not be negative",
            ),
            (
                &["udp", "send", "h", "--count", "-5"],
                "must not be negative",
            ),
            (&["backlog", "--clients", "-3"], "must not be negative"),
            (&["link", "--link-rate", "-1mbit"], "must not be negative"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
            assert!(e.to_string().contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn every_subcommand_parses() {
        let c = parse(&["backlog", "--backlog", "3", "--hold", "1500ms"]).unwrap();
        let Command::Backlog(b) = c.command else {
            panic!("backlog")
        };
        assert_eq!((b.backlog, b.clients), (3, 20));
        assert_eq!(b.hold, Duration::from_millis(1500));
        assert_eq!(b.connect_timeout, Duration::from_secs(10));
        assert!(parse(&["backlog", "--clients", "0"]).is_err());
        let Command::Ports(p) = parse(&["ports", "--listen", "5999"]).unwrap().command else {
            panic!("ports")
        };
        assert_eq!(p.listen, "0.0.0.0:5999".parse().unwrap());
        let Command::Link(l) = parse(&["link", "--loss", "5%", "--a-addr", "198.18.0.5/30"])
            .unwrap()
            .command
        else {
            panic!("link")
        };
        assert_eq!(l.impair.loss, Some(0.05));
        assert_eq!(l.a_addr.to_string(), "198.18.0.5/30");
        let Command::Compare(c) = parse(&[
            "compare",
            "--loss-correlation",
            "25",
            "--reorder-gap",
            "3",
            "--queue",
            "100",
            "--link-rate",
            "10mbit",
            "--seed",
            "7",
            "--jitter-dist",
            "normal",
        ])
        .unwrap()
        .command
        else {
            panic!("compare")
        };
        let i = &c.impair;
        assert_eq!(
            (
                i.loss_correlation,
                i.reorder_gap,
                i.queue,
                i.link_rate,
                i.seed
            ),
            (Some(0.25), Some(3), Some(100), Some(10_000_000), Some(7))
        );
        assert_eq!(i.jitter_dist, Some(JitterDist::Normal));
        assert!(i.any_given());
        assert!(!ImpairArgs {
            seed: Some(1),
            ..Default::default()
        }
        .any_given());
    }
}
