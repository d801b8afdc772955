// The C++ face of liburcu (urcu-memb): lazy registration, read guards,
// deferred reclaim through call_rcu, grace periods and shutdown barriers.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "sync/rcu_internal.h"

namespace rcuvm::rcu {
namespace internal {

thread_local bool tls_registered = false;
thread_local int tls_read_depth = 0;

namespace {
// Unregisters the thread when it exits; constructed on first registration.
struct ExitUnregister {
  ~ExitUnregister() {
    if (tls_registered) {
      urcu_memb_unregister_thread();
      tls_registered = false;
    }
  }
};
thread_local bool tls_owned_by_scope = false;
}  // namespace

void register_slow() {
  thread_local ExitUnregister at_exit;
  (void)at_exit;
  urcu_memb_register_thread();
  tls_registered = true;
}

}  // namespace internal

using internal::tls_read_depth;
using internal::tls_registered;

void ensure_registered() {
  if (!tls_registered) internal::register_slow();
}

ThreadScope::ThreadScope() {
  if (!tls_registered) {
    internal::register_slow();
    internal::tls_owned_by_scope = true;
  }
}

ThreadScope::~ThreadScope() {
  if (internal::tls_owned_by_scope && tls_registered && tls_read_depth == 0) {
    urcu_memb_unregister_thread();
    tls_registered = false;
    internal::tls_owned_by_scope = false;
  }
}

ReadGuard::ReadGuard() {
  if (!tls_registered) internal::register_slow();
  urcu_memb_read_lock();
  ++tls_read_depth;
}

ReadGuard::~ReadGuard() {
  --tls_read_depth;
  internal::tsan_release_grace();  // (A1)
  urcu_memb_read_unlock();
}

bool in_read_section() { return tls_read_depth > 0; }

struct DeferredAccess {
  static rcu_head* head(Deferred* d) { return reinterpret_cast<rcu_head*>(d->head_); }
  static ptrdiff_t head_offset(Deferred* d) {
    return reinterpret_cast<char*>(d->head_) - reinterpret_cast<char*>(d);
  }
};

namespace {
static_assert(sizeof(rcu_head) == 16, "Deferred reserves 16 bytes for rcu_head");

// Offset of the rcu_head inside every Deferred, measured once on a probe.
struct Probe final : Deferred {
  void reclaim() override {}
};
ptrdiff_t head_offset() {
  static const ptrdiff_t offset = [] {
    Probe probe;
    return DeferredAccess::head_offset(&probe);
  }();
  return offset;
}

void run_reclaim(rcu_head* head) {
  internal::tsan_acquire_grace();  // (A2)
  auto* d = reinterpret_cast<Deferred*>(reinterpret_cast<char*>(head) - head_offset());
#if RCUVM_TSAN
  __tsan_acquire(d);  // pairs with the release in retire()
#endif
  d->reclaim();
}

void die_in_read_section(const char* what) {
  std::fprintf(stderr, "rcuvm: %s called inside an rcu::ReadGuard (would deadlock)\n", what);
  std::abort();
}
}  // namespace

void retire(Deferred* obj) {
  ensure_registered();
  (void)head_offset();
#if RCUVM_TSAN
  __tsan_release(obj);  // the writer's last writes happen before reclaim
#endif
  urcu_memb_call_rcu(DeferredAccess::head(obj), run_reclaim);
}

// The list's objects, and the callback that reclaims them: the batch is a
// Deferred of its own, so the whole list costs one call_rcu.
struct DeferredList::Items final : Deferred {
  std::vector<Deferred*> objs;
  void reclaim() override {
    for (Deferred* d : objs) {
#if RCUVM_TSAN
      __tsan_acquire(d);  // pairs with the release in add()
#endif
      d->reclaim();  // a Deferred's own reclaim: may delete it
    }
    delete this;
  }
};

void DeferredList::add(Deferred* obj) {
#if RCUVM_TSAN
  __tsan_release(obj);  // the writer's last writes happen before reclaim
#endif
  if (!first_) {
    first_ = obj;
    return;
  }
  if (!items_) items_ = new (std::nothrow) Items;
  if (items_) {
    try {
      items_->objs.push_back(obj);
      return;
    } catch (const std::bad_alloc&) {
    }
  }
  retire(obj);  // no room to batch it: on its own
}

void DeferredList::retire_all() {
  Deferred* first = first_;
  Items* items = items_;
  first_ = nullptr;
  items_ = nullptr;
  if (!first) return;
  if (items) {
    try {
      items->objs.insert(items->objs.begin(), first);
      retire(items);
      return;
    } catch (const std::bad_alloc&) {
      retire(items);  // the others still go together
    }
  }
  retire(first);
}

void synchronize() {
  if (tls_read_depth > 0) die_in_read_section("rcu::synchronize()");
  ensure_registered();
  urcu_memb_synchronize_rcu();
}

void drain() {
  if (tls_read_depth > 0) die_in_read_section("rcu::drain()");
  ensure_registered();
  urcu_memb_barrier();
}

}  // namespace rcuvm::rcu

#if RCUVM_TSAN
// liburcu 0.13's inlined read-unlock reads the grace-period futex word, and
// urcu_memb_barrier() hands a completion to the call_rcu thread, both with
// accesses TSAN cannot pair (the other side runs in the uninstrumented
// library). They are liburcu's own synchronisation, not rcuvm's data.
extern "C" const char* __tsan_default_suppressions() {
  return "race:urcu_common_wake_up_gp\n"
         "race:urcu_memb_barrier\n";
}
#endif
