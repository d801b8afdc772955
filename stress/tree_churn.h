// tree_churn.h: one writer churning a RangeTree<Value> in RCU and allocation
// mode while lockless readers check what they see. Shared by
// tree_readers_stress (plain) and tree_fault_stress (the writer's allocations
// fail at random).
//
// The index space
//
//   0 ........ zone 0 ........ |guard|A0|B0|guard| ... zone 1 ... |guard|A1|B1|guard| ... zone 4
//   ... UINT64_MAX
//
// Four pairs of adjacent "stable" entries (A, B) sit at fifths of the space,
// each fenced by a guard gap that nothing is ever stored in. The writer works
// only inside the five zones between them, in a hot window at each end of a
// zone (so indices 0, UINT64_MAX and the edges of the guard gaps are written
// too). Eight stable entries plus five null ranges fit one leaf, so wiping
// every zone must collapse the tree to a single-leaf root; filling the
// windows grows it to height 5 or more.
//
// Values are heap objects that remember the range they were stored for; a
// piece of a range trimmed later still lies inside it, so "the entry's bounds
// lie inside its value's bounds" holds for every entry a reader may see. The
// writer frees a value only through rcu::retire() once no piece of it is left
// in the tree, so AddressSanitizer reports any reader that reaches one later.
//
// The writer keeps an exact model of the tree (it is the only writer), checks
// every return value against it (OK, EEXIST, the value erase() returns), and
// at intervals runs validate() and compares a full iteration with the model.
#ifndef RCUVM_STRESS_TREE_CHURN_H_
#define RCUVM_STRESS_TREE_CHURN_H_

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rcuvm/fault_injection.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "stress_util.h"

namespace rcuvm::stress {

// Values created, reclaimed after a grace period, and deleted directly because
// they were never published (a refused insert, a write that ran out of memory).
// At the end created == reclaimed + discarded, or something leaked.
inline std::atomic<uint64_t> g_values_created{0};
inline std::atomic<uint64_t> g_values_reclaimed{0};
inline std::atomic<uint64_t> g_values_discarded{0};

// What the writer stores: remembers the range it was stored for.
struct Value final : rcu::Deferred {
  static constexpr uint64_t kLive = 0x4c4956452d56414cULL;  // "LIVE-VAL"
  static constexpr uint64_t kDead = 0xdeaddeaddeaddeadULL;

  Value(uint64_t f, uint64_t l, uint64_t s) : first(f), last(l), serial(s) {
    g_values_created.fetch_add(1, std::memory_order_relaxed);
  }
  // Runs after a grace period: no reader can hold this value any more.
  void reclaim() override {
    magic = kDead;
    g_values_reclaimed.fetch_add(1, std::memory_order_relaxed);
    delete this;
  }
  // Frees a value that no reader ever saw.
  void discard() {
    magic = kDead;
    g_values_discarded.fetch_add(1, std::memory_order_relaxed);
    delete this;
  }
  bool covers(uint64_t f, uint64_t l) const { return first <= f && l <= last; }

  uint64_t magic = kLive;
  const uint64_t first;
  const uint64_t last;
  const uint64_t serial;
};

using Tree = RangeTree<Value>;
using Entry = Tree::Entry;

inline std::string describe(const std::optional<Entry>& e) {
  if (!e) return "none";
  char buf[160];
  std::snprintf(buf, sizeof buf, "[%#" PRIx64 ", %#" PRIx64 "] -> %p", e->first, e->last,
                static_cast<void*>(e->value));
  return buf;
}

// --- The layout of the index space.

struct Window {
  uint64_t lo, hi;  // inclusive
};

class Layout {
 public:
  static constexpr int kPairs = 4;
  static constexpr int kStables = 2 * kPairs;
  static constexpr int kZones = kPairs + 1;
  static constexpr uint64_t kGuard = 1ull << 20;
  // Each hot window holds a few thousand entries of up to 64 KiB when full.
  static constexpr uint64_t kHot = 1ull << 27;

  struct Stable {
    uint64_t first, last;
    Value* value;
  };

  Layout() {
    for (int p = 0; p < kPairs; ++p) {
      uint64_t c = (UINT64_MAX / 5) * uint64_t(p + 1) & ~uint64_t(0xfff);
      uint64_t len_a = 0x1000 * uint64_t(p + 1), len_b = 0x3000 + uint64_t(p);
      Stable a{c, c + len_a - 1, nullptr}, b{c + len_a, c + len_a + len_b - 1, nullptr};
      a.value = new Value(a.first, a.last, 0);
      b.value = new Value(b.first, b.last, 0);
      stables_.push_back(a);
      stables_.push_back(b);
      guards_.push_back({a.first - kGuard, a.first - 1});
      guards_.push_back({b.last + 1, b.last + kGuard});
    }
    uint64_t lo = 0;
    for (int p = 0; p < kPairs; ++p) {
      zones_.push_back({lo, guards_[2 * p].lo - 1});
      lo = guards_[2 * p + 1].hi + 1;
    }
    zones_.push_back({lo, UINT64_MAX});
    for (const Window& z : zones_) {
      windows_.push_back({z.lo, z.lo + kHot - 1});
      windows_.push_back({z.hi - kHot + 1, z.hi});
    }
  }

  const std::vector<Stable>& stables() const { return stables_; }
  const std::vector<Window>& guards() const { return guards_; }
  const std::vector<Window>& zones() const { return zones_; }
  const std::vector<Window>& windows() const { return windows_; }

 private:
  std::vector<Stable> stables_;  // sorted by index
  std::vector<Window> guards_;   // one before and one after each pair
  std::vector<Window> zones_;    // writable
  std::vector<Window> windows_;  // where the writer mostly writes
};

// --- The writer's model of the tree: non-null pieces keyed by first index,
// and how many pieces each value still has in the tree.

class Model {
 public:
  struct Piece {
    uint64_t last;
    Value* value;
  };
  using Map = std::map<uint64_t, Piece>;

  // Applies store(first, last, v); appends values left with no piece to `dropped`.
  void store(uint64_t first, uint64_t last, Value* v, std::vector<Value*>& dropped) {
    auto it = map_.lower_bound(first);
    if (it != map_.begin()) {
      auto left = std::prev(it);
      if (left->second.last >= first) {  // overlaps from the left: keep its head
        Piece old = left->second;
        left->second.last = first - 1;
        if (old.last > last) {  // and its tail: one value now has two pieces
          map_.emplace(last + 1, old);
          ++refs_[old.value];
        }
      }
    }
    it = map_.lower_bound(first);
    while (it != map_.end() && it->first <= last) {
      Piece p = it->second;
      it = map_.erase(it);
      if (p.last > last) {  // keep its tail
        it = map_.emplace_hint(it, last + 1, p);
      } else if (--refs_[p.value] == 0) {
        refs_.erase(p.value);
        dropped.push_back(p.value);
      }
    }
    if (v) {
      map_.emplace(first, Piece{last, v});
      ++refs_[v];
    }
  }
  // Replaces the value of the piece starting at `first`.
  void replace(uint64_t first, Value* v, std::vector<Value*>& dropped) {
    Piece& p = map_.at(first);
    if (--refs_[p.value] == 0) {
      refs_.erase(p.value);
      dropped.push_back(p.value);
    }
    p.value = v;
    ++refs_[v];
  }
  // The piece holding `index`, as an entry.
  std::optional<Entry> at(uint64_t index) const {
    auto it = map_.upper_bound(index);
    if (it == map_.begin()) return std::nullopt;
    --it;
    if (it->second.last < index) return std::nullopt;
    return Entry{it->first, it->second.last, it->second.value};
  }
  // True if any index of [first, last] is non-null.
  bool any_in(uint64_t first, uint64_t last) const {
    if (at(first)) return true;
    auto it = map_.upper_bound(first);
    return it != map_.end() && it->first <= last;
  }
  // The first piece overlapping [index, hi], if any (what a cursor's next(hi)
  // from `index` returns).
  std::optional<Entry> first_overlapping(uint64_t index, uint64_t hi) const {
    if (auto e = at(index)) return e;
    return first_from(index, hi);
  }
  // The first piece starting at or after `index` inside [index, hi], if any.
  std::optional<Entry> first_from(uint64_t index, uint64_t hi) const {
    auto it = map_.lower_bound(index);
    if (it == map_.end() || it->first > hi) return std::nullopt;
    return Entry{it->first, it->second.last, it->second.value};
  }
  const Map& map() const { return map_; }
  size_t size() const { return map_.size(); }
  // Every value the model still holds (for teardown).
  std::vector<Value*> values() const {
    std::vector<Value*> out;
    for (const auto& [v, n] : refs_) out.push_back(v);
    return out;
  }

 private:
  Map map_;
  std::unordered_map<Value*, int> refs_;
};

// --- Readers.

struct ReaderStats {
  uint64_t stable_loads = 0;
  uint64_t finds = 0;
  uint64_t zone_loads = 0;
  uint64_t full_iterations = 0;
  uint64_t entries_seen = 0;
  uint64_t window_scans = 0;
};

// Checks one entry a reader was given: well-formed, value alive, value's
// range covering the entry.
inline void check_entry(const Entry& e, const char* where) {
  STRESS_REQUIRE(e.first <= e.last, "%s returned an inverted range %s", where, describe(e).c_str());
  STRESS_REQUIRE(e.value != nullptr, "%s returned a null entry %s", where, describe(e).c_str());
  STRESS_REQUIRE(e.value->magic == Value::kLive,
                 "%s returned a value that was freed or never stored: %s (magic %#" PRIx64 ")",
                 where, describe(e).c_str(), e.value->magic);
  STRESS_REQUIRE(e.value->covers(e.first, e.last),
                 "%s returned a torn entry %s: its value was stored for [%#" PRIx64 ", %#" PRIx64
                 "]",
                 where, describe(e).c_str(), e.value->first, e.value->last);
}

class Reader {
 public:
  Reader(const Tree& tree, const Layout& layout, uint64_t seed)
      : tree_(tree), layout_(layout), rng_(seed) {}

  void run(const std::atomic<bool>& stop) {
    rcu::ThreadScope scope;
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      // Half stable loads, a quarter stable finds, an eighth zone probes and
      // an eighth guard probes; every 128th step a full iteration (forward
      // and reverse in turn), every 32nd a window scan.
      if (i % 2 == 0) {
        stable_point();
      } else if (i % 4 == 1) {
        stable_find();
      } else if (i % 8 == 3) {
        zone_probe();
      } else {
        guard_probe();
        if (i % 128 == 7)
          full_iteration((i / 128) % 2 == 0);
        else if (i % 32 == 15)
          window_scan();
      }
    }
  }
  const ReaderStats& stats() const { return stats_; }

 private:
  using Stable = Layout::Stable;

  const Stable& random_stable() { return layout_.stables()[rng_.below(Layout::kStables)]; }

  // A stable entry is found at every index inside it, with its own value.
  void stable_point() {
    const Stable& s = random_stable();
    uint64_t index = rng_.between(s.first, s.last);
    rcu::ReadGuard guard;
    Value* v = tree_.load(index);
    STRESS_REQUIRE(v == s.value,
                   "load(%#" PRIx64 ") inside stable [%#" PRIx64 ", %#" PRIx64
                   "] returned %p, expected %p",
                   index, s.first, s.last, static_cast<void*>(v), static_cast<void*>(s.value));
    STRESS_REQUIRE(v->magic == Value::kLive && v->first == s.first && v->last == s.last,
                   "stable value at %#" PRIx64 " corrupted", index);
    ++stats_.stable_loads;
  }

  // find() from just before a stable pair (inside its guard gap) returns its
  // first entry with exact bounds; find_rev() from just after returns its
  // second; find() starting inside an entry returns that entry.
  void stable_find() {
    size_t p = rng_.below(Layout::kPairs);
    const Stable& a = layout_.stables()[2 * p];
    const Stable& b = layout_.stables()[2 * p + 1];
    rcu::ReadGuard guard;
    uint64_t from = a.first - 1 - rng_.below(Layout::kGuard);
    auto e = tree_.find(from);
    STRESS_REQUIRE(e && *e == (Entry{a.first, a.last, a.value}),
                   "find(%#" PRIx64 ") before stable [%#" PRIx64 ", %#" PRIx64 "] returned %s",
                   from, a.first, a.last, describe(e).c_str());
    uint64_t after = b.last + 1 + rng_.below(Layout::kGuard);
    e = tree_.find_rev(after);
    STRESS_REQUIRE(e && *e == (Entry{b.first, b.last, b.value}),
                   "find_rev(%#" PRIx64 ") after stable [%#" PRIx64 ", %#" PRIx64 "] returned %s",
                   after, b.first, b.last, describe(e).c_str());
    uint64_t inside = rng_.between(b.first, b.last);
    e = tree_.find(inside, inside);
    STRESS_REQUIRE(e && *e == (Entry{b.first, b.last, b.value}),
                   "find(%#" PRIx64 ", same) inside stable [%#" PRIx64 ", %#" PRIx64
                   "] returned %s",
                   inside, b.first, b.last, describe(e).c_str());
    // A cursor from the guard gap steps through the pair in order.
    auto c = tree_.cursor(from);
    auto ca = c.next(b.last);
    auto cb = c.next(b.last);
    auto cc = c.next(b.last);
    STRESS_REQUIRE(ca && *ca == (Entry{a.first, a.last, a.value}) && cb &&
                       *cb == (Entry{b.first, b.last, b.value}) && !cc,
                   "cursor over stable pair %zu returned %s, %s, %s", p, describe(ca).c_str(),
                   describe(cb).c_str(), describe(cc).c_str());
    stats_.finds += 4;
  }

  // Nothing is ever stored in a guard gap.
  void guard_probe() {
    const Window& g = layout_.guards()[rng_.below(layout_.guards().size())];
    rcu::ReadGuard guard;
    uint64_t index = rng_.between(g.lo, g.hi);
    Value* v = tree_.load(index);
    STRESS_REQUIRE(v == nullptr, "load(%#" PRIx64 ") in a guard gap returned %p", index,
                   static_cast<void*>(v));
    auto e = tree_.find(g.lo, g.hi);
    STRESS_REQUIRE(!e, "find over guard gap [%#" PRIx64 ", %#" PRIx64 "] returned %s", g.lo, g.hi,
                   describe(e).c_str());
    stats_.finds += 1;
  }

  // Whatever sits in the churned zones must be a live value covering it.
  void zone_probe() {
    const Window& w = layout_.windows()[rng_.below(layout_.windows().size())];
    uint64_t index = rng_.between(w.lo, w.hi);
    rcu::ReadGuard guard;
    if (Value* v = tree_.load(index)) {
      STRESS_REQUIRE(v->magic == Value::kLive,
                     "load(%#" PRIx64 ") returned a freed value %p (magic %#" PRIx64 ")", index,
                     static_cast<void*>(v), v->magic);
      STRESS_REQUIRE(v->first <= index && index <= v->last,
                     "load(%#" PRIx64 ") returned value %p stored for [%#" PRIx64 ", %#" PRIx64 "]",
                     index, static_cast<void*>(v), v->first, v->last);
    }
    uint64_t max = index + std::min<uint64_t>(rng_.below(1 << 20), UINT64_MAX - index);
    if (auto e = tree_.find(index, max)) {
      check_entry(*e, "find");
      STRESS_REQUIRE(e->last >= index && e->first <= max,
                     "find(%#" PRIx64 ", %#" PRIx64 ") returned %s outside the range", index, max,
                     describe(e).c_str());
    }
    uint64_t min = index - std::min<uint64_t>(rng_.below(1 << 20), index);
    if (auto e = tree_.find_rev(index, min)) {
      check_entry(*e, "find_rev");
      STRESS_REQUIRE(e->first <= index && e->last >= min,
                     "find_rev(%#" PRIx64 ", %#" PRIx64 ") returned %s outside the range", index,
                     min, describe(e).c_str());
    }
    ++stats_.zone_loads;
    stats_.finds += 2;
  }

  // One cursor over the whole tree inside one read section: strictly ordered,
  // non-overlapping, every stable entry exactly once with its exact bounds.
  void full_iteration(bool forward) {
    const auto& st = layout_.stables();
    rcu::ReadGuard guard;
    auto c = tree_.cursor(forward ? 0 : UINT64_MAX);
    std::optional<Entry> prev;
    size_t next_stable = forward ? 0 : st.size() - 1;
    size_t stables_seen = 0;
    uint64_t n = 0;
    while (auto e = forward ? c.next() : c.prev()) {
      check_entry(*e, forward ? "cursor next()" : "cursor prev()");
      if (prev) {
        if (forward)
          STRESS_REQUIRE(e->first > prev->last, "forward iteration went from %s to %s",
                         describe(prev).c_str(), describe(e).c_str());
        else
          STRESS_REQUIRE(e->last < prev->first, "reverse iteration went from %s to %s",
                         describe(prev).c_str(), describe(e).c_str());
      }
      if (stables_seen < st.size()) {
        const Stable& s = st[next_stable];
        bool passed = forward ? e->first > s.last : e->last < s.first;
        STRESS_REQUIRE(
            !passed, "%s iteration skipped stable [%#" PRIx64 ", %#" PRIx64 "]: went from %s to %s",
            forward ? "forward" : "reverse", s.first, s.last, describe(prev).c_str(),
            describe(e).c_str());
        if (e->last >= s.first && e->first <= s.last) {
          STRESS_REQUIRE(*e == (Entry{s.first, s.last, s.value}),
                         "iteration returned %s where stable [%#" PRIx64 ", %#" PRIx64 "] -> %p is",
                         describe(e).c_str(), s.first, s.last, static_cast<void*>(s.value));
          ++stables_seen;
          if (forward)
            ++next_stable;
          else
            --next_stable;
        }
      }
      STRESS_REQUIRE(++n < (1u << 26), "iteration does not end (at %s)", describe(e).c_str());
      prev = e;
    }
    STRESS_REQUIRE(stables_seen == st.size(), "%s iteration saw %zu of %zu stable entries",
                   forward ? "forward" : "reverse", stables_seen, st.size());
    ++stats_.full_iterations;
    stats_.entries_seen += n;
  }

  // for_each over part of a hot window: ordered, non-overlapping, alive.
  void window_scan() {
    const Window& w = layout_.windows()[rng_.below(layout_.windows().size())];
    uint64_t first = rng_.between(w.lo, w.hi);
    uint64_t last = first + std::min<uint64_t>(rng_.below(Layout::kHot / 4), w.hi - first);
    rcu::ReadGuard guard;  // for_each has its own; this one covers the values after it
    std::optional<Entry> prev;
    tree_.for_each(first, last, [&](const Entry& e) {
      check_entry(e, "for_each");
      STRESS_REQUIRE(e.last >= first && e.first <= last,
                     "for_each(%#" PRIx64 ", %#" PRIx64 ") yielded %s outside the range", first,
                     last, describe(e).c_str());
      STRESS_REQUIRE(!prev || e.first > prev->last, "for_each went from %s to %s",
                     describe(prev).c_str(), describe(e).c_str());
      prev = e;
      ++stats_.entries_seen;
    });
    ++stats_.window_scans;
  }

  const Tree& tree_;
  const Layout& layout_;
  Rng rng_;
  ReaderStats stats_;
};

// --- The writer.

struct WriterConfig {
  uint64_t high_entries = 20000;  // grow until the model holds this many
  uint64_t fail_one_in = 0;       // 0: no fault injection
  uint64_t seed = 1;
};

struct WriterStats {
  uint64_t ops = 0, stores = 0, inserts = 0, inserts_refused = 0, erases = 0, replaces = 0;
  uint64_t spanning = 0, wipes = 0, cycles = 0, validations = 0;
  uint64_t enomem = 0;  // writes refused for memory, all checked unchanged
  uint64_t min_height = UINT64_MAX, max_height = 0, collapses_to_leaf = 0;
};

class Writer {
 public:
  Writer(Tree& tree, const Layout& layout, WriterConfig cfg)
      : tree_(tree), layout_(layout), cfg_(cfg), rng_(cfg.seed) {}

  // Publishes the stable entries (before any reader starts).
  void setup() {
    for (const auto& s : layout_.stables()) {
      absl::Status st = tree_.insert(s.first, s.last, s.value);
      STRESS_REQUIRE(st.ok(), "setup insert of stable entry failed: %s", st.ToString().c_str());
      std::vector<Value*> dropped;
      model_.store(s.first, s.last, s.value, dropped);
    }
    verify_full("after setup");
    note_height();
  }

  // Runs grow / churn / shrink cycles until the deadline.
  void run(const Deadline& deadline) {
    rcu::ThreadScope scope;
    std::optional<FailRandomAllocations> faults;
    if (cfg_.fail_one_in) faults.emplace(cfg_.fail_one_in, cfg_.seed ^ 0x5eed);
    while (!deadline.passed()) {
      // Grow: fill runs of windows with small entries, plus random churn.
      while (!deadline.passed() && model_.size() < cfg_.high_entries) {
        if (rng_.one_in(3))
          random_op();
        else
          fill_run();
        maybe_verify();
      }
      uint64_t grown = note_height().height;
      // Churn at full size.
      for (int i = 0; i < 2000 && !deadline.passed(); ++i) {
        random_op();
        maybe_verify();
      }
      // Shrink: wide null stores over windows, then wipe every zone, which
      // must collapse the tree to a single leaf holding the stable entries.
      for (int i = 0; i < 40 && !deadline.passed(); ++i) {
        const Window& w = random_window();
        uint64_t a = rng_.between(w.lo, w.hi);
        do_store(a, a + std::min(w.hi - a, rng_.below(Layout::kHot / 2)), nullptr, "shrink store");
        ++stats_.spanning;
        maybe_verify();
      }
      for (const Window& z : layout_.zones()) wipe(z);
      verify_full("after wiping every zone");
      TreeStats ts = note_height();
      STRESS_REQUIRE(ts.height == 1,
                     "tree holding only the %d stable entries has height %" PRIu64 " (%" PRIu64
                     " nodes), expected a single leaf",
                     Layout::kStables, ts.height, ts.nodes);
      if (grown > 1) ++stats_.collapses_to_leaf;
      ++stats_.cycles;
    }
    faults.reset();
    verify_full("at the end");
    note_height();
  }

  const Model& model() const { return model_; }
  const WriterStats& stats() const { return stats_; }

 private:
  const Window& random_window() { return layout_.windows()[rng_.below(layout_.windows().size())]; }

  // A random small range inside w: mostly page-sized multiples, sometimes odd.
  std::pair<uint64_t, uint64_t> small_range(const Window& w) {
    uint64_t len = rng_.one_in(4) ? 1 + rng_.below(0x1000) : 0x1000 * (1 + rng_.below(16));
    uint64_t a = rng_.between(w.lo, w.hi);
    if (!rng_.one_in(4)) a &= ~uint64_t(0xfff);
    if (a < w.lo) a = w.lo;
    return {a, a + std::min(len - 1, w.hi - a)};
  }

  Value* make_value(uint64_t first, uint64_t last) { return new Value(first, last, ++serial_); }

  void retire_all(std::vector<Value*>& dropped) {
    for (Value* v : dropped) rcu::retire(v);
    dropped.clear();
  }

  // After a refused write: nothing in and around [first, last] changed.
  void verify_unchanged(uint64_t first, uint64_t last, const char* what) {
    rcu::ReadGuard guard;
    uint64_t from = first == 0 ? 0 : first - 1;
    auto c = tree_.cursor(from);
    auto it = model_.map().upper_bound(from);
    if (it != model_.map().begin() && std::prev(it)->second.last >= from) --it;
    uint64_t to = last == UINT64_MAX ? last : last + 1;
    for (;;) {
      auto e = c.next(to);
      bool model_has = it != model_.map().end() && it->first <= to;
      STRESS_REQUIRE(e.has_value() == model_has &&
                         (!e || (e->first == it->first && e->last == it->second.last &&
                                 e->value == it->second.value)),
                     "%s [%#" PRIx64 ", %#" PRIx64
                     "] failed with ENOMEM but changed the tree: "
                     "tree has %s, model has %s",
                     what, first, last, describe(e).c_str(),
                     model_has
                         ? describe(Entry{it->first, it->second.last, it->second.value}).c_str()
                         : "none");
      if (!e) break;
      ++it;
    }
  }

  // Checks a write's status: OK (apply to the model), ENOMEM under fault
  // injection (the tree must be unchanged), anything else is a failure.
  bool accept(const absl::Status& s, const char* what, uint64_t first, uint64_t last) {
    ++stats_.ops;
    if (s.ok()) return true;
    int err = errno_of(s);
    STRESS_REQUIRE(cfg_.fail_one_in && err == ENOMEM,
                   "%s [%#" PRIx64 ", %#" PRIx64 "] failed unexpectedly: %s", what, first, last,
                   s.ToString().c_str());
    ++stats_.enomem;
    verify_unchanged(first, last, what);
    if (stats_.enomem % 64 == 0 && !holding_lock_) validate("after a refused write");
    return false;
  }

  void do_store(uint64_t first, uint64_t last, Value* v, const char* what) {
    absl::Status s = tree_.store(first, last, v);
    if (accept(s, what, first, last)) {
      model_.store(first, last, v, dropped_);
      retire_all(dropped_);
    } else if (v) {
      v->discard();
    }
    ++stats_.stores;
  }

  void do_insert(uint64_t first, uint64_t last) {
    Value* v = make_value(first, last);
    bool occupied = model_.any_in(first, last);
    absl::Status s = tree_.insert(first, last, v);
    ++stats_.inserts;
    if (occupied) {
      ++stats_.ops;
      int err = errno_of(s);
      // An insert may run out of memory before it looks, which is fine too.
      STRESS_REQUIRE(
          err == EEXIST || (cfg_.fail_one_in && err == ENOMEM),
          "insert [%#" PRIx64 ", %#" PRIx64 "] over %s returned %s, expected EEXIST", first, last,
          describe(model_.at(first) ? model_.at(first) : model_.first_from(first, last)).c_str(),
          s.ToString().c_str());
      if (err == ENOMEM) ++stats_.enomem;
      ++stats_.inserts_refused;
      verify_unchanged(first, last, "refused insert");
      v->discard();
      return;
    }
    if (accept(s, "insert", first, last)) {
      model_.store(first, last, v, dropped_);
      STRESS_REQUIRE(dropped_.empty(), "model: insert dropped a value");
    } else {
      v->discard();
    }
  }

  void do_erase(uint64_t index) {
    std::optional<Entry> expect = model_.at(index);
    auto r = tree_.erase(index);
    ++stats_.erases;
    if (!accept(r.status(), "erase", index, index)) return;
    Value* expected_value = expect ? expect->value : nullptr;
    STRESS_REQUIRE(*r == expected_value, "erase(%#" PRIx64 ") returned %p, the model holds %s",
                   index, static_cast<void*>(*r), describe(expect).c_str());
    if (expect) {
      model_.store(expect->first, expect->last, nullptr, dropped_);
      retire_all(dropped_);
    }
  }

  // Replaces the value of the entry overlapping [index, hi] in place, with a
  // cursor under the writer lock. Cursor::replace() does not compile yet
  // (range_tree.h calls the non-const RawTree::cursor_replace() through the
  // cursor's const tree pointer); build with -DRCUVM_STRESS_CURSOR_REPLACE
  // once it does. Until then the slot is rewritten with a same-bounds store.
#ifdef RCUVM_STRESS_CURSOR_REPLACE
  void do_replace(uint64_t index, uint64_t hi) {
    auto target = model_.first_overlapping(index, hi);
    if (!target) return;
    Value* v = make_value(target->first, target->last);
    tree_.lock();
    auto c = tree_.cursor(index);
    auto e = c.next(hi);
    absl::Status s = e ? c.replace(v) : absl::OkStatus();
    tree_.unlock();
    ++stats_.replaces;
    ++stats_.ops;
    STRESS_REQUIRE(e && *e == *target, "cursor under the writer lock found %s, model has %s",
                   describe(e).c_str(), describe(target).c_str());
    STRESS_REQUIRE(s.ok(), "cursor replace at [%#" PRIx64 ", %#" PRIx64 "] failed: %s", e->first,
                   e->last, s.ToString().c_str());
    model_.replace(target->first, v, dropped_);
    retire_all(dropped_);
  }
#else
  void do_replace(uint64_t index, uint64_t hi) {
    auto target = model_.first_overlapping(index, hi);
    if (!target) return;
    do_store(target->first, target->last, make_value(target->first, target->last),
             "store same bounds");
    ++stats_.replaces;
  }
#endif

  void random_op() {
    const Window& w = random_window();
    auto [a, b] = small_range(w);
    uint64_t r = rng_.below(100);
    if (r < 30) {
      do_store(a, b, make_value(a, b), "store");
    } else if (r < 50) {
      do_insert(a, b);
    } else if (r < 68) {
      // Erase mostly what is there: the next entry at or after a.
      auto e = model_.first_from(a, w.hi);
      do_erase(e && !rng_.one_in(5) ? rng_.between(e->first, e->last) : a);
    } else if (r < 78) {
      do_store(a, b, nullptr, "store null");
    } else if (r < 86) {
      do_replace(a, w.hi);
    } else if (r < 89) {
      locked_batch(w);
    } else if (r < 93) {
      // Overwrite an existing entry with exactly its bounds (a slot store).
      if (auto e = model_.first_from(a, w.hi))
        do_store(e->first, e->last, make_value(e->first, e->last), "store same bounds");
    } else {
      // A spanning store across many nodes, with a value or null.
      uint64_t span = rng_.below(Layout::kHot / 8);
      uint64_t last = a + std::min(span, w.hi - a);
      do_store(a, last, rng_.one_in(2) ? make_value(a, last) : nullptr, "spanning store");
      ++stats_.spanning;
    }
  }

  // Several writes under one hold of the writer lock (the *_locked calls).
  void locked_batch(const Window& w) {
    int n = 2 + int(rng_.below(3));
    tree_.lock();
    holding_lock_ = true;  // validate() would take the lock again
    for (int i = 0; i < n; ++i) {
      auto [a, b] = small_range(w);
      if (rng_.one_in(3)) {
        std::optional<Entry> expect = model_.at(a);
        auto r = tree_.erase_locked(a);
        ++stats_.erases;
        if (accept(r.status(), "erase_locked", a, a)) {
          STRESS_REQUIRE(*r == (expect ? expect->value : nullptr),
                         "erase_locked(%#" PRIx64 ") returned %p, the model holds %s", a,
                         static_cast<void*>(*r), describe(expect).c_str());
          if (expect) model_.store(expect->first, expect->last, nullptr, dropped_);
        }
      } else {
        Value* v = make_value(a, b);
        ++stats_.stores;
        if (accept(tree_.store_locked(a, b, v), "store_locked", a, b))
          model_.store(a, b, v, dropped_);
        else
          v->discard();
      }
    }
    holding_lock_ = false;
    tree_.unlock();
    retire_all(dropped_);
  }

  // Inserts a run of small entries left to right, some adjacent.
  void fill_run() {
    const Window& w = random_window();
    uint64_t a = rng_.between(w.lo, w.hi) & ~uint64_t(0xfff);
    if (a < w.lo) a = w.lo;
    int n = 50 + int(rng_.below(250));
    for (int i = 0; i < n; ++i) {
      uint64_t len = 0x1000 * (1 + rng_.below(8));
      if (w.hi - a < len) break;
      do_insert(a, a + len - 1);
      uint64_t gap = rng_.one_in(3) ? 0 : 0x1000 * rng_.below(8);
      if (w.hi - (a + len) < gap) break;
      a += len + gap;
    }
  }

  // Stores null over a whole zone; retried while the allocator refuses.
  void wipe(const Window& z) {
    for (int attempt = 0;; ++attempt) {
      STRESS_REQUIRE(attempt < 10000, "wiping zone [%#" PRIx64 ", %#" PRIx64 "] kept failing", z.lo,
                     z.hi);
      absl::Status s = tree_.store(z.lo, z.hi, nullptr);
      ++stats_.stores;
      if (accept(s, "zone wipe", z.lo, z.hi)) break;
    }
    model_.store(z.lo, z.hi, nullptr, dropped_);
    retire_all(dropped_);
    ++stats_.wipes;
  }

  void validate(const char* when) {
    absl::Status v = tree_.validate();
    ++stats_.validations;
    STRESS_REQUIRE(v.ok(), "validate() %s failed: %s", when, v.ToString().c_str());
  }

  void maybe_verify() {
    if (++since_verify_ < 1500) return;
    since_verify_ = 0;
    verify_full("during churn");
  }

  // validate(), the counters, and a full iteration equal to the model.
  void verify_full(const char* when) {
    validate(when);
    TreeStats ts = tree_.stats();
    STRESS_REQUIRE(ts.entries == model_.size(),
                   "stats() %s counts %" PRIu64 " entries, the model holds %zu", when, ts.entries,
                   model_.size());
    rcu::ReadGuard guard;
    auto c = tree_.cursor(0);
    auto it = model_.map().begin();
    for (;;) {
      auto e = c.next();
      bool more = it != model_.map().end();
      STRESS_REQUIRE(
          e.has_value() == more && (!e || (e->first == it->first && e->last == it->second.last &&
                                           e->value == it->second.value)),
          "tree differs from the model %s: tree has %s, model has %s", when, describe(e).c_str(),
          more ? describe(Entry{it->first, it->second.last, it->second.value}).c_str() : "none");
      if (!e) break;
      ++it;
    }
  }

  TreeStats note_height() {
    TreeStats ts = tree_.stats();
    stats_.min_height = std::min(stats_.min_height, ts.height);
    stats_.max_height = std::max(stats_.max_height, ts.height);
    return ts;
  }

  Tree& tree_;
  const Layout& layout_;
  WriterConfig cfg_;
  Rng rng_;
  Model model_;
  WriterStats stats_;
  std::vector<Value*> dropped_;
  uint64_t serial_ = 0;
  uint64_t since_verify_ = 0;
  bool holding_lock_ = false;
};

// Runs the whole program: setup, readers, writer, teardown, summary.
inline int run_churn_stress(int argc, char** argv, bool faults) {
  Args args = faults
                  ? Args(argc, argv, {"entries", "fail-one-in"}, " [--entries N] [--fail-one-in N]")
                  : Args(argc, argv, {"entries"}, " [--entries N]");
  double seconds = args.seconds(3);
  int nreaders = args.readers(4);
  uint64_t seed = args.seed();
  WriterConfig cfg;
  // Sanitized builds run several times slower: grow to height 4 instead of 5
  // so that a few seconds still hold several grow/shrink cycles.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  cfg.high_entries = args.get_u64("entries", 4000);
#else
  cfg.high_entries = args.get_u64("entries", 20000);
#endif
  cfg.fail_one_in = faults ? args.get_u64("fail-one-in", 12) : 0;
  cfg.seed = seed;
  STRESS_REQUIRE(nreaders >= 1, "--readers must be at least 1");
  STRESS_REQUIRE(!faults || cfg.fail_one_in >= 2, "--fail-one-in must be at least 2");
  std::printf("%s: seed %" PRIu64 ", %.1f s, %d readers, up to %" PRIu64 " entries%s\n",
              program_name(), seed, seconds, nreaders, cfg.high_entries,
              faults ? ", writer allocations fail at random" : "");
  std::fflush(stdout);

  auto start = std::chrono::steady_clock::now();
  Layout layout;
  WriterStats ws;
  std::vector<ReaderStats> rs(nreaders);
  {
    Tree tree(TreeOptions{.track_gaps = true, .rcu = true});
    Writer writer(tree, layout, cfg);
    writer.setup();

    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    std::vector<Reader> readers;
    readers.reserve(nreaders);
    for (int i = 0; i < nreaders; ++i) readers.emplace_back(tree, layout, seed * 1000003 + i + 1);
    for (int i = 0; i < nreaders; ++i) threads.emplace_back([&, i] { readers[i].run(stop); });

    writer.run(Deadline(seconds));
    stop.store(true);
    for (auto& t : threads) t.join();
    for (int i = 0; i < nreaders; ++i) rs[i] = readers[i].stats();
    ws = writer.stats();

    // Teardown: empty the tree, then free every value after a grace period.
    std::vector<Value*> left = writer.model().values();
    tree.destroy();
    STRESS_REQUIRE(tree.empty(), "destroy() left the tree non-empty");
    for (Value* v : left) rcu::retire(v);
  }
  rcu::drain();
  uint64_t created = g_values_created.load(), reclaimed = g_values_reclaimed.load(),
           discarded = g_values_discarded.load();
  STRESS_REQUIRE(created == reclaimed + discarded,
                 "values leaked: %" PRIu64 " created, %" PRIu64 " reclaimed, %" PRIu64 " discarded",
                 created, reclaimed, discarded);

  ReaderStats total;
  for (const ReaderStats& r : rs) {
    total.stable_loads += r.stable_loads;
    total.finds += r.finds;
    total.zone_loads += r.zone_loads;
    total.full_iterations += r.full_iterations;
    total.entries_seen += r.entries_seen;
    total.window_scans += r.window_scans;
  }
  if (faults)
    STRESS_REQUIRE(ws.enomem > 0 || ws.ops < 1000,
                   "no write failed in %" PRIu64 " ops: fault injection is not reaching the tree",
                   ws.ops);
  STRESS_REQUIRE(total.full_iterations > 0 || seconds < 0.5,
                 "readers finished no full iteration in %.1f s", seconds);
  std::printf(
      "%s: PASS in %.1f s (seed %" PRIu64 "): writer %" PRIu64 " ops (%" PRIu64 " stores, %" PRIu64
      " inserts of which %" PRIu64 " refused, %" PRIu64 " erases, %" PRIu64
      " value replacements, %" PRIu64 " spanning stores, %" PRIu64 " zone wipes%s), %" PRIu64
      " grow/shrink cycles, height %" PRIu64 "..%" PRIu64 " with %" PRIu64
      " collapses to one leaf, %" PRIu64 " validate() runs",
      program_name(), seconds_since(start), seed, ws.ops, ws.stores, ws.inserts, ws.inserts_refused,
      ws.erases, ws.replaces, ws.spanning, ws.wipes,
      faults ? (", " + std::to_string(ws.enomem) + " refused with ENOMEM and checked unchanged")
                   .c_str()
             : "",
      ws.cycles, ws.min_height == UINT64_MAX ? 0 : ws.min_height, ws.max_height,
      ws.collapses_to_leaf, ws.validations);
  std::printf("; %d readers: %" PRIu64 " stable loads, %" PRIu64 " finds, %" PRIu64
              " zone probes, %" PRIu64 " full iterations and %" PRIu64 " window scans over %" PRIu64
              " entries, all consistent; %" PRIu64 " values freed through RCU, none leaked\n",
              nreaders, total.stable_loads, total.finds, total.zone_loads, total.full_iterations,
              total.window_scans, total.entries_seen, reclaimed);
  return 0;
}

}  // namespace rcuvm::stress

#endif  // RCUVM_STRESS_TREE_CHURN_H_
