/* maple_shim.h: a small C API over the Linux maple tree (lib/maple_tree.c),
 * built in user space by scripts/build_maple_peer.sh from Debian's
 * linux-source-6.12, so that bench/tree_bench.cc can run the kernel's tree as a
 * peer in the same process as rcuvm.
 *
 * This header and maple_shim.c are rcuvm's own code (Apache-2.0). The kernel
 * sources they are compiled against are GPL-2.0 and never enter the
 * repository; the binary that links them (tree_bench_maple) is built only on
 * the machine, outside CI, and never distributed.
 *
 * Context: every call that reads or writes a tree must come from a thread
 * registered with liburcu (urcu-memb), e.g. through rcuvm::rcu::ThreadScope or
 * rcuvm::rcu::ensure_registered(): the shim never registers threads itself, so
 * rcuvm and the kernel's tree share one reader registry.
 */
#ifndef RCUVM_BENCH_MAPLE_SHIM_H_
#define RCUVM_BENCH_MAPLE_SHIM_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct maple_peer;

/* Tree flags: the kernel's MT_FLAGS_ALLOC_RANGE and MT_FLAGS_USE_RCU. */
enum {
  MAPLE_PEER_ALLOC_RANGE = 0x01,
  MAPLE_PEER_USE_RCU = 0x02,
};

struct maple_peer_entry {
  unsigned long first;
  unsigned long last; /* inclusive */
  void *value;
};

/* Creates the node cache (maple_tree_init). Call once, before anything else. */
void maple_peer_init(void);
/* Returns sizeof(struct maple_node): 256 on a correct 64-bit build. */
size_t maple_peer_node_size(void);

/* An empty tree with the given flags; null on allocation failure. Also lets
 * GFP_NOWAIT allocations succeed, as they normally do in a kernel. */
struct maple_peer *maple_peer_new(unsigned int flags);
/* Leaves RCU mode (as exit_mmap does), destroys the tree and frees it. */
void maple_peer_destroy(struct maple_peer *t);
void maple_peer_set_rcu(struct maple_peer *t, int on);
unsigned int maple_peer_height(struct maple_peer *t);

/* Writers: take the tree's lock (mtree_*). Return 0 or a negative errno. */
int maple_peer_store(struct maple_peer *t, unsigned long first, unsigned long last, void *value);
void *maple_peer_erase(struct maple_peer *t, unsigned long index);

/* Readers, each inside rcu_read_lock(): mt_find(&index, ULONG_MAX) (the first
 * entry ending at or above index, find_vma), mtree_load, and mas_walk (the
 * lock_vma_under_rcu path). */
void *maple_peer_find(struct maple_peer *t, unsigned long index);
void *maple_peer_load(struct maple_peer *t, unsigned long index);
void *maple_peer_walk(struct maple_peer *t, unsigned long index);

/* Bulk build of an empty tree created without MAPLE_PEER_USE_RCU:
 * mas_expected_entries(n) then in-order mas_store, mas_destroy; switches the
 * tree to RCU mode afterwards when rcu_after is set. */
int maple_peer_bulk(struct maple_peer *t, const struct maple_peer_entry *entries, size_t n,
                    int rcu_after);
/* The same, reading the entries from src (under src's lock). */
int maple_peer_bulk_from(struct maple_peer *src, struct maple_peer *dst, size_t n, int rcu_after);

/* __mt_dup(src, dst): dst must be empty and have src's flags. */
int maple_peer_dup(struct maple_peer *src, struct maple_peer *dst);
/* Fork-like (6.12 dup_mmap): __mt_dup, mt_clear_in_rcu(dst), mas_for_each +
 * mas_store(copy(entry, ctx)) on every entry, mt_set_in_rcu(dst). */
int maple_peer_fork(struct maple_peer *src, struct maple_peer *dst,
                    void *(*copy)(void *entry, void *ctx), void *ctx);
/* Iterates src (its lock held) and mtree_store_range()s each entry into dst. */
int maple_peer_copy_each(struct maple_peer *src, struct maple_peer *dst);

/* rcu_barrier(): waits until every node freed after a grace period is freed. */
void maple_peer_barrier(void);
/* Live maple nodes (kmem_cache_nr_allocated of the node cache), after a barrier. */
unsigned long maple_peer_live_nodes(void);

#ifdef __cplusplus
}
#endif

#endif /* RCUVM_BENCH_MAPLE_SHIM_H_ */
