//! The bulk TCP flows of `--load` (issue 14): a [`Generator`] on the sending host writes as fast as TCP lets it
//! on N connections, and a [`Sink`] on the receiving host reads them as fast as it can. The flows start when
//! the measured session's send loop leaves its idle phase and end with the session: when it stops them, at
//! their deadline, or at Ctrl-C (their cancellation is a child of the session's). Every loop here is bounded in
//! time and count.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::clock;
use crate::config::SendConfig;
use crate::load::LoadStats;
use crate::sys::tcp_info::{tcp_info, TcpInfo};

/// Bytes per write: large, so the flow is limited by TCP and the path, never by system calls.
const CHUNK: usize = 128 << 10;
/// How long a blocked write or read waits before the flow looks at its stop flag again.
const POLL: Duration = Duration::from_millis(50);
/// How often a flow waiting for the loaded phase looks at the send loop's count.
const GATE_POLL: Duration = Duration::from_millis(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and when the load runs.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The sink on the receiving host.
    pub target: SocketAddr,
    pub flows: u32,
    /// The flows start once the send loop has handed out this many sequence numbers (the idle phase).
    pub idle_probes: u64,
    /// The flows stop at this time at the latest, whatever else happens.
    pub deadline: Instant,
    /// The congestion control the flows ask for (TCP_CONGESTION); where the kernel refuses it they keep its
    /// default, and the report names what they ran.
    pub cc: String,
}

/// The flows stop this long after the session's own bound at the latest (the send loop normally stops them
/// much sooner: when it ends).
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
/// An unpaced session bounded by its count alone has no time bound of its own: its flows get this one.
const UNPACED_BOUND: Duration = Duration::from_secs(3600);

/// The load of a session whose send loop starts at `now`; None without --load.
pub fn plan(cfg: &SendConfig, now: Instant) -> Option<LoadPlan> {
    let t = &cfg.traffic;
    let target = cfg.load_sink.filter(|_| t.load_flows > 0)?;
    let by_count = (t.rate > 0.0)
        .then(|| Duration::try_from_secs_f64(t.count as f64 / t.rate).ok())
        .flatten()
        .unwrap_or(UNPACED_BOUND);
    let bound = t.duration.map_or(by_count, |d| d.min(by_count));
    Some(LoadPlan {
        target,
        flows: t.load_flows,
        idle_probes: t.idle_probes,
        deadline: now + bound.min(UNPACED_BOUND) + DEADLINE_MARGIN,
        cc: t.load_cc.clone(),
    })
}

/// How one flow went: when it ran and the kernel's counts at its end (None: it never connected).
struct FlowEnd {
    ran: Option<(Instant, Instant, Option<TcpInfo>)>,
    /// The congestion control it ran.
    cc: Option<String>,
}

/// The sending end of the load: one thread per flow.
pub struct Generator {
    cancel: Cancel,
    flows: Vec<JoinHandle<FlowEnd>>,
}

impl Generator {
    /// Start the flows' threads; each waits until `issued` (the send loop's sequence numbers handed out)
    /// reaches the idle phase's end. `cancel`: a child of the session's, so Ctrl-C stops them too.
    pub fn start(plan: &LoadPlan, issued: Arc<AtomicU64>, cancel: Cancel) -> Generator {
        let flows = (0..plan.flows)
            .map(|_| {
                let (plan, issued, cancel) = (plan.clone(), issued.clone(), cancel.clone());
                std::thread::spawn(move || flow(&plan, &issued, &cancel))
            })
            .collect();
        Generator { cancel, flows }
    }

    /// Stop the flows (a reset discards what their send buffers still hold, so nothing keeps filling the
    /// path after the session) and add up what they did.
    pub fn stop(self) -> LoadStats {
        self.cancel.cancel();
        let ends: Vec<FlowEnd> = self
            .flows
            .into_iter()
            .filter_map(|h| h.join().ok())
            .collect();
        sum_flows(&ends)
    }
}

fn sum_flows(ends: &[FlowEnd]) -> LoadStats {
    let ran: Vec<_> = ends.iter().filter_map(|e| e.ran.as_ref()).collect();
    let first = ran.iter().map(|r| r.0).min();
    let last = ran.iter().map(|r| r.1).max();
    LoadStats {
        flows: ran.len() as u32,
        bytes_acked: ran
            .iter()
            .filter_map(|r| r.2.and_then(|i| i.bytes_acked))
            .sum(),
        retransmits: ran
            .iter()
            .filter_map(|r| r.2.map(|i| u64::from(i.total_retrans)))
            .sum(),
        cc: ends.iter().find_map(|e| e.cc.clone()),
        active_ns: match (first, last) {
            (Some(a), Some(b)) => {
                u64::try_from(b.saturating_duration_since(a).as_nanos()).unwrap_or(0)
            }
            _ => 0,
        },
    }
}

/// One bulk flow: wait for the loaded phase, connect, write until stopped or the deadline.
fn flow(plan: &LoadPlan, issued: &AtomicU64, cancel: &Cancel) -> FlowEnd {
    let stop = || cancel.is_cancelled() || clock::mono() >= plan.deadline;
    while issued.load(Ordering::Relaxed) < plan.idle_probes {
        if stop() {
            return FlowEnd {
                ran: None,
                cc: None,
            };
        }
        std::thread::sleep(GATE_POLL);
    }
    let Ok(mut s) = TcpStream::connect_timeout(&plan.target, CONNECT_TIMEOUT) else {
        return FlowEnd {
            ran: None,
            cc: None,
        };
    };
    // A reset at close: unsent bytes are discarded instead of draining into the next session's path.
    let sock = socket2::SockRef::from(&s);
    let _ = sock.set_linger(Some(Duration::ZERO));
    // Refused (not built, or not allowed to this user): the kernel's default runs, and is reported.
    let _ = sock.set_tcp_congestion(plan.cc.as_bytes());
    let cc = sock.tcp_congestion().ok().map(|b| {
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .to_string()
    });
    let _ = s.set_write_timeout(Some(POLL));
    let buf = vec![0u8; CHUNK];
    let start = clock::mono();
    while !stop() {
        match s.write(&buf) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let end = clock::mono();
    FlowEnd {
        ran: Some((start, end, tcp_info(&s))),
        cc,
    }
}

/// The receiving end of the load: accepts at most `max_flows` connections and reads each to its end.
pub struct Sink {
    local: SocketAddr,
    cancel: Cancel,
    accept: JoinHandle<()>,
    bytes: Arc<AtomicU64>,
}

impl Sink {
    /// Listen on `addr` (port 0: any free one). The sink stops when `cancel` is, or at [`Sink::stop`].
    pub fn bind(addr: SocketAddr, max_flows: u32, cancel: Cancel) -> anyhow::Result<Sink> {
        let l = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen for the load flows on {addr}: {e}"))?;
        l.set_nonblocking(true)?;
        let local = l.local_addr()?;
        let bytes = Arc::new(AtomicU64::new(0));
        let (c, b) = (cancel.clone(), bytes.clone());
        let accept = std::thread::spawn(move || accept_loop(&l, max_flows, &c, &b));
        Ok(Sink {
            local,
            cancel,
            accept,
            bytes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stop reading and return the bytes read.
    pub fn stop(self) -> u64 {
        self.cancel.cancel();
        let _ = self.accept.join();
        self.bytes.load(Ordering::Relaxed)
    }
}

fn accept_loop(l: &TcpListener, max_flows: u32, cancel: &Cancel, bytes: &Arc<AtomicU64>) {
    let mut readers = Vec::new();
    while !cancel.is_cancelled() {
        match l.accept() {
            Ok((s, _)) if readers.len() < max_flows as usize => {
                let (c, b) = (cancel.clone(), bytes.clone());
                readers.push(std::thread::spawn(move || sink_flow(s, &c, &b)));
            }
            // Beyond the announced flows: closed at once.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for r in readers {
        let _ = r.join();
    }
}

/// Read one flow as fast as it comes, until its end or the stop flag.
fn sink_flow(mut s: TcpStream, cancel: &Cancel, bytes: &AtomicU64) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 2 * CHUNK];
    while !cancel.is_cancelled() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On loopback: the flows wait for the idle phase, carry bytes once it ends, and stop when told.
    #[test]
    fn flows_start_after_the_idle_phase_and_stop_when_told() {
        let sink = Sink::bind("127.0.0.1:0".parse().unwrap(), 2, Cancel::new()).unwrap();
        let issued = Arc::new(AtomicU64::new(0));
        let plan = LoadPlan {
            target: sink.local_addr(),
            flows: 2,
            idle_probes: 10,
            deadline: clock::mono() + Duration::from_secs(20),
            cc: "reno".into(),
        };
        let g = Generator::start(&plan, issued.clone(), Cancel::new());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            sink.bytes.load(Ordering::Relaxed),
            0,
            "no load in the idle phase"
        );
        issued.store(10, Ordering::Relaxed);
        let t = clock::mono();
        while sink.bytes.load(Ordering::Relaxed) < (1 << 20)
            && clock::since(t) < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = g.stop();
        assert_eq!(st.flows, 2);
        assert_eq!(st.cc.as_deref(), Some("reno"), "reno is always built in");
        assert!(st.bytes_acked > 0 && st.active_ns > 0, "{st:?}");
        assert!(sink.stop() >= 1 << 20);
    }

    /// A flow whose idle phase never ends stops at its deadline without connecting.
    #[test]
    fn a_flow_never_outlives_its_deadline() {
        let plan = LoadPlan {
            target: "127.0.0.1:9".parse().unwrap(),
            flows: 1,
            idle_probes: 1,
            deadline: clock::mono(),
            cc: "reno".into(),
        };
        let st = Generator::start(&plan, Arc::new(AtomicU64::new(0)), Cancel::new()).stop();
        assert_eq!(st, LoadStats::default());
    }
}
