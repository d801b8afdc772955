// Inline read-side primitives for rcuvm's own hot paths (the tree's readers).
// The public face is rcuvm/rcu.h; this header adds the inlined liburcu
// read lock (urcu-memb, _LGPL_SOURCE) and the ThreadSanitizer annotations.
//
// Annotation scheme (see DESIGN.md, "Sanitizers are part of the design"):
//   (A1) every read-side unlock releases `grace_token()`;
//   (A2) every reclaim callback acquires it before running.
// Together they tell TSAN that a reclaim happens after every read section that
// ended before it, which is what a grace period guarantees.
#ifndef RCUVM_SRC_SYNC_RCU_INTERNAL_H_
#define RCUVM_SRC_SYNC_RCU_INTERNAL_H_

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>

#include "rcuvm/rcu.h"

#if defined(__SANITIZE_THREAD__)
#define RCUVM_TSAN 1
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#else
#define RCUVM_TSAN 0
#endif

namespace rcuvm::rcu::internal {

// True once this thread is registered with liburcu.
extern thread_local bool tls_registered;
// Nesting depth of ReadGuards on this thread (for in_read_section()).
extern thread_local int tls_read_depth;

void register_slow();  // registers and arranges unregistration at thread exit

inline void* grace_token() {
  static char token;
  return &token;
}

inline void tsan_release_grace() {
#if RCUVM_TSAN
  __tsan_release(grace_token());
#endif
}
inline void tsan_acquire_grace() {
#if RCUVM_TSAN
  __tsan_acquire(grace_token());
#endif
}

// An inlined read-side critical section.
class ReadSection {
 public:
  ReadSection() {
    if (__builtin_expect(!tls_registered, 0)) register_slow();
    urcu_memb_read_lock();
    ++tls_read_depth;
  }
  ~ReadSection() {
    --tls_read_depth;
    tsan_release_grace();  // (A1)
    urcu_memb_read_unlock();
  }
  ReadSection(const ReadSection&) = delete;
  ReadSection& operator=(const ReadSection&) = delete;
};

}  // namespace rcuvm::rcu::internal

#endif  // RCUVM_SRC_SYNC_RCU_INTERNAL_H_
