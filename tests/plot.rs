//! scripts/plot.py and scripts/sweep.sh on real sockbench output: CSVs made by the binary itself, figures
//! checked as PNG files (signature, IHDR size, file size), the sweep's grid, cleanup and interruption.
//!
//! plot.py needs python3 with matplotlib, sweep.sh needs root and /dev/net/tun as well. Where those are
//! missing the tests fail under CI=true (a skipped check is not a check) and skip loudly elsewhere.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::namespaces_of;

const FIGURES: &[&str] = &[
    "delivery_vs_loss",
    "latency_vs_loss",
    "latency_cdf",
    "latency_over_seq",
    "reorder_dup",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sockbench"))
}

/// Ok(()) to run, Err(reason) to skip; panics under CI=true.
fn require(what: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(w) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{what} cannot run in CI: {w}")
        }
        Some(w) => {
            // libtest names the test's thread after the test: say which one skipped (scripts/test.sh lists them).
            let test = std::thread::current().name().unwrap_or("").to_string();
            eprintln!("SKIPPED {test}: {what} cannot run here: {w}");
            false
        }
    }
}

fn imports_matplotlib(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import matplotlib"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python that runs plot.py, found as scripts/test.sh and sweep.sh find it: the repository's .venv/ (which
/// test.sh makes, since Debian's own python3 refuses pip installs), else python3 from PATH.
fn python() -> PathBuf {
    let venv = repo().join(".venv/bin/python3");
    if imports_matplotlib(&venv) {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn matplotlib_missing() -> Option<String> {
    let py = python();
    if Command::new(&py).arg("--version").output().is_err() {
        return Some("python3 is missing".into());
    }
    (!imports_matplotlib(&py)).then(|| {
        "no Python with matplotlib: scripts/test.sh makes .venv/ with it (needs python3-venv), \
         or apt-get install python3-matplotlib"
            .into()
    })
}

fn lab_missing() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        Some("not root (the lab needs CAP_NET_ADMIN)".into())
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing".into())
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("the `ip` command (iproute2) is missing".into())
    } else {
        None
    }
}

/// A valid PNG of a readable size: signature, IHDR first, width and height > 100, 2 KB..10 MB.
fn assert_png(path: &Path) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        (2_000..10_000_000).contains(&bytes.len()),
        "{}: {} bytes is not a plausible figure",
        path.display(),
        bytes.len()
    );
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{}: not a PNG",
        path.display()
    );
    assert_eq!(
        &bytes[12..16],
        b"IHDR",
        "{}: IHDR is not first",
        path.display()
    );
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(
        width > 100 && height > 100 && width < 10_000 && height < 10_000,
        "{}: {width}x{height} px",
        path.display()
    );
    assert_eq!(
        &bytes[bytes.len() - 8..bytes.len() - 4],
        b"IEND",
        "{}: truncated (no IEND at the end)",
        path.display()
    );
}

fn assert_svg(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains("<svg") && text.trim_end().ends_with("</svg>"),
        "{}: not a complete SVG",
        path.display()
    );
}

fn assert_figures(plots: &Path) {
    for name in FIGURES {
        assert_png(&plots.join(format!("{name}.png")));
        assert_svg(&plots.join(format!("{name}.svg")));
    }
}

type Row = HashMap<String, String>;

fn read_summary(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn plot_py_draws_valid_pngs_from_real_csvs() {
    if !require("plot.py test", matplotlib_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Loopback has no impairment: every label is a zero level of one sweep, so that each figure has
    // its inputs (the loss point twice, as a repeated condition is averaged).
    let labels = [
        "loss=0%",
        "loss=0%,sweep=loss",
        "reorder=0%,sweep=reorder",
        "duplicate=0%,sweep=duplicate",
    ];
    for label in labels {
        let out = Command::new(bin())
            .args(["compare", "--loopback", "--count", "200", "--rate", "0"])
            .args(["--per-message", "--label", label, "--out"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "compare --label {label} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = read_summary(&data.join("summary.csv"));
    assert_eq!(rows.len(), 2 * labels.len(), "two sessions per compare");

    let plots = dir.path().join("figures");
    let out = plot_py(&data, &plots, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plot.py failed: {stderr}");
    assert_figures(&plots);
    // It writes where it is told and nowhere else; stdout lists exactly what it wrote.
    assert!(
        !data.join("plots").exists(),
        "plot.py wrote into DIR/plots despite --out"
    );
    let listed: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed.len(), 2 * FIGURES.len(), "stdout: {listed:?}");
    for f in &listed {
        assert!(Path::new(f).starts_with(&plots), "{f} outside --out");
    }
}

/// scripts/plot.py on `data`, figures into `out`, headless.
fn plot_py(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("scripts/plot.py"))
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("MPLBACKEND", "Agg")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                kids.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    kids
}

/// `sweep.sh --quick --name NAME --engine ENGINE` (plus `--emulator` for the lab engine, so that it runs on
/// kernels without netem too and writes the emulator's counts).
fn sweep_cmd_with(name: &Path, engine: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/sweep.sh"))
        .arg("--quick")
        .arg("--name")
        .arg(name)
        .args(["--engine", engine])
        .env("SOCKBENCH", bin())
        .env("MPLBACKEND", "Agg")
        .stdin(Stdio::null());
    if engine == "lab" {
        c.arg("--emulator");
    }
    c
}

/// The compare engine: what the default (auto) picks on kernels without netem.
fn sweep_cmd(name: &Path) -> Command {
    sweep_cmd_with(name, "compare")
}

/// scripts/lab.sh builds namespaces with fixed names (sb-lab-a, sb-lab-b), so tests that use it (here and
/// tests/lab.rs) must not run at the same time; nextest runs tests in parallel processes. Each takes this
/// file lock (flock, released when the returned File is dropped or the process dies). Bounded: 5 minutes.
fn lab_sh_lock() -> fs::File {
    use std::os::fd::AsRawFd;
    let path = "/tmp/sockbench-lab-sh.lock";
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(
            Instant::now() < deadline,
            "{path}: another lab.sh test held the lock for 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    f
}

fn lab_sh_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n == "sb-lab-a" || *n == "sb-lab-b")
        .map(str::to_string)
        .collect()
}

/// A link CSV keyed by (direction, proto).
fn read_link(path: &Path) -> HashMap<(String, String), Row> {
    read_summary(path)
        .into_iter()
        .map(|r| ((r["direction"].clone(), r["proto"].clone()), r))
        .collect()
}

#[test]
fn sweep_quick_runs_the_grid_and_plots_it() {
    if !require("sweep.sh test", lab_missing().or_else(matplotlib_missing)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("quick");
    let started = Instant::now();
    let out = sweep_cmd(&name).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "sweep.sh --quick failed:\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );

    let rows = read_summary(&name.join("summary.csv"));
    assert_eq!(rows.len(), 8, "4 conditions x (TCP, UDP)");
    for r in &rows {
        assert_eq!(r["complete"], "true", "{r:?}");
        assert!(r["label"].contains("sweep="), "label {:?}", r["label"]);
        if r["protocol"] == "tcp" {
            // The stream guarantee, whatever the path does.
            for col in ["lost", "duplicates", "reordered"] {
                assert_eq!(r[col], "0", "TCP {col} under {}", r["label"]);
            }
        }
    }
    let udp_loss5 = rows
        .iter()
        .find(|r| r["protocol"] == "udp" && r["label"].starts_with("loss=5%"))
        .expect("a UDP row at loss=5%");
    assert_ne!(udp_loss5["lost"], "0", "UDP at 5% loss lost nothing");
    // Per-message, latency and link CSVs beside summary.csv, one set per run_id.
    for r in &rows {
        let (id, p) = (&r["run_id"], &r["protocol"]);
        for f in [
            format!("{id}_{p}_latency.csv"),
            format!("{id}_{p}_messages.csv"),
            format!("{id}_link.csv"),
        ] {
            assert!(name.join(&f).is_file(), "{f} missing");
        }
    }
    assert!(name.join("sweep.log").is_file());
    assert_figures(&name.join("plots"));
}

#[test]
fn sweep_interrupted_stops_compare_and_leaves_no_namespace() {
    if !require("sweep.sh test", lab_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("cut");
    // Long sessions, so the signal lands in the middle of one.
    let mut child = sweep_cmd(&name)
        .args(["--count", "20000", "--no-plot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let script = child.id();
    // Wait (bounded) until compare is running and its lab exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    let compare = loop {
        let kids = children_of(script);
        if let Some(&k) = kids.iter().find(|&&k| !namespaces_of(k).is_empty()) {
            break k;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no compare with a lab under sweep.sh after 20 s (children {kids:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(script as libc::pid_t, libc::SIGINT) };
    let status = wait_exit(&mut child, 30, "sweep.sh after SIGINT");
    assert_eq!(status.code(), Some(130), "exit status after SIGINT");
    assert!(
        !Path::new(&format!("/proc/{compare}")).exists()
            || fs::read_to_string(format!("/proc/{compare}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "compare (pid {compare}) still running"
    );
    assert_eq!(
        namespaces_of(compare),
        Vec::<String>::new(),
        "lab left behind"
    );
    // The interrupted session's rows are kept, marked incomplete.
    let rows = read_summary(&name.join("summary.csv"));
    assert!(!rows.is_empty(), "the interrupted session wrote no row");
    assert!(rows.iter().all(|r| r["complete"] == "false"), "{rows:?}");
    // ...and they add up: messages still on their way at the cut are in_flight, not lost.
    for r in &rows {
        let n = |c: &str| {
            r[c].parse::<u64>()
                .unwrap_or_else(|_| panic!("{c} in {r:?}"))
        };
        assert_eq!(n("lost"), n("sent") - n("received"), "{r:?}");
    }
}

#[test]
fn sweep_quick_lab_engine_runs_the_grid_through_lab_sh_and_plots_it() {
    if !require(
        "sweep.sh lab-engine test",
        lab_missing().or_else(matplotlib_missing),
    ) {
        return;
    }
    let _lock = lab_sh_lock();
    assert_eq!(
        lab_sh_namespaces(),
        Vec::<String>::new(),
        "a lab.sh lab is up before the test (scripts/lab.sh down)"
    );
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("quick-lab");
    let started = Instant::now();
    let out = sweep_cmd_with(&name, "lab").output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "sweep.sh --quick --engine lab --emulator failed:\n{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(lab_sh_namespaces(), Vec::<String>::new(), "lab left behind");
    let sweep_log = fs::read_to_string(name.join("sweep.log")).unwrap();
    assert!(
        sweep_log.contains("engine lab") && sweep_log.contains("emulator"),
        "sweep.log does not name the lab engine and the emulator:\n{sweep_log}"
    );

    let rows = read_summary(&name.join("summary.csv"));
    let conditions = [
        "loss=0%,delay=10ms,sweep=loss",
        "loss=5%,delay=10ms,sweep=loss",
        "reorder=2%,delay=10ms,sweep=reorder",
        "duplicate=2%,delay=10ms,sweep=duplicate",
    ];
    assert_eq!(
        rows.len(),
        2 * conditions.len(),
        "4 conditions x (TCP, UDP)"
    );
    for cond in conditions {
        for proto in ["tcp", "udp"] {
            let n = rows
                .iter()
                .filter(|r| r["label"] == cond && r["protocol"] == proto)
                .count();
            assert_eq!(n, 1, "{proto} rows labelled {cond}");
        }
    }
    let mut links = 0;
    for r in &rows {
        let (id, p, label) = (&r["run_id"], &r["protocol"], &r["label"]);
        assert_eq!(r["complete"], "true", "{r:?}");
        assert_eq!(r["sent"], "300", "{r:?}");
        // Through lab.sh's hosts: the sender in sb-lab-a sent to B's address.
        assert!(r["peer"].starts_with("198.18.0.2"), "peer {:?}", r["peer"]);
        // Each session's files under its own run_id.
        for f in [
            format!("{id}_{p}_latency.csv"),
            format!("{id}_{p}_messages.csv"),
        ] {
            assert!(name.join(&f).is_file(), "{f} missing");
        }
        if p == "tcp" {
            for col in ["lost", "duplicates", "reordered", "corrupt"] {
                assert_eq!(r[col], "0", "TCP {col} under {label}");
            }
            assert_eq!(r["received"], r["sent"], "TCP under {label}");
            continue;
        }
        // UDP: sockbench's figures equal the emulator's own counts for the condition, exactly.
        let path = name.join(format!("{id}_link.csv"));
        if !path.is_file() {
            continue;
        }
        links += 1;
        let link = read_link(&path);
        assert!(
            link.values()
                .all(|l| &l["run_id"] == id && &l["label"] == label),
            "{}: run_id/label columns are not the UDP session's",
            path.display()
        );
        let t = &link[&("a_to_b".to_string(), "udp".to_string())];
        let n = |row: &Row, c: &str| -> u64 {
            row[c]
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{c}={:?}", row[c])) as u64
        };
        assert_eq!(n(r, "sent"), n(t, "entered"), "UDP sent under {label}");
        assert_eq!(
            n(r, "lost"),
            n(t, "dropped") + n(t, "queue_drops") + n(t, "corrupted"),
            "UDP lost vs the emulator's drops under {label}"
        );
        assert_eq!(n(r, "duplicates"), n(t, "duplicated"), "under {label}");
        assert_eq!(n(r, "reordered"), n(t, "reordered"), "under {label}");
        assert_eq!(
            n(r, "received"),
            n(t, "forwarded") - n(t, "corrupted"),
            "under {label}"
        );
    }
    // --emulator: every condition went through the emulator, so every UDP session has its counts.
    assert_eq!(links, conditions.len(), "UDP sessions with a link CSV");
    let udp_loss5 = rows
        .iter()
        .find(|r| r["protocol"] == "udp" && r["label"].starts_with("loss=5%"))
        .unwrap();
    assert_ne!(udp_loss5["lost"], "0", "UDP at 5% loss lost nothing");
    assert_figures(&name.join("plots"));
}

#[test]
fn sweep_lab_engine_interrupted_stops_its_sessions_and_takes_the_lab_down() {
    if !require("sweep.sh lab-engine test", lab_missing()) {
        return;
    }
    let _lock = lab_sh_lock();
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("cut-lab");
    let mut child = sweep_cmd_with(&name, "lab")
        .args(["--count", "20000", "--no-plot"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let script = child.id();
    // Wait (bounded) until the lab is up and the sender runs under sweep.sh.
    let cmdline = |pid: u32| {
        fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (sender, receiver) = loop {
        let kids = children_of(script);
        let find = |what: &str| kids.iter().copied().find(|&k| cmdline(k).contains(what));
        if let (Some(s), Some(r)) = (find(" send "), find(" recv ")) {
            if lab_sh_namespaces().len() == 2 {
                break (s, r);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no sender and receiver under sweep.sh after 20 s (children {kids:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(script as libc::pid_t, libc::SIGINT) };
    let status = wait_exit(&mut child, 40, "sweep.sh after SIGINT");
    assert_eq!(status.code(), Some(130), "exit status after SIGINT");
    for (pid, what) in [(sender, "sender"), (receiver, "receiver")] {
        let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        assert!(
            !alive || !cmdline(pid).contains("sockbench"),
            "{what} (pid {pid}) still running"
        );
    }
    assert_eq!(lab_sh_namespaces(), Vec::<String>::new(), "lab left behind");
    let rows = read_summary(&name.join("summary.csv"));
    assert!(!rows.is_empty(), "the interrupted session wrote no row");
    assert!(rows.iter().all(|r| r["complete"] == "false"), "{rows:?}");
}

#[test]
fn plot_py_pairs_separate_tcp_and_udp_runs_by_label() {
    if !require("plot.py test", matplotlib_missing()) {
        return;
    }
    // Separate `tcp send` / `udp send` sessions (own run_ids, as sweep.sh's lab engine writes them) at
    // two conditions that share delay=10ms; the newest TCP session belongs to the other condition. The
    // figures for --condition delay=10ms must take one TCP and one UDP session of the same label.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let recv = |proto: &str, port: u16| {
        Command::new(bin())
            .args([proto, "recv", "--once", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // A port free for TCP and UDP on loopback (UDP's control connection shares the number).
    let free_port = || loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    };
    let session = |proto: &str, label: &str| {
        let port = free_port();
        let mut r = recv(proto, port);
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new(bin())
            .args([proto, "send"])
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "--count",
                "100",
                "--rate",
                "0",
                "--per-message",
                "--label",
                label,
            ])
            .arg("--out")
            .arg(&data)
            .output()
            .unwrap();
        let _ = r.kill();
        let _ = r.wait();
        assert!(
            out.status.success(),
            "{proto} send: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    session("tcp", "loss=0%,delay=10ms,sweep=loss");
    session("udp", "loss=0%,delay=10ms,sweep=loss");
    session("tcp", "reorder=0%,delay=10ms,sweep=reorder");
    let rows = read_summary(&data.join("summary.csv"));
    assert_eq!(rows.len(), 3);
    let plots = dir.path().join("figures");
    let out = plot_py(
        &data,
        &plots,
        &["--condition", "delay=10ms", "--format", "svg"],
    );
    assert!(
        out.status.success(),
        "plot.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = fs::read_to_string(plots.join("latency_cdf.svg")).unwrap();
    let (tcp_id, udp_id) = (&rows[0]["run_id"], &rows[1]["run_id"]);
    assert!(
        svg.contains(&format!("runs {tcp_id} (TCP), {udp_id} (UDP)")),
        "latency_cdf did not pair TCP {tcp_id} with UDP {udp_id} (same label)"
    );
}

/// Wait up to `secs` for `child` to exit; kill it and fail the test if it does not.
fn wait_exit(child: &mut std::process::Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not stop within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The load grid's figure (issue 14) from real `compare --load` rows: one panel per queue, made by the binary
/// on loopback (no queue there: the labels alone place the rows).
#[test]
fn plot_py_draws_latency_under_load_from_compare_load_rows() {
    if !require("plot.py test", matplotlib_missing()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for q in ["30", "1000"] {
        for f in ["0", "1"] {
            let label = format!("load={f},queue={q},rate=20mbit,sweep=load");
            let out = Command::new(bin())
                .args(["compare", "--loopback", "--load", f, "--idle-probes", "20"])
                .args([
                    "--count", "100", "--rate", "1000", "--label", &label, "--out",
                ])
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "compare --label {label}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let plots = dir.path().join("figures");
    let out = plot_py(&data, &plots, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plot.py failed: {stderr}");
    assert_png(&plots.join("latency_under_load.png"));
    assert_svg(&plots.join("latency_under_load.svg"));
    let listed = String::from_utf8_lossy(&out.stdout);
    for ext in ["png", "svg"] {
        assert!(
            listed
                .lines()
                .any(|l| l.ends_with(&format!("latency_under_load.{ext}"))),
            "{listed}"
        );
    }
}
