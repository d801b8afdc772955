// Unit tests of RangeTree writes and point reads: store, insert, erase, load.
//
// Every test runs on all four tree shapes (plain or gap-tracking internal
// nodes, in or out of RCU mode): the write path differs between them only in
// node kind and in how replaced nodes are freed, and both must behave alike.
// Several sequences are ported from the Linux kernel's maple tree tests
// (lib/test_maple_tree.c, tools/testing/radix-tree/maple.c): their data, our
// code and our checks (a model comparison after every step).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/status.h"

namespace rcuvm::unit {
namespace {

class StoreTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};
  Model m_;

  // Stores in both tree and model, then checks they agree.
  void Store(uint64_t first, uint64_t last, void* v) {
    RCUVM_ASSERT_OK(t_.store(first, last, v));
    m_.store(first, last, v);
    ASSERT_TRUE(Matches(t_, m_)) << "after store [" << first << ", " << last << "]";
  }
  void Insert(uint64_t first, uint64_t last, void* v) {
    const int want = m_.insert(first, last, v);
    EXPECT_EQ(errno_of(t_.insert(first, last, v)), want) << "insert [" << first << ", " << last << "]";
    ASSERT_TRUE(Matches(t_, m_)) << "after insert [" << first << ", " << last << "]";
  }
  void Erase(uint64_t index) {
    void* want = m_.erase(index);
    auto got = t_.erase(index);
    RCUVM_ASSERT_OK(got);
    EXPECT_EQ(*got, want) << "erase " << index;
    ASSERT_TRUE(Matches(t_, m_)) << "after erase " << index;
  }
  // Inserts [i, i] -> V(i) for i in [0, max] ascending, checking every index
  // stored so far after each step (the kernel's check_seq).
  void Seq(uint64_t max) {
    for (uint64_t i = 0; i <= max; ++i) {
      RCUVM_ASSERT_OK(t_.insert(i, i, V(i)));
      m_.insert(i, i, V(i));
      for (uint64_t j = 0; j <= i; ++j) ASSERT_EQ(t_.load(j), V(j)) << "after inserting " << i;
      ASSERT_EQ(t_.load(i + 1), nullptr);
      ASSERT_GE(t_.stats().height, 1u);
    }
    ASSERT_TRUE(Matches(t_, m_));
  }
};

TEST_P(StoreTest, EmptyTreeHoldsNothing) {
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.load(0), nullptr);
  EXPECT_EQ(t_.load(12345), nullptr);
  EXPECT_EQ(t_.load(kMax), nullptr);
  EXPECT_EQ(t_.find(0), std::nullopt);
  EXPECT_EQ(t_.find_rev(kMax), std::nullopt);
  TreeStats s = t_.stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.nulls, 0u);
  EXPECT_EQ(s.nodes, 0u);
  EXPECT_EQ(s.height, 0u);
  EXPECT_EQ(s.bytes, 0u);
  RCUVM_EXPECT_OK(t_.validate());
  // Erasing or storing null in an empty tree is a successful no-op.
  auto e = t_.erase(7);
  RCUVM_ASSERT_OK(e);
  EXPECT_EQ(*e, nullptr);
  RCUVM_EXPECT_OK(t_.store(0, kMax, nullptr));
  RCUVM_EXPECT_OK(t_.store(5, 9, nullptr));
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.stats().nodes, 0u);
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(StoreTest, SingleIndexRange) {
  Store(5, 5, L('A'));
  EXPECT_EQ(Draw(t_, 0, 9), ".....A....");
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{5, 5, L('A')}}));
  TreeStats s = t_.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.nulls, 2u);  // [0, 4] and [6, UINT64_MAX]
  EXPECT_EQ(s.height, 1u);
  EXPECT_EQ(s.nodes, 1u);
}

TEST_P(StoreTest, IndexZeroAndMax) {
  Store(0, 0, L('A'));
  Store(kMax, kMax, L('B'));
  EXPECT_EQ(t_.load(0), L('A'));
  EXPECT_EQ(t_.load(1), nullptr);
  EXPECT_EQ(t_.load(kMax - 1), nullptr);
  EXPECT_EQ(t_.load(kMax), L('B'));
  EXPECT_EQ(t_.stats().nulls, 1u);  // only [1, UINT64_MAX - 1]
  Store(1, kMax - 1, L('C'));
  EXPECT_EQ(t_.stats().nulls, 0u);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{0, 0, L('A')}, {1, kMax - 1, L('C')}, {kMax, kMax, L('B')}}));
  Erase(1);
  Erase(kMax);
  Erase(0);
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.stats().height, 0u);
}

TEST_P(StoreTest, WholeIndexSpace) {
  Store(0, kMax, L('A'));
  EXPECT_EQ(t_.load(0), L('A'));
  EXPECT_EQ(t_.load(1ull << 40), L('A'));
  EXPECT_EQ(t_.load(kMax), L('A'));
  EXPECT_EQ(t_.find(77), (Entry{0, kMax, L('A')}));
  EXPECT_EQ(t_.stats().nulls, 0u);
  // Store over the whole space again: a plain value swap.
  Store(0, kMax, L('B'));
  // Split it in the middle, then at both extremes.
  Store(100, 199, L('C'));
  Store(0, 0, nullptr);
  Store(kMax, kMax, nullptr);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{1, 99, L('B')}, {100, 199, L('C')}, {200, kMax - 1, L('B')}}));
  // Erase removes the whole range holding the index.
  Erase(12345);
  Erase(150);
  Erase(1);
  EXPECT_TRUE(t_.empty());
}

TEST_P(StoreTest, StoreInsideARangeSplitsIt) {
  Store(10, 29, L('A'));
  Store(15, 19, L('B'));
  EXPECT_EQ(Draw(t_, 8, 31), "..AAAAABBBBBAAAAAAAAAA..");
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 14, L('A')}, {15, 19, L('B')}, {20, 29, L('A')}}));
}

TEST_P(StoreTest, StoreOverTheStartTrimsIt) {
  Store(10, 29, L('A'));
  Store(5, 12, L('B'));
  EXPECT_EQ(Draw(t_, 3, 31), "..BBBBBBBBAAAAAAAAAAAAAAAAA..");
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{5, 12, L('B')}, {13, 29, L('A')}}));
  // Exactly the first index.
  Store(13, 13, L('C'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{5, 12, L('B')}, {13, 13, L('C')}, {14, 29, L('A')}}));
}

TEST_P(StoreTest, StoreOverTheEndTrimsIt) {
  Store(10, 29, L('A'));
  Store(25, 34, L('B'));
  EXPECT_EQ(Draw(t_, 8, 36), "..AAAAAAAAAAAAAAABBBBBBBBBB..");
  Store(24, 24, L('C'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 23, L('A')}, {24, 24, L('C')}, {25, 34, L('B')}}));
}

TEST_P(StoreTest, StoreOverSeveralRanges) {
  Store(10, 19, L('A'));
  Store(20, 29, L('B'));
  Store(30, 39, L('C'));
  Store(45, 49, L('D'));
  //   before: ..AAAAAAAAAABBBBBBBBBBCCCCCCCCCC.....DDDDD..
  Store(15, 46, L('E'));
  EXPECT_EQ(Draw(t_, 8, 51), "..AAAAAEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEDDD..");
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 14, L('A')}, {15, 46, L('E')}, {47, 49, L('D')}}));
  // Covering them exactly, including the gap between C and D.
  Store(10, 49, L('F'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 49, L('F')}}));
}

TEST_P(StoreTest, SameBoundsReplacesTheValue) {
  Store(10, 19, L('A'));
  Store(20, 29, L('B'));
  Store(10, 19, L('C'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 19, L('C')}, {20, 29, L('B')}}));
  EXPECT_EQ(t_.stats().entries, 2u);
}

TEST_P(StoreTest, AdjacentEqualValuesStaySeparateEntries) {
  Store(10, 19, L('A'));
  Store(20, 29, L('A'));
  Store(30, 30, L('A'));
  EXPECT_EQ(Draw(t_, 9, 31), ".AAAAAAAAAAAAAAAAAAAAA.");
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 19, L('A')}, {20, 29, L('A')}, {30, 30, L('A')}}));
  EXPECT_EQ(t_.stats().entries, 3u);
  // Erasing one leaves its neighbours whole.
  Erase(25);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 19, L('A')}, {30, 30, L('A')}}));
  // Splitting a range into equal halves also keeps two entries.
  Store(15, 19, L('A'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 14, L('A')}, {15, 19, L('A')}, {30, 30, L('A')}}));
}

TEST_P(StoreTest, NullsCoalesceIntoOneGap) {
  Store(10, 19, L('A'));
  Store(20, 20, L('B'));
  Store(21, 29, L('C'));
  EXPECT_EQ(t_.stats().nulls, 2u);
  // Null stored between two non-null ranges: a new gap.
  Store(20, 20, nullptr);
  EXPECT_EQ(t_.stats().nulls, 3u);
  // Removing A joins [0, 9], [10, 19] and [20, 20] into one gap.
  Erase(10);
  EXPECT_EQ(t_.stats().nulls, 2u);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{21, 29, L('C')}}));
  // Storing null inside a gap changes nothing.
  Store(3, 7, nullptr);
  EXPECT_EQ(t_.stats().nulls, 2u);
  // Null over a range that touches gaps on both sides: everything is one gap.
  Store(21, 29, nullptr);
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.stats().nulls, 0u);
}

TEST_P(StoreTest, NullStorePartlyOverGapAndEntry) {
  Store(10, 19, L('A'));
  Store(30, 39, L('B'));
  // [15, 34] spans the end of A, the gap and the start of B.
  Store(15, 34, nullptr);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{10, 14, L('A')}, {35, 39, L('B')}}));
  EXPECT_EQ(t_.stats().nulls, 3u);
  auto gap = t_.find_gap(11, 40, 20);
  RCUVM_ASSERT_OK(gap);
  EXPECT_EQ(*gap, 15u);  // the nulls [15, 19], [20, 29], [30, 34] are one range
}

TEST_P(StoreTest, RejectsFirstAfterLast) {
  Store(10, 19, L('A'));
  RCUVM_EXPECT_ERRNO(t_.store(5, 4, L('B')), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.store(kMax, 0, L('B')), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.store(20, 19, nullptr), EINVAL);
  EXPECT_TRUE(Matches(t_, m_));
}

TEST_P(StoreTest, InsertFailsWithEexistOnAnyOverlap) {
  Insert(10, 19, L('A'));
  Insert(30, 39, L('B'));
  // Overlapping the start, the end, the inside, the whole, and both ranges.
  for (auto [f, l] : std::vector<std::pair<uint64_t, uint64_t>>{
           {5, 10}, {19, 25}, {12, 14}, {0, kMax}, {15, 35}, {19, 19}, {39, 40}, {10, 19}}) {
    RCUVM_EXPECT_ERRNO(t_.insert(f, l, L('X')), EEXIST);
  }
  EXPECT_TRUE(Matches(t_, m_));
  // Exactly the gap between them fits.
  Insert(20, 29, L('C'));
  Insert(0, 9, L('D'));
  Insert(40, kMax, L('E'));
  EXPECT_EQ(t_.stats().nulls, 0u);
}

TEST_P(StoreTest, InsertRejectsBadArguments) {
  RCUVM_EXPECT_ERRNO(t_.insert(10, 9, L('A')), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.insert(10, 10, nullptr), EINVAL);
  EXPECT_TRUE(t_.empty());
  Insert(10, 10, L('A'));
  // A null value is EINVAL even where EEXIST would also apply.
  RCUVM_EXPECT_ERRNO(t_.insert(10, 10, nullptr), EINVAL);
  EXPECT_TRUE(Matches(t_, m_));
}

TEST_P(StoreTest, EraseReturnsTheWholeRangesValue) {
  Store(100, 199, L('A'));
  Store(200, 200, L('B'));
  auto e = t_.erase(150);
  RCUVM_ASSERT_OK(e);
  EXPECT_EQ(*e, L('A'));
  EXPECT_EQ(t_.load(100), nullptr);
  EXPECT_EQ(t_.load(199), nullptr);
  EXPECT_EQ(t_.load(200), L('B'));
  // Erasing a null index returns null and changes nothing.
  e = t_.erase(150);
  RCUVM_ASSERT_OK(e);
  EXPECT_EQ(*e, nullptr);
  e = t_.erase(200);
  RCUVM_ASSERT_OK(e);
  EXPECT_EQ(*e, L('B'));
  EXPECT_TRUE(t_.empty());
}

TEST_P(StoreTest, ThousandsOfRangesAcrossManyNodes) {
  // 5000 ranges with gaps between: 10000 leaf slots, far more than one node.
  constexpr uint64_t kN = 5000;
  for (uint64_t i = 0; i < kN; ++i) {
    RCUVM_ASSERT_OK(t_.store(i * 10, i * 10 + 5, V(i)));
    m_.store(i * 10, i * 10 + 5, V(i));
  }
  ASSERT_TRUE(Matches(t_, m_));
  EXPECT_GE(t_.stats().height, 3u);
  for (uint64_t i = 0; i < kN; i += 7) {
    EXPECT_EQ(t_.load(i * 10), V(i));
    EXPECT_EQ(t_.load(i * 10 + 5), V(i));
    EXPECT_EQ(t_.load(i * 10 + 6), nullptr);
  }
  // One store spanning most of the tree drops whole subtrees at once.
  Store(105, 10 * (kN - 100) + 2, L('S'));
  EXPECT_LE(t_.stats().height, 3u);
  // And one null store over the rest leaves two entries.
  Store(0, 99, nullptr);
  Store(10 * (kN - 100) + 3, kMax, nullptr);
  EXPECT_EQ(t_.stats().entries, 2u);
  // Null over everything, from a deep tree, empties it.
  for (uint64_t i = 0; i < kN; ++i) RCUVM_ASSERT_OK(t_.store(i * 10 + 100000, i * 10 + 100005, V(i)));
  Store(0, kMax, nullptr);
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.stats().height, 0u);
  EXPECT_EQ(t_.stats().nodes, 0u);
}

TEST_P(StoreTest, RootSplitsAndCollapses) {
  // Grow one leaf into a tree of height >= 3 by single-index inserts, then
  // erase everything in a shuffled order: the height must come back down to
  // 0 without ever growing on an erase.
  std::vector<uint64_t> keys(3000);
  std::iota(keys.begin(), keys.end(), 0);
  uint64_t height = 0;
  for (uint64_t k : keys) {
    RCUVM_ASSERT_OK(t_.insert(k * 3, k * 3 + 1, V(k)));
    m_.insert(k * 3, k * 3 + 1, V(k));
    const uint64_t h = t_.stats().height;
    ASSERT_GE(h, height) << "an insert shrank the tree at key " << k;
    height = h;
    if (k % 500 == 0) {
      ASSERT_TRUE(Matches(t_, m_));
    }
  }
  ASSERT_TRUE(Matches(t_, m_));
  ASSERT_GE(height, 3u);
  std::mt19937_64 rng(42);
  std::shuffle(keys.begin(), keys.end(), rng);
  for (size_t n = 0; n < keys.size(); ++n) {
    auto e = t_.erase(keys[n] * 3 + 1);
    RCUVM_ASSERT_OK(e);
    ASSERT_EQ(*e, V(keys[n]));
    m_.erase(keys[n] * 3);
    const uint64_t h = t_.stats().height;
    ASSERT_LE(h, height) << "an erase grew the tree at step " << n;
    height = h;
    if (n % 250 == 0) {
      ASSERT_TRUE(Matches(t_, m_)) << "after " << n << " erases";
    }
  }
  ASSERT_TRUE(Matches(t_, m_));
  EXPECT_TRUE(t_.empty());
  TreeStats s = t_.stats();
  EXPECT_EQ(s.height, 0u);
  EXPECT_EQ(s.nodes, 0u);
  EXPECT_EQ(s.leaves, 0u);
  EXPECT_EQ(s.bytes, 0u);
  // The tree is usable again.
  Store(7, 7, L('A'));
  EXPECT_EQ(t_.stats().height, 1u);
}

TEST_P(StoreTest, DestroyEmptiesAndTheTreeIsReusable) {
  for (uint64_t i = 0; i < 1000; ++i) RCUVM_ASSERT_OK(t_.store(i * 4, i * 4 + 2, V(i)));
  t_.destroy();
  EXPECT_TRUE(t_.empty());
  EXPECT_EQ(t_.load(4), nullptr);
  TreeStats s = t_.stats();
  EXPECT_EQ(s.entries + s.nulls + s.nodes + s.height, 0u);
  RCUVM_EXPECT_OK(t_.validate());
  Store(1, 2, L('A'));
}

// lib/test_maple_tree.c, check_seq and check_rev_seq: single indices inserted
// ascending and descending, every earlier index re-read after each insert.
TEST_P(StoreTest, KernelSeqAscending) {
  Seq(1000);
  EXPECT_GE(t_.stats().height, 2u);
}

TEST_P(StoreTest, KernelSeqDescending) {
  constexpr uint64_t kTop = 1000;
  for (uint64_t i = kTop; i > 0; --i) {
    RCUVM_ASSERT_OK(t_.insert(i, i, V(i)));
    for (uint64_t j = i; j <= kTop; ++j) ASSERT_EQ(t_.load(j), V(j)) << "after inserting " << i;
    ASSERT_EQ(t_.load(i - 1), nullptr);
    ASSERT_GE(t_.stats().height, 1u);
    m_.insert(i, i, V(i));
  }
  EXPECT_EQ(t_.load(kTop + 1), nullptr);
  EXPECT_TRUE(Matches(t_, m_));
}

// lib/test_maple_tree.c, check_lower_bound_split / check_upper_bound_split /
// check_mid_split: indices halving down from (or doubling up to) 4e9, so that
// every insert lands at one end of the tree.
TEST_P(StoreTest, KernelLowerBoundSplit) {
  const uint64_t huge = 4000ull * 1000 * 1000;
  for (uint64_t i = huge; i > 4096; i /= 2) {
    RCUVM_ASSERT_OK(t_.insert(i, i, V(i)));
    for (uint64_t j = huge; j >= i; j /= 2) {
      ASSERT_EQ(t_.load(j - 1), nullptr) << j;
      ASSERT_EQ(t_.load(j), V(j)) << j;
      ASSERT_EQ(t_.load(j + 1), nullptr) << j;
    }
  }
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(StoreTest, KernelUpperBoundSplit) {
  const uint64_t huge = 4000ull * 1000 * 1000;
  for (uint64_t i = 4096; i < huge; i *= 2) {
    RCUVM_ASSERT_OK(t_.insert(i, i, V(i)));
    for (uint64_t j = 4096; j <= i; j *= 2) {
      ASSERT_EQ(t_.load(j - 1), nullptr) << j;
      ASSERT_EQ(t_.load(j), V(j)) << j;
      ASSERT_EQ(t_.load(j + 1), nullptr) << j;
    }
  }
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(StoreTest, KernelMidSplit) {
  const uint64_t huge = 8000ull * 1000 * 1000;
  Insert(huge, huge, V(huge));
  Insert(0, 0, V(0));
  for (uint64_t i = 4000ull * 1000 * 1000; i > 4096; i /= 2) Insert(i, i, V(i));
  EXPECT_EQ(t_.load(huge), V(huge));
  EXPECT_EQ(t_.load(0), V(0));
}

// lib/test_maple_tree.c, check_ranges: overlapping range stores on small and
// multi-level trees; the interesting cases named there are overwriting the
// end of a node into the next one, splitting one range, overwriting a range's
// start, end or whole, and overwrites that merge several parents.
TEST_P(StoreTest, KernelRangesBasic) {
  Insert(10, 15, V(10));
  Insert(20, 25, V(20));
  Insert(17, 22, V(17));  // EEXIST: overlaps [20, 25]
  EXPECT_GE(t_.stats().height, 1u);
  Store(17, 22, V(17));
  Store(9, 1000, V(9));
  Store(100, 200, V(100));
  t_.destroy();
  m_ = Model();
  EXPECT_EQ(t_.stats().height, 0u);
}

TEST_P(StoreTest, KernelRangesOverSeq) {
  struct Case {
    uint64_t seq;
    uint64_t first, last;
  };
  for (Case c : std::vector<Case>{{50, 5, 47}, {100, 45, 168}, {200, 45, 168}, {30, 6, 18}}) {
    SCOPED_TRACE(c.seq);
    Seq(c.seq);
    Store(c.first, c.last, V(c.first));
    t_.destroy();
    m_ = Model();
  }
}

TEST_P(StoreTest, KernelRangesOverwriteAcrossLevels) {
  Seq(400);
  Store(118, 128, V(118));
  for (uint64_t i : {140, 141, 142, 143, 130, 131, 132, 133, 134, 135}) Erase(i);
  EXPECT_EQ(t_.load(118), V(118));
  EXPECT_EQ(t_.load(128), V(118));
  EXPECT_EQ(t_.load(127), V(118));
  EXPECT_EQ(t_.load(129), V(129));
  EXPECT_EQ(t_.load(135), nullptr);
  EXPECT_EQ(t_.load(140), nullptr);
}

TEST_P(StoreTest, KernelRangesOverwriteAtTheEnd) {
  Seq(400);
  Store(353, 361, V(353));
  Store(347, 352, V(347));
  EXPECT_EQ(t_.load(346), V(346));
  EXPECT_EQ(t_.load(362), V(362));
  t_.destroy();
  m_ = Model();

  Seq(400);
  Store(352, 364, nullptr);
  Store(351, 363, V(352));
  EXPECT_EQ(t_.load(350), V(350));
  EXPECT_EQ(t_.load(364), nullptr);
  EXPECT_EQ(t_.load(365), V(365));
  t_.destroy();
  m_ = Model();

  Seq(400);
  Store(352, 364, nullptr);
  Store(351, 364, V(352));
  EXPECT_EQ(t_.load(365), V(365));
  t_.destroy();
  m_ = Model();

  Seq(400);
  Store(362, 367, V(362));
  Store(353, 361, V(353));
}

TEST_P(StoreTest, KernelRangesOverlappingFives) {
  // Each [i*5, (i+1)*5] overlaps the previous one's last index.
  for (uint64_t i = 0; i <= 500; ++i) {
    RCUVM_ASSERT_OK(t_.store(i * 5, (i + 1) * 5, V(i * 5)));
    m_.store(i * 5, (i + 1) * 5, V(i * 5));
  }
  ASSERT_TRUE(Matches(t_, m_));
  Store(2400, 2400, V(2400));
  Store(2411, 2411, V(2411));
  Store(2412, 2412, V(2412));
  Store(2396, 2400, V(4052020));
  Store(2402, 2402, V(2402));
  t_.destroy();
  m_ = Model();

  for (uint64_t i = 0; i <= 500; ++i) {
    RCUVM_ASSERT_OK(t_.store(i * 5, (i + 1) * 5, V(i * 5)));
    m_.store(i * 5, (i + 1) * 5, V(i * 5));
  }
  Store(2422, 2422, V(2422));
  Store(2424, 2424, V(2424));
  Store(2425, 2425, V(2));
  Store(2460, 2470, nullptr);
  Store(2435, 2460, V(2435));
  Store(2461, 2470, V(2461));
}

TEST_P(StoreTest, KernelRangesRebalanceGaps) {
  auto tens = [&](uint64_t n) {
    for (uint64_t i = 0; i <= n; ++i) {
      RCUVM_ASSERT_OK(t_.store(i * 10, (i + 1) * 10, V(i * 10)));
      m_.store(i * 10, (i + 1) * 10, V(i * 10));
    }
    ASSERT_TRUE(Matches(t_, m_));
  };
  tens(50);
  Store(161, 161, V(161));
  Store(162, 162, V(162));
  Store(163, 163, V(163));
  Store(240, 249, nullptr);
  for (uint64_t i : {200, 210, 220, 230}) Erase(i);
  t_.destroy();
  m_ = Model();

  tens(500);
  Store(4600, 4959, V(1));
  t_.destroy();
  m_ = Model();

  tens(500);
  Store(4811, 4811, V(4811));
  Store(4812, 4812, V(4812));
  Store(4861, 4861, V(4861));
  Store(4862, 4862, V(4862));
  Store(4842, 4849, nullptr);
  t_.destroy();
  m_ = Model();

  // Many small holes punched through one region: splits up several levels.
  tens(1300);
  for (uint64_t i = 5; i < 215; i += 10) Store(11450 + i, 11450 + i + 1, nullptr);
  for (uint64_t i = 5; i < 65; i += 10) Store(11770 + i, 11770 + i + 1, nullptr);
  for (uint64_t i = 5; i < 45; i += 10) Store(11700 + i, 11700 + i + 1, nullptr);
  t_.destroy();
  m_ = Model();

  // Fill parents and leaves, then one store that splits across levels.
  tens(1200);
  for (uint64_t i = 5; i < 455; i += 10) Store(7800 + i, 7800 + i + 1, nullptr);
  for (uint64_t i = 1; i < 16; ++i) Store(8185 + i, 8185 + i + 1, V(8185 + i));
  Store(8184, 8184, V(8184));
}

// lib/test_maple_tree.c, check_node_overwrite, check_spanning_relatives and
// check_bnode_min_spanning: null stores spanning many nodes.
TEST_P(StoreTest, KernelSpanningNullStores) {
  for (uint64_t i = 0; i < 4000; ++i) {
    RCUVM_ASSERT_OK(t_.store(i * 100, i * 100 + 50, V(i * 100)));
    m_.store(i * 100, i * 100 + 50, V(i * 100));
  }
  Store(319951, 367950, nullptr);
  t_.destroy();
  m_ = Model();

  for (uint64_t i = 0; i <= 1000; ++i) {
    RCUVM_ASSERT_OK(t_.store(i * 10, i * 10 + 5, V(i)));
    m_.store(i * 10, i * 10 + 5, V(i));
  }
  Store(9365, 9955, nullptr);
  t_.destroy();
  m_ = Model();

  for (uint64_t i = 51; i-- > 0;) {
    RCUVM_ASSERT_OK(t_.store(i * 10, i * 10 + 9, L('A')));
    m_.store(i * 10, i * 10 + 9, L('A'));
  }
  Store(240, 509, nullptr);
}

// tools/testing/radix-tree/maple.c, check_erase_testset: inserts and erases
// of scattered single indices, with two alternating values, checking every
// index of the set (and the model) after each step.
TEST_P(StoreTest, KernelEraseTestset) {
  static constexpr uint64_t kSet[] = {
      5015,  5014,  5017,  25,    1000,  1001,  1002,  1003,  1005,  0,     6003,  6002,
      6008,  6012,  6015,  7003,  7002,  7008,  7012,  7015,  8003,  8002,  8008,  8012,
      8015,  9003,  9002,  9008,  9012,  9015,  10003, 10002, 10008, 10012, 10015, 11003,
      11002, 11008, 11012, 11015, 12003, 12002, 12008, 12012, 12015, 13003, 13002, 13008,
      13012, 13015, 14003, 14002, 14008, 14012, 14015, 15003, 15002, 15008, 15012, 15015};
  constexpr int kCount = sizeof(kSet) / sizeof(kSet[0]);
  void* const entry[2] = {L('P'), L('Q')};
  auto ins = [&](int i) { Insert(kSet[i], kSet[i], entry[i % 2]); };
  auto era = [&](int i) {
    ASSERT_EQ(m_.load(kSet[i]), entry[i % 2]) << "test data: " << i;
    Erase(kSet[i]);
  };
  // Matches() after every step checks every index of the set and their
  // neighbours (5013, 5016, 5018, 999, 1001...) that the kernel test reloads.
  for (int i = 0; i < 4; ++i) ins(i);
  era(1);
  era(2);
  ins(1);
  ins(2);
  era(1);
  ins(1);
  era(2);  // erase 5017 to check append
  ins(2);
  era(2);
  era(0);  // erase 5015 to check append
  ins(4);  // 1000: should not split
  EXPECT_EQ(t_.stats().height, 1u);

  // Coalesce testing.
  ins(0);
  ins(2);
  for (int i = 5; i < 25; ++i) ins(i);
  for (int i : {14, 16, 13, 15, 17, 18, 19, 20, 21, 22, 23, 24}) era(i);

  // Shrinking tree test.
  for (int i = 13; i < kCount; ++i) ins(i);
  for (int i = 18; i < kCount; ++i) era(i);
  for (int i = 0; i < 18; ++i) {
    if (m_.load(kSet[i])) era(i);
  }
  ins(8);
  ins(9);
  era(8);
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{0, 0, entry[1]}}));
}

// lib/test_maple_tree.c, check_fuzzer: sequences that once broke the
// kernel's spanning rebalance, node copy or metadata. Values are whatever the
// fuzzer used (odd integers); failed inserts (EEXIST, EINVAL for first > last)
// are part of the sequences.
TEST_P(StoreTest, KernelFuzzerSequences) {
  enum Op { kStore, kInsert, kErase, kLoad };
  struct Step {
    Op op;
    uint64_t first, last, value;
  };
  auto run = [&](const std::vector<Step>& steps) {
    for (const Step& s : steps) {
      void* v = reinterpret_cast<void*>(static_cast<uintptr_t>(s.value));
      switch (s.op) {
        case kStore:
          if (s.first > s.last) {
            RCUVM_EXPECT_ERRNO(t_.store(s.first, s.last, v), EINVAL);
          } else {
            Store(s.first, s.last, v);
          }
          break;
        case kInsert: Insert(s.first, s.last, v); break;
        case kErase: Erase(s.first); break;
        case kLoad: EXPECT_EQ(t_.load(s.first), m_.load(s.first)); break;
      }
      if (::testing::Test::HasFatalFailure()) return;
    }
    t_.destroy();
    m_ = Model();
  };
  auto st = [](uint64_t i, uint64_t v) { return Step{kStore, i, i, v}; };
  auto in = [](uint64_t i, uint64_t v) { return Step{kInsert, i, i, v}; };
  auto er = [](uint64_t i) { return Step{kErase, i, i, 0}; };
  auto ld = [](uint64_t i) { return Step{kLoad, i, i, 0}; };
  auto sr = [](uint64_t f, uint64_t l, uint64_t v) { return Step{kStore, f, l, v}; };
  auto ir = [](uint64_t f, uint64_t l, uint64_t v) { return Step{kInsert, f, l, v}; };

  // 1. A spanning rebalance of a single root node.
  run({in(88, 0xb1), in(84, 0xa9), in(2, 0x5), in(4, 0x9), in(14, 0x1d), in(7, 0xf), in(12, 0x19),
       in(18, 0x25), sr(8, 18, 0x11)});
  // 2. A spanning rebalance of two nodes in the root.
  run({st(87, 0xaf), st(0, 0x1), ld(4), in(4, 0x9), st(8, 0x11), st(44, 0x59), st(68, 0x89),
       st(2, 0x5), in(43, 0x57), in(24, 0x31), in(844, 0x699), st(84, 0xa9), st(4, 0x9), er(4),
       ld(5), er(0)});
  // 3. A node overflow on copy.
  run({sr(0, kMax, 0x1), st(4, 0x9), er(5), er(0), er(4), st(5, 0xb), er(5), st(5, 0xb), er(5),
       er(4), st(4, 0x9), st(444, 0x379), st(0, 0x1), ld(0), st(5, 0xb), er(0)});
  // 4. A spanning store writing a wrong pivot in the last slot.
  run({in(261, 0x20b), st(516, 0x409), st(6, 0xd), in(5, 0xb), in(1256, 0x9d1), st(4, 0x9), er(1),
       st(56, 0x71), in(1, 0x3), st(24, 0x31), er(1), in(2263, 0x11af), in(446, 0x37d),
       sr(6, 45, 0xd), sr(3, 446, 0x7)});
  // 5. Extending a null range past the end of the node's slots.
  run({st(48, 0x61), st(3, 0x7), ld(0), st(88, 0xb1), st(81, 0xa3), in(0, 0x1), in(8, 0x11),
       in(4, 0x9), in(2480, 0x1361), in(kMax, 0xffffffffffffffff), er(kMax)});
  // 8. A rebalance setting the new node's max to its last pivot.
  run({st(6, 0xd), st(67, 0x87), in(15, 0x1f), in(6716, 0x3479), st(61, 0x7b), in(13, 0x1b),
       st(8, 0x11), in(1, 0x3), ld(0), er(67167), ir(6, 7167, 0xd), in(6, 0xd), er(67), in(1, 0x3),
       er(667167), in(6, 0xd), st(67, 0x87), in(5, 0xb), er(1), in(6, 0xd), er(67), in(15, 0x1f),
       in(67167, 0x20cbf), in(1, 0x3), ld(7), in(16, 0x21), in(36, 0x49), st(67, 0x87), st(6, 0xd),
       in(367, 0x2df), in(115, 0xe7), st(0, 0x1), sr(1, 3, 0x3), st(1, 0x3), er(67167),
       ir(6, 47, 0xd), st(1, 0x3), ir(1, 67, 0x3), ld(67), in(1, 0x3), er(67167)});
  // 9. A spanning store to the end of the data.
  run({in(21, 0x2b), in(12, 0x19), in(6, 0xd), in(8, 0x11), in(2, 0x5), in(91, 0xb7), in(18, 0x25),
       in(81, 0xa3), sr(0, 128, 0x1), st(1, 0x3), er(8), in(11, 0x17), in(8, 0x11), in(21, 0x2b),
       in(2, 0x5), in(kMax - 10, 0xffffffffffffffeb), er(kMax - 10), sr(0, 281, 0x1), er(2),
       in(1211, 0x977), in(111, 0xdf), in(13, 0x1b), in(211, 0x1a7), in(11, 0x17), in(5, 0xb),
       in(1218, 0x985), in(61, 0x7b), st(1, 0x3), in(121, 0xf3), in(8, 0x11), in(21, 0x2b),
       in(2, 0x5), in(kMax - 10, 0xffffffffffffffeb), er(kMax - 10)});
  // From 6 and 7: stores and inserts with first > last.
  run({in(22, 0x2d), sr(4, 62, 0x9), sr(1, 0, 0x3), ir(26, 1, 0x35), ir(5, 0, 0xb),
       ir(110, 2, 0xdd), sr(110, 12, 0xdd), ir(4, 71, 0x9), ir(11, 22, 0x17)});
}

TEST_P(StoreTest, LockedVariantsUnderTheTreesOwnLock) {
  t_.lock();
  RCUVM_EXPECT_OK(t_.store_locked(10, 19, L('A')));
  RCUVM_EXPECT_OK(t_.insert_locked(20, 29, L('B')));
  RCUVM_EXPECT_ERRNO(t_.insert_locked(25, 25, L('C')), EEXIST);
  auto e = t_.erase_locked(15);
  RCUVM_EXPECT_OK(e);
  t_.unlock();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, L('A'));
  EXPECT_EQ(Entries(t_), (std::vector<Entry>{{20, 29, L('B')}}));
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(StoreTest, ExternalLockSerialisesWriters) {
  absl::Mutex mu;
  TreeOptions o = GetParam();
  o.external_lock = &mu;
  Tree t(o);
  mu.Lock();
  RCUVM_EXPECT_OK(t.store(10, 19, L('A')));
  RCUVM_EXPECT_OK(t.insert(30, 39, L('B')));
  auto e = t.erase(35);
  RCUVM_EXPECT_OK(e);
  RCUVM_EXPECT_OK(t.validate());
  EXPECT_EQ(t.stats().entries, 1u);
  mu.Unlock();
  // Readers need no lock.
  EXPECT_EQ(t.load(10), L('A'));
  EXPECT_EQ(t.load(35), nullptr);
  mu.Lock();
  t.destroy();
  mu.Unlock();
}

TEST_P(StoreTest, RandomOperationsAgreeWithTheModel) {
  // Short random runs in a small index space, so that ranges collide often.
  std::mt19937_64 rng(7);
  for (int step = 0; step < 3000; ++step) {
    const uint64_t a = rng() % 2000, b = a + rng() % (rng() % 4 == 0 ? 300 : 20);
    void* v = rng() % 5 == 0 ? nullptr : V(rng() % 8);
    switch (rng() % 4) {
      case 0:
      case 1: Store(a, b, v); break;
      case 2: Insert(a, b, v); break;
      case 3: Erase(a); break;
    }
    if (HasFatalFailure()) {
      ADD_FAILURE() << "at step " << step;
      return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, StoreTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
