// Node memory (see node_alloc.h).
//
// Each thread keeps a magazine of free nodes; full magazines go to a shared
// depot under a mutex, empty threads take one back. liburcu's call_rcu thread
// frees most nodes, so the depot is what brings them back to writers. Under
// AddressSanitizer the cache is bypassed so that every use after free is seen.
#include "tree/node_alloc.h"

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

struct Depot {
  std::mutex mu;
  std::vector<std::vector<Node*>> full;  // guarded by mu
};
Depot& depot() {
  static Depot* d = new Depot;  // never destroyed: threads may exit after main
  return *d;
}

struct ThreadCache {
  std::vector<Node*> nodes;
  ~ThreadCache() {
    for (Node* n : nodes) std::free(n);
  }
};
thread_local ThreadCache tls_cache;

Node* system_alloc() { return static_cast<Node*>(std::aligned_alloc(alignof(Node), sizeof(Node))); }

}  // namespace

Node* node_alloc() {
  if (allocation_should_fail()) return nullptr;
  if constexpr (kUseCache) {
    auto& c = tls_cache.nodes;
    if (c.empty()) {
      Depot& d = depot();
      std::lock_guard<std::mutex> lock(d.mu);
      if (!d.full.empty()) {
        c.swap(d.full.back());
        d.full.pop_back();
      }
    }
    if (!c.empty()) {
      Node* n = c.back();
      c.pop_back();
      return n;
    }
  }
  return system_alloc();
}

void node_free(Node* n) {
  if constexpr (kUseCache) {
    auto& c = tls_cache.nodes;
    if (c.capacity() < 2 * kMagazine) c.reserve(2 * kMagazine);
    c.push_back(n);
    if (c.size() >= 2 * kMagazine) {
      std::vector<Node*> mag(c.end() - kMagazine, c.end());
      c.resize(c.size() - kMagazine);
      Depot& d = depot();
      std::lock_guard<std::mutex> lock(d.mu);
      if (d.full.size() < 1024) {
        d.full.push_back(std::move(mag));
        return;
      }
      for (Node* m : mag) std::free(m);
    }
    return;
  }
  std::free(n);
}

void free_subtree(Node* n) {
  uint64_t m = meta_relaxed(n);
  Kind k = meta_kind(m);
  if (k != Kind::kLeaf) {
    unsigned cnt = meta_count(m);
    for (unsigned i = 0; i < cnt; ++i) free_subtree(reinterpret_cast<Node*>(slots(n, k)[i]));
  }
  node_free(n);
}

RetireBatch* RetireBatch::create(size_t capacity) {
  if (allocation_should_fail()) return nullptr;
  size_t bytes = sizeof(RetireBatch) + (capacity ? capacity - 1 : 0) * sizeof(uintptr_t);
  void* mem = std::malloc(bytes);
  if (!mem) return nullptr;
  return new (mem) RetireBatch(capacity);
}

void RetireBatch::free_now() {
  for (size_t i = 0; i < count_; ++i) {
    Node* n = reinterpret_cast<Node*>(items_[i] & ~uintptr_t(1));
    if (items_[i] & 1)
      free_subtree(n);
    else
      node_free(n);
  }
  this->~RetireBatch();
  std::free(this);
}

}  // namespace rcuvm::detail
