// Gap search in allocation mode: find_gap (lowest fit) and find_gap_rev
// (highest fit), the engine of get_unmapped_area.
//
// Internal nodes of an allocation tree record, per child, the largest null
// range below it, so the search skips any child whose gap is too small and
// walks straight to a hole. Because null ranges never sit side by side (I5),
// every free area is exactly one null slot, and the recorded gaps are exact.
// The gap of a child may lie partly outside [min, max], so a child that passes
// the filter can still fail and the search moves on (bounded backtracking).
// Without gap tracking the same search visits every leaf in the window.
#include <cerrno>

#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {
namespace {

struct GapQuery {
  uint64_t min, max, size;
  bool use_gaps;
};

// A null range [first, last] clipped to the window fits when it holds size indices.
inline bool fits(uint64_t first, uint64_t last, const GapQuery& q, uint64_t& s, uint64_t& e) {
  s = std::max(first, q.min);
  e = std::min(last, q.max);
  return s <= e && e - s >= q.size - 1;
}

std::optional<uint64_t> lowest(const Node* n, uint64_t nmin, uint64_t nmax, const GapQuery& q) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  for (unsigned i = slot_for(n, k, cnt, q.min, nmin); i < cnt; ++i) {
    uint64_t first = slot_min(n, k, i, nmin), last = slot_max(n, k, i, cnt, nmin, nmax);
    if (first > q.max) break;
    if (is_leaf(k)) {
      uint64_t s, e;
      if (load_slot(n, k, i) == 0 && fits(first, last, q, s, e)) return s;
      continue;
    }
    if (q.use_gaps && is_alloc(k) && load_gap(n, k, i) < q.size) continue;
    if (auto r = lowest(reinterpret_cast<const Node*>(load_slot(n, k, i)), first, last, q)) return r;
  }
  return std::nullopt;
}

std::optional<uint64_t> highest(const Node* n, uint64_t nmin, uint64_t nmax, const GapQuery& q) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  for (unsigned i = slot_for(n, k, cnt, q.max, nmin) + 1; i-- > 0;) {
    uint64_t first = slot_min(n, k, i, nmin), last = slot_max(n, k, i, cnt, nmin, nmax);
    if (last < q.min) break;
    if (is_leaf(k)) {
      uint64_t s, e;
      if (load_slot(n, k, i) == 0 && fits(first, last, q, s, e)) return e - (q.size - 1);
      continue;
    }
    if (q.use_gaps && is_alloc(k) && load_gap(n, k, i) < q.size) continue;
    if (auto r = highest(reinterpret_cast<const Node*>(load_slot(n, k, i)), first, last, q)) return r;
  }
  return std::nullopt;
}

absl::Status check_query(uint64_t min, uint64_t max, uint64_t size) {
  if (size == 0) return errno_error(EINVAL, "gap search: size 0");
  if (min > max) return errno_error(EINVAL, "gap search: min > max");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> RawTree::find_gap(uint64_t min, uint64_t max, uint64_t size) const {
  if (absl::Status s = check_query(min, max, size); !s.ok()) return s;
  if (max - min < size - 1) return errno_error(EBUSY, "gap search: window smaller than size");
  rcu::internal::ReadSection rs;
  const Node* root = root_.load(std::memory_order_acquire);
  if (!root) return min;
  GapQuery q{min, max, size, options_.track_gaps};
  if (auto r = lowest(root, 0, kMaxIndex, q)) return *r;
  return errno_error(EBUSY, "gap search: no free range");
}

absl::StatusOr<uint64_t> RawTree::find_gap_rev(uint64_t min, uint64_t max, uint64_t size) const {
  if (absl::Status s = check_query(min, max, size); !s.ok()) return s;
  if (max - min < size - 1) return errno_error(EBUSY, "gap search: window smaller than size");
  rcu::internal::ReadSection rs;
  const Node* root = root_.load(std::memory_order_acquire);
  if (!root) return max - (size - 1);
  GapQuery q{min, max, size, options_.track_gaps};
  if (auto r = highest(root, 0, kMaxIndex, q)) return *r;
  return errno_error(EBUSY, "gap search: no free range");
}

}  // namespace rcuvm::detail
