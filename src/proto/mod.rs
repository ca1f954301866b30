//! The control protocol between a sender and a receiver, version 2: the byte layout of connection preambles,
//! length-prefixed frames, and the messages themselves as their own types.
//!
//! Nothing here depends on how the rest of sockbench names its settings or statistics: a field renamed in
//! `config` or `stats` cannot change the wire. The session layer converts between these types and its own, and
//! validates every number a peer sends on the way in. Golden-JSON tests pin every message (`messages.rs`).
//!
//! Every TCP connection to a receiver opens with a preamble, so one port serves control and TCP data and a
//! stranger is told apart at once:
//! ```text
//! control: "SKBC" | version u16 | 0 u16
//! data:    "SKBD" | version u16 | flags u16 | session id u64 [| MAC 16 bytes if flags bit 0]   (TCP data only)
//! load:    "SKBL" | version u16 | flags u16 | session id u64 [| MAC 16 bytes if flags bit 0]   (--load flows)
//! ```
//! A load connection is one bulk flow of a session with `--load` (flags bit 1: the receiver sends on it, the
//! load goes receiver → sender); a receiver that takes it answers one byte, [`LOAD_TAKEN`]. Its own magic, so
//! a receiver that does not know load connections refuses them instead of taking one for the data.
//! Control messages follow as frames: a u32 big-endian length, then that many bytes of JSON (`Ctl`); after
//! the key proofs of an authenticated session (`--key-file`), each frame also ends with a 16-byte MAC over its
//! number and body (`auth`). The control channel carries a handful of messages per session, so readability
//! beats compactness.
//!
//! Sequence: Hello → Accept | Reject; TimeReq/TimeResp × n; Start → Ready; (data); Done → Results,
//! Messages × k (with --per-message), End. Either side may send Abort with a reason at any time.

pub mod frame;
pub mod messages;

pub use frame::{encode, FrameDecoder, FrameEncoder, FrameError, Preamble, PreambleDecoder};
pub use messages::*;

/// The control protocol version this build speaks. Any change to a message's JSON shape bumps it.
pub const VERSION: u16 = 2;
pub const CTL_MAGIC: [u8; 4] = *b"SKBC";
pub const DATA_MAGIC: [u8; 4] = *b"SKBD";
pub const LOAD_MAGIC: [u8; 4] = *b"SKBL";
/// Flag of a load preamble: the receiver sends the bulk bytes on this connection.
pub const PREAMBLE_DOWN: u16 = 2;
/// The byte a receiver answers a load connection it took.
pub const LOAD_TAKEN: u8 = 1;
/// No control message is larger; a peer announcing more is not trusted.
pub const MAX_FRAME: usize = 64 << 20;
/// The largest frame a receiver accepts from a sender (hello, clock exchanges, start, done, abort: all small).
/// Only the receiver's results and per-message rows need `MAX_FRAME`; a stranger announcing more before it has
/// even said hello is dropped without buffering it.
pub const MAX_SENDER_FRAME: usize = 1 << 20;

/// The 8 bytes that open a control connection.
pub fn control_preamble() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&CTL_MAGIC);
    p[4..6].copy_from_slice(&VERSION.to_be_bytes());
    p
}

/// Flag of a data preamble: a MAC follows the session id.
pub const PREAMBLE_MAC: u16 = 1;

/// The bytes that open a TCP data connection for `session`: 16, or 32 with the MAC of an authenticated
/// session.
pub fn data_preamble(session: u64, mac: Option<[u8; 16]>) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&DATA_MAGIC);
    p.extend_from_slice(&VERSION.to_be_bytes());
    let flags = if mac.is_some() { PREAMBLE_MAC } else { 0 };
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&session.to_be_bytes());
    if let Some(m) = mac {
        p.extend_from_slice(&m);
    }
    p
}

/// The bytes that open a load connection of `session` (`down`: the receiver sends on it): 16, or 32 with
/// the MAC of an authenticated session.
pub fn load_preamble(session: u64, down: bool, mac: Option<[u8; 16]>) -> Vec<u8> {
    let mut p = data_preamble(session, mac);
    p[..4].copy_from_slice(&LOAD_MAGIC);
    if down {
        let flags = u16::from_be_bytes([p[6], p[7]]) | PREAMBLE_DOWN;
        p[6..8].copy_from_slice(&flags.to_be_bytes());
    }
    p
}

/// The one line both ends print when the other speaks another version.
pub fn version_mismatch(theirs: u16, side: &str) -> String {
    format!(
        "the {side} speaks control protocol version {theirs} and this sockbench version {VERSION}: run the same \
         sockbench version on both hosts"
    )
}
