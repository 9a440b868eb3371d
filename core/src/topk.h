/* Internal to libmoonfm: the k-heap, the threshold scan, and the engine
   that scores blocks of users against all items (one sgemm per block) on
   worker threads.  Evaluation (eval.c) and recommend (topk.c) share it. */
#ifndef MOONFM_TOPK_H
#define MOONFM_TOPK_H

#include <stdint.h>

#include "moonfm/eval.h"

/* x86-64 builds (gcc or clang) carry AVX2 kernels chosen at run time, by
   a plain CPU test rather than target_clones (whose ifunc symbols clang 14
   leaves undefined in a static library); elsewhere, and on CPUs without
   AVX2, the portable loops run.  Both give the same results. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MFM_X86_KERNELS 1
#endif

/* 1 when the AVX2 kernels may run: the CPU has AVX2 and the portable
   loops are not forced.  Thread-safe. */
int mfm_kernels_avx2(void);
/* Forces the portable loops (on != 0) or lets the CPU decide (0); for
   tests that compare both paths.  Not meant to change during a run. */
void mfm_kernels_force_portable(int on);

/* A min-heap of the best k (score, index) seen so far; its root is the
   worst kept, "worse" meaning lower score, or equal score and higher
   index.  Buffers are the caller's (k floats, k ints). */
typedef struct mfm_heap {
  int32_t k, n;
  float *score;
  int32_t *index;
} mfm_heap;

void mfm_heap_init(mfm_heap *h, float *score, int32_t *index, int32_t k);
/* Offers (s, j); keeps it if the heap is not full or it beats the root. */
void mfm_heap_push(mfm_heap *h, float s, int32_t j);
/* Sorts the kept entries best first, in place (the heap is consumed). */
void mfm_heap_sort(mfm_heap *h);

/* Offers every item j of row[0..n) whose mark[j] has bit 1 clear (mark may
   be NULL) to an empty or partly filled heap; the result is the same as
   offering them in increasing j.  Items that cannot beat the root are
   passed over by vectorised compares, so the cost is close to one read of
   row.  Fastest when marked items also score -inf (the AVX2 path first
   takes a threshold from group maxima that marked items would raise). */
void mfm_heap_scan(mfm_heap *h, const float *row, int32_t n,
                   const uint8_t *mark);
/* The same, given gm: the largest of each group {j : j mod 32 = l} of
   row[0 .. n rounded down to 32), NaN passed over (as _mm256_max_ps(v, g)
   keeps g), when a pass that already read the row found them; NULL when
   not known. */
void mfm_heap_scan_max(mfm_heap *h, const float *row, int32_t n,
                       const uint8_t *mark, const float *gm);

/* The k best of row[0..n) under the same rules (mark and gm as for
   mfm_heap_scan_max), sorted best first as mfm_heap_sort leaves them;
   the heap's previous entries are dropped.  The same result as
   mfm_heap_scan_max then mfm_heap_sort, without a heap when the
   threshold leaves few candidates. */
void mfm_heap_best(mfm_heap *h, const float *row, int32_t n,
                   const uint8_t *mark, const float *gm);

/* The block engine.  For each user users[pos] (pos in [0, n)), the row
   callback receives that user's scores against all items, dot + item bias
   when item_bias: n_items floats, thread-private and writable.  Users are
   scored `block` at a time (one sgemm); blocks are shared by the threads
   in order of a counter.  The callback returns MFM_OK or stops the run. */
typedef struct mfm_engine {
  const mfm_factors *f;
  const int32_t *users;
  int32_t n;
  int32_t block; /* resolved by mfm_engine_setup */
  int threads;   /* resolved by mfm_engine_setup */
  int item_bias;
  mfm_status (*row)(void *ctx, int tid, int32_t blk, int32_t pos,
                    int32_t user, float *row);
  void *ctx;
} mfm_engine;

/* Resolves block (0 = automatic) and threads (<= 0 = all CPUs, at most
   one per block); returns the number of blocks. */
int32_t mfm_engine_setup(mfm_engine *e, int32_t block, int threads);
/* Runs it; MFM_ENOMEM, MFM_ECANCELED, or the first callback failure. */
mfm_status mfm_engine_run(const mfm_engine *e, mfm_err *err);

#endif
