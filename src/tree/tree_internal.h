// Internal machinery shared by the tree's source files: walks, item lists,
// and the state of one write (what it allocated, what it will retire).
#ifndef RCUVM_SRC_TREE_TREE_INTERNAL_H_
#define RCUVM_SRC_TREE_TREE_INTERNAL_H_

#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "rcuvm/detail/raw_tree.h"
#include "tree/node.h"
#include "tree/node_alloc.h"

namespace rcuvm::detail {

inline constexpr unsigned kMaxHeight = 40;

// One slot's worth of content: a value (leaf level) or a child with the
// largest gap below it (internal levels). `last` is the slot's last index.
// The empty constructor leaves an Item uninitialised on purpose: item lists
// grow by resize() and are then written in place, and zeroing them first was
// a twentieth of a random insert's instructions.
struct Item {
  Item() {}  // NOLINT: deliberately not `= default` (that would zero on resize)
  constexpr Item(uint64_t l, uint64_t p, uint64_t g) : last(l), ptr(p), gap(g) {}
  uint64_t last;
  uint64_t ptr;
  uint64_t gap;
};
using ItemList = absl::InlinedVector<Item, 48>;

// The node visited at one level of a walk toward an index. Deliberately left
// uninitialised: a Path is 1.6 KB, a write declares two, and walk_path() fills
// every level below the height before anything reads it.
struct PathStep {
  Node* node;
  uint64_t min;
  uint64_t max;
  unsigned off;    // slot followed (internal) or holding the index (leaf)
  unsigned count;
  Kind kind;
};
// Indexed by level: 0 is the leaf, height-1 the root; levels at and above the
// tree's height are never written nor read.
struct Path {
  PathStep at[kMaxHeight];
};

// Everything RawTree's private state is reached through.
struct TreeAccess {
  static std::atomic<Node*>& root(RawTree& t) { return t.root_; }
  static Node* root(const RawTree& t) { return t.root_.load(std::memory_order_acquire); }
  static const TreeOptions& options(const RawTree& t) { return t.options_; }
  static void bump_generation(RawTree& t) { t.generation_.fetch_add(1, std::memory_order_release); }
  static uint64_t& height(RawTree& t) { return t.height_; }
  static uint64_t height(const RawTree& t) { return t.height_; }
  static Node*& reserve(RawTree& t) { return t.reserve_; }
  static size_t& reserve_count(RawTree& t) { return t.reserve_count_; }
  static Node*& pending_retire(RawTree& t) { return t.pending_retire_; }
  static uint64_t& entries(RawTree& t) { return t.entries_; }
  static uint64_t& nulls(RawTree& t) { return t.nulls_; }
  static uint64_t& nodes(RawTree& t) { return t.nodes_; }
  static uint64_t& leaves(RawTree& t) { return t.leaves_; }
  static const RawTree& as_const(RawTree& t) { return t; }
  static uint64_t entries(const RawTree& t) { return t.entries_; }
  static uint64_t nulls(const RawTree& t) { return t.nulls_; }
  static uint64_t nodes(const RawTree& t) { return t.nodes_; }
  static uint64_t leaves(const RawTree& t) { return t.leaves_; }
};

// The internal family of a tree, as the kind its levels are planned with
// (allocation levels: the roomier layout; plan_level() picks each node's).
inline Kind internal_kind(const TreeOptions& o) { return o.track_gaps ? Kind::kAlloc32 : Kind::kRange; }

// Whether items[0..cnt), the slots of a leaf whose first index is `min`, fit
// the Leaf32 layout: at most 21 slots, every stored pivot within kMaxOffset.
bool fits_leaf32(const Item* items, size_t cnt, uint64_t min);

// Whether items[0..cnt), the children of an allocation node whose first index
// is `min`, fit the Alloc32 layout: at most 15 children, and the node spans
// at most kMaxOffset + 1 indices (so its pivots and every gap fit 32 bits).
bool fits_alloc32(const Item* items, size_t cnt, uint64_t min);

// Writes items[0..cnt) into `n` as an unpublished node of `kind` whose first
// index is `min`, pivots padded. Returns what the parent records as the
// node's gap: its largest null range (leaf) or largest child gap (kAlloc).
uint64_t fill_node(Node* n, const Item* items, unsigned cnt, Kind kind, uint64_t min);

// How one level's items are cut into nodes: sizes and kinds, in order.
struct Chunk {
  unsigned count;
  Kind kind;
};
using ChunkPlan = absl::InlinedVector<Chunk, 8>;

// Cuts the k items of a level (first index `min`) into nodes. Away from the
// tree's edges, into even shares: nodes of the family's 32-bit layout (Leaf32,
// Alloc32), a share too wide for it cut again into 64-bit nodes (Leaf64,
// Alloc64; Range has one layout), unless even shares of the 64-bit capacity
// need fewer nodes. When the items reach exactly one edge of the index space
// (min 0, or last UINT64_MAX), where in-order stores grow the tree, nodes are
// filled to capacity from the interior side and the edge node takes the rest.
// `ikind` names the internal family (any allocation kind, or kRange). Every
// node gets at least its family's minimum fill when the level needs more than
// one.
void plan_level(const Item* items, size_t k, bool leaf_level, Kind ikind, uint64_t min, ChunkPlan& plan);

// Walks from `root` (height h >= 1) to the leaf holding `index`, filling
// path.at[0..h-1]. Writer context: plain loads are enough.
void walk_path(Node* root, uint64_t height, uint64_t index, Path& path);

// Appends the slots of `n` (spanning [min, max]) to `out` as items.
void read_items(const Node* n, uint64_t min, uint64_t max, ItemList& out);

// Frees the nodes left in a reserve chain / batch (destructor, destroy).
void release_reserve(RawTree& t);

// Hands the tree's pending retire batch, if any, to rcu::retire().
void flush_pending_retire(RawTree& t);

}  // namespace rcuvm::detail

#endif  // RCUVM_SRC_TREE_TREE_INTERNAL_H_
