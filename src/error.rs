//! One error policy for the whole tool: usage errors (exit 2) are told apart from failures (exit 1).

use std::fmt;

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

/// The exit code for an error: 2 when the user can fix the input, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err
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
