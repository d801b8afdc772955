// The overcommit heuristic (vm.overcommit_memory 0): every call that charges
// memory refuses one request larger than RAM + swap with ENOMEM and changes
// nothing; mode 1 and an unknown RAM size refuse nothing.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "rcuvm/address_space.h"
#include "rcuvm/status.h"
#include "vma_test_util.h"

namespace rcuvm::testing {
namespace {

int err(const absl::Status& s) { return errno_of(s); }
template <typename T>
int err(const absl::StatusOr<T>& s) {
  return errno_of(s.status());
}

// A machine of 8 pages of RAM and 2 of swap: requests of up to 10 pages pass.
AddressSpaceOptions small_machine() {
  AddressSpaceOptions o;
  o.total_ram_pages = 8;
  o.total_swap_pages = 2;
  return o;
}

std::vector<std::string> listing(const AddressSpace& as) {
  std::vector<std::string> out;
  for (const VmaInfo& v : as.maps())
    out.push_back(std::to_string((v.start - kBase) / P) + "-" +
                  std::to_string((v.end - kBase) / P) + " " + v.perms() + " " +
                  v.flags_string());
  return out;
}

// A private writable VMA of `pages` pages at page 0 that holds VM_ACCOUNT
// although it is larger than the machine: it became writable in two
// mprotect calls, each charging half.
void map_charged_in_halves(AddressSpace& as, uint64_t pages) {
  map_anon(as, 0, pages, kProtNone);
  ASSERT_TRUE(as.mprotect(pg(0), pages / 2 * P, kRw).ok());
  ASSERT_TRUE(as.mprotect(pg(pages / 2), (pages - pages / 2) * P, kRw).ok());
  ASSERT_EQ(draw(as, pages), std::string(pages, 'A'));
  ASSERT_NE(as.vma_lookup(pg(0))->flags & vmf::kAccount, 0u);
}

TEST(Overcommit, MmapChargesPrivateWritableMemory) {
  AddressSpace as(small_machine());
  EXPECT_EQ(err(as.mmap(pg(0), 11 * P, kRw, kAnon, nullptr, 0)), ENOMEM);
  EXPECT_EQ(as.map_count(), 0u);
  EXPECT_TRUE(as.mmap(pg(0), 10 * P, kRw, kAnon, nullptr, 0).ok());  // RAM + swap exactly
  // Not charged: read-only, MAP_NORESERVE, shared file mappings.
  EXPECT_TRUE(as.mmap(pg(20), 11 * P, kProtRead, kAnon, nullptr, 0).ok());
  EXPECT_TRUE(as.mmap(pg(40), 11 * P, kRw, kAnon | kMapNoReserve, nullptr, 0).ok());
  auto f = File::make("f", 64 * P, {.readable = true, .writable = true});
  EXPECT_TRUE(as.mmap(pg(60), 11 * P, kRw, kMapShared | kMapFixed, f, 0).ok());
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, RefusedFixedMappingKeepsWhatItWouldReplace) {
  AddressSpace as(small_machine());
  map_anon(as, 0, 4, kProtRead);
  const auto before = listing(as);
  const uint64_t total = as.total_vm();
  EXPECT_EQ(err(as.mmap(pg(0), 12 * P, kRw, kAnon, nullptr, 0)), ENOMEM);
  EXPECT_EQ(listing(as), before);
  EXPECT_EQ(as.total_vm(), total);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, FixedMappingOverChargedMemoryChargesOnlyTheRest) {
  AddressSpace as(small_machine());
  map_anon(as, 0, 8, kRw);  // charged 8
  // 12 pages over 8 already charged: 4 more.
  EXPECT_TRUE(as.mmap(pg(0), 12 * P, kRw, kAnon, nullptr, 0).ok());
  // 16 pages at page 8 overlap only 4 charged pages: 12 more is too many.
  EXPECT_EQ(err(as.mmap(pg(8), 16 * P, kRw, kAnon, nullptr, 0)), ENOMEM);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, SharedAnonymousMemoryIsCharged) {
  AddressSpace as(small_machine());
  const int shared = kMapShared | kMapAnonymous | kMapFixed;
  EXPECT_EQ(err(as.mmap(pg(0), 11 * P, kProtRead, shared, nullptr, 0)), ENOMEM);
  EXPECT_EQ(as.map_count(), 0u);
  EXPECT_TRUE(as.mmap(pg(0), 11 * P, kProtRead, shared | kMapNoReserve, nullptr, 0).ok());
}

TEST(Overcommit, BrkBeyondTheMachineKeepsTheOldBreak) {
  AddressSpaceOptions o = small_machine();
  o.start_brk = o.brk = pg(100);
  AddressSpace as(o);
  auto r = as.brk(pg(111));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, pg(100));
  EXPECT_EQ(as.map_count(), 0u);
  r = as.brk(pg(110));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, pg(110));
}

TEST(Overcommit, MprotectToWritableIsCharged) {
  AddressSpace as(small_machine());
  map_anon(as, 0, 12, kProtNone);
  EXPECT_EQ(err(as.mprotect(pg(0), 12 * P, kRw)), ENOMEM);
  EXPECT_EQ(listing(as), std::vector<std::string>{"0-12 ---p mr,mw,me"});
  EXPECT_TRUE(as.mprotect(pg(0), 12 * P, kProtRead).ok());  // not charged
  EXPECT_TRUE(as.mprotect(pg(0), 6 * P, kRw).ok());
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, MremapChargesGrowthAndKeptRanges) {
  AddressSpace as(small_machine());
  map_anon(as, 0, 4, kRw);
  // Growing by 11 pages, in place or by moving: refused; by 10: fine.
  EXPECT_EQ(err(as.mremap(pg(0), 4 * P, 15 * P, 0, 0)), ENOMEM);
  EXPECT_EQ(err(as.mremap(pg(0), 4 * P, 15 * P, kMremapMayMove | kMremapFixed, pg(40))), ENOMEM);
  EXPECT_EQ(draw(as, 48), "AAAA" + std::string(44, ' '));
  EXPECT_TRUE(as.mremap(pg(0), 4 * P, 14 * P, 0, 0).ok());
  // Unaccounted memory grows freely.
  map_anon(as, 100, 1, kProtRead);
  EXPECT_TRUE(as.mremap(pg(100), P, 20 * P, 0, 0).ok());
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, MremapDontUnmapChargesTheWholeNewRange) {
  AddressSpace as(small_machine());
  map_charged_in_halves(as, 12);
  const auto before = listing(as);
  EXPECT_EQ(err(as.mremap(pg(0), 12 * P, 12 * P,
                          kMremapMayMove | kMremapFixed | kMremapDontUnmap, pg(40))),
            ENOMEM);
  EXPECT_EQ(listing(as), before);
  // A plain move of the same VMA charges nothing (delta 0).
  EXPECT_TRUE(as.mremap(pg(0), 12 * P, 12 * P, kMremapMayMove | kMremapFixed, pg(40)).ok());
  EXPECT_TRUE(as.validate().ok()) << as.validate();
}

TEST(Overcommit, StackGrowthBeyondTheMachineIsSegv) {
  AddressSpaceOptions o = small_machine();
  o.stack_guard_gap = P;
  AddressSpace as(o);
  ASSERT_TRUE(as.mmap(pg(40), 2 * P, kRw, kAnon | kMapGrowsDown, nullptr, 0).ok());
  auto r = as.touch(pg(29), true);  // 11 pages of growth
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, FaultResult::kSigSegv);
  EXPECT_EQ(as.vma_lookup(pg(40))->start, pg(40));
  r = as.touch(pg(30), true);  // 10 pages
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, FaultResult::kOk);
  EXPECT_EQ(as.vma_lookup(pg(40))->start, pg(30));
}

TEST(Overcommit, ForkChargesEachAccountedVma) {
  AddressSpace as(small_machine());
  map_charged_in_halves(as, 12);
  const auto before = listing(as);
  EXPECT_EQ(err(as.fork()), ENOMEM);
  EXPECT_EQ(listing(as), before);
  EXPECT_TRUE(as.validate().ok()) << as.validate();
  ASSERT_TRUE(as.munmap(pg(10), 2 * P).ok());  // 10 pages left: fits
  auto child = as.fork();
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ((*child)->map_count(), 1u);
}

TEST(Overcommit, AlwaysModeAndUnknownRamRefuseNothing) {
  AddressSpaceOptions always = small_machine();
  always.overcommit = OvercommitMode::kAlways;
  AddressSpaceOptions unknown;  // total_ram_pages == 0
  for (const AddressSpaceOptions& o : {always, unknown}) {
    AddressSpace as(o);
    EXPECT_TRUE(as.mmap(pg(0), 1000 * P, kRw, kAnon, nullptr, 0).ok());
    EXPECT_TRUE(as.mremap(pg(0), 1000 * P, 3000 * P, 0, 0).ok());
    EXPECT_TRUE(as.fork().ok());
  }
}

}  // namespace
}  // namespace rcuvm::testing
