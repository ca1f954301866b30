//! `sockbench compare`: a TCP session and a UDP session with identical traffic, receiver and sender in one
//! process, printed side by side. On loopback, or through a private two-host lab when the process may build
//! one, its hosts joined by tc netem (where the kernel has it) or by the built-in link emulator (`--engine`).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Secret;
use crate::cancel::{self, Cancel};
use crate::config::{CompareConfig, PathRequest, RecvConfig, SendConfig};
use crate::driver::receiver::Receiver;
use crate::driver::sender::{self, SessionOutput};
use crate::error::{self, Outcome};
use crate::lab::{Engine, GroundTruth, Host, Lab, LabConfig};
use crate::link::Impairment;
use crate::report::out::{OutDir, Outputs, RunInfo};
use crate::report::table;
use crate::traffic::{Protocol, Traffic};

pub fn run(cfg: &CompareConfig) -> anyhow::Result<Outcome> {
    let (traffic, output) = (&cfg.traffic, &cfg.output);
    // The path first: a refused impairment must not leave an empty summary.csv behind.
    let mut path = PathPlan::choose(cfg)?;
    let mut traffic = traffic.clone();
    if matches!(&path, PathPlan::Lab { lab, .. } if lab.engine() == Engine::Netem) {
        // netem impairs what it is given: a GSO buffer would be one packet to it, its messages lost together.
        traffic.gso = false;
    }
    let traffic = &traffic;
    let mut outputs = Outputs::open(&output.dir)?;
    cancel::install_ctrl_c();
    let run = RunInfo::new();
    let mut stdout = error::stdout();
    writeln!(stdout, "{}", header(traffic, &path))?;
    stdout.flush()?;
    let mut sessions: Vec<SessionOutput> = vec![];
    let traffic = path.with_load_linger(traffic);
    for proto in [Protocol::Tcp, Protocol::Udp] {
        if cancel::interrupted() {
            break;
        }
        let t = traffic.clone();
        let o = output.clone();
        let secret = cfg.secret.clone();
        path.prepare(proto)?;
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
    // Where the link's corrupted packets show: as checksum drops, unless their checksums were made valid.
    let fixed = matches!(&cfg.path, PathRequest::Impaired(i) if i.corrupt_fix_checksum);
    let extra_fn = |key: &str| {
        ground_truth
            .as_ref()
            .and_then(|g| truth_cell(g, key, fixed))
    };
    let extra = ground_truth
        .as_ref()
        .filter(|g| counts_udp_alone(g, cfg))
        .map(|g| table::Extra {
            heading: match g {
                GroundTruth::Emulator(_) => "link (UDP)".into(),
                GroundTruth::Netem(_) => "netem (UDP)".into(),
            },
            cell: &extra_fn,
        });
    table::print(&mut stdout, &reports, extra.as_ref())?;
    print_notes(&mut stdout, ground_truth.as_ref(), &sessions)?;
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

/// Under the table: what the link column counts, and why a session is incomplete.
fn print_notes(
    out: &mut impl Write,
    ground_truth: Option<&GroundTruth>,
    sessions: &[SessionOutput],
) -> std::io::Result<()> {
    if let Some(n) = ground_truth.and_then(link_note) {
        writeln!(out, "{n}")?;
    }
    for s in sessions {
        if let Some(n) = &s.note {
            writeln!(out, "{}: incomplete: {n}", s.report.protocol.to_uppercase())?;
        }
    }
    Ok(())
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
    ) + &load_header(traffic)
}

/// --load: what shares the path, and from when.
fn load_header(t: &Traffic) -> String {
    if t.idle_probes == 0 {
        return String::new();
    }
    format!(
        "; load: {} bulk TCP flow{} ({}) {} beside messages {}.., after an idle phase of {} alone",
        t.load_flows,
        if t.load_flows == 1 { "" } else { "s" },
        t.load_cc,
        match t.load_direction {
            crate::load::LoadDirection::Up => "sender→receiver",
            crate::load::LoadDirection::Down => "receiver→sender",
            crate::load::LoadDirection::Both => "both ways",
        },
        t.idle_probes,
        t.idle_probes
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

/// Where compare's traffic goes: loopback, or the private two-host lab with netem or the emulator between the
/// hosts.
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
        /// `--engine` was given (so the record names the engine).
        engine_chosen: bool,
        /// Why compare chose the emulator by itself, when netem was not it.
        engine_note: Option<String>,
    },
}

/// The engine compare uses when `--engine` is not given: netem where the kernel has it and it can apply the
/// impairment, else the emulator, with the reason. `Err`: `--engine netem` where the kernel has no netem.
fn choose_engine(
    cfg: &CompareConfig,
    impairment: &Impairment,
) -> anyhow::Result<(Engine, Option<String>)> {
    // --aqm fq_codel is built from the kernel's qdiscs: netem's engine, or nothing.
    let netem_only = impairment.fq_codel;
    match cfg.engine {
        Some(Engine::Emulator) => Ok((Engine::Emulator, None)),
        Some(Engine::Netem) => match Lab::engine_available(Engine::Netem) {
            Ok(()) => Ok((Engine::Netem, None)),
            Err(why) => Err(error::usage(format!(
                "--engine netem: {why}: run compare in a VM whose kernel has it (scripts/vm.sh setup, then \
                 scripts/vm.sh run -- target/release/sockbench compare --engine netem ...), or use --engine \
                 emulator"
            ))),
        },
        None if netem_only => match Lab::engine_available(Engine::Netem) {
            Ok(()) => Ok((Engine::Netem, None)),
            Err(why) => Err(error::usage(format!(
                "--aqm fq_codel needs the netem engine, and here there is none ({why}): run compare in a VM \
                 whose kernel has it (scripts/vm.sh run -- target/release/sockbench compare ...)"
            ))),
        },
        None => Ok(if let Err(why) = Lab::engine_available(Engine::Netem) {
            (Engine::Emulator, Some(why))
        } else if let Some(why) = crate::lab::netem::refusal(impairment) {
            (Engine::Emulator, Some(why))
        } else if cfg.seed.is_some() {
            (
                Engine::Emulator,
                Some("a seed asks for repeatable decisions, which only the emulator makes".into()),
            )
        } else {
            (Engine::Netem, None)
        }),
    }
}

impl PathPlan {
    fn choose(cfg: &CompareConfig) -> anyhow::Result<PathPlan> {
        let (impairment, defaulted) = match &cfg.path {
            PathRequest::Loopback => return Ok(PathPlan::Loopback { note: None }),
            PathRequest::Auto => (default_impairment(), true),
            PathRequest::Impaired(i) => (i.clone(), false),
        };
        let engine = match Lab::privileged() {
            Ok(()) => {
                let (engine, note) = choose_engine(cfg, &impairment)?;
                Lab::engine_available(engine).map(|()| (engine, note))
            }
            Err(why) => Err(why),
        };
        let (engine, engine_note) = match engine {
            Ok(e) => e,
            Err(why) => {
                if !defaulted {
                    // Asked for an impairment it cannot apply: a run without it would record a clean path
                    // under the user's label, so refuse and say what would make it work.
                    let flags = match impairment.to_flags() {
                        f if f.is_empty() => "the impairment flags".to_string(),
                        f => format!("the impairment ({f})"),
                    };
                    return Err(error::usage(format!(
                        "cannot apply {flags}: the private lab cannot be built here ({why}); or pass \
                         --loopback (without impairment flags) to run on loopback"
                    )));
                }
                eprintln!(
                    "sockbench: running on loopback without impairment: the private lab cannot be built here \
                     ({why})"
                );
                return Ok(PathPlan::Loopback {
                    note: Some("no privilege for the lab".into()),
                });
            }
        };
        let seed = cfg.seed.unwrap_or_else(crate::link::fresh_seed);
        let lab = Lab::up(LabConfig {
            load: cfg.traffic.load_flows > 0,
            a_to_b: impairment.clone(),
            b_to_a: Impairment::default(),
            seed,
            engine,
        })?;
        Ok(PathPlan::Lab {
            lab: Box::new(lab),
            impairment,
            seed,
            defaulted,
            engine_chosen: cfg.engine.is_some(),
            engine_note,
        })
    }

    /// The `impairment` column: the flags that repeat this run's impairment (with the emulator's seed; netem
    /// has none, and its runs always name their engine); empty when nothing was impaired.
    fn record(&self) -> String {
        match self {
            PathPlan::Lab {
                lab,
                impairment,
                seed,
                engine_chosen,
                ..
            } if !impairment.is_none() => match lab.engine() {
                Engine::Netem => format!("--engine netem {}", impairment.to_flags()),
                Engine::Emulator if *engine_chosen => {
                    format!("--engine emulator {} --seed {seed}", impairment.to_flags())
                }
                Engine::Emulator => format!("{} --seed {seed}", impairment.to_flags()),
            },
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
                engine_note,
                ..
            } => {
                let (through, randomness) = match lab.engine() {
                    Engine::Netem => (
                        format!(
                            "tc netem on a veth pair (engine netem, on each session's data port: {}/tcp, \
                             {}/udp)",
                            crate::lab::TCP_PORT,
                            crate::lab::UDP_PORT
                        ),
                        "netem's own random draws (no seed)".to_string(),
                    ),
                    Engine::Emulator => (
                        match engine_note {
                            Some(why) => {
                                format!("the built-in link emulator (engine emulator: {why})")
                            }
                            None => "the built-in link emulator (engine emulator)".to_string(),
                        },
                        format!("seed {seed}"),
                    ),
                };
                format!(
                    "two-host lab {} → {} through {through}, {} sender→receiver, {randomness}{}",
                    lab.addr(Host::A),
                    lab.addr(Host::B),
                    impairment.describe(),
                    if *defaulted {
                        " (the default; choose with --loss, --delay, --jitter, --reorder, --duplicate, ...)"
                    } else {
                        ""
                    }
                )
            }
        }
    }

    /// --load through a rate limit: the receiver waits for stragglers at least as long as the limiter's full
    /// queue takes to drain (plus the path's delay and a second), or probes still queued behind the load when
    /// the sending ends would count as lost. None: the session's own linger will do.
    fn with_load_linger(&self, t: &Traffic) -> Traffic {
        let mut t = t.clone();
        let PathPlan::Lab { impairment: i, .. } = self else {
            return t;
        };
        if let Some(rate) = i
            .rate_bps
            .filter(|_| t.idle_probes > 0 && t.linger.is_none())
        {
            // Full-size packets: the queue's worst case.
            let drain_s = i.queue_limit() as f64 * 1500.0 * 8.0 / rate.max(1) as f64;
            let drain = Duration::try_from_secs_f64(drain_s.min(60.0)).unwrap_or_default();
            t.linger = Some(drain + 2 * (i.delay + i.jitter) + Duration::from_secs(1));
        }
        t
    }

    /// Make the path ready for a session of `proto` (netem impairs one session's port at a time).
    fn prepare(&mut self, proto: Protocol) -> anyhow::Result<()> {
        match self {
            PathPlan::Loopback { .. } => Ok(()),
            PathPlan::Lab { lab, .. } => lab.steer(proto),
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
                // The lab's fixed port for the protocol: netem's filter steers the data by it.
                let listen = SocketAddr::new(lab.addr(Host::B), crate::lab::data_port(proto));
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

    /// Tear the lab down (if any) and return what its link counted.
    fn finish(self) -> anyhow::Result<Option<GroundTruth>> {
        Ok(match self {
            PathPlan::Loopback { .. } => None,
            PathPlan::Lab { lab, .. } => Some(lab.finish()?),
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

/// Whether the link's counts are the UDP session's own: netem keeps no per-protocol counts, so with --load
/// (its TCP flows share the UDP session's netem) or fq_codel (which drops in its own qdisc) they are not, and
/// the column is left out. The emulator counts per protocol and is always the UDP session's.
fn counts_udp_alone(g: &GroundTruth, cfg: &CompareConfig) -> bool {
    let fq_codel = matches!(&cfg.path, PathRequest::Impaired(i) if i.fq_codel);
    matches!(g, GroundTruth::Emulator(_)) || (cfg.traffic.load_flows == 0 && !fq_codel)
}

/// Said under the table when the link column counts something other than messages: datagrams larger than
/// the path MTU cross as IP fragments, and the link sees packets.
fn link_note(g: &GroundTruth) -> Option<String> {
    use crate::link::{Direction, Proto};
    let GroundTruth::Emulator(g) = g else {
        return None;
    };
    let c = g.get(Direction::AtoB, Proto::Udp);
    (c.fragments > 0).then(|| {
        format!(
            "link (UDP) counts IP packets: {} of the {} that entered were fragments of datagrams larger than the \
             path MTU. A message is lost when any one of its fragments is, and one corrupted fragment fails its \
             whole datagram's checksum, so the link's packet counts are not message counts.",
            c.fragments, c.entered
        )
    })
}

/// The link's own count for the UDP data direction, beside the sockbench figure it should equal.
fn truth_cell(g: &GroundTruth, key: &str, fixed_checksums: bool) -> Option<String> {
    use crate::link::{Direction, Proto};
    match g {
        GroundTruth::Emulator(g) => {
            let c = g.get(Direction::AtoB, Proto::Udp);
            // With fragments the link's counts are of packets, not messages (see `link_note`).
            let unit = if c.fragments > 0 { " packets" } else { "" };
            let not_out = c.entered.saturating_sub(c.forwarded);
            // The link cannot make a fragment's checksum valid again (it never reassembles).
            let fixed_checksums = fixed_checksums && c.fragments == 0;
            match key {
                // A corrupted packet is the UDP row's loss too (its checksum fails, or with a fixed checksum
                // sockbench's CRC refuses it), so it is named beside the drops, never folded into them.
                "lost" if c.corrupted > 0 => Some(format!(
                    "{not_out}{unit} dropped + {} corrupted",
                    c.corrupted
                )),
                "lost" => Some(format!("{not_out}{unit} dropped")),
                "duplicates" => Some(format!("{}{unit} duplicated", c.duplicated)),
                "reordered" => Some(format!("{}{unit} reordered", c.reordered)),
                // Corrupted packets reach sockbench only with valid checksums; else the kernel drops them.
                "corrupt" if fixed_checksums => Some(format!("{}{unit} corrupted", c.corrupted)),
                "udp_checksum_drops" if !fixed_checksums && c.corrupted > 0 => {
                    Some(format!("{}{unit} corrupted", c.corrupted))
                }
                "path_lost" => Some(format!("{not_out}{unit} dropped")),
                "received" => Some(format!(
                    "{}{unit} delivered",
                    c.forwarded.saturating_sub(c.corrupted)
                )),
                "sent" => Some(format!("{}{unit} entered", c.entered)),
                _ => None,
            }
        }
        GroundTruth::Netem(n) => {
            use crate::lab::netem::col;
            let c = n.cells(Direction::AtoB, Proto::Udp);
            let imp = n.dirs[Direction::AtoB as usize]
                .as_ref()
                .map(|d| &d.impairment)?;
            let show = |i: usize, what: &str| c[i].map(|v| format!("{v} {what}"));
            match key {
                "lost" => show(col::DROPPED, "dropped"),
                "duplicates" => show(col::DUPLICATED, "duplicated"),
                // netem counts the packets it sent ahead, not the ones they overtook.
                "reordered" if imp.reorder > 0.0 => show(col::REORDERED, "sent ahead"),
                "reordered" => show(col::REORDERED, "reordered"),
                "corrupt" => show(col::CORRUPTED, "corrupted"),
                "received" if imp.duplicate == 0.0 && imp.corrupt == 0.0 => {
                    show(col::FORWARDED, "delivered")
                }
                "sent" => show(col::ENTERED, "entered"),
                _ => None,
            }
        }
    }
}
