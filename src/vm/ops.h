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
absl::StatusOr<uint64_t> get_unmapped_area(Mm& mm, uint64_t addr, uint64_t len, int flags);

absl::StatusOr<uint64_t> do_mmap(Txn& txn, uint64_t addr, uint64_t len, int prot, int flags,
                                 const std::shared_ptr<File>& file, uint64_t offset);
absl::Status do_munmap(Txn& txn, uint64_t addr, uint64_t len);
absl::Status do_mprotect(Txn& txn, uint64_t addr, uint64_t len, int prot);
absl::Status do_madvise(Txn& txn, uint64_t addr, uint64_t len, int advice);
absl::StatusOr<uint64_t> do_mremap(Txn& txn, uint64_t addr, uint64_t old_len, uint64_t new_len,
                                   int flags, uint64_t new_addr);

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_OPS_H_
