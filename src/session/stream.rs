//! A TCP session's byte stream cut back into messages and accounted, sans-IO: the driver reads into
//! [`StreamReceiver::spare`], reports how many bytes came, and writes back whatever echo bytes are waiting.
//! Counts how reads and messages lined up (a stream keeps no boundaries).

use crate::accounting::{Account, Status};
use crate::wire::{self, Framer, Header};

pub struct StreamReceiver {
    framer: Framer,
    echo: bool,
    out: Vec<u8>,
}

impl StreamReceiver {
    /// The framer refuses lengths above the session's message size: a hostile length cannot grow memory.
    pub fn new(acct: &Account, echo: bool) -> StreamReceiver {
        StreamReceiver {
            framer: Framer::new(acct.size().max(wire::HEADER_LEN)),
            echo,
            out: Vec::new(),
        }
    }

    /// Space for the next read.
    pub fn spare(&mut self) -> &mut [u8] {
        self.framer.spare()
    }

    /// A read of `n` bytes into `spare()` at `recv_ns` (receiver clock); `now_ns` stamps echo replies. Err:
    /// the stream stopped being sockbench messages, and no boundary can be found again: drop the connection.
    pub fn on_read(
        &mut self,
        n: usize,
        acct: &mut Account,
        recv_ns: i64,
        now_ns: i64,
    ) -> Result<(), String> {
        self.framer.filled(n);
        let mut desync = None;
        while let Some(frame) = self.framer.next_frame() {
            let msg = match frame {
                Ok(m) => m,
                Err(e) => {
                    desync = Some(e);
                    break;
                }
            };
            let status = match Header::parse(msg) {
                Ok(h) if h.session == acct.session => acct.on_message(msg, &h, recv_ns),
                _ => {
                    acct.on_invalid();
                    None
                }
            };
            if self.echo
                && matches!(
                    status,
                    Some(Status::Ok | Status::Reordered | Status::Duplicate)
                )
            {
                wire::make_echo_reply(msg, recv_ns, now_ns);
                acct.seal_reply(msg);
                self.out.extend_from_slice(msg);
                acct.echoed += 1;
            }
        }
        self.framer.end_read();
        match desync {
            Some(e) => {
                acct.on_invalid();
                Err(format!("the stream stopped being sockbench messages ({e})"))
            }
            None => Ok(()),
        }
    }

    /// Echo replies waiting to be written (never longer, in total, than what came in).
    pub fn echo_bytes(&self) -> &[u8] {
        &self.out
    }

    /// `n` echo bytes were written.
    pub fn echo_written(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// The stream ended (`at_eof`: cleanly). Copies the boundary counts into the account; a truncated last
    /// message at EOF is invalid.
    pub fn finish(&self, acct: &mut Account, at_eof: bool) {
        if at_eof && self.framer.pending() > 0 {
            acct.on_invalid();
        }
        acct.recv_calls = self.framer.recv_calls;
        acct.split_messages = self.framer.split_messages;
        acct.coalesced_reads = self.framer.coalesced_reads;
        acct.reads_one_message = self.framer.reads_one_message;
        acct.reads_partial = self.framer.reads_partial;
    }

    /// For the trace: reads, and how they lined up with messages.
    pub fn describe(&self) -> String {
        let f = &self.framer;
        format!(
            "{} reads: {} one message, {} part of one, {} several",
            f.recv_calls, f.reads_one_message, f.reads_partial, f.coalesced_reads
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(r: &mut StreamReceiver, a: &mut Account, bytes: &[u8]) -> Result<(), String> {
        r.spare()[..bytes.len()].copy_from_slice(bytes);
        r.on_read(bytes.len(), a, 10_000, 20_000)
    }

    #[test]
    fn messages_across_reads_and_echoes() {
        let mut a = Account::new(3, 10, 64, false);
        let mut r = StreamReceiver::new(&a, true);
        let stream: Vec<u8> = (0..3)
            .flat_map(|seq| {
                let mut m = wire::template(3, 64, false);
                wire::stamp(&mut m, seq, 1, 1);
                m
            })
            .collect();
        read(&mut r, &mut a, &stream[..100]).unwrap();
        read(&mut r, &mut a, &stream[100..]).unwrap();
        assert_eq!(a.received(), 3);
        assert_eq!(r.echo_bytes().len(), 192);
        r.echo_written(64);
        assert_eq!(r.echo_bytes().len(), 128);
        r.finish(&mut a, true);
        // Read 1: message 0 whole, part of 1 (several). Read 2: the rest of 1, then 2 whole (several).
        assert_eq!(
            (a.recv_calls, a.split_messages, a.coalesced_reads),
            (2, 1, 2)
        );
    }

    #[test]
    fn garbage_ends_the_stream() {
        let mut a = Account::new(3, 10, 64, false);
        let mut r = StreamReceiver::new(&a, false);
        assert!(read(&mut r, &mut a, b"GET / HTTP/1.1\r\n").is_err());
        assert_eq!(a.invalid, 1);
    }
}
