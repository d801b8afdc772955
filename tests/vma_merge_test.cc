// Merge and split rules, drawn one character per page (vma_test_util.h).
#include <gtest/gtest.h>

#include "rcuvm/address_space.h"
#include "vma_test_util.h"

namespace rcuvm::testing {
namespace {

// --- New ranges (mmap): expand prev, next, both, or neither.

TEST(MergeNewRange, JoinsPrev) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 2, 2, kRw);
  EXPECT_EQ(draw(as), "AAAA    ");
}

TEST(MergeNewRange, JoinsNext) {
  AddressSpace as;
  map_anon(as, 2, 2, kRw);
  map_anon(as, 0, 2, kRw);
  EXPECT_EQ(draw(as), "AAAA    ");
}

TEST(MergeNewRange, JoinsBoth) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 4, 2, kRw);
  EXPECT_EQ(draw(as), "AA  BB  ");
  map_anon(as, 2, 2, kRw);
  EXPECT_EQ(draw(as), "AAAAAA  ");
  EXPECT_EQ(as.map_count(), 1u);
}

TEST(MergeNewRange, JoinsNeitherWhenFlagsDiffer) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 4, 2, kRw);
  map_anon(as, 2, 2, kProtRead);
  EXPECT_EQ(draw(as), "AABBCC  ");
}

TEST(MergeNewRange, FileNeedsContiguousOffsets) {
  AddressSpace as;
  auto f = File::make("f", 64 * P, {});
  ASSERT_TRUE(as.mmap(pg(0), 2 * P, kProtRead, kMapPrivate | kMapFixed, f, 0).ok());
  ASSERT_TRUE(as.mmap(pg(2), 2 * P, kProtRead, kMapPrivate | kMapFixed, f, 2 * P).ok());
  EXPECT_EQ(draw(as), "AAAA    ");
  ASSERT_TRUE(as.mmap(pg(4), 2 * P, kProtRead, kMapPrivate | kMapFixed, f, 9 * P).ok());
  EXPECT_EQ(draw(as), "AAAABB  ");
}

TEST(MergeNewRange, SharedAnonymousNeverMerges) {
  AddressSpace as;
  const int shared = kMapShared | kMapAnonymous | kMapFixed;
  ASSERT_TRUE(as.mmap(pg(0), 2 * P, kRw, shared, nullptr, 0).ok());
  ASSERT_TRUE(as.mmap(pg(2), 2 * P, kRw, shared, nullptr, 0).ok());
  EXPECT_EQ(draw(as), "AABB    ");
}

TEST(MergeNewRange, MovedAnonymousTakesOffsetOfNewPlace) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 6, 2, kRw);
  auto r = as.mremap(pg(6), 2 * P, 2 * P, kMremapMayMove | kMremapFixed, pg(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(draw(as), "AAAA    ");
}

// --- Existing ranges (mprotect/madvise): left, right, both, partial, split.

TEST(MergeExistingRange, Left) {
  AddressSpace as;
  map_anon(as, 0, 2, kProtRead);
  map_anon(as, 2, 4, kRw);
  EXPECT_EQ(draw(as), "AABBBB  ");
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kProtRead).ok());
  EXPECT_EQ(draw(as), "AAAABB  ");
}

TEST(MergeExistingRange, Right) {
  AddressSpace as;
  map_anon(as, 0, 4, kRw);
  map_anon(as, 4, 2, kProtRead);
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kProtRead).ok());
  EXPECT_EQ(draw(as), "AABBBB  ");
}

TEST(MergeExistingRange, Both) {
  AddressSpace as;
  map_anon(as, 0, 2, kProtRead);
  map_anon(as, 2, 2, kRw);
  map_anon(as, 4, 2, kProtRead);
  EXPECT_EQ(draw(as), "AABBCC  ");
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kProtRead).ok());
  EXPECT_EQ(draw(as), "AAAAAA  ");
  EXPECT_TRUE(as.validate().ok());
}

TEST(MergeExistingRange, WholeVmaJoinsLeftOnly) {
  AddressSpace as;
  map_anon(as, 0, 2, kProtRead);
  map_anon(as, 2, 2, kRw);
  map_anon(as, 4, 2, kProtExec);
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kProtRead).ok());
  EXPECT_EQ(draw(as), "AAAABB  ");
}

TEST(MergeExistingRange, MiddleSplitsInThree) {
  AddressSpace as;
  map_anon(as, 0, 6, kRw);
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kProtRead).ok());
  EXPECT_EQ(draw(as), "AABBCC  ");
  EXPECT_EQ(as.map_count(), 3u);
  // Restoring the protection merges all three again.
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kRw).ok());
  EXPECT_EQ(draw(as), "AAAAAA  ");
  EXPECT_TRUE(as.validate().ok());
}

TEST(MergeExistingRange, MadviseSplitsAndMerges) {
  AddressSpace as;
  map_anon(as, 0, 6, kRw);
  ASSERT_TRUE(as.madvise(pg(0), 2 * P, kMadvDontFork).ok());
  EXPECT_EQ(draw(as), "AABBBB  ");
  ASSERT_TRUE(as.madvise(pg(0), 2 * P, kMadvDoFork).ok());
  EXPECT_EQ(draw(as), "AAAAAA  ");
}

// A VMA whose close hook would have to run is never deleted by a merge.
struct Closing : VmaOps {
  bool has_close() const override { return true; }
};

TEST(MergeExistingRange, CloseHookKeepsVma) {
  static const Closing closing;
  AddressSpace as;
  VmaState a, b, c;
  const VmFlags rw = vmf::kRead | vmf::kWrite | vmf::kMayRead | vmf::kMayWrite | vmf::kMayExec;
  a.start = pg(0), a.end = pg(2), a.pgoff = a.start >> kPageShift, a.flags = rw;
  b.start = pg(2), b.end = pg(4), b.pgoff = b.start >> kPageShift, b.flags = vmf::kRead | (rw & ~vmf::kWrite);
  b.ops = &closing;
  c = a;
  c.start = pg(4), c.end = pg(6), c.pgoff = c.start >> kPageShift;
  ASSERT_TRUE(as.install(a).ok());
  ASSERT_TRUE(as.install(b).ok());
  ASSERT_TRUE(as.install(c).ok());
  ASSERT_TRUE(as.mprotect(pg(2), 2 * P, kRw).ok());
  EXPECT_EQ(draw(as), "AABBCC  ");  // ops differ, and b may not be deleted
  EXPECT_TRUE(as.validate().ok());
}

}  // namespace
}  // namespace rcuvm::testing
