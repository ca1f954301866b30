//! Ground-truth counters of the link emulator, per direction and IP protocol, and their CSV form.
//!
//! Every original packet that enters a direction ends in exactly one of
//! `forwarded`, `dropped`, `queue_drops`, `unsent_at_stop` or `write_errors`, so
//! `entered == forwarded + dropped + queue_drops + unsent_at_stop + write_errors`.
//! `duplicated`, `corrupted` and `reordered` describe packets that were forwarded:
//!
//! * `forwarded`: originals written to the far TUN (corrupted ones included).
//! * `duplicated`: extra copies written (one per duplicated original, right after it).
//! * `corrupted`: forwarded originals with one flipped bit. A corrupted packet is never
//!   duplicated, so with stale checksums a receiver loses exactly `corrupted` of them.
//! * `fragments`: of `entered`, the IP fragments. A datagram larger than the path MTU crosses the link as
//!   several packets, and every count here is of packets: a message is lost when any one of its fragments
//!   is, and a corrupted fragment makes its whole datagram fail the UDP checksum.
//! * `reordered`: RFC 4737 Type-P-Reordered over this direction's and protocol's entry
//!   order, evaluated at the output on the packets a receiver accepts (intact originals,
//!   and corrupted ones only with `corrupt_fix_checksum` on UDP). Copies never count.
//!
//! For one UDP flow of single-packet datagrams this gives, at the receiver:
//! received unique = `forwarded - corrupted` (stale checksums), duplicates = `duplicated`,
//! RFC 4737 reordered = `reordered`, lost = `dropped + queue_drops + corrupted` (+ the rest
//! of `entered` that never came out). Losses before the link (the TUN queue, txqueuelen)
//! and after it (socket buffers) are not the link's and are not counted here.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{Direction, Proto};

/// Version of the `link.csv` schema; bump when columns change.
pub const CSV_SCHEMA_VERSION: u32 = 2;

/// Counts for one direction and protocol (see the module doc for exact meanings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub entered: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub queue_drops: u64,
    pub unsent_at_stop: u64,
    pub write_errors: u64,
    pub fragments: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.entered += o.entered;
        self.forwarded += o.forwarded;
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.queue_drops += o.queue_drops;
        self.unsent_at_stop += o.unsent_at_stop;
        self.write_errors += o.write_errors;
        self.fragments += o.fragments;
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Entered,
    Forwarded,
    Dropped,
    Duplicated,
    Reordered,
    Corrupted,
    QueueDrops,
    UnsentAtStop,
    WriteErrors,
    Fragments,
}
const NFIELDS: usize = 10;

/// Live counters shared between the forwarding threads and readers.
#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    cells: [[[AtomicU64; NFIELDS]; 4]; 2],
}

impl SharedCounters {
    pub(crate) fn add(&self, dir: Direction, proto: Proto, f: Field, n: u64) {
        self.cells[dir as usize][proto as usize][f as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkCounters {
        let mut out = LinkCounters::default();
        for dir in Direction::ALL {
            for proto in Proto::ALL {
                let c = &self.cells[dir as usize][proto as usize];
                let g = |f: Field| c[f as usize].load(Ordering::Relaxed);
                out.cells[dir as usize][proto as usize] = Counts {
                    entered: g(Field::Entered),
                    forwarded: g(Field::Forwarded),
                    dropped: g(Field::Dropped),
                    duplicated: g(Field::Duplicated),
                    reordered: g(Field::Reordered),
                    corrupted: g(Field::Corrupted),
                    queue_drops: g(Field::QueueDrops),
                    unsent_at_stop: g(Field::UnsentAtStop),
                    write_errors: g(Field::WriteErrors),
                    fragments: g(Field::Fragments),
                };
            }
        }
        out
    }
}

/// A snapshot of the link's counters: `a_to_b` and `b_to_a`, each per protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    cells: [[Counts; 4]; 2],
}

/// `link.csv`: one row per direction and protocol (`tcp`, `udp`, `icmp`, `other`) plus `all`. Columns:
/// schema_version, run_id, label, direction, proto, entered, forwarded, dropped, duplicated, reordered,
/// corrupted, queue_drops, unsent_at_stop, write_errors, fragments (all packet counts).
pub struct LinkCsv<'a> {
    counts: &'a LinkCounters,
    run_id: &'a str,
    label: &'a str,
}

impl crate::report::export::Export for LinkCsv<'_> {
    fn header(&self) -> Vec<&'static str> {
        CSV_COLUMNS.to_vec()
    }

    fn write_rows(&self, w: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let mut c = crate::report::export::csv_writer(w);
        for dir in Direction::ALL {
            let rows = Proto::ALL
                .iter()
                .map(|&p| (p.name(), self.counts.get(dir, p)))
                .chain(std::iter::once(("all", self.counts.total(dir))));
            for (proto, counts) in rows {
                c.serialize((
                    CSV_SCHEMA_VERSION,
                    self.run_id,
                    self.label,
                    dir.name(),
                    proto,
                    counts.entered,
                    counts.forwarded,
                    counts.dropped,
                    counts.duplicated,
                    counts.reordered,
                    counts.corrupted,
                    counts.queue_drops,
                    counts.unsent_at_stop,
                    counts.write_errors,
                    counts.fragments,
                ))?;
            }
        }
        c.flush()?;
        Ok(())
    }
}

/// The `link.csv` columns, in order. This is the schema; see [`CSV_SCHEMA_VERSION`].
pub const CSV_COLUMNS: [&str; 15] = [
    "schema_version",
    "run_id",
    "label",
    "direction",
    "proto",
    "entered",
    "forwarded",
    "dropped",
    "duplicated",
    "reordered",
    "corrupted",
    "queue_drops",
    "unsent_at_stop",
    "write_errors",
    "fragments",
];

impl LinkCounters {
    /// Counts for one direction and protocol.
    pub fn get(&self, dir: Direction, proto: Proto) -> Counts {
        self.cells[dir as usize][proto as usize]
    }

    /// Sum over protocols for one direction.
    pub fn total(&self, dir: Direction) -> Counts {
        let mut t = Counts::default();
        for c in self.cells[dir as usize] {
            t += c;
        }
        t
    }

    /// `link.csv`'s content for this snapshot, written through the report's exporter.
    pub fn csv<'a>(&'a self, run_id: &'a str, label: &'a str) -> LinkCsv<'a> {
        LinkCsv {
            counts: self,
            run_id,
            label,
        }
    }

    /// Write `link.csv` whole (replacing the previous snapshot atomically).
    pub fn write_csv(&self, path: &Path, run_id: &str, label: &str) -> anyhow::Result<()> {
        crate::report::export::write_file(path, &self.csv(run_id, label))
    }

    /// A human-readable table (one line per direction and protocol that saw traffic).
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<6} {:<5} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "dir",
            "proto",
            "entered",
            "forwarded",
            "dropped",
            "q_drops",
            "dup",
            "reorder",
            "corrupt"
        );
        for dir in Direction::ALL {
            for p in Proto::ALL {
                let c = self.get(dir, p);
                if c.entered == 0 {
                    continue;
                }
                s += &format!(
                    "{:<6} {:<5} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                    dir.name(),
                    p.name(),
                    c.entered,
                    c.forwarded,
                    c.dropped,
                    c.queue_drops,
                    c.duplicated,
                    c.reordered,
                    c.corrupted
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip() {
        let shared = SharedCounters::default();
        shared.add(Direction::AtoB, Proto::Udp, Field::Entered, 10);
        shared.add(Direction::AtoB, Proto::Udp, Field::Forwarded, 9);
        shared.add(Direction::AtoB, Proto::Udp, Field::Dropped, 1);
        shared.add(Direction::BtoA, Proto::Icmp, Field::Forwarded, 3);
        let snap = shared.snapshot();
        assert_eq!(snap.get(Direction::AtoB, Proto::Udp).forwarded, 9);
        let dir = std::env::temp_dir().join(format!("sb-counters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("link.csv");
        snap.write_csv(&path, "run1", "lbl").unwrap();
        let mut r = csv::Reader::from_path(&path).unwrap();
        let headers = r.headers().unwrap().clone();
        assert_eq!(&headers[0], "schema_version");
        assert_eq!(&headers[6], "forwarded");
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 10);
        let udp = rows
            .iter()
            .find(|r| &r[3] == "a_to_b" && &r[4] == "udp")
            .unwrap();
        assert_eq!((&udp[5], &udp[6], &udp[7]), ("10", "9", "1"));
        let all_b = rows
            .iter()
            .find(|r| &r[3] == "b_to_a" && &r[4] == "all")
            .unwrap();
        assert_eq!(&all_b[6], "3");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
