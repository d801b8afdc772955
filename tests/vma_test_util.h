// Helpers for the VMA tests: a small arena and a one-character-per-page
// picture of it ("AAB  CC": three VMAs and a hole).
#ifndef RCUVM_TESTS_VMA_TEST_UTIL_H_
#define RCUVM_TESTS_VMA_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <string>

#include "rcuvm/address_space.h"

namespace rcuvm::testing {

inline constexpr uint64_t kBase = 0x10000000;
inline constexpr uint64_t P = kPageSize;

// Address of page i of the test arena.
inline uint64_t pg(uint64_t i) { return kBase + i * P; }

// Draws pages [0, n) of the arena: each VMA gets the next letter, holes are
// spaces.
inline std::string draw(const AddressSpace& as, uint64_t n = 8) {
  std::string out(n, ' ');
  char letter = 'A';
  for (const VmaInfo& v : as.maps()) {
    bool any = false;
    for (uint64_t i = 0; i < n; ++i)
      if (pg(i) >= v.start && pg(i) < v.end) out[i] = letter, any = true;
    if (any) ++letter;
  }
  return out;
}

inline constexpr int kAnon = kMapPrivate | kMapAnonymous | kMapFixed;
inline constexpr int kRw = kProtRead | kProtWrite;

// Maps pages [first, first+count) anonymous private with prot.
inline void map_anon(AddressSpace& as, uint64_t first, uint64_t count, int prot) {
  auto r = as.mmap(pg(first), count * P, prot, kAnon, nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(as.validate().ok()) << as.validate();
}

}  // namespace rcuvm::testing

#endif  // RCUVM_TESTS_VMA_TEST_UTIL_H_
