//! Socket set-up (socket2), traced: buffers read back and clamping reported, kernel timestamps, drop
//! counters, and the errors users read when bind or connect fails. The system calls beyond socket2 live in
//! `crate::sys`; the batch I/O and connection probes the data path uses are re-exported from there.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProto, Socket, Type};

use crate::error::usage;
use crate::sys;
use crate::sys::port_holder::{addr_in_use_message, Proto};
use crate::sys::socket::SockOpt;
use crate::trace::Tracer;

pub use crate::sys::socket::peer_closed;
pub use crate::sys::{wait_readable, Datagram, RecvBatch, SendBatch};

/// Receive buffer we ask for on UDP receivers: room for bursts at high rates.
pub const UDP_RCVBUF: usize = 8 << 20;

/// Turn "address in use" into a usage error that says what to do; other bind errors keep their cause.
fn bind_error(e: io::Error, proto: Proto, addr: SocketAddr, reuse_port: bool) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        usage(addr_in_use_message(proto, addr, reuse_port))
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

/// One traced SOL_SOCKET setsockopt.
fn traced_opt(tr: &Tracer, s: &Socket, opt: SockOpt) -> io::Result<()> {
    tr.call(
        "setsockopt",
        s.as_raw_fd(),
        || opt.to_string(),
        || opt.set(s),
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
    let proto = Proto::Tcp;
    tr.call(
        "bind",
        fd,
        || addr.to_string(),
        || s.bind(&addr.into()),
        |_| format!("0 (bound {})", local(&s)),
    )
    .map_err(|e| bind_error(e, proto, addr, reuse_port))?;
    tr.call(
        "listen",
        fd,
        || format!("backlog {backlog}"),
        || s.listen(backlog),
        |_| "0".into(),
    )
    .map_err(|e| bind_error(e, proto, addr, reuse_port))?;
    Ok(s.into())
}

/// A UDP socket on `addr` that shares its port (SO_REUSEPORT), with a large receive buffer, kernel receive
/// timestamps and the kernel's drop counter: the receiver's shared socket and each session's own.
fn udp_on_port(addr: SocketAddr, tr: &Tracer) -> io::Result<Socket> {
    let s = traced_socket(tr, addr, Type::DGRAM)?;
    if addr.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    let fd = s.as_raw_fd();
    // So each session can have a socket of its own on this port, connected to its sender: the kernel gives a
    // connected socket its 4-tuple's datagrams, and its own queue and drop counter (exact loss attribution).
    // Another receiver cannot share the port by accident: the TCP control listener of the same number is
    // bound without SO_REUSEPORT and refuses it.
    tr.call(
        "setsockopt",
        fd,
        || "SO_REUSEPORT=1".into(),
        || s.set_reuse_port(true),
        |_| "0".into(),
    )?;
    tr.call(
        "bind",
        fd,
        || addr.to_string(),
        || s.bind(&addr.into()),
        |_| format!("0 (bound {})", local(&s)),
    )?;
    // As root, SO_RCVBUFFORCE passes net.core.rmem_max; otherwise the kernel clamps SO_RCVBUF, and we say so.
    if traced_opt(tr, &s, SockOpt::RcvBufForce(UDP_RCVBUF)).is_err() {
        traced_opt(tr, &s, SockOpt::RcvBuf(UDP_RCVBUF))?;
    }
    traced_opt(tr, &s, SockOpt::TimestampNs(true))?;
    traced_opt(tr, &s, SockOpt::RxqOvfl(true))?;
    Ok(s)
}

/// A UDP receiving socket (see [`udp_on_port`]). Returns the socket and the receive buffer the kernel actually
/// granted. No listen, no accept: a datagram socket just receives whatever is addressed to it.
pub fn udp_receiver(addr: SocketAddr, tr: &Tracer) -> anyhow::Result<(UdpSocket, usize)> {
    let s = udp_on_port(addr, tr).map_err(|e| bind_error(e, Proto::Udp, addr, false))?;
    let granted = s.recv_buffer_size()?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok((s.into(), granted))
}

/// A UDP session's own receiving socket: bound to the receiver's port beside the shared one and connected to
/// the session's sender, so the kernel queues that sender's datagrams here, and this socket's drop counter
/// (SO_RXQ_OVFL) is the session's alone. Non-blocking: the receiving thread polls all its sockets.
pub fn udp_session(
    local: SocketAddr,
    peer: SocketAddr,
    gro: bool,
    tr: &Tracer,
) -> io::Result<UdpSocket> {
    let s = udp_on_port(local, tr)?;
    let fd = s.as_raw_fd();
    if gro {
        // Best effort: without it the kernel cuts the sender's GSO buffers back into datagrams itself.
        let _ = traced_opt(tr, &s, SockOpt::UdpGro(true));
    }
    // An IPv4 sender reaches a [::] socket as an IPv4-mapped address.
    let peer = match (local, peer) {
        (SocketAddr::V6(_), SocketAddr::V4(p)) => {
            SocketAddr::new(p.ip().to_ipv6_mapped().into(), p.port())
        }
        _ => peer,
    };
    tr.call(
        "connect",
        fd,
        || format!("{peer} (this session's datagrams only)"),
        || s.connect(&peer.into()),
        |_| "0".into(),
    )?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A UDP sending socket connected to `target` (so ICMP errors surface and no address is passed per send).
/// Binding to port 0 lets the OS pick the source port; the trace shows which.
pub fn udp_sender(target: SocketAddr, tr: &Tracer) -> anyhow::Result<UdpSocket> {
    let s = traced_socket(tr, target, Type::DGRAM)?;
    let fd = s.as_raw_fd();
    // Room for bursts; best effort (the kernel may clamp them), so failures are traced, not fatal.
    let _ = traced_opt(tr, &s, SockOpt::SndBuf(4 << 20));
    let _ = traced_opt(tr, &s, SockOpt::RcvBuf(UDP_RCVBUF));
    traced_opt(tr, &s, SockOpt::TimestampNs(true))?;
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
    let t0 = crate::clock::mono();
    match tr.call(
        "connect",
        fd,
        || target.to_string(),
        || s.connect_timeout(&target.into(), timeout),
        |_| format!("0 (from {}, port picked by the OS)", local(&s)),
    ) {
        Ok(()) => Ok((s.into(), crate::clock::since(t0))),
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
    sys::tcp_info(s).map(|i| u64::from(i.total_retrans))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
