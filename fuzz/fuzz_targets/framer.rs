//! The TCP data path on an arbitrary byte stream cut into arbitrary reads: `Framer` alone (frames are exactly
//! the stream's bytes, never longer than the limit, memory bounded), then `StreamReceiver` with the session's
//! `Account` (counts consistent, echo never more bytes than came in).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::session::stream::StreamReceiver;
use sockbench::wire::{self, Framer};
use sockbench_fuzz::{check_account, Piece, SessionShape};

#[derive(Arbitrary, Debug)]
struct Input {
    shape: SessionShape,
    pieces: Vec<Piece>,
    reads: Vec<u16>,
}

/// Cut `stream` into reads of the given sizes (cycled; each at least 1 byte).
fn cuts(stream_len: usize, reads: &[u16]) -> Vec<usize> {
    let mut out = vec![];
    let mut pos = 0;
    let mut i = 0;
    while pos < stream_len {
        let n = reads
            .get(i % reads.len().max(1))
            .map_or(stream_len, |&r| usize::from(r) + 1);
        let n = n.min(stream_len - pos);
        out.push(n);
        pos += n;
        i += 1;
    }
    out
}

fuzz_target!(|inp: Input| {
    let t = inp.shape.traffic();
    let session = inp.shape.session;
    let keys = inp.shape.keys();
    let stream: Vec<u8> = inp
        .pieces
        .iter()
        .flat_map(|p| p.bytes(session, &|seq| t.size_of(session, seq), keys.as_ref()))
        .collect();
    let reads = cuts(stream.len(), &inp.reads);

    // The framer alone.
    let max_len = t.size;
    let mut f = Framer::new(max_len);
    let (mut pos, mut framed) = (0usize, 0usize);
    let mut calls = 0u64;
    let (mut frames, mut desync) = (0u64, false);
    'stream: for &want in &reads {
        let spare = f.spare();
        assert!(!spare.is_empty(), "a framer with no room stalls the stream");
        let n = want.min(spare.len());
        spare[..n].copy_from_slice(&stream[pos..pos + n]);
        pos += n;
        f.filled(n);
        calls += 1;
        while let Some(fr) = f.next_frame() {
            match fr {
                Ok(m) => {
                    assert!(
                        m.len() >= wire::HEADER_LEN && m.len() <= max_len,
                        "frame of {}",
                        m.len()
                    );
                    assert_eq!(
                        m,
                        &stream[framed..framed + m.len()],
                        "a frame is the stream's own bytes"
                    );
                    framed += m.len();
                    frames += 1;
                }
                Err(_) => {
                    desync = true;
                    break 'stream;
                }
            }
        }
        f.end_read();
        assert_eq!(framed + f.pending(), pos, "every byte is framed or pending");
        assert!(
            f.pending() < max_len.max(wire::LENGTH_PREFIX_END),
            "pending {}",
            f.pending()
        );
        assert_eq!(f.recv_calls, calls);
        assert!(f.reads_one_message + f.reads_partial + f.coalesced_reads <= f.recv_calls);
    }

    // The session's stream receiver with its account.
    let mut acct = inp.shape.account(&t);
    let mut r = StreamReceiver::new(&acct, t.echo);
    let mut pos = 0usize;
    let mut failed = false;
    let mut calls = 0u64;
    for &want in &reads {
        let spare = r.spare();
        let n = want.min(spare.len());
        spare[..n].copy_from_slice(&stream[pos..pos + n]);
        pos += n;
        calls += 1;
        if r.on_read(
            n,
            &mut acct,
            1_700_000_000_000_000_000,
            1_700_000_000_000_000_100,
        )
        .is_err()
        {
            failed = true;
            break;
        }
        assert!(r.echo_bytes().len() <= pos, "echo amplifies");
        let half = r.echo_bytes().len() / 2;
        r.echo_written(half);
    }
    r.finish(&mut acct, !failed);
    assert_eq!(
        failed, desync,
        "the receiver and its framer disagree on the stream"
    );
    // Every message framed was handed to the account once; a desync or a truncated tail is one invalid more.
    let truncated = !desync && f.pending() > 0;
    check_account(&acct, &t, frames + u64::from(desync) + u64::from(truncated));
    assert_eq!(acct.recv_calls, calls);
    let s = acct.measured(Some(t.count), true, None).seq;
    if !t.echo {
        assert_eq!(acct.echoed, 0);
    }
    assert!(acct.echoed <= s.received + s.duplicates);
});
