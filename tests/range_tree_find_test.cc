// Unit tests of RangeTree's ordered reads: find, find_rev, the Cursor
// (next/prev/seek/replace) and for_each.
//
// Cursor semantics, as range_tree.h states them (those of the kernel's
// mas_next()/mas_prev()): the cursor has a current entry, the last one a step
// returned (none after construction or seek()). Without one, next(max)
// returns the first entry overlapping [index, max] and prev(min) the last
// entry overlapping [min, index]. With one, next(max) returns the first entry
// starting after it (not beyond max) and prev(min) the last entry ending
// before it (not below min). A step that finds nothing returns nullopt and
// leaves the cursor, current entry included, as it was; replace() acts on the
// current entry. Tests ported from the kernel keep the kernel's data and
// expectations, and say so where ours differ.
#include <cerrno>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"

namespace rcuvm::unit {
namespace {

class FindTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};

  // Stores [i*step, i*step + len] -> V(i) for i in [0, n].
  void Fill(uint64_t n, uint64_t step, uint64_t len) {
    for (uint64_t i = 0; i <= n; ++i) {
      absl::Status s = t_.store(i * step, i * step + len, V(i));
      ASSERT_TRUE(s.ok()) << s;
    }
  }
};

TEST_P(FindTest, FindAtAndAcrossBoundaries) {
  RCUVM_ASSERT_OK(t_.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(t_.store(30, 39, L('B')));
  RCUVM_ASSERT_OK(t_.store(50, 59, L('C')));
  const Entry a{10, 19, L('A')}, b{30, 39, L('B')}, c{50, 59, L('C')};
  EXPECT_EQ(t_.find(0), a);
  EXPECT_EQ(t_.find(10), a);
  EXPECT_EQ(t_.find(15), a);  // overlapping: the whole entry comes back
  EXPECT_EQ(t_.find(19), a);
  EXPECT_EQ(t_.find(20), b);
  EXPECT_EQ(t_.find(20, 29), std::nullopt);  // the gap only
  EXPECT_EQ(t_.find(20, 30), b);             // max touches B's first index
  EXPECT_EQ(t_.find(0, 9), std::nullopt);
  EXPECT_EQ(t_.find(0, 10), a);
  EXPECT_EQ(t_.find(59, 59), c);
  EXPECT_EQ(t_.find(60), std::nullopt);
  EXPECT_EQ(t_.find(kMax), std::nullopt);
  EXPECT_EQ(t_.find(40, 39), std::nullopt);  // an empty window
}

TEST_P(FindTest, FindRevAtAndAcrossBoundaries) {
  RCUVM_ASSERT_OK(t_.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(t_.store(30, 39, L('B')));
  RCUVM_ASSERT_OK(t_.store(50, 59, L('C')));
  const Entry a{10, 19, L('A')}, b{30, 39, L('B')}, c{50, 59, L('C')};
  EXPECT_EQ(t_.find_rev(kMax), c);
  EXPECT_EQ(t_.find_rev(100), c);
  EXPECT_EQ(t_.find_rev(50), c);
  EXPECT_EQ(t_.find_rev(49), b);
  EXPECT_EQ(t_.find_rev(45, 40), std::nullopt);
  EXPECT_EQ(t_.find_rev(45, 39), b);  // min touches B's last index
  EXPECT_EQ(t_.find_rev(35, 35), b);
  EXPECT_EQ(t_.find_rev(10), a);
  EXPECT_EQ(t_.find_rev(9), std::nullopt);
  EXPECT_EQ(t_.find_rev(0), std::nullopt);
  EXPECT_EQ(t_.find_rev(5, 6), std::nullopt);  // an empty window
}

TEST_P(FindTest, FindAtTheEndsOfTheIndexSpace) {
  RCUVM_ASSERT_OK(t_.store(0, 0, L('A')));
  RCUVM_ASSERT_OK(t_.store(kMax, kMax, L('B')));
  const Entry a{0, 0, L('A')}, b{kMax, kMax, L('B')};
  EXPECT_EQ(t_.find(0), a);
  EXPECT_EQ(t_.find(1), b);
  EXPECT_EQ(t_.find(1, kMax - 1), std::nullopt);
  EXPECT_EQ(t_.find(kMax), b);
  EXPECT_EQ(t_.find_rev(kMax), b);
  EXPECT_EQ(t_.find_rev(kMax - 1), a);
  EXPECT_EQ(t_.find_rev(kMax - 1, 1), std::nullopt);
  EXPECT_EQ(t_.find_rev(0), a);
}

TEST_P(FindTest, FindOnEmptyTree) {
  EXPECT_EQ(t_.find(0), std::nullopt);
  EXPECT_EQ(t_.find(123, 456), std::nullopt);
  EXPECT_EQ(t_.find_rev(kMax), std::nullopt);
  rcu::ReadGuard g;
  auto c = t_.cursor(77);
  EXPECT_EQ(c.next(), std::nullopt);
  EXPECT_EQ(c.prev(), std::nullopt);
}

TEST_P(FindTest, FindAcrossManyLeaves) {
  Fill(2000, 10, 5);
  for (uint64_t i = 0; i < 2000; i += 13) {
    EXPECT_EQ(t_.find(i * 10 + 6), (Entry{(i + 1) * 10, (i + 1) * 10 + 5, V(i + 1)})) << i;
    EXPECT_EQ(t_.find(i * 10 + 6, i * 10 + 9), std::nullopt) << i;
    EXPECT_EQ(t_.find_rev(i * 10 + 9), (Entry{i * 10, i * 10 + 5, V(i)})) << i;
    EXPECT_EQ(t_.find_rev(i * 10 + 9, i * 10 + 6), std::nullopt) << i;
  }
}

TEST_P(FindTest, CursorWalksForwardInOrderWithoutOverlap) {
  Fill(3000, 7, 3);
  rcu::ReadGuard g;
  auto c = t_.cursor();
  uint64_t i = 0;
  uint64_t next_free = 0;  // every entry must start at or after this
  while (auto e = c.next()) {
    ASSERT_EQ(*e, (Entry{i * 7, i * 7 + 3, V(i)}));
    ASSERT_GE(e->first, next_free);
    next_free = e->last + 1;
    ++i;
  }
  EXPECT_EQ(i, 3001u);
  EXPECT_EQ(c.next(), std::nullopt);  // and stays done
}

TEST_P(FindTest, CursorWalksBackwardInOrder) {
  Fill(3000, 7, 3);
  rcu::ReadGuard g;
  auto c = t_.cursor(kMax);
  uint64_t i = 3001;
  while (auto e = c.prev()) {
    --i;
    ASSERT_EQ(*e, (Entry{i * 7, i * 7 + 3, V(i)}));
  }
  EXPECT_EQ(i, 0u);
  EXPECT_EQ(c.prev(), std::nullopt);
}

TEST_P(FindTest, CursorStopsAtItsLimitAndCanContinue) {
  // lib/test_maple_tree.c, check_iteration: a walk bounded at 925 over
  // [i*10, i*10+9], then an unbounded step returns the entry after the limit.
  Fill(125, 10, 9);
  rcu::ReadGuard g;
  auto c = t_.cursor();
  uint64_t i = 0;
  while (auto e = c.next(925)) {
    ASSERT_EQ(*e, (Entry{i * 10, i * 10 + 9, V(i)}));
    ++i;
  }
  EXPECT_EQ(i, 93u);  // [920, 929] overlaps the limit
  EXPECT_EQ(c.next(), (Entry{930, 939, V(93)}));
  // A limit that falls in a gap.
  RCUVM_ASSERT_OK(t_.store(950, 969, nullptr));
  c.seek(940);
  EXPECT_EQ(c.next(955), (Entry{940, 949, V(94)}));
  EXPECT_EQ(c.next(965), std::nullopt);
  EXPECT_EQ(c.next(), (Entry{970, 979, V(97)}));
}

TEST_P(FindTest, CursorPrevHonoursItsMin) {
  // lib/test_maple_tree.c, check_prev_entry (limits on prev): entries
  // [i*10, i*10+5]. The kernel walks to 20 and asks for the previous entry
  // above 19 (none); a cursor without a current entry at 19 asks the same.
  Fill(16, 10, 5);
  rcu::ReadGuard g;
  auto c = t_.cursor(19);
  EXPECT_EQ(c.prev(19), std::nullopt);
  c.seek(19);
  EXPECT_EQ(c.prev(16), std::nullopt);
  c.seek(19);
  EXPECT_EQ(c.prev(15), (Entry{10, 15, V(1)}));
  c.seek(79);
  EXPECT_EQ(c.prev(76), std::nullopt);
  c.seek(79);
  EXPECT_EQ(c.prev(0), (Entry{70, 75, V(7)}));
  // A prev whose index sits inside an entry returns that entry.
  c.seek(20);
  EXPECT_EQ(c.prev(19), (Entry{20, 25, V(2)}));
}

TEST_P(FindTest, CursorSeekThenBothDirections) {
  Fill(30, 1, 0);  // check_seq(30): [i, i] -> V(i)
  rcu::ReadGuard g;
  auto c = t_.cursor(16);
  EXPECT_EQ(c.next(), (Entry{16, 16, V(16)}));
  EXPECT_EQ(c.next(), (Entry{17, 17, V(17)}));
  c.seek(15);
  EXPECT_EQ(c.prev(), (Entry{15, 15, V(15)}));
  EXPECT_EQ(c.prev(), (Entry{14, 14, V(14)}));
  // next() after prev() returns the entry after the current one (14), as
  // mas_next() does: 15 again, not 13 (that was the old position semantics,
  // where prev() left the index just before 14).
  EXPECT_EQ(c.next(), (Entry{15, 15, V(15)}));
  EXPECT_EQ(c.next(), (Entry{16, 16, V(16)}));
  // seek() forgets the current entry: prev() from 17 returns [17, 17] itself,
  // where a cursor still holding [16, 16] would return [15, 15].
  c.seek(17);
  EXPECT_EQ(c.prev(), (Entry{17, 17, V(17)}));
  EXPECT_EQ(c.next(), (Entry{18, 18, V(18)}));
}

TEST_P(FindTest, CursorNextThenPrevAroundGaps) {
  // The kernel's next_prev_test data: [i*10, i*10+5] for i in [0, 200].
  Fill(200, 10, 5);
  rcu::ReadGuard g;
  auto c = t_.cursor(686);
  EXPECT_EQ(c.next(1000), (Entry{690, 695, V(69)}));
  // prev() returns the entry before the current one, as the kernel's
  // mas_prev() does, even though a gap follows the current entry.
  EXPECT_EQ(c.prev(), (Entry{680, 685, V(68)}));
  EXPECT_EQ(c.prev(), (Entry{670, 675, V(67)}));
  EXPECT_EQ(c.next(1000), (Entry{680, 685, V(68)}));
  EXPECT_EQ(c.next(1000), (Entry{690, 695, V(69)}));
  EXPECT_EQ(c.next(1000), (Entry{700, 705, V(70)}));
  // Without a current entry, prev() from a gap returns the entry below it.
  c.seek(696);
  EXPECT_EQ(c.prev(), (Entry{690, 695, V(69)}));
  // Across node boundaries, both ways.
  c.seek(707);
  EXPECT_EQ(c.next(1000), (Entry{710, 715, V(71)}));
  EXPECT_EQ(c.next(1000), (Entry{720, 725, V(72)}));
  c.seek(70);
  EXPECT_EQ(c.next(), (Entry{70, 75, V(7)}));
  EXPECT_EQ(c.next(), (Entry{80, 85, V(8)}));
  // From [80, 85] the entry before is [70, 75]: it ends at 75, above min 70.
  EXPECT_EQ(c.prev(70), (Entry{70, 75, V(7)}));
  // [60, 65] ends below 70 (and below 66): nothing, and the cursor stays on
  // [70, 75], so a min of 65 then reaches [60, 65] ...
  EXPECT_EQ(c.prev(70), std::nullopt);
  EXPECT_EQ(c.prev(66), std::nullopt);
  EXPECT_EQ(c.prev(65), (Entry{60, 65, V(6)}));
  // ... and after another failed step next() returns the entry after it.
  EXPECT_EQ(c.prev(66), std::nullopt);
  EXPECT_EQ(c.next(), (Entry{70, 75, V(7)}));
}

TEST_P(FindTest, CursorNextThenPrevWithAdjacentEntries) {
  // Steps move from the current entry: prev() after next() is the entry
  // before it, and a step that finds nothing keeps the current entry.
  RCUVM_ASSERT_OK(t_.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(t_.store(20, 29, L('B')));
  rcu::ReadGuard g;
  auto c = t_.cursor(10);
  EXPECT_EQ(c.next(), (Entry{10, 19, L('A')}));
  EXPECT_EQ(c.next(), (Entry{20, 29, L('B')}));
  EXPECT_EQ(c.prev(), (Entry{10, 19, L('A')}));
  EXPECT_EQ(c.prev(), std::nullopt);
  EXPECT_EQ(c.next(), (Entry{20, 29, L('B')}));
  EXPECT_EQ(c.next(), std::nullopt);
  EXPECT_EQ(c.prev(), (Entry{10, 19, L('A')}));
}

TEST_P(FindTest, CursorRunsOffBothEndsAndStaysExhausted) {
  Fill(200, 10, 5);
  RCUVM_ASSERT_OK(t_.store(kMax - 5, kMax, L('Z')));
  rcu::ReadGuard g;
  // Off the top: the last entry ends at UINT64_MAX.
  auto c = t_.cursor(2000);
  EXPECT_EQ(c.next(), (Entry{2000, 2005, V(200)}));
  EXPECT_EQ(c.next(), (Entry{kMax - 5, kMax, L('Z')}));
  EXPECT_EQ(c.next(), std::nullopt);
  EXPECT_EQ(c.prev(), (Entry{2000, 2005, V(200)}));  // the entry before the current one
  c.seek(kMax);
  EXPECT_EQ(c.prev(), (Entry{kMax - 5, kMax, L('Z')}));
  EXPECT_EQ(c.prev(), (Entry{2000, 2005, V(200)}));
  // Off the bottom: the first entry starts at 0.
  c.seek(10);
  EXPECT_EQ(c.prev(), (Entry{10, 15, V(1)}));
  EXPECT_EQ(c.prev(), (Entry{0, 5, V(0)}));
  EXPECT_EQ(c.prev(), std::nullopt);
  EXPECT_EQ(c.next(), (Entry{10, 15, V(1)}));  // the entry after the current one
  c.seek(0);
  EXPECT_EQ(c.next(), (Entry{0, 5, V(0)}));
  // With [0, 5] gone there is nothing before 10 either.
  RCUVM_ASSERT_OK(t_.store(0, 5, nullptr));
  c.seek(10);
  EXPECT_EQ(c.prev(), (Entry{10, 15, V(1)}));
  EXPECT_EQ(c.prev(), std::nullopt);
}

TEST_P(FindTest, CursorPrevStopsAtAGapBelowMin) {
  // next_prev_test's last case: [0, 0] and [5, 5]; nothing in [4, 4].
  RCUVM_ASSERT_OK(t_.store(0, 0, V(0)));
  RCUVM_ASSERT_OK(t_.store(5, 5, V(5)));
  rcu::ReadGuard g;
  auto c = t_.cursor(4);
  EXPECT_EQ(c.prev(4), std::nullopt);
  c.seek(4);
  EXPECT_EQ(c.prev(0), (Entry{0, 0, V(0)}));
}

TEST_P(FindTest, KernelRevFind) {
  // lib/test_maple_tree.c, check_rev_find: mas_find_rev has our semantics.
  Fill(200, 10, 5);
  rcu::ReadGuard g;
  auto c = t_.cursor(1000);
  EXPECT_EQ(c.prev(1000), (Entry{1000, 1005, V(100)}));
  EXPECT_EQ(c.prev(1000), std::nullopt);
  c.seek(999);
  EXPECT_EQ(c.prev(997), std::nullopt);
  c.seek(1000);
  EXPECT_EQ(c.prev(900), (Entry{1000, 1005, V(100)}));
  EXPECT_EQ(c.prev(900), (Entry{990, 995, V(99)}));
  c.seek(20);
  EXPECT_EQ(c.prev(), (Entry{20, 25, V(2)}));
  EXPECT_EQ(c.prev(), (Entry{10, 15, V(1)}));
  EXPECT_EQ(c.prev(), (Entry{0, 5, V(0)}));
  EXPECT_EQ(c.prev(), std::nullopt);
}

TEST_P(FindTest, KernelFind) {
  // lib/test_maple_tree.c, check_find: 0 and the powers of 4 up to 4^20,
  // each at its own index (the kernel stores a reserved "zero entry" at 64;
  // we have no such thing, so 64 holds an ordinary value here).
  std::vector<uint64_t> keys = {0};
  for (uint64_t v = 1; v <= (1ull << 40); v <<= 2) keys.push_back(v);
  ASSERT_EQ(keys.size(), 22u);
  for (uint64_t k : keys) RCUVM_ASSERT_OK(t_.insert(k, k, V(k)));

  {
    // Bounded walk up to 4^14.
    rcu::ReadGuard g;
    auto c = t_.cursor(0);
    size_t n = 0;
    while (auto e = c.next(268435456)) {
      ASSERT_EQ(*e, (Entry{keys[n], keys[n], V(keys[n])}));
      ++n;
    }
    EXPECT_EQ(n, 16u);
  }
  // Unbounded walk with for_each, then a walk bounded at 300.
  std::vector<Entry> all = Entries(t_);
  ASSERT_EQ(all.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(all[i].first, keys[i]);
  EXPECT_EQ(Entries(t_, 0, 300).size(), 6u);  // 0 1 4 16 64 256

  // With UINT64_MAX present too; the walk re-seeks after every step, as the
  // kernel's mas_pause() does.
  RCUVM_ASSERT_OK(t_.insert(kMax, kMax, V(kMax)));
  {
    rcu::ReadGuard g;
    auto c = t_.cursor(0);
    size_t n = 0;
    while (auto e = c.next()) {
      const uint64_t want = n < keys.size() ? keys[n] : kMax;
      ASSERT_EQ(e->first, want);
      ++n;
      ASSERT_LE(n, 25u);
      if (e->last == kMax) break;
      c.seek(e->last + 1);
    }
    EXPECT_EQ(n, keys.size() + 1);
  }
  auto erased = t_.erase(kMax);
  RCUVM_ASSERT_OK(erased);
  EXPECT_EQ(*erased, V(kMax));

  // The kernel expects 256 here because mt_find() skips its zero entry at
  // 64; ours is an ordinary value, so 64 comes first.
  EXPECT_EQ(t_.find(17, 512), (Entry{64, 64, V(64)}));
  EXPECT_EQ(t_.find(65, 512), (Entry{256, 256, V(256)}));
  EXPECT_EQ(t_.find(17, 20), std::nullopt);
  EXPECT_EQ(t_.find(1048576, 1048576), (Entry{1048576, 1048576, V(1048576)}));

  // The last value: find_rev from the top, with and without the entry at max.
  RCUVM_ASSERT_OK(t_.insert(kMax, kMax, V(kMax)));
  EXPECT_EQ(t_.find_rev(kMax), (Entry{kMax, kMax, V(kMax)}));
  EXPECT_EQ(t_.find_rev(kMax - 1), (Entry{1ull << 40, 1ull << 40, V(1ull << 40)}));
  RCUVM_ASSERT_OK(t_.store(kMax, kMax, nullptr));
  EXPECT_EQ(t_.find_rev(kMax), (Entry{1ull << 40, 1ull << 40, V(1ull << 40)}));
  rcu::ReadGuard g;
  auto c = t_.cursor(0);
  EXPECT_EQ(c.prev(), (Entry{0, 0, V(0)}));
  EXPECT_EQ(c.prev(), std::nullopt);
}

TEST_P(FindTest, KernelFind2) {
  // lib/test_maple_tree.c, check_find_2: walk after every insert and erase.
  EXPECT_TRUE(Entries(t_).empty());
  for (uint64_t i = 0; i < 256; ++i) {
    RCUVM_ASSERT_OK(t_.insert(i, i, V(i)));
    uint64_t j = 0;
    t_.for_each(0, kMax, [&](const Entry& e) {
      EXPECT_EQ(e.value, V(j));
      ++j;
    });
    ASSERT_EQ(j, i + 1);
  }
  for (uint64_t i = 0; i < 256; ++i) {
    RCUVM_ASSERT_OK(t_.erase(i));
    uint64_t j = i + 1;
    t_.for_each(0, kMax, [&](const Entry& e) {
      EXPECT_EQ(e.value, V(j));
      ++j;
    });
    ASSERT_EQ(j, 256u);
  }
  EXPECT_TRUE(t_.empty());
}

TEST_P(FindTest, KernelNextEntry) {
  // lib/test_maple_tree.c, check_next_entry: step through check_seq(30)
  // with a limit of 30.
  Fill(30, 1, 0);
  rcu::ReadGuard g;
  auto c = t_.cursor(0);
  for (uint64_t i = 0; i <= 31; ++i) {
    auto e = c.next(30);
    if (i > 30)
      EXPECT_EQ(e, std::nullopt);
    else
      EXPECT_EQ(e, (Entry{i, i, V(i)}));
  }
}

TEST_P(FindTest, KernelRootExpand) {
  // lib/test_maple_tree.c, check_root_expand: the first store into an empty
  // tree, at 1 and then at 0.
  EXPECT_EQ(t_.load(3), nullptr);
  RCUVM_ASSERT_OK(t_.store(1, 1, L('A')));
  EXPECT_EQ(t_.load(0), nullptr);
  EXPECT_EQ(t_.load(1), L('A'));
  EXPECT_EQ(t_.load(2), nullptr);
  t_.destroy();

  RCUVM_ASSERT_OK(t_.store(0, 0, L('B')));
  EXPECT_EQ(t_.load(5), nullptr);
  EXPECT_EQ(t_.find(0, 100), (Entry{0, 0, L('B')}));
  rcu::ReadGuard g;
  auto c = t_.cursor(0);
  EXPECT_EQ(c.next(), (Entry{0, 0, L('B')}));
  EXPECT_EQ(c.next(), std::nullopt);
  c.seek(1);
  EXPECT_EQ(c.prev(), (Entry{0, 0, L('B')}));
}

TEST_P(FindTest, ForEachVisitsOverlappingEntriesInOrder) {
  Fill(500, 10, 5);
  std::vector<Entry> seen;
  t_.for_each(103, 2005, [&](const Entry& e) { seen.push_back(e); });
  // [100, 105] overlaps the window's start, [2000, 2005] its end.
  ASSERT_EQ(seen.size(), 191u);
  EXPECT_EQ(seen.front(), (Entry{100, 105, V(10)}));
  EXPECT_EQ(seen.back(), (Entry{2000, 2005, V(200)}));
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GT(seen[i].first, seen[i - 1].last);
    EXPECT_LE(seen[i].first, seen[i].last);
  }
  // A window inside a gap sees nothing; one inside an entry sees it.
  seen.clear();
  t_.for_each(106, 109, [&](const Entry& e) { seen.push_back(e); });
  EXPECT_TRUE(seen.empty());
  t_.for_each(102, 103, [&](const Entry& e) { seen.push_back(e); });
  EXPECT_EQ(seen, (std::vector<Entry>{{100, 105, V(10)}}));
}

TEST_P(FindTest, ForEachMatchesTheModelAfterRandomWrites) {
  Model m;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t a = rng() % 100000, b = a + rng() % 500;
    void* v = rng() % 4 == 0 ? nullptr : V(rng() % 1000);
    RCUVM_ASSERT_OK(t_.store(a, b, v));
    m.store(a, b, v);
  }
  ASSERT_TRUE(Matches(t_, m));
  for (int q = 0; q < 200; ++q) {
    const uint64_t a = rng() % 100000, b = a + rng() % 5000;
    std::vector<Entry> want;
    for (const Entry& e : m.entries())
      if (e.last >= a && e.first <= b) want.push_back(e);
    EXPECT_EQ(Entries(t_, a, b), want) << "[" << a << ", " << b << "]";
    auto f = t_.find(a, b);
    EXPECT_EQ(f, want.empty() ? std::nullopt : std::optional<Entry>(want.front()));
    auto r = t_.find_rev(b, a);
    EXPECT_EQ(r, want.empty() ? std::nullopt : std::optional<Entry>(want.back()));
  }
}

// Cursor::replace() in range_tree.h does not compile when used: it calls the
// non-const RawTree::cursor_replace() through the cursor's `const RangeTree*`.
// Until that is fixed these tests drive the engine's cursor (RawTree, the
// untyped tree behind RangeTree) directly; the contract is the same.
class RawCursor {
 public:
  explicit RawCursor(detail::RawTree& t, uint64_t index = 0) : t_(t) { s_.index = index; }
  std::optional<Entry> next(uint64_t max = kMax) { return typed(t_.cursor_find(s_, max)); }
  std::optional<Entry> prev(uint64_t min = 0) { return typed(t_.cursor_find_rev(s_, min)); }
  absl::Status replace(void* v) { return t_.cursor_replace(s_, v); }
  void seek(uint64_t index) { s_ = detail::RawCursorState{.index = index}; }  // as Cursor::seek

 private:
  static std::optional<Entry> typed(const std::optional<detail::RawEntry>& e) {
    if (!e) return std::nullopt;
    return Entry{e->first, e->last, e->value};
  }
  detail::RawTree& t_;
  detail::RawCursorState s_;
};

TEST_P(FindTest, ReplaceSwapsTheValueInPlace) {
  detail::RawTree raw(GetParam());
  for (uint64_t i = 0; i <= 300; ++i) RCUVM_ASSERT_OK(raw.store(i * 10, i * 10 + 5, V(i)));
  const TreeStats before = raw.stats();
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw);
    while (auto e = c.next()) {
      absl::Status s = c.replace(V(X(e->value) + 1000));
      ASSERT_TRUE(s.ok()) << s;
    }
  }
  raw.unlock();
  for (uint64_t i = 0; i <= 300; ++i) {
    auto e = raw.find(i * 10, kMax);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->first, i * 10);
    EXPECT_EQ(e->last, i * 10 + 5);
    EXPECT_EQ(e->value, V(i + 1000));
  }
  // Same shape: no node was replaced.
  const TreeStats after = raw.stats();
  EXPECT_EQ(after.nodes, before.nodes);
  EXPECT_EQ(after.entries, before.entries);
  RCUVM_EXPECT_OK(raw.validate());
}

TEST_P(FindTest, ReplaceAfterPrevAndRejectsNull) {
  detail::RawTree raw(GetParam());
  RCUVM_ASSERT_OK(raw.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(raw.store(30, 39, L('B')));
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw, kMax);
    ASSERT_EQ(c.prev(), (Entry{30, 39, L('B')}));
    RCUVM_EXPECT_ERRNO(c.replace(nullptr), EINVAL);
    RCUVM_EXPECT_OK(c.replace(L('C')));
  }
  raw.unlock();
  EXPECT_EQ(raw.load(30), L('C'));
  EXPECT_EQ(raw.load(39), L('C'));
  EXPECT_EQ(raw.load(40), nullptr);
  EXPECT_EQ(raw.load(10), L('A'));
  RCUVM_EXPECT_OK(raw.validate());
}

TEST_P(FindTest, ReplaceWithoutAnEntryIsEinval) {
  detail::RawTree raw(GetParam());
  RCUVM_ASSERT_OK(raw.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(raw.store(30, 39, L('C')));
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw);
    // No step yet.
    RCUVM_EXPECT_ERRNO(c.replace(L('B')), EINVAL);
    // Steps that found nothing, on a cursor that has no current entry, leave
    // it without one: still nothing to replace. (A failed step after a
    // successful one keeps that entry current instead: see
    // ReplaceAfterAFailedStepReplacesTheCurrentEntry.)
    c.seek(20);
    EXPECT_EQ(c.next(29), std::nullopt);
    RCUVM_EXPECT_ERRNO(c.replace(L('B')), EINVAL);
    EXPECT_EQ(c.prev(20), std::nullopt);
    RCUVM_EXPECT_ERRNO(c.replace(L('B')), EINVAL);
    // seek() forgets the current entry.
    ASSERT_EQ(c.next(), (Entry{30, 39, L('C')}));
    c.seek(10);
    RCUVM_EXPECT_ERRNO(c.replace(L('B')), EINVAL);
  }
  raw.unlock();
  EXPECT_EQ(raw.load(10), L('A'));
  EXPECT_EQ(raw.load(30), L('C'));
}

// A step that finds nothing leaves the current entry as it was, so replace()
// after it acts on the entry the last successful step returned (the old
// position semantics refused here with EINVAL).
TEST_P(FindTest, ReplaceAfterAFailedStepReplacesTheCurrentEntry) {
  detail::RawTree raw(GetParam());
  RCUVM_ASSERT_OK(raw.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(raw.store(30, 39, L('C')));
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw);
    ASSERT_EQ(c.next(), (Entry{10, 19, L('A')}));
    ASSERT_EQ(c.next(), (Entry{30, 39, L('C')}));
    EXPECT_EQ(c.next(), std::nullopt);  // off the end
    RCUVM_EXPECT_OK(c.replace(L('D')));
    EXPECT_EQ(c.prev(20), std::nullopt);  // [10, 19] ends below the min
    RCUVM_EXPECT_OK(c.replace(L('E')));   // still [30, 39]
    EXPECT_EQ(c.prev(), (Entry{10, 19, L('A')}));
  }
  raw.unlock();
  EXPECT_EQ(raw.load(10), L('A'));
  EXPECT_EQ(raw.load(30), L('E'));
  EXPECT_EQ(raw.load(39), L('E'));
  EXPECT_EQ(raw.load(40), nullptr);
  RCUVM_EXPECT_OK(raw.validate());
}

TEST_P(FindTest, ReplaceAfterAFailedStepAcrossAWriteFindsTheEntryAgain) {
  // A write shifts the current entry to another slot; a failed step then
  // re-walks to the new leaf. replace() must find the entry by its bounds, not
  // by a slot number remembered from the old leaf.
  detail::RawTree raw(GetParam());
  RCUVM_ASSERT_OK(raw.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(raw.store(30, 39, L('C')));
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw);
    ASSERT_EQ(c.next(), (Entry{10, 19, L('A')}));
    ASSERT_EQ(c.next(), (Entry{30, 39, L('C')}));
    RCUVM_ASSERT_OK(raw.store_locked(0, 5, L('X')));  // shifts [30, 39] by two slots
    EXPECT_EQ(c.next(), std::nullopt);
    RCUVM_EXPECT_OK(c.replace(L('D')));
    // The mirror image, stepping backwards.
    RCUVM_ASSERT_OK(raw.store_locked(0, 5, nullptr));
    RCUVM_ASSERT_OK(raw.store_locked(22, 24, L('Y')));
    EXPECT_EQ(c.prev(25), std::nullopt);  // nothing in [25, 29]
    RCUVM_EXPECT_OK(c.replace(L('E')));
  }
  raw.unlock();
  EXPECT_EQ(raw.load(30), L('E'));
  EXPECT_EQ(raw.load(39), L('E'));
  EXPECT_EQ(raw.load(23), L('Y'));
  RCUVM_EXPECT_OK(raw.validate());
}

TEST_P(FindTest, ReplaceAfterAWriteMovedTheEntry) {
  // The entry the cursor returned was split by a write since: replace must
  // refuse rather than overwrite a range with different bounds.
  detail::RawTree raw(GetParam());
  RCUVM_ASSERT_OK(raw.store(10, 19, L('A')));
  RCUVM_ASSERT_OK(raw.store(30, 39, L('B')));
  raw.lock();
  {
    rcu::ReadGuard g;
    RawCursor c(raw);
    ASSERT_EQ(c.next(), (Entry{10, 19, L('A')}));
    RCUVM_ASSERT_OK(raw.store_locked(15, 16, L('C')));
    RCUVM_EXPECT_ERRNO(c.replace(L('D')), EINVAL);
  }
  raw.unlock();
  EXPECT_EQ(raw.load(10), L('A'));
  EXPECT_EQ(raw.load(15), L('C'));
  EXPECT_EQ(raw.load(17), L('A'));
  RCUVM_EXPECT_OK(raw.validate());
}

// A cursor is invalidated by nothing: after a write (here the walker's own,
// under the writer lock) it re-walks from its current entry. This is the
// kernel's check_iteration: the write does not move the cursor, so the walk
// goes on after the end of the entry it last returned, and never returns an
// entry overlapping that one (a piece split off it included).
TEST_P(FindTest, CursorSurvivesWritesDuringTheWalk) {
  Fill(125, 10, 9);
  t_.lock();
  {
    rcu::ReadGuard g;  // keeps the leaves the cursor remembers alive
    auto c = t_.cursor(0);
    uint64_t i = 0;
    while (auto e = c.next(925)) {
      ASSERT_EQ(*e, (Entry{i * 10, i * 10 + 9, V(i)}));
      if (i == 92) RCUVM_ASSERT_OK(t_.store_locked(925, 929, e->value));  // overwrite its end
      ++i;
    }
    // [925, 929] overlaps the current entry [920, 929]: skipped going forward,
    // but it is the entry before [930, 939].
    EXPECT_EQ(c.next(), (Entry{930, 939, V(93)}));
    EXPECT_EQ(c.prev(), (Entry{925, 929, V(92)}));

    c.seek(0);
    i = 0;
    while (auto e = c.next(785)) {
      ASSERT_EQ(*e, (Entry{i * 10, i * 10 + 9, V(i)}));
      if (i == 78) RCUVM_ASSERT_OK(t_.store_locked(780, 785, e->value));  // overwrite its start
      ++i;
    }
    // The split-off [786, 789] lies behind the cursor; the walk goes on at 790,
    // and stepping back from there returns the split-off piece.
    EXPECT_EQ(c.next(), (Entry{790, 799, V(79)}));
    EXPECT_EQ(c.prev(), (Entry{786, 789, V(78)}));

    // Writes ahead of the cursor are seen: erase the next entry and replace
    // the one after it by two.
    c.seek(500);
    EXPECT_EQ(c.next(), (Entry{500, 509, V(50)}));
    RCUVM_ASSERT_OK(t_.erase_locked(515).status());
    RCUVM_ASSERT_OK(t_.store_locked(525, 529, L('X')));
    EXPECT_EQ(c.next(), (Entry{520, 524, V(52)}));
    EXPECT_EQ(c.next(), (Entry{525, 529, L('X')}));
    EXPECT_EQ(c.next(), (Entry{530, 539, V(53)}));
  }
  t_.unlock();
  RCUVM_EXPECT_OK(t_.validate());
  EXPECT_EQ(t_.load(786), V(78));
  EXPECT_EQ(t_.find(780), (Entry{780, 785, V(78)}));
}

// The same under the writer lock alone, as the header allows ("inside the
// caller's rcu::ReadGuard (or under the writer lock)"), with drain() between
// the write and the next step so that the replaced leaf is really freed. A
// cursor that kept reading its old leaf would read freed memory (visible
// under AddressSanitizer, or as a wrong answer once the node is reused).
TEST_P(FindTest, CursorUnderWriterLockOnlySurvivesOwnWrites) {
  Fill(300, 10, 5);
  t_.lock();
  auto c = t_.cursor(0);
  ASSERT_EQ(c.next(), (Entry{0, 5, V(0)}));
  ASSERT_EQ(c.next(), (Entry{10, 15, V(1)}));
  // Replace the leaf the cursor sits in, then let the old one be reclaimed.
  RCUVM_ASSERT_OK(t_.store_locked(20, 22, L('Y')));
  // Replaced nodes wait in the tree's open retire batch until it fills:
  // enough writes far away fill it, so the old leaf is retired and drained.
  for (uint64_t i = 0; i < 64; ++i)
    RCUVM_ASSERT_OK(t_.store_locked(1'000'000 + i * 4, 1'000'000 + i * 4 + 1, V(9)));
  rcu::drain();
  // Reuse freed nodes for a new tree so that stale memory changes.
  {
    Tree other(GetParam());
    for (uint64_t i = 0; i < 200; ++i) RCUVM_ASSERT_OK(other.store(i * 3, i * 3 + 1, V(7)));
  }
  EXPECT_EQ(c.next(), (Entry{20, 22, L('Y')}));
  EXPECT_EQ(c.next(), (Entry{23, 25, V(2)}));
  EXPECT_EQ(c.next(), (Entry{30, 35, V(3)}));
  t_.unlock();
}

INSTANTIATE_TEST_SUITE_P(AllModes, FindTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
