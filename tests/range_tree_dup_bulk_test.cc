// Unit tests of the tree builders: dup_into (the kernel's __mt_dup, used by
// fork), bulk_load from sorted input, and preallocate.
//
// Each write is all-or-nothing: for dup_into that means a failed copy leaves
// the destination empty and the source untouched, which the fault-injection
// test below checks at every allocation the copy makes.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"

namespace rcuvm::unit {
namespace {

class DupTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree src_{GetParam()};
  Model m_;

  // Stores n ranges [i*10, i*10+5] (deep trees for n in the thousands).
  void Fill(uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) {
      absl::Status s = src_.store(i * 10, i * 10 + 5, V(i));
      ASSERT_TRUE(s.ok()) << s;
      m_.store(i * 10, i * 10 + 5, V(i));
    }
  }
  // Checks that `dst` is an exact, valid copy of the source.
  void ExpectCopy(const Tree& dst) {
    EXPECT_TRUE(Matches(dst, m_));
    const TreeStats a = src_.stats(), b = dst.stats();
    EXPECT_EQ(a.entries, b.entries);
    EXPECT_EQ(a.nulls, b.nulls);
    EXPECT_EQ(a.nodes, b.nodes);  // the copy keeps the source's shape
    EXPECT_EQ(a.leaves, b.leaves);
    EXPECT_EQ(a.height, b.height);
    EXPECT_EQ(a.bytes, b.bytes);
  }
};

TEST_P(DupTest, EmptySource) {
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  EXPECT_TRUE(dst.empty());
  RCUVM_EXPECT_OK(dst.validate());
  EXPECT_EQ(dst.stats().nodes, 0u);
}

TEST_P(DupTest, OneLeaf) {
  Fill(3);
  ASSERT_EQ(src_.stats().height, 1u);
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  ExpectCopy(dst);
}

TEST_P(DupTest, DeepTree) {
  Fill(3000);
  ASSERT_GE(src_.stats().height, 3u);
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  ExpectCopy(dst);
}

TEST_P(DupTest, TouchingBothEnds) {
  RCUVM_ASSERT_OK(src_.store(0, 0, L('A')));
  RCUVM_ASSERT_OK(src_.store(1, 100, L('B')));
  RCUVM_ASSERT_OK(src_.store(kMax - 1, kMax, L('C')));
  m_.store(0, 0, L('A'));
  m_.store(1, 100, L('B'));
  m_.store(kMax - 1, kMax, L('C'));
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  ExpectCopy(dst);
}

TEST_P(DupTest, CopiesAreIndependent) {
  Fill(2000);
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  Model dm = m_;
  // Writes to the source: a spanning store, erases, a split.
  RCUVM_ASSERT_OK(src_.store(5000, 15000, L('S')));
  m_.store(5000, 15000, L('S'));
  for (uint64_t i = 0; i < 300; i += 3) {
    RCUVM_ASSERT_OK(src_.erase(i * 10));
    m_.erase(i * 10);
  }
  // Writes to the copy, elsewhere and in the same places.
  RCUVM_ASSERT_OK(dst.store(12, 14, L('D')));
  dm.store(12, 14, L('D'));
  RCUVM_ASSERT_OK(dst.store(0, 9999, nullptr));
  dm.store(0, 9999, nullptr);
  RCUVM_ASSERT_OK(dst.store(19990, kMax, L('E')));
  dm.store(19990, kMax, L('E'));
  EXPECT_TRUE(Matches(src_, m_));
  EXPECT_TRUE(Matches(dst, dm));
  // Destroying the source leaves the copy whole.
  src_.destroy();
  rcu::drain();
  EXPECT_TRUE(Matches(dst, dm));
}

TEST_P(DupTest, ManySizesAndGapPatterns) {
  // lib/test_maple_tree.c, check_dup / check_dup_gaps: trees of many sizes
  // around node boundaries, ranges [i*10, (i+1)*10 - gap] from i = 0 or 1.
  // With gap 0 each range overlaps the next one's first index, which the
  // next store trims away: the ranges end up touching, with no gaps.
  for (bool zero_start : {true, false}) {
    for (uint64_t gap : {5u, 0u}) {
      for (uint64_t n = 1; n <= 300; n += (n < 40 ? 1 : 13)) {
        Tree src(GetParam());
        Model m;
        for (uint64_t i = zero_start ? 0 : 1; i <= n; ++i) {
          RCUVM_ASSERT_OK(src.store(i * 10, (i + 1) * 10 - gap, V(i)));
          m.store(i * 10, (i + 1) * 10 - gap, V(i));
        }
        Tree dst(GetParam());
        RCUVM_ASSERT_OK(src.dup_into(dst));
        ASSERT_TRUE(Matches(dst, m)) << "n " << n << " gap " << gap << " zero_start " << zero_start;
        EXPECT_EQ(dst.stats().nodes, src.stats().nodes);
      }
    }
  }
}

TEST_P(DupTest, NonEmptyDestinationIsEexist) {
  Fill(100);
  Tree dst(GetParam());
  RCUVM_ASSERT_OK(dst.store(5, 5, L('X')));
  RCUVM_EXPECT_ERRNO(src_.dup_into(dst), EEXIST);
  EXPECT_EQ(Entries(dst), (std::vector<Entry>{{5, 5, L('X')}}));
  RCUVM_EXPECT_OK(dst.validate());
  EXPECT_TRUE(Matches(src_, m_));
  // An empty source into a non-empty destination is refused too.
  Tree empty(GetParam());
  RCUVM_EXPECT_ERRNO(empty.dup_into(dst), EEXIST);
  EXPECT_EQ(Entries(dst), (std::vector<Entry>{{5, 5, L('X')}}));
}

TEST_P(DupTest, IntoItselfFails) {
  Fill(10);
  EXPECT_FALSE(src_.dup_into(src_).ok());
  EXPECT_TRUE(Matches(src_, m_));
}

TEST_P(DupTest, IntoATreeOfTheOtherModeFailsOrIsValid) {
  // Not part of the contract; whatever the answer, no broken tree results.
  Fill(500);
  TreeOptions other = GetParam();
  other.track_gaps = !other.track_gaps;
  Tree dst(other);
  if (src_.dup_into(dst).ok()) {
    EXPECT_TRUE(Matches(dst, m_));
  } else {
    EXPECT_TRUE(dst.empty());
  }
}

TEST_P(DupTest, FailingAtEveryAllocationLeavesDestinationEmpty) {
  Fill(1500);
  ASSERT_GE(src_.stats().height, 3u);
  // Count the allocations of one successful copy.
  uint64_t allocations = 0;
  {
    Tree dst(GetParam());
    FailNthAllocation count(0);
    RCUVM_ASSERT_OK(src_.dup_into(dst));
    allocations = count.attempts();
  }
  ASSERT_GE(allocations, src_.stats().nodes);
  for (uint64_t k = 1; k <= allocations; ++k) {
    Tree dst(GetParam());
    absl::Status s;
    bool fired = false;
    {
      FailNthAllocation fail(k);
      s = src_.dup_into(dst);
      fired = fail.fired();
    }
    ASSERT_TRUE(fired) << "allocation " << k;
    ASSERT_EQ(errno_of(s), ENOMEM) << "allocation " << k << ": " << s;
    ASSERT_TRUE(dst.empty()) << "allocation " << k;
    const TreeStats d = dst.stats();
    ASSERT_EQ(d.entries + d.nulls + d.nodes + d.height, 0u) << "allocation " << k;
    ASSERT_TRUE(dst.validate().ok()) << "allocation " << k;
    // The destination is still usable: the next copy into it succeeds.
    if (k % 97 == 0) {
      RCUVM_ASSERT_OK(src_.dup_into(dst));
      ExpectCopy(dst);
    }
  }
  ASSERT_TRUE(Matches(src_, m_));
  // One past the last allocation: nothing fails.
  Tree dst(GetParam());
  FailNthAllocation late(allocations + 1);
  RCUVM_ASSERT_OK(src_.dup_into(dst));
  EXPECT_FALSE(late.fired());
  ExpectCopy(dst);
}

TEST_P(DupTest, ForkPatternPrivateCopyThenPublish) {
  // fork(): copy into a private (non-RCU) tree, replace every value with the
  // child's own copy, then publish the tree by turning RCU mode on. A store
  // with unchanged bounds is a value swap in place, so it must succeed even
  // with every allocation failing (the kernel's fork relies on this).
  Fill(800);
  TreeOptions child_options = GetParam();
  child_options.rcu = false;
  Tree child(child_options);
  RCUVM_ASSERT_OK(src_.dup_into(child));
  const std::vector<Entry> copied = Entries(child);
  {
    FailRandomAllocations no_memory(/*one_in=*/1, /*seed=*/1);
    for (const Entry& e : copied) {
      absl::Status s = child.store(e.first, e.last, V(X(e.value) + 100000));
      ASSERT_TRUE(s.ok()) << s;
    }
  }
  child.set_rcu(true);
  RCUVM_EXPECT_OK(child.validate());
  EXPECT_EQ(child.stats().nodes, src_.stats().nodes);
  for (uint64_t i = 0; i < 800; ++i) {
    ASSERT_EQ(child.find(i * 10), (Entry{i * 10, i * 10 + 5, V(i + 100000)}));
    ASSERT_EQ(src_.load(i * 10 + 3), V(i));
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, DupTest, ::testing::ValuesIn(AllModes()), ModeName);

// ---------------------------------------------------------------- bulk_load

class BulkTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};
};

TEST_P(BulkTest, EmptyInputLeavesAnEmptyTree) {
  RCUVM_ASSERT_OK(t_.bulk_load({}));
  EXPECT_TRUE(t_.empty());
  RCUVM_EXPECT_OK(t_.validate());
  // Input of null values only is empty too.
  std::vector<Entry> nulls = {{1, 5, nullptr}, {10, 20, nullptr}};
  RCUVM_ASSERT_OK(t_.bulk_load(nulls));
  EXPECT_TRUE(t_.empty());
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(BulkTest, SortedInputWithGaps) {
  std::vector<Entry> in;
  Model m;
  for (uint64_t i = 0; i < 5000; ++i) {
    in.push_back({i * 10 + 1, i * 10 + 4 + i % 5, V(i)});
    m.store(in.back().first, in.back().last, in.back().value);
  }
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  EXPECT_TRUE(Matches(t_, m));
  EXPECT_GE(t_.stats().height, 3u);
  EXPECT_EQ(t_.load(11), V(1));
  EXPECT_EQ(t_.load(10), nullptr);
}

TEST_P(BulkTest, TouchingZeroAndMax) {
  std::vector<Entry> in = {{0, 0, L('A')}, {1, 9, L('B')}, {100, 200, L('C')}, {kMax - 9, kMax, L('D')}};
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  Model m;
  for (const Entry& e : in) m.store(e.first, e.last, e.value);
  EXPECT_TRUE(Matches(t_, m));
  EXPECT_EQ(t_.stats().nulls, 2u);
  auto g = t_.find_gap_rev(0, kMax, 1);
  RCUVM_ASSERT_OK(g);
  EXPECT_EQ(*g, kMax - 10);
}

TEST_P(BulkTest, WholeSpaceWithoutGaps) {
  std::vector<Entry> in;
  for (uint64_t i = 0; i < 999; ++i) in.push_back({i * 1000, i * 1000 + 999, V(i)});
  in.push_back({999000, kMax, V(999)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  EXPECT_EQ(t_.stats().nulls, 0u);
  EXPECT_EQ(t_.stats().entries, 1000u);
  EXPECT_EQ(Entries(t_), in);
  RCUVM_EXPECT_OK(t_.validate());
  RCUVM_EXPECT_ERRNO(t_.find_gap(0, kMax, 1), EBUSY);
}

TEST_P(BulkTest, NullValuesAreSkipped) {
  std::vector<Entry> in = {{10, 19, L('A')}, {20, 29, nullptr}, {30, 39, nullptr}, {40, 49, L('B')}};
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 19, L('A')}, {40, 49, L('B')}}));
  EXPECT_EQ(t_.stats().nulls, 3u);  // [0, 9], [20, 39], [50, UINT64_MAX]
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(BulkTest, RejectsUnsortedOrOverlappingInput) {
  const std::vector<std::vector<Entry>> bad = {
      {{10, 19, L('A')}, {5, 8, L('B')}},                    // unsorted
      {{10, 19, L('A')}, {19, 25, L('B')}},                  // overlapping by one index
      {{10, 19, L('A')}, {12, 14, L('B')}},                  // nested
      {{10, 19, L('A')}, {10, 19, L('B')}},                  // duplicate
      {{20, 10, L('A')}},                                    // first > last
      {{0, kMax, L('A')}, {5, 5, L('B')}},                   // anything after the whole space
      {{kMax, kMax, L('A')}, {0, 0, L('B')}},                // after UINT64_MAX
      {{1, 2, L('A')}, {3, 4, nullptr}, {4, 5, L('B')}},     // a null entry overlaps too
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    RCUVM_EXPECT_ERRNO(t_.bulk_load(bad[i]), EINVAL) << "case " << i;
    EXPECT_TRUE(t_.empty()) << "case " << i;
    RCUVM_EXPECT_OK(t_.validate());
  }
}

TEST_P(BulkTest, NonEmptyTreeIsEexist) {
  RCUVM_ASSERT_OK(t_.store(5, 5, L('X')));
  std::vector<Entry> in = {{10, 19, L('A')}};
  RCUVM_EXPECT_ERRNO(t_.bulk_load(in), EEXIST);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{5, 5, L('X')}}));
}

TEST_P(BulkTest, FailingAtEveryAllocationLeavesTheTreeEmpty) {
  std::vector<Entry> in;
  for (uint64_t i = 0; i < 2000; ++i) in.push_back({i * 4, i * 4 + 1, V(i)});
  uint64_t allocations = 0;
  {
    Tree probe(GetParam());
    FailNthAllocation count(0);
    RCUVM_ASSERT_OK(probe.bulk_load(in));
    allocations = count.attempts();
  }
  ASSERT_GT(allocations, 0u);
  for (uint64_t k = 1; k <= allocations; ++k) {
    absl::Status s;
    {
      FailNthAllocation fail(k);
      s = t_.bulk_load(in);
    }
    ASSERT_EQ(errno_of(s), ENOMEM) << "allocation " << k << ": " << s;
    ASSERT_TRUE(t_.empty()) << "allocation " << k;
    ASSERT_EQ(t_.stats().nodes, 0u) << "allocation " << k;
  }
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  EXPECT_EQ(Entries(t_), in);
}

TEST_P(BulkTest, PacksNodesFullerThanRandomInsertion) {
  // 20000 entries with gaps: 40001 leaf slots.
  constexpr uint64_t kN = 20000;
  std::vector<Entry> in;
  for (uint64_t i = 0; i < kN; ++i) in.push_back({i * 8 + 2, i * 8 + 5, V(i)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  const TreeStats bulk = t_.stats();
  EXPECT_EQ(bulk.entries, kN);
  EXPECT_EQ(bulk.nulls, kN + 1);
  // Small indices fit the 21-slot leaf layout; packed full means
  // ceil(40001 / 21) of them.
  EXPECT_EQ(bulk.leaves, (2 * kN + 1 + 20) / 21);
  EXPECT_EQ(bulk.bytes, bulk.nodes * 256);

  Tree random(GetParam());
  std::vector<uint64_t> order(kN);
  for (uint64_t i = 0; i < kN; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(9));
  for (uint64_t i : order) RCUVM_ASSERT_OK(random.insert(in[i].first, in[i].last, in[i].value));
  const TreeStats rnd = random.stats();
  EXPECT_EQ(rnd.entries, kN);
  EXPECT_EQ(Entries(random), Entries(t_));
  const double bulk_per_entry = double(bulk.bytes) / kN, random_per_entry = double(rnd.bytes) / kN;
  RecordProperty("bulk_bytes_per_entry", std::to_string(bulk_per_entry));
  RecordProperty("random_bytes_per_entry", std::to_string(random_per_entry));
  // Noticeably lower: at least 10% fewer bytes per entry.
  EXPECT_LT(bulk_per_entry, 0.9 * random_per_entry)
      << "bulk " << bulk.nodes << " nodes, random insertion " << rnd.nodes;
}

TEST_P(BulkTest, WritesAfterBulkLoad) {
  std::vector<Entry> in;
  Model m;
  for (uint64_t i = 0; i < 3000; ++i) {
    in.push_back({i * 10, i * 10 + 5, V(i)});
    m.store(i * 10, i * 10 + 5, V(i));
  }
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  std::mt19937_64 rng(1);
  for (int n = 0; n < 1000; ++n) {
    const uint64_t a = rng() % 31000, b = a + rng() % 100;
    void* v = rng() % 3 == 0 ? nullptr : V(rng());
    RCUVM_ASSERT_OK(t_.store(a, b, v));
    m.store(a, b, v);
    if (n % 100 == 0) {
      ASSERT_TRUE(Matches(t_, m)) << n;
    }
  }
  EXPECT_TRUE(Matches(t_, m));
}

INSTANTIATE_TEST_SUITE_P(AllModes, BulkTest, ::testing::ValuesIn(AllModes()), ModeName);

// ------------------------------------------------------------- preallocate

class PreallocateTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};
};

TEST_P(PreallocateTest, ReservedWriteDoesNotAllocate) {
  // Every write below runs with the very next allocation armed to fail: a
  // write that was preallocated for must not need it.
  Model m;
  std::mt19937_64 rng(2);
  for (int n = 0; n < 400; ++n) {
    RCUVM_ASSERT_OK(t_.preallocate(64));
    const uint64_t a = rng() % 20000, b = a + rng() % (n % 10 == 0 ? 3000 : 30);
    void* v = rng() % 4 == 0 ? nullptr : V(n);
    absl::Status s;
    {
      FailNthAllocation fail(1);
      s = t_.store(a, b, v);
    }
    ASSERT_TRUE(s.ok()) << "write " << n << " [" << a << ", " << b << "]: " << s;
    m.store(a, b, v);
    if (n % 50 == 0) {
      ASSERT_TRUE(Matches(t_, m)) << n;
    }
  }
  EXPECT_TRUE(Matches(t_, m));
}

TEST_P(PreallocateTest, ReservationOnAnEmptyTree) {
  RCUVM_ASSERT_OK(t_.preallocate(4));
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.stats().nodes, 0u);  // reserved nodes are not tree nodes
  {
    FailNthAllocation fail(1);
    RCUVM_EXPECT_OK(t_.store(10, 20, L('A')));
  }
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 20, L('A')}}));
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(PreallocateTest, FailingPreallocationIsEnomemAndHarmless) {
  for (uint64_t i = 0; i < 100; ++i) RCUVM_ASSERT_OK(t_.store(i * 3, i * 3 + 1, V(i)));
  const std::vector<Entry> before = Entries(t_);
  {
    FailNthAllocation fail(1);
    RCUVM_EXPECT_ERRNO(t_.preallocate(10), ENOMEM);
  }
  EXPECT_EQ(Entries(t_), before);
  RCUVM_EXPECT_OK(t_.validate());
  // A later write and a later preallocation work normally.
  RCUVM_EXPECT_OK(t_.store(1000, 1001, L('A')));
  RCUVM_EXPECT_OK(t_.preallocate(10));
}

TEST_P(PreallocateTest, DestroyAndDestructorReleaseTheReserve) {
  // Leak checkers (ASan's LeakSanitizer) catch a reserve nobody frees.
  RCUVM_ASSERT_OK(t_.preallocate(32));
  t_.destroy();
  RCUVM_ASSERT_OK(t_.preallocate(32));
  RCUVM_ASSERT_OK(t_.store(1, 1, L('A')));
  EXPECT_EQ(t_.load(1), L('A'));
}

INSTANTIATE_TEST_SUITE_P(AllModes, PreallocateTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
