// rcuvm/page_table.h: a simulated x86-64 page table (4 levels, 4 KiB pages)
// and the frame allocator behind it.
//
// What it is
//   PageTable maps each user page to one 64-bit entry (a Pte): present, write,
//   anonymous, zero page, file page, and a frame number. Tables are arrays of
//   512 atomic entries; a missing table is allocated and published with one
//   compare-and-swap into its parent entry, and a freed table is retired
//   through RCU, so a lockless walker (the speculative fault path of the next
//   layer) never reads freed memory. FrameAllocator hands out frame numbers
//   with reference counts: copy-on-write after fork shares a frame between
//   page tables, and a frame returns to the allocator when the last
//   reference drops.
//
// Synopsis
//   auto frames = std::make_shared<rcuvm::FrameAllocator>();
//   rcuvm::PageTable pt(frames);
//   auto f = frames->alloc();                              // refcount 1
//   pt.set(addr, pte::make(*f, pte::kPresent | pte::kWrite | pte::kAnon), nullptr);
//   pt.zap(start, end, nullptr);                           // frames put
//   pt.free_tables(start, end, floor, ceiling);            // empty tables go
//
// Contracts
//   - Writers (set, clear, zap, move, free_tables) run under the owner's
//     writer lock (the mmap mutex); get() and for_each() may also run under
//     an rcu::ReadGuard without it.
//   - A PtLog makes a sequence of writes undoable: every changed entry and
//     every created table is recorded; frames dropped by a zap are put only
//     at commit(). rollback() restores the entries in reverse and frees the
//     tables the log created, so an allocation failure changes nothing.
//   - free_tables follows the kernel's floor/ceiling rule (free_pgd_range):
//     a table is freed only when the range it covers lies inside
//     [floor, ceiling), so a table shared with a neighbouring VMA stays; and
//     only when it is empty.
//
// Caveats
//   - File pages are not backed by a page cache: a file PTE records that the
//     page is mapped (kFile), without a frame.
//   - Only 48-bit user addresses (4-level paging).
#ifndef RCUVM_PAGE_TABLE_H_
#define RCUVM_PAGE_TABLE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rcuvm/rcu.h"

namespace rcuvm {

using FrameId = uint64_t;
using Pte = uint64_t;

namespace pte {
inline constexpr Pte kPresent = 0x1;
inline constexpr Pte kWrite = 0x2;
inline constexpr Pte kAnon = 0x4;   // an anonymous page (smaps "Anonymous")
inline constexpr Pte kZero = 0x8;   // the shared zero page, read-only
inline constexpr Pte kFile = 0x10;  // a file or shmem page (no frame)
inline constexpr unsigned kFrameShift = 12;
inline constexpr Pte make(FrameId f, Pte bits) { return (f << kFrameShift) | bits; }
inline constexpr FrameId frame(Pte p) { return p >> kFrameShift; }
inline constexpr bool present(Pte p) { return p & kPresent; }
}  // namespace pte

// Simulated physical memory: frame numbers with reference counts. Shared by
// a process and its forked children. Thread-safe and lock-free: faults on
// many threads allocate and count frames without a common lock.
//
// Frame numbers are 32-bit and reused: a freed frame goes on a free stack
// and is handed out again. Each frame has a slot (its count and its link in
// the free stack) in segments that double in size and are never freed
// before the allocator, so a slot can always be read.
class FrameAllocator {
 public:
  // The shared zero page: never allocated, never freed, not counted.
  static constexpr FrameId kZeroFrame = 1;

  FrameAllocator() = default;
  ~FrameAllocator();
  FrameAllocator(const FrameAllocator&) = delete;
  FrameAllocator& operator=(const FrameAllocator&) = delete;

  // A new frame with one reference. ENOMEM when fault injection says so or
  // when all 2^32 - 2 frame numbers are in use.
  absl::StatusOr<FrameId> alloc();
  void get(FrameId f);
  // Drops a reference; the frame is freed with the last one. Dropping a
  // reference the frame does not have is a caller bug (checked in debug
  // builds, ignored otherwise).
  void put(FrameId f);
  // The frame's references (0 when free).
  uint32_t refcount(FrameId f) const;
  // Frames allocated and not yet freed.
  uint64_t in_use() const { return in_use_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    std::atomic<uint32_t> refs{0};
    std::atomic<uint32_t> next_free{0};  // written before the push (F1)
  };
  static constexpr unsigned kFirstSegmentBits = 12;  // 4096 frames
  static constexpr unsigned kSegments = 32 - kFirstSegmentBits + 1;
  Slot& slot(FrameId f) const;

  // Segment k holds frames [(2^k - 1) << 12, (2^(k+1) - 1) << 12). Set once
  // by compare-and-swap (release), read with acquire.
  mutable std::atomic<Slot*> segments_[kSegments] = {};
  // Frame numbers never handed out start at next_ (fetch_add).
  std::atomic<uint64_t> next_{2};
  // Free stack: low 32 bits the top frame (0: empty), high 32 bits a tag
  // that every change bumps, so a pop cannot be fooled by a frame that left
  // and came back meanwhile (ABA). (F1) a push writes next_free, then
  // publishes with a release CAS; a pop reads it after an acquire load.
  std::atomic<uint64_t> free_top_{0};
  std::atomic<uint64_t> in_use_{0};
};

// The undo record of a sequence of page-table writes (see Contracts).
struct PtLog {
  struct Change {
    uint64_t addr;
    Pte old;
  };
  std::vector<Change> changes;
  std::vector<std::atomic<uint64_t>*> created;  // parent slots of new tables
  std::vector<FrameId> put_on_commit;            // zapped or replaced frames
  std::vector<FrameId> put_on_rollback;          // frames taken by this log
  struct FreeRequest {
    uint64_t start, end, floor, ceiling;
  };
  std::vector<FreeRequest> frees;                // free_tables at commit
};

class PageTable {
 public:
  static constexpr unsigned kLevels = 4;
  static constexpr unsigned kEntries = 512;

  explicit PageTable(std::shared_ptr<FrameAllocator> frames);
  // Puts every frame still mapped and frees every table.
  ~PageTable();
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  FrameAllocator& frames() const { return *frames_; }
  const std::shared_ptr<FrameAllocator>& frames_ptr() const { return frames_; }

  // The entry of the page holding addr (0 when none). Lock-free.
  Pte get(uint64_t addr) const;
  // Sets the entry of page addr, allocating missing tables (published with
  // CAS). ENOMEM leaves the entry unchanged. Does not touch frame counts.
  absl::Status set(uint64_t addr, Pte value, PtLog* log);
  // Makes sure the tables down to the entry of addr exist.
  absl::Status prepare(uint64_t addr, PtLog* log);
  // Clears every present entry in [start, end) and drops its frame (at the
  // log's commit, or at once without a log). Tables stay.
  void zap(uint64_t start, uint64_t end, PtLog* log);
  // Frees the tables of [start, end) by the floor/ceiling rule (ceiling 0:
  // the top of the address space). Empty tables only.
  void free_tables(uint64_t start, uint64_t end, uint64_t floor, uint64_t ceiling);
  // Calls fn(addr, pte) for every present entry in [start, end), in order.
  void for_each(uint64_t start, uint64_t end,
                const std::function<void(uint64_t, Pte)>& fn) const;
  // Anonymous pages mapped in [start, end).
  uint64_t anon_pages(uint64_t start, uint64_t end) const;
  // The kEntries entries of the level-`level` table on the path to addr
  // (level kLevels - 1 is the root, level 0 holds the PTEs), or null when a
  // table above it is missing. For page walks (rcuvm/page_walk.h), in the
  // same context as get(); an entry above level 0 is non-zero exactly when
  // the table below it exists.
  const std::atomic<uint64_t>* table(uint64_t addr, unsigned level) const;
  // Tables allocated (all levels, the root included).
  uint64_t tables() const { return tables_.load(std::memory_order_relaxed); }

  // Ends a log: keeps its writes and puts the frames it released.
  void commit(PtLog& log);
  // Undoes a log completely. free_created=false keeps the tables the log
  // created (they may hold entries lockless faults installed meanwhile).
  void rollback(PtLog& log, bool free_created = true);
  // Replaces the entry of page addr with value if it still equals expected
  // (one CAS), allocating missing tables. Lock-free; for the speculative
  // fault path. ENOMEM when a table cannot be allocated.
  absl::StatusOr<bool> compare_and_set(uint64_t addr, Pte expected, Pte value);

 private:
  struct Table;
  std::atomic<uint64_t>* slot(uint64_t addr, bool create, PtLog* log, absl::Status* status);
  void free_level(Table* t, unsigned level, uint64_t base, uint64_t start, uint64_t end,
                  uint64_t floor, uint64_t ceiling, rcu::DeferredList& gone);
  void destroy(Table* t, unsigned level, rcu::DeferredList& gone);
  void walk(const Table* t, unsigned level, uint64_t base, uint64_t start, uint64_t end,
            const std::function<void(uint64_t, Pte)>& fn) const;

  std::shared_ptr<FrameAllocator> frames_;
  Table* root_;
  std::atomic<uint64_t> tables_{0};
};

}  // namespace rcuvm

#endif  // RCUVM_PAGE_TABLE_H_
