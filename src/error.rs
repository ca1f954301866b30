//! One error policy for the whole tool: usage errors (exit 2) are told apart from failures (exit 1), and a
//! reader that closed our standard output (`sockbench compare | head -1`) is no error at all (exit 0).

use std::fmt;
use std::io::{self, Write};

/// A mistake the user can fix by changing what they typed or where they pointed the tool: a bad value, an
/// unresolvable or unreachable host, a port in use, a receiver that refused the session. Exit code 2.
///
/// It travels inside `anyhow::Error` so deep code can raise it; `main` finds it again with `downcast_ref`.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Build a usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// How a run ended, mapped to the exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Ctrl-C: what was measured so far was written, marked `complete=false`.
    Interrupted,
}

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Standard output went away: whoever read it has what they wanted. Only writes to stdout carry it, so a
/// socket's broken pipe stays an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output for reports and tables: a broken pipe comes back marked [`StdoutClosed`].
pub struct Stdout(io::StdoutLock<'static>);

/// The locked standard output every subcommand writes its data through.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

fn mark_closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

/// True if the error is standard output closed by its reader (and so no failure).
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<StdoutClosed>()
            || e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// The exit code for an error: 0 when only our standard output was closed, 2 when the user can fix the
/// input, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if is_stdout_closed(err) {
        EXIT_OK
    } else if err
        .chain()
        .any(|e| e.downcast_ref::<UsageError>().is_some())
    {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// The one line printed for an error: the whole context chain, without a backtrace.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&usage("bad")), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("failed")), EXIT_FAILURE);
        let closed = anyhow::Error::new(mark_closed(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(exit_code(&closed.context("writing the table")), EXIT_OK);
        // A broken pipe anywhere else (a socket) is a failure.
        let socket = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(exit_code(&socket), EXIT_FAILURE);
        assert_eq!(one_line(&anyhow::anyhow!("a\nb")), "a b");
    }
}
