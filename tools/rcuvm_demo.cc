// rcuvm-demo: what the library is for, in a few seconds.
//
// Builds a range tree of 100,000 VMA-like ranges (page-aligned, 4 KiB to
// 64 KiB long, some adjacent, most with a hole after them), the way an address
// space holds its mappings. Then it measures lockless lookups twice:
//
//   1. N reader threads (default 2) call find(addr) at random addresses, as
//      find_vma() does, with nobody writing;
//   2. the same readers again while one writer thread churns the map: it
//      unmaps a random range (erase) and maps a new one of random size into a
//      hole found by the tree's gap search (find_gap + store), as munmap and
//      mmap do, freeing the removed range only after an RCU grace period.
//
// Readers never take a lock. Each lookup runs in an RCU read section and
// checks the range it gets back (the value's own bounds must equal the
// entry's), so a torn or freed entry would be counted and fail the run.
//
//   rcuvm-demo [--seconds 5] [--readers 2] [--ranges 100000] [--seed N]
//
// --seconds is the length of each phase. The report gives lookups/s per
// reader in both phases, the share of reader throughput kept while the writer
// runs, the writer's rate, the tree's shape and memory, the result of
// validate(), and the final rcu::drain() (every removed range reclaimed).
//
// Then the same for an address space (demo_address_space.h): the readers
// become threads that take page faults without the mmap mutex while a writer
// maps and unmaps elsewhere in it; then fork, and the replay of the Linux
// kernel's recorded traces in ../shared/oracle.
// Exits non-zero if anything was inconsistent.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "demo_address_space.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;

std::atomic<uint64_t> g_vmas_created{0};
std::atomic<uint64_t> g_vmas_reclaimed{0};

// A mapping: [start, end), freed only after a grace period once unmapped.
struct Vma final : rcuvm::rcu::Deferred {
  Vma(uint64_t s, uint64_t e) : start(s), end(e) {
    g_vmas_created.fetch_add(1, std::memory_order_relaxed);
  }
  void reclaim() override {
    g_vmas_reclaimed.fetch_add(1, std::memory_order_relaxed);
    delete this;
  }
  const uint64_t start;
  const uint64_t end;
};

using Tree = rcuvm::RangeTree<Vma>;

// splitmix64: one per thread, cheap enough not to show in the lookup rate.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) {
    return uint64_t((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

struct Options {
  double seconds = 5;
  int readers = 2;
  uint64_t ranges = 100000;
  uint64_t seed = 1;
};

[[noreturn]] void usage(const char* bad) {
  if (bad) std::fprintf(stderr, "rcuvm-demo: bad argument '%s'\n", bad);
  std::fprintf(bad ? stderr : stdout,
               "usage: rcuvm-demo [--seconds S] [--readers N] [--ranges N] [--seed N]\n"
               "  --seconds  length of each phase (readers alone, readers + writer); default 5\n"
               "  --readers  lockless reader threads; default 2\n"
               "  --ranges   VMA-like ranges in the tree; default 100000\n");
  std::exit(bad ? 2 : 0);
}

Options parse(int argc, char** argv) {
  Options o;
  o.seed = uint64_t(Clock::now().time_since_epoch().count());
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage(nullptr);
    std::string value;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage(argv[i]);
    }
    char* end = nullptr;
    if (a == "--seconds") {
      o.seconds = std::strtod(value.c_str(), &end);
      if (o.seconds <= 0) usage(argv[i]);
    } else if (a == "--readers") {
      o.readers = int(std::strtol(value.c_str(), &end, 0));
      if (o.readers < 1 || o.readers > 1024) usage(argv[i]);
    } else if (a == "--ranges") {
      o.ranges = std::strtoull(value.c_str(), &end, 0);
      if (o.ranges < 16) usage(argv[i]);
    } else if (a == "--seed") {
      o.seed = std::strtoull(value.c_str(), &end, 0);
    } else {
      usage(argv[i]);
    }
    if (!end || *end) usage(argv[i]);
  }
  return o;
}

// Where the map lives: lookups and new mappings stay inside [lo, hi].
struct Span {
  uint64_t lo, hi;
};

// Fills the tree with `n` ranges: 1..16 pages each, a hole of 0..8 pages after
// (a third of them adjacent to the next), built in O(n) with bulk_load.
Span build(Tree& tree, uint64_t n, Rng& rng, double& ms) {
  std::vector<Tree::Entry> entries;
  entries.reserve(n);
  uint64_t at = 0x555555554000ULL;
  const uint64_t lo = at;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len = kPage * (1 + rng.below(16));
    entries.push_back({at, at + len - 1, new Vma(at, at + len)});
    at += len + (rng.below(3) == 0 ? 0 : kPage * (1 + rng.below(8)));
  }
  auto t0 = Clock::now();
  absl::Status s = tree.bulk_load(entries);
  ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!s.ok()) {
    std::fprintf(stderr, "rcuvm-demo: bulk_load failed: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  return {lo, at + (at - lo) / 8};  // room to map new ranges above the last one
}

struct ReaderResult {
  uint64_t lookups = 0;
  uint64_t hits = 0;
  uint64_t inconsistent = 0;
  double seconds = 0;
};

// find_vma() in a loop: the first range ending above a random address.
void reader(const Tree& tree, Span span, uint64_t seed, const std::atomic<bool>& stop,
            ReaderResult& out) {
  rcuvm::rcu::ThreadScope scope;
  Rng rng{seed};
  uint64_t lookups = 0, hits = 0, bad = 0;
  const uint64_t width = span.hi - span.lo;
  auto t0 = Clock::now();
  while (!stop.load(std::memory_order_relaxed)) {
    for (int i = 0; i < 256; ++i) {
      uint64_t addr = span.lo + rng.below(width);
      rcuvm::rcu::ReadGuard guard;  // keeps the Vma alive while we look at it
      if (auto e = tree.find(addr)) {
        ++hits;
        const Vma* v = e->value;
        if (v->start != e->first || v->end != e->last + 1 || e->last < addr) ++bad;
      }
    }
    lookups += 256;
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  out.lookups = lookups;
  out.hits = hits;
  out.inconsistent = bad;
}

struct WriterResult {
  uint64_t unmaps = 0, maps = 0, no_room = 0, errors = 0;
  double seconds = 0;
};

// munmap + mmap in a loop: erase a random range, then map one of random size
// into the lowest hole above a random address (get_unmapped_area).
void writer(Tree& tree, Span span, uint64_t seed, const std::atomic<bool>& stop,
            WriterResult& out) {
  rcuvm::rcu::ThreadScope scope;
  Rng rng{seed};
  const uint64_t width = span.hi - span.lo;
  auto t0 = Clock::now();
  while (!stop.load(std::memory_order_relaxed)) {
    if (auto e = tree.find(span.lo + rng.below(width))) {
      auto r = tree.erase(e->first);
      if (!r.ok() || *r != e->value) {
        ++out.errors;
      } else {
        rcuvm::rcu::retire(*r);  // readers may still be looking at it
        ++out.unmaps;
      }
    }
    // Ask for a page more than needed, so the page-aligned start still fits.
    uint64_t size = kPage * (1 + rng.below(16));
    uint64_t hint = span.lo + rng.below(width);
    auto gap = tree.find_gap(hint, span.hi, size + kPage - 1);
    if (!gap.ok()) gap = tree.find_gap(span.lo, span.hi, size + kPage - 1);
    if (!gap.ok()) {
      ++out.no_room;
      continue;
    }
    uint64_t start = (*gap + kPage - 1) / kPage * kPage;
    Vma* v = new Vma(start, start + size);
    absl::Status s = tree.store(start, start + size - 1, v);
    if (!s.ok()) {
      ++out.errors;
      delete v;
      g_vmas_reclaimed.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    ++out.maps;
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs the readers (and the writer, if asked) for `seconds`.
std::vector<ReaderResult> run_phase(Tree& tree, Span span, const Options& o, bool with_writer,
                                    uint64_t seed, WriterResult* wr) {
  std::atomic<bool> stop{false};
  std::vector<ReaderResult> rr(o.readers);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.readers; ++i)
    threads.emplace_back(reader, std::cref(tree), span, seed + 1 + i, std::cref(stop),
                         std::ref(rr[i]));
  if (with_writer)
    threads.emplace_back(writer, std::ref(tree), span, seed, std::cref(stop), std::ref(*wr));
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  return rr;
}

// "12.3 M" style.
std::string human(double x) {
  char buf[32];
  if (x >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f G", x / 1e9);
  else if (x >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f M", x / 1e6);
  else if (x >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1f k", x / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

// Mean lookups/s per reader, and the per-reader list.
double per_reader(const std::vector<ReaderResult>& rr, std::string& list) {
  double sum = 0;
  for (size_t i = 0; i < rr.size(); ++i) {
    double rate = rr[i].seconds > 0 ? rr[i].lookups / rr[i].seconds : 0;
    sum += rate;
    list += (i ? ", " : "") + human(rate);
  }
  return rr.empty() ? 0 : sum / rr.size();
}

uint64_t inconsistent(const std::vector<ReaderResult>& rr) {
  uint64_t n = 0;
  for (const auto& r : rr) n += r.inconsistent;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  Rng rng{o.seed};
  std::printf("rcuvm-demo: %" PRIu64
              " VMA-like ranges, %d lockless reader thread%s, 1 writer, "
              "%.1f s per phase, %u CPUs (seed %" PRIu64 ")\n",
              o.ranges, o.readers, o.readers == 1 ? "" : "s", o.seconds,
              std::thread::hardware_concurrency(), o.seed);
  std::fflush(stdout);

  Tree tree(rcuvm::TreeOptions{.track_gaps = true, .rcu = true});
  double build_ms = 0;
  Span span = build(tree, o.ranges, rng, build_ms);
  rcuvm::TreeStats built = tree.stats();
  std::printf("  build     bulk_load of %" PRIu64 " ranges in %.1f ms: %" PRIu64
              " nodes, height %" PRIu64 "\n",
              built.entries, build_ms, built.nodes, built.height);
  std::fflush(stdout);

  std::string alone_list, busy_list;
  auto alone = run_phase(tree, span, o, false, o.seed * 31 + 1, nullptr);
  double alone_rate = per_reader(alone, alone_list);
  std::printf("  readers   alone:       %s lookups/s per reader (%s)\n", human(alone_rate).c_str(),
              alone_list.c_str());
  std::fflush(stdout);

  WriterResult wr;
  auto busy = run_phase(tree, span, o, true, o.seed * 31 + 1000, &wr);
  double busy_rate = per_reader(busy, busy_list);
  double kept = alone_rate > 0 ? 100.0 * busy_rate / alone_rate : 0;
  std::printf("  readers   with writer: %s lookups/s per reader (%s): %.0f%% of the rate kept\n",
              human(busy_rate).c_str(), busy_list.c_str(), kept);
  unsigned cpus = std::thread::hardware_concurrency();
  if (cpus && unsigned(o.readers) + 1 > cpus)
    std::printf(
        "            (%d threads share %u CPUs in this phase: part of the drop is the writer's\n"
        "             CPU time, not contention in the tree)\n",
        o.readers + 1, cpus);
  uint64_t wops = wr.unmaps + wr.maps;
  std::printf("  writer    %s ops/s: %" PRIu64 " unmaps (erase) + %" PRIu64
              " maps (find_gap + store) in %.1f s, %" PRIu64 " errors\n",
              human(wr.seconds > 0 ? wops / wr.seconds : 0).c_str(), wr.unmaps, wr.maps, wr.seconds,
              wr.errors);

  rcuvm::TreeStats ts = tree.stats();
  std::printf("  tree      %" PRIu64 " entries, %" PRIu64 " holes, %" PRIu64 " nodes (%" PRIu64
              " leaves), height %" PRIu64 ", %.1f bytes per range\n",
              ts.entries, ts.nulls, ts.nodes, ts.leaves, ts.height,
              ts.entries ? double(ts.bytes) / ts.entries : 0.0);
  absl::Status valid = tree.validate();
  uint64_t bad = inconsistent(alone) + inconsistent(busy);
  std::printf("  checks    validate(): %s; readers saw %" PRIu64 " inconsistent entries\n",
              valid.ok() ? "OK" : valid.ToString().c_str(), bad);

  // Teardown: empty the tree, retire every remaining range, wait for them all.
  std::vector<Vma*> left;
  {
    rcuvm::rcu::ReadGuard guard;
    auto c = tree.cursor(0);
    while (auto e = c.next()) left.push_back(e->value);
  }
  tree.destroy();
  for (Vma* v : left) rcuvm::rcu::retire(v);
  auto t0 = Clock::now();
  rcuvm::rcu::drain();
  double drain_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  uint64_t created = g_vmas_created.load(), reclaimed = g_vmas_reclaimed.load();
  std::printf("  shutdown  rcu::drain() completed in %.1f ms: %" PRIu64 " of %" PRIu64
              " ranges reclaimed%s\n",
              drain_ms, reclaimed, created, reclaimed == created ? ", none leaked" : " (LEAK)");

  bool ok = valid.ok() && bad == 0 && wr.errors == 0 && reclaimed == created;
  ok &= rcuvm::demo::run_address_space_demo(o.readers, o.seconds, o.seed, RCUVM_SHARED_DIR);
  std::printf("rcuvm-demo: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
