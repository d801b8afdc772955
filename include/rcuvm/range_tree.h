// rcuvm/range_tree.h: RangeTree<T>, an RCU-safe range B-tree.
//
// What it is
//   Every index of [0, UINT64_MAX] maps to exactly one value, a T* or null, in
//   ranges: the Linux maple tree's model. store(first, last, p) overwrites what
//   was there, trimming or splitting the ranges it overlaps. Adjacent null
//   ranges are always one gap; adjacent non-null ranges stay separate entries
//   even when they hold the same pointer. Ranges are inclusive: [first, last].
//
// Synopsis
//   RangeTree<Vma> t({.track_gaps = true});
//   t.store(0x1000, 0x1fff, vma);            // writer; takes t's mutex
//   t.insert(a, b, p);                        // EEXIST if anything is there
//   t.erase(0x1800);                          // removes the whole range
//   T* v = t.load(0x1234);                    // reader, lock-free
//   auto e = t.find(addr, UINT64_MAX);        // first entry overlapping [addr, max]
//   auto s = t.find_gap_rev(lo, hi, len);     // highest free start (top-down mmap)
//   { rcu::ReadGuard g; for (auto c = t.cursor(0); auto e = c.next(); ) ...; }
//   RangeTree<Vma> child; t.dup_into(child);  // O(n) copy (fork)
//
// Concurrency
//   Writers serialise on the tree's mutex, or on an external lock declared in
//   TreeOptions (then the caller holds it). In RCU mode readers never lock:
//   load/find/find_rev run in their own read section and are linearisable; a
//   cursor must run inside the caller's rcu::ReadGuard (or under the writer
//   lock), and sees every entry present for the whole iteration exactly once,
//   in order. Replaced nodes are freed only after a grace period.
//
// Caveats
//   - A T* returned by a reader stays meaningful only while the caller keeps
//     the object alive (its own ReadGuard plus deferred freeing of T, or the
//     writer lock). The tree never owns or frees the values.
//   - A cursor is invalidated by nothing: after any write (concurrent, or the
//     caller's own under the writer lock) it re-walks from the index it reached.
//     Inside a read section it must not outlive that section.
//   - find_gap()/find_gap_rev() need the writer lock (or no concurrent writer).
//   - Every write is all-or-nothing: on ENOMEM the tree is exactly as before.
#ifndef RCUVM_RANGE_TREE_H_
#define RCUVM_RANGE_TREE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rcuvm/detail/raw_tree.h"

namespace rcuvm {

// One stored range and its value.
template <typename T>
struct RangeEntry {
  uint64_t first = 0;
  uint64_t last = 0;
  T* value = nullptr;
  friend bool operator==(const RangeEntry&, const RangeEntry&) = default;
};

template <typename T>
class RangeTree {
 public:
  using Entry = RangeEntry<T>;

  // A position in the tree (the maple tree's ma_state): remembers the leaf and
  // the offset of the last answer, so stepping is O(1) amortised.
  // Context: inside an rcu::ReadGuard, or with the writer lock held.
  class Cursor {
   public:
    // The cursor has a current entry: the last one a step returned (none
    // after construction or seek()). Without one, next() returns the first
    // entry overlapping [index, max]; with one, the first entry starting after
    // it (and not beyond max). prev() is the mirror image. A step that finds
    // nothing returns nullopt and leaves the cursor where it was.
    std::optional<Entry> next(uint64_t max = UINT64_MAX) {
      return typed(tree_->raw_.cursor_find(state_, max));
    }
    std::optional<Entry> prev(uint64_t min = 0) {
      return typed(tree_->raw_.cursor_find_rev(state_, min));
    }
    // Forgets the current entry and moves to `index`.
    void seek(uint64_t index) { state_ = detail::RawCursorState{.index = index}; }
    // Replaces the value of the current entry in place: one atomic store, the
    // range unchanged, no allocation. Requires the writer lock. Fails only
    // with EINVAL, and only for a caller's mistake: a null value, no current
    // entry, or a current entry that a write since changed or removed. A
    // caller that stepped to the entry under the lock it still holds cannot
    // get an error.
    absl::Status replace(T* value) { return tree_->raw_.cursor_replace(state_, value); }

   private:
    friend class RangeTree;
    Cursor(const RangeTree* tree, uint64_t index) : tree_(tree) { seek(index); }
    const RangeTree* tree_;
    detail::RawCursorState state_;
  };

  explicit RangeTree(TreeOptions options = {}) : raw_(options) {}

  // --- Writers: take the tree's mutex, or require the declared external lock.

  // Maps [first, last] to value (null erases). EINVAL if first > last; ENOMEM
  // leaves the tree unchanged.
  absl::Status store(uint64_t first, uint64_t last, T* value) {
    return raw_.store(first, last, value);
  }
  // Like store, but EEXIST if any index of [first, last] is non-null, and
  // EINVAL for a null value.
  absl::Status insert(uint64_t first, uint64_t last, T* value) {
    return raw_.insert(first, last, value);
  }
  // Removes the whole range holding `index`; returns its value (null if none).
  absl::StatusOr<T*> erase(uint64_t index) {
    auto r = raw_.erase(index);
    if (!r.ok()) return r.status();
    return static_cast<T*>(*r);
  }
  // Builds an empty tree from entries sorted by first, non-overlapping; null
  // values are skipped. EINVAL on unsorted or overlapping input, EEXIST if the
  // tree is not empty. O(n), nodes packed full.
  absl::Status bulk_load(std::span<const Entry> sorted) {
    std::vector<detail::RawEntry> raw;
    raw.reserve(sorted.size());
    for (const Entry& e : sorted) raw.push_back({e.first, e.last, e.value});
    return raw_.bulk_load(raw);
  }
  // Tops the tree's reserve up to `nodes` nodes. Writes take every node they
  // need (tree nodes and retire batches) from the reserve first, so writes
  // that together need at most `nodes` cannot fail for memory. ENOMEM if the
  // reserve could not be filled (what was reserved stays).
  absl::Status preallocate(size_t nodes) { return raw_.preallocate(nodes); }
  // An upper bound on the nodes one store, insert or erase may take, at the
  // tree's current height: preallocate(k * store_worst_case_nodes()) makes the
  // next k writes infallible (while the height does not grow past +1).
  uint64_t store_worst_case_nodes() const { return raw_.store_worst_case_nodes(); }
  // Copies this tree into `destination`, which must be empty (EEXIST
  // otherwise), in O(n): nodes are copied in DFS pre-order. On ENOMEM the
  // destination stays empty.
  absl::Status dup_into(RangeTree& destination) const { return raw_.dup_into(destination.raw_); }
  // Removes everything; nodes are freed after a grace period in RCU mode.
  // Nodes reserved by preallocate() stay reserved; the destructor frees them.
  void destroy() { raw_.destroy(); }
  // Turns RCU mode on (publishing a tree built privately) or off.
  void set_rcu(bool on) { raw_.set_rcu(on); }

  // --- Readers: lock-free in RCU mode; each call is linearisable.

  // Returns the value at index, or null.
  T* load(uint64_t index) const { return static_cast<T*>(raw_.load(index)); }
  // Returns the first non-null entry overlapping [index, max].
  std::optional<Entry> find(uint64_t index, uint64_t max = UINT64_MAX) const {
    return typed(raw_.find(index, max));
  }
  // Returns the last non-null entry overlapping [min, index].
  std::optional<Entry> find_rev(uint64_t index, uint64_t min = 0) const {
    return typed(raw_.find_rev(index, min));
  }
  // Returns a cursor at index (see Cursor for its context rules).
  Cursor cursor(uint64_t index = 0) const { return Cursor(this, index); }
  // Calls fn(entry) for each non-null entry overlapping [first, last], in
  // order. Runs inside its own read section.
  template <typename Fn>
  void for_each(uint64_t first, uint64_t last, Fn&& fn) const;

  // Lowest start S with [S, S+size-1] null and inside [min, max]. EINVAL for
  // size 0 or min > max, EBUSY when there is no such range (as the kernel).
  absl::StatusOr<uint64_t> find_gap(uint64_t min, uint64_t max, uint64_t size) const {
    return raw_.find_gap(min, max, size);
  }
  // Highest such start.
  absl::StatusOr<uint64_t> find_gap_rev(uint64_t min, uint64_t max, uint64_t size) const {
    return raw_.find_gap_rev(min, max, size);
  }

  // --- Debug and accounting.

  // Checks every invariant of the node layout (src/tree/node.h); names the
  // first broken one with the node and range. Takes the writer lock.
  absl::Status validate() const { return raw_.validate(); }
  std::string dump() const { return raw_.dump(); }
  TreeStats stats() const { return raw_.stats(); }
  bool empty() const { return raw_.empty(); }

  // --- Advanced: hold the tree's own writer lock across several writes.
  void lock() const { raw_.lock(); }
  void unlock() const { raw_.unlock(); }
  absl::Status store_locked(uint64_t first, uint64_t last, T* value) {
    return raw_.store_locked(first, last, value);
  }
  absl::Status insert_locked(uint64_t first, uint64_t last, T* value) {
    return raw_.insert_locked(first, last, value);
  }
  absl::StatusOr<T*> erase_locked(uint64_t index) {
    auto r = raw_.erase_locked(index);
    if (!r.ok()) return r.status();
    return static_cast<T*>(*r);
  }

 private:
  static std::optional<Entry> typed(const std::optional<detail::RawEntry>& e) {
    if (!e) return std::nullopt;
    return Entry{e->first, e->last, static_cast<T*>(e->value)};
  }
  detail::RawTree raw_;
};

}  // namespace rcuvm

#include "rcuvm/rcu.h"

namespace rcuvm {
template <typename T>
template <typename Fn>
void RangeTree<T>::for_each(uint64_t first, uint64_t last, Fn&& fn) const {
  rcu::ReadGuard guard;
  Cursor c = cursor(first);
  while (auto e = c.next(last)) fn(*e);
}
}  // namespace rcuvm

#endif  // RCUVM_RANGE_TREE_H_
