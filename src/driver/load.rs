//! The bulk TCP flows of `--load` (issue 14), both ends. The sender's [`Generator`] opens the flows to the
//! receiver's port during the idle phase (each a load connection: preamble, then the receiver's one-byte
//! answer), and they carry bytes once the send loop leaves the idle phase: the sender writes on the up flows,
//! the receiver on the down ones (`--load-direction`), the other end reading as fast as it can. The receiver
//! takes a session's flows through [`LoadSlots`] and runs them in a [`SessionLoad`], at most as many each way as
//! the hello announced (itself within the receiver's `--max-load-flows`), with the MAC of an authenticated
//! session. Every flow ends with its session: when the sender stops them (its sending is over), at a deadline,
//! at Ctrl-C (their cancellations are children of the session's), or when the receiver's session ends.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::auth::{self, SessionKeys, MAC_LEN};
use crate::cancel::Cancel;
use crate::clock;
use crate::load::{LoadDirection, LoadStats};
use crate::proto;
use crate::sys::tcp_info::{tcp_info, TcpInfo};
use crate::traffic::Traffic;

/// Bytes per write or read: large, so a flow is limited by TCP and the path, never by system calls.
const CHUNK: usize = 128 << 10;
/// How long a blocked write or read waits before the flow looks at its stop flag again.
const POLL: Duration = Duration::from_millis(50);
/// How often a flow waiting for the loaded phase looks at the send loop's count.
const GATE_POLL: Duration = Duration::from_millis(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Filler between the probes of the probed flow: small writes, so a due probe waits for little of its own
/// writing (what it then waits behind is the connection's unsent bytes).
const PROBED_FILL: u32 = 16 << 10;
/// How long the sender waits for the receiver to take a load connection.
const TAKEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The flows stop this long after the session's own bound at the latest (the send loop normally stops them
/// much sooner: when it ends).
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
/// An unpaced session bounded by its count alone has no time bound of its own: its flows get this one.
const UNPACED_BOUND: Duration = Duration::from_secs(3600);

/// Where, which way and when the load of one session runs.
#[derive(Clone)]
pub struct LoadPlan {
    /// The receiver's port (the control connection's address).
    pub target: SocketAddr,
    pub session: u64,
    /// An authenticated session's keys: each load preamble carries its MAC.
    pub keys: Option<SessionKeys>,
    /// Flows on which this end sends, and flows on which the receiver does.
    pub up: u32,
    pub down: u32,
    /// The flows carry bytes once the send loop has handed out this many sequence numbers (the idle phase).
    pub idle_probes: u64,
    /// The flows stop at this time at the latest, whatever else happens.
    pub deadline: Instant,
    /// The congestion control the sending ends ask for (TCP_CONGESTION; the sender's own flows only).
    pub cc: String,
    /// --probe-on-load: the first up flow carries probes among its bulk bytes, this far apart.
    pub probe_every: Option<Duration>,
    /// --notsent-lowat: TCP_NOTSENT_LOWAT on the sender's up flows, bytes.
    pub notsent_lowat: Option<u32>,
}

/// The load of session `session` with traffic `t`, whose send loop starts at `now`; None without flows.
pub fn plan(
    t: &Traffic,
    target: SocketAddr,
    session: u64,
    keys: Option<SessionKeys>,
    now: Instant,
) -> Option<LoadPlan> {
    if t.load_flows == 0 {
        return None;
    }
    let by_count = (t.rate > 0.0)
        .then(|| Duration::try_from_secs_f64(t.count as f64 / t.rate).ok())
        .flatten()
        .unwrap_or(UNPACED_BOUND);
    let bound = t.duration.map_or(by_count, |d| d.min(by_count));
    let (up, down) = ways(t);
    Some(LoadPlan {
        target,
        session,
        keys,
        up,
        down,
        idle_probes: t.idle_probes,
        deadline: now + bound.min(UNPACED_BOUND) + DEADLINE_MARGIN,
        cc: t.load_cc.clone(),
        probe_every: (t.probe_on_load && up > 0).then(|| probe_gap(t.rate)),
        notsent_lowat: t.notsent_lowat,
    })
}

/// The gap between probes on the load connection: the session's own, at most 1000 a second; 100 a second
/// when the session is unpaced.
fn probe_gap(rate: f64) -> Duration {
    let per_s = if rate > 0.0 { rate.min(1000.0) } else { 100.0 };
    Duration::from_secs_f64(1.0 / per_s)
}

/// Flows sender → receiver and receiver → sender.
fn ways(t: &Traffic) -> (u32, u32) {
    match t.load_direction {
        LoadDirection::Up => (t.load_flows, 0),
        LoadDirection::Down => (0, t.load_flows),
        LoadDirection::Both => (t.load_flows, t.load_flows),
    }
}

/// How one flow went: when it carried bytes, the kernel's counts at its end, which way (None: it never
/// connected or was not taken).
struct FlowEnd {
    ran: Option<(Instant, Instant, Option<TcpInfo>)>,
    down: bool,
    /// The congestion control its sending end ran (the sender's own flows).
    cc: Option<String>,
    /// The probed flow: its probes' round trips, ns.
    probe_rtt: Option<Histogram<u64>>,
}

impl FlowEnd {
    fn none(down: bool) -> FlowEnd {
        FlowEnd {
            ran: None,
            down,
            cc: None,
            probe_rtt: None,
        }
    }
}

/// The sending side's end of the load: a thread that opens the flows one after another (so the receiver never
/// sees a crowd of connections that have not yet said what they are), then one thread per flow.
pub struct Generator {
    cancel: Cancel,
    opener: JoinHandle<Vec<FlowEnd>>,
}

impl Generator {
    /// Open the flows now; each carries bytes once `issued` (the send loop's sequence numbers handed out)
    /// reaches the idle phase's end. `cancel`: a child of the session's, so Ctrl-C stops them too.
    pub fn start(plan: LoadPlan, issued: Arc<AtomicU64>, cancel: Cancel) -> Generator {
        let c = cancel.clone();
        let opener = std::thread::spawn(move || open_flows(&plan, &issued, &c));
        Generator { cancel, opener }
    }

    /// Stop the flows (a reset discards what their send buffers still hold, so nothing keeps filling the
    /// path after the session) and add up what they did.
    pub fn stop(self) -> LoadStats {
        self.cancel.cancel();
        sum_flows(&self.opener.join().unwrap_or_default())
    }
}

fn open_flows(plan: &LoadPlan, issued: &Arc<AtomicU64>, cancel: &Cancel) -> Vec<FlowEnd> {
    let plan = Arc::new(plan.clone());
    let ways = (0..plan.up)
        .map(|_| false)
        .chain((0..plan.down).map(|_| true));
    let mut flows = vec![];
    let mut ends = vec![];
    for (i, down) in ways.enumerate() {
        // The first flow carries the probes, if any (it is an up flow when there are probes).
        let probe_every = plan.probe_every.filter(|_| i == 0 && !down);
        let stop = || cancel.is_cancelled() || clock::mono() >= plan.deadline;
        if stop() {
            break;
        }
        match connect(&plan, down) {
            Some(s) => {
                let (plan, issued, cancel) = (plan.clone(), issued.clone(), cancel.clone());
                flows.push(std::thread::spawn(move || {
                    flow(s, (down, probe_every), &plan, &issued, &cancel)
                }));
            }
            None => ends.push(FlowEnd::none(down)),
        }
    }
    ends.extend(flows.into_iter().filter_map(|h| h.join().ok()));
    ends
}

/// A load connection: connected, reset at close, its congestion control asked for, its preamble sent.
fn connect(plan: &LoadPlan, down: bool) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&plan.target, CONNECT_TIMEOUT).ok()?;
    let sock = socket2::SockRef::from(&s);
    // A reset at close: unsent bytes are discarded instead of draining into the next session's path.
    let _ = sock.set_linger(Some(Duration::ZERO));
    // Refused (not built, or not allowed to this user): the kernel's default runs, and is reported.
    let _ = sock.set_tcp_congestion(plan.cc.as_bytes());
    if let (Some(n), false) = (plan.notsent_lowat, down) {
        set_notsent_lowat(&s, n);
    }
    let mac = plan
        .keys
        .as_ref()
        .map(|k| k.load_preamble_mac(plan.session, down));
    s.write_all(&proto::load_preamble(plan.session, down, mac))
        .ok()?;
    let _ = s.set_read_timeout(Some(POLL));
    let _ = s.set_write_timeout(Some(POLL));
    Some(s)
}

/// One flow: the receiver's answer, the idle phase, then bytes until stopped or the deadline.
fn flow(
    mut s: TcpStream,
    (down, probe_every): (bool, Option<Duration>),
    plan: &LoadPlan,
    issued: &AtomicU64,
    cancel: &Cancel,
) -> FlowEnd {
    let stop = || cancel.is_cancelled() || clock::mono() >= plan.deadline;
    let asked = clock::mono();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == proto::LOAD_TAKEN => break,
            Err(e) if would_block(&e) && !stop() && clock::since(asked) < TAKEN_TIMEOUT => {}
            // Closed, another answer, or no answer in time: the receiver did not take it.
            _ => return FlowEnd::none(down),
        }
    }
    while issued.load(Ordering::Relaxed) < plan.idle_probes {
        if stop() {
            return FlowEnd::none(down);
        }
        std::thread::sleep(GATE_POLL);
    }
    let start = clock::mono();
    let probe_rtt = match (down, probe_every) {
        (true, _) => {
            drain(&mut s, &stop, None);
            None
        }
        (false, None) => {
            let fill = crate::load::fill_record((CHUNK - crate::load::REC_HEADER) as u32);
            while write_all_until(&mut s, &fill, &stop) {}
            None
        }
        (false, Some(every)) => Some(send_probed(&mut s, every, &stop)),
    };
    let cc = (!down)
        .then(|| socket2::SockRef::from(&s).tcp_congestion().ok())
        .flatten()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .to_string()
        });
    FlowEnd {
        ran: Some((start, clock::mono(), tcp_info(&s))),
        down,
        cc,
        probe_rtt,
    }
}

/// TCP_NOTSENT_LOWAT: the kernel takes no more of this connection's bytes while this many are still unsent,
/// so what is written next waits behind at most that much of its own connection (Linux 3.12+).
fn set_notsent_lowat(s: &TcpStream, bytes: u32) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: a valid socket descriptor we own, and a c_int option value that outlives the call.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The probed flow: filler records of [`PROBED_FILL`] bytes, a probe record whenever one is due (at its
/// scheduled time or, when a write blocked past it, right after that write), and a thread reading the probes
/// the receiver sends back. Returns their round trips from the scheduled time, ns.
fn send_probed(s: &mut TcpStream, every: Duration, stop: &dyn Fn() -> bool) -> Histogram<u64> {
    let t0 = clock::mono();
    let done = Cancel::new();
    let reader = s.try_clone().ok().map(|mut r| {
        let done = done.clone();
        std::thread::spawn(move || read_echoes(&mut r, t0, &|| done.is_cancelled()))
    });
    let fill = crate::load::fill_record(PROBED_FILL);
    let (mut seq, mut next) = (0u64, Duration::ZERO);
    while !stop() {
        let rec = if clock::since(t0) >= next {
            let r = crate::load::probe_record(seq, u64::try_from(next.as_nanos()).unwrap_or(0));
            seq += 1;
            next += every;
            r.to_vec()
        } else {
            fill.clone()
        };
        if !write_all_until(s, &rec, stop) {
            break;
        }
    }
    // The replies of the last probes have a moment to come back over the unloaded return path.
    std::thread::sleep(POLL);
    done.cancel();
    reader
        .and_then(|h| h.join().ok())
        .unwrap_or_else(crate::stats::new_ns_histogram)
}

/// The probes the receiver sent back: 16 bytes each, their round trip from the scheduled time (on `t0`'s
/// clock) recorded.
fn read_echoes(r: &mut TcpStream, t0: Instant, stop: &dyn Fn() -> bool) -> Histogram<u64> {
    let mut h = crate::stats::new_ns_histogram();
    let mut buf = [0u8; crate::load::PROBE_LEN];
    let mut have = 0;
    while !stop() {
        match r.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => {
                have += n;
                if have == buf.len() {
                    have = 0;
                    let (_, sched) = crate::load::probe_fields(&buf);
                    let now = u64::try_from(clock::since(t0).as_nanos()).unwrap_or(u64::MAX);
                    h.saturating_record(now.saturating_sub(sched).max(1));
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
    h
}

/// Write all of `buf` unless `stop` or an error comes first (a write blocked on a full buffer retries).
fn write_all_until(s: &mut TcpStream, mut buf: &[u8], stop: &dyn Fn() -> bool) -> bool {
    while !buf.is_empty() {
        if stop() {
            return false;
        }
        match s.write(buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e) if would_block(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Read and discard until `stop`, the end or an error; `count` adds up the bytes.
fn drain(s: &mut TcpStream, stop: &dyn Fn() -> bool, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; CHUNK];
    while !stop() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(c) = count {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
}

/// The receiver's end of an up flow: its records read as fast as they come, each probe sent straight back.
/// Ends at `stop`, the end, an error, or a stream that is not a sockbench sender's.
fn sink_records(s: &mut TcpStream, stop: &dyn Fn() -> bool, count: &AtomicU64) {
    let mut buf = vec![0u8; CHUNK];
    let mut records = crate::load::RecordReader::default();
    let mut probes = Vec::new();
    let Ok(mut back) = s.try_clone() else {
        return;
    };
    while !stop() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if records.push(&buf[..n], &mut probes).is_err() {
                    break;
                }
                for p in probes.drain(..) {
                    if !write_all_until(&mut back, &p, stop) {
                        return;
                    }
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn sum_flows(ends: &[FlowEnd]) -> LoadStats {
    let ran: Vec<_> = ends
        .iter()
        .filter_map(|e| e.ran.as_ref().map(|r| (r, e.down)))
        .collect();
    let first = ran.iter().map(|(r, _)| r.0).min();
    let last = ran.iter().map(|(r, _)| r.1).max();
    // Bytes delivered: what the receiver acknowledged on an up flow, what arrived here on a down one.
    let delivered = |(r, down): &(&(Instant, Instant, Option<TcpInfo>), bool)| {
        r.2.and_then(|i| {
            if *down {
                i.bytes_received
            } else {
                i.bytes_acked
            }
        })
    };
    LoadStats {
        flows: ran.len() as u32,
        bytes_acked: ran.iter().filter_map(delivered).sum(),
        // The sender's own retransmissions: its up flows' (a down flow's are the receiver's).
        retransmits: ran
            .iter()
            .filter(|(_, down)| !down)
            .filter_map(|(r, _)| r.2.map(|i| u64::from(i.total_retrans)))
            .sum(),
        active_ns: match (first, last) {
            (Some(a), Some(b)) => {
                u64::try_from(b.saturating_duration_since(a).as_nanos()).unwrap_or(0)
            }
            _ => 0,
        },
        cc: ends.iter().find_map(|e| e.cc.clone()),
        probe_rtt: ends.iter().find_map(|e| e.probe_rtt.clone()),
    }
}

/// A load connection handed from the thread that read its preamble to the session it names.
pub struct LoadConn {
    pub stream: TcpStream,
    pub down: bool,
    pub mac: Option<[u8; MAC_LEN]>,
}

/// The receiver's sessions that take load connections, by session id, each with the address its control
/// connection came from (a flow from elsewhere is not taken).
#[derive(Default)]
pub struct LoadSlots {
    slots: Mutex<HashMap<u64, (IpAddr, mpsc::Sender<LoadConn>)>>,
}

impl LoadSlots {
    /// Give a load connection to its session. False: no session of that id from that address takes load
    /// connections here (the connection is dropped, which closes it).
    pub fn hand_over(&self, session: u64, peer: IpAddr, c: LoadConn) -> bool {
        let tx = self.slots.lock().ok().and_then(|s| {
            s.get(&session)
                .filter(|(ip, _)| ip.to_canonical() == peer.to_canonical())
                .map(|(_, tx)| tx.clone())
        });
        tx.is_some_and(|tx| tx.send(c).is_ok())
    }
}

/// The receiver's side of one session's load.
pub struct SessionLoad {
    session: u64,
    rx: mpsc::Receiver<LoadConn>,
    /// Flows still to take each way: (sender sends, receiver sends).
    left: (u32, u32),
    cancel: Cancel,
    flows: Vec<JoinHandle<()>>,
    bytes: Arc<AtomicU64>,
}

impl SessionLoad {
    /// Take load connections for `session` from `peer`, as many each way as `t` announced; None without load.
    /// `cancel`: a child of the receiver's.
    pub fn open(
        slots: &LoadSlots,
        session: u64,
        peer: IpAddr,
        t: &Traffic,
        cancel: Cancel,
    ) -> Option<SessionLoad> {
        if t.load_flows == 0 {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        slots.slots.lock().ok()?.insert(session, (peer, tx));
        Some(SessionLoad {
            session,
            rx,
            left: ways(t),
            cancel,
            flows: vec![],
            bytes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Run the load connections that came: each checked (its MAC with `keys`, within the announced flows),
    /// answered and given its thread. Returns why one was refused, for the log.
    pub fn poll(&mut self, keys: Option<&SessionKeys>) -> Option<String> {
        let mut refused = None;
        while let Ok(mut c) = self.rx.try_recv() {
            let left = if c.down {
                &mut self.left.1
            } else {
                &mut self.left.0
            };
            let mac_ok = keys.is_none_or(|k| {
                let want = k.load_preamble_mac(self.session, c.down);
                c.mac.is_some_and(|m| auth::same(&m, &want))
            });
            if !mac_ok || *left == 0 || self.cancel.is_cancelled() {
                refused = Some(format!(
                    "closed a load connection of session {:016x}: {}",
                    self.session,
                    if mac_ok {
                        "more than the hello announced, or after the session's sending"
                    } else {
                        "its preamble's MAC failed"
                    }
                ));
                continue;
            }
            *left -= 1;
            let _ = c.stream.set_read_timeout(Some(POLL));
            let _ = c.stream.set_write_timeout(Some(POLL));
            if c.stream.write_all(&[proto::LOAD_TAKEN]).is_err() {
                continue;
            }
            let (cancel, bytes) = (self.cancel.clone(), self.bytes.clone());
            self.flows.push(std::thread::spawn(move || {
                let stop = || cancel.is_cancelled();
                if c.down {
                    let buf = vec![0u8; CHUNK];
                    while write_all_until(&mut c.stream, &buf, &stop) {}
                } else {
                    sink_records(&mut c.stream, &stop, &bytes);
                }
            }));
        }
        refused
    }

    /// The sending is over: the flows stop (the sender has stopped its own already).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// The session is over: no more load connections for it; its flows stopped and joined. Returns the bytes
    /// this end read.
    pub fn close(self, slots: &LoadSlots) -> u64 {
        if let Ok(mut s) = slots.slots.lock() {
            s.remove(&self.session);
        }
        self.cancel.cancel();
        for f in self.flows {
            let _ = f.join();
        }
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn traffic(flows: u32, dir: LoadDirection) -> Traffic {
        Traffic {
            load_flows: flows,
            load_direction: dir,
            idle_probes: 10,
            load_cc: "reno".into(),
            ..Traffic::default()
        }
    }

    /// Both ends on loopback, with a plain listener standing in for the receiver's port: the flows open in
    /// the idle phase without carrying bytes, carry them both ways once it ends, and stop when told.
    #[test]
    fn flows_start_after_the_idle_phase_and_stop_when_told() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let slots = Arc::new(LoadSlots::default());
        let t = Traffic {
            probe_on_load: true,
            rate: 1000.0,
            ..traffic(2, LoadDirection::Both)
        };
        let mut sl = SessionLoad::open(&slots, 7, addr.ip(), &t, Cancel::new()).unwrap();
        let s2 = slots.clone();
        // The receiver's accept loop, cut down: read the preamble, hand the connection to its session.
        let acceptor = std::thread::spawn(move || {
            for _ in 0..4 {
                let (mut s, peer) = l.accept().unwrap();
                let mut pre = [0u8; 16];
                s.read_exact(&mut pre).unwrap();
                let mut d = proto::PreambleDecoder::default();
                let Some((
                    proto::Preamble::Load {
                        session, down, mac, ..
                    },
                    _,
                )) = d.push(&pre).unwrap()
                else {
                    panic!("not a load preamble");
                };
                let c = LoadConn {
                    stream: s,
                    down,
                    mac,
                };
                assert!(s2.hand_over(session, peer.ip(), c));
            }
        });
        let issued = Arc::new(AtomicU64::new(0));
        let p = plan(&t, addr, 7, None, clock::mono()).unwrap();
        let g = Generator::start(p, issued.clone(), Cancel::new());
        acceptor.join().unwrap();
        let t0 = clock::mono();
        while sl.flows.len() < 4 && clock::since(t0) < Duration::from_secs(10) {
            assert_eq!(sl.poll(None), None);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sl.flows.len(), 4, "two flows each way taken");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            sl.bytes.load(Ordering::Relaxed),
            0,
            "no load in the idle phase"
        );
        issued.store(10, Ordering::Relaxed);
        while sl.bytes.load(Ordering::Relaxed) < (1 << 20)
            && clock::since(t0) < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let st = g.stop();
        assert_eq!(st.flows, 4);
        assert!(st.bytes_acked > 1 << 20 && st.active_ns > 0, "{st:?}");
        assert_eq!(st.cc.as_deref(), Some("reno"), "reno is always built in");
        // The probes on the first flow came back through the receiver (a round trip each, 1 ms apart).
        assert!(st.probe_rtt.as_ref().is_some_and(|h| h.len() > 5), "{st:?}");
        assert!(sl.close(&slots) >= 1 << 20);
    }

    /// A connected pair on loopback: (the sender's end, the receiver's).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    }

    /// The receiver takes no more flows each way than the hello announced, only with the right MAC, only from
    /// the session's own address, and none once the session is closed.
    #[test]
    fn the_receiver_takes_only_what_was_announced() {
        let slots = LoadSlots::default();
        let keys = crate::auth::Secret::from_bytes(&[5; 32])
            .unwrap()
            .session_keys(7, &[1; 16], &[2; 16]);
        let me: IpAddr = "127.0.0.1".parse().unwrap();
        let t = traffic(1, LoadDirection::Up);
        let mut sl = SessionLoad::open(&slots, 7, me, &t, Cancel::new()).unwrap();
        let offer = |down: bool, mac: Option<[u8; MAC_LEN]>| {
            let (c, r) = pair();
            assert!(slots.hand_over(
                7,
                me,
                LoadConn {
                    stream: r,
                    down,
                    mac
                }
            ));
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            c
        };
        let taken = |mut c: TcpStream| {
            let mut b = [0u8; 1];
            matches!(c.read(&mut b), Ok(1) if b[0] == proto::LOAD_TAKEN)
        };
        // A forged MAC, then a down flow the hello did not announce: closed, said why.
        let forged = offer(false, Some([0; MAC_LEN]));
        assert!(sl.poll(Some(&keys)).unwrap().contains("MAC failed"));
        assert!(!taken(forged));
        let down = offer(true, Some(keys.load_preamble_mac(7, true)));
        assert!(sl
            .poll(Some(&keys))
            .unwrap()
            .contains("more than the hello announced"));
        assert!(!taken(down));
        // The announced flow, then one too many.
        let ok = offer(false, Some(keys.load_preamble_mac(7, false)));
        assert_eq!(sl.poll(Some(&keys)), None);
        assert!(taken(ok));
        let extra = offer(false, Some(keys.load_preamble_mac(7, false)));
        assert!(sl.poll(Some(&keys)).is_some());
        assert!(!taken(extra));
        // Another address, another session, a closed one: not handed over at all.
        let stray = |session: u64, ip: IpAddr| {
            let c = LoadConn {
                stream: pair().1,
                down: false,
                mac: None,
            };
            slots.hand_over(session, ip, c)
        };
        assert!(!stray(7, "127.0.0.2".parse().unwrap()));
        assert!(!stray(8, me));
        sl.close(&slots);
        assert!(!stray(7, me));
        assert!(
            SessionLoad::open(&slots, 9, me, &traffic(0, LoadDirection::Up), Cancel::new())
                .is_none()
        );
    }
}
