// rcuvm/page_walk.h: walking the page table of an AddressSpace VMA by VMA,
// with caller callbacks (Linux's mm/pagewalk.c), and two walkers built on it:
// per-VMA resident pages (smaps) and a /proc/<pid>/pagemap dump.
//
// What it is
//   walk_page_range() visits [start, end) in address order. Ranges outside any
//   VMA go to pte_hole with depth -1. Each VMA is first offered to test_walk;
//   a walked VMA goes down the page table (ordinary VMAs) or huge page by huge
//   page (hugetlb VMAs), calling the callbacks the ops define.
//
// Synopsis
//   struct Count { uint64_t present = 0; };
//   static constexpr rcuvm::MmWalkOps kOps = {
//       .pte_entry = [](rcuvm::Pte pte, uint64_t, uint64_t, rcuvm::MmWalk& w) {
//         static_cast<Count*>(w.priv)->present += rcuvm::pte::present(pte);
//         return 0;
//       }};
//   Count c;
//   absl::StatusOr<int> r = rcuvm::walk_page_range(space, start, end, kOps, &c);
//
//   auto smaps = rcuvm::resident_pages(space);          // one row per VMA
//   auto pm = rcuvm::pagemap(space, start, end);        // one entry per page
//
// Rules (Linux 6.x walk_page_range_mm, walk_page_test, walk_pgd_range...)
//   Addresses are used as given, as in Linux: pass page-aligned ones.
//   1. start >= end: EINVAL (the walker's own error, as a Status). Otherwise
//      the result is an int: 0 when the walk reached end, or the first
//      non-zero value a callback returned, which stopped the walk.
//   2. Order: strictly ascending addresses, VMA by VMA. A range outside every
//      VMA (before the first, between two, after the last, clipped to
//      [start, end)) is one pte_hole(start, next, -1) call.
//   3. test_walk(start, next) for each VMA (clipped): 0 walks it, a positive
//      value skips it (and is not returned), a negative value stops the walk
//      and is returned.
//   4. Without test_walk, a VM_PFNMAP VMA is not walked: pte_hole(start, next,
//      -1) is called for it when defined. A negative return stops the walk; a
//      positive one is swallowed like a skip (Linux's walk_page_test turns it
//      into "skip", so it is not returned and the walk goes on).
//   5. An ordinary VMA is walked down the page table. A missing table gives
//      one pte_hole per missing entry, clipped: depth 0 (PGD entry, 512 GiB),
//      2 (PUD entry, 1 GiB), 3 (PMD entry: no PTE table, 2 MiB). Depth 1 (P4D)
//      never appears: the level is folded, as on 4-level x86-64. Without
//      pmd_entry and pte_entry an ordinary VMA gets no callback at all, not
//      even pte_hole: with the P4D folded, Linux finds top-level holes in
//      walk_p4d_range, which runs only when a lower handler exists.
//   6. For each PMD with a PTE table: walk.action is reset to kSubtree, then
//      pmd_entry(ptes, addr, next) is called (clipped to the VMA and range).
//      If it sets walk.action = kContinue, the PTEs of that PMD are skipped.
//      Otherwise, if pte_entry is defined, it is called for every PTE of
//      [addr, next), present or not (an empty entry is 0), as Linux does.
//   7. A VM_HUGETLB VMA is walked only when hugetlb_entry is defined, one call
//      per 2 MiB huge page span (clipped), with hmask = ~(2 MiB - 1). Our page
//      table has no huge entries: a span's entry is the PTE of its head page
//      (addr & hmask), and the entry "exists" when the PMD-level table above
//      it does; a span whose table is missing goes to pte_hole(addr, next, -1)
//      instead, like Linux's walk_hugetlb_range when hugetlb_walk finds none.
//      pmd_entry and pte_entry are never called in hugetlb VMAs; without
//      hugetlb_entry a hugetlb VMA gets no callback at all.
//
// Contracts
//   - Locking: walk_page_range takes the address space's mmap mutex for the
//     whole walk (Linux's callers hold mmap_read_lock; ours is one exclusive
//     mutex), so the VMAs and page table do not change under the callbacks,
//     except that lockless faults (AddressSpace::fault) may still fill empty
//     entries of tables that exist.
//   - Callbacks must not call any AddressSpace member that takes the mutex
//     (every system call, touch, maps, find_vma, anon_pages, validate...):
//     absl::Mutex is not reentrant, so that deadlocks. They may read
//     walk.space->page_table() and its frames(), and walk.vma.
//   - walk.vma points to the VMA being walked (null in holes outside VMAs);
//     valid only during the callback.
//
// Not modelled
//   pud_entry/p4d_entry/pgd_entry, pre_vma/post_vma, install_pte,
//   ACTION_AGAIN (nothing splits or frees tables during a walk), swap entries.
#ifndef RCUVM_PAGE_WALK_H_
#define RCUVM_PAGE_WALK_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "rcuvm/address_space.h"
#include "rcuvm/page_table.h"
#include "rcuvm/vma.h"

namespace rcuvm {

// Page-table levels as pte_hole reports them (Linux's depth argument).
inline constexpr int kWalkDepthNoVma = -1;
inline constexpr int kWalkDepthPgd = 0;
inline constexpr int kWalkDepthPud = 2;
inline constexpr int kWalkDepthPmd = 3;

inline constexpr uint64_t kHugePageSize = uint64_t{2} << 20;
inline constexpr uint64_t kPmdSize = uint64_t{2} << 20;

// What the walk does after pmd_entry returns 0 (Linux's walk->action).
enum class WalkAction {
  kSubtree,   // walk the PTEs of this PMD (when pte_entry is defined)
  kContinue,  // the PMD is handled: skip its PTEs
};

// The PTE table behind one PMD entry, read-only: the entries of its 2 MiB.
class PteTableView {
 public:
  explicit PteTableView(const std::atomic<Pte>* entries) : e_(entries) {}
  // The entry of the page holding addr (an address inside this PMD).
  Pte get(uint64_t addr) const {
    return e_[(addr >> kPageShift) & (PageTable::kEntries - 1)].load(std::memory_order_acquire);
  }

 private:
  const std::atomic<Pte>* e_;
};

struct MmWalkOps;

// The state of a walk, passed to every callback (Linux's struct mm_walk).
struct MmWalk {
  AddressSpace* space = nullptr;
  const MmWalkOps* ops = nullptr;
  const Vma* vma = nullptr;  // the VMA walked; null outside VMAs
  void* priv = nullptr;      // the caller's pointer, as given
  WalkAction action = WalkAction::kSubtree;  // pmd_entry may set kContinue
};

// Callbacks; any may be null. Each returns 0 to go on; any other value stops
// the walk and is returned (except as rules 3 and 4 say).
struct MmWalkOps {
  // Every PMD span with a PTE table, [addr, next) within one PMD.
  int (*pmd_entry)(PteTableView ptes, uint64_t addr, uint64_t next, MmWalk& walk) = nullptr;
  // Every PTE of a walked PMD, present or not, [addr, addr + kPageSize).
  int (*pte_entry)(Pte pte, uint64_t addr, uint64_t next, MmWalk& walk) = nullptr;
  // A range with nothing to walk: outside VMAs or a VM_PFNMAP VMA (depth -1)
  // or under a missing table (depth 0, 2, 3).
  int (*pte_hole)(uint64_t addr, uint64_t next, int depth, MmWalk& walk) = nullptr;
  // Every huge page span of a VM_HUGETLB VMA whose table exists (rule 7).
  int (*hugetlb_entry)(Pte pte, uint64_t hmask, uint64_t addr, uint64_t next,
                       MmWalk& walk) = nullptr;
  // Whether to walk a VMA: 0 walk, > 0 skip, < 0 stop with that value.
  int (*test_walk)(uint64_t addr, uint64_t next, MmWalk& walk) = nullptr;
};

// Walks [start, end) by the rules above. Takes the mmap mutex. Errors:
// EINVAL when start >= end.
absl::StatusOr<int> walk_page_range(AddressSpace& space, uint64_t start, uint64_t end,
                                    const MmWalkOps& ops, void* priv);

// --- Walkers

// The resident pages of one VMA (a subset of /proc/<pid>/smaps), in pages.
struct VmaResidency {
  VmaInfo vma;             // the VMA; vma.anon_pages == anonymous
  uint64_t rss = 0;        // mapped pages with a frame or a file page; the
                           // zero page is not counted, as in smaps
  uint64_t anonymous = 0;  // anonymous pages (smaps Anonymous)
  uint64_t file = 0;       // file and shared-anonymous (shmem) pages
  uint64_t zero = 0;       // entries mapping the shared zero page
  uint64_t shared = 0;     // anonymous pages whose frame is also mapped
                           // elsewhere (copy-on-write after fork)
  uint64_t hugetlb = 0;    // base pages mapped in a VM_HUGETLB VMA (smaps
                           // *_Hugetlb; not in rss)
};

// One row per VMA overlapping [start, end) (default: all), counting only the
// pages inside the range. VM_PFNMAP VMAs get a row of zeros (they are not
// walked, as in smaps). Takes the mmap mutex. EINVAL when start >= end.
absl::StatusOr<std::vector<VmaResidency>> resident_pages(AddressSpace& space,
                                                         uint64_t start = 0,
                                                         uint64_t end = UINT64_MAX);

// /proc/<pid>/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
namespace pagemap_bits {
inline constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;  // bits 0-54
inline constexpr uint64_t kSoftDirty = uint64_t{1} << 55;     // always 0 here
inline constexpr uint64_t kExclusive = uint64_t{1} << 56;     // mapped once
inline constexpr uint64_t kUffdWp = uint64_t{1} << 57;        // always 0 here
inline constexpr uint64_t kFile = uint64_t{1} << 61;          // file or shared anon
inline constexpr uint64_t kSwap = uint64_t{1} << 62;          // always 0 here
inline constexpr uint64_t kPresent = uint64_t{1} << 63;
}  // namespace pagemap_bits

// One 64-bit entry per page of [start, end) (start rounded down, end up, to
// pages), as /proc/<pid>/pagemap reads:
//   - not present (holes, VM_PFNMAP VMAs, empty entries): 0;
//   - the zero page: kPresent | its frame (no kFile, no kExclusive: Linux's
//     vm_normal_page() finds no page behind it);
//   - an anonymous page: kPresent | frame, plus kExclusive when its frame's
//     reference count is 1 (only this page table maps it);
//   - a file or shmem page: kPresent | kFile, frame 0 (no page cache here),
//     and never kExclusive (we do not count file page mappings).
// Takes the mmap mutex. EINVAL when start >= end.
absl::StatusOr<std::vector<uint64_t>> pagemap(AddressSpace& space, uint64_t start, uint64_t end);

}  // namespace rcuvm

#endif  // RCUVM_PAGE_WALK_H_
