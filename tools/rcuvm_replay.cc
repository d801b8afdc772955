// rcuvm-replay: replays a kernel oracle trace (../shared/oracle/FORMAT.md)
// through the AddressSpace API.
//
//   rcuvm-replay TRACE                   print every step: step N, ret, m lines, end
//   rcuvm-replay --check TRACE           compare with the trace (START END PERMS
//                                        OFFSET FILE NAME and ret), report the
//                                        first difference
//   rcuvm-replay --check --strict TRACE  also VmFlags (as a set), ANON counts
//                                        and fork children
//   --quiet                              with --check: do not print the steps
//
// With --check the last line is "steps matched: M/N", M being the steps that
// matched before the first difference. Exit status: 0 all match, 1 a
// difference, 2 bad usage or input.
#include <cstring>
#include <iostream>
#include <string>

#include "../src/vm/trace_replay.h"

int main(int argc, char** argv) {
  bool check = false, strict = false, quiet = false;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--check")) check = true;
    else if (!std::strcmp(argv[i], "--strict")) strict = true;
    else if (!std::strcmp(argv[i], "--quiet")) quiet = true;
    else if (argv[i][0] == '-' && argv[i][1]) {
      std::cerr << "unknown option " << argv[i] << "\n";
      return 2;
    } else path = argv[i];
  }
  if (path.empty()) {
    std::cerr << "usage: rcuvm-replay [--check [--strict] [--quiet]] TRACE\n";
    return 2;
  }
  auto trace = rcuvm::oracle::read_trace_file(path);
  if (!trace.ok()) {
    std::cerr << "error: " << trace.status() << "\n";
    return 2;
  }
  auto res = rcuvm::oracle::check_trace(*trace, strict, (check && quiet) ? nullptr : &std::cout);
  if (!check) return 0;
  if (!res.first_difference.empty()) std::cout << res.first_difference;
  std::cout << "steps matched: " << res.matched << "/" << res.total << "\n";
  return res.matched == res.total ? 0 : 1;
}
