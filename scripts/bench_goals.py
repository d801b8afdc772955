#!/usr/bin/env python3
# Reads the JSON files written by scripts/bench_goals.sh and prints issue 2's
# goals as a Markdown table: the medians of the interleaved repetitions, the
# ratios between peers of the same run, and a verdict against the goal as the
# issue states it (never a loosened one).
#
#   python3 scripts/bench_goals.py OUTDIR
#
# OUTDIR holds maple.json (tree_bench_maple: rcuvm, linux_maple, the
# containers), w6_alternating.json (tree_bench_maple's W6_alternating rows)
# and fastslab.json (tree_bench_maple_fastslab: rcuvm and
# linux_maple_fastslab), as bench_goals.sh writes them.
import collections
import json
import os
import statistics
import sys


def load(path):
    """Maps a row name (without Google Benchmark's suffixes) to its repetitions."""
    rows = collections.defaultdict(list)
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for r in json.load(f)["benchmarks"]:
            if r.get("run_type") != "iteration" or r.get("error_occurred"):
                continue
            name = r["name"]
            for cut in ("/min_time", "/iterations", "/real_time", "/manual_time"):
                name = name.split(cut)[0]
            rows[name].append(r)
    return rows


def median(rows, name, counter):
    reps = rows.get(name)
    if not reps:
        return None
    return statistics.median(float(r[counter]) for r in reps)


def spread(rows, name, counter):
    reps = rows.get(name) or []
    vals = sorted(float(r[counter]) for r in reps)
    return f"{len(vals)} reps, {vals[0]:.3g}-{vals[-1]:.3g}" if vals else "no data"


def fmt(x, unit=""):
    return "n/a" if x is None else f"{x:,.3g}{unit}"


def verdict(ok):
    return "n/a (peer not in this run)" if ok is None else ("**met**" if ok else "**missed**")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    mp = load(os.path.join(out, "maple.json"))
    fs = load(os.path.join(out, "fastslab.json"))
    alt = load(os.path.join(out, "w6_alternating.json"))
    lines = ["| goal | measured (medians of interleaved repetitions) | verdict |", "|---|---|---|"]

    def row(goal, measured, ok):
        lines.append(f"| {goal} | {measured} | {verdict(ok)} |")

    # find at 1e6, random build.
    f = "W1_find/{}/random/1000000"
    r, a, m = (median(mp, f.format(p), "ns_per_op") for p in ("rcuvm", "absl_btree_shmutex", "linux_maple"))
    ra = ratio(a, r)
    row("`find` 1e6 at least as fast as absl::btree_map",
        f"rcuvm {fmt(r, ' ns')} ({spread(mp, f.format('rcuvm'), 'ns_per_op')}), absl {fmt(a, ' ns')}: {fmt(ra, '×')}",
        None if ra is None else ra >= 1.0)
    rm = ratio(m, r)
    row("`find` 1e6 1.25× faster than the maple tree",
        f"maple {fmt(m, ' ns')} ({spread(mp, f.format('linux_maple'), 'ns_per_op')}): {fmt(rm, '×')}",
        None if rm is None else rm >= 1.25)

    # W6: one reader, with and without the W3 writer. The verdict reads the
    # alternating-window rows (both states sampled across the same seconds);
    # the separate rows, run seconds apart, are shown beside them.
    w = "W6_read/{}/readers:1/writer:{}"
    alone = median(mp, w.format("rcuvm", 0), "Mlookups_per_s")
    under = median(mp, w.format("rcuvm", 1), "Mlookups_per_s")
    cpu = median(mp, w.format("rcuvm", 1), "reader_cpu_pct")
    kept = ratio(under, alone)
    separate = (f"separate rows, seconds apart: {fmt(under)} against {fmt(alone)} M lookups/s, "
                f"{fmt(None if kept is None else 100 * kept, '%')} (reader on a CPU {fmt(cpu, '%')} of the time; "
                f"{spread(mp, w.format('rcuvm', 1), 'Mlookups_per_s')})")
    a = "W6_alternating/{}/readers:1"
    alt_kept = median(alt, a.format("rcuvm"), "kept_pct")
    if alt_kept is None:
        row("W6: 1 reader under a writer keeps ≥ 90% of its no-writer rate", separate,
            None if kept is None else kept >= 0.90)
    else:
        row("W6: 1 reader under a writer keeps ≥ 90% of its no-writer rate",
            f"alternating windows: {fmt(alt_kept, '%')} ({spread(alt, a.format('rcuvm'), 'kept_pct')}; "
            f"median of window pairs {fmt(median(alt, a.format('rcuvm'), 'kept_pct_median_pair'), '%')}; "
            f"{fmt(median(alt, a.format('rcuvm'), 'Mlookups_per_s_writer_on'))} against "
            f"{fmt(median(alt, a.format('rcuvm'), 'Mlookups_per_s_writer_off'))} M lookups/s, writer "
            f"{fmt(median(alt, a.format('rcuvm'), 'writer_Kpairs_per_s'))} K pairs/s; maple keeps "
            f"{fmt(median(alt, a.format('linux_maple'), 'kept_pct'), '%')}). {separate[0].upper() + separate[1:]}",
            alt_kept >= 90)
    peers = sorted({n.split("/")[1] for n in mp if n.startswith("W6_read/")} - {"rcuvm"})
    others = {p: median(mp, w.format(p, 1), "Mlookups_per_s") for p in peers}
    others = {p: v for p, v in others.items() if v is not None}
    ahead = None if under is None or not others else all(under > v for v in others.values())
    row("W6: ... and ahead of every peer with a writer",
        ", ".join(f"{p} {v:.3g}" for p, v in sorted(others.items(), key=lambda kv: -kv[1])) or "no peers", ahead)

    # dup at 1e5.
    d = median(mp, "W4_dup/rcuvm/100000", "Mentries_per_s")
    o = median(mp, "W4_one_by_one/rcuvm/100000", "Mentries_per_s")
    md = median(mp, "W4_dup/linux_maple/100000", "Mentries_per_s")
    do = ratio(d, o)
    row("`dup` ≥ 30× one-by-one insertion at 1e5", f"{fmt(d)} against {fmt(o)} M entries/s: {fmt(do, '×')}",
        None if do is None else do >= 30)
    row("`dup` at least the maple tree's rate (17-28 M entries/s)", f"{fmt(d)} against maple {fmt(md)} M entries/s",
        None if d is None or md is None else d >= md and d >= 17)

    # bytes per range.
    b = median(mp, "W5_bytes/rcuvm/random/1000000", "bytes_per_range")
    row("≤ 36 bytes per range, 1e6 random", f"{fmt(b)} (maple {fmt(median(mp, 'W5_bytes/linux_maple/random/1000000', 'bytes_per_range'))})",
        None if b is None else b <= 36)

    # writes against the maple tree with the SLUB-like allocator.
    for n in ("1000000", "100000"):
        ri = median(fs, f"W2_insert/rcuvm/random/{n}", "ns_per_op")
        mi = median(fs, f"W2_insert/linux_maple_fastslab/random/{n}", "ns_per_op")
        q = ratio(mi, ri)
        row(f"random insertion at {int(n):,} 2× faster than maple (fastslab)",
            f"{fmt(ri, ' ns')} against {fmt(mi, ' ns')}: {fmt(q, '×')}", None if q is None else q >= 2)
    rc = median(fs, "W3_churn/rcuvm/100000", "ns_per_pair")
    mc = median(fs, "W3_churn/linux_maple_fastslab/100000", "ns_per_pair")
    q = ratio(mc, rc)
    row("churn 2× faster than maple (fastslab)", f"{fmt(rc, ' ns')} against {fmt(mc, ' ns')} a pair: {fmt(q, '×')}",
        None if q is None else q >= 2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
