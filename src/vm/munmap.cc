// munmap: split the edge VMAs, then remove the whole range with one store.
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {

absl::Status unmap_range(Txn& txn, uint64_t start, uint64_t end) {
  Mm& mm = txn.mm();
  Vma* first = mm.find_intersection(start, end);
  if (!first) return absl::OkStatus();
  if (start > first->start) {
    // Splitting in the middle leaves one VMA more; refuse at the limit, but
    // let an unmap of an edge pass it (the count drops again at once).
    if (end < first->end && mm.map_count >= mm.opt.max_map_count)
      return errno_error(ENOMEM, "map_count limit");
    absl::Status s = split_vma(txn, first, start, /*new_below=*/true, /*check_count=*/false);
    if (!s.ok()) return s;
  }
  Vma* last = mm.lookup(end - 1);
  if (last && last->end > end) {
    absl::Status s = split_vma(txn, last, end, /*new_below=*/false, /*check_count=*/false);
    if (!s.ok()) return s;
  }
  for (Vma* v : mm.range(start, end)) {
    mm.total_vm -= v->pages();
    if (v->flags & vmf::kLocked) mm.locked_vm -= v->pages();
    drop_vma(txn, v);
  }
  // Tables shared with the neighbours stay: floor is prev's end, ceiling
  // next's start (free_pgtables).
  Vma* prev = mm.find_prev(start);
  Vma* next = mm.find(end);
  if (absl::Status s = txn.store(start, end, nullptr); !s.ok()) return s;
  txn.zap(start, end);
  txn.free_tables(start, end, prev ? prev->end : 0, next ? next->start : 0);
  return absl::OkStatus();
}

absl::Status do_munmap(Txn& txn, uint64_t addr, uint64_t len) {
  const uint64_t task = txn.mm().opt.task_size;
  if (!page_aligned(addr) || addr > task || len > task - addr)
    return errno_error(EINVAL, "munmap: bad range");
  const uint64_t end = addr + page_align(len);
  if (end == addr) return errno_error(EINVAL, "munmap: zero length");
  return unmap_range(txn, addr, end);
}

}  // namespace rcuvm::vm
