#include "moonfm/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Fault injection state, for tests.  Relaxed atomics: threads allocate
   at once (the count was a data race under ThreadSanitizer). */
static atomic_size_t fail_at;
static atomic_size_t count;

static int should_fail(void) {
  size_t c = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1;
  size_t f = atomic_load_explicit(&fail_at, memory_order_relaxed);
  return f != 0 && c == f;
}

size_t mfm_alloc_fail_at(size_t nth) {
  size_t made = atomic_exchange_explicit(&count, 0, memory_order_relaxed);
  atomic_store_explicit(&fail_at, nth, memory_order_relaxed);
  return made;
}

/* Asks for 2 MB pages (transparent huge pages, where the system leaves
   it to madvise, as Debian does) for the whole 2 MB spans of a large
   block, before it is touched: the fit reads its samples and rows at
   random over far more than the 4 KB pages' TLB reach (about 8 MB here),
   and its prefetch instructions were among the costliest lines on the
   10M set; WARP on 2 threads used about 2% less CPU with huge pages.
   Advice only; errors do not matter. */
#define HUGE_FROM ((size_t)8 << 20)
static void *advise_huge(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  if (p && bytes >= HUGE_FROM) {
    uintptr_t a = ((uintptr_t)p + ((uintptr_t)2 << 20) - 1) &
                  ~(((uintptr_t)2 << 20) - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~(((uintptr_t)2 << 20) - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
  }
#else
  (void)bytes;
#endif
  return p;
}

void *mfm_malloc(size_t size) {
  if (should_fail()) return NULL;
  return advise_huge(malloc(size ? size : 1), size);
}

void *mfm_calloc(size_t n, size_t size) {
  if (should_fail()) return NULL;
  if (n == 0 || size == 0) return calloc(1, 1);
  return advise_huge(calloc(n, size), n * size);
}

void *mfm_realloc(void *p, size_t size) {
  if (should_fail()) return NULL;
  return realloc(p, size ? size : 1);
}

void *mfm_malloc_array(size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) return NULL;
  return mfm_malloc(n * size);
}

void mfm_free(void *p) { free(p); }

void *mfm_alloc_aligned(size_t n, size_t size) {
  void *p = NULL;
  size_t bytes;
  if (size && n > SIZE_MAX / size) return NULL;
  bytes = n * size;
  /* Round up to whole cache lines so vector loops may read a full line. */
  bytes = (bytes + 63) & ~(size_t)63;
  if (bytes == 0) bytes = 64;
  if (should_fail()) return NULL;
  if (posix_memalign(&p, 64, bytes) != 0) return NULL;
  advise_huge(p, bytes);
  memset(p, 0, bytes);
  return p;
}

void mfm_free_aligned(void *p) { free(p); }
