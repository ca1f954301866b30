//! The socket API made visible (issue 5): each experiment's figures checked on loopback — the call trace and
//! its order, the listen backlog overflowing into SYN retries, a port in use and SO_REUSEPORT, and message
//! boundaries on a stream versus datagrams.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

type Row = HashMap<String, String>;

fn read_csv(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|x| {
            h.iter()
                .map(str::to_string)
                .zip(x.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn num(r: &Row, c: &str) -> u64 {
    r[c].parse().unwrap_or_else(|_| panic!("{c} = {:?}", r[c]))
}

fn sockbench(args: &[&str]) -> (String, String) {
    let out = Command::cargo_bin("sockbench")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "sockbench {args:?} failed:\n{se}\n{so}"
    );
    (so, se)
}

/// compare --trace on loopback; returns (tcp trace rows, udp trace rows, stderr).
fn traced_compare(extra: &[&str]) -> (Vec<Row>, Vec<Row>, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut args = vec![
        "compare",
        "--loopback",
        "--count",
        "200",
        "--rate",
        "4000",
        "--trace",
        "--out",
        d,
    ];
    args.extend_from_slice(extra);
    let (_, stderr) = sockbench(&args);
    let run_id = read_csv(&dir.path().join("summary.csv"))[0]["run_id"].clone();
    let t = |p: &str| read_csv(&dir.path().join(format!("{run_id}_{p}_trace.csv")));
    (t("tcp"), t("udp"), stderr)
}

fn position(rows: &[Row], side: &str, call: &str) -> usize {
    rows.iter()
        .position(|r| r["side"] == side && r["call"] == call && r["count"] == "0")
        .unwrap_or_else(|| panic!("no {side} {call}"))
}

#[test]
fn tcp_trace_shows_the_call_sequence_and_a_new_descriptor_per_connection() {
    let (tcp, _, stderr) = traced_compare(&[]);
    // Server: socket, bind, listen, then accept; client: socket, then connect (the OS picks its port).
    let (sock, bind, listen, accept) = (
        position(&tcp, "receiver", "socket"),
        position(&tcp, "receiver", "bind"),
        position(&tcp, "receiver", "listen"),
        position(&tcp, "receiver", "accept"),
    );
    assert!(
        sock < bind && bind < listen && listen < accept,
        "order: {sock} {bind} {listen} {accept}"
    );
    assert!(position(&tcp, "sender", "socket") < position(&tcp, "sender", "connect"));
    let connect = &tcp[position(&tcp, "sender", "connect")];
    assert!(
        connect["result"].contains("port picked by the OS"),
        "{:?}",
        connect["result"]
    );
    // accept() returns a new descriptor; the listening one keeps listening.
    let listen_fd = &tcp[listen]["fd"];
    let acc = &tcp[accept];
    assert_eq!(
        &acc["fd"], listen_fd,
        "accept is called on the listening socket"
    );
    let new_fd = acc["result"]
        .trim_start_matches("fd ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_ne!(
        &new_fd, listen_fd,
        "the accepted socket must be a different descriptor"
    );
    // The per-message calls are aggregated with counts, and the stream ends with EOF and close.
    let recv_agg = tcp
        .iter()
        .find(|r| r["side"] == "receiver" && r["call"] == "recv" && r["count"] != "0")
        .unwrap();
    assert_eq!(recv_agg["fd"], new_fd);
    assert!(num(recv_agg, "count") > 0);
    let send_agg = tcp
        .iter()
        .find(|r| r["side"] == "sender" && r["call"] == "send" && r["count"] != "0")
        .unwrap();
    assert!(send_agg["detail"].starts_with("200 messages"));
    assert!(tcp
        .iter()
        .any(|r| r["side"] == "receiver" && r["call"] == "recv" && r["result"].contains("EOF")));
    assert!(position(&tcp, "sender", "shutdown") < position(&tcp, "sender", "close"));
    assert!(stderr.contains("trace tcp session"), "{stderr}");
}

#[test]
fn udp_trace_has_no_listen_accept_or_connect_on_the_receiver() {
    let (_, udp, _) = traced_compare(&[]);
    for call in ["listen", "accept", "connect"] {
        assert!(
            !udp.iter()
                .any(|r| r["side"] == "receiver" && r["call"] == call),
            "receiver made {call}"
        );
    }
    assert!(position(&udp, "receiver", "socket") < position(&udp, "receiver", "bind"));
    // The sender binds to port 0 and the OS picks the port; connect() on UDP only sets the destination.
    assert!(udp[position(&udp, "sender", "bind")]["result"].contains("OS picked"));
    let rx = udp
        .iter()
        .find(|r| r["side"] == "receiver" && r["call"] == "recvmmsg" && r["count"] != "0")
        .unwrap();
    assert!(
        rx["detail"].starts_with("200 datagrams"),
        "{:?}",
        rx["detail"]
    );
}

#[test]
fn message_boundaries_stream_versus_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    sockbench(&[
        "compare",
        "--loopback",
        "--size",
        "1..1400",
        "--count",
        "5000",
        "--rate",
        "0",
        "--out",
        d,
    ]);
    let rows = read_csv(&dir.path().join("summary.csv"));
    let (tcp, udp) = (&rows[0], &rows[1]);
    assert_eq!(
        (tcp["protocol"].as_str(), udp["protocol"].as_str()),
        ("tcp", "udp")
    );
    for r in [tcp, udp] {
        assert_eq!(num(r, "received"), 5000);
        // Every receive call is exactly one of: one whole message, part of one, several.
        assert_eq!(
            num(r, "recv_calls"),
            num(r, "reads_one_message")
                + num(r, "reads_partial_message")
                + num(r, "coalesced_reads")
        );
    }
    // UDP: one message per receive, always.
    assert_eq!(num(udp, "recv_calls"), 5000);
    assert_eq!(num(udp, "reads_one_message"), 5000);
    assert_eq!(
        num(udp, "split_messages")
            + num(udp, "coalesced_reads")
            + num(udp, "reads_partial_message"),
        0
    );
    // TCP: a byte stream; unpaced, the kernel hands over many messages per read (and cuts some in two).
    assert!(
        num(tcp, "coalesced_reads") > 0,
        "TCP never returned several messages in one read"
    );
    assert!(num(tcp, "recv_calls") < 5000);
}

#[test]
fn backlog_overflow_is_delayed_by_syn_retries_not_discarded() {
    let (out, _) = sockbench(&[
        "backlog",
        "--backlog",
        "1",
        "--clients",
        "4",
        "--hold",
        "1200ms",
    ]);
    // Linux queues backlog+1 = 2; the other 2 clients' SYNs are dropped and retried about a second later.
    assert!(out.contains("2 queued at once"), "{out}");
    assert!(out.contains("2 delayed by SYN retries"), "{out}");
    assert!(out.contains("0 failed; 4 of 4 accepted"), "{out}");
    assert!(out.contains("delayed, not refused"), "{out}");
}

#[test]
fn ports_in_use_is_explained_and_reuse_port_spreads_sessions() {
    let (out, _) = sockbench(&["ports", "--receivers", "2", "--sessions", "16"]);
    assert!(
        out.contains("already in use") && out.contains("held by pid"),
        "{out}"
    );
    assert!(
        out.contains("16 of 16 sessions delivered every message"),
        "{out}"
    );
    // Both receivers served sessions (all 16 on one has probability 2^-15).
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f.iter().all(|x| x.parse::<u64>().is_ok()))
                .then(|| f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(counts.len(), 2, "{out}");
    assert_eq!(counts.iter().sum::<u64>(), 16);
    assert!(
        counts.iter().all(|&c| c > 0),
        "one receiver got every session: {counts:?}"
    );
}

#[test]
fn udp_receivers_refuse_reuse_port_with_the_reason() {
    let out = Command::cargo_bin("sockbench")
        .unwrap()
        .args(["udp", "recv", "--reuse-port", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--reuse-port is for tcp recv"), "{err}");
}
