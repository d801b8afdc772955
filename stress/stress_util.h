// stress_util.h: the small kit every stress program shares.
//
//   Args        --seconds N --readers N --seed N (plus per-program flags)
//   Rng         splitmix64-seeded xoshiro256**, one per thread
//   Deadline    steady-clock bound for the run
//   STRESS_REQUIRE(cond, fmt, ...)
//               on a violated check prints one clear line naming the program,
//               the check and the values, then exits with status 1 at once, so
//               a broken invariant is never buried under the noise of the
//               other threads (and sanitizers still report what they saw)
//
// Stress programs are run by CTest as `<prog> --seconds N` (label `stress`)
// and print one summary line of what they checked when they pass.
#ifndef RCUVM_STRESS_STRESS_UTIL_H_
#define RCUVM_STRESS_STRESS_UTIL_H_

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rcuvm::stress {

// Name printed in front of every failure and summary line; set by Args.
inline const char*& program_name() {
  static const char* name = "stress";
  return name;
}

// Reports a violated check and ends the process with status 1. The first
// failing thread wins; the others stop where they are (they would only
// repeat the news, or report its consequences).
[[noreturn]] inline void fail(const char* file, int line, const char* cond, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] inline void fail(const char* file, int line, const char* cond, const char* fmt, ...) {
  static std::atomic<bool> failing{false};
  if (failing.exchange(true)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "%s: FAIL: %s\n  check: %s\n  at %s:%d\n", program_name(), msg, cond, file,
               line);
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(1);
}

#define STRESS_REQUIRE(cond, ...)                                    \
  do {                                                               \
    if (__builtin_expect(!(cond), 0))                                \
      ::rcuvm::stress::fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

// Command-line flags of the form `--name value` or `--name=value`. Every
// program accepts --seconds, --readers and --seed; others are declared by the
// program. Unknown flags and malformed numbers end the process with status 2.
class Args {
 public:
  Args(int argc, char** argv, std::initializer_list<const char*> extra_flags,
       const char* usage_extra)
      : usage_extra_(usage_extra) {
    const char* slash = std::strrchr(argv[0], '/');
    program_name() = slash ? slash + 1 : argv[0];
    known_ = {"seconds", "readers", "seed"};
    for (const char* f : extra_flags) known_.push_back(f);
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "-h" || a == "--help") usage(0);
      if (a.substr(0, 2) != "--") usage(2, argv[i]);
      a.remove_prefix(2);
      std::string name, value;
      if (size_t eq = a.find('='); eq != std::string_view::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
      } else {
        name = a;
        if (i + 1 >= argc) usage(2, argv[i]);
        value = argv[++i];
      }
      if (!is_known(name)) usage(2, argv[i]);
      values_.push_back({name, value});
    }
  }

  double seconds(double def) const { return get_double("seconds", def); }
  int readers(int def) const { return int(get_u64("readers", uint64_t(def))); }
  // The seed defaults to the clock, and is always printed, so a failing run
  // can be repeated with --seed.
  uint64_t seed() const {
    return get_u64("seed", uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  }

  double get_double(const char* name, double def) const {
    const std::string* v = find(name);
    if (!v) return def;
    char* end = nullptr;
    double d = std::strtod(v->c_str(), &end);
    if (end == v->c_str() || *end || d < 0) usage(2, v->c_str());
    return d;
  }
  uint64_t get_u64(const char* name, uint64_t def) const {
    const std::string* v = find(name);
    if (!v) return def;
    char* end = nullptr;
    unsigned long long u = std::strtoull(v->c_str(), &end, 0);
    if (end == v->c_str() || *end) usage(2, v->c_str());
    return u;
  }

 private:
  struct Value {
    std::string name, value;
  };
  bool is_known(const std::string& n) const {
    for (const char* k : known_)
      if (n == k) return true;
    return false;
  }
  const std::string* find(const char* name) const {
    const std::string* found = nullptr;
    for (const Value& v : values_)
      if (v.name == name) found = &v.value;  // the last occurrence wins
    return found;
  }
  [[noreturn]] void usage(int status, const char* bad = nullptr) const {
    FILE* out = status ? stderr : stdout;
    if (bad) std::fprintf(out, "%s: bad argument '%s'\n", program_name(), bad);
    std::fprintf(out, "usage: %s [--seconds N] [--readers N] [--seed N]%s\n", program_name(),
                 usage_extra_);
    std::exit(status);
  }
  const char* usage_extra_;
  std::vector<const char*> known_;
  std::vector<Value> values_;
};

// xoshiro256** seeded through splitmix64: fast, and good enough that the
// writer's choices cover the index space evenly. One per thread.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& w : s_) w = splitmix(seed);
  }
  uint64_t next() {
    uint64_t r = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, n); n == 0 means the whole 64-bit range.
  uint64_t below(uint64_t n) {
    if (n == 0) return next();
    return uint64_t((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [lo, hi], hi >= lo.
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability 1/n.
  bool one_in(uint64_t n) { return below(n) == 0; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// A point in time the run must not pass.
class Deadline {
 public:
  explicit Deadline(double seconds)
      : end_(std::chrono::steady_clock::now() +
             std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(seconds))) {}
  bool passed() const { return std::chrono::steady_clock::now() >= end_; }

 private:
  std::chrono::steady_clock::time_point end_;
};

// Seconds since `start`, for the summaries.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace rcuvm::stress

#endif  // RCUVM_STRESS_STRESS_UTIL_H_
