// bench/vma/vma_bench.cc: the VMA layer (rcuvm::AddressSpace) against VMA
// count, issue 3's "Benchmarks": system-call throughput at 100, 1,000 and
// 10,000 VMAs, and fork cost at 21..6421 VMAs three ways side by side.
//
// The map. make_map(n) maps n private anonymous read-write VMAs of two pages
// each, top-down from mmap_base, each followed by a one-page hole:
//
//   low                                                   mmap_base
//   | VV.VV.VV. ... VV.VV.VV. |        (V: a VMA's page, .: a hole)
//
// The holes keep the VMAs apart (nothing merges) and leave room for a new
// one-page mapping between any two. No page is ever touched, so the page
// table stays empty and fork copies VMAs, not pages.
//
// Rows (filter with --benchmark_filter):
//   syscall/<op>/<n>   one system call against n VMAs; the time of that call
//                      alone (manual timing), then an untimed call puts the map
//                      back, so every iteration starts from the same map. The
//                      VMA a call works on is drawn from a fixed pseudo-random
//                      sequence (the same for every run).
//     mmap_fixed     MAP_FIXED, one page, PROT_READ into a hole: a new VMA
//                    (differs from both neighbours)       undo: munmap
//     mmap_merge     MAP_FIXED, one page, PROT_READ|PROT_WRITE into a hole:
//                    joins both neighbours (merge_new_range, expand prev and
//                    delete next)                         undo: munmap (split)
//     mmap_placed    no hint, two pages, PROT_READ: top-down placement must
//                    skip every one-page hole and lands below the lowest VMA
//                    (find_gap_rev over the gap-tracking tree)  undo: munmap
//     munmap         one whole VMA                        undo: mmap MAP_FIXED
//     mprotect       one whole VMA to PROT_READ (in place, no split)
//                                                         undo: mprotect back
//     mprotect_split the first page of one VMA to PROT_READ (a split)
//                                                         undo: mprotect back
//                                                         (merge_existing_range)
//   fork/<way>/<n>     one child built from a parent of n VMAs; the time of
//                      the build alone (manual timing); children are torn down
//                      untimed, in batches, followed by rcu::drain().
//     dup          AddressSpace::fork(): the real thing. RangeTree::dup_into
//                  (O(n) node copy), one cursor pass replacing each entry in
//                  place with a new Vma, page-table copy (empty here),
//                  accounting, plus a new AddressSpace and the parent's
//                  per-VMA write marks.
//     bulk         a cursor pass over a parent RangeTree<Vma> holding the same
//                  VMAs, a new Vma per entry, then RangeTree::bulk_load of the
//                  copies into an empty tree.
//     one_by_one   the same pass, each copy stored with RangeTree::store.
//     tree_dup     the tree part of `dup` alone, on the same parent tree as
//                  bulk and one_by_one: dup_into, then the replacing pass.
//   The batch holds about 64k copied VMAs (--vma_bench_batch_vmas=N to
//   change it; 0: one child at a time), at most 256 children.
//   bulk, one_by_one and tree_dup use trees configured as AddressSpace's own
//   (gap tracking, RCU mode, an external writer lock held around the build).
//
//   exit/<n>           the destruction of a forked child of n VMAs alone
//                      (tree destroyed, VMAs closed and retired); the reclaim
//                      on liburcu's thread is drained untimed.
//
// Counters: items_per_second (system calls per second for syscall rows; VMAs
// copied per second for fork rows); fork rows also forks_per_second, and
// bulk, one_by_one and tree_dup rows child_leaves (leaf nodes of the child
// tree, to check that no way wins by building a denser tree).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "rcuvm/address_space.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/vma.h"

namespace {

using rcuvm::AddressSpace;
using rcuvm::kPageSize;
using rcuvm::RangeTree;
using rcuvm::Vma;
using rcuvm::VmaState;
using Clock = std::chrono::steady_clock;

constexpr int kRw = rcuvm::kProtRead | rcuvm::kProtWrite;
constexpr int kAnonPrivate = rcuvm::kMapPrivate | rcuvm::kMapAnonymous;
constexpr int kAnonFixed = kAnonPrivate | rcuvm::kMapFixed;
constexpr uint64_t kVmaPages = 2;
constexpr uint64_t kStride = (kVmaPages + 1) * kPageSize;  // a VMA and its hole

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "vma_bench: %s\n", what.c_str());
  std::abort();
}

void must(const absl::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.ToString());
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The start of VMA i (i = 0 is the highest).
uint64_t vma_start(const AddressSpace& as, uint64_t i) {
  return as.options().mmap_base - (i + 1) * kStride;
}

// The map described at the top: n separate VMAs.
std::unique_ptr<AddressSpace> make_map(uint64_t n) {
  auto as = std::make_unique<AddressSpace>();
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t a = vma_start(*as, i);
    auto r = as->mmap(a, kVmaPages * kPageSize, kRw, kAnonFixed, nullptr, 0);
    if (!r.ok() || *r != a) die("make_map: mmap failed");
  }
  if (as->map_count() != n) die("make_map: VMAs merged");
  must(as->validate(), "make_map");
  return as;
}

// A fixed pseudo-random sequence of VMA indices in [0, n).
std::vector<uint64_t> picks(uint64_t n) {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> v(4096);
  for (uint64_t& x : v) x = rng() % n;
  return v;
}

// Checks after a row that the map is the one make_map built.
void check_unchanged(const AddressSpace& as, uint64_t n) {
  if (as.map_count() != n || as.total_vm() != n * kVmaPages) die("map changed across iterations");
  must(as.validate(), "after the row");
}

// --- System calls -----------------------------------------------------------

enum class Op { kMmapFixed, kMmapMerge, kMmapPlaced, kMunmap, kMprotect, kMprotectSplit };

// Runs the timed call for VMA i (its time in *timed), then the untimed call
// that undoes it.
void run_op(Op op, AddressSpace& as, uint64_t i, uint64_t n, double* timed) {
  const uint64_t a = vma_start(as, i);
  const uint64_t hole = a + kVmaPages * kPageSize;  // the hole above VMA i
  const uint64_t len = kVmaPages * kPageSize;
  const uint64_t lowest = vma_start(as, n - 1);
  Clock::time_point t0, t1;
  bool ok = true;
  switch (op) {
    case Op::kMmapFixed:
    case Op::kMmapMerge: {
      // VMA 0's hole is the top one, below mmap_base: no upper neighbour, so
      // use the hole above VMA i only when i > 0.
      const uint64_t h = i == 0 ? vma_start(as, 1) + len : hole;
      const int prot = op == Op::kMmapFixed ? rcuvm::kProtRead : kRw;
      t0 = Clock::now();
      auto r = as.mmap(h, kPageSize, prot, kAnonFixed, nullptr, 0);
      t1 = Clock::now();
      ok = r.ok() && as.munmap(h, kPageSize).ok();
      break;
    }
    case Op::kMmapPlaced: {
      t0 = Clock::now();
      auto r = as.mmap(0, len, rcuvm::kProtRead, kAnonPrivate, nullptr, 0);
      t1 = Clock::now();
      ok = r.ok() && *r == lowest - len && as.munmap(*r, len).ok();
      break;
    }
    case Op::kMunmap: {
      t0 = Clock::now();
      absl::Status s = as.munmap(a, len);
      t1 = Clock::now();
      ok = s.ok() && as.mmap(a, len, kRw, kAnonFixed, nullptr, 0).ok();
      break;
    }
    case Op::kMprotect:
    case Op::kMprotectSplit: {
      const uint64_t l = op == Op::kMprotect ? len : kPageSize;
      t0 = Clock::now();
      absl::Status s = as.mprotect(a, l, rcuvm::kProtRead);
      t1 = Clock::now();
      ok = s.ok() && as.mprotect(a, l, kRw).ok();
      break;
    }
  }
  if (!ok) die("system call or its undo failed");
  *timed = seconds_between(t0, t1);
}

void BM_syscall(benchmark::State& state, Op op) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  rcuvm::rcu::ensure_registered();
  auto as = make_map(n);
  const std::vector<uint64_t> order = picks(n);
  size_t k = 0;
  for (auto _ : state) {
    double t = 0;
    run_op(op, *as, order[k], n, &t);
    if (++k == order.size()) k = 0;
    state.SetIterationTime(t);
  }
  check_unchanged(*as, n);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  as.reset();
  rcuvm::rcu::drain();
}

// --- Fork ---------------------------------------------------------------------

// A parent tree holding its own Vma copies of as's VMAs, configured as
// AddressSpace's tree is.
struct ParentTree {
  absl::Mutex mu;
  RangeTree<Vma> tree{rcuvm::TreeOptions{.track_gaps = true, .rcu = true, .external_lock = &mu}};
  std::vector<Vma*> vmas;

  explicit ParentTree(const AddressSpace& as) {
    absl::MutexLock l(&mu);
    // Highest first, the order make_map mapped them in, so that this tree
    // has the shape of the AddressSpace's own.
    std::vector<rcuvm::VmaInfo> all = as.maps();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      Vma* p = new Vma(static_cast<const VmaState&>(*it));
      vmas.push_back(p);
      must(tree.store(it->start, it->end - 1, p), "ParentTree");
    }
  }
  ~ParentTree() {
    {
      absl::MutexLock l(&mu);
      tree.destroy();
    }
    rcuvm::rcu::drain();
    for (Vma* v : vmas) delete v;
  }
};

// A child built by bulk, one_by_one or tree_dup: its tree and its copies.
struct ChildTree {
  absl::Mutex mu;
  RangeTree<Vma> tree{rcuvm::TreeOptions{.track_gaps = true, .rcu = true, .external_lock = &mu}};
  std::vector<Vma*> vmas;
  ~ChildTree() {
    {
      absl::MutexLock l(&mu);
      tree.destroy();
    }
    for (Vma* v : vmas) delete v;  // never seen by a reader
  }
};

Vma* copy_vma(const Vma* p, const void* owner) {
  Vma* n = new Vma(static_cast<const VmaState&>(*p));
  n->owner = owner;
  return n;
}

enum class Way { kDup, kBulk, kOneByOne, kTreeDup };

// Builds one child of `parent` the way asked.
void build_child(Way way, ParentTree& parent, ChildTree& child) {
  absl::MutexLock pl(&parent.mu);
  absl::MutexLock cl(&child.mu);
  child.vmas.reserve(parent.vmas.size());
  switch (way) {
    case Way::kBulk: {
      std::vector<RangeTree<Vma>::Entry> entries;
      entries.reserve(parent.vmas.size());
      auto c = parent.tree.cursor(0);
      while (auto e = c.next()) {
        Vma* n = copy_vma(e->value, &child);
        child.vmas.push_back(n);
        entries.push_back({e->first, e->last, n});
      }
      must(child.tree.bulk_load(entries), "bulk_load");
      break;
    }
    case Way::kOneByOne: {
      auto c = parent.tree.cursor(0);
      while (auto e = c.next()) {
        Vma* n = copy_vma(e->value, &child);
        child.vmas.push_back(n);
        must(child.tree.store(e->first, e->last, n), "store");
      }
      break;
    }
    case Way::kTreeDup: {
      must(parent.tree.dup_into(child.tree), "dup_into");
      auto c = child.tree.cursor(0);
      while (auto e = c.next()) {
        Vma* n = copy_vma(e->value, &child);
        child.vmas.push_back(n);
        must(c.replace(n), "replace");
      }
      break;
    }
    case Way::kDup:
      die("build_child: dup is AddressSpace::fork");
  }
}

// VMAs copied before an untimed teardown of the children built so far
// (--vma_bench_batch_vmas; 0 tears each child down at once).
uint64_t g_batch_vmas = 65536;

// Children kept before an untimed teardown.
size_t batch_for(uint64_t n) {
  return g_batch_vmas == 0 ? 1 : std::clamp<size_t>(g_batch_vmas / n, 1, 256);
}

void BM_fork(benchmark::State& state, Way way) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  rcuvm::rcu::ensure_registered();
  auto as = make_map(n);
  std::unique_ptr<ParentTree> parent;
  if (way != Way::kDup) parent = std::make_unique<ParentTree>(*as);
  const size_t batch = batch_for(n);
  std::vector<std::unique_ptr<AddressSpace>> spaces;
  std::vector<std::unique_ptr<ChildTree>> trees;
  auto teardown = [&] {
    spaces.clear();
    trees.clear();
    rcuvm::rcu::drain();
  };
  for (auto _ : state) {
    Clock::time_point t0, t1;
    if (way == Way::kDup) {
      t0 = Clock::now();
      auto child = as->fork();
      t1 = Clock::now();
      if (!child.ok()) die("fork: " + child.status().ToString());
      spaces.push_back(*std::move(child));
    } else {
      trees.push_back(std::make_unique<ChildTree>());
      t0 = Clock::now();
      build_child(way, *parent, *trees.back());
      t1 = Clock::now();
    }
    state.SetIterationTime(seconds_between(t0, t1));
    if (spaces.size() + trees.size() >= batch) {
      state.PauseTiming();  // manual time ignores it; keeps cpu_time honest
      teardown();
      state.ResumeTiming();
    }
  }
  // Spot-check one child against the parent.
  if (way == Way::kDup) {
    auto child = as->fork();
    if (!child.ok() || (*child)->map_count() != n) die("fork: wrong child");
    must((*child)->validate(), "fork child");
  } else {
    ChildTree c;
    build_child(way, *parent, c);
    absl::MutexLock l(&c.mu);
    const rcuvm::TreeStats st = c.tree.stats();
    if (st.entries != n) die("child tree: wrong entry count");
    must(c.tree.validate(), "child tree");
    state.counters["child_leaves"] = static_cast<double>(st.leaves);
  }
  teardown();
  check_unchanged(*as, n);
  const auto iters = static_cast<int64_t>(state.iterations());
  state.SetItemsProcessed(iters * static_cast<int64_t>(n));
  state.counters["forks_per_second"] =
      benchmark::Counter(static_cast<double>(iters), benchmark::Counter::kIsRate);
  parent.reset();
  as.reset();
  rcuvm::rcu::drain();
}

// exit/<n>: the destruction of a forked child of n VMAs (exit_mmap: the tree
// destroyed, every VMA closed and retired), timed alone; the children are
// forked untimed, and the reclaim that runs later on liburcu's thread is
// drained untimed too.
void BM_exit(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  rcuvm::rcu::ensure_registered();
  auto as = make_map(n);
  int since_drain = 0;
  for (auto _ : state) {
    auto child = as->fork();
    if (!child.ok()) die("fork: " + child.status().ToString());
    std::unique_ptr<AddressSpace> c = *std::move(child);
    const Clock::time_point t0 = Clock::now();
    c.reset();
    const Clock::time_point t1 = Clock::now();
    state.SetIterationTime(seconds_between(t0, t1));
    if (++since_drain == 64) {  // a drain waits for liburcu's thread: not every time
      state.PauseTiming();
      rcuvm::rcu::drain();
      state.ResumeTiming();
      since_drain = 0;
    }
  }
  rcuvm::rcu::drain();
  check_unchanged(*as, n);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
  as.reset();
  rcuvm::rcu::drain();
}

void register_all() {
  struct NamedOp {
    const char* name;
    Op op;
  };
  const NamedOp ops[] = {{"mmap_fixed", Op::kMmapFixed},   {"mmap_merge", Op::kMmapMerge},
                         {"mmap_placed", Op::kMmapPlaced}, {"munmap", Op::kMunmap},
                         {"mprotect", Op::kMprotect},      {"mprotect_split", Op::kMprotectSplit}};
  for (const NamedOp& o : ops) {
    auto* b = benchmark::RegisterBenchmark((std::string("syscall/") + o.name).c_str(), BM_syscall, o.op);
    b->Arg(100)->Arg(1000)->Arg(10000)->UseManualTime()->Unit(benchmark::kNanosecond);
  }
  struct NamedWay {
    const char* name;
    Way way;
  };
  const NamedWay ways[] = {{"dup", Way::kDup},
                           {"bulk", Way::kBulk},
                           {"one_by_one", Way::kOneByOne},
                           {"tree_dup", Way::kTreeDup}};
  // Sizes of issue 3: 21 + 100 * {0, 1, 2, 4, ..., 64}.
  const int64_t sizes[] = {21, 121, 221, 421, 821, 1621, 3221, 6421};
  for (int64_t n : sizes) {
    for (const NamedWay& w : ways) {
      auto* b = benchmark::RegisterBenchmark((std::string("fork/") + w.name).c_str(), BM_fork, w.way);
      b->Arg(n)->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
  }
  for (int64_t n : {821, 6421})
    benchmark::RegisterBenchmark("exit", BM_exit)->Arg(n)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
}

}  // namespace

// Takes this program's own flags out of argv (before benchmark's parser).
void parse_own_flags(int* argc, char** argv) {
  const std::string batch = "--vma_bench_batch_vmas=";
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(batch, 0) == 0) {
      g_batch_vmas = std::strtoull(a.c_str() + batch.size(), nullptr, 10);
      continue;
    }
    argv[out++] = argv[i];
  }
  *argc = out;
}

int main(int argc, char** argv) {
  parse_own_flags(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rcuvm::rcu::ensure_registered();
  benchmark::AddCustomContext("vma_bench_batch_vmas", std::to_string(g_batch_vmas));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rcuvm::rcu::drain();
  return 0;
}
