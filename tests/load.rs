//! Latency under load (issue 14): `compare --load N` through the lab's rate-limited link, where a long queue
//! multiplies the probes' latency and a short one trades it for loss; the flags' checks; the flows stopping by
//! themselves and at Ctrl-C.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// One compare run with `flags` (the emulator, always: the rate limiter with its bounded queue is its own);
/// the TCP and UDP rows, and stdout.
fn compare(flags: &[&str]) -> (Row, Row, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sockbench();
    cmd.args(["compare", "--engine", "emulator"])
        .args(flags)
        .arg("--out")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "compare failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "namespaces left");
    let rows = summary_rows(dir.path());
    assert_eq!(rows.len(), 2);
    let by = |p: &str| rows.iter().find(|r| r["protocol"] == p).unwrap().clone();
    (by("tcp"), by("udp"), stdout)
}

/// 1 s of probes alone (200 at 200/s), then 4 s beside 4 bulk flows, through 20 Mbit/s with `queue` packets
/// of buffer and 5 ms of delay.
fn loaded(queue: &str) -> (Row, Row, String) {
    compare(&[
        "--load",
        "4",
        "--link-rate",
        "20mbit",
        "--queue",
        queue,
        "--delay",
        "5ms",
        "--rate",
        "200",
        "--idle-probes",
        "200",
        "--count",
        "1000",
    ])
}

/// The proof: a 1000-packet queue (600 ms at 20 Mbit/s) fills behind the load, and a UDP probe waits
/// in it; a 30-packet queue cannot hold that wait, so the probes keep near the idle latency and are dropped
/// more instead. The thresholds are the issue's; the runs here show them by wide margins (UDP ~30× idle with
/// the long queue, the short queue's p50 about an eighth of the long one's).
#[test]
fn a_long_queue_multiplies_latency_under_load_and_a_short_one_trades_it_for_loss() {
    if !lab_possible() {
        return;
    }
    let (tcp, udp, stdout) = loaded("1000");
    for r in [&tcp, &udp] {
        let p = &r["protocol"];
        assert_eq!(num(r, "load_flows"), 4, "{p}: {r:?}");
        assert!(float(r, "load_goodput_mbps") > 10.0, "{p}: {r:?}");
        assert!(r["load_retransmits"].parse::<u64>().is_ok(), "{p}: {r:?}");
        assert!(!r["load_cc"].is_empty(), "{p}: {r:?}");
        assert!(float(r, "rpm") > 0.0, "{p}: {r:?}");
        assert!(float(r, "idle_latency_p99_us") >= float(r, "idle_latency_p50_us"));
        // The flows stopped with the TCP session: the UDP session's idle phase crossed an empty queue (with the
        // TCP session's load still running, its median would be hundreds of ms). The median, not the tail: on a
        // busy 2-core machine a late sender or emulator thread shows in the idle p99.
        assert!(float(r, "idle_latency_p50_us") < 30_000.0, "{p}: {r:?}");
        assert_eq!(r["complete"], "true", "{p}");
    }
    let idle = float(&udp, "idle_latency_p50_us");
    let long_p50 = float(&udp, "latency_p50_us");
    assert!(
        long_p50 >= 5.0 * idle,
        "UDP p50 under load {long_p50} µs is not 5× the idle {idle} µs"
    );
    assert!(
        stdout.contains("under load") && stdout.contains("loaded ÷ idle"),
        "{stdout}"
    );

    let (_, udp30, _) = loaded("30");
    let short_p50 = float(&udp30, "latency_p50_us");
    eprintln!(
        "UDP: idle p50 {idle} µs; queue 1000: p50 {long_p50} µs, lost {}; queue 30: p50 {short_p50} µs, lost {}",
        udp["lost"], udp30["lost"]
    );
    assert!(
        short_p50 <= long_p50 / 5.0,
        "a 30-packet queue: UDP p50 {short_p50} µs, not a fifth of the long queue's {long_p50} µs"
    );
    assert!(
        num(&udp30, "lost") > num(&udp, "lost"),
        "a 30-packet queue lost {} UDP probes, the 1000-packet one {}",
        num(&udp30, "lost"),
        num(&udp, "lost")
    );
    assert!(float(&udp30, "load_goodput_mbps") > 10.0, "{udp30:?}");
}

/// Ctrl-C in the loaded phase: the flows, the session and the lab stop; the partial row is written, marked
/// incomplete, with the load's figures.
#[test]
fn ctrl_c_under_load_stops_everything_and_writes_the_partial_row() {
    if !lab_possible() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sockbench();
    cmd.args(["compare", "--engine", "emulator", "--load", "2"])
        .args(["--link-rate", "20mbit", "--queue", "100", "--delay", "5ms"])
        .args(["--rate", "200", "--idle-probes", "100", "--count", "100000"])
        .arg("--out")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    // The lab takes about a second to build; the idle phase half a second; then the load runs.
    std::thread::sleep(Duration::from_secs(4));
    signal(pid, libc::SIGINT);
    let st = wait_bounded(&mut child, Duration::from_secs(30)).expect("compare exits after Ctrl-C");
    assert_eq!(st.code(), Some(130));
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "namespaces left");
    let rows = summary_rows(dir.path());
    assert_eq!(rows.len(), 1, "the TCP session's row, and no UDP session");
    let r = &rows[0];
    assert_eq!(r["complete"], "false");
    assert_eq!(num(r, "load_flows"), 2, "{r:?}");
    assert!(float(r, "load_goodput_mbps") > 1.0, "{r:?}");
    assert!(float(r, "idle_latency_p50_us") > 0.0, "{r:?}");
    assert_eq!(num(r, "lost"), num(r, "sent") - num(r, "received"), "{r:?}");
}

/// On loopback (no privilege needed): the columns are filled and the flows carry bytes.
#[test]
fn load_on_loopback_fills_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = sockbench();
    cmd.args(["compare", "--loopback", "--load", "2", "--rate", "500"])
        .args(["--idle-probes", "100", "--count", "300", "--out"])
        .arg(dir.path());
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = summary_rows(dir.path());
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(num(r, "load_flows"), 2, "{r:?}");
        assert!(float(r, "load_goodput_mbps") > 0.0, "{r:?}");
        for col in [
            "idle_latency_p50_us",
            "idle_latency_p99_us",
            "rpm",
            "latency_p50_us",
        ] {
            assert!(float(r, col) > 0.0, "{col}: {r:?}");
        }
        // Loopback loses nothing TCP carries; UDP's socket could drop a few while the flows take both cores.
        if r["protocol"] == "tcp" {
            assert_eq!(num(r, "received"), 300, "{r:?}");
        }
    }
}

/// Every load flag is checked before anything runs, with the fix in the message.
#[test]
fn load_flags_are_checked() {
    for (args, says) in [
        (
            &["--idle-probes", "10"][..],
            "--idle-probes shapes the load",
        ),
        (&["--load-cc", "cubic"][..], "--load-cc shapes the load"),
        (&["--load", "65"][..], "--load"),
        (
            &["--load", "2", "--count", "10", "--idle-probes", "10"][..],
            "fewer than",
        ),
        (
            &["--load", "2", "--load-cc", "no such"][..],
            "congestion control",
        ),
    ] {
        let mut cmd = sockbench();
        cmd.args(["compare", "--loopback"]).args(args);
        let out = run_bounded(cmd, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `send --load` between two processes: the receiver takes the announced flows (each way, with the key's
/// MAC), sinks or sends them, and refuses a session asking for more than its --max-load-flows.
#[test]
fn a_receiver_sinks_and_sends_the_load_of_an_authenticated_session() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let key = key.to_str().unwrap().to_string();
    let recv = Recv::start(
        "tcp",
        "127.0.0.1",
        &["--key-file", &key, "--max-load-flows", "2"],
    );
    let out = dir.path().join("out");
    let send = |extra: &[&str]| {
        let mut cmd = sockbench();
        cmd.args(["tcp", "send", &recv.target(), "--key-file", &key])
            .args(["--rate", "500", "--idle-probes", "100", "--count", "300"])
            .args(extra)
            .arg("--out")
            .arg(&out);
        run_bounded(cmd, Duration::from_secs(60))
    };
    let o = send(&["--load", "2", "--load-direction", "both"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = summary_rows(&out);
    let r = &rows[0];
    assert_eq!(num(r, "load_flows"), 4, "two each way: {r:?}");
    assert!(float(r, "load_goodput_mbps") > 0.0, "{r:?}");
    assert_eq!(num(r, "received"), 300);
    let o = send(&["--load", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--max-load-flows"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// --probe-on-load: probes interleaved with one load connection's bulk bytes wait behind its unsent bytes as
/// well as the path's queue, so they take longer than the probes on their own connection; TCP_NOTSENT_LOWAT
/// cuts the unsent part (here by about half: 450 → 230 ms).
#[test]
fn probes_on_a_load_connection_wait_behind_its_send_buffer_and_notsent_lowat_cuts_it() {
    if !lab_possible() {
        return;
    }
    let run = |extra: &[&str]| {
        let mut flags = vec![
            "--load",
            "4",
            "--probe-on-load",
            "--link-rate",
            "20mbit",
            "--queue",
            "1000",
            "--delay",
            "5ms",
            "--rate",
            "200",
            "--idle-probes",
            "100",
            "--count",
            "600",
        ];
        flags.extend_from_slice(extra);
        compare(&flags).0
    };
    let plain = run(&[]);
    let lowat = run(&["--notsent-lowat", "16k"]);
    let shared = float(&plain, "load_probe_rtt_p50_us");
    let own = float(&plain, "latency_p50_us");
    assert!(
        shared > 1.5 * own,
        "probes on a load connection p50 {shared} µs, on their own connection {own} µs"
    );
    assert_eq!(plain["load_notsent_lowat"], "");
    assert_eq!(num(&lowat, "load_notsent_lowat"), 16384);
    let cut = float(&lowat, "load_probe_rtt_p50_us");
    assert!(
        cut < 0.8 * shared,
        "TCP_NOTSENT_LOWAT 16k: p50 {cut} µs against {shared} µs without"
    );
}

/// --aqm fq_codel needs a bottleneck and the kernel's qdiscs: refused on loopback, without --link-rate and with
/// the emulator, before anything runs.
#[test]
fn aqm_is_checked() {
    for (args, says) in [
        (
            &["--loopback", "--aqm", "fq_codel"][..],
            "give one with --link-rate",
        ),
        (
            &["--aqm", "fq_codel", "--delay", "5ms"][..],
            "give one with --link-rate",
        ),
        (
            &[
                "--aqm",
                "fq_codel",
                "--engine",
                "emulator",
                "--link-rate",
                "20mbit",
            ][..],
            "no AQM",
        ),
    ] {
        let mut cmd = sockbench();
        cmd.arg("compare").args(args);
        let out = run_bounded(cmd, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
