// tree_fault_stress: tree_readers_stress with the writer's allocations failing
// at random (rcuvm::FailRandomAllocations). Every write must either succeed or
// return ENOMEM and leave the tree exactly as it was (the writer compares the
// written range with its model after each refusal, and runs validate() at
// intervals), while the same lockless readers check that they never see a
// half-done write.
//
//   tree_fault_stress --seconds 3 [--readers 4] [--seed N] [--fail-one-in 12]
#include "tree_churn.h"

int main(int argc, char** argv) {
  return rcuvm::stress::run_churn_stress(argc, argv, /*faults=*/true);
}
