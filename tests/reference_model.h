// reference_model.h: an obviously-correct model of the range tree's semantics
// (the maple tree's), for differential tests, golden scripts and the fuzzer.
//
// Every index of [0, UINT64_MAX] holds a value, 0 meaning null. The model keeps
// only the non-null ranges, in a std::map keyed by first index; everything not
// covered is null, so adjacent nulls are one gap by construction. Adjacent
// non-null ranges stay separate even with equal values, as in the tree.
//
// Speed is not a goal: each operation is a few map steps, and the gap searches
// walk the entries between their bounds. Arithmetic is written so that 0 and
// UINT64_MAX are ordinary indices: no `last + 1` is computed unless
// `last < UINT64_MAX` is known, and sizes are compared as `b - a >= size - 1`.
#ifndef RCUVM_TESTS_REFERENCE_MODEL_H_
#define RCUVM_TESTS_REFERENCE_MODEL_H_

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace rcuvm::testing {

class ReferenceModel {
 public:
  struct Entry {
    uint64_t first = 0;
    uint64_t last = 0;
    uint64_t value = 0;
    friend bool operator==(const Entry&, const Entry&) = default;
  };
  // A gap search answer: err is 0 (start valid), EINVAL or EBUSY (no gap).
  struct GapResult {
    int err = 0;
    uint64_t start = 0;
  };

  // Maps [first, last] to value (0 erases); 0 or EINVAL.
  int store(uint64_t first, uint64_t last, uint64_t value) {
    if (first > last) return EINVAL;
    carve(first, last);
    if (value != 0) map_[first] = {last, value};
    return 0;
  }

  // Like store, but EINVAL for a null value and EEXIST if anything in
  // [first, last] is non-null.
  int insert(uint64_t first, uint64_t last, uint64_t value) {
    if (first > last || value == 0) return EINVAL;
    if (find(first, last)) return EEXIST;
    map_[first] = {last, value};
    return 0;
  }

  // Removes the whole range holding index; returns its value (0 if none).
  uint64_t erase(uint64_t index) {
    auto it = containing(index);
    if (it == map_.end()) return 0;
    uint64_t value = it->second.value;
    map_.erase(it);
    return value;
  }

  uint64_t load(uint64_t index) const {
    auto it = containing(index);
    return it == map_.end() ? 0 : it->second.value;
  }

  // Returns the entry holding index, or nullopt.
  std::optional<Entry> entry_at(uint64_t index) const {
    auto it = containing(index);
    if (it == map_.end()) return std::nullopt;
    return entry(it);
  }

  // First non-null entry overlapping [index, max].
  std::optional<Entry> find(uint64_t index, uint64_t max) const {
    if (index > max) return std::nullopt;
    auto it = containing(index);
    if (it == map_.end()) it = map_.upper_bound(index);
    if (it == map_.end() || it->first > max) return std::nullopt;
    return entry(it);
  }

  // Last non-null entry overlapping [min, index].
  std::optional<Entry> find_rev(uint64_t index, uint64_t min) const {
    if (min > index) return std::nullopt;
    auto it = map_.upper_bound(index);  // first entry starting after index
    if (it == map_.begin()) return std::nullopt;
    --it;  // last entry starting at or before index
    if (it->second.last < min) return std::nullopt;
    return entry(it);
  }

  // Lowest S with [S, S+size-1] null and inside [min, max].
  GapResult find_gap(uint64_t min, uint64_t max, uint64_t size) const {
    if (size == 0 || min > max) return {EINVAL, 0};
    uint64_t lo = min;  // lowest index not yet known to be covered
    auto it = containing(min);
    if (it == map_.end()) it = map_.upper_bound(min);
    for (; it != map_.end() && it->first <= max; ++it) {
      const uint64_t first = it->first;
      const uint64_t last = it->second.last;
      if (first > lo && (first - 1) - lo >= size - 1) return {0, lo};
      if (last >= max) return {EBUSY, 0};
      lo = std::max(lo, last + 1);
    }
    if (max - lo >= size - 1) return {0, lo};
    return {EBUSY, 0};
  }

  // Highest S with [S, S+size-1] null and inside [min, max].
  GapResult find_gap_rev(uint64_t min, uint64_t max, uint64_t size) const {
    if (size == 0 || min > max) return {EINVAL, 0};
    uint64_t hi = max;  // highest index not yet known to be covered
    auto it = map_.upper_bound(max);
    while (it != map_.begin()) {
      --it;
      const uint64_t first = it->first;
      const uint64_t last = it->second.last;
      if (last < min) break;
      if (last < hi && hi - (last + 1) >= size - 1) return {0, hi - (size - 1)};
      if (first <= min) return {EBUSY, 0};
      hi = std::min(hi, first - 1);
    }
    if (hi - min >= size - 1) return {0, hi - (size - 1)};
    return {EBUSY, 0};
  }

  // Builds from entries sorted by first and non-overlapping, skipping nulls.
  // EEXIST if not empty, EINVAL on bad input (nothing is stored then).
  int bulk_load(std::span<const Entry> sorted) {
    if (!map_.empty()) return EEXIST;
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i].first > sorted[i].last) return EINVAL;
      if (i > 0 && sorted[i].first <= sorted[i - 1].last) return EINVAL;
    }
    for (const Entry& e : sorted) {
      if (e.value != 0) map_[e.first] = {e.last, e.value};
    }
    return 0;
  }

  // All non-null entries overlapping [first, last], in order.
  std::vector<Entry> entries(uint64_t first = 0, uint64_t last = UINT64_MAX) const {
    std::vector<Entry> out;
    auto first_entry = find(first, last);
    if (!first_entry) return out;
    for (auto it = map_.find(first_entry->first); it != map_.end() && it->first <= last; ++it) {
      out.push_back(entry(it));
    }
    return out;
  }

  uint64_t count() const { return map_.size(); }
  // Number of null ranges (gaps) after coalescing.
  uint64_t null_ranges() const {
    if (map_.empty()) return 1;
    uint64_t n = 0;
    uint64_t next = 0;  // first index after the previous entry
    bool at_end = false;
    for (const auto& [first, tail] : map_) {
      if (first > next) ++n;
      if (tail.last == UINT64_MAX) at_end = true;
      else next = tail.last + 1;
    }
    return at_end ? n : n + 1;
  }
  bool empty() const { return map_.empty(); }
  void clear() { map_.clear(); }

  // One line per entry, "first-last:value", for failure messages.
  std::string to_string(size_t limit = 64) const {
    std::string s;
    size_t n = 0;
    for (const auto& [first, tail] : map_) {
      if (n++ == limit) return s + "...\n";
      s += std::to_string(first) + "-" + std::to_string(tail.last) + ":" + std::to_string(tail.value) + "\n";
    }
    return s;
  }

 private:
  struct Tail {
    uint64_t last;
    uint64_t value;
  };
  using Map = std::map<uint64_t, Tail>;

  static Entry entry(Map::const_iterator it) { return {it->first, it->second.last, it->second.value}; }

  Map::const_iterator containing(uint64_t index) const {
    auto it = map_.upper_bound(index);
    if (it == map_.begin()) return map_.end();
    --it;
    return it->second.last >= index ? it : map_.end();
  }

  // Makes [first, last] null, keeping the parts of overlapped ranges that lie
  // outside it (with their values).
  void carve(uint64_t first, uint64_t last) {
    auto it = map_.upper_bound(first);
    if (it != map_.begin()) {
      auto before = std::prev(it);
      if (before->first < first && before->second.last >= first) {
        Tail tail = before->second;
        before->second.last = first - 1;  // left piece; first > before->first >= 0
        if (tail.last > last) map_[last + 1] = tail;  // right piece; last < UINT64_MAX
      }
    }
    it = map_.lower_bound(first);
    while (it != map_.end() && it->first <= last) {
      Tail tail = it->second;
      it = map_.erase(it);
      if (tail.last > last) {
        map_[last + 1] = tail;
        break;
      }
    }
  }

  Map map_;
};

}  // namespace rcuvm::testing

#endif  // RCUVM_TESTS_REFERENCE_MODEL_H_
