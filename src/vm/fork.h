// src/vm/fork.h: duplicating an address space (kernel/fork.c dup_mmap).
#ifndef RCUVM_SRC_VM_FORK_H_
#define RCUVM_SRC_VM_FORK_H_

#include "absl/status/status.h"
#include "vm/mm.h"

namespace rcuvm::vm {

// Fills the empty `child` with a copy of `parent` (both mutexes held): the
// tree is duplicated in O(n) and every entry replaced in place by the child's
// own VMA; VM_DONTCOPY VMAs are dropped, VM_LOCKED is cleared, VM_WIPEONFORK
// VMAs start without pages, and private anonymous pages become copy-on-write
// in both page tables. On ENOMEM the child is empty again and the parent
// unchanged (undo_dup_mmap).
absl::Status dup_mm(Mm& parent, Mm& child);

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_FORK_H_
