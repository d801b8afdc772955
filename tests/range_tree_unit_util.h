// range_tree_unit_util.h: helpers for the range tree's unit tests
// (range_tree_*_test.cc): status assertions, fake values, snapshots of a tree,
// a one-character-per-index picture, and a tiny sparse model to compare with.
//
// The model here is deliberately minimal (a std::map of non-null ranges); the
// differential tests have their own, richer one in reference_model.h.
#ifndef RCUVM_TESTS_RANGE_TREE_UNIT_UTIL_H_
#define RCUVM_TESTS_RANGE_TREE_UNIT_UTIL_H_

#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"

namespace rcuvm {
// Lets gtest print entries (and optional entries) in failure messages.
template <typename T>
void PrintTo(const RangeEntry<T>& e, std::ostream* os) {
  *os << absl::StrFormat("[%#x, %#x] -> %p", e.first, e.last, static_cast<const void*>(e.value));
}
// Names the tree shape of a parameterised test in failure messages.
inline void PrintTo(const TreeOptions& o, std::ostream* os) {
  *os << (o.track_gaps ? "track_gaps" : "no gaps") << (o.rcu ? ", rcu" : ", private");
}
}  // namespace rcuvm

namespace rcuvm::unit {

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace rcuvm::unit

// Status assertions that print the status on failure.
#define RCUVM_ASSERT_OK(expr)                                               \
  do {                                                                      \
    const auto& rcuvm_s_ = (expr);                                          \
    ASSERT_TRUE(rcuvm_s_.ok()) << #expr << ": " << ::rcuvm::unit::StatusOf(rcuvm_s_); \
  } while (0)
#define RCUVM_EXPECT_OK(expr)                                               \
  do {                                                                      \
    const auto& rcuvm_s_ = (expr);                                          \
    EXPECT_TRUE(rcuvm_s_.ok()) << #expr << ": " << ::rcuvm::unit::StatusOf(rcuvm_s_); \
  } while (0)
// Expects `expr` to fail with the Linux errno `err`.
#define RCUVM_EXPECT_ERRNO(expr, err) \
  EXPECT_EQ(::rcuvm::errno_of(::rcuvm::unit::StatusOf(expr)), (err)) << #expr

namespace rcuvm::unit {

using Tree = RangeTree<void>;
using Entry = Tree::Entry;
inline constexpr uint64_t kMax = UINT64_MAX;

// A fake value for x: odd, so never null and never a real object's address;
// the tree never dereferences values. V(x) != V(y) for x != y below 2^63.
inline void* V(uint64_t x) { return reinterpret_cast<void*>(static_cast<uintptr_t>(x * 2 + 1)); }
// Inverse of V().
inline uint64_t X(const void* p) { return (reinterpret_cast<uintptr_t>(p) - 1) / 2; }
// A value drawn as the letter c by Draw().
inline void* L(char c) { return V(static_cast<unsigned char>(c)); }

// The options of every tree shape the engine has: both internal node kinds
// (plain range nodes, gap-tracking allocation nodes), in and out of RCU mode.
inline std::vector<TreeOptions> AllModes() {
  return {TreeOptions{.track_gaps = false, .rcu = true}, TreeOptions{.track_gaps = true, .rcu = true},
          TreeOptions{.track_gaps = false, .rcu = false}, TreeOptions{.track_gaps = true, .rcu = false}};
}
inline std::string ModeName(const ::testing::TestParamInfo<TreeOptions>& info) {
  return std::string(info.param.track_gaps ? "Alloc" : "Range") + (info.param.rcu ? "Rcu" : "Private");
}

// Every non-null entry overlapping [first, last], in order (for_each runs in
// its own read section).
inline std::vector<Entry> Entries(const Tree& t, uint64_t first = 0, uint64_t last = kMax) {
  std::vector<Entry> out;
  t.for_each(first, last, [&](const Entry& e) { out.push_back(e); });
  return out;
}

// One character per index of [first, last] (a short window): '.' for null,
// the letter of L(c) values, '?' for any other value. Adjacent entries with
// the same letter are indistinguishable here; Entries() tells them apart.
inline std::string Draw(const Tree& t, uint64_t first, uint64_t last) {
  std::string out;
  for (uint64_t i = first;; ++i) {
    void* v = t.load(i);
    if (!v)
      out += '.';
    else if (X(v) >= 'A' && X(v) <= 'z')
      out += static_cast<char>(X(v));
    else
      out += '?';
    if (i == last) break;
  }
  return out;
}

// Counts the null ranges (gaps) implied by sorted, non-overlapping entries.
inline uint64_t NullRanges(const std::vector<Entry>& entries) {
  if (entries.empty()) return 0;  // an empty tree stores nothing at all
  uint64_t n = 0, next = 0;
  bool covered_to_end = false;
  for (const Entry& e : entries) {
    if (e.first > next) ++n;
    if (e.last == kMax) covered_to_end = true;
    else next = e.last + 1;
  }
  return covered_to_end ? n : n + 1;
}

// A sparse model of the tree's semantics: the non-null ranges only.
class Model {
 public:
  void store(uint64_t first, uint64_t last, void* v) {
    carve(first, last);
    if (v) map_[first] = {last, v};
  }
  // Returns 0, EINVAL or EEXIST, as the tree's insert.
  int insert(uint64_t first, uint64_t last, void* v) {
    if (first > last || !v) return EINVAL;
    if (overlaps(first, last)) return EEXIST;
    map_[first] = {last, v};
    return 0;
  }
  // Removes the whole range holding index; returns its value or null.
  void* erase(uint64_t index) {
    auto it = holding(index);
    if (it == map_.end()) return nullptr;
    void* v = it->second.second;
    map_.erase(it);
    return v;
  }
  void* load(uint64_t index) const {
    auto it = holding(index);
    return it == map_.end() ? nullptr : it->second.second;
  }
  std::vector<Entry> entries() const {
    std::vector<Entry> out;
    for (const auto& [f, lv] : map_) out.push_back(Entry{f, lv.first, lv.second});
    return out;
  }
  // Lowest / highest start of `size` free indices inside [min, max].
  std::optional<uint64_t> gap(uint64_t min, uint64_t max, uint64_t size, bool rev) const {
    std::optional<uint64_t> best;
    auto consider = [&](uint64_t a, uint64_t b) {  // free range [a, b]
      uint64_t s = std::max(a, min), e = std::min(b, max);
      if (s > e || e - s < size - 1) return;
      uint64_t start = rev ? e - (size - 1) : s;
      if (!best || (rev ? start > *best : start < *best)) best = start;
    };
    uint64_t next = 0;
    bool end = false;
    for (const auto& [f, lv] : map_) {
      if (f > next) consider(next, f - 1);
      if (lv.first == kMax) end = true;
      else next = lv.first + 1;
    }
    if (!end) consider(next, kMax);
    return best;
  }

 private:
  using Map = std::map<uint64_t, std::pair<uint64_t, void*>>;  // first -> (last, value)
  Map::const_iterator holding(uint64_t index) const {
    auto it = map_.upper_bound(index);
    if (it == map_.begin()) return map_.end();
    --it;
    return it->second.first >= index ? it : map_.end();
  }
  Map::iterator holding(uint64_t index) {
    auto it = map_.upper_bound(index);
    if (it == map_.begin()) return map_.end();
    --it;
    return it->second.first >= index ? it : map_.end();
  }
  bool overlaps(uint64_t first, uint64_t last) const {
    if (holding(first) != map_.end()) return true;
    auto it = map_.upper_bound(first);
    return it != map_.end() && it->first <= last;
  }
  // Removes [first, last] from every range, keeping the pieces outside it.
  void carve(uint64_t first, uint64_t last) {
    auto it = map_.upper_bound(first);
    if (it != map_.begin()) --it;
    while (it != map_.end() && it->first <= last) {
      const uint64_t f = it->first, l = it->second.first;
      void* v = it->second.second;
      if (l < first) {
        ++it;
        continue;
      }
      it = map_.erase(it);
      if (f < first) map_[f] = {first - 1, v};
      if (l > last) {
        map_[last + 1] = {l, v};
        break;
      }
    }
  }
  Map map_;
};

// Checks that the tree holds exactly the model's entries, that its counters
// agree, and that it validates.
inline ::testing::AssertionResult Matches(const Tree& t, const Model& m) {
  std::vector<Entry> got = Entries(t), want = m.entries();
  for (size_t i = 0; i < std::max(got.size(), want.size()); ++i) {
    if (i >= got.size() || i >= want.size() || !(got[i] == want[i])) {
      auto show = [](const std::vector<Entry>& v, size_t i) {
        if (i >= v.size()) return std::string("(none)");
        return absl::StrFormat("[%#x, %#x] -> %p", v[i].first, v[i].last, v[i].value);
      };
      return ::testing::AssertionFailure() << "entry " << i << ": tree has " << show(got, i)
                                           << ", model has " << show(want, i) << " (tree "
                                           << got.size() << " entries, model " << want.size() << ")";
    }
  }
  TreeStats s = t.stats();
  if (s.entries != want.size() || s.nulls != NullRanges(want))
    return ::testing::AssertionFailure() << "stats say " << s.entries << " entries, " << s.nulls
                                         << " nulls; expected " << want.size() << ", "
                                         << NullRanges(want);
  if (t.empty() != want.empty()) return ::testing::AssertionFailure() << "empty() is " << t.empty();
  if (absl::Status v = t.validate(); !v.ok()) return ::testing::AssertionFailure() << v;
  return ::testing::AssertionSuccess();
}

}  // namespace rcuvm::unit

#endif  // RCUVM_TESTS_RANGE_TREE_UNIT_UTIL_H_
