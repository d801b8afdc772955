// Per-thread allocation fault injection (see rcuvm/fault_injection.h).
#include "rcuvm/fault_injection.h"

#include <cstdlib>

namespace rcuvm {
namespace {

enum class Mode { kOff, kNth, kRandom };

struct Injector {
  Mode mode = Mode::kOff;
  uint64_t target = 0;    // kNth: which attempt fails (1-based)
  uint64_t attempts = 0;  // attempts seen since arming
  bool fired = false;
  uint64_t one_in = 0;    // kRandom: failure probability 1/one_in
  uint64_t rng = 0;       // kRandom: splitmix64 state
};

thread_local Injector tls_injector;

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

FailNthAllocation::FailNthAllocation(uint64_t n) {
  tls_injector = Injector{.mode = n ? Mode::kNth : Mode::kOff, .target = n};
  if (n == 0) tls_injector.mode = Mode::kNth, tls_injector.target = UINT64_MAX;
}
FailNthAllocation::~FailNthAllocation() { tls_injector = Injector{}; }
uint64_t FailNthAllocation::attempts() const { return tls_injector.attempts; }
bool FailNthAllocation::fired() const { return tls_injector.fired; }

FailRandomAllocations::FailRandomAllocations(uint64_t one_in, uint64_t seed) {
  tls_injector = Injector{.mode = Mode::kRandom, .one_in = one_in ? one_in : 1, .rng = seed};
}
FailRandomAllocations::~FailRandomAllocations() { tls_injector = Injector{}; }

namespace detail {
bool allocation_should_fail() {
  Injector& in = tls_injector;
  switch (in.mode) {
    case Mode::kOff: return false;
    case Mode::kNth:
      if (++in.attempts != in.target) return false;
      in.fired = true;
      return true;
    case Mode::kRandom:
      ++in.attempts;
      return splitmix64(in.rng) % in.one_in == 0;
  }
  return false;
}
}  // namespace detail

}  // namespace rcuvm
