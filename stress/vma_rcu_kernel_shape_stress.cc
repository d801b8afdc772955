// vma_rcu_kernel_shape_stress: the Linux maple tree's RCU stress shape
// (tools/testing/radix-tree/maple.c: rcu_stress with 200 readers, and the
// symmetric-expansion test) on the VMA layer, at full scale: the lockless
// readers are AddressSpace::find_vma_rcu, lock_vma_rcu and fault(), the
// writers real system calls.
//
// 1. The kernel shape. 1,000 slots of 16 pages each, in 100 groups of ten;
//    a slot holds at most 8 pages of mappings, so slots never merge. Each
//    slot has a role, and the role fixes the few states the writer ever
//    leaves it in:
//      toggle   mapped [0,4) rw, or unmapped: every 5 iterations munmap then
//               mmap again; every 11 a MAP_FIXED mmap replaces the VMA with
//               an identical new one
//      delete   mapped, munmapped at iteration 40 of a pass
//      add      unmapped, mmapped at iteration 50
//      modify   [0,4) rw, mprotected read-only at iteration 60
//      split    [0,4) rw, or [0,2) rw + [2,4) r: every 7 iterations an
//               mprotect of the upper half splits it or merges it back
//      resize   [0,4) rw, or [0,8) rw: every 3 iterations mremap grows it in
//               place or shrinks it back
//      static   [0,4) rw, never touched (four per group)
//    A pass is 100 iterations over every group (forward, then the next pass
//    backward); at its end delete/add/modify are undone and the map is
//    compared with the model (validate() and maps()). The writer runs
//    --iterations iterations (default 10,000, the kernel's count) or until
//    its share of --seconds is up, whichever comes first, and reports how
//    many it ran.
//    Readers (--readers, default 200, the kernel's count) look up random
//    addresses of random slots. Each slot has a version the writer makes odd
//    around every call on it, and the slot's state. Every VMA a reader sees
//    must be one the writer could have left in its slot, with the right
//    protection, covering the address (lock_vma_rcu) or the first ending
//    above it (find_vma_rcu; only slots whose role may be unmapped may be
//    skipped). When the slot's version did not move during the lookup, the
//    answer must be exactly the model's (lock_vma_rcu may find nothing only
//    while another reader's fault, taking the mmap mutex path, holds the VMA
//    marked: readers count their faults per slot). Under a read lock the
//    VMA's own fields must equal the view. A fault (read or write) must give
//    the outcome of a state the slot could have had (the model's, when
//    stable).
//    At the end, frame reference counts must be exact (write faults leave
//    anonymous pages) and nothing may leak.
// 2. Symmetric expansion. Beside the slots, a VMA M = [b, c) rw lies between
//    two read-only VMAs of 6 pages. A second writer grows M one page on both
//    sides per call (mprotect of [b-k, c+k) to rw: the merge takes a page
//    from each neighbour into M), until it swallowed both, then shrinks it
//    back with two calls. While it grows, readers must see M as
//    [b-k, c+k) for one k: never its new start with its old end. The shrink
//    (asymmetric between its two calls) runs in an odd epoch, during which
//    readers only check that M still covers [b, c) and the area has no hole.
//
// The whole run happens once per AddressSpaceOptions::fault_lock mode
// (kSeqCount, kPerVma), then both again with allocations failing at random
// (FailRandomAllocations(--fail-one-in) armed in both writers and every
// reader): a call that returns ENOMEM must have changed nothing (the model
// stays as it was and the readers' exact checks hold it to that), faults may
// return ENOMEM and nothing else, and every check above still holds.
//
// Readers start together (they wait for the last one to be created) and run
// at nice 19 (--reader-nice), so that hundreds of them do not starve the two
// writers on a machine with few cores; --pause-us makes them sleep between
// batches of 16 lookups instead of yielding.
//
//   vma_rcu_kernel_shape_stress --seconds 3 [--readers 200] [--iterations N]
//       [--fail-one-in 16] [--reader-nice 19] [--pause-us 0] [--seed N]
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rcuvm/address_space.h"
#include "rcuvm/fault_injection.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"
#include "stress_util.h"

namespace rcuvm::stress {
namespace {

constexpr uint64_t P = kPageSize;
constexpr uint64_t kBase = 0x100000000;
constexpr int kSlots = 1000;
constexpr int kGroupSize = 10;
constexpr int kGroups = kSlots / kGroupSize;
constexpr uint64_t kStride = 16 * P;
constexpr int kPassIterations = 100;
constexpr int kDeleteAt = 40, kAddAt = 50, kModifyAt = 60;
constexpr int kToggleEvery = 5, kReplaceEvery = 11, kSplitEvery = 7, kResizeEvery = 3;

// The symmetric-expansion area: L = [b - W, b) r, M = [b, c) rw, R = [c, c + W) r.
constexpr uint64_t kSymWidth = 6;  // pages; M grows by one page a side per call
constexpr uint64_t kSymB = kBase + kSlots * kStride + 64 * P;
constexpr uint64_t kSymC = kSymB + 4 * P;
constexpr uint64_t kSymLo = kSymB - kSymWidth * P, kSymHi = kSymC + kSymWidth * P;

constexpr VmFlags kR = vmf::kRead, kRW = vmf::kRead | vmf::kWrite;

enum Role : uint8_t { kToggle, kDelete, kAdd, kModify, kSplitter, kResizer, kStatic };
enum SlotState : uint8_t { kAbsent, kBaseState, kReadOnly, kSplit, kGrown, kNumStates };

Role role_of(int slot) {
  switch (slot % kGroupSize) {
    case 0: return kToggle;
    case 2: return kDelete;
    case 4: return kAdd;
    case 5: return kModify;
    case 7: return kSplitter;
    case 8: return kResizer;
    default: return kStatic;
  }
}

// The states a role's slot may be in, as a bit mask over SlotState.
unsigned states_of(Role r) {
  const unsigned base = 1u << kBaseState;
  switch (r) {
    case kToggle:
    case kDelete:
    case kAdd: return base | 1u << kAbsent;
    case kModify: return base | 1u << kReadOnly;
    case kSplitter: return base | 1u << kSplit;
    case kResizer: return base | 1u << kGrown;
    case kStatic: return base;
  }
  return base;
}

SlotState initial_state(int slot) { return role_of(slot) == kAdd ? kAbsent : kBaseState; }

uint64_t slot_base(int slot) { return kBase + uint64_t(slot) * kStride; }
int slot_of(uint64_t addr) {
  return addr < kBase ? -1 : int(std::min<uint64_t>((addr - kBase) / kStride, kSlots));
}

// The VMAs of a state, in pages from the slot's base, in address order.
struct Piece {
  uint64_t lo, hi;
  VmFlags prot;
};
struct Layout {
  int n = 0;
  Piece p[2] = {};
};
// The layouts, indexed by SlotState (static: readers keep pointers into them).
constexpr Layout kLayouts[kNumStates] = {
    {},                                  // kAbsent
    {1, {{0, 4, kRW}}},                  // kBaseState
    {1, {{0, 4, kR}}},                   // kReadOnly
    {2, {{0, 2, kRW}, {2, 4, kR}}},      // kSplit
    {1, {{0, 8, kRW}}},                  // kGrown
};
const Layout& layout(SlotState s) { return kLayouts[s < kNumStates ? s : kAbsent]; }

bool same(const Piece& p, uint64_t base, const VmaView& v) {
  return v.start == base + p.lo * P && v.end == base + p.hi * P &&
         (v.flags & vmf::kAccessFlags) == p.prot && !v.has_file;
}
// The first piece ending above byte offset `off`, or null.
const Piece* first_after(const Layout& l, uint64_t off) {
  for (int k = 0; k < l.n; ++k)
    if (l.p[k].hi * P > off) return &l.p[k];
  return nullptr;
}
const Piece* covering(const Layout& l, uint64_t off) {
  const Piece* p = first_after(l, off);
  return p && p->lo * P <= off ? p : nullptr;
}

std::string show(const VmaView& v) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%#" PRIx64 ", %#" PRIx64 ") prot %#" PRIx64, v.start, v.end,
                v.flags & vmf::kAccessFlags);
  return buf;
}

// Per slot: ver is odd while the writer runs a call on the slot; state is
// the slot's state after the last call (written before ver turns even).
// Readers' faults on the slot count faults_started before and faults_done
// after: a fault that takes the mmap mutex path marks the VMA like a writer,
// so lock_vma_rcu may then legitimately find nothing.
struct Slot {
  std::atomic<uint64_t> ver{0};
  std::atomic<uint8_t> state{kAbsent};
  std::atomic<uint64_t> faults_started{0}, faults_done{0};
};

struct Counts {
  uint64_t finds = 0, locks = 0, lock_empty = 0, faults = 0, fault_nomem = 0, exact = 0,
           sym_strict = 0, sym_loose = 0;
  void add(const Counts& o) {
    finds += o.finds;
    locks += o.locks;
    lock_empty += o.lock_empty;
    faults += o.faults;
    fault_nomem += o.fault_nomem;
    exact += o.exact;
    sym_strict += o.sym_strict;
    sym_loose += o.sym_loose;
  }
};

struct Shared {
  std::array<Slot, kSlots> slots;
  // Even: M grows symmetrically (or rests); odd: it is being shrunk back.
  std::atomic<uint64_t> sym_epoch{0};
  // Readers block on `go` until all of them exist (so that creating 200
  // threads is not slowed down by the ones already spinning), then run
  // until `stop`.
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  bool failing = false;
  // Microseconds each reader sleeps after a batch of lookups, so that the
  // writers get their share of a small machine.
  int pause_us = 0;
  int reader_nice = 0;
};

// --- Checks made by readers.

// find_vma_rcu(a), a in slot i: the first VMA ending above a.
void check_find(int i, uint64_t a, const VmaRef& r, bool stable, SlotState now) {
  const uint64_t off = a - slot_base(i);
  // May slot k show no VMA ending above a (for k > i: be unmapped)?
  auto may_skip = [&](int k) {
    const unsigned m = states_of(role_of(k));
    for (int s = 0; s < kNumStates; ++s)
      if ((m >> s & 1) && !first_after(layout(SlotState(s)), k == i ? off : 0)) return true;
    return false;
  };
  // The slot of the answer; kSlots: nothing, or the symmetric area.
  const int j = r && r->start < kSymLo ? slot_of(r->start) : kSlots;
  if (stable) {
    const Piece* want = first_after(layout(now), off);
    STRESS_REQUIRE(want ? r && same(*want, slot_base(i), *r) : j > i,
                   "find_vma_rcu(%#" PRIx64 ") in stable slot %d (state %d) gave %s", a, i,
                   int(now), r ? show(*r).c_str() : "nothing");
  }
  if (r && j == kSlots) {
    STRESS_REQUIRE(r->start == kSymLo, "find_vma_rcu(%#" PRIx64 ") beyond the slots gave %s", a,
                   show(*r).c_str());
  } else if (r) {
    STRESS_REQUIRE(j >= i && j < kSlots && r->end > a,
                   "find_vma_rcu(%#" PRIx64 ") (slot %d) gave %s (slot %d)", a, i,
                   show(*r).c_str(), j);
    const uint64_t joff = j == i ? off : 0;
    const unsigned m = states_of(role_of(j));
    bool legal = false;
    for (int s = 0; s < kNumStates && !legal; ++s) {
      if (!(m >> s & 1)) continue;
      const Piece* p = first_after(layout(SlotState(s)), joff);
      legal = p && same(*p, slot_base(j), *r);
    }
    STRESS_REQUIRE(legal, "find_vma_rcu(%#" PRIx64 ") gave %s, never the first VMA of slot %d "
                   "above the address (role %d)", a, show(*r).c_str(), j, int(role_of(j)));
  }
  for (int k = i; k < j; ++k)
    STRESS_REQUIRE(may_skip(k), "find_vma_rcu(%#" PRIx64 ") skipped slot %d (role %d): gave %s",
                   a, k, int(role_of(k)), r ? show(*r).c_str() : "nothing");
}

// lock_vma_rcu(a), a in slot i: the VMA containing a, read-locked.
void check_lock(int i, uint64_t a, const VmaRef& r, bool stable, bool quiet, SlotState now,
                Counts& c) {
  const uint64_t base = slot_base(i), off = a - base;
  if (!r) {
    // Empty: a hole, or a VMA marked by a writer call or a locked fault
    // (never one of a slot that neither touched during the lookup).
    ++c.lock_empty;
    if (stable && quiet)
      STRESS_REQUIRE(!covering(layout(now), off),
                     "lock_vma_rcu(%#" PRIx64 ") found nothing in stable slot %d (state %d)", a,
                     i, int(now));
    return;
  }
  STRESS_REQUIRE(r.read_locked() && r->start <= a && a < r->end,
                 "lock_vma_rcu(%#" PRIx64 ") gave %s (locked %d)", a, show(*r).c_str(),
                 int(r.read_locked()));
  // Read-locked: the VMA itself cannot change; its fields are the view.
  const Vma* v = r.get();
  STRESS_REQUIRE(v->start == r->start && v->end == r->end && v->flags == r->flags,
                 "lock_vma_rcu(%#" PRIx64 "): view %s, VMA [%#" PRIx64 ", %#" PRIx64 ")", a,
                 show(*r).c_str(), v->start, v->end);
  if (stable) {
    const Piece* want = covering(layout(now), off);
    STRESS_REQUIRE(want && same(*want, base, *r),
                   "lock_vma_rcu(%#" PRIx64 ") in stable slot %d (state %d) gave %s", a, i,
                   int(now), show(*r).c_str());
    return;
  }
  const unsigned m = states_of(role_of(i));
  bool legal = false;
  for (int s = 0; s < kNumStates && !legal; ++s) {
    if (!(m >> s & 1)) continue;
    const Piece* p = covering(layout(SlotState(s)), off);
    legal = p && same(*p, base, *r);
  }
  STRESS_REQUIRE(legal, "lock_vma_rcu(%#" PRIx64 ") gave %s, never a VMA of slot %d (role %d)",
                 a, show(*r).c_str(), i, int(role_of(i)));
}

FaultResult outcome(SlotState s, uint64_t off, bool write) {
  const Piece* p = covering(layout(s), off);
  return p && (p->prot & (write ? vmf::kWrite : vmf::kRead)) ? FaultResult::kOk
                                                             : FaultResult::kSigSegv;
}

void check_fault(int i, uint64_t a, bool write, const absl::StatusOr<FaultResult>& r,
                 bool stable, SlotState now, bool failing, Counts& c) {
  ++c.faults;
  if (!r.ok()) {
    STRESS_REQUIRE(failing && errno_of(r.status()) == ENOMEM, "fault(%#" PRIx64 "): %s", a,
                   std::string(r.status().message()).c_str());
    ++c.fault_nomem;
    return;
  }
  const uint64_t off = a - slot_base(i);
  if (stable) {
    STRESS_REQUIRE(*r == outcome(now, off, write),
                   "%s fault at %#" PRIx64 " in stable slot %d (state %d) gave %d",
                   write ? "write" : "read", a, i, int(now), int(*r));
    return;
  }
  const unsigned m = states_of(role_of(i));
  bool legal = false;
  for (int s = 0; s < kNumStates; ++s)
    legal |= (m >> s & 1) && outcome(SlotState(s), off, write) == *r;
  STRESS_REQUIRE(legal, "%s fault at %#" PRIx64 " (slot %d, role %d) gave %d",
                 write ? "write" : "read", a, i, int(role_of(i)), int(*r));
}

// A VMA of the symmetric area: M as [b-k, c+k) (strict: grown equally on
// both sides; loose, during a shrink: covering [b, c) inside the area), or
// a read-only neighbour at the area's edge.
void check_sym_view(uint64_t a, const VmaView& v, bool strict, const char* what) {
  STRESS_REQUIRE(v.start <= a && a < v.end && v.start >= kSymLo && v.end <= kSymHi,
                 "%s(%#" PRIx64 ") in the symmetric area gave %s", what, a, show(v).c_str());
  const VmFlags prot = v.flags & vmf::kAccessFlags;
  if (prot == kRW) {
    STRESS_REQUIRE(v.start <= kSymB && v.end >= kSymC, "%s(%#" PRIx64 "): M is %s", what, a,
                   show(v).c_str());
    if (strict)
      STRESS_REQUIRE(kSymB - v.start == v.end - kSymC,
                     "%s(%#" PRIx64 "): M torn: %s (grown %" PRIu64 " pages left, %" PRIu64
                     " right)", what, a, show(v).c_str(), (kSymB - v.start) / P,
                     (v.end - kSymC) / P);
  } else {
    STRESS_REQUIRE(prot == kR && (v.end <= kSymB || v.start >= kSymC) &&
                       (v.start == kSymLo || v.end == kSymHi),
                   "%s(%#" PRIx64 "): neighbour is %s", what, a, show(v).c_str());
  }
}

// --- Readers.

void slot_read(AddressSpace& as, Shared& sh, Rng& rng, Counts& c) {
  const int i = int(rng.below(kSlots));
  const uint64_t a = slot_base(i) + rng.below(kStride);
  Slot& s = sh.slots[i];
  const uint64_t op = rng.below(8);
  const uint64_t v1 = s.ver.load(std::memory_order_seq_cst);
  auto settle = [&](bool& stable) {
    const SlotState now = SlotState(s.state.load(std::memory_order_seq_cst));
    const uint64_t v2 = s.ver.load(std::memory_order_seq_cst);
    stable = v1 == v2 && !(v1 & 1);
    c.exact += stable;
    return now;
  };
  bool stable = false;
  if (op < 4) {
    VmaRef r = as.find_vma_rcu(a);
    const SlotState now = settle(stable);
    ++c.finds;
    check_find(i, a, r, stable, now);
  } else if (op < 7) {
    // No fault of another reader in flight when the lookup began (done is
    // read before started), and none begun until it ended.
    const uint64_t d1 = s.faults_done.load(std::memory_order_seq_cst);
    const uint64_t s1 = s.faults_started.load(std::memory_order_seq_cst);
    VmaRef r = as.lock_vma_rcu(a);
    const bool quiet = s1 == d1 && s.faults_started.load(std::memory_order_seq_cst) == s1;
    const SlotState now = settle(stable);
    ++c.locks;
    check_lock(i, a, r, stable, quiet, now, c);
  } else {
    const bool write = rng.one_in(2);
    s.faults_started.fetch_add(1, std::memory_order_seq_cst);
    auto r = as.fault(a, write ? Access::kWrite : Access::kRead);
    s.faults_done.fetch_add(1, std::memory_order_seq_cst);
    const SlotState now = settle(stable);
    check_fault(i, a, write, r, stable, now, sh.failing, c);
  }
}

void sym_read(AddressSpace& as, Shared& sh, Rng& rng, Counts& c) {
  const uint64_t a = kSymLo + rng.below(kSymHi - kSymLo);
  const uint64_t op = rng.below(8);
  const uint64_t e1 = sh.sym_epoch.load(std::memory_order_seq_cst);
  if (op < 4) {
    VmaRef r = as.find_vma_rcu(a);
    const uint64_t e2 = sh.sym_epoch.load(std::memory_order_seq_cst);
    const bool strict = e1 == e2 && !(e1 & 1);
    STRESS_REQUIRE(r, "find_vma_rcu(%#" PRIx64 ") in the symmetric area found nothing", a);
    check_sym_view(a, *r, strict, "find_vma_rcu");
    ++(strict ? c.sym_strict : c.sym_loose);
    ++c.finds;
  } else if (op < 7) {
    VmaRef r = as.lock_vma_rcu(a);
    const uint64_t e2 = sh.sym_epoch.load(std::memory_order_seq_cst);
    const bool strict = e1 == e2 && !(e1 & 1);
    ++c.locks;
    if (!r) {
      ++c.lock_empty;  // marked by the writer
      return;
    }
    check_sym_view(a, *r, strict, "lock_vma_rcu");
    const Vma* v = r.get();
    STRESS_REQUIRE(v->start == r->start && v->end == r->end,
                   "lock_vma_rcu(%#" PRIx64 "): view %s, VMA [%#" PRIx64 ", %#" PRIx64 ")", a,
                   show(*r).c_str(), v->start, v->end);
    ++(strict ? c.sym_strict : c.sym_loose);
  } else {
    // Every page of the area is readable in every state.
    auto r = as.fault(a, Access::kRead);
    ++c.faults;
    if (!r.ok()) {
      STRESS_REQUIRE(sh.failing && errno_of(r.status()) == ENOMEM, "fault(%#" PRIx64 "): %s", a,
                     std::string(r.status().message()).c_str());
      ++c.fault_nomem;
      return;
    }
    STRESS_REQUIRE(*r == FaultResult::kOk, "read fault at %#" PRIx64 " in the symmetric area: %d",
                   a, int(*r));
  }
}

void reader(AddressSpace& as, Shared& sh, uint64_t seed, uint64_t fail_one_in, Counts& out) {
  rcu::ThreadScope scope;
  // Readers run at a lower priority (Linux: niceness is per thread), so that
  // on a machine with few cores the two writers are not starved by hundreds
  // of readers. Best effort.
  if (sh.reader_nice > 0)
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), sh.reader_nice);
  std::optional<FailRandomAllocations> failing;
  if (sh.failing) failing.emplace(fail_one_in, seed ^ 0x5bd1e995);
  Rng rng(seed);
  Counts c;
  sh.go.wait(false, std::memory_order_acquire);
  while (!sh.stop.load(std::memory_order_relaxed)) {
    for (int k = 0; k < 16; ++k) {
      if (rng.one_in(4))
        sym_read(as, sh, rng, c);
      else
        slot_read(as, sh, rng, c);
    }
    if (sh.pause_us > 0)
      std::this_thread::sleep_for(std::chrono::microseconds(sh.pause_us));
    else
      std::this_thread::yield();
  }
  out = c;
}

// --- Writers.

bool nomem(const absl::Status& s) { return errno_of(s) == ENOMEM; }

class SlotWriter {
 public:
  SlotWriter(AddressSpace& as, Shared& sh) : as_(as), sh_(sh) {
    for (int i = 0; i < kSlots; ++i) cur_[i] = kAbsent;
  }

  // Maps every slot's initial state (before the readers start; no failures).
  void setup() {
    for (int i = 0; i < kSlots; ++i) {
      set(i, initial_state(i));
      STRESS_REQUIRE(cur_[i] == initial_state(i), "setup of slot %d failed", i);
    }
    check_model();
  }

  void run(uint64_t max_iterations, const Deadline& deadline) {
    while (iterations_ < max_iterations && !deadline.passed()) {
      const int it = int(iterations_ % kPassIterations);
      const bool forward = (iterations_ / kPassIterations) % 2 == 0;
      int n = 0;
      for (; n < kGroups && !deadline.passed(); ++n)
        iteration(forward ? n : kGroups - 1 - n, it);
      if (n < kGroups) break;  // the time is up within the iteration
      ++iterations_;
      if (it == kPassIterations - 1) end_pass();
    }
  }

  // validate() and the map against the model; readers may keep running.
  void check_model() {
    absl::Status s = as_.validate();
    STRESS_REQUIRE(s.ok(), "validate: %s", std::string(s.message()).c_str());
    std::vector<VmaInfo> maps = as_.maps();
    size_t k = 0;
    for (int i = 0; i < kSlots; ++i) {
      const Layout l = layout(cur_[i]);
      for (int n = 0; n < l.n; ++n, ++k) {
        STRESS_REQUIRE(k < maps.size(), "slot %d: VMA %d of state %d missing", i, n,
                       int(cur_[i]));
        VmaView v;
        v.start = maps[k].start;
        v.end = maps[k].end;
        v.flags = maps[k].flags;
        v.has_file = maps[k].file != nullptr;
        STRESS_REQUIRE(same(l.p[n], slot_base(i), v), "slot %d (state %d): VMA %d is %s", i,
                       int(cur_[i]), n, show(v).c_str());
      }
    }
    // What follows the slots is the symmetric area (checked by its writer).
    STRESS_REQUIRE(k == maps.size() || maps[k].start >= kSymLo, "unexpected VMA at %#" PRIx64,
                   maps[k].start);
    ++checks_;
  }

  uint64_t iterations() const { return iterations_; }
  uint64_t calls() const { return calls_; }
  uint64_t nomems() const { return nomem_; }
  uint64_t checks() const { return checks_; }

 private:
  void iteration(int g, int it) {
    const int s0 = g * kGroupSize;
    for (int k = 0; k < kGroupSize; ++k) {
      const int i = s0 + k;
      switch (role_of(i)) {
        case kToggle:
          if (it % kToggleEvery == 0) {
            set(i, kAbsent);
            set(i, kBaseState);
          } else if (it % kReplaceEvery == 0) {
            replace(i);
          }
          break;
        case kDelete:
          if (it == kDeleteAt) set(i, kAbsent);
          break;
        case kAdd:
          if (it == kAddAt) set(i, kBaseState);
          break;
        case kModify:
          if (it == kModifyAt) set(i, kReadOnly);
          break;
        case kSplitter:
          if (it % kSplitEvery == 3) set(i, cur_[i] == kBaseState ? kSplit : kBaseState);
          break;
        case kResizer:
          if (it % kResizeEvery == 1) set(i, cur_[i] == kBaseState ? kGrown : kBaseState);
          break;
        case kStatic:
          break;
      }
    }
  }

  void end_pass() {
    for (int i = 0; i < kSlots; ++i) {
      const Role r = role_of(i);
      if (r == kDelete || r == kModify) set(i, kBaseState);
      if (r == kAdd) set(i, kAbsent);
    }
    check_model();
  }

  // One call moving slot i to `to`; the model follows only when it succeeds.
  void set(int i, SlotState to) {
    const SlotState from = cur_[i];
    if (from == to) return;
    (void)bracket(i, [&] { return call(i, from, to); }, to);
  }

  // A MAP_FIXED mmap over the slot's VMA: a new VMA, the same view.
  void replace(int i) {
    if (cur_[i] != kBaseState) return;
    (void)bracket(i, [&] { return map(i); }, kBaseState);
  }

  template <typename Fn>
  absl::Status bracket(int i, Fn&& fn, SlotState to) {
    Slot& s = sh_.slots[i];
    const uint64_t v = s.ver.load(std::memory_order_relaxed);
    s.ver.store(v + 1, std::memory_order_seq_cst);  // odd: a call on the slot
    absl::Status st = fn();
    ++calls_;
    if (st.ok()) {
      cur_[i] = to;
    } else {
      STRESS_REQUIRE(sh_.failing && nomem(st), "slot %d: call to state %d failed: %s", i,
                     int(to), std::string(st.message()).c_str());
      ++nomem_;  // changed nothing: the model stays
    }
    s.state.store(cur_[i], std::memory_order_seq_cst);
    s.ver.store(v + 2, std::memory_order_seq_cst);
    return st;
  }

  absl::Status map(int i) {
    auto r = as_.mmap(slot_base(i), 4 * P, kProtRead | kProtWrite,
                      kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0);
    if (r.ok())
      STRESS_REQUIRE(*r == slot_base(i), "mmap slot %d at %#" PRIx64, i, *r);
    return r.status();
  }

  absl::Status call(int i, SlotState from, SlotState to) {
    const uint64_t b = slot_base(i);
    if (to == kAbsent) return as_.munmap(b, 8 * P);
    switch (from) {
      case kAbsent: return map(i);
      case kBaseState:
        if (to == kReadOnly) return as_.mprotect(b, 4 * P, kProtRead);
        if (to == kSplit) return as_.mprotect(b + 2 * P, 2 * P, kProtRead);
        if (to == kGrown) {
          auto r = as_.mremap(b, 4 * P, 8 * P, 0, 0);
          if (r.ok()) STRESS_REQUIRE(*r == b, "mremap grow of slot %d moved it", i);
          return r.status();
        }
        break;
      case kReadOnly: return as_.mprotect(b, 4 * P, kProtRead | kProtWrite);
      case kSplit: return as_.mprotect(b + 2 * P, 2 * P, kProtRead | kProtWrite);
      case kGrown: {
        auto r = as_.mremap(b, 8 * P, 4 * P, 0, 0);
        if (r.ok()) STRESS_REQUIRE(*r == b, "mremap shrink of slot %d moved it", i);
        return r.status();
      }
      case kNumStates: break;
    }
    STRESS_REQUIRE(false, "no call from state %d to %d", int(from), int(to));
    return absl::InternalError("unreachable");
  }

  AddressSpace& as_;
  Shared& sh_;
  std::array<SlotState, kSlots> cur_;
  uint64_t iterations_ = 0, calls_ = 0, nomem_ = 0, checks_ = 0;
};

class SymWriter {
 public:
  SymWriter(AddressSpace& as, Shared& sh) : as_(as), sh_(sh) {}

  void setup() {
    must(map(kSymLo, kSymB, kProtRead), "map left");
    must(map(kSymB, kSymC, kProtRead | kProtWrite), "map middle");
    must(map(kSymC, kSymHi, kProtRead), "map right");
    check_map(0);
  }

  // Rounds of growth and shrink until `done` or the deadline.
  void run(const std::atomic<bool>& done, const Deadline& deadline) {
    while (!done.load(std::memory_order_relaxed) && !deadline.passed()) {
      for (uint64_t k = 1; k <= kSymWidth; ++k) {
        // One call grows M by a page on both sides.
        retry([&] { return as_.mprotect(kSymB - k * P, kSymC - kSymB + 2 * k * P,
                                        kProtRead | kProtWrite); }, "grow");
        ++grows_;
      }
      sh_.sym_epoch.fetch_add(1, std::memory_order_seq_cst);  // odd: shrinking
      retry([&] { return as_.mprotect(kSymLo, kSymWidth * P, kProtRead); }, "shrink left");
      retry([&] { return as_.mprotect(kSymC, kSymWidth * P, kProtRead); }, "shrink right");
      sh_.sym_epoch.fetch_add(1, std::memory_order_seq_cst);
      ++rounds_;
      if (rounds_ % 16 == 0) check_map(0);
    }
  }

  // The area's VMAs: M grown by k pages a side, and what is left of L and R.
  void check_map(uint64_t k) {
    std::vector<VmaInfo> maps = as_.maps();
    std::vector<VmaInfo> area;
    for (const VmaInfo& v : maps)
      if (v.start >= kSymLo && v.start < kSymHi) area.push_back(v);
    STRESS_REQUIRE(area.size() == 3, "symmetric area holds %zu VMAs", area.size());
    const uint64_t b = kSymB - k * P, c = kSymC + k * P;
    STRESS_REQUIRE(area[0].start == kSymLo && area[0].end == b && area[1].start == b &&
                       area[1].end == c && area[2].start == c && area[2].end == kSymHi &&
                       (area[1].flags & vmf::kAccessFlags) == kRW &&
                       (area[0].flags & vmf::kAccessFlags) == kR &&
                       (area[2].flags & vmf::kAccessFlags) == kR,
                   "symmetric area: [%#" PRIx64 ", %#" PRIx64 ") [%#" PRIx64 ", %#" PRIx64
                   ") [%#" PRIx64 ", %#" PRIx64 ")", area[0].start, area[0].end, area[1].start,
                   area[1].end, area[2].start, area[2].end);
  }

  uint64_t rounds() const { return rounds_; }
  uint64_t grows() const { return grows_; }
  uint64_t nomems() const { return nomem_; }

 private:
  absl::Status map(uint64_t lo, uint64_t hi, int prot) {
    return as_.mmap(lo, hi - lo, prot, kMapPrivate | kMapAnonymous | kMapFixed, nullptr, 0)
        .status();
  }
  void must(const absl::Status& s, const char* what) {
    STRESS_REQUIRE(s.ok(), "symmetric area: %s: %s", what, std::string(s.message()).c_str());
  }
  // An ENOMEM changed nothing, so the same call is simply made again.
  template <typename Fn>
  void retry(Fn&& fn, const char* what) {
    for (;;) {
      absl::Status s = fn();
      if (s.ok()) return;
      STRESS_REQUIRE(sh_.failing && nomem(s), "symmetric area: %s: %s", what,
                     std::string(s.message()).c_str());
      ++nomem_;
    }
  }

  AddressSpace& as_;
  Shared& sh_;
  uint64_t rounds_ = 0, grows_ = 0, nomem_ = 0;
};

// With every thread stopped: each anonymous frame is referenced exactly by
// the entries that map it, and no other frame is in use.
void check_frames(const AddressSpace& as) {
  std::map<FrameId, uint32_t> refs;
  as.page_table().for_each(0, ~uint64_t{0}, [&](uint64_t, Pte e) {
    if (e & pte::kAnon) ++refs[pte::frame(e)];
  });
  const FrameAllocator& frames = as.page_table().frames();
  for (auto [f, n] : refs)
    STRESS_REQUIRE(frames.refcount(f) == n, "frame %" PRIu64 " refcount %u, mapped %u times", f,
                   frames.refcount(f), n);
  STRESS_REQUIRE(frames.in_use() == refs.size(), "frames in use %" PRIu64 ", mapped %zu",
                 frames.in_use(), refs.size());
}

struct Config {
  int readers;
  int pause_us;
  int reader_nice;
  uint64_t iterations;
  uint64_t fail_one_in;
  uint64_t seed;
};

void run_phase(VmaLockMode mode, bool failing, double seconds, const Config& cfg,
               uint64_t seed) {
  const auto t0 = std::chrono::steady_clock::now();
  auto frames = std::make_shared<FrameAllocator>();
  AddressSpaceOptions opt;
  opt.fault_lock = mode;
  auto sh = std::make_unique<Shared>();
  std::vector<Counts> counts(size_t(cfg.readers));
  uint64_t iterations = 0, calls = 0, slot_nomem = 0, checks = 0, rounds = 0, grows = 0,
           sym_nomem = 0;
  double setup_s = 0, run_s = 0, join_s = 0;
  {
    AddressSpace as(opt, frames);
    SlotWriter sw(as, *sh);
    SymWriter yw(as, *sh);
    sw.setup();
    yw.setup();
    sh->failing = failing;
    sh->pause_us = cfg.pause_us;
    sh->reader_nice = cfg.reader_nice;
    std::vector<std::thread> threads;
    threads.reserve(size_t(cfg.readers));
    for (int k = 0; k < cfg.readers; ++k)
      threads.emplace_back(reader, std::ref(as), std::ref(*sh), seed * 1000003 + uint64_t(k) + 1,
                           cfg.fail_one_in, std::ref(counts[size_t(k)]));
    sh->go.store(true, std::memory_order_release);
    sh->go.notify_all();
    setup_s = seconds_since(t0);
    // The writers' time starts once the readers are up (thread creation is
    // slow under sanitizers), but the phase as a whole stays bounded.
    const Deadline deadline(std::max(seconds - setup_s, seconds / 2));
    std::atomic<bool> slots_done{false};
    std::thread sym([&] {
      std::optional<FailRandomAllocations> f;
      if (failing) f.emplace(cfg.fail_one_in, seed ^ 0xabcdef);
      yw.run(slots_done, deadline);
    });
    {
      std::optional<FailRandomAllocations> f;
      if (failing) f.emplace(cfg.fail_one_in, seed ^ 0x123456);
      sw.run(cfg.iterations, deadline);
    }
    slots_done.store(true);
    sym.join();
    run_s = seconds_since(t0) - setup_s;
    sh->stop.store(true);
    for (auto& t : threads) t.join();
    join_s = seconds_since(t0) - setup_s - run_s;
    sw.check_model();
    yw.check_map(0);
    check_frames(as);
    iterations = sw.iterations();
    calls = sw.calls();
    slot_nomem = sw.nomems();
    checks = sw.checks();
    rounds = yw.rounds();
    grows = yw.grows();
    sym_nomem = yw.nomems();
  }
  // (No rcu::drain() here: the page table gives its frames back when it is
  // destroyed, and after 200 threads TSAN can no longer match the
  // suppression of liburcu's barrier.)
  STRESS_REQUIRE(frames->in_use() == 0, "%" PRIu64 " frames leaked", frames->in_use());
  Counts total;
  for (const Counts& c : counts) total.add(c);
  STRESS_REQUIRE(total.finds > 0 && total.locks > 0, "the readers made no lookups");
  std::printf(
      "%s: %s%s: %" PRIu64 " iterations (%" PRIu64 " calls, %" PRIu64 " ENOMEM), %" PRIu64
      " model checks; symmetric: %" PRIu64 " rounds, %" PRIu64 " growths (%" PRIu64
      " ENOMEM retried); readers: %" PRIu64 " find_vma_rcu, %" PRIu64 " lock_vma_rcu (%" PRIu64
      " empty), %" PRIu64 " faults (%" PRIu64 " ENOMEM), %" PRIu64 " exact, %" PRIu64
      " symmetric strict, %" PRIu64 " loose; setup %.2fs, run %.2fs, join %.2fs, total %.2fs\n",
      program_name(), mode == VmaLockMode::kPerVma ? "per-vma" : "seqcount",
      failing ? " + failing allocations" : "", iterations, calls, slot_nomem, checks, rounds,
      grows, sym_nomem, total.finds, total.locks, total.lock_empty, total.faults,
      total.fault_nomem, total.exact, total.sym_strict, total.sym_loose, setup_s, run_s, join_s,
      seconds_since(t0));
  std::fflush(stdout);
}

}  // namespace
}  // namespace rcuvm::stress

int main(int argc, char** argv) {
  using namespace rcuvm::stress;
  Args args(argc, argv, {"iterations", "fail-one-in", "pause-us", "reader-nice"},
            " [--iterations N (default 10000)] [--fail-one-in N (default 16)]"
            " [--pause-us N (default 0: yield)] [--reader-nice N (default 19)]");
  const double seconds = args.seconds(3);
  Config cfg;
  cfg.readers = std::max(1, args.readers(200));
  cfg.pause_us = int(args.get_u64("pause-us", 0));
  cfg.reader_nice = int(std::min<uint64_t>(19, args.get_u64("reader-nice", 19)));
  cfg.iterations = args.get_u64("iterations", 10000);
  cfg.fail_one_in = std::max<uint64_t>(2, args.get_u64("fail-one-in", 16));
  cfg.seed = args.seed();
  std::printf("%s: seed %" PRIu64 ", %d readers, 1000 VMAs, up to %" PRIu64
              " writer iterations, allocations failing 1 in %" PRIu64 " in the last two phases\n",
              program_name(), cfg.seed, cfg.readers, cfg.iterations, cfg.fail_one_in);
  std::fflush(stdout);
  const double share = seconds / 4;
  run_phase(rcuvm::VmaLockMode::kSeqCount, false, share, cfg, cfg.seed);
  run_phase(rcuvm::VmaLockMode::kPerVma, false, share, cfg, cfg.seed + 1);
  run_phase(rcuvm::VmaLockMode::kSeqCount, true, share, cfg, cfg.seed + 2);
  run_phase(rcuvm::VmaLockMode::kPerVma, true, share, cfg, cfg.seed + 3);
  return 0;
}
