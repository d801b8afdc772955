// walk_page_range and its walkers (rcuvm/page_walk.h): every numbered rule
// of the header, then resident_pages and pagemap against the fault path.
#include "rcuvm/page_walk.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "rcuvm/status.h"
#include "vma_test_util.h"

namespace rcuvm::testing {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kHuge = 2 * kMiB;

// Records every callback as one line and returns what the test asked for.
struct Recorder {
  std::vector<std::string> events;
  bool record_empty_ptes = true;  // false: only present PTEs are listed
  uint64_t ptes = 0;              // pte_entry calls, present or not
  std::map<std::string, int> stop;      // event -> value to return
  std::map<uint64_t, int> test_result;  // VMA walk start -> test_walk value
  uint64_t continue_pmd = 0;            // pmd_entry at this addr sets kContinue

  int add(const std::string& e) {
    events.push_back(e);
    auto it = stop.find(e);
    return it == stop.end() ? 0 : it->second;
  }
};

Recorder& rec(MmWalk& w) { return *static_cast<Recorder*>(w.priv); }

int on_hole(uint64_t a, uint64_t n, int depth, MmWalk& w) {
  return rec(w).add(absl::StrFormat("hole %x-%x %d", a, n, depth));
}
int on_test(uint64_t a, uint64_t n, MmWalk& w) {
  Recorder& r = rec(w);
  const int v = r.add(absl::StrFormat("test %x-%x", a, n));
  auto it = r.test_result.find(a);
  return v ? v : it == r.test_result.end() ? 0 : it->second;
}
int on_pte(Pte pte, uint64_t a, uint64_t n, MmWalk& w) {
  Recorder& r = rec(w);
  EXPECT_EQ(n, a + P);
  ++r.ptes;
  if (!pte::present(pte) && !r.record_empty_ptes) return 0;
  return r.add(absl::StrFormat("pte %x %c", a, pte::present(pte) ? 'P' : '-'));
}
int on_pmd(PteTableView ptes, uint64_t a, uint64_t n, MmWalk& w) {
  Recorder& r = rec(w);
  if (a == r.continue_pmd) w.action = WalkAction::kContinue;
  return r.add(absl::StrFormat("pmd %x-%x %c", a, n, pte::present(ptes.get(a)) ? 'P' : '-'));
}
int on_huge(Pte pte, uint64_t hmask, uint64_t a, uint64_t n, MmWalk& w) {
  EXPECT_EQ(hmask, ~(kHuge - 1));
  return rec(w).add(absl::StrFormat("huge %x-%x %c", a, n, pte::present(pte) ? 'P' : '-'));
}

constexpr MmWalkOps kAll = {.pmd_entry = on_pmd,
                            .pte_entry = on_pte,
                            .pte_hole = on_hole,
                            .hugetlb_entry = on_huge,
                            .test_walk = on_test};
constexpr MmWalkOps kHoles = {.pte_hole = on_hole};
constexpr MmWalkOps kHolesTest = {.pte_hole = on_hole, .test_walk = on_test};
constexpr MmWalkOps kPtes = {.pte_entry = on_pte, .pte_hole = on_hole};
constexpr MmWalkOps kPtesOnly = {.pte_entry = on_pte};
constexpr MmWalkOps kPmdPte = {.pmd_entry = on_pmd, .pte_entry = on_pte};
constexpr MmWalkOps kHugeOps = {.pte_entry = on_pte, .pte_hole = on_hole, .hugetlb_entry = on_huge};

std::string H(uint64_t a, uint64_t n, int depth) { return absl::StrFormat("hole %x-%x %d", a, n, depth); }
std::string T(uint64_t a, uint64_t n) { return absl::StrFormat("test %x-%x", a, n); }
std::string Pt(uint64_t a, bool present) {
  return absl::StrFormat("pte %x %c", a, present ? 'P' : '-');
}
std::string Pmd(uint64_t a, uint64_t n, bool present) {
  return absl::StrFormat("pmd %x-%x %c", a, n, present ? 'P' : '-');
}
std::string Hu(uint64_t a, uint64_t n, bool present) {
  return absl::StrFormat("huge %x-%x %c", a, n, present ? 'P' : '-');
}

int walk(AddressSpace& as, uint64_t start, uint64_t end, const MmWalkOps& ops, Recorder& r) {
  absl::StatusOr<int> res = walk_page_range(as, start, end, ops, &r);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? *res : -9999;
}

void touch(AddressSpace& as, uint64_t addr, bool write) {
  auto r = as.touch(addr, write);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(*r, FaultResult::kOk) << std::hex << addr;
}

// A VMA of our own: pfnmap, hugetlb...
VmaState special(uint64_t start, uint64_t end, VmFlags extra) {
  VmaState s;
  s.start = start;
  s.end = end;
  s.pgoff = start >> kPageShift;
  s.flags = vmf::kRead | vmf::kWrite | vmf::kMayRead | vmf::kMayWrite | extra;
  return s;
}

using Events = std::vector<std::string>;

// --- Rule 1

TEST(PageWalk, EmptyOrReversedRangeIsEinval) {
  AddressSpace as;
  Recorder r;
  EXPECT_EQ(errno_of(walk_page_range(as, pg(1), pg(1), kAll, &r).status()), EINVAL);
  EXPECT_EQ(errno_of(walk_page_range(as, pg(2), pg(1), kAll, &r).status()), EINVAL);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(errno_of(resident_pages(as, pg(1), pg(1)).status()), EINVAL);
  EXPECT_EQ(errno_of(pagemap(as, pg(3), pg(1)).status()), EINVAL);
}

// --- Rules 2 and 3

TEST(PageWalk, HolesAroundAndBetweenVmasInOrder) {
  AddressSpace as;
  map_anon(as, 1, 2, kRw);
  map_anon(as, 5, 1, kRw);
  ASSERT_EQ(draw(as), " AA  B  ");
  Recorder r;
  EXPECT_EQ(walk(as, pg(0), pg(8), kHolesTest, r), 0);
  // No pmd/pte handler: the VMAs get test_walk and nothing else (rule 5).
  EXPECT_EQ(r.events, (Events{H(pg(0), pg(1), -1), T(pg(1), pg(3)), H(pg(3), pg(5), -1),
                              T(pg(5), pg(6)), H(pg(6), pg(8), -1)}));

  Recorder clipped;  // a range starting and ending inside VMAs
  EXPECT_EQ(walk(as, pg(2), pg(6), kHolesTest, clipped), 0);
  EXPECT_EQ(clipped.events, (Events{T(pg(2), pg(3)), H(pg(3), pg(5), -1), T(pg(5), pg(6))}));

  Recorder empty;  // no VMA at all in the range
  EXPECT_EQ(walk(as, pg(6), pg(100), kHolesTest, empty), 0);
  EXPECT_EQ(empty.events, (Events{H(pg(6), pg(100), -1)}));

  AddressSpace none;  // no VMA anywhere
  Recorder whole;
  EXPECT_EQ(walk(none, 0, UINT64_MAX, kHoles, whole), 0);
  EXPECT_EQ(whole.events, (Events{H(0, UINT64_MAX, -1)}));
}

TEST(PageWalk, TestWalkZeroWalksPositiveSkipsNegativeStops) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  map_anon(as, 2, 2, kProtRead);
  map_anon(as, 4, 2, kRw);
  map_anon(as, 6, 2, kProtRead);
  ASSERT_EQ(draw(as), "AABBCCDD");
  for (uint64_t i = 0; i < 8; ++i) touch(as, pg(i), i % 4 < 2);

  Recorder r;
  r.test_result = {{pg(2), 1}, {pg(4), -5}};
  EXPECT_EQ(walk(as, pg(0), pg(8), kAll, r), -5);
  EXPECT_EQ(r.events.front(), T(pg(0), pg(2)));
  EXPECT_EQ(r.events, (Events{T(pg(0), pg(2)), Pmd(pg(0), pg(2), true), Pt(pg(0), true),
                              Pt(pg(1), true), T(pg(2), pg(4)), T(pg(4), pg(6))}));

  Recorder skip;  // a positive value skips the VMA and is not returned
  skip.test_result = {{pg(0), 3}, {pg(4), 1}};
  EXPECT_EQ(walk(as, pg(0), pg(8), kAll, skip), 0);
  EXPECT_EQ(skip.events,
            (Events{T(pg(0), pg(2)), T(pg(2), pg(4)), Pmd(pg(2), pg(4), true), Pt(pg(2), true),
                    Pt(pg(3), true), T(pg(4), pg(6)), T(pg(6), pg(8)), Pmd(pg(6), pg(8), true),
                    Pt(pg(6), true), Pt(pg(7), true)}));
}

// --- Rule 4

TEST(PageWalk, PfnmapSkippedWithoutTestWalk) {
  AddressSpace as;
  map_anon(as, 0, 2, kRw);
  ASSERT_TRUE(as.install(special(pg(2), pg(4), vmf::kPfnMap)).ok());
  map_anon(as, 4, 1, kRw);
  ASSERT_EQ(draw(as), "AABBC   ");
  for (uint64_t i = 0; i < 5; ++i) touch(as, pg(i), false);

  Recorder r;  // pte_hole stands for the whole pfnmap; its PTEs are not seen
  EXPECT_EQ(walk(as, pg(0), pg(5), kPtes, r), 0);
  EXPECT_EQ(r.events, (Events{Pt(pg(0), true), Pt(pg(1), true), H(pg(2), pg(4), -1),
                              Pt(pg(4), true)}));

  Recorder quiet;  // without pte_hole nothing is said about it
  EXPECT_EQ(walk(as, pg(0), pg(5), kPtesOnly, quiet), 0);
  EXPECT_EQ(quiet.events, (Events{Pt(pg(0), true), Pt(pg(1), true), Pt(pg(4), true)}));

  Recorder tested;  // a test_walk replaces the rule: 0 walks the pfnmap
  EXPECT_EQ(walk(as, pg(2), pg(4), kAll, tested), 0);
  EXPECT_EQ(tested.events, (Events{T(pg(2), pg(4)), Pmd(pg(2), pg(4), true), Pt(pg(2), true),
                                   Pt(pg(3), true)}));

  Recorder positive;  // a positive pte_hole value there is a skip: swallowed
  positive.stop = {{H(pg(2), pg(4), -1), 6}};
  EXPECT_EQ(walk(as, pg(0), pg(5), kPtes, positive), 0);
  EXPECT_EQ(positive.events.back(), Pt(pg(4), true));

  Recorder negative;  // a negative one stops the walk
  negative.stop = {{H(pg(2), pg(4), -1), -6}};
  EXPECT_EQ(walk(as, pg(0), pg(5), kPtes, negative), -6);
  EXPECT_EQ(negative.events.back(), H(pg(2), pg(4), -1));
}

// --- Rule 5

TEST(PageWalk, MissingTablesGiveHolesWithDepth) {
  AddressSpace as;
  const uint64_t x = kBase, y = 2 * kGiB, z = uint64_t{1} << 40;  // GiB 0, GiB 2, 1 TiB
  ASSERT_TRUE(as.mmap(x, 4 * kMiB, kRw, kAnon, nullptr, 0).ok());
  ASSERT_TRUE(as.mmap(y, 2 * P, kRw, kAnon, nullptr, 0).ok());
  ASSERT_TRUE(as.mmap(z, P, kRw, kAnon, nullptr, 0).ok());

  Recorder before;  // nothing touched: the root has no entry yet
  EXPECT_EQ(walk(as, x, x + 4 * kMiB, kPtes, before), 0);
  EXPECT_EQ(before.events, (Events{H(x, x + 4 * kMiB, 0)}));

  touch(as, x + P, true);
  Recorder r;
  r.record_empty_ptes = false;
  EXPECT_EQ(walk(as, x, z + P, kPtes, r), 0);
  EXPECT_EQ(r.ptes, 512u);  // every PTE of the one PTE table, present or not
  EXPECT_EQ(r.events,
            (Events{Pt(x + P, true), H(x + 2 * kMiB, x + 4 * kMiB, 3), H(x + 4 * kMiB, y, -1),
                    H(y, y + 2 * P, 2), H(y + 2 * P, z, -1), H(z, z + P, 0)}));

  Recorder no_lower;  // only pte_hole: no table holes inside VMAs (folded P4D)
  EXPECT_EQ(walk(as, x, z + P, kHoles, no_lower), 0);
  EXPECT_EQ(no_lower.events, (Events{H(x + 4 * kMiB, y, -1), H(y + 2 * P, z, -1)}));
}

TEST(PageWalk, PteEntryForEveryPteOfATableEvenAfterDontneed) {
  AddressSpace as;
  map_anon(as, 0, 4, kRw);
  touch(as, pg(0), true);
  touch(as, pg(2), false);
  Recorder r;
  EXPECT_EQ(walk(as, pg(0), pg(4), kPtes, r), 0);
  EXPECT_EQ(r.events, (Events{Pt(pg(0), true), Pt(pg(1), false), Pt(pg(2), true),
                              Pt(pg(3), false)}));

  ASSERT_TRUE(as.madvise(pg(0), 4 * P, kMadvDontNeed).ok());
  Recorder after;  // the entries are gone, the table stays: empty PTEs
  EXPECT_EQ(walk(as, pg(0), pg(4), kPtes, after), 0);
  EXPECT_EQ(after.events, (Events{Pt(pg(0), false), Pt(pg(1), false), Pt(pg(2), false),
                                  Pt(pg(3), false)}));
}

// --- Rule 6

TEST(PageWalk, PmdEntrySpansAreClippedAndContinueSkipsPtes) {
  AddressSpace as;
  const uint64_t start = kBase + 2 * kMiB - 2 * P, end = kBase + 4 * kMiB + 3 * P;
  ASSERT_TRUE(as.mmap(start, end - start, kRw, kAnon | kMapPopulate, nullptr, 0).ok());
  ASSERT_EQ(as.anon_pages(start, end), (end - start) / P);

  Recorder r;
  r.record_empty_ptes = false;
  EXPECT_EQ(walk(as, start, end, kPmdPte, r), 0);
  EXPECT_EQ(r.ptes, (end - start) / P);
  Events pmds;
  for (const std::string& e : r.events)
    if (e.starts_with("pmd")) pmds.push_back(e);
  EXPECT_EQ(pmds, (Events{Pmd(start, kBase + 2 * kMiB, true),
                          Pmd(kBase + 2 * kMiB, kBase + 4 * kMiB, true),
                          Pmd(kBase + 4 * kMiB, end, true)}));
  // Each PMD's PTEs follow its pmd_entry.
  EXPECT_EQ(r.events[0], pmds[0]);
  EXPECT_EQ(r.events[3], pmds[1]);

  Recorder cont;  // kContinue on the middle PMD: its 512 PTEs are skipped
  cont.continue_pmd = kBase + 2 * kMiB;
  EXPECT_EQ(walk(as, start, end, kPmdPte, cont), 0);
  EXPECT_EQ(cont.ptes, (end - start) / P - 512);

  constexpr MmWalkOps kPmdOnly = {.pmd_entry = on_pmd};
  Recorder pmd_only;  // without pte_entry the PTEs are not walked
  EXPECT_EQ(walk(as, start, end, kPmdOnly, pmd_only), 0);
  EXPECT_EQ(pmd_only.events, pmds);
  EXPECT_EQ(pmd_only.ptes, 0u);
}

// --- Rule 7

TEST(PageWalk, HugetlbVmaHugePageByHugePage) {
  AddressSpace as;
  const uint64_t g = 2 * kGiB;  // spans [g-2M, g), [g, g+2M), [g+2M, g+4M)
  ASSERT_TRUE(as.install(special(g - kHuge, g + 2 * kHuge, vmf::kHugetlb)).ok());
  touch(as, g - kHuge, true);  // the head page of the first huge page

  Recorder r;  // no PMD-level table for GiB 2 yet: holes at depth -1
  EXPECT_EQ(walk(as, g - kHuge, g + 2 * kHuge, kAll, r), 0);
  EXPECT_EQ(r.events, (Events{T(g - kHuge, g + 2 * kHuge), Hu(g - kHuge, g, true),
                              H(g, g + kHuge, -1), H(g + kHuge, g + 2 * kHuge, -1)}));

  touch(as, g + kHuge + 5 * P, true);  // not a head page: the table appears
  Recorder after;
  EXPECT_EQ(walk(as, g - kHuge, g + 2 * kHuge, kHugeOps, after), 0);
  EXPECT_EQ(after.events, (Events{Hu(g - kHuge, g, true), Hu(g, g + kHuge, false),
                                  Hu(g + kHuge, g + 2 * kHuge, false)}));

  Recorder clipped;
  EXPECT_EQ(walk(as, g - kHuge + P, g + P, kHugeOps, clipped), 0);
  // The first span's entry is its head page's, outside the range but mapped.
  EXPECT_EQ(clipped.events, (Events{Hu(g - kHuge + P, g, true), Hu(g, g + P, false)}));

  Recorder silent;  // no hugetlb_entry: the VMA gets no callback at all
  EXPECT_EQ(walk(as, g - kHuge, g + 2 * kHuge, kPtes, silent), 0);
  EXPECT_TRUE(silent.events.empty());
}

// --- Rule 1: a callback's value stops the walk and is returned

TEST(PageWalk, EveryCallbackKindStopsTheWalkWithItsValue) {
  AddressSpace as;
  map_anon(as, 1, 3, kRw);
  map_anon(as, 5, 1, kProtRead);
  for (uint64_t i : {1, 2, 3, 5}) touch(as, pg(i), i != 5);
  const uint64_t g = 2 * kGiB;
  ASSERT_TRUE(as.install(special(g, g + 2 * kHuge, vmf::kHugetlb)).ok());
  touch(as, g, true);

  struct Case {
    std::string stop_at;
    int value;
  };
  for (const Case& c : {Case{Pt(pg(2), true), 7}, Case{Pt(pg(2), true), -7},
                        Case{Pmd(pg(5), pg(6), true), 5}, Case{H(pg(0), pg(1), -1), 3},
                        Case{H(pg(4), pg(5), -1), -3}, Case{T(pg(5), pg(6)), -2},
                        Case{Hu(g, g + kHuge, true), 9}, Case{H(pg(6), g, -1), 4}}) {
    Recorder r;
    r.stop = {{c.stop_at, c.value}};
    EXPECT_EQ(walk(as, pg(0), g + 2 * kHuge, kAll, r), c.value) << c.stop_at;
    ASSERT_FALSE(r.events.empty());
    EXPECT_EQ(r.events.back(), c.stop_at);  // nothing after the stop
  }

  Recorder depth3;  // a table-level hole's value too
  const uint64_t x = 4 * kGiB;
  ASSERT_TRUE(as.mmap(x, 4 * kMiB, kRw, kAnon, nullptr, 0).ok());
  touch(as, x, true);
  depth3.stop = {{H(x + 2 * kMiB, x + 4 * kMiB, 3), 11}};
  EXPECT_EQ(walk(as, x, x + 4 * kMiB, kPtes, depth3), 11);
  EXPECT_EQ(depth3.events.back(), H(x + 2 * kMiB, x + 4 * kMiB, 3));
}

// --- Walkers

VmaResidency row_at(const std::vector<VmaResidency>& rows, uint64_t start) {
  for (const VmaResidency& r : rows)
    if (r.vma.start == start) return r;
  ADD_FAILURE() << "no row at " << std::hex << start;
  return {};
}

TEST(Walkers, ResidentPagesMatchTouchesAndAnonPages) {
  AddressSpace as;
  map_anon(as, 0, 4, kRw);                   // A: 2 written, 1 read (zero page)
  auto f = File::make("f", 16 * P, {});
  ASSERT_TRUE(as.mmap(pg(4), 3 * P, kProtRead, kMapPrivate | kMapFixed, f, 0).ok());  // B: file
  ASSERT_TRUE(as.mmap(pg(8), 2 * P, kRw, kMapShared | kMapAnonymous | kMapFixed, nullptr, 0)
                  .ok());                    // C: shared anonymous (shmem)
  ASSERT_TRUE(as.install(special(pg(12), pg(14), vmf::kPfnMap)).ok());  // D: pfnmap
  touch(as, pg(0), true);
  touch(as, pg(2), true);
  touch(as, pg(3), false);
  touch(as, pg(4), false);
  touch(as, pg(6), false);
  touch(as, pg(9), true);
  touch(as, pg(12), true);  // mapped, but a pfnmap is not walked

  auto rows = resident_pages(as);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 4u);
  std::vector<VmaInfo> maps = as.maps();
  for (size_t i = 0; i < rows->size(); ++i) {
    EXPECT_EQ((*rows)[i].vma.start, maps[i].start);
    EXPECT_EQ((*rows)[i].vma.end, maps[i].end);
    EXPECT_EQ((*rows)[i].vma.flags, maps[i].flags);
    if (!(maps[i].flags & vmf::kPfnMap)) {
      EXPECT_EQ((*rows)[i].vma.anon_pages, maps[i].anon_pages);
    }
  }
  VmaResidency a = row_at(*rows, pg(0)), b = row_at(*rows, pg(4)), c = row_at(*rows, pg(8)),
               d = row_at(*rows, pg(12));
  EXPECT_EQ(a.rss, 2u);
  EXPECT_EQ(a.anonymous, 2u);
  EXPECT_EQ(a.zero, 1u);
  EXPECT_EQ(a.anonymous, as.anon_pages(pg(0), pg(4)));
  EXPECT_EQ(b.rss, 2u);
  EXPECT_EQ(b.file, 2u);
  EXPECT_EQ(b.anonymous, 0u);
  EXPECT_EQ(c.rss, 1u);
  EXPECT_EQ(c.file, 1u);
  EXPECT_EQ(d.rss + d.anonymous + d.zero + d.file, 0u);

  auto part = resident_pages(as, pg(1), pg(5));  // only pages in the range count
  ASSERT_TRUE(part.ok());
  ASSERT_EQ(part->size(), 2u);
  EXPECT_EQ((*part)[0].anonymous, 1u);
  EXPECT_EQ((*part)[0].zero, 1u);
  EXPECT_EQ((*part)[1].file, 1u);
  EXPECT_EQ((*part)[0].vma.start, pg(0));  // the row describes the whole VMA
}

TEST(Walkers, ResidentPagesOfALargePopulatedVma) {
  AddressSpace as;
  const uint64_t len = 64 * kMiB;
  auto a = as.mmap(0, len, kRw, kMapPrivate | kMapAnonymous | kMapPopulate, nullptr, 0);
  ASSERT_TRUE(a.ok());
  auto rows = resident_pages(as);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].rss, len / P);
  EXPECT_EQ((*rows)[0].anonymous, as.anon_pages(*a, *a + len));
  EXPECT_EQ((*rows)[0].shared, 0u);
}

TEST(Walkers, HugetlbPagesAreCountedApart) {
  AddressSpace as;
  const uint64_t g = 2 * kGiB;
  ASSERT_TRUE(as.install(special(g, g + 2 * kHuge, vmf::kHugetlb)).ok());
  touch(as, g, true);
  touch(as, g + kHuge + 3 * P, true);
  auto rows = resident_pages(as);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].hugetlb, 2u);
  EXPECT_EQ((*rows)[0].rss, 0u);

  auto pm = pagemap(as, g, g + 2 * kHuge);
  ASSERT_TRUE(pm.ok());
  ASSERT_EQ(pm->size(), 2 * kHuge / P);
  EXPECT_EQ((*pm)[0], pagemap_bits::kPresent | pagemap_bits::kExclusive |
                          pte::frame(as.page_table().get(g)));
  EXPECT_EQ((*pm)[kHuge / P + 3] & pagemap_bits::kPresent, pagemap_bits::kPresent);
  EXPECT_EQ((*pm)[1], 0u);
}

TEST(Walkers, PagemapBits) {
  namespace pm = pagemap_bits;
  AddressSpace as;
  map_anon(as, 0, 3, kRw);
  auto f = File::make("f", 16 * P, {});
  ASSERT_TRUE(as.mmap(pg(4), P, kProtRead, kMapPrivate | kMapFixed, f, 0).ok());
  ASSERT_TRUE(as.install(special(pg(6), pg(7), vmf::kPfnMap)).ok());
  touch(as, pg(0), true);   // anonymous
  touch(as, pg(1), false);  // zero page
  touch(as, pg(4), false);  // file page
  touch(as, pg(6), false);  // pfnmap: reported not present

  auto e = pagemap(as, pg(0), pg(8));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_EQ(e->size(), 8u);
  const uint64_t frame0 = pte::frame(as.page_table().get(pg(0)));
  EXPECT_EQ((*e)[0], pm::kPresent | pm::kExclusive | frame0);
  EXPECT_EQ((*e)[1], pm::kPresent | FrameAllocator::kZeroFrame);
  EXPECT_EQ((*e)[2], 0u);  // VMA, never touched
  EXPECT_EQ((*e)[3], 0u);  // hole
  EXPECT_EQ((*e)[4], pm::kPresent | pm::kFile);
  EXPECT_EQ((*e)[5], 0u);
  EXPECT_EQ((*e)[6], 0u);
  for (uint64_t v : *e) EXPECT_EQ(v & (pm::kSoftDirty | pm::kSwap | pm::kUffdWp), 0u);

  auto unaligned = pagemap(as, pg(0) + 5, pg(1) + 1);  // rounded out to pages
  ASSERT_TRUE(unaligned.ok());
  EXPECT_EQ(*unaligned, (std::vector<uint64_t>{(*e)[0], (*e)[1]}));
}

TEST(Walkers, PagemapAfterForkAndDontneed) {
  namespace pm = pagemap_bits;
  AddressSpace parent;
  map_anon(parent, 0, 2, kRw);
  touch(parent, pg(0), true);
  touch(parent, pg(1), true);
  const uint64_t f0 = pte::frame(parent.page_table().get(pg(0)));
  const uint64_t f1 = pte::frame(parent.page_table().get(pg(1)));

  auto child = parent.fork();
  ASSERT_TRUE(child.ok()) << child.status();
  AddressSpace& c = **child;
  // Copy-on-write: one frame, two page tables: not exclusive on either side.
  auto pe = pagemap(parent, pg(0), pg(2));
  auto ce = pagemap(c, pg(0), pg(2));
  ASSERT_TRUE(pe.ok() && ce.ok());
  EXPECT_EQ(*pe, (std::vector<uint64_t>{pm::kPresent | f0, pm::kPresent | f1}));
  EXPECT_EQ(*ce, *pe);
  auto shared_rows = resident_pages(parent);
  ASSERT_TRUE(shared_rows.ok());
  EXPECT_EQ((*shared_rows)[0].shared, 2u);

  touch(c, pg(0), true);  // the child copies page 0: both sides exclusive now
  const uint64_t copy = pte::frame(c.page_table().get(pg(0)));
  ASSERT_NE(copy, f0);
  ce = pagemap(c, pg(0), pg(2));
  pe = pagemap(parent, pg(0), pg(2));
  ASSERT_TRUE(pe.ok() && ce.ok());
  EXPECT_EQ((*ce)[0], pm::kPresent | pm::kExclusive | copy);
  EXPECT_EQ((*pe)[0], pm::kPresent | pm::kExclusive | f0);
  EXPECT_EQ((*pe)[1], pm::kPresent | f1);  // still shared
  auto child_rows = resident_pages(c);
  ASSERT_TRUE(child_rows.ok());
  EXPECT_EQ((*child_rows)[0].shared, 1u);
  EXPECT_EQ((*child_rows)[0].anonymous, 2u);

  ASSERT_TRUE(c.madvise(pg(1), P, kMadvDontNeed).ok());  // the child drops page 1
  ce = pagemap(c, pg(0), pg(2));
  pe = pagemap(parent, pg(0), pg(2));
  ASSERT_TRUE(pe.ok() && ce.ok());
  EXPECT_EQ((*ce)[1], 0u);
  EXPECT_EQ((*pe)[1], pm::kPresent | pm::kExclusive | f1);  // the parent's alone again
  auto after = resident_pages(c);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0].rss, 1u);
  EXPECT_EQ((*after)[0].anonymous, c.anon_pages(pg(0), pg(2)));
}

TEST(Walkers, ZeroPageOnReadFaultsIsPresentButNotResident) {
  AddressSpace as;
  map_anon(as, 0, 8, kProtRead);
  for (uint64_t i = 0; i < 8; i += 2) touch(as, pg(i), false);
  auto rows = resident_pages(as);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].zero, 4u);
  EXPECT_EQ((*rows)[0].rss, 0u);
  EXPECT_EQ((*rows)[0].anonymous, 0u);
  auto e = pagemap(as, pg(0), pg(8));
  ASSERT_TRUE(e.ok());
  for (uint64_t i = 0; i < 8; ++i)
    EXPECT_EQ((*e)[i], i % 2 ? 0 : pagemap_bits::kPresent | FrameAllocator::kZeroFrame) << i;
}

}  // namespace
}  // namespace rcuvm::testing
