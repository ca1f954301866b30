//! Network namespaces: moving the calling thread into one (setns).

use std::io;
use std::os::fd::AsFd;

use nix::sched::{setns, CloneFlags};

/// Move the calling thread (only it) into the network namespace `ns` refers to, e.g. an open
/// /run/netns/NAME. Threads it spawns afterwards start in that namespace. Needs CAP_SYS_ADMIN.
pub fn enter_netns(ns: impl AsFd) -> io::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_file_that_is_not_a_namespace() {
        // Runs unprivileged too: the kernel checks the descriptor's type (EINVAL) before the capability.
        let f = tempfile::tempfile().unwrap();
        let handle = std::thread::spawn(move || enter_netns(&f));
        let e = handle.join().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    }
}
