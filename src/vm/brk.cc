// brk: grow the heap by expanding the last VMA of the brk area (or mapping a
// new one), shrink it by unmapping (mm/mmap.c brk, do_brk_flags).
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

// do_brk_flags: map [addr, addr+len) as heap, expanding `prev` when it ends
// at addr (never joining the VMA after the range).
absl::Status brk_map(Txn& txn, Vma* prev, uint64_t addr, uint64_t len) {
  Mm& mm = txn.mm();
  const VmFlags flags = vmf::kRead | vmf::kWrite | vmf::kMayRead | vmf::kMayWrite |
                        vmf::kMayExec | vmf::kAccount;
  if (mm.map_count > mm.opt.max_map_count) return errno_error(ENOMEM, "brk: map_count");
  if (!mm.enough_memory(len >> kPageShift)) return errno_error(ENOMEM, "brk: overcommit");
  Vma* vma = nullptr;
  if (prev && prev->end == addr) {
    MergeState ms;
    ms.prev = prev;
    ms.start = addr;
    ms.end = addr + len;
    ms.pgoff = addr >> kPageShift;
    ms.flags = flags;
    vma = merge_new_range(txn, ms);
    if (ms.result == MergeState::Result::kNoMem) return txn.nomem();
  }
  if (!vma) {
    VmaState st;
    st.start = addr;
    st.end = addr + len;
    st.pgoff = addr >> kPageShift;
    st.flags = flags;
    vma = txn.alloc(st);
    if (!vma) return txn.nomem();
    if (absl::Status s = txn.store(st.start, st.end, vma); !s.ok()) return s;
    ++mm.map_count;
  }
  mm.total_vm += len >> kPageShift;
  return absl::OkStatus();
}

uint64_t start_gap(const Mm& mm, const Vma* v) {
  if (!(v->flags & vmf::kGrowsDown)) return v->start;
  return v->start > mm.opt.stack_guard_gap ? v->start - mm.opt.stack_guard_gap : 0;
}

}  // namespace

absl::StatusOr<uint64_t> do_brk(Txn& txn, uint64_t brk) {
  Mm& mm = txn.mm();
  const uint64_t orig = mm.brk;
  if (brk < mm.start_brk) return orig;
  const uint64_t newbrk = page_align(brk), oldbrk = page_align(mm.brk);
  if (oldbrk == newbrk) {
    mm.brk = brk;
    return brk;
  }
  if (brk <= mm.brk) {  // shrinking is always allowed
    Vma* v = mm.find_intersection(newbrk, oldbrk);
    if (!v || v->start >= oldbrk) return orig;
    absl::Status s = unmap_range(txn, newbrk, oldbrk);
    if (txn.oom()) return s;
    if (!s.ok()) return orig;
    mm.brk = brk;
    return brk;
  }
  // Keep a page and the stack guard gap free above the new break.
  if (Vma* next = mm.find_intersection(oldbrk, newbrk + kPageSize + mm.opt.stack_guard_gap);
      next && newbrk + kPageSize > start_gap(mm, next))
    return orig;
  Vma* prev = oldbrk > mm.start_brk ? mm.find_prev(oldbrk) : nullptr;
  if (prev && prev->end <= mm.start_brk) prev = nullptr;
  absl::Status s = brk_map(txn, prev, oldbrk, newbrk - oldbrk);
  if (txn.oom()) return s;
  if (!s.ok()) return orig;
  mm.brk = brk;
  return brk;
}

}  // namespace rcuvm::vm
