// madvise: advice that changes VMA flags runs one existing-range merge per VMA
// part; holes are skipped and reported as ENOMEM at the end, as Linux does.
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

bool advice_valid(int advice) {
  switch (advice) {
    case kMadvNormal: case kMadvRandom: case kMadvSequential: case kMadvWillNeed:
    case kMadvDontNeed: case kMadvFree: case kMadvRemove: case kMadvDontFork:
    case kMadvDoFork: case kMadvMergeable: case kMadvUnmergeable: case kMadvHugePage:
    case kMadvNoHugePage: case kMadvDontDump: case kMadvDoDump: case kMadvWipeOnFork:
    case kMadvKeepOnFork: case kMadvCold: case kMadvPageOut: case kMadvPopulateRead:
    case kMadvPopulateWrite: case kMadvDontNeedLocked: case kMadvCollapse:
    case 100: case 101:  // MADV_HWPOISON, MADV_SOFT_OFFLINE
    case 102: case 103:  // MADV_GUARD_INSTALL, MADV_GUARD_REMOVE
      return true;
    default:
      return false;
  }
}

// The flags `advice` gives vma, or an error for advice the VMA refuses.
// Sets *changes_flags to false for advice that leaves the flags alone.
absl::StatusOr<VmFlags> advised_flags(const Vma* vma, int advice, bool* changes_flags) {
  VmFlags f = vma->flags;
  *changes_flags = true;
  switch (advice) {
    case kMadvNormal: return f & ~(vmf::kRandRead | vmf::kSeqRead);
    case kMadvSequential: return (f & ~vmf::kRandRead) | vmf::kSeqRead;
    case kMadvRandom: return (f & ~vmf::kSeqRead) | vmf::kRandRead;
    case kMadvDontFork: return f | vmf::kDontCopy;
    case kMadvDoFork:
      if (f & vmf::kIo) return errno_error(EINVAL, "madvise: DOFORK on VM_IO");
      return f & ~vmf::kDontCopy;
    case kMadvWipeOnFork:
      if (vma->file || (f & vmf::kShared)) return errno_error(EINVAL, "madvise: WIPEONFORK on shared");
      return f | vmf::kWipeOnFork;
    case kMadvKeepOnFork: return f & ~vmf::kWipeOnFork;
    case kMadvDontDump: return f | vmf::kDontDump;
    case kMadvDoDump:
      if (!(f & vmf::kHugetlb) && (f & vmf::kSpecial)) return errno_error(EINVAL, "madvise: DODUMP");
      return f & ~vmf::kDontDump;
    case kMadvHugePage: return (f & ~vmf::kNoHugePage) | vmf::kHugePage;
    case kMadvNoHugePage: return (f & ~vmf::kHugePage) | vmf::kNoHugePage;
    case kMadvDontNeed:
    case kMadvDontNeedLocked: {
      VmFlags forbidden = vmf::kPfnMap | (advice == kMadvDontNeed ? vmf::kLocked : 0);
      if (f & forbidden) return errno_error(EINVAL, "madvise: DONTNEED on locked/pfnmap");
      *changes_flags = false;
      return f;
    }
    default:
      *changes_flags = false;
      return f;
  }
}

}  // namespace

absl::Status do_madvise(Txn& txn, uint64_t start, uint64_t len_in, int advice) {
  Mm& mm = txn.mm();
  if (!advice_valid(advice) || !page_aligned(start)) return errno_error(EINVAL, "madvise: bad args");
  const uint64_t len = page_align(len_in);
  if (len_in && !len) return errno_error(EINVAL, "madvise: length wraps");
  const uint64_t end = start + len;
  if (end < start) return errno_error(EINVAL, "madvise: range wraps");
  if (end == start) return absl::OkStatus();

  bool unmapped = false;
  Vma* vma = mm.find(start);
  Vma* prev = mm.find_prev(start);
  if (vma && start > vma->start) prev = vma;
  while (true) {
    if (!vma) return errno_error(ENOMEM, "madvise: hole");
    if (start < vma->start) {
      unmapped = true;  // a gap: carry on, report it at the end
      start = vma->start;
      if (start >= end) break;
    }
    const uint64_t part_end = std::min(vma->end, end);
    bool changes = false;
    auto flags = advised_flags(vma, advice, &changes);
    if (!flags.ok()) return flags.status();
    if (advice == kMadvDontNeed || advice == kMadvDontNeedLocked) txn.zap(start, part_end);
    if (changes && *flags != vma->flags) {
      auto r = modify_flags(txn, prev, vma, start, part_end, *flags);
      if (!r.ok()) return r.status();
      vma = *r;
    }
    prev = vma;
    const uint64_t done = std::max(part_end, vma->end);
    if (done >= end) break;
    start = done;
    vma = mm.find(start);
  }
  return unmapped ? errno_error(ENOMEM, "madvise: hole") : absl::OkStatus();
}

}  // namespace rcuvm::vm
