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
// half full borrows from (merges with) its neighbour one level up, and items
// that overflow one node first spread into the run's neighbours (or split two
// or three nodes into one more), which keeps nodes fuller. A store that stays
// inside one leaf, the common case, writes its fresh leaf directly.
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
    s.off = slot_for_kind(n, s.kind, index, min);  // fixed trip count, no branch on the count
    if (level == 0) break;
    uint64_t cmin = slot_min(n, s.kind, s.off, min);
    uint64_t cmax = slot_max(n, s.kind, s.off, s.count, min, max);
    n = reinterpret_cast<Node*>(slots(n, s.kind)[s.off]);
    prefetch_node(n);
    min = cmin;
    max = cmax;
  }
}

namespace {

// Appends slots [from, to) of `n` (kind k, count cnt, spanning [min, max]) to
// `out` as items, written in place: building each Item on the stack and
// copying it stalled on store forwarding, a tenth of a random insert's time.
template <Kind K>
void append_items_of(const Node* n, unsigned cnt, uint64_t min, uint64_t max, unsigned from, unsigned to,
                     Item* dst) {
  const uint64_t* sl = slots(n, K);
  for (unsigned i = from; i < to; ++i, ++dst) {
    dst->last = i + 1 == cnt ? max : pivot_at(n, K, i, min);
    dst->ptr = sl[i];
    dst->gap = is_alloc(K) ? load_gap(n, K, i) : 0;
  }
}

void append_items(const Node* n, Kind k, unsigned cnt, uint64_t min, uint64_t max, unsigned from, unsigned to,
                  ItemList& out) {
  if (from >= to) return;
  const size_t base = out.size();
  out.resize(base + (to - from));
  Item* dst = out.data() + base;
  switch (k) {
    case Kind::kLeaf32: return append_items_of<Kind::kLeaf32>(n, cnt, min, max, from, to, dst);
    case Kind::kLeaf64: return append_items_of<Kind::kLeaf64>(n, cnt, min, max, from, to, dst);
    case Kind::kAlloc32: return append_items_of<Kind::kAlloc32>(n, cnt, min, max, from, to, dst);
    case Kind::kAlloc64: return append_items_of<Kind::kAlloc64>(n, cnt, min, max, from, to, dst);
    default: return append_items_of<Kind::kRange>(n, cnt, min, max, from, to, dst);
  }
}

}  // namespace

void read_items(const Node* n, uint64_t min, uint64_t max, ItemList& out) {
  const uint64_t m = meta_relaxed(n);
  const unsigned cnt = meta_count(m);
  append_items(n, meta_kind(m), cnt, min, max, 0, cnt, out);
}

uint64_t node_max_gap(const Node* n, uint64_t min, uint64_t max) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  uint64_t best = 0;
  if (is_leaf(k)) {
    const uint64_t* sl = slots(n, k);
    uint64_t first = min;
    for (unsigned i = 0; i < cnt; ++i) {
      const uint64_t last = i + 1 == cnt ? max : pivot_at(n, k, i, min);
      if (sl[i] == 0) best = std::max(best, range_size(first, last));
      first = last + 1;
    }
  } else if (k == Kind::kAlloc32) {
    const OffsetWord* g = gaps32(n);
    uint32_t b = 0;
    for (unsigned i = 0; i < cnt; ++i) b = std::max<uint32_t>(b, __atomic_load_n(&g[i], __ATOMIC_RELAXED));
    best = b;
  } else if (k == Kind::kAlloc64) {
    const uint64_t* g = gaps64(n);
    for (unsigned i = 0; i < cnt; ++i) best = std::max(best, __atomic_load_n(&g[i], __ATOMIC_RELAXED));
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
  // Whether a fresh node below its minimum fill was packed: until then
  // fix_underfull() has nothing to look for.
  bool packed_underfull = false;

  explicit WriteState(RawTree& t)
      : tree(t), opts(TreeAccess::options(t)), ikind(internal_kind(TreeAccess::options(t))) {}

  // The kind a level's nodes are planned with: at the leaf level the roomier
  // layout (pack() picks each leaf's own).
  Kind kind_at(unsigned level) const { return level == 0 ? Kind::kLeaf32 : ikind; }

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
// into the fewest evenly filled nodes (plan_level(), or `planned` when the
// caller already has that plan), of `kind` or, at the leaf level (`kind` a
// leaf kind), of the layout each leaf fits; appends one item per node to
// `out`. Returns false when an allocation fails.
bool pack(WriteState& ws, const Item* items, size_t k, Kind kind, uint64_t min, ItemList& out,
          const ChunkPlan* planned = nullptr) {
  ChunkPlan own;
  if (!planned) plan_level(items, k, is_leaf(kind), kind, min, own);
  const ChunkPlan& plan = planned ? *planned : own;
  size_t pos = 0;
  for (const Chunk& c : plan) {
    Node* n = ws.alloc();
    if (!n) return false;
    if (c.count < min_fill(c.kind)) ws.packed_underfull = true;
    const uint64_t gap = fill_node(n, items + pos, c.count, c.kind, min);
    const uint64_t last = items[pos + c.count - 1].last;
    out.push_back(Item{last, reinterpret_cast<uint64_t>(n), ws.opts.track_gaps ? gap : 0});
    pos += c.count;
    min = last + 1;
  }
  return true;
}

bool pack(WriteState& ws, const ItemList& items, Kind kind, uint64_t min, ItemList& out,
          const ChunkPlan* planned = nullptr) {
  return pack(ws, items.data(), items.size(), kind, min, out, planned);
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
  for (size_t i = a; i <= b; ++i)
    read_items(as_node(items[i].ptr), i == 0 ? list_min : items[i - 1].last + 1, items[i].last, content);
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
  if (!ws.packed_underfull) return true;
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

// The slots each leaf keeps free when a leaf's overflow spreads into a neighbour.
inline constexpr unsigned kLeafSpreadSlack = 2;

// Before a level's items that overflow one node are packed: spreads them over
// an old neighbour of the replaced run (in the parents PL / PR) when the two
// still make as many nodes as the items alone (by plan_level(), which knows
// the layouts: an edge node spanning to UINT64_MAX holds 10 children, not 15),
// so that the level keeps its node count. At the leaf level the neighbour
// must have room to spare: each of the nodes must keep kLeafSpreadSlack slots
// free, or the next insert there overflows again at once (spreading into
// nearly full neighbours, and taking in both of them, kept leaves 86% full
// instead of 79% but cost random insertion about 15% of its time).
// Above the leaves, a run that needs two nodes and finds no single neighbour
// with room takes in both neighbours (B*-tree style: three full nodes become
// four, or stay three when the content fits), so that fresh internal nodes
// start three quarters full instead of half; leaves split evenly instead. The
// neighbours' slots join `items` (`items_min` moves to the left one's first
// index); they are retired with the replaced nodes, and take_left /
// take_right tell the caller to leave them out of the parent's slots. Reads
// only; nothing here can fail. The merged list is built in `spare`; the
// return value says whether it replaces `items` (the caller swaps the two).
// `plan` ends as the plan of the list the level will be packed from, when
// `planned` says so.
bool spread_into_neighbour(WriteState& ws, const PathStep& PL, const PathStep& PR, Kind kind,
                           const ItemList& items, ItemList& spare, uint64_t& items_min, unsigned& take_left,
                           unsigned& take_right, ChunkPlan& plan, bool& planned) {
  const bool leaf_level = is_leaf(kind);
  const size_t k = items.size();
  plan_level(items.data(), k, leaf_level, ws.ikind, items_min, plan);
  planned = true;
  const size_t m = plan.size();
  if (m < 2) return false;
  Node* left = PL.off > 0 ? as_node(slots(PL.node, PL.kind)[PL.off - 1]) : nullptr;
  Node* right = PR.off + 1 < PR.count ? as_node(slots(PR.node, PR.kind)[PR.off + 1]) : nullptr;
  const uint64_t left_min = left ? slot_min(PL.node, PL.kind, PL.off - 1, PL.min) : 0;
  // At most this many items spread over m nodes (`kind`: the family's
  // roomier layout), less the slack leaves keep: a neighbour with more is not
  // even read.
  const size_t most = m * (capacity(kind) - (leaf_level ? kLeafSpreadSlack : 0));
  // Whether `cand` (the run with a neighbour's slots, from `cand_min`) still
  // fits in m nodes; its plan is then in `cplan`.
  ChunkPlan cplan;
  auto fits_in_m = [&](const ItemList& cand, uint64_t cand_min) {
    plan_level(cand.data(), cand.size(), leaf_level, ws.ikind, cand_min, cplan);
    return cplan.size() <= m;
  };
  auto read_right = [&](ItemList& out) {
    read_items(right, slot_min(PR.node, PR.kind, PR.off + 1, PR.min),
               slot_max(PR.node, PR.kind, PR.off + 1, PR.count, PR.min, PR.max), out);
  };
  ItemList& cand = spare;
  cand.clear();
  bool use_left = false, use_right = false;
  if (left && k + node_count(left) <= most) {
    read_items(left, left_min, items_min - 1, cand);
    cand.insert(cand.end(), items.begin(), items.end());
    use_left = fits_in_m(cand, left_min);
  }
  if (!use_left && right && k + node_count(right) <= most) {
    cand.clear();
    cand.insert(cand.end(), items.begin(), items.end());
    read_right(cand);
    use_right = fits_in_m(cand, items_min);
  }
  if (use_left || use_right) {
    plan.swap(cplan);
  } else if (m == 2 && left && right && !leaf_level) {
    // Neither neighbour alone has room: take in both (three nodes then share
    // what fits in three, else four). Not with one neighbour only: at the
    // edge where ascending (or descending) stores grow the tree, two full
    // nodes becoming three would leave every node behind the edge two thirds
    // full; plan_level() fills the nodes behind an edge instead.
    cand.clear();
    read_items(left, left_min, items_min - 1, cand);
    cand.insert(cand.end(), items.begin(), items.end());
    read_right(cand);
    use_left = use_right = true;
    planned = false;
  }
  if (!use_left && !use_right) return false;
  if (use_left) {
    items_min = left_min;
    ws.replaced.push_back(left);
    take_left = 1;
  }
  if (use_right) {
    ws.replaced.push_back(right);
    take_right = 1;
  }
  return true;
}

// Counts what a dropped subtree holds, for the tree's counters.
void count_subtree(const Node* n, uint64_t& nodes, uint64_t& leaves, uint64_t& entries,
                   uint64_t& nulls) {
  uint64_t m = meta_relaxed(n);
  unsigned cnt = meta_count(m);
  Kind k = meta_kind(m);
  ++nodes;
  if (is_leaf(k)) {
    ++leaves;
    for (unsigned i = 0; i < cnt; ++i) (slots(n, k)[i] ? entries : nulls)++;
    return;
  }
  for (unsigned i = 0; i < cnt; ++i) count_subtree(as_node(slots(n, k)[i]), nodes, leaves, entries, nulls);
}

// Prepares room in the tree's pending retire chain for what this write
// retires (may fail), so that commit cannot: new batches come from the tree's
// reserve first, like the nodes, and are appended to the chain at commit.
bool prepare_retire(WriteState& ws, RetireBatch*& batch) {
  batch = nullptr;
  const size_t need = ws.replaced.size() + ws.dropped.size();
  if (need == 0 || !ws.opts.rcu) return true;
  Node* pending = TreeAccess::pending_retire(ws.tree);
  const size_t room = pending ? reinterpret_cast<RetireBatch*>(pending)->room() : 0;
  if (need <= room) return true;
  for (size_t i = RetireBatch::nodes_for(need - room); i-- > 0;) {
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

// Commit, after publication: retire the old nodes into the pending chain,
// update the counters. The chain goes to rcu::retire() once full, or at once
// when the write dropped whole subtrees (they may be large).
void retire_and_count(WriteState& ws, RetireBatch* batch) {
  RawTree& t = ws.tree;
  Node*& pending_node = TreeAccess::pending_retire(t);
  RetireBatch* pending = reinterpret_cast<RetireBatch*>(pending_node);
  if (batch) {
    if (pending)
      pending->append(batch);
    else
      pending = batch;
  }
  RetireBatch* sink = ws.opts.rcu ? pending : nullptr;
  if (!ws.replaced.empty() || !ws.dropped.empty()) TreeAccess::bump_generation(t);
  for (Node* n : ws.fresh) {
    ++TreeAccess::nodes(t);
    if (is_leaf(node_kind(n))) ++TreeAccess::leaves(t);
  }
  for (Node* n : ws.replaced) {
    --TreeAccess::nodes(t);
    if (is_leaf(node_kind(n))) --TreeAccess::leaves(t);
    mark_dead(n);
    if (sink)
      sink->add(n, false);
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
    if (sink)
      sink->add(n, true);
    else
      free_subtree(n);
  }
  TreeAccess::entries(t) += ws.d_entries;
  TreeAccess::nulls(t) += ws.d_nulls;
  ws.fresh.clear();
  if (pending && (pending->room() == 0 || !ws.dropped.empty())) {
    rcu::retire(pending);
    pending = nullptr;
  }
  pending_node = reinterpret_cast<Node*>(pending);
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
  while (!is_leaf(node_kind(root)) && node_count(root) == 1) {
    Node* child = as_node(slots(root, node_kind(root))[0]);
    ws.consume(root);
    root = child;
    --height;
  }
  if (is_leaf(node_kind(root)) && node_count(root) == 1 && slots(root, node_kind(root))[0] == 0) {
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
    // Up the path while a node's largest gap changes. The parent's record of
    // a node's largest gap (I6) usually settles it without a scan: a gap that
    // grew to or past it is the new largest; a change in a slot below it
    // leaves it as it is.
    uint64_t g = fresh.gap;
    for (unsigned l = level + 1; l < height; ++l) {
      const PathStep& s = path.at[l];
      const uint64_t old = load_gap(s.node, s.kind, s.off);
      if (old == g) break;
      store_gap(s.node, s.kind, s.off, g);
      if (l + 1 == height) break;
      const PathStep& up = path.at[l + 1];
      const uint64_t largest = load_gap(up.node, up.kind, up.off);  // s.node's, before
      if (g >= largest) continue;       // g is s.node's largest now
      if (old < largest) break;         // the largest is another slot's, unchanged
      g = node_max_gap(s.node, s.min, s.max);
    }
  }
  retire_and_count(ws, batch);
  return absl::OkStatus();
}

// Appends the slots [from, to) of a path node as items.
void append_slots(const PathStep& s, unsigned from, unsigned to, ItemList& out) {
  append_items(s.node, s.kind, s.count, s.min, s.max, from, to, out);
}

// Builds the leaf-level items replacing leaves L..R with [lo, hi] -> value.
void leaf_items(const PathStep& L, const PathStep& R, uint64_t lo, uint64_t hi, uint64_t value,
                WriteState& ws, ItemList& out) {
  append_slots(L, 0, L.off, out);
  const size_t mid = out.size();
  const uint64_t* lsl = slots(L.node, L.kind);
  const uint64_t* rsl = slots(R.node, R.kind);
  if (slot_min(L.node, L.kind, L.off, L.min) < lo) out.push_back(Item{lo - 1, lsl[L.off], 0});
  out.push_back(Item{hi, value, 0});
  const uint64_t r_last = slot_max(R.node, R.kind, R.off, R.count, R.min, R.max);
  if (r_last > hi) out.push_back(Item{r_last, rsl[R.off], 0});
  // Counter deltas: the old slots from L.off to R.off go (the leaves between
  // go with their subtrees), the items just pushed come.
  auto drop = [&](const PathStep& s, unsigned from, unsigned to) {
    for (unsigned i = from; i < to; ++i) (slots(s.node, s.kind)[i] ? ws.d_entries : ws.d_nulls)--;
  };
  if (R.node == L.node) {
    drop(L, L.off, R.off + 1);
  } else {
    drop(L, L.off, L.count);
    drop(R, 0, R.off + 1);
  }
  for (size_t i = mid; i < out.size(); ++i) (out[i].ptr ? ws.d_entries : ws.d_nulls)++;
  append_slots(R, R.off + 1, R.count, out);
}

// Returns the bounds and value of the entry holding `index` (writer context).
RawEntry entry_at(Node* root, uint64_t height, uint64_t index) {
  if (!root) return RawEntry{0, kMaxIndex, nullptr};
  Path path;
  walk_path(root, height, index, path);
  const PathStep& s = path.at[0];
  return RawEntry{slot_min(s.node, s.kind, s.off, s.min), slot_max(s.node, s.kind, s.off, s.count, s.min, s.max),
                  reinterpret_cast<void*>(slots(s.node, s.kind)[s.off])};
}

// Returns the entry in slot `off` of a leaf on a path.
RawEntry entry_in_leaf(const PathStep& s, unsigned off) {
  return RawEntry{slot_min(s.node, s.kind, off, s.min), slot_max(s.node, s.kind, off, s.count, s.min, s.max),
                  reinterpret_cast<void*>(slots(s.node, s.kind)[off])};
}

// When `index` lies in the leaf of `from`, copies that path into `to` with the
// leaf offset of `index` and returns true; otherwise a new walk is needed.
bool leaf_path_for(const Path& from, uint64_t height, uint64_t index, Path& to) {
  const PathStep& leaf = from.at[0];
  if (index < leaf.min || index > leaf.max) return false;
  for (uint64_t l = 0; l < height; ++l) to.at[l] = from.at[l];
  to.at[0].off = slot_for(leaf.node, leaf.kind, leaf.count, index, leaf.min);
  return true;
}

// write_leaf_direct() for a Leaf32 that stays a Leaf32 (nearly every store
// into a tree of address-space-like ranges): the slots and offsets before and
// after the stored run are copied as they are, and the leaf's largest gap
// comes from its parent's record when the slots that go did not hold it.
// Returns false when the result would not be a Leaf32 with `cnt` slots.
bool copy_leaf32_with_store(WriteState& ws, Node* n, const PathStep& L, const PathStep& P, unsigned hi_off,
                            uint64_t lo, uint64_t hi, uint64_t v, bool head, bool tail, uint64_t r_last,
                            unsigned cnt, uint64_t& gap) {
  const unsigned lo_off = L.off;
  const unsigned c = L.count;
  const uint64_t* os = slots(L.node, Kind::kLeaf32);
  const OffsetWord* oo = offsets(L.node, Kind::kLeaf32);
  // The largest stored pivot of the result, when it may not be an old one:
  // the run reaches the old last slot, whose end (the leaf's max) was not stored.
  if (hi_off + 1 == c && cnt >= 2) {
    const uint64_t top = tail ? hi : head ? lo - 1 : lo_off > 0 ? L.min + oo[lo_off - 1] : L.min;
    if (top - L.min > kMaxOffset) return false;
  }
  n->meta = make_meta(cnt, Kind::kLeaf32);
  uint64_t* ns = slots(n, Kind::kLeaf32);
  OffsetWord* no = offsets(n, Kind::kLeaf32);
  std::memcpy(ns, os, lo_off * sizeof(uint64_t));
  std::memcpy(no, oo, lo_off * sizeof(uint32_t));
  unsigned j = lo_off;
  auto put = [&](uint64_t last, uint64_t val) {
    ns[j] = val;
    if (j + 1 < cnt) no[j] = uint32_t(last - L.min);
    ++j;
  };
  if (head) put(lo - 1, os[lo_off]);
  put(hi, v);
  if (tail) put(r_last, os[hi_off]);
  const unsigned rest = c - hi_off - 1;
  std::memcpy(ns + j, os + hi_off + 1, rest * sizeof(uint64_t));
  // Offsets of the old slots after the run; the old last slot has none.
  if (rest > 1) std::memcpy(no + j, oo + hi_off + 1, (rest - 1) * sizeof(uint32_t));
  for (unsigned i = cnt - 1; i + 1 < kLeaf32Slots; ++i) no[i] = kNoOffset;
  if (!ws.opts.track_gaps) {
    gap = 0;
    return true;
  }
  // The parent records the old leaf's largest gap (I6). If no slot that goes
  // held a null range that large, the result's largest gap is that record or
  // the new null range, whichever is larger; otherwise count again.
  const uint64_t old_gap = load_gap(P.node, P.kind, P.off);
  uint64_t gone = 0;
  for (unsigned i = lo_off; i <= hi_off; ++i) {
    if (os[i] == 0)
      gone = std::max(gone, range_size(slot_min(L.node, Kind::kLeaf32, i, L.min),
                                       slot_max(L.node, Kind::kLeaf32, i, c, L.min, L.max)));
  }
  if (gone < old_gap) {
    gap = v ? old_gap : std::max(old_gap, range_size(lo, hi));
  } else {
    gap = node_max_gap(n, L.min, L.max);
  }
  return true;
}

// An internal node `P` (kind K) with its slots a..b replaced by the fresh
// nodes `run`, written into `n` with `nc` slots: the slots, pivots and gaps
// before and after the run are copied as they are (the node's bounds, and so
// its offsets, do not change). Returns the node's largest gap (0 without gaps).
template <Kind K>
uint64_t copy_internal_with_run(Node* n, const PathStep& P, unsigned a, unsigned b, const ItemList& run,
                                unsigned nc) {
  const Node* o = P.node;
  const unsigned r = unsigned(run.size());
  const unsigned rest = P.count - b - 1;  // old slots after the run
  n->meta = make_meta(nc, K);
  uint64_t* ns = slots(n, K);
  const uint64_t* os = slots(o, K);
  std::memcpy(ns, os, a * sizeof(uint64_t));
  for (unsigned i = 0; i < r; ++i) ns[a + i] = run[i].ptr;
  std::memcpy(ns + a + r, os + b + 1, rest * sizeof(uint64_t));
  // Pivot j is stored for j < nc - 1: the run's last item ends at the old
  // slot b's end, which is a stored pivot unless b was the last slot.
  if constexpr (has_offsets(K)) {
    OffsetWord* no = offsets(n, K);
    const OffsetWord* oo = offsets(o, K);
    std::memcpy(no, oo, a * sizeof(uint32_t));
    for (unsigned i = 0; i < r && a + i + 1 < nc; ++i) no[a + i] = uint32_t(run[i].last - P.min);
    if (rest > 1) std::memcpy(no + a + r, oo + b + 1, (rest - 1) * sizeof(uint32_t));
  } else {
    uint64_t* np = pivots(n);
    const uint64_t* op = pivots(o);
    std::memcpy(np, op, a * sizeof(uint64_t));
    for (unsigned i = 0; i < r && a + i + 1 < nc; ++i) np[a + i] = run[i].last;
    if (rest > 1) std::memcpy(np + a + r, op + b + 1, (rest - 1) * sizeof(uint64_t));
  }
  pad_pivots(n, nc, K);
  uint64_t best = 0;
  if constexpr (is_alloc(K)) {
    auto put = [&](unsigned j, uint64_t g) {
      store_gap(n, K, j, g);
      best = std::max(best, g);
    };
    for (unsigned i = 0; i < a; ++i) put(i, load_gap(o, K, i));
    for (unsigned i = 0; i < r; ++i) put(a + i, run[i].gap);
    for (unsigned i = 0; i < rest; ++i) put(a + r + i, load_gap(o, K, b + 1 + i));
  }
  return best;
}

// The common store: [lo, hi] -> v lies in one leaf (path L, slots L.off to
// hi_off), and the leaf that replaces it keeps between min_fill and capacity
// slots. The fresh leaf is written from a small array of the leaf's items,
// without the item lists and planning of the general path. Returns null when
// the store does not qualify; *nomem is set when the allocation failed.
Node* write_leaf_direct(WriteState& ws, const PathStep& L, const PathStep& P, unsigned hi_off, uint64_t lo,
                        uint64_t hi, uint64_t v, uint64_t& gap, bool& nomem) {
  const unsigned lo_off = L.off;
  const uint64_t* os = slots(L.node, L.kind);
  const bool head = slot_min(L.node, L.kind, lo_off, L.min) < lo;
  const uint64_t r_last = slot_max(L.node, L.kind, hi_off, L.count, L.min, L.max);
  const bool tail = r_last > hi;
  const unsigned cnt = L.count - (hi_off - lo_off + 1) + unsigned(head) + 1 + unsigned(tail);
  if (cnt > kMaxSlots || cnt < kLeafMinFill) return nullptr;
  auto count_deltas = [&] {
    // The slots lo_off..hi_off go, the head, value and tail come.
    for (unsigned i = lo_off; i <= hi_off; ++i) (os[i] ? ws.d_entries : ws.d_nulls)--;
    if (head) (os[lo_off] ? ws.d_entries : ws.d_nulls)++;
    (v ? ws.d_entries : ws.d_nulls)++;
    if (tail) (os[hi_off] ? ws.d_entries : ws.d_nulls)++;
  };
  if (L.kind == Kind::kLeaf32) {
    Node* n = ws.alloc();
    if (!n) {
      nomem = true;
      return nullptr;
    }
    if (copy_leaf32_with_store(ws, n, L, P, hi_off, lo, hi, v, head, tail, r_last, cnt, gap)) {
      count_deltas();
      return n;
    }
    ws.discard(n);
  }
  Item items[kMaxSlots];
  unsigned j = 0;
  auto put = [&](uint64_t last, uint64_t val) { items[j++] = Item{last, val, 0}; };
  for (unsigned i = 0; i < lo_off; ++i) put(pivot_at(L.node, L.kind, i, L.min), os[i]);  // i < count-1
  if (head) put(lo - 1, os[lo_off]);
  put(hi, v);
  if (tail) put(r_last, os[hi_off]);
  for (unsigned i = hi_off + 1; i < L.count; ++i) put(slot_max(L.node, L.kind, i, L.count, L.min, L.max), os[i]);
  Kind kind = Kind::kLeaf32;
  if (!fits_leaf32(items, cnt, L.min)) {
    if (cnt > kLeaf64Slots) return nullptr;
    kind = Kind::kLeaf64;
  }
  Node* n = ws.alloc();
  if (!n) {
    nomem = true;
    return nullptr;
  }
  count_deltas();
  const uint64_t best = fill_node(n, items, cnt, kind, L.min);
  gap = ws.opts.track_gaps ? best : 0;
  return n;
}

}  // namespace

absl::Status RawTree::store_locked(uint64_t first, uint64_t last, void* value) {
  assert_writer_held();
  if (first > last) return errno_error(EINVAL, "store: first > last");
  return store_walked(first, last, value, nullptr);
}

absl::Status RawTree::store_walked(uint64_t first, uint64_t last, void* value, Path* walked) {
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
    if (!pack(ws, items, Kind::kLeaf32, 0, top)) return ws.fail_nomem();
    return publish_root(ws, std::move(top), 0);
  }

  uint64_t lo = first, hi = last;
  Path own, rpath;
  Path& lpath = walked ? *walked : own;
  if (!walked) walk_path(root, height_, lo, lpath);
  RawEntry at_lo = entry_in_leaf(lpath.at[0], lpath.at[0].off);
  if (at_lo.first == lo && at_lo.last == hi) {
    // Same bounds: a value swap is one atomic store, and null over null is a no-op.
    if (at_lo.value && v) {
      publish_slot(lpath.at[0].node, lpath.at[0].kind, lpath.at[0].off, v);  // (W2)
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

  if (height_ >= 2 && lpath.at[0].node == rpath.at[0].node) {
    uint64_t gap = 0;
    bool nomem = false;
    if (Node* n = write_leaf_direct(ws, lpath.at[0], lpath.at[1], rpath.at[0].off, lo, hi, v, gap, nomem)) {
      ws.replaced.push_back(lpath.at[0].node);
      return publish_in_parent(ws, Item{lpath.at[0].max, reinterpret_cast<uint64_t>(n), gap}, lpath, 0,
                               height_);
    }
    if (nomem) return ws.fail_nomem();
  }
  if (height_ >= 2) {
    // The leaves beside the run are what spread_into_neighbour() reads when
    // the leaf level overflows: start their misses now.
    const PathStep& PL = lpath.at[1];
    const PathStep& PR = rpath.at[1];
    if (PL.off > 0) prefetch_node(as_node(slots(PL.node, PL.kind)[PL.off - 1]));
    if (PR.off + 1 < PR.count) prefetch_node(as_node(slots(PR.node, PR.kind)[PR.off + 1]));
  }

  const unsigned top_level = unsigned(height_ - 1);

  // Three lists whose roles rotate (moving an inlined list copies its whole
  // buffer): the level's items, the parent level's being built, and the
  // spare that spread_into_neighbour() builds a merged run in.
  ItemList lists[3];
  ItemList* cur = &lists[0];
  ItemList* next = &lists[1];
  ItemList* spare = &lists[2];
  leaf_items(lpath.at[0], rpath.at[0], lo, hi, v, ws, *cur);
  uint64_t items_min = lpath.at[0].min;

  for (unsigned level = 0;; ++level) {
    const PathStep& L = lpath.at[level];
    const PathStep& R = rpath.at[level];
    const Kind kind = ws.kind_at(level);
    if (level >= 1 && !fix_underfull(ws, *cur, level, items_min)) return ws.fail_nomem();
    unsigned take_left = 0, take_right = 0;
    ChunkPlan plan;
    bool planned = false;
    // More than the 64-bit layout holds: the level may need more nodes.
    if (level < top_level && cur->size() > wide_capacity(kind)) {
      if (spread_into_neighbour(ws, lpath.at[level + 1], rpath.at[level + 1], kind, *cur, *spare, items_min,
                                take_left, take_right, plan, planned))
        std::swap(cur, spare);
    }
    ItemList packed;
    if (!pack(ws, *cur, kind, items_min, packed, planned ? &plan : nullptr)) return ws.fail_nomem();
    ws.replaced.push_back(L.node);
    if (R.node != L.node) ws.replaced.push_back(R.node);

    if (level == top_level) return publish_root(ws, std::move(packed), level);
    if (L.node == R.node && packed.size() == 1 &&
        node_count(as_node(packed[0].ptr)) >= min_fill(kind)) {
      return publish_in_parent(ws, packed[0], lpath, level, height_);
    }

    const PathStep& PL = lpath.at[level + 1];
    const PathStep& PR = rpath.at[level + 1];
    // One parent whose run of slots a..b the fresh nodes replace, and which
    // keeps its layout and enough slots: it is copied with the run swapped
    // in, without the item lists and planning below (nodes a fresh node
    // below its minimum would merge with take that path).
    if (PL.node == PR.node && !ws.packed_underfull) {
      const unsigned a = PL.off - take_left, b = PR.off + take_right;
      const unsigned nc = PL.count - (b - a + 1) + unsigned(packed.size());
      const bool at_root = level + 1 == top_level;
      if (nc <= capacity(PL.kind) && nc >= (at_root ? 2u : min_fill(PL.kind))) {
        Node* n = ws.alloc();
        if (!n) return ws.fail_nomem();
        uint64_t gap;
        switch (PL.kind) {
          case Kind::kAlloc32: gap = copy_internal_with_run<Kind::kAlloc32>(n, PL, a, b, packed, nc); break;
          case Kind::kAlloc64: gap = copy_internal_with_run<Kind::kAlloc64>(n, PL, a, b, packed, nc); break;
          default: gap = copy_internal_with_run<Kind::kRange>(n, PL, a, b, packed, nc); break;
        }
        for (unsigned i = PL.off + 1; i < PR.off; ++i) ws.dropped.push_back(as_node(slots(PL.node, PL.kind)[i]));
        ws.replaced.push_back(PL.node);
        const Item fresh{PL.max, reinterpret_cast<uint64_t>(n), ws.opts.track_gaps ? gap : 0};
        if (at_root) {
          ItemList top;
          top.push_back(fresh);
          return publish_root(ws, std::move(top), level + 1);
        }
        return publish_in_parent(ws, fresh, lpath, level + 1, height_);
      }
    }

    // The parents' slots around the replaced run, with the run in between.
    next->clear();
    append_slots(PL, 0, PL.off - take_left, *next);
    next->insert(next->end(), packed.begin(), packed.end());
    append_slots(PR, PR.off + 1 + take_right, PR.count, *next);
    if (PL.node == PR.node) {
      for (unsigned i = PL.off + 1; i < PR.off; ++i) ws.dropped.push_back(as_node(slots(PL.node, PL.kind)[i]));
    } else {
      for (unsigned i = PL.off + 1; i < PL.count; ++i) ws.dropped.push_back(as_node(slots(PL.node, PL.kind)[i]));
      for (unsigned i = 0; i < PR.off; ++i) ws.dropped.push_back(as_node(slots(PR.node, PR.kind)[i]));
    }
    std::swap(cur, next);
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
  Node* root = root_.load(std::memory_order_relaxed);
  if (!root) return nullptr;
  // The walk to `index` is the walk the store needs: the entry holding index
  // is one leaf slot, so its first index lies in the same leaf and slot.
  Path path;
  walk_path(root, height_, index, path);
  const RawEntry e = entry_in_leaf(path.at[0], path.at[0].off);
  if (!e.value) return nullptr;
  absl::Status s = store_walked(e.first, e.last, nullptr, &path);
  if (!s.ok()) return s;
  return e.value;
}

}  // namespace rcuvm::detail
