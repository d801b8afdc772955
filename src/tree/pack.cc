// Packing a level's items into nodes: how many nodes, which layout (32-bit
// offsets or full pivots), and writing one node's slots, pivots and gaps. Shared by writes (write.cc) and
// bulk building (bulk_dup.cc).
#include <algorithm>

#include "tree/tree_internal.h"

namespace rcuvm::detail {

bool fits_leaf32(const Item* items, size_t cnt, uint64_t min) {
  // The largest stored pivot is the end of the second-to-last slot; the last
  // slot ends at the node's max, which is not stored.
  return cnt <= kLeaf32Slots && (cnt < 2 || items[cnt - 2].last - min <= kMaxOffset);
}

bool fits_alloc32(const Item* items, size_t cnt, uint64_t min) {
  // The whole span, not only the stored pivots: the last child's gaps may
  // grow in place later, up to the child's size.
  return cnt <= kAlloc32Slots && items[cnt - 1].last - min <= kMaxOffset;
}

namespace {

// fill_node() for one kind: the layout tests fold away, which halves the
// instructions of the loop that every write runs for each node it builds.
template <Kind K>
uint64_t fill_node_of(Node* n, const Item* items, unsigned cnt, uint64_t min) {
  n->meta = make_meta(cnt, K);
  uint64_t* sl = slots(n, K);
  uint64_t gap = 0;
  uint64_t first = min;
  for (unsigned t = 0; t + 1 < cnt; ++t) {
    if constexpr (has_offsets(K))
      offsets(n, K)[t] = uint32_t(items[t].last - min);
    else
      pivots(n)[t] = items[t].last;
  }
  for (unsigned t = 0; t < cnt; ++t) {
    const Item& it = items[t];
    sl[t] = it.ptr;
    if constexpr (is_leaf(K)) {
      if (it.ptr == 0) gap = std::max(gap, range_size(first, it.last));
      first = it.last + 1;
    } else if constexpr (is_alloc(K)) {
      store_gap(n, K, t, it.gap);
      gap = std::max(gap, it.gap);
    }
  }
  pad_pivots(n, cnt, K);
  return gap;
}

}  // namespace

uint64_t fill_node(Node* n, const Item* items, unsigned cnt, Kind kind, uint64_t min) {
  switch (kind) {
    case Kind::kLeaf32: return fill_node_of<Kind::kLeaf32>(n, items, cnt, min);
    case Kind::kLeaf64: return fill_node_of<Kind::kLeaf64>(n, items, cnt, min);
    case Kind::kAlloc32: return fill_node_of<Kind::kAlloc32>(n, items, cnt, min);
    case Kind::kAlloc64: return fill_node_of<Kind::kAlloc64>(n, items, cnt, min);
    default: return fill_node_of<Kind::kRange>(n, items, cnt, min);
  }
}

namespace {

// Even split of k items into m nodes: the first k % m get one more.
inline unsigned even_share(size_t k, size_t m, size_t j) {
  return unsigned(k / m + (j < k % m ? 1 : 0));
}

// The two layouts of one node family: the roomy one with 32-bit offsets,
// usable where `fits` says so, and the wide one (the same kind for Range).
struct Family {
  Kind narrow, wide;
  bool (*fits)(const Item*, size_t, uint64_t);
};

bool always_fits(const Item*, size_t, uint64_t) { return true; }

// The first index of items[from..]: the end of the item before, or `min`.
inline uint64_t start_of(const Item* items, size_t from, uint64_t min) {
  return from == 0 ? min : items[from - 1].last + 1;
}

// Even shares, away from the tree's edges. Plan A: narrow nodes of an even
// share each; a share that does not fit that layout (it spans 4 GiB or more)
// becomes wide nodes of an even share of it, each narrow where it fits, so one
// wide spot costs one extra node. Plan B, when wide spots are common (indices
// spread over the whole 64-bit space): even shares of the wide capacity, each
// narrow where it fits. The one with fewer nodes wins.
void plan_even(const Item* items, size_t k, const Family& f, uint64_t min, ChunkPlan& plan) {
  const unsigned ncap = capacity(f.narrow), wcap = capacity(f.wide);
  auto push_fitted = [&](size_t pos, unsigned cnt) {
    plan.push_back(Chunk{cnt, f.fits(items + pos, cnt, start_of(items, pos, min)) ? f.narrow : f.wide});
  };
  size_t m = (k + ncap - 1) / ncap;
  size_t pos = 0;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    if (f.fits(items + pos, cnt, start_of(items, pos, min))) {
      plan.push_back(Chunk{cnt, f.narrow});
    } else {
      const size_t parts = (cnt + wcap - 1) / wcap;
      size_t part_pos = pos;
      for (size_t p = 0; p < parts; ++p) {
        const unsigned part = even_share(cnt, parts, p);
        push_fitted(part_pos, part);
        part_pos += part;
      }
    }
    pos += cnt;
  }
  m = (k + wcap - 1) / wcap;
  if (plan.size() <= m) return;
  plan.clear();
  pos = 0;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    push_fitted(pos, cnt);
    pos += cnt;
  }
}

// At an edge of the tree, where in-order stores (a heap growing up, mmap's
// top-down placement) keep adding items: nodes are filled to capacity from
// the interior side and the edge node takes the rest (at least its minimum),
// so that the nodes left behind are full. Each node takes as many items as
// fit the narrow layout, or the wide capacity when that is more. `from_right`
// fills from the right end (growth at the left edge).
void plan_edge(const Item* items, size_t k, const Family& f, uint64_t min, bool from_right, ChunkPlan& plan) {
  const unsigned ncap = capacity(f.narrow), wcap = capacity(f.wide);
  const unsigned floor = min_fill(f.narrow);
  // Whether the `cnt` items next to the `done` already planned fit narrow.
  auto fits = [&](size_t done, unsigned cnt) {
    const size_t from = from_right ? k - done - cnt : done;
    return f.fits(items + from, cnt, start_of(items, from, min));
  };
  size_t done = 0;
  while (done < k) {
    const size_t rem = k - done;
    unsigned narrow = 0;  // fits is monotone: fewer items span less
    for (unsigned c = unsigned(std::min<size_t>(ncap, rem)); c > 0; --c) {
      if (fits(done, c)) {
        narrow = c;
        break;
      }
    }
    unsigned take = std::max<unsigned>(narrow, unsigned(std::min<size_t>(wcap, rem)));
    if (rem > take && rem - take < floor) take = unsigned(rem - floor);  // leave the edge node its minimum
    plan.push_back(Chunk{take, fits(done, take) ? f.narrow : f.wide});
    done += take;
  }
  if (from_right) std::reverse(plan.begin(), plan.end());
}

Family family_of(bool leaf_level, Kind ikind) {
  if (leaf_level) return Family{Kind::kLeaf32, Kind::kLeaf64, fits_leaf32};
  if (is_alloc(ikind)) return Family{Kind::kAlloc32, Kind::kAlloc64, fits_alloc32};
  return Family{ikind, ikind, always_fits};
}

}  // namespace

void plan_level(const Item* items, size_t k, bool leaf_level, Kind ikind, uint64_t min, ChunkPlan& plan) {
  plan.clear();
  const Family f = family_of(leaf_level, ikind);
  const bool left_edge = min == 0, right_edge = items[k - 1].last == kMaxIndex;
  if (left_edge != right_edge && k > capacity(f.wide))
    plan_edge(items, k, f, min, /*from_right=*/left_edge, plan);
  else
    plan_even(items, k, f, min, plan);
}

}  // namespace rcuvm::detail
