/* All heap use of libmoonfm goes through these, so that tests can make the
   Nth allocation fail (fault injection) and check that nothing leaks. */
#ifndef MOONFM_ALLOC_H
#define MOONFM_ALLOC_H

#include <stddef.h>

/* malloc/calloc/realloc/free with overflow checks; NULL on failure. */
void *mfm_malloc(size_t size);
void *mfm_calloc(size_t n, size_t size);
void *mfm_realloc(void *p, size_t size);
void *mfm_malloc_array(size_t n, size_t size); /* NULL if n*size overflows */
void mfm_free(void *p);

/* 64-byte aligned (cache line, AVX-512), zero-filled; free with
   mfm_free_aligned.  NULL on failure or overflow. */
void *mfm_alloc_aligned(size_t n, size_t size);
void mfm_free_aligned(void *p);

/* Fault injection: make the nth allocation from now on fail (1 = the next
   one); 0 turns it off.  Returns how many allocations were made since the
   last call.  Not thread-safe; for tests only. */
size_t mfm_alloc_fail_at(size_t nth);

#endif
