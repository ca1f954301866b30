//! Bytes to messages and back, without I/O: the preamble decoder, the frame decoder (which keeps a partial
//! frame across reads), and the encoder. Hostile input: lengths are checked before anything is buffered.

use std::fmt;

use super::{Ctl, CTL_MAGIC, DATA_MAGIC, LOAD_MAGIC, MAX_FRAME, PREAMBLE_DOWN, PREAMBLE_MAC};
use crate::auth::{self, Dir, SessionKeys, MAC_LEN};

/// What the first bytes of a TCP connection to a receiver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    Control {
        version: u16,
    },
    Data {
        version: u16,
        session: u64,
        /// The preamble's MAC, for an authenticated session.
        mac: Option<[u8; MAC_LEN]>,
    },
    /// One bulk flow of a session with --load; `down`: the receiver sends on it.
    Load {
        version: u16,
        session: u64,
        down: bool,
        mac: Option<[u8; MAC_LEN]>,
    },
}

/// Why bytes are not what a sockbench peer sends. The connection that sent them cannot be trusted further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first bytes are neither preamble.
    NotSockbench([u8; 8]),
    TooLarge {
        len: usize,
        max: usize,
    },
    Unreadable(String),
    /// A frame whose MAC does not hold: forged, altered, replayed or out of order.
    Forged,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotSockbench(b) => {
                write!(f, "not a sockbench peer (its first bytes are {b:02x?})")
            }
            FrameError::TooLarge { len, max } => write!(
                f,
                "control frame of {len} bytes is larger than the {max} this side accepts: the peer is not a \
                 sockbench of this version"
            ),
            FrameError::Unreadable(e) => write!(
                f,
                "unreadable control message ({e}): the peer speaks another sockbench version"
            ),
            FrameError::Forged => write!(
                f,
                "a control frame failed its MAC: the keys differ, or something on the path altered it"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads a preamble from bytes as they come.
#[derive(Debug, Default)]
pub struct PreambleDecoder {
    buf: Vec<u8>,
}

impl PreambleDecoder {
    /// How long the preamble begun in `buf` is: 8 (control), 16 (data) or 32 (data with a MAC).
    fn wanted(&self) -> usize {
        if self.buf.len() < 8 || (self.buf[..4] != DATA_MAGIC && self.buf[..4] != LOAD_MAGIC) {
            return 8;
        }
        let flags = u16::from_be_bytes([self.buf[6], self.buf[7]]);
        if flags & PREAMBLE_MAC != 0 {
            16 + MAC_LEN
        } else {
            16
        }
    }

    /// Feed bytes; returns the preamble once complete and how many of `bytes` it used (the rest belongs to
    /// what follows). Ok(None): more bytes needed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<(Preamble, usize)>, FrameError> {
        let mut used = 0;
        loop {
            let want = self.wanted();
            let take = want.saturating_sub(self.buf.len()).min(bytes.len() - used);
            self.buf.extend_from_slice(&bytes[used..used + take]);
            used += take;
            if self.buf.len() < want {
                return Ok(None);
            }
            if self.wanted() == want {
                break;
            }
        }
        let head: [u8; 8] = self.buf[..8].try_into().unwrap_or([0; 8]);
        let version = u16::from_be_bytes([head[4], head[5]]);
        if head[..4] == CTL_MAGIC {
            return Ok(Some((Preamble::Control { version }, used)));
        }
        if head[..4] != DATA_MAGIC && head[..4] != LOAD_MAGIC {
            return Err(FrameError::NotSockbench(head));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.buf[8..16]);
        let mac = self.buf.get(16..16 + MAC_LEN).map(|m| {
            let mut a = [0u8; MAC_LEN];
            a.copy_from_slice(m);
            a
        });
        let session = u64::from_be_bytes(id);
        let flags = u16::from_be_bytes([head[6], head[7]]);
        let p = if head[..4] == LOAD_MAGIC {
            Preamble::Load {
                version,
                session,
                down: flags & PREAMBLE_DOWN != 0,
                mac,
            }
        } else {
            Preamble::Data {
                version,
                session,
                mac,
            }
        };
        Ok(Some((p, used)))
    }
}

/// Splits a control byte stream into messages. A partial frame stays buffered across reads, so a caller may
/// wait in short slices without ever losing half a message.
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame: usize,
    /// After the key proofs: the session's keys, the direction of incoming frames, the next frame's number.
    mac: Option<(SessionKeys, Dir, u64)>,
    /// The hash of the last frame's body (the hello's, for the key proofs).
    last_hash: [u8; 32],
    hashed: bool,
}

impl FrameDecoder {
    /// Accept frames of at most `max_frame` bytes (never more than `MAX_FRAME`).
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            max_frame: max_frame.min(MAX_FRAME),
            mac: None,
            last_hash: [0; 32],
            hashed: false,
        }
    }

    /// From now on every frame must carry its MAC (`dir`: the direction frames arrive in).
    pub fn authenticate(&mut self, keys: SessionKeys, dir: Dir) {
        self.mac = Some((keys, dir, 0));
    }

    /// The hash of the first frame's JSON body (the hello).
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }

    /// Buffer bytes from the peer. Refuses at once a frame header announcing more than the limit, so a
    /// stranger cannot make us hold more than one frame's worth.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.buf.extend_from_slice(bytes);
        match self.announced() {
            Some(len) if len > self.max_frame => Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            }),
            _ => Ok(()),
        }
    }

    fn announced(&self) -> Option<usize> {
        let h: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(h) as usize)
    }

    /// The next whole message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Ctl>, FrameError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let trailer = if self.mac.is_some() { MAC_LEN } else { 0 };
        if self.buf.len() < 4 + len + trailer {
            return Ok(None);
        }
        let body = &self.buf[4..4 + len];
        if let Some((keys, dir, n)) = &mut self.mac {
            let want = keys.frame_mac(*dir, *n, body);
            if !auth::same(&want, &self.buf[4 + len..4 + len + MAC_LEN]) {
                return Err(FrameError::Forged);
            }
            *n += 1;
        }
        if !self.hashed {
            // The first frame is the hello, whose hash the proofs cover; later ones need none.
            self.last_hash = auth::hello_hash(body);
            self.hashed = true;
        }
        let msg = decode_body(body).map_err(|e| FrameError::Unreadable(printable(&e.to_string())));
        self.buf.drain(..4 + len + trailer);
        msg.map(Some)
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A frame body as a message. Per-message rows, the one frame that comes by the thousand, skip serde's
/// buffering of an internally tagged enum when the tag comes first (as this encoder writes it): that buffering
/// was the sender's largest user-space cost in a profile of rows streaming at 1M/s.
fn decode_body(body: &[u8]) -> serde_json::Result<Ctl> {
    #[derive(serde::Deserialize)]
    struct Rows {
        #[serde(default)]
        base_ns: i64,
        rows: Vec<super::MessageRow>,
    }
    if body.starts_with(br#"{"type":"messages","#) {
        if let Ok(r) = serde_json::from_slice::<Rows>(body) {
            return Ok(Ctl::Messages {
                base_ns: r.base_ns,
                rows: r.rows,
            });
        }
    }
    serde_json::from_slice(body)
}

/// serde's errors quote the peer's text raw ("unknown variant `…`"): bounded and without control characters
/// before it reaches a log line or a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// One message as a frame: u32 big-endian length, then the JSON.
pub fn encode(msg: &Ctl) -> Vec<u8> {
    FrameEncoder::default().encode(msg)
}

/// Frames out, with a MAC after the key proofs.
#[derive(Default)]
pub struct FrameEncoder {
    mac: Option<(SessionKeys, Dir, u64)>,
}

impl FrameEncoder {
    /// From now on every frame carries its MAC (`dir`: the direction frames leave in).
    pub fn authenticate(&mut self, keys: SessionKeys, dir: Dir) {
        self.mac = Some((keys, dir, 0));
    }

    pub fn encode(&mut self, msg: &Ctl) -> Vec<u8> {
        // Serialising these plain structs cannot fail (no maps with non-string keys, no custom serialisers).
        let body = serde_json::to_vec(msg).unwrap_or_default();
        let mut frame = Vec::with_capacity(4 + body.len() + MAC_LEN);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        if let Some((keys, dir, n)) = &mut self.mac {
            frame.extend_from_slice(&keys.frame_mac(*dir, *n, &body));
            *n += 1;
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::super::{control_preamble, data_preamble, VERSION};
    use super::*;

    #[test]
    fn frames_survive_any_split_and_arrive_whole() {
        let a = encode(&Ctl::TimeReq { t1: 42 });
        let b = encode(&Ctl::Ready);
        let all = [a.clone(), b].concat();
        for cut in 0..all.len() {
            let mut d = FrameDecoder::new(1024);
            d.push(&all[..cut]).unwrap();
            let mut got = vec![];
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            d.push(&all[cut..]).unwrap();
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
            assert_eq!(
                got,
                vec![Ctl::TimeReq { t1: 42 }, Ctl::Ready],
                "cut at {cut}"
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn oversized_or_garbage_frames_are_errors() {
        let mut d = FrameDecoder::new(1 << 20);
        assert_eq!(
            d.push(&u32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
        let mut d = FrameDecoder::new(1024);
        d.push(&[0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
        let e = d.next_message().unwrap_err();
        assert!(e.to_string().contains("another sockbench version"), "{e}");
    }

    /// A load connection's preamble: its own magic, the direction in the flags, a MAC like a data preamble's.
    #[test]
    fn load_preambles_golden_bytes() {
        let up = super::super::load_preamble(0x0102, false, None);
        assert_eq!(
            up,
            [b"SKBL".as_slice(), &[0, 2, 0, 0], &[0, 0, 0, 0, 0, 0, 1, 2]].concat()
        );
        let down = super::super::load_preamble(9, true, Some([7; 16]));
        assert_eq!(down.len(), 32);
        assert_eq!(&down[4..8], &[0, 2, 0, 3]);
        let mut d = PreambleDecoder::default();
        assert_eq!(
            d.push(&down).unwrap(),
            Some((
                Preamble::Load {
                    version: VERSION,
                    session: 9,
                    down: true,
                    mac: Some([7; 16])
                },
                32
            ))
        );
        let mut d = PreambleDecoder::default();
        assert!(matches!(
            d.push(&up).unwrap(),
            Some((
                Preamble::Load {
                    down: false,
                    mac: None,
                    ..
                },
                16
            ))
        ));
    }

    #[test]
    fn preambles_byte_by_byte() {
        let mut d = PreambleDecoder::default();
        let bytes = [data_preamble(77, None), b"rest".to_vec()].concat();
        let mut res = None;
        for (i, b) in bytes.iter().enumerate() {
            if let Some(r) = d.push(std::slice::from_ref(b)).unwrap() {
                res = Some((r, i));
                break;
            }
        }
        let ((p, used), at) = res.unwrap();
        assert_eq!(
            p,
            Preamble::Data {
                version: VERSION,
                session: 77,
                mac: None
            }
        );
        assert_eq!((used, at), (1, 15));
        let mut d = PreambleDecoder::default();
        let bytes = [control_preamble().to_vec(), b"xyz".to_vec()].concat();
        assert_eq!(
            d.push(&bytes).unwrap(),
            Some((Preamble::Control { version: VERSION }, 8))
        );
        let mut d = PreambleDecoder::default();
        let e = d.push(b"GET / HTTP/1.0\r\n\r\n").unwrap_err();
        assert!(e.to_string().starts_with("not a sockbench peer"), "{e}");
        // With a MAC: 32 bytes, whatever the split.
        let bytes = data_preamble(5, Some([7; 16]));
        assert_eq!(bytes.len(), 32);
        for cut in 0..32 {
            let mut d = PreambleDecoder::default();
            let first = d.push(&bytes[..cut]).unwrap();
            let got = first.or_else(|| d.push(&bytes[cut..]).unwrap());
            assert!(
                matches!(got, Some((Preamble::Data { session: 5, mac: Some(m), .. }, _)) if m == [7; 16]),
                "cut {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn authenticated_frames_fail_when_forged_replayed_or_keyed_otherwise() {
        let secret = crate::auth::Secret::from_bytes(b"0123456789abcdef!").unwrap();
        let keys = secret.session_keys(1, &[1; 16], &[2; 16]);
        let mut enc = FrameEncoder::default();
        enc.authenticate(keys.clone(), Dir::SenderToReceiver);
        let a = enc.encode(&Ctl::TimeReq { t1: 1 });
        let b = enc.encode(&Ctl::TimeReq { t1: 2 });
        let mut dec = FrameDecoder::new(1024);
        dec.authenticate(keys.clone(), Dir::SenderToReceiver);
        dec.push(&[a.clone(), b.clone()].concat()).unwrap();
        assert_eq!(dec.next_message().unwrap(), Some(Ctl::TimeReq { t1: 1 }));
        assert_eq!(dec.next_message().unwrap(), Some(Ctl::TimeReq { t1: 2 }));
        // Replaying the first frame: its number is now wrong.
        dec.push(&a).unwrap();
        assert_eq!(dec.next_message(), Err(FrameError::Forged));
        // Another direction's key, or an altered byte.
        let mut dec = FrameDecoder::new(1024);
        dec.authenticate(keys.clone(), Dir::ReceiverToSender);
        dec.push(&a).unwrap();
        assert_eq!(dec.next_message(), Err(FrameError::Forged));
        let mut altered = a.clone();
        altered[10] ^= 1;
        let mut dec = FrameDecoder::new(1024);
        dec.authenticate(keys, Dir::SenderToReceiver);
        dec.push(&altered).unwrap();
        assert!(dec.next_message().is_err());
    }
}
