// Page walks (see rcuvm/page_walk.h for the rules this file numbers).
//
// The walk runs entirely under the mmap mutex: the VMAs cannot change and no
// table can be freed (tables are freed only by writers, at commit), so a
// table found non-null stays valid for the whole walk. Lockless faults may
// still create tables and fill empty entries meanwhile; every slot and entry
// is read with an acquire load (P2 in page_table.cc), which pairs with the CAS
// that published the table (P1) or installed the entry (P3), so such a table
// or entry is seen whole.
#include "rcuvm/page_walk.h"

#include <algorithm>
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/locks.h"
#include "vm/mm.h"

namespace rcuvm {
namespace {

// 4-level paging maps [0, 2^48); the table indices wrap above it.
constexpr uint64_t kPagedTop = uint64_t{1} << 48;
constexpr uint64_t kHugeMask = ~(kHugePageSize - 1);

constexpr unsigned shift_of(unsigned level) { return kPageShift + 9 * level; }
constexpr unsigned index_of(uint64_t addr, unsigned level) {
  return (addr >> shift_of(level)) & (PageTable::kEntries - 1);
}
// The end of the level-`level` span holding addr, or end if that comes first
// (the kernel's pXd_addr_end; the boundary may wrap to 0 at the top).
uint64_t span_end(uint64_t addr, uint64_t end, unsigned level) {
  const uint64_t boundary = (addr | ((uint64_t{1} << shift_of(level)) - 1)) + 1;
  return boundary - 1 < end - 1 ? boundary : end;
}
// The pte_hole depth of a missing entry in a level-`level` table (rule 5):
// root (PGD, the folded P4D) 0, PUD 2, PMD 3.
constexpr int depth_of(unsigned level) {
  return level == 3 ? kWalkDepthPgd : level == 2 ? kWalkDepthPud : kWalkDepthPmd;
}

class Walker {
 public:
  Walker(const PageTable& pt, MmWalk& walk) : pt_(pt), w_(walk), ops_(*walk.ops) {}

  int hole(uint64_t addr, uint64_t next, int depth) {
    return ops_.pte_hole ? ops_.pte_hole(addr, next, depth, w_) : 0;
  }

  // Rules 3 and 4: 0 walk, > 0 skip, < 0 stop.
  int test(uint64_t addr, uint64_t next) {
    if (ops_.test_walk) return ops_.test_walk(addr, next, w_);
    if (w_.vma->flags & vmf::kPfnMap) {
      // No pages behind a pfnmap to walk; hole-aware callers still see it.
      const int err = hole(addr, next, kWalkDepthNoVma);
      return err ? err : 1;
    }
    return 0;
  }

  // The part of walk.vma in [addr, end) (rules 5 to 7).
  int walk_vma(uint64_t addr, uint64_t end) {
    if (w_.vma->flags & vmf::kHugetlb) return ops_.hugetlb_entry ? walk_hugetlb(addr, end) : 0;
    if (!ops_.pmd_entry && !ops_.pte_entry) return 0;
    const uint64_t paged_end = std::min(end, kPagedTop);
    if (addr < paged_end) {
      if (int err = walk_table(PageTable::kLevels - 1, addr, paged_end)) return err;
    }
    // Beyond what the tables can map: one missing top-level entry.
    return end > paged_end ? hole(std::max(addr, paged_end), end, kWalkDepthPgd) : 0;
  }

 private:
  // [addr, end) inside one level-`level` table (levels 3 to 1).
  int walk_table(unsigned level, uint64_t addr, uint64_t end) {
    const std::atomic<uint64_t>* t = pt_.table(addr, level);
    for (uint64_t next; addr != end; addr = next) {
      next = span_end(addr, end, level);
      if (!t || !t[index_of(addr, level)].load(std::memory_order_acquire)) {  // (P2)
        if (int err = hole(addr, next, depth_of(level))) return err;
        continue;
      }
      const int err = level > 1 ? walk_table(level - 1, addr, next) : walk_pmd(addr, next);
      if (err) return err;
    }
    return 0;
  }

  // One PMD span whose PTE table exists (rule 6).
  int walk_pmd(uint64_t addr, uint64_t next) {
    const std::atomic<Pte>* ptes = pt_.table(addr, 0);
    w_.action = WalkAction::kSubtree;
    if (ops_.pmd_entry) {
      if (int err = ops_.pmd_entry(PteTableView(ptes), addr, next, w_)) return err;
    }
    if (w_.action == WalkAction::kContinue || !ops_.pte_entry) return 0;
    for (; addr < next; addr += kPageSize) {
      const Pte pte = ptes[index_of(addr, 0)].load(std::memory_order_acquire);  // (P2)
      if (int err = ops_.pte_entry(pte, addr, addr + kPageSize, w_)) return err;
    }
    return 0;
  }

  // Rule 7: huge page by huge page.
  int walk_hugetlb(uint64_t addr, uint64_t end) {
    for (uint64_t next; addr != end; addr = next) {
      next = span_end(addr, end, 1);
      const uint64_t head = addr & kHugeMask;
      // The huge entry's slot exists when the PMD-level table does.
      const bool slot = head < kPagedTop && pt_.table(head, 1) != nullptr;
      int err;
      if (slot) {
        const std::atomic<Pte>* ptes = pt_.table(head, 0);
        const Pte pte = ptes ? ptes[index_of(head, 0)].load(std::memory_order_acquire) : 0;
        err = ops_.hugetlb_entry(pte, kHugeMask, addr, next, w_);
      } else {
        err = hole(addr, next, kWalkDepthNoVma);
      }
      if (err) return err;
    }
    return 0;
  }

  const PageTable& pt_;
  MmWalk& w_;
  const MmWalkOps& ops_;
};

}  // namespace

absl::StatusOr<int> walk_page_range(AddressSpace& space, uint64_t start, uint64_t end,
                                    const MmWalkOps& ops, void* priv) {
  if (start >= end) return errno_error(EINVAL, "walk_page_range: start >= end");
  vm::Mm& mm = space.internal();
  vm::MuLock lock(&mm.mu);  // the VMAs and tables stay put for the whole walk
  MmWalk walk{.space = &space, .ops = &ops, .priv = priv};
  Walker walker(mm.pt, walk);
  const Vma* vma = mm.find(start);
  int err = 0;
  for (uint64_t next; start < end; start = next) {
    if (!vma || start < vma->start) {  // rule 2: outside every VMA
      next = vma ? std::min(end, vma->start) : end;
      walk.vma = nullptr;
      err = walker.hole(start, next, kWalkDepthNoVma);
    } else {
      next = std::min(end, vma->end);
      walk.vma = vma;
      const Vma* following = mm.find(vma->end);
      err = walker.test(start, next);
      if (err == 0) err = walker.walk_vma(start, next);
      else if (err > 0) err = 0;  // a skip; never returned (rules 3, 4)
      vma = following;
    }
    if (err) break;
  }
  return err;
}

// --- Walkers

namespace {

struct ResidentState {
  std::vector<VmaResidency> rows;
};

int resident_test(uint64_t, uint64_t, MmWalk& w) {
  auto* st = static_cast<ResidentState*>(w.priv);
  VmaResidency row;
  static_cast<VmaState&>(row.vma) = *w.vma;
  st->rows.push_back(std::move(row));
  // smaps has no test_walk, so the default rule skips pfnmaps; keep it.
  return (w.vma->flags & vmf::kPfnMap) ? 1 : 0;
}

int resident_pte(Pte pte, uint64_t, uint64_t, MmWalk& w) {
  if (!pte::present(pte)) return 0;
  VmaResidency& row = static_cast<ResidentState*>(w.priv)->rows.back();
  if (pte & pte::kZero) {
    ++row.zero;  // vm_normal_page() has no page for it: not in Rss
    return 0;
  }
  ++row.rss;
  if (pte & pte::kAnon) {
    ++row.anonymous;
    if (w.space->page_table().frames().refcount(pte::frame(pte)) > 1) ++row.shared;
  } else if (pte & pte::kFile) {
    ++row.file;
  }
  return 0;
}

int resident_hugetlb(Pte, uint64_t hmask, uint64_t addr, uint64_t next, MmWalk& w) {
  const std::atomic<Pte>* ptes = w.space->page_table().table(addr & hmask, 0);
  if (!ptes) return 0;
  PteTableView view(ptes);
  VmaResidency& row = static_cast<ResidentState*>(w.priv)->rows.back();
  for (uint64_t a = addr; a < next; a += kPageSize) row.hugetlb += pte::present(view.get(a));
  return 0;
}

constexpr MmWalkOps kResidentOps = {
    .pte_entry = resident_pte, .hugetlb_entry = resident_hugetlb, .test_walk = resident_test};

struct PagemapState {
  uint64_t base;
  std::vector<uint64_t> out;
};

uint64_t pagemap_entry(Pte pte, const FrameAllocator& frames) {
  namespace pm = pagemap_bits;
  if (!pte::present(pte)) return 0;
  uint64_t e = pm::kPresent;
  if (pte & pte::kZero) {
    e |= pte::frame(pte) & pm::kPfnMask;
  } else if (pte & pte::kAnon) {
    e |= pte::frame(pte) & pm::kPfnMask;
    if (frames.refcount(pte::frame(pte)) == 1) e |= pm::kExclusive;
  } else if (pte & pte::kFile) {
    e |= pm::kFile;
  }
  return e;
}

int pagemap_pte(Pte pte, uint64_t addr, uint64_t, MmWalk& w) {
  auto* st = static_cast<PagemapState*>(w.priv);
  st->out[(addr - st->base) >> kPageShift] = pagemap_entry(pte, w.space->page_table().frames());
  return 0;
}

int pagemap_hugetlb(Pte, uint64_t hmask, uint64_t addr, uint64_t next, MmWalk& w) {
  const std::atomic<Pte>* ptes = w.space->page_table().table(addr & hmask, 0);
  if (!ptes) return 0;  // the entries stay 0: not present
  PteTableView view(ptes);
  for (uint64_t a = addr; a < next; a += kPageSize) pagemap_pte(view.get(a), a, 0, w);
  return 0;
}

// Holes, pfnmaps and empty tables need no callback: the output starts as
// zeros, which is "not present".
constexpr MmWalkOps kPagemapOps = {.pte_entry = pagemap_pte, .hugetlb_entry = pagemap_hugetlb};

}  // namespace

absl::StatusOr<std::vector<VmaResidency>> resident_pages(AddressSpace& space, uint64_t start,
                                                         uint64_t end) {
  ResidentState st;
  absl::StatusOr<int> r = walk_page_range(space, start, end, kResidentOps, &st);
  if (!r.ok()) return r.status();
  for (VmaResidency& row : st.rows) row.vma.anon_pages = row.anonymous;
  return std::move(st.rows);
}

absl::StatusOr<std::vector<uint64_t>> pagemap(AddressSpace& space, uint64_t start, uint64_t end) {
  if (start >= end) return errno_error(EINVAL, "pagemap: start >= end");
  start &= ~(kPageSize - 1);
  if (end > UINT64_MAX - (kPageSize - 1)) return errno_error(EINVAL, "pagemap: end too high");
  end = (end + kPageSize - 1) & ~(kPageSize - 1);
  PagemapState st{.base = start, .out = std::vector<uint64_t>((end - start) >> kPageShift)};
  absl::StatusOr<int> r = walk_page_range(space, start, end, kPagemapOps, &st);
  if (!r.ok()) return r.status();
  return std::move(st.out);
}

}  // namespace rcuvm
