//! The sending end of one session's control connection, sans-IO: hello, clock exchanges, start, the data
//! connection (TCP), ready, the measured phase, done, and the receiver's results and per-message rows. Every
//! wait has a deadline here; the driver opens sockets, runs the send loop and moves bytes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::accounting::{Measured, Row, SendStats};
use crate::auth::{self, Dir, Secret, SessionKeys, MAC_LEN, NONCE_LEN};
use crate::clock::{ClockFit, Now, OffsetEstimate, Sample};
use crate::proto::{self, Ctl, FrameDecoder, FrameEncoder};
use crate::session::translate;
use crate::traffic::{Protocol, Traffic};

/// NTP-style exchanges per session; the one with the smallest round trip is kept.
pub const CLOCK_EXCHANGES: usize = 8;
/// How often the measured phase re-estimates the clocks (Paxson-style fit over all exchanges).
pub const CLOCK_INTERVAL: Duration = Duration::from_secs(1);
/// TCP data connections tried before giving up: with SO_REUSEPORT each lands on a receiver of the port by
/// its own hash, maybe not the one holding the session.
pub const DATA_CONNECT_TRIES: u32 = 32;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub protocol: Protocol,
    pub session: u64,
    pub traffic: Traffic,
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    /// Ask the receiver for its socket calls (--trace).
    pub trace: bool,
    /// This host's boot id: the same as the receiver's means one clock, so the offset is exactly 0.
    pub boot_id: String,
    pub software: String,
    /// From the hello to the receiver's Accept.
    pub accept_timeout: Duration,
    /// From the hello to Ready (clock exchanges, start, the data connection), in total. Shorter than the
    /// receiver's own set-up limit, so the sender is the one that says what went wrong.
    pub setup_timeout: Duration,
    /// How long the results may take beyond the linger (the receiver drains, then answers).
    pub results_grace: Duration,
    /// With --key-file: the receiver must prove it knows it, and every frame and message is MAC'd.
    pub secret: Option<Secret>,
}

impl SenderConfig {
    pub fn new(protocol: Protocol, session: u64, traffic: Traffic) -> SenderConfig {
        SenderConfig {
            protocol,
            session,
            traffic,
            run_id: String::new(),
            started_utc: String::new(),
            label: String::new(),
            trace: false,
            boot_id: String::new(),
            software: crate::software(),
            accept_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(25),
            results_grace: Duration::from_secs(30),
            secret: None,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// The receiver said no, with its reason (the user can act on it: a usage error).
    Refused(String),
    /// What answered is not a sockbench receiver of this version (a usage error: wrong port or host).
    NotAReceiver(String),
    /// It did not prove it knows the key (--key-file): another key, or an impostor (a usage error).
    WrongKey(String),
    /// It started to answer, then stopped or broke off.
    Failed(String),
}

/// What a finished session knows: the sender's own figures always, the receiver's when they came.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub clock: OffsetEstimate,
    pub linger: Duration,
    pub send: SendStats,
    /// The receiver's figures; None when it sent none (gone, silent, or its results did not validate).
    pub results: Option<Measured>,
    /// Why the session is incomplete, when something cut it.
    pub note: Option<String>,
    /// TCP data connections opened until one reached the receiver holding the session.
    pub data_connects: u32,
    /// The receiver's figures failed this sender's checks (more received than sent, rows beyond what was
    /// sent...): why. They are reported marked, and the run fails.
    pub suspect: Option<String>,
}

#[derive(Debug)]
pub enum Action {
    /// Bytes for the control connection.
    Write(Vec<u8>),
    /// Open the data socket (UDP: bind and connect, then report its source port; TCP: nothing yet) and call
    /// `on_data_opened`.
    OpenData,
    /// TCP: open data connection number `attempt` and send its preamble; then `on_data_refused` if the
    /// receiver closes it before Ready.
    ConnectData { attempt: u32 },
    /// Ready: start the send loop (and the echo reader) now.
    BeginSending,
    /// Cut the send loop short; it reports with `on_send_finished` as always.
    StopSending,
    /// Per-message rows from the receiver, to append to the CSV as they come.
    Rows(Vec<Row>),
    /// The session could not start.
    Failed(SetupError),
    /// The session is over.
    Finished(Box<Outcome>),
}

#[derive(Debug)]
enum State {
    AwaitAccept,
    Clock { t1: i64 },
    OpeningData,
    AwaitReady { attempt: u32 },
    Sending,
    AwaitResults { until: Instant },
    Over,
}

pub struct SenderSession {
    cfg: SenderConfig,
    state: State,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    /// Authentication: the hello's hash, this side's nonce, and the session keys once both proofs held.
    hello_hash: [u8; 32],
    nonce: [u8; NONCE_LEN],
    keys: Option<SessionKeys>,
    accept_deadline: Instant,
    setup_deadline: Instant,
    /// Every clock exchange of the session, fitted as a line (offset and skew).
    fit: ClockFit,
    /// Clock replies before the data, usable or not: a receiver whose every reply is impossible must not
    /// keep the sender asking.
    clock_replies: usize,
    /// In the measured phase: when the next exchange is due, and the one awaiting its reply.
    clock_due: Instant,
    clock_pending: Option<i64>,
    same_host: bool,
    clock: OffsetEstimate,
    linger: Duration,
    send: Option<SendStats>,
    results: Option<Measured>,
    note: Option<String>,
    stop_asked: bool,
    data_connects: u32,
    /// Per-message rows passed on so far, and why the receiver's figures are not believed, if they are not.
    rows: u64,
    suspect: Option<String>,
    /// The receiver sent everything (results, rows, End) before the send loop had finished: it cut the session.
    ended: bool,
    actions: VecDeque<Action>,
}

impl SenderSession {
    /// A control connection just opened at `now`: the preamble and hello go out at once.
    pub fn new(cfg: SenderConfig, now: Now) -> SenderSession {
        let nonce = auth::nonce();
        let hello = Ctl::Hello(proto::Hello {
            version: proto::VERSION,
            transport: translate::transport(cfg.protocol),
            session: cfg.session,
            run_id: cfg.run_id.clone(),
            started_utc: cfg.started_utc.clone(),
            label: cfg.label.clone(),
            traffic: translate::traffic_spec(&cfg.traffic),
            boot_id: cfg.boot_id.clone(),
            software: cfg.software.clone(),
            trace: cfg.trace,
            nonce: cfg.secret.as_ref().map(|_| auth::to_hex(&nonce)),
        });
        let mut first = proto::control_preamble().to_vec();
        let frame = proto::encode(&hello);
        // The receiver's proof covers the hello's JSON body, exactly as it went out.
        let hello_hash = auth::hello_hash(&frame[4..]);
        first.extend(frame);
        SenderSession {
            accept_deadline: now.mono + cfg.accept_timeout,
            setup_deadline: now.mono + cfg.setup_timeout,
            cfg,
            state: State::AwaitAccept,
            decoder: FrameDecoder::new(proto::MAX_FRAME),
            encoder: FrameEncoder::default(),
            hello_hash,
            nonce,
            keys: None,
            fit: ClockFit::new(false),
            clock_replies: 0,
            clock_due: now.mono,
            clock_pending: None,
            same_host: false,
            clock: OffsetEstimate::default(),
            linger: Duration::ZERO,
            send: None,
            results: None,
            note: None,
            stop_asked: false,
            data_connects: 0,
            rows: 0,
            suspect: None,
            ended: false,
            actions: VecDeque::from([Action::Write(first)]),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    pub fn clock(&self) -> OffsetEstimate {
        self.clock
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::AwaitAccept => Some(self.accept_deadline),
            State::Clock { .. } | State::OpeningData | State::AwaitReady { .. } => {
                Some(self.setup_deadline)
            }
            State::AwaitResults { until } => Some(until),
            State::Sending => Some(self.clock_due),
            State::Over => None,
        }
    }

    fn write(&mut self, m: &Ctl) {
        let bytes = self.encoder.encode(m);
        self.actions.push_back(Action::Write(bytes));
    }

    /// The session's keys, once both proofs held: data messages, echo replies and the data connection's
    /// preamble carry MACs made with them.
    pub fn keys(&self) -> Option<&SessionKeys> {
        self.keys.as_ref()
    }

    /// The receiver proved it knows the key; prove it back, then MAC every frame.
    fn authenticate(&mut self, a: &proto::Accept) -> Result<(), SetupError> {
        let Some(secret) = self.cfg.secret.clone() else {
            return Ok(());
        };
        let proven = match (
            a.nonce.as_deref().and_then(auth::from_hex::<NONCE_LEN>),
            a.proof.as_deref().and_then(auth::from_hex::<MAC_LEN>),
        ) {
            (Some(nr), Some(p)) => auth::same(
                &p,
                &secret.receiver_proof(&self.hello_hash, &self.nonce, &nr),
            )
            .then_some(nr),
            _ => None,
        };
        let Some(nr) = proven else {
            return Err(SetupError::WrongKey(
                "the two ends have different --key-file keys, or something on the path answered in the \
                 receiver's place"
                    .into(),
            ));
        };
        let proof = secret.sender_proof(&self.hello_hash, &self.nonce, &nr);
        self.write(&Ctl::Proof {
            proof: auth::to_hex(&proof),
        });
        let keys = secret.session_keys(self.cfg.session, &self.nonce, &nr);
        self.encoder
            .authenticate(keys.clone(), Dir::SenderToReceiver);
        self.decoder
            .authenticate(keys.clone(), Dir::ReceiverToSender);
        self.keys = Some(keys);
        Ok(())
    }

    fn fail(&mut self, e: SetupError) {
        self.state = State::Over;
        self.actions.push_back(Action::Failed(e));
    }

    fn stop_sending(&mut self, note: String) {
        self.note.get_or_insert(note);
        if !self.stop_asked {
            self.stop_asked = true;
            self.actions.push_back(Action::StopSending);
        }
    }

    /// Bytes from the receiver.
    pub fn on_bytes(&mut self, bytes: &[u8], now: Now) {
        if let Err(e) = self.decoder.push(bytes) {
            return self.on_garbage(e.to_string(), now);
        }
        while !self.is_over() {
            match self.decoder.next_message() {
                Ok(Some(m)) => self.on_message(m, now),
                Ok(None) => return,
                Err(e) => return self.on_garbage(e.to_string(), now),
            }
        }
    }

    fn on_garbage(&mut self, why: String, now: Now) {
        match self.state {
            State::AwaitAccept => self.fail(SetupError::NotAReceiver(why)),
            State::Sending => self.stop_sending(format!("the receiver sent garbage ({why})")),
            State::AwaitResults { .. } => {
                self.note
                    .get_or_insert(format!("the receiver sent garbage ({why})"));
                self.finish(now);
            }
            State::Over => {}
            _ => self.fail(SetupError::Failed(why)),
        }
    }

    fn on_message(&mut self, m: Ctl, now: Now) {
        match (&self.state, m) {
            (_, Ctl::Reject { reason })
                if !matches!(self.state, State::Sending | State::AwaitResults { .. }) =>
            {
                self.fail(SetupError::Refused(clip(&reason)))
            }
            (State::AwaitAccept, Ctl::Accept(a)) => {
                if a.version != proto::VERSION {
                    return self.fail(SetupError::NotAReceiver(proto::version_mismatch(
                        a.version, "receiver",
                    )));
                }
                self.same_host = !self.cfg.boot_id.is_empty() && a.boot_id == self.cfg.boot_id;
                self.fit = ClockFit::new(self.same_host);
                if let Err(e) = self.authenticate(&a) {
                    return self.fail(e);
                }
                self.time_req(now);
            }
            (State::AwaitAccept, other) => self.fail(SetupError::NotAReceiver(format!(
                "it answered the hello with {}",
                other.kind()
            ))),
            (State::Clock { t1 }, Ctl::TimeResp { t1: echo, t2, t3 }) if echo == *t1 => self
                .on_clock_reply(
                    Sample {
                        t1: echo,
                        t2,
                        t3,
                        t4: now.wall_ns,
                    },
                    now,
                ),
            (State::AwaitReady { attempt }, Ctl::Ready) => {
                self.data_connects = if self.cfg.protocol == Protocol::Tcp {
                    *attempt
                } else {
                    0
                };
                self.state = State::Sending;
                // The set-up's exchanges were just made: the first one of the measured phase is a tick later.
                self.clock_due = now.mono + CLOCK_INTERVAL / 4;
                self.actions.push_back(Action::BeginSending);
            }
            (State::Sending | State::AwaitResults { .. }, Ctl::Results(r)) => self.on_results(&r),
            (State::Sending | State::AwaitResults { .. }, Ctl::Messages { base_ns, rows }) => {
                self.on_rows(base_ns, &rows)
            }
            (State::Sending, Ctl::End) => self.ended = true,
            (State::AwaitResults { .. }, Ctl::End) => self.finish(now),
            (State::Sending | State::AwaitResults { .. }, Ctl::Abort { reason }) => {
                self.stop_sending(format!("the receiver aborted: {}", clip(&reason)));
            }
            (State::Sending | State::AwaitResults { .. }, Ctl::TimeResp { t1, t2, t3 }) => {
                if self.clock_pending == Some(t1) {
                    self.clock_pending = None;
                    self.refit(
                        Sample {
                            t1,
                            t2,
                            t3,
                            t4: now.wall_ns,
                        },
                        now,
                    );
                }
            }
            (State::Over, _) => {}
            (_, Ctl::Abort { reason }) => self.fail(SetupError::Failed(format!(
                "the receiver aborted: {}",
                clip(&reason)
            ))),
            (_, other) => {
                let why = format!("unexpected {} from the receiver", other.kind());
                match self.state {
                    State::Sending => self.stop_sending(why),
                    State::AwaitResults { .. } => {
                        self.note.get_or_insert(why);
                    }
                    _ => self.fail(SetupError::Failed(why)),
                }
            }
        }
    }

    /// One clock exchange done: the next, or the estimate and on to the data socket.
    fn on_clock_reply(&mut self, sample: Sample, now: Now) {
        self.fit.add(sample);
        self.clock_replies += 1;
        if self.clock_replies < CLOCK_EXCHANGES {
            return self.time_req(now);
        }
        if self.fit.exchanges() == 0 {
            return self.fail(SetupError::Failed(format!(
                "none of the receiver's {CLOCK_EXCHANGES} clock replies was possible (each came back before it \
                 was asked): its clock or its software is broken; no one-way figure could be trusted"
            )));
        }
        self.clock = self.fit.estimate();
        self.linger = self
            .cfg
            .traffic
            .linger
            .unwrap_or_else(|| default_linger(&self.clock))
            .min(translate::MAX_LINGER);
        self.state = State::OpeningData;
        self.actions.push_back(Action::OpenData);
    }

    fn on_results(&mut self, r: &proto::Results) {
        match translate::measured(r) {
            Ok(m) => {
                let note = m.note.clone();
                self.results = Some(m);
                // Results before Done: the receiver cut the session (its --max-duration, Ctrl-C).
                if matches!(self.state, State::Sending) {
                    self.stop_sending(
                        note.unwrap_or_else(|| "the receiver ended the session".into()),
                    );
                }
            }
            Err(why) => {
                self.note
                    .get_or_insert(format!("the receiver's results are not valid ({why})"));
            }
        }
    }

    /// Per-message rows, passed on up to the most a session of this size can have. They stream in during the
    /// run (bounded by the announced count until the sender knows how many it sent), except in an echo
    /// session, whose rows are joined with the replies' round trips and so come only after the results.
    fn on_rows(&mut self, base_ns: i64, rows: &[proto::MessageRow]) {
        if self.results.is_none() && self.cfg.traffic.echo {
            self.suspect.get_or_insert(
                "it sent per-message rows of an echo session before its results".into(),
            );
            return;
        }
        let sent = self
            .send
            .as_ref()
            .map_or(self.cfg.traffic.count, |s| s.sent);
        let bound = translate::max_rows(sent);
        let keep = (rows.len() as u64).min(bound.saturating_sub(self.rows)) as usize;
        if keep < rows.len() {
            self.suspect.get_or_insert(format!(
                "it sent more per-message rows than {bound}, the most a session of this size can have"
            ));
        }
        self.rows += keep as u64;
        self.actions.push_back(Action::Rows(
            rows[..keep]
                .iter()
                .map(|r| translate::row(r, base_ns))
                .collect(),
        ));
    }

    fn time_req(&mut self, now: Now) {
        self.state = State::Clock { t1: now.wall_ns };
        self.write(&Ctl::TimeReq { t1: now.wall_ns });
    }

    /// The data socket is open: UDP gives its source port (the receiver accepts data only from it).
    pub fn on_data_opened(&mut self, udp_source_port: Option<u16>) {
        if !matches!(self.state, State::OpeningData) {
            return;
        }
        self.write(&Ctl::Start(proto::Start {
            clock: translate::clock_estimate(&self.clock, &self.fit.model()),
            udp_source_port,
            linger_ns: u64::try_from(self.linger.as_nanos()).unwrap_or(u64::MAX),
        }));
        self.state = State::AwaitReady { attempt: 1 };
        if self.cfg.protocol == Protocol::Tcp {
            self.actions.push_back(Action::ConnectData { attempt: 1 });
        }
    }

    /// TCP: the receiver closed the data connection before Ready. With SO_REUSEPORT the kernel hashes each
    /// connection on its own, so it may have reached another receiver of the port: a new connection has a new
    /// source port and a new hash.
    pub fn on_data_refused(&mut self) {
        let State::AwaitReady { attempt } = self.state else {
            return;
        };
        if attempt >= DATA_CONNECT_TRIES {
            return self.fail(SetupError::Failed(format!(
                "{DATA_CONNECT_TRIES} data connections in a row reached a receiver without the session: are \
                 receivers with --reuse-port on this port of different sockbench versions?"
            )));
        }
        self.state = State::AwaitReady {
            attempt: attempt + 1,
        };
        self.actions.push_back(Action::ConnectData {
            attempt: attempt + 1,
        });
    }

    /// The control connection ended (EOF or error).
    pub fn on_closed(&mut self, why: &str, now: Now) {
        match self.state {
            State::AwaitAccept => self.fail(SetupError::NotAReceiver(format!(
                "it closed the connection ({why})"
            ))),
            State::Sending => self.stop_sending(format!("the receiver vanished ({why})")),
            State::AwaitResults { .. } => {
                if self.results.is_none() {
                    self.note
                        .get_or_insert(format!("the receiver vanished ({why})"));
                }
                self.finish(now);
            }
            State::Over => {}
            _ => self.fail(SetupError::Failed(format!(
                "the receiver closed the control connection during set-up ({why})"
            ))),
        }
    }

    /// Ctrl-C: stop sending; the results of what was sent still come in.
    pub fn on_cancel(&mut self) {
        match self.state {
            State::Sending => {
                if !self.stop_asked {
                    self.stop_asked = true;
                    self.actions.push_back(Action::StopSending);
                }
            }
            State::AwaitResults { .. } | State::Over => {}
            _ => self.fail(SetupError::Failed(
                "interrupted before the session started".into(),
            )),
        }
    }

    /// The send loop ended: tell the receiver what was sent, then wait for its results.
    pub fn on_send_finished(&mut self, stats: SendStats, now: Now) {
        if !matches!(self.state, State::Sending) {
            return;
        }
        self.write(&Ctl::Done(proto::Done {
            sent: stats.sent,
            send_errors: stats.send_errors,
            complete: stats.cut_short.is_none(),
        }));
        if let Some(why) = &stats.cut_short {
            self.note.get_or_insert(why.clone());
        }
        self.send = Some(stats);
        self.state = State::AwaitResults {
            until: now.mono + self.linger + self.cfg.results_grace,
        };
        if self.ended {
            self.finish(now);
        }
    }

    fn finish(&mut self, _now: Now) {
        if matches!(self.state, State::Over) {
            return;
        }
        self.state = State::Over;
        let send = self.send.take().unwrap_or_default();
        let mut results = self.results.take();
        if let Some(r) = &results {
            if !r.complete {
                if let Some(n) = &r.note {
                    self.note.get_or_insert(n.clone());
                }
            }
            if let Err(why) = translate::check_results(r, send.sent, self.cfg.traffic.size) {
                self.suspect.get_or_insert(why);
            }
            let bound = translate::max_rows(send.sent);
            if self.rows > bound {
                self.suspect.get_or_insert(format!(
                    "it sent {} per-message rows, more than {bound}, the most a session of {} messages can have",
                    self.rows, send.sent
                ));
            }
        }
        if self.suspect.is_some() {
            // Nothing the receiver said is believed: its lost runs would be written as rows.
            if let Some(r) = &mut results {
                r.lost_runs.clear();
            }
        }
        self.actions.push_back(Action::Finished(Box::new(Outcome {
            clock: self.clock,
            linger: self.linger,
            send,
            results,
            note: self.note.take(),
            data_connects: self.data_connects,
            suspect: self.suspect.take(),
        })));
    }

    /// A clock exchange of the measured phase came back: refit the line and hand it to the receiver, which
    /// corrects each arrival with it.
    fn refit(&mut self, s: Sample, _now: Now) {
        self.fit.add(s);
        self.clock = self.fit.estimate();
        if matches!(self.state, State::Sending) {
            let estimate = translate::clock_estimate(&self.clock, &self.fit.model());
            self.write(&Ctl::Clock(estimate));
        }
    }

    /// In the measured phase, a clock exchange every `CLOCK_INTERVAL` (one at a time; an unanswered one is
    /// given up at the next).
    fn clock_tick(&mut self, now: Now) {
        // Only while sending: after Done the receiver may close at any moment, and bytes it never reads would
        // make its close a reset that can destroy the results still in flight to us.
        if !matches!(self.state, State::Sending) || now.mono < self.clock_due {
            return;
        }
        // Four a second until the line spans a few seconds (the skew is unknown at first and an extrapolated
        // offset drifts fastest then), one a second after.
        let interval = if self.fit.span_ns() < 4_000_000_000 {
            CLOCK_INTERVAL / 4
        } else {
            CLOCK_INTERVAL
        };
        self.clock_due = now.mono + interval;
        self.clock_pending = Some(now.wall_ns);
        self.write(&Ctl::TimeReq { t1: now.wall_ns });
    }

    pub fn on_timeout(&mut self, now: Now) {
        self.clock_tick(now);
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        let deadline = match self.state {
            // The clock exchanges are not what ends these states.
            State::Sending => return,
            State::AwaitResults { until } => until,
            _ => deadline,
        };
        if now.mono < deadline {
            return;
        }
        match self.state {
            State::AwaitAccept => self.fail(SetupError::NotAReceiver(format!(
                "no answer to the hello within {}",
                humantime::format_duration(self.cfg.accept_timeout)
            ))),
            State::Clock { .. } | State::OpeningData => self.fail(SetupError::Failed(format!(
                "the receiver stopped answering during set-up (no reply within {})",
                humantime::format_duration(self.cfg.setup_timeout)
            ))),
            State::AwaitReady { .. } => self.fail(SetupError::Failed(format!(
                "the receiver did not take the data connection within {}",
                humantime::format_duration(self.cfg.setup_timeout)
            ))),
            State::AwaitResults { .. } => {
                if self.results.is_none() {
                    self.note
                        .get_or_insert("the receiver did not send its results in time".into());
                }
                self.finish(now);
            }
            State::Sending | State::Over => {}
        }
    }
}

/// Default linger: long enough for stragglers on the measured path (4 control round trips), never below
/// 500 ms. A UDP session that has everything ends at once anyway.
pub fn default_linger(clock: &OffsetEstimate) -> Duration {
    Duration::from_nanos((clock.max_rtt_ns.max(0) as u64).saturating_mul(4))
        .max(Duration::from_millis(500))
}

/// A peer's string, bounded before it reaches a terminal.
fn clip(s: &str) -> String {
    s.chars()
        .take(500)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
