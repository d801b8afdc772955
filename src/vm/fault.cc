// Page faults under the mmap mutex (mm/memory.c, arch/x86/mm/fault.c),
// stack growth (expand_downwards), population (mm/gup.c __mm_populate) and
// mlock/munlock (mm/mlock.c).
#include <algorithm>
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

bool accessible(const Vma* v) { return v->flags & vmf::kAccessFlags; }

// anon_vma_compatible: b follows a directly, same file, flags equal but for
// the access bits, contiguous offsets.
bool anon_vma_compatible(const Vma* a, const Vma* b) {
  return a->end == b->start && a->file == b->file &&
         !((a->flags ^ b->flags) & ~vmf::kAccessFlags) && b->pgoff == a->pgoff + a->pages();
}

// find_mergeable_anon_vma: a neighbour's anon_vma that this VMA may share, so
// that the two can still merge later. next is tried first.
std::shared_ptr<AnonVma> mergeable_anon_vma(Mm& mm, const Vma* vma) {
  if (Vma* next = mm.find(vma->end); next && anon_vma_compatible(vma, next) && next->anon_vma)
    return next->anon_vma;
  if (Vma* prev = mm.find_prev(vma->start);
      prev && anon_vma_compatible(prev, vma) && prev->anon_vma)
    return prev->anon_vma;
  return nullptr;
}

// A new anonymous page at `page` replacing whatever was mapped there.
absl::StatusOr<FaultResult> new_anon_page(Txn& txn, uint64_t page, Pte old) {
  auto f = txn.alloc_frame();
  if (!f.ok()) return f.status();
  if (absl::Status s = txn.pt_set(page, pte::make(*f, pte::kPresent | pte::kWrite | pte::kAnon));
      !s.ok())
    return s;
  if (old & pte::kAnon) txn.pt_log().put_on_commit.push_back(pte::frame(old));
  return FaultResult::kOk;
}

absl::StatusOr<FaultResult> install(Txn& txn, uint64_t page, Pte value) {
  if (absl::Status s = txn.pt_set(page, value); !s.ok()) return s;
  return FaultResult::kOk;
}

}  // namespace

absl::Status anon_vma_prepare(Txn& txn, Vma* vma) {
  if (vma->anon_vma) return absl::OkStatus();
  std::shared_ptr<AnonVma> av = mergeable_anon_vma(txn.mm(), vma);
  if (!av) av = txn.alloc_anon_vma();
  if (!av) return txn.nomem();
  txn.save(vma);
  vma->anon_vma = std::move(av);
  return absl::OkStatus();
}

absl::StatusOr<FaultResult> handle_fault(Txn& txn, Vma* vma, uint64_t addr, bool write) {
  Mm& mm = txn.mm();
  txn.mark(vma);  // lockless faults on this VMA finish first, later ones back off
  const uint64_t page = addr & ~(kPageSize - 1);
  const Pte old = mm.pt.get(page);
  const bool shared = vma->flags & vmf::kShared;
  if (!pte::present(old)) {
    if (vma->file) {
      const uint64_t size_pages = (vma->file->size + kPageSize - 1) >> kPageShift;
      const bool beyond = vma->pgoff_at(page) >= size_pages;
      if (write && !shared) {
        // do_cow_fault: the anon_vma comes first and stays even when the
        // file page turns out to be beyond the end.
        if (absl::Status s = anon_vma_prepare(txn, vma); !s.ok()) return s;
        if (beyond) return FaultResult::kSigBus;
        return new_anon_page(txn, page, old);
      }
      if (beyond) return FaultResult::kSigBus;
      return install(txn, page, pte::make(0, pte::kPresent | pte::kFile | (write ? pte::kWrite : 0)));
    }
    if (!write)  // do_anonymous_page: the zero page, nothing allocated
      return install(txn, page, pte::make(FrameAllocator::kZeroFrame, pte::kPresent | pte::kZero));
    if (absl::Status s = anon_vma_prepare(txn, vma); !s.ok()) return s;
    return new_anon_page(txn, page, old);
  }
  if (!write || (old & pte::kWrite)) return FaultResult::kOk;
  // do_wp_page.
  if (shared) return install(txn, page, old | pte::kWrite);
  if ((old & pte::kAnon) && mm.pt.frames().refcount(pte::frame(old)) == 1)
    return install(txn, page, old | pte::kWrite);  // exclusive: reuse
  if (absl::Status s = anon_vma_prepare(txn, vma); !s.ok()) return s;
  return new_anon_page(txn, page, old);
}

absl::Status expand_downwards(Txn& txn, Vma* vma, uint64_t addr) {
  Mm& mm = txn.mm();
  const uint64_t address = addr & ~(kPageSize - 1);
  if (address < mm.opt.mmap_min_addr) return errno_error(EPERM, "stack: below mmap_min_addr");
  // Enforce the guard gap to an accessible, non-stack VMA below.
  if (Vma* prev = mm.find_prev(vma->start);
      prev && !(prev->flags & vmf::kGrowsDown) && accessible(prev) &&
      address - prev->end < mm.opt.stack_guard_gap)
    return errno_error(ENOMEM, "stack: guard gap");
  if (absl::Status s = anon_vma_prepare(txn, vma); !s.ok()) return s;
  if (address >= vma->start) return absl::OkStatus();
  const uint64_t size = vma->end - address;
  const uint64_t grow = (vma->start - address) >> kPageShift;
  if (grow > vma->pgoff) return errno_error(ENOMEM, "stack: offset underflow");
  // acct_stack_growth: the stack limit, not counting the guard page.
  if (size - kPageSize > mm.opt.stack_rlimit) return errno_error(ENOMEM, "stack: rlimit");
  if (!mm.enough_memory(grow)) return errno_error(ENOMEM, "stack: overcommit");
  if (absl::Status s = set_range(txn, vma, address, vma->end, vma->pgoff - grow); !s.ok())
    return s;
  mm.total_vm += grow;
  if (vma->flags & vmf::kLocked) mm.locked_vm += grow;
  return absl::OkStatus();
}

absl::StatusOr<FaultResult> do_fault(Txn& txn, uint64_t addr, bool write) {
  Mm& mm = txn.mm();
  Vma* vma = mm.find(addr);
  if (!vma) return FaultResult::kSigSegv;
  if (vma->start > addr) {
    if (!(vma->flags & vmf::kGrowsDown)) return FaultResult::kSigSegv;
    absl::Status s = expand_downwards(txn, vma, addr);
    if (txn.oom()) return txn.nomem();
    if (!s.ok()) return FaultResult::kSigSegv;
  }
  // access_error (x86): writes need VM_WRITE, reads any access right.
  if (write ? !(vma->flags & vmf::kWrite) : !accessible(vma)) return FaultResult::kSigSegv;
  return handle_fault(txn, vma, addr, write);
}

namespace {

// populate_vma_page_range: fault in [start, end) of vma as get_user_pages
// does for mlock and MAP_POPULATE. EFAULT when a page cannot be faulted.
absl::Status populate_vma(Txn& txn, Vma* vma, uint64_t start, uint64_t end) {
  if (vma->flags & vmf::kLockOnFault) return absl::OkStatus();
  // Writable private mappings are written to break copy-on-write.
  const bool write = (vma->flags & (vmf::kWrite | vmf::kShared)) == vmf::kWrite;
  const bool force = accessible(vma);
  if (!write && !(vma->flags & vmf::kRead) && (!force || !(vma->flags & vmf::kMayRead)))
    return errno_error(EFAULT, "populate: not readable");
  for (uint64_t page = start; page < end; page += kPageSize) {
    const Pte p = txn.mm().pt.get(page);
    if (pte::present(p) && (!write || (p & pte::kWrite))) continue;
    auto r = handle_fault(txn, vma, page, write);
    if (!r.ok()) return r.status();
    if (*r != FaultResult::kOk) return errno_error(EFAULT, "populate: fault failed");
  }
  return absl::OkStatus();
}

// mlock_fixup: set or clear VM_LOCKED on [start, end) of vma and account it.
absl::Status mlock_fixup(Txn& txn, Vma* vma, Vma** prev, uint64_t start, uint64_t end,
                         VmFlags newflags) {
  const VmFlags old = vma->flags;
  if (newflags == old || (old & vmf::kSpecial) || (old & vmf::kHugetlb)) {
    *prev = vma;  // never locked, never counted
    return absl::OkStatus();
  }
  auto r = modify_flags(txn, *prev, vma, start, end, newflags);
  if (!r.ok()) return r.status();
  const uint64_t pages = (end - start) >> kPageShift;
  if (!(newflags & vmf::kLocked))
    txn.mm().locked_vm -= pages;
  else if (!(old & vmf::kLocked))
    txn.mm().locked_vm += pages;
  *prev = *r;
  return absl::OkStatus();
}

// apply_vma_lock_flags: the VMAs of [start, start+len) get `flags` as their
// lock bits; a hole gives ENOMEM with the parts before it changed.
absl::Status apply_lock_flags(Txn& txn, uint64_t start, uint64_t len, VmFlags flags) {
  Mm& mm = txn.mm();
  const uint64_t end = start + len;
  if (end < start) return errno_error(EINVAL, "mlock: wraps");
  if (end == start) return absl::OkStatus();
  Vma* vma = mm.lookup(start);
  if (!vma) return errno_error(ENOMEM, "mlock: not mapped");
  Vma* prev = mm.find_prev(vma->start);
  if (start > vma->start) prev = vma;
  uint64_t nstart = start, tmp = vma->start;
  for (; vma && vma->start < end; vma = mm.find(tmp)) {
    if (vma->start != tmp) return errno_error(ENOMEM, "mlock: hole");
    const VmFlags newflags = (vma->flags & ~vmf::kLockedMask) | flags;
    tmp = std::min(vma->end, end);
    if (absl::Status s = mlock_fixup(txn, vma, &prev, nstart, tmp, newflags); !s.ok()) return s;
    tmp = prev->end;
    nstart = tmp;
    if (tmp >= end) break;
  }
  if (tmp < end) return errno_error(ENOMEM, "mlock: hole at end");
  return absl::OkStatus();
}

}  // namespace

absl::Status populate(Txn& txn, uint64_t start, uint64_t end, bool ignore_errors) {
  Mm& mm = txn.mm();
  uint64_t nstart = start;
  while (nstart < end) {
    Vma* vma = mm.find_intersection(nstart, end);
    if (!vma) break;
    const uint64_t nend = std::min(end, vma->end);
    if (!(vma->flags & (vmf::kIo | vmf::kPfnMap))) {
      absl::Status s = populate_vma(txn, vma, std::max(nstart, vma->start), nend);
      if (txn.oom()) return txn.nomem();
      if (!s.ok() && !ignore_errors) return s;
    }
    nstart = nend;
  }
  return absl::OkStatus();
}

absl::Status do_mlock(Txn& txn, uint64_t start, uint64_t len, bool lock) {
  len = page_align(len + (start & (kPageSize - 1)));
  start &= ~(kPageSize - 1);
  absl::Status s = apply_lock_flags(txn, start, len, lock ? vmf::kLocked : 0);
  if (!s.ok() || !lock) return s;
  s = populate(txn, start, start + len, /*ignore_errors=*/false);
  if (s.ok() || txn.oom()) return s;
  // __mlock_posix_error_return
  if (errno_of(s) == EFAULT) return errno_error(ENOMEM, "mlock: populate failed");
  if (errno_of(s) == ENOMEM) return errno_error(EAGAIN, "mlock: populate failed");
  return s;
}

absl::Status move_ptes(Txn& txn, uint64_t from, uint64_t to, uint64_t len) {
  // Mark before reading: a lockless fault must not change an entry between
  // the read and the move.
  for (Vma* v : txn.mm().range(from, from + len)) txn.mark(v);
  std::vector<std::pair<uint64_t, Pte>> present;
  txn.mm().pt.for_each(from, from + len, [&](uint64_t a, Pte p) { present.emplace_back(a, p); });
  for (auto [a, p] : present)
    if (absl::Status s = txn.pt_set(a - from + to, p); !s.ok()) return s;
  for (auto [a, p] : present)
    if (absl::Status s = txn.pt_set(a, 0); !s.ok()) return s;
  return absl::OkStatus();
}

}  // namespace rcuvm::vm
