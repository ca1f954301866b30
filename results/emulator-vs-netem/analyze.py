#!/usr/bin/env python3
"""analyze.py: compare what tc netem and sockbench's built-in emulator did to the UDP sessions of run.sh.

Reads raw/netem/ and raw/emulator/ (summary.csv, <run_id>_udp_messages.csv, <run_id>_link.csv), and
raw/emulator-host/ when run.sh --host-emulator made it (a third column: the emulator outside the VM), writes
comparison.csv (one row per condition, metric and engine), rewrites the table between the markers in
README.md, and draws emulator-vs-netem.png/.svg (needs matplotlib; the table does not).

    python3 results/emulator-vs-netem/analyze.py [--no-plot]
"""
import bisect
import csv
import gzip
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = os.path.join(HERE, "raw")
ENGINES = ["netem", "emulator"]
HOST = "emulator-host"
VM_ENGINES = ("netem", "emulator")  # the figure: the two engines on the same kernel
COLUMN = {"netem": "netem", "emulator": "emulator", HOST: "emulator, host (no TCG)"}
BEGIN, END = "<!-- BEGIN TABLE (analyze.py) -->", "<!-- END TABLE (analyze.py) -->"


def read_csv(path):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def quantile(xs, q):
    """The q-quantile of a sorted list (nearest rank)."""
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


class Session:
    """One UDP session: its summary row, its messages (arrival order), the link's a_to_b UDP row."""

    def __init__(self, engine, row):
        self.engine, self.row = engine, row
        d = os.path.join(RAW, engine)
        run_id = row["run_id"]
        msgs = read_csv(os.path.join(d, f"{run_id}_udp_messages.csv"))
        self.arrivals = [m for m in msgs if m["status"] != "lost"]
        self.lost = sorted(int(m["seq"]) for m in msgs if m["status"] == "lost")
        link = read_csv(os.path.join(d, f"{run_id}_link.csv"))
        self.link = next(r for r in link if r["direction"] == "a_to_b" and r["proto"] == "udp")

    def n(self, col):
        return float(self.row[col])

    def link_n(self, col):
        v = self.link[col]
        return float(v) if v != "" else None

    def transit_ms(self):
        """One-way transit of each unique arrival (from the actual send), sorted, in ms."""
        return sorted((int(m["recv_ns"]) - int(m["send_ns"])) / 1e6
                      for m in self.arrivals if m["status"] in ("ok", "reordered"))

    def bursts(self):
        """Lengths of the runs of consecutive lost sequence numbers."""
        out, run, prev = [], 0, None
        for s in self.lost:
            if prev is not None and s == prev + 1:
                run += 1
            else:
                if run:
                    out.append(run)
                run = 1
            prev = s
        if run:
            out.append(run)
        return out

    def extents(self):
        """RFC 4737 reorder extent of each reordered arrival: i - j, j the earliest earlier position (unique
        arrivals) with a higher sequence number."""
        seqs, seen = [], set()
        for m in self.arrivals:
            s = int(m["seq"])
            if m["status"] in ("ok", "reordered") and s not in seen:
                seen.add(s)
                seqs.append(s)
        prefix_max, out, hi = [], [], -1
        for i, s in enumerate(seqs):
            if s < hi:
                j = bisect.bisect_right(prefix_max, s)
                out.append(i - j)
            hi = max(hi, s)
            prefix_max.append(hi)
        return out


def load():
    if os.path.isfile(os.path.join(RAW, HOST, "summary.csv")):
        ENGINES.append(HOST)
    runs = {}
    for engine in ENGINES:
        for row in read_csv(os.path.join(RAW, engine, "summary.csv")):
            if row["protocol"] == "udp":
                runs[(row["label"], engine)] = Session(engine, row)
    return runs


def fmt(v, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, str):
        return v
    if float(v).is_integer() and digits == 0:
        return str(int(v))
    return f"{v:.{digits}f}"


def metrics(runs):
    """(condition, metric, expected, {engine: value}) rows; values are numbers or short strings."""
    rows = []

    def add(cond, metric, expected, f, digits=2):
        vals = {}
        for e in ENGINES:
            s = runs.get((cond, e))
            vals[e] = f(s) if s else None
        rows.append((cond, metric, expected, vals, digits))

    loss_pct = lambda s: 100 * s.n("lost") / s.n("sent")
    link_lost = lambda s: "{:.0f} = {:.0f}".format(
        s.n("path_lost"), s.link_n("dropped") + (s.link_n("queue_drops") or 0))
    add("loss", "UDP loss %", "5", loss_pct)
    add("loss", "UDP lost on the path = the link's drops", "equal", link_lost)
    # netem's correlated loss (and the emulator's copy of it) averages the uniform draw with the last one,
    # which narrows its spread: P(0.25 last + 0.75 u < 5 %) is 0.20 %, not 5 %.
    add("loss_correlation", "UDP loss %", "0.20 (netem's formula)", loss_pct)
    add("loss_correlation", "UDP lost on the path = the link's drops", "equal", link_lost)
    mean_burst = lambda s: statistics.mean(s.bursts()) if s.bursts() else None
    add("gemodel", "UDP loss %", f"{100 * 0.02 / 0.27:.2f}", loss_pct)
    add("gemodel", "loss bursts", "–", lambda s: len(s.bursts()), 0)
    add("gemodel", "mean burst length", "4.00 (1/r)", mean_burst)
    add("gemodel", "longest burst", "–", lambda s: max(s.bursts(), default=0), 0)
    add("gemodel", "UDP lost on the path = the link's drops", "equal", link_lost)
    for cond, sd, name in (("jitter_uniform", 5 / math.sqrt(3), "uniform ±5 ms"),
                           ("jitter_normal", 5.0, "normal, σ 5 ms")):
        p1 = 15.1 if cond == "jitter_uniform" else 20 - 2.326 * 5
        p99 = 24.9 if cond == "jitter_uniform" else 20 + 2.326 * 5
        add(cond, f"transit p1 / p50 / p99 ms ({name})", f"{p1:.1f} / 20.0 / {p99:.1f}",
            lambda s: "{:.1f} / {:.1f} / {:.1f}".format(*(quantile(s.transit_ms(), q)
                                                          for q in (0.01, 0.5, 0.99))))
        add(cond, "transit mean / stddev ms", f"20.0 / {sd:.2f}",
            lambda s: "{:.2f} / {:.2f}".format(statistics.mean(s.transit_ms()),
                                               statistics.pstdev(s.transit_ms())))
        add(cond, "UDP reordered %", "–", lambda s: 100 * s.n("reordered") / s.n("received"))
    add("reorder", "picked by the link (netem: sent ahead; emulator: held back) %",
        f"netem {100 * 0.02 / 1.04:.2f}, emulator 2", lambda s: 100 * s.link_n("reordered") / s.n("sent")
        if s.engine == "netem" else None)
    add("reorder", "UDP reordered (RFC 4737) %", "–", lambda s: 100 * s.n("reordered") / s.n("received"))
    add("reorder", "reorder extent mean / max", "emulator: 3 / –",
        lambda s: "{:.1f} / {:.0f}".format(statistics.mean(s.extents()), max(s.extents()))
        if s.extents() else "–")
    add("reorder", "3-reordered", "–", lambda s: s.n("reordered_3"), 0)
    add("duplicate", "UDP duplicates %", "2", lambda s: 100 * s.n("duplicates") / s.n("sent"))
    for cond in ("rate", "rate_delay"):
        extra = 20 if cond == "rate_delay" else 0
        # 200-byte messages are 228-byte IP packets: 1.824 ms each at 1 Mbit/s, offered every 1 ms.
        add(cond, "UDP loss %", f"{100 * (1 - 1 / 1.824):.1f} (fluid)", loss_pct)
        add(cond, "transit p50 / p99 / max ms", f"queue full: {50 * 1.824 + extra:.1f}",
            lambda s: "{:.1f} / {:.1f} / {:.1f}".format(*(quantile(s.transit_ms(), q)
                                                          for q in (0.5, 0.99, 1.0))))
        add(cond, "UDP lost on the path = the link's drops", "equal", link_lost)
    add("default", "UDP loss / reordered / duplicates %", "2 / – / 0.5",
        lambda s: "{:.2f} / {:.2f} / {:.2f}".format(*(100 * s.n(c) / s.n("sent")
                                                      for c in ("lost", "reordered", "duplicates"))))
    return rows


CONDITIONS = {
    "loss": "`--loss 5%`",
    "loss_correlation": "`--loss 5% --loss-correlation 25%`",
    "gemodel": "`--gemodel 2%,25%` (6000 at 2000/s)",
    "jitter_uniform": "`--delay 20ms --jitter 5ms`",
    "jitter_normal": "`--delay 20ms --jitter 5ms --jitter-dist normal`",
    "reorder": "`--delay 10ms --reorder 2% --reorder-gap 3`",
    "duplicate": "`--delay 10ms --duplicate 2%`",
    "rate": "`--link-rate 1mbit --queue 50`, 200 B",
    "rate_delay": "`--link-rate 1mbit --queue 50 --delay 20ms`, 200 B",
    "default": "no flag (compare's default impairment)",
}


def table(rows):
    out = ["| condition | UDP figure | expected | " + " | ".join(COLUMN[e] for e in ENGINES) + " |",
           "|---|---|---|" + "---|" * len(ENGINES)]
    last = None
    for cond, metric, expected, vals, digits in rows:
        name = CONDITIONS.get(cond, cond) if cond != last else ""
        last = cond
        out.append(f"| {name} | {metric} | {expected} | "
                   + " | ".join(fmt(vals[e], digits) for e in ENGINES) + " |")
    return "\n".join(out) + "\n"


def write_outputs(rows):
    with open(os.path.join(HERE, "comparison.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", "metric", "expected", "engine", "value"])
        for cond, metric, expected, vals, digits in rows:
            for e in ENGINES:
                w.writerow([cond, metric, expected, e, fmt(vals[e], digits)])
    md = table(rows)
    readme = os.path.join(HERE, "README.md")
    if os.path.isfile(readme):
        text = open(readme).read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            with open(readme, "w") as f:
                f.write(head + BEGIN + "\n" + md + END + tail)
    return md


def plot(runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"netem": "tab:blue", "emulator": "tab:orange", HOST: "tab:green"}
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    a = ax[0][0]
    for cond, style in (("jitter_uniform", "-"), ("jitter_normal", "--")):
        for e in VM_ENGINES:
            s = runs.get((cond, e))
            if s:
                t = s.transit_ms()
                a.plot(t, [(i + 1) / len(t) for i in range(len(t))], style, color=colors[e],
                       label=f"{e}, {cond.split('_')[1]}")
    s = runs.get(("jitter_uniform", HOST))
    if s:
        t = s.transit_ms()
        a.plot(t, [(i + 1) / len(t) for i in range(len(t))], ":", color="gray", lw=1,
               label="emulator on the host (no TCG), uniform")
    a.set_title("delay 20 ms ± 5 ms: one-way transit CDF")
    a.set_xlabel("transit (ms)")
    a.set_ylabel("fraction of datagrams")
    a.legend(fontsize=8)
    a = ax[0][1]
    for e in VM_ENGINES:
        s = runs.get(("gemodel", e))
        if s:
            b = s.bursts()
            lens = range(1, max(b) + 1)
            a.plot(list(lens), [sum(x >= k for x in b) / len(b) for k in lens], "o-",
                   color=colors[e], label=f"{e} ({len(b)} bursts, mean {statistics.mean(b):.2f})")
    k = range(1, 21)
    a.plot(list(k), [(1 - 0.25) ** (i - 1) for i in k], ":", color="gray", label="geometric, r = 25 %")
    a.set_yscale("log")
    a.set_title("Gilbert-Elliott p 2 %, r 25 %: loss burst lengths")
    a.set_xlabel("burst length (consecutive lost datagrams)")
    a.set_ylabel("fraction of bursts at least this long")
    a.legend(fontsize=8)
    a = ax[1][0]
    for e in VM_ENGINES:
        s = runs.get(("reorder", e))
        if s and s.extents():
            x = s.extents()
            m = max(x)
            a.hist(x, bins=range(1, m + 2), alpha=0.6, color=colors[e],
                   label=f"{e}: {len(x)} reordered, mean extent {statistics.mean(x):.1f}")
    a.set_title("reorder 2 %, gap 3, delay 10 ms: RFC 4737 reorder extents")
    a.set_xlabel("reorder extent (positions)")
    a.set_ylabel("reordered datagrams")
    a.legend(fontsize=8)
    a = ax[1][1]
    for cond, style in (("rate", "-"), ("rate_delay", "--")):
        for e in VM_ENGINES:
            s = runs.get((cond, e))
            if s:
                pts = sorted((int(m["seq"]), (int(m["recv_ns"]) - int(m["send_ns"])) / 1e6)
                             for m in s.arrivals if m["status"] in ("ok", "reordered"))
                a.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colors[e], lw=0.8,
                       label=f"{e}, {'+ delay 20 ms' if cond == 'rate_delay' else 'no delay'}")
    for cond in ("rate", "rate_delay"):
        s = runs.get((cond, HOST))
        if s:
            pts = sorted((int(m["seq"]), (int(m["recv_ns"]) - int(m["send_ns"])) / 1e6)
                         for m in s.arrivals if m["status"] in ("ok", "reordered"))
            a.plot([p[0] for p in pts], [p[1] for p in pts], ":", color="gray", lw=1,
                   label="emulator on the host (no TCG)" if cond == "rate" else None)
    a.set_title("1 Mbit/s, queue 50, 1000 x 200 B/s offered: transit")
    a.set_xlabel("sequence number")
    a.set_ylabel("transit (ms)")
    a.legend(fontsize=8)
    fig.suptitle("The same flags through tc netem and sockbench's emulator, UDP\n(both in one software-"
                 "emulated VM, same kernel; gray: the emulator on the host)")
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = os.path.join(HERE, f"emulator-vs-netem.{ext}")
        fig.savefig(p, dpi=110)
        print(p)


def main():
    if not all(os.path.isfile(os.path.join(RAW, e, "summary.csv")) for e in ("netem", "emulator")):
        print(f"analyze.py: no {RAW}/{{netem,emulator}}/summary.csv: run run.sh first", file=sys.stderr)
        return 2
    runs = load()
    rows = metrics(runs)
    print(write_outputs(rows), end="")
    if "--no-plot" not in sys.argv:
        plot(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
