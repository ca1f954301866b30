//! Bytes to messages and back, without I/O: the preamble decoder, the frame decoder (which keeps a partial
//! frame across reads), and the encoder. Hostile input: lengths are checked before anything is buffered.

use std::fmt;

use super::{Ctl, CTL_MAGIC, DATA_MAGIC, MAX_FRAME};

/// What the first bytes of a TCP connection to a receiver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    Control { version: u16 },
    Data { version: u16, session: u64 },
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
    /// Feed bytes; returns the preamble once complete and how many of `bytes` it used (the rest belongs to
    /// what follows). Ok(None): more bytes needed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<(Preamble, usize)>, FrameError> {
        let before = self.buf.len();
        let want: usize = if self.buf.len() >= 4 && self.buf[..4] == DATA_MAGIC {
            16
        } else {
            8
        };
        let take = want.saturating_sub(before).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..take]);
        let mut used = take;
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let head: [u8; 8] = self.buf[..8].try_into().unwrap_or([0; 8]);
        let version = u16::from_be_bytes([head[4], head[5]]);
        if head[..4] == CTL_MAGIC {
            return Ok(Some((Preamble::Control { version }, used)));
        }
        if head[..4] != DATA_MAGIC {
            return Err(FrameError::NotSockbench(head));
        }
        // A data preamble is 16 bytes: take the session id too.
        let more = (16 - self.buf.len()).min(bytes.len() - used);
        self.buf.extend_from_slice(&bytes[used..used + more]);
        used += more;
        if self.buf.len() < 16 {
            return Ok(None);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.buf[8..16]);
        Ok(Some((
            Preamble::Data {
                version,
                session: u64::from_be_bytes(id),
            },
            used,
        )))
    }
}

/// Splits a control byte stream into messages. A partial frame stays buffered across reads, so a caller may
/// wait in short slices without ever losing half a message.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame: usize,
}

impl FrameDecoder {
    /// Accept frames of at most `max_frame` bytes (never more than `MAX_FRAME`).
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            max_frame: max_frame.min(MAX_FRAME),
        }
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
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&self.buf[4..4 + len])
            .map_err(|e| FrameError::Unreadable(printable(&e.to_string())));
        self.buf.drain(..4 + len);
        msg.map(Some)
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
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
    // Serialising these plain structs cannot fail (no maps with non-string keys, no custom serialisers).
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
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

    #[test]
    fn preambles_byte_by_byte() {
        let mut d = PreambleDecoder::default();
        let bytes = [data_preamble(77).to_vec(), b"rest".to_vec()].concat();
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
                session: 77
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
    }
}
