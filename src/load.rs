//! Latency under load (issue 14): the plain values and arithmetic around it. A measured session with `--load N`
//! runs in two phases told apart by sequence number: the first `idle_probes` messages cross an idle path (the
//! idle phase), the rest share it with N bulk TCP flows (the loaded phase). This module says which phase a
//! message belongs to, what the load achieved, and the responsiveness figure (RPM) of the loaded phase; the
//! flows themselves are in `driver::load`. No I/O, no clock.

use hdrhistogram::Histogram;

/// At most this many bulk flows per session, on either end: each is a thread and a socket buffer.
pub const MAX_LOAD_FLOWS: u32 = 64;
/// The idle phase when `--idle-probes` is not given: this long at the session's rate...
pub const DEFAULT_IDLE_SECS: f64 = 1.0;
/// ...but at least this many probes, and this many when the session is unpaced.
pub const MIN_IDLE_PROBES: u64 = 20;
pub const UNPACED_IDLE_PROBES: u64 = 1000;
/// The loaded phase when neither `--count` nor `--duration` is given: this many times the idle phase.
pub const DEFAULT_LOADED_FACTOR: u64 = 4;
/// RPM's trimming: the slowest 5 % of the loaded round trips are left out (the draft's 95th-percentile trim).
pub const RPM_KEEP: f64 = 0.95;
/// The load's congestion control unless `--load-cc` says otherwise: cubic, Linux's default and the most
/// deployed loss-based one, which fills a queue until it overflows (a host defaulting to bbr would hide that).
pub const DEFAULT_LOAD_CC: &str = "cubic";

/// Which way the bulk flows go, seen from the sender of the measured session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadDirection {
    /// Sender → receiver: the same direction as the probes.
    #[default]
    Up,
    /// Receiver → sender.
    Down,
    /// Both ways at once.
    Both,
}

impl LoadDirection {
    pub fn name(self) -> &'static str {
        match self {
            LoadDirection::Up => "up",
            LoadDirection::Down => "down",
            LoadDirection::Both => "both",
        }
    }
}

/// The idle phase when the user did not size it: one second of probes at `rate` (at least
/// [`MIN_IDLE_PROBES`]), or [`UNPACED_IDLE_PROBES`] when unpaced.
pub fn default_idle_probes(rate: f64) -> u64 {
    if rate > 0.0 {
        ((rate * DEFAULT_IDLE_SECS).round() as u64).max(MIN_IDLE_PROBES)
    } else {
        UNPACED_IDLE_PROBES
    }
}

/// Whether message `seq` belongs to the idle phase of a session whose first `idle_probes` messages do.
#[inline]
pub fn is_idle(idle_probes: u64, seq: u64) -> bool {
    seq < idle_probes
}

/// What the bulk flows of one session achieved, from the kernel's own counts (TCP_INFO) on their sending end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStats {
    /// Flows that connected.
    pub flows: u32,
    /// Bytes the receiving end acknowledged, summed over the flows (tcpi_bytes_acked).
    pub bytes_acked: u64,
    /// Segments retransmitted, summed over the flows (tcpi_total_retrans).
    pub retransmits: u64,
    /// From the first flow's start to the last flow's end, ns.
    pub active_ns: u64,
    /// The congestion control the flows ran (TCP_CONGESTION read back).
    pub cc: Option<String>,
    /// --probe-on-load: round trips of the probes interleaved on a load connection, ns.
    pub probe_rtt: Option<Histogram<u64>>,
}

impl LoadStats {
    /// Mbit/s the flows delivered together over their active time; None when they never ran.
    pub fn goodput_mbps(&self) -> Option<f64> {
        (self.active_ns > 0).then(|| self.bytes_acked as f64 * 8.0 / self.active_ns as f64 * 1e3)
    }
}

/// The mean of the smallest `keep` fraction of the values in `h` (ns): the trimmed mean, each value taken as
/// hdrhistogram's representative of its bucket. None when `h` is empty.
pub fn trimmed_mean_ns(h: &Histogram<u64>, keep: f64) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    // At least one value is kept: a trim never leaves nothing to average.
    let wanted = ((h.len() as f64 * keep).floor() as u64).max(1);
    let (mut taken, mut sum) = (0u64, 0f64);
    for v in h.iter_recorded() {
        let n = v.count_at_value().min(wanted - taken);
        sum += h.median_equivalent(v.value_iterated_to()) as f64 * n as f64;
        taken += n;
        if taken == wanted {
            break;
        }
    }
    Some(sum / taken as f64)
}

/// Round trips per minute under working conditions, in the spirit of the IETF responsiveness draft
/// (draft-ietf-ippm-responsiveness): 60 s divided by the trimmed mean round trip of the loaded phase's probes,
/// the slowest 5 % left out ([`RPM_KEEP`]). `loaded`: with `--echo` the round trips themselves; else one-way
/// latencies, each made a round trip by adding `return_ns`, the idle phase's median one-way latency (the
/// return path carries no load, so it is taken to cost what the idle forward path did). None without samples.
pub fn rpm(loaded: &Histogram<u64>, return_ns: u64) -> Option<f64> {
    let mean = trimmed_mean_ns(loaded, RPM_KEEP)? + return_ns as f64;
    (mean > 0.0).then(|| 60e9 / mean)
}

/// `--probe-on-load`: the byte stream of the probed load flow is records, each a kind byte, a u32 big-endian
/// length and that many bytes: filler (the bulk), or a probe of [`PROBE_LEN`] bytes (its number and its
/// scheduled time, ns, both u64 big-endian) that the receiver sends straight back. A probe waits behind what
/// the connection has not sent yet, as any message on a loaded connection does.
pub const REC_FILL: u8 = 0;
pub const REC_PROBE: u8 = 1;
pub const REC_HEADER: usize = 5;
pub const PROBE_LEN: usize = 16;
/// No record is longer (the sender's filler records are 16 KiB): a longer one is not a sockbench sender's.
pub const MAX_RECORD: u32 = 1 << 20;

/// A probe record: its header and its number and scheduled time.
pub fn probe_record(seq: u64, sched_ns: u64) -> [u8; REC_HEADER + PROBE_LEN] {
    let mut r = [0u8; REC_HEADER + PROBE_LEN];
    r[0] = REC_PROBE;
    r[1..5].copy_from_slice(&(PROBE_LEN as u32).to_be_bytes());
    r[5..13].copy_from_slice(&seq.to_be_bytes());
    r[13..21].copy_from_slice(&sched_ns.to_be_bytes());
    r
}

/// A filler record of `len` bytes of payload.
pub fn fill_record(len: u32) -> Vec<u8> {
    let mut r = vec![0u8; REC_HEADER + len as usize];
    r[0] = REC_FILL;
    r[1..5].copy_from_slice(&len.to_be_bytes());
    r
}

/// Splits the probed flow's byte stream into records as it comes, in pieces of any size; hands out the
/// probes' payloads. Filler is skipped without being buffered.
#[derive(Debug, Default)]
pub struct RecordReader {
    head: Vec<u8>,
    /// Bytes of the current record still to come, and whether it is a probe (collected) or filler (skipped).
    left: u32,
    probe: Option<Vec<u8>>,
}

impl RecordReader {
    /// Feed bytes; each whole probe's payload goes to `probes`. Err: not a sockbench sender's stream (an
    /// unknown kind, a probe of another length, a record beyond [`MAX_RECORD`]).
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        probes: &mut Vec<[u8; PROBE_LEN]>,
    ) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.left == 0 && self.probe.is_none() {
                let take = (REC_HEADER - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.head.len() < REC_HEADER {
                    return Ok(());
                }
                let len =
                    u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
                match (self.head[0], len) {
                    (REC_FILL, n) if n <= MAX_RECORD => {}
                    (REC_PROBE, n) if n as usize == PROBE_LEN => self.probe = Some(Vec::new()),
                    (kind, n) => return Err(format!("a record of kind {kind} and {n} bytes")),
                }
                self.left = len;
                self.head.clear();
                continue;
            }
            let take = (self.left as usize).min(bytes.len());
            if let Some(p) = &mut self.probe {
                p.extend_from_slice(&bytes[..take]);
            }
            bytes = &bytes[take..];
            self.left -= take as u32;
            if self.left == 0 {
                if let Some(p) = self.probe.take() {
                    let mut a = [0u8; PROBE_LEN];
                    a.copy_from_slice(&p);
                    probes.push(a);
                }
            }
        }
        Ok(())
    }
}

/// A probe's number and scheduled time, from its payload.
pub fn probe_fields(p: &[u8; PROBE_LEN]) -> (u64, u64) {
    let mut a = [0u8; 8];
    a.copy_from_slice(&p[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[8..]);
    (u64::from_be_bytes(a), u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_ns_histogram;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_ns_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn the_phase_split_is_by_sequence_number() {
        assert!(is_idle(3, 0) && is_idle(3, 2));
        assert!(!is_idle(3, 3) && !is_idle(3, u64::MAX));
        assert!(!is_idle(0, 0), "no idle phase without --load");
    }

    #[test]
    fn idle_phase_defaults() {
        assert_eq!(default_idle_probes(200.0), 200);
        assert_eq!(default_idle_probes(5.0), MIN_IDLE_PROBES);
        assert_eq!(default_idle_probes(0.0), UNPACED_IDLE_PROBES);
    }

    /// Values below 2048 ns are exact in the project's histograms, so the figures are exact too.
    #[test]
    fn trimmed_mean_leaves_out_the_slowest_five_percent() {
        // 19 values of 1000 ns and one of 2000: 95 % of 20 is 19, the 2000 is trimmed.
        let mut v = vec![1000; 19];
        v.push(2000);
        assert_eq!(trimmed_mean_ns(&hist(&v), RPM_KEEP), Some(1000.0));
        // Untrimmed: (19 × 1000 + 2000) / 20.
        assert_eq!(trimmed_mean_ns(&hist(&v), 1.0), Some(1050.0));
        // 10 values: 95 % is 9.5, floor 9: the largest is left out.
        let h = hist(&[100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]);
        assert_eq!(trimmed_mean_ns(&h, RPM_KEEP), Some(500.0));
        // One value is always kept.
        assert_eq!(trimmed_mean_ns(&hist(&[700]), RPM_KEEP), Some(700.0));
        assert_eq!(trimmed_mean_ns(&new_ns_histogram(), RPM_KEEP), None);
    }

    #[test]
    fn rpm_is_sixty_seconds_over_the_trimmed_mean_round_trip() {
        // Round trips of 1000 ns: 60e9 / 1000 = 6e7 round trips a minute.
        assert_eq!(rpm(&hist(&[1000; 20]), 0), Some(6e7));
        // One-way 1000 ns plus an idle return of 500 ns: a round trip of 1500 ns.
        assert_eq!(rpm(&hist(&[1000; 20]), 500), Some(4e7));
        assert_eq!(rpm(&new_ns_histogram(), 500), None);
    }

    #[test]
    fn goodput_over_the_active_time() {
        let s = LoadStats {
            flows: 4,
            bytes_acked: 2_500_000,
            retransmits: 3,
            active_ns: 1_000_000_000,
            cc: None,
            probe_rtt: None,
        };
        assert_eq!(s.goodput_mbps(), Some(20.0));
        assert_eq!(LoadStats::default().goodput_mbps(), None);
    }

    /// Records cut anywhere come out whole: filler skipped, probes handed out in order.
    #[test]
    fn records_split_at_every_byte() {
        let stream = [
            fill_record(3),
            probe_record(1, 1000).to_vec(),
            fill_record(0),
            probe_record(2, 2000).to_vec(),
        ]
        .concat();
        for cut in 0..stream.len() {
            let mut r = RecordReader::default();
            let mut probes = vec![];
            r.push(&stream[..cut], &mut probes).unwrap();
            r.push(&stream[cut..], &mut probes).unwrap();
            let got: Vec<_> = probes.iter().map(probe_fields).collect();
            assert_eq!(got, [(1, 1000), (2, 2000)], "cut at {cut}");
        }
        let mut probes = vec![];
        let mut r = RecordReader::default();
        for b in &stream {
            r.push(std::slice::from_ref(b), &mut probes).unwrap();
        }
        assert_eq!(probes.len(), 2);
    }

    #[test]
    fn hostile_records_are_refused() {
        let mut probes = vec![];
        let bad = |b: &[u8]| RecordReader::default().push(b, &mut vec![]).unwrap_err();
        assert!(bad(&[9, 0, 0, 0, 1]).contains("kind 9"));
        assert!(bad(&[REC_PROBE, 0, 0, 0, 17]).contains("17 bytes"));
        assert!(bad(&[REC_FILL, 0, 16, 0, 1]).contains("1048577"));
        RecordReader::default()
            .push(&fill_record(MAX_RECORD)[..REC_HEADER], &mut probes)
            .unwrap();
    }
}
