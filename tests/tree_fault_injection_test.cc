// Allocation failure at every possible point of every kind of tree write.
//
// For each write below, and for k = 1, 2, ... until the write succeeds without
// the fault firing, the test rebuilds the same starting tree, arms
// FailNthAllocation(k), runs the write and checks:
//   - success: the contents equal the model's after the write, validate() ok;
//   - failure: the error is ENOMEM, the fault did fire, and the contents and
//     validate() are exactly as before the write; the same write then succeeds
//     without injection (the tree is still usable).
// Writes: stores into small trees, stores that split the root, spanning
// stores, inserts, erases, erases that lower the height, bulk_load() (the tree
// stays empty on failure), dup_into() (the destination stays empty and the
// source unchanged) and preallocate(); after preallocate() a write must not
// fail for memory at all. Every case runs in all four tree modes (gap tracking
// on/off, RCU on/off), and every case that must allocate has to meet at least
// one injected failure, so a hook that stopped firing would fail the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rcuvm/fault_injection.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/status.h"
#include "reference_model.h"
#include "tree_test_util.h"

namespace rcuvm::testing {
namespace {

// Stops a case that never gets through: some allocation keeps failing.
constexpr uint64_t kMaxK = 5000;

// The size of the "big" trees: every k rebuilds one, so sanitizer builds and
// RCUVM_TEST_SCALE < 1 use smaller ones (still several levels deep).
uint64_t big(uint64_t n) { return std::max<uint64_t>(scaled(n), 400); }

struct Mode {
  bool track_gaps;
  bool rcu;
};
constexpr Mode kModes[] = {{false, true}, {true, true}, {false, false}, {true, false}};

std::string mode_name(Mode m) {
  return std::string(m.track_gaps ? "alloc" : "range") + (m.rcu ? "+rcu" : "");
}

// A tree and the model kept equal by applying every setup write to both.
struct Pair {
  explicit Pair(Mode m)
      : tree(std::make_unique<Tree>(TreeOptions{.track_gaps = m.track_gaps, .rcu = m.rcu})) {}
  void store(uint64_t f, uint64_t l, uint64_t v) {
    ASSERT_TRUE(tree->store(f, l, ptr(v)).ok());
    model.store(f, l, v);
  }
  void erase(uint64_t i) {
    ASSERT_TRUE(tree->erase(i).ok());
    model.erase(i);
  }
  std::unique_ptr<Tree> tree;
  ReferenceModel model;
};

// One write under test: `setup` builds the starting state (no injection),
// `write` runs on the tree and returns its status, `expect` applies the same
// write to the model and returns the errno the write must end with when memory
// does not run out (0 for success, EEXIST for a refused insert).
struct Case {
  std::string name;
  std::function<void(Pair&)> setup;
  std::function<absl::Status(Tree&)> write;
  std::function<int(ReferenceModel&)> expect;
  // False for writes that may legitimately need no allocation (a refused
  // insert, an erase of nothing, an in-place value replacement); every other
  // case must have met at least one injected failure, or it tested nothing.
  bool allocates = true;
};

// Entries [10i, 10i+4] -> i+1 for i < n: every other range is a gap.
void fill(Pair& p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) p.store(10 * i, 10 * i + 4, i + 1);
}

Case store_case(std::string name, std::function<void(Pair&)> setup, uint64_t f, uint64_t l, uint64_t v) {
  return {std::move(name), std::move(setup), [=](Tree& t) { return t.store(f, l, ptr(v)); },
          [=](ReferenceModel& m) { return m.store(f, l, v); }};
}
Case insert_case(std::string name, std::function<void(Pair&)> setup, uint64_t f, uint64_t l, uint64_t v) {
  return {std::move(name), std::move(setup), [=](Tree& t) { return t.insert(f, l, ptr(v)); },
          [=](ReferenceModel& m) { return m.insert(f, l, v); }};
}
Case no_alloc(Case c) {
  c.allocates = false;
  return c;
}
Case erase_case(std::string name, std::function<void(Pair&)> setup, uint64_t index) {
  return {std::move(name), std::move(setup),
          [=](Tree& t) {
            auto r = t.erase(index);
            return r.status();
          },
          [=](ReferenceModel& m) {
            m.erase(index);
            return 0;
          }};
}

// Runs one case for every k; returns how many k were tried.
uint64_t run_case(const Case& c, Mode mode) {
  SCOPED_TRACE(c.name + " (" + mode_name(mode) + ")");
  // The starting state is the same for every k: compute the expectations once.
  std::vector<ModelEntry> before, after;
  int want = 0;
  {
    Pair p(mode);
    c.setup(p);
    if (::testing::Test::HasFatalFailure()) return 0;
    before = p.model.entries();
    want = c.expect(p.model);
    after = p.model.entries();
  }
  for (uint64_t k = 1; k <= kMaxK; ++k) {
    SCOPED_TRACE("failing allocation " + std::to_string(k));
    Pair p(mode);
    c.setup(p);
    absl::Status s;
    bool fired;
    {
      FailNthAllocation fail(k);
      s = c.write(*p.tree);
      fired = fail.fired();
    }
    absl::Status v = p.tree->validate();
    EXPECT_TRUE(v.ok()) << v;
    if (errno_of(s) == want) {
      EXPECT_EQ(first_difference(contents(*p.tree), after), "");
      if (!fired) return k;
      continue;  // a fallback path absorbed the failure: fine, try the next k
    }
    EXPECT_EQ(errno_of(s), ENOMEM) << s;
    EXPECT_TRUE(fired) << "failed without an injected fault: " << s;
    EXPECT_EQ(first_difference(contents(*p.tree), before), "") << "a failed write changed the tree";
    EXPECT_EQ(p.tree->stats().entries, before.size());
    // The tree must still take the same write.
    absl::Status again = c.write(*p.tree);
    EXPECT_EQ(errno_of(again), want) << again;
    EXPECT_EQ(first_difference(contents(*p.tree), after), "");
    if (::testing::Test::HasFailure()) return k;
  }
  ADD_FAILURE() << "the write never succeeded within " << kMaxK << " failing allocations";
  return kMaxK;
}

void run_cases(const std::vector<Case>& cases) {
  for (Mode mode : kModes) {
    for (const Case& c : cases) {
      uint64_t tried = run_case(c, mode);
      if (::testing::Test::HasFailure()) return;
      if (c.allocates) {
        EXPECT_GT(tried, 1u) << c.name << " (" << mode_name(mode) << ") met no injected failure";
      }
      ::testing::Test::RecordProperty(c.name + "/" + mode_name(mode), std::to_string(tried));
    }
  }
}

auto with(uint64_t n) {
  return [n](Pair& p) { fill(p, n); };
}

TEST(TreeFaultInjection, StoresIntoSmallTrees) {
  run_cases({
      store_case("store into an empty tree", with(0), 100, 200, 7),
      store_case("store [0, max] into an empty tree", with(0), 0, UINT64_MAX, 7),
      store_case("store into a one-entry tree", with(1), 100, 200, 7),
      no_alloc(store_case("overwrite a whole range in place", with(3), 10, 14, 99)),
      store_case("split a range into three", with(3), 11, 12, 99),
      store_case("trim the start of a range", with(3), 8, 11, 99),
      store_case("null out part of a range", with(3), 11, 12, 0),
      store_case("store touching UINT64_MAX", with(3), UINT64_MAX - 5, UINT64_MAX, 5),
  });
}

TEST(TreeFaultInjection, StoresThatSplitTheRoot) {
  std::vector<Case> cases;
  // Appending one more entry to trees of growing size crosses every root split:
  // the leaf root (16 slots, entries alternate with gaps), then internal roots.
  for (uint64_t n : {6, 7, 8, 9, 15, 16, 17, 60, 64, 70, 127, 128, 129}) {
    cases.push_back(store_case("append after " + std::to_string(n) + " entries", with(n), 10 * n,
                               10 * n + 4, 999));
    cases.push_back(store_case("split a range in a tree of " + std::to_string(n), with(n),
                               10 * (n / 2) + 1, 10 * (n / 2) + 2, 999));
  }
  run_cases(cases);
}

TEST(TreeFaultInjection, SpanningStores) {
  const uint64_t n = big(3000);
  const uint64_t third = n / 3, most = n * 5 / 6;
  run_cases({
      store_case("store spanning many leaves", with(n), 10 * 10 + 2, 10 * most + 2, 77),
      store_case("null spanning many leaves", with(n), 10 * 10 + 2, 10 * most + 2, 0),
      store_case("null spanning almost everything", with(n), 3, 10 * (n - 1) + 1, 0),
      store_case("store over the whole space", with(n), 0, UINT64_MAX, 77),
      store_case("null over the whole space", with(n), 0, UINT64_MAX, 0),
      store_case("store spanning two leaves", with(n), 10 * third + 2, 10 * (third + 12) + 2, 77),
  });
}

TEST(TreeFaultInjection, Inserts) {
  run_cases({
      insert_case("insert into a gap", with(200), 5, 9, 5),
      insert_case("insert at the end", with(200), 5000, 6000, 5),
      insert_case("insert into an empty tree", with(0), 0, 0, 5),
      no_alloc(insert_case("insert over an entry (EEXIST)", with(200), 0, 3, 5)),
  });
}

TEST(TreeFaultInjection, Erases) {
  const uint64_t n = big(3000);
  run_cases({
      erase_case("erase from a leaf root", with(5), 22),
      erase_case("erase the only entry", with(1), 0),
      erase_case("erase in a big tree", with(n), 10 * (n / 2) + 3),
      erase_case("erase the first entry", with(n), 0),
      erase_case("erase the last entry", with(n), 10 * (n - 1)),
      no_alloc(erase_case("erase where nothing is", with(n), 7)),
  });
}

// Finds a starting state in which one erase lowers the height, by erasing
// entries in order from a tree of n entries; returns the index of that erase.
uint64_t erase_that_shrinks(Mode mode, uint64_t n, uint64_t* height_before) {
  Pair p(mode);
  fill(p, n);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t h = p.tree->stats().height;
    p.erase(10 * i);
    if (p.tree->stats().height < h) {
      *height_before = h;
      return i;
    }
  }
  return n;
}

TEST(TreeFaultInjection, ErasesThatShrinkTheHeight) {
  for (Mode mode : kModes) {
    for (uint64_t n : {uint64_t(40), uint64_t(400), big(3000)}) {
      uint64_t height = 0;
      uint64_t j = erase_that_shrinks(mode, n, &height);
      ASSERT_LT(j, n) << "no erase lowered the height of a tree of " << n << " entries ("
                      << mode_name(mode) << ")";
      auto setup = [n, j](Pair& p) {
        fill(p, n);
        for (uint64_t i = 0; i < j; ++i) p.erase(10 * i);
      };
      const std::string from = "from height " + std::to_string(height) + " (n=" + std::to_string(n) + ")";
      EXPECT_GT(run_case(erase_case("erase " + from, setup, 10 * j), mode), 1u);
      // A null store over the same entry shrinks it too.
      EXPECT_GT(run_case(store_case("null store " + from, setup, 10 * j, 10 * j + 4, 0), mode), 1u);
      if (HasFailure()) return;
    }
  }
}

std::vector<Tree::Entry> sorted_entries(uint64_t n) {
  std::vector<Tree::Entry> v;
  for (uint64_t i = 0; i < n; ++i) v.push_back({10 * i, 10 * i + 4, ptr(i + 1)});
  return v;
}

TEST(TreeFaultInjection, BulkLoad) {
  for (uint64_t n : {uint64_t(1), uint64_t(15), uint64_t(16), uint64_t(17), uint64_t(200), big(5000)}) {
    const auto input = sorted_entries(n);
    run_cases({{"bulk_load of " + std::to_string(n), with(0),
                [&input](Tree& t) { return t.bulk_load(input); },
                [&input](ReferenceModel& m) {
                  for (const auto& e : input) m.store(e.first, e.last, num(e.value));
                  return 0;
                }}});
    if (HasFailure()) return;
  }
}

// dup_into: on failure the destination is empty and the source unchanged.
TEST(TreeFaultInjection, DupInto) {
  for (Mode mode : kModes) {
    for (uint64_t n : {uint64_t(1), uint64_t(16), uint64_t(17), uint64_t(500), big(5000)}) {
      SCOPED_TRACE("dup of " + std::to_string(n) + " entries (" + mode_name(mode) + ")");
      // A failed dup must leave its source alone, so one source serves every k.
      Pair p(mode);
      fill(p, n);
      const auto before = contents(*p.tree);
      uint64_t k = 1;
      for (bool done = false; !done; ++k) {
        ASSERT_LE(k, kMaxK) << "dup never succeeded";
        Tree dest(TreeOptions{.track_gaps = mode.track_gaps, .rcu = mode.rcu});
        absl::Status s;
        bool fired;
        {
          FailNthAllocation fail(k);
          s = p.tree->dup_into(dest);
          fired = fail.fired();
        }
        EXPECT_EQ(first_difference(contents(*p.tree), before), "") << "the source changed";
        absl::Status v = dest.validate();
        EXPECT_TRUE(v.ok()) << v;
        if (s.ok()) {
          EXPECT_EQ(first_difference(contents(dest), before), "");
          done = !fired;
        } else {
          EXPECT_EQ(errno_of(s), ENOMEM) << s;
          EXPECT_TRUE(fired);
          EXPECT_TRUE(dest.empty()) << "a failed dup left entries behind";
          EXPECT_EQ(contents(dest).size(), 0u);
          EXPECT_TRUE(p.tree->dup_into(dest).ok()) << "retry into the same destination";
          EXPECT_EQ(first_difference(contents(dest), before), "");
        }
        ASSERT_FALSE(HasFailure()) << "at failing allocation " << k;
      }
      EXPECT_GT(k, 2u) << "dup never met an injected failure";
    }
  }
}

TEST(TreeFaultInjection, Preallocate) {
  for (Mode mode : kModes) {
    for (size_t nodes : {1, 4, 32, 100}) {
      bool done = false;
      for (uint64_t k = 1; k <= kMaxK && !done; ++k) {
        Pair p(mode);
        fill(p, 300);
        const auto before = contents(*p.tree);
        absl::Status s;
        bool fired;
        {
          FailNthAllocation fail(k);
          s = p.tree->preallocate(nodes);
          fired = fail.fired();
        }
        EXPECT_EQ(first_difference(contents(*p.tree), before), "");
        EXPECT_TRUE(p.tree->validate().ok());
        if (s.ok()) {
          done = !fired;
        } else {
          EXPECT_EQ(errno_of(s), ENOMEM) << s;
          EXPECT_TRUE(fired);
        }
        ASSERT_FALSE(HasFailure()) << mode_name(mode) << ", " << nodes << " nodes, failing allocation " << k;
      }
      EXPECT_TRUE(done);
    }
  }
}

// After preallocate() a write must not fail for memory, even when every
// allocation from then on would fail.
TEST(TreeFaultInjection, PreallocatedWriteCannotFail) {
  for (Mode mode : kModes) {
    Pair p(mode);
    fill(p, 300);
    ReferenceModel after = p.model;
    after.store(1505, 2000, 9);
    for (uint64_t k = 1; k <= 64; ++k) {
      // Arm a fault for each of the next 64 allocations in turn, on a fresh
      // preallocated tree each time.
      Pair q(mode);
      fill(q, 300);
      ASSERT_TRUE(q.tree->preallocate(64).ok());
      absl::Status s;
      {
        FailNthAllocation fail(k);
        s = q.tree->store(1505, 2000, ptr(9));
      }
      ASSERT_TRUE(s.ok()) << mode_name(mode) << ": a preallocated store failed at allocation " << k
                          << ": " << s;
      ASSERT_EQ(first_difference(contents(*q.tree), after.entries()), "");
      ASSERT_TRUE(q.tree->validate().ok());
    }
  }
}

}  // namespace
}  // namespace rcuvm::testing
