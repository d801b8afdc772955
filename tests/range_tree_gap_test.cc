// Unit tests of the gap search: find_gap (lowest fit) and find_gap_rev
// (highest fit), with and without gap tracking (allocation mode), the engine
// of get_unmapped_area.
//
// Our contract (range_tree.h): find_gap(min, max, size) returns the lowest S
// with [S, S + size - 1] all null and inside [min, max], both bounds
// inclusive; find_gap_rev returns the highest such S. EINVAL for size 0 or
// min > max, EBUSY when nothing fits.
//
// The kernel tables below come from lib/test_maple_tree.c. How their
// arguments map onto ours:
//   - mas_empty_area(mas, min, max, size) and mas_empty_area_rev(...) take
//     an inclusive [min, max] and return the range in mas.index..mas.last;
//     the _rev variant returns the highest fitting range. So they map
//     directly: our result is their mas.index (and mas.last = S + size - 1).
//   - mtree_alloc_range(mt, &start, entry, size, min, max) is mas_empty_area
//     followed by a store of [start, start + size - 1]: we model it as
//     find_gap + insert.
//   - The kernel's helper check_mtree_alloc_rrange(mt, start, end, size, ...)
//     calls mtree_alloc_rrange(..., start, end - 1): its table's "max" column
//     is exclusive, so our max is that value minus one.
//   - The tables list byte addresses from /proc/self/maps; the tests shift
//     them right by 12 (page numbers) and the VMA ranges are [start, end):
//     stored as [start >> 12, (end >> 12) - 1].
//   - The kernel tree reserves [MTREE_ALLOC_MAX = 2^49, ULONG_MAX] with a
//     "zero entry" that searches treat as occupied; we store a value there.
#include <cerrno>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "range_tree_unit_util.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/status.h"

namespace rcuvm::unit {
namespace {

class GapTest : public ::testing::TestWithParam<TreeOptions> {
 protected:
  Tree t_{GetParam()};
  Model m_;

  void Store(uint64_t first, uint64_t last, void* v) {
    absl::Status s = t_.store(first, last, v);
    ASSERT_TRUE(s.ok()) << s;
    m_.store(first, last, v);
  }
  // Expects find_gap (rev = false) or find_gap_rev to answer `want` (a start,
  // or nullopt for EBUSY), and the model to agree.
  void ExpectGap(uint64_t min, uint64_t max, uint64_t size, bool rev, std::optional<uint64_t> want) {
    auto got = rev ? t_.find_gap_rev(min, max, size) : t_.find_gap(min, max, size);
    const std::string what = absl::StrFormat("find_gap%s(%#x, %#x, %#x)", rev ? "_rev" : "", min, max, size);
    if (want) {
      ASSERT_TRUE(got.ok()) << what << ": " << got.status();
      EXPECT_EQ(*got, *want) << what;
    } else {
      EXPECT_EQ(errno_of(got.status()), EBUSY) << what << " returned " << (got.ok() ? *got : 0);
    }
    EXPECT_EQ(m_.gap(min, max, size, rev), want) << what << " (the model disagrees with the test)";
  }
  void Lowest(uint64_t min, uint64_t max, uint64_t size, std::optional<uint64_t> want) {
    ExpectGap(min, max, size, false, want);
  }
  void Highest(uint64_t min, uint64_t max, uint64_t size, std::optional<uint64_t> want) {
    ExpectGap(min, max, size, true, want);
  }
  // mtree_alloc_range / mtree_alloc_rrange: search, then claim what was found.
  void Alloc(uint64_t min, uint64_t max, uint64_t size, bool rev, std::optional<uint64_t> want, void* v) {
    ExpectGap(min, max, size, rev, want);
    if (!want) return;
    absl::Status s = t_.insert(*want, *want + size - 1, v);
    ASSERT_TRUE(s.ok()) << s;
    m_.store(*want, *want + size - 1, v);
    s = t_.validate();
    ASSERT_TRUE(s.ok()) << s;
  }
};

TEST_P(GapTest, RejectsSizeZeroAndInvertedWindows) {
  RCUVM_EXPECT_ERRNO(t_.find_gap(0, 100, 0), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.find_gap_rev(0, 100, 0), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.find_gap(101, 100, 1), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.find_gap_rev(101, 100, 1), EINVAL);
  Store(10, 19, L('A'));
  RCUVM_EXPECT_ERRNO(t_.find_gap(0, kMax, 0), EINVAL);
  RCUVM_EXPECT_ERRNO(t_.find_gap_rev(kMax, 0, 5), EINVAL);
}

TEST_P(GapTest, EmptyTreeIsOneGap) {
  Lowest(0, kMax, 1, 0);
  Highest(0, kMax, 1, kMax);
  Lowest(5, 10, 6, 5);
  Highest(5, 10, 6, 5);
  Lowest(5, 10, 7, std::nullopt);
  Highest(5, 10, 7, std::nullopt);
  Lowest(77, 77, 1, 77);
  // The largest sizes: [0, UINT64_MAX] holds 2^64 indices, more than any size.
  Lowest(0, kMax, kMax, 0);
  Highest(0, kMax, kMax, 1);
  Lowest(1, kMax, kMax, 1);
  Highest(0, kMax - 1, kMax, 0);
  Lowest(2, kMax, kMax, std::nullopt);
}

TEST_P(GapTest, GapsAtBothEnds) {
  Store(100, 199, L('A'));
  Lowest(0, kMax, 100, 0);
  Lowest(0, kMax, 101, 200);
  Highest(0, kMax, 1, kMax);
  Highest(0, 199, 1, 99);
  Highest(0, 99, 100, 0);
  Highest(0, 199, 101, std::nullopt);
  Lowest(100, 199, 1, std::nullopt);
  Lowest(100, 200, 1, 200);
  Highest(150, kMax, kMax - 199, 200);  // all of [200, UINT64_MAX]
  Highest(150, kMax, kMax - 198, std::nullopt);
}

TEST_P(GapTest, EntriesAtZeroAndMax) {
  Store(0, 0, L('A'));
  Store(kMax, kMax, L('B'));
  Lowest(0, kMax, 1, 1);
  Highest(0, kMax, 1, kMax - 1);
  Lowest(0, kMax, kMax - 1, 1);  // exactly [1, UINT64_MAX - 1]
  Highest(0, kMax, kMax - 1, 1);
  Lowest(0, kMax, kMax, std::nullopt);
  Highest(0, kMax, kMax, std::nullopt);
  Lowest(0, 0, 1, std::nullopt);
  Highest(kMax, kMax, 1, std::nullopt);
}

TEST_P(GapTest, FullTreeHasNoGap) {
  Store(0, kMax, L('A'));
  Lowest(0, kMax, 1, std::nullopt);
  Highest(0, kMax, 1, std::nullopt);
  Store(500, 500, nullptr);
  Lowest(0, kMax, 1, 500);
  Highest(0, kMax, 1, 500);
  Lowest(0, kMax, 2, std::nullopt);
}

TEST_P(GapTest, SizeOneAndSizeLargerThanAnyGap) {
  Store(0, 9, L('A'));
  Store(11, 20, L('B'));
  Store(23, 30, L('C'));
  Store(34, kMax, L('D'));
  Lowest(0, kMax, 1, 10);
  Highest(0, kMax, 1, 33);
  Lowest(0, kMax, 2, 21);
  Highest(0, kMax, 2, 32);
  Lowest(0, kMax, 3, 31);
  Lowest(0, kMax, 4, std::nullopt);
  Highest(0, kMax, 4, std::nullopt);
  // A gap clipped by the window.
  Lowest(32, kMax, 2, 32);
  Lowest(33, kMax, 2, std::nullopt);
  Highest(0, 32, 2, 31);
}

TEST_P(GapTest, GapsSpanningNodeBoundaries) {
  // 3000 entries [i*10, i*10+7] leave 2-index gaps; erasing runs of them
  // makes wide gaps that cross leaf (and internal node) boundaries.
  for (uint64_t i = 0; i < 3000; ++i) Store(i * 10, i * 10 + 7, V(i));
  ASSERT_GE(t_.stats().height, 3u);
  Lowest(0, kMax, 3, 29998);  // nothing below the last entry is wider than 2
  Highest(0, 29999, 3, std::nullopt);
  for (uint64_t i = 1000; i < 1040; ++i) {
    RCUVM_ASSERT_OK(t_.erase(i * 10));
    m_.erase(i * 10);
  }
  for (uint64_t i = 2500; i < 2520; ++i) {
    RCUVM_ASSERT_OK(t_.erase(i * 10));
    m_.erase(i * 10);
  }
  RCUVM_ASSERT_OK(t_.validate());
  // Free now: [9998, 10399] (402 indices) and [24998, 25199] (202).
  Lowest(0, kMax, 3, 9998);
  Lowest(0, kMax, 402, 9998);
  Lowest(0, kMax, 403, 29998);
  Lowest(10000, kMax, 202, 10000);
  Lowest(10400, kMax, 202, 24998);
  Highest(0, 29999, 3, 25197);
  Highest(0, 29999, 202, 24998);
  Highest(0, 29999, 203, 10197);
  Highest(0, 10300, 300, 10001);
  Highest(0, 10300, 304, std::nullopt);
}

TEST_P(GapTest, RandomQueriesAgreeWithTheModel) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 3000; ++i) {
    const uint64_t a = rng() % 200000, b = a + rng() % (rng() % 8 == 0 ? 2000 : 40);
    Store(a, b, rng() % 3 == 0 ? nullptr : V(i));
  }
  RCUVM_ASSERT_OK(t_.validate());
  for (int q = 0; q < 2000; ++q) {
    const uint64_t min = rng() % 220000, max = min + rng() % 50000;
    const uint64_t size = 1 + rng() % (rng() % 4 == 0 ? 3000 : 50);
    const bool rev = rng() % 2;
    auto got = rev ? t_.find_gap_rev(min, max, size) : t_.find_gap(min, max, size);
    auto want = m_.gap(min, max, size, rev);
    if (want) {
      ASSERT_TRUE(got.ok()) << min << " " << max << " " << size << " " << rev << ": " << got.status();
      ASSERT_EQ(*got, *want) << min << " " << max << " " << size << " " << rev;
    } else {
      ASSERT_EQ(errno_of(got.status()), EBUSY) << min << " " << max << " " << size << " " << rev;
    }
  }
}

// lib/test_maple_tree.c, check_alloc_range: a process's memory map (page
// numbers) with three holes, searched bottom-up; then allocations that claim
// what they find, so each request sees the previous ones.
constexpr uint64_t kMapRanges[] = {
    // [start, end) in bytes
    0x565234af2000, 0x565234af4000, 0x565234af4000, 0x565234af9000, 0x565234af9000, 0x565234afb000,
    0x565234afc000, 0x565234afd000, 0x565234afd000, 0x565234afe000, 0x565235def000, 0x565235e10000,
    0x7f36d4bfd000, 0x7f36d4ee2000, 0x7f36d4ee2000, 0x7f36d4f04000, 0x7f36d4f04000, 0x7f36d504c000,
    0x7f36d504c000, 0x7f36d5098000, 0x7f36d5098000, 0x7f36d5099000, 0x7f36d5099000, 0x7f36d509d000,
    0x7f36d509d000, 0x7f36d509f000, 0x7f36d509f000, 0x7f36d50a5000, 0x7f36d50b9000, 0x7f36d50db000,
    0x7f36d50db000, 0x7f36d50dc000, 0x7f36d50dc000, 0x7f36d50fa000, 0x7f36d50fa000, 0x7f36d5102000,
    0x7f36d5102000, 0x7f36d5103000, 0x7f36d5103000, 0x7f36d5104000, 0x7f36d5104000, 0x7f36d5105000,
    0x7fff5876b000, 0x7fff5878d000, 0x7fff5878e000, 0x7fff58791000, 0x7fff58791000, 0x7fff58793000,
};
// Holes: start (inclusive), end (exclusive), size, in bytes.
constexpr uint64_t kMapHoles[] = {
    0x565234afb000, 0x565234afc000, 0x1000,          //
    0x565234afe000, 0x565235def000, 0x12F1000,       //
    0x565235e10000, 0x7f36d4bfd000, 0x28E49EDED000,  //
};
constexpr uint64_t kAllocMax = 0x2000000000000;  // the kernel's MTREE_ALLOC_MAX

class KernelAllocTest : public GapTest {
 protected:
  void SetUp() override {
    Store(kAllocMax, kMax, L('Z'));
    for (size_t i = 0; i < std::size(kMapRanges); i += 2) {
      const uint64_t first = kMapRanges[i] >> 12, last = (kMapRanges[i + 1] >> 12) - 1;
      absl::Status s = t_.insert(first, last, V(first));
      ASSERT_TRUE(s.ok()) << s;
      m_.store(first, last, V(first));
      s = t_.validate();
      ASSERT_TRUE(s.ok()) << s;
    }
  }
};

TEST_P(KernelAllocTest, AllocRange) {
  // The holes, each searched from the end of the previous one with the
  // hole's own end as max: the hole's start comes back.
  uint64_t min = 0x565234af2000;
  for (size_t i = 0; i < std::size(kMapHoles); i += 3) {
    Lowest(min >> 12, kMapHoles[i + 1] >> 12, kMapHoles[i + 2] >> 12, kMapHoles[i] >> 12);
    min = kMapHoles[i + 1];
  }
  struct Request {
    uint64_t min, max, size;  // bytes; shifted to pages below
    std::optional<uint64_t> want;
  };
  const Request requests[] = {
      {0x565234af9000, 0x7fff58791000, 0x1000, 0x565234afb000},  // first hole of one page
      {0x0, 0x7fff58791000, 0x1F00, 0x0},                          // 0x1F00 >> 12 = 1 page at 0
      {34148797436ull << 12, 0x7fff587AF000, 0x3000, 34148798629ull << 12},  // ascend
      {34148798623ull << 12, 34148798683ull << 12, 0x15000, std::nullopt},   // too big
      {34148798623ull << 12, 0x7fff587AF000, 0x10000, 34148798632ull << 12},  // fill a gap
      {0, kMax, kMax, std::nullopt},  // walking off the end of the root
      {0, kMax, 4503599618982063ull << 12, std::nullopt},  // larger than any hole
  };
  for (const Request& r : requests) {
    SCOPED_TRACE(absl::StrFormat("request %#x %#x %#x", r.min, r.max, r.size));
    Alloc(r.min >> 12, r.max >> 12, r.size >> 12, false,
          r.want ? std::optional<uint64_t>(*r.want >> 12) : std::nullopt, V(r.min >> 12));
  }
}

TEST_P(KernelAllocTest, AllocRevRange) {
  // The holes, top-down: with max the hole's (exclusive) end, which is the
  // next mapping's first page, the highest fit ends just below it.
  uint64_t min = 0;
  for (size_t i = 0; i < std::size(kMapHoles); i += 3) {
    const uint64_t end = kMapHoles[i + 1] >> 12, size = kMapHoles[i + 2] >> 12;
    Highest(min, end, size, end - size);
    min = end;
  }
  struct Request {
    uint64_t min, end, size;  // bytes; `end` is exclusive (max = (end >> 12) - 1)
    std::optional<uint64_t> want;
  };
  const Request requests[] = {
      {0x565234af9000, 0x7fff58791000, 0x1000, 0x7fff5878dull << 12},  // first rev hole of one page
      {0x0, 0x565234AF1ull << 12, 0x3000, 0x565234AEEull << 12},      // max - 3
      {0x0, kMax, 0x1000, 562949953421311ull << 12},  // just below MTREE_ALLOC_MAX
      {0x0, 0x7F36D510Aull << 12, 0x4000, 0x7F36D5106ull << 12},
      {0x0, 34148798629ull << 12, 19ull << 12, 34148797418ull << 12},  // ascend
      {0x0, kMax, 562915594369134ull << 12, std::nullopt},             // too big
  };
  for (const Request& r : requests) {
    SCOPED_TRACE(absl::StrFormat("request %#x %#x %#x", r.min, r.end, r.size));
    Alloc(r.min >> 12, (r.end >> 12) - 1, r.size >> 12, true,
          r.want ? std::optional<uint64_t>(*r.want >> 12) : std::nullopt, V(r.min >> 12));
  }
  // Free the 4 pages claimed at 0x7F36D5106 (erase removes the whole range),
  // making [0x7F36D5105, 0x7fff5876a] free again.
  auto e = t_.erase(34148798727);
  RCUVM_ASSERT_OK(e);
  EXPECT_EQ(*e, V(0));
  m_.erase(34148798727);
  Alloc(0, 34359052173 - 1, 210253414, true, 34148798725, V(1));
}

// lib/test_maple_tree.c, check_empty_area_window: entries [i*10, i*10+9] for
// i in [1, 20], a hole at [160, 169]; the free ranges are [0, 9], [160, 169]
// and [210, UINT64_MAX].
TEST_P(GapTest, KernelEmptyAreaWindow) {
  for (uint64_t i = 1; i <= 20; ++i) Store(i * 10, i * 10 + 9, V(i));
  Store(160, 169, nullptr);
  // Lower bounds that do not fit, then one that does.
  Highest(5, 90, 10, std::nullopt);
  Highest(6, 90, 5, std::nullopt);
  Highest(5, 90, 5, 5);
  // One gap that does not fit and one that does.
  Highest(5, 217, 9, 161);
  // A gap that fits above the min.
  Highest(100, 218, 3, 216);
  // A size that fits no gap.
  Highest(100, 218, 16, std::nullopt);
  // Fits the gap but not the low end of the window, nor its high end.
  Highest(167, 200, 4, std::nullopt);
  Highest(100, 162, 4, std::nullopt);
  // Forward.
  Lowest(0, 100, 9, 0);
  Lowest(0, 100, 4, 0);
  Lowest(0, 100, 11, std::nullopt);
  Lowest(5, 100, 6, std::nullopt);
  Lowest(0, 8, 10, std::nullopt);
  Lowest(100, 165, 3, 160);  // the kernel only runs this one; [160, 162]
  Lowest(100, 163, 6, std::nullopt);
}

// lib/test_maple_tree.c, check_empty_area_fill: 5000 allocations each of
// 2^12 .. 2^16 indices fill [0, 0x25D78000) exactly; then a deep region is
// overwritten and two holes are punched, and a search starting just past the
// first hole must find the second one.
TEST_P(GapTest, KernelEmptyAreaFill) {
  constexpr uint64_t kFillMax = 0x25D78000;
  // Without gap tracking a search scans its window leaf by leaf (by design),
  // so searching before each of the 25000 allocations would make the test
  // quadratic; there, every 250th allocation searches and the others store
  // where the search would have answered.
  const uint64_t search_every = GetParam().track_gaps ? 1 : 250;
  uint64_t expected_start = 0;
  for (int shift = 12; shift <= 16; ++shift) {
    const uint64_t size = uint64_t(1) << shift;
    for (uint64_t n = 0; n < 5000; ++n) {
      if (n % search_every == 0) {
        auto s = t_.find_gap(0, kFillMax, size);
        ASSERT_TRUE(s.ok()) << s.status() << " at shift " << shift << " n " << n;
        ASSERT_EQ(*s, expected_start);  // nothing was freed: allocations are contiguous
      }
      absl::Status st = t_.store(expected_start, expected_start + size - 1, V(size));
      ASSERT_TRUE(st.ok()) << st;
      m_.store(expected_start, expected_start + size - 1, V(size));
      expected_start += size;
    }
  }
  ASSERT_EQ(expected_start, kFillMax);
  RCUVM_ASSERT_OK(t_.validate());
  // No space left: only the single index kFillMax remains inside the window.
  Lowest(0, kFillMax, 0x1000, std::nullopt);
  Lowest(0, kFillMax, 1, kFillMax);
  // Overwrite [629440511, 629440804] with 6-index ranges.
  for (uint64_t i = 629440511; i <= 629440800; i += 6) Store(i, i + 5, V(i));
  // Erase the 64K entries holding these indices: [631603200, 631668735] and
  // (what is left of) [629440512, 629506047], now [629440805, 629506047].
  auto e = t_.erase(631668735);
  RCUVM_ASSERT_OK(e);
  m_.erase(631668735);
  e = t_.erase(629506047);
  RCUVM_ASSERT_OK(e);
  m_.erase(629506047);
  RCUVM_ASSERT_OK(t_.validate());
  Lowest(629506048, 690000000, 0x5000, 631603200);
  Lowest(0, 690000000, 0x5000, 629440805);
  Highest(0, kFillMax - 1, 0x5000, 631668735 - 0x5000 + 1);
}

// lib/test_maple_tree.c, check_gap_combining: gaps made by erasing
// neighbouring single indices of check_seq(100) / check_seq(2000) must be
// found as one gap, whichever nodes they straddle.
TEST_P(GapTest, KernelGapCombining) {
  for (uint64_t i = 0; i <= 100; ++i) Store(i, i, V(i));
  RCUVM_ASSERT_OK(t_.erase(76));
  RCUVM_ASSERT_OK(t_.erase(75));
  m_.erase(76);
  m_.erase(75);
  EXPECT_EQ(t_.find(74), (Entry{74, 74, V(74)}));
  EXPECT_EQ(t_.find(75), (Entry{77, 77, V(77)}));
  Highest(50, 100, 2, 75);

  for (uint64_t i : {44, 45, 46}) {
    RCUVM_ASSERT_OK(t_.erase(i));
    m_.erase(i);
  }
  Highest(20, 50, 3, 44);

  Store(80, 80, nullptr);
  EXPECT_EQ(t_.load(81), V(81));
  Store(81, 81, nullptr);
  Highest(76, 81, 2, 80);

  Store(79, 81, nullptr);
  RCUVM_ASSERT_OK(t_.erase(82));
  m_.erase(82);
  Highest(76, 85, 4, 79);
  RCUVM_ASSERT_OK(t_.validate());
  t_.destroy();
  m_ = Model();

  // Multi-level tree gaps.
  for (uint64_t i = 0; i <= 2000; ++i) Store(i, i, V(i));
  RCUVM_ASSERT_OK(t_.erase(1152));
  RCUVM_ASSERT_OK(t_.erase(1151));
  m_.erase(1152);
  m_.erase(1151);
  Highest(1100, 1200, 2, 1151);
  Lowest(0, kMax, 2, 1151);
  RCUVM_ASSERT_OK(t_.validate());
}

TEST_P(GapTest, AllocateTopDownUntilFull) {
  // get_unmapped_area in miniature: carve a window top-down with the size of
  // each request varying, and check every answer against the model.
  constexpr uint64_t kLo = 0x1000, kHi = 0x1000 + 50000 - 1;
  std::mt19937_64 rng(3);
  uint64_t used = 0;
  for (int n = 0;; ++n) {
    const uint64_t size = 1 + rng() % 64;
    auto want = m_.gap(kLo, kHi, size, true);
    auto got = t_.find_gap_rev(kLo, kHi, size);
    if (!want) {
      EXPECT_EQ(errno_of(got.status()), EBUSY);
      break;
    }
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, *want);
    ASSERT_LE(*got + size - 1, kHi);
    RCUVM_ASSERT_OK(t_.insert(*got, *got + size - 1, V(n)));
    m_.store(*got, *got + size - 1, V(n));
    used += size;
    // Free a random earlier allocation now and then, leaving holes.
    if (n % 7 == 3) {
      const uint64_t victim = kLo + rng() % (kHi - kLo);
      if (void* v = m_.erase(victim)) {
        auto e = t_.erase(victim);
        RCUVM_ASSERT_OK(e);
        EXPECT_EQ(*e, v);
      }
    }
  }
  EXPECT_GT(used, 40000u);
  RCUVM_EXPECT_OK(t_.validate());
}

INSTANTIATE_TEST_SUITE_P(AllModes, GapTest, ::testing::ValuesIn(AllModes()), ModeName);
INSTANTIATE_TEST_SUITE_P(AllModes, KernelAllocTest, ::testing::ValuesIn(AllModes()), ModeName);

}  // namespace
}  // namespace rcuvm::unit
