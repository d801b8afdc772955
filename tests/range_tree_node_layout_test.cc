// The node layouts with 32-bit offsets (src/tree/node.h): Leaf32 keeps 21
// slots with pivots as offsets from the leaf's min (Leaf64: 16 slots with
// absolute pivots), and in allocation trees Alloc32 keeps 15 children with
// offsets and 32-bit gaps (Alloc64: 10 children). Writers pick a Leaf32
// whenever every stored pivot lies within kMaxOffset (2^32 - 2) of the leaf's
// min, an Alloc32 whenever the node spans at most kMaxOffset + 1 indices.
// These tests pin the choice at the exact limit, switch one leaf between the
// layouts in both directions, read past 2^32 inside a Leaf32's last slot,
// check the planner's node counts, and check that the write bound
// store_worst_case_nodes() holds for every store.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"
#include "tree/node.h"
#include "tree/tree_internal.h"

namespace rcuvm::unit {
namespace {

using detail::Kind;
using detail::Node;
using detail::RawEntry;
using detail::RawTree;
using detail::TreeAccess;

constexpr uint64_t kLimit = detail::kMaxOffset;  // 0xFFFFFFFE

// A node of a tree with its kind and bounds.
struct NodeInfo {
  Kind kind;
  uint64_t min, max;
};

// Every node of a tree in DFS pre-order.
std::vector<NodeInfo> Nodes(RawTree& t) {
  std::vector<NodeInfo> out;
  struct Todo {
    const Node* n;
    uint64_t min, max;
  };
  std::vector<Todo> stack;
  if (const Node* r = TreeAccess::root(t)) stack.push_back({r, 0, kMax});
  while (!stack.empty()) {
    const Todo d = stack.back();
    stack.pop_back();
    const Kind k = detail::node_kind(d.n);
    out.push_back({k, d.min, d.max});
    if (detail::is_leaf(k)) continue;
    const unsigned cnt = detail::node_count(d.n);
    for (unsigned i = cnt; i-- > 0;) {
      stack.push_back({reinterpret_cast<const Node*>(detail::slots(d.n, k)[i]), detail::slot_min(d.n, k, i, d.min),
                       detail::slot_max(d.n, k, i, cnt, d.min, d.max)});
    }
  }
  return out;
}

// The leaves of a tree, left to right, with their layouts.
std::vector<Kind> LeafKinds(RawTree& t) {
  std::vector<Kind> out;
  for (const NodeInfo& n : Nodes(t))
    if (detail::is_leaf(n.kind)) out.push_back(n.kind);
  return out;
}

Kind RootKind(RawTree& t) { return detail::node_kind(TreeAccess::root(t)); }

void ExpectEntry(const std::optional<RawEntry>& e, uint64_t first, uint64_t last, void* v) {
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->first, first);
  EXPECT_EQ(e->last, last);
  EXPECT_EQ(e->value, v);
}

class NodeLayoutTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  RawTree t_{GetParam()};
};

TEST_P(NodeLayoutTest, TwentyOneSlotsFitOneLeaf) {
  // 10 entries with holes around them: 21 slots, one Leaf32 root.
  for (uint64_t i = 0; i < 10; ++i) RCUVM_ASSERT_OK(t_.store(i * 10 + 1, i * 10 + 5, V(i)));
  EXPECT_EQ(TreeAccess::height(t_), 1u);
  EXPECT_EQ(RootKind(t_), Kind::kLeaf32);
  EXPECT_EQ(detail::node_count(TreeAccess::root(t_)), 21u);
  // The 11th entry makes 23 slots: two leaves.
  RCUVM_ASSERT_OK(t_.store(101, 105, V(10)));
  EXPECT_EQ(TreeAccess::height(t_), 2u);
  EXPECT_EQ(LeafKinds(t_), (std::vector<Kind>{Kind::kLeaf32, Kind::kLeaf32}));
  RCUVM_EXPECT_OK(t_.validate());
  for (uint64_t i = 0; i <= 10; ++i) ExpectEntry(t_.find(i * 10, kMax), i * 10 + 1, i * 10 + 5, V(i));
}

TEST_P(NodeLayoutTest, LayoutFollowsTheOffsetLimitBothWays) {
  // The root leaf spans from 0: its stored pivots are absolute offsets.
  RCUVM_ASSERT_OK(t_.store(10, 20, V(1)));
  RCUVM_ASSERT_OK(t_.store(kLimit - 14, kLimit, V(2)));  // stored pivot == kLimit
  ASSERT_EQ(TreeAccess::height(t_), 1u);
  EXPECT_EQ(RootKind(t_), Kind::kLeaf32);
  RCUVM_EXPECT_OK(t_.validate());
  EXPECT_EQ(t_.load(kLimit), V(2));
  EXPECT_EQ(t_.load(kLimit + 1), nullptr);
  EXPECT_EQ(t_.load(kLimit - 15), nullptr);

  // One index further: the pivot no longer fits 32 bits, the leaf is rebuilt wide.
  RCUVM_ASSERT_OK(t_.store(kLimit - 14, kLimit + 1, V(3)));
  EXPECT_EQ(RootKind(t_), Kind::kLeaf64);
  RCUVM_EXPECT_OK(t_.validate());
  EXPECT_EQ(t_.load(kLimit + 1), V(3));
  EXPECT_EQ(t_.load(kLimit + 2), nullptr);
  ExpectEntry(t_.find(kLimit + 1, kMax), kLimit - 14, kLimit + 1, V(3));
  ExpectEntry(t_.find_rev(kMax, 0), kLimit - 14, kLimit + 1, V(3));

  // Unmapping it leaves only small pivots: back to the offset layout.
  RCUVM_ASSERT_OK(t_.store(kLimit - 14, kLimit + 1, nullptr));
  EXPECT_EQ(RootKind(t_), Kind::kLeaf32);
  RCUVM_EXPECT_OK(t_.validate());
  ExpectEntry(t_.find(0, kMax), 10, 20, V(1));
  EXPECT_FALSE(t_.find(21, kMax).has_value());
}

TEST_P(NodeLayoutTest, LookupsFarPastTheOffsetsLandInTheLastSlot) {
  // Leaves starting well above 0, each ending in a slot that reaches far:
  // distances from the leaf's min of 2^32 - 1 and more are clamped.
  const uint64_t base = uint64_t(1) << 44;
  for (uint64_t i = 0; i < 200; ++i) RCUVM_ASSERT_OK(t_.store(base + i * 16, base + i * 16 + 7, V(i)));
  // The first leaf stores the end of the hole [0, base - 1]: too far for an
  // offset. Every other leaf is a Leaf32, the last one spanning to UINT64_MAX.
  const std::vector<Kind> kinds = LeafKinds(t_);
  ASSERT_GE(kinds.size(), 2u);
  EXPECT_EQ(kinds.front(), Kind::kLeaf64);
  for (size_t i = 1; i < kinds.size(); ++i) EXPECT_EQ(kinds[i], Kind::kLeaf32) << i;
  RCUVM_EXPECT_OK(t_.validate());
  const uint64_t end = base + 199 * 16 + 7;
  for (uint64_t probe : {end + 1, end + 2, end + (uint64_t(1) << 32) - 1, end + (uint64_t(1) << 32),
                         end + (uint64_t(1) << 33), kMax - 1, kMax}) {
    EXPECT_EQ(t_.load(probe), nullptr) << probe;
    EXPECT_FALSE(t_.find(probe, kMax).has_value()) << probe;
    ExpectEntry(t_.find_rev(probe, 0), base + 199 * 16, end, V(199));
  }
  // Below the first leaf's entries too (the first leaf starts at 0).
  EXPECT_EQ(t_.load(base - 1), nullptr);
  ExpectEntry(t_.find(0, kMax), base, base + 7, V(0));
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(base, kMax, 8), base + 8);
    EXPECT_EQ(*t_.find_gap_rev(0, kMax, uint64_t(1) << 40), kMax - (uint64_t(1) << 40) + 1);
    EXPECT_EQ(*t_.find_gap(end + 1, kMax, uint64_t(1) << 40), end + 1);
  }
}

TEST_P(NodeLayoutTest, SpreadIndicesUseSixteenSlotLeaves) {
  // Entries 2^40 apart: no two pivots of a leaf fit offsets. A bulk load
  // packs 16 slots a leaf: ceil(201 / 16) leaves, all wide.
  std::vector<RawEntry> in;
  for (uint64_t i = 0; i < 100; ++i) in.push_back({(i + 1) << 40, ((i + 1) << 40) + 99, V(i)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  RCUVM_EXPECT_OK(t_.validate());
  const std::vector<Kind> kinds = LeafKinds(t_);
  EXPECT_EQ(kinds.size(), (201u + 15) / 16);
  for (Kind k : kinds) EXPECT_EQ(k, Kind::kLeaf64);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(t_.load(((i + 1) << 40) + 50), V(i));
}

TEST_P(NodeLayoutTest, OneWideHoleCostsOneLeaf) {
  // Two dense clusters 2^45 apart: one share of 21 slots spans the hole and is
  // cut in two, a Leaf64 holding the hole's end and a Leaf32; every other leaf
  // is a Leaf32.
  std::vector<RawEntry> in;
  for (uint64_t i = 0; i < 500; ++i) in.push_back({0x10000 + i * 0x3000, 0x10000 + i * 0x3000 + 0xfff, V(i)});
  const uint64_t far = uint64_t(1) << 45;
  for (uint64_t i = 0; i < 500; ++i) in.push_back({far + i * 0x3000, far + i * 0x3000 + 0xfff, V(500 + i)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  RCUVM_EXPECT_OK(t_.validate());
  const std::vector<Kind> kinds = LeafKinds(t_);
  const size_t slots = 2 * in.size() + 1;
  EXPECT_EQ(kinds.size(), (slots + 20) / 21 + 1);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), Kind::kLeaf64), 1);
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(t_.load(in[i].first + 7), in[i].value);
}

TEST_P(NodeLayoutTest, AllocationNodesUseOffsetsWhereTheySpanUnder4GiB) {
  // 3,000 entries 1 MiB apart (3 GiB in all), then 3,000 more from 2^40.
  std::vector<RawEntry> in;
  for (uint64_t i = 0; i < 3000; ++i) in.push_back({i << 20, (i << 20) + 0xfff, V(i)});
  for (uint64_t i = 0; i < 3000; ++i) in.push_back({(uint64_t(1) << 40) + (i << 20), (uint64_t(1) << 40) + (i << 20) + 0xfff, V(3000 + i)});
  RCUVM_ASSERT_OK(t_.bulk_load(in));
  RCUVM_EXPECT_OK(t_.validate());
  size_t alloc32 = 0, alloc64 = 0, range = 0;
  for (const NodeInfo& n : Nodes(t_)) {
    if (n.kind == Kind::kAlloc32) {
      ++alloc32;
      EXPECT_LE(n.max - n.min, kLimit) << "[" << n.min << ", " << n.max << "]";
    }
    alloc64 += n.kind == Kind::kAlloc64;
    range += n.kind == Kind::kRange;
  }
  if (GetParam().track_gaps) {
    // The root spans everything; nodes inside either cluster fit offsets.
    EXPECT_EQ(Nodes(t_).front().kind, Kind::kAlloc64);
    EXPECT_GT(alloc32, alloc64);
    EXPECT_EQ(range, 0u);
    // Gap searches read the 32-bit gaps: the 1 MiB - 4 KiB holes, nothing larger
    // until the end of the first cluster.
    EXPECT_EQ(*t_.find_gap(0, kMax, 0xff000), uint64_t(0x1000));
    EXPECT_EQ(*t_.find_gap(0, kMax, 0xff001), (uint64_t(2999) << 20) + 0x1000);
    EXPECT_EQ(*t_.find_gap_rev(0, (uint64_t(1) << 40) - 1, 0xff000), (uint64_t(1) << 40) - 0xff000);
    // Unmapping a run of entries grows a gap in place; a search must see it.
    for (uint64_t i = 1000; i < 1010; ++i) RCUVM_ASSERT_OK(t_.erase(i << 20).status());
    EXPECT_EQ(*t_.find_gap(0, kMax, 0xaff000), (uint64_t(999) << 20) + 0x1000);
    EXPECT_EQ(*t_.find_gap(0, kMax, 0xaff001), (uint64_t(2999) << 20) + 0x1000);
    for (uint64_t i = 1000; i < 1010; ++i) RCUVM_ASSERT_OK(t_.store(i << 20, (i << 20) + 0xfff, V(i)));
    RCUVM_EXPECT_OK(t_.validate());
  } else {
    EXPECT_EQ(alloc32 + alloc64, 0u);
    EXPECT_GT(range, 0u);
  }
  for (size_t i = 0; i < in.size(); i += 7) EXPECT_EQ(t_.load(in[i].first + 9), in[i].value);
}

// A store inside one Leaf32 copies the leaf's other slots and takes the
// leaf's largest gap from the parent's record unless a slot that goes held
// it (write.cc, copy_leaf32_with_store). validate() checks every recorded
// gap (I6); the searches check what the gaps are used for.
TEST_P(NodeLayoutTest, StoresInsideOneLeafKeepItsLargestGapRight) {
  // 400 entries of 16 indices at a stride of 64: holes of 48 indices, except
  // the widened ones below. Several levels, every leaf a Leaf32.
  for (uint64_t i = 0; i < 400; ++i) RCUVM_ASSERT_OK(t_.store(0x1000 + i * 64, 0x1000 + i * 64 + 15, V(i)));
  ASSERT_GE(TreeAccess::height(t_), 2u);
  auto start = [](uint64_t i) { return 0x1000 + i * 64; };
  // Two equal largest holes in one leaf (entries 101 and 103 gone: 112 free).
  RCUVM_ASSERT_OK(t_.erase(start(101)).status());
  RCUVM_ASSERT_OK(t_.erase(start(103)).status());
  RCUVM_ASSERT_OK(t_.validate());
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(0x1000, kMax, 112), start(100) + 16);
  }
  // Filling the middle of one largest hole leaves the other as the largest.
  RCUVM_ASSERT_OK(t_.store(start(101), start(101) + 15, V(101)));
  RCUVM_ASSERT_OK(t_.validate());
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(0x1000, kMax, 112), start(102) + 16);
  }
  // Filling the last one brings the leaf back to holes of 48.
  RCUVM_ASSERT_OK(t_.store(start(103), start(103) + 15, V(103)));
  RCUVM_ASSERT_OK(t_.validate());
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(0x1000, kMax, 48), uint64_t(0x1000) + 16);
    EXPECT_EQ(*t_.find_gap(0x1000, kMax, 49), start(399) + 16);
  }
  // A store into a hole smaller than the largest: the record stays.
  RCUVM_ASSERT_OK(t_.erase(start(200)).status());
  RCUVM_ASSERT_OK(t_.store(start(150) + 20, start(150) + 29, V(1000)));
  RCUVM_ASSERT_OK(t_.validate());
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(0x1000, kMax, 112), start(199) + 16);
  }
  // A null store over an entry and the holes beside it makes the largest.
  RCUVM_ASSERT_OK(t_.store(start(300), start(300) + 15, nullptr));
  RCUVM_ASSERT_OK(t_.validate());
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(start(201), kMax, 112), start(299) + 16);
  }
  for (uint64_t i = 0; i < 400; i += 3) {
    if (i == 200 || i == 300) continue;
    EXPECT_EQ(t_.load(start(i) + 5), V(i)) << i;
  }
}

// A store into the last slot of a Leaf32, where that slot reaches 4 GiB and
// more past the leaf's min: the pieces' ends become stored pivots, which no
// longer fit offsets, so the fresh leaf is a Leaf64.
TEST_P(NodeLayoutTest, StoreFarIntoALeaf32sLastSlotWidensTheLeaf) {
  for (uint64_t i = 0; i < 300; ++i) RCUVM_ASSERT_OK(t_.store(0x1000 + i * 64, 0x1000 + i * 64 + 15, V(i)));
  ASSERT_GE(TreeAccess::height(t_), 2u);
  ASSERT_EQ(LeafKinds(t_).back(), Kind::kLeaf32);
  const uint64_t far = kLimit + 0x10000;
  RCUVM_ASSERT_OK(t_.store(far, far + 99, V(999)));
  RCUVM_ASSERT_OK(t_.validate());
  EXPECT_EQ(LeafKinds(t_).back(), Kind::kLeaf64);
  EXPECT_EQ(t_.load(far - 1), nullptr);
  EXPECT_EQ(t_.load(far), V(999));
  EXPECT_EQ(t_.load(far + 99), V(999));
  EXPECT_EQ(t_.load(far + 100), nullptr);
  ExpectEntry(t_.find(0x1000 + 299 * 64 + 16, kMax), far, far + 99, V(999));
  if (GetParam().track_gaps) {
    EXPECT_EQ(*t_.find_gap(far, kMax, 101), far + 100);
  }
  // And a store ending exactly at the offset limit stays in the offset layout.
  RawTree u{GetParam()};
  for (uint64_t i = 0; i < 300; ++i) RCUVM_ASSERT_OK(u.store(0x1000 + i * 64, 0x1000 + i * 64 + 15, V(i)));
  std::vector<NodeInfo> nodes = Nodes(u);
  const uint64_t last_leaf_min = nodes.back().min;
  RCUVM_ASSERT_OK(u.store(last_leaf_min + kLimit - 9, last_leaf_min + kLimit, V(7)));
  RCUVM_ASSERT_OK(u.validate());
  EXPECT_EQ(LeafKinds(u).back(), Kind::kLeaf32);
  EXPECT_EQ(u.load(last_leaf_min + kLimit), V(7));
  EXPECT_EQ(u.load(last_leaf_min + kLimit + 1), nullptr);
}

TEST_P(NodeLayoutTest, FailedLayoutSwitchLeavesTheTreeAsItWas) {
  // A multi-level tree whose leftmost leaf switches layout on the store.
  for (uint64_t i = 0; i < 300; ++i) RCUVM_ASSERT_OK(t_.store(i * 16 + 1, i * 16 + 8, V(i)));
  ASSERT_GE(TreeAccess::height(t_), 2u);
  const std::string before = t_.dump();
  for (uint64_t k = 1;; ++k) {
    absl::Status s;
    bool fired;
    {
      FailNthAllocation fail(k);
      s = t_.store(1, (uint64_t(1) << 40) + 3, V(999));
      fired = fail.fired();
    }
    if (!fired) {
      RCUVM_ASSERT_OK(s);
      break;
    }
    ASSERT_EQ(errno_of(s), ENOMEM) << "allocation " << k;
    RCUVM_ASSERT_OK(t_.validate());
    ASSERT_EQ(t_.dump(), before) << "allocation " << k;
  }
  RCUVM_EXPECT_OK(t_.validate());
  ExpectEntry(t_.find(0, kMax), 1, (uint64_t(1) << 40) + 3, V(999));
  EXPECT_EQ(t_.load((uint64_t(1) << 40) + 4), nullptr);
}

TEST_P(NodeLayoutTest, NoStoreNeedsMoreThanTheWorstCaseBound) {
  // Arms a failure just past store_worst_case_nodes(): no store may reach it.
  // Mixed layouts (clusters near 0 and 2^40 apart) and every write shape.
  std::mt19937_64 rng(5);
  auto index = [&rng] {
    const uint64_t cluster = rng() % 4;
    return (cluster << 40) + (rng() % 4096) * 16;
  };
  for (int op = 0; op < 20000; ++op) {
    const uint64_t first = index();
    const uint64_t last = first + (rng() % 8 == 0 ? (uint64_t(1) << (rng() % 44)) : 1 + rng() % 64);
    void* v = rng() % 4 == 0 ? nullptr : V(op);
    const uint64_t bound = t_.store_worst_case_nodes();
    absl::Status s;
    {
      FailNthAllocation fail(bound + 1);
      s = t_.store(first, last, v);
    }
    ASSERT_TRUE(s.ok()) << "op " << op << ": store [" << first << ", " << last << "] needed more than " << bound
                        << " nodes: " << s;
    if (op % 1000 == 0) RCUVM_ASSERT_OK(t_.validate());
  }
  RCUVM_EXPECT_OK(t_.validate());
}

INSTANTIATE_TEST_SUITE_P(AllModes, NodeLayoutTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
