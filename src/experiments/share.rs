//! `sockbench ports`: what a port in use means, and what SO_REUSEPORT does about it. A second plain receiver
//! on a taken port is refused ("address in use", naming the holder); receivers that all set SO_REUSEPORT
//! share the port, and the kernel spreads connections between them. Real TCP sessions are run and counted
//! per receiver.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::cancel::Cancel;
use crate::config::{Output, PortsConfig, RecvConfig, SendConfig};
use crate::driver::receiver::{Receiver, ServeSummary};
use crate::driver::sender;
use crate::report::out::{OutDir, RunInfo};
use crate::traffic::{Protocol, Traffic};

/// What the experiment saw.
pub struct PortsReport {
    pub addr: SocketAddr,
    /// The one-line error a plain (no SO_REUSEPORT) receiver got on the taken port.
    pub in_use: String,
    /// Per receiver: sessions served (control connections) and data connections accepted.
    pub per_receiver: Vec<ServeSummary>,
    pub sessions_ok: u64,
    pub sessions_failed: Vec<String>,
    /// Data connections that reached a receiver without their session and were made again.
    pub reconnects: u64,
}

fn shared_cfg(addr: SocketAddr) -> RecvConfig {
    RecvConfig {
        once: false,
        reuse_port: true,
        ..RecvConfig::in_process(Protocol::Tcp, addr)
    }
}

pub fn run(args: &PortsConfig) -> anyhow::Result<PortsReport> {
    let stop = Cancel::new();
    // Independent receivers, as separate processes would be: nothing is shared but the port.
    let first = Receiver::bind(shared_cfg(args.listen), stop.clone(), true)?;
    let addr = first.local_addr();
    let in_use = match Receiver::bind(
        RecvConfig::in_process(Protocol::Tcp, addr),
        Cancel::new(),
        true,
    ) {
        Ok(_) => "a plain receiver could bind too (this kernel let it share without SO_REUSEPORT)"
            .to_string(),
        Err(e) => crate::error::one_line(&e),
    };
    let mut receivers = vec![first];
    for _ in 1..args.receivers {
        receivers.push(Receiver::bind(shared_cfg(addr), stop.clone(), true)?);
    }
    let handles: Vec<_> = receivers
        .into_iter()
        .map(|r| std::thread::spawn(move || r.serve()))
        .collect();
    let tmp = std::env::temp_dir();
    let cfg = SendConfig {
        protocol: Protocol::Tcp,
        peer_name: addr.to_string(),
        target: addr,
        alternatives: vec![addr],
        traffic: Traffic {
            count: 50,
            rate: 0.0,
            linger: Some(Duration::from_millis(100)),
            ..Traffic::default()
        },
        output: Output {
            dir: tmp.clone(),
            label: String::new(),
            trace: false,
        },
        secret: None,
    };
    let (mut ok, mut failed, mut reconnects) = (0, vec![], 0);
    let run = RunInfo::new();
    for _ in 0..args.sessions {
        match sender::run_session(&cfg, &run, &OutDir::new(&tmp), &Cancel::new()) {
            Ok(o) if o.report.complete && o.report.received == Some(o.report.sent) => {
                ok += 1;
                reconnects += o.data_connects.saturating_sub(1) as u64;
            }
            Ok(o) => failed.push(o.note.unwrap_or_else(|| "incomplete".into())),
            Err(e) => failed.push(crate::error::one_line(&e)),
        }
    }
    stop.cancel();
    let mut per_receiver = vec![];
    for h in handles {
        per_receiver.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a receiver panicked"))?
                .context("receiver")?,
        );
    }
    Ok(PortsReport {
        addr,
        in_use,
        per_receiver,
        sessions_ok: ok,
        sessions_failed: failed,
        reconnects,
    })
}

impl PortsReport {
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "1. A second receiver without SO_REUSEPORT on tcp {}:",
            self.addr
        )?;
        writeln!(out, "   {}", self.in_use)?;
        writeln!(
            out,
            "2. {} receivers with SO_REUSEPORT share tcp {}; {} sessions:",
            self.per_receiver.len(),
            self.addr,
            self.sessions_ok + self.sessions_failed.len() as u64
        )?;
        writeln!(out, "   receiver  sessions  data connections taken  data connections closed (session elsewhere)")?;
        for (i, r) in self.per_receiver.iter().enumerate() {
            writeln!(
                out,
                "   {:>8}  {:>8}  {:>22}  {:>43}",
                i + 1,
                r.sessions,
                r.data_accepts,
                r.data_refused
            )?;
        }
        let total = self.sessions_ok + self.sessions_failed.len() as u64;
        writeln!(
            out,
            "   {} of {total} sessions delivered every message",
            self.sessions_ok
        )?;
        for f in &self.sessions_failed {
            writeln!(out, "   failed: {f}")?;
        }
        writeln!(
            out,
            "The kernel picks a listener per connection by a hash of its addresses and ports, so the sessions spread over \
             {} receivers that never coordinate. Each sockbench TCP session has two connections (control, data) hashed \
             separately: {} data connections reached a receiver that did not hold their session, were closed, and were \
             made again from a new port (a new hash) until they reached the right one.",
            self.per_receiver.len(),
            self.reconnects
        )
    }
}
