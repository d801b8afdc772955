#!/usr/bin/env python3
"""Tables and plots of bench/vma/fault_bench's Google Benchmark JSON.

    build/bench/vma/fault_bench --benchmark_repetitions=5 \\
        --benchmark_report_aggregates_only=true \\
        --benchmark_out=faults.json --benchmark_out_format=json
    python3 scripts/plot_faults.py faults.json [faults2.json ...] --out docs/img --tables

Rows are named <kind>/<way>/writer:<w> (kind: fault_present,
fault_first_touch, lookup; see the top of bench/vma/fault_bench.cc), each at
1, 2 and 4 threads. With --benchmark_repetitions the median aggregate of each
row is used (and its coefficient of variation shown when there is one),
otherwise the single run.

--tables prints Markdown tables for docs/faults.md: throughput (M items/s,
summed over the threads), the retry and fallback counters, and the issue's
goals as ratios, one column per file given (so two runs can be compared
side by side). Figures (PNG, throughput against threads, one per kind) are
drawn from the first file into --out (default docs/img/); they need
matplotlib (Debian: python3-matplotlib), the tables do not.
"""
import argparse
import json
import os
import re
import sys
from collections import defaultdict

KINDS = [("fault_present", "Faults on present pages"),
         ("fault_first_touch", "First-touch write faults"),
         ("lookup", "VMA lookups")]
WAYS = {"fault_present": ["touch", "seqcount", "pervma"],
        "fault_first_touch": ["touch", "seqcount", "pervma"],
        "lookup": ["find_vma", "find_vma_rcu", "lock_vma_rcu"]}
LABEL = {"touch": "(a) touch (mmap mutex)", "seqcount": "(b) fault, kSeqCount",
         "pervma": "(c) fault, kPerVma", "find_vma": "(a) find_vma (mmap mutex)",
         "find_vma_rcu": "(b) find_vma_rcu", "lock_vma_rcu": "(c) lock_vma_rcu"}
WRITERS = ["none", "churn", "paced", "other_mm"]
THREADS = [1, 2, 4]
NAME = re.compile(r"^(\w+)/(\w+)/writer:(\w+)/")


def load(path):
    """{(kind, way, writer, threads): row}; medians where there are repetitions."""
    with open(path) as f:
        data = json.load(f)
    singles, medians, cvs = {}, {}, {}
    for b in data.get("benchmarks", []):
        m = NAME.match(b.get("run_name", b["name"]) + "/")
        if not m:
            continue
        key = (m.group(1), m.group(2), m.group(3), int(b.get("threads", 1)))
        if b.get("error_occurred"):
            singles.setdefault(key, {"error": b.get("error_message", "error")})
        elif b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = b
            elif b.get("aggregate_name") == "cv":
                cvs[key] = b
        else:
            singles.setdefault(key, b)
    rows = dict(singles)
    rows.update(medians)
    for k, cv in cvs.items():
        if k in rows:
            rows[k] = dict(rows[k], cv_items=cv.get("items_per_second"))
    return rows, data.get("context", {})


def val(rows, key, field):
    r = rows.get(key)
    if r is None or "error" in r or r.get(field) is None:
        return None
    return float(r[field])


def cpu_ns(rows, key):
    r = rows.get(key)
    if r is None or "error" in r or r.get("cpu_time") is None:
        return None
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[r.get("time_unit", "ns")]
    return float(r["cpu_time"]) * scale


def mops(v):
    return "–" if v is None else f"{v / 1e6:.2f}"


def num(v, digits=3):
    if v is None:
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def table(title, header, lines):
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def tables(runs):
    names = [os.path.basename(p) for p, _, _ in runs]
    for kind, title in KINDS:
        # Throughput: one column per (file, threads).
        header = ["way", "writer"] + [f"{t} thr" + (f" ({n})" if len(runs) > 1 else "")
                                      for n in names for t in THREADS]
        lines = []
        for way in WAYS[kind]:
            for w in WRITERS:
                cells = []
                for _, rows, _ in runs:
                    for t in THREADS:
                        v = val(rows, (kind, way, w, t), "items_per_second")
                        cv = val(rows, (kind, way, w, t), "cv_items")
                        cells.append(mops(v) + (f" ±{cv * 100:.0f}%" if cv is not None else ""))
                lines.append([LABEL[way], w] + cells)
        table(f"{title}: M per second, summed over threads (median; ± coefficient of variation)",
              header, lines)
        # CPU time per item: the CPU time of all benchmark threads (not the
        # writer) over all items; less sensitive to a shared machine than
        # wall time, but blind to time spent blocked (mutex waits).
        lines = []
        for way in WAYS[kind]:
            for w in WRITERS:
                cells = [num(cpu_ns(rows, (kind, way, w, t)))
                         for _, rows, _ in runs for t in THREADS]
                lines.append([LABEL[way], w] + cells)
        table(f"{title}: CPU ns per item, benchmark threads only (median)", header, lines)
        # Counters.
        if kind == "lookup":
            fields = [("find_vma_rcu", "retries_per_lookup"), ("lock_vma_rcu", "miss_frac")]
        else:
            fields = [("seqcount", "fallback_frac"), ("seqcount", "retries_per_fault"),
                      ("pervma", "fallback_frac"), ("pervma", "retries_per_fault")]
        lines = []
        for way, field in fields:
            for w in WRITERS:
                cells = [num(val(rows, (kind, way, w, t), field)) for _, rows, _ in runs
                         for t in THREADS]
                lines.append([f"{LABEL[way]}: {field}", w] + cells)
        for way in WAYS[kind]:
            for w in WRITERS[1:]:
                cells = [num(val(rows, (kind, way, w, t), "writer_ops_per_s"))
                         for _, rows, _ in runs for t in THREADS]
                lines.append([f"{LABEL[way]}: writer ops/s", w] + cells)
        table(f"{title}: counters (median)", header, lines)
    goals(runs, names)


def goals(runs, names):
    header = ["quantity", "goal"] + names
    lines = []
    for kind in ("fault_present", "fault_first_touch"):
        for t in THREADS:
            for w in WRITERS[1:]:
                cells = [num(ratio(val(r, (kind, "pervma", w, t), "items_per_second"),
                                   val(r, (kind, "pervma", "none", t), "items_per_second")))
                         for _, r, _ in runs]
                lines.append([f"{kind} (c) writer:{w} / writer:none, {t} thr",
                              "≥ 0.9" if t == 2 and w == "churn" else ""] + cells)
        for t in THREADS:
            for w in WRITERS[1:]:
                cells = [num(ratio(cpu_ns(r, (kind, "pervma", "none", t)),
                                   cpu_ns(r, (kind, "pervma", w, t))))
                         for _, r, _ in runs]
                lines.append([f"{kind} (c) CPU-time throughput writer:{w} / writer:none, {t} thr",
                              ""] + cells)
        for t in THREADS:
            for w in WRITERS:
                cells = [num(ratio(val(r, (kind, "pervma", w, t), "items_per_second"),
                                   val(r, (kind, "touch", w, t), "items_per_second")))
                         for _, r, _ in runs]
                lines.append([f"{kind} (c) / (a), writer:{w}, {t} thr",
                              "≥ 3" if t == 2 and w == "churn" else ""] + cells)
        for t in THREADS:
            for w in WRITERS[1:]:
                cells = [num(ratio(val(r, (kind, "seqcount", w, t), "items_per_second"),
                                   val(r, (kind, "seqcount", "none", t), "items_per_second")))
                         for _, r, _ in runs]
                lines.append([f"{kind} (b) writer:{w} / writer:none, {t} thr", ""] + cells)
    for t in THREADS:
        for way in ("find_vma", "find_vma_rcu", "lock_vma_rcu"):
            for w in WRITERS[1:]:
                cells = [num(ratio(val(r, ("lookup", way, w, t), "items_per_second"),
                                   val(r, ("lookup", way, "none", t), "items_per_second")))
                         for _, r, _ in runs]
                lines.append([f"lookup {way} writer:{w} / writer:none, {t} thr", ""] + cells)
    table("Goals and ratios (of medians)", header, lines)


def figures(runs, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # pyenv and virtual environments hide Debian's python3-matplotlib:
        # retry once with the system interpreter.
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
                and not os.environ.get("PLOT_FAULTS_REEXEC"):
            os.environ["PLOT_FAULTS_REEXEC"] = "1"
            args = [a for a in sys.argv[1:] if a != "--tables"] + ["--figures-only"]
            sys.stdout.flush()
            os.execv(system, [system, os.path.abspath(__file__)] + args)
        print("plot_faults: matplotlib missing (apt-get install python3-matplotlib); no figures",
              file=sys.stderr)
        return []
    os.makedirs(out, exist_ok=True)
    path0, rows, context = runs[0]
    colors = {0: "tab:red", 1: "tab:blue", 2: "tab:green"}
    styles = {"none": ("-", "o"), "churn": ("--", "s"), "paced": (":", "^"),
              "other_mm": ("-.", "x")}
    written = []
    for kind, title in KINDS:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for i, way in enumerate(WAYS[kind]):
            for w in WRITERS:
                ls, mk = styles[w]
                wall = [(t, val(rows, (kind, way, w, t), "items_per_second")) for t in THREADS]
                wall = [(t, v / 1e6) for t, v in wall if v is not None]
                cpu = [(t, cpu_ns(rows, (kind, way, w, t))) for t in THREADS]
                cpu = [(t, 1e3 / v) for t, v in cpu if v]
                for ax, pts in ((axes[0], wall), (axes[1], cpu)):
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=ls, marker=mk,
                                color=colors[i], label=f"{LABEL[way]}, writer: {w}")
        cpus = context.get("num_cpus")
        axes[0].set_ylabel("M per second, all threads (wall clock)")
        axes[1].set_ylabel("M per CPU-second of the benchmark threads")
        axes[0].set_title("throughput (median)")
        axes[1].set_title("1 / CPU time per item (median)")
        for ax in axes:
            ax.set_xticks(THREADS)
            ax.set_xlabel("faulting / looking-up threads")
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
        fig.suptitle(f"{title}, {cpus} CPUs" if cpus else title)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, ncol=3, loc="lower center")
        fig.tight_layout(rect=(0, 0.17, 1, 1))
        path = os.path.join(out, f"faults_{kind}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--tables", action="store_true")
    ap.add_argument("--figures-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    runs = []
    for p in a.json:
        rows, context = load(p)
        runs.append((p, rows, context))
    if a.tables and not a.figures_only:
        tables(runs)
        sys.stdout.flush()
    for path in figures(runs, a.out):
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
