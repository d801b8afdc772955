// Unit tests of the tree's debug and accounting surface: validate(), dump()
// and stats().
//
// validate() must accept every tree the API can build, and must name the
// first broken invariant (I1..I7, listed in src/tree/node.h) when a tree is
// damaged. The damage tests reach the nodes through TreeAccess, the engine's
// one befriended accessor (src/tree/tree_internal.h), on the untyped RawTree
// that RangeTree wraps; each restores what it broke before the tree dies.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/status.h"
#include "tree/node.h"
#include "tree/tree_internal.h"

namespace rcuvm::unit {
namespace {

using detail::Node;
using detail::TreeAccess;

class ValidateTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};

  // Checks every stats() field against what the tree's contents imply.
  void ExpectConsistentStats(const Tree& t) {
    const std::vector<Entry> entries = Entries(t);
    const TreeStats s = t.stats();
    EXPECT_EQ(s.entries, entries.size());
    EXPECT_EQ(s.nulls, NullRanges(entries));
    EXPECT_EQ(s.bytes, s.nodes * 256);
    EXPECT_LE(s.leaves, s.nodes);
    if (entries.empty()) {
      EXPECT_EQ(s.nodes, 0u);
      EXPECT_EQ(s.height, 0u);
      return;
    }
    EXPECT_GE(s.height, 1u);
    // One leaf per slot-full of ranges at best (21 slots in the offset
    // layout); at least 8 slots a leaf except a lone root leaf.
    const uint64_t ranges = s.entries + s.nulls;
    EXPECT_GE(s.leaves, (ranges + 20) / 21);
    if (s.leaves > 1) {
      EXPECT_LE(s.leaves, ranges / 8);
    }
    if (s.height == 1) {
      EXPECT_EQ(s.nodes, 1u);
      EXPECT_EQ(s.leaves, 1u);
    } else {
      // At least one internal node per level above the leaves, and at most
      // one per two children (internal non-root nodes are half full).
      EXPECT_GE(s.nodes - s.leaves, s.height - 1);
      EXPECT_LE(s.nodes - s.leaves, s.leaves);
    }
  }
};

TEST_P(ValidateTest, AcceptsTreesOfEveryShape) {
  RCUVM_EXPECT_OK(t_.validate());  // empty
  RCUVM_ASSERT_OK(t_.store(5, 5, L('A')));
  RCUVM_EXPECT_OK(t_.validate());  // one leaf
  RCUVM_ASSERT_OK(t_.store(0, kMax, L('B')));
  RCUVM_EXPECT_OK(t_.validate());  // one range, no null
  std::mt19937_64 rng(4);
  for (int i = 0; i < 5000; ++i) {
    const uint64_t a = rng() % 1000000, b = a + rng() % 300;
    RCUVM_ASSERT_OK(t_.store(a, b, rng() % 3 ? V(i) : nullptr));
    if (i % 500 == 0) {
      RCUVM_ASSERT_OK(t_.validate());
    }
  }
  RCUVM_EXPECT_OK(t_.validate());  // deep
  ExpectConsistentStats(t_);
  Tree copy(GetParam());
  RCUVM_ASSERT_OK(t_.dup_into(copy));
  RCUVM_EXPECT_OK(copy.validate());
  t_.destroy();
  RCUVM_EXPECT_OK(t_.validate());
}

TEST_P(ValidateTest, StatsAfterKnownOperations) {
  ExpectConsistentStats(t_);
  RCUVM_ASSERT_OK(t_.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(t_.store(20, 29, L('B')));
  TreeStats s = t_.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.nulls, 2u);
  EXPECT_EQ(s.nodes, 1u);
  EXPECT_EQ(s.leaves, 1u);
  EXPECT_EQ(s.height, 1u);
  EXPECT_EQ(s.bytes, 256u);
  RCUVM_ASSERT_OK(t_.erase(10));
  s = t_.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.nulls, 2u);
  // Grow until there are several levels, checking all along.
  for (uint64_t i = 0; i < 4000; ++i) {
    RCUVM_ASSERT_OK(t_.store(100 + i * 4, 100 + i * 4 + 2, V(i)));
    if (i % 400 == 0) ExpectConsistentStats(t_);
  }
  s = t_.stats();
  EXPECT_EQ(s.entries, 4001u);
  EXPECT_EQ(s.nulls, 4002u);
  EXPECT_GE(s.height, 3u);
  ExpectConsistentStats(t_);
  // Shrink again.
  for (uint64_t i = 0; i < 4000; i += 2) RCUVM_ASSERT_OK(t_.erase(100 + i * 4));
  s = t_.stats();
  EXPECT_EQ(s.entries, 2001u);
  ExpectConsistentStats(t_);
}

TEST_P(ValidateTest, StatsAfterBulkLoadAndDup) {
  std::vector<Entry> in;
  for (uint64_t i = 0; i < 3000; ++i) in.push_back({i * 3, i * 3 + 1, V(i)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  ExpectConsistentStats(t_);
  EXPECT_EQ(t_.stats().entries, 3000u);
  EXPECT_EQ(t_.stats().nulls, 3000u);  // one after each entry, the last to the end
  Tree copy(GetParam());
  RCUVM_ASSERT_OK(t_.dup_into(copy));
  ExpectConsistentStats(copy);
}

TEST_P(ValidateTest, DumpMentionsTheRanges) {
  EXPECT_FALSE(t_.dump().empty());
  RCUVM_ASSERT_OK(t_.store(0x1000, 0x1fff, L('A')));
  RCUVM_ASSERT_OK(t_.store(0x5000, 0x5000, L('B')));
  const std::string d = t_.dump();
  EXPECT_NE(d.find("0x1000"), std::string::npos) << d;
  EXPECT_NE(d.find("0x1fff"), std::string::npos) << d;
  EXPECT_NE(d.find("0x5000"), std::string::npos) << d;
  EXPECT_NE(d.find("0x2000"), std::string::npos) << d;  // the gap after A
  // A deep tree dumps every entry.
  for (uint64_t i = 0; i < 500; ++i) RCUVM_ASSERT_OK(t_.store(0x10000 + i * 0x10, 0x10000 + i * 0x10 + 7, V(i)));
  const std::string deep = t_.dump();
  EXPECT_NE(deep.find("0x10000"), std::string::npos);
  EXPECT_NE(deep.find("0x11f37"), std::string::npos);  // the last entry's end
}

INSTANTIATE_TEST_SUITE_P(AllModes, ValidateTest, ::testing::ValuesIn(AllModes()), ModeName);

// ------------------------------------------------------ damage detection

class DamageTest : public ::testing::TestWithParam<bool /*track_gaps*/> {
 protected:
  DamageTest() : raw_(TreeOptions{.track_gaps = GetParam(), .rcu = true}) {}

  // Builds a tree of height >= 2.
  void Build() {
    for (uint64_t i = 0; i < 400; ++i) {
      absl::Status s = raw_.store(i * 10, i * 10 + 5, V(i));
      ASSERT_TRUE(s.ok()) << s;
    }
    ASSERT_GE(TreeAccess::height(raw_), 2u);
    RCUVM_ASSERT_OK(raw_.validate());
  }
  Node* root() { return TreeAccess::root(raw_).load(); }
  // The leftmost leaf.
  Node* first_leaf() {
    Node* n = root();
    while (!detail::is_leaf(detail::node_kind(n)))
      n = reinterpret_cast<Node*>(detail::slots(n, detail::node_kind(n))[0]);
    return n;
  }
  // Swaps two pivots of a leaf in either layout.
  static void SwapPivots(Node* leaf, unsigned a, unsigned b) {
    if (detail::node_kind(leaf) == detail::Kind::kLeaf32) {
      auto* off = detail::offsets(leaf, detail::Kind::kLeaf32);
      const uint32_t t = off[a];
      off[a] = off[b];
      off[b] = t;
    } else {
      std::swap(detail::pivots(leaf)[a], detail::pivots(leaf)[b]);
    }
  }
  // Expects validate() to fail naming invariant `inv` ("I3"...).
  void ExpectBroken(const std::string& inv) {
    absl::Status s = raw_.validate();
    ASSERT_FALSE(s.ok()) << "damage to " << inv << " went unnoticed";
    EXPECT_NE(std::string(s.message()).find(inv), std::string::npos) << s;
  }

  detail::RawTree raw_;
};

TEST_P(DamageTest, DeadNodeIsI1) {
  Build();
  Node* leaf = first_leaf();
  const uint64_t saved = leaf->meta;
  leaf->meta |= detail::kDeadBit;
  ExpectBroken("I1");
  leaf->meta = saved;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, WrongHeightIsI1) {
  Build();
  TreeAccess::height(raw_) += 1;
  ExpectBroken("I1");
  TreeAccess::height(raw_) -= 1;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, UnderfullLeafIsI2) {
  Build();
  Node* leaf = first_leaf();
  const uint64_t saved = leaf->meta;
  // Claim fewer slots than the minimum fill of a non-root leaf.
  leaf->meta = detail::make_meta(2, detail::node_kind(leaf));
  ExpectBroken("I2");
  leaf->meta = saved;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, UnorderedPivotsAreI3) {
  Build();
  Node* leaf = first_leaf();
  SwapPivots(leaf, 1, 2);
  ExpectBroken("I3");
  SwapPivots(leaf, 1, 2);
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, NullChildIsI4) {
  Build();
  Node* r = root();
  const detail::Kind k = detail::node_kind(r);
  uint64_t* sl = detail::slots(r, k);
  const uint64_t saved = sl[1];
  sl[1] = 0;
  ExpectBroken("I4");
  sl[1] = saved;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, AdjacentNullsAreI5) {
  Build();
  // Leaf slots alternate entry, gap: nulling slot 0 ([0, 5]) puts it next to
  // the null slot 1 ([6, 9]).
  Node* leaf = first_leaf();
  uint64_t* sl = detail::slots(leaf, detail::node_kind(leaf));
  ASSERT_NE(sl[0], 0u);
  ASSERT_EQ(sl[1], 0u);
  const uint64_t saved = sl[0];
  sl[0] = 0;
  ExpectBroken("I5");
  sl[0] = saved;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, WrongCountersAreI7) {
  Build();
  TreeAccess::entries(raw_) += 1;
  ExpectBroken("I7");
  TreeAccess::entries(raw_) -= 1;
  TreeAccess::nodes(raw_) -= 1;
  ExpectBroken("I7");
  TreeAccess::nodes(raw_) += 1;
  RCUVM_EXPECT_OK(raw_.validate());
}

TEST_P(DamageTest, FirstBrokenInvariantIsNamed) {
  // Break I3 and I7 at once: validate() checks in order and names I3.
  Build();
  Node* leaf = first_leaf();
  SwapPivots(leaf, 3, 4);
  TreeAccess::entries(raw_) += 5;
  ExpectBroken("I3");
  SwapPivots(leaf, 3, 4);
  ExpectBroken("I7");
  TreeAccess::entries(raw_) -= 5;
  RCUVM_EXPECT_OK(raw_.validate());
}

// Gaps exist only in allocation trees.
class GapDamageTest : public DamageTest {};

TEST_P(GapDamageTest, WrongGapIsI6) {
  Build();
  Node* r = root();
  const detail::Kind k = detail::node_kind(r);
  ASSERT_TRUE(detail::is_alloc(k));
  const uint64_t saved = detail::load_gap(r, k, 0);
  detail::store_gap(r, k, 0, saved + 1);
  ExpectBroken("I6");
  detail::store_gap(r, k, 0, saved);
  RCUVM_EXPECT_OK(raw_.validate());
}

INSTANTIATE_TEST_SUITE_P(AllocOnly, GapDamageTest, ::testing::Values(true),
                         [](const ::testing::TestParamInfo<bool>&) { return "Alloc"; });
INSTANTIATE_TEST_SUITE_P(BothKinds, DamageTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Alloc" : "Range"; });

}  // namespace
}  // namespace rcuvm::unit
