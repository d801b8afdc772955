// Faults, the page table, mlock, MAP_POPULATE, MADV_DONTNEED and fork with
// copy-on-write; fault injection for each (an allocation failure of ours
// changes nothing: map, page table, frames and accounting).
#include <gtest/gtest.h>

#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "rcuvm/address_space.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/page_table.h"
#include "rcuvm/status.h"
#include "vma_test_util.h"

namespace rcuvm::testing {
namespace {

FaultResult touch(AddressSpace& as, uint64_t addr, bool write) {
  auto r = as.touch(addr, write);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : FaultResult::kSigSegv;
}

uint64_t anon(const AddressSpace& as, uint64_t first, uint64_t count) {
  return as.anon_pages(pg(first), pg(first + count));
}

TEST(PageTable, TablesAllocatedAndFreedByFloorAndCeiling) {
  auto frames = std::make_shared<FrameAllocator>();
  PageTable pt(frames);
  EXPECT_EQ(pt.tables(), 1u);
  auto f = frames->alloc();
  ASSERT_TRUE(f.ok());
  const uint64_t a = 0x40000000;  // 1 GiB: its own PUD entry
  const uint64_t b = a + 4 * kPageSize;
  ASSERT_TRUE(pt.set(b, pte::make(*f, pte::kPresent | pte::kAnon), nullptr).ok());
  EXPECT_EQ(pt.tables(), 4u);
  EXPECT_EQ(pt.anon_pages(a, a + (1 << 21)), 1u);
  pt.zap(b, b + kPageSize, nullptr);
  EXPECT_EQ(frames->in_use(), 0u);
  // A neighbour ending inside the same PMD (the floor) keeps the tables.
  pt.free_tables(b, b + kPageSize, a + kPageSize, 0);
  EXPECT_EQ(pt.tables(), 4u);
  // So does a neighbour starting inside it (the ceiling).
  pt.free_tables(b, b + kPageSize, 0, b + 2 * kPageSize);
  EXPECT_EQ(pt.tables(), 4u);
  // A neighbour in the previous PMD but the same PUD keeps the PMD table.
  pt.free_tables(b, b + kPageSize, a - kPageSize, 0);
  EXPECT_EQ(pt.tables(), 2u);
  pt.free_tables(a, a + kPageSize, 0, 0);
  EXPECT_EQ(pt.tables(), 1u);
}

TEST(PageTable, RollbackRestoresEntriesAndTables) {
  auto frames = std::make_shared<FrameAllocator>();
  PageTable pt(frames);
  ASSERT_TRUE(pt.set(0x1000, pte::make(0, pte::kPresent | pte::kFile), nullptr).ok());
  const uint64_t before = pt.tables();
  PtLog log;
  ASSERT_TRUE(pt.set(0x7f0000000000, pte::make(0, pte::kPresent | pte::kFile), &log).ok());
  pt.zap(0, 0x2000, &log);
  EXPECT_EQ(pt.get(0x1000), 0u);
  pt.rollback(log);
  EXPECT_EQ(pt.get(0x7f0000000000), 0u);
  EXPECT_NE(pt.get(0x1000), 0u);
  EXPECT_EQ(pt.tables(), before);
}

TEST(Fault, ZeroPageOnReadAnonPageAndAnonVmaOnWrite) {
  AddressSpace as;
  map_anon(as, 0, 4, kRw);
  EXPECT_EQ(touch(as, pg(1) + 5, false), FaultResult::kOk);
  EXPECT_EQ(anon(as, 0, 4), 0u);
  EXPECT_EQ(as.vma_lookup(pg(0))->anon_vma, nullptr);
  EXPECT_EQ(touch(as, pg(1) + 5, true), FaultResult::kOk);  // breaks the zero page
  EXPECT_EQ(anon(as, 0, 4), 1u);
  EXPECT_NE(as.vma_lookup(pg(0))->anon_vma, nullptr);
  EXPECT_EQ(touch(as, pg(1), true), FaultResult::kOk);  // already there
  EXPECT_EQ(anon(as, 0, 4), 1u);
  EXPECT_EQ(as.page_table().frames().in_use(), 1u);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Fault, AccessErrorsGiveSigsegv) {
  AddressSpace as;
  map_anon(as, 0, 1, kProtNone);
  map_anon(as, 2, 1, kProtRead);
  EXPECT_EQ(touch(as, pg(0), false), FaultResult::kSigSegv);
  EXPECT_EQ(touch(as, pg(1), false), FaultResult::kSigSegv);  // hole
  EXPECT_EQ(touch(as, pg(2), true), FaultResult::kSigSegv);
  EXPECT_EQ(touch(as, pg(2), false), FaultResult::kOk);
}

TEST(Fault, BeyondEndOfFileIsSigbusAndPrivateWriteKeepsAnonVma) {
  AddressSpace as;
  auto f = File::make("f", 10000, {});  // 3 pages, the last partial
  ASSERT_TRUE(as.mmap(pg(0), 5 * P, kRw, kMapPrivate | kMapFixed, f, 0).ok());
  EXPECT_EQ(touch(as, pg(2), false), FaultResult::kOk);
  EXPECT_EQ(touch(as, pg(3), false), FaultResult::kSigBus);
  EXPECT_EQ(as.vma_lookup(pg(0))->anon_vma, nullptr);
  EXPECT_EQ(touch(as, pg(3), true), FaultResult::kSigBus);
  EXPECT_NE(as.vma_lookup(pg(0))->anon_vma, nullptr);  // do_cow_fault prepared it
  EXPECT_EQ(touch(as, pg(1), true), FaultResult::kOk);
  EXPECT_EQ(anon(as, 0, 5), 1u);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Fault, AnonVmaReusedFromCompatibleNeighbour) {
  AddressSpace as;
  map_anon(as, 0, 1, kRw);
  map_anon(as, 1, 1, kRw | kProtExec);  // differs in an access bit only
  EXPECT_EQ(draw(as), "AB      ");
  EXPECT_EQ(touch(as, pg(0), true), FaultResult::kOk);
  EXPECT_EQ(touch(as, pg(1), true), FaultResult::kOk);  // shares pg(0)'s anon_vma
  EXPECT_EQ(as.vma_lookup(pg(0))->anon_vma, as.vma_lookup(pg(1))->anon_vma);
  ASSERT_TRUE(as.mprotect(pg(1), P, kRw).ok());
  EXPECT_EQ(draw(as), "AA      ");
  // Flags that differ beyond the access bits: separate anon_vmas, and the
  // two halves stay look-alike neighbours once the flags agree again.
  map_anon(as, 4, 2, kRw);
  ASSERT_TRUE(as.madvise(pg(5), P, kMadvRandom).ok());
  EXPECT_EQ(touch(as, pg(4), true), FaultResult::kOk);
  EXPECT_EQ(touch(as, pg(5), true), FaultResult::kOk);
  EXPECT_NE(as.vma_lookup(pg(4))->anon_vma, as.vma_lookup(pg(5))->anon_vma);
  ASSERT_TRUE(as.madvise(pg(5), P, kMadvNormal).ok());
  EXPECT_EQ(draw(as), "AA  BC  ");
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Fault, GrowsdownExpandsKeepingGuardGap) {
  AddressSpaceOptions o;
  o.stack_guard_gap = 4 * P;
  AddressSpace as(o);
  ASSERT_TRUE(as.mmap(pg(20), 2 * P, kRw, kAnon | kMapGrowsDown, nullptr, 0).ok());
  map_anon(as, 10, 1, kRw);
  EXPECT_EQ(touch(as, pg(17) + 3, true), FaultResult::kOk);
  EXPECT_EQ(as.vma_lookup(pg(17))->start, pg(17));
  EXPECT_EQ(as.total_vm(), 6u);
  // pg(14) is 3 pages above the accessible VMA ending at pg(11): refused.
  EXPECT_EQ(touch(as, pg(14), true), FaultResult::kSigSegv);
  EXPECT_EQ(touch(as, pg(15), false), FaultResult::kOk);
  ASSERT_TRUE(as.mprotect(pg(10), P, kProtNone).ok());  // inaccessible: no gap needed
  EXPECT_EQ(touch(as, pg(11), true), FaultResult::kOk);
  EXPECT_EQ(draw(as, 24), std::string(10, ' ') + "AB" + std::string(10, 'B') + "  ");
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Mlock, LocksPopulatesAndCounts) {
  AddressSpace as;
  map_anon(as, 0, 8, kRw);
  ASSERT_TRUE(as.mlock(pg(2) + 100, 2 * P).ok());  // rounds out to pages 2..4
  EXPECT_EQ(draw(as), "AABBBCCC");
  EXPECT_EQ(as.locked_vm(), 3u);
  EXPECT_EQ(anon(as, 0, 8), 3u);
  EXPECT_EQ(errno_of(as.madvise(pg(2), P, kMadvDontNeed)), EINVAL);
  ASSERT_TRUE(as.munlock(pg(0), 8 * P).ok());
  EXPECT_EQ(as.locked_vm(), 0u);
  EXPECT_EQ(draw(as), "AAAAAAAA");
  EXPECT_EQ(errno_of(as.mlock(pg(6), 4 * P)), ENOMEM);  // hole after the VMA
  EXPECT_EQ(as.locked_vm(), 2u);                          // what came before stays
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Populate, MapPopulateFaultsWritablePrivateMemory) {
  AddressSpace as;
  ASSERT_TRUE(as.mmap(pg(0), 4 * P, kRw, kAnon | kMapPopulate, nullptr, 0).ok());
  EXPECT_EQ(anon(as, 0, 4), 4u);
  ASSERT_TRUE(as.mmap(pg(4), 4 * P, kProtRead, kAnon | kMapPopulate, nullptr, 0).ok());
  EXPECT_EQ(anon(as, 4, 4), 0u);  // zero pages
  EXPECT_TRUE(as.madvise(pg(1), 2 * P, kMadvDontNeed).ok());
  EXPECT_EQ(anon(as, 0, 4), 2u);
  EXPECT_EQ(as.page_table().frames().in_use(), 2u);
  ASSERT_TRUE(as.munmap(pg(0), 8 * P).ok());
  EXPECT_EQ(as.page_table().frames().in_use(), 0u);
  EXPECT_EQ(as.page_table().tables(), 1u);  // no neighbours: every table goes
}

TEST(Mremap, PagesMoveWithTheMapping) {
  AddressSpace as;
  map_anon(as, 0, 4, kRw);
  EXPECT_EQ(touch(as, pg(1), true), FaultResult::kOk);
  ASSERT_TRUE(as.mremap(pg(0), 4 * P, 4 * P, kMremapMayMove | kMremapFixed, pg(10)).ok());
  EXPECT_EQ(as.anon_pages(pg(10), pg(14)), 1u);
  EXPECT_NE(as.page_table().get(pg(11)), 0u);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Fork, CopyOnWriteDontcopyAndWipeonfork) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 3, 2, kProtRead);  // differs: stays its own VMA
  ASSERT_TRUE(as.mprotect(pg(3), 2 * P, kRw).ok());
  map_anon(as, 6, 2, kRw);
  for (uint64_t i : {0, 1, 3, 6}) EXPECT_EQ(touch(as, pg(i), true), FaultResult::kOk);
  ASSERT_TRUE(as.madvise(pg(3), 2 * P, kMadvWipeOnFork).ok());
  ASSERT_TRUE(as.madvise(pg(6), 2 * P, kMadvDontFork).ok());
  ASSERT_TRUE(as.mlock(pg(0), P).ok());
  auto child = as.fork();
  ASSERT_TRUE(child.ok()) << child.status();
  AddressSpace& c = **child;
  EXPECT_TRUE(c.validate().ok()) << c.validate();
  EXPECT_EQ(draw(c), "AB CC   ");  // fork does not merge the unlocked halves
  EXPECT_EQ(c.locked_vm(), 0u);
  EXPECT_EQ(c.anon_pages(pg(0), pg(2)), 2u);
  EXPECT_EQ(c.anon_pages(pg(3), pg(5)), 0u);  // wiped
  const FrameId shared = pte::frame(as.page_table().get(pg(1)));
  EXPECT_EQ(as.page_table().frames().refcount(shared), 2u);
  // A write in the child copies; the parent's page is exclusive again and is
  // reused on its own write.
  EXPECT_EQ(touch(c, pg(1), true), FaultResult::kOk);
  EXPECT_NE(pte::frame(c.page_table().get(pg(1))), shared);
  EXPECT_EQ(as.page_table().frames().refcount(shared), 1u);
  EXPECT_EQ(touch(as, pg(1), true), FaultResult::kOk);
  EXPECT_EQ(pte::frame(as.page_table().get(pg(1))), shared);
  child->reset();
  EXPECT_EQ(as.page_table().frames().in_use(), 4u);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

// Everything observable about an address space, page table included.
std::string snapshot(const AddressSpace& as) {
  std::string s;
  for (const VmaInfo& v : as.maps())
    s += std::to_string(v.start) + "-" + std::to_string(v.end) + " " + v.perms() + " " +
         v.flags_string() + " " + std::to_string(v.pgoff) + " anon " +
         std::to_string(v.anon_pages) + " av " + (v.anon_vma ? std::to_string(v.anon_vma->id) : "-") +
         "\n";
  as.page_table().for_each(0, UINT64_MAX, [&](uint64_t a, Pte p) {
    s += std::to_string(a) + "=" + std::to_string(p) + " ";
  });
  s += "\nmc " + std::to_string(as.map_count()) + " vm " + std::to_string(as.total_vm()) +
       " locked " + std::to_string(as.locked_vm()) + " tables " +
       std::to_string(as.page_table().tables()) + " frames " +
       std::to_string(as.page_table().frames().in_use());
  return s;
}

using Call = std::function<absl::Status(AddressSpace&)>;

absl::Status touched(absl::StatusOr<FaultResult> r) {
  if (!r.ok()) return r.status();
  return *r == FaultResult::kOk ? absl::OkStatus() : errno_error(EFAULT, "signal");
}

std::vector<Call> workload() {
  auto st = [](auto r) { return r.ok() ? absl::OkStatus() : absl::Status(r.status()); };
  return {
      [=](AddressSpace& as) { return st(as.mmap(pg(0), 16 * P, kRw, kAnon, nullptr, 0)); },
      [=](AddressSpace& as) { return touched(as.touch(pg(3), true)); },
      [=](AddressSpace& as) { return touched(as.touch(pg(4), false)); },
      [=](AddressSpace& as) { return touched(as.touch(pg(4), true)); },
      [=](AddressSpace& as) { return as.mlock(pg(6), 4 * P); },
      [=](AddressSpace& as) {
        return st(as.mmap(pg(600), 4 * P, kRw, kAnon | kMapPopulate, nullptr, 0));
      },
      [=](AddressSpace& as) {
        return st(as.mmap(pg(1500), 2 * P, kRw, kAnon | kMapGrowsDown, nullptr, 0));
      },
      [=](AddressSpace& as) { return touched(as.touch(pg(1490), true)); },
      [=](AddressSpace& as) { return as.madvise(pg(2), 3 * P, kMadvDontNeed); },
      [=](AddressSpace& as) {
        return st(as.mremap(pg(2), 4 * P, 4 * P, kMremapMayMove | kMremapFixed, pg(1000)));
      },
      [=](AddressSpace& as) { return as.munlock(pg(6), 4 * P); },
      [=](AddressSpace& as) { return as.munmap(pg(0), 700 * P); },
  };
}

TEST(FaultInjection, FaultsAndPageTableChangesAreUndone) {
  const std::vector<Call> calls = workload();
  int failures = 0;
  for (size_t i = 0; i < calls.size(); ++i) {
    for (uint64_t k = 1; k < 1000; ++k) {
      AddressSpace as;
      for (size_t j = 0; j < i; ++j) ASSERT_TRUE(calls[j](as).ok()) << "call " << j;
      const std::string before = snapshot(as);
      absl::Status s;
      bool fired;
      {
        FailNthAllocation fail(k);
        s = calls[i](as);
        fired = fail.fired();
      }
      ASSERT_TRUE(as.validate().ok()) << "call " << i << " k " << k << ": " << as.validate();
      if (!fired) {
        EXPECT_TRUE(s.ok()) << "call " << i << ": " << s;
        break;
      }
      ++failures;
      EXPECT_EQ(errno_of(s), ENOMEM) << "call " << i << " k " << k;
      EXPECT_EQ(snapshot(as), before) << "call " << i << " k " << k;
    }
  }
  EXPECT_GT(failures, 20);
}

TEST(FaultInjection, ForkFailingAtEveryAllocationLeavesParentUnchanged) {
  AddressSpace as;
  for (const Call& c : workload()) ASSERT_TRUE(c(as).ok());
  map_anon(as, 0, 8, kRw);
  ASSERT_TRUE(as.madvise(pg(1), P, kMadvDontFork).ok());
  ASSERT_TRUE(as.madvise(pg(3), P, kMadvWipeOnFork).ok());
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(touched(as.touch(pg(i), true)).ok());
  const std::string before = snapshot(as);
  const uint64_t frames = as.page_table().frames().in_use();
  int failures = 0;
  for (uint64_t k = 1; k < 10000; ++k) {
    absl::StatusOr<std::unique_ptr<AddressSpace>> child;
    bool fired;
    {
      FailNthAllocation fail(k);
      child = as.fork();
      fired = fail.fired();
    }
    if (!fired) {
      ASSERT_TRUE(child.ok()) << child.status();
      EXPECT_TRUE((*child)->validate().ok()) << (*child)->validate();
      break;
    }
    ++failures;
    EXPECT_EQ(errno_of(child.status()), ENOMEM) << "k " << k;
    EXPECT_EQ(snapshot(as), before) << "k " << k;
    EXPECT_EQ(as.page_table().frames().in_use(), frames) << "k " << k;
  }
  EXPECT_GT(failures, 5);
}

}  // namespace
}  // namespace rcuvm::testing
