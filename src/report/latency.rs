//! `<run_id>_<protocol>_latency.csv`: the hdrhistogram percentile distribution (value_us, percentile,
//! total_count), ready for a CDF plot. Values carry the histogram's resolution: 3 significant digits.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

/// Write the distribution: 5 ticks per half-distance to 100 %, as HdrHistogram's own percentile output does.
pub fn write(path: &Path, h: &Histogram<u64>) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record(["value_us", "percentile", "total_count"])?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            w.write_record([
                format!(
                    "{:.3}",
                    h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0
                ),
                format!("{:.6}", v.quantile_iterated_to() * 100.0),
                total.to_string(),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
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
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        write(&p, &h).unwrap();
        let mut r = csv::Reader::from_path(&p).unwrap();
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        let last = rows.last().unwrap();
        assert_eq!(&last[1], "100.000000");
        assert_eq!(&last[2], "4");
        assert_eq!(&rows[0][0], "1.000");
    }
}
