// bench/tree_bench.cc: rcuvm::RangeTree against its peers on the workloads of
// peers/LINUX-MAPLE.md (W1..W6, defined exactly in workloads.h).
//
// Peers, all in one binary so that ratios come from one run:
//   rcuvm              RangeTree<Rec> in allocation mode + RCU (as mm uses it);
//                      readers open an rcu::ReadGuard per lookup, as the maple
//                      workload does with rcu_read_lock()
//   std_map_shmutex    std::map keyed by start behind std::shared_mutex
//   absl_btree_shmutex absl::btree_map keyed by start behind std::shared_mutex
//   absl_btree_mutex   absl::btree_map keyed by start behind absl::Mutex
//   tbb_cmap           tbb::concurrent_map keyed by last (a forward-only skip
//                      list: lower_bound(a) is the lookup); its erase is neither
//                      concurrent nor fast, so it sits out W3 and W6 with a writer
//   linux_maple        the kernel's lib/maple_tree.c (tree_bench_maple only;
//                      see scripts/build_maple_peer.sh); linux_maple_fastslab
//                      in tree_bench_maple_fastslab, with a SLUB-like allocator
// "find" is find_vma: the first range ending at or above a. "load" is the
// value of the range holding a, or null.
//
// Rows (names are filterable with --benchmark_filter):
//   W1_find/<peer>/<build>/<n>, W1_load/..., W1_walk/linux_maple/...
//   W5_bytes/<peer>/<build>/<n>          counters only: bytes_per_range
//   W2_insert/<peer>/<random|ascending|bulk>/<n>
//   W3_churn/<peer>/100000
//   W4_<dup|fork|one_by_one|bulk>/<peer>/<n>
//   W6_read/<peer>/readers:<r>/writer:<0|1>
//   W6_alternating/<peer>/readers:1   one reader, the writer switched on and
//                          off in 0.2 s windows (2 x --rcuvm_w6_seconds in all):
//                          Mlookups_per_s_writer_off/_on, kept_pct,
//                          kept_pct_median_pair
// Every row has the counter ns_per_op (per lookup, per insert, per churn op
// = half a pair, per copied entry); W4 rows also Mentries_per_s; W6 rows
// Mlookups_per_s (all readers), per_reader_Mlookups_per_s, writer_Kpairs_per_s,
// reader_cpu_pct (share of wall time the readers were on a CPU) and
// per_reader_Mlookups_per_cpu_s (their rate per CPU second).
//
// Extra flags (before the --benchmark_* ones):
//   --rcuvm_time_scale=X   multiplies every row's minimum time (default 1)
//   --rcuvm_w6_seconds=X   seconds per W6 configuration (default 1)
//   --rcuvm_w6_writer_pause_ns=X  the writer of the W6_read rows spins (on its
//                          clock, writing nothing shared) until X ns have
//                          passed since the start of each pair: a throttled
//                          writer, to measure how the readers' loss scales
//                          with the write rate (default 0: the W3 churn at
//                          full speed; W6_alternating ignores it)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "workloads.h"

#ifdef RCUVM_BENCH_HAVE_TBB
#include <oneapi/tbb/concurrent_map.h>
#include <oneapi/tbb/tbb_allocator.h>
#endif
#ifdef RCUVM_BENCH_HAVE_MAPLE
#include "maple_shim.h"
#ifndef RCUVM_BENCH_MAPLE_NAME
#define RCUVM_BENCH_MAPLE_NAME "linux_maple"
#endif
#endif

namespace {

namespace wl = rcuvm_bench;
using wl::Range;
using Clock = std::chrono::steady_clock;

double g_time_scale = 1.0;
double g_w6_seconds = 1.0;
int64_t g_w6_writer_pause_ns = 0;

// CPU time the calling thread has used, in seconds.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tree_bench: %s\n", what.c_str());
  std::abort();
}

// --- Shared inputs --------------------------------------------------------

// What a tree stores for range i: a pointer to {start, last}, 8-byte aligned,
// never dereferenced in timed loops.
struct Rec {
  uint64_t start;
  uint64_t last;
};

struct Inputs {
  wl::Layout layout;        // the first 1e6 ranges
  std::vector<Rec> recs;    // recs[i] is stored for range i
  std::vector<Rec> copies;  // what a fork stores in place of recs[i]
};

const Inputs& inputs() {
  static const Inputs in = [] {
    Inputs x;
    x.layout = wl::make_layout(wl::kSizes.back());
    x.recs.reserve(x.layout.ranges.size());
    for (const Range& r : x.layout.ranges) x.recs.push_back({r.start, r.last});
    x.copies = x.recs;
    return x;
  }();
  return in;
}
const std::vector<Range>& ranges() { return inputs().layout.ranges; }
Rec* rec(size_t i) { return const_cast<Rec*>(&inputs().recs[i]); }
size_t rec_index(const void* v) { return static_cast<const Rec*>(v) - inputs().recs.data(); }
void* copy_of(void* v) { return const_cast<Rec*>(&inputs().copies[rec_index(v)]); }

const std::vector<uint32_t>& order_for(size_t n) {
  static std::map<size_t, std::vector<uint32_t>> cache;
  auto& v = cache[n];
  if (v.empty()) v = wl::random_order(n);
  return v;
}

// W1 addresses (seed 2) over the first n ranges.
const std::vector<uint64_t>& w1_addresses(size_t n) {
  static std::map<size_t, std::vector<uint64_t>> cache;
  auto& v = cache[n];
  if (v.empty()) v = wl::lookup_addresses(ranges(), n, wl::kLookupSeed);
  return v;
}

// The reference answer for find(a) over the first n layout ranges.
const Rec* expected_find(size_t n, uint64_t a) {
  const auto& r = ranges();
  auto end = r.begin() + static_cast<std::ptrdiff_t>(n);
  auto it = std::lower_bound(r.begin(), end, a, [](const Range& x, uint64_t v) { return x.last < v; });
  return it == end ? nullptr : rec(static_cast<size_t>(it - r.begin()));
}

enum class Build { kRandom, kAscending, kBulk };
const char* build_name(Build b) {
  switch (b) {
    case Build::kRandom: return "random";
    case Build::kAscending: return "ascending";
    case Build::kBulk: return "bulk";
  }
  return "?";
}

// --- A counting allocator for the peers' W5 bytes ---------------------------

// Bytes the standard containers asked for on this thread (W5 takes deltas on
// the building thread). Thread-local so that it costs one add.
thread_local int64_t tl_container_bytes = 0;

template <typename T, typename Base = std::allocator<T>>
struct CountingAllocator : Base {
  using value_type = T;
  template <typename U>
  struct rebind {
    using other = CountingAllocator<U, typename std::allocator_traits<Base>::template rebind_alloc<U>>;
  };
  CountingAllocator() = default;
  template <typename U, typename B>
  CountingAllocator(const CountingAllocator<U, B>&) {}  // NOLINT: allocator conversion
  T* allocate(size_t n) {
    tl_container_bytes += static_cast<int64_t>(n * sizeof(T));
    return Base::allocate(n);
  }
  void deallocate(T* p, size_t n) {
    tl_container_bytes -= static_cast<int64_t>(n * sizeof(T));
    Base::deallocate(p, n);
  }
  friend bool operator==(const CountingAllocator&, const CountingAllocator&) { return true; }
};

// --- Peers -------------------------------------------------------------------
//
// Each peer offers: store(range, rec), erase(range), find(a), load(a),
// bulk(n) (when kHasBulk), dup_from / copy_each_from (W4), memory_mark() and
// bytes_since(mark) (W5), and the traits below.

class RcuvmPeer {
 public:
  using Tree = rcuvm::RangeTree<Rec>;
  static constexpr const char* kName = "rcuvm";
  static constexpr bool kHasBulk = true;
  static constexpr bool kHasFork = true;
  static constexpr bool kConcurrentErase = true;
  static constexpr bool kHasChurn = true;

  // A tree built privately (bulk) starts outside RCU mode and is published by
  // set_rcu(true), as the maple workload does with mt_set_in_rcu.
  explicit RcuvmPeer(bool rcu = true)
      : t_(std::make_unique<Tree>(rcuvm::TreeOptions{.track_gaps = true, .rcu = rcu})) {}

  void store(const Range& r, Rec* v) {
    if (auto s = t_->store(r.start, r.last, v); !s.ok()) die("rcuvm store: " + s.ToString());
  }
  void erase(const Range& r) {
    if (auto s = t_->erase(r.start); !s.ok()) die("rcuvm erase: " + s.status().ToString());
  }
  const Rec* find(uint64_t a) const {
    rcuvm::rcu::ReadGuard g;
    auto e = t_->find(a);
    return e ? e->value : nullptr;
  }
  const Rec* load(uint64_t a) const {
    rcuvm::rcu::ReadGuard g;
    return t_->load(a);
  }
  void bulk(size_t n) {
    std::vector<Tree::Entry> e;
    e.reserve(n);
    for (size_t i = 0; i < n; ++i) e.push_back({ranges()[i].start, ranges()[i].last, rec(i)});
    if (auto s = t_->bulk_load(e); !s.ok()) die("rcuvm bulk_load: " + s.ToString());
    t_->set_rcu(true);
  }
  // W4 bulk: read the source in order, then bulk_load.
  void bulk_from(const RcuvmPeer& src, size_t n) {
    std::vector<Tree::Entry> e;
    e.reserve(n);
    {
      rcuvm::rcu::ReadGuard g;
      auto c = src.t_->cursor(0);
      while (auto x = c.next()) e.push_back(*x);
    }
    if (auto s = t_->bulk_load(e); !s.ok()) die("rcuvm bulk_load: " + s.ToString());
    t_->set_rcu(true);
  }
  void dup_from(const RcuvmPeer& src) {
    if (auto s = src.t_->dup_into(*t_); !s.ok()) die("rcuvm dup_into: " + s.ToString());
  }
  // fork: dup, then replace every entry with the child's copy in place
  // (Cursor::replace, one atomic store each), under the child's writer lock,
  // as dup_mmap does.
  void fork_from(const RcuvmPeer& src) {
    dup_from(src);
    t_->lock();
    auto c = t_->cursor(0);
    while (auto e = c.next()) {
      if (auto s = c.replace(static_cast<Rec*>(copy_of(e->value))); !s.ok()) {
        t_->unlock();
        die("rcuvm cursor replace: " + s.ToString());
      }
    }
    t_->unlock();
  }
  // one by one: iterate the source under its writer lock, store each entry.
  void copy_each_from(const RcuvmPeer& src) {
    src.t_->lock();
    auto c = src.t_->cursor(0);
    while (auto e = c.next()) store({e->first, e->last}, e->value);
    src.t_->unlock();
  }

  static int64_t memory_mark() { return 0; }
  int64_t bytes_since(int64_t) const { return static_cast<int64_t>(t_->stats().bytes); }
  std::string shape() const {
    auto s = t_->stats();
    return "nodes=" + std::to_string(s.nodes) + " height=" + std::to_string(s.height);
  }
  static void quiesce() { rcuvm::rcu::drain(); }
  std::string check() const {
    auto s = t_->validate();
    return s.ok() ? std::string() : "rcuvm validate: " + s.ToString();
  }

 private:
  std::unique_ptr<Tree> t_;
};

struct SharedMutexLock {
  std::shared_mutex m;
  void lock() { m.lock(); }
  void unlock() { m.unlock(); }
  void lock_shared() { m.lock_shared(); }
  void unlock_shared() { m.unlock_shared(); }
};

struct AbslMutexLock {
  absl::Mutex m;
  void lock() { m.Lock(); }
  void unlock() { m.Unlock(); }
  void lock_shared() { m.ReaderLock(); }
  void unlock_shared() { m.ReaderUnlock(); }
};

struct MapVal {
  uint64_t last;
  Rec* v;
};
using MapAlloc = CountingAllocator<std::pair<const uint64_t, MapVal>>;
using StdMap = std::map<uint64_t, MapVal, std::less<uint64_t>, MapAlloc>;
using AbslMap = absl::btree_map<uint64_t, MapVal, std::less<uint64_t>, MapAlloc>;

struct StdMapShm {
  using Map = StdMap;
  using Lock = SharedMutexLock;
  static constexpr const char* kName = "std_map_shmutex";
};
struct AbslShm {
  using Map = AbslMap;
  using Lock = SharedMutexLock;
  static constexpr const char* kName = "absl_btree_shmutex";
};
struct AbslMtx {
  using Map = AbslMap;
  using Lock = AbslMutexLock;
  static constexpr const char* kName = "absl_btree_mutex";
};

// An ordered map keyed by start, behind a reader-writer lock: readers take it
// shared for each lookup, writers exclusive for each write.
template <typename Cfg>
class LockedMapPeer {
 public:
  static constexpr const char* kName = Cfg::kName;
  static constexpr bool kHasBulk = true;  // appends with an end() hint
  static constexpr bool kHasFork = false;
  static constexpr bool kConcurrentErase = true;
  static constexpr bool kHasChurn = true;

  explicit LockedMapPeer(bool = true) {}

  void store(const Range& r, Rec* v) {
    std::unique_lock l(lock_);
    map_.insert_or_assign(r.start, MapVal{r.last, v});
  }
  void erase(const Range& r) {
    std::unique_lock l(lock_);
    map_.erase(r.start);
  }
  const Rec* find(uint64_t a) const {
    std::shared_lock l(lock_);
    auto it = map_.upper_bound(a);
    if (it != map_.begin()) {
      auto p = std::prev(it);
      if (p->second.last >= a) return p->second.v;
    }
    return it == map_.end() ? nullptr : it->second.v;
  }
  const Rec* load(uint64_t a) const {
    std::shared_lock l(lock_);
    auto it = map_.upper_bound(a);
    if (it == map_.begin()) return nullptr;
    --it;
    return it->second.last >= a ? it->second.v : nullptr;
  }
  void bulk(size_t n) {
    std::unique_lock l(lock_);
    for (size_t i = 0; i < n; ++i) map_.emplace_hint(map_.end(), ranges()[i].start, MapVal{ranges()[i].last, rec(i)});
  }
  void bulk_from(const LockedMapPeer& src, size_t) {
    std::shared_lock ls(src.lock_);
    std::unique_lock l(lock_);
    for (const auto& [k, v] : src.map_) map_.emplace_hint(map_.end(), k, v);
  }
  // The container's own copy (its "dup").
  void dup_from(const LockedMapPeer& src) {
    std::shared_lock ls(src.lock_);
    std::unique_lock l(lock_);
    map_ = src.map_;
  }
  void fork_from(const LockedMapPeer& src) { dup_from(src); }
  void copy_each_from(const LockedMapPeer& src) {
    std::shared_lock ls(src.lock_);
    for (const auto& [k, v] : src.map_) {
      std::unique_lock l(lock_);
      map_.emplace(k, v);
    }
  }

  static int64_t memory_mark() { return tl_container_bytes; }
  int64_t bytes_since(int64_t mark) const { return tl_container_bytes - mark; }
  std::string shape() const { return {}; }
  static void quiesce() {}
  std::string check() const { return {}; }

 private:
  mutable typename Cfg::Lock lock_;
  typename Cfg::Map map_;
};

using StdMapPeer = LockedMapPeer<StdMapShm>;
using AbslShmPeer = LockedMapPeer<AbslShm>;
using AbslMutexPeer = LockedMapPeer<AbslMtx>;

#ifdef RCUVM_BENCH_HAVE_TBB
// tbb::concurrent_map keyed by last: lower_bound(a) is the first range ending
// at or above a. Inserts and lookups are concurrent; erase is not
// (unsafe_erase), so it runs W3 alone and sits out W6 with a writer.
class TbbPeer {
  struct Val {
    uint64_t start;
    Rec* v;
  };
  using Alloc = CountingAllocator<std::pair<const uint64_t, Val>,
                                  tbb::tbb_allocator<std::pair<const uint64_t, Val>>>;
  using Map = tbb::concurrent_map<uint64_t, Val, std::less<uint64_t>, Alloc>;

 public:
  static constexpr const char* kName = "tbb_cmap";
  static constexpr bool kHasBulk = false;
  static constexpr bool kHasFork = false;
  static constexpr bool kConcurrentErase = false;
  // unsafe_erase() of oneTBB 2021.8 finds the predecessors of the node by
  // walking each level from the head (fill_prev_array_for_existing_node):
  // O(n) per erase, about 100 us per W3 pair at 1e5 and growing, so the
  // 300,000 pairs of W3 would take minutes. It sits out W3.
  static constexpr bool kHasChurn = false;

  explicit TbbPeer(bool = true) {}
  void store(const Range& r, Rec* v) { map_.emplace(r.last, Val{r.start, v}); }
  void erase(const Range& r) { map_.unsafe_erase(r.last); }
  const Rec* find(uint64_t a) const {
    auto it = map_.lower_bound(a);
    return it == map_.end() ? nullptr : it->second.v;
  }
  const Rec* load(uint64_t a) const {
    auto it = map_.lower_bound(a);
    return it != map_.end() && it->second.start <= a ? it->second.v : nullptr;
  }
  void bulk(size_t) {}
  void bulk_from(const TbbPeer&, size_t) {}
  void dup_from(const TbbPeer& src) { map_ = src.map_; }
  void fork_from(const TbbPeer& src) { dup_from(src); }
  void copy_each_from(const TbbPeer& src) {
    for (const auto& [k, v] : src.map_) map_.emplace(k, v);
  }
  static int64_t memory_mark() { return tl_container_bytes; }
  int64_t bytes_since(int64_t mark) const { return tl_container_bytes - mark; }
  std::string shape() const { return {}; }
  static void quiesce() {}
  std::string check() const { return {}; }

 private:
  Map map_;
};
#endif

#ifdef RCUVM_BENCH_HAVE_MAPLE
// The kernel's maple tree through bench/maple_peer/maple_shim.h, with the mm
// flags (MT_FLAGS_ALLOC_RANGE | MT_FLAGS_USE_RCU) and the harness allocator.
class MaplePeer {
 public:
  static constexpr const char* kName = RCUVM_BENCH_MAPLE_NAME;
  static constexpr bool kHasBulk = true;
  static constexpr bool kHasFork = true;
  static constexpr bool kConcurrentErase = true;
  static constexpr bool kHasChurn = true;

  explicit MaplePeer(bool rcu = true)
      : rcu_(rcu), t_(maple_peer_new(MAPLE_PEER_ALLOC_RANGE | (rcu ? MAPLE_PEER_USE_RCU : 0))) {
    if (!t_) die("maple_peer_new failed");
  }
  ~MaplePeer() { maple_peer_destroy(t_); }
  MaplePeer(const MaplePeer&) = delete;
  MaplePeer& operator=(const MaplePeer&) = delete;

  void store(const Range& r, Rec* v) {
    if (int e = maple_peer_store(t_, r.start, r.last, v)) die("maple store: " + std::to_string(e));
  }
  void erase(const Range& r) { maple_peer_erase(t_, r.start); }
  const Rec* find(uint64_t a) const { return static_cast<const Rec*>(maple_peer_find(t_, a)); }
  const Rec* load(uint64_t a) const { return static_cast<const Rec*>(maple_peer_load(t_, a)); }
  const Rec* walk(uint64_t a) const { return static_cast<const Rec*>(maple_peer_walk(t_, a)); }
  void bulk(size_t n) {
    std::vector<maple_peer_entry> e;
    e.reserve(n);
    for (size_t i = 0; i < n; ++i) e.push_back({ranges()[i].start, ranges()[i].last, rec(i)});
    if (int r = maple_peer_bulk(t_, e.data(), n, 1)) die("maple bulk: " + std::to_string(r));
  }
  void bulk_from(const MaplePeer& src, size_t n) {
    if (int r = maple_peer_bulk_from(src.t_, t_, n, 1)) die("maple bulk_from: " + std::to_string(r));
  }
  void dup_from(const MaplePeer& src) {
    if (int r = maple_peer_dup(src.t_, t_)) die("maple __mt_dup: " + std::to_string(r));
  }
  void fork_from(const MaplePeer& src) {
    auto copy = [](void* entry, void*) -> void* { return copy_of(entry); };
    if (int r = maple_peer_fork(src.t_, t_, copy, nullptr)) die("maple fork: " + std::to_string(r));
  }
  void copy_each_from(const MaplePeer& src) {
    if (int r = maple_peer_copy_each(src.t_, t_)) die("maple copy_each: " + std::to_string(r));
  }
  static int64_t memory_mark() { return static_cast<int64_t>(maple_peer_live_nodes()) * 256; }
  int64_t bytes_since(int64_t mark) const {
    return static_cast<int64_t>(maple_peer_live_nodes()) * 256 - mark;
  }
  std::string shape() const { return "height=" + std::to_string(maple_peer_height(t_)); }
  static void quiesce() { maple_peer_barrier(); }
  std::string check() const { return {}; }

 private:
  bool rcu_;
  maple_peer* t_;
};
#endif

// --- One cached tree at a time ------------------------------------------------
//
// W1 and W5 rows of one (peer, n, build) share a tree; W4 rows of one
// (peer, n) share a source; W6 rows of one peer share a tree and its churn.
// Only one lives at a time, so memory stays bounded by the largest tree.

struct Slot {
  const void* tag = nullptr;
  std::string key;
  std::shared_ptr<void> tree;
  std::shared_ptr<void> extra;
  int64_t bytes = 0;
  std::string shape;
  std::string error;
};
Slot g_slot;

template <typename P>
const void* peer_tag() {
  static const char tag = 0;
  return &tag;
}

template <typename P>
void build(P& t, size_t n, Build b) {
  switch (b) {
    case Build::kRandom:
      for (uint32_t i : order_for(n)) t.store(ranges()[i], rec(i));
      break;
    case Build::kAscending:
      for (size_t i = 0; i < n; ++i) t.store(ranges()[i], rec(i));
      break;
    case Build::kBulk:
      t.bulk(n);
      break;
  }
}

// Checks find() and load() on the first 4096 W1 addresses against the layout.
template <typename P>
std::string verify(const P& t, size_t n) {
  if (std::string e = t.check(); !e.empty()) return e;
  const auto& a = w1_addresses(n);
  for (size_t k = 0; k < 4096; ++k) {
    const Rec* want = expected_find(n, a[k]);
    const Rec* got = t.find(a[k]);
    const Rec* want_load = want && want->start <= a[k] ? want : nullptr;
    const Rec* got_load = t.load(a[k]);
    if (got != want || got_load != want_load) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s n=%zu: wrong answer at 0x%" PRIx64 " (find %s, load %s)", P::kName, n,
                    a[k], got == want ? "ok" : "wrong", got_load == want_load ? "ok" : "wrong");
      return buf;
    }
  }
  return {};
}

void release_slot() {
  g_slot = Slot{};
  rcuvm::rcu::drain();
}

template <typename P>
Slot& cached_tree(size_t n, Build b) {
  std::string key = "tree/" + std::to_string(n) + "/" + build_name(b);
  if (g_slot.tag == peer_tag<P>() && g_slot.key == key) return g_slot;
  release_slot();
  P::quiesce();
  const int64_t mark = P::memory_mark();
  auto t = std::make_shared<P>(b != Build::kBulk);
  build(*t, n, b);
  P::quiesce();
  g_slot.tag = peer_tag<P>();
  g_slot.key = key;
  g_slot.bytes = t->bytes_since(mark);
  g_slot.shape = t->shape();
  g_slot.error = verify(*t, n);
  g_slot.tree = t;
  return g_slot;
}

// --- W1: lookups -------------------------------------------------------------

enum class Op { kFind, kLoad, kWalk };

template <typename P, Op op>
void BM_W1(benchmark::State& st, size_t n, Build b) {
  rcuvm::rcu::ensure_registered();
  Slot& s = cached_tree<P>(n, b);
  if (!s.error.empty()) {
    st.SkipWithError(s.error.c_str());
    return;
  }
  const P& t = *static_cast<const P*>(s.tree.get());
  const auto& addrs = w1_addresses(n);
  size_t i = 0;
  const auto t0 = Clock::now();
  for (auto _ : st) {
    const Rec* v;
    if constexpr (op == Op::kFind) {
      v = t.find(addrs[i]);
    } else if constexpr (op == Op::kLoad) {
      v = t.load(addrs[i]);
    } else {
      v = t.walk(addrs[i]);
    }
    benchmark::DoNotOptimize(v);
    i = (i + 1) & (wl::kLookupCount - 1);
  }
  const double secs = seconds_between(t0, Clock::now());
  st.SetItemsProcessed(st.iterations());
  st.counters["ns_per_op"] = secs * 1e9 / static_cast<double>(st.iterations());
}

// --- W5: bytes per range -------------------------------------------------------

template <typename P>
void BM_W5(benchmark::State& st, size_t n, Build b) {
  rcuvm::rcu::ensure_registered();
  Slot& s = cached_tree<P>(n, b);
  if (!s.error.empty()) {
    st.SkipWithError(s.error.c_str());
    return;
  }
  for (auto _ : st) benchmark::DoNotOptimize(s.bytes);
  st.counters["bytes_per_range"] = static_cast<double>(s.bytes) / static_cast<double>(n);
  if (!s.shape.empty()) st.SetLabel(s.shape);
}

// --- W2: building by insertion -------------------------------------------------

template <typename P>
void BM_W2(benchmark::State& st, size_t n, Build b) {
  rcuvm::rcu::ensure_registered();
  release_slot();
  double total = 0;
  for (auto _ : st) {
    auto t = std::make_unique<P>(b != Build::kBulk);
    const auto t0 = Clock::now();
    build(*t, n, b);
    const double secs = seconds_between(t0, Clock::now());
    st.SetIterationTime(secs);
    total += secs;
    t.reset();  // destroy and the grace period are not timed
    P::quiesce();
  }
  const double ops = static_cast<double>(st.iterations()) * static_cast<double>(n);
  st.SetItemsProcessed(static_cast<int64_t>(ops));
  st.counters["ns_per_op"] = total * 1e9 / ops;
}

// --- W3: erase + store churn -------------------------------------------------

template <typename P>
void BM_W3(benchmark::State& st) {
  rcuvm::rcu::ensure_registered();
  release_slot();
  const size_t n = wl::kChurnSize;
  auto t = std::make_unique<P>(true);
  build(*t, n, Build::kRandom);
  wl::Churn churn(inputs().layout, n);
  auto pair = [&] {
    const auto s = churn.step();
    t->erase(s.before);
    t->store(s.after, rec(s.i));
  };
  for (size_t k = 0; k < wl::kChurnWarmupPairs; ++k) pair();
  const auto t0 = Clock::now();
  for (auto _ : st) pair();
  const double secs = seconds_between(t0, Clock::now());
  st.SetItemsProcessed(st.iterations() * 2);
  st.counters["ns_per_pair"] = secs * 1e9 / static_cast<double>(st.iterations());
  st.counters["ns_per_op"] = secs * 1e9 / (2.0 * static_cast<double>(st.iterations()));
  if (std::string e = t->check(); !e.empty()) st.SkipWithError(e.c_str());
  t.reset();
  P::quiesce();
}

// --- W4: copying a tree ---------------------------------------------------------

enum class Copy { kDup, kFork, kOneByOne, kBulk };
const char* copy_name(Copy c) {
  switch (c) {
    case Copy::kDup: return "dup";
    case Copy::kFork: return "fork";
    case Copy::kOneByOne: return "one_by_one";
    case Copy::kBulk: return "bulk";
  }
  return "?";
}

template <typename P>
const P& cached_source(size_t n) {
  std::string key = "w4src/" + std::to_string(n);
  if (!(g_slot.tag == peer_tag<P>() && g_slot.key == key)) {
    release_slot();
    P::quiesce();  // the released tree's reclamation, not timed
    auto t = std::make_shared<P>(true);
    build(*t, n, Build::kRandom);
    P::quiesce();  // nor the reclamation of the nodes the build replaced
    g_slot.tag = peer_tag<P>();
    g_slot.key = key;
    g_slot.error = verify(*t, n);
    g_slot.tree = t;
  }
  return *static_cast<const P*>(g_slot.tree.get());
}

template <typename P, Copy c>
void BM_W4(benchmark::State& st, size_t n) {
  rcuvm::rcu::ensure_registered();
  const P& src = cached_source<P>(n);
  if (!g_slot.error.empty()) {
    st.SkipWithError(g_slot.error.c_str());
    return;
  }
  const size_t k = wl::dup_reps(n);
  double total = 0;
  std::vector<std::unique_ptr<P>> dst(k);
  for (auto _ : st) {
    for (auto& d : dst) d = std::make_unique<P>(c != Copy::kBulk);
    const auto t0 = Clock::now();
    for (auto& d : dst) {
      if constexpr (c == Copy::kDup) {
        d->dup_from(src);
      } else if constexpr (c == Copy::kFork) {
        d->fork_from(src);
      } else if constexpr (c == Copy::kOneByOne) {
        d->copy_each_from(src);
      } else {
        d->bulk_from(src, n);
      }
    }
    const double secs = seconds_between(t0, Clock::now());
    st.SetIterationTime(secs);
    total += secs;
    for (auto& d : dst) d.reset();
    P::quiesce();
  }
  const double dups = static_cast<double>(st.iterations()) * static_cast<double>(k);
  const double entries = dups * static_cast<double>(n);
  st.SetItemsProcessed(static_cast<int64_t>(entries));
  st.counters["us_per_copy"] = total * 1e6 / dups;
  st.counters["Mentries_per_s"] = entries / total / 1e6;
  st.counters["ns_per_op"] = total * 1e9 / entries;
  st.counters["copies_per_iter"] = static_cast<double>(k);
}

// --- W6: readers with and without a writer ------------------------------------

template <typename P>
struct W6Shared {
  std::shared_ptr<P> tree;
  std::unique_ptr<wl::Churn> churn;
};

template <typename P>
W6Shared<P>& w6_state() {
  const std::string key = "w6";
  if (!(g_slot.tag == peer_tag<P>() && g_slot.key == key)) {
    release_slot();
    P::quiesce();  // the released tree's reclamation, not timed
    auto s = std::make_shared<W6Shared<P>>();
    s->tree = std::make_shared<P>(true);
    build(*s->tree, wl::kChurnSize, Build::kRandom);
    P::quiesce();  // the nodes the build replaced: their reclamation must not
                   // run during the first configuration measured on this tree
    s->churn = std::make_unique<wl::Churn>(inputs().layout, wl::kChurnSize);
    g_slot.tag = peer_tag<P>();
    g_slot.key = key;
    g_slot.error = verify(*s->tree, wl::kChurnSize);
    g_slot.extra = s;
  }
  return *static_cast<W6Shared<P>*>(g_slot.extra.get());
}

const std::vector<uint64_t>& w6_addresses(int reader) {
  static std::map<int, std::vector<uint64_t>> cache;
  auto& v = cache[reader];
  if (v.empty()) v = wl::lookup_addresses(ranges(), wl::kChurnSize, wl::kReaderSeedBase + reader);
  return v;
}

// Runs `readers` reader threads (and a W3 writer when asked) for
// g_w6_seconds, each counting its own operations over its own time window.
template <typename P>
void BM_W6(benchmark::State& st, int readers, bool writer) {
  rcuvm::rcu::ensure_registered();
  W6Shared<P>& s = w6_state<P>();
  if (!g_slot.error.empty()) {
    st.SkipWithError(g_slot.error.c_str());
    return;
  }
  for (int r = 0; r < readers; ++r) w6_addresses(r);
  double reader_rate_sum = 0, reader_cpu_sum = 0, writer_rate = 0;
  for (auto _ : st) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false}, stop{false};
    std::vector<double> rates(readers, 0.0), cpu_share(readers, 0.0);
    std::vector<std::thread> threads;
    for (int r = 0; r < readers; ++r) {
      threads.emplace_back([&, r] {
        rcuvm::rcu::ThreadScope scope;
        const auto& addrs = w6_addresses(r);
        const P& t = *s.tree;
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        uint64_t done = 0;
        size_t i = 0;
        const auto t0 = Clock::now();
        const double cpu0 = thread_cpu_seconds();
        while (!stop.load(std::memory_order_relaxed)) {
          for (int k = 0; k < 256; ++k) {
            benchmark::DoNotOptimize(t.find(addrs[i]));
            i = (i + 1) & (wl::kLookupCount - 1);
          }
          done += 256;
        }
        const double wall = seconds_between(t0, Clock::now());
        rates[r] = static_cast<double>(done) / wall;
        cpu_share[r] = (thread_cpu_seconds() - cpu0) / wall;
      });
    }
    if (writer) {
      threads.emplace_back([&] {
        rcuvm::rcu::ThreadScope scope;
        P& t = *s.tree;
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        uint64_t pairs = 0;
        const auto t0 = Clock::now();
        while (!stop.load(std::memory_order_relaxed)) {
          const auto pair_start = g_w6_writer_pause_ns ? Clock::now() : Clock::time_point{};
          const auto step = s.churn->step();
          t.erase(step.before);
          t.store(step.after, rec(step.i));
          ++pairs;
          if (g_w6_writer_pause_ns) {
            const auto until = pair_start + std::chrono::nanoseconds(g_w6_writer_pause_ns);
            while (Clock::now() < until) {
            }
          }
        }
        writer_rate = static_cast<double>(pairs) / seconds_between(t0, Clock::now());
      });
    }
    const int total = readers + (writer ? 1 : 0);
    while (ready.load() < total) std::this_thread::yield();
    go.store(true, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::duration<double>(g_w6_seconds));
    stop.store(true);
    for (auto& th : threads) th.join();
    for (double x : rates) reader_rate_sum += x;
    for (double x : cpu_share) reader_cpu_sum += x;
  }
  const double iters = static_cast<double>(st.iterations());
  const double reader_rate = reader_rate_sum / iters;
  st.counters["Mlookups_per_s"] = reader_rate / 1e6;
  st.counters["per_reader_Mlookups_per_s"] = readers ? reader_rate / readers / 1e6 : 0.0;
  st.counters["writer_Kpairs_per_s"] = writer_rate / 1e3;
  // Share of wall time the readers were on a CPU, and their rate per CPU
  // second: they split a throughput loss into time taken by other threads
  // (the writer, liburcu's call_rcu thread) and slower lookups.
  st.counters["reader_cpu_pct"] = readers ? 100.0 * reader_cpu_sum / iters / readers : 0.0;
  st.counters["per_reader_Mlookups_per_cpu_s"] =
      readers && reader_cpu_sum > 0 ? reader_rate / (reader_cpu_sum / iters) / 1e6 : 0.0;
  st.counters["ns_per_op"] = readers ? 1e9 / (reader_rate / readers) : (writer_rate ? 1e9 / (2 * writer_rate) : 0.0);
  if (std::string e = s.tree->check(); !e.empty()) st.SkipWithError(e.c_str());
}

// W6 in alternating windows: one reader runs through the whole row while the
// writer is switched off and on every kW6Window seconds, and the reader's
// lookups and time are summed per window, leaving out the first kW6Settle
// seconds of each (the switch, and the RCU callbacks of the last writes).
// Both states are sampled across the same seconds, so a machine whose speed
// drifts (a shared VM) moves both alike; the separate readers:1/writer:0 and
// writer:1 rows run seconds apart and do not. kept_pct is the ratio of the
// two states' total rates; kept_pct_median_pair the median over each
// writer-off window and the writer-on window after it.
constexpr double kW6Window = 0.2;
constexpr double kW6Settle = 0.05;

template <typename P>
void BM_W6_alternating(benchmark::State& st) {
  rcuvm::rcu::ensure_registered();
  W6Shared<P>& s = w6_state<P>();
  if (!g_slot.error.empty()) {
    st.SkipWithError(g_slot.error.c_str());
    return;
  }
  const auto& addrs = w6_addresses(0);
  // An even number of windows, at least two: as many with the writer as
  // without; even windows run without it.
  const int windows = 2 * std::max(1, static_cast<int>(g_w6_seconds / kW6Window + 0.5));
  std::vector<double> lookups(windows, 0.0), secs(windows, 0.0);
  uint64_t pairs = 0;
  for (auto _ : st) {
    constexpr int kStop = -1;
    std::atomic<int> window{0};
    std::atomic<bool> counting{false};
    std::atomic<int> ready{0};
    std::thread reader([&] {
      rcuvm::rcu::ThreadScope scope;
      const P& t = *s.tree;
      size_t i = 0;
      ready.fetch_add(1);
      for (;;) {
        const int w = window.load(std::memory_order_acquire);
        if (w == kStop) break;
        const bool count = counting.load(std::memory_order_relaxed);
        const auto t0 = Clock::now();
        for (int k = 0; k < 256; ++k) {
          benchmark::DoNotOptimize(t.find(addrs[i]));
          i = (i + 1) & (wl::kLookupCount - 1);
        }
        const auto t1 = Clock::now();
        // A batch that straddles a switch or the start of counting is dropped.
        if (count && counting.load(std::memory_order_relaxed) && window.load(std::memory_order_relaxed) == w) {
          lookups[w] += 256;
          secs[w] += seconds_between(t0, t1);
        }
      }
    });
    std::thread writer([&] {
      rcuvm::rcu::ThreadScope scope;
      P& t = *s.tree;
      ready.fetch_add(1);
      for (;;) {
        const int w = window.load(std::memory_order_acquire);
        if (w == kStop) break;
        if (w % 2 == 0) {  // writer off: sleep until the window changes
          window.wait(w, std::memory_order_acquire);
          continue;
        }
        const auto step = s.churn->step();
        t.erase(step.before);
        t.store(step.after, rec(step.i));
        if (counting.load(std::memory_order_relaxed)) ++pairs;
      }
    });
    while (ready.load() < 2) std::this_thread::yield();
    for (int w = 0; w < windows; ++w) {
      window.store(w, std::memory_order_release);
      window.notify_all();
      std::this_thread::sleep_for(std::chrono::duration<double>(kW6Settle));
      counting.store(true, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::duration<double>(kW6Window - kW6Settle));
      counting.store(false, std::memory_order_relaxed);
    }
    window.store(kStop, std::memory_order_release);
    window.notify_all();
    reader.join();
    writer.join();
  }
  double sum[2][2] = {{0, 0}, {0, 0}};  // [writer on][lookups, seconds]
  std::vector<double> pair_kept;
  for (int w = 0; w < windows; ++w) {
    sum[w % 2][0] += lookups[w];
    sum[w % 2][1] += secs[w];
    if (w % 2 == 1 && secs[w] > 0 && secs[w - 1] > 0 && lookups[w - 1] > 0)
      pair_kept.push_back((lookups[w] / secs[w]) / (lookups[w - 1] / secs[w - 1]));
  }
  const double off = sum[0][1] > 0 ? sum[0][0] / sum[0][1] : 0.0;
  const double on = sum[1][1] > 0 ? sum[1][0] / sum[1][1] : 0.0;
  const double counted_on = static_cast<double>(st.iterations()) * (windows / 2) * (kW6Window - kW6Settle);
  std::sort(pair_kept.begin(), pair_kept.end());
  const size_t np = pair_kept.size();
  const double median_pair = np == 0 ? 0.0 : np % 2 ? pair_kept[np / 2] : (pair_kept[np / 2 - 1] + pair_kept[np / 2]) / 2;
  st.counters["Mlookups_per_s_writer_off"] = off / 1e6;
  st.counters["Mlookups_per_s_writer_on"] = on / 1e6;
  st.counters["kept_pct"] = off > 0 ? 100.0 * on / off : 0.0;
  st.counters["kept_pct_median_pair"] = 100.0 * median_pair;
  st.counters["writer_Kpairs_per_s"] = static_cast<double>(pairs) / counted_on / 1e3;
  st.counters["ns_per_op"] = on > 0 ? 1e9 / on : 0.0;
  if (std::string e = s.tree->check(); !e.empty()) st.SkipWithError(e.c_str());
}

// --- Registration ------------------------------------------------------------------

double min_time(double base) { return base * g_time_scale; }

template <typename P>
void register_w1(size_t n, Build b) {
  const std::string tail = std::string("/") + P::kName + "/" + build_name(b) + "/" + std::to_string(n);
  if (b != Build::kBulk) {
    benchmark::RegisterBenchmark(("W1_find" + tail).c_str(), BM_W1<P, Op::kFind>, n, b)
        ->MinTime(min_time(0.15))
        ->MinWarmUpTime(0.02);
    benchmark::RegisterBenchmark(("W1_load" + tail).c_str(), BM_W1<P, Op::kLoad>, n, b)
        ->MinTime(min_time(0.15))
        ->MinWarmUpTime(0.02);
#ifdef RCUVM_BENCH_HAVE_MAPLE
    if constexpr (std::is_same_v<P, MaplePeer>) {
      benchmark::RegisterBenchmark(("W1_walk" + tail).c_str(), BM_W1<P, Op::kWalk>, n, b)
          ->MinTime(min_time(0.15))
          ->MinWarmUpTime(0.02);
    }
#endif
  }
  if (b != Build::kBulk || P::kHasBulk) {
    benchmark::RegisterBenchmark(("W5_bytes" + tail).c_str(), BM_W5<P>, n, b)->Iterations(1);
  }
}

template <typename P>
void register_w2(size_t n, Build b) {
  if (b == Build::kBulk && !P::kHasBulk) return;
  const std::string name =
      std::string("W2_insert/") + P::kName + "/" + build_name(b) + "/" + std::to_string(n);
  auto* bm = benchmark::RegisterBenchmark(name.c_str(), BM_W2<P>, n, b)
                 ->UseManualTime()
                 ->Unit(benchmark::kMillisecond)
                 ->MinTime(min_time(0.2));
  if (n <= 10000) bm->MinWarmUpTime(0.02);
}

template <typename P>
void register_w3() {
  if constexpr (!P::kHasChurn) return;
  const std::string name = std::string("W3_churn/") + P::kName + "/" + std::to_string(wl::kChurnSize);
  benchmark::RegisterBenchmark(name.c_str(), BM_W3<P>)->Iterations(200000);
}

template <typename P, Copy c>
void register_w4_one(size_t n) {
  const std::string name = std::string("W4_") + copy_name(c) + "/" + P::kName + "/" + std::to_string(n);
  benchmark::RegisterBenchmark(name.c_str(), BM_W4<P, c>, n)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond)
      ->MinTime(min_time(0.1));
}

template <typename P>
void register_w4(size_t n) {
  register_w4_one<P, Copy::kDup>(n);
  if constexpr (P::kHasFork) register_w4_one<P, Copy::kFork>(n);
  register_w4_one<P, Copy::kOneByOne>(n);
  if constexpr (P::kHasBulk) register_w4_one<P, Copy::kBulk>(n);
}

template <typename P>
void register_w6() {
  auto reg = [](int readers, bool writer) {
    const std::string name = std::string("W6_read/") + P::kName + "/readers:" + std::to_string(readers) +
                             "/writer:" + (writer ? "1" : "0");
    benchmark::RegisterBenchmark(name.c_str(), BM_W6<P>, readers, writer)->Iterations(1)->UseRealTime();
  };
  reg(1, false);
  reg(2, false);
  if (P::kConcurrentErase) {
    reg(0, true);
    reg(1, true);
    reg(2, true);
    benchmark::RegisterBenchmark((std::string("W6_alternating/") + P::kName + "/readers:1").c_str(),
                                 BM_W6_alternating<P>)
        ->Iterations(1)
        ->UseRealTime();
  }
}

// Calls fn.template operator()<P>() for every peer, in a fixed order.
template <typename Fn>
void for_each_peer(Fn&& fn) {
  fn.template operator()<RcuvmPeer>();
#ifdef RCUVM_BENCH_HAVE_MAPLE
  fn.template operator()<MaplePeer>();
#endif
  fn.template operator()<AbslShmPeer>();
  fn.template operator()<AbslMutexPeer>();
  fn.template operator()<StdMapPeer>();
#ifdef RCUVM_BENCH_HAVE_TBB
  fn.template operator()<TbbPeer>();
#endif
}

void register_all() {
  // W1 + W5: peers side by side for each (n, build), so neighbouring rows are
  // close in time (the machine is noisy).
  for (size_t n : wl::kSizes) {
    for (Build b : {Build::kRandom, Build::kAscending, Build::kBulk}) {
      for_each_peer([&]<typename P>() { register_w1<P>(n, b); });
    }
  }
  for (size_t n : wl::kSizes) {
    for (Build b : {Build::kRandom, Build::kAscending, Build::kBulk}) {
      for_each_peer([&]<typename P>() { register_w2<P>(n, b); });
    }
  }
  for_each_peer([&]<typename P>() { register_w3<P>(); });
  for (size_t n : wl::kDupSizes) {
    register_w4<RcuvmPeer>(n);
#ifdef RCUVM_BENCH_HAVE_MAPLE
    register_w4<MaplePeer>(n);
#endif
    register_w4<AbslShmPeer>(n);
    register_w4<StdMapPeer>(n);
  }
  for_each_peer([&]<typename P>() { register_w6<P>(); });
}

// Takes --rcuvm_* flags out of argv.
void parse_own_flags(int* argc, char** argv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--rcuvm_time_scale=", 19) == 0) {
      g_time_scale = std::atof(a + 19);
    } else if (std::strncmp(a, "--rcuvm_w6_seconds=", 19) == 0) {
      g_w6_seconds = std::atof(a + 19);
    } else if (std::strncmp(a, "--rcuvm_w6_writer_pause_ns=", 27) == 0) {
      g_w6_writer_pause_ns = std::atoll(a + 27);
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  parse_own_flags(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rcuvm::rcu::ensure_registered();
#ifdef RCUVM_BENCH_HAVE_MAPLE
  maple_peer_init();
  if (maple_peer_node_size() != 256) die("maple tree built with the wrong node layout");
  benchmark::AddCustomContext("maple_peer", std::string(RCUVM_BENCH_MAPLE_NAME) +
                                                ": Linux 6.12 lib/maple_tree.c, -O2, no CONFIG_DEBUG_MAPLE_TREE");
#endif
  benchmark::AddCustomContext("rcuvm_time_scale", std::to_string(g_time_scale));
  benchmark::AddCustomContext("rcuvm_w6_seconds", std::to_string(g_w6_seconds));
  benchmark::AddCustomContext("rcuvm_w6_writer_pause_ns", std::to_string(g_w6_writer_pause_ns));
  inputs();
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  release_slot();
  return 0;
}
