#!/usr/bin/env python3
"""Self-test for plot.py: writes a synthetic sockbench results directory,
runs plot.py on it as a subprocess and checks the figures it writes.

    python3 scripts/test_plot.py            # run the tests
    python3 scripts/test_plot.py --keep D   # also leave the data and plots in D

The synthetic data is a small model of a 10 ms path at 1000 msg/s, 64-byte
messages: UDP loses what the link drops; TCP delivers everything but late
(fast retransmit after ~3 later segments + 1 RTT, or an RTO of 200 ms).
Last line of output: "N passed, N failed"; exit status 1 if any failed.
"""

import csv
import os
import shutil
import random
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "plot.py")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in scripts/

SUMMARY_COLUMNS = (
    "schema_version,run_id,started_utc,label,protocol,mode,peer,msg_size,rate_target,"
    "duration_s,sent,received,lost,loss_pct,duplicates,reordered,reorder_extent_max,"
    "loss_bursts,loss_burst_max,corrupt,invalid,latency_min_us,latency_mean_us,latency_p50_us,"
    "latency_p90_us,latency_p99_us,latency_p999_us,latency_max_us,latency_stddev_us,"
    "transit_p50_us,transit_p99_us,transit_max_us,jitter_us,ipdv_p50_us,ipdv_p99_us,pdv_us,"
    "goodput_mbps,msgs_per_s,recv_calls,split_messages,coalesced_reads,tcp_connect_us,"
    "tcp_retransmits,send_errors,udp_rcvbuf_drops,path_lost,reordered_3,clock_offset_us,"
    "clock_error_us,complete").split(",")
EXPECTED = ("delivery_vs_loss", "latency_vs_loss", "latency_cdf", "latency_over_seq",
            "reorder_dup")

RATE = 1000  # msg/s
N = 4000  # messages per session (4 s)
DELAY_US = 10_000  # one-way
RTT_US = 2 * DELAY_US
MSG = 64


# ---------------------------------------------------------------------------
# A tiny path model
# ---------------------------------------------------------------------------
def simulate_udp(rng, loss, reorder=0.0, dup=0.0):
    """Returns (arrivals [(seq, recv_us, latency_us)], link counters)."""
    arrivals = []
    dropped = duplicated = reordered = 0
    for i in range(N):
        sched = i * 1_000_000 // RATE
        send = sched + rng.randint(3, 30)
        if rng.random() < loss:
            dropped += 1
            continue
        lat = DELAY_US + rng.lognormvariate(4.5, 0.6) + (send - sched)
        if rng.random() < reorder:
            lat += rng.uniform(1500, 4000)  # held back: later messages overtake it
            reordered += 1
        arrivals.append((i, sched + lat, lat))
        if rng.random() < dup:
            duplicated += 1
            arrivals.append((i, sched + lat + rng.uniform(20, 300), lat + rng.uniform(20, 300)))
    arrivals.sort(key=lambda a: a[1])
    link = {"forwarded": N - dropped, "dropped": dropped, "duplicated": duplicated,
            "reordered": reordered}
    return arrivals, link


def simulate_tcp(rng, loss, reorder=0.0, dup=0.0):
    """In-order delivery with head-of-line blocking behind lost segments."""
    arrivals = []
    last = 0.0
    tx = dropped = retrans = link_reordered = link_duplicated = 0
    for i in range(N):
        sched = i * 1_000_000 // RATE
        t = sched + rng.randint(3, 30)
        rto = 200_000
        while True:
            tx += 1
            if rng.random() >= loss:
                break
            dropped += 1
            retrans += 1
            if rng.random() < 0.97:
                t += 3_000 + RTT_US + rng.uniform(0, 2_000)  # fast retransmit
            else:
                t += rto  # timeout, exponential backoff
                rto *= 2
        extra = 0.0
        if rng.random() < reorder:  # the link reorders segments; TCP hides it
            extra = rng.uniform(1500, 4000)
            link_reordered += 1
        if rng.random() < dup:  # duplicated segments are dropped by the receiver's stack
            link_duplicated += 1
        arrive = max(last, t + DELAY_US + rng.lognormvariate(4.5, 0.6) + extra)
        last = arrive
        arrivals.append((i, arrive, arrive - sched))
    link = {"forwarded": tx - dropped, "dropped": dropped, "duplicated": link_duplicated,
            "reordered": link_reordered, "retrans": retrans}
    return arrivals, link


def account(arrivals):
    """Per-arrival status following METRICS.md (RFC 4737 reordering)."""
    seen = set()
    next_exp = 0
    statuses = []
    for seq, _, _ in arrivals:
        if seq in seen:
            statuses.append("duplicate")
            continue
        seen.add(seq)
        if seq < next_exp:
            statuses.append("reordered")
        else:
            statuses.append("ok")
            next_exp = seq + 1
    return statuses, seen


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p / 100 * len(sorted_vals) // 1)) - 1))
    return sorted_vals[k]


def hdr_round(v):
    """3 significant digits, as hdrhistogram would report."""
    if v <= 0:
        return 0
    from math import floor, log10
    digits = 3 - int(floor(log10(v))) - 1
    return round(v, digits) if digits > 0 else int(round(v, digits))


def session_row(run_id, started, label, proto, arrivals, link):
    statuses, seen = account(arrivals)
    lats = sorted(a[2] for a, s in zip(arrivals, statuses) if s != "duplicate")
    received = len(seen)
    lost = N - received
    lost_seqs = sorted(set(range(N)) - seen)
    bursts, longest, run, prev = 0, 0, 0, None
    for s in lost_seqs:
        run = run + 1 if prev is not None and s == prev + 1 else 1
        bursts += run == 1
        longest = max(longest, run)
        prev = s
    mean = sum(lats) / len(lats)
    std = (sum((x - mean) ** 2 for x in lats) / len(lats)) ** 0.5
    q = lambda p: round(percentile(lats, p), 1)  # noqa: E731
    row = {c: "" for c in SUMMARY_COLUMNS}
    row.update({
        "schema_version": "1", "run_id": run_id, "started_utc": started, "label": label,
        "protocol": proto, "mode": "oneway", "peer": "10.77.0.2:5201", "msg_size": MSG,
        "rate_target": RATE, "duration_s": N / RATE, "sent": N, "received": received,
        "lost": lost, "loss_pct": round(100 * lost / N, 3),
        "duplicates": statuses.count("duplicate"), "reordered": statuses.count("reordered"),
        "reorder_extent_max": 3 if "reordered" in statuses else 0,
        "loss_bursts": bursts, "loss_burst_max": longest, "corrupt": 0, "invalid": 0,
        "latency_min_us": round(lats[0], 1), "latency_mean_us": round(mean, 1),
        "latency_p50_us": q(50), "latency_p90_us": q(90), "latency_p99_us": q(99),
        "latency_p999_us": q(99.9), "latency_max_us": round(lats[-1], 1),
        "latency_stddev_us": round(std, 1), "transit_p50_us": q(50) - 15,
        "transit_p99_us": q(99) - 15, "transit_max_us": round(lats[-1] - 15, 1),
        "jitter_us": 42.0, "ipdv_p50_us": 35.0, "ipdv_p99_us": 180.0,
        "pdv_us": round(percentile(lats, 99.9) - lats[0], 1),
        "goodput_mbps": round(received * MSG * 8 / (N / RATE) / 1e6, 4),
        "msgs_per_s": round(received / (N / RATE), 1), "recv_calls": received,
        "split_messages": 0 if proto == "udp" else 3,
        "coalesced_reads": 0 if proto == "udp" else 120,
        "tcp_connect_us": 20_150 if proto == "tcp" else "",
        "tcp_retransmits": link.get("retrans", 0) if proto == "tcp" else "",
        "send_errors": 0, "udp_rcvbuf_drops": 0 if proto == "udp" else "",
        "path_lost": link["dropped"], "reordered_3": 0, "clock_offset_us": 0.0,
        "clock_error_us": 12.0, "complete": "true",
    })
    return row, lats, statuses


def write_latency(path, lats):
    n = len(lats)
    ps = []
    i = 0
    while True:
        p = 100 * (1 - 0.5 ** (i / 5))
        if p >= 100 * (1 - 1 / n):
            break
        ps.append(p)
        i += 1
    ps.append(100.0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["value_us", "percentile", "total_count"])
        last = None
        for p in ps:
            v = hdr_round(percentile(lats, p) if p > 0 else lats[0])
            if last is not None and v < last:
                v = last
            last = v
            count = sum(1 for x in lats if x <= v)
            w.writerow([v, f"{p:.6f}", count])


def write_messages(path, arrivals, statuses, lost_seqs):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seq", "sched_ns", "send_ns", "recv_ns", "latency_us", "status"])
        t0 = 1_700_000_000_000_000_000
        for (seq, recv_us, lat), st in zip(arrivals, statuses):
            sched = t0 + seq * 1_000_000
            w.writerow([seq, sched, sched + 12_000, sched + int(lat * 1000), f"{lat:.1f}", st])
        for seq in lost_seqs:
            sched = t0 + seq * 1_000_000
            w.writerow([seq, sched, sched + 12_000, "", "", "lost"])


def write_link(path, run_id, label, links):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        # The columns sockbench's link emulator writes (src/link/counters.rs), protocol column `proto`.
        w.writerow(["schema_version", "run_id", "label", "direction", "proto", "entered", "forwarded",
                    "dropped", "duplicated", "reordered", "corrupted", "queue_drops", "unsent_at_stop",
                    "write_errors"])
        for proto, lk in links.items():
            entered = lk["forwarded"] + lk["dropped"]
            w.writerow([1, run_id, label, "a_to_b", proto, entered, lk["forwarded"], lk["dropped"],
                        lk["duplicated"], lk["reordered"], 0, 0, 0, 0])
            if proto == "tcp":  # ACKs flow back, about one per two segments
                acks = N // 2
                w.writerow([1, run_id, label, "b_to_a", proto, acks, acks - lk["dropped"] // 2,
                            lk["dropped"] // 2, 0, 0, 0, 0, 0, 0])
        w.writerow([1, run_id, label, "a_to_b", "icmp", 2, 2, 0, 0, 0, 0, 0, 0, 0])


def make_dataset(d, seed=7, messages=True, links=True, extra_column=True):
    """The standard synthetic set: loss, reorder and duplicate sweeps."""
    rng = random.Random(seed)
    rows = []
    runs = []
    for v in (0, 0.5, 1, 2, 5, 10):
        runs.append((f"loss={v:g}%,delay=10ms,sweep=loss", v / 100, 0, 0, "loss", v))
    runs.append(("loss=5%,delay=10ms,sweep=loss", 0.05, 0, 0, "loss", 5))  # a repeat
    runs.append(("loss=2%,delay=10ms", 0.02, 0, 0, "loss", 2))  # no sweep key: still belongs
    for v in (0, 1, 2, 5, 10):
        runs.append((f"reorder={v:g}%,delay=10ms,sweep=reorder", 0, v / 100, 0, "reorder", v))
    for v in (0, 1, 2, 5, 10):
        runs.append((f"duplicate={v:g}%,delay=10ms,sweep=duplicate", 0, 0, v / 100, "dup", v))
    for k, (label, loss, reo, dup, kind, v) in enumerate(runs):
        run_id = f"r{k:03d}-{kind}{v:g}"
        started = f"2026-11-20T10:{k:02d}:00Z"
        natural = 0.004 if kind == "loss" else 0.0  # a little jitter-induced reordering
        ua, ul = simulate_udp(rng, loss, reo + natural, dup + (0.002 if kind == "loss" else 0))
        ta, tl = simulate_tcp(rng, loss, reo, dup)
        link_info = {}
        for proto, arr, lk in (("tcp", ta, tl), ("udp", ua, ul)):
            row, lats, statuses = session_row(run_id, started, label, proto, arr, lk)
            rows.append(row)
            write_latency(os.path.join(d, f"{run_id}_{proto}_latency.csv"), lats)
            if messages and kind == "loss" and v == 5 and k == 4:
                lost = sorted(set(range(N)) - {a[0] for a in arr})
                write_messages(os.path.join(d, f"{run_id}_{proto}_messages.csv"), arr,
                               statuses, lost)
            link_info[proto] = lk
        if links and kind != "dup" or links and v >= 5:
            write_link(os.path.join(d, f"{run_id}_link.csv"), run_id, label, link_info)
    columns = list(SUMMARY_COLUMNS) + (["future_column_us"] if extra_column else [])
    with open(os.path.join(d, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            r["future_column_us"] = "7"
            w.writerow(r)
    return rows


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path}: not a PNG (bad magic)")
    length, ctype = struct.unpack(">I4s", head[8:16])
    if ctype != b"IHDR" or length != 13:
        raise AssertionError(f"{path}: first chunk is not IHDR")
    w, h = struct.unpack(">II", head[16:24])
    if zlib.crc32(head[12:29]) & 0xFFFFFFFF != struct.unpack(">I", head[29:33])[0]:
        raise AssertionError(f"{path}: IHDR CRC mismatch")
    return w, h


def check_png(path):
    w, h = png_size(path)
    assert w > 100 and h > 100, f"{path}: {w}x{h} is too small"
    import matplotlib.image as mpimg
    img = mpimg.imread(path)
    grey = img[..., :3].mean(axis=2)
    inked = float((grey < 0.9).mean())
    std = float(grey.std())
    colours = len({tuple((px * 8).astype(int)) for px in img[::7, ::7, :3].reshape(-1, 3)})
    assert std > 0.05, f"{path}: looks blank (pixel std {std:.3f})"
    assert inked > 0.01, f"{path}: almost no ink ({inked:.2%} of pixels)"
    assert colours >= 4, f"{path}: only {colours} colours; expected TCP and UDP series"
    return w, h


def check_svg(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert "<svg" in text[:2000], f"{path}: no <svg> element"
    assert text.rstrip().endswith("</svg>"), f"{path}: truncated SVG"
    assert len(text) > 10_000, f"{path}: suspiciously small SVG ({len(text)} bytes)"


def fresh(d):
    """An empty directory (reruns with --keep start clean)."""
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)


def run(args, cwd=None):
    p = subprocess.run([sys.executable, PLOT] + args, capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


class Tests:
    def __init__(self, keep=None):
        self.keep = keep
        self.passed = 0
        self.failed = 0

    def case(self, name, fn):
        try:
            fn()
        except Exception as e:  # report and go on
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        else:
            self.passed += 1
            print(f"ok   {name}")

    def all(self):
        tmp = tempfile.TemporaryDirectory(prefix="sockbench-plot-test-")
        base = self.keep or tmp.name
        os.makedirs(base, exist_ok=True)
        full = os.path.join(base, "full")
        fresh(full)
        make_dataset(full)
        state = {}

        def full_run():
            rc, out, err = run([full])
            state.update(rc=rc, out=out, err=err)
            assert rc == 0, f"exit {rc}; stderr: {err.strip()}"

        self.case("full data set: exit 0", full_run)

        def every_plot():
            for name in EXPECTED:
                for ext in ("png", "svg"):
                    p = os.path.join(full, "plots", f"{name}.{ext}")
                    assert os.path.isfile(p), f"missing {p}"
                    (check_png if ext == "png" else check_svg)(p)

        self.case("every expected PNG and SVG exists, is valid and not blank", every_plot)

        def listed():
            out = state.get("out", "").split()
            want = {os.path.join(full, "plots", f"{n}.{e}") for n in EXPECTED
                    for e in ("png", "svg")}
            assert want == set(out), f"stdout lists {sorted(out)}"

        self.case("stdout lists exactly the files written", listed)

        def notes_on_mixed_rows():
            err = state.get("err", "")
            assert "Traceback" not in err, err
            for line in err.strip().splitlines():
                assert line.startswith("plot.py: "), f"unexpected stderr line {line!r}"

        self.case("stderr holds only one-line notes", notes_on_mixed_rows)

        def help_text():
            rc, out, _ = run(["--help"])
            assert rc == 0
            for word in ("summary.csv", "_latency.csv", "_messages.csv", "_link.csv",
                         "--condition", "--format", "delivery_vs_loss", "reorder_dup"):
                assert word in out, f"--help does not mention {word}"

        self.case("--help explains inputs and outputs", help_text)

        def missing_dir():
            rc, out, err = run([os.path.join(base, "does-not-exist")])
            assert rc == 2, f"exit {rc}"
            assert len(err.strip().splitlines()) == 1, err
            assert out == ""

        self.case("missing DIR: exit 2, one line", missing_dir)

        def no_summary():
            d = os.path.join(base, "empty")
            fresh(d)
            rc, _, err = run([d])
            assert rc == 2 and "summary.csv" in err and len(err.strip().splitlines()) == 1, err

        self.case("no summary.csv: exit 2, one line", no_summary)

        def malformed(name, mutate):
            def fn():
                d = os.path.join(base, name)
                fresh(d)
                make_dataset(d, messages=False, links=False)
                mutate(d)
                rc, out, err = run([d])
                assert rc == 2, f"exit {rc}; stderr {err.strip()}"
                assert len(err.strip().splitlines()) == 1, err
                assert "Traceback" not in err
                assert not os.path.isdir(os.path.join(d, "plots")) or \
                    not os.listdir(os.path.join(d, "plots")), "wrote plots despite bad input"
            return fn

        def bad_number(d):
            p = os.path.join(d, "summary.csv")
            with open(p, newline="") as f:
                rows = list(csv.reader(f))
            rows[3][SUMMARY_COLUMNS.index("sent")] = "lots"
            with open(p, "w", newline="") as f:
                csv.writer(f).writerows(rows)

        def short_row(d):
            p = os.path.join(d, "summary.csv")
            with open(p, "a") as f:
                f.write("1,rX,2026-11-20T11:00:00Z,loss=1%,udp\n")

        def missing_column(d):
            p = os.path.join(d, "summary.csv")
            lines = open(p).read().splitlines()
            lines[0] = lines[0].replace("protocol", "proto")
            open(p, "w").write("\n".join(lines) + "\n")

        def bad_latency(d):
            name = sorted(f for f in os.listdir(d) if f.endswith("_latency.csv"))[0]
            with open(os.path.join(d, name), "a") as f:
                f.write("12.5,abc,7\n")

        def header_only(d):
            p = os.path.join(d, "summary.csv")
            head = open(p).readline()
            open(p, "w").write(head)

        self.case("malformed summary (non-number): exit 2",
                  malformed("bad-number", bad_number))
        self.case("malformed summary (short row): exit 2", malformed("short-row", short_row))
        self.case("summary without protocol column: exit 2",
                  malformed("no-protocol", missing_column))
        self.case("malformed latency CSV: exit 2", malformed("bad-latency", bad_latency))
        self.case("summary with header only: exit 2", malformed("header-only", header_only))

        def no_messages():
            d = os.path.join(base, "no-messages")
            fresh(d)
            make_dataset(d, messages=False, links=False, extra_column=False)
            out_dir = os.path.join(base, "no-messages-out")
            rc, out, err = run([d, "--out", out_dir, "--format", "png"])
            assert rc == 0, err
            assert "latency_over_seq: skipped" in err, err
            assert not os.path.exists(os.path.join(out_dir, "latency_over_seq.png"))
            for name in EXPECTED:
                if name != "latency_over_seq":
                    check_png(os.path.join(out_dir, f"{name}.png"))
            assert not any(f.endswith(".svg") for f in os.listdir(out_dir)), "svg not asked for"

        self.case("no per-message CSVs or link CSVs: plot skipped with a note, --out, "
                  "--format png", no_messages)

        def condition():
            out_dir = os.path.join(base, "cond-out")
            rc, out, err = run([full, "--out", out_dir, "--condition", "loss=5.0%"])
            assert rc == 0, err
            check_png(os.path.join(out_dir, "latency_cdf.png"))
            check_png(os.path.join(out_dir, "latency_over_seq.png"))
            rc, out, err = run([full, "--out", out_dir, "--condition", "loss=7%"])
            assert rc == 2 and "loss=5%" in err and len(err.strip().splitlines()) == 1, err
            rc, out, err = run([full, "--out", out_dir, "--condition", "loss"])
            assert rc == 2, err

        self.case("--condition picks a run; an absent one is exit 2", condition)

        def only_reorder():
            d = os.path.join(base, "only-reorder")
            fresh(d)
            make_dataset(d, messages=False)
            p = os.path.join(d, "summary.csv")
            rows = list(csv.DictReader(open(p)))
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
                w.writeheader()
                for r in rows:
                    if "reorder=" in r["label"]:
                        r["label"] = r["label"].replace(",sweep=reorder", "")
                        w.writerow(r)
            rc, out, err = run([d, "--format", "png"])
            assert rc == 0, err
            for name in ("delivery_vs_loss", "latency_vs_loss"):
                assert f"{name}: skipped" in err, err
            check_png(os.path.join(d, "plots", "reorder_dup.png"))
            check_png(os.path.join(d, "plots", "latency_cdf.png"))  # newest run fallback

        self.case("reorder rows only, no sweep key: loss plots skipped, no crash", only_reorder)

        def incomplete_ignored():
            d = os.path.join(base, "incomplete")
            fresh(d)
            make_dataset(d, messages=False, links=False)
            p = os.path.join(d, "summary.csv")
            with open(p, newline="") as f:
                rows = list(csv.reader(f))
            rows[1][rows[0].index("complete")] = "false"
            with open(p, "w", newline="") as f:
                csv.writer(f).writerows(rows)
            rc, out, err = run([d, "--format", "png"])
            assert rc == 0 and "incomplete" in err, err

        self.case("incomplete sessions noted and left out", incomplete_ignored)

        def nothing_plotted():
            d = os.path.join(base, "nothing")
            fresh(d)
            rows = make_dataset(d, messages=False, links=False)
            with open(os.path.join(d, "summary.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
                w.writeheader()
                r = dict(rows[1], label="plain")  # one UDP session, no sweep label: no figure's input
                w.writerow(r)
            rc, out, err = run([d])
            assert rc == 2, f"exit {rc}; stderr {err.strip()}"
            assert out == "", out
            last = err.strip().splitlines()[-1]
            assert last.startswith("plot.py: error: nothing plotted"), err

        self.case("nothing to plot: exit 2, the last line says why", nothing_plotted)

        def no_matplotlib():
            # -S: no site-packages, so no matplotlib, as with Debian's bare python3.
            p = subprocess.run([sys.executable, "-S", PLOT, full], capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 3, f"exit {p.returncode}; stderr {p.stderr.strip()}"
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and "matplotlib" in lines[0] and "Traceback" not in p.stderr, \
                p.stderr
            assert "test.sh" in lines[0] or ".venv" in lines[0], lines[0]

        self.case("no matplotlib: exit 3, one line saying what to run", no_matplotlib)

        def subtitles():
            import plot

            def row(size, goodput, rate_msgs, rate="1000"):
                return {"labels": {}, "msg_size": size, "goodput_mbps": goodput,
                        "msgs_per_s": rate_msgs, "rate_target": rate, "mode": "oneway"}
            # 64-byte messages at 1000 msg/s: 0.512 Mbit/s.
            fixed = plot.describe_context(plot.context_of(row(64.0, 0.512, 1000.0), "loss"))
            assert fixed == "64-byte messages at 1000 msg/s", fixed
            # --size 64..1400 --rate 0: msg_size is the largest; the mean delivered is ~730 bytes.
            mixed = plot.describe_context(plot.context_of(
                row(1400.0, 1168.0, 200000.0, rate="0"), "loss"))
            assert mixed == "mixed message sizes up to 1400 bytes, unpaced (--rate 0)", mixed
            # Slow and rounded: 64 B at 10 msg/s is 0.005 Mbit/s in the CSV, still one size.
            slow = plot.describe_context(plot.context_of(row(64.0, 0.005, 10.0, "10"), "loss"))
            assert slow == "64-byte messages at 10 msg/s", slow

        self.case("subtitles: mixed sizes and unpaced runs said as such", subtitles)

        def shared_y():
            import plot
            import matplotlib
            matplotlib.use("Agg")
            kept = []
            real_save = plot.save
            plot.save = lambda fig, *a, **k: kept.append(fig)
            try:
                res = plot.Results(full)
                plot.plot_latency_over_seq(res, base, ["png"], [], None)
            finally:
                plot.save = real_save
            assert kept, "latency_over_seq drew nothing"
            tcp, udp = kept[0].axes[:2]
            assert tcp.get_ylim() == udp.get_ylim(), (tcp.get_ylim(), udp.get_ylim())
            assert tcp.get_yscale() == udp.get_yscale()

        self.case("latency_over_seq: both panels share one y range", shared_y)

        def unit_labels():
            import plot
            assert plot.parse_label("loss=5%,delay=10ms,sweep=loss") == \
                {"loss": "5%", "delay": "10ms", "sweep": "loss"}
            assert plot.parse_value("0.5%") == (0.5, "%")
            assert plot.parse_value("250us") == (250.0, "us")
            assert plot.fmt_condition("delay", "10ms") == "delay 10 ms"
            mk = lambda lab: {"labels": plot.parse_label(lab)}  # noqa: E731
            assert plot.in_sweep(mk("loss=2%,delay=10ms"), "loss")
            assert plot.in_sweep(mk("loss=2%,reorder=0%"), "loss")
            assert not plot.in_sweep(mk("loss=2%,reorder=1%"), "loss")
            assert not plot.in_sweep(mk("loss=0%,reorder=2%,sweep=reorder"), "loss")
            assert plot.in_sweep(mk("reorder=2%,delay=10ms,sweep=reorder"), "reorder")
            assert plot.in_sweep(mk("duplicate=5%"), "duplicate")

        self.case("label parsing and sweep membership", unit_labels)

        def link_rate():
            import plot

            class R:
                link = {"x": [
                    {"direction": "a_to_b", "protocol": "udp", "forwarded": 95, "dropped": 5,
                     "queue_drops": 0, "reordered": 2},
                    {"direction": "b_to_a", "protocol": "udp", "forwarded": 1, "dropped": 1,
                     "queue_drops": 0, "reordered": 0}]}
            assert abs(plot.link_rate(R, "x", "udp", "oneway", "dropped") - 5.0) < 1e-9
            assert abs(plot.link_rate(R, "x", "udp", "echo", "dropped") - 600 / 102) < 1e-9
            assert plot.link_rate(R, "x", "tcp", "oneway", "dropped") is None

        self.case("link emulator rates", link_rate)

        if self.keep:
            print(f"data and plots kept in {self.keep}")
        tmp.cleanup()
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def main():
    keep = None
    if len(sys.argv) == 3 and sys.argv[1] == "--keep":
        keep = os.path.abspath(sys.argv[2])
    elif len(sys.argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    return Tests(keep).all()


if __name__ == "__main__":
    sys.exit(main())
