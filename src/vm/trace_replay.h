// src/vm/trace_replay.h: reading kernel oracle traces (../shared/oracle,
// FORMAT.md) and replaying them through the public AddressSpace API.
// Used by tools/rcuvm_replay.cc and tests/oracle_test.cc.
#ifndef RCUVM_SRC_VM_TRACE_REPLAY_H_
#define RCUVM_SRC_VM_TRACE_REPLAY_H_

#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rcuvm/address_space.h"

namespace rcuvm::oracle {

// The fields of one "m" line after the "m": START END PERMS OFFSET FILE NAME
// [VMFLAGS [ANON]].
using MLine = std::vector<std::string>;

struct Step {
  int n = 0;
  std::vector<std::string> op;  // "mmap", args...
  std::string ret;
  std::vector<MLine> maps;
  std::optional<std::vector<MLine>> child;
};

struct Trace {
  std::map<std::string, std::string> header;   // first value of each key
  std::vector<std::string> files;               // "id size rdonly|rdwr fstype"
  std::vector<MLine> initial;
  std::vector<Step> steps;
  std::string mode() const;
};

// Parses a trace; EINVAL with the line number on malformed input.
absl::StatusOr<Trace> parse_trace(std::istream& in);
absl::StatusOr<Trace> read_trace_file(const std::string& path);

// What the replay produced for one step.
struct Replayed {
  std::string ret;
  std::vector<MLine> maps;
  std::optional<std::vector<MLine>> child;
};

// Replays a trace's steps in order against a fresh AddressSpace set up from
// the header (and the initial block in open mode).
class Replayer {
 public:
  explicit Replayer(const Trace& trace);
  ~Replayer();
  // Performs step s (its op) and returns the outcome. Unknown ops give ret
  // "unsupported <op>".
  Replayed run(const Step& s);
  AddressSpace& space() { return *space_; }

 private:
  uint64_t addr_arg(const std::string& tok) const;  // arena-relative -> absolute
  std::string addr_ret(uint64_t a) const;
  std::vector<MLine> listing(const AddressSpace& as) const;

  const Trace& trace_;
  bool arena_ = false;
  uint64_t base_ = 0, size_ = 0;
  std::unique_ptr<AddressSpace> space_;
  std::map<std::string, std::shared_ptr<File>> files_;
  // Set when the header asks for something not modelled: every step then
  // answers "unsupported <why>".
  std::string unsupported_;
};

// RAM + swap of the machine the oracle traces were recorded on, in pages,
// for the overcommit heuristic (the headers do not record it). The traces
// bound it: a 4 GiB brk is refused (open-pure-s17), while 1 GiB of private
// writable memory is charged without trouble (arena traces). 2 GiB is the
// capture VM's order of size and lies inside those bounds.
inline constexpr uint64_t kCaptureRamPages = (uint64_t{2} << 30) >> 12;

// Prints a step in the "Replay output" format of FORMAT.md.
void print_step(std::ostream& out, int n, const Replayed& r);

// Returns "" when the step matches, else a description of the first
// difference. Loose: ret and START END PERMS OFFSET FILE NAME; strict adds
// VMFLAGS (as a set), ANON (where the trace has a number) and fork children.
std::string compare_step(const Step& expected, const Replayed& got, bool strict);

struct CheckResult {
  int matched = 0;   // steps replayed identically before the first difference
  int total = 0;
  std::string first_difference;  // empty when all match
};

// Replays the whole trace, optionally printing every step, and compares.
CheckResult check_trace(const Trace& trace, bool strict, std::ostream* print = nullptr);

}  // namespace rcuvm::oracle

#endif  // RCUVM_SRC_VM_TRACE_REPLAY_H_
