//! scripts/bench.sh (issue 13's benchmark): it parses, its help works, and bad input is one line with exit 2,
//! all before it installs, builds or measures anything. The smoke run (`--quick`) floods loopback on both
//! CPUs for about half a minute, which would disturb the timing of tests running beside it, so it is ignored
//! by default: `cargo nextest run --run-ignored all -E 'test(bench_quick_smoke_run)'`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench.sh")
}

fn run(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        // Nothing here may reach apt-get or cargo: usage is checked first, and these make sure of it.
        .env("SOCKBENCH", env!("CARGO_BIN_EXE_sockbench"))
        .output()
        .expect("run scripts/bench.sh")
}

#[test]
fn bench_script_parses() {
    let o = Command::new("bash")
        .arg("-n")
        .arg(script())
        .output()
        .expect("run bash -n");
    assert!(
        o.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bench_help_exits_0_and_names_every_test() {
    let o = run(&["--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for t in [
        "udp_rate",
        "udp_rate_1200",
        "rtt_udp",
        "rtt_tcp",
        "tcp_bulk",
        "pacing_10k",
        "memory_1e7",
        "--rounds",
        "--duration",
        "--quick",
    ] {
        assert!(out.contains(t), "--help does not mention {t}: {out}");
    }
}

/// Exit 2 and exactly one stderr line that names the argument; returns the line.
fn usage_error(args: &[&str], needles: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{args:?}: stderr {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(o.stdout.is_empty(), "{args:?}: wrote to stdout");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} should mention {n:?}");
    }
    err
}

#[test]
fn bench_bad_input_is_one_line_and_exit_2() {
    usage_error(&["--rounds", "x"], &["--rounds", "'x'", "1 to 20"]);
    usage_error(&["--rounds", "0"], &["--rounds", "'0'"]);
    usage_error(&["--rounds"], &["--rounds needs a value"]);
    usage_error(&["--duration", "1.5"], &["--duration", "'1.5'"]);
    usage_error(&["--tests", "udp_rate,nope"], &["'nope'", "udp_rate_1200"]);
    usage_error(&["--frobnicate"], &["'--frobnicate'"]);
    // Over the 10-minute budget: refused before anything starts, saying what to lower.
    usage_error(
        &["--rounds", "20", "--duration", "30"],
        &["600 s", "lower --rounds or --duration"],
    );
}

/// Every process bench.sh starts has its output in the --out folder or its scratch folder (under TMPDIR):
/// any process still holding a file below `dir` was left behind.
fn processes_holding(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)) {
                let cmd = fs::read(p.path().join("cmdline")).unwrap_or_default();
                found.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
                break;
            }
        }
    }
    found
}

#[test]
#[ignore = "floods loopback on both CPUs for ~30 s; needs iperf3, sockperf, jq and GNU time"]
fn bench_quick_smoke_run() {
    for tool in ["iperf3", "sockperf", "jq", "taskset"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: scripts/bench.sh (without --no-install) installs it"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(script())
        .args(["--quick", "--no-install", "--no-build", "--out"])
        .arg(&out)
        .env("SOCKBENCH", env!("CARGO_BIN_EXE_sockbench"))
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // 0: every figure measured; 1: some could not be (a flag or column this sockbench lacks), said on stderr.
    match o.status.code() {
        Some(0) => {}
        Some(1) => assert!(
            stderr.contains("problem(s)"),
            "exit 1 without a reason: {stderr}"
        ),
        c => panic!("exit {c:?}\nstdout {stdout}\nstderr {stderr}"),
    }
    assert!(
        stdout.contains("ratio") && stdout.contains("machine:"),
        "{stdout}"
    );
    let csv = fs::read_to_string(out.join("bench.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "date,kernel,cpu_model,cpus,test,tool,tool_version,metric,unit,value,better,\
             ratio_sockbench_over_other,rounds,target,pass"
        )
    );
    for t in [
        ",udp_rate,iperf3,",
        ",udp_rate,sockperf,",
        ",udp_rate_1200,iperf3,",
        ",rtt_udp,sockperf,",
        ",rtt_tcp,sockperf,",
        ",tcp_bulk,iperf3,",
        ",pacing_10k,sockbench,",
        ",memory_1e7,sockbench-sender,",
        ",memory_1e7,sockbench-receiver,",
    ] {
        assert!(csv.contains(t), "bench.csv has no {t} row:\n{csv}");
    }
    assert!(fs::read_to_string(out.join("raw/rounds.csv"))
        .unwrap()
        .starts_with("round,test,tool,metric,unit,value\n"));
    let left = processes_holding(tmp.path());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
