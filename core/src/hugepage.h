/* Transparent huge pages for the large arrays the readers grow: one fault
   per 2 MiB instead of per 4 KiB (page faults were a tenth of a read's
   time).  Advice only: any failure is ignored. */
#ifndef MOONFM_HUGEPAGE_H
#define MOONFM_HUGEPAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "moonfm/alloc.h"

static inline void mfm_advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
  const uintptr_t huge = (uintptr_t)2 << 20;
  if (!p || n < 2 * huge) return;
  uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
  uintptr_t z = ((uintptr_t)p + n) & ~(huge - 1);
  if (z > a) (void)madvise((void *)a, z - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}

/* A new block of n bytes for a large array that is written all over
   (hash slots, caches, row pointers): advised before anything writes to
   it (calloc and realloc may write to heap memory first, and pages
   written before the advice stay small), then given the first keep
   bytes of old (freed), zeros after them.  NULL on failure, old kept.
   Not for arrays filled from the front: a huge page counts whole. */
static inline void *mfm_regrow_huge(void *old, size_t keep, size_t n) {
  char *p = mfm_malloc(n ? n : 1);
  if (!p) return NULL;
  mfm_advise_huge(p, n);
  if (keep) memcpy(p, old, keep);
  if (n > keep) memset(p + keep, 0, n - keep);
  mfm_free(old);
  return p;
}

#endif
