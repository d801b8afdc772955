// src/vm/merge.h: merging and splitting VMAs the way Linux 6.18 does
// (mm/vma.c after the merge rework): one path for a new range, one for a
// range of an existing VMA whose flags change, both driven by MergeState.
//
// Rules (all must hold for a range to join a neighbour):
//   - neither side is special (VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP);
//   - same flags, same file, same name;
//   - page offsets contiguous (for anonymous memory too: the hidden offset);
//   - anon_vmas compatible: one side has none, or both have the same one
//     (and when joining both neighbours, prev's and next's are compatible);
//   - a VMA that the merge would delete has no close hook.
#ifndef RCUVM_SRC_VM_MERGE_H_
#define RCUVM_SRC_VM_MERGE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "vm/mm.h"

namespace rcuvm::vm {

// The question "may [start, end) with these properties join prev and/or
// next?" and, after a merge, its answer.
struct MergeState {
  Vma* prev = nullptr;    // the VMA before the range (may end before start)
  Vma* middle = nullptr;  // existing-range merges: the VMA holding the range
  Vma* next = nullptr;    // the VMA after the range (may start after end)
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t pgoff = 0;     // page offset of start
  VmFlags flags = 0;      // the flags the range will have
  std::shared_ptr<File> file;
  std::shared_ptr<AnonVma> anon_vma;
  const VmaOps* ops = nullptr;
  std::string name;

  enum class Result { kNoMerge, kMerged, kNoMem };
  Result result = Result::kNoMerge;
};

// Describes [start, end) of `middle` (VMG_VMA_STATE): its properties, with
// prev as given and next unset.
MergeState state_of(Vma* prev, Vma* middle, uint64_t start, uint64_t end);

// Expands prev and/or next over a new, empty range. Returns the VMA now
// covering the range, or null (result kNoMerge, or kNoMem: nothing changed).
Vma* merge_new_range(Txn& txn, MergeState& ms);

// Changes [ms.start, ms.end) of ms.middle to ms.flags: merges it into prev,
// next or both where allowed, else splits middle so that the range is one VMA.
// Returns that VMA with its flags not yet set (the caller sets them).
// Errors: ENOMEM for the map_count limit (Linux), or an allocation failure
// (txn.oom()).
absl::StatusOr<Vma*> modify_range(Txn& txn, MergeState& ms);

// Like modify_range, then sets the flags of the resulting VMA.
absl::StatusOr<Vma*> modify_flags(Txn& txn, Vma* prev, Vma* vma, uint64_t start, uint64_t end,
                                  VmFlags flags);

// Splits vma at addr into two VMAs. With new_below the new VMA is the lower
// part and vma keeps the upper; otherwise vma keeps the lower part.
// `check_count`: refuse with ENOMEM at the map_count limit (split_vma).
absl::Status split_vma(Txn& txn, Vma* vma, uint64_t addr, bool new_below, bool check_count);

// Gives v the range [start, end) and page offset pgoff in fields and tree.
absl::Status set_range(Txn& txn, Vma* v, uint64_t start, uint64_t end, uint64_t pgoff);

// Takes v out of the accounting of VMAs (its tree range is overwritten or
// cleared by the caller) and retires it on commit.
void drop_vma(Txn& txn, Vma* v);

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_MERGE_H_
