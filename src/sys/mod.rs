//! Every foreign (system) call of the crate, behind safe functions: the rest of sockbench has no `unsafe`.
//!
//! nix is used where it wraps the call without costing speed (poll, setns, flock, prctl, clock_gettime,
//! socket options). Raw libc calls remain, each with a SAFETY comment and libc's named constants, where nix has
//! no wrapper (TCP_INFO, the TUN ioctl) or its wrapper does not fit the hot path (recvmmsg/sendmmsg: see
//! `mmsg.rs`). This module imports nothing from the rest of the crate, so anything may use it.

pub mod file_lock;
pub mod mmsg;
pub mod netns;
pub mod poll;
pub mod port_holder;
pub mod snmp;
pub mod socket;
pub mod tcp_info;
pub mod time;
pub mod tun;

pub use file_lock::FileLock;
pub use mmsg::{Datagram, RecvBatch, SendBatch};
pub use poll::wait_readable;
pub use tcp_info::{tcp_info, TcpInfo};

/// Is this process's effective user root?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
