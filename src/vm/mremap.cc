// mremap: shrink in place, grow in place (a new-range merge with the VMA
// itself as prev), or move: copy the VMA to the new place (merging there),
// then unmap the source. MREMAP_FIXED moves of equal size may span several
// VMAs, keeping the gaps between them (Linux 6.17+).
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

enum class RemapType { kNoResize, kShrink, kExpand };

struct Remap {
  uint64_t addr = 0;
  uint64_t old_len = 0;
  uint64_t new_len = 0;
  int flags = 0;
  uint64_t new_addr = 0;
  Vma* vma = nullptr;
  RemapType type = RemapType::kNoResize;
  // |new_len - old_len| as the caller asked (vrm->delta): what a move or an
  // expansion charges when the VMA is accounted.
  uint64_t delta = 0;

  bool implies_new_addr() const { return flags & (kMremapFixed | kMremapDontUnmap); }
};

RemapType remap_type(const Remap& r) {
  if (r.old_len == r.new_len) return RemapType::kNoResize;
  return r.old_len > r.new_len ? RemapType::kShrink : RemapType::kExpand;
}

// check_prep_vma: the checks that need the source VMA.
absl::Status check_prep_vma(Remap& r) {
  const Vma* vma = r.vma;
  if (!vma) return errno_error(EFAULT, "mremap: no VMA at address");
  r.type = remap_type(r);
  if (!r.implies_new_addr()) r.new_addr = r.addr;
  if (r.type != RemapType::kExpand && !r.implies_new_addr()) return absl::OkStatus();
  // Duplicating with old_len 0 only makes sense for shared memory.
  if (!r.old_len && !(vma->flags & (vmf::kShared | vmf::kMayShare)))
    return errno_error(EINVAL, "mremap: old_len 0 of private mapping");
  if ((r.flags & kMremapDontUnmap) && (vma->flags & (vmf::kDontExpand | vmf::kPfnMap)))
    return errno_error(EINVAL, "mremap: DONTUNMAP of special mapping");
  const uint64_t old_len = r.type == RemapType::kShrink ? r.new_len : r.old_len;
  if (old_len > vma->end - r.addr) return errno_error(EFAULT, "mremap: range crosses VMA end");
  if (r.new_len == old_len) return absl::OkStatus();
  const uint64_t pgoff = vma->pgoff_at(r.addr);
  if (pgoff + (r.new_len >> kPageShift) < pgoff) return errno_error(EINVAL, "mremap: offset wraps");
  if (vma->flags & (vmf::kDontExpand | vmf::kPfnMap))
    return errno_error(EFAULT, "mremap: cannot expand special mapping");
  return absl::OkStatus();
}

// copy_vma: a VMA like r.vma over [new_addr, new_addr+new_len), merged with
// its new neighbours when possible.
Vma* copy_vma(Txn& txn, Remap& r) {
  Mm& mm = txn.mm();
  Vma* vma = r.vma;
  const uint64_t addr = r.new_addr, len = r.new_len;
  uint64_t pgoff = vma->pgoff_at(r.addr);
  // Unfaulted anonymous memory takes the offset of its new place, so that
  // it can merge there.
  if (vma->is_anonymous() && !vma->anon_vma) pgoff = addr >> kPageShift;
  MergeState ms = state_of(mm.find_prev(addr), vma, addr, addr + len);
  ms.middle = nullptr;
  ms.pgoff = pgoff;
  ms.next = mm.find(addr);
  const uint64_t src_start = vma->start;
  Vma* merged = merge_new_range(txn, ms);
  if (ms.result == MergeState::Result::kNoMem) return nullptr;
  if (merged) {
    if (src_start >= merged->start && src_start < merged->end) r.vma = merged;
    return merged;
  }
  VmaState st = *vma;
  st.start = addr;
  st.end = addr + len;
  st.pgoff = pgoff;
  Vma* n = txn.alloc(st);
  if (!n) return nullptr;
  if (n->ops) n->ops->open(*n);
  if (!txn.store(n->start, n->end, n).ok()) return nullptr;
  ++mm.map_count;
  return n;
}

// unmap_source_vma: unmap the old range without giving back its charge, so
// the VMAs left on either side keep VM_ACCOUNT.
void unmap_source(Txn& txn, Remap& r) {
  Mm& mm = txn.mm();
  Vma* vma = r.vma;
  const bool accountable = (vma->flags & vmf::kAccount) && !(r.flags & kMremapDontUnmap);
  const uint64_t vm_start = vma->start, vm_end = vma->end;
  if (accountable) {
    txn.save(vma);
    vma->flags &= ~vmf::kAccount;
  }
  const uint64_t end = r.addr + r.old_len;
  if (r.old_len == 0 || !unmap_range(txn, r.addr, end).ok()) return;  // Linux ignores it
  if (accountable) {
    if (vm_start < r.addr) {
      Vma* prev = mm.find_prev(r.addr);
      txn.save(prev);
      prev->flags |= vmf::kAccount;
    }
    if (vm_end > end) {
      Vma* next = mm.find(end);
      txn.save(next);
      next->flags |= vmf::kAccount;
    }
  }
}

// vrm_calc_charge: an accounted VMA charges the growth, or the whole new
// range when the old one stays (MREMAP_DONTUNMAP).
bool enough_memory(const Mm& mm, const Remap& r) {
  if (!(r.vma->flags & vmf::kAccount)) return true;
  const uint64_t bytes = (r.flags & kMremapDontUnmap) ? r.new_len : r.delta;
  return mm.enough_memory(bytes >> kPageShift);
}

absl::StatusOr<uint64_t> move_vma(Txn& txn, Remap& r) {
  Mm& mm = txn.mm();
  if (mm.map_count + 3 >= mm.opt.max_map_count) return errno_error(ENOMEM, "mremap: map_count");
  if (!enough_memory(mm, r)) return errno_error(ENOMEM, "mremap: overcommit");
  Vma* n = copy_vma(txn, r);
  if (!n) return txn.nomem();
  // move_page_tables: the pages go with the mapping.
  if (absl::Status s = move_ptes(txn, r.addr, r.new_addr, std::min(r.old_len, r.new_len));
      !s.ok())
    return s;
  mm.total_vm += r.new_len >> kPageShift;
  if (r.flags & kMremapDontUnmap) {
    // The old range stays mapped (and charged), but no longer locked.
    txn.save(r.vma);
    r.vma->flags &= ~vmf::kLockedMask;
  } else {
    unmap_source(txn, r);
  }
  return r.new_addr;
}

absl::Status set_new_addr(Mm& mm, Remap& r) {
  int map_flags = 0;
  if (r.flags & kMremapFixed) map_flags |= kMapFixed;
  if (r.vma->flags & vmf::kMayShare) map_flags |= kMapShared;
  auto a = get_unmapped_area(mm, r.implies_new_addr() ? r.new_addr : 0, r.new_len, map_flags,
                             r.vma->file.get(), r.vma->pgoff_at(r.addr));
  if (!a.ok()) return a.status();
  r.new_addr = *a;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> mremap_to(Txn& txn, Remap& r) {
  Mm& mm = txn.mm();
  if (r.flags & kMremapFixed) {
    absl::Status s = unmap_range(txn, r.new_addr, r.new_addr + r.new_len);
    if (!s.ok()) return s;
    r.vma = mm.lookup(r.addr);
    if (!r.vma) return errno_error(EFAULT, "mremap: source gone");
  }
  if (r.type == RemapType::kShrink) {
    absl::Status s = unmap_range(txn, r.addr + r.new_len, r.addr + r.old_len);
    if (!s.ok()) return s;
    r.old_len = r.new_len;
    r.vma = mm.lookup(r.addr);
  }
  absl::Status s = set_new_addr(mm, r);
  if (!s.ok()) return s;
  return move_vma(txn, r);
}

absl::StatusOr<uint64_t> expand(Txn& txn, Remap& r) {
  Mm& mm = txn.mm();
  Vma* vma = r.vma;
  const uint64_t delta = r.new_len - r.old_len;
  const uint64_t new_end = vma->end + delta;
  const bool expandable = vma->end - r.addr == r.old_len && new_end > vma->end &&
                          !mm.find_intersection(vma->end, new_end) &&
                          new_end <= mm.opt.task_size;
  if (expandable) {
    if (!enough_memory(mm, r)) return errno_error(ENOMEM, "mremap: overcommit");
    MergeState ms = state_of(vma, vma, vma->end, new_end);
    ms.middle = nullptr;
    ms.next = mm.find(vma->end);
    Vma* merged = merge_new_range(txn, ms);
    if (ms.result == MergeState::Result::kNoMem) return txn.nomem();
    if (!merged) return errno_error(ENOMEM, "mremap: cannot extend");
    mm.total_vm += delta >> kPageShift;
    if (merged->flags & vmf::kLocked) mm.locked_vm += delta >> kPageShift;
    return r.addr;
  }
  if (!(r.flags & kMremapMayMove)) return errno_error(ENOMEM, "mremap: no room to grow");
  absl::Status s = set_new_addr(mm, r);
  if (!s.ok()) return s;
  return move_vma(txn, r);
}

absl::StatusOr<uint64_t> mremap_at(Txn& txn, Remap& r) {
  switch (r.type) {
    case RemapType::kNoResize:
      return r.addr;
    case RemapType::kShrink: {
      absl::Status s = unmap_range(txn, r.addr + r.new_len, r.addr + r.old_len);
      if (!s.ok()) return s;
      return r.addr;
    }
    case RemapType::kExpand:
      return expand(txn, r);
  }
  return errno_error(EINVAL, "mremap: unreachable");
}

// remap_move: every VMA of [addr, addr+len) moves, gaps kept.
absl::StatusOr<uint64_t> remap_move(Txn& txn, const Remap& whole) {
  Mm& mm = txn.mm();
  const uint64_t start = whole.addr, end = whole.addr + whole.old_len;
  uint64_t target = whole.new_addr, last_end = 0;
  absl::StatusOr<uint64_t> res = errno_error(EFAULT, "mremap: nothing mapped");
  bool seen = false;
  for (Vma* vma = mm.find_intersection(start, end); vma;
       vma = mm.find_intersection(last_end, end)) {
    const uint64_t a = std::max(vma->start, start);
    const uint64_t len = std::min(end, vma->end) - a;
    if (!seen && start < vma->start) return errno_error(EFAULT, "mremap: hole at start");
    const uint64_t offset = seen ? vma->start - last_end : 0;
    last_end = vma->end;
    Remap r = whole;
    r.vma = vma;
    r.addr = a;
    r.new_addr = target + offset;
    r.old_len = r.new_len = len;
    r.delta = 0;
    absl::Status s = check_prep_vma(r);
    if (!s.ok()) return s;
    auto moved = mremap_to(txn, r);
    if (!moved.ok()) return moved;
    if (!seen) res = moved;
    seen = true;
    target = *moved + len;
    if (last_end >= end) break;
  }
  return res;
}

}  // namespace

absl::StatusOr<uint64_t> do_mremap(Txn& txn, uint64_t addr, uint64_t old_len, uint64_t new_len,
                                   int flags, uint64_t new_addr) {
  Mm& mm = txn.mm();
  Remap r;
  r.addr = addr;
  r.old_len = page_align(old_len);
  r.new_len = page_align(new_len);
  r.flags = flags;
  r.new_addr = new_addr;
  r.delta = r.new_len > r.old_len ? r.new_len - r.old_len : r.old_len - r.new_len;
  const uint64_t task = mm.opt.task_size;
  if (flags & ~(kMremapFixed | kMremapMayMove | kMremapDontUnmap))
    return errno_error(EINVAL, "mremap: unknown flags");
  if (!page_aligned(addr)) return errno_error(EINVAL, "mremap: unaligned");
  if (!r.new_len) return errno_error(EINVAL, "mremap: zero new length");
  if (r.new_len > task) return errno_error(EINVAL, "mremap: too long");
  if (r.implies_new_addr()) {
    if (new_addr > task - r.new_len) return errno_error(EINVAL, "mremap: target beyond task");
    if (!page_aligned(new_addr)) return errno_error(EINVAL, "mremap: unaligned target");
    if (!(flags & kMremapMayMove)) return errno_error(EINVAL, "mremap: FIXED without MAYMOVE");
    if ((flags & kMremapDontUnmap) && r.old_len != r.new_len)
      return errno_error(EINVAL, "mremap: DONTUNMAP resize");
    if (addr + r.old_len > new_addr && new_addr + r.new_len > addr)
      return errno_error(EINVAL, "mremap: overlap");
    if (mm.map_count + 2 >= mm.opt.max_map_count - 3) return errno_error(ENOMEM, "mremap: map_count");
  }
  if ((flags & kMremapFixed) && r.old_len == r.new_len) return remap_move(txn, r);
  r.vma = mm.lookup(addr);
  absl::Status s = check_prep_vma(r);
  if (!s.ok()) return s;
  return r.implies_new_addr() ? mremap_to(txn, r) : mremap_at(txn, r);
}

}  // namespace rcuvm::vm
