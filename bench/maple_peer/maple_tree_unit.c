/* maple_tree_unit.c: compiles the kernel's lib/maple_tree.c as one translation
 * unit for the user-space peer, and exposes its node cache to maple_shim.c.
 *
 * rcuvm's own code (Apache-2.0); the file it includes is GPL-2.0 and comes from
 * Debian's linux-source-6.12 package on the machine that builds the peer
 * (scripts/build_maple_peer.sh), never from this repository.
 *
 * CONFIG_DEBUG_MAPLE_TREE stays undefined (LINUX-MAPLE.md, caveat 2), and
 * <linux/xarray.h> comes first so that CONFIG_64BIT is defined and the tree
 * gets its 64-bit layout of 256-byte nodes (recipe step 3).
 */
#include "shared.h"

#include <stdlib.h>
#include <time.h>

#include <linux/init.h>
#include <linux/xarray.h>

#define CONFIG_MAPLE_SEARCH
#define MAPLE_32BIT (MAPLE_NODE_SLOTS > 31)

#include "maple_tree.c"

_Static_assert(sizeof(struct maple_node) == 256,
               "maple_tree.c built with its 32-bit layout: CONFIG_64BIT is not defined");

struct kmem_cache *maple_peer_node_cache(void) { return maple_node_cache; }
size_t maple_peer_sizeof_node(void) { return sizeof(struct maple_node); }
