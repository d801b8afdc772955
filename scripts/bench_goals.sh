#!/usr/bin/env bash
# Measures issue 2's goal rows only, each peer's repetitions interleaved in
# random order (so that a noisy minute on a shared machine hits every peer
# alike instead of one peer's back-to-back repetitions), then prints the goal
# table with verdicts (scripts/bench_goals.py).
#
#   bash scripts/bench_goals.sh [REPS] [OUTDIR]      (defaults: 15, bench-goals)
#
# Needs the maple peer (scripts/build_maple_peer.sh) and the benchmark build
# of docs/benchmarks.md in build-bench/. About 10 minutes at 15 repetitions
# on 2 vCPUs. Writes OUTDIR/maple.json, OUTDIR/w6_alternating.json,
# OUTDIR/fastslab.json and OUTDIR/goals.md.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-15}
out=${2:-bench-goals}
bin=build-bench/bench
for b in tree_bench_maple tree_bench_maple_fastslab; do
  if [ ! -x "$bin/$b" ]; then
    echo "bench_goals: $bin/$b is missing; build it as docs/benchmarks.md says" >&2
    exit 1
  fi
done
mkdir -p "$out"
common=(--benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true --benchmark_format=json)
peers='rcuvm|linux_maple|absl_btree_shmutex|absl_btree_mutex|std_map_shmutex|tbb_cmap'
# Lookups, W6 with one reader, dup against one-by-one, bytes per range.
"$bin/tree_bench_maple" "${common[@]}" \
  --benchmark_filter="^W1_find/(rcuvm|linux_maple|absl_btree_shmutex)/random/1000000/|^W6_read/($peers)/readers:1/|^W4_(dup|one_by_one)/(rcuvm|linux_maple)/100000/|^W5_bytes/(rcuvm|linux_maple)/random/1000000/" \
  >"$out/maple.json"
# W6 in alternating 0.2 s windows, 10 s a row (one repetition per three of
# the others, at least 3).
"$bin/tree_bench_maple" --rcuvm_w6_seconds=5 --benchmark_repetitions=$(( reps / 3 > 3 ? reps / 3 : 3 )) \
  --benchmark_enable_random_interleaving=true --benchmark_format=json \
  --benchmark_filter='^W6_alternating/(rcuvm|linux_maple)/' >"$out/w6_alternating.json"
# Writes against the maple tree with the SLUB-like allocator.
"$bin/tree_bench_maple_fastslab" "${common[@]}" \
  --benchmark_filter='^W2_insert/(rcuvm|linux_maple_fastslab)/random/(100000|1000000)/|^W3_churn/(rcuvm|linux_maple_fastslab)/' \
  >"$out/fastslab.json"
{
  echo "Goal rows, $reps interleaved repetitions, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo
  python3 scripts/bench_goals.py "$out"
} | tee "$out/goals.md"
