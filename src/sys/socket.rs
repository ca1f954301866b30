//! Socket options socket2 does not cover (typed nix sockopts, so no option number is spelled here) and a
//! non-consuming look at a TCP connection.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{setsockopt, sockopt, MsgFlags};

/// A SOL_SOCKET option with its value. Displays as a trace shows it: `SO_RCVBUF=8388608`, `SO_TIMESTAMPNS=1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOpt {
    /// Receive buffer in bytes; the kernel clamps it to net.core.rmem_max (and doubles it for overhead).
    RcvBuf(usize),
    /// Receive buffer past rmem_max; needs CAP_NET_ADMIN.
    RcvBufForce(usize),
    /// Send buffer in bytes, clamped to net.core.wmem_max.
    SndBuf(usize),
    /// Attach the kernel's receive time (CLOCK_REALTIME, ns) to every datagram.
    TimestampNs(bool),
    /// Attach the socket's cumulative drop count to datagrams once it is non-zero.
    RxqOvfl(bool),
    /// UDP GSO: every send is cut into datagrams of this many bytes (0: off). Linux 4.18+.
    UdpSegment(u16),
    /// UDP GRO: datagrams of one flow may arrive coalesced in one read, with their segment size. Linux 5.0+.
    UdpGro(bool),
}

impl SockOpt {
    pub fn name(self) -> &'static str {
        match self {
            SockOpt::RcvBuf(_) => "SO_RCVBUF",
            SockOpt::RcvBufForce(_) => "SO_RCVBUFFORCE",
            SockOpt::SndBuf(_) => "SO_SNDBUF",
            SockOpt::TimestampNs(_) => "SO_TIMESTAMPNS",
            SockOpt::RxqOvfl(_) => "SO_RXQ_OVFL",
            SockOpt::UdpSegment(_) => "UDP_SEGMENT",
            SockOpt::UdpGro(_) => "UDP_GRO",
        }
    }

    /// setsockopt on `fd`.
    pub fn set(self, fd: impl AsFd) -> io::Result<()> {
        let r = match self {
            SockOpt::RcvBuf(v) => setsockopt(&fd, sockopt::RcvBuf, &v),
            SockOpt::RcvBufForce(v) => setsockopt(&fd, sockopt::RcvBufForce, &v),
            SockOpt::SndBuf(v) => setsockopt(&fd, sockopt::SndBuf, &v),
            SockOpt::TimestampNs(on) => setsockopt(&fd, sockopt::ReceiveTimestampns, &on),
            SockOpt::RxqOvfl(on) => setsockopt(&fd, sockopt::RxqOvfl, &libc::c_int::from(on)),
            SockOpt::UdpSegment(v) => {
                setsockopt(&fd, sockopt::UdpGsoSegment, &libc::c_int::from(v))
            }
            SockOpt::UdpGro(on) => setsockopt(&fd, sockopt::UdpGroSegment, &on),
        };
        r.map_err(io::Error::from)
    }
}

impl fmt::Display for SockOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SockOpt::RcvBuf(v) | SockOpt::RcvBufForce(v) | SockOpt::SndBuf(v) => {
                write!(f, "{}={v}", self.name())
            }
            SockOpt::UdpSegment(v) => write!(f, "{}={v}", self.name()),
            SockOpt::TimestampNs(on) | SockOpt::RxqOvfl(on) | SockOpt::UdpGro(on) => {
                write!(f, "{}={}", self.name(), u8::from(on))
            }
        }
    }
}

/// Has the peer closed (or reset) this connection? Non-blocking: looks at what is queued without taking it.
pub fn peer_closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match nix::sys::socket::recv(
        s.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e, nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::getsockopt;
    use std::io::Write;
    use std::net::{TcpListener, UdpSocket};

    #[test]
    fn options_reach_the_socket() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        SockOpt::TimestampNs(true).set(&s).unwrap();
        assert!(getsockopt(&s, sockopt::ReceiveTimestampns).unwrap());
        SockOpt::RxqOvfl(true).set(&s).unwrap();
        assert_eq!(getsockopt(&s, sockopt::RxqOvfl).unwrap(), 1);
        SockOpt::RxqOvfl(false).set(&s).unwrap();
        assert_eq!(getsockopt(&s, sockopt::RxqOvfl).unwrap(), 0);
        // The kernel doubles what it grants (bookkeeping overhead); 64 KiB is under every default rmem_max.
        SockOpt::RcvBuf(64 << 10).set(&s).unwrap();
        assert_eq!(getsockopt(&s, sockopt::RcvBuf).unwrap(), 128 << 10);
        SockOpt::SndBuf(64 << 10).set(&s).unwrap();
        assert_eq!(getsockopt(&s, sockopt::SndBuf).unwrap(), 128 << 10);
        let _ = SockOpt::RcvBufForce(1 << 20).set(&s); // EPERM unless root: both are fine here.
        assert_eq!(SockOpt::RcvBufForce(8).to_string(), "SO_RCVBUFFORCE=8");
        assert_eq!(SockOpt::TimestampNs(true).to_string(), "SO_TIMESTAMPNS=1");
    }

    #[test]
    fn peer_closed_sees_fin_but_not_data() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert!(!peer_closed(&c));
        s.write_all(b"x").unwrap();
        // Bounded wait for the byte to arrive; peeking must not take it or call it a close.
        assert!(crate::sys::wait_readable(
            &c,
            std::time::Duration::from_secs(5)
        ));
        assert!(!peer_closed(&c));
        assert!(!peer_closed(&c));
        drop(s);
        let mut b = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &c, &mut b).unwrap(), 1);
        assert!(crate::sys::wait_readable(
            &c,
            std::time::Duration::from_secs(5)
        ));
        assert!(peer_closed(&c));
    }
}
