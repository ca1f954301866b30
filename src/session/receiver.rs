//! The receiving end of one TCP connection to a receiver, sans-IO: from the first byte (a preamble says
//! whether it is a control or a data connection) through hello, admission, clock exchanges, start, the
//! measured phase and the linger, to the results sent back. Every wait has a deadline here, so a stalled,
//! silent or dribbling peer is dropped on time whatever it sends; the driver only moves bytes and runs the
//! data path.
//!
//! Feed it with `on_*` (each takes `now`), call `on_timeout` when `next_deadline` passes, and carry out what
//! `poll_action` returns, in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::accounting::{self, Account, ClockCell, Measured, RowQueue};
use crate::auth::{self, Dir, Secret, SessionKeys, MAC_LEN, NONCE_LEN};
use crate::clock::Now;
use crate::proto::{self, Ctl, FrameDecoder, FrameEncoder, Preamble, PreambleDecoder};
use crate::session::translate;
use crate::traffic::{Caps, Protocol, Traffic};

/// Rows per Messages frame when per-message results go back to the sender.
const ROWS_PER_FRAME: usize = 8192;
/// How long a TCP session's reading thread waits for room in the row queue before it counts rows as not
/// kept: the control connection is slower than the data only under a sender that stopped reading it.
const ROW_WAIT: Duration = Duration::from_secs(1);

/// What a receiver allows and how long it waits.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub protocol: Protocol,
    pub caps: Caps,
    pub boot_id: String,
    pub software: String,
    /// From accept to a whole hello, in total (not per read): a stranger gets this long, however it dribbles.
    pub hello_timeout: Duration,
    /// From accept to Ready (hello, clock exchanges, start, the data connection), in total.
    pub setup_timeout: Duration,
    /// After the linger, how long the data path may take to hand its account back.
    pub drain_grace: Duration,
    /// With --key-file: senders must prove they know it, and every frame and message is MAC'd.
    pub secret: Option<Secret>,
}

impl ConnConfig {
    pub fn new(protocol: Protocol, caps: Caps) -> ConnConfig {
        ConnConfig {
            protocol,
            caps,
            boot_id: String::new(),
            software: crate::software(),
            hello_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(30),
            drain_grace: Duration::from_secs(30),
            secret: None,
        }
    }
}

/// A hello that passed every check, waiting for the driver to find room for it.
#[derive(Debug, Clone)]
pub struct Admission {
    pub session: u64,
    pub traffic: Traffic,
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    /// The sender asked for the receiver's socket calls (--trace).
    pub trace: bool,
}

/// A finished session, for the receiver's log and its own CSV copy.
#[derive(Debug, Clone)]
pub struct Report {
    pub admission: Admission,
    pub measured: Measured,
}

pub enum Action {
    /// Bytes for the control connection.
    Write(Vec<u8>),
    /// This connection is the TCP data connection of `session`: hand it (and `leftover`, bytes that followed
    /// the preamble) to that session, which checks `mac` if it is authenticated; this state machine is done.
    DataConnection {
        session: u64,
        leftover: Vec<u8>,
        mac: Option<[u8; MAC_LEN]>,
    },
    /// This connection is a bulk flow of `session`'s --load (`down`: the receiver sends on it): hand it to that
    /// session, which checks `mac` if it is authenticated; this state machine is done.
    LoadConnection {
        session: u64,
        down: bool,
        mac: Option<[u8; MAC_LEN]>,
    },
    /// A valid hello: reserve a session slot (and, for TCP, a place for its data connection), then call
    /// `on_admitted`. Nothing else happens until then.
    Admit(Box<Admission>),
    /// Start accounting the session's data; call `on_data_ready` once the data path runs (TCP: once its data
    /// connection has arrived).
    StartData {
        account: Box<Account>,
        udp_source_port: Option<u16>,
    },
    /// The sender is done (`sent`) or gone (None): finish the data path at the latest `linger` from now, then
    /// hand the account back with `on_data_finished`.
    StopData {
        sent: Option<u64>,
        linger: Duration,
    },
    /// The session's figures, for the log and the CSV copy (after the results were written).
    Report(Box<Report>),
    Log(String),
    /// Close the control connection and release whatever was reserved for it.
    Close,
}

#[derive(Debug)]
enum State {
    Preamble(PreambleDecoder),
    Hello,
    Admitting,
    /// Authenticated: the Accept with the receiver's proof went out; the sender's proof is due.
    AwaitProof,
    Clock,
    AwaitData,
    Running {
        max_end: Instant,
        idle: Duration,
    },
    Draining {
        until: Instant,
    },
    Closed,
}

pub struct ReceiverConn {
    cfg: ConnConfig,
    state: State,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    /// Authentication: the hello's hash, both nonces, and the session keys once both proofs held.
    hello_hash: [u8; 32],
    nonces: Option<([u8; NONCE_LEN], [u8; NONCE_LEN])>,
    keys: Option<SessionKeys>,
    hello_deadline: Instant,
    setup_deadline: Instant,
    admission: Option<Admission>,
    linger: Duration,
    /// The sender's Done, once it came.
    done: Option<proto::Done>,
    /// Why the session is incomplete, once something cut it.
    note: Option<String>,
    /// The data path's account, when it ended before the sender's Done (TCP reads EOF first).
    early: Option<(Box<Account>, Option<String>)>,
    /// The last sign of life from the sender: control bytes or data.
    last_activity: Instant,
    /// The clock line the session's arrivals are corrected with, updated by the sender's refits.
    clock: Option<Arc<ClockCell>>,
    /// --per-message without echo: rows the data path hands over during the run, sent on at each flush.
    rows_out: Option<Arc<RowQueue>>,
    actions: VecDeque<Action>,
}

impl ReceiverConn {
    /// A connection accepted at `now`.
    pub fn new(cfg: ConnConfig, now: Now) -> ReceiverConn {
        ReceiverConn {
            hello_deadline: now.mono + cfg.hello_timeout,
            setup_deadline: now.mono + cfg.setup_timeout,
            cfg,
            state: State::Preamble(PreambleDecoder::default()),
            decoder: FrameDecoder::new(proto::MAX_SENDER_FRAME),
            encoder: FrameEncoder::default(),
            hello_hash: [0; 32],
            nonces: None,
            keys: None,
            admission: None,
            linger: Duration::ZERO,
            done: None,
            note: None,
            early: None,
            last_activity: now.mono,
            clock: None,
            rows_out: None,
            actions: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The admitted session, once there is one.
    pub fn admission(&self) -> Option<&Admission> {
        self.admission.as_ref()
    }

    /// When `on_timeout` must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Preamble(_) | State::Hello | State::Admitting | State::AwaitProof => {
                Some(self.hello_deadline)
            }
            State::Clock | State::AwaitData => Some(self.setup_deadline),
            State::Running { max_end, idle } => Some(max_end.min(self.last_activity + idle)),
            State::Draining { until } => Some(until),
            State::Closed => None,
        }
    }

    fn write(&mut self, m: &Ctl) {
        let bytes = self.encoder.encode(m);
        self.actions.push_back(Action::Write(bytes));
    }

    fn log(&mut self, msg: String) {
        self.actions.push_back(Action::Log(msg));
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.actions.push_back(Action::Close);
    }

    fn refuse(&mut self, reason: String) {
        self.log(format!("refused a session: {reason}"));
        self.write(&Ctl::Reject { reason });
        self.close();
    }

    /// The data path saw the sender's traffic (the driver calls this when its count moves).
    pub fn on_data_activity(&mut self, now: Now) {
        self.last_activity = self.last_activity.max(now.mono);
    }

    /// Bytes from the peer.
    pub fn on_bytes(&mut self, bytes: &[u8], now: Now) {
        self.last_activity = self.last_activity.max(now.mono);
        let mut bytes = bytes;
        if let State::Preamble(p) = &mut self.state {
            match p.push(bytes) {
                Ok(None) => return,
                Ok(Some((Preamble::Control { version }, used))) => {
                    bytes = &bytes[used..];
                    if version != proto::VERSION {
                        let reason = format!(
                            "control protocol version {version} is not this receiver's version {}: run the same \
                             sockbench version on both hosts",
                            proto::VERSION
                        );
                        self.refuse(reason);
                        return;
                    }
                    self.state = State::Hello;
                }
                Ok(Some((
                    Preamble::Data {
                        version,
                        session,
                        mac,
                    },
                    used,
                ))) => {
                    if version != proto::VERSION {
                        self.log(format!(
                            "closed a data connection of control protocol version {version}"
                        ));
                        self.close();
                        return;
                    }
                    self.state = State::Closed;
                    self.actions.push_back(Action::DataConnection {
                        session,
                        leftover: bytes[used..].to_vec(),
                        mac,
                    });
                    return;
                }
                Ok(Some((
                    Preamble::Load {
                        version,
                        session,
                        down,
                        mac,
                    },
                    _,
                ))) => {
                    if version != proto::VERSION {
                        self.log(format!(
                            "closed a load connection of control protocol version {version}"
                        ));
                        self.close();
                        return;
                    }
                    self.state = State::Closed;
                    self.actions
                        .push_back(Action::LoadConnection { session, down, mac });
                    return;
                }
                Err(e) => {
                    self.log(format!("closed a connection: {e}"));
                    self.close();
                    return;
                }
            }
        }
        if self.is_closed() {
            return;
        }
        if let Err(e) = self.decoder.push(bytes) {
            self.cut_or_close(format!("the sender sent garbage ({e})"), now);
            return;
        }
        self.drain(now);
    }

    /// Handle every whole frame buffered, unless waiting for the driver's admission.
    fn drain(&mut self, now: Now) {
        while !matches!(self.state, State::Admitting | State::Closed) {
            match self.decoder.next_message() {
                Ok(Some(m)) => self.on_message(m, now),
                Ok(None) => return,
                Err(e) => {
                    self.cut_or_close(format!("the sender sent garbage ({e})"), now);
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, m: Ctl, now: Now) {
        match (&self.state, m) {
            (State::Hello, Ctl::Hello(h)) => self.on_hello(h),
            (State::AwaitProof, Ctl::Proof { proof }) => self.on_proof(&proof),
            (State::Hello, other) => {
                self.log(format!(
                    "closed a connection: expected a hello, got {}",
                    other.kind()
                ));
                self.close();
            }
            (State::Clock | State::Running { .. }, Ctl::TimeReq { t1 }) => {
                self.write(&Ctl::TimeResp {
                    t1,
                    t2: now.wall_ns,
                    t3: now.wall_ns,
                });
            }
            (State::Clock, Ctl::Start(s)) => self.on_start(s),
            (State::Running { .. } | State::Draining { .. }, Ctl::Clock(c)) => {
                if let Some(cell) = &self.clock {
                    cell.set(translate::clock_model(&c));
                }
            }
            (State::Running { .. }, Ctl::Done(d)) => {
                self.done = Some(d);
                self.stop_data(Some(d.sent), self.linger, now);
            }
            (State::Running { .. }, Ctl::Abort { reason }) => {
                self.note
                    .get_or_insert(format!("the sender aborted: {}", clip(&reason)));
                self.stop_data(None, Duration::ZERO, now);
            }
            (State::Running { .. }, other) => {
                self.note
                    .get_or_insert(format!("unexpected {} from the sender", other.kind()));
                self.stop_data(None, Duration::ZERO, now);
            }
            (State::Draining { .. }, Ctl::TimeReq { t1 }) => self.write(&Ctl::TimeResp {
                t1,
                t2: now.wall_ns,
                t3: now.wall_ns,
            }),
            (State::Draining { .. }, _) => {}
            (_, Ctl::Abort { reason }) => {
                self.log(format!("the sender aborted: {}", clip(&reason)));
                self.close();
            }
            (_, other) => {
                self.log(format!(
                    "closed a session: unexpected {} from the sender",
                    other.kind()
                ));
                self.close();
            }
        }
    }

    fn on_hello(&mut self, h: proto::Hello) {
        let proto = self.cfg.protocol;
        if h.version != proto::VERSION {
            return self.refuse(format!(
                "hello of version {} (this receiver speaks {}): run the same sockbench version on both hosts",
                h.version,
                proto::VERSION
            ));
        }
        let asked = translate::protocol(h.transport);
        if asked != proto {
            return self.refuse(format!(
                "this receiver serves {proto}, the sender asked for {asked}: run `sockbench {proto} send`, or start \
                 `sockbench {asked} recv` on the receiver"
            ));
        }
        match (&self.cfg.secret, &h.nonce) {
            (Some(_), None) => {
                return self.refuse(
                    "this receiver requires authentication: give the sender --key-file (or SOCKBENCH_KEY_FILE) \
                     with the receiver's key"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return self.refuse(
                    "the sender asked for authentication (--key-file), but this receiver has no key: start it \
                     with --key-file and the same key"
                        .into(),
                )
            }
            (Some(_), Some(n)) => match auth::from_hex::<NONCE_LEN>(n) {
                Some(ns) => {
                    self.hello_hash = self.decoder.last_hash();
                    self.nonces = Some((ns, auth::nonce()));
                }
                None => return self.refuse("the hello's nonce is not 16 bytes of hex".into()),
            },
            (None, None) => {}
        }
        let traffic = match translate::traffic(&h.traffic, proto, self.nonces.is_some()) {
            Ok(t) => t,
            Err(why) => return self.refuse(format!("the hello is not valid: {why}")),
        };
        if let Some(reason) = self.cfg.caps.refuse(proto, &traffic) {
            return self.refuse(reason);
        }
        let a = Admission {
            session: h.session,
            traffic,
            run_id: clip(&h.run_id),
            started_utc: clip(&h.started_utc),
            label: clip(&h.label),
            trace: h.trace,
        };
        self.admission = Some(a.clone());
        self.state = State::Admitting;
        self.actions.push_back(Action::Admit(Box::new(a)));
    }

    /// The driver's answer to `Admit`: Ok, or why there is no room.
    pub fn on_admitted(&mut self, answer: Result<(), String>, now: Now) {
        if !matches!(self.state, State::Admitting) {
            return;
        }
        match answer {
            Err(reason) => self.refuse(reason),
            Ok(()) => {
                let (nonce, proof) = match (&self.cfg.secret, self.nonces) {
                    (Some(k), Some((ns, nr))) => (
                        Some(auth::to_hex(&nr)),
                        Some(auth::to_hex(&k.receiver_proof(&self.hello_hash, &ns, &nr))),
                    ),
                    _ => (None, None),
                };
                self.write(&Ctl::Accept(proto::Accept {
                    version: proto::VERSION,
                    boot_id: self.cfg.boot_id.clone(),
                    software: self.cfg.software.clone(),
                    nonce,
                    proof,
                }));
                if let Some(a) = &self.admission {
                    let t = &a.traffic;
                    let msg = format!(
                        "session {:016x}: {} × {} B at {}",
                        a.session,
                        t.count,
                        t.size,
                        if t.rate > 0.0 {
                            format!("{} msg/s", t.rate)
                        } else {
                            "full speed".into()
                        }
                    );
                    self.log(msg);
                }
                self.state = if self.nonces.is_some() {
                    State::AwaitProof
                } else {
                    State::Clock
                };
                self.drain(now);
            }
        }
    }

    /// The sender's proof that it knows the key: from here on every frame both ways carries a MAC.
    fn on_proof(&mut self, proof: &str) {
        let (Some(secret), Some((ns, nr)), Some(a)) =
            (&self.cfg.secret, self.nonces, &self.admission)
        else {
            return self.close();
        };
        let want = secret.sender_proof(&self.hello_hash, &ns, &nr);
        let ok = auth::from_hex::<MAC_LEN>(proof).is_some_and(|p| auth::same(&p, &want));
        if !ok {
            return self.refuse(
                "authentication failed: the sender's key is not this receiver's (give both ends the same \
                 --key-file)"
                    .into(),
            );
        }
        let keys = secret.session_keys(a.session, &ns, &nr);
        self.decoder
            .authenticate(keys.clone(), Dir::SenderToReceiver);
        self.encoder
            .authenticate(keys.clone(), Dir::ReceiverToSender);
        self.keys = Some(keys);
        self.state = State::Clock;
    }

    /// The session's keys, once both proofs held (data messages and the data connection's preamble are
    /// checked with them).
    pub fn keys(&self) -> Option<&SessionKeys> {
        self.keys.as_ref()
    }

    fn on_start(&mut self, s: proto::Start) {
        let Some(a) = &self.admission else {
            return self.close();
        };
        let t = &a.traffic;
        let mut account = Box::new(Account::new(a.session, t.count, t.size, t.per_message));
        account.set_mixed_sizes(t);
        account.set_idle_probes(t.idle_probes);
        let cell = Arc::new(ClockCell::new(translate::clock_model(&s.clock)));
        account.share_clock(cell.clone());
        self.clock = Some(cell);
        if let Some(k) = &self.keys {
            account.set_keys(k.clone());
        }
        if accounting::streams_rows(t) {
            let q = Arc::new(RowQueue::new(accounting::ROW_QUEUE_ROWS));
            // A TCP reading thread may wait for room (the stream, then the sender, slows down); the UDP
            // thread serves every session and never waits.
            let wait = match self.cfg.protocol {
                Protocol::Tcp => ROW_WAIT,
                Protocol::Udp => Duration::ZERO,
            };
            account.stream_rows(q.clone(), wait);
            self.rows_out = Some(q);
        }
        self.linger = Duration::from_nanos(s.linger_ns).min(translate::MAX_LINGER);
        self.state = State::AwaitData;
        self.actions.push_back(Action::StartData {
            account,
            udp_source_port: s.udp_source_port,
        });
    }

    /// The data path runs: the sender may start its schedule.
    pub fn on_data_ready(&mut self, now: Now) {
        if !matches!(self.state, State::AwaitData) {
            return;
        }
        self.write(&Ctl::Ready);
        let gaps = self.admission.as_ref().map_or(Duration::ZERO, |a| {
            let r = a.traffic.rate;
            if r > 0.0 {
                Duration::try_from_secs_f64(4.0 / r).unwrap_or(Duration::MAX)
            } else {
                Duration::ZERO
            }
        });
        self.last_activity = now.mono;
        self.state = State::Running {
            max_end: now.mono + self.cfg.caps.max_duration,
            idle: self
                .cfg
                .caps
                .idle_timeout
                .max(gaps)
                .min(self.cfg.caps.max_duration),
        };
    }

    fn stop_data(&mut self, sent: Option<u64>, linger: Duration, now: Now) {
        if let Some((acct, data_note)) = self.early.take() {
            // The data path already ended (TCP read EOF before Done): nothing to stop, finish now.
            self.state = State::Draining {
                until: now.mono + self.cfg.drain_grace,
            };
            return self.finish(acct, data_note);
        }
        self.actions.push_back(Action::StopData { sent, linger });
        self.state = State::Draining {
            until: now.mono + linger + self.cfg.drain_grace,
        };
    }

    /// Something cut the session (garbage, a vanished sender): in the measured phase the data path still
    /// hands back what it counted, so the receiver keeps its copy; before it there is nothing to keep.
    fn cut_or_close(&mut self, why: String, now: Now) {
        match self.state {
            State::Running { .. } => {
                self.note.get_or_insert(why);
                self.stop_data(None, Duration::ZERO, now);
            }
            State::Draining { .. } | State::Closed => {}
            _ => {
                self.log(format!("closed a connection: {why}"));
                self.close();
            }
        }
    }

    /// The control connection ended (EOF or error).
    pub fn on_closed(&mut self, why: &str, now: Now) {
        match self.state {
            State::Running { .. } => {
                self.note
                    .get_or_insert(format!("the sender vanished ({why})"));
                self.stop_data(None, Duration::ZERO, now);
            }
            State::Draining { .. } | State::Closed => {}
            _ => {
                self.log(format!(
                    "the sender left before the session started ({why})"
                ));
                self.close();
            }
        }
    }

    /// Ctrl-C (or the receiver shutting down): end the session now, keeping what was measured.
    pub fn on_cancel(&mut self, now: Now) {
        match self.state {
            State::Running { .. } => {
                self.note
                    .get_or_insert("the receiver was interrupted".into());
                self.stop_data(None, Duration::ZERO, now);
            }
            State::Draining { .. } | State::Closed => {}
            _ => self.close(),
        }
    }

    /// The data path ended and hands back its account; `data_note` says why, if it ended abnormally.
    pub fn on_data_finished(&mut self, account: Box<Account>, data_note: Option<String>) {
        match self.state {
            State::Draining { .. } => self.finish(account, data_note),
            State::Running { .. } if data_note.is_some() => {
                // The data path broke (a stream that stopped being ours, echo replies nobody reads): the
                // session is over now, whatever the sender says next.
                self.state = State::Draining {
                    until: self.hello_deadline,
                };
                self.finish(account, data_note);
            }
            State::Running { .. } => {
                // TCP reads EOF before the sender's Done arrives: keep the account until Done (or a cut).
                self.early = Some((account, data_note));
            }
            _ => {}
        }
    }

    fn finish(&mut self, mut account: Box<Account>, data_note: Option<String>) {
        let Some(admission) = self.admission.clone() else {
            return self.close();
        };
        if let Some(n) = data_note {
            self.note.get_or_insert(n);
        }
        let sent = self.done.map(|d| d.sent);
        let complete = self.done.is_some_and(|d| d.complete) && self.note.is_none();
        let measured = account.measured(sent, complete, self.note.clone());
        while self.flush_rows() {}
        self.write(&Ctl::Results(Box::new(translate::results(&measured))));
        let rows = account.take_rows();
        self.write_rows(&rows);
        self.write(&Ctl::End);
        self.actions.push_back(Action::Report(Box::new(Report {
            admission,
            measured,
        })));
        self.close();
    }

    /// The measured phase with nothing for the driver to carry but bytes: it may look at its data path less
    /// often (every wake-up on the data path's CPU can delay a reply in a ping-pong session).
    pub fn quiet(&self) -> bool {
        matches!(self.state, State::Running { .. }) && self.rows_out.is_none()
    }

    /// Send on the oldest chunk of per-message rows the data path has handed over (streaming sessions), as
    /// one frame; false when there was none. Call it often during the run, writing each frame before asking
    /// for the next: the rows wait in a bounded queue until then, and only one frame is encoded at a time.
    pub fn flush_rows(&mut self) -> bool {
        if !matches!(self.state, State::Running { .. } | State::Draining { .. }) {
            return false;
        }
        let Some(chunk) = self.rows_out.as_ref().and_then(|q| q.take_one()) else {
            return false;
        };
        self.write_rows(&chunk);
        true
    }

    fn write_rows(&mut self, rows: &[accounting::Row]) {
        for chunk in rows.chunks(ROWS_PER_FRAME) {
            // The first row's send time: the others' times lie within the chunk's span of it.
            let base_ns = chunk.first().map_or(0, |r| r.send_ns);
            self.write(&Ctl::Messages {
                base_ns,
                rows: chunk
                    .iter()
                    .map(|r| translate::message_row(r, base_ns))
                    .collect(),
            });
        }
    }

    /// Deadlines: a hello that never completes, a set-up that stalls, the receiver's --max-duration, a data
    /// path that never hands back.
    pub fn on_timeout(&mut self, now: Now) {
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now.mono < deadline {
            return;
        }
        match self.state {
            State::Preamble(_) | State::Hello | State::Admitting | State::AwaitProof => {
                self.log(format!(
                    "closed a connection: no whole hello within {} of connecting",
                    humantime::format_duration(self.cfg.hello_timeout)
                ));
                self.close();
            }
            State::Clock | State::AwaitData => {
                let why = format!(
                    "the session did not start within {} of connecting",
                    humantime::format_duration(self.cfg.setup_timeout)
                );
                self.log(format!("closed a session: {why}"));
                self.write(&Ctl::Abort { reason: why });
                self.close();
            }
            State::Running { max_end, idle } => {
                let why = if now.mono >= max_end {
                    "the session reached the receiver's --max-duration".to_string()
                } else {
                    format!(
                        "the sender went silent for {} (no data, no control message)",
                        humantime::format_duration(idle)
                    )
                };
                self.note.get_or_insert(why);
                self.stop_data(None, Duration::ZERO, now);
            }
            State::Draining { .. } => {
                self.log("closed a session: its data path did not hand back its figures".into());
                self.close();
            }
            State::Closed => {}
        }
    }
}

/// A peer's string, bounded before it reaches a log line or a CSV cell.
fn clip(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
