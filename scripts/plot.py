#!/usr/bin/env python3
"""Plot sockbench CSV reports: what TCP guarantees and UDP does not.

Reads a results directory written by sockbench and draws six figures, each
as PNG and SVG. Only the files named below are read; nothing else.

Inputs (in DIR):
  summary.csv                        one row per session (required); columns are
                                     read by name, unknown columns are ignored
  <run_id>_<protocol>_latency.csv    hdrhistogram percentile distribution
                                     (value_us, percentile, total_count)
  <run_id>_<protocol>_messages.csv   per-message rows (seq, sched_ns, send_ns,
                                     recv_ns, latency_us, status); optional
  <run_id>_link.csv                  link emulator ground truth (forwarded,
                                     dropped, duplicated, reordered, ...); optional

Outputs (in OUTDIR, default DIR/plots), one file per format:
  delivery_vs_loss    delivered fraction and measured loss vs configured loss
                      (summary rows labelled loss=..., sweep=loss or no sweep
                      key); emulator drop rate from *_link.csv when present
  latency_vs_loss     latency p50 / p99 / max vs configured loss (same rows)
  latency_cdf         latency CDF, TCP vs UDP, at one condition (*_latency.csv)
  latency_over_seq    latency by sequence number with lost / reordered /
                      duplicate messages marked (*_messages.csv)
  reorder_dup         reordered and duplicate messages (% of sent) vs
                      configured reorder= / duplicate= (sweep=reorder /
                      sweep=duplicate rows); emulator rates when present
  latency_under_load  latency p50 / p99 of the loaded phase vs bulk TCP flows
                      (load=N), one panel per queue size (queue=N), TCP and
                      UDP, the idle phase's p50 as a reference line
                      (sweep=load rows with sockbench compare --load)

The CDF and per-message figures take one TCP and one UDP session of one
condition: the two sessions of one `sockbench compare` (a shared run_id), or
else two sessions with the same label, size and rate (separate sends, as
sweep.sh's lab engine makes them, each with its own run_id); each session's
files are found by its own run_id.

A plot whose inputs are absent is skipped with a note on stderr. Repeated
sessions of one condition are averaged; error bars span min..max.
Exit status: 0 ok, 1 a figure failed to draw (a bug: please report it),
2 bad input (missing DIR, no summary.csv, malformed CSV,
a --condition that matches no run, nothing to plot), 3 matplotlib is missing
(one line says what to run).
"""

import argparse
import csv
import math
import os
import re
import sys
from collections import Counter, defaultdict

# ---------------------------------------------------------------------------
# Look: Okabe-Ito colours (colour-blind safe). TCP and UDP keep these two
# colours in every figure.
# ---------------------------------------------------------------------------
PROTOCOLS = ("tcp", "udp")
COLOR = {"tcp": "#0072B2", "udp": "#E69F00"}  # blue, orange
NAME = {"tcp": "TCP", "udp": "UDP"}
C_LOST = "#D55E00"  # vermillion
C_REORDERED = "#CC79A7"  # reddish purple
C_DUPLICATE = "#000000"
C_CORRUPT = "#009E73"  # bluish green
C_IDEAL = "#555555"
FIGSIZE = (8, 5)
FIGSIZE_WIDE = (11, 5)  # two panels side by side
DPI = 120

# Label keys that are impairments: "baseline" means absent or zero.
IMPAIRMENTS = ("loss", "reorder", "duplicate", "corrupt")
SWEEP_NAMES = {"loss": "loss", "reorder": "reordering", "duplicate": "duplication",
               "corrupt": "corruption"}

SUMMARY_REQUIRED = ("run_id", "label", "protocol", "sent", "received")
SUMMARY_TEXT = {"schema_version", "run_id", "started_utc", "label", "protocol",
                "mode", "peer", "complete", "rate_target", "impairment", "udp_rcvbuf_exact",
                "load_cc"}
LATENCY_COLUMNS = ("value_us", "percentile", "total_count")
MESSAGE_COLUMNS = ("seq", "sched_ns", "send_ns", "recv_ns", "latency_us", "status")
MESSAGE_STATUS = {"ok", "reordered", "duplicate", "corrupt", "lost"}
# sockbench writes the protocol column of *_link.csv as `proto`; `protocol` is accepted too.
LINK_COLUMNS = ("run_id", "label", "direction", "forwarded", "dropped",
                "duplicated", "reordered", "corrupted", "queue_drops")
LINK_PROTOCOL_COLUMNS = ("proto", "protocol")
ALL_PLOTS = ("delivery_vs_loss", "latency_vs_loss", "latency_cdf", "latency_over_seq",
             "reorder_dup", "latency_under_load")


class InputError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


def note(msg):
    print(f"plot.py: {msg}", file=sys.stderr)


def missing_matplotlib():
    """What to run when this Python has no matplotlib, in one line. scripts/test.sh makes .venv/ with it."""
    def short(path):
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    here = os.path.dirname(os.path.abspath(__file__))
    venv = os.path.join(os.path.dirname(here), ".venv")
    py, me = os.path.join(venv, "bin", "python3"), short(os.path.join(here, "plot.py"))
    who = f"{sys.executable or 'python3'} has no matplotlib"
    in_venv = (os.path.realpath(sys.prefix) == os.path.realpath(venv)
               or os.path.abspath(sys.executable or "").startswith(venv + os.sep))
    if os.path.isfile(py) and not in_venv:
        return f"{who}: run {short(py)} {me} ... instead (the venv scripts/test.sh made)"
    return (f"{who}: run {short(os.path.join(here, 'test.sh'))} once (it makes .venv/ with it), "
            f"then {short(py)} {me} ...; "
            f"or apt-get install python3-matplotlib")


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------
_VALUE_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%µ/]*)\s*$")


def parse_value(text):
    """'5%' -> (5.0, '%'), '10ms' -> (10.0, 'ms'); non-numeric -> (None, text)."""
    m = _VALUE_RE.match(text)
    if not m:
        return None, text.strip()
    return float(m.group(1)), m.group(2)


def parse_label(label):
    """'loss=5%,delay=10ms' -> {'loss': '5%', 'delay': '10ms'} (keys lower-cased)."""
    out = {}
    for part in (label or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        out[key.strip().lower()] = val.strip() if sep else ""
    return out


def label_number(labels, key):
    """Numeric value of a label key, or None when absent / not a number."""
    if key not in labels:
        return None
    return parse_value(labels[key])[0]


def is_zero_or_absent(labels, key):
    if key not in labels:
        return True
    v = label_number(labels, key)
    return v is not None and v == 0


def fmt_num(v):
    if v is None:
        return "?"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:g}"


def fmt_condition(key, raw):
    """'delay', '10ms' -> 'delay 10 ms'; 'loss', '5%' -> 'loss 5%'."""
    num, unit = parse_value(raw)
    if num is None:
        return f"{key} {raw}" if raw else key
    if unit == "%" or not unit:
        return f"{key} {fmt_num(num)}{unit}"
    return f"{key} {fmt_num(num)} {unit}"


def _num(text, where, column):
    text = text.strip()
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where}: column {column!r} is not a number: {text!r}") from None
    if math.isnan(v):
        return None
    return v


def read_csv(path, required, numeric=(), text=()):
    """Read a CSV by column name. Returns a list of dicts with `numeric`
    columns as float/None. Raises InputError on a malformed file."""
    name = os.path.basename(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise InputError(f"{name}: empty file (no header)")
            fields = [h.strip() for h in reader.fieldnames]
            reader.fieldnames = fields
            missing = [c for c in required if c not in fields]
            if missing:
                raise InputError(f"{name}: missing column(s) {', '.join(missing)}; "
                                 f"header is {','.join(fields)}")
            rows = []
            for row in reader:
                where = f"{name}:{reader.line_num}"
                if None in row:
                    raise InputError(f"{where}: more fields than the header has")
                if any(v is None for v in row.values()):
                    raise InputError(f"{where}: fewer fields than the header has")
                if all(v.strip() == "" for v in row.values()):
                    continue  # blank line
                if [row[k].strip() for k in fields] == fields:
                    continue  # a repeated header (files concatenated)
                out = {}
                for k, v in row.items():
                    if k in numeric:
                        out[k] = _num(v, where, k)
                    else:
                        out[k] = v.strip()
                rows.append(out)
            return rows
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise InputError(f"{name}: malformed CSV: {e}") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror}") from None


def load_summary(path):
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise InputError("summary.csv: empty file (no header)")
    header = [h.strip() for h in header]
    numeric = [h for h in header if h not in SUMMARY_TEXT]
    rows = read_csv(path, SUMMARY_REQUIRED, numeric=numeric)
    if not rows:
        raise InputError("summary.csv: no sessions (header only)")
    kept = []
    for i, r in enumerate(rows):
        r["protocol"] = r["protocol"].lower()
        if r["protocol"] not in PROTOCOLS:
            note(f"summary.csv: ignoring session {r['run_id']} with protocol "
                 f"{r['protocol']!r} (expected tcp or udp)")
            continue
        r["mode"] = (r.get("mode") or "oneway").lower()
        r["labels"] = parse_label(r["label"])
        r["_order"] = i
        kept.append(r)
    incomplete = [r for r in kept if r.get("complete", "true").lower() == "false"]
    if incomplete:
        note(f"summary.csv: ignoring {len(incomplete)} incomplete session(s) "
             f"(complete=false): " + ", ".join(sorted({r['run_id'] for r in incomplete})))
        kept = [r for r in kept if r.get("complete", "true").lower() != "false"]
    return kept, header


def load_latency(path):
    rows = read_csv(path, LATENCY_COLUMNS, numeric=LATENCY_COLUMNS)
    pts = []
    for r in rows:
        v, p = r["value_us"], r["percentile"]
        if v is None or p is None:
            continue
        if not 0 <= p <= 100:
            raise InputError(f"{os.path.basename(path)}: percentile {p} outside 0..100")
        pts.append((v, p))
    pts.sort()
    return pts


def load_messages(path):
    rows = read_csv(path, MESSAGE_COLUMNS,
                    numeric=("seq", "sched_ns", "send_ns", "recv_ns", "latency_us"))
    for r in rows:
        r["status"] = r["status"].lower()
        if r["status"] not in MESSAGE_STATUS:
            raise InputError(f"{os.path.basename(path)}: unknown status {r['status']!r} "
                             f"(expected one of {', '.join(sorted(MESSAGE_STATUS))})")
        if r["seq"] is None:
            raise InputError(f"{os.path.basename(path)}: empty seq")
    return rows


def load_link(path):
    rows = read_csv(path, LINK_COLUMNS,
                    numeric=("forwarded", "dropped", "duplicated", "reordered",
                             "corrupted", "queue_drops"))
    for r in rows:
        proto = next((r[c] for c in LINK_PROTOCOL_COLUMNS if c in r), None)
        if proto is None:
            raise InputError(f"{os.path.basename(path)}: missing column proto (or protocol)")
        r["protocol"] = proto.lower()
        r["direction"] = r["direction"].lower()
    return rows


class Results:
    """Everything read from DIR, validated up front so that a malformed file
    fails before any figure is written."""

    def __init__(self, d):
        if not os.path.isdir(d):
            raise InputError(f"{d}: no such directory")
        path = os.path.join(d, "summary.csv")
        if not os.path.isfile(path):
            raise InputError(f"{d}: no summary.csv here (is this a sockbench results directory?)")
        self.dir = d
        self.rows, self.columns = load_summary(path)
        self.latency, self.messages, self.link = {}, {}, {}
        for run_id in sorted({r["run_id"] for r in self.rows}):
            for proto in PROTOCOLS:
                p = os.path.join(d, f"{run_id}_{proto}_latency.csv")
                if os.path.isfile(p):
                    self.latency[(run_id, proto)] = load_latency(p)
                p = os.path.join(d, f"{run_id}_{proto}_messages.csv")
                if os.path.isfile(p):
                    self.messages[(run_id, proto)] = load_messages(p)
            p = os.path.join(d, f"{run_id}_link.csv")
            if os.path.isfile(p):
                self.link[run_id] = load_link(p)

    def has_column(self, col):
        return col in self.columns


# ---------------------------------------------------------------------------
# Selection: which sessions belong on a sweep plot
# ---------------------------------------------------------------------------
def in_sweep(row, key):
    """A row belongs to the `key` sweep if its label has key= and either
    sweep=key, or (no sweep key) every other impairment is absent or zero."""
    labels = row["labels"]
    if key not in labels or label_number(labels, key) is None:
        return False
    if "sweep" in labels:
        return labels["sweep"].lower() == key
    return all(is_zero_or_absent(labels, k) for k in IMPAIRMENTS if k != key)


def context_of(row, key):
    """The fixed conditions of a row on the `key` sweep: label keys other
    than the swept one (zero impairments dropped), message size, rate, mode."""
    labels = row["labels"]
    fixed = tuple(sorted((k, v) for k, v in labels.items()
                         if k not in (key, "sweep")
                         and not (k in IMPAIRMENTS and is_zero_or_absent(labels, k))))
    return (fixed, sizes_of(row), row.get("rate_target") or "", row["mode"])


def sizes_of(row):
    """('fixed', N), or ('mixed', largest) for a run with mixed sizes (--size A..B or A,B,C): summary.csv's
    msg_size is then the largest message. The mean size delivered (goodput over message rate) tells the
    two apart; both columns are rounded to 3 decimals, hence the slack."""
    size, goodput, rate = row.get("msg_size"), row.get("goodput_mbps"), row.get("msgs_per_s")
    if size and goodput and rate:
        mean = goodput * 1e6 / 8 / rate
        slack = max(1.0, 0.01 * size, 2 * (62.5 + mean * 0.0005) / rate)
        if size - mean > slack:
            return ("mixed", size)
    return ("fixed", size)


def describe_context(ctx):
    fixed, (sizes, msg_size), rate, mode = ctx
    parts = [fmt_condition(k, v) for k, v in fixed]
    msg = ""
    if msg_size is not None:
        msg = (f"{fmt_num(msg_size)}-byte messages" if sizes == "fixed"
               else f"mixed message sizes up to {fmt_num(msg_size)} bytes")
    if rate:
        r, unit = parse_value(rate)
        if r == 0:
            rate_txt = ", unpaced (--rate 0)" if msg else "unpaced (--rate 0)"
        else:
            rate_txt = f"at {fmt_num(r)} msg/s" if r is not None and not unit else f"at {rate}"
            rate_txt = f" {rate_txt}" if msg else rate_txt
        msg = f"{msg}{rate_txt}"
    if msg:
        parts.append(msg)
    if mode == "echo":
        parts.append("echo (round trip)")
    return ", ".join(parts) if parts else "no other impairment"


def sweep_rows(res, key, what):
    """Rows of the `key` sweep that share the most common fixed conditions.
    Returns (rows, context) or (None, None) with a note."""
    rows = [r for r in res.rows if in_sweep(r, key)]
    if not rows:
        return None, None
    groups = defaultdict(list)
    for r in rows:
        groups[context_of(r, key)].append(r)
    ctx = max(groups, key=lambda c: (len({label_number(r["labels"], key) for r in groups[c]}),
                                     len(groups[c])))
    if len(groups) > 1:
        others = sum(len(v) for c, v in groups.items() if c != ctx)
        note(f"{what}: plotting {len(groups[ctx])} session(s) at {describe_context(ctx)}; "
             f"ignoring {others} session(s) with other fixed conditions")
    return groups[ctx], ctx


def aggregate(rows, key, value_fn):
    """{protocol: [(x, mean, min, max, n)]} sorted by x; value_fn(row) -> float|None."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = value_fn(r)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        acc[r["protocol"]][label_number(r["labels"], key)].append(v)
    out = {}
    for proto, by_x in acc.items():
        out[proto] = [(x, sum(vs) / len(vs), min(vs), max(vs), len(vs))
                      for x, vs in sorted(by_x.items())]
    return out


def link_rate(res, run_id, protocol, mode, counter):
    """Emulator-measured rate (%) of `counter` for a session's packets, or None.
    Denominator: packets offered to the emulator (forwarded + dropped +
    queue_drops). One-way sessions use the data direction (a_to_b, where
    sockbench's lab puts the sender; else the busier one); echo sessions use both."""
    rows = [r for r in res.link.get(run_id, []) if r["protocol"] == protocol]
    if not rows:
        return None

    def offered(r):
        return sum(r.get(c) or 0 for c in ("forwarded", "dropped", "queue_drops"))

    if mode != "echo":
        by_dir = defaultdict(list)
        for r in rows:
            by_dir[r["direction"]].append(r)
        # sockbench's lab puts the sender on host A: a_to_b is the data direction. (The busier
        # direction is not: a TCP receiver can send more ACK segments than it gets data segments.)
        if "a_to_b" in by_dir:
            data_dir = "a_to_b"
        else:
            data_dir = max(by_dir, key=lambda d: sum(offered(r) for r in by_dir[d]))
        rows = by_dir[data_dir]
    total = sum(offered(r) for r in rows)
    if total <= 0:
        return None
    return 100.0 * sum(r.get(counter) or 0 for r in rows) / total


# ---------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------
def new_figure(ncols=1, nrows=1, wide=False, **kw):
    import matplotlib.pyplot as plt
    size = FIGSIZE_WIDE if wide else FIGSIZE
    fig, axes = plt.subplots(nrows, ncols, figsize=size, dpi=DPI, **kw)
    return fig, axes


def style_axes(ax):
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    ax.grid(True, which="minor", color="#f0f0f0", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw_series(ax, points, color, marker="o", linestyle="-", label=None, scale=1.0,
                zorder=3, **kw):
    """Mean line with min..max error bars where a condition was repeated."""
    if not points:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] * scale for p in points]
    lo = [(p[1] - p[2]) * scale for p in points]
    hi = [(p[3] - p[1]) * scale for p in points]
    repeated = any(p[4] > 1 for p in points)
    if repeated:
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor=color, elinewidth=1.2,
                    capsize=3, alpha=0.8, zorder=zorder)
    kw.setdefault("markersize", 6)
    kw.setdefault("linewidth", 2)
    (line,) = ax.plot(xs, ys, marker=marker, linestyle=linestyle, color=color, label=label,
                      zorder=zorder, **kw)
    return line


def latency_unit(values_us):
    """Pick µs or ms so that tick labels stay short."""
    vals = [v for v in values_us if v is not None and v > 0]
    if vals and sorted(vals)[len(vals) // 2] >= 1000:
        return "ms", 1e-3
    return "µs", 1.0


def maybe_log_y(ax, values, span=30.0):
    vals = [v for v in values if v is not None and v > 0]
    if len(vals) >= 2 and max(vals) / min(vals) >= span:
        ax.set_yscale("log")
        set_plain_log_ticks(ax.yaxis)
        return True
    return False


def set_plain_log_ticks(axis):
    """Log axis with 1, 2, 5, 10 ... labels instead of 10^n."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def loss_axis(ax, xs):
    ax.set_xlabel("configured loss on the link (%)")
    ax.set_xlim(left=min(0, min(xs)) - 0.02 * max(1, max(xs)), right=max(xs) * 1.04 + 0.01)


def save(fig, out_dir, name, formats, written, rect=(0, 0, 1, 1)):
    """Lay out (leaving `rect` free of figure-level titles), write, close."""
    import matplotlib.pyplot as plt
    fig.tight_layout(rect=rect)
    for fmt in formats:
        path = os.path.join(out_dir, f"{name}.{fmt}")
        fig.savefig(path, format=fmt, dpi=DPI, metadata=_metadata(fmt))
        written.append(path)
    plt.close(fig)


def _metadata(fmt):
    # Reproducible SVG/PDF output: no creation date.
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return None


def subtitle_size(text):
    """10 pt, smaller for a long subtitle (two run ids) so that it fits the figure's width."""
    return 10 if len(text) <= 90 else max(7.0, 10 * 90 / len(text))


def fig_title(fig, title, subtitle):
    """Figure-level title and grey subtitle; returns the layout rect below them."""
    h = fig.get_size_inches()[1] * DPI  # pixels
    t1 = 1 - 10 / h
    fig.suptitle(title, fontsize=13, fontweight="bold", y=t1, va="top")
    top = t1 - 26 / h
    if subtitle:
        fig.text(0.5, top, subtitle, ha="center", va="top", fontsize=subtitle_size(subtitle),
                 color="#333333")
        top -= 16 / h
    return (0, 0, 1, top + 12 / h)


def title_axes(ax, title, subtitle):
    ax.set_title(f"{title}\n", fontsize=13, fontweight="bold")
    if subtitle:
        ax.text(0.5, 1.02, subtitle, transform=ax.transAxes, ha="center", va="bottom",
                fontsize=subtitle_size(subtitle), color="#333333")


# ---------------------------------------------------------------------------
# Plot 1: delivered fraction and measured loss vs configured loss
# ---------------------------------------------------------------------------
def plot_delivery_vs_loss(res, out_dir, formats, written):
    what = "delivery_vs_loss"
    rows, ctx = sweep_rows(res, "loss", what)
    if not rows:
        note(f"{what}: skipped, no sessions labelled loss=... (with sweep=loss or no sweep key)")
        return
    from matplotlib.lines import Line2D

    def delivered(r):
        if not r.get("sent"):
            return None
        return 100.0 * (r["received"] or 0) / r["sent"]

    deliv = aggregate(rows, "loss", delivered)
    lossp = aggregate(rows, "loss", lambda r: r.get("loss_pct"))
    xs = sorted({label_number(r["labels"], "loss") for r in rows})
    fig, (a1, a2) = new_figure(ncols=2, wide=True)
    handles = []
    for proto in PROTOCOLS:
        if proto in deliv:
            h = draw_series(a1, deliv[proto], COLOR[proto], label=NAME[proto])
            handles.append(h)
        if proto in lossp:
            draw_series(a2, lossp[proto], COLOR[proto], label=NAME[proto])
    # Ideal: UDP delivers 1 - configured loss, TCP delivers everything.
    a1.plot(xs, [100 - x for x in xs], linestyle="--", color=COLOR["udp"], linewidth=1.2,
            alpha=0.9, zorder=2)
    a1.plot(xs, [100 for _ in xs], linestyle="--", color=COLOR["tcp"], linewidth=1.2,
            alpha=0.9, zorder=2)
    a2.plot(xs, xs, linestyle="--", color=COLOR["udp"], linewidth=1.2, alpha=0.9, zorder=2)
    a2.plot(xs, [0 for _ in xs], linestyle="--", color=COLOR["tcp"], linewidth=1.2,
            alpha=0.9, zorder=2)
    handles.append(Line2D([], [], color=C_IDEAL, linestyle="--", linewidth=1.2,
                          label="ideal (UDP: 100 − loss, TCP: 100)"))
    # Ground truth from the emulator, when present.
    emu = False
    emu_vals = []
    for proto in PROTOCOLS:
        pts = aggregate([r for r in rows if r["protocol"] == proto], "loss",
                        lambda r: link_rate(res, r["run_id"], r["protocol"], r["mode"],
                                            "dropped"))
        if pts.get(proto):
            emu = True
            emu_vals += [p[3] for p in pts[proto]]
            draw_series(a2, pts[proto], COLOR[proto], marker="s", linestyle="none",
                        markerfacecolor="white", markeredgewidth=1.5, markersize=8, zorder=4)
    a1.set_ylabel("delivered to the application,\nreceived / sent (%)")
    a2.set_ylabel("measured loss, lost / sent (%)")
    for ax in (a1, a2):
        loss_axis(ax, xs)
        style_axes(ax)
    lo = min([p[2] for v in deliv.values() for p in v] + [100 - max(xs)])
    a1.set_ylim(max(0, lo - 0.05 * (100 - lo) - 0.5), 100 + max(0.5, 0.04 * (100 - lo)))
    top = max([p[3] for v in lossp.values() for p in v] + [max(xs)] + emu_vals)
    a2.set_ylim(-0.04 * top - 0.05, top * 1.06 + 0.1)
    leg2 = [Line2D([], [], color=C_IDEAL, linestyle="--", linewidth=1.2,
                   label="ideal (UDP: = configured, TCP: 0)")]
    if emu:
        leg2.append(Line2D([], [], color=C_IDEAL, marker="s", linestyle="none",
                           markerfacecolor="white", markeredgewidth=1.5, markersize=8,
                           label="packets dropped by the link emulator"))
    a1.legend(handles=handles, loc="lower left", frameon=True, framealpha=0.9)
    a2.legend(handles=[h for h in handles if h.get_label() in ("TCP", "UDP")] + leg2,
              loc="upper left", frameon=True, framealpha=0.9)
    rect = fig_title(fig, "Delivery under packet loss: TCP retransmits, UDP loses",
                     describe_context(ctx))
    save(fig, out_dir, what, formats, written, rect)


# ---------------------------------------------------------------------------
# Plot 2: latency percentiles vs configured loss
# ---------------------------------------------------------------------------
def plot_latency_vs_loss(res, out_dir, formats, written):
    what = "latency_vs_loss"
    rows, ctx = sweep_rows(res, "loss", what)
    if not rows:
        note(f"{what}: skipped, no sessions labelled loss=... (with sweep=loss or no sweep key)")
        return
    stats = [("latency_p50_us", "p50", "o", "-"), ("latency_p99_us", "p99", "s", "--"),
             ("latency_max_us", "max", "^", ":")]
    stats = [s for s in stats if res.has_column(s[0])]
    if not stats:
        note(f"{what}: skipped, summary.csv has no latency_p50_us/p99_us/max_us columns")
        return
    from matplotlib.lines import Line2D
    series = {s[0]: aggregate(rows, "loss", lambda r, c=s[0]: r.get(c)) for s in stats}
    allv = [v for agg in series.values() for pts in agg.values() for p in pts
            for v in (p[2], p[3])]
    if not allv:
        note(f"{what}: skipped, no latency values in the loss-sweep sessions")
        return
    unit, scale = latency_unit(allv)
    fig, ax = new_figure()
    for col, name, marker, ls in stats:
        for proto in PROTOCOLS:
            if proto in series[col]:
                draw_series(ax, series[col][proto], COLOR[proto], marker=marker, linestyle=ls,
                            scale=scale)
    xs = sorted({label_number(r["labels"], "loss") for r in rows})
    loss_axis(ax, xs)
    style_axes(ax)
    if not maybe_log_y(ax, [v * scale for v in allv]):
        ax.set_ylim(bottom=0)
    echo = ctx[3] == "echo"
    ax.set_ylabel(f"{'round-trip ' if echo else ''}latency from scheduled send ({unit})")
    proto_h = [Line2D([], [], color=COLOR[p], linewidth=6, label=NAME[p]) for p in PROTOCOLS
               if any(p in series[c] for c, *_ in stats)]
    stat_h = [Line2D([], [], color=C_IDEAL, marker=m, linestyle=ls, linewidth=1.5, label=n)
              for _, n, m, ls in stats]
    leg = ax.legend(handles=proto_h, loc="upper left", frameon=True, framealpha=0.9)
    ax.add_artist(leg)
    ax.legend(handles=stat_h, loc="upper left", bbox_to_anchor=(0.13, 1.0), frameon=True,
              framealpha=0.9)
    title_axes(ax, "Latency under packet loss: TCP head-of-line blocking",
               describe_context(ctx))
    save(fig, out_dir, what, formats, written)


# ---------------------------------------------------------------------------
# Plot 6: latency under load, per queue size
# ---------------------------------------------------------------------------
def plot_latency_under_load(res, out_dir, formats, written):
    what = "latency_under_load"
    need = ("latency_p50_us", "latency_p99_us", "idle_latency_p50_us")
    rows = [r for r in res.rows
            if r["labels"].get("sweep", "").lower() == "load"
            and label_number(r["labels"], "load") is not None
            and label_number(r["labels"], "queue") is not None]
    if not rows or not all(res.has_column(c) for c in need):
        note(f"{what}: skipped, no sessions labelled load=N,queue=N,sweep=load with "
             f"{', '.join(need)} (scripts/sweep.sh --grid load makes them)")
        return
    from matplotlib.lines import Line2D
    queues = sorted({label_number(r["labels"], "queue") for r in rows})
    flows = sorted({label_number(r["labels"], "load") for r in rows})
    pos = {f: i for i, f in enumerate(flows)}
    allv = [r.get(c) for r in rows for c in need if r.get(c)]
    unit, scale = latency_unit(allv)
    fig, axes = new_figure(ncols=len(queues), wide=True, sharey=True, squeeze=False)
    axes = axes[0]
    for ax, q in zip(axes, queues):
        in_q = [r for r in rows if label_number(r["labels"], "queue") == q]
        for col, ls, marker in (("latency_p50_us", "-", "o"), ("latency_p99_us", "--", "s")):
            agg = aggregate(in_q, "load", lambda r, c=col: r.get(c))
            for proto in PROTOCOLS:
                pts = [(pos[x], m, lo, hi, n) for x, m, lo, hi, n in agg.get(proto, [])]
                draw_series(ax, pts, COLOR[proto], marker=marker, linestyle=ls, scale=scale)
        for proto in PROTOCOLS:
            idle = [r["idle_latency_p50_us"] for r in in_q
                    if r["protocol"] == proto and r.get("idle_latency_p50_us")]
            if idle:
                ax.axhline(sum(idle) / len(idle) * scale, color=COLOR[proto], linestyle=":",
                           linewidth=1.5, zorder=2)
        ax.set_xticks(range(len(flows)))
        ax.set_xticklabels([fmt_num(f) for f in flows])
        ax.set_xlabel("bulk TCP flows sharing the path")
        ax.set_title(f"queue {fmt_num(q)} packets", fontsize=11)
        style_axes(ax)
    if not maybe_log_y(axes[0], [v * scale for v in allv], span=10.0):
        axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(f"latency from scheduled send ({unit})")
    handles = [Line2D([], [], color=COLOR[p], linewidth=6, label=NAME[p]) for p in PROTOCOLS]
    handles += [Line2D([], [], color=C_IDEAL, marker="o", linestyle="-", label="p50, loaded phase"),
                Line2D([], [], color=C_IDEAL, marker="s", linestyle="--", label="p99, loaded phase"),
                Line2D([], [], color=C_IDEAL, linestyle=":", label="p50, idle phase")]
    axes[0].legend(handles=handles, loc="upper left", frameon=True, framealpha=0.9)
    others = sorted({k for r in rows for k in r["labels"]} - {"load", "queue", "sweep"})
    ctx = ", ".join(f"{k}={rows[0]['labels'][k]}" for k in others if k in rows[0]["labels"])
    rect = fig_title(fig, "Latency under load: the queue fills behind bulk TCP",
                     ctx or "sweep=load")
    save(fig, out_dir, what, formats, written, rect=rect)


# ---------------------------------------------------------------------------
# Condition selection for plots 3 and 4
# ---------------------------------------------------------------------------
def parse_condition(text):
    key, sep, val = text.partition("=")
    key = key.strip().lower()
    if not sep or not key or not val.strip():
        raise InputError(f"--condition {text!r}: expected KEY=VALUE, e.g. loss=5%")
    return key, val.strip()


def value_matches(labels, key, val):
    if key not in labels:
        return False
    a, ua = parse_value(labels[key])
    b, ub = parse_value(val)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) and (ua == ub or not ub)
    return labels[key].lower() == val.lower()


def pick_pair(res, condition, need):
    """Choose one TCP and one UDP session at a condition, both having the
    per-run file kind `need` ('latency' or 'messages').
    Returns (tcp_row, udp_row, description, context) or None."""
    store = res.latency if need == "latency" else res.messages
    if condition is not None:
        key, val = condition
        cands = [r for r in res.rows if value_matches(r["labels"], key, val)]
        if key in IMPAIRMENTS:
            swept = [r for r in cands if in_sweep(r, key)]
            cands = swept or cands
        conds = [(key, val)]
    else:
        key = "loss"
        loss_rows = [r for r in res.rows if in_sweep(r, "loss")]
        values = sorted({label_number(r["labels"], "loss") for r in loss_rows}, reverse=True)
        conds = []
        for v in values:
            raw = next(r["labels"]["loss"] for r in loss_rows
                       if label_number(r["labels"], "loss") == v)
            conds.append(("loss", raw))
        if not conds:  # no loss sweep: any run that has both protocols
            conds = [None]
        cands = None
    for cond in conds:
        if cond is None:
            rows = res.rows
        elif cands is not None:
            rows = cands
        else:
            rows = [r for r in res.rows if in_sweep(r, "loss")
                    and value_matches(r["labels"], "loss", cond[1])]
        with_file = [r for r in rows if (r["run_id"], r["protocol"]) in store]
        by_proto = {p: [r for r in with_file if r["protocol"] == p] for p in PROTOCOLS}
        if not all(by_proto.values()):
            continue
        tcp, udp = pair_rows(by_proto["tcp"], by_proto["udp"])
        desc = fmt_condition(*cond) if cond else "the newest run"
        ckey = cond[0] if cond else "loss"
        return tcp, udp, desc, context_of(tcp, ckey)
    return None


def _newest(rows):
    return max(rows, key=lambda r: (r.get("started_utc") or "", r["_order"]))


def _pair_key(r):
    """What a TCP and a UDP session must share to be one condition's pair."""
    return (r["label"], r.get("msg_size"), r.get("rate_target") or "", r["mode"])


def pair_rows(tcp_rows, udp_rows):
    """One TCP and one UDP session of the same condition, the newest such pair.
    1. Sessions of one `compare` run share a run_id: the newest run holding both.
    2. Otherwise (separate sends, e.g. sweep.sh's lab engine: each session has its own
       run_id) sessions with the same label, message size, rate and mode; of those, the
       TCP and UDP sessions written closest together in summary.csv, newest first.
    3. Otherwise the newest of each.
    Each session's files are then found by its own run_id."""
    runs = {r["run_id"] for r in tcp_rows} & {r["run_id"] for r in udp_rows}
    if runs:
        rid = _newest([r for r in tcp_rows + udp_rows if r["run_id"] in runs])["run_id"]
        return (_newest([r for r in tcp_rows if r["run_id"] == rid]),
                _newest([r for r in udp_rows if r["run_id"] == rid]))
    best = None
    for key in {_pair_key(r) for r in tcp_rows} & {_pair_key(r) for r in udp_rows}:
        ts = [r for r in tcp_rows if _pair_key(r) == key]
        us = [r for r in udp_rows if _pair_key(r) == key]
        # Each UDP session with the TCP session written nearest before it (a sweep writes
        # TCP, then UDP), else nearest after it.
        for u in us:
            before = [t for t in ts if t["_order"] < u["_order"]]
            t = (max(before, key=lambda r: r["_order"]) if before
                 else min(ts, key=lambda r: r["_order"]))
            rank = (max(t.get("started_utc") or "", u.get("started_utc") or ""),
                    max(t["_order"], u["_order"]))
            if best is None or rank > best[0]:
                best = (rank, t, u)
    if best is not None:
        return best[1], best[2]
    return _newest(tcp_rows), _newest(udp_rows)


def run_note(tcp, udp):
    if tcp["run_id"] == udp["run_id"]:
        return f"run {tcp['run_id']}"
    return f"runs {tcp['run_id']} (TCP), {udp['run_id']} (UDP)"


# ---------------------------------------------------------------------------
# Plot 3: latency CDF
# ---------------------------------------------------------------------------
def plot_latency_cdf(res, out_dir, formats, written, condition):
    what = "latency_cdf"
    pair = pick_pair(res, condition, "latency")
    if pair is None:
        where = f" at {fmt_condition(*condition)}" if condition else ""
        note(f"{what}: skipped, no TCP and UDP <run_id>_<protocol>_latency.csv pair{where}")
        return
    tcp, udp, desc, ctx = pair
    dists = {"tcp": res.latency[(tcp["run_id"], "tcp")],
             "udp": res.latency[(udp["run_id"], "udp")]}
    allv = [v for d in dists.values() for v, _ in d]
    if not allv:
        note(f"{what}: skipped, the latency CSVs at {desc} are empty")
        return
    unit, scale = latency_unit(allv)
    fig, ax = new_figure()
    for proto in PROTOCOLS:
        d = dists[proto]
        if not d:
            continue
        xs = [v * scale for v, _ in d]
        ys = [p / 100.0 for _, p in d]
        ax.step(xs, ys, where="post", color=COLOR[proto], linewidth=2.2, label=NAME[proto])
        for q, txt in ((50.0, "p50"), (99.0, "p99")):
            v = next((v for v, p in d if p >= q), None)
            if v is not None:
                ax.plot([v * scale], [q / 100], marker="o", color=COLOR[proto], markersize=5)
    pos = [v * scale for v in allv if v > 0]
    if pos and max(pos) / min(pos) >= 10:
        ax.set_xscale("log")
        set_plain_log_ticks(ax.xaxis)
    ax.set_ylim(0, 1.02)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 0.9, 1.0])
    ax.set_yticklabels(["0", "0.25", "0.5", "0.75", "0.9", "1"])
    style_axes(ax)
    echo = ctx[3] == "echo"
    ax.set_xlabel(f"{'round-trip ' if echo else ''}latency from scheduled send ({unit})")
    ax.set_ylabel("fraction of received messages ≤ latency")
    ax.legend(loc="lower right", frameon=True, framealpha=0.9,
              title="dots: p50, p99", title_fontsize=9)
    title_axes(ax, f"Latency distribution at {desc}",
               f"{describe_context(ctx)} · {run_note(tcp, udp)}")
    save(fig, out_dir, what, formats, written)


# ---------------------------------------------------------------------------
# Plot 4: latency over sequence number
# ---------------------------------------------------------------------------
def plot_latency_over_seq(res, out_dir, formats, written, condition):
    what = "latency_over_seq"
    if not res.messages:
        note(f"{what}: skipped, no <run_id>_<protocol>_messages.csv in the directory "
             f"(run sockbench with per-message output)")
        return
    pair = pick_pair(res, condition, "messages")
    if pair is None:
        where = f" at {fmt_condition(*condition)}" if condition else ""
        note(f"{what}: skipped, no TCP and UDP per-message CSV pair{where}")
        return
    import matplotlib.transforms as mtransforms
    from matplotlib.lines import Line2D
    tcp, udp, desc, ctx = pair
    msgs = {"tcp": res.messages[(tcp["run_id"], "tcp")],
            "udp": res.messages[(udp["run_id"], "udp")]}
    allv = [r["latency_us"] for m in msgs.values() for r in m if r["latency_us"] is not None]
    unit, scale = latency_unit(allv)
    # One y range for both panels, so that TCP's and UDP's latencies compare at a glance.
    fig, axes = new_figure(nrows=2, sharex=True, sharey=True)
    fig.set_size_inches(FIGSIZE[0], 6.5)
    special = [("reordered", C_REORDERED, "^", "reordered"),
               ("duplicate", C_DUPLICATE, "x", "duplicate"),
               ("corrupt", C_CORRUPT, "D", "corrupt")]
    used = set()
    for ax, proto in zip(axes, PROTOCOLS):
        m = msgs[proto]
        big = len(m) > 2000
        ok = [(r["seq"], r["latency_us"] * scale) for r in m
              if r["status"] == "ok" and r["latency_us"] is not None]
        if ok:
            ax.scatter([p[0] for p in ok], [p[1] for p in ok], s=4 if big else 9,
                       color=COLOR[proto], alpha=0.6 if big else 0.8, linewidths=0,
                       rasterized=True, zorder=2)
        for status, color, marker, _ in special:
            pts = [(r["seq"], r["latency_us"] * scale) for r in m
                   if r["status"] == status and r["latency_us"] is not None]
            if pts:
                used.add(status)
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, marker=marker,
                           color=color, linewidths=1.4 if marker == "x" else 0.5,
                           edgecolors="white" if marker != "x" else None, zorder=4)
        lost = [r["seq"] for r in m if r["status"] == "lost"]
        trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        if lost:
            used.add("lost")
            ax.vlines(lost, 0, 0.06, transform=trans, color=C_LOST, linewidth=0.9,
                      zorder=5)
        n_lost = len(lost)
        n_all = len({r["seq"] for r in m})
        counts = Counter(r["status"] for r in m)
        summary = (f"{NAME[proto]} — {n_lost} lost of {n_all}, "
                   f"{counts.get('reordered', 0)} reordered, "
                   f"{counts.get('duplicate', 0)} duplicate")
        ax.set_title(summary, loc="left", fontsize=10, color=COLOR[proto],
                     fontweight="bold")
        style_axes(ax)
        ax.set_ylabel(f"latency ({unit})")
    vals = [v * scale for v in allv]
    if not maybe_log_y(axes[0], vals, span=20):
        top = max(vals) if vals else 1
        bot = min(vals) if vals else 0
        pad = max((top - bot) * 0.15, top * 0.02)
        axes[0].set_ylim(max(0, bot - pad * 1.6), top + pad)
    axes[1].set_xlabel("sequence number")
    handles = [Line2D([], [], color=COLOR[p], marker="o", linestyle="none", markersize=5,
                      label=f"{NAME[p]} in order") for p in PROTOCOLS]
    for status, color, marker, name in special:
        if status in used:
            handles.append(Line2D([], [], color=color, marker=marker, linestyle="none",
                                  markersize=7, markeredgewidth=1.4, label=name))
    if "lost" in used:
        handles.append(Line2D([], [], color=C_LOST, marker="|", linestyle="none",
                              markersize=12, markeredgewidth=1.5, label="lost (tick at bottom)"))
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
               ncol=len(handles), frameon=False, fontsize=9, handletextpad=0.3,
               columnspacing=1.2)
    rect = fig_title(fig, f"Latency by sequence number at {desc}",
                     f"{describe_context(ctx)} · {run_note(tcp, udp)}")
    save(fig, out_dir, what, formats, written, (0, 0.045, 1, rect[3]))


# ---------------------------------------------------------------------------
# Plot 5: reordering and duplication
# ---------------------------------------------------------------------------
def plot_reorder_dup(res, out_dir, formats, written):
    what = "reorder_dup"
    panels = []
    for key, col, counter, ylabel in (
            ("reorder", "reordered", "reordered", "reordered messages (% of sent)"),
            ("duplicate", "duplicates", "duplicated", "duplicate messages (% of sent)")):
        if not res.has_column(col):
            note(f"{what}: no {col} column in summary.csv, {key} panel left out")
            continue
        rows, ctx = sweep_rows(res, key, f"{what} ({key})")
        if rows:
            panels.append((key, col, counter, ylabel, rows, ctx))
    if not panels:
        note(f"{what}: skipped, no sessions labelled reorder=... or duplicate=... "
             f"(sweep=reorder / sweep=duplicate)")
        return
    from matplotlib.lines import Line2D
    fig, axes = new_figure(ncols=len(panels), wide=len(panels) > 1)
    axes = axes if len(panels) > 1 else [axes]
    emu_any = False
    for ax, (key, col, counter, ylabel, rows, ctx) in zip(axes, panels):
        def pct(r, c=col):
            if not r.get("sent") or r.get(c) is None:
                return None
            return 100.0 * r[c] / r["sent"]
        agg = aggregate(rows, key, pct)
        xs = sorted({label_number(r["labels"], key) for r in rows})
        emu_vals = []
        for proto in PROTOCOLS:
            if proto in agg:
                draw_series(ax, agg[proto], COLOR[proto], label=NAME[proto])
            pts = aggregate([r for r in rows if r["protocol"] == proto], key,
                            lambda r: link_rate(res, r["run_id"], r["protocol"], r["mode"],
                                                counter))
            if pts.get(proto):
                emu_any = True
                emu_vals += [p[3] for p in pts[proto]]
                draw_series(ax, pts[proto], COLOR[proto], marker="s", linestyle="none",
                            markerfacecolor="white", markeredgewidth=1.5, markersize=8,
                            zorder=4)
        ax.plot(xs, xs, linestyle="--", color=C_IDEAL, linewidth=1.2, zorder=2)
        ax.set_xlabel(f"configured {SWEEP_NAMES[key]} on the link (%)")
        ax.set_ylabel(ylabel)
        style_axes(ax)
        top = max([p[3] for v in agg.values() for p in v] + xs + emu_vals + [0.1])
        ax.set_ylim(-0.04 * top, top * 1.1)
        ax.set_xlim(min(0, min(xs)) - 0.02 * max(xs), max(xs) * 1.04 + 0.01)
        if len({p[5] for p in panels}) > 1:
            ax.set_title(f"{SWEEP_NAMES[key]}: {describe_context(ctx)}", fontsize=10)
    handles = [Line2D([], [], color=COLOR[p], marker="o", linewidth=2, label=NAME[p])
               for p in PROTOCOLS]
    handles.append(Line2D([], [], color=C_IDEAL, linestyle="--", linewidth=1.2,
                          label="configured rate (y = x)"))
    if emu_any:
        handles.append(Line2D([], [], color=C_IDEAL, marker="s", linestyle="none",
                              markerfacecolor="white", markeredgewidth=1.5, markersize=8,
                              label="measured by the link emulator"))
    axes[0].legend(handles=handles, loc="upper left", frameon=True, framealpha=0.9)
    common = {p[5] for p in panels}
    rect = fig_title(fig, "Reordering and duplication: what reaches the application",
                     describe_context(panels[0][5]) if len(common) == 1 else None)
    save(fig, out_dir, what, formats, written, rect)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="plot.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="sockbench results directory (holds summary.csv)")
    p.add_argument("--out", metavar="OUTDIR",
                   help="where to write the figures (default: DIR/plots)")
    p.add_argument("--condition", metavar="KEY=VALUE",
                   help="condition for latency_cdf and latency_over_seq, e.g. loss=5%% "
                        "(default: the highest configured loss with both TCP and UDP)")
    p.add_argument("--format", default="png,svg", metavar="FMT[,FMT]",
                   help="comma-separated output formats: png, svg, pdf (default: png,svg)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        formats = [f.strip().lower().lstrip(".") for f in args.format.split(",") if f.strip()]
        bad = [f for f in formats if f not in ("png", "svg", "pdf")]
        if bad or not formats:
            raise InputError(f"--format {args.format!r}: use png, svg and/or pdf")
        condition = parse_condition(args.condition) if args.condition else None
        res = Results(args.dir)
        if condition is not None:
            key, val = condition
            if not any(value_matches(r["labels"], key, val) for r in res.rows):
                present = sorted({f"{key}={r['labels'][key]}" for r in res.rows
                                  if key in r["labels"]})
                hint = f"; present: {', '.join(present)}" if present else \
                    f"; no label has {key}="
                raise InputError(f"--condition {key}={val}: no session has it{hint}")
        out_dir = args.out or os.path.join(args.dir, "plots")
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise InputError(f"--out {out_dir}: cannot create: {e.strerror}") from None
        if not os.access(out_dir, os.W_OK):
            raise InputError(f"--out {out_dir}: not writable")
    except InputError as e:
        note(f"error: {e}")
        return 2

    try:
        import matplotlib
    except ImportError:
        note(f"error: {missing_matplotlib()}")
        return 3
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10.5,
                         "legend.fontsize": 9, "svg.hashsalt": "sockbench",
                         "svg.fonttype": "none"})

    written = []
    failed = 0
    for name, fn, extra in (
            ("delivery_vs_loss", plot_delivery_vs_loss, ()),
            ("latency_vs_loss", plot_latency_vs_loss, ()),
            ("latency_cdf", plot_latency_cdf, (condition,)),
            ("latency_over_seq", plot_latency_over_seq, (condition,)),
            ("reorder_dup", plot_reorder_dup, ()),
            ("latency_under_load", plot_latency_under_load, ())):
        try:
            fn(res, out_dir, formats, written, *extra)
        except Exception as e:  # a bug in one figure must not cost the others
            failed += 1
            plt.close("all")
            note(f"{name}: failed ({type(e).__name__}: {e}); please report it with the CSVs")
    for path in written:
        print(path)
    if not written and not failed:
        note(f"error: nothing plotted from {args.dir}: none of the {len(ALL_PLOTS)} figures had its inputs "
             f"(each 'skipped' note above says what it needs)")
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
