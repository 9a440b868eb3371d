/* Internal to libmoonfm: the rank pass of evaluation (eval_rank.c), used
   by eval.c for AUC and MRR. */
#ifndef MOONFM_EVAL_RANK_H
#define MOONFM_EVAL_RANK_H

#include <stdint.h>

/* Sums of the rank pass: twice the test scores above each item plus those
   equal to it, the items above every test score, the items equal to the
   highest test score (the last only from cells holding test scores, where
   such items must be). */
typedef struct mfm_rank_sums {
  int64_t acc, above, eq;
} mfm_rank_sums;

/* Size of the cells buffer mfm_rank_pass takes (int32 entries). */
#define MFM_RANK_CELL_CHUNK 256

/* Sorts q[0..m) ascending (NaN-free or not; avx2 from mfm_kernels_avx2). */
void mfm_rank_sort(float *q, int32_t m, int avx2);

/* Twice the number of q (sorted, m) above s, plus the number equal to s. */
int64_t mfm_rank_f2(const float *q, int32_t m, float s);

/* The sums over all n items of row for the sorted test scores q[0..m)
   (m >= 1), into r.  With ib, the pass adds the item bias to row first and
   stores it back; when the test scores are not all finite the caller must
   have added it (ib NULL), since an excluded item at -inf must stay
   exactly that in the exact counting.  r->above and r->eq (for MRR) may
   be left 0 when mrr is 0.  table holds gmax + 2 int32, cells
   MFM_RANK_CELL_CHUNK.  Returns 1 when it left in gm[0..32) the top-k
   group maxima of row[0 .. n rounded down to 32) (see mfm_heap_scan_max),
   items at -inf or NaN passed over; AVX2 only. */
int mfm_rank_pass(float *row, const float *ib, int32_t n, const float *q,
                  int32_t m, int32_t *table, int32_t gmax, int32_t *cells,
                  int avx2, int mrr, float *gm, mfm_rank_sums *r);

#endif
