// rcuvm/address_space.h: AddressSpace, one process's memory map (the kernel's
// mm_struct) with Linux's system-call semantics.
//
// What it is
//   A range tree of Vma* in RCU mode, the mmap mutex every writer holds (it is
//   also the tree's external writer lock), a sequence count bumped around every
//   change, and accounting (map_count with its limit, total_vm, locked_vm).
//   Each call returns the errno Linux 6.18 returns for the same arguments and
//   leaves the map as Linux leaves it, merges and splits included.
//
// Synopsis
//   rcuvm::AddressSpace as;                       // x86-64 defaults
//   auto a = as.mmap(0x10000000, 0x4000, kProtRead | kProtWrite,
//                    kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0);
//   as.mprotect(*a, 0x1000, kProtRead);            // splits, may merge
//   as.munmap(*a, 0x4000);
//   for (const rcuvm::VmaInfo& v : as.maps()) ...;
//
// Contracts
//   - Writers (mmap, munmap, mprotect, mremap, madvise) take the mmap mutex.
//     Readers here (find_vma, maps, ...) take it too; find_vma_rcu,
//     lock_vma_rcu and fault() do not (see docs/concurrency.md).
//   - Errors carry the Linux errno (errno_of()). Like Linux, mprotect and
//     madvise that reach a hole, and a MAP_FIXED mmap whose file hook refuses
//     after the target was unmapped, keep what they did before failing.
//   - An allocation failure of ours (ENOMEM from a VMA or tree-node
//     allocation, see fault_injection.h) changes nothing at all: every call runs
//     as one transaction that is rolled back completely on such a failure.
//
// Caveats
//   - Overcommit: modes 0 (heuristic, against AddressSpaceOptions'
//     total_ram_pages + total_swap_pages) and 1 only; mode 2 needs a
//     machine-wide commit total. Not modelled: RLIMIT_MEMLOCK/DATA/AS,
//     shadow stacks.
#ifndef RCUVM_ADDRESS_SPACE_H_
#define RCUVM_ADDRESS_SPACE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rcuvm/page_table.h"
#include "rcuvm/vma.h"

namespace rcuvm {

// System-call argument values (x86-64 Linux). Named k... so they never collide
// with the macros of <sys/mman.h>.
inline constexpr int kProtNone = 0x0;
inline constexpr int kProtRead = 0x1;
inline constexpr int kProtWrite = 0x2;
inline constexpr int kProtExec = 0x4;
inline constexpr int kProtSem = 0x8;
inline constexpr int kProtGrowsDown = 0x01000000;
inline constexpr int kProtGrowsUp = 0x02000000;

inline constexpr int kMapShared = 0x01;
inline constexpr int kMapPrivate = 0x02;
inline constexpr int kMapSharedValidate = 0x03;
inline constexpr int kMapType = 0x0f;
inline constexpr int kMapFixed = 0x10;
inline constexpr int kMapAnonymous = 0x20;
inline constexpr int kMapGrowsDown = 0x100;
inline constexpr int kMapDenyWrite = 0x800;
inline constexpr int kMapExecutable = 0x1000;
inline constexpr int kMapLocked = 0x2000;
inline constexpr int kMapNoReserve = 0x4000;
inline constexpr int kMapPopulate = 0x8000;
inline constexpr int kMapNonBlock = 0x10000;
inline constexpr int kMapStack = 0x20000;
inline constexpr int kMapHugetlb = 0x40000;
inline constexpr int kMapSync = 0x80000;
inline constexpr int kMapFixedNoReplace = 0x100000;

inline constexpr int kMremapMayMove = 1;
inline constexpr int kMremapFixed = 2;
inline constexpr int kMremapDontUnmap = 4;

inline constexpr int kMadvNormal = 0;
inline constexpr int kMadvRandom = 1;
inline constexpr int kMadvSequential = 2;
inline constexpr int kMadvWillNeed = 3;
inline constexpr int kMadvDontNeed = 4;
inline constexpr int kMadvFree = 8;
inline constexpr int kMadvRemove = 9;
inline constexpr int kMadvDontFork = 10;
inline constexpr int kMadvDoFork = 11;
inline constexpr int kMadvMergeable = 12;
inline constexpr int kMadvUnmergeable = 13;
inline constexpr int kMadvHugePage = 14;
inline constexpr int kMadvNoHugePage = 15;
inline constexpr int kMadvDontDump = 16;
inline constexpr int kMadvDoDump = 17;
inline constexpr int kMadvWipeOnFork = 18;
inline constexpr int kMadvKeepOnFork = 19;
inline constexpr int kMadvCold = 20;
inline constexpr int kMadvPageOut = 21;
inline constexpr int kMadvPopulateRead = 22;
inline constexpr int kMadvPopulateWrite = 23;
inline constexpr int kMadvDontNeedLocked = 24;
inline constexpr int kMadvCollapse = 25;

// The lockless lookup fault() uses. kSeqCount: the mm-wide sequence count
// (any change anywhere makes a speculative fault retry). kPerVma: per-VMA
// read locks (Linux's lock_vma_under_rcu): only a change to the faulting VMA
// makes it fall back.
enum class VmaLockMode { kSeqCount, kPerVma };

// vm.overcommit_memory: may a call commit more memory? Calls charge the pages
// that Linux charges (private writable mappings, shared anonymous memory
// without MAP_NORESERVE, brk, mprotect to writable, mremap growth, stack
// growth, fork's copies of charged VMAs) and fail with ENOMEM when refused.
//   kGuess (0): the heuristic refuses one request larger than RAM + swap.
//   kAlways (1): never refuses.
// Mode 2 (strict accounting against a system-wide commit limit) needs the
// commit total of every process on the machine; it is not modelled.
enum class OvercommitMode { kGuess = 0, kAlways = 1 };

// The layout of the address space; defaults are x86-64 Linux with 4-level
// paging, an 8 MiB stack limit and ASLR off.
struct AddressSpaceOptions {
  uint64_t task_size = 0x7ffffffff000;
  uint64_t mmap_base = 0x7ffff7fff000;
  uint64_t stack_guard_gap = 256 * kPageSize;
  uint64_t mmap_min_addr = 0x1000;
  uint64_t max_map_count = 65530;
  uint64_t stack_rlimit = 8 << 20;
  // The program break area [start_brk, brk); anonymous VMAs touching it are
  // listed as "[heap]". 0: no brk area.
  uint64_t start_brk = 0;
  uint64_t brk = 0;
  // How fault() finds its VMA without the mmap mutex (see VmaLockMode).
  VmaLockMode fault_lock = VmaLockMode::kSeqCount;
  // Overcommit policy, and the machine the heuristic compares a request
  // with (pages). total_ram_pages == 0: no RAM size known, nothing refused.
  OvercommitMode overcommit = OvercommitMode::kGuess;
  uint64_t total_ram_pages = 0;
  uint64_t total_swap_pages = 0;
};

// What a page fault did: resolved it, or the signal Linux would deliver.
enum class FaultResult { kOk, kSigSegv, kSigBus };

// The access that faults.
enum class Access { kRead, kWrite };

// What fault() did, counted since the address space was created.
struct FaultStats {
  uint64_t speculative = 0;  // completed without the mmap mutex
  uint64_t locked = 0;       // completed on the path that takes the mutex
  // Why the speculative attempt gave up (each fallback counts one reason):
  uint64_t fb_marked = 0;    // the VMA was write-marked (kPerVma)
  uint64_t fb_seq = 0;       // the sequence count kept moving
  uint64_t fb_anon_vma = 0;  // the fault needs a new anon_vma (changes the VMA)
  uint64_t fb_pte_race = 0;  // the entry kept changing under the fault
  uint64_t fb_no_vma = 0;    // no usable VMA (hole next to a growsdown VMA...)
  uint64_t fb_nomem = 0;     // an allocation failed
  uint64_t seq_retries = 0;  // speculative attempts retried (not fallbacks)
  // find_vma_rcu: attempts retried because the count was odd or moved, and
  // lookups that gave up on the count and took the mmap mutex.
  uint64_t lookup_retries = 0;
  uint64_t lookup_locked = 0;
  uint64_t fallbacks() const {
    return fb_marked + fb_seq + fb_anon_vma + fb_pte_race + fb_no_vma + fb_nomem;
  }
};

namespace vm {
struct Mm;
}

// A VMA found without the mmap mutex (find_vma_rcu, lock_vma_rcu). Move-only
// RAII: it holds a reference (find_vma_rcu: the VMA is not freed while the
// handle lives, though it may leave the tree) or a read lock (lock_vma_rcu:
// the VMA cannot change while the handle lives, and writers that want to
// change it wait, so drop it soon). The view is a copy of the VMA's fields
// at a moment the lookup validated.
class VmaRef {
 public:
  VmaRef() = default;
  VmaRef(VmaRef&& o) noexcept { *this = std::move(o); }
  VmaRef& operator=(VmaRef&& o) noexcept;
  ~VmaRef() { reset(); }
  VmaRef(const VmaRef&) = delete;
  VmaRef& operator=(const VmaRef&) = delete;

  explicit operator bool() const { return vma_ != nullptr; }
  const VmaView& operator*() const { return view_; }
  const VmaView* operator->() const { return &view_; }
  // The VMA itself; its VmaState fields may be read only while a read-lock
  // handle holds it.
  const Vma* get() const { return vma_; }
  bool read_locked() const { return locked_; }
  // Releases the reference or the read lock.
  void reset();

 private:
  friend class AddressSpace;
  VmaRef(Vma* v, const VmaView& view, bool locked) : vma_(v), view_(view), locked_(locked) {}
  Vma* vma_ = nullptr;
  VmaView view_;
  bool locked_ = false;
};

class AddressSpace {
 public:
  explicit AddressSpace(AddressSpaceOptions options = {});
  // An address space drawing its pages from `frames` (shared with others).
  AddressSpace(AddressSpaceOptions options, std::shared_ptr<FrameAllocator> frames);
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // --- System calls. Each takes the mmap mutex.

  // mmap(addr, len, prot, flags, file, offset). `file` is the descriptor's
  // file, null for a descriptor that is not open (EBADF unless
  // kMapAnonymous). Returns the mapped address. Errors: EINVAL (zero length,
  // unaligned address or offset, no or bad map type, growsdown file),
  // ENOMEM (no room, address beyond task_size, map_count limit), EEXIST
  // (kMapFixedNoReplace collides), EBADF, EACCES (shared writable mapping of a
  // read-only file), EOPNOTSUPP (unknown flags with kMapSharedValidate),
  // EOVERFLOW (offset wraps).
  absl::StatusOr<uint64_t> mmap(uint64_t addr, uint64_t len, int prot, int flags,
                                std::shared_ptr<File> file, uint64_t offset);
  // Unmaps [addr, addr+len). EINVAL: unaligned, zero or out-of-range length.
  absl::Status munmap(uint64_t addr, uint64_t len);
  // Changes protection; splits and merges. ENOMEM: a hole in the range (what
  // came before it stays changed); EACCES: beyond the VMA's VM_MAY* rights;
  // EINVAL: bad prot bits or alignment.
  absl::Status mprotect(uint64_t addr, uint64_t len, int prot);
  // Resizes or moves [old_addr, old_addr+old_len). Returns the new address.
  absl::StatusOr<uint64_t> mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len,
                                  int flags, uint64_t new_addr);
  // Applies advice. Flag advice splits and merges; holes give ENOMEM after the
  // rest was applied; unknown advice EINVAL.
  absl::Status madvise(uint64_t addr, uint64_t len, int advice);

  // brk(addr): moves the program break; returns the new break, or the old
  // one when Linux refuses (below start_brk, no room below the next mapping
  // and its guard gap). ENOMEM only for an allocation failure of ours.
  absl::StatusOr<uint64_t> brk(uint64_t addr);

  // Locks [addr, addr+len) (rounded out to pages) into memory: VM_LOCKED on
  // every VMA, then every page faulted in. ENOMEM: a hole (the parts before
  // it stay locked) or a page that cannot be faulted in; EINVAL: wraps.
  absl::Status mlock(uint64_t addr, uint64_t len);
  // Clears VM_LOCKED; ENOMEM for a hole, as mlock.
  absl::Status munlock(uint64_t addr, uint64_t len);

  // A one-byte access at addr, as a user-space load or store: resolves the
  // fault under the mmap mutex (zero page on a read of private anonymous
  // memory; a new anonymous page and the VMA's anon_vma on a write; a stack
  // below a VM_GROWSDOWN VMA grows, keeping the guard gap). Returns the
  // signal where Linux gives one; ENOMEM only for an allocation failure of
  // ours, which changes nothing.
  absl::StatusOr<FaultResult> touch(uint64_t addr, bool write);

  // Inserts a VMA exactly as described (a special mapping, or the VMAs a
  // process starts with): no merge, no checks beyond EEXIST for an overlap
  // and EINVAL for an empty or unaligned range.
  absl::Status install(const VmaState& vma);

  // --- Lockless readers (any thread, no mmap mutex; see DESIGN.md).

  // The first VMA with end > addr (find_vma), found by the seqlock design:
  // read the sequence count, look up under RCU, take a reference, retry if
  // the count moved. Empty when there is none. After a few attempts that a
  // writer spoiled, it takes the mmap mutex for one locked lookup, so its
  // latency is bounded by one writer call (like a fault's fallback).
  VmaRef find_vma_rcu(uint64_t addr) const;
  // The VMA containing addr, read-locked (lock_vma_under_rcu): empty when
  // there is none, or when it is write-marked by a writer that still holds
  // the mmap mutex (the caller then takes the mutex path).
  VmaRef lock_vma_rcu(uint64_t addr) const;
  // A one-byte access at addr from any thread: speculative first (lockless
  // lookup by options().fault_lock, access check, PTE installed with CAS,
  // validated), falling back to touch() on any doubt. Same results as touch().
  absl::StatusOr<FaultResult> fault(uint64_t addr, Access access);
  FaultStats fault_stats() const;

  // --- Readers under the mmap mutex.

  // First VMA with end > addr, as a copy.
  std::optional<VmaInfo> find_vma(uint64_t addr) const;
  // The VMA containing addr.
  std::optional<VmaInfo> vma_lookup(uint64_t addr) const;
  // Every VMA in address order (a consistent snapshot).
  std::vector<VmaInfo> maps() const;
  // Checks the tree, the VMAs (sorted, non-overlapping, page aligned, tree
  // ranges equal VMA ranges) and the accounting against each other.
  absl::Status validate() const;

  uint64_t map_count() const;
  uint64_t total_vm() const;    // pages
  uint64_t locked_vm() const;   // pages
  // Resident anonymous pages in [start, end).
  uint64_t anon_pages(uint64_t start, uint64_t end) const;
  // The page table (walk it under the mutex or an rcu::ReadGuard).
  const PageTable& page_table() const;
  // Incremented before and after every change (odd while one is under way).
  uint64_t seq() const;
  const AddressSpaceOptions& options() const;

  // Returns an AddressSpace holding the same VMAs, minus those marked
  // VM_DONTCOPY, with VM_LOCKED cleared (what fork() leaves the child), and
  // the private anonymous pages shared copy-on-write (VM_WIPEONFORK VMAs
  // start empty). ENOMEM leaves this space as it was.
  absl::StatusOr<std::unique_ptr<AddressSpace>> fork() const;

  // The internal state (src/vm); for tests and the library only.
  vm::Mm& internal() { return *mm_; }

 private:
  std::unique_ptr<vm::Mm> mm_;
};

}  // namespace rcuvm

#endif  // RCUVM_ADDRESS_SPACE_H_
