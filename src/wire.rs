//! The data message: a fixed header of named fields, big-endian, and the TCP length framing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                    magic 0x534B424D "SKBM"                    |  0
//! +---------------+---------------+-------------------------------+
//! |  version = 1  |     flags     |          reserved = 0         |  4
//! +---------------+---------------+-------------------------------+
//! |          length: whole message in bytes, header included      |  8
//! +---------------------------------------------------------------+
//! |   checksum: CRC-32 (IEEE) of the whole message, this field 0  | 12
//! +---------------------------------------------------------------+
//! |                 session id (64-bit, random)                   | 16
//! +---------------------------------------------------------------+
//! |                 sequence number (64-bit, from 0)              | 24
//! +---------------------------------------------------------------+
//! |           scheduled send time (ns since Unix epoch)           | 32
//! +---------------------------------------------------------------+
//! |             actual send time (ns since Unix epoch)            | 40
//! +---------------------------------------------------------------+
//! |  payload: pseudo-random bytes, seeded per session ...         | 48
//! ```
//! An echo reply (flag bit 0) carries the receiver's receive and send times (ns, receiver clock) in bytes
//! 48..64, so the sender can remove the receiver's holding time from the round trip (RFC 5357); `--echo`
//! therefore needs messages of at least 64 bytes. A reply is never longer than the message it answers.
//!
//! UDP carries one message per datagram. TCP is a byte stream that keeps no boundaries, so the length field
//! at offset 8 doubles as the frame's length prefix: a reader needs 12 bytes to know where the message ends.

use std::fmt;

pub const MAGIC: u32 = 0x534B_424D;
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 48;
/// Bytes a reader needs before it knows the frame length.
pub const LENGTH_PREFIX_END: usize = 12;
pub const ECHO_TRAILER_LEN: usize = 16;
/// The smallest message `--echo` can use.
pub const MIN_ECHO_LEN: usize = HEADER_LEN + ECHO_TRAILER_LEN;
pub const MAX_UDP_PAYLOAD: usize = 65_507;

pub const FLAG_ECHO_REPLY: u8 = 1;
/// The message ends with a MAC of everything before it (`--key-file`); the CRC then covers everything but
/// those last bytes.
pub const FLAG_MAC: u8 = 2;
/// Bytes of the MAC at the end of a message with `FLAG_MAC` (see `auth`).
pub const MAC_TRAILER_LEN: usize = 16;

/// The header fields of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub flags: u8,
    pub len: u32,
    pub checksum: u32,
    pub session: u64,
    pub seq: u64,
    pub sched_ns: i64,
    pub send_ns: i64,
}

/// Why bytes are not one of our messages. Counted as `invalid`, never trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    BadMagic,
    BadVersion(u8),
    /// The length field disagrees with the bytes present or with the session's message size.
    BadLength(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "shorter than the {HEADER_LEN}-byte header"),
            WireError::BadMagic => write!(f, "not a sockbench message (bad magic)"),
            WireError::BadVersion(v) => write!(f, "message version {v}, expected {VERSION}"),
            WireError::BadLength(l) => write!(f, "length field {l} does not match the bytes"),
        }
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

impl Header {
    /// Parse the header of `msg`, which must hold exactly one whole message. Never panics on hostile input.
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if u32_at(msg, 0) != MAGIC {
            return Err(WireError::BadMagic);
        }
        if msg[4] != VERSION {
            return Err(WireError::BadVersion(msg[4]));
        }
        let len = u32_at(msg, 8);
        if len as usize != msg.len() {
            return Err(WireError::BadLength(len));
        }
        Ok(Header {
            flags: msg[5],
            len,
            checksum: u32_at(msg, 12),
            session: u64_at(msg, 16),
            seq: u64_at(msg, 24),
            sched_ns: u64_at(msg, 32) as i64,
            send_ns: u64_at(msg, 40) as i64,
        })
    }

    /// Write the header into `buf[..HEADER_LEN]` with the checksum field zero; `seal` fills it in.
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        buf[4] = VERSION;
        buf[5] = self.flags;
        buf[6..8].copy_from_slice(&[0, 0]);
        buf[8..12].copy_from_slice(&self.len.to_be_bytes());
        buf[12..16].copy_from_slice(&[0; 4]);
        buf[16..24].copy_from_slice(&self.session.to_be_bytes());
        buf[24..32].copy_from_slice(&self.seq.to_be_bytes());
        buf[32..40].copy_from_slice(&(self.sched_ns as u64).to_be_bytes());
        buf[40..48].copy_from_slice(&(self.send_ns as u64).to_be_bytes());
    }
}

/// The bytes the CRC covers: the whole message, or all but its MAC trailer when it has one.
#[inline]
pub fn crc_covered(msg: &[u8]) -> usize {
    if msg.len() >= HEADER_LEN + MAC_TRAILER_LEN && msg[5] & FLAG_MAC != 0 {
        msg.len() - MAC_TRAILER_LEN
    } else {
        msg.len()
    }
}

/// CRC-32 of a message (all but a MAC trailer), computed as if its checksum field were zero.
pub fn checksum(msg: &[u8]) -> u32 {
    let end = crc_covered(msg).max(16).min(msg.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&msg[..12.min(msg.len())]);
    h.update(&[0; 4]);
    h.update(msg.get(16..end).unwrap_or_default());
    h.finalize()
}

/// Fill in the checksum of a message whose header is written.
pub fn seal(msg: &mut [u8]) {
    let c = checksum(msg);
    msg[12..16].copy_from_slice(&c.to_be_bytes());
}

/// Does the stored checksum match the bytes? False means the message was corrupted on the way.
pub fn verify(msg: &[u8], hdr: &Header) -> bool {
    checksum(msg) == hdr.checksum
}

/// Set seq and times on `msg` (a prefix of the session template, of any length from the header up), set its
/// length field to `msg.len()`, and seal it.
///
/// The whole message is hashed each time: crc32fast's SIMD CRC beat combining a precomputed payload CRC
/// (20 ns against 58 ns at 64 B, 78 ns against 151 ns at 1400 B; benches/hot_path.rs).
#[inline]
pub fn stamp(msg: &mut [u8], seq: u64, sched_ns: i64, send_ns: i64) {
    let len = msg.len() as u32;
    msg[8..12].copy_from_slice(&len.to_be_bytes());
    msg[24..32].copy_from_slice(&seq.to_be_bytes());
    msg[32..40].copy_from_slice(&(sched_ns as u64).to_be_bytes());
    msg[40..48].copy_from_slice(&(send_ns as u64).to_be_bytes());
    seal(msg);
}

/// Messages at least this long have their payload's CRC computed once and combined with each header's:
/// below it hashing the whole message is faster (see [`stamp`]).
pub const COMBINE_FROM: usize = 16 * 1024;

/// [`stamp`] for one session's messages, which are prefixes of its template: a full-length message of
/// [`COMBINE_FROM`] bytes or more costs a header's CRC and one combine instead of a pass over its payload
/// (128 KiB: about 7 µs less per message on each write; benches/hot_path.rs `stamp/131072B*`).
pub struct Stamper {
    full_len: usize,
    payload: Option<crc32fast::Hasher>,
}

impl Stamper {
    pub fn new(template: &[u8]) -> Stamper {
        let end = crc_covered(template);
        let payload = (template.len() >= COMBINE_FROM && end > HEADER_LEN).then(|| {
            let mut h = crc32fast::Hasher::new();
            h.update(&template[HEADER_LEN..end]);
            h
        });
        Stamper {
            full_len: template.len(),
            payload,
        }
    }

    /// Same result as [`stamp`]; `msg` must be a prefix of the template this was made from, with only its
    /// header changed since.
    #[inline]
    pub fn stamp(&self, msg: &mut [u8], seq: u64, sched_ns: i64, send_ns: i64) {
        match &self.payload {
            Some(p) if msg.len() == self.full_len => {
                msg[8..12].copy_from_slice(&(self.full_len as u32).to_be_bytes());
                msg[24..32].copy_from_slice(&seq.to_be_bytes());
                msg[32..40].copy_from_slice(&(sched_ns as u64).to_be_bytes());
                msg[40..48].copy_from_slice(&(send_ns as u64).to_be_bytes());
                let mut h = crc32fast::Hasher::new();
                h.update(&msg[..12]);
                h.update(&[0; 4]);
                h.update(&msg[16..HEADER_LEN]);
                h.combine(p);
                msg[12..16].copy_from_slice(&h.finalize().to_be_bytes());
            }
            _ => stamp(msg, seq, sched_ns, send_ns),
        }
    }
}

/// Build the session's message template: header fields for seq 0 and a payload of pseudo-random bytes seeded
/// by the session id, so a corrupted payload cannot go unnoticed and runs can be repeated. With `mac`, the
/// messages carry a MAC trailer (`FLAG_MAC`), which the sender writes after stamping each one.
pub fn template(session: u64, size: usize, mac: bool) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut msg = vec![0u8; size];
    rand::rngs::SmallRng::seed_from_u64(session).fill_bytes(&mut msg[HEADER_LEN..]);
    Header {
        flags: if mac { FLAG_MAC } else { 0 },
        len: size as u32,
        session,
        ..Header::default()
    }
    .write(&mut msg);
    seal(&mut msg);
    msg
}

/// Turn a received message into its echo reply in place: set the reply flag, write the receiver's receive and
/// send times into bytes 48..64, and re-seal. Returns false (and leaves it alone) when it is too short.
pub fn make_echo_reply(msg: &mut [u8], rx_ns: i64, tx_ns: i64) -> bool {
    if crc_covered(msg) < MIN_ECHO_LEN {
        return false;
    }
    msg[5] |= FLAG_ECHO_REPLY;
    msg[48..56].copy_from_slice(&(rx_ns as u64).to_be_bytes());
    msg[56..64].copy_from_slice(&(tx_ns as u64).to_be_bytes());
    seal(msg);
    true
}

/// The receiver's (receive, send) times from an echo reply.
pub fn echo_times(msg: &[u8]) -> Option<(i64, i64)> {
    (crc_covered(msg) >= MIN_ECHO_LEN).then(|| (u64_at(msg, 48) as i64, u64_at(msg, 56) as i64))
}

/// Splits a TCP byte stream into messages and counts how the stream's reads lined up with them.
///
/// `split_messages`: messages whose bytes arrived over more than one read. Every read is one of:
/// `reads_one_message` (exactly one whole message), `reads_partial` (bytes of one message, not all of it),
/// `coalesced_reads` (bytes of more than one message). A datagram socket only has the first; a stream has all.
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_len: usize,
    /// Stream offset of buf[0].
    base: u64,
    /// Stream offset where the current read began.
    read_start: u64,
    touched_this_read: u32,
    /// Messages that both began and ended in the current read.
    whole_this_read: u32,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub reads_one_message: u64,
    pub reads_partial: u64,
}

impl Framer {
    pub fn new(max_len: usize) -> Framer {
        let cap = (256 * 1024).max(2 * max_len);
        Framer {
            buf: vec![0; cap],
            start: 0,
            end: 0,
            max_len,
            base: 0,
            read_start: 0,
            touched_this_read: 0,
            whole_this_read: 0,
            recv_calls: 0,
            split_messages: 0,
            coalesced_reads: 0,
            reads_one_message: 0,
            reads_partial: 0,
        }
    }

    /// Space to read into. Moves pending bytes to the front when needed, so it is never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Account a read of `n` bytes into `spare()`. Call `next_frame` until it returns None, then `end_read`.
    pub fn filled(&mut self, n: usize) {
        self.read_start = self.base + self.end as u64;
        self.end += n;
        self.recv_calls += 1;
        self.touched_this_read = 0;
        self.whole_this_read = 0;
    }

    /// The next whole message, if one is buffered. An error means the stream is not ours (or desynchronised):
    /// there is no way to find the next boundary, so the caller must drop the connection.
    pub fn next_frame(&mut self) -> Option<Result<&mut [u8], WireError>> {
        let avail = self.end - self.start;
        if avail < LENGTH_PREFIX_END {
            return None;
        }
        let b = &self.buf[self.start..self.end];
        if u32_at(b, 0) != MAGIC {
            return Some(Err(WireError::BadMagic));
        }
        let len = u32_at(b, 8) as usize;
        if len < HEADER_LEN || len > self.max_len {
            return Some(Err(WireError::BadLength(len as u32)));
        }
        if avail < len {
            return None;
        }
        let frame_start = self.base + self.start as u64;
        if frame_start < self.read_start {
            self.split_messages += 1;
        } else {
            self.whole_this_read += 1;
        }
        self.touched_this_read += 1;
        let s = self.start;
        self.start += len;
        Some(Ok(&mut self.buf[s..s + len]))
    }

    /// Close the accounting of the current read (after `next_frame` returned None).
    pub fn end_read(&mut self) {
        // A partial message left over holds bytes of this read (it ends at the read's end).
        if self.end > self.start {
            self.touched_this_read += 1;
        }
        match (self.touched_this_read, self.whole_this_read) {
            (0, _) => {}
            (1, 1) => self.reads_one_message += 1,
            (1, _) => self.reads_partial += 1,
            _ => self.coalesced_reads += 1,
        }
    }

    /// Bytes of an unfinished message at the end of the stream: a truncated frame.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(session: u64, seq: u64, size: usize) -> Vec<u8> {
        let mut m = template(session, size, false);
        stamp(&mut m, seq, 1_000, 2_000);
        m
    }

    #[test]
    fn stamper_writes_the_same_bytes_as_stamp() {
        for (size, mac) in [
            (64, false),
            (COMBINE_FROM, false),
            (131_072, false),
            (131_072, true),
        ] {
            let t = template(7, size, mac);
            let s = Stamper::new(&t);
            for len in [size, (HEADER_LEN + 100).min(size), size - 1] {
                let (mut a, mut b) = (t[..len].to_vec(), t[..len].to_vec());
                stamp(&mut a, 42, 1_000, 2_000);
                s.stamp(&mut b, 42, 1_000, 2_000);
                assert_eq!(a, b, "size {size} len {len} mac {mac}");
                assert_eq!(checksum(&b).to_be_bytes(), b[12..16]);
            }
        }
    }

    #[test]
    fn golden_header_bytes() {
        let h = Header {
            flags: 0,
            len: 48,
            checksum: 0,
            session: 0x0102030405060708,
            seq: 9,
            sched_ns: 10,
            send_ns: 11,
        };
        let mut b = [0u8; 48];
        h.write(&mut b);
        let want: [u8; 48] = [
            0x53, 0x4B, 0x42, 0x4D, 1, 0, 0, 0, 0, 0, 0, 48, 0, 0, 0, 0, //
            1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9, //
            0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 11,
        ];
        assert_eq!(b, want);
        seal(&mut b);
        assert_eq!(u32_at(&b, 12), crc32fast::hash(&want));
    }

    #[test]
    fn round_trip_and_checksum() {
        let m = msg(7, 42, 200);
        let h = Header::parse(&m).unwrap();
        assert_eq!(
            (h.session, h.seq, h.sched_ns, h.send_ns, h.len),
            (7, 42, 1_000, 2_000, 200)
        );
        assert!(verify(&m, &h));
        assert_eq!(h.checksum, checksum(&m));
        let mut bad = m.clone();
        bad[150] ^= 0x10;
        assert!(!verify(&bad, &Header::parse(&bad).unwrap()));
    }

    #[test]
    fn hostile_input_is_rejected_not_trusted() {
        assert_eq!(Header::parse(&[0u8; 10]), Err(WireError::Truncated));
        assert_eq!(Header::parse(&[0u8; 64]), Err(WireError::BadMagic));
        let mut m = msg(1, 1, 64);
        m[4] = 9;
        assert_eq!(Header::parse(&m), Err(WireError::BadVersion(9)));
        let m = msg(1, 1, 64);
        assert_eq!(Header::parse(&m[..60]), Err(WireError::BadLength(64)));
    }

    #[test]
    fn echo_reply_carries_receiver_times() {
        let mut m = msg(3, 5, 64);
        assert!(make_echo_reply(&mut m, 111, 222));
        let h = Header::parse(&m).unwrap();
        assert_eq!(h.flags & FLAG_ECHO_REPLY, FLAG_ECHO_REPLY);
        assert!(verify(&m, &h));
        assert_eq!(echo_times(&m), Some((111, 222)));
        let mut short = msg(3, 5, 48);
        assert!(!make_echo_reply(&mut short, 1, 2));
    }

    /// Feed the framer a stream cut at the given read sizes; return (messages, recv_calls, split, coalesced).
    fn feed(stream: &[u8], cuts: &[usize]) -> (Vec<u64>, u64, u64, u64) {
        let (seqs, calls, split, coalesced, _, _) = feed_all(stream, cuts);
        (seqs, calls, split, coalesced)
    }

    /// As `feed`, plus (reads of exactly one message, reads of part of one).
    fn feed_all(stream: &[u8], cuts: &[usize]) -> (Vec<u64>, u64, u64, u64, u64, u64) {
        let mut f = Framer::new(1 << 16);
        let mut seqs = vec![];
        let mut pos = 0;
        for &n in cuts {
            let spare = f.spare();
            spare[..n].copy_from_slice(&stream[pos..pos + n]);
            pos += n;
            f.filled(n);
            while let Some(fr) = f.next_frame() {
                seqs.push(Header::parse(fr.unwrap()).unwrap().seq);
            }
            f.end_read();
        }
        (
            seqs,
            f.recv_calls,
            f.split_messages,
            f.coalesced_reads,
            f.reads_one_message,
            f.reads_partial,
        )
    }

    #[test]
    fn every_read_is_one_whole_part_of_one_or_several() {
        let stream: Vec<u8> = (0..4).flat_map(|s| msg(1, s, 100)).collect();
        // 100 | 50 | 50 | 200: one whole; part of message 1; its tail (part of one); messages 2 and 3 (several).
        let r = feed_all(&stream, &[100, 50, 50, 200]);
        assert_eq!((r.3, r.4, r.5), (1, 1, 2));
        // 150 | 250: both reads hold bytes of two or more messages.
        let r = feed_all(&stream, &[150, 250]);
        assert_eq!((r.3, r.4, r.5), (2, 0, 0));
        // Every read is exactly one class.
        let r = feed_all(&stream, &[5, 7, 88, 300]);
        assert_eq!(r.1, r.3 + r.4 + r.5);
    }

    #[test]
    fn short_messages_of_a_mixed_session_seal_correctly() {
        let t = template(5, 1400, false);
        let mut m = t[..200].to_vec();
        stamp(&mut m, 3, 10, 20);
        let h = Header::parse(&m).unwrap();
        assert_eq!((h.len, h.seq), (200, 3));
        assert!(verify(&m, &h));
    }

    #[test]
    fn framer_counts_splits_and_coalesced_reads() {
        let stream: Vec<u8> = (0..4).flat_map(|s| msg(1, s, 100)).collect();
        // One read per message: no split, no coalescing.
        assert_eq!(
            feed(&stream, &[100, 100, 100, 100]),
            (vec![0, 1, 2, 3], 4, 0, 0)
        );
        // Everything in one read: one coalesced read.
        assert_eq!(feed(&stream, &[400]), (vec![0, 1, 2, 3], 1, 0, 1));
        // 150 + 250: message 1 is split; both reads hold parts of two or more messages.
        assert_eq!(feed(&stream, &[150, 250]), (vec![0, 1, 2, 3], 2, 1, 2));
        // Byte-by-byte start of message 0, then the rest.
        assert_eq!(feed(&stream, &[5, 7, 88, 300]), (vec![0, 1, 2, 3], 4, 1, 1));
    }

    #[test]
    fn framer_rejects_garbage_streams() {
        let mut f = Framer::new(1000);
        let spare = f.spare();
        spare[..16].copy_from_slice(b"GET / HTTP/1.1\r\n");
        f.filled(16);
        assert!(matches!(f.next_frame(), Some(Err(WireError::BadMagic))));
        let mut f = Framer::new(1000);
        let mut m = msg(1, 1, 64);
        m[8..12].copy_from_slice(&5000u32.to_be_bytes());
        f.spare()[..64].copy_from_slice(&m);
        f.filled(64);
        assert!(matches!(
            f.next_frame(),
            Some(Err(WireError::BadLength(5000)))
        ));
    }

    #[test]
    fn a_mac_trailer_is_outside_the_crc() {
        let mut m = template(5, 96, true);
        stamp(&mut m, 3, 1, 2);
        let h = Header::parse(&m).unwrap();
        assert_eq!(h.flags & FLAG_MAC, FLAG_MAC);
        assert_eq!(crc_covered(&m), 80);
        // Whatever the MAC bytes are, the CRC still holds: the MAC is written after the stamp.
        m[90] ^= 0xff;
        assert!(verify(&m, &h));
        m[70] ^= 1;
        assert!(!verify(&m, &h));
        // An echo reply needs its 16-byte trailer of times before the MAC.
        let mut small = template(5, 64, true);
        stamp(&mut small, 0, 1, 1);
        assert!(!make_echo_reply(&mut small, 1, 2));
        assert_eq!(echo_times(&small), None);
    }
}
