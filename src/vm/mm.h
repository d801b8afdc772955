// src/vm/mm.h: the state behind an AddressSpace (the kernel's mm_struct) and
// the writer transaction every system call runs in.
//
// Interval convention: the VMA layer speaks [start, end); the tree stores
// inclusive [first, last]. Only Txn::store and the lookups below convert.
#ifndef RCUVM_SRC_VM_MM_H_
#define RCUVM_SRC_VM_MM_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "rcuvm/address_space.h"
#include "rcuvm/page_table.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/vma.h"
#include "vm/locks.h"

namespace rcuvm::vm {

class Txn;

struct Mm {
  Mm(const AddressSpaceOptions& o, std::shared_ptr<FrameAllocator> frames)
      : opt(o), pt(std::move(frames)), start_brk(o.start_brk), brk(o.brk) {}

  AddressSpaceOptions opt;
  mutable absl::Mutex mu;  // the mmap lock; also the tree's writer lock
  RangeTree<Vma> tree{TreeOptions{.track_gaps = true, .rcu = true, .external_lock = &mu}};
  // (S1) odd while a writer changes the map; readers that see it move retry.
  // Writers: seq_cst increments in write_begin()/write_end() under mu.
  // Readers: acquire loads before and after their lookup (find_vma_rcu), or a
  // load under install_mu (the speculative fault). It is also the lock
  // sequence of per-VMA locks: a VMA is marked while lock_seq == seq.
  std::atomic<uint64_t> seq{0};
  // (S2) Speculative faults in kSeqCount mode hold it shared while they
  // re-check seq and install a PTE; write_begin() takes and drops it
  // exclusively after making seq odd, so every install that saw the old
  // count is complete (and visible) before the writer reads a PTE, and every
  // later one sees the odd count and backs off.
  absl::Mutex install_mu;
  // Fault and lookup counters (FaultStats). Any thread adds with relaxed
  // atomics to its own shard, so faulting threads do not share a cache
  // line; a reader sums the shards (a moment's snapshot, not atomic).
  class Counters {
   public:
    enum Id {
      kSpeculative, kLocked, kFbMarked, kFbSeq, kFbAnonVma, kFbPteRace, kFbNoVma,
      kFbNomem, kSeqRetries, kLookupRetries, kLookupLocked, kCount
    };
    void add(Id id) { shards_[shard_index()].v[id].fetch_add(1, std::memory_order_relaxed); }
    uint64_t sum(Id id) const {
      uint64_t n = 0;
      for (const Shard& s : shards_) n += s.v[id].load(std::memory_order_relaxed);
      return n;
    }

   private:
    static constexpr unsigned kShards = 16;
    struct alignas(64) Shard {
      std::atomic<uint64_t> v[kCount] = {};
    };
    static unsigned shard_index() {
      static std::atomic<unsigned> next{0};
      thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed) % kShards;
      return mine;
    }
    Shard shards_[kShards];
  } counters;
  // Written under mu; walked locklessly by later layers.
  PageTable pt;

  // Accounting, in pages except map_count.
  uint64_t map_count ABSL_GUARDED_BY(mu) = 0;
  uint64_t total_vm ABSL_GUARDED_BY(mu) = 0;
  uint64_t locked_vm ABSL_GUARDED_BY(mu) = 0;
  // Shared anonymous objects created so far (names "shm1", "shm2"...).
  uint64_t shm_created ABSL_GUARDED_BY(mu) = 0;
  // brk area: [start_brk, brk).
  uint64_t start_brk ABSL_GUARDED_BY(mu);
  uint64_t brk ABSL_GUARDED_BY(mu);

  // --- Writer sections (caller holds mu). Every change a lockless reader
  // could observe happens between write_begin() and write_end().
  void write_begin() {
    seq.fetch_add(1, std::memory_order_seq_cst);  // (S1) odd: change begins
    MuLock drain(&install_mu);                     // (S2) drain installs
  }
  void write_end() { seq.fetch_add(1, std::memory_order_seq_cst); }  // (S1) even
  // Marks v for the current writer section (vma_start_write) and waits for
  // its read-lock holders to leave. Returns false when already marked.
  bool mark(Vma* v);

  // __vm_enough_memory: may one call commit `pages` more pages? (No global
  // commit total is kept: see OvercommitMode.)
  bool enough_memory(uint64_t pages) const {
    if (opt.overcommit == OvercommitMode::kAlways || opt.total_ram_pages == 0) return true;
    return pages <= opt.total_ram_pages + opt.total_swap_pages;
  }
  // Pages of [start, end) inside VMAs already charged (VM_ACCOUNT): what a
  // MAP_FIXED mapping over them does not charge again.
  uint64_t accounted_pages(uint64_t start, uint64_t end) const;

  // --- Lookups; caller holds mu.
  // The VMA containing addr, or null.
  Vma* lookup(uint64_t addr) const { return tree.load(addr); }
  // First VMA with end > addr (find_vma), or null.
  Vma* find(uint64_t addr) const {
    auto e = tree.find(addr);
    return e ? e->value : nullptr;
  }
  // First VMA overlapping [start, end), or null.
  Vma* find_intersection(uint64_t start, uint64_t end) const {
    if (start >= end) return nullptr;
    auto e = tree.find(start, end - 1);
    return e ? e->value : nullptr;
  }
  // Last VMA with start < addr, or null.
  Vma* find_prev(uint64_t addr) const {
    if (addr == 0) return nullptr;
    auto e = tree.find_rev(addr - 1);
    return e ? e->value : nullptr;
  }
  // Every VMA overlapping [start, end), in order.
  std::vector<Vma*> range(uint64_t start, uint64_t end) const;
};

// Everything one system call changes, so that an allocation failure can put
// it all back. Steps: store()/save()/alloc()/remove() record and apply;
// commit() keeps the result and retires removed VMAs after a grace period;
// destroying an uncommitted Txn rolls back (cannot fail: restoring stores
// retry like the kernel's __GFP_NOFAIL until their nodes are allocated).
class Txn {
 public:
  explicit Txn(Mm& mm);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  Mm& mm() { return mm_; }

  // Maps [start, end) to v (null unmaps). ENOMEM (and oom()) on failure.
  absl::Status store(uint64_t start, uint64_t end, Vma* v);
  // Remembers v's fields before the caller changes them (once per VMA).
  void save(Vma* v);
  // Allocates a VMA (not yet in the tree); null and oom() on failure.
  Vma* alloc(const VmaState& init);
  // Marks v as gone from the tree: closed and retired on commit.
  void remove(Vma* v);
  // Write-marks v (per-VMA lock) before this call changes it or its pages;
  // its view is republished when the call ends.
  void mark(Vma* v) {
    if (mm_.mark(v)) touched_.push_back(v);
  }
  // Page-table writes through pt_log(); ENOMEM (and oom()) on failure.
  absl::Status pt_set(uint64_t addr, Pte value);
  // Clears the entries of [start, end); frames are put at commit.
  void zap(uint64_t start, uint64_t end) {
    for (Vma* v : mm_.range(start, end)) mark(v);
    mm_.pt.zap(start, end, &pt_log_);
  }
  // Frees the empty tables of [start, end) at commit (floor/ceiling rule).
  void free_tables(uint64_t start, uint64_t end, uint64_t floor, uint64_t ceiling) {
    pt_log_.frees.push_back({start, end, floor, ceiling});
  }
  // A new frame, given back on rollback; ENOMEM (and oom()) on failure.
  absl::StatusOr<FrameId> alloc_frame();
  // A new anon_vma; null (and oom()) on failure.
  std::shared_ptr<AnonVma> alloc_anon_vma();
  // Calls for an allocation failure; makes the call's result ENOMEM with
  // everything rolled back.
  absl::Status nomem();

  bool oom() const { return oom_; }
  // Page-table writes of this call (undone by a rollback).
  PtLog& pt_log() { return pt_log_; }
  void commit();

 private:
  struct StoreRecord {
    uint64_t start, end;
    std::vector<RangeEntry<Vma>> before;
  };
  void rollback();

  Mm& mm_;
  bool committed_ = false;
  bool oom_ = false;
  std::vector<StoreRecord> stores_;
  std::vector<std::pair<Vma*, VmaState>> saved_;
  std::vector<Vma*> allocated_;
  std::vector<Vma*> removed_;
  std::vector<Vma*> touched_;  // marked in this call
  PtLog pt_log_;
  uint64_t map_count_, total_vm_, locked_vm_, shm_created_, brk_;
};

// Runs body(txn) as one writer transaction under mm.mu: commits unless an
// allocation failed, in which case everything is rolled back and the result
// is ENOMEM.
template <typename R, typename Fn>
R run_txn(Mm& mm, Fn&& body) {
  MuLock lock(&mm.mu);
  Txn txn(mm);
  R r = body(txn);
  if (txn.oom()) return txn.nomem();  // ~Txn rolls back
  txn.commit();
  return r;
}

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_MM_H_
