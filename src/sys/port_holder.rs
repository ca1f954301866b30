//! Who holds a local port (via /proc), and the line a user reads when bind() fails with EADDRINUSE.
//!
//! Everything here is best effort and Linux-specific: `/proc/net/{tcp,tcp6,udp,udp6}` map a local port to a
//! socket inode, and `/proc/[pid]/fd/*` symlinks (`socket:[inode]`) map that inode to a process. Processes of
//! other users are invisible unless we run as root, and sockets in other network namespaces are not listed.

use std::fs;
use std::net::SocketAddr;

/// Transport protocol of a port lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A process that has the socket bound to a port open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/<pid>/comm`, e.g. `nc`.
    pub name: String,
    /// `/proc/<pid>/cmdline` with NULs turned into spaces (may be empty for kernel threads).
    pub cmdline: String,
}

/// Kernel TCP state numbers as printed in `/proc/net/tcp` (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 0x0A;

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`: only the fields this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcSocket {
    pub local_port: u16,
    /// Kernel socket state (`st` column), e.g. 0x0A = LISTEN, 0x07 = CLOSE (an unconnected bound UDP socket).
    pub state: u8,
    /// Unsent bytes; always 0 for a listener (its limit is only visible through sock_diag, as `ss` shows it).
    pub tx_queue: u32,
    /// For a TCP listener: connections waiting in the accept queue (`sk_ack_backlog`).
    pub rx_queue: u32,
    pub inode: u64,
}

/// Parse one data line of `/proc/net/tcp`-style tables; `None` for the header or anything malformed.
///
/// Layout: `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`,
/// addresses as `HEXADDR:HEXPORT`.
pub(crate) fn parse_proc_net_line(line: &str) -> Option<ProcSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    let (_, port_hex) = f[1].rsplit_once(':')?;
    let local_port = u16::from_str_radix(port_hex, 16).ok()?;
    let state = u8::from_str_radix(f[3], 16).ok()?;
    let (tx, rx) = f[4].split_once(':')?;
    Some(ProcSocket {
        local_port,
        state,
        tx_queue: u32::from_str_radix(tx, 16).ok()?,
        rx_queue: u32::from_str_radix(rx, 16).ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// All rows of the IPv4 and IPv6 tables for `proto`; unreadable tables are skipped (e.g. IPv6 disabled).
pub(crate) fn proc_net_sockets(proto: Proto) -> Vec<ProcSocket> {
    let files: [&str; 2] = match proto {
        Proto::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    files
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(parse_proc_net_line)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Inode of the socket behind one of our own file descriptors (`/proc/self/fd/N -> socket:[inode]`).
pub(crate) fn socket_inode(fd: i32) -> Option<u64> {
    let target = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    parse_socket_link(&target.to_string_lossy())
}

fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Which process holds a local port, best effort: parse /proc/net/{tcp,tcp6,udp,udp6} for the socket inode in
/// LISTEN (tcp) or bound (udp) state on `port`, then scan /proc/[pid]/fd/* symlinks for socket:[inode].
///
/// Returns the first process found (lowest pid); with SO_REUSEPORT or a forked server several may share it.
pub fn who_holds(proto: Proto, port: u16) -> Option<Holder> {
    let inodes: Vec<u64> = proc_net_sockets(proto)
        .into_iter()
        // TCP: only a listener makes bind() fail for a server; UDP has no listen, any bound socket counts.
        // Inode 0 means the socket has no file (e.g. TIME_WAIT, or being torn down): nobody to blame.
        .filter(|s| s.local_port == port && s.inode != 0)
        .filter(|s| proto == Proto::Udp || s.state == TCP_LISTEN)
        .map(|s| s.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // Bounded: one pass over the pids that existed when we listed /proc, one pass over each one's fds.
    pids.into_iter()
        .find(|&pid| pid_has_inode(pid, &inodes))
        .map(holder_for)
}

fn pid_has_inode(pid: u32, inodes: &[u64]) -> bool {
    // Other users' fd directories are unreadable unless root: treat as "not found", never as an error.
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| parse_socket_link(&t.to_string_lossy()))
        .any(|ino| inodes.contains(&ino))
}

fn holder_for(pid: u32) -> Holder {
    let name = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let s: String = String::from_utf8_lossy(&b).replace('\0', " ");
            // A long command line (e.g. a JVM) would drown the one-line message.
            let s = s.trim_end();
            match s.char_indices().nth(200) {
                Some((i, _)) => format!("{}...", &s[..i]),
                None => s.to_string(),
            }
        })
        .unwrap_or_default();
    Holder { pid, name, cmdline }
}

/// One line a user reads when bind fails with EADDRINUSE: names the port, the holder if found, and what to do
/// (stop it, pick another port with --listen, or use --reuse-port to share; when `reuse_port` was already
/// given, why it did not help).
pub fn addr_in_use_message(proto: Proto, addr: SocketAddr, reuse_port: bool) -> String {
    let p = proto.as_str();
    let port = addr.port();
    let ip = addr.ip();
    let who = match who_holds(proto, port) {
        Some(h) if h.cmdline.is_empty() => format!("held by pid {} ({})", h.pid, h.name),
        Some(h) => format!("held by pid {} ({}: {})", h.pid, h.name, h.cmdline),
        None => {
            let flag = if proto == Proto::Tcp {
                "-ltnp"
            } else {
                "-lunp"
            };
            format!(
                "held by a process we cannot see (another user or namespace; try `sudo ss {flag} 'sport = :{port}'`)"
            )
        }
    };
    let share = if reuse_port {
        // SO_REUSEPORT shares a port only among sockets that all set it, owned by the same user.
        "; --reuse-port was given, but the holder did not set SO_REUSEPORT or belongs to another user \
         (every socket sharing a port must set it)"
    } else {
        ", or pass --reuse-port to share it"
    };
    format!(
        "cannot bind {p} {addr}: port {port}/{p} is already in use, {who}; stop that process, \
         pick another port with --listen {ip}:0 (the OS picks a free one){share}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsRawFd;

    #[test]
    fn parses_proc_net_tcp_line() {
        let line = "   1: 0100007F:1F90 00000000:0000 0A 00000003:00000005 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        let s = parse_proc_net_line(line).unwrap();
        assert_eq!(
            s,
            ProcSocket {
                local_port: 8080,
                state: TCP_LISTEN,
                tx_queue: 3,
                rx_queue: 5,
                inode: 123456
            }
        );
        assert_eq!(parse_proc_net_line("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"), None);
        assert_eq!(parse_proc_net_line("   1: garbage"), None);
        assert_eq!(parse_socket_link("socket:[42]"), Some(42));
        assert_eq!(parse_socket_link("pipe:[42]"), None);
    }

    #[test]
    fn finds_our_own_tcp_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = who_holds(Proto::Tcp, addr.port()).expect("our listener is visible in /proc");
        assert_eq!(h.pid, std::process::id());
        assert!(!h.name.is_empty());
        let msg = addr_in_use_message(Proto::Tcp, addr, false);
        assert!(msg.contains(&addr.port().to_string()), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(
            msg.contains("--listen") && msg.contains("pass --reuse-port to share it"),
            "{msg}"
        );
        // Already given: say why it did not help instead of advising it again.
        let msg = addr_in_use_message(Proto::Tcp, addr, true);
        assert!(!msg.contains("pass --reuse-port"), "{msg}");
        assert!(
            msg.contains("--reuse-port was given, but the holder did not set SO_REUSEPORT"),
            "{msg}"
        );
        // Our own fd maps to the same inode the table shows.
        let ino = socket_inode(l.as_raw_fd()).unwrap();
        assert!(proc_net_sockets(Proto::Tcp)
            .iter()
            .any(|s| s.inode == ino && s.local_port == addr.port()));
    }

    #[test]
    fn finds_our_own_udp_socket() {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert_eq!(
            who_holds(Proto::Udp, port).map(|h| h.pid),
            Some(std::process::id())
        );
    }

    #[test]
    fn free_port_has_no_holder() {
        // Let the OS pick a free port, then release it: nobody listens there any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(who_holds(Proto::Tcp, port), None);
        let msg = addr_in_use_message(Proto::Tcp, SocketAddr::from(([127, 0, 0, 1], port)), false);
        assert!(msg.contains("cannot see"), "{msg}");
    }
}
