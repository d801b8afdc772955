// rcuvm-treeops: replays range-tree operations, one a line, and prints each
// answer. The language is described in treeops.h and by --help.
//
//   rcuvm-treeops script.ops > answers.txt
//   printf 'store 1 5 7\nfind 0 100\n' | rcuvm-treeops
//
// Exit status: 0, 1 when any line failed to parse, 2 when the input could not
// be read.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "rcuvm/rcu.h"
#include "treeops.h"

namespace {

constexpr char kHelp[] = R"(usage: rcuvm-treeops [SCRIPT]   (reads standard input without SCRIPT)

Replays range-tree operations, one a line, and prints one answer a line.
Numbers are decimal or 0x-hex on input and decimal on output; values are
integers, 0 meaning null; '#' starts a comment; blank lines are ignored.

  mode alloc | mode range  optional first operation: gap tracking on or off
  store F L V              ok | error EINVAL | error ENOMEM
  insert F L V             ok | error EINVAL | error EEXIST | error ENOMEM
  erase I                  the erased value (0 if none)
  load I                   V (0 if null)
  find I MAX               F L V of the first entry overlapping [I, MAX] | none
  find_rev I MIN           F L V of the last entry overlapping [MIN, I] | none
  gap MIN MAX SIZE         lowest S with [S, S+SIZE-1] null inside [MIN, MAX]
                           | none | error EINVAL
  gap_rev MIN MAX SIZE     highest such S | none | error EINVAL
  range F L                one "F L V" line per entry overlapping [F, L], then end
  count                    number of non-null ranges
  validate                 ok | invalid: <why>
  dup                      continue on an O(n) duplicate, checked equal -> ok
  echo TEXT                prints TEXT

A line that does not parse prints "error parse: <line number>"; the exit
status is then 1.
)";

// Reads all of `f` into a string; false on a read error.
bool slurp(std::FILE* f, std::string& text) {
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  return !std::ferror(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2) {
    std::fputs("usage: rcuvm-treeops [SCRIPT]; see --help\n", stderr);
    return 2;
  }
  if (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h"))) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  std::FILE* in = stdin;
  if (argc == 2 && std::strcmp(argv[1], "-") != 0) {
    in = std::fopen(argv[1], "rb");
    if (!in) {
      std::fprintf(stderr, "rcuvm-treeops: cannot open %s: %s\n", argv[1], std::strerror(errno));
      return 2;
    }
  }
  std::string script;
  bool read_ok = slurp(in, script);
  if (in != stdin) std::fclose(in);
  if (!read_ok) {
    std::fputs("rcuvm-treeops: read error\n", stderr);
    return 2;
  }

  uint64_t errors = rcuvm::treeops::run_script<rcuvm::treeops::TreeBackend>(
      script, [](std::string& out) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
      });
  std::fflush(stdout);
  // Waits for deferred frees so leak checkers see a clean exit.
  rcuvm::rcu::drain();
  return errors ? 1 : 0;
}
