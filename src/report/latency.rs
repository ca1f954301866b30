//! `<run_id>_<protocol>_latency.csv`: the hdrhistogram percentile distribution (value_us, percentile,
//! total_count), ready for a CDF plot. Values carry the histogram's resolution: 3 significant digits.

use std::io::Write;

use hdrhistogram::Histogram;

use super::export::{csv_writer, Export};

/// Bumped when a column changes meaning or position.
pub const SCHEMA_VERSION: u32 = 1;

/// The distribution: 5 ticks per half-distance to 100 %, as HdrHistogram's own percentile output does.
pub struct LatencyCsv<'a>(pub &'a Histogram<u64>);

impl Export for LatencyCsv<'_> {
    fn header(&self) -> Vec<&'static str> {
        vec!["schema_version", "value_us", "percentile", "total_count"]
    }

    fn write_rows(&self, w: &mut dyn Write) -> anyhow::Result<()> {
        let h = self.0;
        let mut c = csv_writer(w);
        let mut total = 0u64;
        if !h.is_empty() {
            for v in h.iter_quantiles(5) {
                total += v.count_since_last_iteration();
                c.write_record([
                    SCHEMA_VERSION.to_string(),
                    format!(
                        "{:.3}",
                        h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0
                    ),
                    format!("{:.6}", v.quantile_iterated_to() * 100.0),
                    total.to_string(),
                ])?;
            }
        }
        c.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_ends_at_100_percent_with_every_count() {
        let mut h = crate::stats::new_ns_histogram();
        for v in [1_000u64, 2_000, 3_000, 4_000] {
            h.record(v).unwrap();
        }
        let mut buf = Vec::new();
        super::super::export::write(&LatencyCsv(&h), &mut buf).unwrap();
        let mut r = csv::Reader::from_reader(&buf[..]);
        assert_eq!(r.headers().unwrap().get(0), Some("schema_version"));
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        let last = rows.last().unwrap();
        assert_eq!(&last[2], "100.000000");
        assert_eq!(&last[3], "4");
        assert_eq!(&rows[0][1], "1.000");
        assert_eq!(&rows[0][0], "1");
    }
}
