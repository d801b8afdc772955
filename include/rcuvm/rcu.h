// rcuvm/rcu.h: a small C++ face over liburcu (the urcu-memb flavour).
//
// Synopsis
//   rcuvm::rcu::ReadGuard g;          // read-side critical section (nests)
//   rcuvm::rcu::retire(obj);          // obj->reclaim() after a grace period
//   rcuvm::rcu::DeferredList l;       // l.add(a); l.add(b); l.retire_all(): one callback
//   rcuvm::rcu::synchronize();        // wait for a grace period
//   rcuvm::rcu::drain();              // wait until every retired object is reclaimed
//   rcuvm::rcu::ThreadScope scope;    // optional explicit registration
//
// Threads register themselves lazily on their first ReadGuard and unregister
// when they exit, so users never call liburcu and cannot forget registration.
// ThreadScope is for threads that want registration (and its cost) up front.
//
// Caveats
// - A pointer loaded inside a ReadGuard is valid until that guard (or the
//   outermost enclosing one) ends. Do not keep it longer without a reference.
// - synchronize() and drain() must not be called inside a ReadGuard: they would
//   wait for themselves. Debug builds abort with a message if you do.
// - ThreadSanitizer cannot see liburcu's grace periods. This layer annotates
//   them: every read-side unlock is a release and every reclaim an acquire of
//   the same token, so a TSAN build reports races on reclaimed memory only when
//   they are real.
#ifndef RCUVM_RCU_H_
#define RCUVM_RCU_H_

namespace rcuvm::rcu {

// Registers the calling thread with liburcu if it is not yet registered.
// Idempotent and cheap after the first call (one thread-local test).
void ensure_registered();

// Registers the calling thread for its lifetime (the object's scope). Threads
// that never create one are registered lazily by their first ReadGuard.
class ThreadScope {
 public:
  ThreadScope();
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
};

// An RCU read-side critical section. Never blocks; nests freely.
class ReadGuard {
 public:
  ReadGuard();
  ~ReadGuard();
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;
};

// Returns true if the calling thread is inside a ReadGuard.
bool in_read_section();

// Something to reclaim after a grace period. Derive from it, then retire().
// The 16 bytes of storage are liburcu's rcu_head.
class Deferred {
 public:
  virtual ~Deferred() = default;
  // Runs on liburcu's call_rcu thread once no reader can still see the object.
  // Typically `delete this` or returns memory to a pool.
  virtual void reclaim() = 0;

 private:
  friend struct DeferredAccess;
  alignas(8) unsigned char head_[16];
};

// Schedules obj->reclaim() after a grace period. Callable from any thread,
// inside or outside a read section; never blocks.
void retire(Deferred* obj);

// Objects to retire together: after one grace period, one liburcu callback
// reclaims them all, instead of one call_rcu each (each one enqueues on
// liburcu's list and may wake its thread, a full memory barrier). For a
// writer that drops many objects at once, such as an address space's exit.
// add() never fails: if the list cannot grow, that object is retired alone.
// retire_all() (or the destructor) hands the list over; reclaim runs in the
// order of add(). Not thread-safe: one list per writer.
class DeferredList {
 public:
  DeferredList() = default;
  ~DeferredList() { retire_all(); }
  DeferredList(const DeferredList&) = delete;
  DeferredList& operator=(const DeferredList&) = delete;

  void add(Deferred* obj);
  void retire_all();

 private:
  struct Items;                 // a growable array, kept out of this header
  Deferred* first_ = nullptr;  // a list of one needs no array
  Items* items_ = nullptr;     // the rest, once there is more than one
};

// Waits for a grace period: every read section that began before the call has
// ended when it returns. Must not be called inside a ReadGuard.
void synchronize();

// Waits until every object retired before the call has been reclaimed (liburcu
// rcu_barrier). Use before shutdown and in tests that count memory.
void drain();

}  // namespace rcuvm::rcu

#endif  // RCUVM_RCU_H_
