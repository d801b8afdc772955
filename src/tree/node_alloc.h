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

// Replaced nodes of one write, freed together after a grace period. Entries
// are node pointers; bit 0 set means "free the whole subtree".
class RetireBatch final : public rcu::Deferred {
 public:
  // Allocates a batch for up to `capacity` entries; null on failure.
  static RetireBatch* create(size_t capacity);
  void add(Node* n, bool subtree) {
    items_[count_++] = reinterpret_cast<uintptr_t>(n) | (subtree ? 1 : 0);
  }
  size_t size() const { return count_; }
  size_t capacity() const { return capacity_; }
  // Frees everything now (no reader can see the nodes) and the batch itself.
  void free_now();
  void reclaim() override { free_now(); }

 private:
  RetireBatch(size_t capacity, bool in_node) : capacity_(capacity), in_node_(in_node) {}
  size_t capacity_;
  size_t count_ = 0;
  bool in_node_;  // the batch lives in a node's memory (small batches)
  uintptr_t items_[1];  // really `capacity_` entries
};

}  // namespace rcuvm::detail

#endif  // RCUVM_SRC_TREE_NODE_ALLOC_H_
