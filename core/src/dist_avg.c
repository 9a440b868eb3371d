/* Model averaging for data-parallel SGD (the factorization model): every
   rank trains on its own shard from the same starting point, then the
   ranks combine their changes.  A row of a parameter array (one user's
   embedding, one item's bias, an accumulator row) gets the mean of the
   changes of the ranks that changed it:
     new = base + sum_r (x_r - base) / (number of ranks whose row changed)
   so a user seen by one host keeps that host's whole update, and an item
   trained everywhere gets the average.  Plain averaging would shrink the
   first by the number of hosts. */
#include "moonfm/dist.h"

#include <string.h>

#include "moonfm/alloc.h"

struct mfm_dist_avg {
  int n;
  mfm_array arr[MFM_DIST_AVG_MAX];
  float *base[MFM_DIST_AVG_MAX];
  float *count; /* scratch: largest row count */
};

static int averaged(const mfm_array *a) {
  return a->dtype == MFM_F32 && a->rows > 0 && a->cols > 0;
}

void mfm_dist_avg_free(mfm_dist_avg *a) {
  if (!a) return;
  for (int i = 0; i < a->n; i++) mfm_free(a->base[i]);
  mfm_free(a->count);
  mfm_free(a);
}

mfm_status mfm_dist_avg_new(const mfm_array *arrays, int n,
                            mfm_dist_avg **out, mfm_err *err) {
  *out = NULL;
  if (n < 0 || n > MFM_DIST_AVG_MAX)
    return mfm_err_set(err, MFM_EINVAL, "average: %d arrays (at most %d)",
                       n, MFM_DIST_AVG_MAX);
  mfm_dist_avg *a = mfm_calloc(1, sizeof *a);
  if (!a) return mfm_err_set(err, MFM_ENOMEM, "average: out of memory");
  int64_t maxrows = 1;
  for (int i = 0; i < n; i++) {
    a->arr[i] = arrays[i];
    a->n = i + 1;
    if (!averaged(&arrays[i])) continue;
    size_t len = (size_t)(arrays[i].rows * arrays[i].cols);
    a->base[i] = mfm_malloc_array(len, sizeof(float));
    if (!a->base[i]) goto nomem;
    memcpy(a->base[i], arrays[i].data, len * sizeof(float));
    if (arrays[i].rows > maxrows) maxrows = arrays[i].rows;
  }
  a->count = mfm_malloc_array((size_t)maxrows, sizeof(float));
  if (!a->count) goto nomem;
  *out = a;
  return MFM_OK;
nomem:
  mfm_dist_avg_free(a);
  return mfm_err_set(err, MFM_ENOMEM, "average: out of memory for the "
                     "model's starting copy");
}

mfm_status mfm_dist_avg_sync(mfm_dist_avg *a, mfm_err *err) {
  mfm_status st;
  for (int i = 0; i < a->n; i++) {
    mfm_array *x = &a->arr[i];
    if (!a->base[i]) continue;
    float *d = x->data, *b = a->base[i], *cnt = a->count;
    int64_t rows = x->rows, cols = x->cols;
    /* d becomes the change; count the rows that changed. */
    for (int64_t r = 0; r < rows; r++) {
      int changed = 0;
      float *dr = d + r * cols;
      const float *br = b + r * cols;
      for (int64_t j = 0; j < cols; j++) {
        dr[j] -= br[j];
        changed |= dr[j] != 0.0f;
      }
      cnt[r] = (float)changed;
    }
    if ((st = mfm_dist_sum_f32(cnt, (size_t)rows, err))) return st;
    if ((st = mfm_dist_sum_f32(d, (size_t)(rows * cols), err))) return st;
    for (int64_t r = 0; r < rows; r++) {
      float inv = cnt[r] > 1 ? 1.0f / cnt[r] : 1.0f;
      float *dr = d + r * cols, *br = b + r * cols;
      for (int64_t j = 0; j < cols; j++) {
        br[j] += dr[j] * inv;
        dr[j] = br[j];
      }
    }
  }
  return MFM_OK;
}
