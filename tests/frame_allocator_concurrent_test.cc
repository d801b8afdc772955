// FrameAllocator: reference counts, reuse of freed frame numbers through the
// lock-free free stack, segment growth, fault injection, and exact counts when
// many threads allocate, share and free frames at once (a concurrency test:
// CI also runs it under TSAN).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <set>
#include <thread>
#include <vector>

#include "rcuvm/fault_injection.h"
#include "rcuvm/page_table.h"
#include "rcuvm/status.h"

namespace rcuvm {
namespace {

FrameId must_alloc(FrameAllocator& fa) {
  auto f = fa.alloc();
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : 0;
}

TEST(FrameAllocator, CountsReferencesAndFreesWithTheLast) {
  FrameAllocator fa;
  const FrameId f = must_alloc(fa);
  EXPECT_NE(f, 0u);
  EXPECT_NE(f, FrameAllocator::kZeroFrame);
  EXPECT_EQ(fa.refcount(f), 1u);
  EXPECT_EQ(fa.in_use(), 1u);
  fa.get(f);
  EXPECT_EQ(fa.refcount(f), 2u);
  fa.put(f);
  EXPECT_EQ(fa.refcount(f), 1u);
  EXPECT_EQ(fa.in_use(), 1u);
  fa.put(f);
  EXPECT_EQ(fa.refcount(f), 0u);
  EXPECT_EQ(fa.in_use(), 0u);
}

TEST(FrameAllocator, ZeroFrameIsNeverCounted) {
  FrameAllocator fa;
  fa.get(FrameAllocator::kZeroFrame);
  fa.put(FrameAllocator::kZeroFrame);
  fa.put(FrameAllocator::kZeroFrame);
  EXPECT_EQ(fa.refcount(FrameAllocator::kZeroFrame), 0u);
  EXPECT_EQ(fa.in_use(), 0u);
}

TEST(FrameAllocator, FreedNumbersAreReusedLastInFirstOut) {
  FrameAllocator fa;
  const FrameId a = must_alloc(fa), b = must_alloc(fa), c = must_alloc(fa);
  fa.put(b);
  fa.put(a);
  EXPECT_EQ(must_alloc(fa), a);
  EXPECT_EQ(must_alloc(fa), b);
  const FrameId d = must_alloc(fa);
  EXPECT_NE(d, a);
  EXPECT_NE(d, b);
  EXPECT_NE(d, c);
  EXPECT_EQ(fa.in_use(), 4u);
}

TEST(FrameAllocator, GrowsAcrossSegmentsWithDistinctNumbers) {
  FrameAllocator fa;
  std::set<FrameId> seen;
  std::vector<FrameId> all;
  for (int i = 0; i < 40000; ++i) {  // segments of 4096, 8192, 16384, 32768 frames
    const FrameId f = must_alloc(fa);
    EXPECT_TRUE(seen.insert(f).second) << "frame " << f << " handed out twice";
    all.push_back(f);
  }
  for (FrameId f : all) EXPECT_EQ(fa.refcount(f), 1u);
  EXPECT_EQ(fa.refcount(all.back() + 1000000), 0u);  // beyond every segment
  for (FrameId f : all) fa.put(f);
  EXPECT_EQ(fa.in_use(), 0u);
}

TEST(FrameAllocator, InjectedFailureAllocatesNothing) {
  FrameAllocator fa;
  FailNthAllocation fail(1);
  auto f = fa.alloc();
  EXPECT_EQ(errno_of(f.status()), ENOMEM);
  EXPECT_EQ(fa.in_use(), 0u);
}

// Threads allocate frames, share some with a neighbour (get), and drop them in
// random order. At the end every frame is free, no number was live twice, and
// the count is exact.
TEST(FrameAllocator, ConcurrentAllocShareAndFreeKeepExactCounts) {
  FrameAllocator fa;
  constexpr int kThreads = 4, kRounds = 20000;
  std::atomic<FrameId> handoff[kThreads];
  for (auto& h : handoff) h.store(0);
  std::atomic<bool> duplicate{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<FrameId> mine;
      uint64_t x = 0x9e3779b97f4a7c15ull * uint64_t(t + 1);
      for (int i = 0; i < kRounds; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (mine.size() < 64 && (x & 3) != 0) {
          auto f = fa.alloc();
          if (!f.ok()) continue;
          // A fresh frame has exactly our reference: nobody else holds it.
          if (fa.refcount(*f) != 1) duplicate = true;
          mine.push_back(*f);
          if ((x & 12) == 0) {  // share with the next thread
            fa.get(*f);
            FrameId old = handoff[(t + 1) % kThreads].exchange(*f);
            if (old) fa.put(old);
          }
        } else if (!mine.empty()) {
          const size_t k = x % mine.size();
          fa.put(mine[k]);
          mine[k] = mine.back();
          mine.pop_back();
        }
        if ((x & 0xf0) == 0) {
          if (FrameId got = handoff[t].exchange(0)) fa.put(got);
        }
      }
      for (FrameId f : mine) fa.put(f);
    });
  }
  for (auto& th : threads) th.join();
  for (auto& h : handoff)
    if (FrameId f = h.exchange(0)) fa.put(f);
  EXPECT_FALSE(duplicate.load());
  EXPECT_EQ(fa.in_use(), 0u);
}

}  // namespace
}  // namespace rcuvm
