// Unit tests of rcuvm/rcu.h: read guards (nesting, per-thread state),
// deferred reclaim (exactly once, never while a pre-existing reader is still
// inside its section), grace periods, and thread registration (lazy on the
// first guard, explicit with ThreadScope, undone at thread exit).
//
// Some tests check that something has NOT happened while a reader holds its
// section. They sleep briefly to give a broken implementation the chance to
// misbehave, but never assert on timing: a correct implementation passes
// however long the sleep, and a wrong one fails whenever it shows itself.
#include "rcuvm/rcu.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace rcuvm::rcu {
namespace {

// A one-shot flag threads can wait on.
class Latch {
 public:
  void open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Counts its reclaims; lives on the test's stack or heap as needed.
struct Counted final : Deferred {
  std::atomic<int>* reclaims;
  explicit Counted(std::atomic<int>* r) : reclaims(r) {}
  void reclaim() override { reclaims->fetch_add(1); }
};

// Deletes itself on reclaim, the usual pattern.
struct SelfDeleting final : Deferred {
  static inline std::atomic<int> live{0};
  SelfDeleting() { live.fetch_add(1); }
  ~SelfDeleting() override { live.fetch_sub(1); }
  void reclaim() override { delete this; }
};

void Pause() { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }

// A thread inside a ReadGuard from construction (which returns once it is
// inside) until leave().
class ReaderInside {
 public:
  ReaderInside()
      : thread_([this] {
          ReadGuard g;
          entered_.open();
          release_.wait();
        }) {
    entered_.wait();
  }
  ~ReaderInside() { leave(); }
  void leave() {
    if (!thread_.joinable()) return;
    release_.open();
    thread_.join();
  }

 private:
  Latch entered_, release_;
  std::thread thread_;  // last: starts once the latches exist
};

TEST(RcuTest, ReadGuardsNest) {
  EXPECT_FALSE(in_read_section());
  {
    ReadGuard outer;
    EXPECT_TRUE(in_read_section());
    {
      ReadGuard inner;
      EXPECT_TRUE(in_read_section());
      {
        ReadGuard innermost;
        EXPECT_TRUE(in_read_section());
      }
      EXPECT_TRUE(in_read_section());
    }
    EXPECT_TRUE(in_read_section());  // the outer guard still holds
  }
  EXPECT_FALSE(in_read_section());
  // Again, after the first use.
  {
    ReadGuard g;
    EXPECT_TRUE(in_read_section());
  }
  EXPECT_FALSE(in_read_section());
}

TEST(RcuTest, ReadSectionStateIsPerThread) {
  ReadGuard g;
  ASSERT_TRUE(in_read_section());
  bool other_thread_sees = true;
  std::thread t([&] { other_thread_sees = in_read_section(); });
  t.join();
  EXPECT_FALSE(other_thread_sees);
  EXPECT_TRUE(in_read_section());
}

TEST(RcuTest, RetireReclaimsExactlyOnceAfterDrain) {
  std::atomic<int> reclaims{0};
  Counted obj(&reclaims);
  retire(&obj);
  drain();
  EXPECT_EQ(reclaims.load(), 1);
  drain();
  synchronize();
  drain();
  EXPECT_EQ(reclaims.load(), 1);
}

TEST(RcuTest, ManyRetiresAllReclaimedOnce) {
  std::atomic<int> reclaims{0};
  std::vector<Counted> objs;
  objs.reserve(2000);
  for (int i = 0; i < 2000; ++i) objs.emplace_back(&reclaims);
  for (Counted& o : objs) retire(&o);
  drain();
  EXPECT_EQ(reclaims.load(), 2000);
  for (int i = 0; i < 1000; ++i) retire(new SelfDeleting);
  drain();
  EXPECT_EQ(SelfDeleting::live.load(), 0);
  EXPECT_EQ(reclaims.load(), 2000);
}

TEST(RcuTest, RetireInsideAReadSectionIsAllowed) {
  std::atomic<int> reclaims{0};
  Counted obj(&reclaims);
  {
    ReadGuard g;
    retire(&obj);  // never blocks, even here
    EXPECT_EQ(reclaims.load(), 0);  // our own section is still open
  }
  drain();
  EXPECT_EQ(reclaims.load(), 1);
}

TEST(RcuTest, NoReclaimWhileAnEarlierReaderIsInside) {
  std::atomic<int> reclaims{0};
  Counted obj(&reclaims);
  ReaderInside reader;
  retire(&obj);
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    drain();
    drained = true;
  });
  Pause();
  EXPECT_EQ(reclaims.load(), 0) << "reclaimed while a reader that began earlier was inside";
  EXPECT_FALSE(drained.load());
  reader.leave();
  drainer.join();
  EXPECT_EQ(reclaims.load(), 1);
}

// Records the order in which reclaims run.
struct Ordered final : Deferred {
  std::vector<int>* log;
  std::mutex* mu;
  int id;
  Ordered(std::vector<int>* l, std::mutex* m, int i) : log(l), mu(m), id(i) {}
  void reclaim() override {
    std::lock_guard<std::mutex> g(*mu);
    log->push_back(id);
  }
};

TEST(RcuTest, DeferredListReclaimsEachObjectOnceInOrderAfterDrain) {
  for (int n : {1, 2, 3, 100}) {
    SCOPED_TRACE(n);
    std::vector<int> log;
    std::mutex mu;
    std::vector<Ordered> objs;
    objs.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) objs.emplace_back(&log, &mu, i);
    DeferredList list;
    for (Ordered& o : objs) list.add(&o);
    {
      std::lock_guard<std::mutex> g(mu);
      EXPECT_TRUE(log.empty()) << "reclaimed before the list was handed over";
    }
    list.retire_all();
    drain();
    // The log is read under its mutex: drain() orders the reclaims before
    // this point, but ThreadSanitizer cannot see liburcu's barrier.
    auto logged = [&] {
      std::lock_guard<std::mutex> g(mu);
      return log;
    };
    std::vector<int> want(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) want[static_cast<size_t>(i)] = i;
    EXPECT_EQ(logged(), want);
    list.retire_all();  // empty now: nothing happens
    drain();
    EXPECT_EQ(logged().size(), static_cast<size_t>(n));
  }
}

TEST(RcuTest, DeferredListRetiresWhatItHoldsWhenDestroyed) {
  {
    DeferredList list;
    for (int i = 0; i < 50; ++i) list.add(new SelfDeleting);
  }
  drain();
  EXPECT_EQ(SelfDeleting::live.load(), 0);
  { DeferredList unused; }  // an empty list retires nothing
  drain();
}

TEST(RcuTest, DeferredListWaitsForEarlierReaders) {
  std::atomic<int> reclaims{0};
  Counted a(&reclaims), b(&reclaims), c(&reclaims);
  ReaderInside reader;
  DeferredList list;
  list.add(&a);
  list.add(&b);
  list.add(&c);
  list.retire_all();
  std::thread drainer([] { drain(); });
  Pause();
  EXPECT_EQ(reclaims.load(), 0) << "reclaimed while a reader that began earlier was inside";
  reader.leave();
  drainer.join();
  EXPECT_EQ(reclaims.load(), 3);
}

TEST(RcuTest, SynchronizeWaitsForEarlierReaders) {
  Latch entered, release;
  std::atomic<bool> reader_done{false};
  std::thread reader([&] {
    {
      ReadGuard g;
      entered.open();
      release.wait();
      reader_done = true;  // still inside the section
    }
  });
  entered.wait();
  std::atomic<bool> synced{false};
  std::atomic<bool> reader_done_when_synced{false};
  std::thread syncer([&] {
    synchronize();
    reader_done_when_synced = reader_done.load();
    synced = true;
  });
  Pause();
  EXPECT_FALSE(synced.load()) << "a grace period ended while a reader was inside";
  release.open();
  reader.join();
  syncer.join();
  EXPECT_TRUE(reader_done_when_synced.load());
}

TEST(RcuTest, SynchronizeDoesNotWaitForLaterReadersOrIdleThreads) {
  // A registered thread outside any section must not hold up a grace
  // period: this test hangs (and times out) if it does.
  Latch registered, release;
  std::thread idle([&] {
    { ReadGuard g; }  // registers lazily, then leaves the section
    registered.open();
    release.wait();
  });
  registered.wait();
  synchronize();
  drain();
  release.open();
  idle.join();
}

TEST(RcuTest, NewThreadRegistersLazilyOnItsFirstGuard) {
  // The reader never calls ThreadScope or ensure_registered(): its first
  // ReadGuard must register it, or a grace period would not wait for it.
  Latch entered, release;
  std::atomic<bool> in_section{false};
  std::thread reader([&] {
    ReadGuard g;
    in_section = in_read_section();
    entered.open();
    release.wait();
  });
  entered.wait();
  EXPECT_TRUE(in_section.load());
  std::atomic<bool> synced{false};
  std::thread syncer([&] {
    synchronize();
    synced = true;
  });
  Pause();
  EXPECT_FALSE(synced.load()) << "the lazily registered reader was not waited for";
  release.open();
  reader.join();
  syncer.join();
  EXPECT_TRUE(synced.load());
}

TEST(RcuTest, ThreadScopeRegistersUpFront) {
  Latch ready, release;
  std::atomic<bool> scoped_in_section{true};
  std::thread t([&] {
    ThreadScope scope;
    scoped_in_section = in_read_section();  // registered, not reading
    {
      ReadGuard g;
      ready.open();
      release.wait();
    }
    ensure_registered();  // idempotent
  });
  ready.wait();
  EXPECT_FALSE(scoped_in_section.load());
  std::atomic<bool> synced{false};
  std::thread syncer([&] {
    synchronize();
    synced = true;
  });
  Pause();
  EXPECT_FALSE(synced.load());
  release.open();
  t.join();
  syncer.join();
  // The thread unregistered when its scope and the thread ended: grace
  // periods no longer consider it (a dangling registration would hang here).
  synchronize();
}

TEST(RcuTest, ThreadsComingAndGoingLeaveNoRegistrationBehind) {
  std::atomic<int> reclaims{0};
  std::vector<Counted> objs;
  objs.reserve(16 * 50);
  for (int i = 0; i < 16 * 50; ++i) objs.emplace_back(&reclaims);
  for (int round = 0; round < 16; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, round, i] {
        if (i % 2) {
          ThreadScope scope;
          ReadGuard g;
        }
        ReadGuard g;  // lazily registered (or again, after the scope ended)
        ReadGuard nested;
        EXPECT_TRUE(in_read_section());
        // Retire from this thread too (callable from any thread): thread i
        // takes objects [i*13, (i+1)*13) of this round's 50.
        for (int j = i * 13; j < std::min(50, (i + 1) * 13); ++j) retire(&objs[round * 50 + j]);
      });
    }
    for (std::thread& t : threads) t.join();
    synchronize();  // would hang on a registration left by an exited thread
  }
  drain();
  EXPECT_EQ(reclaims.load(), 16 * 50);
}

TEST(RcuTest, EnsureRegisteredIsIdempotent) {
  std::thread t([] {
    ensure_registered();
    ensure_registered();
    EXPECT_FALSE(in_read_section());
    ReadGuard g;
    EXPECT_TRUE(in_read_section());
  });
  t.join();
  synchronize();
}

#ifndef NDEBUG
// Debug builds abort with a message when a grace period is awaited inside a
// read section (it would wait for itself forever).
TEST(RcuDeathTest, SynchronizeInsideAReadGuardAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ReadGuard g;
        synchronize();
      },
      "ReadGuard");
  EXPECT_DEATH(
      {
        ReadGuard g;
        drain();
      },
      "ReadGuard");
}
#endif

}  // namespace
}  // namespace rcuvm::rcu
