// tree_test_util.h: small helpers shared by the range-tree tests: integer
// values as pointers, a seeded PRNG, the test scale, and snapshots of a tree's
// contents taken with a cursor inside a read guard.
#ifndef RCUVM_TESTS_TREE_TEST_UTIL_H_
#define RCUVM_TESTS_TREE_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "reference_model.h"

namespace rcuvm::testing {

using Tree = RangeTree<void>;
using ModelEntry = ReferenceModel::Entry;

inline void* ptr(uint64_t v) { return reinterpret_cast<void*>(static_cast<uintptr_t>(v)); }
inline uint64_t num(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }

// splitmix64: tiny, fast and good enough to drive tests reproducibly.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0. The modulo bias is irrelevant here.
  uint64_t below(uint64_t n) { return next() % n; }
  bool one_in(uint64_t n) { return below(n) == 0; }
  // Uniform in [lo, hi], the full 64-bit span included.
  uint64_t between(uint64_t lo, uint64_t hi) {
    uint64_t span = hi - lo;
    return span == UINT64_MAX ? next() : lo + below(span + 1);
  }
};

// How many times slower a sanitizer build runs these tests, roughly.
inline double sanitizer_slowdown() {
#if defined(__SANITIZE_THREAD__)
  return 10;
#elif defined(__SANITIZE_ADDRESS__)
  return 4;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return 10;
#elif __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
  return 4;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

// How much randomized work a test does: RCUVM_TEST_SCALE (default 1), divided
// by the sanitizer slowdown.
inline double test_scale() {
  double scale = 1.0;
  if (const char* env = std::getenv("RCUVM_TEST_SCALE")) {
    char* end = nullptr;
    double v = std::strtod(env, &end);
    if (end != env && v > 0) scale = v;
  }
  return scale / sanitizer_slowdown();
}

inline uint64_t scaled(uint64_t n) {
  double v = double(n) * test_scale();
  return v < 1 ? 1 : uint64_t(v);
}

// Every non-null entry of `tree` in order, read with a forward cursor.
inline std::vector<ModelEntry> contents(const Tree& tree) {
  std::vector<ModelEntry> out;
  rcu::ReadGuard guard;
  auto c = tree.cursor(0);
  while (auto e = c.next()) out.push_back({e->first, e->last, num(e->value)});
  return out;
}

// The same entries read backwards from UINT64_MAX with prev(), then reversed.
inline std::vector<ModelEntry> contents_backwards(const Tree& tree) {
  std::vector<ModelEntry> out;
  {
    rcu::ReadGuard guard;
    auto c = tree.cursor(UINT64_MAX);
    while (auto e = c.prev()) out.push_back({e->first, e->last, num(e->value)});
  }
  return {out.rbegin(), out.rend()};
}

inline std::string describe(const ModelEntry& e) {
  // Appends rather than `"[" + std::to_string(...)`, which GCC 12 at -O3 flags
  // with a false -Wrestrict (GCC bug 105329).
  std::string s = "[";
  s.append(std::to_string(e.first)).append(", ").append(std::to_string(e.last));
  s.append("] = ").append(std::to_string(e.value));
  return s;
}

// Describes the first difference between two entry lists, or "" if equal.
inline std::string first_difference(const std::vector<ModelEntry>& got,
                                    const std::vector<ModelEntry>& want) {
  for (size_t i = 0; i < got.size() || i < want.size(); ++i) {
    if (i < got.size() && i < want.size() && got[i] == want[i]) continue;
    return "entry " + std::to_string(i) + ": tree has " +
           (i < got.size() ? describe(got[i]) : std::string("nothing")) + ", model has " +
           (i < want.size() ? describe(want[i]) : std::string("nothing")) + " (tree " +
           std::to_string(got.size()) + " entries, model " + std::to_string(want.size()) + ")";
  }
  return {};
}

}  // namespace rcuvm::testing

#endif  // RCUVM_TESTS_TREE_TEST_UTIL_H_
