#!/usr/bin/env bash
# A/B of two benchmark binaries on a noisy machine: runs A and B alternately
# REPS times each over the rows that FILTER selects, then prints, per row, the
# median of COUNTER (default ns_per_op) for each binary, B/A of the medians and
# B/A of the minima, and every repetition.
#
#   bash scripts/bench_ab.sh A_BINARY B_BINARY [REPS] FILTER [COUNTER]
#
# e.g. two copies of build-bench/bench/tree_bench built before and after a change:
#   bash scripts/bench_ab.sh /tmp/tree_bench.old /tmp/tree_bench.new 8 \
#        '^W1_(find|load)/rcuvm/random/(10000|100000|1000000)/'
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
a=$1 b=$2 reps=$3 filter=$4 counter=${5:-ns_per_op}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for i in $(seq "$reps"); do
  "$a" --benchmark_filter="$filter" --benchmark_format=json 2>/dev/null >"$dir/A_$i.json"
  "$b" --benchmark_filter="$filter" --benchmark_format=json 2>/dev/null >"$dir/B_$i.json"
done
python3 - "$dir" "$counter" <<'PY'
import collections, glob, json, os, statistics, sys
d, counter = sys.argv[1], sys.argv[2]
runs = collections.defaultdict(list)
for f in glob.glob(os.path.join(d, "*.json")):
    side = os.path.basename(f)[0]
    for r in json.load(open(f))["benchmarks"]:
        if r.get("run_type") != "iteration" or r.get("error_occurred") or counter not in r:
            continue
        name = r["name"]
        for cut in ("/min_time", "/iterations", "/real_time", "/manual_time"):
            name = name.split(cut)[0]
        runs[(name, side)].append(float(r[counter]))
for name in sorted({k[0] for k in runs}):
    A, B = runs[(name, "A")], runs[(name, "B")]
    if not A or not B:
        continue
    ma, mb = statistics.median(A), statistics.median(B)
    print(f"{name:45s} {counter} median A {ma:9.4g} B {mb:9.4g}  B/A {mb / ma:.3f}  min B/A {min(B) / min(A):.3f}"
          f"  A={sorted(round(x, 3) for x in A)} B={sorted(round(x, 3) for x in B)}")
PY
