// Readers without the mmap mutex: find_vma_rcu (the sequence count),
// lock_vma_rcu (per-VMA locks) and the speculative page fault.
//
// The rules (labels as in mm.h, vma.h and docs/concurrency.md):
//   - A writer makes the count odd (S1), drains in-flight installs (S2), marks
//     every VMA it changes or whose pages it changes (V1, waiting for read-lock
//     holders, V3), republishes the marked VMAs' views (V6) and makes the
//     count even again; the marks all lapse with that last increment.
//   - kSeqCount faults trust what they read only if the count did not move:
//     they re-check it under install_mu (shared) right before the CAS that
//     installs the entry, so no install can overlap a writer.
//   - kPerVma faults read-lock the VMA; no writer changes it or its entries
//     while they hold it. Faults on the same entry race by CAS only.
#include <thread>

#include "rcuvm/address_space.h"
#include "vm/mm.h"

namespace rcuvm {
namespace {

constexpr int kAttempts = 4;
// find_vma_rcu attempts (odd count or moved count) before the mutex.
constexpr int kLookupAttempts = 8;

// Takes v's read lock unless a writer marked it (vma_start_read).
bool read_trylock(const vm::Mm& mm, Vma* v) {
  v->readers.fetch_add(1, std::memory_order_seq_cst);  // (V3)
  // (V2) pairs with (V1): the writer either sees our count or we its mark.
  if (v->lock_seq.load(std::memory_order_seq_cst) == mm.seq.load(std::memory_order_seq_cst)) {
    v->readers.fetch_sub(1, std::memory_order_release);
    return false;
  }
  return true;
}

void read_unlock(Vma* v) { v->readers.fetch_sub(1, std::memory_order_release); }  // (V3)

enum class Step { kDone, kRetry, kFallback };

struct Attempt {
  Step step = Step::kRetry;
  FaultResult result = FaultResult::kOk;
  vm::Mm::Counters::Id reason = vm::Mm::Counters::kCount;  // of a fallback or retry
};

// What the fault does to the entry, decided from the view and the old entry
// (handle_fault's decisions, minus those that change the VMA).
struct Plan {
  enum Kind { kNothing, kSignal, kInstall, kNeedsAnonVma } kind = kNothing;
  FaultResult signal = FaultResult::kOk;
  Pte value = 0;         // the new entry (frame filled in later when new_frame)
  bool new_frame = false;
  bool put_old = false;  // the old entry's anonymous frame loses a reference
};

// A new private anonymous page replacing `old`; needs the VMA's anon_vma.
Plan new_anon(const VmaView& v, Pte old) {
  if (!v.has_anon_vma) return Plan{Plan::kNeedsAnonVma};
  Plan q{Plan::kInstall};
  q.value = pte::kPresent | pte::kWrite | pte::kAnon;
  q.new_frame = true;
  q.put_old = old & pte::kAnon;
  return q;
}

// A present entry: nothing to do, or do_wp_page.
Plan plan_present(const VmaView& v, Pte old, bool write, const FrameAllocator& frames) {
  const bool shared = v.flags & vmf::kShared;
  if (!write || (old & pte::kWrite)) return Plan{};
  if (shared) return Plan{Plan::kInstall, FaultResult::kOk, old | pte::kWrite};
  if ((old & pte::kAnon) && frames.refcount(pte::frame(old)) == 1)
    return Plan{Plan::kInstall, FaultResult::kOk, old | pte::kWrite};
  return new_anon(v, old);
}

// No entry yet: do_anonymous_page, do_read_fault/do_shared_fault, do_cow_fault.
Plan plan_missing(const VmaView& v, uint64_t page, Pte old, bool write) {
  const bool shared = v.flags & vmf::kShared;
  if (v.has_file) {
    const bool beyond = v.pgoff_at(page) >= v.file_pages;
    // do_cow_fault prepares the anon_vma even when the page is beyond EOF.
    if (write && !shared && !v.has_anon_vma) return Plan{Plan::kNeedsAnonVma};
    if (beyond) return Plan{Plan::kSignal, FaultResult::kSigBus};
    if (write && !shared) return new_anon(v, old);
    return Plan{Plan::kInstall, FaultResult::kOk,
                pte::make(0, pte::kPresent | pte::kFile | (write ? pte::kWrite : 0))};
  }
  if (!write)
    return Plan{Plan::kInstall, FaultResult::kOk,
                pte::make(FrameAllocator::kZeroFrame, pte::kPresent | pte::kZero)};
  return new_anon(v, old);
}

// One speculative attempt; runs inside an rcu::ReadGuard.
Attempt try_fault(vm::Mm& mm, uint64_t addr, bool write) {
  using C = vm::Mm::Counters;
  const bool per_vma = mm.opt.fault_lock == VmaLockMode::kPerVma;
  const uint64_t s1 = mm.seq.load(std::memory_order_acquire);  // (S1)
  auto unchanged = [&] { return mm.seq.load(std::memory_order_acquire) == s1; };
  Vma* v = mm.tree.load(addr);
  if (!v) {
    // A hole: SIGSEGV, unless the next VMA grows down (that changes the map).
    if (s1 & 1) return {Step::kRetry, {}, C::kFbSeq};
    auto next = mm.tree.find(addr);
    if (next && (next->value->load_view().flags & vmf::kGrowsDown))
      return {Step::kFallback, {}, C::kFbNoVma};
    if (!unchanged()) return {Step::kRetry, {}, C::kFbSeq};
    return {Step::kDone, FaultResult::kSigSegv};
  }
  if (per_vma) {
    if (!read_trylock(mm, v)) return {Step::kFallback, {}, C::kFbMarked};
  } else if (s1 & 1) {
    return {Step::kRetry, {}, C::kFbSeq};
  }
  struct Unlock {
    Vma* v;
    ~Unlock() {
      if (v) read_unlock(v);
    }
  } unlock{per_vma ? v : nullptr};
  // kPerVma: trusted while read-locked, once attached, ours and covering addr.
  // kSeqCount: trusted if the count does not move.
  if (per_vma && (v->detached.load(std::memory_order_acquire) || v->owner != &mm))  // (V4)
    return {Step::kRetry, {}, C::kFbMarked};
  const VmaView view = v->load_view();
  if (addr < view.start || addr >= view.end) return {Step::kRetry, {}, C::kFbSeq};
  auto valid = [&] { return per_vma || unchanged(); };

  // access_error (x86): writes need VM_WRITE, reads any access right.
  if (write ? !(view.flags & vmf::kWrite) : !(view.flags & vmf::kAccessFlags)) {
    if (!valid()) return {Step::kRetry, {}, C::kFbSeq};
    return {Step::kDone, FaultResult::kSigSegv};
  }
  const uint64_t page = addr & ~(kPageSize - 1);
  PageTable& pt = mm.pt;
  const Pte old = pt.get(page);
  Plan plan = pte::present(old) ? plan_present(view, old, write, pt.frames())
                                : plan_missing(view, page, old, write);
  switch (plan.kind) {
    case Plan::kNothing:
      if (!valid()) return {Step::kRetry, {}, C::kFbSeq};
      return {Step::kDone, FaultResult::kOk};
    case Plan::kSignal:
      if (!valid()) return {Step::kRetry, {}, C::kFbSeq};
      return {Step::kDone, plan.signal};
    case Plan::kNeedsAnonVma:
      return {Step::kFallback, {}, C::kFbAnonVma};
    case Plan::kInstall:
      break;
  }
  FrameId frame = 0;
  if (plan.new_frame) {
    auto f = pt.frames().alloc();
    if (!f.ok()) return {Step::kFallback, {}, C::kFbNomem};
    frame = *f;
    plan.value |= pte::make(frame, 0);
  }
  absl::StatusOr<bool> installed = false;
  if (per_vma) {
    installed = pt.compare_and_set(page, old, plan.value);
  } else {
    vm::ReaderMuLock l(&mm.install_mu);  // (S2)
    if (mm.seq.load(std::memory_order_seq_cst) == s1)
      installed = pt.compare_and_set(page, old, plan.value);
    else
      installed = absl::AbortedError("");
  }
  if (!installed.ok() || !*installed) {
    if (plan.new_frame) pt.frames().put(frame);  // undo: never visible
    if (installed.ok()) return {Step::kRetry, {}, C::kFbPteRace};
    if (absl::IsAborted(installed.status())) return {Step::kRetry, {}, C::kFbSeq};
    return {Step::kFallback, {}, C::kFbNomem};
  }
  if (plan.put_old) pt.frames().put(pte::frame(old));
  return {Step::kDone, FaultResult::kOk};
}

}  // namespace

VmaRef& VmaRef::operator=(VmaRef&& o) noexcept {
  if (this != &o) {
    reset();
    vma_ = std::exchange(o.vma_, nullptr);
    view_ = o.view_;
    locked_ = o.locked_;
  }
  return *this;
}

void VmaRef::reset() {
  if (!vma_) return;
  if (locked_)
    read_unlock(vma_);
  else
    vma_->put();
  vma_ = nullptr;
}

VmaRef AddressSpace::find_vma_rcu(uint64_t addr) const {
  using C = vm::Mm::Counters;
  vm::Mm& mm = *mm_;
  for (int i = 0; i < kLookupAttempts; ++i) {
    const uint64_t s1 = mm.seq.load(std::memory_order_acquire);  // (S1)
    if (s1 & 1) {
      mm.counters.add(C::kLookupRetries);
      std::this_thread::yield();
      continue;
    }
    {
      rcu::ReadGuard guard;
      auto e = mm.tree.find(addr);
      if (!e) {
        if (mm.seq.load(std::memory_order_acquire) == s1) return {};
      } else if (Vma* v = e->value; v->try_get()) {  // (V5)
        const VmaView view = v->load_view();
        if (mm.seq.load(std::memory_order_acquire) == s1) return VmaRef(v, view, false);
        v->put();
      }
    }
    mm.counters.add(C::kLookupRetries);
  }
  // Writers kept spoiling the count: one lookup under the mmap mutex, where
  // every VMA in the tree is live and its view final.
  mm.counters.add(C::kLookupLocked);
  vm::MuLock lock(&mm.mu);
  Vma* v = mm.find(addr);
  if (!v || !v->try_get()) return {};
  return VmaRef(v, v->load_view(), false);
}

VmaRef AddressSpace::lock_vma_rcu(uint64_t addr) const {
  vm::Mm& mm = *mm_;
  rcu::ReadGuard guard;
  Vma* v = mm.tree.load(addr);
  if (!v || !read_trylock(mm, v)) return {};
  VmaRef ref(v, v->load_view(), true);
  if (v->detached.load(std::memory_order_acquire) || v->owner != &mm || addr < ref->start ||
      addr >= ref->end)
    return {};
  return ref;
}

absl::StatusOr<FaultResult> AddressSpace::fault(uint64_t addr, Access access) {
  using C = vm::Mm::Counters;
  vm::Mm& mm = *mm_;
  const bool write = access == Access::kWrite;
  C::Id reason = C::kFbSeq;
  for (int i = 0; i < kAttempts; ++i) {
    Attempt a;
    {
      rcu::ReadGuard guard;
      a = try_fault(mm, addr, write);
    }
    if (a.step == Step::kDone) {
      mm.counters.add(C::kSpeculative);
      return a.result;
    }
    reason = a.reason;
    if (a.step == Step::kFallback) break;
    mm.counters.add(C::kSeqRetries);
    std::this_thread::yield();
  }
  mm.counters.add(reason);
  mm.counters.add(C::kLocked);
  return touch(addr, write);
}

FaultStats AddressSpace::fault_stats() const {
  using C = vm::Mm::Counters;
  const C& c = mm_->counters;
  FaultStats s;
  s.speculative = c.sum(C::kSpeculative);
  s.locked = c.sum(C::kLocked);
  s.fb_marked = c.sum(C::kFbMarked);
  s.fb_seq = c.sum(C::kFbSeq);
  s.fb_anon_vma = c.sum(C::kFbAnonVma);
  s.fb_pte_race = c.sum(C::kFbPteRace);
  s.fb_no_vma = c.sum(C::kFbNoVma);
  s.fb_nomem = c.sum(C::kFbNomem);
  s.seq_retries = c.sum(C::kSeqRetries);
  s.lookup_retries = c.sum(C::kLookupRetries);
  s.lookup_locked = c.sum(C::kLookupLocked);
  return s;
}

}  // namespace rcuvm
