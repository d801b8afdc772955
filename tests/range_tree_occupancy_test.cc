// How full the tree keeps its nodes, and the retire batches a tree keeps
// pending across writes (write.cc): a split first spreads into a neighbour
// with room (leaves: room to spare; internal nodes: else both neighbours,
// three nodes into four), so random insertion leaves nodes well above half
// full, and in-order insertion nearly full; replaced nodes wait in a per-tree batch that is
// handed to RCU when full, on destroy(), set_rcu() and destruction (a batch
// nobody hands over would be a leak, which the ASan build's LeakSanitizer sees).
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/range_tree.h"

namespace rcuvm::unit {
namespace {

class OccupancyTest : public ::testing::TestWithParam<TreeOptions> {};

// n ranges of 1..16 pages with 1..4-page holes between them, like the
// benchmark layout, in a fixed shuffled order.
struct Layout {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<size_t> order;
};
Layout MakeLayout(size_t n, uint64_t seed) {
  Layout l;
  std::mt19937_64 rng(seed);
  uint64_t end = 0x10000;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t start = end + 4096 * (1 + rng() % 4);
    const uint64_t size = 4096 * (1 + rng() % 16);
    l.ranges.push_back({start, start + size - 1});
    end = start + size;
    l.order.push_back(i);
  }
  std::shuffle(l.order.begin(), l.order.end(), rng);
  return l;
}

TEST_P(OccupancyTest, RandomInsertionKeepsNodesFull) {
  constexpr size_t kN = 20000;
  const Layout l = MakeLayout(kN, 7);
  Tree t(GetParam());
  for (size_t i : l.order) RCUVM_ASSERT_OK(t.store(l.ranges[i].first, l.ranges[i].second, V(i)));
  RCUVM_ASSERT_OK(t.validate());
  const TreeStats s = t.stats();
  ASSERT_EQ(s.entries, kN);
  // Each range brings itself and the hole before it: 2 slots of a 21-slot
  // leaf (the layout with 32-bit pivot offsets, which these indices fit).
  // Half-full leaves would need 48 bytes of leaf per range; spreading into a
  // neighbour with room keeps leaves about 79% full on average: 33.1 bytes a
  // range without gap tracking, 33.5 with it (15-child Alloc32 internal
  // nodes). Plain even splits give 37.7 at 1e6; spreading also into nearly
  // full neighbours and three-into-four leaf splits gave 30.8 (86% full) but
  // made random insertion about 15% slower (leaves kept full overflow again
  // on the next insert, and each overflow rewrote three or four leaves).
  const double leaf_fill = double(s.entries + s.nulls) / double(21 * s.leaves);
  EXPECT_GT(leaf_fill, 0.77) << "leaves " << s.leaves << ", nodes " << s.nodes;
  const double bytes_per_range = double(s.bytes) / double(kN);
  EXPECT_LT(bytes_per_range, GetParam().track_gaps ? 34.0 : 33.7) << "nodes " << s.nodes;
}

// Ascending stores (a heap growing up) and descending ones (mmap's top-down
// placement) grow the tree at one edge, where an overflowing node has one
// neighbour only: the leaves behind the edge must end up nearly full, as a
// bulk load packs them (a two-into-three split there left them two thirds
// full: 49.8 bytes per range instead of 35.6 at 1e6).
TEST_P(OccupancyTest, InOrderInsertionAtEitherEdgeFillsLeaves) {
  constexpr size_t kN = 20000;
  const Layout l = MakeLayout(kN, 11);
  for (const bool descending : {false, true}) {
    Tree t(GetParam());
    for (size_t j = 0; j < kN; ++j) {
      const size_t i = descending ? kN - 1 - j : j;
      RCUVM_ASSERT_OK(t.store(l.ranges[i].first, l.ranges[i].second, V(i)));
    }
    RCUVM_ASSERT_OK(t.validate());
    const TreeStats s = t.stats();
    ASSERT_EQ(s.entries, kN);
    const double leaf_fill = double(s.entries + s.nulls) / double(21 * s.leaves);
    EXPECT_GT(leaf_fill, 0.9) << (descending ? "descending" : "ascending") << ": leaves "
                              << s.leaves << ", nodes " << s.nodes;
  }
}

// The same over a span of tens of GiB (holes of up to 4 MiB): the edge leaf
// holds the hole from 0 (descending) and the edge nodes above span to
// UINT64_MAX (ascending), so they need the 64-bit layouts, which hold fewer
// slots. The nodes left behind the edge must still come out as full as a bulk
// load packs them (an even split at the edge left them at 8 of 21 leaf slots
// and 6 of 15 children: 8 levels instead of 6 at 1e6).
TEST_P(OccupancyTest, InOrderInsertionOverAWideSpanFillsNodes) {
  constexpr size_t kN = 20000;
  std::mt19937_64 rng(13);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t end = 0x10000;
  for (size_t i = 0; i < kN; ++i) {
    const uint64_t start = end + 4096 * (1 + rng() % 1024);
    const uint64_t size = 4096 * (1 + rng() % 16);
    ranges.push_back({start, start + size - 1});
    end = start + size;
  }
  ASSERT_GT(end, uint64_t(16) << 30);
  Tree bulk(GetParam());
  std::vector<Tree::Entry> in;
  for (size_t i = 0; i < kN; ++i) in.push_back({ranges[i].first, ranges[i].second, V(i)});
  RCUVM_ASSERT_OK(bulk.bulk_load(in));
  const TreeStats b = bulk.stats();
  for (const bool descending : {false, true}) {
    Tree t(GetParam());
    for (size_t j = 0; j < kN; ++j) {
      const size_t i = descending ? kN - 1 - j : j;
      RCUVM_ASSERT_OK(t.store(ranges[i].first, ranges[i].second, V(i)));
    }
    RCUVM_ASSERT_OK(t.validate());
    const TreeStats s = t.stats();
    ASSERT_EQ(s.entries, kN);
    EXPECT_LE(s.height, b.height) << (descending ? "descending" : "ascending");
    EXPECT_LT(double(s.bytes), 1.08 * double(b.bytes))
        << (descending ? "descending" : "ascending") << ": " << s.nodes << " nodes, bulk " << b.nodes;
  }
}

TEST_P(OccupancyTest, ChurnKeepsTheTreeValidAndFull) {
  constexpr size_t kN = 5000;
  const Layout l = MakeLayout(kN, 11);
  Tree t(GetParam());
  Model m;
  for (size_t i : l.order) {
    RCUVM_ASSERT_OK(t.store(l.ranges[i].first, l.ranges[i].second, V(i)));
    m.store(l.ranges[i].first, l.ranges[i].second, V(i));
  }
  std::mt19937_64 rng(5);
  for (int k = 0; k < 20000; ++k) {
    const size_t i = rng() % kN;
    auto& r = l.ranges[i];
    RCUVM_ASSERT_OK(t.store(r.first, r.second, nullptr));
    m.store(r.first, r.second, nullptr);
    // Store it again, shrunk or not, at the same start.
    const uint64_t last = r.first + (r.second - r.first) / (1 + rng() % 2);
    RCUVM_ASSERT_OK(t.store(r.first, last, V(k)));
    m.store(r.first, last, V(k));
    if (k % 2000 == 0) {
      RCUVM_ASSERT_OK(t.validate());
    }
  }
  RCUVM_ASSERT_OK(t.validate());
  EXPECT_TRUE(Matches(t, m));
}

TEST_P(OccupancyTest, PendingRetiresAreHandedOver) {
  // Writes leave a partly filled retire batch; each way of ending or changing
  // the tree's mode must hand it over (LeakSanitizer checks the ASan build).
  for (int how = 0; how < 3; ++how) {
    Tree t(GetParam());
    for (uint64_t i = 0; i < 300; ++i) RCUVM_ASSERT_OK(t.store(i * 10, i * 10 + 5, V(i)));
    for (uint64_t i = 0; i < 7; ++i) RCUVM_ASSERT_OK(t.store(i * 10, i * 10 + 5, nullptr));
    if (how == 0) t.destroy();
    if (how == 1) {
      t.set_rcu(false);
      RCUVM_ASSERT_OK(t.store(1000, 1001, nullptr));
      t.set_rcu(true);
      RCUVM_ASSERT_OK(t.store(1000, 1001, V(1)));
    }
    RCUVM_ASSERT_OK(t.validate());
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, OccupancyTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
