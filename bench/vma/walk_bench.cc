// bench/vma/walk_bench.cc: page walks (rcuvm/page_walk.h) over 1 GiB of
// populated memory: one private anonymous read-write VMA mapped with
// MAP_POPULATE, so all 262,144 pages are present, each with its own frame.
//
// Rows (each iteration walks the whole GiB; items_per_second is pages/s):
//   walk/pte_entry     walk_page_range with a pte_entry that counts present
//                      PTEs: one indirect call per page.
//   walk/pmd_entry     walk_page_range with a pmd_entry that counts the
//                      present PTEs of its PMD itself and sets kContinue (what
//                      Linux's own walkers such as pagemap do): one call per
//                      2 MiB.
//   walk/for_each      the reference: PageTable::for_each (a recursive walk
//                      with a std::function per present entry), under no lock.
//   resident_pages     the smaps-like walker (one frame refcount lookup per
//                      anonymous page, under the frame allocator's mutex).
//   pagemap            the pagemap walker: a 2 MiB vector of entries, one
//                      refcount lookup per page.
// Every row checks its count against 262,144 and fails if it differs.
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "rcuvm/address_space.h"
#include "rcuvm/page_table.h"
#include "rcuvm/page_walk.h"

namespace {

using rcuvm::AddressSpace;
using rcuvm::MmWalk;
using rcuvm::MmWalkOps;
using rcuvm::Pte;

constexpr uint64_t kLen = uint64_t{1} << 30;
constexpr uint64_t kPages = kLen / rcuvm::kPageSize;

struct Populated {
  AddressSpace space;
  uint64_t start = 0;
};

// Built once and shared by every row: populating a GiB takes far longer
// than any walk.
Populated& populated() {
  static Populated* p = [] {
    auto* q = new Populated;
    auto a = q->space.mmap(0, kLen, rcuvm::kProtRead | rcuvm::kProtWrite,
                           rcuvm::kMapPrivate | rcuvm::kMapAnonymous | rcuvm::kMapPopulate,
                           nullptr, 0);
    if (a.ok()) q->start = *a;
    return q;
  }();
  return *p;
}

bool ready(benchmark::State& state) {
  Populated& p = populated();
  if (p.start == 0 || p.space.anon_pages(p.start, p.start + kLen) != kPages) {
    state.SkipWithError("could not populate 1 GiB");
    return false;
  }
  return true;
}

void finish(benchmark::State& state, uint64_t last_count) {
  if (last_count != kPages) state.SkipWithError("wrong page count");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kPages));
}

int count_pte(Pte pte, uint64_t, uint64_t, MmWalk& w) {
  *static_cast<uint64_t*>(w.priv) += rcuvm::pte::present(pte);
  return 0;
}

int count_pmd(rcuvm::PteTableView ptes, uint64_t addr, uint64_t next, MmWalk& w) {
  uint64_t n = 0;
  for (uint64_t a = addr; a < next; a += rcuvm::kPageSize) n += rcuvm::pte::present(ptes.get(a));
  *static_cast<uint64_t*>(w.priv) += n;
  w.action = rcuvm::WalkAction::kContinue;
  return 0;
}

// One walk of the populated GiB per iteration with `ops`, counting pages.
void walk_rows(benchmark::State& state, const MmWalkOps& ops) {
  if (!ready(state)) return;
  Populated& p = populated();
  uint64_t n = 0;
  for (auto _ : state) {
    n = 0;
    auto r = rcuvm::walk_page_range(p.space, p.start, p.start + kLen, ops, &n);
    benchmark::DoNotOptimize(r);
  }
  finish(state, n);
}

void BM_WalkPteEntry(benchmark::State& state) {
  static constexpr MmWalkOps kOps = {.pte_entry = count_pte};
  walk_rows(state, kOps);
}

void BM_WalkPmdEntry(benchmark::State& state) {
  static constexpr MmWalkOps kOps = {.pmd_entry = count_pmd};
  walk_rows(state, kOps);
}

void BM_PageTableForEach(benchmark::State& state) {
  if (!ready(state)) return;
  Populated& p = populated();
  uint64_t n = 0;
  for (auto _ : state) {
    n = 0;
    p.space.page_table().for_each(p.start, p.start + kLen, [&](uint64_t, Pte) { ++n; });
    benchmark::DoNotOptimize(n);
  }
  finish(state, n);
}

void BM_ResidentPages(benchmark::State& state) {
  if (!ready(state)) return;
  Populated& p = populated();
  uint64_t n = 0;
  for (auto _ : state) {
    auto rows = rcuvm::resident_pages(p.space);
    n = rows.ok() && rows->size() == 1 ? (*rows)[0].anonymous : 0;
    benchmark::DoNotOptimize(rows);
  }
  finish(state, n);
}

void BM_Pagemap(benchmark::State& state) {
  if (!ready(state)) return;
  Populated& p = populated();
  std::vector<uint64_t> last;
  for (auto _ : state) {
    auto pm = rcuvm::pagemap(p.space, p.start, p.start + kLen);
    benchmark::DoNotOptimize(pm);
    if (pm.ok()) last = std::move(*pm);
  }
  uint64_t n = 0;  // counted once, outside the timed loop
  for (uint64_t e : last) n += (e & rcuvm::pagemap_bits::kPresent) != 0;
  finish(state, n);
}

BENCHMARK(BM_WalkPteEntry)->Name("walk/pte_entry")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WalkPmdEntry)->Name("walk/pmd_entry")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PageTableForEach)->Name("walk/for_each")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ResidentPages)->Name("resident_pages")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pagemap)->Name("pagemap")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
