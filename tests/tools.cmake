# Tests that run a command-line program need that program built first.
if(TARGET treeops_test AND TARGET rcuvm-treeops)
  add_dependencies(treeops_test rcuvm-treeops)
endif()
