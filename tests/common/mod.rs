//! Shared helpers for the integration tests: the real binary, free ports, receiver processes killed by PID
//! in a Drop guard, CSV parsing, and a hand-made protocol client (built from the library's own wire and
//! control types) for abuse a real sender would never commit.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use sockbench::auth::{self, Dir, Secret, SessionKeys};
use sockbench::proto::{self, Ctl, Done, FrameDecoder, FrameEncoder, Hello, Results};
use sockbench::traffic::Protocol;
use sockbench::wire;

/// The summary.csv header, exactly as issue 2 lists it.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "schema_version",
    "run_id",
    "started_utc",
    "label",
    "protocol",
    "mode",
    "peer",
    "msg_size",
    "rate_target",
    "duration_s",
    "sent",
    "received",
    "lost",
    "loss_pct",
    "duplicates",
    "reordered",
    "reorder_extent_max",
    "loss_bursts",
    "loss_burst_max",
    "corrupt",
    "invalid",
    "latency_min_us",
    "latency_mean_us",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_p999_us",
    "latency_max_us",
    "latency_stddev_us",
    "transit_p50_us",
    "transit_p99_us",
    "transit_max_us",
    "jitter_us",
    "ipdv_p50_us",
    "ipdv_p99_us",
    "pdv_us",
    "goodput_mbps",
    "msgs_per_s",
    "recv_calls",
    "split_messages",
    "coalesced_reads",
    "tcp_connect_us",
    "tcp_retransmits",
    "send_errors",
    "udp_rcvbuf_drops",
    "path_lost",
    "reordered_3",
    "clock_offset_us",
    "clock_error_us",
    "complete",
];

/// Namespaces a (dead) child left behind: lab namespaces are named sb-<pid>-<n>-a/b.
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("sb-{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Can this process build the private lab (root, /dev/net/tun, iproute2)? Where not, a lab test skips with a
/// line saying why, but fails under CI=true: a skipped proof is not a proof.
pub fn lab_possible() -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not root (the lab needs CAP_NET_ADMIN)")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("the `ip` command (iproute2) is missing")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("lab test cannot run in CI: {w}")
        }
        Some(w) => {
            // libtest names the test's thread after the test: say which one skipped (scripts/test.sh lists them).
            let test = std::thread::current()
                .name()
                .unwrap_or("lab test")
                .to_string();
            eprintln!("SKIPPED {test}: cannot run here: {w}");
            false
        }
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sockbench"))
}

/// A `sockbench` command with stdin closed.
pub fn sockbench() -> Command {
    let mut c = Command::new(bin());
    c.stdin(Stdio::null());
    c
}

/// Run to completion with a hard time limit (the child is killed by PID past it).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_p = dir.path().join("stdout");
    let err_p = dir.path().join("stderr");
    cmd.stdout(fs::File::create(&out_p).unwrap())
        .stderr(fs::File::create(&err_p).unwrap());
    let mut child = cmd.spawn().expect("spawn sockbench");
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("sockbench did not finish within {limit:?}: {cmd:?}"));
    Output {
        status,
        stdout: fs::read(&out_p).unwrap(),
        stderr: fs::read(&err_p).unwrap(),
    }
}

/// Wait for `child` at most `limit`; past it, kill it (by its PID) and return None.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port number free for both TCP and UDP on `ip` right now (another process may still take it: callers
/// retry on collision).
pub fn free_port(ip: &str) -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind((ip, 0)).unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on {ip}");
}

pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of a child this test started and has not yet reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// A receiver process; killed by PID (SIGKILL) and reaped when dropped, also when a test fails.
pub struct Recv {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub proto: &'static str,
    pub log: PathBuf,
    pub out: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Recv {
    /// Start `sockbench PROTO recv` on a free port of `ip` (127.0.0.1 or ::1) and wait until it listens.
    pub fn start(proto: &'static str, ip: &str, extra: &[&str]) -> Recv {
        Self::start_with_out(proto, ip, extra, None)
    }

    pub fn start_with_out(
        proto: &'static str,
        ip: &str,
        extra: &[&str],
        out: Option<&Path>,
    ) -> Recv {
        for _ in 0..10 {
            let port = free_port(ip);
            let addr: SocketAddr = if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
            .parse()
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("recv.log");
            let mut cmd = sockbench();
            cmd.args([proto, "recv", "--listen", &addr.to_string()])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap());
            if let Some(o) = out {
                cmd.arg("--out").arg(o);
            }
            let child = cmd.spawn().expect("spawn receiver");
            let mut r = Recv {
                child: Some(child),
                addr,
                proto,
                log,
                out: out.map(Path::to_path_buf),
                _dir: dir,
            };
            if r.wait_listening() {
                return r;
            }
            // Exited at once: most likely someone took the port between our probe and its bind. Retry.
            let text = r.log_text();
            assert!(
                text.contains("in use"),
                "receiver failed to start for another reason: {text}"
            );
        }
        panic!("could not start a receiver after 10 tries");
    }

    /// Poll-connect the TCP port until it answers (true) or the process exits (false).
    fn wait_listening(&mut self) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(_s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return false;
            }
            // The log line comes after both binds: wait for it, then probe the TCP port.
            if self.log_text().contains("listening on")
                && TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("receiver did not listen within 10 s: {}", self.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log holds `n` lines containing `needle` (bounded).
    pub fn wait_log(&self, needle: &str, n: usize, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let t = self.log_text();
            if t.matches(needle).count() >= n {
                return t;
            }
            assert!(
                Instant::now() < end,
                "receiver log never showed {n}× {needle:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to exit by itself (bounded).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        wait_bounded(self.child.as_mut().unwrap(), limit).unwrap_or_else(|| {
            panic!(
                "receiver did not exit within {limit:?}: {}",
                self.log_text()
            )
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Resident memory of the receiver process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Recv {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill(); // SIGKILL to this child's PID
            }
            let _ = c.wait();
        }
    }
}

/// Kills a sender by PID if a test fails before it is reaped.
pub struct SenderGuard(pub Option<Child>);
impl Drop for SenderGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl SenderGuard {
    pub fn wait_ok(&mut self) {
        let c = self.0.as_mut().unwrap();
        let st = wait_bounded(c, Duration::from_secs(60)).expect("sender finishes");
        let mut err = String::new();
        let _ = c.stderr.take().unwrap().read_to_string(&mut err);
        assert!(st.success(), "sender: {st:?} {err}");
        self.0 = None;
    }
}

/// One summary.csv row, by column name.
pub type Row = HashMap<String, String>;

/// Parse DIR/summary.csv: check the header starts with exactly the columns (and appears once),
/// return the rows.
pub fn summary_rows(dir: &Path) -> Vec<Row> {
    let path = dir.join("summary.csv");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    // The columns, exactly and in its order; the schema only ever appends after them.
    assert!(
        header.len() >= SUMMARY_COLUMNS.len(),
        "summary.csv header: {header:?}"
    );
    assert_eq!(
        &header[..SUMMARY_COLUMNS.len()],
        SUMMARY_COLUMNS,
        "summary.csv header"
    );
    let header_line = text.lines().next().unwrap();
    assert_eq!(
        text.lines().filter(|l| *l == header_line).count(),
        1,
        "the header appears once"
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), header.len());
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

pub fn num(row: &Row, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a count", row[col]))
}

pub fn float(row: &Row, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// Read a CSV file into header + records.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let h = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (h, rows)
}

/// A sender run against `target`; returns its output after asserting nothing panicked.
pub fn send(proto: &str, target: &str, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = sockbench();
    cmd.args([proto, "send", target, "--out"])
        .arg(out)
        .args(extra);
    let o = run_bounded(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    o
}

/// Run a normal session and check it is exact: sent = received = count, lost 0, complete.
pub fn exact_session(proto: &str, target: &str, count: u64, extra: &[&str]) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let c = count.to_string();
    let mut args = vec!["--count", c.as_str()];
    args.extend_from_slice(extra);
    let o = send(proto, target, dir.path(), &args);
    assert!(
        o.status.success(),
        "sender failed: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let rows = summary_rows(dir.path());
    assert_eq!(rows.len(), 1);
    let r = rows.into_iter().next().unwrap();
    assert_eq!(num(&r, "sent"), count, "{r:?}");
    assert_eq!(num(&r, "received"), count, "{r:?}");
    assert_eq!(num(&r, "lost"), 0, "{r:?}");
    assert_eq!(num(&r, "duplicates"), 0);
    assert_eq!(num(&r, "corrupt"), 0);
    assert_eq!(r["complete"], "true");
    r
}

// ---- a hand-made client speaking the real protocol, for what a real sender never does ----

/// A blocking control connection for tests: frames out, frames in with a deadline.
pub struct CtlConn {
    stream: TcpStream,
    dec: FrameDecoder,
    enc: FrameEncoder,
}

impl CtlConn {
    pub fn new(stream: TcpStream) -> CtlConn {
        stream.set_nodelay(true).unwrap();
        CtlConn {
            stream,
            dec: FrameDecoder::new(proto::MAX_FRAME),
            enc: FrameEncoder::default(),
        }
    }

    pub fn send(&mut self, m: &Ctl) -> std::io::Result<()> {
        let b = self.enc.encode(m);
        self.stream.write_all(&b)
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// From now on frames both ways carry MACs (a sender's side).
    pub fn authenticate(&mut self, keys: &SessionKeys) {
        self.enc.authenticate(keys.clone(), Dir::SenderToReceiver);
        self.dec.authenticate(keys.clone(), Dir::ReceiverToSender);
    }

    /// The next message within `limit`, or why not.
    pub fn recv(&mut self, limit: Duration) -> Result<Ctl, String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 16384];
        loop {
            if let Some(m) = self.dec.next_message().map_err(|e| e.to_string())? {
                return Ok(m);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => self.dec.push(&buf[..n]).map_err(|e| e.to_string())?,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// A control connection that completed hello/accept and start/ready by hand.
pub struct RawSession {
    pub conn: CtlConn,
    pub session: u64,
    pub size: usize,
    pub template: Vec<u8>,
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpStream>,
    /// An authenticated session's keys (messages get MACs).
    pub keys: Option<SessionKeys>,
}

/// Session parameters for a hand-made hello: fixed-size messages, paced at 1000/s, linger 300 ms.
pub fn traffic(count: u64, size: usize, echo: bool) -> proto::TrafficSpec {
    proto::TrafficSpec {
        count,
        duration_ns: None,
        rate: 1000.0,
        size: size as u64,
        sizes: None,
        schedule: proto::ScheduleKind::Periodic,
        echo,
        linger_ns: Some(300_000_000),
        per_message: false,
        gso: false,
        idle_probes: 0,
        load_flows: 0,
        load_down_flows: 0,
    }
}

pub fn open_control(addr: SocketAddr) -> CtlConn {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.write_all(&proto::control_preamble()).unwrap();
    CtlConn::new(s)
}

fn transport(p: Protocol) -> proto::Transport {
    match p {
        Protocol::Tcp => proto::Transport::Tcp,
        Protocol::Udp => proto::Transport::Udp,
    }
}

pub fn hello(protocol: Protocol, session: u64, t: proto::TrafficSpec) -> Ctl {
    Ctl::Hello(Hello {
        version: proto::VERSION,
        transport: transport(protocol),
        session,
        run_id: "raw".into(),
        started_utc: "2026-11-20T00:00:00Z".into(),
        label: "raw".into(),
        traffic: t,
        boot_id: String::new(),
        software: "integration test".into(),
        trace: false,
        nonce: None,
    })
}

fn wait(conn: &mut CtlConn, what: &str) -> Ctl {
    conn.recv(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

impl RawSession {
    /// Hello, accept, start, (data connection), ready.
    pub fn open(addr: SocketAddr, protocol: Protocol, t: proto::TrafficSpec) -> RawSession {
        Self::open_with(addr, protocol, t, None)
    }

    /// The same, authenticated with `secret` (the proofs of both sides done by hand).
    pub fn open_with(
        addr: SocketAddr,
        protocol: Protocol,
        t: proto::TrafficSpec,
        secret: Option<&Secret>,
    ) -> RawSession {
        Self::open_full(addr, protocol, t, secret, &|_| {})
    }

    /// The same, calling `before_data(session)` after Start and before the TCP data connection opens (a
    /// hijacker's moment).
    pub fn open_full(
        addr: SocketAddr,
        protocol: Protocol,
        t: proto::TrafficSpec,
        secret: Option<&Secret>,
        before_data: &dyn Fn(u64),
    ) -> RawSession {
        let session: u64 = rand::random();
        let mut conn = open_control(addr);
        let size = t.size as usize;
        let nonce_s = auth::nonce();
        let mut h = hello(protocol, session, t);
        if let (Ctl::Hello(h), Some(_)) = (&mut h, secret) {
            h.nonce = Some(auth::to_hex(&nonce_s));
        }
        let hello_hash = auth::hello_hash(&proto::encode(&h)[4..]);
        conn.send(&h).unwrap();
        let accept = match wait(&mut conn, "accept") {
            Ctl::Accept(a) => a,
            other => panic!("expected accept, got {other:?}"),
        };
        let keys = secret.map(|k| {
            let nr = auth::from_hex::<16>(accept.nonce.as_deref().unwrap()).unwrap();
            let proof = k.sender_proof(&hello_hash, &nonce_s, &nr);
            conn.send(&Ctl::Proof {
                proof: auth::to_hex(&proof),
            })
            .unwrap();
            let keys = k.session_keys(session, &nonce_s, &nr);
            conn.authenticate(&keys);
            keys
        });
        let udp = (protocol == Protocol::Udp).then(|| {
            let any = if addr.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let s = UdpSocket::bind(any).unwrap();
            s.connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        });
        conn.send(&Ctl::Start(proto::Start {
            clock: proto::ClockEstimate {
                offset_ns: 0,
                ref_ns: 0,
                skew_ppb: 0,
                error_ns: 0,
                min_rtt_ns: 0,
                max_rtt_ns: 0,
                same_host: true,
            },
            udp_source_port: udp.as_ref().map(|s| s.local_addr().unwrap().port()),
            linger_ns: 300_000_000,
        }))
        .unwrap();
        let mac = keys.as_ref().map(|k| k.preamble_mac(session));
        before_data(session);
        let tcp = (protocol == Protocol::Tcp).then(|| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&proto::data_preamble(session, mac)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s
        });
        match wait(&mut conn, "ready") {
            Ctl::Ready => {}
            other => panic!("expected ready, got {other:?}"),
        }
        RawSession {
            conn,
            session,
            size,
            template: wire::template(session, size, keys.is_some()),
            udp,
            tcp,
            keys,
        }
    }

    /// A valid, sealed message with sequence number `seq`.
    pub fn message(&self, seq: u64) -> Vec<u8> {
        // Fields at their documented offsets (wire.rs byte diagram), then sealed: independent of how the
        // sender's hot path stamps messages.
        let mut m = self.template.clone();
        let now = sockbench::clock::now_ns() as u64;
        m[24..32].copy_from_slice(&seq.to_be_bytes());
        m[32..40].copy_from_slice(&now.to_be_bytes());
        m[40..48].copy_from_slice(&now.to_be_bytes());
        wire::seal(&mut m);
        if let Some(k) = &self.keys {
            k.seal_message(Dir::SenderToReceiver, &mut m);
        }
        m
    }

    /// Done with `sent`, then the results (and everything up to End).
    pub fn finish(mut self, sent: u64) -> Results {
        if let Some(s) = &self.tcp {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        self.conn
            .send(&Ctl::Done(Done {
                sent,
                send_errors: 0,
                complete: true,
            }))
            .unwrap();
        let mut results = None;
        loop {
            match wait(&mut self.conn, "results") {
                Ctl::Results(r) => results = Some(*r),
                Ctl::End => break,
                Ctl::Messages { .. } => {}
                other => panic!("expected results, got {other:?}"),
            }
        }
        results.expect("results before end")
    }
}

/// Read one control frame (u32 BE length + JSON) from a raw stream, bounded.
pub fn read_raw_frame(s: &mut TcpStream) -> serde_json::Value {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let len = u32::from_be_bytes(len) as usize;
    assert!(len < 1 << 20, "reply frame of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// True when the peer closed `s` (EOF or reset) within `limit`.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}
