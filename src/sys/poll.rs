//! Waiting for descriptors: the crate's one poll, with nanosecond timeouts (ppoll).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

pub use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;

/// Wait until one of `fds` is ready or `timeout` passes; returns how many are ready (0 on timeout).
///
/// ppoll rather than poll: the link emulator releases packets on deadlines finer than a millisecond. A signal
/// arriving mid-wait counts as a timeout (Ok(0), no revents): every caller loops and looks at its flags anyway.
pub fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
    match nix::poll::ppoll(fds, Some(TimeSpec::from_duration(timeout)), None) {
        Ok(n) => Ok(n as usize),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Wait until `fd` is readable (or a listener has a connection), at most `timeout`. An error or hang-up on the
/// descriptor also ends the wait, so that the caller's read reports it instead of polling it again and again.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut p, timeout).is_ok_and(|n| n > 0) && p[0].revents().is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    #[test]
    fn times_out_then_sees_data() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t0 = Instant::now();
        assert!(!wait_readable(&rx, Duration::from_millis(20)));
        // The kernel never wakes a timed wait early.
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        assert!(wait_readable(&rx, Duration::from_secs(5)));
    }

    #[test]
    fn reports_which_descriptor_is_ready() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        busy.send_to(b"x", busy.local_addr().unwrap()).unwrap();
        let mut fds = [
            PollFd::new(quiet.as_fd(), PollFlags::POLLIN),
            PollFd::new(busy.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT),
        ];
        assert_eq!(poll(&mut fds, Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(fds[0].revents(), Some(PollFlags::empty()));
        assert_eq!(
            fds[1].revents(),
            Some(PollFlags::POLLIN | PollFlags::POLLOUT)
        );
    }
}
