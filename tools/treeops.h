// treeops.h: the range-tree operation language of rcuvm-treeops, header-only so
// that the tool, the fuzz target and the tests share one parser and one
// executor.
//
// Language (one operation a line, one answer a line; numbers are decimal or
// 0x-hex on input, decimal on output; `#` starts a comment; blank lines are
// ignored; values are integers and 0 is null):
//
//   mode alloc | mode range  optional first operation: gap tracking on or off
//   store F L V              ok | error EINVAL | error ENOMEM
//   insert F L V             ok | error EINVAL | error EEXIST | error ENOMEM
//   erase I                  the erased value (0 if none) | error ENOMEM
//   load I                   V (0 if null)
//   find I MAX               F L V of the first entry overlapping [I, MAX] | none
//   find_rev I MIN           F L V of the last entry overlapping [MIN, I] | none
//   gap MIN MAX SIZE         lowest S with [S, S+SIZE-1] null inside [MIN, MAX]
//                            | none | error EINVAL (SIZE 0 or MIN > MAX)
//   gap_rev MIN MAX SIZE     highest such S | none | error EINVAL
//   range F L                "F L V" per entry overlapping [F, L], then "end"
//   count                    number of non-null ranges
//   validate                 ok | invalid: <why>
//   dup                      go on with an O(n) duplicate, checked equal: ok |
//                            error ENOMEM | invalid: <why>
//   echo TEXT                TEXT, verbatim (labels in golden outputs)
//
// F and L printed for an entry are always its whole stored range. A line that
// does not parse answers `error parse: <line number>`.
//
// The executor is a template over a backend so the same formatting runs the
// real tree (TreeBackend below) and the reference model (tests/treeops_model.h):
// differential checks then compare answer text, which is also what a failing
// check prints.
#ifndef RCUVM_TOOLS_TREEOPS_H_
#define RCUVM_TOOLS_TREEOPS_H_

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "rcuvm/range_tree.h"
#include "rcuvm/rcu.h"
#include "rcuvm/status.h"

namespace rcuvm::treeops {

enum class OpKind : uint8_t {
  kMode, kStore, kInsert, kErase, kLoad, kFind, kFindRev, kGap, kGapRev,
  kRange, kCount, kValidate, kDup, kEcho,
};

// One parsed line. Operands a, b, c follow the order of the language.
struct Op {
  OpKind kind = OpKind::kCount;
  uint64_t a = 0;
  uint64_t b = 0;
  uint64_t c = 0;
  bool alloc = false;     // kMode: gap tracking on
  std::string_view text{};  // kEcho: points into the parsed line
};

// An entry as the language sees it: the value is an integer, 0 is null.
struct Entry {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t value = 0;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// The answer of a fallible call: err is 0 or a positive errno; EBUSY from a gap
// search means "no such gap" and prints as `none`.
struct Result {
  int err = 0;
  uint64_t value = 0;
};

// ---------------------------------------------------------------- parsing

inline std::string_view trim_comment(std::string_view line) {
  size_t hash = line.find('#');
  return hash == std::string_view::npos ? line : line.substr(0, hash);
}

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits off the next whitespace-separated token; empty when none is left.
inline std::string_view next_token(std::string_view& rest) {
  size_t i = 0;
  while (i < rest.size() && is_space(rest[i])) ++i;
  size_t j = i;
  while (j < rest.size() && !is_space(rest[j])) ++j;
  std::string_view token = rest.substr(i, j - i);
  rest.remove_prefix(j);
  return token;
}

// Parses a decimal or 0x-hex uint64; rejects signs, junk and overflow.
inline bool parse_number(std::string_view s, uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end == s.data() + s.size();
}

struct Keyword {
  std::string_view name;
  OpKind kind;
  int operands;
};

inline constexpr Keyword kKeywords[] = {
    {"store", OpKind::kStore, 3},   {"insert", OpKind::kInsert, 3},
    {"erase", OpKind::kErase, 1},   {"load", OpKind::kLoad, 1},
    {"find", OpKind::kFind, 2},     {"find_rev", OpKind::kFindRev, 2},
    {"gap", OpKind::kGap, 3},       {"gap_rev", OpKind::kGapRev, 3},
    {"range", OpKind::kRange, 2},   {"count", OpKind::kCount, 0},
    {"validate", OpKind::kValidate, 0}, {"dup", OpKind::kDup, 0},
};

enum class Parsed { kBlank, kOp, kError };

// Parses one line (without its newline) into `op`.
inline Parsed parse_line(std::string_view line, Op& op) {
  std::string_view rest = line;
  std::string_view word = next_token(rest);
  if (word == "echo") {
    // Echo keeps its text whole, '#' included, minus one separating space.
    op = Op{.kind = OpKind::kEcho};
    if (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
    while (!rest.empty() && rest.back() == '\r') rest.remove_suffix(1);
    op.text = rest;
    return Parsed::kOp;
  }
  rest = trim_comment(line);
  word = next_token(rest);
  if (word.empty()) return Parsed::kBlank;
  if (word == "mode") {
    std::string_view m = next_token(rest);
    if ((m != "alloc" && m != "range") || !next_token(rest).empty()) return Parsed::kError;
    op = Op{.kind = OpKind::kMode, .alloc = m == "alloc"};
    return Parsed::kOp;
  }
  for (const Keyword& k : kKeywords) {
    if (k.name != word) continue;
    op = Op{.kind = k.kind};
    uint64_t* operands[3] = {&op.a, &op.b, &op.c};
    for (int i = 0; i < k.operands; ++i) {
      if (!parse_number(next_token(rest), *operands[i])) return Parsed::kError;
    }
    return next_token(rest).empty() ? Parsed::kOp : Parsed::kError;
  }
  return Parsed::kError;
}

// Writes `op` back as a line of the language (no newline); used to turn
// generated or fuzzed operations into reproducible scripts.
inline std::string format_op(const Op& op) {
  if (op.kind == OpKind::kMode) return op.alloc ? "mode alloc" : "mode range";
  if (op.kind == OpKind::kEcho) return "echo " + std::string(op.text);
  for (const Keyword& k : kKeywords) {
    if (k.kind != op.kind) continue;
    std::string s(k.name);
    const uint64_t operands[3] = {op.a, op.b, op.c};
    for (int i = 0; i < k.operands; ++i) s += ' ' + std::to_string(operands[i]);
    return s;
  }
  return "?";
}

// ---------------------------------------------------------------- answers

inline const char* errno_name(int err) {
  switch (err) {
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case EBUSY: return "EBUSY";
    case EIO: return "EIO";
    default: return nullptr;
  }
}

inline void append_number(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

inline void append_error(std::string& out, int err) {
  out += "error ";
  if (const char* name = errno_name(err)) {
    out += name;
  } else {
    out += 'E';
    append_number(out, uint64_t(err));
  }
}

inline void append_entry(std::string& out, const Entry& e) {
  append_number(out, e.first);
  out += ' ';
  append_number(out, e.last);
  out += ' ';
  append_number(out, e.value);
}

// Keeps a reason on one line so each answer stays one line.
inline void append_reason(std::string& out, std::string_view why) {
  for (char c : why) out += (c == '\n' || c == '\r') ? ' ' : c;
}

// ---------------------------------------------------------------- executor

// Runs operations on a Backend and appends one answer per line to `out`.
// The backend is built on the first operation, so a leading `mode` chooses
// its options; a `mode` after that is a parse error.
template <typename Backend>
class Executor {
 public:
  explicit Executor(std::string* out) : out_(out) {}

  // Returns false (and prints nothing) for a misplaced mode line.
  bool run(const Op& op) {
    if (op.kind == OpKind::kMode) {
      if (backend_) return false;
      backend_.emplace(op.alloc);
      return true;
    }
    if (!backend_) backend_.emplace(false);
    answer(op);
    *out_ += '\n';
    return true;
  }

  Backend& backend() {
    if (!backend_) backend_.emplace(false);
    return *backend_;
  }

 private:
  void answer(const Op& op) {
    Backend& b = *backend_;
    std::string& out = *out_;
    switch (op.kind) {
      case OpKind::kStore: return status(b.store(op.a, op.b, op.c));
      case OpKind::kInsert: return status(b.insert(op.a, op.b, op.c));
      case OpKind::kErase: {
        Result r = b.erase(op.a);
        return r.err ? append_error(out, r.err) : append_number(out, r.value);
      }
      case OpKind::kLoad: return append_number(out, b.load(op.a));
      case OpKind::kFind: return entry(b.find(op.a, op.b));
      case OpKind::kFindRev: return entry(b.find_rev(op.a, op.b));
      case OpKind::kGap: return gap(b.gap(op.a, op.b, op.c));
      case OpKind::kGapRev: return gap(b.gap_rev(op.a, op.b, op.c));
      case OpKind::kRange:
        b.range(op.a, op.b, [&out](const Entry& e) {
          append_entry(out, e);
          out += '\n';
        });
        out += "end";
        return;
      case OpKind::kCount: return append_number(out, b.count());
      case OpKind::kValidate: return reason(b.validate());
      case OpKind::kDup: {
        std::string why;
        int err = b.dup(&why);
        if (err > 0) return append_error(out, err);
        return reason(why);
      }
      case OpKind::kEcho: out += op.text; return;
      case OpKind::kMode: return;
    }
  }
  void status(int err) {
    if (err) return append_error(*out_, err);
    *out_ += "ok";
  }
  void entry(const std::optional<Entry>& e) {
    if (!e) {
      *out_ += "none";
      return;
    }
    append_entry(*out_, *e);
  }
  void gap(const Result& r) {
    if (r.err == EBUSY) {
      *out_ += "none";
      return;
    }
    if (r.err) return append_error(*out_, r.err);
    append_number(*out_, r.value);
  }
  void reason(const std::string& why) {
    if (why.empty()) {
      *out_ += "ok";
      return;
    }
    *out_ += "invalid: ";
    append_reason(*out_, why);
  }

  std::string* out_;
  std::optional<Backend> backend_;
};

// Runs a whole script. `flush(out)` is called whenever `out` grows past
// `flush_at` bytes and once at the end; it must consume (clear) the text.
// Returns the number of lines that failed to parse.
template <typename Backend, typename Flush>
uint64_t run_script(std::string_view script, Flush&& flush, size_t flush_at = 1 << 16) {
  std::string out;
  out.reserve(flush_at + 4096);
  Executor<Backend> exec(&out);
  uint64_t errors = 0;
  uint64_t line_no = 0;
  while (!script.empty()) {
    size_t nl = script.find('\n');
    std::string_view line = script.substr(0, nl);
    script.remove_prefix(nl == std::string_view::npos ? script.size() : nl + 1);
    ++line_no;
    Op op;
    Parsed p = parse_line(line, op);
    if (p == Parsed::kBlank) continue;
    if (p == Parsed::kError || !exec.run(op)) {
      ++errors;
      out += "error parse: ";
      append_number(out, line_no);
      out += '\n';
    }
    if (out.size() >= flush_at) flush(out);
  }
  flush(out);
  return errors;
}

// ---------------------------------------------------------------- the tree

// The real RangeTree behind the language; values are integers cast to void*.
class TreeBackend {
 public:
  using Tree = RangeTree<void>;

  explicit TreeBackend(bool track_gaps, bool rcu = true)
      : options_{.track_gaps = track_gaps, .rcu = rcu}, tree_(std::make_unique<Tree>(options_)) {}

  static void* ptr(uint64_t v) { return reinterpret_cast<void*>(static_cast<uintptr_t>(v)); }
  static uint64_t num(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }
  static Entry entry(const Tree::Entry& e) { return {e.first, e.last, num(e.value)}; }
  static std::optional<Entry> entry(const std::optional<Tree::Entry>& e) {
    if (!e) return std::nullopt;
    return entry(*e);
  }

  int store(uint64_t f, uint64_t l, uint64_t v) { return errno_of(tree_->store(f, l, ptr(v))); }
  int insert(uint64_t f, uint64_t l, uint64_t v) { return errno_of(tree_->insert(f, l, ptr(v))); }
  Result erase(uint64_t i) {
    auto r = tree_->erase(i);
    if (!r.ok()) return {errno_of(r.status()), 0};
    return {0, num(*r)};
  }
  uint64_t load(uint64_t i) const { return num(tree_->load(i)); }
  std::optional<Entry> find(uint64_t i, uint64_t max) const { return entry(tree_->find(i, max)); }
  std::optional<Entry> find_rev(uint64_t i, uint64_t min) const {
    return entry(tree_->find_rev(i, min));
  }
  Result gap(uint64_t min, uint64_t max, uint64_t size) const {
    return result(tree_->find_gap(min, max, size));
  }
  Result gap_rev(uint64_t min, uint64_t max, uint64_t size) const {
    return result(tree_->find_gap_rev(min, max, size));
  }
  template <typename Fn>
  void range(uint64_t f, uint64_t l, Fn&& fn) const {
    rcu::ReadGuard guard;
    auto c = tree_->cursor(f);
    while (auto e = c.next(l)) fn(entry(*e));
  }
  uint64_t count() const { return tree_->stats().entries; }
  std::string validate() const {
    absl::Status s = tree_->validate();
    if (s.ok()) return {};
    return s.message().empty() ? s.ToString() : std::string(s.message());
  }

  // Replaces the tree by a dup_into() copy after checking that the copy holds
  // the same entries and validates. Returns an errno, or -1 with `why` set
  // when the copy is wrong (the original is kept then), or 0.
  int dup(std::string* why) {
    auto copy = std::make_unique<Tree>(options_);
    absl::Status s = tree_->dup_into(*copy);
    if (!s.ok()) return errno_of(s);
    if (std::string diff = differences(*tree_, *copy); !diff.empty()) {
      *why = "dup differs: " + diff;
      return -1;
    }
    if (absl::Status v = copy->validate(); !v.ok()) {
      *why = "dup invalid: " + std::string(v.message());
      return -1;
    }
    tree_ = std::move(copy);
    return 0;
  }

  Tree& tree() { return *tree_; }

  // Describes the first difference between the entries of a and b, or "".
  static std::string differences(const Tree& a, const Tree& b) {
    rcu::ReadGuard guard;
    auto ca = a.cursor(0);
    auto cb = b.cursor(0);
    for (uint64_t n = 0;; ++n) {
      auto ea = ca.next();
      auto eb = cb.next();
      if (!ea && !eb) break;
      if (ea && eb && *ea == *eb) continue;
      std::string s = "entry " + std::to_string(n) + ": ";
      s += ea ? describe(entry(*ea)) : "none";
      s += " vs ";
      s += eb ? describe(entry(*eb)) : "none";
      return s;
    }
    if (a.stats().entries != b.stats().entries) return "entry counts differ";
    return {};
  }

 private:
  static std::string describe(const Entry& e) {
    std::string s;
    append_entry(s, e);
    return s;
  }
  static Result result(const absl::StatusOr<uint64_t>& r) {
    if (!r.ok()) return {errno_of(r.status()), 0};
    return {0, *r};
  }

  TreeOptions options_;
  std::unique_ptr<Tree> tree_;
};

}  // namespace rcuvm::treeops

#endif  // RCUVM_TOOLS_TREEOPS_H_
