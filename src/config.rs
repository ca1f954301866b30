//! Validated settings, built once from the command line for every subcommand (ripgrep's low-args → high-args
//! step). Every default the user did not give is filled here from the one place that defines it, and every
//! rule that spans several flags lives here and nowhere else; nothing deeper sees a raw string. Every mistake
//! is a [`UsageError`]: one line that names the value and the fix, exit code 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::Secret;
use crate::cli::{
    self, AuthArgs, BacklogArgs, CapArgs, Cli, Command, CompareArgs, ImpairArgs, LinkArgs,
    OutputArgs, PortsArgs, RecvArgs, Role, SendArgs, TrafficArgs,
};
use crate::error::UsageError;
use crate::grammar::{HostPort, SizeSpec};
use crate::lab::Engine;
use crate::link::{GilbertElliott, Impairment, JitterDist, LinkSettings};
use crate::traffic::{Caps, Protocol, SizeMix, Traffic, DEFAULT_MAX_MESSAGES};
use crate::traffic::{Schedule, TimerMode};
use crate::wire;

pub type Result<T> = std::result::Result<T, UsageError>;

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// compare's default message count: a few seconds at the default rate, so the first run is quick.
pub const COMPARE_COUNT: u64 = 2000;
/// Longest `backlog --hold` / `--connect-timeout`: keeps every backlog run bounded in wall-clock time.
pub const BACKLOG_MAX_WAIT: Duration = Duration::from_secs(600);
/// Longest emulated delay or jitter: the emulator holds every packet that long.
pub const MAX_LINK_DELAY: Duration = Duration::from_secs(3600);

/// What `run` executes: one validated settings value per subcommand.
#[derive(Debug, Clone)]
pub enum Config {
    Send(SendConfig),
    Recv(RecvConfig),
    Compare(CompareConfig),
    Link(LinkSettings),
    Backlog(BacklogConfig),
    Ports(PortsConfig),
}

impl Config {
    pub fn from_cli(cli: &Cli) -> Result<Config> {
        Ok(match &cli.command {
            Command::Tcp { role } => Config::role(Protocol::Tcp, role)?,
            Command::Udp { role } => Config::role(Protocol::Udp, role)?,
            Command::Compare(a) => Config::Compare(CompareConfig::from_args(a)?),
            Command::Link(a) => Config::Link(link_settings(a)?),
            Command::Backlog(a) => Config::Backlog(BacklogConfig::from_args(a)?),
            Command::Ports(a) => Config::Ports(PortsConfig::from_args(a)),
        })
    }

    fn role(protocol: Protocol, role: &Role) -> Result<Config> {
        Ok(match role {
            Role::Send(a) => Config::Send(SendConfig::from_args(protocol, a)?),
            Role::Recv(a) => Config::Recv(RecvConfig::from_args(protocol, a)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Output directories

/// Check up front that `dir` (given as `flag`) can hold the run's files, WITHOUT creating anything: the
/// nearest existing ancestor must be a directory this process may create entries in. The same advice for
/// every subcommand that writes files.
pub fn check_out_dir(flag: &str, dir: &Path) -> Result<()> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(out_dir_error(
                    flag,
                    dir,
                    &format!("{} is not a directory", at.display()),
                ))
            }
            // Missing, or below a file: look further up for what is there.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                at = match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            Err(e) => return Err(out_dir_error(flag, dir, &e.to_string())),
        }
    }
    match can_create_in(at) {
        Ok(()) => Ok(()),
        Err(e) => Err(out_dir_error(flag, dir, &format!("{}: {e}", at.display()))),
    }
}

/// The advice every subcommand gives for an output directory it cannot use.
pub fn out_dir_error(flag: &str, dir: &Path, why: &str) -> UsageError {
    usage(format!(
        "cannot write to {flag} {} ({why}): choose a directory you can write, e.g. {flag} /tmp/sockbench-results",
        dir.display()
    ))
}

/// Whether a file could be created in the existing directory `dir`. An O_TMPFILE file has no name and
/// vanishes when closed, so the check leaves nothing behind. A filesystem without O_TMPFILE cannot answer;
/// then the real write will say.
fn can_create_in(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic (send and compare)

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

/// The most messages `schedule` at `rate` starts within `d`: the count a `--duration`-only session
/// announces, so the duration, not a default count, ends it. Exact for the periodic schedule (message i is
/// due at round(i / rate), as `pacing::Pacer` computes it, and is sent while it is due before `d`). For
/// Poisson, 10 standard deviations above the mean (10 + λd + 10·√(λd)): the session stops there if it gets
/// that far, which happens with probability below 10^-20. Unpaced: as many as a receiver tracks by default
/// (`DEFAULT_MAX_MESSAGES`, 2^28): the session ends at the duration or there, whichever comes first.
pub fn count_within(rate: f64, schedule: Schedule, d: Duration) -> u64 {
    if rate <= 0.0 {
        return DEFAULT_MAX_MESSAGES;
    }
    let d_ns = d.as_nanos() as f64;
    let gap = 1e9 / rate;
    match schedule {
        Schedule::Periodic => {
            let due = |i: u64| (i as f64 * gap).round();
            let mut n = (d_ns / gap).ceil() as u64;
            while n > 0 && due(n - 1) >= d_ns {
                n -= 1;
            }
            while due(n) < d_ns {
                n += 1;
            }
            n
        }
        Schedule::Poisson => {
            let mean = d_ns / gap;
            (10.0 + mean + 10.0 * mean.sqrt()).ceil() as u64
        }
    }
}

/// Validate traffic flags for `protocol` (None: both, as compare sends both). `default_count` is used when
/// neither --count nor --duration is given.
pub fn traffic(
    a: &TrafficArgs,
    per_message: bool,
    protocol: Option<Protocol>,
    default_count: u64,
) -> Result<Traffic> {
    let d = Traffic::default();
    let schedule = match a.schedule {
        None => d.schedule,
        Some(cli::Schedule::Periodic) => Schedule::Periodic,
        Some(cli::Schedule::Poisson) => Schedule::Poisson,
    };
    let rate = a.rate.unwrap_or(d.rate);
    if a.duration == Some(Duration::ZERO) {
        return Err(usage(
            "--duration 0 would send nothing: give e.g. --duration 10s",
        ));
    }
    let count = match (a.count, a.duration) {
        (Some(n), _) => n,
        (None, Some(dur)) => count_within(rate, schedule, dur),
        (None, None) => default_count,
    };
    let mut t = Traffic {
        count,
        duration: a.duration,
        rate,
        schedule,
        echo: a.echo,
        linger: a.linger,
        per_message,
        ..d
    };
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
            t.size = list.iter().copied().max().unwrap_or(d.size);
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
    tuning(&mut t, a, protocol)?;
    Ok(t)
}

/// The send loop's tuning flags, each refused where it has no meaning rather than ignored.
/// `--gso auto` sends paced sessions below this rate one datagram per buffer (msg/s).
pub const GSO_AUTO_RATE: f64 = 100_000.0;

fn tuning(t: &mut Traffic, a: &TrafficArgs, protocol: Option<Protocol>) -> Result<()> {
    if a.outstanding.is_some() && !a.echo {
        return Err(usage(
            "--outstanding counts messages waiting for their reply: add --echo, or drop --outstanding",
        ));
    }
    if a.gso.is_some() && protocol == Some(Protocol::Tcp) {
        return Err(usage(
            "--gso is for UDP (TCP segments in the kernel anyway): drop --gso, or use udp send",
        ));
    }
    if a.write_per_message && protocol == Some(Protocol::Udp) {
        return Err(usage(
            "--write-per-message is for TCP (UDP sends one datagram per message): drop it, or use tcp send",
        ));
    }
    t.outstanding = a.outstanding;
    t.timer = match a.timer {
        None | Some(cli::TimerArg::Hybrid) => TimerMode::Hybrid,
        Some(cli::TimerArg::Sleep) => TimerMode::Sleep,
        Some(cli::TimerArg::Spin) => TimerMode::Spin,
    };
    // GSO cuts a buffer into equal segments: mixed sizes go one datagram per buffer. And a qdisc on the path
    // (netem) sees a GSO buffer as one packet, dropping, delaying or reordering up to 64 messages together:
    // `auto` uses it only where a run is after throughput, unpaced or at GSO_AUTO_RATE and more.
    t.gso = a.gso != Some(cli::GsoArg::Off)
        && t.mix.is_none()
        && (t.rate == 0.0 || t.rate >= GSO_AUTO_RATE);
    t.write_per_message = a.write_per_message;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Output {
    pub dir: PathBuf,
    pub label: String,
    pub trace: bool,
}

impl Output {
    pub fn from_args(a: &OutputArgs) -> Result<Output> {
        if a.label.contains(['\n', '\r']) {
            return Err(usage("--label must be one line"));
        }
        check_out_dir("--out", &a.out)?;
        Ok(Output {
            dir: a.out.clone(),
            label: a.label.clone(),
            trace: a.trace,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// send and recv

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
    /// --key-file: authenticate the session.
    pub secret: Option<Secret>,
}

/// The key of `--key-file` (or SOCKBENCH_KEY_FILE), read and checked now: a missing or short file is a usage
/// error before anything starts.
pub fn secret(a: &AuthArgs) -> Result<Option<Secret>> {
    a.key_file
        .as_deref()
        .map(|p| Secret::read(p).map_err(|e| usage(format!("--key-file: {e}"))))
        .transpose()
}

/// With a key every message carries a 16-byte MAC inside its size: the sizes must leave room for it.
fn check_room_for_mac(t: &Traffic, secret: &Option<Secret>) -> Result<()> {
    if secret.is_none() {
        return Ok(());
    }
    let need = if t.echo {
        wire::MIN_ECHO_LEN + wire::MAC_TRAILER_LEN
    } else {
        wire::HEADER_LEN + wire::MAC_TRAILER_LEN
    };
    if t.min_size() < need {
        return Err(usage(format!(
            "with --key-file every message carries a {}-byte MAC: use --size {need} or more{}",
            wire::MAC_TRAILER_LEN,
            if t.echo {
                " (--echo also needs room for the receiver's times)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

impl SendConfig {
    pub fn from_args(protocol: Protocol, a: &SendArgs) -> Result<SendConfig> {
        let mut traffic = traffic(
            &a.traffic,
            a.output.per_message,
            Some(protocol),
            Traffic::default().count,
        )?;
        load(&a.load, &a.traffic, &mut traffic)?;
        let output = Output::from_args(&a.output)?;
        let secret = secret(&a.auth)?;
        check_room_for_mac(&traffic, &secret)?;
        let alternatives = resolve_all(&a.host, protocol.default_port())?;
        let target = alternatives[0];
        Ok(SendConfig {
            protocol,
            peer_name: a.host.to_string(),
            target,
            alternatives,
            traffic,
            output,
            secret,
        })
    }
}

/// The receiver's caps: what was given, the rest from `Caps::default()` (the one place for their defaults).
pub fn caps(a: &CapArgs) -> Result<Caps> {
    let d = Caps::default();
    if a.max_rate == Some(0.0) {
        return Err(usage(
            "--max-rate 0 would refuse every paced sender and admit unpaced ones: give the highest rate to \
             accept in messages per second, e.g. --max-rate 1M (unpaced senders are bounded by --max-duration)",
        ));
    }
    if a.idle_timeout == Some(Duration::ZERO) {
        return Err(usage(
            "--idle-timeout 0 would cut every session at once: give e.g. --idle-timeout 30s",
        ));
    }
    if a.max_duration == Some(Duration::ZERO) {
        return Err(usage(
            "--max-duration 0 would refuse every session: give e.g. --max-duration 1h",
        ));
    }
    Ok(Caps {
        max_duration: a.max_duration.unwrap_or(d.max_duration),
        max_rate: a.max_rate.unwrap_or(d.max_rate),
        max_size: a.max_size.unwrap_or(d.max_size),
        max_sessions: a.max_sessions.unwrap_or(d.max_sessions),
        max_messages: a.max_messages.unwrap_or(d.max_messages),
        max_memory: a.max_memory.map_or(d.max_memory, |m| m as u64),
        idle_timeout: a.idle_timeout.unwrap_or(d.idle_timeout),
        max_load_flows: a.max_load_flows.unwrap_or(d.max_load_flows),
    })
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
    /// --key-file: senders must authenticate.
    pub secret: Option<Secret>,
}

impl RecvConfig {
    pub fn from_args(protocol: Protocol, a: &RecvArgs) -> Result<RecvConfig> {
        if a.reuse_port && protocol == Protocol::Udp {
            return Err(usage(
                "--reuse-port is for tcp recv: the kernel spreads UDP datagrams by their own addresses, apart from \
                 the session's control connection, so a receiver would get datagrams of sessions it does not know",
            ));
        }
        let listen = match &a.listen {
            None => SocketAddr::from(([0, 0, 0, 0], protocol.default_port())),
            Some(hp) => resolve_all(hp, protocol.default_port())?[0],
        };
        if let Some(out) = &a.out {
            check_out_dir("--out", out)?;
        }
        Ok(RecvConfig {
            protocol,
            listen,
            once: a.once,
            out: a.out.clone(),
            caps: caps(&a.caps)?,
            trace: a.trace,
            reuse_port: a.reuse_port,
            secret: secret(&a.auth)?,
        })
    }

    /// A quiet single-session receiver inside this process (compare, experiments), default caps.
    pub fn in_process(protocol: Protocol, listen: SocketAddr) -> RecvConfig {
        RecvConfig {
            protocol,
            listen,
            once: true,
            out: None,
            // compare's own receiver takes as many flows as its sender may run.
            caps: Caps {
                max_load_flows: crate::load::MAX_LOAD_FLOWS,
                ..Caps::default()
            },
            trace: false,
            reuse_port: false,
            secret: None,
        }
    }
}

/// Every address HOST[:PORT] resolves to, in the resolver's order (never empty).
pub fn resolve_all(hp: &HostPort, default_port: u16) -> Result<Vec<SocketAddr>> {
    let port = hp.port.unwrap_or(default_port);
    let host = hp.host.as_str();
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

// ---------------------------------------------------------------------------------------------
// Impairments (compare and link)

/// Build one direction's impairment from the flags, checking the rules that tie them together.
pub fn impairment(a: &ImpairArgs) -> Result<Impairment> {
    if a.loss.is_some() && a.gemodel.is_some() {
        return Err(usage(
            "--loss and --gemodel are two loss models: give only one",
        ));
    }
    let needs = [
        (
            a.loss_correlation.is_some() && a.loss.is_none(),
            "--loss-correlation needs --loss",
        ),
        (
            a.jitter_dist.is_some() && a.jitter.is_none(),
            "--jitter-dist needs --jitter",
        ),
        (
            a.reorder_gap.is_some() && a.reorder.is_none(),
            "--reorder-gap needs --reorder",
        ),
        (
            a.corrupt_fix_checksum && a.corrupt.is_none(),
            "--corrupt-fix-checksum needs --corrupt",
        ),
        (
            a.queue.is_some() && a.link_rate.is_none(),
            "--queue limits the rate limiter's queue: it needs --link-rate",
        ),
    ];
    if let Some((_, why)) = needs.iter().find(|(bad, _)| *bad) {
        return Err(usage(*why));
    }
    for (flag, d) in [("--delay", a.delay), ("--jitter", a.jitter)] {
        if let Some(d) = d.filter(|d| *d > MAX_LINK_DELAY) {
            return Err(usage(format!(
                "{flag} {} is longer than the emulator holds a packet: give at most 1h",
                humantime::format_duration(d)
            )));
        }
    }
    Ok(Impairment {
        loss: a.loss.unwrap_or(0.0),
        loss_correlation: a.loss_correlation.unwrap_or(0.0),
        gemodel: a.gemodel.map(|g| GilbertElliott {
            p: g.p,
            r: g.r,
            bad_loss: g.bad_loss,
            good_loss: g.good_loss,
        }),
        delay: a.delay.unwrap_or_default(),
        jitter: a.jitter.unwrap_or_default(),
        jitter_dist: match a.jitter_dist {
            None | Some(cli::JitterDist::Uniform) => JitterDist::Uniform,
            Some(cli::JitterDist::Normal) => JitterDist::Normal,
        },
        reorder: a.reorder.unwrap_or(0.0),
        reorder_gap: a.reorder_gap.unwrap_or(1),
        duplicate: a.duplicate.unwrap_or(0.0),
        corrupt: a.corrupt.unwrap_or(0.0),
        corrupt_fix_checksum: a.corrupt_fix_checksum,
        rate_bps: a.link_rate,
        queue_limit: a.queue.unwrap_or(0),
        fq_codel: false,
    })
}

/// `sockbench link`'s settings.
pub fn link_settings(a: &LinkArgs) -> Result<LinkSettings> {
    let a_to_b = impairment(&a.impair)?;
    let b_to_a = if a.symmetric {
        a_to_b.clone()
    } else {
        Impairment::default()
    };
    if a.a_netns == a.b_netns {
        return Err(usage(format!(
            "both sides are in {}: give --a-netns and --b-netns two different namespaces \
             (create them with `ip netns add`, or use scripts/lab.sh up --emulator)",
            a.a_netns
                .as_deref()
                .map_or("this network namespace".to_string(), |n| format!(
                    "namespace {n}"
                ))
        )));
    }
    if a.duration == Some(Duration::ZERO) {
        return Err(usage(
            "--duration 0 would stop at once: give e.g. --duration 30s, or leave it out to run until Ctrl-C",
        ));
    }
    if let Some(out) = &a.out {
        check_out_dir("--out", out)?;
    }
    Ok(LinkSettings {
        a_to_b,
        b_to_a,
        seed: a.impair.seed,
        a_netns: a.a_netns.clone(),
        a_dev: a.a_dev.clone(),
        a_addr: a.a_addr,
        b_netns: a.b_netns.clone(),
        b_dev: a.b_dev.clone(),
        b_addr: a.b_addr,
        out: a.out.clone(),
        label: a.label.clone(),
        duration: a.duration,
    })
}

// ---------------------------------------------------------------------------------------------
// compare

/// Where compare was asked to run; whether the lab can be built is decided when it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum PathRequest {
    /// `--loopback`.
    Loopback,
    /// No impairment flag: the lab with compare's default impairment where it can be built, else loopback.
    Auto,
    /// Impairment flags: the lab with this impairment, or a usage error where the lab cannot be built.
    Impaired(Impairment),
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub traffic: Traffic,
    pub output: Output,
    pub path: PathRequest,
    /// `--engine`; `None`: netem where the kernel has it (and it can apply the impairment), else the emulator.
    pub engine: Option<Engine>,
    /// `--seed`; a fresh one is drawn (and printed) when the lab runs without it.
    pub seed: Option<u64>,
    /// --key-file: both sessions authenticated (sender and receiver share it).
    pub secret: Option<Secret>,
}

impl CompareConfig {
    pub fn from_args(a: &CompareArgs) -> Result<CompareConfig> {
        let traffic = traffic(&a.traffic, a.output.per_message, None, COMPARE_COUNT)?;
        // Validate the impairment first: a typo is reported as such, whatever the path.
        let asked = a.impair.any_given();
        let impairment = impairment(&a.impair)?;
        let path = match (a.loopback, asked) {
            (true, true) => {
                return Err(usage(
                    "--loopback runs without the lab, so impairment flags cannot apply: drop --loopback to \
                     impair the private lab's link (needs root), or drop the impairment flags",
                ))
            }
            (true, false) if a.impair.seed.is_some() => {
                return Err(usage(
                    "--seed seeds the lab's impairment and --loopback has none: drop one of them",
                ))
            }
            (true, false) => PathRequest::Loopback,
            (false, true) => PathRequest::Impaired(impairment),
            (false, false) => PathRequest::Auto,
        };
        let engine = a.engine.map(|e| match e {
            cli::LabEngine::Netem => Engine::Netem,
            cli::LabEngine::Emulator => Engine::Emulator,
        });
        match (engine, &path) {
            (Some(e), PathRequest::Loopback) => {
                return Err(usage(format!(
                    "--engine {} chooses the link between the lab's hosts and --loopback has no lab: drop one \
                     of them",
                    e.name()
                )))
            }
            (Some(Engine::Netem), _) if a.impair.seed.is_some() => {
                return Err(usage(
                    "--seed: netem draws its own random numbers and cannot repeat a run's decisions: drop \
                     --seed, or use --engine emulator",
                ))
            }
            (Some(Engine::Netem), PathRequest::Impaired(i)) => {
                if let Some(why) = crate::lab::netem::refusal(i) {
                    return Err(usage(format!(
                        "--engine netem: {why}; or use --engine emulator"
                    )));
                }
            }
            _ => {}
        }
        let mut traffic = traffic;
        load(&a.load, &a.traffic, &mut traffic)?;
        let path = aqm(a, path)?;
        let secret = secret(&a.auth)?;
        check_room_for_mac(&traffic, &secret)?;
        Ok(CompareConfig {
            traffic,
            output: Output::from_args(&a.output)?,
            path,
            engine,
            seed: a.impair.seed,
            secret,
        })
    }
}

/// compare's `--aqm`: fq_codel at the rate limiter needs a rate limiter (`--link-rate`) and the netem engine.
fn aqm(a: &CompareArgs, path: PathRequest) -> Result<PathRequest> {
    if a.aqm != Some(cli::AqmArg::FqCodel) {
        return Ok(path);
    }
    match path {
        PathRequest::Impaired(mut i) if i.rate_bps.is_some() => {
            if a.engine == Some(cli::LabEngine::Emulator) {
                return Err(usage(
                    "--aqm fq_codel: the emulator's queue is a tail-drop FIFO with no AQM: use --engine netem \
                     (a kernel with sch_netem, e.g. scripts/vm.sh run -- ...)",
                ));
            }
            i.fq_codel = true;
            Ok(PathRequest::Impaired(i))
        }
        _ => Err(usage(
            "--aqm fq_codel manages the queue of a bottleneck: give one with --link-rate (e.g. --link-rate \
             20mbit --queue 1000)",
        )),
    }
}

/// --load, --load-direction, --idle-probes: the two phases of each session and the load beside them. Without
/// --count or --duration, the loaded phase gets [`crate::load::DEFAULT_LOADED_FACTOR`] times the idle one.
pub fn load(a: &cli::LoadArgs, ta: &TrafficArgs, t: &mut Traffic) -> Result<()> {
    let Some(flows) = a.load else {
        let stray = [
            (a.idle_probes.is_some(), "--idle-probes"),
            (a.load_direction.is_some(), "--load-direction"),
            (a.load_cc.is_some(), "--load-cc"),
            (a.probe_on_load, "--probe-on-load"),
            (a.notsent_lowat.is_some(), "--notsent-lowat"),
        ];
        if let Some((_, flag)) = stray.iter().find(|(given, _)| *given) {
            return Err(usage(format!(
                "{flag} shapes the load of --load N, which is not given: add --load 4, say, or drop {flag}"
            )));
        }
        return Ok(());
    };
    t.load_direction = match a.load_direction {
        None | Some(cli::LoadDirArg::Up) => crate::load::LoadDirection::Up,
        Some(cli::LoadDirArg::Down) => crate::load::LoadDirection::Down,
        Some(cli::LoadDirArg::Both) => crate::load::LoadDirection::Both,
    };
    let idle = a
        .idle_probes
        .unwrap_or_else(|| crate::load::default_idle_probes(t.rate));
    if ta.count.is_none() && ta.duration.is_none() {
        t.count = idle.saturating_mul(1 + crate::load::DEFAULT_LOADED_FACTOR);
    }
    if idle == 0 || idle >= t.count {
        return Err(usage(format!(
            "--load needs both phases: the idle phase's {idle} probes (--idle-probes) must be at least 1 and \
             fewer than the session's {} messages (--count): raise --count or lower --idle-probes",
            t.count
        )));
    }
    if let Some(cc) = &a.load_cc {
        // TCP_CONGESTION takes a name of at most 15 bytes (TCP_CA_NAME_MAX 16, with its NUL).
        if cc.is_empty()
            || cc.len() > 15
            || !cc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(usage(format!(
                "--load-cc {cc:?} is not a congestion control's name: use e.g. cubic, reno or bbr (see \
                 /proc/sys/net/ipv4/tcp_available_congestion_control)"
            )));
        }
        t.load_cc = cc.clone();
    }
    if a.probe_on_load && (flows == 0 || t.load_direction == crate::load::LoadDirection::Down) {
        return Err(usage(
            "--probe-on-load interleaves probes on a load connection this end sends on: give --load 1 or more \
             with --load-direction up or both",
        ));
    }
    t.probe_on_load = a.probe_on_load;
    if let Some(n) = a.notsent_lowat {
        t.notsent_lowat = Some(u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            usage(format!(
                "--notsent-lowat {n}: give 1 byte to 4 GiB, e.g. --notsent-lowat 16k"
            ))
        })?);
    }
    t.idle_probes = idle;
    t.load_flows = flows;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Experiments

/// `sockbench backlog`'s settings.
#[derive(Debug, Clone)]
pub struct BacklogConfig {
    pub backlog: u32,
    pub clients: u32,
    pub hold: Duration,
    pub listen: SocketAddr,
    pub connect_timeout: Duration,
    pub out: Option<PathBuf>,
}

impl BacklogConfig {
    pub fn from_args(a: &BacklogArgs) -> Result<BacklogConfig> {
        let cfg = BacklogConfig {
            backlog: a.backlog,
            clients: a.clients,
            hold: a.hold,
            listen: a.listen,
            connect_timeout: a.connect_timeout,
            out: a.out.clone(),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// The bounds that keep every run short; also checked when a test builds the settings by hand.
    pub fn check(&self) -> Result<()> {
        let max = humantime::format_duration(BACKLOG_MAX_WAIT);
        if self.hold > BACKLOG_MAX_WAIT {
            return Err(usage(format!(
                "--hold {} is too long: give at most {max}",
                humantime::format_duration(self.hold)
            )));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > BACKLOG_MAX_WAIT {
            return Err(usage(format!(
                "--connect-timeout {} must be between 1ms and {max}",
                humantime::format_duration(self.connect_timeout)
            )));
        }
        if let Some(out) = &self.out {
            check_out_dir("--out", out)?;
        }
        Ok(())
    }
}

/// `sockbench ports`'s settings.
#[derive(Debug, Clone)]
pub struct PortsConfig {
    pub receivers: u16,
    pub sessions: u16,
    pub listen: SocketAddr,
}

impl PortsConfig {
    pub fn from_args(a: &PortsArgs) -> PortsConfig {
        PortsConfig {
            receivers: a.receivers,
            sessions: a.sessions,
            listen: a.listen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::Pacer;
    use clap::{CommandFactory, Parser};

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("sockbench").chain(args.iter().copied())).unwrap()
    }

    fn config(args: &[&str]) -> Result<Config> {
        Config::from_cli(&cli(args))
    }

    fn refused(args: &[&str]) -> String {
        config(args).expect_err("should be refused").0
    }

    fn send(args: &[&str]) -> SendConfig {
        let mut all = vec!["udp", "send", "127.0.0.1", "--out", "/tmp"];
        all.extend_from_slice(args);
        match config(&all).unwrap() {
            Config::Send(s) => s,
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn traffic_defaults_and_cross_flag_rules() {
        let t = send(&[]).traffic;
        assert_eq!(t, Traffic::default());
        // --gso auto: unpaced and fast runs only; never mixed sizes, never when turned off.
        let gso = |a: &[&str]| send(a).traffic.gso;
        assert!(!gso(&[]) && gso(&["--rate", "0"]) && gso(&["--rate", "100k"]));
        assert!(
            !gso(&["--rate", "0", "--gso", "off"]) && !gso(&["--rate", "0", "--size", "64,128"])
        );
        assert_eq!((t.count, t.rate, t.size), (10_000, 1000.0, 64));
        assert!(refused(&["udp", "send", "h", "--size", "20"]).contains("--size 48 or more"));
        assert!(refused(&["udp", "send", "h", "--size", "70000"]).contains("smaller --size"));
        assert!(refused(&["tcp", "send", "h", "--size", "48", "--echo"]).contains("--size 64"));
        assert!(refused(&["udp", "send", "h", "--duration", "0"]).contains("--duration 0"));
        let big = send_tcp(&["--size", "70000"]);
        assert_eq!(big.traffic.size, 70_000);
    }

    fn send_tcp(args: &[&str]) -> SendConfig {
        let mut all = vec!["tcp", "send", "127.0.0.1", "--out", "/tmp"];
        all.extend_from_slice(args);
        match config(&all).unwrap() {
            Config::Send(s) => s,
            c => panic!("{c:?}"),
        }
    }

    /// Issue 12 item 6: --duration alone is not cut short by the default count.
    #[test]
    fn duration_alone_is_not_cut_by_the_default_count() {
        let t = send(&["--duration", "30s", "--rate", "5k"]).traffic;
        assert_eq!(t.count, 150_000);
        assert_eq!(t.expected_duration(), Some(Duration::from_secs(30)));
        assert_eq!(
            send(&["--duration", "30s", "--rate", "0"]).traffic.count,
            DEFAULT_MAX_MESSAGES
        );
        assert_eq!(send(&["--duration", "1s", "--count", "5"]).traffic.count, 5);
        assert_eq!(send(&["--rate", "5k"]).traffic.count, 10_000);
        let p = send(&["--duration", "10s", "--schedule", "poisson"]).traffic;
        assert_eq!(p.count, 10 + 10_000 + 1000);
        match config(&["compare", "--loopback", "--duration", "2s", "--out", "/tmp"]).unwrap() {
            Config::Compare(c) => assert_eq!(c.traffic.count, 2000),
            c => panic!("{c:?}"),
        }
        match config(&["compare", "--loopback", "--out", "/tmp"]).unwrap() {
            Config::Compare(c) => assert_eq!(c.traffic.count, COMPARE_COUNT),
            c => panic!("{c:?}"),
        }
    }

    /// The periodic count is exactly what the pacer starts before the duration ends.
    #[test]
    fn periodic_count_matches_the_pacer() {
        for (rate, d) in [
            (1000.0, Duration::from_secs(1)),
            (3.0, Duration::from_secs(1)),
            (7.0, Duration::from_millis(1001)),
            (1e6 / 3.0, Duration::from_millis(10)),
            (0.01, Duration::from_secs(150)),
            (1e9, Duration::from_nanos(1500)),
        ] {
            let mut p = Pacer::new(rate, Schedule::Periodic, 1);
            let mut n = 0u64;
            while Duration::from_nanos(p.peek()) < d {
                p.advance();
                n += 1;
            }
            assert_eq!(count_within(rate, Schedule::Periodic, d), n, "{rate} {d:?}");
        }
    }

    #[test]
    fn caps_come_from_caps_default() {
        let d = Caps::default();
        let Config::Recv(r) = config(&["tcp", "recv"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                r.caps.max_duration,
                r.caps.max_rate,
                r.caps.max_size,
                r.caps.max_sessions
            ),
            (d.max_duration, d.max_rate, d.max_size, d.max_sessions)
        );
        let Config::Recv(r) = config(&["tcp", "recv", "--max-rate", "5k"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.caps.max_rate, r.caps.max_sessions),
            (5000.0, d.max_sessions)
        );
        // The help names the same defaults.
        let help = Cli::command()
            .find_subcommand_mut("tcp")
            .unwrap()
            .find_subcommand_mut("recv")
            .unwrap()
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for default in [
            format!("[default: {}]", humantime::format_duration(d.max_duration)),
            format!("[default: {}M]", d.max_rate / 1e6),
            format!("[default: {}]", d.max_size),
            format!("[default: {}]", d.max_sessions),
        ] {
            assert!(help.contains(&default), "help should say {default}: {help}");
        }
        let t = Traffic::default();
        let help = Cli::command()
            .find_subcommand_mut("udp")
            .unwrap()
            .find_subcommand_mut("send")
            .unwrap()
            .render_long_help()
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for default in [
            format!("[default: {}; compare: {COMPARE_COUNT};", t.count),
            format!("[default: {}]", t.rate),
            format!("[default: {}]", t.size),
            format!("[default: {}]", t.schedule.name()),
        ] {
            assert!(help.contains(&default), "help should say {default}: {help}");
        }
    }

    #[test]
    fn max_rate_zero_is_refused() {
        let e = refused(&["tcp", "recv", "--max-rate", "0"]);
        assert!(
            e.contains("--max-rate 0") && e.contains("e.g. --max-rate 1M"),
            "{e}"
        );
    }

    #[test]
    fn listen_port_alone_is_every_address() {
        let Config::Recv(r) = config(&["tcp", "recv", "--listen", "5300"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.listen, "0.0.0.0:5300".parse().unwrap());
        let Config::Recv(r) = config(&["udp", "recv", "--listen", "[::1]:7"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.listen, "[::1]:7".parse().unwrap());
        let Config::Recv(r) = config(&["udp", "recv", "--listen", "127.0.0.1"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.listen, "127.0.0.1:5301".parse().unwrap());
    }

    #[test]
    fn impairment_rules() {
        let imp = |args: &[&str]| {
            let mut all = vec!["compare", "--out", "/tmp"];
            all.extend_from_slice(args);
            match config(&all) {
                Ok(Config::Compare(c)) => Ok(c),
                Ok(c) => panic!("{c:?}"),
                Err(e) => Err(e.0),
            }
        };
        let c = imp(&[
            "--loss", "5%", "--delay", "20ms", "--jitter", "5ms", "--seed", "9",
        ])
        .unwrap();
        let PathRequest::Impaired(i) = &c.path else {
            panic!("{:?}", c.path)
        };
        assert_eq!(i.describe(), "loss 5%, delay 20ms ± 5ms");
        assert_eq!(c.seed, Some(9));
        assert_eq!(imp(&[]).unwrap().path, PathRequest::Auto);
        assert_eq!(imp(&["--loopback"]).unwrap().path, PathRequest::Loopback);
        assert!(imp(&["--loopback", "--loss", "5%"])
            .unwrap_err()
            .contains("--loopback"));
        assert!(imp(&["--loopback", "--seed", "5"])
            .unwrap_err()
            .contains("--seed"));
        assert!(imp(&["--queue", "10"]).unwrap_err().contains("--link-rate"));
        assert!(imp(&["--loss", "1%", "--gemodel", "1,30"])
            .unwrap_err()
            .contains("only one"));
        assert!(imp(&["--delay", "2h"]).unwrap_err().contains("at most 1h"));
        assert!(imp(&["--reorder-gap", "3"])
            .unwrap_err()
            .contains("--reorder-gap needs --reorder"));
        let c = imp(&[
            "--gemodel",
            "1%,30%",
            "--jitter",
            "1ms",
            "--jitter-dist",
            "normal",
        ])
        .unwrap();
        let PathRequest::Impaired(i) = &c.path else {
            panic!()
        };
        assert_eq!(i.gemodel.map(|g| (g.p, g.r)), Some((0.01, 0.3)));
        assert_eq!(i.jitter_dist, JitterDist::Normal);

        // --engine: a validated choice; what netem cannot do is refused up front, naming the way out.
        assert_eq!(imp(&[]).unwrap().engine, None);
        assert_eq!(
            imp(&["--engine", "netem"]).unwrap().engine,
            Some(Engine::Netem)
        );
        assert_eq!(
            imp(&["--engine", "emulator", "--loss", "1%", "--seed", "3"])
                .unwrap()
                .engine,
            Some(Engine::Emulator)
        );
        for (flags, says) in [
            (&["--engine", "emulator", "--loopback"][..], "--loopback"),
            (
                &["--engine", "netem", "--loss", "1%", "--seed", "3"],
                "--seed",
            ),
            (&["--engine", "netem", "--reorder", "2%"], "--delay"),
            (
                &[
                    "--engine",
                    "netem",
                    "--corrupt",
                    "1%",
                    "--corrupt-fix-checksum",
                ],
                "--corrupt-fix-checksum",
            ),
        ] {
            let e = imp(flags).unwrap_err();
            assert!(e.contains(says), "{flags:?}: {e}");
            if flags[1] == "netem" {
                assert!(e.contains("--engine emulator"), "{flags:?}: {e}");
            }
        }
    }

    /// The `impairment` column holds flags that, given again, make the same impairment.
    #[test]
    fn recorded_flags_repeat_the_impairment() {
        let impaired = |flags: &[&str]| {
            let mut all = vec!["compare", "--out", "/tmp"];
            all.extend_from_slice(flags);
            match config(&all).unwrap() {
                Config::Compare(CompareConfig {
                    path: PathRequest::Impaired(i),
                    ..
                }) => i,
                c => panic!("{c:?}"),
            }
        };
        for flags in [
            &[
                "--loss",
                "7%",
                "--loss-correlation",
                "25%",
                "--delay",
                "1.5ms",
                "--jitter",
                "250us",
                "--jitter-dist",
                "normal",
                "--reorder",
                "0.1%",
                "--reorder-gap",
                "3",
                "--duplicate",
                "0.5%",
                "--corrupt",
                "0.01%",
                "--corrupt-fix-checksum",
                "--link-rate",
                "10mbit",
                "--queue",
                "100",
            ][..],
            &[
                "--gemodel",
                "1%,30%",
                "--link-rate",
                "1500kbit",
                "--delay",
                "2s",
            ],
            &["--loss", "33.3333%", "--jitter", "7ms"],
        ] {
            let first = impaired(flags);
            let recorded = first.to_flags();
            let again = impaired(&recorded.split_whitespace().collect::<Vec<_>>());
            assert_eq!(again, first, "{recorded}");
        }
    }

    #[test]
    fn link_settings_rules() {
        let e = refused(&["link", "--loss", "5%"]);
        assert!(e.contains("--a-netns and --b-netns"), "{e}");
        let Config::Link(l) = config(&[
            "link",
            "--a-netns",
            "a",
            "--b-netns",
            "b",
            "--loss",
            "5%",
            "--symmetric",
            "--seed",
            "3",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (l.a_to_b.loss, l.b_to_a.loss, l.seed),
            (0.05, 0.05, Some(3))
        );
        assert!(refused(&["link", "--a-netns", "a", "--duration", "0"]).contains("--duration 0"));
    }

    #[test]
    fn backlog_bounds_are_usage_errors() {
        assert!(refused(&["backlog", "--hold", "20m"]).contains("--hold 20m is too long"));
        assert!(refused(&["backlog", "--connect-timeout", "0"]).contains("between 1ms"));
        let Config::Backlog(b) = config(&["backlog", "--listen", "5999"]).unwrap() else {
            panic!()
        };
        assert_eq!(b.listen, "0.0.0.0:5999".parse().unwrap());
    }

    #[test]
    fn out_dir_is_checked_without_creating_anything() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        check_out_dir("--out", &deep).unwrap();
        assert!(!tmp.path().join("a").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = check_out_dir("--out", &file.join("sub")).unwrap_err().0;
        assert!(
            e.contains("is not a directory") && e.contains("choose a directory you can write"),
            "{e}"
        );
        let e = check_out_dir("--out", &file).unwrap_err().0;
        assert!(e.starts_with("cannot write to --out"), "{e}");
    }
}
