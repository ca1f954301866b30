//! The lab's netem engine: the two hosts joined by a veth pair, and on the sending end a `tc` tree that puts
//! the data of the running session through `tc netem` with the impairment, and nothing else.
//!
//! The tree on host A's `sbveth0` while a session of protocol P runs (and on B's, when B→A is impaired,
//! matching the source port instead):
//!
//! ```text
//! 1: prio, 2 bands; priomap: everything to band 1 unless the filter says otherwise
//! ├── 1:1  10: pfifo limit 1000     ARP, ICMP, every control connection but the TCP session's, stragglers
//! └── 1:2  20: netem <impairment>   P to the session's port (TCP 5300: its data and control connections;
//!                                   UDP 5301: its datagrams, its control connection being TCP)
//! ```
//!
//! One netem per session, steered to that session's port ([`steer`], between sessions), for two reasons:
//! netem keeps no per-protocol counts, and the kernel refuses a duplicating netem in a tree with another
//! netem ("cannot mix duplicating netems with other netems in tree"). So each session gets a fresh netem,
//! whose counters are that session's alone: the UDP one counts the UDP session's datagrams and nothing else,
//! so its drops are that session's losses exactly. A duplicate netem makes is enqueued at the root again, and
//! the filter sends it to the same netem.
//!
//! With `--load` a UDP session's bulk flows (TCP to its port) get a second filter to the same netem, so they
//! share its bottleneck; with `--aqm fq_codel` netem only delays, and its child is a tbf at the link rate whose
//! queue is an fq_codel (`20: netem` → `30: tbf` → `40: fq_codel`). netem's counters then count more than the
//! UDP session's datagrams, and compare leaves its column out.
//!
//! The veth gets `gso_max_segs 1`: TCP then hands the qdisc one segment per packet, as on a wire (and as the
//! emulator's TUN devices, which have no offloads, see it), so "5 % loss" means 5 % of packets for TCP too.
//!
//! What netem counts (`tc -s`: sent packets, drops, requeues, backlog) and what it does not is spelt out in
//! [`NetemCounters`]; where netem and the emulator model an impairment differently is in README "Impaired
//! paths".

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::link::counters::{CSV_COLUMNS, CSV_SCHEMA_VERSION};
use crate::link::impair::{fmt_dur, JitterDist};
use crate::link::{Direction, Impairment, Proto};

use crate::traffic::Protocol;

use super::data_port;

/// The veth device in each host.
pub const DEV: &str = "sbveth0";

/// The netem qdisc's handle.
const NETEM_HANDLE: &str = "20:";

/// netem on a veth counts the 14-byte Ethernet header in a packet's length; the emulator on TUN devices
/// counts the IP packet. Telling netem's rate limiter to leave the header out makes `--link-rate` the same
/// rate of IP bytes on both engines.
const ETH_HEADER: u32 = 14;

/// `Ok(())` if this kernel has netem and `tc` is here; otherwise what is missing, as a phrase.
pub fn available() -> Result<(), String> {
    match Command::new("tc").arg("-V").stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => {}
        _ => return Err("the `tc` command (iproute2) is missing: apt-get install iproute2".into()),
    }
    if netem_present() {
        return Ok(());
    }
    // Loading it needs root; a module that is not there fails quietly.
    let _ = Command::new("modprobe")
        .args(["-q", "sch_netem"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if netem_present() {
        return Ok(());
    }
    Err(format!("no sch_netem in kernel {}", kernel_release()))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Loaded as a module, or built into the kernel.
fn netem_present() -> bool {
    if std::path::Path::new("/sys/module/sch_netem").exists() {
        return true;
    }
    let builtin = format!("/lib/modules/{}/modules.builtin", kernel_release());
    std::fs::read_to_string(builtin).is_ok_and(|s| s.lines().any(|l| l.ends_with("/sch_netem.ko")))
}

/// Why netem cannot apply `imp` as the emulator would, or `None`. A phrase, for "--engine netem: ...".
pub fn refusal(imp: &Impairment) -> Option<String> {
    if imp.corrupt_fix_checksum {
        return Some(
            "netem cannot make a corrupted packet's checksum valid again (--corrupt-fix-checksum)"
                .into(),
        );
    }
    if imp.reorder > 0.0 && imp.delay.is_zero() {
        return Some(
            "netem reorders by sending a packet ahead of the delayed ones, so --reorder needs --delay \
             (tc refuses it without)"
                .into(),
        );
    }
    if imp.rate_bps.is_some_and(|r| r < 8) {
        return Some("netem's rate is in bytes per second: give --link-rate 8bit or more".into());
    }
    None
}

/// A probability as tc reads it: "5%", "0.25%".
fn pct(p: f64) -> String {
    let s = format!("{:.6}", p * 100.0);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The arguments after `netem` that apply `imp` (the emulator's flags in netem's words). Every parameter is
/// given, defaults included, so that tc's own defaults (which differ from the emulator's for gemodel) never
/// apply.
pub fn netem_args(imp: &Impairment) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |words: &[&str]| a.extend(words.iter().map(|w| w.to_string()));
    if let Some(ge) = &imp.gemodel {
        push(&["loss", "gemodel"]);
        push(&[
            &pct(ge.p),
            &pct(ge.r),
            &pct(ge.bad_loss),
            &pct(ge.good_loss),
        ]);
    } else if imp.loss > 0.0 {
        push(&["loss", "random", &pct(imp.loss)]);
        if imp.loss_correlation > 0.0 {
            push(&[&pct(imp.loss_correlation)]);
        }
    }
    if !imp.delay.is_zero() || !imp.jitter.is_zero() {
        push(&["delay", &fmt_dur(imp.delay)]);
        if !imp.jitter.is_zero() {
            push(&[&fmt_dur(imp.jitter)]);
            if imp.jitter_dist == JitterDist::Normal {
                push(&["distribution", "normal"]);
            }
        }
    }
    if imp.reorder > 0.0 {
        push(&[
            "reorder",
            &pct(imp.reorder),
            "gap",
            &imp.reorder_gap().to_string(),
        ]);
    }
    if imp.duplicate > 0.0 {
        push(&["duplicate", &pct(imp.duplicate)]);
    }
    if imp.corrupt > 0.0 {
        push(&["corrupt", &pct(imp.corrupt)]);
    }
    match imp.rate_bps {
        // fq_codel: the rate limiter is a tbf under netem, its queue the fq_codel (`tc_batch`); netem's own
        // queue only holds packets for their delay, and must never be the one that drops.
        Some(_) if imp.fq_codel => push(&["limit", &NETEM_DELAY_LIMIT.to_string()]),
        Some(r) => {
            push(&["rate", &format!("{r}bit"), &format!("-{ETH_HEADER}")]);
            push(&["limit", &imp.queue_limit().to_string()]);
        }
        None => push(&["limit", &imp.queue_limit().to_string()]),
    }
    a
}

/// netem's queue when fq_codel is the bottleneck's: room for what the delay holds at any rate a veth takes.
const NETEM_DELAY_LIMIT: usize = 100_000;

/// `--aqm fq_codel`: netem's child is a tbf at the link rate (a burst of 4 ms at that rate, two full packets at
/// least: a slow VM's timers wake late, and a smaller bucket would cut the rate), and the tbf's
/// child the fq_codel, with the queue limit in packets: the queue builds where the rate limit is, and
/// fq_codel manages it (RFC 8290: a queue per flow, served in turn, each kept short by CoDel).
fn aqm_lines(dev: &str, imp: &Impairment) -> Vec<String> {
    let Some(rate) = imp.rate_bps.filter(|_| imp.fq_codel) else {
        return vec![];
    };
    let burst = (rate / 8 / 250).max(3028);
    vec![
        format!(
            "qdisc add dev {dev} parent {NETEM_HANDLE}1 handle 30: tbf rate {rate}bit burst {burst} limit {}",
            1 << 24
        ),
        format!(
            "qdisc add dev {dev} parent 30:1 handle 40: fq_codel limit {}",
            imp.queue_limit()
        ),
    ]
}

/// The `tc -batch` lines that put `proto`'s session on `dev` through netem, for traffic leaving `dev`;
/// `field` is `dport` on the sender's side (traffic to the receiver's port) and `sport` on the receiver's
/// (traffic from it). `replace`: a tree is there already (it goes, with its netem and counters).
pub fn tc_batch(
    dev: &str,
    imp: &Impairment,
    field: &str,
    proto: Protocol,
    (replace, tcp_too): (bool, bool),
) -> String {
    let args = netem_args(imp).join(" ");
    let ipproto = match proto {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    };
    let port = data_port(proto);
    let mut lines = Vec::new();
    if replace {
        lines.push(format!("qdisc del dev {dev} root"));
    }
    lines.push(format!(
        "qdisc add dev {dev} root handle 1: prio bands 2 priomap{}",
        " 0".repeat(16)
    ));
    // An explicit limit: a pfifo's default is the device's txqueuelen.
    lines.push(format!(
        "qdisc add dev {dev} parent 1:1 handle 10: pfifo limit 1000"
    ));
    lines.push(format!(
        "qdisc add dev {dev} parent 1:2 handle {NETEM_HANDLE} netem {args}"
    ));
    lines.extend(aqm_lines(dev, imp));
    lines.push(format!(
        "filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip protocol {ipproto} 0xff \
         match ip {field} {port} 0xffff flowid 1:2"
    ));
    if tcp_too && ipproto != 6 {
        // --load: the UDP session's bulk flows are TCP connections to its port; they share its netem.
        lines.push(format!(
            "filter add dev {dev} parent 1: protocol ip prio 2 u32 match ip protocol 6 0xff \
             match ip {field} {port} 0xffff flowid 1:2"
        ));
    }
    lines.join("\n") + "\n"
}

/// Join namespaces `a` and `b` (which exist, with `lo` up) by a veth pair with `addr_a`/`addr_b` (CIDR).
/// Nothing is impaired until [`steer`].
pub fn build(a: &str, b: &str, addr_a: &str, addr_b: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "-n", a, "link", "add", DEV, "type", "veth", "peer", "name", DEV, "netns", b,
        ],
        None,
    )?;
    for (ns, addr) in [(a, addr_a), (b, addr_b)] {
        // gso_max_segs 1: one segment per packet (see the module doc). addrgenmode none: no IPv6 link-local
        // address, so the link carries only the traffic under test. Both are refused by old iproute2 only.
        let _ = run(
            "ip",
            &["-n", ns, "link", "set", "dev", DEV, "gso_max_segs", "1"],
            None,
        );
        let _ = run(
            "ip",
            &["-n", ns, "link", "set", "dev", DEV, "addrgenmode", "none"],
            None,
        );
        let batch = format!("addr add {addr} dev {DEV}\nlink set dev {DEV} up\n");
        run("ip", &["-n", ns, "-batch", "-"], Some(&batch))?;
    }
    Ok(())
}

/// Impair `proto`'s session leaving namespace `ns` with a fresh netem (see the module doc); `from_receiver`:
/// `ns` is the receiver's host (match the source port). `replace`: a tree is there already.
/// `tcp_too`: TCP to the session's port too (the load flows of a UDP session, and its control connection).
pub fn steer(
    ns: &str,
    imp: &Impairment,
    from_receiver: bool,
    proto: Protocol,
    (replace, tcp_too): (bool, bool),
) -> anyhow::Result<()> {
    if let Some(why) = refusal(imp) {
        bail!("netem cannot apply {}: {why}", imp.describe());
    }
    let field = if from_receiver { "sport" } else { "dport" };
    run(
        "tc",
        &["-n", ns, "-batch", "-"],
        Some(&tc_batch(DEV, imp, field, proto, (replace, tcp_too))),
    )
    .with_context(|| format!("cannot put netem on {DEV} in {ns}"))
}

/// Run a command (with `input` on its stdin), turning a failure into an error that shows it.
fn run(prog: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{prog}` (install iproute2)"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            input.map(|t| format!("\ninput:\n{t}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// One qdisc's counters, as `tc -s` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QdiscStats {
    /// Packets it sent on (netem: duplicates included).
    pub packets: u64,
    /// Packets it dropped (netem: random and Gilbert-Elliott losses, and tail drops at `limit`).
    pub drops: u64,
    /// netem: packets sent ahead of the queue by `reorder`.
    pub requeues: u64,
    /// Packets still queued (netem: still in its delay line).
    pub qlen: u64,
}

/// The netem qdisc's counters in `tc -s -j qdisc show` output.
pub fn parse_stats(json: &str) -> anyhow::Result<QdiscStats> {
    let v: serde_json::Value = serde_json::from_str(json).context("tc's JSON output")?;
    let list = v.as_array().context("tc's JSON output is not a list")?;
    let q = list
        .iter()
        .find(|q| q["kind"] == "netem" && q["handle"] == NETEM_HANDLE)
        .with_context(|| format!("no netem qdisc {NETEM_HANDLE} in tc's output: {json}"))?;
    let n = |k: &str| {
        q[k].as_u64()
            .with_context(|| format!("netem: no {k} in tc's output"))
    };
    Ok(QdiscStats {
        packets: n("packets")?,
        drops: n("drops")?,
        requeues: n("requeues")?,
        qlen: n("qlen")?,
    })
}

/// Read the counters of the netem qdisc on `DEV` in namespace `ns`.
pub fn read_stats(ns: &str) -> anyhow::Result<QdiscStats> {
    let out = Command::new("tc")
        .args(["-n", ns, "-s", "-j", "qdisc", "show", "dev", DEV])
        .stdin(Stdio::null())
        .output()
        .context("cannot run `tc`")?;
    if !out.status.success() {
        bail!(
            "`tc -n {ns} -s -j qdisc show dev {DEV}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_stats(&String::from_utf8_lossy(&out.stdout))
}

/// What netem counted in one direction: its impairment and the counters of the netem of the TCP session and
/// of the UDP session (`None`: no such session ran).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetemDirection {
    pub impairment: Impairment,
    pub tcp: Option<QdiscStats>,
    pub udp: Option<QdiscStats>,
}

/// netem's counts for `link.csv`, in the emulator's columns, each filled only where netem's own counters
/// give it exactly for this impairment, and empty otherwise:
///
/// * `forwarded`: the packets netem sent on. With `--duplicate` its copies are among them: netem does not
///   count them apart, so `duplicated` and `entered` are empty then; without, `duplicated` is 0 and
///   `entered` = forwarded + dropped + unsent_at_stop.
/// * `dropped`: netem's drops: random and Gilbert-Elliott losses, and tail drops at its `limit` (netem
///   does not tell them apart, so `queue_drops` is empty). A lost packet that was to be duplicated is still
///   sent once, and a copy can be lost on its own, so with `--duplicate` this is not the receiver's loss.
/// * `reordered`: with `--reorder`, the packets netem sent ahead of its queue (its `requeues`); each of them
///   overtakes every packet in the delay line, which the receiver then counts as reordered (RFC 4737), so
///   this is not that count. 0 without `--reorder` and `--jitter`; empty with `--jitter` alone (netem
///   reorders by jitter without counting).
/// * `corrupted`: 0 without `--corrupt`, else empty (netem does not count what it corrupted).
/// * `unsent_at_stop`: still in netem's delay line when the counters were read.
/// * `write_errors`: empty.
///
/// Only the TCP and UDP rows of an impaired direction have values, and they count the TCP session and the
/// UDP session (the UDP session's control connection, TCP, went through the unimpaired band, like the rest
/// of the traffic). The data direction always has a netem (without impairment it only counts); the other
/// direction has one only when it is impaired.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetemCounters {
    /// Indexed by `Direction as usize`; `None`: not impaired.
    pub dirs: [Option<NetemDirection>; 2],
}

/// One `link.csv` row's counts, in `CSV_COLUMNS` order from `entered`; `None` is an empty cell.
pub type Cells = [Option<u64>; 10];

/// Column index in [`Cells`].
pub mod col {
    pub const ENTERED: usize = 0;
    pub const FORWARDED: usize = 1;
    pub const DROPPED: usize = 2;
    pub const DUPLICATED: usize = 3;
    pub const REORDERED: usize = 4;
    pub const CORRUPTED: usize = 5;
    pub const UNSENT_AT_STOP: usize = 7;
}

impl NetemCounters {
    /// The cells of one row (see the type's doc for what each means and when it is empty).
    pub fn cells(&self, dir: Direction, proto: Proto) -> Cells {
        let mut c: Cells = [None; 10];
        let Some(d) = &self.dirs[dir as usize] else {
            return c;
        };
        let s = match proto {
            Proto::Tcp => d.tcp,
            Proto::Udp => d.udp,
            _ => None,
        };
        let Some(s) = s else {
            return c;
        };
        let imp = &d.impairment;
        let copies = imp.duplicate > 0.0;
        c[col::FORWARDED] = Some(s.packets);
        c[col::DROPPED] = Some(s.drops);
        c[col::UNSENT_AT_STOP] = Some(s.qlen);
        if !copies {
            c[col::ENTERED] = Some(s.packets + s.drops + s.qlen);
            c[col::DUPLICATED] = Some(0);
        }
        c[col::REORDERED] = if imp.reorder > 0.0 {
            Some(s.requeues)
        } else if imp.jitter.is_zero() {
            Some(0)
        } else {
            None
        };
        if imp.corrupt == 0.0 {
            c[col::CORRUPTED] = Some(0);
        }
        c
    }

    /// `link.csv`'s content (the emulator's schema), through the report's exporter.
    pub fn csv<'a>(&'a self, run_id: &'a str, label: &'a str) -> NetemCsv<'a> {
        NetemCsv {
            counts: self,
            run_id,
            label,
        }
    }
}

/// `link.csv` from netem's counters: the emulator's columns and rows (see [`NetemCounters`]).
pub struct NetemCsv<'a> {
    counts: &'a NetemCounters,
    run_id: &'a str,
    label: &'a str,
}

impl crate::report::export::Export for NetemCsv<'_> {
    fn header(&self) -> Vec<&'static str> {
        CSV_COLUMNS.to_vec()
    }

    fn write_rows(&self, w: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let mut c = crate::report::export::csv_writer(w);
        let cell = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        for dir in Direction::ALL {
            let rows = Proto::ALL
                .iter()
                .map(|&p| (p.name(), self.counts.cells(dir, p)))
                .chain(std::iter::once(("all", [None; 10])));
            for (proto, cells) in rows {
                let mut rec = vec![
                    CSV_SCHEMA_VERSION.to_string(),
                    self.run_id.to_string(),
                    self.label.to_string(),
                    dir.name().to_string(),
                    proto.to_string(),
                ];
                rec.extend(cells.iter().map(|&v| cell(v)));
                c.write_record(&rec)?;
            }
        }
        c.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::GilbertElliott;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_flag_in_netems_words() {
        let imp = Impairment {
            loss: 0.05,
            loss_correlation: 0.25,
            delay: ms(20),
            jitter: Duration::from_micros(1500),
            jitter_dist: JitterDist::Normal,
            reorder: 0.02,
            reorder_gap: 3,
            duplicate: 0.01,
            corrupt: 0.001,
            rate_bps: Some(10_000_000),
            queue_limit: 50,
            ..Default::default()
        };
        assert_eq!(
            netem_args(&imp).join(" "),
            "loss random 5% 25% delay 20ms 1.5ms distribution normal reorder 2% gap 3 duplicate 1% \
             corrupt 0.1% rate 10000000bit -14 limit 50"
        );
        let ge = Impairment {
            gemodel: Some(GilbertElliott {
                p: 0.01,
                r: 0.3,
                bad_loss: 1.0,
                good_loss: 0.0,
            }),
            ..Default::default()
        };
        // All four given: tc's defaults for the ones left out are not the emulator's.
        assert_eq!(
            netem_args(&ge).join(" "),
            "loss gemodel 1% 30% 100% 0% limit 1000"
        );
        let jitter_only = Impairment {
            jitter: ms(5),
            ..Default::default()
        };
        assert_eq!(
            netem_args(&jitter_only).join(" "),
            "delay 0ms 5ms limit 1000"
        );
        // No impairment: a netem that only counts.
        assert_eq!(netem_args(&Impairment::default()).join(" "), "limit 1000");
        // The reorder gap is always given: netem's gap 1 is the emulator's default.
        let reorder = Impairment {
            reorder: 0.5,
            delay: ms(10),
            ..Default::default()
        };
        assert_eq!(
            netem_args(&reorder).join(" "),
            "delay 10ms reorder 50% gap 1 limit 1000"
        );
    }

    #[test]
    fn what_netem_cannot_do() {
        let ok = Impairment {
            reorder: 0.02,
            delay: ms(1),
            ..Default::default()
        };
        assert_eq!(refusal(&ok), None);
        let no_delay = Impairment {
            reorder: 0.02,
            ..Default::default()
        };
        assert!(refusal(&no_delay).unwrap().contains("--delay"));
        let fix = Impairment {
            corrupt: 0.01,
            corrupt_fix_checksum: true,
            ..Default::default()
        };
        assert!(refusal(&fix).unwrap().contains("--corrupt-fix-checksum"));
        let slow = Impairment {
            rate_bps: Some(7),
            ..Default::default()
        };
        assert!(refusal(&slow).unwrap().contains("8bit"));
    }

    #[test]
    fn the_tree_steers_only_the_sessions_port_to_netem() {
        let imp = Impairment {
            loss: 0.05,
            ..Default::default()
        };
        let b = tc_batch("v", &imp, "dport", Protocol::Udp, (false, false));
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(
            lines,
            [
                "qdisc add dev v root handle 1: prio bands 2 priomap 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
                "qdisc add dev v parent 1:1 handle 10: pfifo limit 1000",
                "qdisc add dev v parent 1:2 handle 20: netem loss random 5% limit 1000",
                "filter add dev v parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 5301 \
                 0xffff flowid 1:2",
            ]
        );
        // The next session replaces the whole tree: a fresh netem, fresh counters.
        let next = tc_batch("v", &imp, "sport", Protocol::Tcp, (true, false));
        assert!(next.starts_with("qdisc del dev v root\n"), "{next}");
        assert!(next.contains("match ip protocol 6 0xff match ip sport 5300 0xffff"));
    }

    /// --load and --aqm fq_codel: the UDP session's TCP load shares its netem, and the bottleneck's queue is an
    /// fq_codel under a tbf under netem (which then only delays).
    #[test]
    fn load_and_fq_codel_trees() {
        let imp = Impairment {
            delay: std::time::Duration::from_millis(5),
            rate_bps: Some(20_000_000),
            queue_limit: 1000,
            fq_codel: true,
            ..Default::default()
        };
        let b = tc_batch("v", &imp, "dport", Protocol::Udp, (false, true));
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(
            lines[2..],
            [
                "qdisc add dev v parent 1:2 handle 20: netem delay 5ms limit 100000",
                "qdisc add dev v parent 20:1 handle 30: tbf rate 20000000bit burst 10000 limit 16777216",
                "qdisc add dev v parent 30:1 handle 40: fq_codel limit 1000",
                "filter add dev v parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport 5301 \
                 0xffff flowid 1:2",
                "filter add dev v parent 1: protocol ip prio 2 u32 match ip protocol 6 0xff match ip dport 5301 \
                 0xffff flowid 1:2",
            ]
        );
        // A TCP session's filter already takes its load; without fq_codel netem limits the rate itself.
        let fifo = Impairment {
            fq_codel: false,
            ..imp
        };
        let b = tc_batch("v", &fifo, "dport", Protocol::Tcp, (false, true));
        assert_eq!(b.matches("filter add").count(), 1);
        assert!(
            b.contains("netem delay 5ms rate 20000000bit -14 limit 1000"),
            "{b}"
        );
        assert!(!b.contains("fq_codel"));
    }

    /// `tc -s -j qdisc show` of iproute2 6.1 on Debian 12's kernel, with the tree above.
    const TC_JSON: &str = r#"[{"kind":"prio","handle":"1:","root":true,"refcnt":3,"options":{"bands":2,
"priomap":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"multiqueue":false},"bytes":633084,"packets":6213,"drops":0,
"overlimits":0,"requeues":0,"backlog":0,"qlen":0},{"kind":"pfifo","handle":"10:","parent":"1:1",
"options":{"limit":1000},"bytes":2064,"packets":24,"drops":0,"overlimits":0,"requeues":0,"backlog":0,
"qlen":0},{"kind":"netem","handle":"20:","parent":"1:2","options":{"limit":1000,"loss-random":
{"loss":0.05,"correlation":0},"ecn":false,"gap":0},"bytes":312912,"packets":2902,"drops":98,
"overlimits":0,"requeues":3,"backlog":120,"qlen":1}]"#;

    #[test]
    fn netems_counters_from_tc_json() {
        assert_eq!(
            parse_stats(TC_JSON).unwrap(),
            QdiscStats {
                packets: 2902,
                drops: 98,
                requeues: 3,
                qlen: 1
            }
        );
        assert!(parse_stats("[]").is_err());
        assert!(parse_stats("not json").is_err());
    }

    #[test]
    fn cells_are_filled_only_where_netem_counts_them_exactly() {
        let stats = QdiscStats {
            packets: 2902,
            drops: 98,
            requeues: 3,
            qlen: 1,
        };
        let counters = |imp: Impairment| NetemCounters {
            dirs: [
                Some(NetemDirection {
                    impairment: imp,
                    tcp: None,
                    udp: Some(stats),
                }),
                None,
            ],
        };
        let loss = counters(Impairment {
            loss: 0.05,
            ..Default::default()
        });
        assert_eq!(
            loss.cells(Direction::AtoB, Proto::Udp),
            [
                Some(3001),
                Some(2902),
                Some(98),
                Some(0),
                Some(0),
                Some(0),
                None,
                Some(1),
                None,
                None
            ]
        );
        assert_eq!(loss.cells(Direction::AtoB, Proto::Icmp), [None; 10]);
        assert_eq!(
            loss.cells(Direction::AtoB, Proto::Tcp),
            [None; 10],
            "no TCP session"
        );
        assert_eq!(loss.cells(Direction::BtoA, Proto::Udp), [None; 10]);
        let all = counters(Impairment {
            duplicate: 0.01,
            reorder: 0.02,
            delay: ms(10),
            corrupt: 0.01,
            ..Default::default()
        });
        let c = all.cells(Direction::AtoB, Proto::Udp);
        assert_eq!(c[col::ENTERED], None);
        assert_eq!(c[col::DUPLICATED], None);
        assert_eq!(c[col::REORDERED], Some(3), "requeues");
        assert_eq!(c[col::CORRUPTED], None);
        let jitter = counters(Impairment {
            delay: ms(10),
            jitter: ms(5),
            ..Default::default()
        });
        assert_eq!(
            jitter.cells(Direction::AtoB, Proto::Udp)[col::REORDERED],
            None
        );
    }

    #[test]
    fn link_csv_has_the_emulators_columns_and_empty_cells() {
        let counters = NetemCounters {
            dirs: [
                Some(NetemDirection {
                    impairment: Impairment {
                        loss: 0.05,
                        ..Default::default()
                    },
                    tcp: Some(QdiscStats {
                        packets: 10,
                        drops: 1,
                        requeues: 0,
                        qlen: 0,
                    }),
                    udp: Some(QdiscStats {
                        packets: 95,
                        drops: 5,
                        requeues: 0,
                        qlen: 0,
                    }),
                }),
                None,
            ],
        };
        let mut buf = Vec::new();
        crate::report::export::write(&counters.csv("r1", "lbl"), &mut buf).unwrap();
        let mut r = csv::Reader::from_reader(&buf[..]);
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), CSV_COLUMNS);
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 10);
        let udp = rows
            .iter()
            .find(|r| &r[3] == "a_to_b" && &r[4] == "udp")
            .unwrap();
        assert_eq!(
            udp.iter().collect::<Vec<_>>(),
            ["2", "r1", "lbl", "a_to_b", "udp", "100", "95", "5", "0", "0", "0", "", "0", "", ""]
        );
        let icmp = rows
            .iter()
            .find(|r| &r[3] == "a_to_b" && &r[4] == "icmp")
            .unwrap();
        assert!(icmp.iter().skip(5).all(str::is_empty));
    }
}
