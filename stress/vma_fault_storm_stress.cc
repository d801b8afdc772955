// A fault storm: faulting threads call AddressSpace::fault() (reads and
// writes, at random and in hot slots) while one writer thread mmaps, munmaps,
// mprotects, mremaps and forks in the same address space, once with the
// sequence count and once with per-VMA locks.
//
// Checked while it runs: every fault's outcome is the one Linux gives for a
// state some page of the map had during the fault (each page keeps a short
// history of its states, bracketed by a version the writer bumps around each
// call). Checked whenever the writer pauses the faulters, and at the end:
// validate() (no entry outside a VMA, none writable in a read-only VMA), the
// map equals the model, frame reference counts are exact, and nothing leaks.
//
// Then both modes run again with allocations failing at random
// (FailRandomAllocations(--fail-one-in), armed in the writer and in every
// faulting thread): a writer call may then return ENOMEM and must have changed
// nothing (the model keeps the old states, and the checks above hold it to
// that), a fault may return ENOMEM and nothing else, and every invariant
// still holds.
//
//   vma_fault_storm_stress --seconds 3 [--readers 4] [--fail-one-in 16] [--seed N]
#include <array>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "rcuvm/address_space.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "stress_util.h"

namespace rcuvm::stress {
namespace {

constexpr uint64_t kBase = 0x200000000;
constexpr int kSlots = 12;
constexpr int kSlotPages = 8;
constexpr int kStride = 16;  // pages; the 8 after each slot are never mapped
constexpr int kPages = kSlots * kSlotPages;
constexpr int kHotSlots = 2;
constexpr int kHistory = 64;
constexpr uint64_t kFilePages = 4;  // file mappings: pages 4..7 lie beyond EOF

enum State : uint8_t { kUnmapped, kAnonRw, kAnonR, kAnonNone, kFileIn, kFileBeyond };

uint64_t page_addr(int page) {
  return kBase + uint64_t(page / kSlotPages) * kStride * kPageSize +
         uint64_t(page % kSlotPages) * kPageSize;
}
uint64_t slot_addr(int slot) { return page_addr(slot * kSlotPages); }

FaultResult expected(State s, bool write) {
  switch (s) {
    case kUnmapped:
    case kAnonNone:
      return FaultResult::kSigSegv;
    case kAnonRw:
    case kFileIn:
      return FaultResult::kOk;
    case kAnonR:
      return write ? FaultResult::kSigSegv : FaultResult::kOk;
    case kFileBeyond:
      return FaultResult::kSigBus;
  }
  return FaultResult::kSigSegv;
}

// Per page: ver is 2 * (calls that changed it) + 1 while one is under way;
// hist[g % kHistory] is the state after g calls, written before ver turns
// odd for call g.
struct Page {
  std::atomic<uint64_t> ver{0};
  std::array<std::atomic<uint8_t>, kHistory> hist{};
};

struct Shared {
  std::array<Page, kPages> pages;
  std::atomic<bool> stop{false};
  std::atomic<bool> pause{false};
  std::atomic<int> parked{0};
  std::atomic<uint64_t> faults{0}, checked{0}, unchecked{0}, fault_nomem{0};
  // Allocations fail at random (1 in fail_one_in) in every thread.
  bool failing = false;
  uint64_t fail_one_in = 0;
};

// A call's error is legal only as ENOMEM from an allocation failure.
bool injected(const absl::Status& s, const Shared& sh) {
  return sh.failing && errno_of(s) == ENOMEM;
}

class Writer {
 public:
  Writer(AddressSpace& as, Shared& sh, std::shared_ptr<File> file, uint64_t seed, int faulters)
      : as_(as), sh_(sh), file_(std::move(file)), rng_(seed), faulters_(faulters) {
    cur_.fill(kUnmapped);
  }

  void run(const Deadline& deadline) {
    std::optional<FailRandomAllocations> failing;
    if (sh_.failing) failing.emplace(sh_.fail_one_in, rng_.next());
    while (!deadline.passed()) {
      step();
      ++ops_;
      if (ops_ % 64 == 0) quiescent_check();
    }
  }

  void quiescent_check() {
    sh_.pause.store(true, std::memory_order_seq_cst);
    while (sh_.parked.load(std::memory_order_seq_cst) != faulters_) std::this_thread::yield();
    check_invariant(as_, cur_);
    ++checks_;
    sh_.pause.store(false, std::memory_order_seq_cst);
  }

  static void check_invariant(const AddressSpace& as, const std::array<State, kPages>& cur) {
    absl::Status s = as.validate();
    STRESS_REQUIRE(s.ok(), "validate: %s", std::string(s.message()).c_str());
    check_map(as, cur, "");
    // Exact frame reference counts: each anonymous frame is referenced by
    // exactly the entries that map it, and no other frame is in use.
    check_frames(as);
  }

  // The map is the model: each page mapped iff its state says so, with the
  // model's protection. Faulters may run (they never change a VMA's range or
  // protection).
  static void check_map(const AddressSpace& as, const std::array<State, kPages>& cur,
                        const char* when) {
    std::vector<VmaInfo> maps = as.maps();
    for (int p = 0; p < kPages; ++p) {
      const uint64_t a = page_addr(p);
      const VmaInfo* v = nullptr;
      for (const VmaInfo& m : maps)
        if (m.start <= a && a < m.end) v = &m;
      STRESS_REQUIRE((v != nullptr) == (cur[p] != kUnmapped), "%spage %d (%#" PRIx64
                     ") mapped=%d, model state %d", when, p, a, v != nullptr, cur[p]);
      if (!v) continue;
      const VmFlags acc = v->flags & vmf::kAccessFlags;
      const VmFlags want = cur[p] == kAnonR ? vmf::kRead
                           : cur[p] == kAnonNone ? 0
                                                 : vmf::kRead | vmf::kWrite;
      STRESS_REQUIRE(acc == want, "%spage %d prot %#" PRIx64 " model %#" PRIx64, when, p, acc,
                     want);
      const bool file = cur[p] == kFileIn || cur[p] == kFileBeyond;
      STRESS_REQUIRE((v->file != nullptr) == file, "%spage %d file-backed=%d, model state %d",
                     when, p, v->file != nullptr, cur[p]);
    }
  }

  static void check_frames(const AddressSpace& as) {
    std::map<FrameId, uint32_t> refs;
    as.page_table().for_each(0, ~uint64_t{0}, [&](uint64_t, Pte e) {
      if (e & pte::kAnon) ++refs[pte::frame(e)];
    });
    const FrameAllocator& frames = as.page_table().frames();
    for (auto [f, n] : refs)
      STRESS_REQUIRE(frames.refcount(f) == n, "frame %" PRIu64 " refcount %u, mapped %u times",
                     f, frames.refcount(f), n);
    STRESS_REQUIRE(frames.in_use() == refs.size(), "frames in use %" PRIu64 ", mapped %zu",
                   frames.in_use(), refs.size());
  }

  uint64_t ops() const { return ops_; }
  uint64_t nomem() const { return nomem_; }
  uint64_t checks() const { return checks_; }
  const std::array<State, kPages>& model() const { return cur_; }

 private:
  void begin(const std::vector<int>& touched, const std::array<State, kPages>& next) {
    for (int p : touched) {
      Page& pg = sh_.pages[p];
      const uint64_t v = pg.ver.load(std::memory_order_relaxed);
      pg.hist[(v / 2 + 1) % kHistory].store(next[p], std::memory_order_seq_cst);
      pg.ver.store(v + 1, std::memory_order_seq_cst);  // odd: the call begins
    }
  }
  void end(const std::vector<int>& touched, const std::array<State, kPages>& final_states) {
    for (int p : touched) {
      Page& pg = sh_.pages[p];
      const uint64_t v = pg.ver.load(std::memory_order_relaxed);
      // A call that failed leaves the page as it was: history says so.
      pg.hist[(v / 2 + 1) % kHistory].store(final_states[p], std::memory_order_seq_cst);
      pg.ver.store(v + 1, std::memory_order_seq_cst);  // even: done
    }
    cur_ = final_states;
  }

  // The states after a call: `next` if it succeeded, the current ones if it
  // failed for want of memory (which changes nothing).
  const std::array<State, kPages>& done(const absl::Status& s,
                                        const std::array<State, kPages>& next) {
    if (s.ok()) return next;
    ++nomem_;
    // Nothing changed: the map is still the model, right now.
    check_map(as_, cur_, "after an ENOMEM call: ");
    return cur_;
  }

  static std::vector<int> slot_pages(int slot, int from = 0, int to = kSlotPages) {
    std::vector<int> v;
    for (int i = from; i < to; ++i) v.push_back(slot * kSlotPages + i);
    return v;
  }

  int pick_slot() {
    return rng_.one_in(3) ? int(rng_.below(kHotSlots)) : int(rng_.below(kSlots));
  }

  void step() {
    const uint64_t op = rng_.below(100);
    const int slot = pick_slot();
    std::array<State, kPages> next = cur_;
    if (op < 25) {  // mmap anonymous (fixed, replacing whatever is there)
      const bool ro = rng_.one_in(4);
      auto pages = slot_pages(slot);
      for (int p : pages) next[p] = ro ? kAnonR : kAnonRw;
      begin(pages, next);
      auto r = as_.mmap(slot_addr(slot), kSlotPages * kPageSize,
                        ro ? kProtRead : kProtRead | kProtWrite,
                        kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0);
      STRESS_REQUIRE(r.ok() || injected(r.status(), sh_), "mmap anon: %s",
                     std::string(r.status().message()).c_str());
      end(pages, done(r.status(), next));
    } else if (op < 35) {  // mmap a private file, half beyond its end
      auto pages = slot_pages(slot);
      for (int i = 0; i < kSlotPages; ++i)
        next[pages[i]] = uint64_t(i) < kFilePages ? kFileIn : kFileBeyond;
      begin(pages, next);
      auto r = as_.mmap(slot_addr(slot), kSlotPages * kPageSize, kProtRead | kProtWrite,
                        kMapPrivate | kMapFixed, file_, 0);
      STRESS_REQUIRE(r.ok() || injected(r.status(), sh_), "mmap file: %s",
                     std::string(r.status().message()).c_str());
      end(pages, done(r.status(), next));
    } else if (op < 55) {  // munmap part of a slot
      const int a = int(rng_.below(kSlotPages)), b = int(rng_.between(a + 1, kSlotPages));
      auto pages = slot_pages(slot, a, b);
      for (int p : pages) next[p] = kUnmapped;
      begin(pages, next);
      absl::Status s = as_.munmap(page_addr(pages.front()), (b - a) * kPageSize);
      STRESS_REQUIRE(s.ok() || injected(s, sh_), "munmap: %s", std::string(s.message()).c_str());
      end(pages, done(s, next));
    } else if (op < 80) {  // mprotect part of an anonymous slot
      const int a = int(rng_.below(kSlotPages)), b = int(rng_.between(a + 1, kSlotPages));
      auto pages = slot_pages(slot, a, b);
      for (int p : pages)
        if (cur_[p] != kAnonRw && cur_[p] != kAnonR && cur_[p] != kAnonNone) return;
      const uint64_t k = rng_.below(3);
      const State st = k == 0 ? kAnonRw : k == 1 ? kAnonR : kAnonNone;
      const int prot = k == 0 ? kProtRead | kProtWrite : k == 1 ? kProtRead : kProtNone;
      for (int p : pages) next[p] = st;
      begin(pages, next);
      absl::Status s = as_.mprotect(page_addr(pages.front()), (b - a) * kPageSize, prot);
      STRESS_REQUIRE(s.ok() || injected(s, sh_), "mprotect: %s",
                     std::string(s.message()).c_str());
      end(pages, done(s, next));
    } else if (op < 97) {  // mremap a whole slot onto another (moves the pages)
      int to = int(rng_.below(kSlots));
      if (to == slot) return;
      for (int i = 0; i < kSlotPages; ++i)
        if (cur_[slot * kSlotPages + i] == kUnmapped) return;
      auto pages = slot_pages(slot);
      auto dst = slot_pages(to);
      pages.insert(pages.end(), dst.begin(), dst.end());
      for (int i = 0; i < kSlotPages; ++i) {
        next[to * kSlotPages + i] = cur_[slot * kSlotPages + i];
        next[slot * kSlotPages + i] = kUnmapped;
      }
      begin(pages, next);
      auto r = as_.mremap(slot_addr(slot), kSlotPages * kPageSize, kSlotPages * kPageSize,
                          kMremapMayMove | kMremapFixed, slot_addr(to));
      // A slot split into several VMAs cannot move in one call (EFAULT).
      STRESS_REQUIRE(r.ok() || errno_of(r.status()) == EFAULT || injected(r.status(), sh_),
                     "mremap: %s", std::string(r.status().message()).c_str());
      if (!r.ok() && errno_of(r.status()) == EFAULT) {
        end(pages, cur_);
      } else {
        end(pages, done(r.status(), next));
      }
    } else {  // fork: the child shares the anonymous pages copy-on-write, then exits
      auto child = as_.fork();
      STRESS_REQUIRE(child.ok() || injected(child.status(), sh_), "fork: %s",
                     std::string(child.status().message()).c_str());
      if (!child.ok()) {
        ++nomem_;
        return;
      }
      for (int i = 0; i < 4; ++i) {
        const int p = int(rng_.below(kPages));
        auto r = (*child)->fault(page_addr(p), Access::kWrite);
        if (!r.ok() && injected(r.status(), sh_)) continue;
        STRESS_REQUIRE(r.ok() && *r == expected(cur_[p], true), "child fault on page %d", p);
      }
    }
  }

  AddressSpace& as_;
  Shared& sh_;
  std::shared_ptr<File> file_;
  Rng rng_;
  int faulters_;
  std::array<State, kPages> cur_;
  uint64_t ops_ = 0, checks_ = 0, nomem_ = 0;
};

void faulter(AddressSpace& as, Shared& sh, uint64_t seed) {
  Rng rng(seed);
  std::optional<FailRandomAllocations> failing;
  if (sh.failing) failing.emplace(sh.fail_one_in, rng.next());
  while (!sh.stop.load(std::memory_order_relaxed)) {
    if (sh.pause.load(std::memory_order_seq_cst)) {
      sh.parked.fetch_add(1, std::memory_order_seq_cst);
      while (sh.pause.load(std::memory_order_seq_cst)) std::this_thread::yield();
      sh.parked.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    const bool write = rng.one_in(2);
    if (rng.one_in(16)) {  // a guard page between slots: never mapped
      const uint64_t a = page_addr(int(rng.below(kPages))) + kSlotPages * kPageSize;
      auto r = as.fault(a, write ? Access::kWrite : Access::kRead);
      if (!r.ok() && injected(r.status(), sh)) continue;
      STRESS_REQUIRE(r.ok() && *r == FaultResult::kSigSegv, "fault on guard page %#" PRIx64, a);
      continue;
    }
    const int p = rng.one_in(2) ? int(rng.below(kHotSlots * kSlotPages)) : int(rng.below(kPages));
    Page& pg = sh.pages[p];
    const uint64_t v1 = pg.ver.load(std::memory_order_seq_cst);
    const uint64_t addr = page_addr(p) + rng.below(kPageSize);
    auto r = as.fault(addr, write ? Access::kWrite : Access::kRead);
    const uint64_t v2 = pg.ver.load(std::memory_order_seq_cst);
    STRESS_REQUIRE(r.ok() || injected(r.status(), sh), "fault at %#" PRIx64 ": %s", addr,
                   std::string(r.status().message()).c_str());
    sh.faults.fetch_add(1, std::memory_order_relaxed);
    if (!r.ok()) {  // ENOMEM: the fault changed nothing
      sh.fault_nomem.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    // States the page had during the fault: after call g for every g from
    // the last completed before it to the last begun before it returned.
    const uint64_t g_first = v1 / 2, g_last = (v2 + 1) / 2;
    if (g_last - g_first >= kHistory - 1) {
      sh.unchecked.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    bool legal = false;
    int seen[kHistory], n = 0;
    for (uint64_t g = g_first; g <= g_last; ++g) {
      const State s = State(pg.hist[g % kHistory].load(std::memory_order_seq_cst));
      seen[n++] = s;
      legal |= expected(s, write) == *r;
    }
    const uint64_t v3 = pg.ver.load(std::memory_order_seq_cst);
    if ((v3 + 1) / 2 - g_first >= kHistory - 1) {  // history overwritten meanwhile
      sh.unchecked.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    STRESS_REQUIRE(legal, "page %d %s fault gave %d; states during it: first %d last %d (%d)", p,
                   write ? "write" : "read", int(*r), seen[0], seen[n - 1], n);
    sh.checked.fetch_add(1, std::memory_order_relaxed);
  }
}

void storm(VmaLockMode mode, double seconds, int nfaulters, uint64_t seed,
           uint64_t fail_one_in) {
  auto frames = std::make_shared<FrameAllocator>();
  AddressSpaceOptions opt;
  opt.fault_lock = mode;
  auto file = File::make("storm", kFilePages * kPageSize, {});
  Shared sh;
  sh.failing = fail_one_in != 0;
  sh.fail_one_in = fail_one_in;
  FaultStats stats;
  uint64_t ops = 0, checks = 0, nomem = 0;
  {
    AddressSpace as(opt, frames);
    Writer writer(as, sh, file, seed, nfaulters);
    std::vector<std::thread> threads;
    for (int i = 0; i < nfaulters; ++i)
      threads.emplace_back(faulter, std::ref(as), std::ref(sh), seed + 1 + uint64_t(i));
    writer.run(Deadline(seconds));
    writer.quiescent_check();
    sh.stop.store(true);
    for (auto& t : threads) t.join();
    Writer::check_invariant(as, writer.model());
    stats = as.fault_stats();
    ops = writer.ops();
    checks = writer.checks();
    nomem = writer.nomem();
  }
  rcu::drain();
  STRESS_REQUIRE(frames->in_use() == 0, "%" PRIu64 " frames leaked", frames->in_use());
  STRESS_REQUIRE(sh.checked.load() > 0, "no fault outcome was checked");
  std::printf(
      "%s: %s%s: %" PRIu64 " writer calls (%" PRIu64 " ENOMEM), %" PRIu64
      " invariant checks, %" PRIu64 " faults (%" PRIu64 " outcomes checked, %" PRIu64
      " unchecked, %" PRIu64 " ENOMEM); speculative %" PRIu64 ", locked %" PRIu64
      " (marked %" PRIu64 ", seq %" PRIu64 ", anon_vma %" PRIu64 ", pte race %" PRIu64
      ", no vma %" PRIu64 ", nomem %" PRIu64 "), retries %" PRIu64 "\n",
      program_name(), mode == VmaLockMode::kPerVma ? "per-vma" : "seqcount",
      sh.failing ? " + failing allocations" : "", ops, nomem, checks, sh.faults.load(),
      sh.checked.load(), sh.unchecked.load(), sh.fault_nomem.load(), stats.speculative,
      stats.locked, stats.fb_marked, stats.fb_seq, stats.fb_anon_vma, stats.fb_pte_race,
      stats.fb_no_vma, stats.fb_nomem, stats.seq_retries);
}

}  // namespace
}  // namespace rcuvm::stress

int main(int argc, char** argv) {
  using namespace rcuvm::stress;
  Args args(argc, argv, {"fail-one-in"}, " [--fail-one-in N (default 16)]");
  const double seconds = args.seconds(3);
  const int faulters = std::max(4, args.readers(4));
  const uint64_t seed = args.seed();
  const uint64_t fail_one_in = std::max<uint64_t>(2, args.get_u64("fail-one-in", 16));
  std::printf("%s: seed %" PRIu64 ", %d faulting threads, allocations failing 1 in %" PRIu64
              " in the last two storms\n",
              program_name(), seed, faulters, fail_one_in);
  storm(rcuvm::VmaLockMode::kSeqCount, seconds / 4, faulters, seed, 0);
  storm(rcuvm::VmaLockMode::kPerVma, seconds / 4, faulters, seed + 1000, 0);
  storm(rcuvm::VmaLockMode::kSeqCount, seconds / 4, faulters, seed + 2000, fail_one_in);
  storm(rcuvm::VmaLockMode::kPerVma, seconds / 4, faulters, seed + 3000, fail_one_in);
  return 0;
}
