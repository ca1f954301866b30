//! sockbench: paired senders and receivers that show, with exact measurements, what TCP guarantees (every byte,
//! once, in order) and UDP does not (loss, duplication, reordering), and what each costs in latency.
//!
//! `run` is the whole program; `main.rs` only calls it, so tests run the tool in-process.

pub mod accounting;
pub mod auth;
pub mod cancel;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod config;
pub mod driver;
pub mod error;
pub mod experiments;
pub mod grammar;
pub mod lab;
pub mod link;
pub mod load;
pub mod pacing;
pub mod proto;
pub mod report;
pub mod session;
pub mod socket;
pub mod stats;
pub mod sys;
pub mod trace;
pub mod traffic;
pub mod wire;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::cli::Cli;
use crate::config::{Config, RecvConfig, SendConfig};
use crate::driver::{receiver, sender};
use crate::error::{Outcome, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE};
use crate::traffic::Protocol;

/// "sockbench X.Y.Z", announced in hellos and logs.
pub fn software() -> String {
    format!("sockbench {}", env!("CARGO_PKG_VERSION"))
}

/// Parse the arguments, run, print any error once, and return the exit code
/// (0 ok, 1 failure, 2 usage, 130 interrupted).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned());
        eprintln!(
            "sockbench: internal error{}: {}; please report it",
            info.location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default(),
            msg.unwrap_or_else(|| "panic".into())
        );
    }));
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            return match e.kind() {
                DisplayHelp | DisplayVersion => {
                    let _ = e.print();
                    EXIT_OK
                }
                DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    EXIT_USAGE
                }
                _ => {
                    eprintln!("sockbench: {} (see --help)", clap_one_line(&e));
                    EXIT_USAGE
                }
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Done) => EXIT_OK,
        Ok(Outcome::Interrupted) => EXIT_INTERRUPTED,
        Err(e) if error::is_stdout_closed(&e) => EXIT_OK,
        Err(e) => {
            eprintln!("sockbench: {}", error::one_line(&e));
            error::exit_code(&e)
        }
    }
}

/// clap's message on one line, keeping what makes its point: the missing argument's name on the line after
/// the heading, a "tip: a similar subcommand exists", the usage. Only the pointer to --help is dropped (we
/// add our own).
fn clap_one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut out = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        let lowered;
        let line = match line.strip_prefix("Usage: ") {
            Some(u) => {
                lowered = format!("usage: {u}");
                lowered.as_str()
            }
            None => line,
        };
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    if out.is_empty() {
        "bad arguments".into()
    } else {
        out
    }
}

/// Run a parsed command line: settings first (every usage error before anything starts), then the run.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match Config::from_cli(&cli)? {
        Config::Send(cfg) => run_send(&cfg),
        Config::Recv(cfg) => run_recv(cfg),
        Config::Compare(cfg) => compare::run(&cfg),
        Config::Link(settings) => {
            cancel::install_ctrl_c();
            let counts = link::run(&settings, cancel::process())?;
            write!(error::stdout(), "{}", counts.table())?;
            Ok(if cancel::interrupted() {
                Outcome::Interrupted
            } else {
                Outcome::Done
            })
        }
        Config::Ports(cfg) => {
            let report = experiments::share::run(&cfg)?;
            report.print(&mut error::stdout())?;
            Ok(Outcome::Done)
        }
        Config::Backlog(cfg) => {
            experiments::backlog::execute(&cfg, &mut error::stdout())?;
            Ok(Outcome::Done)
        }
    }
}

fn run_send(cfg: &SendConfig) -> anyhow::Result<Outcome> {
    let proto = cfg.protocol;
    let mut outputs = report::out::Outputs::open(&cfg.output.dir)?;
    cancel::install_ctrl_c();
    let run = report::out::RunInfo::new();
    let out = sender::run_session(cfg, &run, outputs.dir(), &cancel::process().child())?;
    outputs.write(&[out.files()])?;
    let mut stdout = error::stdout();
    writeln!(
        stdout,
        "sockbench {proto} send to {} (run {})",
        cfg.peer_name, run.run_id
    )?;
    report::table::print(&mut stdout, &[&out.report], None)?;
    if let Some(n) = &out.note {
        writeln!(stdout, "incomplete: {n}")?;
    }
    writeln!(stdout, "CSV: {}", outputs.summary_path().display())?;
    if let Some(f) = &out.failure {
        anyhow::bail!("{f}");
    }
    Ok(if out.interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}

fn run_recv(cfg: RecvConfig) -> anyhow::Result<Outcome> {
    let proto = cfg.protocol;
    cancel::install_ctrl_c();
    let receiver = receiver::Receiver::bind(cfg.clone(), cancel::process().child(), false)?;
    eprintln!(
        "sockbench {proto} recv: listening on {} ({}){}",
        receiver.local_addr(),
        match proto {
            Protocol::Tcp => "TCP: control and data",
            Protocol::Udp => "UDP data, TCP control on the same port number",
        },
        if cfg.once {
            "; exits after one session"
        } else {
            "; Ctrl-C to stop"
        }
    );
    receiver.serve()?;
    Ok(if cancel::interrupted() {
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}
