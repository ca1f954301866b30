//! The sending side of one session: connects, runs a [`SenderSession`] over the control connection, opens
//! the data socket, runs the send loop and the echo reader on their own threads, and builds the report from
//! what both ends measured (the CSV files land on this side).

use std::io::{IsTerminal, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::anyhow;
use hdrhistogram::Histogram;

use crate::accounting::{EchoStats, Measured, SendStats};
use crate::auth::SessionKeys;
use crate::cancel::Cancel;
use crate::clock::{self, boot_id, now_ns, OffsetEstimate};
use crate::config::SendConfig;
use crate::driver::ctl::{CtlStream, Got};
use crate::driver::{load, tcp, udp, SendJob};
use crate::error::usage;
use crate::pacing::{EchoWindow, SendPlan};
use crate::proto;
use crate::report::export;
use crate::report::messages::MessagesCsv;
use crate::report::out::{OutDir, RunInfo};
use crate::report::{self, SenderSide, SessionMeta, SessionReport};
use crate::session::sender::{Action, Outcome, SenderConfig, SenderSession, SetupError};
use crate::socket;
use crate::trace::{self, Timer, Tracer};
use crate::traffic::Protocol;
use crate::wire;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the driver looks at cancellation and its threads while waiting for the receiver.
const TICK: Duration = Duration::from_millis(20);

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
    /// The run failed although a row was written (the receiver's figures did not hold, or it sent none):
    /// what to tell the user. The caller writes the files, then exits non-zero with this.
    pub failure: Option<String>,
}

impl SessionOutput {
    pub fn files(&self) -> report::out::SessionFiles<'_> {
        report::out::SessionFiles {
            protocol: self.protocol,
            report: &self.report,
            latency: &self.latency,
        }
    }
}

enum DataSock {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl DataSock {
    fn fd(&self) -> i32 {
        match self {
            DataSock::Udp(s) => s.as_raw_fd(),
            DataSock::Tcp(s) => s.as_raw_fd(),
        }
    }
}

/// The thread that reads echo replies while the send loop sends.
fn spawn_echo_reader(
    data: &DataSock,
    mut e: EchoStats,
    size: usize,
    cancel: Cancel,
) -> anyhow::Result<JoinHandle<EchoStats>> {
    Ok(match data {
        DataSock::Udp(s) => {
            let s = s.try_clone()?;
            std::thread::spawn(move || {
                udp::read_echoes(&s, &mut e, &cancel);
                e
            })
        }
        DataSock::Tcp(s) => {
            let s = s.try_clone()?;
            std::thread::spawn(move || {
                tcp::read_echoes(s, size, &mut e, &cancel);
                e
            })
        }
    })
}

/// What the send loop's thread hands back: its figures, its call timer, and with an echo window the echo
/// figures it gathered itself.
type SendOutcome = (SendStats, Timer, Option<EchoStats>);

/// The send loop's thread: plain, or sending and reading replies through an echo window.
fn spawn_send_loop(
    data: &DataSock,
    mut job: SendJob,
    windowed: Option<(EchoStats, EchoWindow)>,
) -> anyhow::Result<JoinHandle<SendOutcome>> {
    Ok(match (data, windowed) {
        (DataSock::Udp(s), None) => {
            let s = s.try_clone()?;
            std::thread::spawn(move || (udp::send(&s, &mut job), job.timer, None))
        }
        (DataSock::Tcp(s), None) => {
            let mut s = s.try_clone()?;
            std::thread::spawn(move || (tcp::send(&mut s, &mut job), job.timer, None))
        }
        (DataSock::Udp(s), Some((mut e, mut w))) => {
            let s = s.try_clone()?;
            std::thread::spawn(move || {
                let st = udp::echo_windowed(&s, &mut job, &mut e, &mut w);
                (st, job.timer, Some(e))
            })
        }
        (DataSock::Tcp(s), Some((mut e, mut w))) => {
            let mut s = s.try_clone()?;
            std::thread::spawn(move || {
                let st = tcp::echo_windowed(&mut s, &mut job, &mut e, &mut w);
                (st, job.timer, Some(e))
            })
        }
    })
}

/// The threads of the measured phase.
struct Running {
    /// None once joined.
    send: Option<JoinHandle<SendOutcome>>,
    send_cancel: Cancel,
    echo: Option<JoinHandle<EchoStats>>,
    echo_cancel: Cancel,
    progress: Option<(Cancel, JoinHandle<()>)>,
    /// --load: the bulk flows while they run, then what they did.
    load: Option<load::Generator>,
    load_stats: Option<crate::load::LoadStats>,
}

/// Everything the driver holds while the session runs.
struct Driver<'a> {
    cfg: &'a SendConfig,
    target: SocketAddr,
    session: u64,
    tr: Tracer,
    data: Option<DataSock>,
    tcp_connect_us: Option<f64>,
    running: Option<Running>,
    send_timer: Option<Timer>,
    msgs: Option<MessagesCsv>,
    /// The echo reader's figures, once it has stopped.
    echo: Option<EchoStats>,
}

/// Run one session against the receiver in `cfg`; `cancel` (normally a child of the process root) stops the
/// sending early, after which the receiver's results of what was sent still come in.
pub fn run_session(
    cfg: &SendConfig,
    run: &RunInfo,
    out: &OutDir,
    cancel: &Cancel,
) -> anyhow::Result<SessionOutput> {
    let session: u64 = rand::random();
    let (raw, target) = connect_control(cfg)?;
    let mut ctl = CtlStream::new(raw)?;
    let mut scfg = SenderConfig::new(cfg.protocol, session, cfg.traffic.clone());
    scfg.run_id = run.run_id.clone();
    scfg.started_utc = run.started_utc.clone();
    scfg.label = cfg.output.label.clone();
    scfg.trace = cfg.output.trace;
    scfg.boot_id = boot_id();
    scfg.secret = cfg.secret.clone();
    let mut s = SenderSession::new(scfg, clock::now());
    let mut d = Driver {
        cfg,
        target,
        session,
        // The data path's socket calls, for --trace (the control connection is not part of it).
        tr: Tracer::new(cfg.output.trace, "sender"),
        data: None,
        tcp_connect_us: None,
        running: None,
        send_timer: None,
        msgs: None,
        echo: None,
    };
    if cfg.traffic.per_message {
        d.msgs = Some(MessagesCsv::create(&out.file(
            &run.run_id,
            cfg.protocol,
            "messages",
        ))?);
    }
    let mut told_cancel = false;
    let mut finished = None;
    let outcome = loop {
        while let Some(a) = s.poll_action() {
            match a {
                Action::Write(b) => {
                    if let Err(why) = ctl.write_all(&b) {
                        s.on_closed(&why, clock::now());
                    }
                }
                Action::OpenData => {
                    let port = d.open_data()?;
                    s.on_data_opened(port);
                }
                Action::ConnectData { .. } => d.connect_tcp_data(s.keys())?,
                Action::BeginSending => {
                    // An unanswered message stops holding an echo window after the time a straggler may
                    // take: the session's linger.
                    let give_up = cfg
                        .traffic
                        .linger
                        .unwrap_or_else(|| crate::session::sender::default_linger(&s.clock()));
                    d.begin_sending(cancel, s.keys().cloned(), give_up)?
                }
                Action::StopSending => {
                    if let Some(r) = &d.running {
                        r.send_cancel.cancel();
                    }
                }
                Action::Rows(rows) => d.write_rows(&rows)?,
                Action::Failed(e) => return Err(setup_error(cfg, target, e)),
                Action::Finished(o) => finished = Some(*o),
            }
        }
        if let Some(o) = finished.take() {
            break o;
        }
        if cancel.is_cancelled() && !told_cancel {
            told_cancel = true;
            s.on_cancel();
            continue;
        }
        if let Some(stats) = d.send_finished() {
            s.on_send_finished(stats, clock::now());
            continue;
        }
        if d.tcp_data_refused() {
            s.on_data_refused();
            continue;
        }
        let wait = s.next_deadline().map_or(TICK, |t| {
            t.saturating_duration_since(clock::mono()).min(TICK)
        });
        match ctl.read(wait) {
            Got::Bytes(n) => s.on_bytes(ctl.bytes(n), clock::now()),
            Got::Idle => {}
            Got::Closed(why) => s.on_closed(&why, clock::now()),
        }
        s.on_timeout(clock::now());
    };
    d.finish(run, out, outcome)
}

/// Try each address the name resolved to; the first that answers carries control and data alike.
fn connect_control(cfg: &SendConfig) -> anyhow::Result<(TcpStream, SocketAddr)> {
    let mut last = Err(anyhow!("no address"));
    for &addr in
        std::iter::once(&cfg.target).chain(cfg.alternatives.iter().filter(|a| **a != cfg.target))
    {
        last = socket::tcp_connect(addr, CONNECT_TIMEOUT, &Tracer::off()).map(|(s, _)| (s, addr));
        if last.is_ok() {
            break;
        }
    }
    last
}

fn setup_error(cfg: &SendConfig, target: SocketAddr, e: SetupError) -> anyhow::Error {
    match e {
        SetupError::Refused(reason) => usage(format!("the receiver at {target} refused the session: {reason}")),
        SetupError::NotAReceiver(why) => usage(format!(
            "{target} did not answer like a sockbench receiver ({why}): check the port and that `sockbench {} recv` \
             runs there",
            cfg.protocol
        )),
        SetupError::WrongKey(why) => usage(format!(
            "the receiver at {target} did not prove it knows the key: {why}; give both ends the same --key-file"
        )),
        SetupError::Failed(why) => anyhow!("the session with {target} could not start: {why}"),
    }
}

impl Driver<'_> {
    /// UDP: the data socket, connected, and its source port. TCP: nothing yet (the connection comes after
    /// Start, so the receiver holds a place for it).
    fn open_data(&mut self) -> anyhow::Result<Option<u16>> {
        match self.cfg.protocol {
            Protocol::Udp => {
                let s = socket::udp_sender(self.target, &self.tr)?;
                let port = s.local_addr()?.port();
                self.data = Some(DataSock::Udp(s));
                Ok(Some(port))
            }
            Protocol::Tcp => Ok(None),
        }
    }

    /// Open a TCP data connection and send its preamble naming the session (with its MAC, authenticated).
    fn connect_tcp_data(&mut self, keys: Option<&SessionKeys>) -> anyhow::Result<()> {
        let (mut s, took) = socket::tcp_connect(self.target, CONNECT_TIMEOUT, &self.tr)?;
        let fd = s.as_raw_fd();
        // Each message leaves when it is written: Nagle would hold small messages back and blur latency.
        self.tr.call(
            "setsockopt",
            fd,
            || "TCP_NODELAY=1".into(),
            || s.set_nodelay(true),
            |_| "0".into(),
        )?;
        let pre = proto::data_preamble(self.session, keys.map(|k| k.preamble_mac(self.session)));
        self.tr.call(
            "send",
            fd,
            || format!("{}-byte preamble naming the session", pre.len()),
            || s.write_all(&pre),
            |_| pre.len().to_string(),
        )?;
        self.tcp_connect_us = Some(took.as_nanos() as f64 / 1000.0);
        self.data = Some(DataSock::Tcp(s));
        Ok(())
    }

    /// TCP, before Ready: did the receiver close the data connection (it does not hold the session)?
    fn tcp_data_refused(&mut self) -> bool {
        if self.running.is_some() {
            return false;
        }
        let Some(DataSock::Tcp(s)) = &self.data else {
            return false;
        };
        if !socket::peer_closed(s) {
            return false;
        }
        self.tr.record(
            "close",
            s.as_raw_fd(),
            "the receiver holding this connection does not know the session: reconnect".into(),
            "0".into(),
            now_ns(),
            0,
        );
        self.data = None;
        true
    }

    /// Ready: the send loop, the echo reader and the progress display start. `keys`: an authenticated
    /// session's, for the MAC on every message and on every echo reply.
    fn begin_sending(
        &mut self,
        cancel: &Cancel,
        keys: Option<SessionKeys>,
        give_up: Duration,
    ) -> anyhow::Result<()> {
        let t = self.cfg.traffic.clone();
        let data = self
            .data
            .as_ref()
            .ok_or_else(|| anyhow!("no data socket at Ready"))?;
        let send_cancel = cancel.child();
        // Not below `cancel`: after Ctrl-C the replies of what was sent must still be read.
        let echo_cancel = Cancel::new();
        let issued = Arc::new(AtomicU64::new(0));
        let make_echo = |keys: &Option<SessionKeys>| {
            let mut e = EchoStats::new(self.session, t.count, self.tr.enabled());
            e.bound_by(issued.clone());
            if t.per_message {
                e.keep_per_message(t.count);
            }
            if let Some(k) = keys {
                e.set_keys(k.clone());
            }
            e.set_idle_probes(t.idle_probes);
            e
        };
        // With a window, the send loop reads the replies itself; without, a reader thread does.
        let windowed = t
            .outstanding
            .filter(|_| t.echo)
            .map(|n| (make_echo(&keys), EchoWindow::new(n, give_up)));
        let echo = if t.echo && windowed.is_none() {
            Some(spawn_echo_reader(
                data,
                make_echo(&keys),
                t.size,
                echo_cancel.clone(),
            )?)
        } else {
            None
        };
        let progress = Arc::new(AtomicU64::new(0));
        let job = SendJob {
            plan: SendPlan::new(&t, self.session, clock::now()),
            template: wire::template(self.session, t.size, keys.is_some()),
            cancel: send_cancel.clone(),
            timer: Timer::new(self.tr.enabled()),
            keys,
            sent: progress.clone(),
            issued,
            wait: t.timer,
            // GSO cuts a buffer into equal segments: mixed sizes go one datagram per buffer.
            gso: t.gso && t.mix.is_none(),
            fixed_size: t.mix.is_none(),
            write_per_message: t.write_per_message,
        };
        // --load: the bulk flows wait for the send loop to leave the idle phase; Ctrl-C stops them with it.
        let load = load::plan(
            &t,
            self.target,
            self.session,
            job.keys.clone(),
            clock::mono(),
        )
        .map(|p| load::Generator::start(p, job.issued.clone(), send_cancel.child()));
        let send = spawn_send_loop(data, job, windowed)?;
        self.running = Some(Running {
            send: Some(send),
            send_cancel,
            echo,
            echo_cancel,
            progress: progress_thread(progress, t.count),
            load,
            load_stats: None,
        });
        Ok(())
    }

    /// The send loop's figures, once it has ended.
    fn send_finished(&mut self) -> Option<SendStats> {
        let r = self.running.as_mut()?;
        if !r.send.as_ref()?.is_finished() {
            return None;
        }
        let (st, timer, echo) = r.send.take()?.join().unwrap_or_default();
        // The loaded phase ends with the sending: the flows stop with it.
        r.load_stats = r.load.take().map(load::Generator::stop);
        if echo.is_some() {
            self.echo = echo;
        }
        if let Some((done, h)) = r.progress.take() {
            done.cancel();
            let _ = h.join();
        }
        let data = self.data.as_ref()?;
        if let Some(stats) = timer.stats() {
            let how = match data {
                DataSock::Udp(_) if st.gso > 0 => format!(
                    "datagrams, one message each, in UDP GSO buffers of up to {}",
                    st.gso
                ),
                DataSock::Udp(_) => "datagrams, one message each".into(),
                DataSock::Tcp(_) => "messages written into the byte stream".into(),
            };
            let call = match data {
                DataSock::Udp(_) => "sendmmsg",
                DataSock::Tcp(_) => "send",
            };
            self.tr
                .aggregate(call, data.fd(), format!("{} {how}", st.sent), stats);
        }
        if let DataSock::Tcp(s) = data {
            // Half-close: the receiver reads to EOF, then knows the stream is whole.
            let _ = self.tr.call(
                "shutdown",
                data.fd(),
                || "SHUT_WR (no more data; the peer reads EOF)".into(),
                || s.shutdown(Shutdown::Write),
                |_| "0".into(),
            );
        }
        self.send_timer = Some(timer);
        Some(st)
    }

    /// The echo reader's figures: it is stopped once the receiver's results come in (every reply had the
    /// linger to come back by then).
    fn echo_done(&mut self) -> Option<&EchoStats> {
        if let Some(r) = &mut self.running {
            r.echo_cancel.cancel();
            if let Some(h) = r.echo.take() {
                self.echo = h.join().ok();
            }
        }
        self.echo.as_ref()
    }

    /// Per-message rows from the receiver, with each one's round trip under --echo.
    fn write_rows(&mut self, rows: &[crate::accounting::Row]) -> anyhow::Result<()> {
        if self.msgs.is_none() {
            return Ok(());
        }
        let _ = self.echo_done();
        let rtts = self.echo.as_ref().and_then(|e| e.per_message());
        if let Some(m) = &mut self.msgs {
            m.rows(rows, rtts)?;
        }
        Ok(())
    }

    /// The session is over: stop the echo reader, then build the report from both ends' figures, or from the
    /// sender's alone when the receiver sent none.
    fn finish(mut self, run: &RunInfo, out: &OutDir, o: Outcome) -> anyhow::Result<SessionOutput> {
        let cfg = self.cfg;
        let _ = self.echo_done();
        let load = self.running.as_mut().and_then(|r| {
            let stopped = r.load.take().map(load::Generator::stop);
            r.load_stats.take().or(stopped)
        });
        let echo = self.echo.take();
        let fd = self.data.as_ref().map_or(-1, DataSock::fd);
        if let Some(st) = echo.as_ref().and_then(|e| e.timer.stats()) {
            let call = if cfg.protocol == Protocol::Udp {
                "recvmmsg"
            } else {
                "recv"
            };
            let n = echo.as_ref().map_or(0, |e| e.seq.received());
            self.tr
                .aggregate(call, fd, format!("{n} echo replies back"), st);
        }
        let tcp_retransmits = match &self.data {
            Some(DataSock::Tcp(s)) => socket::tcp_retransmits(s),
            _ => None,
        };
        if let (Some(mut m), Some(r)) = (self.msgs.take(), &o.results) {
            m.lost(&r.lost_runs)?;
        }
        self.write_trace(run, out, o.results.as_ref(), fd)?;
        let interrupted = o.send.cut_short.as_deref() == Some("interrupted");
        let (failure, note) = verdict(&o, interrupted);
        let complete = o.results.as_ref().is_some_and(|r| r.complete)
            && o.send.cut_short.is_none()
            && note.is_none();
        if let Some(r) = &o.results {
            let echo_damaged = echo
                .as_ref()
                .map_or((0, 0), |e| (e.invalid + e.unauthenticated, e.corrupt));
            for n in notices(r, echo_damaged, &o.clock) {
                eprintln!("sockbench {}: note: {n}", cfg.protocol);
            }
        }
        let side = SenderSide {
            send: o.send,
            tcp_connect_us: self.tcp_connect_us,
            tcp_retransmits,
            clock: o.clock,
            echo_replies: echo.as_ref().map(|e| e.seq.received()),
            echo_cpu_ns: echo.as_ref().and_then(|e| e.cpu_ns),
            idle_rtt: echo.as_ref().and_then(|e| e.idle_rtt.clone()),
            load,
            rtt_kernel: echo.as_ref().map(|e| e.rtt_kernel.clone()),
            rtt: echo.map(|e| e.rtt),
        };
        let meta = SessionMeta {
            run_id: run.run_id.clone(),
            started_utc: run.started_utc.clone(),
            label: cfg.output.label.clone(),
            protocol: cfg.protocol,
            peer: cfg.peer_name.clone(),
            traffic: cfg.traffic.clone(),
        };
        let empty = Measured::default();
        let latency =
            report::latency_histogram(Some(&side), o.results.as_ref().unwrap_or(&empty)).clone();
        let report = SessionReport::build(&meta, Some(&side), o.results.as_ref(), complete);
        Ok(SessionOutput {
            protocol: cfg.protocol,
            report,
            latency,
            interrupted,
            data_connects: o.data_connects,
            note: if complete {
                None
            } else {
                note.or(Some("interrupted".into()))
            },
            failure,
        })
    }

    /// --trace: both sides' socket calls, on stderr and in the trace CSV.
    fn write_trace(
        &mut self,
        run: &RunInfo,
        out: &OutDir,
        r: Option<&Measured>,
        fd: i32,
    ) -> anyhow::Result<()> {
        if !self.tr.enabled() {
            return Ok(());
        }
        let cfg = self.cfg;
        self.tr.record(
            "close",
            fd,
            "the data socket".into(),
            "0".into(),
            now_ns(),
            0,
        );
        if let Some(r) = r {
            self.tr.extend(r.trace.iter().cloned());
        }
        let events = self.tr.events();
        let title = format!("{} session to {}", cfg.protocol, cfg.peer_name);
        trace::print(&mut std::io::stderr().lock(), &title, &events)?;
        export::write_file(
            &out.file(&run.run_id, cfg.protocol, "trace"),
            &report::trace::TraceCsv(&events),
        )
    }
}

/// Whether the run failed although a row is written, and the note its row carries: a receiver whose figures
/// failed the checks, one that cut the session short, or one that sent no results at all.
fn verdict(o: &Outcome, interrupted: bool) -> (Option<String>, Option<String>) {
    let Some(results) = &o.results else {
        let why = o
            .note
            .clone()
            .unwrap_or_else(|| "it did not answer in time".into());
        let failure = format!(
            "the receiver sent no results ({why}); the row holds what this sender knows ({} messages sent), the \
             receiver's columns empty. Check the receiver's log",
            o.send.sent
        );
        return (
            Some(failure),
            Some(format!("the receiver sent no results ({why})")),
        );
    };
    let receiver_cut = (!results.complete && !interrupted)
        .then(|| results.note.clone())
        .flatten();
    let failure = match (&o.suspect, receiver_cut) {
        (Some(why), _) => Some(format!(
            "the receiver's figures failed this sender's checks ({why}); its row is marked incomplete: do not \
             trust that receiver"
        )),
        (None, Some(why)) => Some(format!(
            "the receiver cut the session short ({why}); the row written is marked incomplete"
        )),
        (None, None) => None,
    };
    let note = match &o.suspect {
        Some(why) => Some(format!("the receiver's figures do not hold: {why}")),
        None => o.note.clone(),
    };
    (failure, note)
}

fn progress_thread(progress: Arc<AtomicU64>, count: u64) -> Option<(Cancel, JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let done = Cancel::new();
    let d2 = done.clone();
    let h = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(count);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} messages {wide_bar} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        while !d2.is_cancelled() {
            bar.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    Some((done, h))
}

/// Things measured that have no column but change how the figures read: said once, on stderr.
/// `echo_damaged`: (invalid, corrupt) echo replies.
fn notices(r: &Measured, echo_damaged: (u64, u64), clock: &OffsetEstimate) -> Vec<String> {
    let mut out = vec![];
    if r.rows_not_kept > 0 {
        out.push(format!(
            "{} arrivals were counted but have no row in the per-message CSV: the receiver keeps at most {} rows \
             of an echo session, and at most {} rows on their way to the sender otherwise (a control connection \
             slower than the data)",
            r.rows_not_kept,
            crate::accounting::MAX_ROWS,
            crate::accounting::ROW_QUEUE_ROWS
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
    if r.unauthenticated > 0 {
        out.push(format!(
            "{} messages of this session failed their MAC at the receiver and were not counted: someone without \
             the key sent them",
            r.unauthenticated
        ));
    }
    if invalid + corrupt > 0 {
        out.push(format!(
            "{corrupt} echo replies failed their checksum and {invalid} were not replies of this session; none is in the round trips"
        ));
    }
    out
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
        assert!(notices(&Measured::default(), (0, 0), &clock).is_empty());
        let r = Measured {
            rows_not_kept: 7,
            negative_delays: 3,
            ..Default::default()
        };
        let n = notices(&r, (1, 2), &clock);
        assert_eq!(n.len(), 3);
        assert!(
            n[0].starts_with("7 arrivals were counted but have no row"),
            "{}",
            n[0]
        );
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
