#!/usr/bin/env python3
"""Plots and tabulates Google Benchmark JSON from bench/tree_bench.

    build-bench/bench/tree_bench_maple --benchmark_repetitions=3 \\
        --benchmark_format=json --benchmark_out=bench.json
    python3 scripts/plot_bench.py bench.json [more.json ...] --out docs/img --tables

Several files may be given (for example the tree_bench_maple run and the
tree_bench_maple_fastslab run); a row present in more than one keeps the first
file's value, so put the primary run first. With --benchmark_repetitions the
median aggregate of each row is used, otherwise the single run.

Writes PNG figures into --out (default docs/img/) and, with --tables, prints
Markdown tables of the medians and of ratios against rcuvm, for
docs/benchmarks.md. Needs matplotlib only for the figures (Debian:
python3-matplotlib); --tables works without it.
"""
import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict

SUFFIX = re.compile(r"/(min_time|min_warmup_time|iterations|repeats|threads):[^/]*|/(manual_time|real_time)")

PEER_ORDER = ["rcuvm", "linux_maple", "linux_maple_fastslab", "absl_btree_shmutex",
              "absl_btree_mutex", "std_map_shmutex", "tbb_cmap"]


def base_name(name):
    return SUFFIX.sub("", name)


def load_rows(paths):
    """Returns {base name: row dict} (medians where there are repetitions)."""
    rows = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        singles, medians = {}, {}
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                name = base_name(b.get("run_name", b["name"]))
                singles.setdefault(name, {"error": b.get("error_message", "error")})
                continue
            name = base_name(b.get("run_name", b["name"]))
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    medians[name] = b
            else:
                singles.setdefault(name, b)
        merged = dict(singles)
        merged.update(medians)
        for k, v in merged.items():
            rows.setdefault(k, v)
    return rows


def peer_sort_key(p):
    return (PEER_ORDER.index(p) if p in PEER_ORDER else len(PEER_ORDER), p)


def parse(rows):
    """Splits names into (workload, peer, variant, n) -> row."""
    out = defaultdict(dict)
    for name, row in rows.items():
        parts = name.split("/")
        w = parts[0]
        if w.startswith("W1_") or w.startswith("W5_") or w.startswith("W2_"):
            if len(parts) >= 4:
                out[w][(parts[1], parts[2], int(parts[3]))] = row
        elif w == "W3_churn":
            out[w][(parts[1],)] = row
        elif w.startswith("W4_"):
            out[w][(parts[1], int(parts[2]))] = row
        elif w == "W6_read":
            readers = int(parts[2].split(":")[1])
            writer = int(parts[3].split(":")[1])
            out[w][(parts[1], readers, writer)] = row
    return out


def val(row, key):
    if row is None or "error" in row:
        return None
    v = row.get(key)
    return float(v) if v is not None else None


def fmt(v, digits=3):
    if v is None:
        return "–"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:,.{decimals}f}"


# --- tables ------------------------------------------------------------------


def table(title, header, lines):
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


def tables(p):
    sizes = sorted({k[2] for w in ("W1_find", "W2_insert") for k in p.get(w, {})})
    for w, unit in (("W1_find", "ns/lookup"), ("W1_load", "ns/lookup"), ("W1_walk", "ns/lookup")):
        if w not in p:
            continue
        for build in ("random", "ascending"):
            peers = sorted({k[0] for k in p[w] if k[1] == build}, key=peer_sort_key)
            lines = []
            for peer in peers:
                line = [peer] + [fmt(val(p[w].get((peer, build, n)), "ns_per_op")) for n in sizes]
                lines.append(line)
            if w != "W1_walk":
                base = {n: val(p[w].get(("rcuvm", build, n)), "ns_per_op") for n in sizes}
                for peer in peers:
                    if peer == "rcuvm":
                        continue
                    r = []
                    for n in sizes:
                        a, b = base[n], val(p[w].get((peer, build, n)), "ns_per_op")
                        r.append(fmt(b / a, 3) + "×" if a and b else "–")
                    lines.append([f"*{peer} / rcuvm*"] + r)
            table(f"{w} ({build} build), {unit}; ratio > 1: rcuvm faster", ["peer"] + [f"{n:,}" for n in sizes], lines)
    if "W2_insert" in p:
        for build in ("random", "ascending", "bulk"):
            peers = sorted({k[0] for k in p["W2_insert"] if k[1] == build}, key=peer_sort_key)
            lines = []
            base = {n: val(p["W2_insert"].get(("rcuvm", build, n)), "ns_per_op") for n in sizes}
            for peer in peers:
                lines.append([peer] + [fmt(val(p["W2_insert"].get((peer, build, n)), "ns_per_op")) for n in sizes])
            for peer in peers:
                if peer == "rcuvm":
                    continue
                r = []
                for n in sizes:
                    a, b = base[n], val(p["W2_insert"].get((peer, build, n)), "ns_per_op")
                    r.append(fmt(b / a, 3) + "×" if a and b else "–")
                lines.append([f"*{peer} / rcuvm*"] + r)
            table(f"W2 insertion ({build}), ns/insert; ratio > 1: rcuvm faster", ["peer"] + [f"{n:,}" for n in sizes], lines)
    if "W3_churn" in p:
        base = val(p["W3_churn"].get(("rcuvm",)), "ns_per_pair")
        lines = []
        for (peer,), row in sorted(p["W3_churn"].items(), key=lambda kv: peer_sort_key(kv[0][0])):
            v = val(row, "ns_per_pair")
            lines.append([peer, fmt(v), fmt(v / 2 if v else None), fmt(v / base, 3) + "×" if v and base else "–"])
        table("W3 churn at 1e5 (erase + store)", ["peer", "ns/pair", "ns/op", "peer / rcuvm"], lines)
    w5 = p.get("W5_bytes", {})
    if w5:
        lines = []
        for peer in sorted({k[0] for k in w5}, key=peer_sort_key):
            for build in ("random", "ascending", "bulk"):
                vals = [val(w5.get((peer, build, n)), "bytes_per_range") for n in sizes]
                if any(v is not None for v in vals):
                    lines.append([peer, build] + [fmt(v) for v in vals])
        table("W5 bytes per range (rcuvm and maple: nodes × 256 / N; containers: bytes requested)",
              ["peer", "build"] + [f"{n:,}" for n in sizes], lines)
    w4 = {w: d for w, d in p.items() if w.startswith("W4_")}
    if w4:
        dsizes = sorted({k[1] for d in w4.values() for k in d})
        lines = []
        for peer in sorted({k[0] for d in w4.values() for k in d}, key=peer_sort_key):
            for method in ("W4_dup", "W4_fork", "W4_bulk", "W4_one_by_one"):
                d = w4.get(method, {})
                vals = [val(d.get((peer, n)), "Mentries_per_s") for n in dsizes]
                if any(v is not None for v in vals):
                    lines.append([peer, method[3:]] + [fmt(v) for v in vals])
        table("W4 copying a tree, Mentries/s", ["peer", "method"] + [f"{n:,}" for n in dsizes], lines)
        lines = []
        for peer in sorted({k[0] for d in w4.values() for k in d}, key=peer_sort_key):
            dup, one = w4.get("W4_dup", {}), w4.get("W4_one_by_one", {})
            r = []
            for n in dsizes:
                a, b = val(dup.get((peer, n)), "Mentries_per_s"), val(one.get((peer, n)), "Mentries_per_s")
                r.append(fmt(a / b, 3) + "×" if a and b else "–")
            lines.append([peer] + r)
        table("W4 dup speed-up over one-by-one insertion", ["peer"] + [f"{n:,}" for n in dsizes], lines)
    w6 = p.get("W6_read", {})
    if w6:
        lines = []
        for peer in sorted({k[0] for k in w6}, key=peer_sort_key):
            for readers, writer in ((1, 0), (2, 0), (0, 1), (1, 1), (2, 1)):
                row = w6.get((peer, readers, writer))
                if row is None:
                    continue
                total = val(row, "Mlookups_per_s")
                alone = val(w6.get((peer, readers, 0)), "Mlookups_per_s") if writer and readers else None
                keep = fmt(100 * total / alone, 3) + " %" if alone and total is not None else "–"
                lines.append([peer, str(readers), "yes" if writer else "no",
                              fmt(val(row, "per_reader_Mlookups_per_s")) if readers else "–",
                              fmt(total) if readers else "–", keep,
                              fmt(val(row, "writer_Kpairs_per_s")) if writer else "–"])
        table("W6 readers (N = 1e5) with and without a W3 writer",
              ["peer", "readers", "writer", "Mlookups/s per reader", "Mlookups/s total",
               "kept vs no writer", "writer Kpairs/s"], lines)


# --- figures -------------------------------------------------------------------


def figures(p, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        # pyenv and virtual environments hide Debian's python3-matplotlib:
        # retry once with the system interpreter.
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
                and not os.environ.get("PLOT_BENCH_REEXEC"):
            os.environ["PLOT_BENCH_REEXEC"] = "1"
            args = [a for a in sys.argv[1:] if a != "--tables"] + ["--figures-only"]
            sys.stdout.flush()
            os.execv(system, [system, os.path.abspath(__file__)] + args)
        print("plot_bench: matplotlib missing (apt-get install python3-matplotlib); no figures", file=sys.stderr)
        return []
    os.makedirs(out, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def lines_vs_n(ax, d, build, key, title, ylabel):
        for peer in sorted({k[0] for k in d if k[1] == build}, key=peer_sort_key):
            pts = sorted((k[2], val(r, key)) for k, r in d.items() if k[0] == peer and k[1] == build)
            pts = [(n, v) for n, v in pts if v is not None]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o",
                        linewidth=2.5 if peer == "rcuvm" else 1.2, label=peer)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("ranges in the tree (N)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    for w in ("W1_find", "W1_load"):
        if w in p:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
            for ax, build in zip(axes, ("random", "ascending")):
                lines_vs_n(ax, p[w], build, "ns_per_op", f"{w}, {build} build", "ns per lookup")
            save(fig, f"{w.lower()}.png")
    if "W2_insert" in p:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for ax, build in zip(axes, ("random", "ascending", "bulk")):
            lines_vs_n(ax, p["W2_insert"], build, "ns_per_op", f"W2 insertion, {build}", "ns per insert")
        save(fig, "w2_insert.png")
    if "W3_churn" in p:
        items = sorted(p["W3_churn"].items(), key=lambda kv: peer_sort_key(kv[0][0]))
        items = [(k[0], val(r, "ns_per_pair")) for k, r in items if val(r, "ns_per_pair")]
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ax.barh([k for k, _ in items], [v for _, v in items])
        ax.set_xlabel("ns per erase + store pair (N = 1e5)")
        ax.set_title("W3 churn")
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
        save(fig, "w3_churn.png")
    w4 = {w: d for w, d in p.items() if w.startswith("W4_")}
    if w4:
        fig, ax = plt.subplots(figsize=(9, 4.8))
        for method, style in (("W4_dup", "-"), ("W4_fork", "-."), ("W4_bulk", "--"), ("W4_one_by_one", ":")):
            d = w4.get(method, {})
            for peer in sorted({k[0] for k in d}, key=peer_sort_key):
                pts = sorted((k[1], val(r, "Mentries_per_s")) for k, r in d.items() if k[0] == peer)
                pts = [(n, v) for n, v in pts if v]
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", markersize=3,
                            label=f"{peer} {method[3:]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entries in the source tree")
        ax.set_ylabel("Mentries/s")
        ax.set_title("W4 copying a tree")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        save(fig, "w4_copy.png")
    w5 = p.get("W5_bytes", {})
    if w5:
        n = max(k[2] for k in w5)
        peers = sorted({k[0] for k in w5}, key=peer_sort_key)
        builds = ("random", "ascending", "bulk")
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.27
        for i, build in enumerate(builds):
            ys = [val(w5.get((peer, build, n)), "bytes_per_range") or 0 for peer in peers]
            ax.bar([j + (i - 1) * width for j in range(len(peers))], ys, width, label=build)
        ax.axhline(36, color="k", linestyle="--", linewidth=0.8, label="goal: 36 B (random)")
        ax.set_xticks(range(len(peers)))
        ax.set_xticklabels(peers, rotation=20, fontsize=8)
        ax.set_ylabel(f"bytes per range at N = {n:,}")
        ax.set_title("W5 memory")
        ax.legend(fontsize=7)
        save(fig, "w5_bytes.png")
    w6 = p.get("W6_read", {})
    if w6:
        peers = sorted({k[0] for k in w6}, key=peer_sort_key)
        configs = ((1, 0), (1, 1), (2, 0), (2, 1))
        fig, ax = plt.subplots(figsize=(10, 4.2))
        width = 0.2
        for i, (r, w) in enumerate(configs):
            ys = [val(w6.get((peer, r, w)), "Mlookups_per_s") or 0 for peer in peers]
            ax.bar([j + (i - 1.5) * width for j in range(len(peers))], ys, width,
                   label=f"{r} reader{'s' if r > 1 else ''}{' + writer' if w else ''}")
        ax.set_xticks(range(len(peers)))
        ax.set_xticklabels(peers, rotation=20, fontsize=8)
        ax.set_ylabel("M lookups/s, all readers")
        ax.set_title("W6 readers with and without a W3 writer (N = 1e5, 2 vCPUs)")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "w6_readers.png")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="Google Benchmark JSON files (--benchmark_format=json)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "img"),
                    help="folder for the PNG files (default docs/img)")
    ap.add_argument("--tables", action="store_true", help="print Markdown tables on stdout")
    ap.add_argument("--no-figures", action="store_true", help="skip the PNG files")
    ap.add_argument("--figures-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    p = parse(load_rows(args.json))
    if args.tables and not args.figures_only:
        tables(p)
    if not args.no_figures:
        for path in figures(p, os.path.normpath(args.out)):
            print(f"plot_bench: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
