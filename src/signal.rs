//! Ctrl-C only flips a flag; the normal path notices it, writes what was measured (complete=false) and exits
//! 130. A second Ctrl-C exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Install the handler once per process (later calls are no-ops).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("sockbench: interrupted twice, exiting without the report");
            std::process::exit(crate::error::EXIT_INTERRUPTED);
        }
        eprintln!("sockbench: interrupted: writing what was measured so far (Ctrl-C again to quit at once)");
    });
}

/// The Ctrl-C flag itself, for loops that take a plain `AtomicBool`.
pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// A stop request for one part of the run; also set by Ctrl-C and by its parent, if it has one.
#[derive(Clone, Default, Debug)]
pub struct Stop {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }
    /// A stop that can be set on its own, and is also set when `self` is.
    pub fn child(&self) -> Stop {
        Stop {
            own: Arc::new(AtomicBool::new(false)),
            parent: Some(self.own.clone()),
        }
    }
    pub fn set(&self) {
        self.own.store(true, Ordering::Relaxed);
    }
    #[inline]
    pub fn is_set(&self) -> bool {
        self.own.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
            || interrupted()
    }
}
