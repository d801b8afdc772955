// Bulk building from sorted input, and O(n) duplication (the kernel's
// __mt_dup): nodes are copied in DFS pre-order, keeping the source's shape
// (each leaf a few leaves late, through a prefetching queue).
#include <cerrno>
#include <cstring>
#include <vector>

#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {
namespace {

// Builds a tree bottom-up from `items` (a whole level covering [0, UINT64_MAX]);
// appends every node it makes to `made`. Returns the root or null on ENOMEM.
Node* build_levels(std::vector<Item> items, Kind ikind, bool track_gaps, std::vector<Node*>& made,
                   uint64_t& height) {
  bool leaf_level = true;
  height = 0;
  ChunkPlan plan;
  for (;;) {
    plan_level(items.data(), items.size(), leaf_level, ikind, 0, plan);
    std::vector<Item> up;
    up.reserve(plan.size());
    size_t pos = 0;
    uint64_t min = 0;
    for (const Chunk& c : plan) {
      Node* n = node_alloc();
      if (!n) return nullptr;
      made.push_back(n);
      const uint64_t gap = fill_node(n, items.data() + pos, c.count, c.kind, min);
      const uint64_t last = items[pos + c.count - 1].last;
      up.push_back(Item{last, reinterpret_cast<uint64_t>(n), track_gaps ? gap : 0});
      pos += c.count;
      min = last + 1;
    }
    ++height;
    if (up.size() == 1) return reinterpret_cast<Node*>(up[0].ptr);
    items = std::move(up);
    leaf_level = false;
  }
}

// Copies one node: the caller patches an internal copy's child slots.
inline void copy_node(Node* dst, const Node* src) {
  std::memcpy(dst, src, sizeof(Node));
  dst->meta &= ~kDeadBit;
}

// The leaf copies of a dup, pipelined: a leaf enters the queue when its
// destination is allocated, which starts the misses on its source lines and
// on its (cold, recycled) destination lines, and is copied kQueueDepth leaves
// later, when those lines have arrived. The queue runs across the boundaries
// of the bottom internal nodes, so the copy loop never waits for a whole
// node's worth of misses at once. Leaves are about nine in ten nodes of a tree.
class LeafCopyQueue {
 public:
  LeafCopyQueue() = default;
  LeafCopyQueue(const LeafCopyQueue&) = delete;
  LeafCopyQueue& operator=(const LeafCopyQueue&) = delete;
  ~LeafCopyQueue() { drain(); }

  void push(Node* dst, const Node* src) {
    prefetch_node(src);
    prefetch_node_for_write(dst);
    if (size_ == kQueueDepth) pop();
    pending_[(head_ + size_) % kQueueDepth] = Pending{dst, src};
    ++size_;
  }
  // Copies every queued leaf: before the copies are handed out, and before a
  // failed dup frees what it copied (which reads every copied node).
  void drain() {
    while (size_) pop();
  }

 private:
  static constexpr unsigned kQueueDepth = 8;
  struct Pending {
    Node* dst;
    const Node* src;
  };
  void pop() {
    const Pending& p = pending_[head_];
    copy_node(p.dst, p.src);
    head_ = (head_ + 1) % kQueueDepth;
    --size_;
  }
  Pending pending_[kQueueDepth];
  unsigned head_ = 0;
  unsigned size_ = 0;
};

// Copies the internal node `src`, at depth `depth` of a tree of height
// `height` (>= 2), into `c` (a node the caller allocated), with everything
// below it: internal nodes here, in DFS pre-order, leaves through `leaves_q`.
// On ENOMEM returns false and frees every node it allocated below `c`, after
// draining the queue; `c` itself stays the caller's.
bool copy_internal(Node* c, const Node* src, unsigned depth, uint64_t height, LeafCopyQueue& leaves_q,
                   uint64_t& nodes, uint64_t& leaves) {
  copy_node(c, src);
  ++nodes;
  const uint64_t m = meta_relaxed(src);
  const Kind k = meta_kind(m);
  const unsigned cnt = meta_count(m);
  const bool kids_are_leaves = depth + 2 == height;
  Node* kids[kMaxSlots];
  for (unsigned i = 0; i < cnt; ++i) {
    const Node* kid_src = reinterpret_cast<const Node*>(load_slot(src, k, i));
    kids[i] = node_alloc();
    if (!kids[i]) {
      // The leaf kids are queued copies (nothing below them), the internal
      // ones not copied yet: neither is walked.
      leaves_q.drain();
      for (unsigned j = 0; j < i; ++j) node_free(kids[j]);
      return false;
    }
    slots(c, k)[i] = reinterpret_cast<uint64_t>(kids[i]);
    if (kids_are_leaves) {
      leaves_q.push(kids[i], kid_src);
      ++nodes;
      ++leaves;
    } else {
      // The next internal copies, in order: start their misses now so that
      // they overlap instead of coming one per child.
      prefetch_node(kid_src);
      prefetch_node_for_write(kids[i]);
    }
  }
  if (kids_are_leaves) return true;
  for (unsigned i = 0; i < cnt; ++i) {
    if (!copy_internal(kids[i], reinterpret_cast<const Node*>(load_slot(src, k, i)), depth + 1, height, leaves_q,
                       nodes, leaves)) {
      for (unsigned j = 0; j < i; ++j) free_subtree(kids[j]);
      for (unsigned j = i; j < cnt; ++j) node_free(kids[j]);
      return false;
    }
  }
  return true;
}

}  // namespace

absl::Status RawTree::bulk_load(std::span<const RawEntry> sorted) {
  if (options_.external_lock) options_.external_lock->AssertHeld();
  WriterLockMaybe lock(options_.external_lock ? nullptr : &mutex_);
  if (root_.load(std::memory_order_relaxed)) return errno_error(EEXIST, "bulk_load: tree not empty");
  // Leaf-level items over the whole index space, nulls coalesced.
  std::vector<Item> items;
  items.reserve(sorted.size() * 2 + 1);
  uint64_t next = 0;       // first index not yet covered
  bool covered_all = false;
  uint64_t entries = 0, nulls = 0;
  auto push = [&](uint64_t last, uint64_t v) {
    if (!v && !items.empty() && items.back().ptr == 0) {
      items.back().last = last;
      return;
    }
    items.push_back(Item{last, v, 0});
  };
  for (const RawEntry& e : sorted) {
    if (e.first > e.last) return errno_error(EINVAL, "bulk_load: first > last");
    if (covered_all || e.first < next) return errno_error(EINVAL, "bulk_load: input unsorted or overlapping");
    if (e.first > next) push(e.first - 1, 0);
    push(e.last, reinterpret_cast<uint64_t>(e.value));
    if (e.last == kMaxIndex)
      covered_all = true;
    else
      next = e.last + 1;
  }
  if (!covered_all) push(kMaxIndex, 0);
  for (const Item& it : items) (it.ptr ? entries : nulls)++;
  if (entries == 0) return absl::OkStatus();
  std::vector<Node*> made;
  uint64_t height = 0;
  Node* root = build_levels(std::move(items), internal_kind(options_), options_.track_gaps, made, height);
  if (!root) {
    for (Node* n : made) node_free(n);
    return errno_error(ENOMEM, "bulk_load: node allocation failed");
  }
  // Commit.
  uint64_t leaves = 0;
  for (Node* n : made) leaves += is_leaf(node_kind(n));
  entries_ = entries;
  nulls_ = nulls;
  nodes_ = made.size();
  leaves_ = leaves;
  height_ = height;
  root_.store(root, std::memory_order_release);  // (W1)
  return absl::OkStatus();
}

absl::Status RawTree::dup_into(RawTree& dst) const {
  if (&dst == this) return errno_error(EINVAL, "dup_into: source and destination are the same tree");
  if (options_.external_lock) options_.external_lock->AssertHeld();
  WriterLockMaybe src_lock(options_.external_lock ? nullptr : &mutex_);
  if (dst.options_.external_lock) dst.options_.external_lock->AssertHeld();
  WriterLockMaybe dst_lock(dst.options_.external_lock ? nullptr : &dst.mutex_);
  if (dst.root_.load(std::memory_order_relaxed)) return errno_error(EEXIST, "dup_into: destination not empty");
  if (dst.options_.track_gaps != options_.track_gaps)
    return errno_error(EINVAL, "dup_into: trees differ in allocation mode");
  const Node* root = root_.load(std::memory_order_relaxed);
  if (!root) return absl::OkStatus();
  uint64_t nodes = 0, leaves = 0;
  Node* copy = node_alloc();
  if (copy && height_ == 1) {
    copy_node(copy, root);
    nodes = leaves = 1;
  } else if (copy) {
    LeafCopyQueue leaves_q;
    const bool ok = copy_internal(copy, root, 0, height_, leaves_q, nodes, leaves);
    leaves_q.drain();
    if (!ok) {
      node_free(copy);
      copy = nullptr;
    }
  }
  if (!copy) return errno_error(ENOMEM, "dup_into: node allocation failed");
  dst.entries_ = entries_;
  dst.nulls_ = nulls_;
  dst.nodes_ = nodes;
  dst.leaves_ = leaves;
  dst.height_ = height_;
  dst.root_.store(copy, std::memory_order_release);  // (W1)
  return absl::OkStatus();
}

}  // namespace rcuvm::detail
