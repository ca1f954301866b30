//! `<run_id>_<protocol>_messages.csv` (--per-message): one row per arrival in arrival order, then one row per
//! sequence number that never arrived. Rows are streamed to disk as the receiver sends them.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;

use crate::accounting::{Row, Status};

pub struct MessagesCsv {
    w: csv::Writer<BufWriter<File>>,
}

impl MessagesCsv {
    pub fn create(path: &Path) -> anyhow::Result<MessagesCsv> {
        let f = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut w = csv::Writer::from_writer(BufWriter::new(f));
        w.write_record([
            "seq",
            "sched_ns",
            "send_ns",
            "recv_ns",
            "latency_us",
            "status",
        ])?;
        Ok(MessagesCsv { w })
    }

    pub fn rows(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        for r in rows {
            let (seq, sched, send, recv, status) =
                (r.seq, r.sched_ns, r.send_ns, r.recv_ns, r.status);
            // A corrupt message's header is not trusted, so its latency is not computed.
            let latency = if status == Status::Corrupt {
                String::new()
            } else {
                format!(
                    "{:.3}",
                    (i128::from(recv) - i128::from(sched)) as f64 / 1000.0
                )
            };
            self.w.write_record([
                &seq.to_string(),
                &sched.to_string(),
                &send.to_string(),
                &recv.to_string(),
                &latency,
                status.name(),
            ])?;
        }
        Ok(())
    }

    /// Rows for lost sequence numbers, given as runs (first, length).
    pub fn lost(&mut self, runs: &[(u64, u64)]) -> anyhow::Result<()> {
        for &(first, len) in runs {
            for seq in first..first + len {
                self.w
                    .write_record([seq.to_string().as_str(), "", "", "", "", "lost"])?;
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.w.flush()?;
        Ok(())
    }
}
