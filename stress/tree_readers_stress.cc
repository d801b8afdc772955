// tree_readers_stress: lockless readers against one writer that stores,
// inserts, erases, replaces in place, overwrites with spanning stores, and
// grows the tree to height 5+ and shrinks it back to a single leaf, over and
// over. Readers check that the eight stable entries are always there with
// their exact bounds and values, that a full cursor iteration in one read
// section is ordered and sees each stable entry exactly once, and that every
// value they meet is alive and was stored for a range covering where it was
// found. See tree_churn.h for the layout and every check.
//
//   tree_readers_stress --seconds 3 [--readers 4] [--seed N] [--entries 20000]
#include "tree_churn.h"

int main(int argc, char** argv) {
  return rcuvm::stress::run_churn_stress(argc, argv, /*faults=*/false);
}
