// Writer transactions: record every change of one system call so that an
// allocation failure can undo all of it (see mm.h).
#include <algorithm>
#include <cerrno>
#include <thread>

#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"
#include "vm/mm.h"

namespace rcuvm::vm {

std::vector<Vma*> Mm::range(uint64_t start, uint64_t end) const {
  std::vector<Vma*> out;
  if (start >= end) return out;
  auto c = tree.cursor(start);
  while (auto e = c.next(end - 1)) out.push_back(e->value);
  return out;
}

uint64_t Mm::accounted_pages(uint64_t start, uint64_t end) const {
  uint64_t pages = 0;
  for (const Vma* v : range(start, end))
    if (v->flags & vmf::kAccount)
      pages += (std::min(end, v->end) - std::max(start, v->start)) >> kPageShift;
  return pages;
}

Txn::Txn(Mm& mm)
    : mm_(mm),
      map_count_(mm.map_count),
      total_vm_(mm.total_vm),
      locked_vm_(mm.locked_vm),
      shm_created_(mm.shm_created),
      brk_(mm.brk) {
  mm_.write_begin();
}

Txn::~Txn() {
  if (!committed_) rollback();
  mm_.write_end();
}

bool Mm::mark(Vma* v) {
  const uint64_t s = seq.load(std::memory_order_relaxed);  // ours: odd
  if (v->lock_seq.load(std::memory_order_relaxed) == s) return false;
  v->lock_seq.store(s, std::memory_order_seq_cst);  // (V1)
  // (V3) wait for the read-lock holders that did not see the mark.
  while (v->readers.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  return true;
}

absl::Status Txn::store(uint64_t start, uint64_t end, Vma* v) {
  StoreRecord rec{start, end, {}};
  // Record the tree's own entries: a caller may already have changed the
  // fields of a VMA it is about to store (set_range).
  auto c = mm_.tree.cursor(start);
  while (auto e = c.next(end - 1))
    rec.before.push_back({std::max(e->first, start), std::min(e->last, end - 1), e->value});
  for (const auto& e : rec.before) mark(e.value);
  if (v) mark(v);
  absl::Status s = mm_.tree.store(start, end - 1, v);
  if (!s.ok()) {
    oom_ = true;
    return s;
  }
  stores_.push_back(std::move(rec));
  return absl::OkStatus();
}

void Txn::save(Vma* v) {
  mark(v);
  for (auto& [p, st] : saved_)
    if (p == v) return;
  saved_.emplace_back(v, static_cast<const VmaState&>(*v));
}

Vma* Txn::alloc(const VmaState& init) {
  if (detail::allocation_should_fail()) {
    oom_ = true;
    return nullptr;
  }
  Vma* v = new Vma(init);
  v->owner = &mm_;
  allocated_.push_back(v);
  mark(v);
  return v;
}

absl::Status Txn::pt_set(uint64_t addr, Pte value) {
  if (Vma* v = mm_.lookup(addr)) mark(v);
  absl::Status s = mm_.pt.set(addr, value, &pt_log_);
  if (!s.ok()) oom_ = true;
  return s;
}

absl::StatusOr<FrameId> Txn::alloc_frame() {
  auto f = mm_.pt.frames().alloc();
  if (!f.ok()) {
    oom_ = true;
    return f;
  }
  pt_log_.put_on_rollback.push_back(*f);
  return f;
}

std::shared_ptr<AnonVma> Txn::alloc_anon_vma() {
  static std::atomic<uint64_t> next_id{1};
  if (detail::allocation_should_fail()) {
    oom_ = true;
    return nullptr;
  }
  auto a = std::make_shared<AnonVma>();
  a->id = next_id.fetch_add(1, std::memory_order_relaxed);
  return a;
}

void Txn::remove(Vma* v) {
  mark(v);
  removed_.push_back(v);
}

absl::Status Txn::nomem() { return errno_error(ENOMEM, "out of memory"); }

void Txn::commit() {
  committed_ = true;
  // The marked VMAs show readers their final fields before the count moves
  // (and before a put below may retire one).
  for (Vma* v : touched_) v->publish_view();
  mm_.pt.commit(pt_log_);
  rcu::DeferredList gone;  // one grace-period callback for the call's VMAs
  for (Vma* v : removed_) {
    if (v->ops) v->ops->close(*v);
    v->detached.store(true, std::memory_order_release);  // (V4)
    v->put(gone);  // the tree's reference (V5)
  }
  gone.retire_all();
}

// Cannot fail: a restoring store retries until its nodes are allocated, as
// the kernel's __GFP_NOFAIL restores do.
void Txn::rollback() {
  // Tables this call created may already hold PTEs that per-VMA-lock faults
  // installed for unmarked neighbours: keep them in that mode.
  mm_.pt.rollback(pt_log_, /*free_created=*/mm_.opt.fault_lock != VmaLockMode::kPerVma);
  auto must_store = [&](uint64_t first, uint64_t last, Vma* v) {
    while (!mm_.tree.store(first, last, v).ok()) {
    }
  };
  for (auto it = stores_.rbegin(); it != stores_.rend(); ++it) {
    must_store(it->start, it->end - 1, nullptr);
    for (const auto& e : it->before) must_store(e.first, e.last, e.value);
  }
  for (auto& [v, st] : saved_) static_cast<VmaState&>(*v) = st;
  // Piecewise restores leave one VMA as several adjacent entries; store each
  // VMA that was there whole again so the tree holds exactly one entry each.
  // Only VMAs that were there before the call: one this call allocated (and
  // a later store of the call covered) is gone from the tree again, and must
  // stay gone (it is freed below).
  auto allocated_here = [&](const Vma* v) {
    return std::find(allocated_.begin(), allocated_.end(), v) != allocated_.end();
  };
  for (const StoreRecord& rec : stores_)
    for (const auto& e : rec.before)
      if (!allocated_here(e.value)) must_store(e.value->start, e.value->end - 1, e.value);
  for (Vma* v : touched_) v->publish_view();
  for (Vma* v : allocated_) {
    v->detached.store(true, std::memory_order_release);  // (V4)
    v->put();  // a reader may have seen it in the tree
  }
  mm_.map_count = map_count_;
  mm_.total_vm = total_vm_;
  mm_.locked_vm = locked_vm_;
  mm_.shm_created = shm_created_;
  mm_.brk = brk_;
}

}  // namespace rcuvm::vm
