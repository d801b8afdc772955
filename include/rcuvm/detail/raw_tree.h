// rcuvm/detail/raw_tree.h: the untyped engine behind RangeTree<T>.
// Not for direct use: include rcuvm/range_tree.h. Values are void*; null is
// "empty". See range_tree.h for the contracts of each operation.
#ifndef RCUVM_DETAIL_RAW_TREE_H_
#define RCUVM_DETAIL_RAW_TREE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace rcuvm {

// How a tree is built; fixed at construction.
struct TreeOptions {
  // Allocation mode: internal nodes track the largest null gap of each child,
  // so find_gap()/find_gap_rev() walk straight to a hole (get_unmapped_area).
  bool track_gaps = false;
  // RCU mode: readers may run concurrently with the writer. Outside RCU mode
  // replaced nodes are freed at once and readers must hold the writer lock.
  bool rcu = true;
  // When set, writers serialise on this lock, which the caller holds around
  // every write (checked in debug builds). When null the tree's own mutex is
  // taken by each write.
  absl::Mutex* external_lock = nullptr;
};

// What a tree holds and costs; computed by walking it under the writer lock.
struct TreeStats {
  uint64_t entries = 0;   // non-null ranges
  uint64_t nulls = 0;     // null ranges (gaps), after coalescing
  uint64_t nodes = 0;     // all nodes
  uint64_t leaves = 0;    // leaf nodes
  uint64_t height = 0;    // 0 for an empty tree, 1 for a single leaf
  uint64_t bytes = 0;     // nodes * 256
};

namespace detail {

struct Node;
struct Path;

struct RawEntry {
  uint64_t first = 0;
  uint64_t last = 0;
  void* value = nullptr;
};

// A remembered position: the leaf that held the last answer and where in it.
// Valid only inside the read section (or writer-lock hold) that produced it.
struct RawCursorState {
  const Node* leaf = nullptr;
  uint64_t leaf_min = 0;
  uint64_t leaf_max = 0;
  uint64_t generation = 0; // the tree's write generation when `leaf` was found
  uint64_t index = 0;      // where a cursor without a current entry looks
  // The current entry: the last one a step returned. Steps move from it, and
  // only to entries wholly past it, so one iteration never goes back or
  // overlaps itself even when a writer grew the entry it just returned.
  bool has_entry = false;
  uint64_t entry_first = 0;
  uint64_t entry_last = 0;
};

// The tree's own writer lock (when no external lock is declared): a plain
// mutex. absl::Mutex as some distributions build it runs deadlock detection on
// every Lock(), a lookup under a global lock that cost a write several
// percent; a tree's writers only need mutual exclusion.
class ABSL_LOCKABLE WriterMutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.lock();
    held_.store(true, std::memory_order_relaxed);
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    held_.store(false, std::memory_order_relaxed);
    mu_.unlock();
  }
  // Aborts unless the lock is held (by some thread, as absl::Mutex checks).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK();

 private:
  std::mutex mu_;
  std::atomic<bool> held_{false};
};

// Holds `mu` for a scope when it is not null (absl::MutexLockMaybe's shape).
class ABSL_SCOPED_LOCKABLE WriterLockMaybe {
 public:
  explicit WriterLockMaybe(WriterMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    if (mu_) mu_->Lock();
  }
  ~WriterLockMaybe() ABSL_UNLOCK_FUNCTION() {
    if (mu_) mu_->Unlock();
  }
  WriterLockMaybe(const WriterLockMaybe&) = delete;
  WriterLockMaybe& operator=(const WriterLockMaybe&) = delete;

 private:
  WriterMutex* mu_;
};

class RawTree {
 public:
  explicit RawTree(TreeOptions options = {});
  ~RawTree();
  RawTree(const RawTree&) = delete;
  RawTree& operator=(const RawTree&) = delete;

  // Writers. Each takes the tree's mutex (or requires the external lock).
  absl::Status store(uint64_t first, uint64_t last, void* value);
  absl::Status insert(uint64_t first, uint64_t last, void* value);
  absl::StatusOr<void*> erase(uint64_t index);
  absl::Status bulk_load(std::span<const RawEntry> sorted);
  absl::Status preallocate(size_t nodes);
  uint64_t store_worst_case_nodes() const;
  absl::Status dup_into(RawTree& empty_destination) const;
  void destroy();
  void set_rcu(bool on);

  // Readers. Safe from any thread in RCU mode; each enters its own read section.
  void* load(uint64_t index) const;
  std::optional<RawEntry> find(uint64_t index, uint64_t max) const;
  std::optional<RawEntry> find_rev(uint64_t index, uint64_t min) const;

  // Gap search; requires the writer lock or no concurrent writer.
  absl::StatusOr<uint64_t> find_gap(uint64_t min, uint64_t max, uint64_t size) const;
  absl::StatusOr<uint64_t> find_gap_rev(uint64_t min, uint64_t max, uint64_t size) const;

  // Cursor steps; the caller holds a read guard or the writer lock.
  std::optional<RawEntry> cursor_find(RawCursorState& c, uint64_t max) const;
  std::optional<RawEntry> cursor_find_rev(RawCursorState& c, uint64_t min) const;
  // Replaces the value of the entry the cursor last returned, in place, with one
  // atomic store. Both the old and the new value must be non-null. Requires the
  // writer lock.
  absl::Status cursor_replace(RawCursorState& c, void* value) const;

  // Debug and accounting.
  absl::Status validate() const;
  bool cursor_leaf_usable(const RawCursorState& c, uint64_t index) const;
  std::string dump() const;
  TreeStats stats() const;
  bool empty() const;
  bool in_rcu_mode() const { return options_.rcu; }
  bool tracks_gaps() const { return options_.track_gaps; }
  uint64_t height() const;

  // Locking for callers that batch several operations: while held, writes from
  // this thread must go through the *_locked calls.
  void lock() const ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex_);
  void unlock() const ABSL_UNLOCK_FUNCTION(mutex_);
  void assert_writer_held() const;

  absl::Status store_locked(uint64_t first, uint64_t last, void* value);
  absl::Status insert_locked(uint64_t first, uint64_t last, void* value);
  absl::StatusOr<void*> erase_locked(uint64_t index);

 private:
  friend struct TreeAccess;  // internal helpers in src/tree

  // store_locked() from a walk toward `first` that the caller already did
  // (erase_locked() walks to its index, whose entry starts in the same leaf),
  // or from its own walk when `walked` is null. May modify *walked.
  absl::Status store_walked(uint64_t first, uint64_t last, void* value, Path* walked);

  TreeOptions options_;
  mutable WriterMutex mutex_;
  // (W1) release-stored by the writer when it publishes a new root; pairs with
  // (R1) acquire loads at the start of every read walk.
  alignas(64) std::atomic<Node*> root_{nullptr};
  // Bumped (release) by every write that replaces nodes, before it frees any;
  // a cursor re-walks when it changed, so that a cursor kept under the writer
  // lock never touches a node its own thread's writes freed.
  alignas(64) std::atomic<uint64_t> generation_{0};  // own line: readers of root_ never miss on it
  // Height of the tree: written under the writer lock, read by writers only.
  uint64_t height_ = 0;
  // Nodes reserved by preallocate(), linked through their first word: writer
  // lock only. Writes take their nodes and retire batches from here first.
  Node* reserve_ = nullptr;
  size_t reserve_count_ = 0;
  // Replaced nodes already marked dead, waiting for their retire batch (which
  // lives in this node) to fill before it goes to rcu::retire(): writer lock
  // only. Handed over when full, by destroy(), set_rcu() and the destructor.
  Node* pending_retire_ = nullptr;
  // Counters kept by every write (writer lock only); validate() checks them.
  uint64_t entries_ = 0;
  uint64_t nulls_ = 0;
  uint64_t nodes_ = 0;
  uint64_t leaves_ = 0;
};

}  // namespace detail
}  // namespace rcuvm

#endif  // RCUVM_DETAIL_RAW_TREE_H_
