//! The one way to stop: a tree of cancellation tokens. Cancelling a token cancels everything below it, never
//! what is above; Ctrl-C cancels the process root, so every session, send loop and link stops, and each
//! writes what it measured (complete=false). A second Ctrl-C exits at once.
//!
//! A token is checked, never waited on: loops that block use short timeouts and look at it between them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Default)]
struct Node {
    cancelled: AtomicBool,
    parent: Option<Arc<Node>>,
}

/// A cancellation token. Clones share one node; `child` makes a new node below this one.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    node: Arc<Node>,
}

impl Cancel {
    /// A new root, cancelled only by itself.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token cancelled when it is, or when `self` (or anything above) is.
    pub fn child(&self) -> Cancel {
        Cancel {
            node: Arc::new(Node {
                cancelled: AtomicBool::new(false),
                parent: Some(self.node.clone()),
            }),
        }
    }

    pub fn cancel(&self) {
        self.node.cancelled.store(true, Ordering::Relaxed);
    }

    /// Is this token, or any above it, cancelled? A handful of loads: cheap enough for a send loop's batch.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        let mut n = Some(&self.node);
        while let Some(node) = n {
            if node.cancelled.load(Ordering::Relaxed) {
                return true;
            }
            n = node.parent.as_ref();
        }
        false
    }
}

/// The process root: what Ctrl-C cancels. Every driver's token descends from it.
pub fn process() -> &'static Cancel {
    static ROOT: OnceLock<Cancel> = OnceLock::new();
    ROOT.get_or_init(Cancel::new)
}

/// Has Ctrl-C been pressed?
pub fn interrupted() -> bool {
    process().is_cancelled()
}

/// Install the Ctrl-C (and SIGTERM) handler once per process; later calls are no-ops.
pub fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if interrupted() {
            eprintln!("sockbench: interrupted twice, exiting without the report");
            std::process::exit(crate::error::EXIT_INTERRUPTED);
        }
        process().cancel();
        eprintln!("sockbench: interrupted: writing what was measured so far (Ctrl-C again to quit at once)");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelling_reaches_down_never_up() {
        let root = Cancel::new();
        let session = root.child();
        let send = session.child();
        let other = root.child();
        send.cancel();
        assert!(send.is_cancelled());
        assert!(!session.is_cancelled() && !root.is_cancelled() && !other.is_cancelled());
        session.cancel();
        assert!(!other.is_cancelled());
        root.cancel();
        assert!(other.is_cancelled() && other.child().is_cancelled());
        let clone = other.clone();
        assert!(clone.is_cancelled());
    }
}
