// Lockless readers: find_vma_rcu (sequence count), lock_vma_rcu (per-VMA
// locks) and fault() from many threads; the name contains "rcu", so CI also
// runs this file under ThreadSanitizer.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "rcuvm/address_space.h"
#include "rcuvm/rcu.h"
#include "vma_test_util.h"

namespace rcuvm::testing {
namespace {

constexpr VmaLockMode kModes[] = {VmaLockMode::kSeqCount, VmaLockMode::kPerVma};

AddressSpaceOptions with(VmaLockMode m) {
  AddressSpaceOptions o;
  o.fault_lock = m;
  return o;
}

FaultResult fault(AddressSpace& as, uint64_t addr, Access a) {
  auto r = as.fault(addr, a);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : FaultResult::kSigSegv;
}

TEST(VmaRcu, FindVmaRcuReturnsCountedHandle) {
  AddressSpace as;
  map_anon(as, 2, 3, kRw);
  VmaRef r = as.find_vma_rcu(pg(0));  // find_vma: the first VMA ending above
  ASSERT_TRUE(r);
  EXPECT_EQ(r->start, pg(2));
  EXPECT_EQ(r->end, pg(5));
  EXPECT_FALSE(r.read_locked());
  EXPECT_FALSE(as.find_vma_rcu(pg(5)));
  // The VMA leaves the tree; the handle keeps it alive (ASAN would see a use
  // after free below otherwise).
  ASSERT_TRUE(as.munmap(pg(2), 3 * P).ok());
  rcu::synchronize();
  rcu::drain();
  EXPECT_EQ(r.get()->start, pg(2));
  EXPECT_TRUE(r.get()->detached.load());
  VmaRef moved = std::move(r);
  EXPECT_FALSE(r);
  moved.reset();
  rcu::drain();
}

// A close hook that holds its writer (count odd, mmap mutex held) until the
// test releases it.
struct BlockingClose : VmaOps {
  std::atomic<bool>* entered;
  std::atomic<bool>* release;
  void close(const VmaState&) const override {
    entered->store(true);
    while (!release->load()) std::this_thread::yield();
  }
  bool has_close() const override { return true; }
};

TEST(VmaRcu, FindVmaRcuTakesTheMutexWhenAWriterSpoilsEveryAttempt) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  std::atomic<bool> entered{false}, release{false};
  BlockingClose ops;
  ops.entered = &entered;
  ops.release = &release;
  VmaState st;
  st.start = pg(10);
  st.end = pg(11);
  st.pgoff = pg(10) >> kPageShift;
  st.flags = vmf::kRead | vmf::kMayRead | vmf::kMayWrite;
  st.ops = &ops;
  ASSERT_TRUE(as.install(st).ok());
  std::thread writer([&] { EXPECT_TRUE(as.munmap(pg(10), P).ok()); });
  while (!entered.load()) std::this_thread::yield();
  std::thread reader([&] {
    VmaRef v = as.find_vma_rcu(pg(0));
    ASSERT_TRUE(v);
    EXPECT_EQ(v->start, pg(0));
  });
  // Every attempt finds the count odd; then the reader waits on the mutex.
  while (as.fault_stats().lookup_retries < 8) std::this_thread::yield();
  release = true;
  reader.join();
  writer.join();
  EXPECT_EQ(as.fault_stats().lookup_locked, 1u);
  EXPECT_EQ(as.fault_stats().lookup_retries, 8u);
}

TEST(VmaRcu, LockVmaRcuRefusesMarkedAndHoles) {
  AddressSpace as(with(VmaLockMode::kPerVma));
  map_anon(as, 0, 4, kRw);
  EXPECT_FALSE(as.lock_vma_rcu(pg(5)));
  {
    VmaRef r = as.lock_vma_rcu(pg(1));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r.read_locked());
    EXPECT_EQ(r.get()->end, pg(4));  // fields readable under the read lock
  }
  // A writer waits for the read lock, then the change is visible.
  VmaRef held = as.lock_vma_rcu(pg(1));
  ASSERT_TRUE(held);
  std::atomic<bool> done{false};
  std::thread w([&] {
    EXPECT_TRUE(as.mprotect(pg(0), 4 * P, kProtRead).ok());
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());
  held.reset();
  w.join();
  VmaRef r = as.lock_vma_rcu(pg(1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->flags & vmf::kAccessFlags, vmf::kRead);
}

class VmaRcuMode : public ::testing::TestWithParam<VmaLockMode> {};

TEST_P(VmaRcuMode, FaultOutcomesMatchTouch) {
  // Same calls on two spaces, one through fault(), one through touch().
  AddressSpace a(with(GetParam())), b(with(GetParam()));
  auto file = File::make("f", 2 * P, {});
  for (AddressSpace* as : {&a, &b}) {
    map_anon(*as, 0, 4, kRw);
    map_anon(*as, 5, 2, kProtRead);
    ASSERT_TRUE(as->mmap(pg(8), 4 * P, kRw, kMapPrivate | kMapFixed, file, 0).ok());
    ASSERT_TRUE(as->mmap(pg(13), 2 * P, kRw, kMapShared | kMapFixed, file, 0).ok());
  }
  struct Step {
    uint64_t page;
    bool write;
  };
  const Step steps[] = {{0, false}, {0, true}, {1, true},  {1, false}, {4, false}, {5, false},
                        {5, true},  {8, false}, {8, true}, {9, true},  {10, false}, {11, true},
                        {13, true}, {14, false}, {15, true}, {2, false}, {2, true},  {0, true}};
  for (const Step& s : steps) {
    auto want = b.touch(pg(s.page), s.write);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(fault(a, pg(s.page) + 7, s.write ? Access::kWrite : Access::kRead), *want)
        << "page " << s.page << (s.write ? " write" : " read");
    EXPECT_EQ(a.page_table().get(pg(s.page)) & 0x1f, b.page_table().get(pg(s.page)) & 0x1f)
        << "page " << s.page;
  }
  EXPECT_TRUE(a.validate().ok()) << a.validate();
  EXPECT_EQ(a.anon_pages(0, ~uint64_t{0}), b.anon_pages(0, ~uint64_t{0}));
  const FaultStats st = a.fault_stats();
  EXPECT_GT(st.speculative, 0u);
  EXPECT_GT(st.fb_anon_vma, 0u);  // the first write of an anonymous VMA
  EXPECT_EQ(st.speculative + st.locked, std::size(steps));
}

TEST_P(VmaRcuMode, CopyOnWriteAfterFork) {
  AddressSpace as(with(GetParam()));
  map_anon(as, 0, 2, kRw);
  ASSERT_EQ(fault(as, pg(0), Access::kWrite), FaultResult::kOk);
  auto child = as.fork();
  ASSERT_TRUE(child.ok());
  const Pte before = as.page_table().get(pg(0));
  EXPECT_FALSE(before & pte::kWrite);
  ASSERT_EQ(fault(as, pg(0), Access::kWrite), FaultResult::kOk);  // copies
  const Pte after = as.page_table().get(pg(0));
  EXPECT_TRUE(after & pte::kWrite);
  EXPECT_NE(pte::frame(after), pte::frame(before));
  EXPECT_EQ(as.page_table().frames().refcount(pte::frame(before)), 1u);
  child->reset();
  EXPECT_EQ(as.page_table().frames().in_use(), 1u);
}

TEST_P(VmaRcuMode, MprotectWriteProtectsEntries) {
  AddressSpace as(with(GetParam()));
  map_anon(as, 0, 2, kRw);
  ASSERT_EQ(fault(as, pg(0), Access::kWrite), FaultResult::kOk);
  ASSERT_TRUE(as.mprotect(pg(0), P, kProtRead).ok());
  EXPECT_FALSE(as.page_table().get(pg(0)) & pte::kWrite);
  EXPECT_EQ(fault(as, pg(0), Access::kWrite), FaultResult::kSigSegv);
  ASSERT_TRUE(as.mprotect(pg(0), P, kRw).ok());
  EXPECT_EQ(fault(as, pg(0), Access::kWrite), FaultResult::kOk);  // reuses the page
  EXPECT_EQ(as.anon_pages(pg(0), pg(2)), 1u);
  EXPECT_TRUE(as.validate().ok());
}

// Many threads fault the same pages of one table at once: every fault
// succeeds, each page ends with one frame, and none leaks.
TEST_P(VmaRcuMode, ConcurrentFaultsIntoOneTable) {
  auto frames = std::make_shared<FrameAllocator>();
  {
    AddressSpace as(with(GetParam()), frames);
    map_anon(as, 0, 64, kRw);
    ASSERT_EQ(as.touch(pg(63), true).value(), FaultResult::kOk);  // anon_vma
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        for (int i = 0; i < 64; ++i) {
          const uint64_t p = uint64_t((i * 7 + t) % 63);
          auto r = as.fault(pg(p), (i + t) % 3 ? Access::kWrite : Access::kRead);
          EXPECT_TRUE(r.ok() && *r == FaultResult::kOk);
        }
      });
    for (auto& t : ts) t.join();
    EXPECT_TRUE(as.validate().ok()) << as.validate();
    uint64_t mapped = 0;
    as.page_table().for_each(0, ~uint64_t{0}, [&](uint64_t, Pte e) {
      if (e & pte::kAnon) {
        ++mapped;
        EXPECT_EQ(frames->refcount(pte::frame(e)), 1u);
      }
    });
    EXPECT_EQ(frames->in_use(), mapped);
  }
  rcu::drain();
  EXPECT_EQ(frames->in_use(), 0u);
}

// Lookups and faults race a writer that maps and unmaps a neighbour and
// changes the faulting VMA's protection.
TEST_P(VmaRcuMode, ReadersRaceWriter) {
  AddressSpace as(with(GetParam()));
  map_anon(as, 0, 8, kRw);
  ASSERT_EQ(as.touch(pg(0), true).value(), FaultResult::kOk);
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      uint64_t i = 0;
      while (!stop.load()) {
        const uint64_t p = (i++ * 5 + uint64_t(t)) % 8;
        auto r = as.fault(pg(p), i % 2 ? Access::kWrite : Access::kRead);
        EXPECT_TRUE(r.ok());
        if (r.ok()) {
          EXPECT_TRUE(*r == FaultResult::kOk || *r == FaultResult::kSigSegv);
        }
        if (VmaRef v = as.find_vma_rcu(pg(p))) {
          EXPECT_LE(v->start, pg(p));
        }
        if (VmaRef v = as.lock_vma_rcu(pg(p))) {
          EXPECT_LT(pg(p), v.get()->end);
        }
        EXPECT_EQ(fault(as, pg(20), Access::kRead), FaultResult::kSigSegv);
      }
    });
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(as.mmap(pg(10), 4 * P, kRw, kAnon, nullptr, 0).ok());
    ASSERT_TRUE(as.mprotect(pg(2), 2 * P, i % 2 ? kProtRead : kRw).ok());
    ASSERT_TRUE(as.munmap(pg(10), 4 * P).ok());
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

INSTANTIATE_TEST_SUITE_P(Modes, VmaRcuMode, ::testing::ValuesIn(kModes),
                         [](const auto& info) {
                           return info.param == VmaLockMode::kPerVma ? std::string("PerVma")
                                                                     : std::string("SeqCount");
                         });

}  // namespace
}  // namespace rcuvm::testing
