// src/vm/locks.h: scoped absl::Mutex locks that ThreadSanitizer can see.
//
// The abseil we link is not built with -fsanitize=thread, so TSAN cannot see
// absl::Mutex's own synchronisation and would report every access guarded by
// one as a race once two threads contend. These wrappers add exactly the
// happens-before edges the mutex provides: acquire after locking, release
// before unlocking (shared holders release too, so an exclusive holder
// acquires everything they did; that is what the lock guarantees). Outside
// TSAN builds they are plain absl::MutexLock / ReaderMutexLock.
#ifndef RCUVM_SRC_VM_LOCKS_H_
#define RCUVM_SRC_VM_LOCKS_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace rcuvm::vm {

inline void tsan_acquire(const void* p) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(p));
#else
  (void)p;
#endif
}
inline void tsan_release(const void* p) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(p));
#else
  (void)p;
#endif
}

class ABSL_SCOPED_LOCKABLE MuLock {
 public:
  explicit MuLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
    tsan_acquire(mu_);
  }
  ~MuLock() ABSL_UNLOCK_FUNCTION() {
    tsan_release(mu_);
    mu_->Unlock();
  }
  MuLock(const MuLock&) = delete;
  MuLock& operator=(const MuLock&) = delete;

 private:
  absl::Mutex* mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMuLock {
 public:
  explicit ReaderMuLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
    tsan_acquire(mu_);
  }
  ~ReaderMuLock() ABSL_UNLOCK_FUNCTION() {
    tsan_release(mu_);
    mu_->ReaderUnlock();
  }
  ReaderMuLock(const ReaderMuLock&) = delete;
  ReaderMuLock& operator=(const ReaderMuLock&) = delete;

 private:
  absl::Mutex* mu_;
};

}  // namespace rcuvm::vm

#endif  // RCUVM_SRC_VM_LOCKS_H_
