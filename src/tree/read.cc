// Readers: load, find, find_rev and the cursor.
//
// Read protocol (DESIGN.md, "Concurrency protocol of the tree"):
//   (R1) acquire the root; (R2) acquire each child or value from its slot; read
//   pivots and counts with plain loads (immutable once published); (R3) at the
//   leaf, after reading the answer, re-check the dead bit with acquire and
//   restart from the root if the leaf was replaced meanwhile. The answer is
//   then one the tree held at a moment inside the call: linearisable.
#include <cerrno>

#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {
namespace {

// The leaf holding an index, with its bounds, reached by a lock-free walk.
struct LeafHit {
  const Node* leaf = nullptr;
  Kind kind = Kind::kLeaf64;
  uint64_t min = 0;
  uint64_t max = 0;
  unsigned count = 0;
  unsigned off = 0;
};

// Walks from the root to the leaf holding `index`; false for an empty tree.
// Context: inside a read section or under the writer lock.
inline bool descend(const std::atomic<Node*>& root, uint64_t index, LeafHit& hit) {
  const Node* n = root.load(std::memory_order_acquire);  // (R1)
  if (!n) return false;
  prefetch_node(n);
  uint64_t min = 0, max = kMaxIndex;
  for (;;) {
    uint64_t m = meta_relaxed(n);
    unsigned cnt = meta_count(m);
    Kind k = meta_kind(m);
    unsigned i = slot_for_kind(n, k, index, min);
    if (is_leaf(k)) {
      hit = LeafHit{n, k, min, max, cnt, i};
      return true;
    }
    uint64_t cmin = slot_min(n, k, i, min);
    max = slot_max(n, k, i, cnt, min, max);
    min = cmin;
    n = reinterpret_cast<const Node*>(load_slot(n, k, i));  // (R2)
    prefetch_node(n);
  }
}

}  // namespace

// A remembered leaf is usable when no write replaced nodes since it was found
// (else it may be freed: outside RCU mode, or under the writer lock without a
// read section) and it still covers `index` and is not dead.
bool RawTree::cursor_leaf_usable(const RawCursorState& c, uint64_t index) const {
  return c.leaf && c.generation == generation_.load(std::memory_order_acquire) &&
         index >= c.leaf_min && index <= c.leaf_max && !is_dead(c.leaf);
}

void* RawTree::load(uint64_t index) const {
  rcu::internal::ReadSection rs;
  for (;;) {
    LeafHit h;
    if (!descend(root_, index, h)) return nullptr;
    uint64_t v = load_slot(h.leaf, h.kind, h.off);  // (R2)
    if (!is_dead(h.leaf)) return reinterpret_cast<void*>(v);  // (R3)
  }
}

// The one-shot lookup behind find_vma: no cursor state, no generation (a
// shared line every write bumps), and at most one step into the next leaf,
// since null ranges never sit side by side.
std::optional<RawEntry> RawTree::find(uint64_t index, uint64_t max) const {
  if (index > max) return std::nullopt;
  rcu::internal::ReadSection rs;
  for (;;) {
    LeafHit h;
    if (!descend(root_, index, h)) return std::nullopt;
    for (unsigned i = h.off; i < h.count; ++i) {
      const uint64_t first = slot_min(h.leaf, h.kind, i, h.min);
      if (first > max) break;
      const uint64_t v = load_slot(h.leaf, h.kind, i);  // (R2)
      if (!v) continue;
      if (is_dead(h.leaf)) goto restart;  // (R3)
      return RawEntry{first, slot_max(h.leaf, h.kind, i, h.count, h.min, h.max), reinterpret_cast<void*>(v)};
    }
    if (is_dead(h.leaf)) continue;  // (R3): the "none" must be current too
    if (h.max >= max) return std::nullopt;
    index = h.max + 1;
  restart:;
  }
}

std::optional<RawEntry> RawTree::find_rev(uint64_t index, uint64_t min) const {
  RawCursorState c{.index = index};
  rcu::internal::ReadSection rs;
  return cursor_find_rev(c, min);
}

std::optional<RawEntry> RawTree::cursor_find(RawCursorState& c, uint64_t max) const {
  // A step that finds nothing leaves the cursor as it was.
  const uint64_t saved_index = c.index;
  std::optional<RawEntry> r = [&]() -> std::optional<RawEntry> {
    if (c.has_entry) {
      if (c.entry_last == kMaxIndex) return std::nullopt;
      c.index = c.entry_last + 1;
    }
    const bool resuming = c.has_entry;
    if (c.index > max) return std::nullopt;
    for (;;) {
      LeafHit h;
      if (cursor_leaf_usable(c, c.index)) {
        const uint64_t m = meta_relaxed(c.leaf);
        h.leaf = c.leaf;
        h.kind = meta_kind(m);
        h.min = c.leaf_min;
        h.max = c.leaf_max;
        h.count = meta_count(m);
        h.off = slot_for(h.leaf, h.kind, h.count, c.index, h.min);
      } else {
        c.generation = generation_.load(std::memory_order_acquire);
        if (!descend(root_, c.index, h)) {
          c.leaf = nullptr;
          return std::nullopt;
        }
      }
      c.leaf = h.leaf;
      c.leaf_min = h.min;
      c.leaf_max = h.max;
      for (unsigned i = h.off; i < h.count; ++i) {
        const uint64_t first = slot_min(h.leaf, h.kind, i, h.min);
        if (first > max) break;
        const uint64_t v = load_slot(h.leaf, h.kind, i);  // (R2)
        if (!v || (resuming && first < c.index)) continue;
        if (is_dead(h.leaf)) goto restart;  // (R3)
        {
          const uint64_t last = slot_max(h.leaf, h.kind, i, h.count, h.min, h.max);
          c.has_entry = true;
          c.entry_first = first;
          c.entry_last = last;
          return RawEntry{first, last, reinterpret_cast<void*>(v)};
        }
      }
      if (is_dead(h.leaf)) goto restart;  // (R3): the "none" must be current too
      if (h.max >= max || h.max == kMaxIndex) return std::nullopt;
      c.index = h.max + 1;  // continue in the next leaf
      continue;
    restart:
      c.leaf = nullptr;
    }
  }();
  if (!r) c.index = saved_index;
  return r;
}

std::optional<RawEntry> RawTree::cursor_find_rev(RawCursorState& c, uint64_t min) const {
  // A step that finds nothing leaves the cursor as it was.
  const uint64_t saved_index = c.index;
  std::optional<RawEntry> r = [&]() -> std::optional<RawEntry> {
    if (c.has_entry) {
      if (c.entry_first == 0) return std::nullopt;
      c.index = c.entry_first - 1;
    }
    const bool resuming = c.has_entry;
    if (c.index < min) return std::nullopt;
    for (;;) {
      LeafHit h;
      if (cursor_leaf_usable(c, c.index)) {
        const uint64_t m = meta_relaxed(c.leaf);
        h.leaf = c.leaf;
        h.kind = meta_kind(m);
        h.min = c.leaf_min;
        h.max = c.leaf_max;
        h.count = meta_count(m);
        h.off = slot_for(h.leaf, h.kind, h.count, c.index, h.min);
      } else {
        c.generation = generation_.load(std::memory_order_acquire);
        if (!descend(root_, c.index, h)) {
          c.leaf = nullptr;
          return std::nullopt;
        }
      }
      c.leaf = h.leaf;
      c.leaf_min = h.min;
      c.leaf_max = h.max;
      for (unsigned i = h.off + 1; i-- > 0;) {
        const uint64_t last = slot_max(h.leaf, h.kind, i, h.count, h.min, h.max);
        if (last < min) break;
        const uint64_t v = load_slot(h.leaf, h.kind, i);  // (R2)
        if (!v || (resuming && last > c.index)) continue;
        if (is_dead(h.leaf)) goto restart;  // (R3)
        {
          const uint64_t first = slot_min(h.leaf, h.kind, i, h.min);
          c.has_entry = true;
          c.entry_first = first;
          c.entry_last = last;
          return RawEntry{first, last, reinterpret_cast<void*>(v)};
        }
      }
      if (is_dead(h.leaf)) goto restart;  // (R3)
      if (h.min <= min || h.min == 0) return std::nullopt;
      c.index = h.min - 1;
      continue;
    restart:
      c.leaf = nullptr;
    }
  }();
  if (!r) c.index = saved_index;
  return r;
}

absl::Status RawTree::cursor_replace(RawCursorState& c, void* value) const {
  assert_writer_held();
  if (!value) return errno_error(EINVAL, "replace: null value (use store or erase)");
  if (!c.has_entry) return errno_error(EINVAL, "replace: the cursor holds no entry");
  Node* leaf = const_cast<Node*>(c.leaf);
  if (!cursor_leaf_usable(c, c.entry_first) || c.entry_last > c.leaf_max) {
    // The leaf was replaced by a write since the step: find the entry again.
    c.generation = generation_.load(std::memory_order_acquire);
    LeafHit h;
    if (!descend(root_, c.entry_first, h)) return errno_error(EINVAL, "replace: entry gone");
    leaf = const_cast<Node*>(h.leaf);
    c.leaf = h.leaf;
    c.leaf_min = h.min;
    c.leaf_max = h.max;
  }
  const unsigned cnt = node_count(leaf);
  const Kind k = node_kind(leaf);
  const unsigned i = slot_for(leaf, k, cnt, c.entry_first, c.leaf_min);
  if (slot_min(leaf, k, i, c.leaf_min) != c.entry_first ||
      slot_max(leaf, k, i, cnt, c.leaf_min, c.leaf_max) != c.entry_last || slots(leaf, k)[i] == 0) {
    return errno_error(EINVAL, "replace: the entry changed since the cursor returned it");
  }
  publish_slot(leaf, k, i, reinterpret_cast<uint64_t>(value));  // (W2)
  return absl::OkStatus();
}

}  // namespace rcuvm::detail
