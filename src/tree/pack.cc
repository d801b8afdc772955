// Packing a level's items into nodes: how many nodes, which leaf layout, and
// writing one node's slots, pivots and gaps. Shared by writes (write.cc) and
// bulk building (bulk_dup.cc).
#include "tree/tree_internal.h"

namespace rcuvm::detail {

bool fits_leaf32(const Item* items, size_t cnt, uint64_t min) {
  // The largest stored pivot is the end of the second-to-last slot; the last
  // slot ends at the node's max, which is not stored.
  return cnt <= kLeaf32Slots && (cnt < 2 || items[cnt - 2].last - min <= kMaxOffset);
}

uint64_t fill_node(Node* n, const Item* items, unsigned cnt, Kind kind, uint64_t min) {
  n->meta = make_meta(cnt, kind);
  uint64_t* sl = slots(n, kind);
  uint64_t gap = 0;
  uint64_t first = min;
  for (unsigned t = 0; t < cnt; ++t) {
    const Item& it = items[t];
    if (t + 1 < cnt) {
      if (kind == Kind::kLeaf32)
        offsets(n)[t] = uint32_t(it.last - min);
      else
        pivots(n)[t] = it.last;
    }
    sl[t] = it.ptr;
    if (is_leaf(kind)) {
      if (it.ptr == 0) gap = std::max(gap, range_size(first, it.last));
    } else if (kind == Kind::kAlloc) {
      gaps(n)[t] = it.gap;
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

}  // namespace

void plan_level(const Item* items, size_t k, bool leaf_level, Kind ikind, uint64_t min, ChunkPlan& plan) {
  plan.clear();
  if (!leaf_level) {
    const size_t m = (k + capacity(ikind) - 1) / capacity(ikind);
    for (size_t j = 0; j < m; ++j) plan.push_back(Chunk{even_share(k, m, j), ikind});
    return;
  }
  // Plan A: Leaf32 nodes of an even share each; a share that does not fit
  // that layout (it spans a hole of 4 GiB or more) becomes Leaf64 nodes of an
  // even share of it, so one wide spot costs one extra leaf.
  size_t m = (k + kLeaf32Slots - 1) / kLeaf32Slots;
  size_t pos = 0;
  uint64_t chunk_min = min;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    if (fits_leaf32(items + pos, cnt, chunk_min)) {
      plan.push_back(Chunk{cnt, Kind::kLeaf32});
    } else {
      const size_t parts = (cnt + kLeaf64Slots - 1) / kLeaf64Slots;
      for (size_t p = 0; p < parts; ++p) plan.push_back(Chunk{even_share(cnt, parts, p), Kind::kLeaf64});
    }
    pos += cnt;
    chunk_min = items[pos - 1].last + 1;
  }
  // Plan B, when wide spots are common (indices spread over the whole 64-bit
  // space): an even share of at most 16 slots each, Leaf32 where it fits.
  m = (k + kLeaf64Slots - 1) / kLeaf64Slots;
  if (plan.size() <= m) return;
  plan.clear();
  pos = 0;
  chunk_min = min;
  for (size_t j = 0; j < m; ++j) {
    const unsigned cnt = even_share(k, m, j);
    plan.push_back(Chunk{cnt, fits_leaf32(items + pos, cnt, chunk_min) ? Kind::kLeaf32 : Kind::kLeaf64});
    pos += cnt;
    chunk_min = items[pos - 1].last + 1;
  }
}

}  // namespace rcuvm::detail
