// Links against an installed rcuvm and uses the range tree once.
#include <cstdio>

#include "rcuvm/range_tree.h"

int main() {
  int value = 7;
  rcuvm::RangeTree<int> tree({.track_gaps = true});
  if (!tree.store(0x1000, 0x1fff, &value).ok()) return 1;
  if (tree.load(0x1800) != &value) return 1;
  auto gap = tree.find_gap(0x1000, 0xffff, 0x1000);
  if (!gap.ok() || *gap != 0x2000) return 1;
  std::printf("consumer ok\n");
  return 0;
}
