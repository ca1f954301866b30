//! The kernel's per-connection TCP state (getsockopt TCP_INFO), reduced to the fields sockbench reports.
//!
//! Raw libc: nix 0.31 has no TCP_INFO socket option.

use std::os::fd::AsFd;

/// What sockbench reads from `struct tcp_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_state`: the kernel's TCP state (include/net/tcp_states.h: 1 = ESTABLISHED, 10 = LISTEN).
    pub state: u8,
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life. For a client right after
    /// connect it counts SYN retransmissions; a freshly accepted socket starts with its request's SYN-ACK
    /// retransmissions (tcp_create_openreq_child: `newtp->total_retrans = req->num_retrans`).
    pub total_retrans: u32,
    /// `tcpi_bytes_acked` (Linux 4.1+): bytes the peer acknowledged, i.e. delivered; None on an older kernel.
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received` (Linux 4.1+): bytes received in order, i.e. delivered to this end.
    pub bytes_received: Option<u64>,
}

/// TCP_INFO of a TCP socket; `None` for other sockets, or a kernel whose struct stops before the fields.
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
pub fn tcp_info(s: impl AsFd) -> Option<TcpInfo> {
    use std::mem::{offset_of, size_of, zeroed};
    use std::os::fd::AsRawFd;

    // SAFETY: tcp_info is plain old data, so all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are ours and valid for writes; the kernel writes at most `len` bytes and
    // stores in `len` how many it wrote.
    let rc = unsafe {
        libc::getsockopt(
            s.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // An old kernel may return a shorter struct that stops before the field.
    let needed = offset_of!(libc::tcp_info, tcpi_total_retrans) + size_of::<u32>();
    let acked_end = offset_of!(libc::tcp_info, tcpi_bytes_acked) + size_of::<u64>();
    (rc == 0 && len as usize >= needed).then_some(TcpInfo {
        state: info.tcpi_state,
        total_retrans: info.tcpi_total_retrans,
        bytes_acked: (len as usize >= acked_end).then_some(info.tcpi_bytes_acked),
        bytes_received: (len as usize >= acked_end + size_of::<u64>())
            .then_some(info.tcpi_bytes_received),
    })
}

/// TCP_INFO of a TCP socket: not read on this target.
#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
pub fn tcp_info(_s: impl AsFd) -> Option<TcpInfo> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    const TCP_ESTABLISHED: u8 = 1;
    const TCP_LISTEN: u8 = 10;

    #[test]
    fn reads_a_loopback_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        for end in [&c, &s] {
            let i = tcp_info(end).expect("TCP_INFO of a TCP socket");
            assert_eq!(i.state, TCP_ESTABLISHED);
            // Loopback loses nothing: no SYN, SYN-ACK or data was sent twice.
            assert_eq!(i.total_retrans, 0);
        }
        assert_eq!(tcp_info(&l).unwrap().state, TCP_LISTEN);
    }

    #[test]
    fn none_for_a_udp_socket() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_info(&u), None);
    }
}
