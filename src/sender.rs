//! The sending side of one session: control handshake, clock offset, data, then the receiver's results, from
//! which the complete report is built here, where the CSV files land.

use std::io::{IsTerminal, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;

use crate::clock::{boot_id, estimate_offset, now_ns, OffsetEstimate, Sample};
use crate::config::SendConfig;
use crate::control::{
    self, Ctl, CtlConn, Done, Hello, RecvResults, CONTROL_VERSION, HANDSHAKE_TIMEOUT,
};
use crate::error::usage;
use crate::report::{
    self, messages::MessagesCsv, summary::SummaryCsv, SenderSide, SessionMeta, SessionReport,
};
use crate::signal::Stop;
use crate::trace::{self, Timer, Tracer};
use crate::traffic::Protocol;
use crate::transport::{EchoStats, SendPlan};
use crate::{socket, tcp, udp, wire};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// NTP-style exchanges per session; the one with the smallest round trip is kept.
pub const CLOCK_EXCHANGES: usize = 8;
/// How long the results may take beyond the linger (the receiver drains, then answers).
const RESULTS_GRACE: Duration = Duration::from_secs(30);

/// One run: a run id and start time shared by its sessions (compare runs two).
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub started_utc: String,
}

impl RunInfo {
    pub fn new() -> RunInfo {
        let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
        RunInfo {
            run_id: format!("{compact}-{:04x}", rand::random::<u16>()),
            started_utc: t,
        }
    }
}

impl Default for RunInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// What a finished session produced.
pub struct SessionOutput {
    pub protocol: Protocol,
    pub report: SessionReport,
    pub latency: Histogram<u64>,
    pub interrupted: bool,
    /// TCP data connections opened until one reached the receiver holding the session (1 unless the port is
    /// shared with SO_REUSEPORT).
    pub data_connects: u32,
    /// Why the session is incomplete, when it is.
    pub note: Option<String>,
}

/// Where a run's per-session files go: `<dir>/<run_id>_<protocol>_<what>.csv`. Cheap to clone, so a session
/// can run on another thread (or in another network namespace).
#[derive(Debug, Clone)]
pub struct OutDir(PathBuf);

impl OutDir {
    pub fn new(dir: &Path) -> OutDir {
        OutDir(dir.to_path_buf())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, run_id: &str, protocol: Protocol, what: &str) -> PathBuf {
        self.0.join(format!("{run_id}_{protocol}_{what}.csv"))
    }
}

/// The report files of a run, opened before any traffic so a bad --out fails first.
pub struct Outputs {
    dir: OutDir,
    summary: SummaryCsv,
}

impl Outputs {
    pub fn open(dir: &Path) -> anyhow::Result<Outputs> {
        Ok(Outputs {
            summary: SummaryCsv::open(dir)?,
            dir: OutDir(dir.to_path_buf()),
        })
    }

    pub fn dir(&self) -> &OutDir {
        &self.dir
    }

    /// Append the sessions' rows and write each one's latency distribution.
    pub fn write(&mut self, outs: &[&SessionOutput]) -> anyhow::Result<()> {
        for o in outs {
            report::latency::write(
                &self.dir.file(&o.report.run_id, o.protocol, "latency"),
                &o.latency,
            )?;
        }
        let rows: Vec<&SessionReport> = outs.iter().map(|o| &o.report).collect();
        self.summary.append(&rows)
    }

    pub fn summary_path(&self) -> &Path {
        self.summary.path()
    }
}

fn progress_thread(plan: &SendPlan, count: u64) -> Option<(Stop, std::thread::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let done = Stop::new();
    let d2 = done.clone();
    let progress = plan.progress.clone();
    let h = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} messages {wide_bar} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !d2.is_set() {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    Some((done, h))
}

enum DataSock {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Run one session against the receiver in `cfg`. Per-message rows (if asked) are written as they arrive.
pub fn run_session(
    cfg: &SendConfig,
    run: &RunInfo,
    out: &OutDir,
    stop: Stop,
) -> anyhow::Result<SessionOutput> {
    let t = &cfg.traffic;
    let session: u64 = rand::random();
    // Try each address the name resolved to; the first that answers carries control and data alike.
    let mut connected = Err(anyhow!("no address"));
    for &addr in
        std::iter::once(&cfg.target).chain(cfg.alternatives.iter().filter(|a| **a != cfg.target))
    {
        connected =
            socket::tcp_connect(addr, CONNECT_TIMEOUT, &Tracer::off()).map(|(s, _)| (s, addr));
        if connected.is_ok() {
            break;
        }
    }
    let (mut raw, target) = connected?;
    raw.write_all(&control::control_preamble())
        .context("cannot write to the control connection")?;
    let mut conn = CtlConn::new(raw)?;
    conn.send(&Ctl::Hello(Hello {
        version: CONTROL_VERSION,
        protocol: cfg.protocol,
        session,
        run_id: run.run_id.clone(),
        started_utc: run.started_utc.clone(),
        label: cfg.output.label.clone(),
        traffic: t.clone(),
        boot_id: boot_id(),
        software: crate::software(),
        trace: cfg.output.trace,
    }))?;
    let never = || false;
    let accept = match conn.recv_until(Instant::now() + HANDSHAKE_TIMEOUT, "accept", &never) {
        Ok(Ctl::Accept(a)) => a,
        Ok(Ctl::Reject { reason }) => return Err(usage(format!("the receiver at {target} refused the session: {reason}"))),
        Ok(other) => bail!("the receiver answered the hello with {}", other.kind()),
        Err(e) => return Err(usage(format!("{target} did not answer like a sockbench receiver ({e:#}): check the port and that `sockbench {} recv` runs there", cfg.protocol))),
    };
    if accept.version != CONTROL_VERSION {
        bail!("the receiver speaks control version {} and this sender {CONTROL_VERSION}: run the same sockbench version on both hosts", accept.version);
    }

    // Clock offset: NTP-style exchanges, the smallest round trip wins.
    let mut samples = Vec::with_capacity(CLOCK_EXCHANGES);
    for _ in 0..CLOCK_EXCHANGES {
        let t1 = now_ns();
        conn.send(&Ctl::TimeReq { t1 })?;
        match conn.recv_until(Instant::now() + HANDSHAKE_TIMEOUT, "clock reply", &never)? {
            Ctl::TimeResp { t1: echo, t2, t3 } if echo == t1 => samples.push(Sample {
                t1,
                t2,
                t3,
                t4: now_ns(),
            }),
            other => bail!("expected a clock reply, got {}", other.kind()),
        }
    }
    let my_boot = boot_id();
    let same_host = !my_boot.is_empty() && my_boot == accept.boot_id;
    let clock = estimate_offset(&samples, same_host).unwrap_or_default();
    let linger = t.linger.unwrap_or_else(|| default_linger(&clock));

    // The data path's socket calls, for --trace (the control connection above is not part of it).
    let tr = Tracer::new(cfg.output.trace, "sender");
    let udp_sock = match cfg.protocol {
        Protocol::Udp => Some(socket::udp_sender(target, &tr)?),
        Protocol::Tcp => None,
    };
    let udp_source_port = udp_sock
        .as_ref()
        .map(|s| s.local_addr().map(|a| a.port()))
        .transpose()?;
    conn.send(&Ctl::Start {
        offset: clock,
        udp_source_port,
        linger_ns: linger.as_nanos() as u64,
    })?;
    let mut tcp_connect_us = None;
    let mut data_connects = 0;
    let mut data = match udp_sock {
        Some(s) => {
            match conn.recv_until(Instant::now() + HANDSHAKE_TIMEOUT, "ready", &never)? {
                Ctl::Ready => {}
                Ctl::Abort { reason } => bail!("the receiver aborted: {reason}"),
                other => bail!("expected ready, got {}", other.kind()),
            }
            DataSock::Udp(s)
        }
        None => {
            let (s, took, tries) = open_tcp_data(target, session, &mut conn, &tr)?;
            tcp_connect_us = Some(took.as_nanos() as f64 / 1000.0);
            data_connects = tries;
            DataSock::Tcp(s)
        }
    };

    // From here the receiver may speak at any time (results, abort): a watcher reads the control connection
    // and stops the send loop if the receiver gives up or goes away. Ctrl-C stops it too.
    let abort = stop.child();
    // Not a `Stop`: those also trip on Ctrl-C, and after Ctrl-C the watcher must keep reading, because the
    // receiver's results and per-message rows still have to come in for the incomplete report.
    let watch_quit = Arc::new(AtomicBool::new(false));
    let mut writer = conn.try_clone_writer()?;
    let (tx, rx) = mpsc::channel::<anyhow::Result<Ctl>>();
    let watcher = {
        let (ab, wq) = (abort.clone(), watch_quit.clone());
        std::thread::spawn(move || watch(conn, tx, ab, wq))
    };
    let mut plan = SendPlan::new(t, session, abort.clone());
    let echo_stop = Stop::new();
    let echo_thread = if t.echo {
        let mut e = EchoStats::new(session, t.count, tr.enabled());
        let es = echo_stop.clone();
        Some(match &data {
            DataSock::Udp(s) => {
                let s2 = s.try_clone()?;
                std::thread::spawn(move || {
                    udp::read_echoes(&s2, &mut e, &es);
                    e
                })
            }
            DataSock::Tcp(s) => {
                let s2 = s.try_clone()?;
                let size = t.size;
                std::thread::spawn(move || {
                    tcp::read_echoes(s2, size, &mut e, &es);
                    e
                })
            }
        })
    } else {
        None
    };
    let progress = progress_thread(&plan, t.count);
    let template = wire::template(session, t.size);
    let mut timer = Timer::new(tr.enabled());
    let send = match &mut data {
        DataSock::Udp(s) => udp::send(s, &template, &mut plan, &mut timer),
        DataSock::Tcp(s) => tcp::send(s, &template, &mut plan, &mut timer),
    };
    let data_fd = match &data {
        DataSock::Udp(s) => s.as_raw_fd(),
        DataSock::Tcp(s) => s.as_raw_fd(),
    };
    if let Some(st) = timer.stats() {
        let (call, how) = match &data {
            DataSock::Udp(_) => ("sendmmsg", "datagrams, one message each"),
            DataSock::Tcp(_) => ("send", "messages written into the byte stream"),
        };
        tr.aggregate(call, data_fd, format!("{} {how}", send.sent), st);
    }
    if let Some((d, h)) = progress {
        d.set();
        let _ = h.join();
    }
    if let DataSock::Tcp(s) = &data {
        // Half-close: the receiver reads to EOF, then knows the stream is whole.
        let _ = tr.call(
            "shutdown",
            data_fd,
            || "SHUT_WR (no more data; the peer reads EOF)".into(),
            || s.shutdown(Shutdown::Write),
            |_| "0".into(),
        );
    }
    let interrupted = stop.is_set();
    let send_complete = send.cut_short.is_none();
    let _ = writer.send(&Ctl::Done(Done {
        sent: send.sent,
        send_errors: send.send_errors,
        complete: send_complete,
    }));

    // The receiver lingers for stragglers, then answers with results and (with --per-message) the rows.
    let mut msgs = if t.per_message {
        Some(MessagesCsv::create(&out.file(
            &run.run_id,
            cfg.protocol,
            "messages",
        ))?)
    } else {
        None
    };
    let deadline = Instant::now() + linger + RESULTS_GRACE;
    let mut results: Option<RecvResults> = None;
    let mut note: Option<String> = send.cut_short.clone();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(Ok(Ctl::Results(r))) => results = Some(*r),
            Ok(Ok(Ctl::Messages { rows })) => {
                if let Some(m) = &mut msgs {
                    m.rows(&rows)?;
                }
            }
            Ok(Ok(Ctl::End)) => break,
            Ok(Ok(Ctl::Abort { reason })) => {
                note.get_or_insert(format!("the receiver aborted: {reason}"));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if results.is_none() {
                    note = Some(format!("{e:#}"));
                }
                break;
            }
            Err(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    watch_quit.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    echo_stop.set();
    let echo = echo_thread.and_then(|h| h.join().ok());
    if let Some(st) = echo.as_ref().and_then(|e| e.timer.stats()) {
        let call = if cfg.protocol == Protocol::Udp {
            "recvmmsg"
        } else {
            "recv"
        };
        let n = echo.as_ref().map_or(0, |e| e.seq.received());
        tr.aggregate(call, data_fd, format!("{n} echo replies back"), st);
    }
    let tcp_retransmits = match &data {
        DataSock::Tcp(s) => socket::tcp_retransmits(s),
        DataSock::Udp(_) => None,
    };
    let Some(results) = results else {
        let why = note.unwrap_or_else(|| "it did not answer in time".into());
        return Err(anyhow!(
            "the receiver sent no results ({why}); {} messages were sent, nothing else is known. Check the receiver's log",
            send.sent
        ));
    };
    if let Some(mut m) = msgs {
        m.lost(&results.lost_runs)?;
        m.finish()?;
    }
    if tr.enabled() {
        tr.record(
            "close",
            data_fd,
            "the data socket".into(),
            "0".into(),
            now_ns(),
            0,
        );
        tr.extend(results.trace.iter().cloned());
        let events = tr.events();
        let title = format!("{} session to {}", cfg.protocol, cfg.peer_name);
        trace::print(&mut std::io::stderr().lock(), &title, &events)?;
        trace::write_csv(&out.file(&run.run_id, cfg.protocol, "trace"), &events)?;
    }
    if !results.complete {
        if let Some(n) = &results.note {
            note.get_or_insert(n.clone());
        }
    }
    let complete = results.complete && send_complete && !interrupted;
    let echo_damaged = echo.as_ref().map_or((0, 0), |e| (e.invalid, e.corrupt));
    let side = SenderSide {
        send,
        tcp_connect_us,
        tcp_retransmits,
        clock,
        rtt: echo.map(|e| e.rtt),
    };
    let meta = SessionMeta {
        run_id: run.run_id.clone(),
        started_utc: run.started_utc.clone(),
        label: cfg.output.label.clone(),
        protocol: cfg.protocol,
        peer: cfg.peer_name.clone(),
        traffic: t.clone(),
    };
    for n in notices(&results, echo_damaged, &clock) {
        eprintln!("sockbench {}: note: {n}", cfg.protocol);
    }
    let latency = report::latency_histogram(Some(&side), &results);
    let report = SessionReport::build(&meta, Some(&side), &results, complete);
    Ok(SessionOutput {
        protocol: cfg.protocol,
        report,
        latency,
        interrupted,
        data_connects,
        note: if complete {
            None
        } else {
            note.or(Some("interrupted".into()))
        },
    })
}

/// Open the TCP data connection and wait for Ready. A receiver that does not hold the session closes the
/// connection at once: with SO_REUSEPORT the kernel hashes each connection on its own, so the data connection
/// may land on another receiver sharing the port than the control connection did. A new connection has a new
/// source port and so a new hash: try again, a bounded number of times.
fn open_tcp_data(
    target: SocketAddr,
    session: u64,
    conn: &mut CtlConn,
    tr: &Tracer,
) -> anyhow::Result<(TcpStream, Duration, u32)> {
    const TRIES: u32 = 32;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    for attempt in 1..=TRIES {
        let (mut s, took) = socket::tcp_connect(target, CONNECT_TIMEOUT, tr)?;
        let fd = s.as_raw_fd();
        // Each message leaves when it is written: Nagle would hold small messages back and blur latency.
        tr.call(
            "setsockopt",
            fd,
            || "TCP_NODELAY=1".into(),
            || s.set_nodelay(true),
            |_| "0".into(),
        )?;
        let pre = control::data_preamble(session);
        tr.call(
            "send",
            fd,
            || "16-byte preamble naming the session".into(),
            || s.write_all(&pre),
            |_| "16".into(),
        )?;
        loop {
            if Instant::now() >= deadline {
                bail!("the receiver did not take the data connection within 10 s");
            }
            match conn.recv(Duration::from_millis(20))? {
                Some(Ctl::Ready) => return Ok((s, took, attempt)),
                Some(Ctl::Abort { reason }) => bail!("the receiver aborted: {reason}"),
                Some(other) => bail!("expected ready, got {}", other.kind()),
                None => {}
            }
            if socket::peer_closed(&s) {
                tr.record(
                    "close",
                    fd,
                    "the receiver holding this connection does not know the session: reconnect"
                        .into(),
                    "0".into(),
                    now_ns(),
                    0,
                );
                break;
            }
        }
    }
    bail!("{TRIES} data connections in a row reached a receiver without the session: are receivers with --reuse-port on {target} of different sockbench versions?")
}

/// Things measured that have no column but change how the figures read: said once, on stderr.
/// `echo_damaged`: (invalid, corrupt) echo replies.
fn notices(r: &RecvResults, echo_damaged: (u64, u64), clock: &OffsetEstimate) -> Vec<String> {
    let mut out = vec![];
    if r.rows_not_kept > 0 {
        out.push(format!(
            "the per-message CSV holds the first {} arrivals; {} more were counted but not kept (the receiver's cap)",
            crate::accounting::MAX_ROWS,
            r.rows_not_kept
        ));
    }
    if r.negative_delays > 0 {
        out.push(format!(
            "{} one-way delays came out negative and were recorded as 0: the clock offset is only known to ±{:.1} µs",
            r.negative_delays,
            clock.error_ns as f64 / 1000.0
        ));
    }
    let (invalid, corrupt) = echo_damaged;
    if invalid + corrupt > 0 {
        out.push(format!("{corrupt} echo replies failed their checksum and {invalid} were not replies of this session; none is in the round trips"));
    }
    out
}

/// Default linger: long enough for stragglers on the measured path (4 control round trips), never below
/// 500 ms. A UDP session that has everything ends at once anyway.
pub fn default_linger(clock: &OffsetEstimate) -> Duration {
    Duration::from_nanos((clock.max_rtt_ns.max(0) as u64).saturating_mul(4))
        .max(Duration::from_millis(500))
}

fn watch(
    mut conn: CtlConn,
    tx: mpsc::Sender<anyhow::Result<Ctl>>,
    abort: Stop,
    quit: Arc<AtomicBool>,
) {
    while !quit.load(Ordering::Relaxed) {
        match conn.recv(Duration::from_millis(100)) {
            Ok(Some(m)) => {
                let end = matches!(m, Ctl::End);
                if matches!(m, Ctl::Abort { .. } | Ctl::Results(_)) {
                    abort.set();
                }
                if tx.send(Ok(m)).is_err() || end {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                abort.set();
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_what_has_no_column() {
        let clock = OffsetEstimate {
            error_ns: 2_500,
            ..Default::default()
        };
        assert!(notices(&RecvResults::default(), (0, 0), &clock).is_empty());
        let r = RecvResults {
            rows_not_kept: 7,
            negative_delays: 3,
            ..Default::default()
        };
        let n = notices(&r, (1, 2), &clock);
        assert_eq!(n.len(), 3);
        assert!(n[0].contains("first 2000000 arrivals; 7 more"), "{}", n[0]);
        assert!(
            n[1].starts_with("3 one-way delays") && n[1].contains("±2.5 µs"),
            "{}",
            n[1]
        );
        assert!(
            n[2].starts_with("2 echo replies failed their checksum and 1 were"),
            "{}",
            n[2]
        );
    }
}
