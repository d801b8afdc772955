// tree_rcu_kernel_shape_stress: the Linux maple tree's RCU stress tests
// (tools/testing/radix-tree/maple.c: rcu_stress, rcu_stress_fwd/_rev,
// rcu_reader_fwd/_rev, check_rcu_simulated, run_check_rcu_slot_store) in the
// shape of this library, bounded in time.
//
// 1. Forward and reverse stress (as rcu_stress(mt, true/false)). 1,000 ranges
//    of random length, separated by 0..9 free indices (so some are adjacent),
//    in 100 groups of ten. In each group four ranges have a role, the others
//    never change:
//      flip  toggled between its own value and an alternative every 5 rounds
//      del   deleted at iteration 40 of each writer pass
//      add   absent at first, added at iteration 50
//      mod   given a new value at iteration 60
//    A writer pass is 100 iterations over all groups (forward: groups and
//    iterations ascending; reverse: both descending, so the modify comes
//    before the add and the delete), then the pass is undone and the next one
//    starts, until the phase's time is up. Readers (--readers, half walking
//    each group forward with a cursor, half backward) check inside one read
//    section that every entry has exactly the bounds of one of the group's
//    ranges, in order, that only `del` and `add` may be missing, and that each
//    value is one the writer could have left there. Within one pass they also
//    check monotonicity: a range seen deleted is never seen again, one seen
//    added never disappears, one seen modified never shows its old value.
//    (A pass counter, odd while the writer undoes a pass, tells readers which
//    observations belong to the same pass.)
// 2. check_rcu_simulated: one thread holds a read section and a cursor while
//    it writes over, around and across the entry under the cursor; every read
//    after the write must see the write.
// 3. Symmetric expansion (run_check_rcu_slot_store): 200 ranges cover most of
//    the index space; the middle one is grown by one index on both sides per
//    store, taking them from its neighbours. Readers must always see the
//    middle range grown equally on both sides: never its new first index with
//    its old last one, and never a gap or an overlap with its neighbours.
//
//   tree_rcu_kernel_shape_stress --seconds 3 [--readers 8] [--seed N]
//   (the kernel runs 200 readers: --readers 200 works too)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "stress_util.h"

namespace rcuvm::stress {
namespace {

constexpr int kRanges = 1000;
constexpr int kGroupSize = 10;
constexpr int kGroups = kRanges / kGroupSize;
// The kernel runs one pass of 10,000 iterations with the events at 400, 500
// and 600; here a pass is 100 iterations with them at 40, 50 and 60, repeated
// (and undone in between) until the time is up, so that a slow (sanitized)
// build still completes several passes.
constexpr int kPassIterations = 100;
constexpr int kDeleteAt = 40, kAddAt = 50, kModifyAt = 60, kToggleEvery = 5;

// Values are never freed while readers run, so readers may compare pointers
// and read fields freely. `range` says which range the value belongs to.
struct KValue {
  enum Kind { kOriginal, kToggled, kModified, kGrown, kPiece };
  Kind kind;
  int range;
};

using Tree = RangeTree<KValue>;
using Entry = Tree::Entry;

std::string describe(const std::optional<Entry>& e) {
  if (!e) return "none";
  char buf[160];
  std::snprintf(buf, sizeof buf, "[%#" PRIx64 ", %#" PRIx64 "] -> %p", e->first, e->last,
                static_cast<void*>(e->value));
  return buf;
}

// Roles inside a group, rotated from group to group so that every position
// (first of a group, adjacent to another role...) gets each role.
struct Roles {
  int mod, del, flip, add;
  explicit Roles(int group) {
    int base = group % 7;
    mod = base;
    del = base + 1;
    flip = base + 2;
    add = base + 3;
  }
  bool optional(int k) const { return k == del || k == add; }
};

struct Observed {
  std::atomic<uint64_t> toggles{0}, deletes{0}, adds{0}, modifies{0};
  std::atomic<uint64_t> group_walks{0}, point_loads{0}, entries{0};
};

// --- Phase 1: rcu_stress forward and reverse.

class RangeSet {
 public:
  explicit RangeSet(Rng& rng) {
    // As rcu_stress: a random start, lengths up to 2^31, 0..9 free between.
    uint64_t at = rng.below(1ull << 40);
    for (int k = 0; k < kRanges; ++k) {
      first_[k] = at;
      last_[k] = at + rng.below(1ull << 31);
      at = last_[k] + 1 + rng.below(10);
      original_[k] = {KValue::kOriginal, k};
      toggled_[k] = {KValue::kToggled, k};
      modified_[k] = {KValue::kModified, k};
    }
  }
  uint64_t first(int k) const { return first_[k]; }
  uint64_t last(int k) const { return last_[k]; }
  KValue* original(int k) { return &original_[k]; }
  KValue* toggled(int k) { return &toggled_[k]; }
  KValue* modified(int k) { return &modified_[k]; }
  const KValue* original(int k) const { return &original_[k]; }
  const KValue* toggled(int k) const { return &toggled_[k]; }
  const KValue* modified(int k) const { return &modified_[k]; }

 private:
  uint64_t first_[kRanges], last_[kRanges];
  KValue original_[kRanges], toggled_[kRanges], modified_[kRanges];
};

struct StressShared {
  Tree tree{TreeOptions{.track_gaps = false, .rcu = true}};
  std::unique_ptr<RangeSet> ranges;
  // Even: a pass is running (or done); odd: the writer is undoing a pass.
  // (W) release increments; pairs with the readers' acquire loads around
  // each walk.
  std::atomic<uint64_t> pass{0};
  std::atomic<bool> stop{false};
  Observed seen;
};

void store_or_fail(Tree& t, uint64_t first, uint64_t last, KValue* v, const char* what) {
  absl::Status s = t.store(first, last, v);
  STRESS_REQUIRE(s.ok(), "%s store [%#" PRIx64 ", %#" PRIx64 "] failed: %s", what, first, last,
                 s.ToString().c_str());
}

class KernelReader {
 public:
  KernelReader(StressShared& sh, int id, int nreaders, bool forward)
      : sh_(sh),
        forward_(forward),
        group_(id * kGroups / std::max(nreaders, 1) % kGroups),
        rng_(uint64_t(id) * 7919 + 17) {}

  void run() {
    rcu::ThreadScope scope;
    while (!sh_.stop.load(std::memory_order_relaxed)) {
      walk_group(group_);
      point_loads(group_);
      group_ = (group_ + 1) % kGroups;
      std::this_thread::yield();
    }
  }

 private:
  // Per group: the pass in which this reader saw a fact that must then hold
  // for the rest of the pass (UINT64_MAX: not seen).
  struct Facts {
    uint64_t deleted = UINT64_MAX, added = UINT64_MAX, modified = UINT64_MAX;
    const KValue* last_flip = nullptr;
  };

  void walk_group(int g) {
    const RangeSet& rs = *sh_.ranges;
    const Roles roles(g);
    const int base = g * kGroupSize;
    Entry got[kGroupSize + 1];
    int n = 0;
    uint64_t pass_before = sh_.pass.load(std::memory_order_acquire);
    {
      rcu::ReadGuard guard;
      auto c = sh_.tree.cursor(forward_ ? rs.first(base) : rs.last(base + kGroupSize - 1));
      for (;;) {
        auto e = forward_ ? c.next(rs.last(base + kGroupSize - 1)) : c.prev(rs.first(base));
        if (!e) break;
        STRESS_REQUIRE(n < kGroupSize, "group %d yielded more than %d entries (last %s)", g,
                       kGroupSize, describe(e).c_str());
        got[n++] = *e;
      }
    }
    uint64_t pass_after = sh_.pass.load(std::memory_order_acquire);
    if (!forward_) std::reverse(got, got + n);
    sh_.seen.group_walks.fetch_add(1, std::memory_order_relaxed);
    sh_.seen.entries.fetch_add(n, std::memory_order_relaxed);

    // Match entries to ranges: exact bounds, ascending, only del/add missing.
    bool present[kGroupSize] = {};
    const KValue* value[kGroupSize] = {};
    int k = 0;
    for (int i = 0; i < n; ++i) {
      const Entry& e = got[i];
      while (k < kGroupSize && rs.first(base + k) < e.first) {
        STRESS_REQUIRE(roles.optional(k),
                       "%s walk of group %d: range %d [%#" PRIx64 ", %#" PRIx64
                       "] (never removed) missing; next entry %s",
                       forward_ ? "forward" : "reverse", g, base + k, rs.first(base + k),
                       rs.last(base + k), describe(e).c_str());
        ++k;
      }
      STRESS_REQUIRE(k < kGroupSize && rs.first(base + k) == e.first && rs.last(base + k) == e.last,
                     "%s walk of group %d: entry %s has bounds of no range (expected [%#" PRIx64
                     ", %#" PRIx64 "] here): torn or out of order",
                     forward_ ? "forward" : "reverse", g, describe(e).c_str(),
                     k < kGroupSize ? rs.first(base + k) : 0,
                     k < kGroupSize ? rs.last(base + k) : 0);
      present[k] = true;
      value[k] = e.value;
      ++k;
    }
    for (; k < kGroupSize; ++k)
      STRESS_REQUIRE(roles.optional(k),
                     "%s walk of group %d: range %d [%#" PRIx64 ", %#" PRIx64
                     "] (never removed) missing at the end",
                     forward_ ? "forward" : "reverse", g, base + k, rs.first(base + k),
                     rs.last(base + k));

    // Values: each one the writer could have left there.
    for (k = 0; k < kGroupSize; ++k) {
      if (!present[k]) continue;
      const int r = base + k;
      const KValue* v = value[k];
      bool ok = v == rs.original(r) || (k == roles.flip && v == rs.toggled(r)) ||
                (k == roles.mod && v == rs.modified(r));
      STRESS_REQUIRE(ok,
                     "group %d range %d [%#" PRIx64 ", %#" PRIx64
                     "] holds %p (kind %d of range %d), which the writer never stored there",
                     g, r, rs.first(r), rs.last(r), static_cast<const void*>(v), int(v->kind),
                     v->range);
    }

    // Monotonic facts, only for walks that lay entirely inside one pass.
    Facts& f = facts_[g];
    if (present[roles.flip]) {
      if (f.last_flip && value[roles.flip] != f.last_flip)
        sh_.seen.toggles.fetch_add(1, std::memory_order_relaxed);
      f.last_flip = value[roles.flip];
    }
    if (pass_before != pass_after || pass_before % 2) return;
    const uint64_t pass = pass_before;
    if (!present[roles.del]) {
      if (f.deleted != pass) sh_.seen.deletes.fetch_add(1, std::memory_order_relaxed);
      f.deleted = pass;
    } else {
      STRESS_REQUIRE(
          f.deleted != pass,
          "group %d: range %d reappeared after this reader saw it deleted in pass %" PRIu64, g,
          base + roles.del, pass / 2);
    }
    if (present[roles.add]) {
      if (f.added != pass) sh_.seen.adds.fetch_add(1, std::memory_order_relaxed);
      f.added = pass;
    } else {
      STRESS_REQUIRE(f.added != pass,
                     "group %d: range %d vanished after this reader saw it added in pass %" PRIu64,
                     g, base + roles.add, pass / 2);
    }
    if (value[roles.mod] == rs.modified(base + roles.mod)) {
      if (f.modified != pass) sh_.seen.modifies.fetch_add(1, std::memory_order_relaxed);
      f.modified = pass;
    } else {
      STRESS_REQUIRE(f.modified != pass,
                     "group %d: range %d showed its old value after this reader saw it modified in "
                     "pass %" PRIu64,
                     g, base + roles.mod, pass / 2);
    }
  }

  // Point loads inside the group's ranges and in the free indices between.
  void point_loads(int g) {
    const RangeSet& rs = *sh_.ranges;
    const Roles roles(g);
    for (int i = 0; i < 4; ++i) {
      int k = int(rng_.below(kGroupSize));
      int r = g * kGroupSize + k;
      uint64_t index = rng_.between(rs.first(r), rs.last(r));
      rcu::ReadGuard guard;
      const KValue* v = sh_.tree.load(index);
      bool ok = v == rs.original(r) || (k == roles.flip && v == rs.toggled(r)) ||
                (k == roles.mod && v == rs.modified(r)) || (!v && roles.optional(k));
      STRESS_REQUIRE(
          ok, "load(%#" PRIx64 ") in range %d returned %p, which the writer never stored there",
          index, r, static_cast<const void*>(v));
      if (r + 1 < kRanges && rs.first(r + 1) > rs.last(r) + 1) {
        uint64_t hole = rng_.between(rs.last(r) + 1, rs.first(r + 1) - 1);
        const KValue* h = sh_.tree.load(hole);
        STRESS_REQUIRE(!h, "load(%#" PRIx64 ") between ranges %d and %d returned %p", hole, r,
                       r + 1, static_cast<const void*>(h));
      }
      sh_.seen.point_loads.fetch_add(1, std::memory_order_relaxed);
    }
  }

  StressShared& sh_;
  const bool forward_;
  int group_;
  Rng rng_;
  Facts facts_[kGroups];
};

struct PassCounts {
  uint64_t passes = 0, stores = 0;
};

// One writer pass (rcu_stress_fwd / rcu_stress_rev), then its undo.
bool writer_pass(StressShared& sh, bool forward, bool& toggle, const Deadline& deadline,
                 PassCounts& counts) {
  RangeSet& rs = *sh.ranges;
  for (int step = 0; step < kPassIterations; ++step) {
    const int j = forward ? step : kPassIterations - 1 - step;
    toggle = !toggle;
    for (int gi = 0; gi < kGroups; ++gi) {
      const int g = forward ? gi : kGroups - 1 - gi;
      const Roles roles(g);
      const int base = g * kGroupSize;
      if (j == kModifyAt) {
        int r = base + roles.mod;
        store_or_fail(sh.tree, rs.first(r), rs.last(r), rs.modified(r), "modify");
        ++counts.stores;
      }
      if (j % kToggleEvery == 0) {
        int r = base + roles.flip;
        store_or_fail(sh.tree, rs.first(r), rs.last(r), toggle ? rs.original(r) : rs.toggled(r),
                      "toggle");
        ++counts.stores;
      }
      if (j == kDeleteAt) {
        int r = base + roles.del;
        store_or_fail(sh.tree, rs.first(r), rs.last(r), nullptr, "delete");
        ++counts.stores;
      }
      if (j == kAddAt) {
        int r = base + roles.add;
        store_or_fail(sh.tree, rs.first(r), rs.last(r), rs.original(r), "add");
        ++counts.stores;
      }
    }
    std::this_thread::yield();
    if (deadline.passed() || sh.stop.load(std::memory_order_relaxed)) return false;
  }
  // Undo the pass; readers see an odd pass number meanwhile.
  sh.pass.fetch_add(1, std::memory_order_acq_rel);
  for (int g = 0; g < kGroups; ++g) {
    const Roles roles(g);
    const int base = g * kGroupSize;
    int d = base + roles.del, a = base + roles.add, m = base + roles.mod;
    store_or_fail(sh.tree, rs.first(d), rs.last(d), rs.original(d), "undo delete");
    store_or_fail(sh.tree, rs.first(a), rs.last(a), nullptr, "undo add");
    store_or_fail(sh.tree, rs.first(m), rs.last(m), rs.original(m), "undo modify");
    counts.stores += 3;
  }
  sh.pass.fetch_add(1, std::memory_order_acq_rel);
  ++counts.passes;
  return true;
}

PassCounts rcu_stress(bool forward, int nreaders, uint64_t seed, double seconds, Observed& total) {
  StressShared sh;
  Rng rng(seed);
  sh.ranges = std::make_unique<RangeSet>(rng);
  RangeSet& rs = *sh.ranges;
  for (int r = 0; r < kRanges; ++r)
    store_or_fail(sh.tree, rs.first(r), rs.last(r), rs.original(r), "setup");
  for (int g = 0; g < kGroups; ++g) {
    int a = g * kGroupSize + Roles(g).add;
    store_or_fail(sh.tree, rs.first(a), rs.last(a), nullptr, "setup (remove the add entries)");
  }
  {
    absl::Status v = sh.tree.validate();
    STRESS_REQUIRE(v.ok(), "validate() after setup: %s", v.ToString().c_str());
  }

  std::vector<std::unique_ptr<KernelReader>> readers;
  std::vector<std::thread> threads;
  for (int i = 0; i < nreaders; ++i)
    readers.push_back(std::make_unique<KernelReader>(sh, i, nreaders, i % 2 == 0));
  for (auto& r : readers) threads.emplace_back([&r] { r->run(); });

  Deadline deadline(seconds);
  PassCounts counts;
  bool toggle = true;
  while (writer_pass(sh, forward, toggle, deadline, counts)) {
    if (deadline.passed()) break;
  }
  sh.stop.store(true);
  for (auto& t : threads) t.join();

  absl::Status v = sh.tree.validate();
  STRESS_REQUIRE(v.ok(), "validate() after the %s stress: %s", forward ? "forward" : "reverse",
                 v.ToString().c_str());
  total.toggles += sh.seen.toggles.load();
  total.deletes += sh.seen.deletes.load();
  total.adds += sh.seen.adds.load();
  total.modifies += sh.seen.modifies.load();
  total.group_walks += sh.seen.group_walks.load();
  total.point_loads += sh.seen.point_loads.load();
  total.entries += sh.seen.entries.load();
  return counts;
}

// --- Phase 2: check_rcu_simulated.

void expect_at(const Tree& t, uint64_t index, uint64_t first, uint64_t last, const KValue* v,
               const char* step) {
  auto e = t.find(index, index);
  STRESS_REQUIRE(e && e->first == first && e->last == last && e->value == v,
                 "simulated RCU, %s: find(%#" PRIx64 ") returned %s, expected [%#" PRIx64
                 ", %#" PRIx64 "] -> %p",
                 step, index, describe(e).c_str(), first, last, static_cast<const void*>(v));
  STRESS_REQUIRE(t.load(index) == v, "simulated RCU, %s: load(%#" PRIx64 ") disagrees with find",
                 step, index);
}

int check_rcu_simulated() {
  const uint64_t nr = 1000, target = 4320;
  std::vector<KValue> vals(nr + 1);
  for (uint64_t i = 0; i <= nr; ++i) vals[i] = {KValue::kOriginal, int(i)};
  KValue val{KValue::kModified, -1};
  KValue* orig = &vals[target / 10];
  Tree t;
  auto fill = [&] {
    for (uint64_t i = 0; i <= nr; ++i)
      store_or_fail(t, i * 10, i * 10 + 5, &vals[i], "simulated setup");
  };
  fill();
  int checks = 0;

  // Each case: the reader sees the original, the same thread writes while
  // still inside its read section, and the next read sees the write.
  struct Case {
    const char* name;
    uint64_t first, last;
    bool reader_sees_new;
    uint64_t new_first, new_last;  // bounds the reader then sees at target
  };
  const Case cases[] = {
      {"overwrite the entry", target, target + 5, true, target, target + 5},
      {"overwrite its first half", target, target + 2, true, target, target + 2},
      {"overwrite its last half", target + 2, target + 5, false, target, target + 1},
      {"overwrite more than the entry", target - 5, target + 15, true, target - 5, target + 15},
      {"overwrite more than the node", target - 400, target + 400, true, target - 400,
       target + 400},
      {"overwrite the whole tree", 0, UINT64_MAX, true, 0, UINT64_MAX},
  };
  for (const Case& c : cases) {
    {
      rcu::ReadGuard guard;
      auto cur = t.cursor(target);
      auto e = cur.next(target);
      STRESS_REQUIRE(e && e->value == orig, "simulated RCU, %s: before the write the cursor saw %s",
                     c.name, describe(e).c_str());
      store_or_fail(t, c.first, c.last, &val, c.name);
      if (c.reader_sees_new)
        expect_at(t, target, c.new_first, c.new_last, &val, c.name);
      else
        expect_at(t, target, c.new_first, c.new_last, orig, c.name);
      cur.seek(target);
      auto again = cur.next(target);
      STRESS_REQUIRE(again && again->value == (c.reader_sees_new ? &val : orig),
                     "simulated RCU, %s: the cursor re-walked to %s", c.name,
                     describe(again).c_str());
      checks += 3;
    }
    // Restore as the kernel does (store the original over the written range),
    // then rebuild so that every case starts from the same tree.
    store_or_fail(t, 0, UINT64_MAX, nullptr, "simulated clear");
    fill();
  }

  // next() after a write behind the cursor: walk to target, step back over
  // two entries, write target, step forward: the entry at target is new.
  // Steps move from the current entry (mas_next/mas_prev semantics), so the
  // first next() after the write must already be the new entry at target.
  {
    rcu::ReadGuard guard;
    auto cur = t.cursor(target);
    auto e = cur.prev();
    STRESS_REQUIRE(e && e->first == target && e->value == orig,
                   "simulated RCU, next check: prev() gave %s", describe(e).c_str());
    e = cur.prev();
    STRESS_REQUIRE(e && e->first == target - 10 && e->last == target - 5,
                   "simulated RCU, next check: second prev() gave %s", describe(e).c_str());
    store_or_fail(t, target, target + 5, &val, "next check");
    e = cur.next();
    STRESS_REQUIRE(e && e->first == target && e->last == target + 5 && e->value == &val,
                   "simulated RCU, next check: after the write next() gave %s",
                   describe(e).c_str());
    ++checks;
  }
  store_or_fail(t, target, target + 5, orig, "restore");
  // prev() after a write behind the cursor, the mirror image of the above:
  // walk to target, step forward over two entries, write target, step back:
  // the first prev() is the new entry.
  // (With the old position semantics this test stepped forward once and
  // expected prev() to return the same entry again; now prev() from the
  // current entry returns the one before it.)
  {
    rcu::ReadGuard guard;
    auto cur = t.cursor(target);
    auto e = cur.next();
    STRESS_REQUIRE(e && e->first == target && e->value == orig,
                   "simulated RCU, prev check: next() gave %s", describe(e).c_str());
    e = cur.next();
    STRESS_REQUIRE(e && e->first == target + 10 && e->last == target + 15,
                   "simulated RCU, prev check: second next() gave %s", describe(e).c_str());
    store_or_fail(t, target, target + 5, &val, "prev check");
    e = cur.prev();
    STRESS_REQUIRE(e && e->first == target && e->last == target + 5 && e->value == &val,
                   "simulated RCU, prev check: after the write prev() gave %s",
                   describe(e).c_str());
    // A write to the current entry itself: the next step back skips it (it
    // never returns the current entry or one overlapping it) and the step
    // forward after that sees the new value.
    store_or_fail(t, target, target + 5, orig, "prev check, current entry");
    e = cur.prev();
    STRESS_REQUIRE(e && e->first == target - 10 && e->last == target - 5,
                   "simulated RCU, prev check: prev() past the rewritten current entry gave %s",
                   describe(e).c_str());
    e = cur.next();
    STRESS_REQUIRE(e && e->first == target && e->last == target + 5 && e->value == orig,
                   "simulated RCU, prev check: next() back onto the rewritten entry gave %s",
                   describe(e).c_str());
    checks += 2;
  }
  absl::Status v = t.validate();
  STRESS_REQUIRE(v.ok(), "validate() after the simulated RCU checks: %s", v.ToString().c_str());
  t.destroy();
  rcu::drain();  // free the replaced nodes now: each phase starts clean
  return checks;
}

// --- Phase 3: symmetric expansion (run_check_rcu_slot_store).

struct SymmetricShared {
  Tree tree{TreeOptions{.track_gaps = false, .rcu = true}};
  uint64_t index = 0, last = 0, len = 0;  // the middle range as first stored
  KValue middle{KValue::kOriginal, 100}, grown{KValue::kGrown, 100};
  std::vector<KValue> pieces;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
};

void symmetric_reader(SymmetricShared& sh) {
  rcu::ThreadScope scope;
  uint64_t reads = 0;
  while (!sh.stop.load(std::memory_order_relaxed)) {
    rcu::ReadGuard guard;
    auto e = sh.tree.find(sh.index, sh.index);
    STRESS_REQUIRE(e, "symmetric expansion: nothing at %#" PRIx64, sh.index);
    STRESS_REQUIRE(sh.index - e->first == e->last - sh.last,
                   "symmetric expansion torn: middle range seen as %s, grown by %" PRIu64
                   " on the left but %" PRIu64 " on the right",
                   describe(e).c_str(), sh.index - e->first, e->last - sh.last);
    STRESS_REQUIRE(e->value == (e->first == sh.index ? &sh.middle : &sh.grown),
                   "symmetric expansion: middle range %s holds a value never stored there",
                   describe(e).c_str());
    auto r = sh.tree.find_rev(sh.last, sh.last);
    STRESS_REQUIRE(r && sh.index - r->first == r->last - sh.last,
                   "symmetric expansion torn (find_rev): middle range seen as %s",
                   describe(r).c_str());
    // Neighbours and the middle, walked with a cursor in one read section:
    // strictly ordered and non-overlapping, the middle (in whatever version
    // the cursor meets) symmetric, the neighbours' outer ends untouched. Their
    // inner ends may come from different versions: each step is a separate
    // lookup, and entries changed meanwhile may or may not appear.
    auto c = sh.tree.cursor(sh.index - sh.len);
    std::optional<Entry> prev;
    int n = 0;
    while (auto x = c.next(sh.last + sh.len)) {
      STRESS_REQUIRE(++n <= 3, "symmetric expansion: cursor met a fourth entry %s",
                     describe(x).c_str());
      STRESS_REQUIRE(!prev || x->first > prev->last,
                     "symmetric expansion: cursor went from %s to %s (out of order or overlapping)",
                     describe(prev).c_str(), describe(x).c_str());
      if (x->value == &sh.grown || x->value == &sh.middle)
        STRESS_REQUIRE(sh.index - x->first == x->last - sh.last,
                       "symmetric expansion torn (cursor): middle range seen as %s",
                       describe(x).c_str());
      else if (x->value == &sh.pieces[99])
        STRESS_REQUIRE(x->first == sh.index - sh.len, "left neighbour seen as %s",
                       describe(x).c_str());
      else if (x->value == &sh.pieces[101])
        STRESS_REQUIRE(x->last == sh.last + sh.len, "right neighbour seen as %s",
                       describe(x).c_str());
      else
        STRESS_REQUIRE(false, "symmetric expansion: cursor met %s, never stored there",
                       describe(x).c_str());
      prev = x;
    }
    reads += 3;
    // Leave the writer some CPU when readers outnumber cores (--readers 200).
    if (reads % 96 == 0) std::this_thread::yield();
  }
  sh.reads.fetch_add(reads);
}

uint64_t symmetric_expansion(int nreaders, double seconds, uint64_t& reads) {
  SymmetricShared sh;
  const int count = 200;
  sh.len = UINT64_MAX / count;
  sh.pieces.resize(count);
  for (int i = 0; i < count; ++i) {
    sh.pieces[i] = {KValue::kPiece, i};
    store_or_fail(sh.tree, i * sh.len, i * sh.len + sh.len - 1,
                  i == count / 2 ? &sh.middle : &sh.pieces[i], "symmetric setup");
  }
  sh.index = count / 2 * sh.len;
  sh.last = sh.index + sh.len - 1;
  std::vector<std::thread> threads;
  for (int i = 0; i < nreaders; ++i) threads.emplace_back([&sh] { symmetric_reader(sh); });

  Deadline deadline(seconds);
  uint64_t start = sh.index, end = sh.last, steps = 0;
  // Grow by one on both sides per store, as the kernel does 10,000 times;
  // here until the time is up (the neighbours are 2^56 long).
  while (!deadline.passed()) {
    for (int i = 0; i < 64; ++i) {
      store_or_fail(sh.tree, --start, ++end, &sh.grown, "symmetric expansion");
      ++steps;
    }
    std::this_thread::yield();
  }
  sh.stop.store(true);
  for (auto& t : threads) t.join();
  absl::Status v = sh.tree.validate();
  STRESS_REQUIRE(v.ok(), "validate() after symmetric expansion: %s", v.ToString().c_str());
  auto e = sh.tree.find(sh.index, sh.index);
  STRESS_REQUIRE(e && e->first == start && e->last == end,
                 "after %" PRIu64 " expansions the middle is %s", steps, describe(e).c_str());
  reads = sh.reads.load();
  sh.tree.destroy();
  rcu::drain();
  return steps;
}

}  // namespace
}  // namespace rcuvm::stress

int main(int argc, char** argv) {
  using namespace rcuvm::stress;
  Args args(argc, argv, {}, "");
  const double seconds = args.seconds(3);
  const int nreaders = args.readers(8);
  const uint64_t seed = args.seed();
  STRESS_REQUIRE(nreaders >= 1, "--readers must be at least 1");
  std::printf("%s: seed %" PRIu64 ", %.1f s, %d readers\n", program_name(), seed, seconds,
              nreaders);
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();

  Observed seen;
  PassCounts fwd = rcu_stress(true, nreaders, seed, seconds * 0.4, seen);
  PassCounts rev = rcu_stress(false, nreaders, seed + 1, seconds * 0.4, seen);
  int simulated = check_rcu_simulated();
  uint64_t sym_reads = 0;
  uint64_t sym_steps = symmetric_expansion(nreaders, seconds * 0.2, sym_reads);
  rcuvm::rcu::drain();

  std::printf("%s: PASS in %.1f s (seed %" PRIu64
              "): %d ranges in %d groups, %d readers; "
              "forward %" PRIu64 " passes / %" PRIu64 " stores, reverse %" PRIu64
              " passes / %" PRIu64 " stores; %" PRIu64 " group walks (%" PRIu64
              " entries) and %" PRIu64 " point loads all consistent, seeing %" PRIu64
              " toggles, %" PRIu64 " deletes, %" PRIu64 " adds, %" PRIu64
              " modifies; %d simulated-RCU checks; symmetric expansion: %" PRIu64
              " grow steps, %" PRIu64 " reads, never torn\n",
              program_name(), seconds_since(start), seed, kRanges, kGroups, nreaders, fwd.passes,
              fwd.stores, rev.passes, rev.stores, seen.group_walks.load(), seen.entries.load(),
              seen.point_loads.load(), seen.toggles.load(), seen.deletes.load(), seen.adds.load(),
              seen.modifies.load(), simulated, sym_steps, sym_reads);
  return 0;
}
