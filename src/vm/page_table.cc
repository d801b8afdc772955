// The simulated page table and frame allocator (see rcuvm/page_table.h).
#include "rcuvm/page_table.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>

#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"
#include "vm/locks.h"

namespace rcuvm {

// --- FrameAllocator

FrameAllocator::~FrameAllocator() {
  for (auto& seg : segments_) delete[] seg.load(std::memory_order_relaxed);
}

namespace {

// Segment of frame f and f's index in it (see segments_).
struct SegmentIndex {
  unsigned segment;
  uint64_t index;
};

template <unsigned kFirstBits>
SegmentIndex segment_of(FrameId f) {
  const uint64_t q = (f >> kFirstBits) + 1;
  const unsigned k = static_cast<unsigned>(std::bit_width(q)) - 1;
  return {k, f - (((uint64_t{1} << k) - 1) << kFirstBits)};
}

}  // namespace

FrameAllocator::Slot& FrameAllocator::slot(FrameId f) const {
  const auto [k, i] = segment_of<kFirstSegmentBits>(f);
  Slot* seg = segments_[k].load(std::memory_order_acquire);
  if (!seg) {
    // First frame of this segment: a racing allocator's segment may win.
    Slot* fresh = new Slot[uint64_t{1} << (k + kFirstSegmentBits)];
    if (segments_[k].compare_exchange_strong(seg, fresh, std::memory_order_acq_rel,
                                             std::memory_order_acquire))
      seg = fresh;
    else
      delete[] fresh;
  }
  return seg[i];
}

absl::StatusOr<FrameId> FrameAllocator::alloc() {
  if (detail::allocation_should_fail()) return errno_error(ENOMEM, "no free frame");
  FrameId f = 0;
  uint64_t top = free_top_.load(std::memory_order_acquire);  // (F1)
  while (uint32_t candidate = static_cast<uint32_t>(top)) {
    // The slot may be stale if another thread took `candidate` meanwhile;
    // then the tag moved and the CAS fails.
    const uint32_t next = slot(candidate).next_free.load(std::memory_order_relaxed);
    const uint64_t popped = (((top >> 32) + 1) << 32) | next;
    if (free_top_.compare_exchange_weak(top, popped, std::memory_order_acquire,
                                        std::memory_order_acquire)) {
      f = candidate;
      break;
    }
  }
  if (!f) {
    f = next_.fetch_add(1, std::memory_order_relaxed);
    if (f > UINT32_MAX) {
      next_.fetch_sub(1, std::memory_order_relaxed);
      return errno_error(ENOMEM, "no free frame number");
    }
  }
  slot(f).refs.store(1, std::memory_order_release);
  in_use_.fetch_add(1, std::memory_order_relaxed);
  return f;
}

void FrameAllocator::get(FrameId f) {
  if (f == kZeroFrame) return;
  slot(f).refs.fetch_add(1, std::memory_order_relaxed);
}

void FrameAllocator::put(FrameId f) {
  if (f == kZeroFrame) return;
  Slot& s = slot(f);
  uint32_t n = s.refs.load(std::memory_order_relaxed);
  do {
    assert(n != 0 && "put of a free frame");
    if (n == 0) return;
  } while (!s.refs.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel,
                                         std::memory_order_relaxed));
  if (n != 1) return;
  // The last reference: push f on the free stack (F1).
  uint64_t top = free_top_.load(std::memory_order_relaxed);
  uint64_t pushed;
  do {
    s.next_free.store(static_cast<uint32_t>(top), std::memory_order_relaxed);
    pushed = (((top >> 32) + 1) << 32) | f;
  } while (!free_top_.compare_exchange_weak(top, pushed, std::memory_order_release,
                                            std::memory_order_relaxed));
  in_use_.fetch_sub(1, std::memory_order_relaxed);
}

uint32_t FrameAllocator::refcount(FrameId f) const {
  if (f == kZeroFrame || f > UINT32_MAX) return 0;
  const auto [k, i] = segment_of<kFirstSegmentBits>(f);
  const Slot* seg = segments_[k].load(std::memory_order_acquire);
  return seg ? seg[i].refs.load(std::memory_order_acquire) : 0;
}

// --- PageTable
//
// Layout: level 3 is the root (PGD), level 0 holds the PTEs. An entry of a
// level L > 0 table holds the address of its level L-1 table, or 0.
//
//   (P1) release store / CAS of a new table into its parent slot; pairs with
//   (P2) acquire load of the slot in every walk.

struct PageTable::Table : rcu::Deferred {
  std::atomic<uint64_t> e[kEntries] = {};
  void reclaim() override { delete this; }
};

namespace {

constexpr unsigned shift_of(unsigned level) { return 12 + 9 * level; }
constexpr uint64_t span_of(unsigned level) { return uint64_t{1} << shift_of(level); }
constexpr unsigned index_of(uint64_t addr, unsigned level) {
  return (addr >> shift_of(level)) & (PageTable::kEntries - 1);
}

}  // namespace

PageTable::PageTable(std::shared_ptr<FrameAllocator> frames)
    : frames_(std::move(frames)), root_(new Table) {
  tables_.store(1, std::memory_order_relaxed);
}

PageTable::~PageTable() {
  rcu::DeferredList gone;  // one grace-period callback for every table
  destroy(root_, kLevels - 1, gone);
  gone.retire_all();
}

void PageTable::destroy(Table* t, unsigned level, rcu::DeferredList& gone) {
  for (auto& slot : t->e) {
    uint64_t v = slot.load(std::memory_order_relaxed);
    if (!v) continue;
    if (level == 0) {
      if (v & pte::kAnon) frames_->put(pte::frame(v));
    } else {
      destroy(reinterpret_cast<Table*>(v), level - 1, gone);
    }
  }
  gone.add(t);  // a lockless walker may still be inside it
}

std::atomic<uint64_t>* PageTable::slot(uint64_t addr, bool create, PtLog* log,
                                       absl::Status* status) {
  Table* t = root_;
  for (unsigned level = kLevels - 1; level > 0; --level) {
    std::atomic<uint64_t>& s = t->e[index_of(addr, level)];
    uint64_t v = s.load(std::memory_order_acquire);  // (P2)
    if (!v) {
      if (!create) return nullptr;
      if (detail::allocation_should_fail()) {
        *status = errno_error(ENOMEM, "no memory for a page table");
        return nullptr;
      }
      Table* fresh = new Table;
      uint64_t expected = 0;
      // (P1) publish the table; a racing creator's table wins and ours goes.
      if (s.compare_exchange_strong(expected, reinterpret_cast<uint64_t>(fresh),
                                    std::memory_order_acq_rel, std::memory_order_acquire)) {
        v = reinterpret_cast<uint64_t>(fresh);
        tables_.fetch_add(1, std::memory_order_relaxed);
        if (log) log->created.push_back(&s);
      } else {
        delete fresh;  // never published
        v = expected;
      }
    }
    t = reinterpret_cast<Table*>(v);
  }
  return &t->e[index_of(addr, 0)];
}

Pte PageTable::get(uint64_t addr) const {
  const Table* t = root_;
  for (unsigned level = kLevels - 1; level > 0; --level) {
    uint64_t v = t->e[index_of(addr, level)].load(std::memory_order_acquire);  // (P2)
    if (!v) return 0;
    t = reinterpret_cast<const Table*>(v);
  }
  return t->e[index_of(addr, 0)].load(std::memory_order_acquire);
}

const std::atomic<uint64_t>* PageTable::table(uint64_t addr, unsigned level) const {
  const Table* t = root_;
  for (unsigned l = kLevels - 1; l > level; --l) {
    uint64_t v = t->e[index_of(addr, l)].load(std::memory_order_acquire);  // (P2)
    if (!v) return nullptr;
    t = reinterpret_cast<const Table*>(v);
  }
  return t->e;
}

absl::Status PageTable::prepare(uint64_t addr, PtLog* log) {
  absl::Status s;
  slot(addr, /*create=*/true, log, &s);
  return s;
}

absl::Status PageTable::set(uint64_t addr, Pte value, PtLog* log) {
  absl::Status s;
  std::atomic<uint64_t>* e = slot(addr, /*create=*/true, log, &s);
  if (!e) return s;
  if (log) log->changes.push_back({addr & ~(span_of(0) - 1), e->load(std::memory_order_relaxed)});
  e->store(value, std::memory_order_release);
  return absl::OkStatus();
}

void PageTable::walk(const Table* t, unsigned level, uint64_t base, uint64_t start, uint64_t end,
                     const std::function<void(uint64_t, Pte)>& fn) const {
  const uint64_t span = span_of(level);
  for (unsigned i = index_of(std::max(start, base), level); i < kEntries; ++i) {
    const uint64_t a = base + i * span;
    if (a >= end) break;
    uint64_t v = t->e[i].load(std::memory_order_acquire);
    if (!v) continue;
    if (level == 0) {
      if (v & pte::kPresent) fn(a, v);
    } else {
      walk(reinterpret_cast<const Table*>(v), level - 1, a, start, end, fn);
    }
  }
}

void PageTable::for_each(uint64_t start, uint64_t end,
                         const std::function<void(uint64_t, Pte)>& fn) const {
  if (start >= end) return;
  walk(root_, kLevels - 1, 0, start, end, fn);
}

uint64_t PageTable::anon_pages(uint64_t start, uint64_t end) const {
  uint64_t n = 0;
  for_each(start, end, [&](uint64_t, Pte p) { n += (p & pte::kAnon) ? 1 : 0; });
  return n;
}

void PageTable::zap(uint64_t start, uint64_t end, PtLog* log) {
  std::vector<std::pair<uint64_t, Pte>> present;
  for_each(start, end, [&](uint64_t a, Pte p) { present.emplace_back(a, p); });
  for (auto [a, p] : present) {
    absl::Status unused;
    std::atomic<uint64_t>* e = slot(a, /*create=*/false, nullptr, &unused);
    if (log) log->changes.push_back({a, p});
    e->store(0, std::memory_order_release);
    if (p & pte::kAnon) {
      if (log)
        log->put_on_commit.push_back(pte::frame(p));
      else
        frames_->put(pte::frame(p));
    }
  }
}

namespace {

bool table_empty(const std::atomic<uint64_t>* e) {
  for (unsigned i = 0; i < PageTable::kEntries; ++i)
    if (e[i].load(std::memory_order_relaxed)) return false;
  return true;
}

}  // namespace

// Frees the empty tables below t (a level `level` table at `base`) for the
// range [start, end), then the rule of free_pmd_range/free_pud_range decides
// for each child table whether the whole range it covers is inside
// [floor, ceiling).
void PageTable::free_level(Table* t, unsigned level, uint64_t base, uint64_t start, uint64_t end,
                           uint64_t floor, uint64_t ceiling, rcu::DeferredList& gone) {
  const uint64_t span = span_of(level);
  for (unsigned i = index_of(std::max(start, base), level); i < kEntries; ++i) {
    const uint64_t a = base + i * span;
    if (a >= end) break;
    uint64_t v = t->e[i].load(std::memory_order_relaxed);
    if (!v) continue;
    Table* child = reinterpret_cast<Table*>(v);
    const uint64_t sub_start = std::max(start, a), sub_end = std::min(end, a + span);
    if (level == 1) {
      // PTE tables: the caller already trimmed [start, end) to whole PMDs
      // inside [floor, ceiling).
    } else {
      free_level(child, level - 1, a, sub_start, sub_end, floor, ceiling, gone);
      // The child covers [a, a + span): keep it when a neighbour may use it.
      const uint64_t mask = ~(span - 1);
      if ((sub_start & mask) < floor) continue;
      uint64_t ceil = ceiling;
      if (ceil) {
        ceil &= mask;
        if (!ceil) continue;
      }
      if (sub_end - 1 > ceil - 1) continue;
    }
    if (!table_empty(child->e)) continue;
    t->e[i].store(0, std::memory_order_release);
    tables_.fetch_sub(1, std::memory_order_relaxed);
    gone.add(child);  // a lockless walker may still be inside it
  }
}

void PageTable::free_tables(uint64_t addr, uint64_t end, uint64_t floor, uint64_t ceiling) {
  // free_pgd_range: trim to whole PMD ranges inside [floor, ceiling).
  const uint64_t pmd = span_of(1);
  addr &= ~(pmd - 1);
  if (addr < floor) {
    addr += pmd;
    if (!addr) return;
  }
  if (ceiling) {
    ceiling &= ~(pmd - 1);
    if (!ceiling) return;
  }
  if (end - 1 > ceiling - 1) end -= pmd;
  if (addr > end - 1) return;
  rcu::DeferredList gone;  // one grace-period callback for the freed tables
  free_level(root_, kLevels - 1, 0, addr, end, floor, ceiling, gone);
  gone.retire_all();
}

void PageTable::commit(PtLog& log) {
  for (FrameId f : log.put_on_commit) frames_->put(f);
  for (const auto& r : log.frees) free_tables(r.start, r.end, r.floor, r.ceiling);
  log = PtLog{};
}

absl::StatusOr<bool> PageTable::compare_and_set(uint64_t addr, Pte expected, Pte value) {
  absl::Status s;
  std::atomic<uint64_t>* e = slot(addr, /*create=*/true, nullptr, &s);
  if (!e) return s;
  // (P3) acq_rel CAS: pairs with (P2)-style acquire loads of the entry.
  return e->compare_exchange_strong(expected, value, std::memory_order_acq_rel,
                                    std::memory_order_acquire);
}

void PageTable::rollback(PtLog& log, bool free_created) {
  for (auto it = log.changes.rbegin(); it != log.changes.rend(); ++it) {
    absl::Status unused;
    std::atomic<uint64_t>* e = slot(it->addr, /*create=*/false, nullptr, &unused);
    if (e) e->store(it->old, std::memory_order_release);
  }
  rcu::DeferredList gone;  // one grace-period callback for the created tables
  for (auto it = log.created.rbegin(); free_created && it != log.created.rend(); ++it) {
    uint64_t v = (*it)->load(std::memory_order_relaxed);
    (*it)->store(0, std::memory_order_release);
    tables_.fetch_sub(1, std::memory_order_relaxed);
    gone.add(reinterpret_cast<Table*>(v));
  }
  gone.retire_all();
  for (FrameId f : log.put_on_rollback) frames_->put(f);
  log = PtLog{};
}

}  // namespace rcuvm
