//! `<run_id>_<protocol>_trace.csv` (--trace): the socket calls of both sides, one row per call or aggregate,
//! times in µs from the first call.

use std::io::Write;

use super::export::{csv_writer, Export};
use crate::trace::Event;

/// Bumped when a column changes meaning or position.
pub const SCHEMA_VERSION: u32 = 1;

pub struct TraceCsv<'a>(pub &'a [Event]);

impl Export for TraceCsv<'_> {
    fn header(&self) -> Vec<&'static str> {
        vec![
            "schema_version",
            "t_us",
            "side",
            "call",
            "fd",
            "detail",
            "result",
            "duration_us",
            "count",
            "total_us",
            "p50_us",
            "p99_us",
        ]
    }

    fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()> {
        let t0 = self.0.iter().map(|e| e.t_ns).min().unwrap_or(0);
        let us = |ns: u64| format!("{:.3}", ns as f64 / 1000.0);
        let mut c = csv_writer(w);
        for e in self.0 {
            c.write_record([
                SCHEMA_VERSION.to_string(),
                format!(
                    "{:.3}",
                    (i128::from(e.t_ns) - i128::from(t0)) as f64 / 1000.0
                ),
                e.side.clone(),
                e.call.clone(),
                e.fd.to_string(),
                e.detail.clone(),
                e.result.clone(),
                us(e.duration_ns),
                e.count.to_string(),
                us(e.total_ns),
                us(e.p50_ns),
                us(e.p99_ns),
            ])?;
        }
        c.flush()?;
        Ok(())
    }
}
