//! The control decoders on arbitrary bytes cut at arbitrary places: `PreambleDecoder` then `FrameDecoder`.
//! However the bytes are cut, the decoders see the same preamble, the same messages and the same first error
//! as when everything comes at once; buffered bytes never exceed one frame of the limit plus one read.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::proto::{self, Ctl, FrameDecoder, FrameError, Preamble, PreambleDecoder};
use sockbench_fuzz::{check_text, ArbCtl};

#[derive(Arbitrary, Debug)]
enum Part {
    Raw(Vec<u8>),
    Frame(Box<ArbCtl>),
    /// A frame header announcing `len`, then `body` (which may be shorter or longer).
    Announce {
        len: u32,
        body: Vec<u8>,
    },
    /// A frame of text (with the dictionary's JSON tokens, libFuzzer builds near-messages from it).
    Text(String),
    ControlPreamble,
    DataPreamble(u64, Option<[u8; 16]>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    parts: Vec<Part>,
    cuts: Vec<u16>,
    /// The decoder's limit: the receiver's (sender frames) or the sender's (any frame).
    small_limit: bool,
}

#[derive(Debug, PartialEq)]
enum Seen {
    Msg(Box<Ctl>),
    Err(String),
}

fn err_kind(e: &FrameError) -> String {
    check_text(&e.to_string(), "a frame error");
    match e {
        FrameError::NotSockbench(b) => format!("not {b:?}"),
        FrameError::TooLarge { len, max } => format!("large {len} {max}"),
        FrameError::Unreadable(_) => "unreadable".into(),
        FrameError::Forged => "forged".into(),
    }
}

/// The preamble (and the offset where it ended) or why there is none; then what the frames said.
type Decoded = (Option<Result<(Preamble, usize), String>>, Vec<Seen>);

/// Feed `bytes` in pieces of the given sizes; returns the preamble (with where it ended) and what followed.
fn run(bytes: &[u8], sizes: &[usize], limit: usize) -> Decoded {
    let mut pre = PreambleDecoder::default();
    let mut preamble = None;
    let mut frames = FrameDecoder::new(limit);
    let mut seen = vec![];
    let mut pos = 0;
    for &n in sizes {
        let chunk = &bytes[pos..pos + n];
        let start = pos;
        pos += n;
        let rest = match preamble {
            None => match pre.push(chunk) {
                Ok(None) => continue,
                Ok(Some((p, used))) => {
                    assert!(used <= chunk.len());
                    preamble = Some(Ok((p, start + used)));
                    if matches!(p, Preamble::Data { .. }) {
                        return (preamble, seen);
                    }
                    &chunk[used..]
                }
                Err(e) => return (Some(Err(err_kind(&e))), seen),
            },
            Some(_) => chunk,
        };
        let before = frames.pending();
        if let Err(e) = frames.push(rest) {
            seen.push(Seen::Err(err_kind(&e)));
            return (preamble, seen);
        }
        assert!(frames.pending() <= before + rest.len());
        loop {
            match frames.next_message() {
                Ok(Some(m)) => {
                    // What we decode, we can encode and decode again.
                    let again = proto::encode(&m);
                    let mut d = FrameDecoder::new(proto::MAX_FRAME);
                    d.push(&again).unwrap();
                    assert_eq!(d.next_message().unwrap().map(|x| x.kind()), Some(m.kind()));
                    seen.push(Seen::Msg(Box::new(m)));
                }
                Ok(None) => break,
                Err(e) => {
                    seen.push(Seen::Err(err_kind(&e)));
                    return (preamble, seen);
                }
            }
        }
        // Drained: at most one partial frame of the limit is held.
        assert!(
            frames.pending() < 4 + limit,
            "{} bytes pending",
            frames.pending()
        );
    }
    (preamble, seen)
}

fuzz_target!(|inp: Input| {
    let mut bytes = vec![];
    for p in &inp.parts {
        match p {
            Part::Raw(b) => bytes.extend_from_slice(b),
            Part::Frame(c) => bytes.extend(proto::encode(&c.get())),
            Part::Announce { len, body } => {
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(body);
            }
            Part::Text(t) => {
                bytes.extend_from_slice(&(t.len() as u32).to_be_bytes());
                bytes.extend_from_slice(t.as_bytes());
            }
            Part::ControlPreamble => bytes.extend_from_slice(&proto::control_preamble()),
            Part::DataPreamble(s, mac) => bytes.extend(proto::data_preamble(*s, *mac)),
        }
    }
    let limit = if inp.small_limit {
        4096
    } else {
        proto::MAX_SENDER_FRAME
    };
    let mut sizes = vec![];
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let n = inp
            .cuts
            .get(i % inp.cuts.len().max(1))
            .map_or(bytes.len(), |&c| usize::from(c) + 1);
        let n = n.min(bytes.len() - pos);
        sizes.push(n);
        pos += n;
        i += 1;
    }
    let whole = run(&bytes, &[bytes.len()], limit);
    let cut = run(&bytes, &sizes, limit);
    assert_eq!(whole, cut, "the bytes' cuts changed what was decoded");
});
