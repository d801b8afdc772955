// bench/vma/fault_bench.cc: page faults and VMA lookups from 1, 2 and 4
// threads, issue 4's "Benchmarks". Three ways side by side:
//
//   path        faults                         lookups
//   (a) mutex   AddressSpace::touch            AddressSpace::find_vma
//               (takes the mmap mutex: a       (takes the mmap mutex, copies
//               whole writer transaction)      the VMA out as a VmaInfo)
//   (b) seq     fault() with fault_lock =      find_vma_rcu (sequence count +
//               kSeqCount                      RCU + reference)
//   (c) pervma  fault() with fault_lock =      lock_vma_rcu (per-VMA read lock)
//               kPerVma
//
// each without a writer, and with one background writer thread that maps and
// unmaps far away from the faulting region (never overlapping it).
//
// The map. make_region(n) maps n private anonymous read-write VMAs of 64
// pages each, from 4 GiB up, each followed by a one-page hole (nothing merges):
//
//   0x100000000                              the churn region, 0x600000000000
//   | V*64 . V*64 . ... V*64 . |   ...   | C*4 . C*4 . ... (16 slots) |
//
// Rows (filter with --benchmark_filter); gbench appends /real_time and
// /threads:N (and /iterations:N for first_touch):
//   fault_present/<path>/writer:<w>  a one-byte READ fault on a page that is
//       already present (the region was mapped with MAP_POPULATE, so every
//       page holds a private anonymous frame). The fault finds its VMA,
//       checks the access against the VMA's flags, reads the PTE, finds it
//       present and writable and is done (speculative: validates by the
//       sequence count (b) or under the VMA's read lock (c)). The "minor
//       fault that finds the PTE" path: no frame is allocated and nothing
//       changes. 1,000 VMAs; the address of each iteration comes from a fixed
//       pseudo-random sequence of 65,536 pages spread over all of them (each
//       thread starts at its own offset).
//   fault_first_touch/<path>/writer:<w>  a one-byte WRITE fault on a page
//       never touched since the VMA was emptied: allocates a frame (the
//       FrameAllocator, one mutex) and installs a new anonymous PTE (CAS on
//       the speculative paths). A fresh region of 16,384 VMAs x 64 pages =
//       1,048,576 pages is built before each run, outside the timing, with the
//       anon_vma of every VMA already prepared (one page written, then
//       MADV_DONTNEED), so no fault needs to change a VMA. The run has a fixed
//       iteration count: every page is faulted exactly once, thread t of T
//       taking the t-th contiguous 1/T of the pages, in address order; after
//       the run the benchmark checks that all 1,048,576 pages are resident.
//   lookup/<way>/writer:<w>  one lookup of a random address of the same
//       1,000-VMA region (the same address sequence as fault_present), the
//       handle dropped at once: find_vma (mutex), find_vma_rcu (b),
//       lock_vma_rcu (c).
//   <w>: none   no writer.
//        churn  one std::thread, started by thread 0 before the timed loop and
//               stopped after it, that in a tight loop maps (MAP_FIXED, 4
//               pages, read-write, anonymous) and unmaps one of 16 slots of
//               the churn region, round robin. Each call takes the mmap mutex
//               and makes the sequence count odd while it runs.
//        paced  the same, sleeping 50 us after each mmap+munmap pair: the
//               interference of a writer without its CPU cost (this machine
//               has two cores, so a tight-loop writer also takes a core away
//               from the faulting threads).
//        other_mm  the churn writer on ANOTHER AddressSpace (an empty one of
//               its own): a control. It shares no lock, count, VMA or tree
//               node with the faulting threads, only the CPUs, the allocator
//               and RCU (grace periods of liburcu-memb, its call_rcu thread).
//
// Counters: items_per_second: faults (lookups) per second summed over the
// threads (UseRealTime). writer_ops_per_s: the writer's mmap and munmap calls
// per second over its own lifetime (0 without a writer). Fault rows of (b) and
// (c), from fault_stats() differences over the run: fallback_frac (faults that
// completed on the locked path / all faults), retries_per_fault (seq_retries /
// faults: speculative attempts retried before success or fallback),
// fb_seq_frac, fb_marked_frac, fb_other_frac (fallbacks by reason / faults).
// lookup/find_vma_rcu: retries_per_lookup (lookup_retries / lookups: one per
// attempt that found the count odd or moved), locked_frac (lookups that gave
// up after 8 attempts and took the mmap mutex). lookup/lock_vma_rcu: miss_frac
// (lookups that returned no handle: the VMA was write-marked).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "benchmark/benchmark.h"
#include "rcuvm/address_space.h"
#include "rcuvm/rcu.h"
#include "rcuvm/vma.h"

namespace {

using rcuvm::Access;
using rcuvm::AddressSpace;
using rcuvm::FaultResult;
using rcuvm::FaultStats;
using rcuvm::kPageSize;
using rcuvm::VmaLockMode;
using Clock = std::chrono::steady_clock;

constexpr int kRw = rcuvm::kProtRead | rcuvm::kProtWrite;
constexpr int kAnonFixed = rcuvm::kMapPrivate | rcuvm::kMapAnonymous | rcuvm::kMapFixed;

constexpr uint64_t kRegion = 0x100000000;  // the faulting region
constexpr uint64_t kVmaPages = 64;
constexpr uint64_t kStride = (kVmaPages + 1) * kPageSize;  // a VMA and its hole
constexpr uint64_t kVmas = 1000;                           // fault_present, lookup
constexpr uint64_t kFirstTouchVmas = 16384;                // fault_first_touch
constexpr uint64_t kFirstTouchPages = kFirstTouchVmas * kVmaPages;

constexpr uint64_t kChurnBase = 0x600000000000;  // the writer's region
constexpr uint64_t kChurnPages = 4;
constexpr uint64_t kChurnStride = (kChurnPages + 1) * kPageSize;
constexpr uint64_t kChurnSlots = 16;
constexpr auto kPacedSleep = std::chrono::microseconds(50);

constexpr size_t kAddrs = 1 << 16;  // the address sequence (a power of two)
constexpr size_t kThreadOffset = 16411;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fault_bench: %s\n", what.c_str());
  std::abort();
}

void must(const absl::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.ToString());
}

void must_fault(const absl::StatusOr<FaultResult>& r) {
  if (!r.ok() || *r != FaultResult::kOk)
    die("fault failed: " + (r.ok() ? std::string("signal") : r.status().ToString()));
}

enum class Path { kMutex, kSeqCount, kPerVma };
enum class WriterMode { kNone, kChurn, kPaced, kOtherMm };

const char* writer_name(WriterMode w) {
  switch (w) {
    case WriterMode::kNone:
      return "none";
    case WriterMode::kChurn:
      return "churn";
    case WriterMode::kPaced:
      return "paced";
    case WriterMode::kOtherMm:
      return "other_mm";
  }
  return "?";
}

uint64_t vma_start(uint64_t i) { return kRegion + i * kStride; }

// n VMAs of kVmaPages pages from kRegion up, each followed by a hole.
std::unique_ptr<AddressSpace> make_region(VmaLockMode mode, uint64_t n, int extra_flags) {
  rcuvm::AddressSpaceOptions opt;
  opt.fault_lock = mode;
  auto as = std::make_unique<AddressSpace>(opt);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t a = vma_start(i);
    auto r = as->mmap(a, kVmaPages * kPageSize, kRw, kAnonFixed | extra_flags, nullptr, 0);
    if (!r.ok() || *r != a) die("make_region: mmap failed");
  }
  if (as->map_count() != n) die("make_region: VMAs merged");
  return as;
}

// The fault_present and lookup maps, built once per lock mode and kept (no
// row changes them: present-page faults install nothing, and the writer
// leaves the churn region empty when it stops).
AddressSpace& populated_space(VmaLockMode mode) {
  static std::map<VmaLockMode, std::unique_ptr<AddressSpace>> spaces;
  auto& as = spaces[mode];
  if (!as) {
    as = make_region(mode, kVmas, rcuvm::kMapPopulate);
    if (as->anon_pages(kRegion, vma_start(kVmas)) != kVmas * kVmaPages)
      die("populated_space: MAP_POPULATE left pages out");
    must(as->validate(), "populated_space");
  }
  return *as;
}

// A fresh first-touch map: every VMA has its anon_vma, no page is resident.
std::unique_ptr<AddressSpace> first_touch_space(VmaLockMode mode) {
  auto as = make_region(mode, kFirstTouchVmas, 0);
  for (uint64_t i = 0; i < kFirstTouchVmas; ++i) {
    must_fault(as->touch(vma_start(i), /*write=*/true));
    must(as->madvise(vma_start(i), kVmaPages * kPageSize, rcuvm::kMadvDontNeed), "DONTNEED");
  }
  if (as->anon_pages(kRegion, vma_start(kFirstTouchVmas)) != 0)
    die("first_touch_space: pages left resident");
  if (as->map_count() != kFirstTouchVmas) die("first_touch_space: VMAs merged");
  return as;
}

// A fixed pseudo-random sequence of page addresses in the kVmas region.
const std::vector<uint64_t>& addresses() {
  static const std::vector<uint64_t> v = [] {
    std::mt19937_64 rng(42);
    std::vector<uint64_t> a(kAddrs);
    for (uint64_t& x : a) x = vma_start(rng() % kVmas) + (rng() % kVmaPages) * kPageSize;
    return a;
  }();
  return v;
}

// The background writer: mmap/munmap churn far from the faulting region.
class Writer {
 public:
  Writer(AddressSpace& as, WriterMode mode) : as_(as), mode_(mode) {
    if (mode != WriterMode::kNone) thread_ = std::thread([this] { run(); });
  }
  ~Writer() { stop(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  // mmap and munmap calls per second over the writer's lifetime.
  double ops_per_second() const { return seconds_ > 0 ? static_cast<double>(ops_) / seconds_ : 0; }

 private:
  void run() {
    rcuvm::rcu::ensure_registered();
    const uint64_t len = kChurnPages * kPageSize;
    const Clock::time_point t0 = Clock::now();
    uint64_t n = 0, slot = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      const uint64_t a = kChurnBase + slot * kChurnStride;
      auto r = as_.mmap(a, len, kRw, kAnonFixed, nullptr, 0);
      if (!r.ok() || *r != a) die("writer: mmap failed");
      must(as_.munmap(a, len), "writer: munmap");
      n += 2;
      slot = (slot + 1) % kChurnSlots;
      if (mode_ == WriterMode::kPaced) std::this_thread::sleep_for(kPacedSleep);
    }
    seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
    ops_ = n;
  }

  AddressSpace& as_;
  const WriterMode mode_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  uint64_t ops_ = 0;
  double seconds_ = 0;
};

// What thread 0 sets up for one run of a row and every thread uses.
struct Shared {
  AddressSpace* as = nullptr;
  std::unique_ptr<AddressSpace> owned;  // first_touch: this run's own map
  std::unique_ptr<AddressSpace> other;  // writer:other_mm: the writer's map
  std::unique_ptr<Writer> writer;
  FaultStats before;
};

void start_writer(Shared& sh, WriterMode wm) {
  AddressSpace* target = sh.as;
  if (wm == WriterMode::kOtherMm) {
    sh.other = std::make_unique<AddressSpace>();
    target = sh.other.get();
  }
  sh.writer = std::make_unique<Writer>(*target, wm);
}

std::atomic<Shared*> g_shared{nullptr};
std::atomic<int> g_done{0};  // threads other than 0 past their loop

// Thread 0: publishes `sh` (the writer already running). Others: wait for it.
// Google Benchmark also holds every thread at a barrier before the loop; this
// does not rely on it.
Shared* join_run(benchmark::State& state, Shared* sh) {
  rcuvm::rcu::ensure_registered();
  if (state.thread_index() == 0) {
    sh->before = sh->as->fault_stats();
    g_done.store(0, std::memory_order_relaxed);
    g_shared.store(sh, std::memory_order_release);
    return sh;
  }
  while (!(sh = g_shared.load(std::memory_order_acquire))) std::this_thread::yield();
  return sh;
}

// After the loop. Thread 0 waits for the others to leave theirs, stops the
// writer and reports; returns the Shared to free (null for the others).
std::unique_ptr<Shared> leave_run(benchmark::State& state) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  if (state.thread_index() != 0) {
    g_done.fetch_add(1, std::memory_order_acq_rel);
    return nullptr;
  }
  while (g_done.load(std::memory_order_acquire) != state.threads() - 1) std::this_thread::yield();
  std::unique_ptr<Shared> sh(g_shared.exchange(nullptr, std::memory_order_acq_rel));
  sh->writer->stop();
  state.counters["writer_ops_per_s"] = sh->writer->ops_per_second();
  return sh;
}

// Fault counters of (b) and (c), from fault_stats() differences.
void fault_counters(benchmark::State& state, const Shared& sh) {
  const FaultStats a = sh.as->fault_stats();
  const FaultStats& b = sh.before;
  const double faults =
      static_cast<double>((a.speculative - b.speculative) + (a.locked - b.locked));
  if (faults == 0) return;
  auto frac = [&](uint64_t x, uint64_t y) { return static_cast<double>(x - y) / faults; };
  state.counters["fallback_frac"] = frac(a.locked, b.locked);
  state.counters["retries_per_fault"] = frac(a.seq_retries, b.seq_retries);
  state.counters["fb_seq_frac"] = frac(a.fb_seq, b.fb_seq);
  state.counters["fb_marked_frac"] = frac(a.fb_marked, b.fb_marked);
  state.counters["fb_other_frac"] =
      frac(a.fallbacks() - a.fb_seq - a.fb_marked, b.fallbacks() - b.fb_seq - b.fb_marked);
}

VmaLockMode mode_of(Path p) {
  return p == Path::kPerVma ? VmaLockMode::kPerVma : VmaLockMode::kSeqCount;
}

// --- fault_present ------------------------------------------------------------

void BM_fault_present(benchmark::State& state, Path path, WriterMode wm) {
  Shared* sh = nullptr;
  if (state.thread_index() == 0) {
    sh = new Shared;
    sh->as = &populated_space(mode_of(path));
    start_writer(*sh, wm);
  }
  sh = join_run(state, sh);
  AddressSpace& as = *sh->as;
  const std::vector<uint64_t>& addrs = addresses();
  size_t k = static_cast<size_t>(state.thread_index()) * kThreadOffset;
  for (auto _ : state) {
    const uint64_t a = addrs[k++ & (kAddrs - 1)];
    if (path == Path::kMutex)
      must_fault(as.touch(a, /*write=*/false));
    else
      must_fault(as.fault(a, Access::kRead));
  }
  if (auto done = leave_run(state)) {
    fault_counters(state, *done);
    if (as.anon_pages(kRegion, vma_start(kVmas)) != kVmas * kVmaPages)
      die("fault_present: the region changed");
  }
}

// --- fault_first_touch ----------------------------------------------------------

void BM_fault_first_touch(benchmark::State& state, Path path, WriterMode wm) {
  Shared* sh = nullptr;
  if (state.thread_index() == 0) {
    sh = new Shared;
    sh->owned = first_touch_space(mode_of(path));
    sh->as = sh->owned.get();
    start_writer(*sh, wm);
  }
  sh = join_run(state, sh);
  AddressSpace& as = *sh->as;
  const uint64_t per_thread = kFirstTouchPages / static_cast<uint64_t>(state.threads());
  uint64_t idx = per_thread * static_cast<uint64_t>(state.thread_index());
  const uint64_t end = idx + per_thread;
  for (auto _ : state) {
    if (idx == end) die("fault_first_touch: more iterations than pages");
    const uint64_t a = vma_start(idx / kVmaPages) + (idx % kVmaPages) * kPageSize;
    ++idx;
    if (path == Path::kMutex)
      must_fault(as.touch(a, /*write=*/true));
    else
      must_fault(as.fault(a, Access::kWrite));
  }
  if (auto done = leave_run(state)) {
    fault_counters(state, *done);
    const uint64_t resident = as.anon_pages(kRegion, vma_start(kFirstTouchVmas));
    if (resident != per_thread * static_cast<uint64_t>(state.threads()))
      die("fault_first_touch: " + std::to_string(resident) + " pages resident");
    done->owned.reset();
    rcuvm::rcu::drain();
  }
}

// --- lookup ---------------------------------------------------------------------

void BM_lookup(benchmark::State& state, Path path, WriterMode wm) {
  Shared* sh = nullptr;
  if (state.thread_index() == 0) {
    sh = new Shared;
    sh->as = &populated_space(VmaLockMode::kPerVma);
    start_writer(*sh, wm);
  }
  sh = join_run(state, sh);
  const AddressSpace& as = *sh->as;
  const std::vector<uint64_t>& addrs = addresses();
  size_t k = static_cast<size_t>(state.thread_index()) * kThreadOffset;
  uint64_t misses = 0;
  for (auto _ : state) {
    const uint64_t a = addrs[k++ & (kAddrs - 1)];
    switch (path) {
      case Path::kMutex: {
        auto v = as.find_vma(a);
        misses += !v;
        benchmark::DoNotOptimize(v);
        break;
      }
      case Path::kSeqCount: {
        rcuvm::VmaRef v = as.find_vma_rcu(a);
        misses += !v;
        benchmark::DoNotOptimize(v->start);
        break;
      }
      case Path::kPerVma: {
        rcuvm::VmaRef v = as.lock_vma_rcu(a);
        misses += !v;
        if (v) benchmark::DoNotOptimize(v->start);
        break;
      }
    }
  }
  if (path == Path::kPerVma)
    state.counters["miss_frac"] =
        benchmark::Counter(static_cast<double>(misses), benchmark::Counter::kAvgIterations);
  else if (misses)
    die("lookup: no VMA found inside the region");
  if (auto done = leave_run(state); done && path == Path::kSeqCount) {
    const FaultStats now = done->as->fault_stats();
    state.counters["retries_per_lookup"] = benchmark::Counter(
        static_cast<double>(now.lookup_retries - done->before.lookup_retries),
        benchmark::Counter::kAvgIterations);
    state.counters["locked_frac"] = benchmark::Counter(
        static_cast<double>(now.lookup_locked - done->before.lookup_locked),
        benchmark::Counter::kAvgIterations);
  }
}

void register_all() {
  struct Named {
    const char* name;
    Path path;
  };
  const std::array<Named, 3> fault_paths = {
      {{"touch", Path::kMutex}, {"seqcount", Path::kSeqCount}, {"pervma", Path::kPerVma}}};
  const std::array<Named, 3> lookups = {{{"find_vma", Path::kMutex},
                                         {"find_vma_rcu", Path::kSeqCount},
                                         {"lock_vma_rcu", Path::kPerVma}}};
  const WriterMode writers[] = {WriterMode::kNone, WriterMode::kChurn, WriterMode::kPaced,
                                WriterMode::kOtherMm};
  const int thread_counts[] = {1, 2, 4};
  auto name = [](const char* kind, const char* way, WriterMode w) {
    return std::string(kind) + "/" + way + "/writer:" + writer_name(w);
  };
  for (WriterMode w : writers)
    for (const Named& p : fault_paths) {
      auto* b = benchmark::RegisterBenchmark(name("fault_present", p.name, w).c_str(),
                                             BM_fault_present, p.path, w);
      b->UseRealTime()->Unit(benchmark::kNanosecond);
      for (int t : thread_counts) b->Threads(t);
    }
  for (WriterMode w : writers)
    for (const Named& p : fault_paths)
      for (int t : thread_counts) {
        auto* b = benchmark::RegisterBenchmark(name("fault_first_touch", p.name, w).c_str(),
                                               BM_fault_first_touch, p.path, w);
        // Every page exactly once: fixed iterations per thread.
        b->Iterations(static_cast<benchmark::IterationCount>(kFirstTouchPages) / t)
            ->Threads(t)
            ->UseRealTime()
            ->Unit(benchmark::kNanosecond);
      }
  for (WriterMode w : writers)
    for (const Named& p : lookups) {
      auto* b =
          benchmark::RegisterBenchmark(name("lookup", p.name, w).c_str(), BM_lookup, p.path, w);
      b->UseRealTime()->Unit(benchmark::kNanosecond);
      for (int t : thread_counts) b->Threads(t);
    }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rcuvm::rcu::drain();
  return 0;
}
