// Node memory: a per-thread cache of 256-byte nodes in front of the system
// allocator (SLUB-like magazines), the fault-injection hook, and deferred
// freeing of replaced nodes after an RCU grace period.
#ifndef RCUVM_SRC_TREE_NODE_ALLOC_H_
#define RCUVM_SRC_TREE_NODE_ALLOC_H_

#include <cstddef>
#include <cstdint>

#include "rcuvm/rcu.h"
#include "tree/node.h"

namespace rcuvm::detail {

// Returns an uninitialised node, or null when the allocation fails (fault
// injection included). Any thread.
Node* node_alloc();
// Returns a node to the cache. The node must be unreachable by every reader.
void node_free(Node* n);
// Frees n and, for internal nodes, everything below it.
void free_subtree(Node* n);

// Replaced nodes, freed together after a grace period. A batch lives in a
// node's memory (so it comes from the same caches and from a tree's
// preallocated reserve) and holds kPerNode entries; a write that retires more
// chains several. A tree keeps one chain pending across writes and hands it to
// rcu::retire() once it is full (write.cc), so that a typical write neither
// allocates a batch nor queues a callback. Entries are node pointers; bit 0
// set means "free the whole subtree". Only the head of a chain is handed to
// rcu::retire().
class RetireBatch final : public rcu::Deferred {
 public:
  static constexpr size_t kPerNode = 26;
  // Number of batch nodes a write retiring `entries` nodes needs.
  static size_t nodes_for(size_t entries) { return (entries + kPerNode - 1) / kPerNode; }
  // Builds an empty batch in the memory of `mem` (a node nobody uses).
  static RetireBatch* in_node(Node* mem) { return new (static_cast<void*>(mem)) RetireBatch; }
  // Adds `more` (an empty batch) to the chain this batch heads.
  void chain(RetireBatch* more) {
    more->next_ = next_;
    next_ = more;
  }
  // Appends the chain headed by `more` (empty batches) after the last batch of
  // this chain; everything from the batch being filled on has room, so the
  // order in which add() fills them does not matter.
  void append(RetireBatch* more) {
    RetireBatch* b = fill_;
    while (b->next_) b = b->next_;
    b->next_ = more;
  }
  // Entries this chain can still take before it is full.
  size_t room() const {
    size_t r = 0;
    for (const RetireBatch* b = fill_; b; b = b->next_) r += kPerNode - b->count_;
    return r;
  }
  void add(Node* n, bool subtree) {
    while (fill_->count_ == kPerNode) fill_ = fill_->next_;
    fill_->items_[fill_->count_++] = reinterpret_cast<uintptr_t>(n) | (subtree ? 1 : 0);
  }
  // Frees every entry and every batch of the chain now: no reader can see them.
  void free_now();
  void reclaim() override { free_now(); }

 private:
  RetireBatch() = default;
  RetireBatch* next_ = nullptr;  // further batches of the same write
  RetireBatch* fill_ = this;     // (head only) the batch being filled
  size_t count_ = 0;
  uintptr_t items_[kPerNode];
};

}  // namespace rcuvm::detail

#endif  // RCUVM_SRC_TREE_NODE_ALLOC_H_
