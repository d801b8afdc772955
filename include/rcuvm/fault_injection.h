// rcuvm/fault_injection.h: make the k-th allocation of this thread fail.
//
// Every allocation rcuvm makes on behalf of a write (tree nodes, retire
// batches, and in later layers VMAs and page tables) asks this hook first. Tests
// use it to prove that a write which runs out of memory reports ENOMEM and leaves
// everything exactly as it was.
//
//   rcuvm::FailNthAllocation fail(3);   // the 3rd allocation from now fails
//   EXPECT_EQ(rcuvm::errno_of(tree.store(1, 2, &v)), ENOMEM);
//
// The countdown is per thread, so a test's other threads are not disturbed.
#ifndef RCUVM_FAULT_INJECTION_H_
#define RCUVM_FAULT_INJECTION_H_

#include <cstdint>

namespace rcuvm {

// Counts this thread's allocation attempts and fails the chosen one. Nesting is
// not supported: one armed scope per thread at a time.
class FailNthAllocation {
 public:
  // Arms the hook so that allocation number `n` (1-based, counted from now)
  // fails; n == 0 arms nothing and only counts.
  explicit FailNthAllocation(uint64_t n);
  ~FailNthAllocation();
  FailNthAllocation(const FailNthAllocation&) = delete;
  FailNthAllocation& operator=(const FailNthAllocation&) = delete;

  // Returns how many allocations were attempted since the scope was armed.
  uint64_t attempts() const;
  // Returns true once the chosen allocation has been refused.
  bool fired() const;
};

// Arms every allocation of this thread to fail with probability 1/one_in while
// the scope lives (deterministic for a given seed). For stress tests.
class FailRandomAllocations {
 public:
  FailRandomAllocations(uint64_t one_in, uint64_t seed);
  ~FailRandomAllocations();
  FailRandomAllocations(const FailRandomAllocations&) = delete;
  FailRandomAllocations& operator=(const FailRandomAllocations&) = delete;
};

namespace detail {
// Returns true when the current allocation must fail. Called by every rcuvm
// allocator before it allocates.
bool allocation_should_fail();
}  // namespace detail

}  // namespace rcuvm

#endif  // RCUVM_FAULT_INJECTION_H_
