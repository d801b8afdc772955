// Merging and splitting of VMAs (see merge.h for the rules).
#include "vm/merge.h"

#include <cerrno>

#include "rcuvm/status.h"

namespace rcuvm::vm {
namespace {

bool can_remove(const Vma* v) { return !v->ops || !v->ops->has_close(); }

// Properties other than the offset and anon_vma agree with neighbour `v`.
bool same_kind(const MergeState& ms, const Vma* v) {
  return v->flags == ms.flags && v->file == ms.file && v->name == ms.name && v->ops == ms.ops;
}

bool anon_compatible(const MergeState& ms, const Vma* v) {
  return !v->anon_vma || !ms.anon_vma || v->anon_vma == ms.anon_vma;
}

// The range may join the end of prev.
bool can_merge_left(const MergeState& ms) {
  const Vma* p = ms.prev;
  return p && p->end == ms.start && same_kind(ms, p) && anon_compatible(ms, p) &&
         p->pgoff + p->pages() == ms.pgoff;
}

// The range may join the start of next; when it also joins prev, prev and next
// must agree on their anon_vma with each other.
bool can_merge_right(const MergeState& ms, bool left) {
  const Vma* n = ms.next;
  if (!n || n->start != ms.end || !same_kind(ms, n) || !anon_compatible(ms, n) ||
      n->pgoff != ms.pgoff + ((ms.end - ms.start) >> kPageShift))
    return false;
  if (!left) return true;
  return !ms.prev->anon_vma || !n->anon_vma || ms.prev->anon_vma == n->anon_vma;
}

// A target that has no anon_vma takes the one of the memory it absorbs.
void inherit_anon(Txn& txn, Vma* target, const std::shared_ptr<AnonVma>& from) {
  if (!target->anon_vma && from) {
    txn.save(target);
    target->anon_vma = from;
  }
}

}  // namespace

MergeState state_of(Vma* prev, Vma* middle, uint64_t start, uint64_t end) {
  MergeState ms;
  ms.prev = prev;
  ms.middle = middle;
  ms.start = start;
  ms.end = end;
  ms.pgoff = middle->pgoff_at(start);
  ms.flags = middle->flags;
  ms.file = middle->file;
  ms.anon_vma = middle->anon_vma;
  ms.ops = middle->ops;
  ms.name = middle->name;
  return ms;
}

absl::Status set_range(Txn& txn, Vma* v, uint64_t start, uint64_t end, uint64_t pgoff) {
  txn.save(v);
  v->start = start;
  v->end = end;
  v->pgoff = pgoff;
  return txn.store(start, end, v);
}

void drop_vma(Txn& txn, Vma* v) {
  txn.remove(v);
  --txn.mm().map_count;
}

Vma* merge_new_range(Txn& txn, MergeState& ms) {
  ms.result = MergeState::Result::kNoMerge;
  if ((ms.flags & vmf::kSpecial) || (!ms.prev && !ms.next)) return nullptr;
  const uint64_t end = ms.end;
  const bool left = can_merge_left(ms);
  const bool right = can_merge_right(ms, left);
  if (!left && !right) return nullptr;

  Vma* target = nullptr;
  Vma* remove = nullptr;
  uint64_t start = ms.start, new_end = ms.end, pgoff = ms.pgoff;
  if (right) {
    //        |<--- range --->|-- next --|     next grows down over the range
    new_end = ms.next->end;
    target = ms.next;
  }
  if (left) {
    //  |-- prev --|<--- range --->|(-- next --)   prev grows over the range
    //                                            (and over next: both)
    start = ms.prev->start;
    pgoff = ms.prev->pgoff;
    target = ms.prev;
    if (right) {
      if (can_remove(ms.next))
        remove = ms.next;
      else
        new_end = end;  // keep next: join prev only
    }
  }
  if (!set_range(txn, target, start, new_end, pgoff).ok()) {
    ms.result = MergeState::Result::kNoMem;
    return nullptr;
  }
  inherit_anon(txn, target, ms.anon_vma);
  if (remove) {
    inherit_anon(txn, target, remove->anon_vma);
    drop_vma(txn, remove);
  }
  ms.result = MergeState::Result::kMerged;
  return target;
}

namespace {

// The merge half of modify_range (vma_merge_existing_range).
Vma* merge_existing_range(Txn& txn, MergeState& ms) {
  ms.result = MergeState::Result::kNoMerge;
  Vma* middle = ms.middle;
  const uint64_t start = ms.start, end = ms.end;
  const bool left_side = start == middle->start;
  const bool right_side = end == middle->end;
  if ((ms.flags & vmf::kSpecial) || (!left_side && !right_side)) return nullptr;

  bool left = left_side && can_merge_left(ms);
  bool right = false;
  if (right_side) {
    ms.next = txn.mm().find(middle->end);
    right = can_merge_right(ms, left);
  }
  if (!left && !right) return nullptr;

  const bool remove_middle = left_side && right_side;
  if (remove_middle && !can_remove(middle)) return nullptr;
  if (left && right && !can_remove(ms.next)) right = false;  // join prev only

  Vma* prev = ms.prev;
  Vma* next = ms.next;
  bool ok = true;
  Vma* result = nullptr;
  if (left && right) {
    //  |<---------------------->|
    //  |-------********---------|
    //    prev   middle   next
    //   extend  delete  delete
    ok = set_range(txn, prev, prev->start, next->end, prev->pgoff).ok();
    if (ok) {
      inherit_anon(txn, prev, next->anon_vma ? next->anon_vma : middle->anon_vma);
      drop_vma(txn, middle);
      drop_vma(txn, next);
    }
    result = prev;
  } else if (left) {
    //  |<------------>|          or  |<---------------->|
    //  |-------*************         |-------***********|
    //    prev     middle               prev    middle
    //   extend    shrink              extend   delete
    ok = set_range(txn, prev, prev->start, end, prev->pgoff).ok();
    if (ok) {
      inherit_anon(txn, prev, middle->anon_vma);
      if (remove_middle) {
        drop_vma(txn, middle);
      } else {
        txn.save(middle);
        middle->pgoff = middle->pgoff_at(end);
        middle->start = end;
      }
    }
    result = prev;
  } else {
    //      |<------------->|    or  |<----------------->|
    //  *************-------|        *************-------|
    //     middle     next              middle     next
    //     shrink    extend             delete    extend
    const uint64_t pglen = (end - start) >> kPageShift;
    if (remove_middle) {
      ok = set_range(txn, next, start, next->end, next->pgoff - pglen).ok();
      if (ok) drop_vma(txn, middle);
    } else {
      txn.save(middle);
      ok = set_range(txn, next, start, next->end, next->pgoff - pglen).ok();
      if (ok) middle->end = start;
    }
    if (ok) inherit_anon(txn, next, middle->anon_vma);
    result = next;
  }
  if (!ok) {
    ms.result = MergeState::Result::kNoMem;
    return nullptr;
  }
  ms.result = MergeState::Result::kMerged;
  return result;
}

}  // namespace

absl::Status split_vma(Txn& txn, Vma* vma, uint64_t addr, bool new_below, bool check_count) {
  Mm& mm = txn.mm();
  if (check_count && mm.map_count >= mm.opt.max_map_count) return errno_error(ENOMEM, "map_count");
  VmaState part = *vma;
  if (new_below) {
    part.end = addr;
  } else {
    part.start = addr;
    part.pgoff = vma->pgoff_at(addr);
  }
  Vma* n = txn.alloc(part);
  if (!n) return txn.nomem();
  absl::Status s = txn.store(n->start, n->end, n);
  if (!s.ok()) return s;
  txn.save(vma);
  if (new_below) {
    vma->pgoff = vma->pgoff_at(addr);
    vma->start = addr;
  } else {
    vma->end = addr;
  }
  ++mm.map_count;
  if (n->ops) n->ops->open(*n);
  return absl::OkStatus();
}

absl::StatusOr<Vma*> modify_range(Txn& txn, MergeState& ms) {
  Vma* vma = ms.middle;
  const uint64_t start = ms.start, end = ms.end;
  if (Vma* merged = merge_existing_range(txn, ms)) return merged;
  if (ms.result == MergeState::Result::kNoMem) return txn.nomem();
  if (vma->start < start) {
    absl::Status s = split_vma(txn, vma, start, /*new_below=*/true, /*check_count=*/true);
    if (!s.ok()) return s;
  }
  if (vma->end > end) {
    absl::Status s = split_vma(txn, vma, end, /*new_below=*/false, /*check_count=*/true);
    if (!s.ok()) return s;
  }
  return vma;
}

absl::StatusOr<Vma*> modify_flags(Txn& txn, Vma* prev, Vma* vma, uint64_t start, uint64_t end,
                                  VmFlags flags) {
  MergeState ms = state_of(prev, vma, start, end);
  ms.flags = flags;
  absl::StatusOr<Vma*> r = modify_range(txn, ms);
  if (!r.ok()) return r;
  txn.save(*r);
  (*r)->flags = flags;
  return r;
}

}  // namespace rcuvm::vm
