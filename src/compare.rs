//! `sockbench compare`: a TCP session and a UDP session with identical traffic, receiver and sender in one
//! process, printed side by side. On loopback, or through a private two-host lab with the built-in link
//! emulator when the process may build one.

use std::io::Write;
use std::net::SocketAddr;

use crate::cli::CompareArgs;
use crate::config::{Caps, Output, Protocol, RecvConfig, SendConfig, Traffic};
use crate::error::Outcome;
use crate::receiver::Receiver;
use crate::report::table;
use crate::sender::{self, Outputs, RunInfo, SessionOutput};
use crate::signal::{self, Stop};

/// compare's default message count: a few seconds at the default rate, so the first run is quick.
pub const COMPARE_COUNT: u64 = 2000;

pub fn run(args: &CompareArgs) -> anyhow::Result<Outcome> {
    let traffic = Traffic::from_args(&args.traffic, args.output.per_message, None, COMPARE_COUNT)?;
    let output = Output::from_args(&args.output)?;
    let mut outputs = Outputs::open(&output.dir)?;
    signal::install();
    let run = RunInfo::new();
    let path = PathPlan::choose(args)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "sockbench compare: {} messages × {} B at {}, {} schedule{}; path: {}",
        traffic.count,
        traffic.size,
        if traffic.rate > 0.0 {
            format!("{} msg/s", traffic.rate)
        } else {
            "full speed".into()
        },
        traffic.schedule.name(),
        if traffic.echo {
            ", echo (latency = round trip)"
        } else {
            ""
        },
        path.describe()
    )?;
    stdout.flush()?;
    let mut sessions: Vec<SessionOutput> = vec![];
    let mut ground_truth = None;
    for proto in [Protocol::Tcp, Protocol::Udp] {
        if signal::interrupted() {
            break;
        }
        let t = traffic.clone();
        let o = output.clone();
        let out = path.run_session(proto, &run, &outputs, move |addr: SocketAddr| SendConfig {
            protocol: proto,
            peer_name: addr.to_string(),
            target: addr,
            traffic: t,
            output: o,
        })?;
        sessions.push(out);
    }
    if let Some(counts) = path.finish()? {
        ground_truth = Some(counts);
    }
    let refs: Vec<&SessionOutput> = sessions.iter().collect();
    outputs.write(&refs)?;
    if let Some(gt) = &ground_truth {
        gt.write_csv(
            &outputs.dir().join(format!("{}_link.csv", run.run_id)),
            &run.run_id,
            &output.label,
        )?;
    }
    let reports: Vec<&crate::report::SessionReport> = sessions.iter().map(|s| &s.report).collect();
    let extra_fn = |key: &str| ground_truth.as_ref().and_then(|g| truth_cell(g, key));
    let extra = ground_truth.as_ref().map(|_| table::Extra {
        heading: "link (UDP)".into(),
        cell: &extra_fn,
    });
    table::print(&mut stdout, &reports, extra.as_ref())?;
    for s in &sessions {
        if let Some(n) = &s.note {
            writeln!(
                stdout,
                "{}: incomplete: {n}",
                s.report.protocol.to_uppercase()
            )?;
        }
    }
    writeln!(
        stdout,
        "CSV: {} (run {})",
        outputs.summary_path().display(),
        run.run_id
    )?;
    Ok(
        if sessions.iter().any(|s| s.interrupted) || signal::interrupted() {
            Outcome::Interrupted
        } else {
            Outcome::Done
        },
    )
}

/// Run one session on loopback: a receiver on a free port in this process, then the sender.
pub fn loopback_session(
    proto: Protocol,
    run: &RunInfo,
    outputs: &Outputs,
    make_cfg: impl FnOnce(SocketAddr) -> SendConfig,
) -> anyhow::Result<SessionOutput> {
    let rcfg = RecvConfig {
        protocol: proto,
        listen: "127.0.0.1:0".parse()?,
        once: true,
        out: None,
        caps: Caps::default(),
    };
    let rstop = Stop::new();
    let receiver = Receiver::bind(rcfg, rstop.clone(), true)?;
    let addr = receiver.local_addr();
    let h = std::thread::spawn(move || receiver.serve());
    let out = sender::run_session(&make_cfg(addr), run, outputs, Stop::new());
    rstop.set();
    let _ = h.join();
    out
}

/// Where compare's traffic goes: loopback, or the private lab.
enum PathPlan {
    /// Why the lab was not used, when an impairment was asked for.
    Loopback { note: Option<String> },
}

impl PathPlan {
    fn choose(args: &CompareArgs) -> anyhow::Result<PathPlan> {
        let asked = args.impair.any_given();
        if asked {
            // Validate the impairment even where it cannot be applied: a typo must not pass silently.
            args.impair.to_impairment().map_err(crate::error::usage)?;
        }
        if args.loopback {
            return Ok(PathPlan::Loopback {
                note: asked.then(|| "--loopback given: impairment not applied".to_string()),
            });
        }
        Ok(PathPlan::Loopback {
            note: asked
                .then(|| "the private lab is not built yet: impairment not applied".to_string()),
        })
    }

    fn describe(&self) -> String {
        match self {
            PathPlan::Loopback { note: None } => "loopback, no impairment".into(),
            PathPlan::Loopback { note: Some(n) } => format!("loopback, no impairment ({n})"),
        }
    }

    fn run_session(
        &self,
        proto: Protocol,
        run: &RunInfo,
        outputs: &Outputs,
        make_cfg: impl FnOnce(SocketAddr) -> SendConfig,
    ) -> anyhow::Result<SessionOutput> {
        match self {
            PathPlan::Loopback { .. } => loopback_session(proto, run, outputs, make_cfg),
        }
    }

    fn finish(self) -> anyhow::Result<Option<crate::link::LinkCounters>> {
        Ok(None)
    }
}

/// The emulator's ground truth for the UDP data direction, beside the sockbench figure it should match.
fn truth_cell(g: &crate::link::LinkCounters, key: &str) -> Option<String> {
    use crate::link::{Direction, Proto};
    let c = g.get(Direction::AtoB, Proto::Udp);
    match key {
        "lost" => Some(format!(
            "{} dropped",
            c.dropped + c.queue_drops + c.corrupted
        )),
        "duplicates" => Some(format!("{} duplicated", c.duplicated)),
        "reordered" => Some(format!("{} reordered", c.reordered)),
        "received" => Some(format!("{} forwarded", c.forwarded)),
        _ => None,
    }
}
