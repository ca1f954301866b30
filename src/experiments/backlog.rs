//! `sockbench backlog`: what `listen(backlog)` really does when more clients connect than the queue holds.
//!
//! A server calls socket, bind, listen(backlog) and then does *not* call accept for `--hold`; `--clients`
//! clients call connect at the same moment. The run records, per client, when connect completed and when the
//! server accepted it, and reads the kernel's own counters (TCP_INFO retransmits on both ends, the listener's
//! queue from /proc/net/tcp, TcpExt ListenOverflows from /proc/net/netstat) to say what happened to the
//! connections that did not fit.
//!
//! What Linux does (net/ipv4/tcp_input.c `tcp_conn_request`, tcp_minisocks.c `tcp_check_req`):
//! * the accept queue holds `min(backlog, net.core.somaxconn) + 1` established connections
//!   (`sk_acceptq_is_full` tests `>`, not `>=`);
//! * a SYN arriving while the queue is full is dropped silently (ListenOverflows += 1); the client retransmits
//!   it after the initial RTO of 1 s (RFC 6298 §2.1, then 2 s, 4 s, ...), so connect() is *delayed*, not
//!   refused;
//! * the SYN queue (half-open requests) is bounded by the same backlog; when several retransmitted SYNs
//!   arrive in one burst, the ones beyond it are answered with SYN cookies (`tcp_syncookies = 1`,
//!   TcpExt TCPReqQFullDoCookies) and the server keeps no state for them;
//! * if the accept queue filled between SYN and final ACK, that ACK is dropped (ListenOverflows += 1): the
//!   client's connect() has already returned. A stored request is retried by the server (SYN-ACK
//!   retransmit); a cookie connection is forgotten until the client's first data segment, which carries the
//!   cookie again. That is why every client here sends one byte right after connect, as a real client sends
//!   its request. With `net.ipv4.tcp_abort_on_overflow = 1` the server resets such a connection instead.
//!
//! Host sysctls are only read, never written.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::ports;
use crate::config::{self, BacklogConfig};
use crate::sys;
use crate::sys::poll::{poll, PollFd, PollFlags};

/// Name of the CSV file written into `--out`.
pub const CSV_FILE: &str = "backlog.csv";
/// Version of the CSV columns below; bump when a column changes meaning or is removed.
pub const CSV_SCHEMA_VERSION: u32 = 1;

/// Extra time the server keeps accepting after the last client deadline, for connections whose final ACK
/// was dropped and that only arrive with a retransmitted SYN-ACK.
const GRACE: Duration = Duration::from_secs(2);
/// The RTO a SYN starts with (RFC 6298 §2.1, Linux TCP_TIMEOUT_INIT). Used only as a fallback when TCP_INFO
/// is unavailable: a connect slower than 90% of it must have waited for a retransmission.
const INITIAL_RTO: Duration = Duration::from_secs(1);

/// What the kernel did with one client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed at once and the connection waited in the accept queue.
    Queued,
    /// The listener dropped the client's SYN (queue full); connect() completed only after the client
    /// retransmitted its SYN.
    DelayedByRetry,
    /// connect() completed without a SYN retry, but the listener had no room for the final ACK; the
    /// connection reached the accept queue only after a retransmission (the server's SYN-ACK, or the
    /// client's first data segment for a SYN-cookie connection).
    AckDropped,
    /// connect() failed or timed out, or the connection was never accepted before the deadline.
    Failed(String),
}

impl Outcome {
    /// Short label for tables and CSV.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::DelayedByRetry => "delayed_by_retry",
            Outcome::AckDropped => "ack_dropped",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// One client of the run. Times are microseconds since the first client called connect().
#[derive(Debug, Clone)]
pub struct ClientResult {
    pub id: usize,
    /// Ephemeral port the OS picked at connect(); 0 if the socket never got one.
    pub local_port: u16,
    /// When connect() completed successfully.
    pub connect_us: Option<u64>,
    /// When the server's accept() returned this connection (matched by the peer port).
    pub accepted_at_us: Option<u64>,
    /// SYN retransmissions by the client (TCP_INFO tcpi_total_retrans right after connect completed).
    pub syn_retransmits: Option<u32>,
    /// SYN-ACK retransmissions by the server (tcpi_total_retrans of the accepted socket, which the kernel
    /// copies from the request's retransmit count).
    pub synack_retransmits: Option<u32>,
    /// Retransmissions of the client's one-byte request after connect (tcpi_total_retrans at the end minus
    /// `syn_retransmits`): non-zero when the server had forgotten the connection (final ACK dropped).
    pub data_retransmits: Option<u32>,
    pub outcome: Outcome,
}

/// Host settings that decide the experiment, read from /proc/sys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctls {
    pub somaxconn: u32,
    pub abort_on_overflow: bool,
    pub syncookies: u32,
    pub syn_retries: u32,
    pub synack_retries: u32,
    /// `tcp_syn_linear_timeouts` (Linux 6.6+): the first N SYN retries come every 1 s instead of doubling.
    pub syn_linear_timeouts: Option<u32>,
}

impl Sysctls {
    /// Read the sysctls of the current network namespace.
    pub fn read() -> anyhow::Result<Self> {
        fn get(name: &str) -> anyhow::Result<u32> {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            let text = fs::read_to_string(&path)
                .with_context(|| format!("reading {path} (the backlog experiment needs Linux)"))?;
            text.trim()
                .parse()
                .with_context(|| format!("parsing {path}: {text:?}"))
        }
        Ok(Sysctls {
            somaxconn: get("net.core.somaxconn")?,
            abort_on_overflow: get("net.ipv4.tcp_abort_on_overflow")? != 0,
            syncookies: get("net.ipv4.tcp_syncookies")?,
            syn_retries: get("net.ipv4.tcp_syn_retries")?,
            synack_retries: get("net.ipv4.tcp_synack_retries")?,
            syn_linear_timeouts: get("net.ipv4.tcp_syn_linear_timeouts").ok(),
        })
    }
}

/// Result of one run of the experiment.
#[derive(Debug, Clone)]
pub struct BacklogReport {
    pub clients: Vec<ClientResult>,
    /// Backlog requested with `--backlog`.
    pub backlog: u32,
    pub hold: Duration,
    pub listen: SocketAddr,
    pub somaxconn: u32,
    pub abort_on_overflow: bool,
    pub syncookies: u32,
    pub syn_retries: u32,
    pub synack_retries: u32,
    pub syn_linear_timeouts: Option<u32>,
    /// `min(backlog, somaxconn)`: what the kernel stores as the listener's limit.
    pub effective_backlog: u32,
    /// Connections waiting in the accept queue just before the first accept (/proc/net/tcp rx_queue).
    pub queue_len_before_accept: Option<u32>,
    /// TcpExt ListenOverflows / ListenDrops during the run. Counters are per network namespace, so other
    /// programs on the host may add to them.
    pub listen_overflows_delta: Option<u64>,
    pub listen_drops_delta: Option<u64>,
    /// TcpExt SyncookiesSent during the run: SYNs answered with a cookie because the SYN queue (also bounded
    /// by the backlog) was full.
    pub syncookies_sent_delta: Option<u64>,
    /// Connected clients whose final ACK the server dropped, whatever their outcome (SYN-ACK or data had to
    /// be retransmitted before the server queued them).
    pub final_ack_dropped: usize,
    pub queued: usize,
    pub delayed_by_retry: usize,
    pub ack_dropped: usize,
    pub failed: usize,
    pub accepted: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl BacklogReport {
    /// How many connections Linux keeps in the accept queue for this backlog: `min(backlog, somaxconn) + 1`.
    pub fn expected_queued(&self) -> usize {
        self.effective_backlog as usize + 1
    }

    /// Human-readable table and summary.
    pub fn print_table(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "server: socket() bind({}) listen(backlog={}) ... no accept() for {} ... then accept() until all are in",
            self.listen,
            self.backlog,
            humantime::format_duration(self.hold)
        )?;
        writeln!(
            out,
            "clients: {} x socket() connect() at once, non-blocking, completion seen with poll()",
            self.clients.len()
        )?;
        writeln!(
            out,
            "sysctls: net.core.somaxconn={} tcp_abort_on_overflow={} tcp_syncookies={} tcp_syn_retries={} tcp_synack_retries={} tcp_syn_linear_timeouts={}",
            self.somaxconn,
            u8::from(self.abort_on_overflow),
            self.syncookies,
            self.syn_retries,
            self.synack_retries,
            opt(self.syn_linear_timeouts)
        )?;
        writeln!(
            out,
            "effective backlog min({}, {}) = {} -> Linux queues {} (backlog+1); /proc/net/tcp showed {} waiting before the first accept",
            self.backlog,
            self.somaxconn,
            self.effective_backlog,
            self.expected_queued(),
            opt(self.queue_len_before_accept)
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:>6} {:>10} {:>11} {:>12} {:>8} {:>11} {:>9}  outcome",
            "client",
            "local_port",
            "connect_ms",
            "accepted_ms",
            "syn_retx",
            "synack_retx",
            "data_retx"
        )?;
        for c in &self.clients {
            let extra = match &c.outcome {
                Outcome::Failed(why) => format!(" ({why})"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:>6} {:>10} {:>11} {:>12} {:>8} {:>11} {:>9}  {}{}",
                c.id,
                c.local_port,
                ms(c.connect_us),
                ms(c.accepted_at_us),
                opt(c.syn_retransmits),
                opt(c.synack_retransmits),
                opt(c.data_retransmits),
                c.outcome.label(),
                extra
            )?;
        }
        writeln!(out)?;
        self.print_outcomes(out)?;
        writeln!(
            out,
            "TcpExt ListenOverflows +{}, ListenDrops +{}, SyncookiesSent +{} during the run (namespace-wide counters: each dropped SYN, ACK or data segment counts once)",
            opt(self.listen_overflows_delta),
            opt(self.listen_drops_delta),
            opt(self.syncookies_sent_delta)
        )?;
        writeln!(out, "{}", self.verdict())?;
        Ok(())
    }

    /// Outcomes are exclusive; a dropped final ACK is not: a client delayed by SYN retries can meet a full
    /// queue again with its final ACK. Line 1 counts outcomes, line 2 every dropped final ACK by outcome.
    fn print_outcomes(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "outcomes: {} queued at once, {} delayed by SYN retries, {} connected at once but had their final ACK dropped, {} failed; {} of {} accepted",
            self.queued,
            self.delayed_by_retry,
            self.ack_dropped,
            self.failed,
            self.accepted,
            self.clients.len()
        )?;
        if self.final_ack_dropped == 0 {
            writeln!(
                out,
                "no final ACK was dropped: no connection needed a SYN-ACK or data retransmission after connect"
            )?;
        } else {
            writeln!(
                out,
                "final ACK dropped by the full queue: {} clients in all ({} that connected at once, {} delayed by SYN retries, {} failed), each let in only by a retransmission after connect (SYN-ACK or data)",
                self.final_ack_dropped,
                self.ack_dropped,
                self.ack_dropped_after(|o| *o == Outcome::DelayedByRetry),
                self.ack_dropped_after(|o| matches!(o, Outcome::Failed(_))),
            )?;
        }
        Ok(())
    }

    /// Clients of an outcome whose final ACK the server dropped (they needed a SYN-ACK or data retransmission).
    fn ack_dropped_after(&self, outcome: fn(&Outcome) -> bool) -> usize {
        self.clients
            .iter()
            .filter(|c| outcome(&c.outcome))
            .filter(|c| {
                c.synack_retransmits.is_some_and(|r| r > 0)
                    || c.data_retransmits.is_some_and(|r| r > 0)
            })
            .count()
    }

    /// When a client retransmits an unanswered SYN, as configured on this host.
    fn retry_schedule(&self) -> String {
        match self.syn_linear_timeouts {
            Some(k) if k > 0 => format!(
                "every 1 s for the first {} retries as tcp_syn_linear_timeouts={k} says, then doubling",
                k.min(self.syn_retries)
            ),
            // RFC 6298: initial RTO 1 s, doubled on each timeout.
            _ => "after 1 s, then 2 s, 4 s, ... later".to_string(),
        }
    }

    /// The sentence that compares the measurement with the textbook claim.
    pub fn verdict(&self) -> String {
        let textbook = "Textbook: \"requests beyond the backlog are discarded.\"";
        let beyond = self.delayed_by_retry + self.ack_dropped + self.failed;
        if beyond == 0 {
            return format!(
                "{textbook} Here all {} connections fit in the queue ({} places), so nothing was beyond the backlog.",
                self.clients.len(),
                self.expected_queued()
            );
        }
        let delays: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.outcome == Outcome::DelayedByRetry)
            .filter_map(|c| c.connect_us)
            .collect();
        let mut s = format!("{textbook} On Linux they are not discarded for good: ");
        if self.delayed_by_retry > 0 {
            let lo = delays.iter().min().copied().unwrap_or(0);
            let hi = delays.iter().max().copied().unwrap_or(0);
            s += &format!(
                "the listener silently dropped the SYN of {} connections, their clients retransmitted it \
                 ({}) and connected {:.0}-{:.0} ms after starting, once accept() had made room: delayed, \
                 not refused.",
                self.delayed_by_retry,
                self.retry_schedule(),
                lo as f64 / 1e3,
                hi as f64 / 1e3
            );
        }
        let late = self.ack_dropped_after(|o| *o == Outcome::DelayedByRetry);
        if late > 0 {
            s += &format!(
                " {late} of the retried connections met a full queue again with their final ACK (retried \
                 SYNs arrive in one burst; past the SYN queue Linux answers with SYN cookies and keeps no \
                 state) and got in only when their first data segment was retransmitted."
            );
        }
        if self.ack_dropped > 0 {
            s += &format!(
                " {} clients saw connect() succeed at once while the server dropped their final ACK; a \
                 retransmission (SYN-ACK, or the client's data) brought them into the queue later.",
                self.ack_dropped
            );
        }
        if self.failed > 0 {
            s += &format!(
                " {} failed: a client gives up after its own timeout (here --connect-timeout, at most \
                 tcp_syn_retries={} retransmissions){}.",
                self.failed,
                self.syn_retries,
                if self.abort_on_overflow {
                    ", or got a reset because tcp_abort_on_overflow=1"
                } else {
                    ""
                }
            );
        }
        s
    }

    /// Write one CSV row per client to `path` (columns: see [`CsvRow`]).
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let file =
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        self.write_csv_to(file)
            .with_context(|| format!("writing {}", path.display()))
    }

    fn write_csv_to<W: Write>(&self, w: W) -> anyhow::Result<()> {
        let mut wtr = csv::Writer::from_writer(w);
        for c in &self.clients {
            wtr.serialize(CsvRow {
                schema_version: CSV_SCHEMA_VERSION,
                client_id: c.id,
                local_port: c.local_port,
                connect_us: c.connect_us,
                accepted_at_us: c.accepted_at_us,
                syn_retransmits: c.syn_retransmits,
                synack_retransmits: c.synack_retransmits,
                data_retransmits: c.data_retransmits,
                outcome: c.outcome.label().to_string(),
                error: match &c.outcome {
                    Outcome::Failed(why) => why.clone(),
                    _ => String::new(),
                },
                backlog: self.backlog,
                effective_backlog: self.effective_backlog,
                hold_us: self.hold.as_micros() as u64,
            })?;
        }
        wtr.flush()?;
        Ok(())
    }
}

/// One row of `backlog.csv`. Times are microseconds since the first connect(); empty means "did not happen".
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CsvRow {
    pub schema_version: u32,
    pub client_id: usize,
    pub local_port: u16,
    pub connect_us: Option<u64>,
    pub accepted_at_us: Option<u64>,
    pub syn_retransmits: Option<u32>,
    pub synack_retransmits: Option<u32>,
    pub data_retransmits: Option<u32>,
    /// `queued`, `delayed_by_retry`, `ack_dropped` or `failed`.
    pub outcome: String,
    pub error: String,
    pub backlog: u32,
    pub effective_backlog: u32,
    pub hold_us: u64,
}

fn ms(us: Option<u64>) -> String {
    us.map(|u| format!("{:.1}", u as f64 / 1e3))
        .unwrap_or_else(|| "-".into())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
}

/// Run the experiment, print the table to `out`, and write `backlog.csv` into `--out` if given.
/// The CSV file is created before the run so a bad path fails early.
pub fn execute(args: &BacklogConfig, out: &mut dyn Write) -> anyhow::Result<BacklogReport> {
    let csv_file = match &args.out {
        Some(dir) => {
            let path = dir.join(CSV_FILE);
            // The same advice as config's up-front check, for what it could not foresee (a race, a quota).
            let advise = |e: io::Error| config::out_dir_error("--out", dir, &e.to_string());
            fs::create_dir_all(dir).map_err(advise)?;
            let f = fs::File::create(&path).map_err(advise)?;
            Some((path, f))
        }
        None => None,
    };
    let report = run(args)?;
    report.print_table(out)?;
    if let Some((path, f)) = csv_file {
        report
            .write_csv_to(f)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// Per-client state while the run is in progress.
struct Client {
    socket: Socket,
    local_port: u16,
    connect_us: Option<u64>,
    syn_retransmits: Option<u32>,
    /// tcpi_total_retrans when the run ended (SYN plus data retransmissions).
    total_retrans_end: Option<u32>,
    error: Option<String>,
}

impl Client {
    fn pending(&self) -> bool {
        self.connect_us.is_none() && self.error.is_none()
    }

    /// Client `i`'s socket became writable at `t_us`: connected (then it sends its one-byte request) or
    /// failed.
    fn on_writable(&mut self, i: usize, t_us: u64) {
        match self.socket.take_error() {
            Ok(None) => {
                self.connect_us = Some(t_us);
                self.syn_retransmits = tcp_total_retrans(&self.socket);
                // The client's request. Besides being realistic it matters: a SYN-cookie connection whose
                // final ACK met a full accept queue exists only on the client, and this segment (carrying the
                // cookie in its ACK field) is what lets the server rebuild it.
                if let Err(e) = self.socket.send(&[id_byte(i)]) {
                    self.error = Some(format!("send after connect: {e}"));
                }
            }
            Ok(Some(e)) | Err(e) => self.error = Some(format!("connect: {e}")),
        }
    }
}

/// Run the experiment. Ends within `hold + connect_timeout + 2 s` whatever the kernel does.
pub fn run(args: &BacklogConfig) -> anyhow::Result<BacklogReport> {
    // Settings built by hand (tests) get the same bounds as the command line.
    args.check()?;
    let sys = Sysctls::read()?;
    let backlog = args.backlog;
    let effective_backlog = backlog.min(sys.somaxconn);
    let (listener, bound) = listen(args)?;
    let target = connectable(bound);
    let overflows_before = netstat_counter("TcpExt", "ListenOverflows");
    let drops_before = netstat_counter("TcpExt", "ListenDrops");
    let cookies_before = netstat_counter("TcpExt", "SyncookiesSent");

    let mut clients = new_clients(args.clients as usize, target)?;
    let start = connect_all(&mut clients, target);
    let seen = watch(&listener, &mut clients, start, args)?;
    let elapsed = crate::clock::since(start);
    for c in clients.iter_mut().filter(|c| c.connect_us.is_some()) {
        c.total_retrans_end = tcp_total_retrans(&c.socket);
    }
    let overflows_after = netstat_counter("TcpExt", "ListenOverflows");
    let drops_after = netstat_counter("TcpExt", "ListenDrops");
    let cookies_after = netstat_counter("TcpExt", "SyncookiesSent");
    let results = client_results(&clients, &seen.accepted);
    drop(seen.sockets);
    drop(clients);

    let final_ack_dropped = results
        .iter()
        .filter(|c| {
            c.synack_retransmits.is_some_and(|r| r > 0) || c.data_retransmits.is_some_and(|r| r > 0)
        })
        .count();
    let count = |o: fn(&Outcome) -> bool| results.iter().filter(|c| o(&c.outcome)).count();
    Ok(BacklogReport {
        queued: count(|o| *o == Outcome::Queued),
        delayed_by_retry: count(|o| *o == Outcome::DelayedByRetry),
        ack_dropped: count(|o| *o == Outcome::AckDropped),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        accepted: results
            .iter()
            .filter(|c| c.accepted_at_us.is_some())
            .count(),
        clients: results,
        backlog,
        hold: args.hold,
        listen: bound,
        somaxconn: sys.somaxconn,
        abort_on_overflow: sys.abort_on_overflow,
        syncookies: sys.syncookies,
        syn_retries: sys.syn_retries,
        synack_retries: sys.synack_retries,
        syn_linear_timeouts: sys.syn_linear_timeouts,
        effective_backlog,
        queue_len_before_accept: seen.queue_len_before_accept,
        listen_overflows_delta: delta(overflows_before, overflows_after),
        listen_drops_delta: delta(drops_before, drops_after),
        syncookies_sent_delta: delta(cookies_before, cookies_after),
        final_ack_dropped,
        elapsed,
    })
}

/// The server: socket, bind, listen; no accept yet. Returns it and the address it is bound to.
fn listen(args: &BacklogConfig) -> anyhow::Result<(Socket, SocketAddr)> {
    let backlog = args.backlog;
    let listener = Socket::new(
        Domain::for_address(args.listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .context("socket() for the server")?;
    if let Err(e) = listener.bind(&args.listen.into()) {
        if e.kind() == io::ErrorKind::AddrInUse {
            return Err(crate::error::usage(ports::addr_in_use_message(
                ports::Proto::Tcp,
                args.listen,
                false,
            )));
        }
        return Err(e).with_context(|| format!("bind({})", args.listen));
    }
    // listen() takes an int; the kernel silently clamps it to somaxconn, which is why we read that too.
    listener
        .listen(backlog as i32)
        .with_context(|| format!("listen(backlog={backlog})"))?;
    listener.set_nonblocking(true)?;
    let bound = sockaddr(&listener.local_addr()?)?;
    Ok((listener, bound))
}

/// Every client socket, created first so the connect() calls that follow come within microseconds.
fn new_clients(n: usize, target: SocketAddr) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .with_context(|| format!("socket() for client {i}"))?;
        socket.set_nonblocking(true)?;
        clients.push(Client {
            socket,
            local_port: 0,
            connect_us: None,
            syn_retransmits: None,
            total_retrans_end: None,
            error: None,
        });
    }
    Ok(clients)
}

/// connect() every client at once (non-blocking); returns when that began.
fn connect_all(clients: &mut [Client], target: SocketAddr) -> std::time::Instant {
    let target_sa: SockAddr = target.into();
    let start = crate::clock::mono();
    for c in clients.iter_mut() {
        match c.socket.connect(&target_sa) {
            // Non-blocking connect normally returns EINPROGRESS even on loopback; completion is seen by poll.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => c.error = Some(format!("connect: {e}")),
        }
        // The OS picked the ephemeral port during connect(); it is how the server side is matched later.
        c.local_port = c
            .socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port());
    }
    start
}

/// What the server side saw.
struct Seen {
    /// Peer port -> (accept time µs, SYN-ACK retransmits).
    accepted: HashMap<u16, (u64, Option<u32>)>,
    /// Accepted connections, kept open until the end so no FIN/RST disturbs clients still connecting.
    sockets: Vec<Socket>,
    queue_len_before_accept: Option<u32>,
}

/// One poll loop drives both ends until every client is settled or the hard deadline: clients' connects
/// complete (or time out) while the server holds off accepting for --hold, then drains its queue.
fn watch(
    listener: &Socket,
    clients: &mut [Client],
    start: std::time::Instant,
    args: &BacklogConfig,
) -> anyhow::Result<Seen> {
    let n = clients.len();
    let listener_inode = ports::socket_inode(listener.as_raw_fd());
    let hold_end = start + args.hold;
    let client_deadline = start + args.connect_timeout;
    let hard_deadline = start + args.hold + args.connect_timeout + GRACE;
    let mut accepting = false;
    let mut seen = Seen {
        accepted: HashMap::new(),
        sockets: Vec::new(),
        queue_len_before_accept: None,
    };
    loop {
        let now = crate::clock::mono();
        if now >= hard_deadline {
            break;
        }
        if !accepting && now >= hold_end {
            // Look at the queue as the kernel sees it, just before draining it.
            seen.queue_len_before_accept = listener_inode.and_then(|ino| {
                ports::proc_net_sockets(ports::Proto::Tcp)
                    .into_iter()
                    .find(|s| s.inode == ino)
                    .map(|s| s.rx_queue)
            });
            accepting = true;
        }
        if now >= client_deadline {
            for c in clients.iter_mut().filter(|c| c.pending()) {
                c.error = Some(format!(
                    "not connected after --connect-timeout {}",
                    humantime::format_duration(args.connect_timeout)
                ));
            }
        }
        let pending: Vec<usize> = (0..n).filter(|&i| clients[i].pending()).collect();
        let connected = clients.iter().filter(|c| c.connect_us.is_some()).count();
        if pending.is_empty() && accepting && seen.accepted.len() >= connected {
            break;
        }
        let mut wake = hard_deadline;
        if !accepting {
            wake = wake.min(hold_end);
        }
        if !pending.is_empty() {
            wake = wake.min(client_deadline);
        }
        // +1 ms so we never spin on a timeout that ends just before a deadline.
        let timeout = wake
            .saturating_duration_since(now)
            .min(Duration::from_secs(1))
            + Duration::from_millis(1);
        let (ready, listener_ready) = wait_ready(listener, clients, &pending, accepting, timeout)?;
        let t_us = crate::clock::since(start).as_micros() as u64;
        for (k, &i) in pending.iter().enumerate() {
            if ready[k] {
                clients[i].on_writable(i, t_us);
            }
        }
        if listener_ready {
            drain_accepts(listener, 2 * n + 16, start, &mut seen)?;
        }
    }
    Ok(seen)
}

/// poll() the pending clients (writable: connected or failed) and, when accepting, the listener; returns
/// which were ready.
fn wait_ready(
    listener: &Socket,
    clients: &[Client],
    pending: &[usize],
    accepting: bool,
    timeout: Duration,
) -> anyhow::Result<(Vec<bool>, bool)> {
    let mut fds: Vec<PollFd> = pending
        .iter()
        .map(|&i| PollFd::new(clients[i].socket.as_fd(), PollFlags::POLLOUT))
        .collect();
    if accepting {
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
    }
    // An interrupted wait returns 0 with no events: the loop looks again.
    poll(&mut fds, timeout).context("poll()")?;
    // The events as plain flags (unknown event bits count as ready).
    let mut ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(true)).collect();
    let listener_ready = accepting && ready.pop() == Some(true);
    Ok((ready, listener_ready))
}

/// Accept everything queued (at most `max`: each accept removes one queued connection).
fn drain_accepts(
    listener: &Socket,
    max: usize,
    start: std::time::Instant,
    seen: &mut Seen,
) -> anyhow::Result<()> {
    for _ in 0..max {
        match listener.accept() {
            Ok((s, peer)) => {
                let t = crate::clock::since(start).as_micros() as u64;
                if let Some(p) = peer.as_socket() {
                    let retx = tcp_total_retrans(&s);
                    seen.accepted.entry(p.port()).or_insert((t, retx));
                }
                seen.sockets.push(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("accept()"),
        }
    }
    Ok(())
}

/// Each client's outcome, matched with what the server accepted by its port.
fn client_results(
    clients: &[Client],
    accepted: &HashMap<u16, (u64, Option<u32>)>,
) -> Vec<ClientResult> {
    clients
        .iter()
        .enumerate()
        .map(|(id, c)| {
            let acc = accepted.get(&c.local_port).filter(|_| c.local_port != 0);
            let accepted_at_us = acc.map(|a| a.0);
            let synack_retransmits = acc.and_then(|a| a.1);
            let data_retransmits = c
                .total_retrans_end
                .zip(c.syn_retransmits)
                .map(|(end, syn)| end.saturating_sub(syn));
            let outcome = classify(c, accepted_at_us, synack_retransmits, data_retransmits);
            ClientResult {
                id,
                local_port: c.local_port,
                connect_us: c.connect_us,
                accepted_at_us,
                syn_retransmits: c.syn_retransmits,
                synack_retransmits,
                data_retransmits,
                outcome,
            }
        })
        .collect()
}

/// Decide what happened from the kernel's retransmit counters; timing is only the fallback when TCP_INFO
/// is missing, so the result does not hinge on a guessed threshold.
fn classify(
    c: &Client,
    accepted_at_us: Option<u64>,
    synack_retx: Option<u32>,
    data_retx: Option<u32>,
) -> Outcome {
    if let Some(e) = &c.error {
        return Outcome::Failed(e.clone());
    }
    let Some(connect_us) = c.connect_us else {
        return Outcome::Failed("never connected".into());
    };
    if accepted_at_us.is_none() {
        return Outcome::Failed("connected but never accepted before the deadline".into());
    }
    let syn_retried = match c.syn_retransmits {
        Some(r) => r > 0,
        None => connect_us >= (INITIAL_RTO.as_micros() as u64) * 9 / 10,
    };
    if syn_retried {
        Outcome::DelayedByRetry
    } else if synack_retx.is_some_and(|r| r > 0) || data_retx.is_some_and(|r| r > 0) {
        Outcome::AckDropped
    } else {
        Outcome::Queued
    }
}

/// The byte a client sends: its id, so a packet capture shows who is who.
fn id_byte(i: usize) -> u8 {
    (i % 256) as u8
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

fn sockaddr(sa: &SockAddr) -> anyhow::Result<SocketAddr> {
    sa.as_socket()
        .context("listener has no IP address (not an inet socket?)")
}

/// Where a client reaches the listener: an unspecified bind address is reached through loopback, so the
/// experiment never sends anything off the host.
fn connectable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port())
        }
        _ => bound,
    }
}

/// `tcpi_total_retrans` of a TCP socket: SYN retransmissions for a client right after connect, SYN-ACK
/// retransmissions for a freshly accepted socket (see [`sys::TcpInfo`]).
fn tcp_total_retrans(s: &Socket) -> Option<u32> {
    sys::tcp_info(s).map(|i| i.total_retrans)
}

/// A counter from /proc/net/netstat, which pairs a header line (`TcpExt: A B ...`) with a value line.
fn netstat_counter(group: &str, name: &str) -> Option<u64> {
    parse_netstat(&fs::read_to_string("/proc/net/netstat").ok()?, group, name)
}

fn parse_netstat(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let idx = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn args(backlog: u32, clients: u32, hold: Duration) -> BacklogConfig {
        BacklogConfig {
            backlog,
            clients,
            hold,
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(10),
            out: None,
        }
    }

    fn table(r: &BacklogReport) -> String {
        let mut buf = Vec::new();
        r.print_table(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// Issue 12: "0 had their final ACK dropped" above "8 connected clients lost their final ACK". The two lines
    /// count the same thing the same way: outcomes first, then every dropped final ACK by outcome.
    #[test]
    fn final_ack_lines_agree() {
        let client = |id, outcome, syn, synack, data| ClientResult {
            id,
            local_port: 40000 + id as u16,
            connect_us: Some(100),
            accepted_at_us: Some(2_000_000),
            syn_retransmits: Some(syn),
            synack_retransmits: Some(synack),
            data_retransmits: Some(data),
            outcome,
        };
        let clients = vec![
            client(0, Outcome::Queued, 0, 0, 0),
            client(1, Outcome::DelayedByRetry, 2, 0, 1),
            client(2, Outcome::DelayedByRetry, 2, 1, 0),
            client(3, Outcome::DelayedByRetry, 2, 0, 0),
            client(4, Outcome::AckDropped, 0, 1, 0),
        ];
        let r = BacklogReport {
            clients,
            backlog: 0,
            hold: Duration::from_secs(1),
            listen: "127.0.0.1:1".parse().unwrap(),
            somaxconn: 4096,
            abort_on_overflow: false,
            syncookies: 1,
            syn_retries: 6,
            synack_retries: 5,
            syn_linear_timeouts: Some(4),
            effective_backlog: 0,
            queue_len_before_accept: Some(1),
            listen_overflows_delta: Some(9),
            listen_drops_delta: Some(9),
            syncookies_sent_delta: Some(0),
            final_ack_dropped: 3,
            queued: 1,
            delayed_by_retry: 3,
            ack_dropped: 1,
            failed: 0,
            accepted: 5,
            elapsed: Duration::from_secs(3),
        };
        let text = table(&r);
        assert!(
            text.contains("outcomes: 1 queued at once, 3 delayed by SYN retries, 1 connected at once but had their final ACK dropped, 0 failed; 5 of 5 accepted"),
            "{text}"
        );
        assert!(
            text.contains("final ACK dropped by the full queue: 3 clients in all (1 that connected at once, 2 delayed by SYN retries, 0 failed)"),
            "{text}"
        );
        assert!(
            text.contains("2 of the retried connections met a full queue again"),
            "{text}"
        );
    }

    #[test]
    fn parses_netstat_pairs() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 19\nIpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(parse_netstat(text, "TcpExt", "ListenOverflows"), Some(17));
        assert_eq!(parse_netstat(text, "TcpExt", "ListenDrops"), Some(19));
        assert_eq!(parse_netstat(text, "IpExt", "InNoRoutes"), Some(3));
        assert_eq!(parse_netstat(text, "TcpExt", "Nope"), None);
    }

    #[test]
    fn overflow_is_delayed_not_discarded() {
        let hold = Duration::from_millis(1500);
        let started = Instant::now();
        let r = run(&args(2, 8, hold)).unwrap();
        let text = table(&r);
        eprintln!("{text}");
        assert!(
            started.elapsed() < hold + Duration::from_secs(10) + GRACE + Duration::from_secs(1)
        );
        // Kernel rule: the accept queue holds min(backlog, somaxconn) + 1.
        let expected = (2u32.min(r.somaxconn) + 1) as usize;
        assert_eq!(r.queued, expected, "{text}");
        if let Some(q) = r.queue_len_before_accept {
            assert_eq!(q as usize, expected, "{text}");
        }
        assert_eq!(r.failed, 0, "{text}");
        assert_eq!(r.accepted, 8, "{text}");
        let mut ports: Vec<u16> = r.clients.iter().map(|c| c.local_port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(
            ports.len(),
            8,
            "every client accepted once, told apart by its port"
        );
        for c in &r.clients {
            match c.outcome {
                Outcome::Queued => {
                    assert!(c.connect_us.unwrap() < 200_000, "{text}");
                    assert!(
                        c.accepted_at_us.unwrap() >= hold.as_micros() as u64,
                        "{text}"
                    );
                }
                Outcome::DelayedByRetry => {
                    assert!(c.connect_us.unwrap() >= 900_000, "{text}");
                    assert!(c.syn_retransmits.unwrap_or(1) >= 1, "{text}");
                }
                ref o => panic!("client {} unexpectedly {o:?}\n{text}", c.id),
            }
        }
        assert_eq!(r.delayed_by_retry, 8 - expected, "{text}");
        // Every dropped SYN counts; the counter is namespace-wide, so others can only add to it.
        if let Some(d) = r.listen_overflows_delta {
            assert!(d >= r.delayed_by_retry as u64, "{text}");
        }
        assert!(text.contains("not discarded for good"), "{text}");
    }

    #[test]
    fn everything_fits_when_backlog_is_large() {
        let r = run(&args(16, 8, Duration::from_millis(300))).unwrap();
        let text = table(&r);
        assert_eq!(r.queued, 8, "{text}");
        assert_eq!(r.accepted, 8, "{text}");
        assert!(r
            .clients
            .iter()
            .all(|c| c.connect_us.unwrap() < 200_000 && c.syn_retransmits.unwrap_or(0) == 0));
        assert!(text.contains("nothing was beyond the backlog"), "{text}");
    }

    #[test]
    fn csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(1, 3, Duration::from_millis(100));
        a.connect_timeout = Duration::from_millis(50);
        a.out = Some(dir.path().join("sub"));
        let r = execute(&a, &mut io::sink()).unwrap();
        let mut rdr = csv::Reader::from_path(dir.path().join("sub").join(CSV_FILE)).unwrap();
        let rows: Vec<CsvRow> = rdr.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        for (row, c) in rows.iter().zip(&r.clients) {
            assert_eq!(row.schema_version, CSV_SCHEMA_VERSION);
            assert_eq!(row.client_id, c.id);
            assert_eq!(row.local_port, c.local_port);
            assert_eq!(row.connect_us, c.connect_us);
            assert_eq!(row.outcome, c.outcome.label());
        }
        // With a 50 ms connect timeout and a 2-place queue, the third client gives up: a failure, reported.
        assert_eq!(r.queued, 2);
        assert_eq!(r.failed, 1);
        assert!(rows[2].error.contains("connect-timeout"), "{rows:?}");
    }

    #[test]
    fn rejects_unbounded_waits() {
        let mut a = args(1, 1, Duration::from_secs(3600));
        let e = run(&a).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USAGE, "{e}");
        a.hold = Duration::ZERO;
        a.connect_timeout = Duration::ZERO;
        assert!(run(&a).is_err());
    }

    #[test]
    fn bind_conflict_names_the_holder() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = args(1, 1, Duration::ZERO);
        a.listen = l.local_addr().unwrap();
        let err = run(&a).unwrap_err();
        assert_eq!(
            crate::error::exit_code(&err),
            crate::error::EXIT_USAGE,
            "{err}"
        );
        let err = err.to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
    }
}
