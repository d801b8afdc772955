// The range tree's node: 256 bytes, 256-byte aligned (four cache lines).
//
// Layout, written once (words are 64-bit; W = words[]):
//
//   struct Leaf64 / Range {           struct Leaf32 {
//     u64 meta;                          u64 meta;
//     u64 pivot[15];     // W[0..14]     u64 slot[21];  // W[0..20]
//     u64 slot[16];      // W[15..30]    u32 off[20];   // W[21..30]
//   };                                 };
//   struct Alloc64 {                   struct Alloc32 {
//     u64 meta;                          u64 meta;
//     u64 pivot[9];      // W[0..8]      u64 slot[15];  // W[0..14]
//     u64 slot[10];      // W[9..18]     u32 off[14];   // W[15..21]
//     u64 gap[10];       // W[19..28]    u32 gap[15];   // W[22..29], half of W[29]
//     u64 unused[2];     // W[29..30]    u32 unused[3];
//   };                                 };
//
//   meta: bits 0..4 count of used slots (1..capacity), bits 5..7 kind,
//         bit 8 dead. Only the dead bit ever changes after publication.
//
// Slot i covers [pivot[i-1] + 1, pivot[i]]; slot 0 starts at the node's min
// and the last used slot (count - 1) ends at the node's max. A node's min and
// max are implied by its parent (the root spans [0, UINT64_MAX]), so a node
// stores count - 1 pivots. Leaf slots hold values (null = empty); internal
// slots hold child nodes. gap[i] is the size of the largest null range under
// child i, saturated at UINT64_MAX (a null range of 2^64 indices).
//
// Leaves come in two layouts. A Leaf32 stores pivot i as off[i] = pivot[i] -
// min, which fits when every stored pivot lies within 2^32 - 2 of the leaf's
// min: 21 slots instead of 16 in the same 256 bytes (a range with a gap after
// it takes two slots, so this is what brings a random build near 32 bytes a
// range). Writers pick Leaf32 whenever the content fits and Leaf64 otherwise
// (a leaf spanning a huge hole, or ranges anywhere in the 64-bit space).
// Internal nodes of an allocation tree likewise: an Alloc32 spans at most
// 2^32 - 1 indices (max - min <= kMaxOffset), so its pivots fit offsets and
// every gap below it fits 32 bits exactly; it holds 15 children instead of
// 10, which takes a level off a tree of a million ranges. The offsets can be
// relative because a node's bounds never change while it is in the tree: a
// write that moves a boundary rebuilds the nodes on both sides.
//
// Invariants (validate() checks them in this order and names the first broken):
//   I1  every node reachable from the root is live (dead bit clear) and its
//       kind is a leaf kind at depth `height-1` and of the tree's internal
//       family above (kRange, or kAlloc64/kAlloc32 in allocation mode); all
//       leaves are at the same depth.
//   I2  1 <= count <= capacity; nodes other than the root have at least their
//       family's minimum: 8 for leaves (either layout) and range nodes, 5
//       for allocation nodes (either layout); an internal root has at least 2.
//   I3  pivots strictly increase, and min <= pivot[i] < max for i < count-1;
//       the unused pivot positions count-1 .. capacity-2 hold UINT64_MAX (a
//       Leaf32 or Alloc32: offsets <= kMaxOffset, unused ones kNoOffset; an
//       Alloc32 spans at most kMaxOffset + 1 indices).
//   I4  internal slots are non-null.
//   I5  no two adjacent null ranges, across node boundaries included; an
//       empty tree has a null root, never a leaf holding one null range.
//   I6  (allocation mode) gap[i] equals the largest null range under child i.
//   I7  the tree's counters (entries, null ranges, nodes, leaves) match.
//
// Concurrency (DESIGN.md, "Concurrency protocol of the tree"):
//   - meta count/kind and pivots are written before publication and never
//     again, so readers read them with plain loads after (R1)/(R2).
//   - slots are accessed through std::atomic_ref: (W2) release store of a child
//     or value pairs with (R2) acquire load by readers.
//   - the dead bit: (W3) release store after the replacement is published;
//     pairs with (R3) acquire re-check by readers at the leaf.
//   - gaps are read and written only under the writer lock; relaxed atomics
//     keep TSAN quiet if a user breaks that rule.
#ifndef RCUVM_SRC_TREE_NODE_H_
#define RCUVM_SRC_TREE_NODE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace rcuvm::detail {

enum class Kind : uint8_t {
  kLeaf64 = 0,   // 16 value slots, 15 pivots
  kRange = 1,    // internal, 16 child slots, no gaps (non-allocation trees)
  kAlloc64 = 2,  // internal, 10 child slots, 9 pivots, 10 gaps
  kLeaf32 = 3,   // 21 value slots, 20 pivots as 32-bit offsets from the leaf's min
  kAlloc32 = 4,  // internal, 15 child slots, 14 offsets, 15 32-bit gaps
};

inline constexpr unsigned kLeaf64Slots = 16;
inline constexpr unsigned kLeaf32Slots = 21;
inline constexpr unsigned kRangeSlots = 16;
inline constexpr unsigned kAlloc64Slots = 10;
inline constexpr unsigned kAlloc32Slots = 15;
inline constexpr unsigned kMaxSlots = 21;
inline constexpr unsigned kLeafMinFill = 8;
inline constexpr unsigned kAllocMinFill = 5;
inline constexpr uint64_t kMaxIndex = UINT64_MAX;
// A Leaf32 offset: at most kMaxOffset; unused positions hold kNoOffset, which
// no clamped distance exceeds (see slot_for_fixed).
inline constexpr uint32_t kNoOffset = UINT32_MAX;
inline constexpr uint32_t kMaxOffset = UINT32_MAX - 1;

inline constexpr uint64_t kCountMask = 0x1f;
inline constexpr unsigned kKindShift = 5;
inline constexpr uint64_t kKindMask = 7;
inline constexpr uint64_t kDeadBit = 1u << 8;

struct alignas(256) Node {
  uint64_t meta;
  uint64_t words[31];
};
static_assert(sizeof(Node) == 256, "nodes are four cache lines");
static_assert(alignof(Node) == 256, "node pointers keep 8 low bits free");

inline constexpr bool is_leaf(Kind k) { return k == Kind::kLeaf64 || k == Kind::kLeaf32; }
inline constexpr bool is_alloc(Kind k) { return k == Kind::kAlloc64 || k == Kind::kAlloc32; }
// The kinds whose pivots are 32-bit offsets from the node's min.
inline constexpr bool has_offsets(Kind k) { return k == Kind::kLeaf32 || k == Kind::kAlloc32; }
inline constexpr unsigned capacity(Kind k) {
  switch (k) {
    case Kind::kLeaf32: return kLeaf32Slots;
    case Kind::kAlloc64: return kAlloc64Slots;
    case Kind::kAlloc32: return kAlloc32Slots;
    default: return kLeaf64Slots;  // kLeaf64, kRange
  }
}
// The capacity of the 64-bit layout of a kind's family (what a node holds
// whatever its span).
inline constexpr unsigned wide_capacity(Kind k) {
  return k == Kind::kLeaf32 ? kLeaf64Slots : k == Kind::kAlloc32 ? kAlloc64Slots : capacity(k);
}
// One minimum per family (leaves, allocation nodes), whatever the layout, so
// that a repack that picks the other layout never turns a legal node into an
// underfull one.
inline constexpr unsigned min_fill(Kind k) {
  return is_leaf(k) ? kLeafMinFill : is_alloc(k) ? kAllocMinFill : capacity(k) / 2;
}

inline uint64_t make_meta(unsigned count, Kind kind) {
  return uint64_t(count) | (uint64_t(kind) << kKindShift);
}
inline uint64_t meta_relaxed(const Node* n) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(n->meta)).load(std::memory_order_relaxed);
}
inline unsigned meta_count(uint64_t m) { return unsigned(m & kCountMask); }
inline Kind meta_kind(uint64_t m) { return Kind((m >> kKindShift) & kKindMask); }
inline unsigned node_count(const Node* n) { return meta_count(meta_relaxed(n)); }
inline Kind node_kind(const Node* n) { return meta_kind(meta_relaxed(n)); }

// (R3) Re-reads the dead bit with acquire; pairs with (W3) in mark_dead().
inline bool is_dead(const Node* n) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(n->meta)).load(std::memory_order_acquire) &
         kDeadBit;
}
// (W3) Marks a replaced node dead after its replacement is published. Only
// the writer (one at a time, under the writer lock) changes meta after
// publication, so a load and a release store do what a locked read-modify-
// write would, without its cost on every replaced node.
inline void mark_dead(Node* n) {
  std::atomic_ref<uint64_t> meta(n->meta);
  meta.store(meta.load(std::memory_order_relaxed) | kDeadBit, std::memory_order_release);
}

// Absolute pivots (Leaf64, Range, Alloc64).
inline const uint64_t* pivots(const Node* n) { return n->words; }
inline uint64_t* pivots(Node* n) { return n->words; }
// The 32-bit words of a Leaf32 or Alloc32 (offsets, Alloc32 gaps), read
// through a type that may alias the 64-bit words.
using OffsetWord = uint32_t __attribute__((may_alias));
inline unsigned offset_base(Kind k) { return k == Kind::kLeaf32 ? 21 : 15; }
inline const OffsetWord* offsets(const Node* n, Kind k) {
  return reinterpret_cast<const OffsetWord*>(n->words + offset_base(k));
}
inline OffsetWord* offsets(Node* n, Kind k) { return reinterpret_cast<OffsetWord*>(n->words + offset_base(k)); }
inline unsigned slot_base(Kind k) {
  switch (k) {
    case Kind::kAlloc64: return 9;
    case Kind::kLeaf32:
    case Kind::kAlloc32: return 0;
    default: return 15;  // kLeaf64, kRange
  }
}
inline uint64_t* slots(Node* n, Kind k) { return n->words + slot_base(k); }
inline uint64_t* slots(const Node* n, Kind k) { return const_cast<Node*>(n)->words + slot_base(k); }
inline uint64_t* gaps64(const Node* n) { return const_cast<Node*>(n)->words + 19; }
inline OffsetWord* gaps32(const Node* n) { return reinterpret_cast<OffsetWord*>(const_cast<Node*>(n)->words + 22); }

// (R2) Acquire load of a slot; pairs with (W2) publish_slot().
inline uint64_t load_slot(const Node* n, Kind k, unsigned i) {
  return std::atomic_ref<uint64_t>(slots(n, k)[i]).load(std::memory_order_acquire);
}
// (W2) Release store of a slot in a published node: a new child or a value.
inline void publish_slot(Node* n, Kind k, unsigned i, uint64_t v) {
  std::atomic_ref<uint64_t>(slots(n, k)[i]).store(v, std::memory_order_release);
}
// Gap i of an allocation node (either layout). An Alloc32 spans at most
// 2^32 - 1 indices, so every gap below it fits its 32-bit words.
inline uint64_t load_gap(const Node* n, Kind k, unsigned i) {
  if (k == Kind::kAlloc32) return __atomic_load_n(&gaps32(n)[i], __ATOMIC_RELAXED);
  return __atomic_load_n(&gaps64(n)[i], __ATOMIC_RELAXED);
}
inline void store_gap(Node* n, Kind k, unsigned i, uint64_t g) {
  if (k == Kind::kAlloc32)
    __atomic_store_n(&gaps32(n)[i], uint32_t(g), __ATOMIC_RELAXED);
  else
    __atomic_store_n(&gaps64(n)[i], g, __ATOMIC_RELAXED);
}

// Starts loading all four cache lines of a node, so that the misses of one
// level of a walk overlap instead of queueing one after another.
inline void prefetch_node(const Node* n) {
  const char* p = reinterpret_cast<const char*>(n);
  __builtin_prefetch(p);
  __builtin_prefetch(p + 64);
  __builtin_prefetch(p + 128);
  __builtin_prefetch(p + 192);
}

// Starts fetching a node's four lines for writing (a fresh node about to be
// filled), so that the misses overlap with other work.
inline void prefetch_node_for_write(Node* n) {
  char* p = reinterpret_cast<char*>(n);
  __builtin_prefetch(p, 1);
  __builtin_prefetch(p + 64, 1);
  __builtin_prefetch(p + 128, 1);
  __builtin_prefetch(p + 192, 1);
}

// Pivot j of a node of kind `k` whose first index is `min`.
inline uint64_t pivot_at(const Node* n, Kind k, unsigned j, uint64_t min) {
  return has_offsets(k) ? min + offsets(n, k)[j] : pivots(n)[j];
}

// The distance of `index` from a Leaf32's or Alloc32's min, clamped into the offsets'
// range: 0 below the leaf, kNoOffset at or past 2^32 - 1 above it (beyond
// every stored offset, and not beyond the unused ones).
inline uint32_t offset_distance(uint64_t index, uint64_t min) {
  if (index <= min) return 0;
  const uint64_t d = index - min;
  return d >= kNoOffset ? kNoOffset : uint32_t(d);
}

// Returns the slot of `n` (count `cnt`, first index `min`) that holds
// `index`: the number of pivots below it (0 for an index below the node,
// cnt-1 for one above it). Counting instead of stopping at the first larger
// pivot has no data-dependent branch, which a walk over a cold tree cannot
// predict.
inline unsigned slot_for(const Node* n, Kind k, unsigned cnt, uint64_t index, uint64_t min) {
  unsigned i = 0;
  if (has_offsets(k)) {
    const uint32_t d = offset_distance(index, min);
    const OffsetWord* off = offsets(n, k);
    for (unsigned j = 0; j + 1 < cnt; ++j) i += d > off[j];
    return i;
  }
  const uint64_t* piv = pivots(n);
  for (unsigned j = 0; j + 1 < cnt; ++j) i += index > piv[j];
  return i;
}
// The readers' version: counts over every pivot position of the kind, which
// has a fixed trip count and no dependency on the count field. Correct because
// unused pivot positions hold UINT64_MAX / kNoOffset (invariant I3), which no
// index (or clamped distance) exceeds.
template <size_t... J>
inline unsigned count_below(const uint64_t* piv, uint64_t index, std::index_sequence<J...>) {
  return (unsigned(index > piv[J]) + ...);  // unrolled, independent compares
}
// The 32-bit offsets are compared four at a time where SSE2 is there (every
// x86-64): four independent compares a step instead of one long chain of
// dependent add-with-carries. SSE2 compares signed, so both sides are biased
// by 2^31, which keeps the unsigned order.
template <size_t... J>
inline unsigned count_below32(const OffsetWord* off, uint32_t d, std::index_sequence<J...>) {
#if defined(__SSE2__)
  constexpr unsigned n = sizeof...(J);
  const __m128i bias = _mm_set1_epi32(INT32_MIN);
  const __m128i dv = _mm_xor_si128(_mm_set1_epi32(static_cast<int>(d)), bias);
  __m128i below = _mm_setzero_si128();  // per lane: how many of its offsets are below d
  unsigned j = 0;
  for (; j + 4 <= n; j += 4) {
    const __m128i o = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(off + j)), bias);
    below = _mm_sub_epi32(below, _mm_cmpgt_epi32(dv, o));
  }
  below = _mm_add_epi32(below, _mm_shuffle_epi32(below, 0x4E));
  below = _mm_add_epi32(below, _mm_shuffle_epi32(below, 0xB1));
  unsigned c = static_cast<unsigned>(_mm_cvtsi128_si32(below));
  for (; j < n; ++j) c += d > off[j];
  return c;
#else
  return (unsigned(d > off[J]) + ...);
#endif
}
template <Kind K>
inline unsigned slot_for_fixed(const Node* n, uint64_t index, uint64_t min) {
  if constexpr (has_offsets(K)) {
    return count_below32(offsets(n, K), offset_distance(index, min), std::make_index_sequence<capacity(K) - 1>{});
  } else {
    return count_below(pivots(n), index, std::make_index_sequence<capacity(K) - 1>{});
  }
}
inline unsigned slot_for_kind(const Node* n, Kind k, uint64_t index, uint64_t min) {
  switch (k) {
    case Kind::kAlloc64: return slot_for_fixed<Kind::kAlloc64>(n, index, min);
    case Kind::kAlloc32: return slot_for_fixed<Kind::kAlloc32>(n, index, min);
    case Kind::kLeaf32: return slot_for_fixed<Kind::kLeaf32>(n, index, min);
    case Kind::kLeaf64: return slot_for_fixed<Kind::kLeaf64>(n, index, min);
    default: return slot_for_fixed<Kind::kRange>(n, index, min);
  }
}
// Fills the unused pivot positions [cnt-1, capacity-1) with UINT64_MAX
// (kNoOffset in a Leaf32).
inline void pad_pivots(Node* n, unsigned cnt, Kind k) {
  if (has_offsets(k)) {
    for (unsigned j = cnt - 1; j + 1 < capacity(k); ++j) offsets(n, k)[j] = kNoOffset;
    return;
  }
  for (unsigned j = cnt - 1; j + 1 < capacity(k); ++j) pivots(n)[j] = UINT64_MAX;
}

// First index covered by slot i of a node of kind `k` spanning [min, max].
inline uint64_t slot_min(const Node* n, Kind k, unsigned i, uint64_t min) {
  return i == 0 ? min : pivot_at(n, k, i - 1, min) + 1;
}
// Last index covered by slot i of a node of kind `k` with `cnt` slots
// spanning [min, max].
inline uint64_t slot_max(const Node* n, Kind k, unsigned i, unsigned cnt, uint64_t min, uint64_t max) {
  return i + 1 == cnt ? max : pivot_at(n, k, i, min);
}

// Size of [first, last], saturated at UINT64_MAX.
inline uint64_t range_size(uint64_t first, uint64_t last) {
  uint64_t d = last - first;
  return d == UINT64_MAX ? UINT64_MAX : d + 1;
}

// Largest null range inside a node (leaf: its null slots; internal: gaps).
uint64_t node_max_gap(const Node* n, uint64_t min, uint64_t max);

}  // namespace rcuvm::detail

#endif  // RCUVM_SRC_TREE_NODE_H_
