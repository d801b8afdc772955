// Randomized differential test: RangeTree against the reference model.
//
// Each test drives one distribution of ranges through both, in every tree mode
// (gap tracking on and off, RCU mode on and off), and compares every answer:
// write statuses, erase values, load, find, find_rev, find_gap, find_gap_rev.
// After every batch of operations it runs validate() and compares the whole
// contents (forward cursor, and every few batches backward cursor, for_each
// and stats). Some batches also check dup_into() and bulk_load() and carry on
// with the copy, so later writes run on trees of those shapes; some switch RCU
// mode on the live tree with set_rcu(); HeavyErase also uses destroy().
//
// The amount of work scales with RCUVM_TEST_SCALE and drops in sanitizer
// builds (tree_test_util.h). On a failure the whole operation history is
// written as an rcuvm-treeops script (path in the failure message).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../tools/treeops.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "reference_model.h"
#include "tree_test_util.h"

namespace rcuvm::testing {
namespace {

using treeops::Op;
using treeops::OpKind;

constexpr uint64_t kBatch = 1000;
constexpr uint64_t kPage = 4096;

struct Mode {
  bool track_gaps;
  bool rcu;
};
constexpr Mode kModes[] = {{false, true}, {true, true}, {false, false}, {true, false}};

std::string mode_name(Mode m) {
  return std::string(m.track_gaps ? "alloc" : "range") + (m.rcu ? "+rcu" : "");
}

std::string text(const std::optional<ModelEntry>& e) { return e ? describe(*e) : "none"; }
std::optional<ModelEntry> from_tree(const std::optional<Tree::Entry>& e) {
  if (!e) return std::nullopt;
  return ModelEntry{e->first, e->last, num(e->value)};
}
ReferenceModel::GapResult from_tree(const absl::StatusOr<uint64_t>& r) {
  if (!r.ok()) return {errno_of(r.status()), 0};
  return {0, *r};
}
std::string text(const ReferenceModel::GapResult& r) {
  return r.err ? "errno " + std::to_string(r.err) : std::to_string(r.start);
}

// Runs operations on a tree and the model together and compares every answer.
class Harness {
 public:
  Harness(Mode mode, std::string name)
      : mode_(mode), rcu_on_(mode.rcu), name_(std::move(name)), tree_(make_tree()),
        failed_before_(::testing::Test::HasFailure()) {}

  ~Harness() {
    if (!failed_before_ && ::testing::Test::HasFailure()) save_history();
  }

  // --- writes

  void store(uint64_t f, uint64_t l, uint64_t v) {
    log({.kind = OpKind::kStore, .a = f, .b = l, .c = v});
    int got = errno_of(tree_->store(f, l, ptr(v)));
    int want = model_.store(f, l, v);
    EXPECT_EQ(got, want) << where();
    note(f, l);
  }
  void insert(uint64_t f, uint64_t l, uint64_t v) {
    log({.kind = OpKind::kInsert, .a = f, .b = l, .c = v});
    int got = errno_of(tree_->insert(f, l, ptr(v)));
    int want = model_.insert(f, l, v);
    EXPECT_EQ(got, want) << where();
    note(f, l);
  }
  void erase(uint64_t index) {
    log({.kind = OpKind::kErase, .a = index});
    auto got = tree_->erase(index);
    uint64_t want = model_.erase(index);
    ASSERT_TRUE(got.ok()) << got.status() << where();
    EXPECT_EQ(num(*got), want) << where();
  }

  // --- reads

  void load(uint64_t index) {
    log({.kind = OpKind::kLoad, .a = index});
    EXPECT_EQ(num(tree_->load(index)), model_.load(index)) << where();
  }
  void find(uint64_t index, uint64_t max) {
    log({.kind = OpKind::kFind, .a = index, .b = max});
    auto got = from_tree(tree_->find(index, max));
    auto want = model_.find(index, max);
    EXPECT_EQ(got, want) << "tree " << text(got) << ", model " << text(want) << where();
  }
  void find_rev(uint64_t index, uint64_t min) {
    log({.kind = OpKind::kFindRev, .a = index, .b = min});
    auto got = from_tree(tree_->find_rev(index, min));
    auto want = model_.find_rev(index, min);
    EXPECT_EQ(got, want) << "tree " << text(got) << ", model " << text(want) << where();
  }
  void gap(uint64_t min, uint64_t max, uint64_t size) {
    log({.kind = OpKind::kGap, .a = min, .b = max, .c = size});
    auto got = from_tree(tree_->find_gap(min, max, size));
    auto want = model_.find_gap(min, max, size);
    EXPECT_TRUE(got.err == want.err && got.start == want.start)
        << "tree " << text(got) << ", model " << text(want) << where();
  }
  void gap_rev(uint64_t min, uint64_t max, uint64_t size) {
    log({.kind = OpKind::kGapRev, .a = min, .b = max, .c = size});
    auto got = from_tree(tree_->find_gap_rev(min, max, size));
    auto want = model_.find_gap_rev(min, max, size);
    EXPECT_TRUE(got.err == want.err && got.start == want.start)
        << "tree " << text(got) << ", model " << text(want) << where();
  }

  // Asks every kind of query about the neighbourhood of `index`.
  void queries_near(Rng& rng, uint64_t index, uint64_t reach) {
    uint64_t lo = index >= reach ? index - reach : 0;
    uint64_t hi = UINT64_MAX - index >= reach ? index + reach : UINT64_MAX;
    load(index);
    find(index, rng.between(index, hi));
    find_rev(index, rng.between(lo, index));
    uint64_t size = 1 + rng.below(rng.one_in(4) ? reach : 16);
    if (rng.one_in(2)) {
      gap(lo, hi, size);
    } else {
      gap_rev(lo, hi, size);
    }
  }

  // Returns the whole stored range that holds or follows `index`, if any.
  std::optional<ModelEntry> model_find(uint64_t index) const { return model_.find(index, UINT64_MAX); }
  const ReferenceModel& model() const { return model_; }
  uint64_t recent(Rng& rng) const { return recent_[rng.below(recent_.size())]; }

  // --- whole-tree checks, once per batch

  void check_batch(uint64_t batch) {
    log_comment("batch check");
    absl::Status v = tree_->validate();
    ASSERT_TRUE(v.ok()) << v << where();
    auto want = model_.entries();
    std::string diff = first_difference(contents(*tree_), want);
    ASSERT_EQ(diff, "") << where();
    TreeStats stats = tree_->stats();
    max_height_ = std::max(max_height_, stats.height);
    EXPECT_EQ(stats.entries, model_.count()) << where();
    if (!model_.empty()) {
      EXPECT_EQ(stats.nulls, model_.null_ranges()) << where();
    }
    EXPECT_EQ(tree_->empty(), model_.empty()) << where();
    if (batch % 8 == 0) {
      EXPECT_EQ(first_difference(contents_backwards(*tree_), want), "") << "prev()" << where();
      check_for_each();
    }
  }

  // Empties the tree with destroy() and goes on with the same object.
  void destroy() {
    log_comment("destroy (replayed as a store of null over everything)");
    log({.kind = OpKind::kStore, .a = 0, .b = UINT64_MAX, .c = 0});
    tree_->destroy();
    model_.clear();
    EXPECT_TRUE(tree_->empty()) << where();
    EXPECT_EQ(tree_->stats().entries, 0u) << where();
  }

  // Switches RCU mode on the live tree (publishing it, or leaving RCU mode).
  void toggle_rcu() {
    log_comment("set_rcu toggled");
    rcu_on_ = !rcu_on_;
    tree_->set_rcu(rcu_on_);
  }

  // dup_into() a fresh tree; compares it, and continues on it when `adopt`.
  void check_dup(bool adopt) {
    log_comment(adopt ? "dup (continue on the copy)" : "dup (copy checked, then dropped)");
    auto copy = make_tree();
    absl::Status s = tree_->dup_into(*copy);
    ASSERT_TRUE(s.ok()) << s << where();
    absl::Status v = copy->validate();
    ASSERT_TRUE(v.ok()) << "dup: " << v << where();
    ASSERT_EQ(first_difference(contents(*copy), model_.entries()), "") << "dup" << where();
    EXPECT_EQ(copy->stats().entries, model_.count()) << where();
    // The source must be untouched by the copy.
    ASSERT_EQ(first_difference(contents(*tree_), model_.entries()), "") << "dup source" << where();
    // Copying into a non-empty tree is refused.
    if (!model_.empty()) {
      EXPECT_EQ(errno_of(tree_->dup_into(*copy)), EEXIST) << where();
    }
    if (adopt) {
      tree_ = std::move(copy);
      history_.push_back({.kind = OpKind::kDup});
    }
  }

  // bulk_load() the model's entries into a fresh tree; continues on it when
  // `adopt` (its packed-full nodes then take the following writes).
  void check_bulk(bool adopt) {
    log_comment(adopt ? "bulk_load (continue on it)" : "bulk_load (checked, then dropped)");
    std::vector<Tree::Entry> sorted;
    for (const auto& e : model_.entries()) sorted.push_back({e.first, e.last, ptr(e.value)});
    auto built = make_tree();
    absl::Status s = built->bulk_load(sorted);
    ASSERT_TRUE(s.ok()) << s << where();
    absl::Status v = built->validate();
    ASSERT_TRUE(v.ok()) << "bulk_load: " << v << where();
    ASSERT_EQ(first_difference(contents(*built), model_.entries()), "") << "bulk_load" << where();
    if (!sorted.empty()) {
      EXPECT_EQ(errno_of(built->bulk_load(sorted)), EEXIST) << where();
    }
    if (adopt) tree_ = std::move(built);
  }

  uint64_t ops() const { return ops_; }
  // The final size and height, to show the run reached interesting shapes.
  std::string shape() const {
    TreeStats st = tree_->stats();
    return std::to_string(st.entries) + " entries at the end, height " + std::to_string(st.height) +
           ", max height " + std::to_string(max_height_);
  }
  bool stop() const { return ::testing::Test::HasFailure(); }

 private:
  std::unique_ptr<Tree> make_tree() const {
    return std::make_unique<Tree>(TreeOptions{.track_gaps = mode_.track_gaps, .rcu = rcu_on_});
  }

  // for_each over a window, against the model's entries of that window.
  void check_for_each() {
    if (model_.empty()) return;
    auto all = model_.entries();
    const ModelEntry& a = all[all.size() / 3];
    const ModelEntry& b = all[all.size() * 2 / 3];
    std::vector<ModelEntry> got;
    tree_->for_each(a.last, b.first, [&](const Tree::Entry& e) {
      got.push_back({e.first, e.last, num(e.value)});
    });
    EXPECT_EQ(first_difference(got, model_.entries(a.last, b.first)), "") << "for_each" << where();
  }

  void log(const Op& op) {
    ++ops_;
    history_.push_back(op);
  }
  void log_comment(const char* what) { comments_.push_back({history_.size(), what}); }
  void note(uint64_t f, uint64_t l) {
    recent_[recent_next_++ % recent_.size()] = f;
    recent_[recent_next_++ % recent_.size()] = l;
  }

  std::string where() const {
    return "\n  in " + name_ + " (" + mode_name(mode_) + "), operation " + std::to_string(ops_) +
           ": " + (history_.empty() ? "" : treeops::format_op(history_.back())) +
           "\n  history: " + history_path();
  }
  std::string history_path() const {
    std::string name = name_;
    std::replace(name.begin(), name.end(), '/', '_');
    return ::testing::TempDir() + "rcuvm_differential_" + name + "_" + mode_name(mode_) + ".ops";
  }
  // Writes every operation so far as a treeops script (a reproducer when the
  // failure does not depend on the shape left by bulk_load).
  void save_history() const {
    std::FILE* f = std::fopen(history_path().c_str(), "w");
    if (!f) return;
    std::fprintf(f, "%s\n", mode_.track_gaps ? "mode alloc" : "mode range");
    size_t c = 0;
    for (size_t i = 0; i < history_.size(); ++i) {
      for (; c < comments_.size() && comments_[c].first == i; ++c) {
        std::fprintf(f, "# %s\n", comments_[c].second);
      }
      std::fprintf(f, "%s\n", treeops::format_op(history_[i]).c_str());
    }
    std::fclose(f);
  }

  Mode mode_;
  bool rcu_on_;  // the live tree's RCU mode, which toggle_rcu() flips
  std::string name_;
  std::unique_ptr<Tree> tree_;
  const bool failed_before_;
  ReferenceModel model_;
  uint64_t ops_ = 0;
  uint64_t max_height_ = 0;
  std::vector<Op> history_;
  std::vector<std::pair<size_t, const char*>> comments_;
  std::array<uint64_t, 64> recent_{};
  uint64_t recent_next_ = 0;
};

// A distribution: how one step changes and queries the tree.
using Step = std::function<void(Harness&, Rng&, uint64_t step)>;

// Runs `steps` steps of `step` in every mode, with batch checks, dups and
// bulk loads in between.
void run(const std::string& name, uint64_t seed, uint64_t steps, const Step& step) {
  for (Mode mode : kModes) {
    if (::testing::Test::HasFailure()) return;
    SCOPED_TRACE(name + " " + mode_name(mode));
    Harness h(mode, name);
    Rng rng(seed ^ (mode.track_gaps ? 0x5a5a : 0) ^ (mode.rcu ? 0xa5a5 : 0));
    uint64_t batch = 0;
    for (uint64_t i = 0; i < steps && !h.stop(); ++i) {
      step(h, rng, i);
      if (h.ops() / kBatch > batch) {
        batch = h.ops() / kBatch;
        h.check_batch(batch);
        if (batch % 16 == 5) h.check_dup(/*adopt=*/batch % 32 == 5);
        if (batch % 16 == 13) h.check_bulk(/*adopt=*/batch % 32 == 13);
        if (batch % 64 == 40) h.toggle_rcu();
      }
    }
    if (!h.stop()) h.check_batch(0);
    if (!h.stop()) h.check_dup(false);
    if (!h.stop()) h.check_bulk(false);
    std::printf("  %-22s %-11s %8llu operations, %s\n", name.c_str(), mode_name(mode).c_str(),
                static_cast<unsigned long long>(h.ops()), h.shape().c_str());
  }
}

uint64_t small_value(Rng& rng) {
  // Mostly small integers; sometimes any non-null 64-bit value.
  if (rng.one_in(16)) return rng.next() | 1;
  return 1 + rng.below(1000);
}

uint64_t add_sat(uint64_t a, uint64_t b) { return UINT64_MAX - a < b ? UINT64_MAX : a + b; }

// Appends ranges in increasing order, as a log or a growing heap does, with
// occasional holes, re-stores of the tail, and erases near the end.
TEST(TreeDifferential, SequentialAppends) {
  uint64_t next = 0;
  run("SequentialAppends", 1, scaled(40000), [&next](Harness& h, Rng& rng, uint64_t i) {
    if (i == 0) next = rng.below(100);
    uint64_t len = 1 + rng.below(rng.one_in(8) ? 64 : 4);
    uint64_t first = next + (rng.one_in(4) ? rng.below(8) : 0);
    uint64_t last = first + len - 1;
    h.store(first, last, small_value(rng));
    next = last + 1;
    if (rng.one_in(10)) h.erase(rng.between(next > 50 ? next - 50 : 0, next));
    if (rng.one_in(20)) h.store(next > 20 ? next - 20 : 0, next - 1, rng.one_in(2) ? 0 : 7);
    if (rng.one_in(20)) h.insert(next, next + rng.below(8), small_value(rng));
    h.queries_near(rng, rng.between(0, next + 10), 200);
  });
}

// Uniform random ranges, dense in a small space so they overlap constantly.
TEST(TreeDifferential, UniformRandomRanges) {
  constexpr uint64_t kSpace = 1 << 20;
  run("UniformRandomRanges", 2, scaled(60000), [](Harness& h, Rng& rng, uint64_t) {
    uint64_t first = rng.below(kSpace);
    uint64_t len = 1 + rng.below(rng.one_in(16) ? 1 << 14 : 256);
    uint64_t last = first + len - 1;
    switch (rng.below(8)) {
      case 0: h.store(first, last, 0); break;
      case 1: h.insert(first, last, small_value(rng)); break;
      case 2: h.erase(rng.below(kSpace)); break;
      default: h.store(first, last, small_value(rng)); break;
    }
    h.queries_near(rng, rng.below(kSpace), 4096);
  });
}

// Random ranges anywhere in the 64-bit space: few collisions, wide pivots.
TEST(TreeDifferential, FullSpaceRandomRanges) {
  run("FullSpaceRandomRanges", 3, scaled(30000), [](Harness& h, Rng& rng, uint64_t) {
    uint64_t first = rng.next();
    uint64_t last = add_sat(first, rng.one_in(4) ? rng.next() >> rng.below(64) : rng.below(1 << 20));
    if (rng.one_in(6)) {
      h.erase(h.recent(rng));
    } else {
      h.store(first, last, rng.one_in(8) ? 0 : small_value(rng));
    }
    h.queries_near(rng, rng.one_in(2) ? h.recent(rng) : rng.next(), UINT64_MAX / 4);
  });
}

// What an address space looks like: page-aligned mappings of a few pages in
// clusters (binary, heap, libraries, stack), mapped top-down into gaps found
// with find_gap_rev, unmapped and re-protected (split) in place.
TEST(TreeDifferential, VmaLikeClusters) {
  constexpr uint64_t kBases[] = {0x555555554000, 0x7f0000000000, 0x7ffff7a00000, 0x7ffffffde000};
  constexpr uint64_t kClusterPages = 1 << 14;
  run("VmaLikeClusters", 4, scaled(50000), [&](Harness& h, Rng& rng, uint64_t) {
    const uint64_t base = kBases[rng.below(4)];
    const uint64_t pages = 1 + rng.below(rng.one_in(8) ? 256 : 16);
    const uint64_t start = base + rng.below(kClusterPages) * kPage;
    const uint64_t last = start + pages * kPage - 1;
    switch (rng.below(10)) {
      case 0: case 1: {  // mmap top-down: find a hole, then insert into it
        const uint64_t lo = base, hi = base + kClusterPages * kPage - 1;
        h.gap_rev(lo, hi, pages * kPage);
        auto g = h.model().find_gap_rev(lo, hi, pages * kPage);
        if (g.err == 0) h.insert(g.start, g.start + pages * kPage - 1, small_value(rng));
        break;
      }
      case 2: h.insert(start, last, small_value(rng)); break;  // MAP_FIXED_NOREPLACE
      case 3: case 4: h.store(start, last, 0); break;            // munmap
      case 5: {  // mprotect of the middle of a mapping: split into three
        auto e = h.model_find(start);
        if (e && e->last - e->first >= 3 * kPage) {
          h.store(e->first + kPage, e->last - kPage, e->value + 1);
        }
        break;
      }
      case 6: h.erase(start); break;
      default: h.store(start, last, small_value(rng)); break;  // MAP_FIXED
    }
    h.queries_near(rng, start, 64 * kPage);
    if (rng.one_in(4)) h.gap(base, base + kClusterPages * kPage - 1, kPage * (1 + rng.below(32)));
  });
}

// Ranges touching index 0 and UINT64_MAX. Trees grow near both ends for a
// while, then a store over the whole space (or nearly) resets them.
TEST(TreeDifferential, RangesAtTheEdges) {
  run("RangesAtTheEdges", 5, scaled(40000), [](Harness& h, Rng& rng, uint64_t i) {
    auto edge_low = [&rng] { return rng.below(rng.one_in(4) ? 4 : 8192); };
    auto edge_high = [&rng] { return UINT64_MAX - rng.below(rng.one_in(4) ? 4 : 8192); };
    if (i % 5000 == 4999) {
      h.store(0, UINT64_MAX, rng.one_in(2) ? 0 : small_value(rng));
    } else if (i % 5000 == 2499) {
      h.store(edge_low(), edge_high(), small_value(rng));
    } else {
      const uint64_t r = rng.below(32);
      if (r < 4) {
        h.erase(rng.one_in(2) ? edge_low() : edge_high());
      } else if (r < 7) {
        uint64_t f = edge_low();
        h.insert(f, f + rng.below(8), small_value(rng));
      } else if (r < 10) {
        uint64_t f = edge_high();
        h.insert(f, add_sat(f, rng.below(8)), small_value(rng));
      } else if (r < 21) {
        uint64_t f = edge_low();
        h.store(f, f + rng.below(16), rng.one_in(5) ? 0 : small_value(rng));
      } else {
        uint64_t f = edge_high();
        h.store(f, add_sat(f, rng.below(16)), rng.one_in(5) ? 0 : small_value(rng));
      }
    }
    h.queries_near(rng, rng.one_in(2) ? edge_low() : edge_high(), 8192);
    if (rng.one_in(8)) h.gap(0, UINT64_MAX, 1 + rng.below(1 << 13));
    if (rng.one_in(8)) h.gap_rev(0, UINT64_MAX, 1 + rng.below(1 << 13));
    if (rng.one_in(32)) h.gap(0, UINT64_MAX, UINT64_MAX - rng.below(8192));
    if (rng.one_in(32)) h.gap_rev(0, UINT64_MAX, UINT64_MAX - rng.below(8192));
    if (rng.one_in(32)) h.find_rev(UINT64_MAX, 0);
    if (rng.one_in(32)) h.find(0, UINT64_MAX);
  });
}

// Builds a large tree, then erases most of it, so nodes underflow, merge and
// the tree loses height; repeats.
TEST(TreeDifferential, HeavyErase) {
  constexpr uint64_t kSpace = 1 << 18;
  constexpr uint64_t kCycle = 6000;
  run("HeavyErase", 6, scaled(60000), [](Harness& h, Rng& rng, uint64_t i) {
    const bool filling = (i % kCycle) < kCycle / 3;
    if (i % (3 * kCycle) == 3 * kCycle - 1) {
      h.destroy();  // every third cycle ends with destroy() instead
    } else if (filling) {
      uint64_t f = rng.below(kSpace) & ~uint64_t(3);
      h.store(f, f + rng.below(4), small_value(rng));
    } else if (rng.one_in(8)) {
      uint64_t f = rng.below(kSpace);
      h.store(f, f + rng.below(1 << 12), 0);  // a spanning erase
    } else if (rng.one_in(2)) {
      h.erase(rng.below(kSpace));
    } else {
      // Erase an entry that exists, so erases keep hitting.
      auto e = h.model_find(rng.below(kSpace));
      if (e) h.erase(e->first + rng.below(e->last - e->first + 1));
    }
    h.queries_near(rng, rng.below(kSpace), 1024);
  });
}

// bulk_load()'s contract on awkward input, each answer checked against the
// model: nulls skipped, equal neighbours kept apart, bad input refused whole.
TEST(TreeDifferential, BulkLoadInput) {
  using E = ModelEntry;
  const std::vector<std::vector<E>> inputs = {
      {},
      {{0, UINT64_MAX, 3}},
      {{0, 0, 1}, {1, 1, 1}, {2, 9, 1}, {UINT64_MAX, UINT64_MAX, 1}},  // equal neighbours
      {{0, 4, 0}, {5, 9, 2}, {10, 14, 0}, {15, 19, 0}, {20, 20, 3}},   // nulls, adjacent ones too
      {{5, 9, 1}, {0, 4, 2}},                                          // unsorted
      {{0, 5, 1}, {5, 9, 2}},                                          // overlapping
      {{9, 5, 1}},                                                     // first > last
      {{0, 4, 1}, {4, 9, 0}},                                          // overlap through a null
  };
  for (bool gaps : {false, true}) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      SCOPED_TRACE("input " + std::to_string(i) + (gaps ? ", alloc" : ", range"));
      std::vector<Tree::Entry> in;
      for (const E& e : inputs[i]) in.push_back({e.first, e.last, ptr(e.value)});
      Tree tree(TreeOptions{.track_gaps = gaps});
      ReferenceModel model;
      EXPECT_EQ(errno_of(tree.bulk_load(in)), model.bulk_load(inputs[i]));
      EXPECT_EQ(first_difference(contents(tree), model.entries()), "");
      EXPECT_TRUE(tree.validate().ok()) << tree.validate();
      EXPECT_EQ(tree.stats().entries, model.count());
      if (!model.empty()) {
        EXPECT_EQ(tree.stats().nulls, model.null_ranges());
      }
      // A tree that is not empty refuses a bulk load.
      ASSERT_TRUE(tree.store(100, 200, ptr(9)).ok());
      EXPECT_EQ(errno_of(tree.bulk_load(in)), EEXIST);
    }
  }
}

// A large bulk-loaded tree (nodes packed full) takes random writes correctly;
// the differential runs also adopt bulk-loaded trees, this one starts big.
TEST(TreeDifferential, WritesIntoALargeBulkLoadedTree) {
  for (bool gaps : {false, true}) {
    Tree tree(TreeOptions{.track_gaps = gaps});
    ReferenceModel model;
    std::vector<Tree::Entry> in;
    std::vector<ModelEntry> want;
    const uint64_t n = scaled(100000);
    for (uint64_t i = 0; i < n; ++i) {
      in.push_back({8 * i, 8 * i + 3 + (i % 3 == 0 ? 4 : 0), ptr(i + 1)});
      want.push_back({in.back().first, in.back().last, i + 1});
    }
    ASSERT_TRUE(tree.bulk_load(in).ok());
    ASSERT_EQ(model.bulk_load(want), 0);
    Rng rng(77);
    for (uint64_t i = 0; i < scaled(20000); ++i) {
      const uint64_t f = rng.below(8 * n);
      const uint64_t l = f + rng.below(rng.one_in(10) ? 400 : 6);
      const uint64_t v = rng.one_in(4) ? 0 : 1 + rng.below(50);
      ASSERT_EQ(errno_of(tree.store(f, l, ptr(v))), model.store(f, l, v));
      if (i % 5000 == 0) {
        ASSERT_TRUE(tree.validate().ok()) << tree.validate();
      }
    }
    ASSERT_TRUE(tree.validate().ok()) << tree.validate();
    EXPECT_EQ(first_difference(contents(tree), model.entries()), "");
  }
}

}  // namespace
}  // namespace rcuvm::testing
