//! The readable table on stdout: one metric per row, one column per session (TCP and UDP side by side in
//! `compare`), and optionally a column of the link emulator's ground truth.

use std::io::{self, Write};

use super::SessionReport;

type Cell = fn(&SessionReport) -> Option<String>;

fn n(v: u64) -> Option<String> {
    Some(v.to_string())
}

/// Latency-like values: µs below 10 ms, ms above, so both loopback and WAN figures read at a glance.
pub fn time_us(v: Option<f64>) -> Option<String> {
    v.map(|x| {
        if x.abs() >= 10_000.0 {
            format!("{:.2} ms", x / 1000.0)
        } else {
            format!("{x:.1} µs")
        }
    })
}

fn pct(v: Option<f64>) -> Option<String> {
    v.map(|x| format!("{x:.2} %"))
}

/// (section, key, label, cell). The key names the CSV column the row shows.
const ROWS: &[(&str, &str, &str, Cell)] = &[
    ("delivery", "sent", "sent", |r| n(r.sent)),
    ("delivery", "received", "received (unique, valid)", |r| {
        n(r.received)
    }),
    ("delivery", "lost", "lost", |r| n(r.lost)),
    ("delivery", "loss_pct", "loss", |r| pct(r.loss_pct)),
    ("delivery", "duplicates", "duplicates", |r| n(r.duplicates)),
    ("delivery", "reordered", "reordered (RFC 4737)", |r| {
        n(r.reordered)
    }),
    ("delivery", "reorder_extent_max", "  largest extent", |r| {
        n(r.reorder_extent_max)
    }),
    ("delivery", "reordered_3", "  3-reordered", |r| {
        n(r.reordered_3)
    }),
    ("delivery", "loss_bursts", "loss bursts", |r| {
        n(r.loss_bursts)
    }),
    ("delivery", "loss_burst_max", "  longest burst", |r| {
        n(r.loss_burst_max)
    }),
    (
        "delivery",
        "corrupt",
        "corrupt (checksum)",
        |r| n(r.corrupt),
    ),
    (
        "delivery",
        "invalid",
        "invalid (not ours)",
        |r| n(r.invalid),
    ),
    (
        "where lost",
        "send_errors",
        "refused by sender kernel",
        |r| r.send_errors.map(|v| v.to_string()),
    ),
    (
        "where lost",
        "udp_rcvbuf_drops",
        "dropped by receiver socket",
        |r| r.udp_rcvbuf_drops.map(|v| v.to_string()),
    ),
    ("where lost", "path_lost", "lost on the path", |r| {
        r.path_lost.map(|v| v.to_string())
    }),
    ("latency", "latency_min_us", "min", |r| {
        time_us(r.latency_min_us)
    }),
    ("latency", "latency_p50_us", "p50", |r| {
        time_us(r.latency_p50_us)
    }),
    ("latency", "latency_p90_us", "p90", |r| {
        time_us(r.latency_p90_us)
    }),
    ("latency", "latency_p99_us", "p99", |r| {
        time_us(r.latency_p99_us)
    }),
    ("latency", "latency_p999_us", "p99.9", |r| {
        time_us(r.latency_p999_us)
    }),
    ("latency", "latency_max_us", "max", |r| {
        time_us(r.latency_max_us)
    }),
    ("latency", "latency_mean_us", "mean", |r| {
        time_us(r.latency_mean_us)
    }),
    ("latency", "latency_stddev_us", "stddev", |r| {
        time_us(r.latency_stddev_us)
    }),
    (
        "latency",
        "transit_p50_us",
        "transit p50 (from actual send)",
        |r| time_us(r.transit_p50_us),
    ),
    ("latency", "transit_p99_us", "transit p99", |r| {
        time_us(r.transit_p99_us)
    }),
    ("variation", "jitter_us", "jitter (RFC 3550)", |r| {
        time_us(r.jitter_us)
    }),
    ("variation", "ipdv_p50_us", "IPDV p50 (RFC 5481)", |r| {
        time_us(r.ipdv_p50_us)
    }),
    ("variation", "ipdv_p99_us", "IPDV p99", |r| {
        time_us(r.ipdv_p99_us)
    }),
    ("variation", "pdv_us", "PDV (p99.9 − min)", |r| {
        time_us(r.pdv_us)
    }),
    ("throughput", "goodput_mbps", "goodput", |r| {
        r.goodput_mbps.map(|v| format!("{v:.3} Mbit/s"))
    }),
    ("throughput", "msgs_per_s", "messages/s", |r| {
        r.msgs_per_s.map(|v| format!("{v:.0}"))
    }),
    ("boundaries", "recv_calls", "receive calls", |r| {
        n(r.recv_calls)
    }),
    (
        "boundaries",
        "reads_one_message",
        "  returned exactly one message",
        |r| n(r.reads_one_message),
    ),
    (
        "boundaries",
        "reads_partial_message",
        "  returned part of one",
        |r| n(r.reads_partial_message),
    ),
    ("boundaries", "coalesced_reads", "  returned several", |r| {
        n(r.coalesced_reads)
    }),
    (
        "boundaries",
        "split_messages",
        "messages split across reads",
        |r| n(r.split_messages),
    ),
    ("tcp", "tcp_connect_us", "connect (handshake)", |r| {
        time_us(r.tcp_connect_us)
    }),
    ("tcp", "tcp_retransmits", "retransmitted segments", |r| {
        r.tcp_retransmits.map(|v| v.to_string())
    }),
    (
        "clock",
        "clock_offset_us",
        "receiver − sender offset",
        |r| time_us(r.clock_offset_us),
    ),
    ("clock", "clock_error_us", "  error bound ±", |r| {
        time_us(r.clock_error_us)
    }),
];

/// An extra column: a heading and a value per row key (e.g. the emulator's counts).
pub struct Extra<'a> {
    pub heading: String,
    pub cell: &'a dyn Fn(&str) -> Option<String>,
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
    let mut lines: Vec<(String, String, Vec<String>)> = vec![];
    for (section, key, label, cell) in ROWS {
        let mut cells: Vec<Option<String>> = sessions.iter().map(|r| cell(r)).collect();
        if let Some(e) = extra {
            cells.push((e.cell)(key));
        }
        if cells.iter().all(Option::is_none) {
            continue;
        }
        lines.push((
            section.to_string(),
            label.to_string(),
            cells
                .into_iter()
                .map(|c| c.unwrap_or_else(|| "–".into()))
                .collect(),
        ));
    }
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
    Ok(())
}
