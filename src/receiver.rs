//! The receiver: one TCP port for control connections (and TCP data), one UDP port of the same number for
//! UDP data. It serves any number of sessions, one after another and at the same time, each with its own
//! control thread, until Ctrl-C (or after one with --once).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::accounting::Account;
use crate::clock::{boot_id, now_ns};
use crate::config::RecvConfig;
use crate::control::{
    self, Accept, Ctl, CtlConn, Done, Hello, Preamble, RecvResults, CONTROL_VERSION,
    HANDSHAKE_TIMEOUT,
};
use crate::report::{summary::SummaryCsv, SessionMeta, SessionReport};
use crate::signal::Stop;
use crate::socket;
use crate::trace::{self, Event, Tracer};
use crate::traffic::Protocol;
use crate::udp::{Cmd, UdpServer};

/// Rows per Messages frame when per-message results go back to the sender.
const ROWS_PER_FRAME: usize = 8192;

struct TcpSlot {
    peer: IpAddr,
    /// The data connection and the trace event of the accept() that produced it.
    tx: mpsc::Sender<(TcpStream, Event)>,
}

/// Sessions waiting for their TCP data connection.
type TcpSlots = Mutex<HashMap<u64, TcpSlot>>;

struct Shared {
    cfg: RecvConfig,
    active: AtomicUsize,
    finished: AtomicU64,
    tcp_slots: TcpSlots,
    udp_tx: Option<Mutex<mpsc::Sender<Cmd>>>,
    /// The data-path socket calls made at start-up (socket, bind, listen...), replayed into each traced
    /// session's timeline.
    startup: Vec<Event>,
    /// Data connections taken for a session of this receiver, and those closed because the session is not
    /// here (with --reuse-port the kernel may hand a data connection to another receiver of the port).
    data_accepts: AtomicU64,
    data_refused: AtomicU64,
    summary: Option<Mutex<SummaryCsv>>,
    stop: Stop,
    quiet: bool,
}

impl Shared {
    fn log(&self, msg: std::fmt::Arguments) {
        if !self.quiet {
            eprintln!("sockbench {} recv: {msg}", self.cfg.protocol);
        }
    }
}

pub struct Receiver {
    listener: TcpListener,
    udp: Option<UdpServer>,
    local: SocketAddr,
    shared: Arc<Shared>,
}

/// Counts of a finished `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ServeSummary {
    pub sessions: u64,
    /// TCP data connections taken for a session here, and closed because the session was not here.
    pub data_accepts: u64,
    pub data_refused: u64,
    pub stray_datagrams: u64,
}

impl Receiver {
    /// Bind the ports (port 0 picks one free for both TCP and UDP) and open the CSV copy, if asked.
    pub fn bind(cfg: RecvConfig, stop: Stop, quiet: bool) -> anyhow::Result<Receiver> {
        let summary = match &cfg.out {
            Some(dir) => Some(Mutex::new(SummaryCsv::open(dir)?)),
            None => None,
        };
        let (listener, udp_sock, startup) = bind_ports(&cfg)?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let udp = udp_sock.map(|s| UdpServer::spawn(s, stop.clone()));
        let shared = Arc::new(Shared {
            udp_tx: udp.as_ref().map(|u| Mutex::new(u.tx.clone())),
            cfg,
            active: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            tcp_slots: TcpSlots::default(),
            startup,
            data_accepts: AtomicU64::new(0),
            data_refused: AtomicU64::new(0),
            summary,
            stop,
            quiet,
        });
        Ok(Receiver {
            listener,
            udp,
            local,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accept connections until stopped (or after the first session with --once), then wait for the sessions
    /// under way to write their results.
    pub fn serve(self) -> anyhow::Result<ServeSummary> {
        let sh = self.shared.clone();
        let mut threads: Vec<JoinHandle<()>> = vec![];
        while !(sh.stop.is_set() || sh.cfg.once && sh.finished.load(Ordering::SeqCst) > 0) {
            let t_ns = now_ns();
            let t0 = Instant::now();
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // Kept for the trace: accept() returns a new descriptor; the listening one keeps listening.
                    let accepted = Event::once(
                        "receiver",
                        "accept",
                        self.listener.as_raw_fd(),
                        format!("on {}", self.local),
                        format!("fd {} (from {peer})", stream.as_raw_fd()),
                        t_ns,
                        t0.elapsed().as_nanos() as u64,
                    );
                    let sh2 = sh.clone();
                    threads.retain(|t| !t.is_finished());
                    // Every connection gets a thread until it has said hello (10 s at most): bound them, so a
                    // flood of idle connections cannot exhaust threads. Sessions are capped separately.
                    if threads.len() >= 4 * sh.cfg.caps.max_sessions + 16 {
                        sh.log(format_args!(
                            "closed a connection from {peer}: too many connections at once"
                        ));
                        drop(stream);
                        continue;
                    }
                    threads.push(std::thread::spawn(move || {
                        handle_conn(sh2, stream, peer, accepted)
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Wake as soon as a connection arrives (a data connection waiting here would add its wait
                    // to the first messages' latency), and every 50 ms to notice a stop.
                    socket::wait_readable(&self.listener, Duration::from_millis(50));
                }
                Err(e) => {
                    sh.log(format_args!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        drop(self.listener);
        for t in threads {
            let _ = t.join();
        }
        let stray = self
            .udp
            .as_ref()
            .map(|u| u.stray.load(Ordering::Relaxed))
            .unwrap_or(0);
        let sessions = sh.finished.load(Ordering::SeqCst);
        let self_data_accepts = sh.data_accepts.load(Ordering::SeqCst);
        let data_refused = sh.data_refused.load(Ordering::SeqCst);
        if stray > 0 {
            sh.log(format_args!(
                "ignored {stray} datagrams that belonged to no session"
            ));
        }
        drop(self.shared);
        drop(sh);
        if let Some(u) = self.udp {
            u.join();
        }
        Ok(ServeSummary {
            sessions,
            data_accepts: self_data_accepts,
            data_refused,
            stray_datagrams: stray,
        })
    }
}

/// Bind the ports; also returns the data-path socket calls for traces. TCP data shares the listener; a UDP
/// receiver's data path is its UDP socket alone (its TCP listener carries only control connections).
fn bind_ports(cfg: &RecvConfig) -> anyhow::Result<(TcpListener, Option<UdpSocket>, Vec<Event>)> {
    let (off, reuse) = (Tracer::off(), cfg.reuse_port);
    if cfg.protocol == Protocol::Tcp {
        let tr = Tracer::on("receiver");
        let l = socket::tcp_listener(cfg.listen, 128, reuse, &tr)?;
        return Ok((l, None, tr.events()));
    }
    if cfg.listen.port() != 0 {
        let tr = Tracer::on("receiver");
        let (u, granted) = socket::udp_receiver(cfg.listen, &tr)?;
        warn_rcvbuf(granted);
        return Ok((
            socket::tcp_listener(cfg.listen, 128, reuse, &off)?,
            Some(u),
            tr.events(),
        ));
    }
    // Port 0: let the kernel pick a UDP port, then take the same number for TCP; retry if it is taken.
    for _ in 0..32 {
        let tr = Tracer::on("receiver");
        let (u, granted) = socket::udp_receiver(cfg.listen, &tr)?;
        let port = u.local_addr()?.port();
        let mut addr = cfg.listen;
        addr.set_port(port);
        if let Ok(l) = socket::tcp_listener(addr, 128, reuse, &off) {
            warn_rcvbuf(granted);
            return Ok((l, Some(u), tr.events()));
        }
    }
    bail!(
        "could not find a port free for both TCP and UDP on {}",
        cfg.listen
    )
}

fn warn_rcvbuf(granted: usize) {
    // Linux reports double the requested size (bookkeeping overhead included).
    if granted < socket::UDP_RCVBUF {
        eprintln!(
            "sockbench: the kernel granted a {} KiB UDP receive buffer instead of {} KiB; bursts may be dropped by the \
             socket (counted as udp_rcvbuf_drops). Raise net.core.rmem_max or run as root.",
            granted / 1024,
            socket::UDP_RCVBUF / 1024
        );
    }
}

fn handle_conn(sh: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, accepted: Event) {
    let _ = stream.set_nonblocking(false);
    match control::read_preamble(&mut stream) {
        Err(e) => sh.log(format_args!("closed a connection from {peer}: {e:#}")),
        Ok(Preamble::Data { session, .. }) => {
            let slot = sh.tcp_slots.lock().expect("slots").remove(&session);
            match slot {
                Some(s) if s.peer.to_canonical() == peer.ip().to_canonical() => {
                    sh.data_accepts.fetch_add(1, Ordering::SeqCst);
                    let _ = s.tx.send((stream, accepted));
                }
                _ => {
                    // Closing tells the sender to try a new connection (a new hash, with --reuse-port).
                    sh.data_refused.fetch_add(1, Ordering::SeqCst);
                    if !sh.cfg.reuse_port {
                        sh.log(format_args!("closed a data connection from {peer}: no session {session:016x} awaits it"));
                    }
                }
            }
        }
        Ok(Preamble::Control { version }) => {
            let mut conn = match CtlConn::new(stream) {
                Ok(c) => c.with_max_frame(control::MAX_SENDER_FRAME),
                Err(_) => return,
            };
            if version != CONTROL_VERSION {
                let reason = format!(
                    "control protocol version {version} is not this receiver's version {CONTROL_VERSION}: run the same sockbench version on both hosts"
                );
                sh.log(format_args!("refused {peer}: {reason}"));
                let _ = conn.send(&Ctl::Reject { reason });
                return;
            }
            if let Err(e) = session(&sh, conn, peer) {
                sh.log(format_args!("session from {peer} failed: {e:#}"));
            }
        }
    }
}

/// Decrements the active-session count however the session ends.
struct ActiveGuard<'a>(&'a AtomicUsize);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Removes a TCP session's data-connection slot however the session ends.
struct SlotGuard<'a>(&'a Shared, u64);
impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.tcp_slots.lock().expect("slots").remove(&self.1);
    }
}

fn refuse(conn: &mut CtlConn, sh: &Shared, peer: SocketAddr, reason: String) -> anyhow::Result<()> {
    sh.log(format_args!("refused a session from {peer}: {reason}"));
    conn.send(&Ctl::Reject { reason })
}

fn session(sh: &Shared, mut conn: CtlConn, peer: SocketAddr) -> anyhow::Result<()> {
    let never = || false;
    let hello: Hello = match conn.recv_until(Instant::now() + HANDSHAKE_TIMEOUT, "hello", &never)? {
        Ctl::Hello(h) => h,
        other => bail!("expected a hello, got {}", other.kind()),
    };
    let proto = sh.cfg.protocol;
    if hello.version != CONTROL_VERSION {
        return refuse(&mut conn, sh, peer, format!("hello of version {} (this receiver speaks {CONTROL_VERSION}): run the same sockbench version on both hosts", hello.version));
    }
    if hello.protocol != proto {
        return refuse(
            &mut conn,
            sh,
            peer,
            format!(
                "this receiver serves {proto}, the sender asked for {}: run `sockbench {proto} send`, or start `sockbench {} recv` on the receiver",
                hello.protocol, hello.protocol
            ),
        );
    }
    if let Some(reason) = sh.cfg.caps.refuse(proto, &hello.traffic) {
        return refuse(&mut conn, sh, peer, reason);
    }
    if sh.active.fetch_add(1, Ordering::SeqCst) >= sh.cfg.caps.max_sessions {
        sh.active.fetch_sub(1, Ordering::SeqCst);
        return refuse(&mut conn, sh, peer, format!("busy: {} sessions already running (the receiver's --max-sessions); try again later", sh.cfg.caps.max_sessions));
    }
    let _active = ActiveGuard(&sh.active);
    let t = hello.traffic.clone();
    let started = Instant::now();
    let max_end = started + sh.cfg.caps.max_duration;
    // The sender opens its TCP data connection right after Start, and that connection's own thread may read
    // its preamble before this thread has read Start: the slot must wait for it from Accept on, or the
    // connection finds no session and is closed.
    let data_rx = (proto == Protocol::Tcp).then(|| {
        let (tx, rx) = mpsc::channel::<(TcpStream, Event)>();
        sh.tcp_slots.lock().expect("slots").insert(
            hello.session,
            TcpSlot {
                peer: peer.ip(),
                tx,
            },
        );
        rx
    });
    let _slot = data_rx.as_ref().map(|_| SlotGuard(sh, hello.session));
    conn.send(&Ctl::Accept(Accept {
        version: CONTROL_VERSION,
        boot_id: boot_id(),
        software: crate::software(),
    }))?;
    sh.log(format_args!(
        "session {:016x} from {peer}: {} × {} B at {}",
        hello.session,
        t.count,
        t.size,
        if t.rate > 0.0 {
            format!("{} msg/s", t.rate)
        } else {
            "full speed".into()
        }
    ));

    // Clock exchanges until Start.
    let (offset, source_port, linger) = loop {
        match conn.recv_until(Instant::now() + HANDSHAKE_TIMEOUT, "start", &never)? {
            Ctl::TimeReq { t1 } => {
                let t2 = now_ns();
                conn.send(&Ctl::TimeResp {
                    t1,
                    t2,
                    t3: now_ns(),
                })?;
            }
            Ctl::Start {
                offset,
                udp_source_port,
                linger_ns,
            } => break (offset, udp_source_port, Duration::from_nanos(linger_ns)),
            Ctl::Abort { reason } => bail!("the sender aborted: {reason}"),
            other => bail!("expected start, got {}", other.kind()),
        }
    };
    let mut acct = Box::new(Account::new(hello.session, t.count, t.size, t.per_message));
    acct.set_mixed_sizes(&t);
    acct.set_offset(offset.offset_ns);
    // The session's trace starts with the receiver's own start-up calls, so it reads as one timeline.
    acct.trace = Tracer::new(hello.trace || sh.cfg.trace, "receiver");
    acct.trace.extend(sh.startup.iter().cloned());
    let peer_ip = peer.ip();

    enum Data {
        Udp,
        Tcp(JoinHandle<(Box<Account>, Option<String>)>, Stop),
    }
    let data = match proto {
        Protocol::Udp => {
            let tx = sh
                .udp_tx
                .as_ref()
                .expect("udp receiver")
                .lock()
                .expect("udp tx")
                .clone();
            let session = hello.session;
            tx.send(Cmd::Register {
                acct,
                peer: peer_ip,
                echo: t.echo,
            })?;
            tx.send(Cmd::Start {
                session,
                offset_ns: offset.offset_ns,
                source_port,
            })?;
            conn.send(&Ctl::Ready)?;
            Data::Udp
        }
        Protocol::Tcp => {
            // Ready only once the data connection is accepted and read: the sender's schedule starts at Ready,
            // so the handshake never counts as latency of the first messages.
            let stream = data_rx
                .expect("tcp session has a data slot")
                .recv_timeout(HANDSHAKE_TIMEOUT);
            sh.tcp_slots.lock().expect("slots").remove(&hello.session);
            let (mut stream, accepted) =
                stream.context("the sender did not open its data connection within 10 s")?;
            acct.trace.extend([accepted]);
            let data_stop = Stop::new();
            let ds = data_stop.clone();
            let echo = t.echo;
            let h = std::thread::spawn(move || {
                let end = crate::tcp::receive(&mut stream, &mut acct, echo, &ds, max_end);
                (acct, end)
            });
            conn.send(&Ctl::Ready)?;
            Data::Tcp(h, data_stop)
        }
    };

    // Wait for the sender's Done, a vanished sender, the cap, or Ctrl-C.
    let mut note: Option<String> = None;
    let mut done: Option<Done> = None;
    while done.is_none() && note.is_none() {
        if sh.stop.is_set() {
            note = Some("the receiver was interrupted".into());
            break;
        }
        if Instant::now() >= max_end {
            note = Some("the session reached the receiver's --max-duration".into());
            break;
        }
        match conn.recv(Duration::from_millis(100)) {
            Ok(Some(Ctl::Done(d))) => done = Some(d),
            Ok(Some(Ctl::Abort { reason })) => note = Some(format!("the sender aborted: {reason}")),
            Ok(Some(Ctl::TimeReq { t1 })) => {
                let t2 = now_ns();
                conn.send(&Ctl::TimeResp {
                    t1,
                    t2,
                    t3: now_ns(),
                })?;
            }
            Ok(Some(other)) => note = Some(format!("unexpected {} from the sender", other.kind())),
            Ok(None) => {}
            Err(e) => note = Some(format!("the sender vanished ({e:#})")),
        }
    }
    let sent = done.map(|d| d.sent);
    let linger = if note.is_some() {
        Duration::ZERO
    } else {
        linger
    };

    let (mut acct, data_note) = match data {
        Data::Udp => {
            let (rtx, rrx) = mpsc::channel();
            let tx = sh
                .udp_tx
                .as_ref()
                .expect("udp receiver")
                .lock()
                .expect("udp tx")
                .clone();
            tx.send(Cmd::Finish {
                session: hello.session,
                sent,
                linger,
                reply: rtx,
            })?;
            let acct = rrx
                .recv_timeout(linger + Duration::from_secs(30))
                .context("the UDP receiving thread did not hand back the session")?;
            (acct, None)
        }
        Data::Tcp(h, data_stop) => {
            // The sender shut its data connection before Done, so EOF is near: wait while it drains, as long as
            // linger after Done (a slow path may still hold data), then cut.
            let wait_end = Instant::now() + linger.max(Duration::from_secs(2));
            while !h.is_finished() && Instant::now() < wait_end && !sh.stop.is_set() {
                std::thread::sleep(Duration::from_millis(5));
            }
            data_stop.set();
            let (acct, end) = h
                .join()
                .map_err(|_| anyhow::anyhow!("TCP receive thread panicked"))?;
            (acct, end)
        }
    };
    let complete = done.is_some_and(|d| d.complete) && note.is_none() && data_note.is_none();
    let note = note.or(data_note);
    let results = acct.results(sent, complete, note.clone());
    if sh.cfg.trace {
        let title = format!("{proto} session {:016x} from {peer}", hello.session);
        let events = acct.trace.events();
        let _ = trace::print(&mut std::io::stderr().lock(), &title, &events);
        if let Some(dir) = &sh.cfg.out {
            let path = crate::sender::OutDir::new(dir).file(&hello.run_id, proto, "trace");
            if let Err(e) = trace::write_csv(&path, &events) {
                sh.log(format_args!("cannot write the trace: {e:#}"));
            }
        }
    }
    let rows = acct.take_rows();
    send_results(&mut conn, &results, &rows);
    sh.finished.fetch_add(1, Ordering::SeqCst);
    log_result(sh, &hello, &results, note.as_deref(), peer);
    if let Some(csv) = &sh.summary {
        let meta = SessionMeta {
            run_id: hello.run_id.clone(),
            started_utc: hello.started_utc.clone(),
            label: hello.label.clone(),
            protocol: proto,
            peer: peer.ip().to_string(),
            traffic: t,
        };
        let row = SessionReport::build(&meta, None, &results, results.complete);
        if let Err(e) = csv.lock().expect("csv").append(&[&row]) {
            sh.log(format_args!("cannot write the receiver's CSV copy: {e:#}"));
        }
    }
    Ok(())
}

fn send_results(conn: &mut CtlConn, results: &RecvResults, rows: &[control::MessageRow]) {
    // Best effort: a sender that is gone cannot be told, and the receiver's own copy is already safe.
    if conn.send(&Ctl::Results(Box::new(results.clone()))).is_err() {
        return;
    }
    for chunk in rows.chunks(ROWS_PER_FRAME) {
        if conn
            .send(&Ctl::Messages {
                rows: chunk.to_vec(),
            })
            .is_err()
        {
            return;
        }
    }
    let _ = conn.send(&Ctl::End);
}

fn log_result(sh: &Shared, hello: &Hello, r: &RecvResults, note: Option<&str>, peer: SocketAddr) {
    let s = &r.seq;
    sh.log(format_args!(
        "session {:016x} from {peer} {}: received {} of {}, lost {}, duplicates {}, reordered {}, corrupt {}, invalid {}{}",
        hello.session,
        if r.complete { "done" } else { "incomplete" },
        s.received,
        s.sent,
        s.lost,
        s.duplicates,
        s.reordered,
        r.corrupt,
        r.invalid,
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    ));
}
