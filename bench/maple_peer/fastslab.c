/* fastslab.c: a SLUB-like stand-in for the kernel harness's slab allocator,
 * for the sensitivity build of the maple peer (tree_bench_maple_fastslab).
 *
 * rcuvm's own code (Apache-2.0). It replaces tools/testing/shared/linux.c (the
 * harness's kmem_cache_*, which serves every node with posix_memalign and
 * frees it with memset + free under one mutex): LINUX-MAPLE.md, caveat 1,
 * shows that allocator dominating the maple tree's write costs, and asks for
 * writes to be compared "with both sets, or give it a comparable allocator".
 *
 * Design, roughly SLUB's per-CPU freelists: each thread keeps one magazine of
 * up to 64 free objects; a full magazine on free, or an empty one on alloc, is
 * swapped with the cache's depot under its mutex; new objects are carved from
 * 2 MiB chunks. No poisoning. GFP_NOWAIT allocations succeed, as they normally
 * do in a kernel. Memory is never returned to the system (a benchmark only).
 * One thread-local magazine serves one cache (the maple node cache); other
 * caches take the depot path under the mutex.
 */
#include "shared.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <linux/slab.h>
#include <urcu/uatomic.h>

/* Globals that the harness's linux.o defines and the other objects use. */
int nr_allocated;
int preempt_count;
int test_verbose;

enum { MAGAZINE_OBJECTS = 64, CHUNK_BYTES = 2 << 20 };

struct magazine {
  struct magazine *next;
  int count;
  void *objects[MAGAZINE_OBJECTS];
};

struct kmem_cache {
  pthread_mutex_t lock;
  unsigned int size; /* rounded up to the alignment */
  unsigned int align;
  void (*ctor)(void *);
  struct magazine *full;  /* depot: magazines holding MAGAZINE_OBJECTS */
  struct magazine *empty; /* depot: spare empty magazines */
  char *chunk;
  size_t chunk_left;
  unsigned long nr_allocated;
};

static __thread struct kmem_cache *tl_owner;
static __thread struct magazine *tl_magazine;

struct kmem_cache *kmem_cache_create(const char *name, unsigned int size, unsigned int align,
                                     unsigned int flags, void (*ctor)(void *)) {
  struct kmem_cache *c = calloc(1, sizeof(*c));

  (void)name;
  (void)flags;
  if (!c) abort();
  pthread_mutex_init(&c->lock, NULL);
  c->align = align ? align : sizeof(void *);
  c->size = (size + c->align - 1) / c->align * c->align;
  c->ctor = ctor;
  return c;
}

static struct magazine *new_magazine(void) {
  struct magazine *m = calloc(1, sizeof(*m));

  if (!m) abort();
  return m;
}

/* Carves one object from the current chunk; caller holds c->lock. */
static void *carve_locked(struct kmem_cache *c) {
  void *p;

  if (c->chunk_left < c->size) {
    size_t a = c->align > 4096 ? c->align : 4096;

    c->chunk = aligned_alloc(a, CHUNK_BYTES);
    if (!c->chunk) abort();
    c->chunk_left = CHUNK_BYTES;
  }
  p = c->chunk;
  c->chunk += c->size;
  c->chunk_left -= c->size;
  return p;
}

/* The calling thread's magazine for c, or NULL if it serves another cache. */
static struct magazine *local_magazine(struct kmem_cache *c) {
  if (!tl_owner) {
    tl_owner = c;
    tl_magazine = new_magazine();
  }
  return tl_owner == c ? tl_magazine : NULL;
}

static void *alloc_one(struct kmem_cache *c, gfp_t gfp) {
  struct magazine *m = local_magazine(c);
  void *p = NULL;

  if (m && m->count) {
    p = m->objects[--m->count];
  } else {
    pthread_mutex_lock(&c->lock);
    if (m && c->full) {
      /* Trade the empty local magazine for a full one from the depot. */
      struct magazine *f = c->full;

      c->full = f->next;
      m->next = c->empty;
      c->empty = m;
      tl_magazine = m = f;
      p = m->objects[--m->count];
    } else if (!m && c->full && c->full->count) {
      p = c->full->objects[--c->full->count];
      if (!c->full->count) {
        struct magazine *e = c->full;

        c->full = e->next;
        e->next = c->empty;
        c->empty = e;
      }
    } else {
      p = carve_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
  }
  if (c->ctor)
    c->ctor(p);
  else if (gfp & __GFP_ZERO)
    memset(p, 0, c->size);
  uatomic_inc(&c->nr_allocated);
  uatomic_inc(&nr_allocated);
  return p;
}

static void free_one(struct kmem_cache *c, void *p) {
  struct magazine *m = local_magazine(c);

  uatomic_dec(&c->nr_allocated);
  uatomic_dec(&nr_allocated);
  if (m && m->count < MAGAZINE_OBJECTS) {
    m->objects[m->count++] = p;
    return;
  }
  pthread_mutex_lock(&c->lock);
  if (m) {
    /* Trade the full local magazine for an empty one. */
    struct magazine *e = c->empty;

    if (e)
      c->empty = e->next;
    m->next = c->full;
    c->full = m;
    pthread_mutex_unlock(&c->lock);
    if (!e) e = new_magazine();
    e->count = 0;
    tl_magazine = e;
    e->objects[e->count++] = p;
    return;
  }
  if (!c->empty) c->empty = new_magazine();
  {
    struct magazine *e = c->empty;

    e->objects[e->count++] = p;
    if (e->count == MAGAZINE_OBJECTS) {
      c->empty = e->next;
      e->next = c->full;
      c->full = e;
    }
  }
  pthread_mutex_unlock(&c->lock);
}

void *kmem_cache_alloc_lru(struct kmem_cache *c, struct list_lru *lru, int gfp) {
  (void)lru;
  return alloc_one(c, (gfp_t)gfp);
}

void kmem_cache_free(struct kmem_cache *c, void *p) { free_one(c, p); }

void kmem_cache_free_bulk(struct kmem_cache *c, size_t size, void **list) {
  for (size_t i = 0; i < size; i++) free_one(c, list[i]);
}

int kmem_cache_alloc_bulk(struct kmem_cache *c, gfp_t gfp, size_t size, void **p) {
  for (size_t i = 0; i < size; i++) p[i] = alloc_one(c, gfp);
  return (int)size;
}

void kmem_cache_shrink(struct kmem_cache *c) { (void)c; }
void kmem_cache_set_non_kernel(struct kmem_cache *c, unsigned int val) {
  (void)c;
  (void)val;
}
unsigned long kmem_cache_nr_allocated(struct kmem_cache *c) { return uatomic_read(&c->nr_allocated); }
unsigned long kmem_cache_get_alloc(struct kmem_cache *c) {
  return c->size * uatomic_read(&c->nr_allocated);
}
