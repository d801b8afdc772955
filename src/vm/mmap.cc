// mmap: argument checks in the kernel's order, placement, then mmap_region:
// unmap what was there, try to join a neighbour, else link a new VMA.
#include <cerrno>

#include "rcuvm/status.h"
#include "vm/merge.h"
#include "vm/ops.h"

namespace rcuvm::vm {
namespace {

// Flags that MAP_SHARED silently ignores and MAP_SHARED_VALIDATE refuses
// when they are outside this set (LEGACY_MAP_MASK).
constexpr int kLegacyMapMask = kMapShared | kMapPrivate | kMapFixed | kMapAnonymous |
                               kMapDenyWrite | kMapExecutable | 0x4000000 /*UNINITIALIZED*/ |
                               kMapGrowsDown | kMapLocked | kMapNoReserve | kMapPopulate |
                               kMapNonBlock | kMapStack | kMapHugetlb;

// Start of the gap below v that a new mapping may not use (vm_start_gap).
uint64_t start_gap(const Mm& mm, const Vma* v) {
  if (!(v->flags & vmf::kGrowsDown)) return v->start;
  return v->start > mm.opt.stack_guard_gap ? v->start - mm.opt.stack_guard_gap : 0;
}

// The shared anonymous object behind a MAP_SHARED|MAP_ANONYMOUS mapping.
std::shared_ptr<File> new_shmem_object(Mm& mm, uint64_t len) {
  ++mm.shm_created;
  return File::make("shm" + std::to_string(mm.shm_created), len,
                    {.readable = true, .writable = true, .sync_capable = false, .shmem = true});
}

// mmap_region: [addr, addr+len) is free to (re)use; vm_flags are final except
// for VM_ACCOUNT.
absl::StatusOr<uint64_t> mmap_region(Txn& txn, const std::shared_ptr<File>& file, uint64_t addr,
                                     uint64_t len, VmFlags vm_flags, uint64_t pgoff) {
  Mm& mm = txn.mm();
  const uint64_t end = addr + len;
  // Private writable memory is charged to overcommit accounting, less what
  // the mappings it replaces were charged; shared anonymous memory charges
  // its whole object (shmem_acct_size). A refusal changes nothing: Linux
  // checks before the old mappings go.
  uint64_t charge = 0;
  if ((vm_flags & (vmf::kNoReserve | vmf::kShared | vmf::kWrite)) == vmf::kWrite) {
    vm_flags |= vmf::kAccount;
    charge = (len >> kPageShift) - mm.accounted_pages(addr, end);
  } else if (!file && (vm_flags & vmf::kShared) && !(vm_flags & vmf::kNoReserve)) {
    charge = len >> kPageShift;
  }
  if (charge && !mm.enough_memory(charge)) return errno_error(ENOMEM, "mmap: overcommit");
  absl::Status s = unmap_range(txn, addr, end);
  if (!s.ok()) return s;
  // The file's mmap hook runs after the old mapping is gone; when it refuses,
  // Linux leaves the hole (vms_abort_munmap_vmas).
  if (file && file->options.sync_capable && (vm_flags & vmf::kSync))
    return errno_error(EOPNOTSUPP, "mmap: MAP_SYNC needs DAX");

  MergeState ms;
  ms.prev = mm.find_prev(addr);
  ms.next = mm.find(end);
  ms.start = addr;
  ms.end = end;
  ms.pgoff = pgoff;
  ms.flags = vm_flags;
  ms.file = file;
  Vma* vma = merge_new_range(txn, ms);
  if (ms.result == MergeState::Result::kNoMem) return txn.nomem();
  if (!vma) {
    VmaState st;
    st.start = addr;
    st.end = end;
    st.pgoff = pgoff;
    st.flags = vm_flags;
    st.file = file;
    vma = txn.alloc(st);
    if (!vma) return txn.nomem();
    if (!file && (vm_flags & vmf::kShared)) vma->file = new_shmem_object(mm, len);
    s = txn.store(addr, end, vma);
    if (!s.ok()) return s;
    ++mm.map_count;
  }
  mm.total_vm += len >> kPageShift;
  if (vm_flags & vmf::kLocked) {
    if (vm_flags & vmf::kSpecial) {
      txn.save(vma);
      vma->flags &= ~vmf::kLockedMask;
    } else {
      mm.locked_vm += len >> kPageShift;
    }
  }
  return addr;
}

}  // namespace

namespace {

// unmapped_area_topdown: the highest free [addr, addr+len) below mmap_base,
// keeping the stack guard gap below a VM_GROWSDOWN VMA above it.
absl::StatusOr<uint64_t> search_topdown(Mm& mm, uint64_t len) {
  const uint64_t low = std::max<uint64_t>(kPageSize, mm.opt.mmap_min_addr);
  uint64_t high = std::min(mm.opt.mmap_base, mm.opt.task_size);
  while (true) {
    if (high <= low || high - low < len) return errno_error(ENOMEM, "mmap: no room");
    auto found = mm.tree.find_gap_rev(low, high - 1, len);
    if (!found.ok()) return errno_error(ENOMEM, "mmap: no room");
    const uint64_t gap_end = *found + len - 1;
    Vma* next = mm.find(gap_end + 1);
    if (next && (next->flags & vmf::kGrowsDown) && start_gap(mm, next) <= gap_end) {
      high = start_gap(mm, next);
      continue;
    }
    return *found;
  }
}

// arch_get_unmapped_area_topdown: a hint that fits is taken as it is.
absl::StatusOr<uint64_t> topdown_area(Mm& mm, uint64_t addr, uint64_t len) {
  if (addr) {
    addr = page_align(addr);
    if (mm.opt.task_size - len >= addr) {
      Vma* next = mm.find(addr);
      if (!next || addr + len <= start_gap(mm, next)) return addr;
    }
  }
  return search_topdown(mm, len);
}

// __thp_get_unmapped_area: place a range of at least one huge page so that
// file offset and address agree modulo 2 MiB (searching with the padding).
uint64_t thp_area(Mm& mm, uint64_t addr, uint64_t len, uint64_t off) {
  constexpr uint64_t kHuge = 2 << 20;
  const uint64_t off_end = off + len;
  const uint64_t off_align = (off + kHuge - 1) & ~(kHuge - 1);
  if (off_end <= off_align || off_end - off_align < kHuge) return 0;
  const uint64_t len_pad = len + kHuge;
  if (len_pad < len) return 0;
  auto r = topdown_area(mm, addr, len_pad);
  if (!r.ok()) return 0;
  if (*r == addr) return addr;
  const uint64_t off_sub = (off - *r) & (kHuge - 1);
  if (!off_sub) return *r + kHuge;  // top-down: use the upper end
  return *r + off_sub;
}

}  // namespace

absl::StatusOr<uint64_t> get_unmapped_area(Mm& mm, uint64_t addr, uint64_t len, int flags,
                                           const File* file, uint64_t pgoff) {
  const uint64_t task = mm.opt.task_size;
  if (len > task) return errno_error(ENOMEM, "mmap: length beyond task size");
  if (!(flags & kMapFixed)) {
    constexpr uint64_t kHuge = 2 << 20;
    uint64_t placed = 0;
    if (file && !file->options.shmem) {
      // ext4 and the like: thp_get_unmapped_area.
      placed = thp_area(mm, addr, len, pgoff << kPageShift);
    } else if (!file && !(flags & kMapShared) && !addr && len % kHuge == 0) {
      placed = thp_area(mm, addr, len, 0);  // large anonymous mappings
    }
    if (!placed) {
      auto a = topdown_area(mm, addr, len);
      if (!a.ok()) return a;
      placed = *a;
    }
    addr = placed;
  }
  if (addr > task - len) return errno_error(ENOMEM, "mmap: beyond task size");
  if (!page_aligned(addr)) return errno_error(EINVAL, "mmap: unaligned address");
  return addr;
}

absl::StatusOr<uint64_t> do_mmap(Txn& txn, uint64_t addr, uint64_t len, int prot, int flags,
                                 const std::shared_ptr<File>& file_arg, uint64_t offset) {
  Mm& mm = txn.mm();
  if (!page_aligned(offset)) return errno_error(EINVAL, "mmap: unaligned offset");
  std::shared_ptr<File> file = (flags & kMapAnonymous) ? nullptr : file_arg;
  if (!(flags & kMapAnonymous) && !file) return errno_error(EBADF, "mmap: bad descriptor");
  if (len == 0) return errno_error(EINVAL, "mmap: zero length");
  if (flags & kMapFixedNoReplace) flags |= kMapFixed;
  if (!(flags & kMapFixed)) {
    // round_hint_to_min
    addr &= ~(kPageSize - 1);
    if (addr && addr < mm.opt.mmap_min_addr) addr = page_align(mm.opt.mmap_min_addr);
  }
  len = page_align(len);
  if (len == 0) return errno_error(ENOMEM, "mmap: length overflows");
  uint64_t pgoff = offset >> kPageShift;
  if (pgoff + (len >> kPageShift) < pgoff) return errno_error(EOVERFLOW, "mmap: offset wraps");
  if (mm.map_count > mm.opt.max_map_count) return errno_error(ENOMEM, "mmap: map_count limit");

  VmFlags vm_flags = prot_to_flags(prot) | vmf::kMayRead | vmf::kMayWrite | vmf::kMayExec;
  if (flags & kMapGrowsDown) vm_flags |= vmf::kGrowsDown;
  if (flags & kMapLocked) vm_flags |= vmf::kLocked;
  if (flags & kMapSync) vm_flags |= vmf::kSync;
  if (flags & kMapStack) vm_flags |= vmf::kNoHugePage;

  auto placed = get_unmapped_area(mm, addr, len, flags,
                                  (flags & kMapAnonymous) ? nullptr : file_arg.get(), pgoff);
  if (!placed.ok()) return placed;
  addr = *placed;
  if ((flags & kMapFixedNoReplace) && mm.find_intersection(addr, addr + len))
    return errno_error(EEXIST, "mmap: range in use");

  const int type = flags & kMapType;
  if (file) {
    int mask = kLegacyMapMask | (file->options.sync_capable ? kMapSync : 0);
    switch (type) {
      case kMapShared:
      case kMapSharedValidate:
        if (type == kMapShared) flags &= kLegacyMapMask;
        if (flags & ~mask) return errno_error(EOPNOTSUPP, "mmap: unknown flags");
        if ((prot & kProtWrite) && !file->options.writable)
          return errno_error(EACCES, "mmap: file not open for writing");
        vm_flags |= vmf::kShared | vmf::kMayShare;
        if (!file->options.writable) vm_flags &= ~(vmf::kMayWrite | vmf::kShared);
        [[fallthrough]];
      case kMapPrivate:
        if (!file->options.readable) return errno_error(EACCES, "mmap: file not readable");
        if (vm_flags & vmf::kGrowsDown) return errno_error(EINVAL, "mmap: growsdown file");
        break;
      default:
        return errno_error(EINVAL, "mmap: bad map type");
    }
  } else {
    switch (type) {
      case kMapShared:
        if (vm_flags & vmf::kGrowsDown) return errno_error(EINVAL, "mmap: growsdown shared");
        pgoff = 0;
        vm_flags |= vmf::kShared | vmf::kMayShare;
        break;
      case kMapPrivate:
        pgoff = addr >> kPageShift;  // the hidden offset anon_vma merges use
        break;
      default:
        return errno_error(EINVAL, "mmap: bad map type");
    }
  }
  if (flags & kMapNoReserve) vm_flags |= vmf::kNoReserve;
  auto mapped = mmap_region(txn, file, addr, len, vm_flags, pgoff);
  if (!mapped.ok()) return mapped;
  // MAP_POPULATE (without MAP_NONBLOCK) and MAP_LOCKED fault the range in;
  // errors are ignored (mm_populate).
  if ((vm_flags & vmf::kLocked) || (flags & (kMapPopulate | kMapNonBlock)) == kMapPopulate) {
    absl::Status s = populate(txn, addr, addr + len, /*ignore_errors=*/true);
    if (!s.ok()) return s;
  }
  return mapped;
}

}  // namespace rcuvm::vm
