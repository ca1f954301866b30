//! The command line as a user meets it: bad values give exit code 2 and one line that says what to do, never a
//! panic or a backtrace; appending to summary.csv; the version-mismatch reply on the control port.

mod common;

use std::io::{Read, Write};
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
        assert_eq!(r["impairment"], "", "loopback: no impairment");
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

// ---- One way in (config): one grammar per unit, every mistake exit 2 on one line, never a panic ----

#[test]
fn every_subcommand_refuses_with_exit_2() {
    // These exited 1 (link, backlog) where the same mistake elsewhere exited 2.
    let l = usage_error(&["link", "--loss", "1%", "--gemodel", "1%,30%"]);
    says(&l, &["--loss and --gemodel", "only one"]);
    let l = usage_error(&["link", "--gemodel", "1,2,3,4,5"]);
    says(&l, &["'1,2,3,4,5'", "p[,r[,1-h[,1-k]]]"]);
    let l = usage_error(&["backlog", "--hold", "20m"]);
    says(&l, &["--hold 20m", "at most 10m"]);
    let l = usage_error(&["link", "--loss", "5%"]);
    says(&l, &["--a-netns and --b-netns"]);
}

#[test]
fn one_duration_grammar_everywhere() {
    // A bare number is refused everywhere (it was seconds for send, refused for link).
    for args in [
        &["udp", "send", "127.0.0.1:9", "--duration", "30"][..],
        &["udp", "send", "127.0.0.1:9", "--linger", "30"],
        &["link", "--duration", "30"],
        &["compare", "--delay", "30"],
        &["tcp", "recv", "--max-duration", "30"],
        &["backlog", "--hold", "30"],
    ] {
        let l = usage_error(args);
        says(&l, &["'30' needs a unit", "30s", "30ms"]);
    }
    // Durations that overflowed into a panic (exit 101) are refused.
    for (flag, value) in [
        ("--duration", "1e20"),
        ("--duration", "99999999999999999999s"),
        ("--linger", "18446744073709551616s"),
    ] {
        let l = usage_error(&["udp", "send", "127.0.0.1:9", flag, value]);
        says(&l, &[flag, value]);
    }
    let l = usage_error(&["tcp", "recv", "--max-duration", "99999999999999999999s"]);
    says(&l, &["--max-duration", "too long"]);
}

#[test]
fn rates_and_sizes_that_panicked_are_refused() {
    let l = usage_error(&[
        "udp",
        "send",
        "127.0.0.1:9",
        "--rate",
        "1e-16",
        "--count",
        "1M",
    ]);
    says(
        &l,
        &["'1e-16'", "slowest rate", "0 for as fast as possible"],
    );
    let l = usage_error(&[
        "udp",
        "send",
        "127.0.0.1:9",
        "--size",
        "9223372036854775807k",
    ]);
    says(&l, &["9223372036854775807k", "too large"]);
    let l = usage_error(&["compare", "--size", "64..9223372036854775807k"]);
    says(&l, &["too large"]);
}

#[test]
fn negative_values_are_named_not_mistaken_for_flags() {
    for (args, value) in [
        (&["compare", "--loss", "-5%"][..], "'-5%'"),
        (&["compare", "--delay", "-10ms"], "'-10ms'"),
        (&["compare", "--seed", "-1"], "'-1'"),
        (&["link", "--link-rate", "-1mbit"], "'-1mbit'"),
        (&["udp", "send", "127.0.0.1:9", "--count", "-5"], "'-5'"),
        (&["backlog", "--clients", "-2"], "'-2'"),
    ] {
        let l = usage_error(args);
        says(&l, &[value, "must not be negative"]);
    }
}

#[test]
fn clap_errors_keep_their_point() {
    let l = usage_error(&["udp", "send"]);
    says(&l, &["required", "<HOST>"]);
    let l = usage_error(&["comapre"]);
    says(
        &l,
        &["'comapre'", "tip: a similar subcommand exists: 'compare'"],
    );
    let l = usage_error(&["tcp", "send", "5300"]);
    says(&l, &["'5300' is a port", "127.0.0.1:5300"]);
}

#[test]
fn recv_max_rate_zero_is_refused() {
    let l = usage_error(&["tcp", "recv", "--max-rate", "0", "--listen", "127.0.0.1:0"]);
    says(&l, &["--max-rate 0", "e.g. --max-rate 1M"]);
}

#[test]
fn listen_with_a_bare_number_is_a_port_on_every_address() {
    // It was read as the IPv4 address 0.0.20.180.
    let port = free_port("0.0.0.0");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = sockbench()
        .args(["tcp", "recv", "--once", "--listen", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let want = format!("listening on 0.0.0.0:{port}");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while std::time::Instant::now() < end && !text.contains(&want) {
        if child.try_wait().unwrap().is_some() {
            text = std::fs::read_to_string(&log).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        text = std::fs::read_to_string(&log).unwrap();
    }
    if child.try_wait().unwrap().is_none() {
        signal(child.id(), libc::SIGKILL);
    }
    let _ = child.wait();
    assert!(text.contains(&want), "{text}");
}

#[test]
fn port_in_use_with_reuse_port_given_does_not_advise_it_again() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = l.local_addr().unwrap().to_string();
    let line = usage_error(&["tcp", "recv", "--reuse-port", "--listen", &listen, "--once"]);
    says(&line, &["in use", "--reuse-port was given", "SO_REUSEPORT"]);
    assert!(!line.contains("pass --reuse-port"), "{line}");
    drop(l);
}

#[test]
fn unwritable_out_gets_the_same_advice_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("results");
    let out = out.to_str().unwrap();
    let port = free_port("127.0.0.1");
    let target = format!("127.0.0.1:{port}");
    for args in [
        &["udp", "send", &target, "--count", "1", "--out", out][..],
        &["compare", "--loopback", "--count", "1", "--out", out],
        &["backlog", "--clients", "1", "--hold", "0", "--out", out],
        &[
            "link",
            "--a-netns",
            "sb-none-a",
            "--b-netns",
            "sb-none-b",
            "--out",
            out,
        ],
        &["tcp", "recv", "--listen", "127.0.0.1:0", "--out", out],
    ] {
        let l = usage_error(args);
        says(
            &l,
            &[
                &format!("cannot write to --out {out}"),
                "not a directory",
                "choose a directory you can write",
            ],
        );
    }
    // Nothing was created.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn compare_into_a_closed_pipe_exits_0() {
    let out = tempfile::tempdir().unwrap();
    let mut child = sockbench()
        .args([
            "compare",
            "--loopback",
            "--count",
            "300",
            "--rate",
            "2000",
            "--out",
        ])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read the first line, then close the pipe while the sessions still run.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    drop(stdout);
    let status = wait_bounded(&mut child, Duration::from_secs(60)).expect("compare ends");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with("sockbench compare:"),
        "{first:?}"
    );
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    // The report was still written.
    assert_eq!(summary_rows(out.path()).len(), 2);
}

#[test]
fn duration_alone_is_not_cut_short_by_the_default_count() {
    // --duration 1s at 12k msg/s: the default --count 10000 used to end it after 0.83 s.
    let r = Recv::start("tcp", "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    let o = send(
        "tcp",
        &r.target(),
        out.path(),
        &["--duration", "1s", "--rate", "12k"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = &summary_rows(out.path())[0];
    assert!(num(row, "sent") > 10_000, "{row:?}");
    assert!(float(row, "duration_s") > 0.9, "{row:?}");
    assert_eq!(num(row, "lost"), 0);
}

/// Run the binary as an unprivileged user (`nobody` when we are root); None where that is impossible.
fn unprivileged(args: &[&str], dir: &std::path::Path) -> Option<std::process::Output> {
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin());
        c
    } else {
        std::process::Command::new(bin())
    };
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    let o = run_bounded(cmd, Duration::from_secs(60));
    if String::from_utf8_lossy(&o.stderr).contains("setpriv:") {
        eprintln!(
            "SKIPPED: cannot run as nobody: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    }
    Some(o)
}

fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

#[test]
fn an_impairment_that_cannot_be_applied_is_refused_not_dropped() {
    // As a normal user the lab cannot be built: the run used to succeed on loopback with 0 loss under the
    // label loss=5%.
    let dir = shared_tempdir();
    let out = dir.path().join("out");
    let args = [
        "compare",
        "--loss",
        "5%",
        "--label",
        "loss=5%",
        "--count",
        "50",
        "--out",
        out.to_str().unwrap(),
    ];
    let Some(o) = unprivileged(&args, dir.path()) else {
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    says(&err, &["--loss 5%", "CAP_NET_ADMIN", "root", "--loopback"]);
    assert!(
        !out.join("summary.csv").exists(),
        "no rows for a run that did not happen"
    );
    // Plain compare without privilege runs on loopback and says why, on one line.
    let args = [
        "compare",
        "--count",
        "50",
        "--rate",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = unprivileged(&args, dir.path()).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    says(&err, &["loopback", "CAP_NET_ADMIN"]);
    for row in summary_rows(&out) {
        assert_eq!(row["impairment"], "", "{row:?}");
        assert_eq!(num(&row, "received"), 50);
    }
}

#[test]
fn loopback_with_impairment_flags_is_a_usage_error() {
    let l = usage_error(&["compare", "--loopback", "--loss", "5%"]);
    says(&l, &["--loopback", "impairment flags"]);
}

#[test]
fn compare_prints_and_records_the_impairment_seed() {
    if !lab_possible() {
        return;
    }
    for (seed_args, seed) in [(&["--seed", "7"][..], Some("7")), (&[][..], None)] {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = sockbench();
        cmd.args([
            "compare", "--engine", "emulator", "--count", "100", "--rate", "2000", "--loss", "5%",
            "--delay", "1ms",
        ])
        .args(seed_args)
        .arg("--out")
        .arg(out.path());
        let o = run_bounded(cmd, Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&o.stderr)
        );
        let header = stdout.lines().next().unwrap();
        let printed = header
            .split("seed ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or_else(|| panic!("no seed in {header}"));
        if let Some(s) = seed {
            assert_eq!(printed, s, "{header}");
        }
        let rows = summary_rows(out.path());
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert_eq!(
                row["impairment"],
                format!("--engine emulator --loss 5% --delay 1ms --seed {printed}"),
                "{row:?}"
            );
        }
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
