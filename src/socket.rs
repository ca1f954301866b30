//! Socket set-up (socket2): buffers read back and clamping reported, kernel timestamps, drop counters,
//! TCP_INFO, and batched datagram I/O (recvmmsg/sendmmsg) with buffers allocated once.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};

use crate::error::usage;
use crate::trace::Tracer;

// asm-generic socket option numbers (x86_64, aarch64, riscv): the libc crate does not export all of them at
// its root for every target.
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_TIMESTAMPNS: libc::c_int = 35;
const SO_RXQ_OVFL: libc::c_int = 40;

/// Receive buffer we ask for on UDP receivers: room for bursts at high rates.
pub const UDP_RCVBUF: usize = 8 << 20;

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: we pass a pointer to an int we own and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Turn "address in use" into a usage error that says what to do; other bind errors keep their cause.
fn bind_error(
    e: io::Error,
    proto: crate::sys::port_holder::Proto,
    addr: SocketAddr,
) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        usage(crate::sys::port_holder::addr_in_use_message(proto, addr))
    } else if e.kind() == io::ErrorKind::AddrNotAvailable {
        usage(format!("cannot listen on {addr}: no interface of this host has that address; use --listen 0.0.0.0:{}", addr.port()))
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        usage(format!("cannot listen on {addr}: permission denied (ports below 1024 need root); pick another port"))
    } else {
        anyhow::Error::new(e).context(format!("cannot listen on {addr}"))
    }
}

fn family(a: SocketAddr) -> &'static str {
    if a.is_ipv6() {
        "AF_INET6"
    } else {
        "AF_INET"
    }
}

fn local(s: &Socket) -> String {
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// socket(): a new descriptor of the address's family (TCP for streams, UDP for datagrams), traced.
fn traced_socket(tr: &Tracer, addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let (name, proto) = if ty == Type::STREAM {
        ("SOCK_STREAM", SockProto::TCP)
    } else {
        ("SOCK_DGRAM", SockProto::UDP)
    };
    tr.call(
        "socket",
        -1,
        || format!("{} {name}", family(addr)),
        || Socket::new(Domain::for_address(addr), ty, Some(proto)),
        |s| format!("fd {}", s.as_raw_fd()),
    )
}

/// One traced setsockopt of an int option.
/// One traced SOL_SOCKET setsockopt of an int option.
fn traced_opt(
    tr: &Tracer,
    fd: RawFd,
    name: &str,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    tr.call(
        "setsockopt",
        fd,
        || format!("{name}={v}"),
        || setsockopt_int(fd, libc::SOL_SOCKET, opt, v),
        |_| "0".into(),
    )
}

/// A listening TCP socket (SO_REUSEADDR, so a restarted receiver does not wait out TIME_WAIT; SO_REUSEPORT
/// when asked, so several receivers share the port and the kernel spreads connections between them).
pub fn tcp_listener(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
    tr: &Tracer,
) -> anyhow::Result<TcpListener> {
    let s = traced_socket(tr, addr, Type::STREAM)?;
    let fd = s.as_raw_fd();
    tr.call(
        "setsockopt",
        fd,
        || "SO_REUSEADDR=1".into(),
        || s.set_reuse_address(true),
        |_| "0".into(),
    )?;
    if reuse_port {
        tr.call(
            "setsockopt",
            fd,
            || "SO_REUSEPORT=1".into(),
            || s.set_reuse_port(true),
            |_| "0".into(),
        )?;
    }
    if addr.is_ipv6() {
        // Let [::] receivers take IPv4 senders too.
        let _ = s.set_only_v6(false);
    }
    let proto = crate::sys::port_holder::Proto::Tcp;
    tr.call(
        "bind",
        fd,
        || addr.to_string(),
        || s.bind(&addr.into()),
        |_| format!("0 (bound {})", local(&s)),
    )
    .map_err(|e| bind_error(e, proto, addr))?;
    tr.call(
        "listen",
        fd,
        || format!("backlog {backlog}"),
        || s.listen(backlog),
        |_| "0".into(),
    )
    .map_err(|e| bind_error(e, proto, addr))?;
    Ok(s.into())
}

/// A UDP receiving socket: large receive buffer, kernel receive timestamps, and the kernel's drop counter.
/// Returns the socket and the receive buffer the kernel actually granted. No listen, no accept: a datagram
/// socket just receives whatever is addressed to it.
pub fn udp_receiver(addr: SocketAddr, tr: &Tracer) -> anyhow::Result<(UdpSocket, usize)> {
    let s = traced_socket(tr, addr, Type::DGRAM)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    let fd = s.as_raw_fd();
    tr.call(
        "bind",
        fd,
        || addr.to_string(),
        || s.bind(&addr.into()),
        |_| format!("0 (bound {})", local(&s)),
    )
    .map_err(|e| bind_error(e, crate::sys::port_holder::Proto::Udp, addr))?;
    // As root, SO_RCVBUFFORCE passes net.core.rmem_max; otherwise the kernel clamps SO_RCVBUF, and we say so.
    if traced_opt(tr, fd, "SO_RCVBUFFORCE", SO_RCVBUFFORCE, UDP_RCVBUF as i32).is_err() {
        traced_opt(tr, fd, "SO_RCVBUF", libc::SO_RCVBUF, UDP_RCVBUF as i32)?;
    }
    let granted = s.recv_buffer_size()?;
    traced_opt(tr, fd, "SO_TIMESTAMPNS", SO_TIMESTAMPNS, 1)?;
    traced_opt(tr, fd, "SO_RXQ_OVFL", SO_RXQ_OVFL, 1)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok((s.into(), granted))
}

/// A UDP sending socket connected to `target` (so ICMP errors surface and no address is passed per send).
/// Binding to port 0 lets the OS pick the source port; the trace shows which.
pub fn udp_sender(target: SocketAddr, tr: &Tracer) -> anyhow::Result<UdpSocket> {
    let s = traced_socket(tr, target, Type::DGRAM)?;
    let fd = s.as_raw_fd();
    // Room for bursts; best effort (the kernel may clamp them), so failures are traced, not fatal.
    let _ = traced_opt(tr, fd, "SO_SNDBUF", libc::SO_SNDBUF, 4 << 20);
    let _ = traced_opt(tr, fd, "SO_RCVBUF", libc::SO_RCVBUF, UDP_RCVBUF as i32);
    traced_opt(tr, fd, "SO_TIMESTAMPNS", SO_TIMESTAMPNS, 1)?;
    let any: SocketAddr = if target.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    tr.call(
        "bind",
        fd,
        || format!("{any} (any port)"),
        || s.bind(&any.into()),
        |_| format!("0 (OS picked {})", local(&s)),
    )?;
    tr.call(
        "connect",
        fd,
        || format!("{target} (sets the default destination; sends nothing)"),
        || s.connect(&target.into()),
        |_| "0".into(),
    )
    .map_err(|e| connect_error(e, target))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(s.into())
}

/// Connect a TCP socket and time the handshake (connect() returns when the SYN-ACK arrived). The OS picks
/// the client's port; the trace shows which.
pub fn tcp_connect(
    target: SocketAddr,
    timeout: Duration,
    tr: &Tracer,
) -> anyhow::Result<(TcpStream, Duration)> {
    let s = traced_socket(tr, target, Type::STREAM)?;
    let fd = s.as_raw_fd();
    let t0 = Instant::now();
    match tr.call(
        "connect",
        fd,
        || target.to_string(),
        || s.connect_timeout(&target.into(), timeout),
        |_| format!("0 (from {}, port picked by the OS)", local(&s)),
    ) {
        Ok(()) => Ok((s.into(), t0.elapsed())),
        Err(e) => Err(connect_error(e, target)),
    }
}

/// Unreachable receivers are the user's to fix: say what to check.
pub fn connect_error(e: io::Error, target: SocketAddr) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => usage(format!(
            "nothing listens on {target}: start `sockbench tcp recv` or `sockbench udp recv` there first, or check the port"
        )),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => usage(format!(
            "no answer from {target} within the connect timeout: check the address, routes and firewalls"
        )),
        _ if matches!(e.raw_os_error(), Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EADDRNOTAVAIL)) => {
            usage(format!("{target} is unreachable from this host ({e}): check the address and routes"))
        }
        _ => anyhow::Error::new(e).context(format!("cannot connect to {target}")),
    }
}

/// Retransmitted segments of a TCP connection so far (TCP_INFO tcpi_total_retrans).
pub fn tcp_retransmits(s: &TcpStream) -> Option<u64> {
    // SAFETY: getsockopt writes at most `len` bytes into the tcp_info we own.
    unsafe {
        let mut info: libc::tcp_info = zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        );
        (rc == 0).then_some(info.tcpi_total_retrans as u64)
    }
}

/// Has the peer closed (or reset) this connection? Non-blocking: looks at what is queued without taking it.
pub fn peer_closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: recv into a one-byte buffer we own; MSG_PEEK|MSG_DONTWAIT neither consumes nor blocks.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr() as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
        || (n < 0
            && !matches!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ))
}

/// Wait until `fd` is readable (or a listener has a connection), at most `timeout`.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) > 0 }
}

/// Make this thread's sleeps wake within ~1 µs of the deadline instead of the default 50 µs slack.
pub fn tight_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

const CMSG_SPACE: usize = 128;

/// One received datagram out of a batch.
pub struct Datagram<'a> {
    pub data: &'a mut [u8],
    pub from: Option<SocketAddr>,
    /// Kernel receive time, CLOCK_REALTIME ns (SO_TIMESTAMPNS).
    pub kernel_ns: Option<i64>,
    /// The socket's cumulative drop counter when this datagram was queued (SO_RXQ_OVFL).
    pub drops: Option<u32>,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
}

/// recvmmsg with all buffers allocated once; the kernel fills up to `n` datagrams per call.
pub struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u8; CMSG_SPACE]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the struct's own heap buffers, which move with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        let mut b = RecvBatch {
            bufs: vec![0; n * slot],
            slot,
            iov: Vec::with_capacity(n),
            // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
            names: vec![unsafe { zeroed() }; n],
            ctrl: vec![[0; CMSG_SPACE]; n],
            hdrs: Vec::with_capacity(n),
        };
        for i in 0..n {
            b.iov.push(libc::iovec {
                iov_base: b.bufs[i * slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: slot,
            });
        }
        for i in 0..n {
            // SAFETY: zeroed mmsghdr, then pointers into our own buffers.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut b.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = &mut b.names[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_control = b.ctrl[i].as_mut_ptr() as *mut libc::c_void;
            b.hdrs.push(h);
        }
        b
    }

    /// Receive up to n datagrams: blocks for the first (bounded by the socket's read timeout), then takes what
    /// is queued. Ok(0) on timeout.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            let _ = i;
        }
        // SAFETY: every header points into buffers owned by self, sized as declared.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    /// Datagram i of the last `recv`.
    pub fn get(&mut self, i: usize) -> Datagram<'_> {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let mut kernel_ns = None;
        let mut drops = None;
        // SAFETY: the kernel wrote msg_controllen bytes of well-formed cmsgs into our control buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                    kernel_ns = Some(ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64);
                } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_RXQ_OVFL {
                    drops = Some(std::ptr::read_unaligned(data as *const u32));
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        let namelen = h.msg_hdr.msg_namelen;
        let from = if namelen > 0 {
            // SAFETY: the kernel wrote a sockaddr of namelen bytes into names[i].
            unsafe { SockAddr::new(self.names[i], namelen) }.as_socket()
        } else {
            None
        };
        let data = &mut self.bufs[i * self.slot..i * self.slot + len];
        Datagram {
            data,
            from,
            kernel_ns,
            drops,
            truncated,
        }
    }
}

/// sendmmsg on a connected socket, with all buffers allocated once.
pub struct SendBatch {
    bufs: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// `n` slots, each a copy of `template`.
    pub fn new(n: usize, template: &[u8]) -> SendBatch {
        let slot = template.len();
        let mut bufs = Vec::with_capacity(n * slot);
        for _ in 0..n {
            bufs.extend_from_slice(template);
        }
        let mut b = SendBatch {
            bufs,
            slot,
            lens: vec![slot; n],
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        };
        for i in 0..n {
            b.iov.push(libc::iovec {
                iov_base: b.bufs[i * slot..].as_mut_ptr() as *mut libc::c_void,
                iov_len: slot,
            });
        }
        for i in 0..n {
            // SAFETY: zeroed mmsghdr, then a pointer to our own iovec.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut b.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    /// Make slot i send only its first `len` bytes (mixed sizes); returns that prefix.
    pub fn set_len(&mut self, i: usize, len: usize) -> &mut [u8] {
        let len = len.min(self.slot);
        self.lens[i] = len;
        &mut self.bufs[i * self.slot..i * self.slot + len]
    }

    /// Send slots [from, to). Returns how many the kernel took (at least one) or the error of the first.
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        for i in from..to {
            self.iov[i].iov_len = self.lens[i];
        }
        loop {
            // SAFETY: headers from..to point into our own buffers.
            let rc = unsafe {
                libc::sendmmsg(fd, self.hdrs[from..].as_mut_ptr(), (to - from) as u32, 0)
            };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_move_datagrams_with_timestamps() {
        let tr = Tracer::on("test");
        let (rx, granted) = udp_receiver("127.0.0.1:0".parse().unwrap(), &tr).unwrap();
        assert!(granted > 0);
        let tx = udp_sender(rx.local_addr().unwrap(), &tr).unwrap();
        let calls: Vec<String> = tr.events().iter().map(|e| e.call.clone()).collect();
        // The receiver: socket, bind, options; never listen or accept. The sender connects (no packet sent).
        assert_eq!(
            calls
                .iter()
                .filter(|c| *c == "listen" || *c == "accept")
                .count(),
            0
        );
        assert_eq!(calls.iter().filter(|c| *c == "bind").count(), 2);
        let mut sb = SendBatch::new(8, &[7u8; 100]);
        for i in 0..8 {
            sb.slot_mut(i)[0] = i as u8;
        }
        let mut sent = 0;
        while sent < 8 {
            sent += sb.send(tx.as_raw_fd(), sent, 8).unwrap();
        }
        let mut rb = RecvBatch::new(16, 2048);
        let mut got = vec![];
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 8 && Instant::now() < deadline {
            let n = rb.recv(rx.as_raw_fd()).unwrap();
            for i in 0..n {
                let d = rb.get(i);
                assert_eq!(d.data.len(), 100);
                assert!(d.kernel_ns.unwrap() > 1_600_000_000_000_000_000);
                assert_eq!(d.from, Some(tx.local_addr().unwrap()));
                assert!(!d.truncated);
                got.push(d.data[0]);
            }
        }
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
    }
}
