//! sockbench: paired senders and receivers that show, with exact measurements, what TCP guarantees (every byte,
//! once, in order) and UDP does not (loss, duplication, reordering), and what each costs in latency.
//!
//! `run` is the whole program; `main.rs` only calls it, so tests run the tool in-process.

pub mod accounting;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod config;
pub mod control;
pub mod error;
pub mod experiments;
pub mod lab;
pub mod link;
pub mod pacing;
pub mod receiver;
pub mod report;
pub mod sender;
pub mod signal;
pub mod socket;
pub mod stats;
pub mod sys;
pub mod tcp;
pub mod trace;
pub mod traffic;
pub mod transport;
pub mod udp;
pub mod wire;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::cli::{Cli, Command, Role};
use crate::config::{RecvConfig, SendConfig};
use crate::error::{Outcome, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE};
use crate::signal::Stop;
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
                    let text = e.to_string();
                    let first = text
                        .lines()
                        .next()
                        .unwrap_or("bad arguments")
                        .trim_start_matches("error: ");
                    eprintln!("sockbench: {first} (see --help)");
                    EXIT_USAGE
                }
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Done) => EXIT_OK,
        Ok(Outcome::Interrupted) => EXIT_INTERRUPTED,
        Err(e) => {
            eprintln!("sockbench: {}", error::one_line(&e));
            error::exit_code(&e)
        }
    }
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Tcp { role } => run_role(Protocol::Tcp, role),
        Command::Udp { role } => run_role(Protocol::Udp, role),
        Command::Compare(a) => compare::run(&a),
        Command::Link(a) => {
            signal::install();
            link::run_cli(&a, signal::flag())?;
            Ok(if signal::interrupted() {
                Outcome::Interrupted
            } else {
                Outcome::Done
            })
        }
        Command::Ports(a) => {
            let report = experiments::share::run(&a)?;
            report.print(&mut std::io::stdout().lock())?;
            Ok(Outcome::Done)
        }
        Command::Backlog(a) => {
            experiments::backlog::execute(&a, &mut std::io::stdout().lock())?;
            Ok(Outcome::Done)
        }
    }
}

fn run_role(proto: Protocol, role: Role) -> anyhow::Result<Outcome> {
    match role {
        Role::Send(a) => {
            let cfg = SendConfig::from_args(proto, &a)?;
            let mut outputs = sender::Outputs::open(&cfg.output.dir)?;
            signal::install();
            let run = sender::RunInfo::new();
            let out = sender::run_session(&cfg, &run, outputs.dir(), Stop::new())?;
            outputs.write(&[&out])?;
            let mut stdout = std::io::stdout().lock();
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
            Ok(if out.interrupted {
                Outcome::Interrupted
            } else {
                Outcome::Done
            })
        }
        Role::Recv(a) => {
            let cfg = RecvConfig::from_args(proto, &a)?;
            signal::install();
            let receiver = receiver::Receiver::bind(cfg.clone(), Stop::new(), false)?;
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
            let s = receiver.serve()?;
            let _ = s;
            Ok(if signal::interrupted() {
                Outcome::Interrupted
            } else {
                Outcome::Done
            })
        }
    }
}
