//! Ports: SO_REUSEPORT binds, and (from `sys::port_holder`) which process holds a local port and the
//! EADDRINUSE message users read.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

pub use crate::sys::port_holder::{addr_in_use_message, who_holds, Holder, Proto};
pub(crate) use crate::sys::port_holder::{proc_net_sockets, socket_inode};

fn reuse_port_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // SO_REUSEPORT must be set on *every* socket of the group before bind; the kernel then hashes each new
    // flow (TCP connection or UDP 4-tuple) to one member, spreading sessions across receivers.
    socket.set_reuse_port(true)?;
    Ok(socket)
}

/// Bind a socket with SO_REUSEPORT set (socket2), for receivers that share a port and let the kernel spread sessions.
pub fn bind_reuse_port_tcp(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = reuse_port_socket(addr, Type::STREAM, Protocol::TCP)?;
    // SO_REUSEADDR as well, as every TCP server should: a restart is not refused while old connections of the
    // previous run sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Bind a UDP socket with SO_REUSEPORT set; see [`bind_reuse_port_tcp`].
pub fn bind_reuse_port_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = reuse_port_socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    #[test]
    fn reuse_port_tcp_spreads_connections() {
        let a = bind_reuse_port_tcp("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_reuse_port_tcp(addr, 64)
            .expect("second SO_REUSEPORT listener binds the same port");
        // A plain socket without SO_REUSEPORT is refused: that is the EADDRINUSE users meet.
        let err = TcpListener::bind(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        const N: usize = 40;
        let clients: Vec<TcpStream> = (0..N)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
            .collect();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let (mut na, mut nb) = (0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Bounded by count and time: both queues are drained until all N are seen or 5 s pass.
        while na + nb < N && Instant::now() < deadline {
            let mut progressed = false;
            for (l, n) in [(&a, &mut na), (&b, &mut nb)] {
                if l.accept().is_ok() {
                    *n += 1;
                    progressed = true;
                }
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        drop(clients);
        assert_eq!(na + nb, N);
        // The kernel hashes the 4-tuple; all 40 on one side has probability 2^-39.
        assert!(na > 0 && nb > 0, "spread {na}/{nb}");
    }

    #[test]
    fn reuse_port_udp_binds_twice() {
        let a = bind_reuse_port_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_reuse_port_udp(addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }
}
