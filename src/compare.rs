//! `sockbench compare`: a TCP session and a UDP session with identical traffic, receiver and sender in one
//! process, printed side by side. On loopback, or through a private two-host lab with the built-in link
//! emulator when the process may build one.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Secret;
use crate::cancel::{self, Cancel};
use crate::config::{CompareConfig, PathRequest, RecvConfig, SendConfig};
use crate::driver::receiver::Receiver;
use crate::driver::sender::{self, SessionOutput};
use crate::error::{self, Outcome};
use crate::lab::{Host, Lab, LabConfig};
use crate::link::{Impairment, LinkCounters};
use crate::report::out::{OutDir, Outputs, RunInfo};
use crate::report::table;
use crate::traffic::{Protocol, Traffic};

pub fn run(cfg: &CompareConfig) -> anyhow::Result<Outcome> {
    let (traffic, output) = (&cfg.traffic, &cfg.output);
    // The path first: a refused impairment must not leave an empty summary.csv behind.
    let path = PathPlan::choose(cfg)?;
    let mut outputs = Outputs::open(&output.dir)?;
    cancel::install_ctrl_c();
    let run = RunInfo::new();
    let mut stdout = error::stdout();
    writeln!(stdout, "{}", header(traffic, &path))?;
    stdout.flush()?;
    let mut sessions: Vec<SessionOutput> = vec![];
    for proto in [Protocol::Tcp, Protocol::Udp] {
        if cancel::interrupted() {
            break;
        }
        let t = traffic.clone();
        let o = output.clone();
        let secret = cfg.secret.clone();
        let out = path.run_session(
            proto,
            &run,
            outputs.dir(),
            cfg.secret.clone(),
            move |addr| SendConfig {
                protocol: proto,
                peer_name: addr.to_string(),
                target: addr,
                alternatives: vec![addr],
                traffic: t,
                output: o,
                secret,
            },
        )?;
        sessions.push(out);
    }
    // The impairment with its seed goes into every row, so the run can be repeated exactly.
    let record = path.record();
    for s in &mut sessions {
        s.report.impairment = record.clone();
    }
    let ground_truth = path.finish()?;
    let files: Vec<_> = sessions.iter().map(SessionOutput::files).collect();
    outputs.write(&files)?;
    if let Some(gt) = &ground_truth {
        gt.write_csv(
            &outputs
                .dir()
                .path()
                .join(format!("{}_link.csv", run.run_id)),
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
    if let Some(f) = sessions.iter().find_map(|s| s.failure.as_ref()) {
        anyhow::bail!("{f}");
    }
    Ok(
        if sessions.iter().any(|s| s.interrupted) || cancel::interrupted() {
            Outcome::Interrupted
        } else {
            Outcome::Done
        },
    )
}

/// The first line: what is sent, and along which path (with the impairment's seed, so it can be repeated).
fn header(traffic: &Traffic, path: &PathPlan) -> String {
    format!(
        "sockbench compare: {} × {} at {}, {} schedule{}{}; path: {}",
        match traffic.count {
            u64::MAX => "unbounded messages".to_string(),
            n => format!("{n} messages"),
        },
        traffic
            .mix
            .as_ref()
            .map(|m| m.describe())
            .unwrap_or_else(|| format!("{} B", traffic.size)),
        if traffic.rate > 0.0 {
            format!("{} msg/s", traffic.rate)
        } else {
            "full speed".into()
        },
        traffic.schedule.name(),
        traffic
            .duration
            .map(|d| format!(", for at most {}", humantime::format_duration(d)))
            .unwrap_or_default(),
        if traffic.echo {
            ", echo (latency = round trip)"
        } else {
            ""
        },
        path.describe()
    )
}

/// The impairment `compare` applies when the lab is available and no impairment flag was given: small, but
/// enough that the first run already shows TCP waiting and UDP with holes, duplicates and disorder.
pub fn default_impairment() -> Impairment {
    Impairment {
        loss: 0.02,
        delay: Duration::from_millis(10),
        reorder: 0.01,
        reorder_gap: 3,
        duplicate: 0.005,
        ..Impairment::default()
    }
}

/// Where compare's traffic goes: loopback, or the private two-host lab with the emulator between the hosts.
enum PathPlan {
    /// Why the lab was not used, when that matters.
    Loopback { note: Option<String> },
    /// Sender on host A, receiver on host B; the impairment applies A→B (the data direction), as netem on the
    /// sender's interface would.
    Lab {
        lab: Box<Lab>,
        impairment: Impairment,
        seed: u64,
        defaulted: bool,
    },
}

impl PathPlan {
    fn choose(cfg: &CompareConfig) -> anyhow::Result<PathPlan> {
        let (impairment, defaulted) = match &cfg.path {
            PathRequest::Loopback => return Ok(PathPlan::Loopback { note: None }),
            PathRequest::Auto => (default_impairment(), true),
            PathRequest::Impaired(i) => (i.clone(), false),
        };
        if let Err(why) = Lab::available() {
            if !defaulted {
                // Asked for an impairment it cannot apply: a run without it would record a clean path under
                // the user's label, so refuse and say what would make it work.
                let flags = match impairment.to_flags() {
                    f if f.is_empty() => "the impairment flags".to_string(),
                    f => format!("the impairment ({f})"),
                };
                return Err(error::usage(format!(
                    "cannot apply {flags}: the private lab cannot be built here ({why}); or pass --loopback \
                     (without impairment flags) to run on loopback"
                )));
            }
            eprintln!(
                "sockbench: running on loopback without impairment: the private lab cannot be built here ({why})"
            );
            return Ok(PathPlan::Loopback {
                note: Some("no privilege for the lab".into()),
            });
        }
        let seed = cfg.seed.unwrap_or_else(crate::link::fresh_seed);
        let lab = Lab::up(LabConfig {
            a_to_b: impairment.clone(),
            b_to_a: Impairment::default(),
            seed,
        })?;
        Ok(PathPlan::Lab {
            lab: Box::new(lab),
            impairment,
            seed,
            defaulted,
        })
    }

    /// The `impairment` column: the flags that repeat this run's impairment, with its seed; empty when
    /// nothing was impaired.
    fn record(&self) -> String {
        match self {
            PathPlan::Lab {
                impairment, seed, ..
            } if !impairment.is_none() => format!("{} --seed {seed}", impairment.to_flags()),
            _ => String::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            PathPlan::Loopback { note: None } => "loopback, no impairment".into(),
            PathPlan::Loopback { note: Some(n) } => format!("loopback, no impairment ({n})"),
            PathPlan::Lab {
                lab,
                impairment,
                seed,
                defaulted,
            } => format!(
                "two-host lab {} → {} through the built-in link emulator, {} sender→receiver, seed {seed}{}",
                lab.addr(Host::A),
                lab.addr(Host::B),
                impairment.describe(),
                if *defaulted {
                    " (the default; choose with --loss, --delay, --jitter, --reorder, --duplicate, ...)"
                } else {
                    ""
                }
            ),
        }
    }

    /// One session over this path; `secret`: the receiver's key (--key-file), the sender's is in its config.
    fn run_session(
        &self,
        proto: Protocol,
        run: &RunInfo,
        out: &OutDir,
        secret: Option<Secret>,
        make_cfg: impl FnOnce(SocketAddr) -> SendConfig + Send + 'static,
    ) -> anyhow::Result<SessionOutput> {
        match self {
            PathPlan::Loopback { .. } => loopback_session(proto, run, out, secret, make_cfg),
            PathPlan::Lab { lab, .. } => {
                let listen = SocketAddr::new(lab.addr(Host::B), 0);
                // As on loopback: the receiver outlives a Ctrl-C of the sender, so the results of what was sent
                // still come back.
                let rstop = Cancel::new();
                let rs = rstop.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                let recv = lab.spawn_in(Host::B, move || -> anyhow::Result<()> {
                    let rcfg = RecvConfig {
                        secret,
                        ..RecvConfig::in_process(proto, listen)
                    };
                    let receiver = Receiver::bind(rcfg, rs, true)?;
                    let _ = tx.send(receiver.local_addr());
                    receiver.serve()?;
                    Ok(())
                });
                let addr = match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(a) => a,
                    Err(_) => {
                        let why = recv
                            .join()
                            .ok()
                            .and_then(|r| r.err().or_else(|| Some(anyhow::anyhow!("no address"))));
                        anyhow::bail!(
                            "the lab receiver did not start: {}",
                            why.map(|e| format!("{e:#}")).unwrap_or_default()
                        );
                    }
                };
                let (run2, out2) = (run.clone(), out.clone());
                let send = lab.spawn_in(Host::A, move || {
                    sender::run_session(&make_cfg(addr), &run2, &out2, &cancel::process().child())
                });
                let result = send
                    .join()
                    .map_err(|_| anyhow::anyhow!("the lab sender panicked"))?;
                rstop.cancel();
                let _ = recv.join();
                result?
            }
        }
    }

    /// Tear the lab down (if any) and return the emulator's counts.
    fn finish(self) -> anyhow::Result<Option<LinkCounters>> {
        Ok(match self {
            PathPlan::Loopback { .. } => None,
            PathPlan::Lab { lab, .. } => Some(lab.down()),
        })
    }
}

/// Run one session on loopback: a receiver on a free port in this process, then the sender.
pub fn loopback_session(
    proto: Protocol,
    run: &RunInfo,
    out: &OutDir,
    secret: Option<Secret>,
    make_cfg: impl FnOnce(SocketAddr) -> SendConfig,
) -> anyhow::Result<SessionOutput> {
    let rcfg = RecvConfig {
        secret,
        ..RecvConfig::in_process(proto, "127.0.0.1:0".parse()?)
    };
    // The receiver outlives a Ctrl-C of the sender by a little: it still sends the results of what was sent.
    let rstop = Cancel::new();
    let receiver = Receiver::bind(rcfg, rstop.clone(), true)?;
    let addr = receiver.local_addr();
    let h = std::thread::spawn(move || receiver.serve());
    let out = sender::run_session(&make_cfg(addr), run, out, &cancel::process().child());
    rstop.cancel();
    let _ = h.join();
    out
}

/// The emulator's ground truth for the UDP data direction, beside the sockbench figure it should equal.
fn truth_cell(g: &LinkCounters, key: &str) -> Option<String> {
    use crate::link::{Direction, Proto};
    let c = g.get(Direction::AtoB, Proto::Udp);
    match key {
        // The receiving kernel drops a corrupted datagram on its UDP checksum unless the emulator fixed it.
        "lost" => Some(format!(
            "{} dropped",
            c.entered - (c.forwarded - c.corrupted)
        )),
        "duplicates" => Some(format!("{} duplicated", c.duplicated)),
        "reordered" => Some(format!("{} reordered", c.reordered)),
        "corrupt" => Some(format!("{} corrupted", c.corrupted)),
        "received" => Some(format!("{} delivered", c.forwarded - c.corrupted)),
        "sent" => Some(format!("{} entered", c.entered)),
        _ => None,
    }
}
