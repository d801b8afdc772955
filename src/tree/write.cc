// Writes: store, insert, erase.
//
// Every write follows the same three phases (STYLE.md rule 6):
//
//   prepare  walk to the leaves holding the two ends of the stored range, and
//            build the replacement bottom-up, off to the side, level by level:
//            at each level the run of old nodes from the left path to the right
//            path is replaced by freshly packed nodes. Allocation happens only
//            here; on failure every fresh node is freed and the tree is as it
//            was (ENOMEM).
//   commit   one release store publishes the result: into the slot of the
//            first ancestor whose bounds did not change, or as the new root.
//            Nothing past this point can fail.
//   retire   replaced nodes are marked dead and freed after a grace period.
//
// Example, storing [40, 70] -> X over a leaf boundary (leaves shown with their
// ranges; the parent P's pivots change, so P is rebuilt too):
//
//          P [0..29 | 30..59 | 60..99]           P' [0..29 | 30..99]
//          /          |          \        =>     /          |
//   [0-9 A|10-29 _] [30-49 B|50-59 _] [60-99 C]   [..]  [30-39 B|40-70 X|71-99 C]
//
// The left and right leaves are merged with the new entry into one list of
// items, which is packed into as many leaves as it needs; everything strictly
// between the two paths is dropped whole. A fresh node that ends up below
// half full borrows from (merges with) its neighbour one level up, and a split
// first tries to spread into a neighbour with room, which keeps leaves fuller.
#include <cerrno>
#include <cstring>

#include "rcuvm/fault_injection.h"
#include "rcuvm/status.h"
#include "sync/rcu_internal.h"
#include "tree/tree_internal.h"

namespace rcuvm::detail {

void walk_path(Node* root, uint64_t height, uint64_t index, Path& path) {
  Node* n = root;
  uint64_t min = 0, max = kMaxIndex;
  for (uint64_t level = height; level-- > 0;) {
    uint64_t m = meta_relaxed(n);
    PathStep& s = path.at[level];
    s.node = n;
    s.min = min;
    s.max = max;
    s.count = meta_count(m);
    s.kind = meta_kind(m);
    s.off = slot_for(n, s.count, index);
    if (level == 0) break;
    uint64_t cmin = slot_min(n, s.off, min);
    uint64_t cmax = slot_max(n, s.off, s.count, max);
    n = reinterpret_cast<Node*>(slots(n, s.kind)[s.off]);
    prefetch_node(n);
    min = cmin;
    max = cmax;
  }
}

void read_items(const Node* n, uint64_t max, ItemList& out) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  for (unsigned i = 0; i < cnt; ++i) {
    out.push_back(Item{slot_max(n, i, cnt, max), slots(n, k)[i],
                       k == Kind::kAlloc ? load_gap(n, i) : 0});
  }
}

uint64_t node_max_gap(const Node* n, uint64_t min, uint64_t max) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  uint64_t best = 0;
  if (k == Kind::kLeaf) {
    for (unsigned i = 0; i < cnt; ++i) {
      if (slots(n, k)[i] == 0) {
        uint64_t g = range_size(slot_min(n, i, min), slot_max(n, i, cnt, max));
        if (g > best) best = g;
      }
    }
  } else if (k == Kind::kAlloc) {
    for (unsigned i = 0; i < cnt; ++i) best = std::max(best, load_gap(n, i));
  }
  return best;
}

namespace {

// The state of one write: fresh nodes (to free on failure), old nodes to
// retire one by one, old subtrees to retire whole, and counter deltas.
struct WriteState {
  RawTree& tree;
  const TreeOptions& opts;
  Kind ikind;
  absl::InlinedVector<Node*, 16> fresh;
  absl::InlinedVector<Node*, 16> replaced;
  absl::InlinedVector<Node*, 8> dropped;
  int64_t d_entries = 0;
  int64_t d_nulls = 0;

  explicit WriteState(RawTree& t)
      : tree(t), opts(TreeAccess::options(t)), ikind(internal_kind(TreeAccess::options(t))) {}

  Kind kind_at(unsigned level) const { return level == 0 ? Kind::kLeaf : ikind; }

  // A node from the tree's reserve, else from the allocator; null on failure.
  Node* alloc_raw() {
    Node*& reserve = TreeAccess::reserve(tree);
    if (!reserve) return node_alloc();
    Node* n = reserve;
    reserve = reinterpret_cast<Node*>(n->words[0]);
    --TreeAccess::reserve_count(tree);
    return n;
  }
  // A node that will belong to the tree (freed again if the write fails).
  Node* alloc() {
    Node* n = alloc_raw();
    if (n) fresh.push_back(n);
    return n;
  }
  bool is_fresh(const Node* n) const {
    for (const Node* f : fresh)
      if (f == n) return true;
    return false;
  }
  // Frees a fresh node that will not be published.
  void discard(Node* n) {
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (fresh[i] == n) {
        fresh.erase(fresh.begin() + i);
        break;
      }
    }
    node_free(n);
  }
  // Gives up: frees every fresh node; the tree was never touched.
  absl::Status fail_nomem() {
    for (Node* n : fresh) node_free(n);
    fresh.clear();
    return errno_error(ENOMEM, "range tree node allocation failed");
  }
  // Consumes an old or fresh node whose content moved elsewhere.
  void consume(Node* n) {
    if (is_fresh(n))
      discard(n);
    else
      replaced.push_back(n);
  }
};

// Packs items[0..k) (the slots of one level, first slot starting at `min`)
// into ceil(k/capacity) evenly filled nodes of `kind`; appends one item per
// node to `out`. Returns false when an allocation fails.
bool pack(WriteState& ws, const Item* items, size_t k, Kind kind, uint64_t min, ItemList& out) {
  const unsigned cap = capacity(kind);
  const size_t m = (k + cap - 1) / cap;
  const size_t base = k / m, extra = k % m;
  size_t pos = 0;
  for (size_t j = 0; j < m; ++j) {
    unsigned cnt = unsigned(base + (j < extra ? 1 : 0));
    Node* n = ws.alloc();
    if (!n) return false;
    n->meta = make_meta(cnt, kind);
    uint64_t* piv = pivots(n);
    uint64_t* sl = slots(n, kind);
    uint64_t gap = 0;
    uint64_t first = min;
    for (unsigned t = 0; t < cnt; ++t) {
      const Item& it = items[pos + t];
      if (t + 1 < cnt) piv[t] = it.last;
      sl[t] = it.ptr;
      if (kind == Kind::kLeaf) {
        if (it.ptr == 0) gap = std::max(gap, range_size(first, it.last));
      } else if (kind == Kind::kAlloc) {
        gaps(n)[t] = it.gap;
        gap = std::max(gap, it.gap);
      }
      first = it.last + 1;
    }
    pad_pivots(n, cnt, kind);
    const uint64_t last = items[pos + cnt - 1].last;
    out.push_back(Item{last, reinterpret_cast<uint64_t>(n), ws.opts.track_gaps ? gap : 0});
    pos += cnt;
    min = last + 1;
  }
  return true;
}

bool pack(WriteState& ws, const ItemList& items, Kind kind, uint64_t min, ItemList& out) {
  return pack(ws, items.data(), items.size(), kind, min, out);
}

Node* as_node(uint64_t p) { return reinterpret_cast<Node*>(p); }

bool fix_underfull(WriteState& ws, ItemList& items, unsigned level, uint64_t list_min);

// Replaces the children items[a..b] (nodes at level-1 of a list at `level`)
// by their contents repacked into the fewest nodes.
bool merge_children(WriteState& ws, ItemList& items, size_t a, size_t b, unsigned level,
                    uint64_t list_min) {
  const unsigned child_level = level - 1;
  const uint64_t run_min = a == 0 ? list_min : items[a - 1].last + 1;
  ItemList content;
  for (size_t i = a; i <= b; ++i) read_items(as_node(items[i].ptr), items[i].last, content);
  if (child_level >= 1 && !fix_underfull(ws, content, child_level, run_min)) return false;
  ItemList packed;
  if (!pack(ws, content, ws.kind_at(child_level), run_min, packed)) return false;
  for (size_t i = a; i <= b; ++i) ws.consume(as_node(items[i].ptr));
  items.erase(items.begin() + a, items.begin() + b + 1);
  items.insert(items.begin() + a, packed.begin(), packed.end());
  return true;
}

// Merges every fresh child below half full with a neighbour in the same list.
// A child with no neighbour stays: its parent is then underfull too, and is
// fixed one level up, where merging the parents makes the child a neighbour.
bool fix_underfull(WriteState& ws, ItemList& items, unsigned level, uint64_t list_min) {
  for (size_t i = 0; i < items.size() && items.size() > 1; ++i) {
    Node* c = as_node(items[i].ptr);
    if (!ws.is_fresh(c)) continue;
    uint64_t m = meta_relaxed(c);
    if (meta_count(m) >= min_fill(meta_kind(m))) continue;
    size_t a = i > 0 ? i - 1 : i;
    if (!merge_children(ws, items, a, a + 1, level, list_min)) return false;
    i = a > 0 ? a - 1 : size_t(-1);  // rescan around the merged run
  }
  return true;
}

// When a split produced the fresh run items[a..a+m), tries to spread it over an
// old neighbour with room instead, so the level keeps the same node count.
bool spread_split(WriteState& ws, ItemList& items, size_t a, size_t m, unsigned level,
                  uint64_t list_min) {
  if (m < 2) return true;
  const unsigned cap = capacity(ws.kind_at(level - 1));
  size_t total = 0;
  for (size_t i = a; i < a + m; ++i) total += node_count(as_node(items[i].ptr));
  if (a > 0 && total + node_count(as_node(items[a - 1].ptr)) <= m * cap)
    return merge_children(ws, items, a - 1, a + m - 1, level, list_min);
  if (a + m < items.size() && total + node_count(as_node(items[a + m].ptr)) <= m * cap)
    return merge_children(ws, items, a, a + m, level, list_min);
  return true;
}

// Counts what a dropped subtree holds, for the tree's counters.
void count_subtree(const Node* n, uint64_t& nodes, uint64_t& leaves, uint64_t& entries,
                   uint64_t& nulls) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  ++nodes;
  if (k == Kind::kLeaf) {
    ++leaves;
    for (unsigned i = 0; i < cnt; ++i) (slots(n, k)[i] ? entries : nulls)++;
    return;
  }
  for (unsigned i = 0; i < cnt; ++i) count_subtree(as_node(slots(n, k)[i]), nodes, leaves, entries, nulls);
}

// Prepares the retire batches (may fail), so that commit cannot. They come
// from the tree's reserve first, like the nodes.
bool prepare_retire(WriteState& ws, RetireBatch*& batch) {
  batch = nullptr;
  const size_t need = ws.replaced.size() + ws.dropped.size();
  if (need == 0 || !ws.opts.rcu) return true;
  for (size_t i = RetireBatch::nodes_for(need); i-- > 0;) {
    Node* mem = ws.alloc_raw();
    if (!mem) {
      if (batch) batch->free_now();  // empty batches: frees only their nodes
      batch = nullptr;
      return false;
    }
    RetireBatch* b = RetireBatch::in_node(mem);
    if (batch)
      batch->chain(b);
    else
      batch = b;
  }
  return true;
}

// Commit, after publication: retire the old nodes, update the counters.
void retire_and_count(WriteState& ws, RetireBatch* batch) {
  RawTree& t = ws.tree;
  if (!ws.replaced.empty() || !ws.dropped.empty()) TreeAccess::bump_generation(t);
  for (Node* n : ws.fresh) {
    ++TreeAccess::nodes(t);
    if (node_kind(n) == Kind::kLeaf) ++TreeAccess::leaves(t);
  }
  for (Node* n : ws.replaced) {
    --TreeAccess::nodes(t);
    if (node_kind(n) == Kind::kLeaf) --TreeAccess::leaves(t);
    mark_dead(n);
    if (batch)
      batch->add(n, false);
    else
      node_free(n);
  }
  for (Node* n : ws.dropped) {
    uint64_t nodes = 0, leaves = 0, entries = 0, nulls = 0;
    count_subtree(n, nodes, leaves, entries, nulls);
    TreeAccess::nodes(t) -= nodes;
    TreeAccess::leaves(t) -= leaves;
    ws.d_entries -= int64_t(entries);
    ws.d_nulls -= int64_t(nulls);
    mark_dead(n);
    if (batch)
      batch->add(n, true);
    else
      free_subtree(n);
  }
  TreeAccess::entries(t) += ws.d_entries;
  TreeAccess::nulls(t) += ws.d_nulls;
  ws.fresh.clear();
  if (batch) rcu::retire(batch);
}

// Publishes `top` (the fresh nodes replacing the root, at `level`) as the new
// root: adds levels while there is more than one node, removes single-child
// roots, and an all-null leaf becomes the empty tree.
absl::Status publish_root(WriteState& ws, ItemList top, unsigned level) {
  while (top.size() > 1) {
    ItemList up;
    if (!fix_underfull(ws, top, level + 1, 0)) return ws.fail_nomem();
    if (top.size() == 1) break;
    if (!pack(ws, top, ws.ikind, 0, up)) return ws.fail_nomem();
    top = std::move(up);
    ++level;
  }
  Node* root = as_node(top[0].ptr);
  uint64_t height = level + 1;
  // Single-child internal roots collapse; an old child simply becomes the root.
  while (node_kind(root) != Kind::kLeaf && node_count(root) == 1) {
    Node* child = as_node(slots(root, node_kind(root))[0]);
    ws.consume(root);
    root = child;
    --height;
  }
  if (node_kind(root) == Kind::kLeaf && node_count(root) == 1 && slots(root, Kind::kLeaf)[0] == 0) {
    ws.consume(root);
    ws.d_nulls -= 1;  // the lone null range is no longer stored
    root = nullptr;
    height = 0;
  }
  RetireBatch* batch;
  if (!prepare_retire(ws, batch)) return ws.fail_nomem();
  // Commit: nothing below can fail.
  TreeAccess::root(ws.tree).store(root, std::memory_order_release);  // (W1)
  TreeAccess::height(ws.tree) = height;
  retire_and_count(ws, batch);
  return absl::OkStatus();
}

// Publishes `fresh` in place of path.at[level].node, whose bounds it keeps,
// with one release store into the parent slot; then refreshes the gaps above.
absl::Status publish_in_parent(WriteState& ws, const Item& fresh, const Path& path, unsigned level,
                               uint64_t height) {
  RetireBatch* batch;
  if (!prepare_retire(ws, batch)) return ws.fail_nomem();
  // Commit: nothing below can fail.
  const PathStep& p = path.at[level + 1];
  publish_slot(p.node, p.kind, p.off, fresh.ptr);  // (W2)
  if (ws.opts.track_gaps) {
    uint64_t g = fresh.gap;
    for (unsigned l = level + 1; l < height; ++l) {
      const PathStep& s = path.at[l];
      if (load_gap(s.node, s.off) == g) break;
      store_gap(s.node, s.off, g);
      g = node_max_gap(s.node, s.min, s.max);
    }
  }
  retire_and_count(ws, batch);
  return absl::OkStatus();
}

// Appends the slots [from, to) of a path node as items.
void append_slots(const PathStep& s, unsigned from, unsigned to, ItemList& out) {
  Kind k = s.kind;
  for (unsigned i = from; i < to; ++i)
    out.push_back(Item{slot_max(s.node, i, s.count, s.max), slots(s.node, k)[i],
                       k == Kind::kAlloc ? load_gap(s.node, i) : 0});
}

// Builds the leaf-level items replacing leaves L..R with [lo, hi] -> value.
void leaf_items(const PathStep& L, const PathStep& R, uint64_t lo, uint64_t hi, uint64_t value,
                WriteState& ws, ItemList& out) {
  append_slots(L, 0, L.off, out);
  const uint64_t* lsl = slots(L.node, Kind::kLeaf);
  const uint64_t* rsl = slots(R.node, Kind::kLeaf);
  if (slot_min(L.node, L.off, L.min) < lo) out.push_back(Item{lo - 1, lsl[L.off], 0});
  out.push_back(Item{hi, value, 0});
  const uint64_t r_last = slot_max(R.node, R.off, R.count, R.max);
  if (r_last > hi) out.push_back(Item{r_last, rsl[R.off], 0});
  append_slots(R, R.off + 1, R.count, out);
  // Counter deltas: the old leaves' entries go, the new items come.
  auto tally = [&](const PathStep& s, int sign) {
    for (unsigned i = 0; i < s.count; ++i) {
      if (slots(s.node, Kind::kLeaf)[i])
        ws.d_entries += sign;
      else
        ws.d_nulls += sign;
    }
  };
  tally(L, -1);
  if (R.node != L.node) tally(R, -1);
  for (const Item& it : out) (it.ptr ? ws.d_entries : ws.d_nulls)++;
}

// Returns the bounds and value of the entry holding `index` (writer context).
RawEntry entry_at(Node* root, uint64_t height, uint64_t index) {
  if (!root) return RawEntry{0, kMaxIndex, nullptr};
  Path path;
  walk_path(root, height, index, path);
  const PathStep& s = path.at[0];
  return RawEntry{slot_min(s.node, s.off, s.min), slot_max(s.node, s.off, s.count, s.max),
                  reinterpret_cast<void*>(slots(s.node, Kind::kLeaf)[s.off])};
}

// Returns the entry in slot `off` of a leaf on a path.
RawEntry entry_in_leaf(const PathStep& s, unsigned off) {
  return RawEntry{slot_min(s.node, off, s.min), slot_max(s.node, off, s.count, s.max),
                  reinterpret_cast<void*>(slots(s.node, Kind::kLeaf)[off])};
}

// When `index` lies in the leaf of `from`, copies that path into `to` with the
// leaf offset of `index` and returns true; otherwise a new walk is needed.
bool leaf_path_for(const Path& from, uint64_t height, uint64_t index, Path& to) {
  const PathStep& leaf = from.at[0];
  if (index < leaf.min || index > leaf.max) return false;
  for (uint64_t l = 0; l < height; ++l) to.at[l] = from.at[l];
  to.at[0].off = slot_for(leaf.node, leaf.count, index);
  return true;
}

}  // namespace

absl::Status RawTree::store_locked(uint64_t first, uint64_t last, void* value) {
  assert_writer_held();
  if (first > last) return errno_error(EINVAL, "store: first > last");
  WriteState ws(*this);
  const uint64_t v = reinterpret_cast<uint64_t>(value);
  Node* root = root_.load(std::memory_order_relaxed);

  if (!root) {
    if (!v) return absl::OkStatus();
    ItemList items;
    if (first > 0) items.push_back(Item{first - 1, 0, 0});
    items.push_back(Item{last, v, 0});
    if (last < kMaxIndex) items.push_back(Item{kMaxIndex, 0, 0});
    for (const Item& it : items) (it.ptr ? ws.d_entries : ws.d_nulls)++;
    ItemList top;
    if (!pack(ws, items, Kind::kLeaf, 0, top)) return ws.fail_nomem();
    return publish_root(ws, std::move(top), 0);
  }

  uint64_t lo = first, hi = last;
  Path lpath, rpath;
  walk_path(root, height_, lo, lpath);
  RawEntry at_lo = entry_in_leaf(lpath.at[0], lpath.at[0].off);
  if (at_lo.first == lo && at_lo.last == hi) {
    // Same bounds: a value swap is one atomic store, and null over null is a no-op.
    if (at_lo.value && v) {
      publish_slot(lpath.at[0].node, Kind::kLeaf, lpath.at[0].off, v);  // (W2)
      return absl::OkStatus();
    }
    if (!at_lo.value && !v) return absl::OkStatus();
  }
  if (!v) {
    // Null stores absorb the null ranges they touch, so nulls never sit side by
    // side. The entry at lo is in lpath's leaf, so only a null range that ends
    // just before lo in the previous leaf needs another walk.
    if (!at_lo.value) {
      lo = at_lo.first;
    } else if (lo == at_lo.first && lo > 0) {
      PathStep& L = lpath.at[0];
      if (L.off > 0) {
        RawEntry before = entry_in_leaf(L, L.off - 1);
        if (!before.value) lo = before.first, --L.off;
      } else {
        RawEntry before = entry_at(root, height_, lo - 1);
        if (!before.value) lo = before.first, walk_path(root, height_, lo, lpath);
      }
    }
  }
  if (!leaf_path_for(lpath, height_, hi, rpath)) walk_path(root, height_, hi, rpath);
  if (!v) {
    RawEntry at_hi = entry_in_leaf(rpath.at[0], rpath.at[0].off);
    if (!at_hi.value) {
      hi = at_hi.last;
    } else if (hi == at_hi.last && hi < kMaxIndex) {
      PathStep& R = rpath.at[0];
      if (R.off + 1 < R.count) {
        RawEntry after = entry_in_leaf(R, R.off + 1);
        if (!after.value) hi = after.last, ++R.off;
      } else {
        RawEntry after = entry_at(root, height_, hi + 1);
        if (!after.value) hi = after.last, walk_path(root, height_, hi, rpath);
      }
    }
  }

  const unsigned top_level = unsigned(height_ - 1);

  ItemList items;
  leaf_items(lpath.at[0], rpath.at[0], lo, hi, v, ws, items);
  uint64_t items_min = lpath.at[0].min;

  for (unsigned level = 0;; ++level) {
    const PathStep& L = lpath.at[level];
    const PathStep& R = rpath.at[level];
    const Kind kind = ws.kind_at(level);
    if (level >= 1 && !fix_underfull(ws, items, level, items_min)) return ws.fail_nomem();
    ItemList packed;
    if (!pack(ws, items, kind, items_min, packed)) return ws.fail_nomem();
    ws.replaced.push_back(L.node);
    if (R.node != L.node) ws.replaced.push_back(R.node);

    if (level == top_level) return publish_root(ws, std::move(packed), level);
    if (L.node == R.node && packed.size() == 1 &&
        node_count(as_node(packed[0].ptr)) >= min_fill(kind)) {
      return publish_in_parent(ws, packed[0], lpath, level, height_);
    }

    // The parents' slots around the replaced run, with the run in between.
    const PathStep& PL = lpath.at[level + 1];
    const PathStep& PR = rpath.at[level + 1];
    ItemList next;
    append_slots(PL, 0, PL.off, next);
    const size_t run_at = next.size();
    next.insert(next.end(), packed.begin(), packed.end());
    append_slots(PR, PR.off + 1, PR.count, next);
    if (PL.node == PR.node) {
      for (unsigned i = PL.off + 1; i < PR.off; ++i) ws.dropped.push_back(as_node(slots(PL.node, PL.kind)[i]));
    } else {
      for (unsigned i = PL.off + 1; i < PL.count; ++i) ws.dropped.push_back(as_node(slots(PL.node, PL.kind)[i]));
      for (unsigned i = 0; i < PR.off; ++i) ws.dropped.push_back(as_node(slots(PR.node, PR.kind)[i]));
    }
    if (!spread_split(ws, next, run_at, packed.size(), level + 1, PL.min)) return ws.fail_nomem();
    items = std::move(next);
    items_min = PL.min;
  }
}

absl::Status RawTree::insert_locked(uint64_t first, uint64_t last, void* value) {
  assert_writer_held();
  if (first > last) return errno_error(EINVAL, "insert: first > last");
  if (!value) return errno_error(EINVAL, "insert: null value");
  if (find(first, last)) return errno_error(EEXIST, "insert: range not empty");
  return store_locked(first, last, value);
}

absl::StatusOr<void*> RawTree::erase_locked(uint64_t index) {
  assert_writer_held();
  RawEntry e = entry_at(root_.load(std::memory_order_relaxed), height_, index);
  if (!e.value) return nullptr;
  absl::Status s = store_locked(e.first, e.last, nullptr);
  if (!s.ok()) return s;
  return e.value;
}

}  // namespace rcuvm::detail
