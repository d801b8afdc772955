// libFuzzer target: decodes the input into range-tree operations, runs them on
// the tree and on the reference model, and aborts on the first difference or
// failed validate(), printing a treeops script that reproduces it.
// Build and run: see fuzz/README.md.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include "treeops_decoder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string failure = rcuvm::treeops::fuzzing::run_differential(std::span<const uint8_t>(data, size));
  if (!failure.empty()) {
    std::fprintf(stderr, "%s", failure.c_str());
    std::abort();
  }
  return 0;
}
