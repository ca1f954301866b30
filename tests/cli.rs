//! The command line as a user meets it: bad values give exit code 2 and one line that says what to do, never a
//! panic or a backtrace; appending to summary.csv; the version-mismatch reply on the control port.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

use common::*;

/// Run with a time limit; expect exit 2 and exactly one stderr line; return that line.
fn usage_error(args: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .current_dir(out.path())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{args:?}: exit {:?}, stderr {err}",
        o.status
    );
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    let lower = err.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "{args:?}: {err}"
    );
    assert!(err.starts_with("sockbench: "), "{args:?}: {err}");
    err
}

/// The line names the bad value (or flag) and says what to do.
fn says(line: &str, needles: &[&str]) {
    for n in needles {
        assert!(line.contains(n), "{line:?} should mention {n:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    Command::new(bin())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("compare"));
    Command::new(bin())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_sizes() {
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--size", "0"]);
    says(&l, &["size", "'0'", "positive"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--size", "-5"]);
    says(&l, &["-5", "positive"]);
    let l = usage_error(&["tcp", "send", "127.0.0.1:9", "--size", "20"]);
    says(&l, &["--size 20", "header", "--size 48 or more"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--size", "70000"]);
    says(&l, &["70000", "65507", "smaller --size"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--size", "lots"]);
    says(&l, &["'lots'", "e.g."]);
}

#[test]
fn bad_rates_durations_counts() {
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--rate", "fast"]);
    says(&l, &["'fast'", "e.g."]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--rate", "-1"]);
    says(&l, &["-1", "negative"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--duration", "soon"]);
    says(&l, &["'soon'", "e.g. 10s"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--duration", "-2s"]);
    says(&l, &["negative"]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--duration", "0"]);
    says(&l, &["--duration 0", "e.g."]);
    let l = usage_error(&["udp", "send", "127.0.0.1:9", "--count", "0"]);
    says(&l, &["'0'", "1 or more"]);
    let l = usage_error(&["tcp", "send", "127.0.0.1:9", "--echo", "--size", "48"]);
    says(&l, &["--echo", "--size 64"]);
    let l = usage_error(&["compare", "--loopback", "--size", "70000"]);
    says(&l, &["70000", "smaller --size"]);
}

#[test]
fn bad_hosts() {
    let l = usage_error(&["udp", "send", "no-such-host.invalid", "--count", "1"]);
    says(&l, &["no-such-host.invalid", "check the name"]);
    let l = usage_error(&["tcp", "send", "h:notaport"]);
    says(&l, &["h:notaport", "HOST[:PORT]"]);
    let l = usage_error(&["tcp", "send", ":5300"]);
    says(&l, &["no host"]);
}

#[test]
fn nothing_listening_is_a_usage_error() {
    // A port that was free a moment ago: connection refused.
    let port = free_port("127.0.0.1");
    for proto in ["tcp", "udp"] {
        let target = format!("127.0.0.1:{port}");
        let l = usage_error(&[proto, "send", &target, "--count", "1"]);
        says(&l, &["nothing listens", &target, "recv"]);
    }
}

#[test]
fn port_in_use() {
    // Hold the TCP port ourselves; the receiver must refuse with the port and "in use".
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let line = usage_error(&["tcp", "recv", "--listen", &listen, "--once"]);
    says(&line, &[&port.to_string(), "in use", "--listen"]);
    // UDP receivers need the UDP port and the TCP port of that number.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = u.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{uport}");
    let line = usage_error(&["udp", "recv", "--listen", &listen, "--once"]);
    says(&line, &[&uport.to_string(), "in use"]);
    let line = usage_error(&["udp", "recv", "--listen", &format!("127.0.0.1:{port}")]);
    says(&line, &[&port.to_string(), "in use"]);
    drop((l, u));
}

#[test]
fn tcp_sender_to_udp_receiver_is_refused() {
    let r = Recv::start("udp", "127.0.0.1", &[]);
    let l = usage_error(&["tcp", "send", &r.target(), "--count", "10"]);
    says(&l, &["refused", "serves udp", "sockbench udp send"]);
    let r2 = Recv::start("tcp", "127.0.0.1", &[]);
    let l = usage_error(&["udp", "send", &r2.target(), "--count", "10"]);
    says(&l, &["refused", "serves tcp"]);
    // Both receivers say why too, and keep serving.
    r.wait_log("serves udp", 1, Duration::from_secs(5));
    exact_session("udp", &r.target(), 50, &["--rate", "0"]);
    exact_session("tcp", &r2.target(), 50, &["--rate", "0"]);
}

#[test]
fn something_else_listening_is_a_usage_error() {
    // A TCP server that is not sockbench: it accepts and says nothing sockbench-like.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        std::thread::sleep(Duration::from_millis(300));
    });
    let line = usage_error(&["tcp", "send", &addr.to_string(), "--count", "1"]);
    says(&line, &["sockbench receiver", "check the port"]);
    h.join().unwrap();
}

#[test]
fn receiver_rejects_another_control_version() {
    let r = Recv::start("udp", "127.0.0.1", &[]);
    let mut s = TcpStream::connect(r.addr).unwrap();
    let mut pre = b"SKBC".to_vec();
    pre.extend_from_slice(&99u16.to_be_bytes());
    pre.extend_from_slice(&[0, 0]);
    s.write_all(&pre).unwrap();
    let v = read_raw_frame(&mut s);
    assert_eq!(v["type"], "reject", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("version") && reason.contains("99"),
        "{reason}"
    );
    // The receiver logs it and carries on.
    r.wait_log("refused", 1, Duration::from_secs(5));
    exact_session("udp", &r.target(), 20, &["--rate", "0"]);
}

#[test]
fn summary_appends_one_header_two_rows() {
    let r = Recv::start("udp", "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    for label in ["first", "loss=5%"] {
        let o = send(
            "udp",
            &r.target(),
            out.path(),
            &["--count", "100", "--rate", "0", "--label", label],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let rows = summary_rows(out.path());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["label"], "first");
    assert_eq!(rows[1]["label"], "loss=5%");
    assert_ne!(rows[0]["run_id"], rows[1]["run_id"]);
    for row in &rows {
        assert_eq!(num(row, "received"), 100);
    }
}

#[test]
fn summary_with_a_foreign_header_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let p = out.path().join("summary.csv");
    std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
    // Refused before any traffic: nothing needs to listen.
    let port = free_port("127.0.0.1");
    let o = out.path().to_str().unwrap().to_string();
    let l = usage_error(&[
        "udp",
        "send",
        &format!("127.0.0.1:{port}"),
        "--out",
        &o,
        "--count",
        "1",
    ]);
    says(&l, &["summary.csv", "different header", "--out"]);
    // Untouched.
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b,c\n1,2,3\n");
}

#[test]
fn compare_on_loopback() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["compare", "--count", "300", "--rate", "2000", "--loopback"])
        .arg("--out")
        .arg(out.path())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{:?}\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let head = stdout
        .lines()
        .find(|l| l.contains("TCP"))
        .unwrap_or_else(|| panic!("no table heading with TCP:\n{stdout}"));
    assert!(head.contains("UDP"), "{head}");
    assert!(
        stdout.contains("received") && stdout.contains("lost"),
        "{stdout}"
    );
    let rows = summary_rows(out.path());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["run_id"], rows[1]["run_id"]);
    let protos: Vec<&str> = rows.iter().map(|r| r["protocol"].as_str()).collect();
    assert_eq!(protos, ["tcp", "udp"]);
    for r in &rows {
        assert_eq!(num(r, "sent"), 300);
        assert_eq!(num(r, "received"), 300);
        assert_eq!(num(r, "lost"), 0);
        assert_eq!(r["complete"], "true");
        let lat = out
            .path()
            .join(format!("{}_{}_latency.csv", r["run_id"], r["protocol"]));
        assert!(lat.exists(), "{}", lat.display());
    }
}

/// Issue 12: a run that ends before its first session leaves no empty summary.csv behind (files are created
/// only when there is a row to write), and a header whose final newline was lost does not swallow the next row.
#[test]
fn failed_runs_leave_no_summary_and_a_cut_header_is_repaired() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    for proto in ["tcp", "udp"] {
        let o = send(
            proto,
            &format!("127.0.0.1:{port}"),
            out.path(),
            &["--count", "1"],
        );
        assert_eq!(o.status.code(), Some(2), "{proto}: {o:?}");
    }
    assert!(
        !out.path().join("summary.csv").exists(),
        "a failed send created summary.csv"
    );

    // The header alone, as a run killed between its two writes would leave it.
    let header = sockbench::report::columns().join(",");
    std::fs::write(out.path().join("summary.csv"), header).unwrap();
    let r = Recv::start("udp", "127.0.0.1", &[]);
    let o = send(
        "udp",
        &r.target(),
        out.path(),
        &["--count", "20", "--rate", "0"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = summary_rows(out.path());
    assert_eq!(
        rows.len(),
        1,
        "the row after a header without newline vanished"
    );
    assert_eq!(num(&rows[0], "received"), 20);
}
