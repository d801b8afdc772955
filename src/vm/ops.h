// src/vm/ops.h: the system calls as functions of a running transaction, and
// the steps they share. Each runs with mm.mu held inside one Txn.
#ifndef RCUVM_SRC_VM_OPS_H_
#define RCUVM_SRC_VM_OPS_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vm/mm.h"

namespace rcuvm::vm {

inline uint64_t page_align(uint64_t x) { return (x + kPageSize - 1) & ~(kPageSize - 1); }
inline bool page_aligned(uint64_t x) { return (x & (kPageSize - 1)) == 0; }

// PROT_* to VM_READ/WRITE/EXEC.
inline VmFlags prot_to_flags(int prot) {
  return (prot & kProtRead ? vmf::kRead : 0) | (prot & kProtWrite ? vmf::kWrite : 0) |
         (prot & kProtExec ? vmf::kExec : 0);
}

// Removes every VMA part in [start, end) (page aligned, start < end):
// splits the edge VMAs, then clears the range (do_vmi_align_munmap).
// ENOMEM when the first split would pass the map_count limit.
absl::Status unmap_range(Txn& txn, uint64_t start, uint64_t end);

// get_unmapped_area: for MAP_FIXED checks addr; otherwise tries the hint and
// then searches top-down below mmap_base.
// `file` and `pgoff` choose THP alignment (file systems with huge pages,
// large anonymous mappings).
absl::StatusOr<uint64_t> get_unmapped_area(Mm& mm, uint64_t addr, uint64_t len, int flags,
                                           const File* file = nullptr, uint64_t pgoff = 0);

absl::StatusOr<uint64_t> do_mmap(Txn& txn, uint64_t addr, uint64_t len, int prot, int flags,
                                 const std::shared_ptr<File>& file, uint64_t offset);
absl::Status do_munmap(Txn& txn, uint64_t addr, uint64_t len);
absl::Status do_mprotect(Txn& txn, uint64_t addr, uint64_t len, int prot);
absl::Status do_madvise(Txn& txn, uint64_t addr, uint64_t len, int advice);
absl::StatusOr<uint64_t> do_mremap(Txn& txn, uint64_t addr, uint64_t old_len, uint64_t new_len,
                                   int flags, uint64_t new_addr);

// brk(addr): the new break, or the old one when refused (brk.cc).
absl::StatusOr<uint64_t> do_brk(Txn& txn, uint64_t brk);

// --- Faults and population (fault.cc).

// Gives vma an anon_vma: a compatible neighbour's, else a new one.
absl::Status anon_vma_prepare(Txn& txn, Vma* vma);
// Resolves a fault at addr in vma (access already checked).
absl::StatusOr<FaultResult> handle_fault(Txn& txn, Vma* vma, uint64_t addr, bool write);
// Grows a VM_GROWSDOWN vma down to addr's page; the Linux errno on refusal.
absl::Status expand_downwards(Txn& txn, Vma* vma, uint64_t addr);
// The fault path: find the VMA (growing a stack), check access, fault.
absl::StatusOr<FaultResult> do_fault(Txn& txn, uint64_t addr, bool write);
// __mm_populate: faults in [start, end); EFAULT for a page that cannot be.
absl::Status populate(Txn& txn, uint64_t start, uint64_t end, bool ignore_errors);
// mlock (lock) or munlock of [start, start+len).
absl::Status do_mlock(Txn& txn, uint64_t start, uint64_t len, bool lock);
// Moves the present entries of [from, from+len) to `to`.
absl::Status move_ptes(Txn& txn, uint64_t from, uint64_t to, uint64_t len);

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_OPS_H_
