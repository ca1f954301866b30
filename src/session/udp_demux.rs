//! The UDP receiver's demultiplexer, sans-IO: one socket serves every UDP session, and each datagram is
//! given to the session whose id it carries, if it comes from the peer that completed that session's
//! handshake. The driver owns the socket (recvmmsg, echo sends) and feeds datagrams in; this decides whose
//! they are, accounts them, says which to echo, and hands each account back when its session closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::accounting::{Account, Status};
use crate::trace::Timer;
use crate::wire::{self, Header};

/// One received datagram, as the driver's batch hands it over.
pub struct Datagram<'a> {
    pub data: &'a mut [u8],
    pub from: Option<SocketAddr>,
    /// Kernel receive time, wall clock ns.
    pub kernel_ns: Option<i64>,
    /// The socket's cumulative drop counter when this datagram was queued (SO_RXQ_OVFL).
    pub drops: Option<u32>,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
}

/// Send `data` (already turned into its reply) back to `to`, then report with [`UdpDemux::echoed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub session: u64,
    pub to: SocketAddr,
}

struct Entry {
    acct: Box<Account>,
    peer: IpAddr,
    source_port: Option<u16>,
    echo: bool,
    /// --trace: the recvmmsg calls that brought this session's datagrams, and the echo sendto calls.
    recv_timer: Timer,
    echo_timer: Timer,
    last_batch: u64,
    /// Set once the sender is done or gone: close at `deadline`, or when `sent` have all arrived.
    closing: Option<(Instant, Option<u64>)>,
}

impl Entry {
    fn is_peer(&self, from: Option<SocketAddr>) -> bool {
        match from {
            Some(a) => {
                a.ip().to_canonical() == self.peer.to_canonical()
                    && self.source_port.is_none_or(|p| p == a.port())
            }
            None => false,
        }
    }
}

#[derive(Default)]
pub struct UdpDemux {
    sessions: HashMap<u64, Entry>,
    /// SO_RXQ_OVFL is cumulative per socket and only reported once non-zero.
    last_drops: u32,
    batch_no: u64,
    batch_took: Duration,
    stray: u64,
}

impl UdpDemux {
    pub fn new() -> UdpDemux {
        UdpDemux::default()
    }

    /// Start accounting a session whose handshake came from `peer`; only datagrams from `peer` (and from
    /// `source_port`, once known) count for it.
    pub fn add(
        &mut self,
        mut acct: Box<Account>,
        peer: IpAddr,
        source_port: Option<u16>,
        echo: bool,
    ) {
        acct.rcvbuf_drops = Some(0);
        let traced = acct.trace.enabled();
        self.sessions.insert(
            acct.session,
            Entry {
                acct,
                peer,
                source_port,
                echo,
                recv_timer: Timer::new(traced),
                echo_timer: Timer::new(traced),
                last_batch: 0,
                closing: None,
            },
        );
    }

    /// The sender is done (`sent`) or gone (None): close at `deadline`, or as soon as everything arrived.
    pub fn finish(&mut self, session: u64, sent: Option<u64>, deadline: Instant) {
        if let Some(e) = self.sessions.get_mut(&session) {
            e.closing = Some((deadline, sent));
        }
    }

    /// Forget a session at once (its control connection closed before the data phase ended).
    pub fn remove(&mut self, session: u64) -> Option<Box<Account>> {
        self.sessions.remove(&session).map(|e| e.acct)
    }

    /// Close every session now (Ctrl-C, the receiver shutting down); each still hands back its account.
    pub fn close_all(&mut self, now: Instant) {
        for e in self.sessions.values_mut() {
            let sent = e.closing.and_then(|(_, s)| s);
            e.closing = Some((now, sent));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Datagrams accounted to `session` so far (any kind, valid or not): its sign of life.
    pub fn seen(&self, session: u64) -> u64 {
        self.sessions
            .get(&session)
            .map_or(0, |e| e.acct.recv_calls + e.acct.invalid + e.acct.corrupt)
    }

    /// Datagrams that belonged to no session and came from no session's peer.
    pub fn stray(&self) -> u64 {
        self.stray
    }

    /// A receive call returned a batch; `took` is how long the call took (for --trace).
    pub fn begin_batch(&mut self, took: Duration) {
        self.batch_no += 1;
        self.batch_took = took;
    }

    /// Account one datagram received at `now_ns` (used when the kernel gave no timestamp). Returns where to
    /// send the echo reply, which is then in `d.data`.
    pub fn on_datagram(&mut self, d: Datagram<'_>, now_ns: i64) -> Option<Echo> {
        let drops = d.drops.map(|c| {
            let delta = c.wrapping_sub(self.last_drops);
            self.last_drops = c;
            delta
        });
        let recv_ns = d.kernel_ns.unwrap_or(now_ns);
        let hdr = (!d.truncated).then(|| Header::parse(d.data).ok()).flatten();
        let owner = hdr.and_then(|h| {
            self.sessions
                .get_mut(&h.session)
                .filter(|e| e.is_peer(d.from))
                .map(|e| (e, h))
        });
        let Some((e, hdr)) = owner else {
            // Not a message of a known session: charge the session whose peer sent it, if any.
            match self
                .sessions
                .values_mut()
                .find(|e| e.source_port.is_some() && e.is_peer(d.from))
            {
                Some(e) => e.acct.on_unrecognised(d.data),
                None => self.stray += 1,
            }
            return None;
        };
        if let Some(delta) = drops.filter(|&x| x > 0) {
            // With several sessions at once the kernel's counter cannot be split exactly: the drops are
            // charged to the session of the next datagram that made it.
            *e.acct.rcvbuf_drops.get_or_insert(0) += u64::from(delta);
        }
        // A datagram socket hands over one message per receive: each datagram is one receive here.
        e.acct.recv_calls += 1;
        e.acct.reads_one_message += 1;
        if e.last_batch != self.batch_no {
            e.last_batch = self.batch_no;
            e.recv_timer.add(self.batch_took);
        }
        let status = e.acct.on_message(d.data, &hdr, recv_ns);
        let echo = e.echo
            && matches!(
                status,
                Some(Status::Ok | Status::Reordered | Status::Duplicate)
            );
        // Only to the handshaked peer's own address, and never more bytes than came in.
        match (echo, d.from) {
            (true, Some(to)) => {
                wire::make_echo_reply(d.data, recv_ns, now_ns);
                e.acct.seal_reply(d.data);
                Some(Echo {
                    session: hdr.session,
                    to,
                })
            }
            _ => None,
        }
    }

    /// The driver sent (or failed to send) an echo reply, taking `took`.
    pub fn echoed(&mut self, session: u64, ok: bool, took: Option<Duration>) {
        if let Some(e) = self.sessions.get_mut(&session) {
            if ok {
                e.acct.echoed += 1;
            }
            if let Some(t) = took {
                e.echo_timer.add(t);
            }
        }
    }

    /// Whether echo sends should be timed (some session is traced).
    pub fn tracing(&self, session: u64) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|e| e.acct.trace.enabled())
    }

    /// When the next closing session must be handed back.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|e| e.closing.map(|(d, _)| d))
            .min()
    }

    /// Sessions that are over at `now` (deadline passed, or everything sent has arrived), with their
    /// accounts; `fd` names the socket in the trace.
    pub fn take_finished(&mut self, now: Instant, fd: i32) -> Vec<Box<Account>> {
        let ready: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, e)| match e.closing {
                Some((deadline, sent)) => {
                    now >= deadline || sent.is_some_and(|n| e.acct.received() >= n)
                }
                None => false,
            })
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for id in ready {
            let Some(e) = self.sessions.remove(&id) else {
                continue;
            };
            if let Some(st) = e.recv_timer.stats() {
                let detail = format!(
                    "{} datagrams of this session, each one message, in batches",
                    e.acct.recv_calls
                );
                e.acct.trace.aggregate("recvmmsg", fd, detail, st);
            }
            if let Some(st) = e.echo_timer.stats() {
                e.acct.trace.aggregate(
                    "sendto",
                    fd,
                    "echo replies to the session's peer".into(),
                    st,
                );
            }
            out.push(e.acct);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Now;

    fn msg(session: u64, seq: u64, size: usize) -> Vec<u8> {
        let mut m = wire::template(session, size, false);
        wire::stamp(&mut m, seq, 1_000, 1_000);
        m
    }

    fn dgram<'a>(data: &'a mut [u8], from: &str, drops: Option<u32>) -> Datagram<'a> {
        Datagram {
            data,
            from: Some(from.parse().unwrap()),
            kernel_ns: Some(5_000),
            drops,
            truncated: false,
        }
    }

    fn demux_with(session: u64, echo: bool, port: Option<u16>) -> UdpDemux {
        let mut d = UdpDemux::new();
        d.add(
            Box::new(Account::new(session, 10, 64, false)),
            "127.0.0.1".parse().unwrap(),
            port,
            echo,
        );
        d
    }

    #[test]
    fn datagrams_go_to_their_session_from_its_peer_only() {
        let mut d = demux_with(1, false, Some(4000));
        d.add(
            Box::new(Account::new(2, 10, 64, false)),
            "127.0.0.2".parse().unwrap(),
            None,
            false,
        );
        d.begin_batch(Duration::ZERO);
        assert_eq!(
            d.on_datagram(dgram(&mut msg(1, 0, 64), "127.0.0.1:4000", None), 9),
            None
        );
        // Right session, wrong source port: not the session's peer, so not its datagram: stray.
        d.on_datagram(dgram(&mut msg(1, 1, 64), "127.0.0.1:4001", None), 9);
        d.on_datagram(dgram(&mut msg(2, 0, 64), "127.0.0.2:999", None), 9);
        // Session 2's datagram from session 1's peer address is not session 2's: invalid, charged to session 1.
        d.on_datagram(dgram(&mut msg(2, 1, 64), "127.0.0.1:4000", None), 9);
        d.on_datagram(dgram(&mut b"garbage".to_vec(), "198.18.0.9:1", None), 9);
        let t = Now::fixed().mono;
        d.finish(1, Some(1), t + Duration::from_secs(1));
        d.finish(2, Some(2), t + Duration::from_secs(1));
        let done = d.take_finished(t, 3);
        assert_eq!(done.len(), 1, "session 1 has everything: it closes at once");
        assert_eq!(
            (done[0].session, done[0].received(), done[0].invalid),
            (1, 1, 1)
        );
        assert_eq!(d.next_deadline(), Some(t + Duration::from_secs(1)));
        let done = d.take_finished(t + Duration::from_secs(1), 3);
        assert_eq!((done[0].session, done[0].received()), (2, 1));
        assert_eq!(d.stray(), 2);
        assert!(d.is_empty());
    }

    #[test]
    fn echoes_go_back_to_the_sender_rewritten() {
        let mut d = demux_with(1, true, None);
        let mut m = msg(1, 0, 64);
        let e = d.on_datagram(dgram(&mut m, "127.0.0.1:4000", None), 9_000);
        assert_eq!(
            e,
            Some(Echo {
                session: 1,
                to: "127.0.0.1:4000".parse().unwrap()
            })
        );
        assert_eq!(wire::echo_times(&m), Some((5_000, 9_000)));
        d.echoed(1, true, None);
        let mut corrupt = msg(1, 1, 64);
        corrupt[60] ^= 1;
        assert_eq!(
            d.on_datagram(dgram(&mut corrupt, "127.0.0.1:4000", None), 9),
            None
        );
        d.close_all(Now::fixed().mono);
        let a = d.take_finished(Now::fixed().mono, 3).pop().unwrap();
        assert_eq!((a.echoed, a.corrupt), (1, 1));
    }

    #[test]
    fn socket_drops_are_charged_by_delta() {
        let mut d = demux_with(1, false, None);
        d.on_datagram(dgram(&mut msg(1, 0, 64), "127.0.0.1:4000", Some(3)), 9);
        d.on_datagram(dgram(&mut msg(1, 1, 64), "127.0.0.1:4000", Some(3)), 9);
        d.on_datagram(dgram(&mut msg(1, 2, 64), "127.0.0.1:4000", Some(10)), 9);
        d.close_all(Now::fixed().mono);
        let a = d.take_finished(Now::fixed().mono, 3).pop().unwrap();
        assert_eq!(a.rcvbuf_drops, Some(10));
    }
}
