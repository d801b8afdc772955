// Packing a level's items into nodes: how many nodes, which layout (32-bit
// offsets or full pivots), and writing one node's slots, pivots and gaps. Shared by writes (write.cc) and
// bulk building (bulk_dup.cc).
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

uint64_t fill_node(Node* n, const Item* items, unsigned cnt, Kind kind, uint64_t min) {
  n->meta = make_meta(cnt, kind);
  uint64_t* sl = slots(n, kind);
  uint64_t gap = 0;
  uint64_t first = min;
  for (unsigned t = 0; t < cnt; ++t) {
    const Item& it = items[t];
    if (t + 1 < cnt) {
      if (has_offsets(kind))
        offsets(n, kind)[t] = uint32_t(it.last - min);
      else
        pivots(n)[t] = it.last;
    }
    sl[t] = it.ptr;
    if (is_leaf(kind)) {
      if (it.ptr == 0) gap = std::max(gap, range_size(first, it.last));
    } else if (is_alloc(kind)) {
      store_gap(n, kind, t, it.gap);
      gap = std::max(gap, it.gap);
    }
    first = it.last + 1;
  }
  pad_pivots(n, cnt, kind);
  return gap;
}

namespace {

// Even split of k items into m nodes: the first k % m get one more.
inline unsigned even_share(size_t k, size_t m, size_t j) {
  return unsigned(k / m + (j < k % m ? 1 : 0));
}

// The two layouts of one node family: the roomy one with 32-bit offsets,
// usable where `fits` says so, and the wide one.
struct Family {
  Kind narrow, wide;
  bool (*fits)(const Item*, size_t, uint64_t);
};

void plan_family(const Item* items, size_t k, const Family& f, uint64_t min, ChunkPlan& plan) {
  const unsigned ncap = capacity(f.narrow), wcap = capacity(f.wide);
  // Plan A: narrow nodes of an even share each; a share that does not fit
  // that layout (it spans 4 GiB or more) becomes wide nodes of an even share
  // of it, so one wide spot costs one extra node.
  size_t m = (k + ncap - 1) / ncap;
  size_t pos = 0;
  uint64_t chunk_min = min;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    if (f.fits(items + pos, cnt, chunk_min)) {
      plan.push_back(Chunk{cnt, f.narrow});
    } else {
      const size_t parts = (cnt + wcap - 1) / wcap;
      for (size_t p = 0; p < parts; ++p) plan.push_back(Chunk{even_share(cnt, parts, p), f.wide});
    }
    pos += cnt;
    chunk_min = items[pos - 1].last + 1;
  }
  // Plan B, when wide spots are common (indices spread over the whole 64-bit
  // space, or the levels near the root): even shares of the wide capacity,
  // each narrow where it fits.
  m = (k + wcap - 1) / wcap;
  if (plan.size() <= m) return;
  plan.clear();
  pos = 0;
  chunk_min = min;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    plan.push_back(Chunk{cnt, f.fits(items + pos, cnt, chunk_min) ? f.narrow : f.wide});
    pos += cnt;
    chunk_min = items[pos - 1].last + 1;
  }
}

}  // namespace

void plan_level(const Item* items, size_t k, bool leaf_level, Kind ikind, uint64_t min, ChunkPlan& plan) {
  plan.clear();
  if (leaf_level) return plan_family(items, k, Family{Kind::kLeaf32, Kind::kLeaf64, fits_leaf32}, min, plan);
  if (is_alloc(ikind)) return plan_family(items, k, Family{Kind::kAlloc32, Kind::kAlloc64, fits_alloc32}, min, plan);
  const size_t m = (k + capacity(ikind) - 1) / capacity(ikind);
  for (size_t j = 0; j < m; ++j) plan.push_back(Chunk{even_share(k, m, j), ikind});
}

}  // namespace rcuvm::detail
