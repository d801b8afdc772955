// validate(): checks the invariants I1..I7 listed in node.h, in that order,
// in every build type, and names the first one broken with node and range.
// dump(): a readable picture of the tree.
#include <cinttypes>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {
namespace {

struct Walker {
  Walker(uint64_t h, Kind k) : height(h), ikind(k) {}
  uint64_t height;
  Kind ikind;
  bool have_prev = false;  // for I5: was the previous range (in order) null?
  bool prev_null = false;
  uint64_t entries = 0, nulls = 0, nodes = 0, leaves = 0;
  std::string error;

  bool fail(const std::string& inv, const Node* n, uint64_t min, uint64_t max, const std::string& why) {
    if (error.empty())
      error = absl::StrFormat("%s broken at node %p [%#x, %#x]: %s", inv, static_cast<const void*>(n),
                              min, max, why);
    return false;
  }

  // Returns the largest null range under n; sets `error` on the first break.
  bool visit(const Node* n, uint64_t depth, uint64_t min, uint64_t max, bool is_root, uint64_t& gap_out) {
    uint64_t m = meta_relaxed(n);
    unsigned cnt = meta_count(m);
    Kind k = meta_kind(m);
    ++nodes;
    // I1
    if (m & kDeadBit) return fail("I1", n, min, max, "reachable node is dead");
    const bool leaf_level = depth + 1 == height;
    if (leaf_level && !is_leaf(k)) return fail("I1", n, min, max, "node at leaf depth is not a leaf");
    if (!leaf_level && (is_alloc(ikind) ? !is_alloc(k) : k != Kind::kRange)) return fail("I1", n, min, max, "internal node of the wrong kind (or leaf above leaf depth)");
    // I2
    if (cnt < 1 || cnt > capacity(k)) return fail("I2", n, min, max, absl::StrCat("count ", cnt, " out of range"));
    if (!is_root && cnt < min_fill(k))
      return fail("I2", n, min, max, absl::StrCat("count ", cnt, " below minimum ", min_fill(k)));
    if (is_root && !is_leaf(k) && cnt < 2) return fail("I2", n, min, max, "internal root with one child");
    // I3
    if (k == Kind::kAlloc32 && max - min > kMaxOffset)
      return fail("I3", n, min, max, "an Alloc32 node spans more than its offsets and gaps can hold");
    for (unsigned i = 0; i + 1 < cnt; ++i) {
      if (has_offsets(k) && offsets(n, k)[i] > kMaxOffset)
        return fail("I3", n, min, max, absl::StrCat("offset ", i, " = ", offsets(n, k)[i], " above the largest"));
      uint64_t p = pivot_at(n, k, i, min);
      if (p < min || p >= max) return fail("I3", n, min, max, absl::StrCat("pivot ", i, " = ", p, " outside node"));
      if (i > 0 && p <= pivot_at(n, k, i - 1, min))
        return fail("I3", n, min, max, absl::StrCat("pivot ", i, " not increasing"));
    }
    for (unsigned i = cnt - 1; i + 1 < capacity(k); ++i) {
      if (has_offsets(k) ? offsets(n, k)[i] != kNoOffset : pivots(n)[i] != UINT64_MAX)
        return fail("I3", n, min, max, absl::StrCat("unused pivot ", i, " is not padded"));
    }
    uint64_t best = 0;
    for (unsigned i = 0; i < cnt; ++i) {
      uint64_t first = slot_min(n, k, i, min), last = slot_max(n, k, i, cnt, min, max);
      uint64_t s = slots(n, k)[i];
      if (is_leaf(k)) {
        // I5
        if (!s && have_prev && prev_null)
          return fail("I5", n, min, max, absl::StrFormat("null range [%#x, %#x] follows a null range", first, last));
        have_prev = true;
        prev_null = !s;
        (s ? entries : nulls)++;
        if (!s) best = std::max(best, range_size(first, last));
        continue;
      }
      // I4
      if (!s) return fail("I4", n, min, max, absl::StrCat("null child in slot ", i));
      uint64_t child_gap = 0;
      if (!visit(reinterpret_cast<const Node*>(s), depth + 1, first, last, false, child_gap)) return false;
      // I6
      if (is_alloc(k) && load_gap(n, k, i) != child_gap)
        return fail("I6", n, min, max, absl::StrCat("gap[", i, "] = ", load_gap(n, k, i), " but child's largest null range is ", child_gap));
      best = std::max(best, child_gap);
    }
    if (is_leaf(k)) ++leaves;
    gap_out = best;
    return true;
  }
};

void dump_node(const Node* n, uint64_t min, uint64_t max, int depth, std::string& out) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  static const char* kNames[] = {"leaf64", "range", "alloc64", "leaf32", "alloc32", "?", "?", "?"};
  absl::StrAppendFormat(&out, "%*s%s %p [%#x, %#x] count %u%s\n", depth * 2, "", kNames[int(k)],
                        static_cast<const void*>(n), min, max, cnt, (m & kDeadBit) ? " DEAD" : "");
  for (unsigned i = 0; i < cnt; ++i) {
    uint64_t first = slot_min(n, k, i, min), last = slot_max(n, k, i, cnt, min, max);
    uint64_t s = slots(n, k)[i];
    if (is_leaf(k)) {
      absl::StrAppendFormat(&out, "%*s[%#x, %#x] -> %#x\n", depth * 2 + 2, "", first, last, s);
    } else {
      if (is_alloc(k)) absl::StrAppendFormat(&out, "%*sgap %u\n", depth * 2 + 2, "", load_gap(n, k, i));
      dump_node(reinterpret_cast<const Node*>(s), first, last, depth + 1, out);
    }
  }
}

}  // namespace

absl::Status RawTree::validate() const {
  WriterLockMaybe lock(options_.external_lock ? nullptr : &mutex_);
  if (options_.external_lock) options_.external_lock->AssertHeld();
  rcu::internal::ReadSection rs;
  const Node* root = root_.load(std::memory_order_acquire);
  Walker w(height_, internal_kind(options_));
  if (!root) {
    if (height_ != 0) return absl::InternalError("I1 broken: empty tree with non-zero height");
  } else {
    uint64_t gap = 0;
    if (!w.visit(root, 0, 0, kMaxIndex, true, gap)) return absl::InternalError(w.error);
    if (w.entries == 0) return absl::InternalError("I5 broken: tree holds only null ranges");
  }
  // I7
  if (w.entries != entries_ || w.nulls != nulls_ || w.nodes != nodes_ || w.leaves != leaves_)
    return absl::InternalError(absl::StrCat("I7 broken: counters (entries ", entries_, ", nulls ", nulls_,
                                            ", nodes ", nodes_, ", leaves ", leaves_, ") but the tree holds (",
                                            w.entries, ", ", w.nulls, ", ", w.nodes, ", ", w.leaves, ")"));
  return absl::OkStatus();
}

std::string RawTree::dump() const {
  WriterLockMaybe lock(options_.external_lock ? nullptr : &mutex_);
  rcu::internal::ReadSection rs;
  const Node* root = root_.load(std::memory_order_acquire);
  std::string out = absl::StrFormat("range tree: height %u, %u entries, %u nodes%s%s\n", height_, entries_,
                                    nodes_, options_.track_gaps ? ", gap tracking" : "",
                                    options_.rcu ? ", RCU" : "");
  if (root) dump_node(root, 0, kMaxIndex, 0, out);
  return out;
}

}  // namespace rcuvm::detail
