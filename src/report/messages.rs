//! `<run_id>_<protocol>_messages.csv` (--per-message): one row per arrival in arrival order, then one row per
//! sequence number that never arrived. Rows are appended as the receiver sends them, whole rows per write.

use std::io::Write;
use std::path::Path;

use super::export::{csv_writer, Appender, Export};
use crate::accounting::{Row, Status};

/// Bumped when a column changes meaning or position.
pub const SCHEMA_VERSION: u32 = 1;
pub const COLUMNS: [&str; 8] = [
    "schema_version",
    "seq",
    "sched_ns",
    "send_ns",
    "recv_ns",
    "latency_us",
    "status",
    "rtt_us",
];

/// Arrivals as rows; with echo, each message's round trip by sequence number (ns, 0 = no reply).
pub struct Arrivals<'a>(pub &'a [Row], pub Option<&'a [u64]>);

impl Export for Arrivals<'_> {
    fn header(&self) -> Vec<&'static str> {
        COLUMNS.to_vec()
    }

    fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()> {
        let mut c = csv_writer(w);
        for r in self.0 {
            // A corrupt message's header is not trusted, so its latency is not computed.
            let latency = if r.status == Status::Corrupt {
                String::new()
            } else {
                format!(
                    "{:.3}",
                    (i128::from(r.recv_ns) - i128::from(r.sched_ns)) as f64 / 1000.0
                )
            };
            // The round trip belongs to the message's first valid copy, not to duplicates or damaged ones.
            let rtt = match (self.1, r.status) {
                (Some(t), Status::Ok | Status::Reordered) => t
                    .get(r.seq as usize)
                    .filter(|&&ns| ns > 0)
                    .map(|&ns| format!("{:.3}", ns as f64 / 1000.0))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            c.write_record([
                SCHEMA_VERSION.to_string(),
                r.seq.to_string(),
                r.sched_ns.to_string(),
                r.send_ns.to_string(),
                r.recv_ns.to_string(),
                latency,
                r.status.name().to_string(),
                rtt,
            ])?;
        }
        c.flush()?;
        Ok(())
    }
}

/// Sequence numbers that never arrived, given as runs (first, length).
pub struct Lost<'a>(pub &'a [(u64, u64)]);

impl Export for Lost<'_> {
    fn header(&self) -> Vec<&'static str> {
        COLUMNS.to_vec()
    }

    fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()> {
        let mut c = csv_writer(w);
        let v = SCHEMA_VERSION.to_string();
        for &(first, len) in self.0 {
            for seq in first..first.saturating_add(len) {
                c.write_record([v.as_str(), &seq.to_string(), "", "", "", "", "lost", ""])?;
            }
        }
        c.flush()?;
        Ok(())
    }
}

/// The per-message file of one session, growing as rows come in.
pub struct MessagesCsv(Appender);

impl MessagesCsv {
    pub fn create(path: &Path) -> anyhow::Result<MessagesCsv> {
        Ok(MessagesCsv(Appender::create(path, &COLUMNS)?))
    }

    /// Arrivals; `rtts`: each message's round trip with echo (ns by sequence number, 0 = no reply).
    pub fn rows(&mut self, rows: &[Row], rtts: Option<&[u64]>) -> anyhow::Result<()> {
        self.0.append(&Arrivals(rows, rtts))
    }

    /// Rows for the lost runs, in writes of at most `LOST_ROWS_PER_WRITE` rows (memory stays small however
    /// many were lost).
    pub fn lost(&mut self, runs: &[(u64, u64)]) -> anyhow::Result<()> {
        const LOST_ROWS_PER_WRITE: u64 = 1 << 16;
        for &(first, len) in runs {
            let end = first.saturating_add(len);
            let mut at = first;
            while at < end {
                let n = (end - at).min(LOST_ROWS_PER_WRITE);
                self.0.append(&Lost(&[(at, n)]))?;
                at += n;
            }
        }
        Ok(())
    }
}
