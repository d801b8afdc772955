// bench/workloads.h: the workloads W1..W6 of peers/LINUX-MAPLE.md, exactly,
// so that rcuvm, its C++ peers and the Linux maple tree replay the same
// address streams.
//
//   splitmix64           the one PRNG; every stream has its own seed
//   make_layout(n)       seed 1: n ranges with 4-16 KiB gaps and 4-64 KiB sizes
//   random_order(n)      seed 3: Fisher-Yates over 0..n-1 (W2 random, W4 source)
//   lookup_addresses()   seed 2 (W1) or 100+t (W6 reader t): 2^20 addresses
//   Churn                seed 4 (W3, W6 writer): erase one range, store it
//                        again somewhere inside its hole
//   kDupSizes, dup_reps  W4 sizes 21..6421 and 1e5, and K dups per rep
//
// Everything here is deterministic and independent of the tree under test.
#ifndef RCUVM_BENCH_WORKLOADS_H_
#define RCUVM_BENCH_WORKLOADS_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace rcuvm_bench {

inline constexpr uint64_t kPage = 4096;
// end_{-1}: the first range starts one gap above this.
inline constexpr uint64_t kLayoutBase = 0x10000;
// Q: addresses per lookup pass (W1, W6).
inline constexpr size_t kLookupCount = size_t{1} << 20;

inline constexpr uint64_t kLayoutSeed = 1;
inline constexpr uint64_t kLookupSeed = 2;
inline constexpr uint64_t kOrderSeed = 3;
inline constexpr uint64_t kChurnSeed = 4;
inline constexpr uint64_t kReaderSeedBase = 100;  // reader t uses 100 + t

// splitmix64, as written in LINUX-MAPLE.md.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    s_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = s_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t s_;
};

// One range, inclusive: [start, last].
struct Range {
  uint64_t start = 0;
  uint64_t last = 0;
};

// The first n ranges of the layout, and the start of range n (the one after
// them), which bounds the churn hole of the last range.
struct Layout {
  std::vector<Range> ranges;
  uint64_t next_start = 0;
};

// Range i draws gap then size: gap = 4096*(1 + r%4), size = 4096*(1 + r%16),
// start_i = end_{i-1} + gap, with end_{-1} = 0x10000.
inline Layout make_layout(size_t n) {
  Layout out;
  out.ranges.reserve(n);
  SplitMix64 r(kLayoutSeed);
  uint64_t end = kLayoutBase;
  for (size_t i = 0; i <= n; ++i) {
    const uint64_t gap = kPage * (1 + r.next() % 4);
    const uint64_t size = kPage * (1 + r.next() % 16);
    const uint64_t start = end + gap;
    if (i == n) {
      out.next_start = start;
      break;
    }
    out.ranges.push_back({start, start + size - 1});
    end = start + size;
  }
  return out;
}

// Fisher-Yates over the identity: for i = n-1 .. 1, j = r % (i+1), swap.
inline std::vector<uint32_t> random_order(size_t n) {
  std::vector<uint32_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint32_t>(i);
  SplitMix64 r(kOrderSeed);
  for (size_t i = n; i-- > 1;) {
    const size_t j = r.next() % (i + 1);
    std::swap(p[i], p[j]);
  }
  return p;
}

// a = start_0 + r % (last_{n-1} - start_0 + 1) over the first n ranges.
inline std::vector<uint64_t> lookup_addresses(const std::vector<Range>& ranges, size_t n,
                                              uint64_t seed, size_t count = kLookupCount) {
  std::vector<uint64_t> a(count);
  SplitMix64 r(seed);
  const uint64_t base = ranges[0].start;
  const uint64_t span = ranges[n - 1].last - base + 1;
  for (auto& x : a) x = base + r.next() % span;
  return a;
}

// W3: one erase + store pair at a time over the first n layout ranges. The
// caller applies step() to its tree: erase `before`, then store `after`.
class Churn {
 public:
  struct Step {
    size_t i = 0;
    Range before;
    Range after;
  };

  Churn(const Layout& layout, size_t n)
      : cur_(layout.ranges.begin(), layout.ranges.begin() + static_cast<std::ptrdiff_t>(n)),
        end_start_(n < layout.ranges.size() ? layout.ranges[n].start : layout.next_start),
        r_(kChurnSeed) {}

  // i = r % N; the hole runs from one page above the left neighbour to one
  // page below the right one; s = min(1 + r%16, len) pages at page offset
  // o = r % (len - s + 1).
  Step step() {
    const size_t n = cur_.size();
    const size_t i = r_.next() % n;
    const uint64_t lo = (i ? cur_[i - 1].last + 1 : kLayoutBase) + kPage;
    const uint64_t hi = (i + 1 < n ? cur_[i + 1].start : end_start_) - kPage;
    const uint64_t len = (hi - lo) / kPage;
    const uint64_t s = std::min<uint64_t>(1 + r_.next() % 16, len);
    const uint64_t o = r_.next() % (len - s + 1);
    Step st{i, cur_[i], {}};
    st.after.start = lo + kPage * o;
    st.after.last = st.after.start + kPage * s - 1;
    cur_[i] = st.after;
    return st;
  }
  const std::vector<Range>& current() const { return cur_; }

 private:
  std::vector<Range> cur_;
  uint64_t end_start_;
  SplitMix64 r_;
};

// W4 source sizes, and K = clamp(200000 / n, 1, 5000) dups per rep.
inline constexpr std::array<size_t, 9> kDupSizes = {21, 121, 221, 421, 821, 1621, 3221, 6421, 100000};
inline size_t dup_reps(size_t n) { return std::clamp<size_t>(200000 / n, 1, 5000); }

// W1/W2 sizes.
inline constexpr std::array<size_t, 4> kSizes = {1000, 10000, 100000, 1000000};
// W3 and W6 tree size.
inline constexpr size_t kChurnSize = 100000;
inline constexpr size_t kChurnWarmupPairs = 100000;

}  // namespace rcuvm_bench

#endif  // RCUVM_BENCH_WORKLOADS_H_
