//! Batched datagram I/O (recvmmsg/sendmmsg) with every buffer allocated once, and the receive timestamp and
//! drop counter read from each datagram's control messages.
//!
//! This is the hot path (64 datagrams per call, about a million a second), and raw libc on purpose. nix's
//! `recvmmsg` allocates nothing per call, but it re-arms only `msg_iov` between calls, never `msg_namelen` or
//! `msg_controllen`, which the kernel overwrites with what it used (nix-rust/nix#2813): a slot that once
//! received a datagram without a drop counter (the kernel attaches SO_RXQ_OVFL only once drops happened)
//! would never again have room for one. nix's `sendmmsg` needs the slices re-passed as iterators every call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Room for one timestamp (CMSG_SPACE(16) = 32), one drop counter and one GRO segment size (CMSG_SPACE(4) = 24
/// each), with margin.
const CMSG_SPACE: usize = 128;

/// One received datagram out of a batch.
pub struct Datagram<'a> {
    pub data: &'a mut [u8],
    pub from: Option<SocketAddr>,
    /// Kernel receive time, CLOCK_REALTIME ns (SO_TIMESTAMPNS).
    pub kernel_ns: Option<i64>,
    /// The socket's cumulative drop counter when this datagram was queued (SO_RXQ_OVFL); `None` while it is 0.
    pub drops: Option<u32>,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// UDP GRO: this read holds several datagrams of this size (the last may be shorter), coalesced by the
    /// kernel; they share one receive time.
    pub segment: Option<usize>,
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

// SAFETY: the raw pointers inside point into the struct's own heap buffers, which move with it and are never
// shared: all access goes through &mut self.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        let mut b = RecvBatch {
            bufs: vec![0; n * slot],
            slot,
            iov: Vec::with_capacity(n),
            // SAFETY: all-zero is a valid sockaddr_storage.
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
            // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); we then point it into our own
            // buffers, whose heap storage never moves or shrinks after this.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut b.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_name = &mut b.names[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_control = b.ctrl[i].as_mut_ptr() as *mut libc::c_void;
            b.hdrs.push(h);
        }
        b
    }

    /// Receive up to n datagrams from socket `fd`: blocks for the first (bounded by the socket's read timeout),
    /// then takes what is queued. Ok(0) on timeout.
    ///
    /// A raw descriptor, as the send and receive loops keep it: whatever its value, the kernel checks it and
    /// writes only into this batch's buffers, so a wrong one fails (EBADF, ENOTSOCK) without harming memory.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // msg_namelen and msg_controllen are in-out: the last call left what it used, re-arm the capacities.
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CMSG_SPACE as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by self, sized as declared; the timeout is null.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
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
        let mut segment = None;
        // SAFETY: the kernel wrote msg_controllen bytes of well-formed cmsgs into our control buffer, and
        // CMSG_NXTHDR stops at that length; the payloads are read unaligned, as cmsg(3) requires.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                        let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                        // time_t and c_long are 32-bit on some targets, hence the casts.
                        #[allow(clippy::unnecessary_cast)]
                        let ns = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64;
                        kernel_ns = Some(ns);
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                        drops = Some(std::ptr::read_unaligned(data as *const u32));
                    }
                    (libc::SOL_UDP, libc::UDP_GRO) => {
                        let size = std::ptr::read_unaligned(data as *const libc::c_int);
                        segment = usize::try_from(size).ok().filter(|&s| s > 0);
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        let namelen = h.msg_hdr.msg_namelen;
        let from = if namelen > 0 {
            // SAFETY: the kernel wrote a sockaddr of namelen bytes (at most its size) into names[i].
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
            segment,
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
            // SAFETY: all-zero is a valid mmsghdr (no address: the socket is connected; no control data); we
            // then point it at our own iovec, whose heap storage never moves after this.
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

    /// Send slots [from, to) on connected socket `fd` (a raw descriptor: see [`RecvBatch::recv`]). Returns how
    /// many the kernel took (at least one) or the error of the first.
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        // Indexing checks from <= to <= capacity before any pointer reaches the kernel.
        let hdrs = &mut self.hdrs[from..to];
        for (iov, &len) in self.iov[from..to].iter_mut().zip(&self.lens[from..to]) {
            iov.iov_len = len;
        }
        loop {
            // SAFETY: the headers in `hdrs` point into our own buffers, and we pass their count.
            let rc =
                unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
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

/// Datagrams per GSO send at most: the kernel's UDP_MAX_SEGMENTS (64 before Linux 6.2).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Bytes per GSO send at most: one IP packet's payload.
const GSO_MAX_BYTES: usize = 65_000;

/// sendmmsg of GSO buffers on a connected socket whose UDP_SEGMENT is the message size: equal-size messages
/// in contiguous slots, a group of them per buffer, which the kernel cuts back into one datagram per message.
/// One stack walk per group instead of per datagram; every datagram keeps its own header.
pub struct GsoBatch {
    bufs: Vec<u8>,
    slot: usize,
    group: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for GsoBatch {}

impl GsoBatch {
    /// Room for `n` messages, each a copy of `template`.
    pub fn new(n: usize, template: &[u8]) -> GsoBatch {
        let slot = template.len().max(1);
        let group = (GSO_MAX_BYTES / slot).clamp(1, GSO_MAX_SEGMENTS);
        let groups = n.div_ceil(group);
        let mut b = GsoBatch {
            bufs: template.repeat(n),
            slot,
            group,
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                groups
            ],
            hdrs: Vec::with_capacity(groups),
        };
        for i in 0..groups {
            // SAFETY: all-zero is a valid mmsghdr; it points at our own iovec, whose storage never moves.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut b.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len() / self.slot
    }

    /// Datagrams per send buffer.
    pub fn group(&self) -> usize {
        self.group
    }

    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    /// Send messages [from, to), a group per buffer. Returns how many messages the kernel took (whole groups),
    /// or the error of the first group.
    pub fn send(&mut self, fd: RawFd, from: usize, to: usize) -> io::Result<usize> {
        let to = to.min(self.capacity());
        let from = from.min(to);
        let mut used = 0;
        let mut lens = Vec::with_capacity(self.hdrs.len());
        let mut at = from;
        while at < to {
            let k = (to - at).min(self.group);
            // Slicing checks the range before any pointer reaches the kernel.
            let bytes = &mut self.bufs[at * self.slot..(at + k) * self.slot];
            self.iov[used] = libc::iovec {
                iov_base: bytes.as_mut_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            lens.push(k);
            used += 1;
            at += k;
        }
        if used == 0 {
            return Ok(0);
        }
        loop {
            // SAFETY: the first `used` headers point at iovecs into our own buffer, set just above.
            let rc = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), used as libc::c_uint, 0) };
            if rc >= 0 {
                return Ok(lens[..rc as usize].iter().sum());
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
    use crate::sys::socket::SockOpt;
    use crate::sys::time::realtime_ns;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        SockOpt::TimestampNs(true).set(&rx).unwrap();
        SockOpt::RxqOvfl(true).set(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    fn send_all(b: &mut SendBatch, tx: &UdpSocket, n: usize) {
        let mut sent = 0;
        while sent < n {
            sent += b.send(tx.as_raw_fd(), sent, n).unwrap();
        }
    }

    /// Everything queued now, until a read times out (the socket's 200 ms): (first byte, length, drops).
    fn drain(b: &mut RecvBatch, rx: &UdpSocket) -> Vec<(u8, usize, Option<u32>)> {
        let mut got = vec![];
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let n = b.recv(rx.as_raw_fd()).unwrap();
            if n == 0 {
                break;
            }
            for i in 0..n {
                let d = b.get(i);
                got.push((d.data[0], d.data.len(), d.drops));
            }
        }
        got
    }

    #[test]
    fn batches_carry_sizes_sources_and_kernel_timestamps() {
        let (rx, tx) = pair();
        let mut sb = SendBatch::new(8, &[7u8; 100]);
        for i in 0..8 {
            sb.set_len(i, 50 + i)[0] = i as u8;
        }
        let before = realtime_ns();
        send_all(&mut sb, &tx, 8);
        let mut rb = RecvBatch::new(16, 2048);
        let mut got = vec![];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 8 && Instant::now() < deadline {
            let n = rb.recv(rx.as_raw_fd()).unwrap();
            let after = realtime_ns();
            for i in 0..n {
                let d = rb.get(i);
                let t = d.kernel_ns.expect("SO_TIMESTAMPNS on every datagram");
                assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
                assert_eq!(d.from, Some(tx.local_addr().unwrap()));
                assert_eq!(d.drops, None, "nothing was dropped");
                assert!(!d.truncated);
                got.push((d.data[0], d.data.len()));
            }
        }
        let want: Vec<(u8, usize)> = (0..8).map(|i| (i as u8, 50 + i)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn longer_datagram_is_cut_and_flagged() {
        let (rx, tx) = pair();
        tx.send(&[1u8; 300]).unwrap();
        let mut rb = RecvBatch::new(4, 100);
        assert_eq!(rb.recv(rx.as_raw_fd()).unwrap(), 1);
        let d = rb.get(0);
        assert!(d.truncated);
        assert_eq!(d.data.len(), 100);
    }

    #[test]
    fn drop_counter_arrives_once_the_queue_overflowed() {
        let (rx, tx) = pair();
        // The smallest buffer the kernel grants (a few KB) holds one or two 1000-byte datagrams.
        SockOpt::RcvBuf(1).set(&rx).unwrap();
        let mut sb = SendBatch::new(64, &[0u8; 1000]);
        for i in 0..64 {
            sb.slot_mut(i)[0] = i as u8;
        }
        send_all(&mut sb, &tx, 64);
        // The same batch for both reads: its slots first receive datagrams without a drop counter, which
        // must not leave them without room for one later (the nix recvmmsg bug this module avoids).
        let mut rb = RecvBatch::new(64, 2048);
        let queued = drain(&mut rb, &rx);
        assert!(!queued.is_empty() && queued.len() < 64, "{}", queued.len());
        assert!(
            queued.iter().all(|&(_, _, d)| d.is_none()),
            "queued before any drop: {queued:?}"
        );
        let dropped = (64 - queued.len()) as u32;
        sb.slot_mut(0)[0] = 99;
        send_all(&mut sb, &tx, 1);
        assert_eq!(drain(&mut rb, &rx), vec![(99, 1000, Some(dropped))]);
    }

    /// 130 messages of 100 B through GSO: 64 + 64 + 2 per buffer, cut back into 130 datagrams in order. With
    /// GRO on the receiving socket, loopback hands them over coalesced, with their segment size.
    #[test]
    fn gso_sends_one_datagram_per_message_and_gro_coalesces_them() {
        for gro in [false, true] {
            let (rx, tx) = pair();
            if SockOpt::UdpSegment(100).set(&tx).is_err() {
                eprintln!("skipped: this kernel has no UDP GSO");
                return;
            }
            if gro {
                SockOpt::UdpGro(true).set(&rx).unwrap();
            }
            let mut gb = GsoBatch::new(130, &[0u8; 100]);
            assert_eq!((gb.capacity(), gb.group()), (130, 64));
            for i in 0..130 {
                gb.slot_mut(i)[0] = i as u8;
            }
            let mut sent = 0;
            while sent < 130 {
                sent += gb.send(tx.as_raw_fd(), sent, 130).unwrap();
            }
            let mut rb = RecvBatch::new(16, 65_536);
            let mut seen = vec![];
            let mut coalesced = 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while seen.len() < 130 && Instant::now() < deadline {
                let n = rb.recv(rx.as_raw_fd()).unwrap();
                for i in 0..n {
                    let d = rb.get(i);
                    let seg = d.segment.unwrap_or(d.data.len());
                    coalesced += usize::from(d.data.len() > seg);
                    for chunk in d.data.chunks(seg) {
                        assert_eq!(chunk.len(), 100);
                        seen.push(chunk[0]);
                    }
                }
            }
            assert_eq!(seen, (0..130).map(|i| i as u8).collect::<Vec<_>>());
            assert_eq!(coalesced > 0, gro, "coalesced reads with GRO {gro}");
        }
    }
}
