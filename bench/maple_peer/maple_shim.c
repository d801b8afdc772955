/* maple_shim.c: the C API of maple_shim.h over the kernel's maple tree.
 *
 * rcuvm's own code (Apache-2.0). scripts/build_maple_peer.sh compiles it
 * against the headers of Debian's linux-source-6.12 and the kernel's user-space
 * test harness (tools/testing/shared), with CONFIG_DEBUG_MAPLE_TREE off. The
 * maple tree itself is a separate translation unit (maple_tree_unit.c), so
 * every call below goes through the tree's exported functions, as in a kernel.
 */
#include "shared.h"

#include <limits.h>
#include <stdlib.h>

/* xarray.h first: it defines CONFIG_64BIT, which fixes the node layout. */
#include <linux/xarray.h>
#include <linux/maple_tree.h>

#include "maple_shim.h"

/* From the harness (tools/testing/shared/linux.c) and maple_tree_unit.c. */
extern void kmem_cache_set_non_kernel(struct kmem_cache *cachep, unsigned int val);
extern unsigned long kmem_cache_nr_allocated(struct kmem_cache *cachep);
extern struct kmem_cache *maple_peer_node_cache(void);
extern size_t maple_peer_sizeof_node(void);

struct maple_peer {
  struct maple_tree mt;
};

void maple_peer_init(void) { maple_tree_init(); }

size_t maple_peer_node_size(void) { return maple_peer_sizeof_node(); }

struct maple_peer *maple_peer_new(unsigned int flags) {
  struct maple_peer *t = malloc(sizeof(*t));
  if (!t) return NULL;
  mt_init_flags(&t->mt, flags);
  /* The harness fails every GFP_NOWAIT allocation unless given a budget; a
   * kernel normally satisfies them (LINUX-MAPLE.md, caveat 3). */
  kmem_cache_set_non_kernel(maple_peer_node_cache(), UINT_MAX);
  return t;
}

void maple_peer_destroy(struct maple_peer *t) {
  if (!t) return;
  /* Leave RCU mode first, as exit_mmap() does (LINUX-MAPLE.md, caveat 7). */
  mt_clear_in_rcu(&t->mt);
  mtree_destroy(&t->mt);
  free(t);
}

void maple_peer_set_rcu(struct maple_peer *t, int on) {
  if (on)
    mt_set_in_rcu(&t->mt);
  else
    mt_clear_in_rcu(&t->mt);
}

unsigned int maple_peer_height(struct maple_peer *t) { return mt_height(&t->mt); }

int maple_peer_store(struct maple_peer *t, unsigned long first, unsigned long last, void *value) {
  return mtree_store_range(&t->mt, first, last, value, GFP_KERNEL);
}

void *maple_peer_erase(struct maple_peer *t, unsigned long index) {
  return mtree_erase(&t->mt, index);
}

void *maple_peer_find(struct maple_peer *t, unsigned long index) {
  void *entry;

  rcu_read_lock();
  entry = mt_find(&t->mt, &index, ULONG_MAX);
  rcu_read_unlock();
  return entry;
}

void *maple_peer_load(struct maple_peer *t, unsigned long index) {
  void *entry;

  rcu_read_lock();
  entry = mtree_load(&t->mt, index);
  rcu_read_unlock();
  return entry;
}

void *maple_peer_walk(struct maple_peer *t, unsigned long index) {
  MA_STATE(mas, &t->mt, index, index);
  void *entry;

  rcu_read_lock();
  entry = mas_walk(&mas);
  rcu_read_unlock();
  return entry;
}

/* Appends entries in order after mas_expected_entries(); the caller holds the
 * destination's lock. */
static int bulk_begin(struct ma_state *mas, size_t n) { return mas_expected_entries(mas, n); }

static int bulk_end(struct ma_state *mas) {
  int ret = mas_is_err(mas) ? xa_err(mas->node) : 0;

  mas_destroy(mas);
  return ret;
}

int maple_peer_bulk(struct maple_peer *t, const struct maple_peer_entry *entries, size_t n,
                    int rcu_after) {
  MA_STATE(mas, &t->mt, 0, 0);
  size_t i;
  int ret;

  mtree_lock(&t->mt);
  ret = bulk_begin(&mas, n);
  if (!ret) {
    for (i = 0; i < n; i++) {
      mas.index = entries[i].first;
      mas.last = entries[i].last;
      mas_store(&mas, entries[i].value);
    }
    ret = bulk_end(&mas);
  }
  mtree_unlock(&t->mt);
  if (!ret && rcu_after) mt_set_in_rcu(&t->mt);
  return ret;
}

int maple_peer_bulk_from(struct maple_peer *src, struct maple_peer *dst, size_t n, int rcu_after) {
  MA_STATE(from, &src->mt, 0, 0);
  MA_STATE(to, &dst->mt, 0, 0);
  void *entry;
  int ret;

  mtree_lock(&src->mt);
  mtree_lock(&dst->mt);
  ret = bulk_begin(&to, n);
  if (!ret) {
    mas_for_each(&from, entry, ULONG_MAX) {
      to.index = from.index;
      to.last = from.last;
      mas_store(&to, entry);
    }
    ret = bulk_end(&to);
  }
  mtree_unlock(&dst->mt);
  mtree_unlock(&src->mt);
  if (!ret && rcu_after) mt_set_in_rcu(&dst->mt);
  return ret;
}

int maple_peer_dup(struct maple_peer *src, struct maple_peer *dst) {
  return __mt_dup(&src->mt, &dst->mt, GFP_KERNEL);
}

int maple_peer_fork(struct maple_peer *src, struct maple_peer *dst,
                    void *(*copy)(void *entry, void *ctx), void *ctx) {
  MA_STATE(mas, &dst->mt, 0, 0);
  void *entry;
  int ret = __mt_dup(&src->mt, &dst->mt, GFP_KERNEL);

  if (ret) return ret;
  mt_clear_in_rcu(&dst->mt);
  mtree_lock(&dst->mt);
  mas_for_each(&mas, entry, ULONG_MAX) mas_store(&mas, copy(entry, ctx));
  mtree_unlock(&dst->mt);
  mt_set_in_rcu(&dst->mt);
  return 0;
}

int maple_peer_copy_each(struct maple_peer *src, struct maple_peer *dst) {
  MA_STATE(mas, &src->mt, 0, 0);
  void *entry;
  int ret = 0;

  mtree_lock(&src->mt);
  mas_for_each(&mas, entry, ULONG_MAX) {
    ret = mtree_store_range(&dst->mt, mas.index, mas.last, entry, GFP_KERNEL);
    if (ret) break;
  }
  mtree_unlock(&src->mt);
  return ret;
}

void maple_peer_barrier(void) { rcu_barrier(); }

unsigned long maple_peer_live_nodes(void) {
  rcu_barrier();
  return kmem_cache_nr_allocated(maple_peer_node_cache());
}
