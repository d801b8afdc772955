// Node memory (see node_alloc.h).
//
// Nodes come from 2 MiB chunks carved by a bump pointer; the chunks ask for
// transparent huge pages, so a walk over a large tree costs few TLB misses.
// Each thread keeps a magazine of free nodes; full magazines go to a shared
// depot under a mutex, empty threads take one back. liburcu's call_rcu thread
// frees most nodes, so the depot is what brings them back to writers. Chunk
// memory is kept for reuse, never returned to the system. Under
// AddressSanitizer or ThreadSanitizer every node is a separate system
// allocation, so that each use after free is seen.
#include "tree/node_alloc.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "rcuvm/fault_injection.h"

namespace rcuvm::detail {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kUseCache = false;
#else
constexpr bool kUseCache = true;
#endif
constexpr size_t kMagazine = 64;
constexpr size_t kChunkBytes = size_t(2) << 20;

struct Depot {
  std::mutex mu;
  std::vector<std::vector<Node*>> full;  // guarded by mu
  // full.size(), written under mu; read without it as a hint, so that a
  // writer growing a tree (nothing freed yet) does not take mu per node.
  std::atomic<size_t> full_count{0};
};
Depot& depot() {
  static Depot* d = new Depot;  // never destroyed: threads may exit after main
  return *d;
}

void give_to_depot(std::vector<Node*>&& mag) {
  Depot& d = depot();
  std::lock_guard<std::mutex> lock(d.mu);
  d.full.push_back(std::move(mag));
  d.full_count.store(d.full.size(), std::memory_order_relaxed);
}

struct ThreadCache {
  std::vector<Node*> nodes;
  char* bump = nullptr;  // next free byte of the current chunk
  char* end = nullptr;
  ~ThreadCache() {
    // Nodes and the chunk's unused tail stay usable by other threads.
    while (bump && bump < end) nodes.push_back(reinterpret_cast<Node*>(bump)), bump += sizeof(Node);
    if (!nodes.empty()) give_to_depot(std::move(nodes));
  }
};
thread_local ThreadCache tls_cache;

Node* from_new_chunk(ThreadCache& c) {
  void* mem = std::aligned_alloc(kChunkBytes, kChunkBytes);
  if (!mem) return nullptr;
  madvise(mem, kChunkBytes, MADV_HUGEPAGE);  // best effort
  c.bump = static_cast<char*>(mem) + sizeof(Node);
  c.end = static_cast<char*>(mem) + kChunkBytes;
  return static_cast<Node*>(mem);
}

}  // namespace

Node* node_alloc() {
  if (allocation_should_fail()) return nullptr;
  if constexpr (kUseCache) {
    ThreadCache& tc = tls_cache;
    auto& c = tc.nodes;
    if (c.empty()) {
      Depot& d = depot();
      if (d.full_count.load(std::memory_order_relaxed) != 0) {
        std::lock_guard<std::mutex> lock(d.mu);
        if (!d.full.empty()) {
          c.swap(d.full.back());
          d.full.pop_back();
          d.full_count.store(d.full.size(), std::memory_order_relaxed);
        }
      }
    }
    if (!c.empty()) {
      Node* n = c.back();
      c.pop_back();
      // The next node handed out is usually cold (it was freed a grace period
      // ago); fetching it for writing now overlaps that miss with the work the
      // caller does before its next allocation.
      if (!c.empty()) {
        const char* next = reinterpret_cast<const char*>(c.back());
        for (size_t off = 0; off < sizeof(Node); off += 64) __builtin_prefetch(next + off, 1);
      }
      return n;
    }
    if (tc.bump && tc.bump < tc.end) {
      Node* n = reinterpret_cast<Node*>(tc.bump);
      tc.bump += sizeof(Node);
      return n;
    }
    return from_new_chunk(tc);
  }
  return static_cast<Node*>(std::aligned_alloc(alignof(Node), sizeof(Node)));
}

void node_free(Node* n) {
  if constexpr (kUseCache) {
    auto& c = tls_cache.nodes;
    if (c.capacity() < 2 * kMagazine) c.reserve(2 * kMagazine);
    c.push_back(n);
    if (c.size() >= 2 * kMagazine) {
      std::vector<Node*> mag(c.end() - kMagazine, c.end());
      c.resize(c.size() - kMagazine);
      give_to_depot(std::move(mag));
    }
    return;
  }
  std::free(n);
}
void free_subtree(Node* n) {
  uint64_t m = meta_relaxed(n);
  Kind k = meta_kind(m);
  if (!is_leaf(k)) {
    unsigned cnt = meta_count(m);
    for (unsigned i = 0; i < cnt; ++i) free_subtree(reinterpret_cast<Node*>(slots(n, k)[i]));
  }
  node_free(n);
}

static_assert(sizeof(RetireBatch) <= sizeof(Node), "a retire batch fills one node");

void RetireBatch::free_now() {
  RetireBatch* b = this;
  while (b) {
    for (size_t i = 0; i < b->count_; ++i) {
      Node* n = reinterpret_cast<Node*>(b->items_[i] & ~uintptr_t(1));
      if (b->items_[i] & 1)
        free_subtree(n);
      else
        node_free(n);
    }
    RetireBatch* next = b->next_;
    b->~RetireBatch();
    node_free(reinterpret_cast<Node*>(b));
    b = next;
  }
}

}  // namespace rcuvm::detail
