// rcuvm/vma.h: one virtual memory area (the kernel's vm_area_struct), its
// flags, and the objects it maps.
//
// What it is
//   A Vma is the half-open range [start, end) of an AddressSpace with the same
//   protection, backing object and flags throughout. VmFlags use the Linux bit
//   values, so a flag set reads the same here as in include/linux/mm.h.
//
// Synopsis
//   auto f = rcuvm::File::make("file1", 4 << 20, {.writable = true});
//   space.mmap(addr, len, kProtRead, kMapShared, f, 0);
//   for (const VmaInfo& v : space.maps()) puts(v.flags_string().c_str());
//
// Contracts
//   - Vma objects belong to their AddressSpace. Fields change only under its
//     mmap mutex; a Vma* found under that mutex stays valid until the mutex is
//     released. Removed Vmas are freed after an RCU grace period.
//   - File, AnonVma and VmaOps are shared (reference counted / static); two
//     VMAs may merge only when they point to the same File and compatible
//     AnonVma, and neither is special (VM_IO, VM_DONTEXPAND, VM_PFNMAP,
//     VM_MIXEDMAP).
//
// Caveats
//   - Anonymous private VMAs keep the kernel's hidden page offset (the address
//     >> 12 at creation, kept across moves once faulted). It is invisible in
//     /proc but decides merges, so it is part of the model.
#ifndef RCUVM_VMA_H_
#define RCUVM_VMA_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "rcuvm/rcu.h"

namespace rcuvm {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

// VMA flags, Linux bit values (include/linux/mm.h).
using VmFlags = uint64_t;
namespace vmf {
inline constexpr VmFlags kRead = 0x1;
inline constexpr VmFlags kWrite = 0x2;
inline constexpr VmFlags kExec = 0x4;
inline constexpr VmFlags kShared = 0x8;
inline constexpr VmFlags kMayRead = 0x10;
inline constexpr VmFlags kMayWrite = 0x20;
inline constexpr VmFlags kMayExec = 0x40;
inline constexpr VmFlags kMayShare = 0x80;
inline constexpr VmFlags kGrowsDown = 0x100;
inline constexpr VmFlags kPfnMap = 0x400;
inline constexpr VmFlags kLocked = 0x2000;
inline constexpr VmFlags kIo = 0x4000;
inline constexpr VmFlags kSeqRead = 0x8000;
inline constexpr VmFlags kRandRead = 0x10000;
inline constexpr VmFlags kDontCopy = 0x20000;
inline constexpr VmFlags kDontExpand = 0x40000;
inline constexpr VmFlags kLockOnFault = 0x80000;
inline constexpr VmFlags kAccount = 0x100000;
inline constexpr VmFlags kNoReserve = 0x200000;
inline constexpr VmFlags kHugetlb = 0x400000;
inline constexpr VmFlags kSync = 0x800000;
inline constexpr VmFlags kWipeOnFork = 0x2000000;
inline constexpr VmFlags kDontDump = 0x4000000;
inline constexpr VmFlags kMixedMap = 0x10000000;
inline constexpr VmFlags kHugePage = 0x20000000;
inline constexpr VmFlags kNoHugePage = 0x40000000;
inline constexpr VmFlags kAccessFlags = kRead | kWrite | kExec;
// Mappings the kernel never merges and never lets change size.
inline constexpr VmFlags kSpecial = kIo | kDontExpand | kPfnMap | kMixedMap;
inline constexpr VmFlags kLockedMask = kLocked | kLockOnFault;
}  // namespace vmf

// Returns the /proc/<pid>/smaps "VmFlags" mnemonics, comma-joined, in the
// kernel's order ("rd,wr,mr,mw,me,ac"), or "-" when no flag is set.
std::string vm_flags_string(VmFlags flags);
// Parses such a string back; unknown mnemonics are ignored.
VmFlags parse_vm_flags(std::string_view text);

// A mapped file: identity (the object itself), size, and how it was opened.
struct File {
  struct Options {
    bool readable = true;
    bool writable = true;
    // The file system advertises MAP_SYNC (ext4, xfs) but the file is not on
    // DAX: MAP_SHARED_VALIDATE|MAP_SYNC is accepted by the flag check and then
    // refused by the file's mmap hook, after the target range was unmapped.
    bool sync_capable = false;
    // A shmem object (tmpfs file or shared anonymous memory).
    bool shmem = false;
  };
  static std::shared_ptr<File> make(std::string name, uint64_t size, Options options);

  std::string name;
  uint64_t size = 0;
  Options options;
};

// The identity of a VMA's anonymous memory (created on the first write fault);
// VMAs sharing one may merge.
struct AnonVma {
  uint64_t id = 0;
};

struct VmaState;

// Behaviour a user attaches to a VMA. A VMA with a close hook is never deleted
// by a merge (the hook must see every VMA that was opened).
struct VmaOps {
  virtual ~VmaOps() = default;
  virtual void open(const VmaState&) const {}
  virtual void close(const VmaState&) const {}
  virtual bool has_close() const { return false; }
};

// The value part of a VMA: everything that a merge compares or a split copies.
struct VmaState {
  uint64_t start = 0;   // first byte
  uint64_t end = 0;     // one past the last byte
  uint64_t pgoff = 0;   // offset in pages into file, or hidden anon offset
  VmFlags flags = 0;
  std::shared_ptr<File> file;
  std::shared_ptr<AnonVma> anon_vma;
  const VmaOps* ops = nullptr;
  std::string name;     // "[heap]", "[stack]"...; empty for none

  uint64_t pages() const { return (end - start) >> kPageShift; }
  // Page offset of `addr` in the backing object.
  uint64_t pgoff_at(uint64_t addr) const { return pgoff + ((addr - start) >> kPageShift); }
  bool is_anonymous() const { return file == nullptr; }
};

// What a lockless reader may know of a VMA: a copy of the fields a fault
// needs, read from the VMA's published view (see Vma::load_view).
struct VmaView {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t pgoff = 0;
  VmFlags flags = 0;
  bool has_file = false;
  uint64_t file_pages = 0;    // the file's size in pages (rounded up)
  bool has_anon_vma = false;
  uint64_t pgoff_at(uint64_t addr) const { return pgoff + ((addr - start) >> kPageShift); }
};

// A VMA as stored in the tree. The VmaState fields change only under the
// mmap mutex, and only after the writer marked the VMA (lock_seq, below), so
// a reader holding the VMA's read lock (readers) reads them safely.
//
// Concurrency rules of the shared fields (labels as in docs/concurrency.md):
//   detached   (V4) release store at commit/rollback, before the mm's (S1)
//              even bump; acquire load by readers after they read-locked.
//   lock_seq   (V1) seq_cst store by a writer marking the VMA (under the
//              mmap mutex); pairs with (V2): the seq_cst load by a reader
//              after its (V3) increment. Store/load order is Dekker's: either
//              the writer sees the reader's count or the reader sees the mark.
//   readers    (V3) seq_cst increment by a reader taking the read lock;
//              release decrement at unlock, which pairs with the writer's
//              acquire (seq_cst) load while it waits for readers to drain.
//   refs       (V5) the tree holds one reference; find_vma_rcu handles take
//              more (CAS, never from 0); the last put retires the VMA, so it
//              is freed after it left the tree, its last reference dropped and
//              a grace period passed.
//   view_      (V6) relaxed-free seqlock payload: release stores by the
//              writer while the mm's sequence count is odd; acquire loads by
//              readers, who trust them only if the count did not move, or
//              while they hold the read lock.
//   owner      written once before the VMA is first published in a tree.
class Vma : public rcu::Deferred, public VmaState {
 public:
  explicit Vma(const VmaState& s) : VmaState(s) { publish_view(); }
  void reclaim() override { delete this; }

  // Copies the fields into the view readers see. Writer only (mmap mutex).
  void publish_view();
  // The view as last published. Any thread; see (V6) for when to trust it.
  VmaView load_view() const;
  // Takes a reference unless the last one is gone. Inside an rcu::ReadGuard.
  bool try_get();
  // Drops a reference; the last one retires the VMA. Any thread.
  void put();
  // The same, but the last reference adds the VMA to `later`, retired with
  // the rest of that list (one grace-period callback for many VMAs).
  void put(rcu::DeferredList& later);

  std::atomic<bool> detached{false};
  const void* owner = nullptr;
  std::atomic<uint64_t> lock_seq{~uint64_t{0}};
  std::atomic<uint32_t> readers{0};
  std::atomic<uint32_t> refs{1};

 private:
  struct AtomicView {
    std::atomic<uint64_t> start{0}, end{0}, pgoff{0}, flags{0}, file_pages{0};
    std::atomic<uint8_t> bits{0};
  } view_;
};

// A copy of one VMA for readers outside the mutex (maps()).
struct VmaInfo : VmaState {
  uint64_t anon_pages = 0;   // resident anonymous pages
  // "rw-p" as in /proc/<pid>/maps.
  std::string perms() const;
  std::string flags_string() const { return vm_flags_string(flags); }
};

}  // namespace rcuvm

#endif  // RCUVM_VMA_H_
