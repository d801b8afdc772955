// mprotect: walk the VMAs of the range, change each part's protection with one
// existing-range merge; stop at the first hole (ENOMEM) or refused VMA with
// the earlier parts already changed, as Linux does.
#include <cerrno>
#include <utility>
#include <vector>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

// mprotect_fixup: accounting flag, then merge or split, then the flags.
absl::Status fixup(Txn& txn, Vma* vma, Vma** pprev, uint64_t start, uint64_t end,
                   VmFlags newflags) {
  const VmFlags old = vma->flags;
  if (newflags == old) {
    *pprev = vma;
    return absl::OkStatus();
  }
  // Making private memory writable charges it; making it read-only again
  // gives the charge back only while no anonymous page exists.
  if (newflags & vmf::kWrite) {
    if (!(old & (vmf::kAccount | vmf::kWrite | vmf::kHugetlb | vmf::kShared | vmf::kNoReserve))) {
      if (!txn.mm().enough_memory((end - start) >> kPageShift))
        return errno_error(ENOMEM, "mprotect: overcommit");
      newflags |= vmf::kAccount;
    }
  } else if ((old & vmf::kAccount) && vma->is_anonymous() && !vma->anon_vma) {
    newflags &= ~vmf::kAccount;
  }
  auto r = modify_flags(txn, *pprev, vma, start, end, newflags);
  if (!r.ok()) return r.status();
  *pprev = *r;
  // change_protection: no entry may stay more permissive than its VMA.
  if ((old & vmf::kWrite) && !(newflags & vmf::kWrite)) {
    std::vector<std::pair<uint64_t, Pte>> writable;
    txn.mm().pt.for_each(start, end, [&](uint64_t a, Pte p) {
      if (p & pte::kWrite) writable.emplace_back(a, p);
    });
    for (auto [a, p] : writable)
      if (absl::Status s = txn.pt_set(a, p & ~pte::kWrite); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status do_mprotect(Txn& txn, uint64_t start, uint64_t len, int prot) {
  Mm& mm = txn.mm();
  const int grows = prot & (kProtGrowsDown | kProtGrowsUp);
  prot &= ~(kProtGrowsDown | kProtGrowsUp);
  if (grows == (kProtGrowsDown | kProtGrowsUp)) return errno_error(EINVAL, "mprotect: both grows");
  if (!page_aligned(start)) return errno_error(EINVAL, "mprotect: unaligned");
  if (len == 0) return absl::OkStatus();
  len = page_align(len);
  uint64_t end = start + len;
  if (end <= start) return errno_error(ENOMEM, "mprotect: wraps");
  if (prot & ~(kProtRead | kProtWrite | kProtExec | kProtSem))
    return errno_error(EINVAL, "mprotect: bad prot");

  Vma* vma = mm.find_intersection(start, end);
  if (!vma) return errno_error(ENOMEM, "mprotect: nothing mapped");
  if (grows & kProtGrowsDown) {
    start = vma->start;
    if (!(vma->flags & vmf::kGrowsDown)) return errno_error(EINVAL, "mprotect: not growsdown");
  } else if (grows & kProtGrowsUp) {
    return errno_error(EINVAL, "mprotect: no growsup on x86");
  } else if (vma->start > start) {
    return errno_error(ENOMEM, "mprotect: hole at start");
  }
  Vma* prev = mm.find_prev(vma->start);
  if (start > vma->start) prev = vma;

  uint64_t nstart = start;
  uint64_t tmp = vma->start;
  absl::Status error;
  for (; vma && vma->start < end; vma = mm.find(tmp)) {
    if (vma->start != tmp) return errno_error(ENOMEM, "mprotect: hole");
    VmFlags newflags = prot_to_flags(prot) | (vma->flags & ~vmf::kAccessFlags);
    // The VM_MAY* bits sit 4 above the access bits they allow.
    if ((newflags & ~(newflags >> 4)) & vmf::kAccessFlags)
      return errno_error(EACCES, "mprotect: not allowed");
    tmp = std::min(vma->end, end);
    absl::Status s = fixup(txn, vma, &prev, nstart, tmp, newflags);
    if (!s.ok()) return s;
    tmp = prev->end;  // the VMA now covering the part may reach further
    nstart = tmp;
    if (tmp >= end) break;
  }
  if (tmp < end) return errno_error(ENOMEM, "mprotect: hole at end");
  return absl::OkStatus();
}

}  // namespace rcuvm::vm
