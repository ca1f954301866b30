//! End to end on loopback, sender and receiver in separate processes: exact counts, every CSV parsed back,
//! the receiver's own copy, IPv6, --echo, and Ctrl-C on either side.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Everything the issue promises about one finished session's files on the sender's side.
fn check_sender_files(dir: &Path, proto: &str, count: u64, label: &str) -> Row {
    let rows = summary_rows(dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = rows.into_iter().next().unwrap();
    assert_eq!(r["schema_version"], "1");
    assert_eq!(r["protocol"], proto);
    assert_eq!(r["mode"], "oneway");
    assert_eq!(r["label"], label);
    assert_eq!(num(&r, "msg_size"), 64);
    assert_eq!(num(&r, "sent"), count);
    assert_eq!(num(&r, "received"), count);
    assert_eq!(num(&r, "lost"), 0);
    assert_eq!(float(&r, "loss_pct"), 0.0);
    for col in [
        "duplicates",
        "reordered",
        "reorder_extent_max",
        "reordered_3",
        "loss_bursts",
        "loss_burst_max",
        "corrupt",
        "invalid",
    ] {
        assert_eq!(num(&r, col), 0, "{col}");
    }
    assert_eq!(r["complete"], "true");
    assert_eq!(num(&r, "send_errors"), 0);
    for col in [
        "latency_min_us",
        "latency_p50_us",
        "latency_p99_us",
        "latency_max_us",
        "transit_p50_us",
        "jitter_us",
        "ipdv_p50_us",
        "pdv_us",
        "goodput_mbps",
        "msgs_per_s",
        "duration_s",
        "clock_offset_us",
        "clock_error_us",
    ] {
        float(&r, col); // present and numeric
    }
    assert!(float(&r, "latency_min_us") <= float(&r, "latency_p50_us"));
    assert!(float(&r, "latency_p50_us") <= float(&r, "latency_max_us"));
    // One host: the offset is exactly zero.
    assert_eq!(float(&r, "clock_offset_us"), 0.0);

    // Per-message CSV: one row per sequence number, all ok.
    let run_id = &r["run_id"];
    let (h, msgs) = read_csv(&dir.join(format!("{run_id}_{proto}_messages.csv")));
    assert_eq!(
        h,
        [
            "schema_version",
            "seq",
            "sched_ns",
            "send_ns",
            "recv_ns",
            "latency_us",
            "status",
            "rtt_us"
        ]
    );
    assert_eq!(msgs.len() as u64, count);
    assert!(
        msgs.iter().all(|m| m[0] == "1"),
        "every row carries schema_version 1"
    );
    let mut seqs: Vec<u64> = msgs.iter().map(|m| m[1].parse().unwrap()).collect();
    assert!(msgs.iter().all(|m| m[6] == "ok"), "a status is not ok");
    seqs.sort_unstable();
    assert_eq!(seqs, (0..count).collect::<Vec<_>>());

    // Latency distribution: ends at percentile 100 with every received message counted.
    let (h, lat) = read_csv(&dir.join(format!("{run_id}_{proto}_latency.csv")));
    assert_eq!(
        h,
        ["schema_version", "value_us", "percentile", "total_count"]
    );
    let last = lat.last().expect("latency rows");
    assert_eq!(last[2].parse::<f64>().unwrap(), 100.0);
    assert_eq!(last[3].parse::<u64>().unwrap(), count);
    r
}

/// The receiver's own copy (after it exited with --once): same run, same counts.
fn check_receiver_copy(recv: &mut Recv, sender_row: &Row, count: u64) {
    let st = recv.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "--once receiver exit: {st:?}");
    let rows = summary_rows(recv.out.as_ref().unwrap());
    assert_eq!(rows.len(), 1);
    let c = &rows[0];
    for col in ["run_id", "started_utc", "label", "protocol", "mode"] {
        assert_eq!(c[col], sender_row[col], "{col}");
    }
    for col in [
        "sent",
        "received",
        "lost",
        "duplicates",
        "reordered",
        "corrupt",
    ] {
        assert_eq!(c[col], sender_row[col], "{col}");
    }
    assert_eq!(num(c, "received"), count);
    assert_eq!(c["complete"], "true");
    assert!(recv.log_text().contains(" done: received"));
}

/// 2000 unpaced messages with per-message rows, labelled "x"; the sender must succeed.
fn send_exact_2000(proto: &str, recv: &Recv, out: &std::path::Path) -> std::process::Output {
    let args = [
        "--count",
        "2000",
        "--rate",
        "0",
        "--per-message",
        "--label",
        "x",
    ];
    let o = send(proto, &recv.target(), out, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn udp_separate_processes_exact() {
    let copy = tempfile::tempdir().unwrap();
    let mut recv = Recv::start_with_out("udp", "127.0.0.1", &["--once"], Some(copy.path()));
    let out = tempfile::tempdir().unwrap();
    let o = send_exact_2000("udp", &recv, out.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("UDP") && stdout.contains("CSV:"),
        "{stdout}"
    );
    let r = check_sender_files(out.path(), "udp", 2000, "x");
    // A datagram socket: one message per read, no splits, no coalescing.
    assert_eq!(num(&r, "recv_calls"), 2000);
    assert_eq!(num(&r, "split_messages"), 0);
    assert_eq!(num(&r, "coalesced_reads"), 0);
    assert_eq!(num(&r, "udp_rcvbuf_drops"), 0);
    assert_eq!(num(&r, "path_lost"), 0);
    assert_eq!(r["tcp_connect_us"], "");
    assert_eq!(r["tcp_retransmits"], "");
    check_receiver_copy(&mut recv, &r, 2000);
}

#[test]
fn tcp_separate_processes_exact() {
    let copy = tempfile::tempdir().unwrap();
    let mut recv = Recv::start_with_out("tcp", "127.0.0.1", &["--once"], Some(copy.path()));
    let out = tempfile::tempdir().unwrap();
    send_exact_2000("tcp", &recv, out.path());
    let r = check_sender_files(out.path(), "tcp", 2000, "x");
    // A stream: reads happened, and the boundary columns are filled in (their values depend on timing).
    assert!(num(&r, "recv_calls") > 0);
    num(&r, "split_messages");
    num(&r, "coalesced_reads");
    assert!(float(&r, "tcp_connect_us") > 0.0);
    num(&r, "tcp_retransmits");
    assert_eq!(r["udp_rcvbuf_drops"], "");
    assert_eq!(r["path_lost"], "");
    check_receiver_copy(&mut recv, &r, 2000);
}

#[test]
fn ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "::1", &[]);
        let target = recv.target();
        assert!(target.starts_with("[::1]:"));
        let r = exact_session(proto, &target, 500, &["--rate", "0"]);
        assert_eq!(r["peer"], target);
    }
}

#[test]
fn echo_udp_and_tcp() {
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "127.0.0.1", &[]);
        let r = exact_session(
            proto,
            &recv.target(),
            300,
            &["--rate", "2000", "--echo", "--size", "64"],
        );
        assert_eq!(r["mode"], "echo");
        for col in [
            "latency_min_us",
            "latency_mean_us",
            "latency_p50_us",
            "latency_p99_us",
            "latency_max_us",
        ] {
            assert!(float(&r, col) >= 0.0, "{col}");
        }
    }
}

/// Ping-pong (`--echo --outstanding 1 --rate 0`): every message answered before the next leaves. The headline
/// round trip is the application's (send call to the reply's receive returning), never below the kernel-stamped
/// one beside it (UDP; a TCP read has no per-message stamp); each side's CPU per message is reported.
#[test]
fn ping_pong_udp_and_tcp() {
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "127.0.0.1", &[]);
        let r = exact_session(
            proto,
            &recv.target(),
            2000,
            &["--rate", "0", "--echo", "--outstanding", "1"],
        );
        assert_eq!(r["mode"], "echo");
        assert_eq!(float(&r, "msgs_per_write"), 1.0, "{r:?}");
        assert!(float(&r, "sender_cpu_us_per_msg") > 0.0, "{r:?}");
        assert!(float(&r, "receiver_cpu_us_per_msg") > 0.0, "{r:?}");
        // Unpaced: no schedule to be late against.
        assert_eq!(r["pacing_lag_p99_us"], "");
        let app = float(&r, "latency_p50_us");
        if proto == "udp" {
            let kernel = float(&r, "rtt_kernel_p50_us");
            assert!(app >= kernel && kernel > 0.0, "app {app} kernel {kernel}");
            assert_eq!(r["gso"], "0", "one datagram per call in ping-pong");
        } else {
            assert_eq!(r["rtt_kernel_p50_us"], "");
            assert_eq!(r["gso"], "");
        }
    }
    // A window without echo has nothing to count.
    let o = sockbench()
        .args(["udp", "send", "127.0.0.1:9", "--outstanding", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("add --echo"));
}

/// Unpaced UDP goes through GSO (many equal datagrams per send call, GRO on the receiver's session socket)
/// and stays exact per message: every message is accounted once, in order, and the row says GSO was used.
/// `--gso off` and mixed sizes send one datagram per buffer.
#[test]
fn gso_batches_stay_exact_per_message() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--count", "20000", "--rate", "0"];
        args.extend_from_slice(extra);
        let o = send("udp", &recv.target(), dir.path(), &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let rows = summary_rows(dir.path());
        rows.into_iter().next().unwrap()
    };
    let r = run(&[]);
    assert_eq!(num(&r, "sent"), 20_000);
    assert_eq!(num(&r, "received") + num(&r, "lost"), 20_000, "{r:?}");
    assert_eq!((num(&r, "duplicates"), num(&r, "reordered")), (0, 0));
    assert_eq!((num(&r, "corrupt"), num(&r, "invalid")), (0, 0));
    if num(&r, "lost") == 0 {
        assert_eq!(r["complete"], "true");
    }
    if let Ok(g) = r["gso"].parse::<u64>() {
        if g > 0 {
            assert_eq!(g, 64, "64 B messages: 64 per buffer");
            assert!(float(&r, "msgs_per_write") > 64.0, "{r:?}");
        }
    }
    for extra in [&["--gso", "off"][..], &["--size", "64,128"][..]] {
        let r = run(extra);
        assert_eq!(r["gso"], "0", "{extra:?}");
        assert!(float(&r, "msgs_per_write") <= 64.0);
        assert_eq!(num(&r, "received") + num(&r, "lost"), 20_000);
    }
}

/// TCP writes several small messages per call unless `--write-per-message` asks for one call each (the
/// comparison with iperf -l 64); 128 KiB messages go one per write and arrive intact, mixed sizes too.
#[test]
fn tcp_writes_carry_the_messages_the_row_says() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let run = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--rate", "0"];
        args.extend_from_slice(extra);
        let o = send("tcp", &recv.target(), dir.path(), &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = summary_rows(dir.path()).into_iter().next().unwrap();
        assert_eq!(num(&r, "received"), num(&r, "sent"), "{r:?}");
        assert_eq!((num(&r, "corrupt"), num(&r, "lost")), (0, 0), "{r:?}");
        r
    };
    let r = run(&["--count", "5000", "--size", "64"]);
    assert!(float(&r, "msgs_per_write") > 1.0, "{r:?}");
    let r = run(&["--count", "5000", "--size", "64", "--write-per-message"]);
    assert_eq!(float(&r, "msgs_per_write"), 1.0, "{r:?}");
    let r = run(&["--count", "300", "--size", "128k"]);
    assert_eq!(float(&r, "msgs_per_write"), 1.0, "{r:?}");
    run(&["--count", "3000", "--size", "100,40000"]);
}

/// An interrupted row still adds up: what was sent and not received is lost, and what was still on its way
/// at the cut is in_flight, not in sent.
fn assert_lost_is_sent_minus_received(r: &Row) {
    assert_eq!(
        num(r, "lost"),
        num(r, "sent") - num(r, "received"),
        "lost != sent - received in {r:?}"
    );
    assert!(r["in_flight"].parse::<u64>().is_ok(), "{r:?}");
}

fn ctrl_c_on_the_sender(proto: &'static str) {
    let recv = Recv::start(proto, "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    let mut cmd = sockbench();
    cmd.args([proto, "send", &recv.target(), "--count", "100000"])
        .args(["--rate", "1000", "--per-message", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = SenderGuard(Some(cmd.spawn().unwrap()));
    let child = guard.0.as_mut().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    signal(child.id(), libc::SIGINT);
    let st = wait_bounded(child, Duration::from_secs(20)).expect("sender exits after Ctrl-C");
    assert_eq!(st.code(), Some(130), "{proto}");
    let rows = summary_rows(out.path());
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["complete"], "false");
    let sent = num(r, "sent");
    assert!((500..=2000).contains(&sent), "sent {sent}");
    assert_eq!(num(r, "received"), sent, "loopback {proto} at 1000/s");
    assert_eq!(num(r, "lost"), 0);
    assert_lost_is_sent_minus_received(r);
    // What was measured is all there: one per-message row per sent message (regression: the rows and even
    // the results were dropped when Ctrl-C also stopped the thread reading the control connection).
    let (_, msgs) = read_csv(
        &out.path()
            .join(format!("{}_{proto}_messages.csv", r["run_id"])),
    );
    assert_eq!(msgs.len() as u64, sent);
    assert!(msgs.iter().all(|m| m[6] == "ok"));
    // The receiver logged the session as incomplete and serves the next one.
    recv.wait_log("incomplete", 1, Duration::from_secs(5));
    exact_session(proto, &recv.target(), 200, &["--rate", "0"]);
}

#[test]
fn ctrl_c_on_a_udp_sender_writes_an_incomplete_row() {
    ctrl_c_on_the_sender("udp");
}

#[test]
fn ctrl_c_on_a_tcp_sender_writes_an_incomplete_row() {
    ctrl_c_on_the_sender("tcp");
}

#[test]
fn ctrl_c_on_the_receiver_still_gives_the_sender_a_row() {
    for proto in ["udp", "tcp"] {
        let mut recv = Recv::start(proto, "127.0.0.1", &[]);
        let out = tempfile::tempdir().unwrap();
        let mut cmd = sockbench();
        cmd.args([proto, "send", &recv.target(), "--count", "100000"])
            .args(["--rate", "1000", "--out"])
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut guard = SenderGuard(Some(cmd.spawn().unwrap()));
        let child = guard.0.as_mut().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        signal(recv.pid(), libc::SIGINT);
        let rst = recv.wait_exit(Duration::from_secs(20));
        assert_eq!(rst.code(), Some(130), "{proto} receiver after Ctrl-C");
        let st = wait_bounded(child, Duration::from_secs(20)).expect("sender ends");
        assert!(st.code().is_some(), "{proto}: sender died of a signal");
        let rows = summary_rows(out.path());
        assert_eq!(rows.len(), 1, "{proto}");
        let r = &rows[0];
        assert_eq!(r["complete"], "false", "{proto}");
        let sent = num(r, "sent");
        assert!(sent > 0 && sent < 100_000, "{proto}: sent {sent}");
        assert!(num(r, "received") <= sent);
        assert_lost_is_sent_minus_received(r);
        let log = recv.log_text();
        assert!(log.contains("incomplete"), "{log}");
    }
}

#[test]
fn duration_ends_a_session_complete() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    let o = send(
        "udp",
        &recv.target(),
        out.path(),
        &["--count", "100000", "--rate", "1000", "--duration", "500ms"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = summary_rows(out.path());
    let r = &rows[0];
    let sent = num(r, "sent");
    assert!((100..100_000).contains(&sent), "sent {sent}");
    assert_eq!(num(r, "received"), sent);
    assert_eq!(num(r, "lost"), 0);
    assert_eq!(
        r["complete"], "true",
        "a --duration bound is the planned end"
    );
}

#[test]
fn poisson_schedule_and_host_names() {
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "127.0.0.1", &[]);
        exact_session(
            proto,
            &recv.target(),
            300,
            &["--rate", "3000", "--schedule", "poisson"],
        );
        // A name, resolved (localhost is 127.0.0.1 or ::1; only the former listens here).
        if std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 1))
            .map(|mut a| a.next().is_some_and(|a| a.is_ipv4()))
            .unwrap_or(false)
        {
            let r = exact_session(
                proto,
                &format!("localhost:{}", recv.addr.port()),
                100,
                &["--rate", "0"],
            );
            assert_eq!(r["peer"], format!("localhost:{}", recv.addr.port()));
        }
    }
}
