//! The readable table on stdout: one metric per row, one column per session (TCP and UDP side by side in
//! `compare`), and optionally a column of the link emulator's ground truth.

use std::io::{self, Write};

use super::SessionReport;

/// A cell's value. Times stay numbers until the whole block is known, so that one unit serves the block.
enum V {
    Count(u64),
    /// Microseconds.
    Time(f64),
    Text(String),
}

type Cell = fn(&SessionReport) -> Option<V>;

fn n(v: u64) -> Option<V> {
    Some(V::Count(v))
}

fn on(v: Option<u64>) -> Option<V> {
    v.map(V::Count)
}

fn t(v: Option<f64>) -> Option<V> {
    v.map(V::Time)
}

fn pct(v: Option<f64>) -> Option<V> {
    v.map(|x| V::Text(format!("{x:.2} %")))
}

/// One unit for every time in a block (a section, all columns), chosen from its values: ms once the largest
/// reaches 10 ms, else µs, so that `stddev` never reads in another unit than the `mean` above it.
#[derive(Clone, Copy)]
struct TimeUnit {
    ms: bool,
    decimals: usize,
}

impl TimeUnit {
    fn of(values: impl Iterator<Item = f64> + Clone) -> TimeUnit {
        let max = values.clone().map(f64::abs).fold(0.0, f64::max);
        if max < 10_000.0 {
            return TimeUnit {
                ms: false,
                decimals: 1,
            };
        }
        // Below 1 ms a value would show as 0.xx ms: one more digit keeps it at µs resolution.
        let small = values.map(f64::abs).any(|v| v > 0.0 && v < 1_000.0);
        TimeUnit {
            ms: true,
            decimals: if small { 3 } else { 2 },
        }
    }

    fn show(self, us: f64) -> String {
        if self.ms {
            format!("{:.*} ms", self.decimals, us / 1000.0)
        } else {
            format!("{:.*} µs", self.decimals, us)
        }
    }
}

/// (section, key, label, cell). The key names the CSV column the row shows.
const ROWS: &[(&str, &str, &str, Cell)] = &[
    ("delivery", "sent", "sent", |r| n(r.sent)),
    ("delivery", "received", "received (unique, valid)", |r| {
        on(r.received)
    }),
    ("delivery", "lost", "lost", |r| on(r.lost)),
    (
        "delivery",
        "echo_forward_lost",
        "  on the way there (echo)",
        |r| on(r.echo_forward_lost),
    ),
    (
        "delivery",
        "echo_return_lost",
        "  on the way back (echo)",
        |r| on(r.echo_return_lost),
    ),
    ("delivery", "in_flight", "in flight when cut", |r| {
        r.in_flight.filter(|&n| n > 0).map(V::Count)
    }),
    (
        "delivery",
        "unauthenticated",
        "failed their MAC (forged)",
        |r| r.unauthenticated.filter(|&n| n > 0).map(V::Count),
    ),
    ("delivery", "loss_pct", "loss", |r| pct(r.loss_pct)),
    ("delivery", "duplicates", "duplicates", |r| on(r.duplicates)),
    ("delivery", "reordered", "reordered (RFC 4737)", |r| {
        on(r.reordered)
    }),
    ("delivery", "reorder_extent_max", "  largest extent", |r| {
        on(r.reorder_extent_max)
    }),
    ("delivery", "reordered_3", "  3-reordered", |r| {
        on(r.reordered_3)
    }),
    ("delivery", "loss_bursts", "loss bursts", |r| {
        on(r.loss_bursts)
    }),
    ("delivery", "loss_burst_max", "  longest burst", |r| {
        on(r.loss_burst_max)
    }),
    ("delivery", "corrupt", "corrupt (checksum)", |r| {
        on(r.corrupt)
    }),
    ("delivery", "invalid", "invalid (not ours)", |r| {
        on(r.invalid)
    }),
    (
        "where lost",
        "send_errors",
        "refused by sender kernel",
        |r| on(r.send_errors),
    ),
    (
        "where lost",
        "udp_rcvbuf_drops",
        "dropped by receiver socket",
        |r| {
            // Not exactly this session's datagrams when they shared a queue that dropped, or when the socket
            // dropped coalesced GRO buffers: say so in the cell.
            r.udp_rcvbuf_drops.map(|d| match r.udp_rcvbuf_exact {
                Some(false) => V::Text(format!("{d} (approximate: shared queue or GRO buffers)")),
                _ => V::Count(d),
            })
        },
    ),
    (
        "where lost",
        "udp_checksum_drops",
        "bad checksum, dropped by receiver kernel (host-wide)",
        |r| r.udp_checksum_drops.filter(|&n| n > 0).map(V::Count),
    ),
    (
        "where lost",
        "corrupt",
        "arrived damaged (counted corrupt)",
        |r| r.corrupt.filter(|&n| n > 0).map(V::Count),
    ),
    ("where lost", "path_lost", "lost on the path", |r| {
        on(r.path_lost)
    }),
    ("latency", "latency_min_us", "min", |r| t(r.latency_min_us)),
    ("latency", "latency_p50_us", "p50", |r| t(r.latency_p50_us)),
    ("latency", "latency_p90_us", "p90", |r| t(r.latency_p90_us)),
    ("latency", "latency_p99_us", "p99", |r| t(r.latency_p99_us)),
    ("latency", "latency_p999_us", "p99.9", |r| {
        t(r.latency_p999_us)
    }),
    ("latency", "latency_max_us", "max", |r| t(r.latency_max_us)),
    ("latency", "latency_mean_us", "mean", |r| {
        t(r.latency_mean_us)
    }),
    ("latency", "latency_stddev_us", "stddev", |r| {
        t(r.latency_stddev_us)
    }),
    (
        "latency",
        "transit_p50_us",
        "transit p50 (from actual send)",
        |r| t(r.transit_p50_us),
    ),
    ("latency", "transit_p99_us", "transit p99", |r| {
        t(r.transit_p99_us)
    }),
    (
        "latency",
        "rtt_kernel_p50_us",
        "kernel-stamped RTT p50 (path only)",
        |r| t(r.rtt_kernel_p50_us),
    ),
    (
        "latency",
        "rtt_kernel_p99_us",
        "kernel-stamped RTT p99",
        |r| t(r.rtt_kernel_p99_us),
    ),
    (
        "under load",
        "idle_latency_p50_us",
        "idle p50 (probes alone)",
        |r| t(r.idle_latency_p50_us),
    ),
    (
        "under load",
        "latency_p50_us",
        "loaded p50 (beside the load)",
        |r| t(r.latency_p50_us.filter(|_| r.load_flows.is_some())),
    ),
    (
        "under load",
        "latency_p50_ratio",
        "  loaded ÷ idle",
        |r| match (r.latency_p50_us, r.idle_latency_p50_us) {
            (Some(l), Some(i)) if i > 0.0 => Some(V::Text(format!("{:.1}×", l / i))),
            _ => None,
        },
    ),
    ("under load", "idle_latency_p99_us", "idle p99", |r| {
        t(r.idle_latency_p99_us)
    }),
    ("under load", "latency_p99_us", "loaded p99", |r| {
        t(r.latency_p99_us.filter(|_| r.load_flows.is_some()))
    }),
    ("under load", "rpm", "responsiveness (RPM, loaded)", |r| {
        r.rpm.map(|v| V::Text(format!("{v:.0}")))
    }),
    (
        "under load",
        "load_probe_rtt_p50_us",
        "on a load connection: round trip p50",
        |r| t(r.load_probe_rtt_p50_us),
    ),
    (
        "under load",
        "load_probe_rtt_p99_us",
        "  round trip p99",
        |r| t(r.load_probe_rtt_p99_us),
    ),
    (
        "under load",
        "load_notsent_lowat",
        "  TCP_NOTSENT_LOWAT",
        |r| r.load_notsent_lowat.map(|n| V::Text(format!("{n} B"))),
    ),
    ("under load", "load_flows", "bulk TCP flows (load)", |r| {
        r.load_flows.map(|n| match &r.load_cc {
            Some(cc) => V::Text(format!("{n} ({cc})")),
            None => V::Count(u64::from(n)),
        })
    }),
    ("under load", "load_goodput_mbps", "  their goodput", |r| {
        r.load_goodput_mbps
            .map(|v| V::Text(format!("{v:.2} Mbit/s")))
    }),
    (
        "under load",
        "load_retransmits",
        "  their retransmits",
        |r| on(r.load_retransmits),
    ),
    ("variation", "jitter_us", "jitter (RFC 3550)", |r| {
        t(r.jitter_us)
    }),
    ("variation", "ipdv_p50_us", "IPDV p50 (RFC 5481)", |r| {
        t(r.ipdv_p50_us)
    }),
    ("variation", "ipdv_p99_us", "IPDV p99", |r| t(r.ipdv_p99_us)),
    ("variation", "pdv_us", "PDV (p99.9 − min)", |r| t(r.pdv_us)),
    ("throughput", "goodput_mbps", "goodput", |r| {
        r.goodput_mbps.map(|v| V::Text(format!("{v:.3} Mbit/s")))
    }),
    ("throughput", "msgs_per_s", "messages/s", |r| {
        r.msgs_per_s.map(|v| V::Text(format!("{v:.0}")))
    }),
    ("boundaries", "recv_calls", "receive calls", |r| {
        on(r.recv_calls)
    }),
    (
        "boundaries",
        "reads_one_message",
        "  returned exactly one message",
        |r| on(r.reads_one_message),
    ),
    (
        "boundaries",
        "reads_partial_message",
        "  returned part of one",
        |r| on(r.reads_partial_message),
    ),
    ("boundaries", "coalesced_reads", "  returned several", |r| {
        on(r.coalesced_reads)
    }),
    (
        "boundaries",
        "split_messages",
        "messages split across reads",
        |r| on(r.split_messages),
    ),
    // Where the sender, not the network, was the limit: its lateness, each side's CPU, its batching.
    (
        "sending",
        "pacing_lag_p99_us",
        "late against schedule p99",
        |r| t(r.pacing_lag_p99_us),
    ),
    (
        "sending",
        "sender_cpu_us_per_msg",
        "sender CPU per message",
        |r| t(r.sender_cpu_us_per_msg),
    ),
    (
        "sending",
        "receiver_cpu_us_per_msg",
        "receiver CPU per message",
        |r| t(r.receiver_cpu_us_per_msg),
    ),
    ("sending", "msgs_per_write", "messages per send call", |r| {
        r.msgs_per_write.map(|m| V::Text(format!("{m:.1}")))
    }),
    (
        "sending",
        "gso",
        "  UDP GSO: datagrams per buffer, at most",
        |r| r.gso.filter(|&g| g > 0).map(|g| V::Count(u64::from(g))),
    ),
    ("tcp", "tcp_connect_us", "connect (handshake)", |r| {
        t(r.tcp_connect_us)
    }),
    ("tcp", "tcp_retransmits", "retransmitted segments", |r| {
        on(r.tcp_retransmits)
    }),
    (
        "clock",
        "clock_offset_us",
        "receiver − sender offset",
        |r| t(r.clock_offset_us),
    ),
    ("clock", "clock_error_us", "  error bound ±", |r| {
        t(r.clock_error_us)
    }),
    ("clock", "clock_drift_ppm", "  drift", |r| {
        r.clock_drift_ppm
            .filter(|&d| d != 0.0)
            .map(|d| V::Text(format!("{d:.1} ppm")))
    }),
    ("clock", "clock_steps", "  steps", |r| {
        r.clock_steps
            .filter(|&s| s > 0)
            .map(|s| V::Count(u64::from(s)))
    }),
];

/// When the clock bound is not small against the one-way figures (a tenth of the median or more), the table
/// says so in words: those figures are only known to within it.
fn clock_caveat(r: &SessionReport) -> Option<String> {
    let bound = r.clock_error_us.filter(|&b| b > 0.0)?;
    let p50 = r.transit_p50_us?;
    (bound >= p50 / 10.0).then(|| {
        format!(
            "{}: one-way figures are ± {:.1} µs (the clock offset's bound: half the smallest round trip, which \
             path asymmetry can hide, plus the fit's spread)",
            r.protocol.to_uppercase(),
            bound
        )
    })
}

/// An extra column: a heading and a value per row key (e.g. the emulator's counts).
pub struct Extra<'a> {
    pub heading: String,
    pub cell: &'a dyn Fn(&str) -> Option<String>,
}

/// With `--echo` the latency rows are the sender's round trips, not one-way delays: the heading says so.
fn section_heading(section: &str, sessions: &[&SessionReport]) -> String {
    let echo = sessions.iter().any(|r| r.mode == "echo");
    let load = sessions.iter().any(|r| r.load_flows.is_some());
    match section {
        "latency" if echo && load => {
            "latency: round trips (--echo) of the loaded phase; the transit rows are one-way".into()
        }
        "latency" if echo => "latency: round trips (--echo); the transit rows are one-way".into(),
        "latency" | "variation" if load => format!("{section}: the loaded phase"),
        "under load" => {
            "under load: the idle phase (probes alone), then the loaded phase (probes beside the flows)".into()
        }
        _ => section.to_string(),
    }
}

/// Print the sessions side by side. Rows where no column has a value are left out.
pub fn print(
    out: &mut dyn Write,
    sessions: &[&SessionReport],
    extra: Option<&Extra>,
) -> io::Result<()> {
    let mut headings: Vec<String> = sessions
        .iter()
        .map(|r| {
            let mut h = r.protocol.to_uppercase();
            if !r.complete {
                h.push_str(" (incomplete)");
            }
            h
        })
        .collect();
    if let Some(e) = extra {
        headings.push(e.heading.clone());
    }
    /// A row's values before formatting: (section, label, sessions' cells, the extra column's cell).
    type Raw<'a> = (&'a str, &'a str, Vec<Option<V>>, Option<String>);
    let mut rows: Vec<Raw> = vec![];
    for (section, key, label, cell) in ROWS {
        let cells: Vec<Option<V>> = sessions.iter().map(|r| cell(r)).collect();
        let more = extra.and_then(|e| (e.cell)(key));
        if cells.iter().all(Option::is_none) && more.is_none() {
            continue;
        }
        rows.push((section, label, cells, more));
    }
    let unit_of = |section: &str| {
        TimeUnit::of(
            rows.iter()
                .filter(|r| r.0 == section)
                .flat_map(|r| r.2.iter())
                .filter_map(|c| match c {
                    Some(V::Time(us)) => Some(*us),
                    _ => None,
                }),
        )
    };
    let lines: Vec<(String, String, Vec<String>)> = rows
        .iter()
        .map(|(section, label, cells, more)| {
            let unit = unit_of(section);
            let mut shown: Vec<String> = cells
                .iter()
                .map(|c| match c {
                    None => "–".into(),
                    Some(V::Count(v)) => v.to_string(),
                    Some(V::Time(us)) => unit.show(*us),
                    Some(V::Text(s)) => s.clone(),
                })
                .collect();
            if extra.is_some() {
                shown.push(more.clone().unwrap_or_else(|| "–".into()));
            }
            (section_heading(section, sessions), label.to_string(), shown)
        })
        .collect();
    let label_w = lines
        .iter()
        .map(|l| l.1.chars().count())
        .max()
        .unwrap_or(10)
        .max(12);
    let mut col_w: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
    for l in &lines {
        for (i, c) in l.2.iter().enumerate() {
            col_w[i] = col_w[i].max(c.chars().count());
        }
    }
    let pad =
        |s: &str, w: usize| format!("{}{}", " ".repeat(w.saturating_sub(s.chars().count())), s);
    let padr =
        |s: &str, w: usize| format!("{}{}", s, " ".repeat(w.saturating_sub(s.chars().count())));
    write!(out, "{}", padr("", label_w + 2))?;
    for (i, h) in headings.iter().enumerate() {
        write!(out, "  {}", pad(h, col_w[i]))?;
    }
    writeln!(out)?;
    let mut last_section = String::new();
    for (section, label, cells) in &lines {
        if *section != last_section {
            writeln!(out, "{section}")?;
            last_section = section.clone();
        }
        write!(out, "  {}", padr(label, label_w))?;
        for (i, c) in cells.iter().enumerate() {
            write!(out, "  {}", pad(c, col_w[i]))?;
        }
        writeln!(out)?;
    }
    for line in sessions.iter().filter_map(|r| clock_caveat(r)) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(reports: &[&SessionReport]) -> String {
        let mut buf = vec![];
        print(&mut buf, reports, None).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// The cells of the row whose label starts with `label`, one unit-suffixed value each.
    fn cells(text: &str, label: &str) -> Vec<String> {
        let l = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in\n{text}"));
        let words: Vec<&str> = l.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[1] == "ms" || w[1] == "µs")
            .map(|w| w.join(" "))
            .collect()
    }

    /// Issue 12: `stddev 7120.7 µs` under `mean 14.55 ms`. One unit per block, across the columns too.
    #[test]
    fn one_time_unit_per_block() {
        let mut tcp = crate::report::sample_row();
        tcp.protocol = "tcp";
        (tcp.latency_min_us, tcp.latency_mean_us) = (Some(450.0), Some(14_550.0));
        tcp.latency_stddev_us = Some(7_120.7);
        let mut udp = tcp.clone();
        udp.protocol = "udp";
        (udp.latency_mean_us, udp.latency_stddev_us) = (Some(2_000.0), Some(80.0));
        (tcp.jitter_us, udp.jitter_us) = (Some(12.5), Some(3.25));
        let text = shown(&[&tcp, &udp]);
        assert_eq!(cells(&text, "mean"), ["14.550 ms", "2.000 ms"], "{text}");
        assert_eq!(cells(&text, "stddev"), ["7.121 ms", "0.080 ms"], "{text}");
        assert_eq!(cells(&text, "min"), ["0.450 ms", "0.450 ms"], "{text}");
        // Another block, small values: µs.
        assert_eq!(cells(&text, "jitter"), ["12.5 µs", "3.2 µs"], "{text}");
        assert!(!text.contains("latency: round trips"), "{text}");
    }

    #[test]
    fn echo_latency_says_round_trip() {
        let mut r = crate::report::sample_row();
        r.mode = "echo";
        r.latency_p50_us = Some(35.0);
        let text = shown(&[&r]);
        assert!(text.contains("latency: round trips (--echo)"), "{text}");
    }
}
