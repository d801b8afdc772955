// RawTree: construction, locking, lifetime, reservations and counters.
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {
namespace {

// Holds the writer lock for one call: the tree's own mutex, or a check that
// the declared external lock is held.
class WriterScope {
 public:
  explicit WriterScope(const RawTree& t, WriterMutex& own, absl::Mutex* external)
      : own_(external ? nullptr : &own) {
    (void)t;
    if (own_)
      own_->Lock();
    else
      external->AssertHeld();
  }
  ~WriterScope() {
    if (own_) own_->Unlock();
  }

 private:
  WriterMutex* own_;
};

// Frees a whole detached tree: after a grace period in RCU mode.
void retire_tree(Node* root, bool rcu) {
  if (!root) return;
  mark_dead(root);
  if (rcu) {
    if (Node* mem = node_alloc()) {
      RetireBatch* b = RetireBatch::in_node(mem);
      b->add(root, true);
      rcu::retire(b);
      return;
    }
    rcu::synchronize();  // no memory for a batch: wait here instead
  }
  free_subtree(root);
}

}  // namespace

RawTree::RawTree(TreeOptions options) : options_(options) {}

RawTree::~RawTree() {
  Node* root = root_.exchange(nullptr, std::memory_order_acq_rel);
  flush_pending_retire(*this);
  retire_tree(root, options_.rcu);
  release_reserve(*this);
}

void flush_pending_retire(RawTree& t) {
  Node*& p = TreeAccess::pending_retire(t);
  if (!p) return;
  rcu::retire(reinterpret_cast<RetireBatch*>(p));
  p = nullptr;
}

void release_reserve(RawTree& t) {
  Node*& r = TreeAccess::reserve(t);
  while (r) {
    Node* next = reinterpret_cast<Node*>(r->words[0]);
    node_free(r);
    r = next;
  }
  TreeAccess::reserve_count(t) = 0;
}

void WriterMutex::AssertHeld() const {
  if (!held_.load(std::memory_order_relaxed)) {
    std::fprintf(stderr, "rcuvm: range tree writer lock not held\n");
    std::abort();
  }
}

void RawTree::lock() const { mutex_.Lock(); }
void RawTree::unlock() const { mutex_.Unlock(); }

void RawTree::assert_writer_held() const {
  if (options_.external_lock)
    options_.external_lock->AssertHeld();
  else
    mutex_.AssertHeld();
}

absl::Status RawTree::store(uint64_t first, uint64_t last, void* value) {
  WriterScope w(*this, mutex_, options_.external_lock);
  return store_locked(first, last, value);
}

absl::Status RawTree::insert(uint64_t first, uint64_t last, void* value) {
  WriterScope w(*this, mutex_, options_.external_lock);
  return insert_locked(first, last, value);
}

absl::StatusOr<void*> RawTree::erase(uint64_t index) {
  WriterScope w(*this, mutex_, options_.external_lock);
  return erase_locked(index);
}

void RawTree::destroy() {
  WriterScope w(*this, mutex_, options_.external_lock);
  Node* root = root_.exchange(nullptr, std::memory_order_acq_rel);  // (W1)
  generation_.fetch_add(1, std::memory_order_release);
  flush_pending_retire(*this);
  retire_tree(root, options_.rcu);
  height_ = 0;
  entries_ = nulls_ = nodes_ = leaves_ = 0;
}

void RawTree::set_rcu(bool on) {
  WriterScope w(*this, mutex_, options_.external_lock);
  options_.rcu = on;
  flush_pending_retire(*this);  // batches are kept only in RCU mode
  // Re-publishing the root with release makes every node written while the
  // tree was private visible to readers that acquire it.
  root_.store(root_.load(std::memory_order_relaxed), std::memory_order_release);
}

absl::Status RawTree::preallocate(size_t nodes) {
  WriterScope w(*this, mutex_, options_.external_lock);
  while (reserve_count_ < nodes) {
    Node* n = node_alloc();
    if (!n) return errno_error(ENOMEM, "preallocate: node allocation failed");
    n->words[0] = reinterpret_cast<uint64_t>(reserve_);
    reserve_ = n;
    ++reserve_count_;
  }
  return absl::OkStatus();
}

uint64_t RawTree::store_worst_case_nodes() const {
  WriterScope w(*this, mutex_, options_.external_lock);
  // Per level a store packs the two path nodes' slots, what the level below
  // made, and at most two neighbours, which it takes in only when that keeps
  // the node count it needs: at most 84 leaf items or 45 internal ones.
  // plan_level() makes at most one node more than shares of the 64-bit
  // layout would (16 a leaf, 10 an Alloc64): 7 nodes. Merging fresh nodes
  // with neighbours makes at most 4 more; the root may gain a level. It
  // retires per level two path nodes, up to four neighbours and up to 30
  // dropped subtrees, in batches of RetireBatch::kPerNode.
  const uint64_t levels = height_ + 2;
  return 12 * levels + RetireBatch::nodes_for(levels * 36);
}

TreeStats RawTree::stats() const {
  WriterScope w(*this, mutex_, options_.external_lock);
  TreeStats s;
  s.entries = entries_;
  s.nulls = nulls_;
  s.nodes = nodes_;
  s.leaves = leaves_;
  s.height = height_;
  s.bytes = nodes_ * sizeof(Node);
  return s;
}

bool RawTree::empty() const { return root_.load(std::memory_order_acquire) == nullptr; }

uint64_t RawTree::height() const {
  WriterScope w(*this, mutex_, options_.external_lock);
  return height_;
}

}  // namespace rcuvm::detail
