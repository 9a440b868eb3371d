/* Distributed implicit ALS.  Rank r owns a contiguous block of users and
   one of items.  Each half-iteration: the fixed side's Gram matrix is the
   sum of the ranks' block Grams (allreduce of k x k floats); each rank
   solves its own rows; the new rows are gathered on every rank
   (allgather), so every rank holds the whole model afterwards.  Only the
   order of the Gram sums differs from one host, so the factors agree with
   a single-host run to float rounding. */
#include "moonfm/dist.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "moonfm/alloc.h"
#include "moonfm/stop.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The whole Gram of one side: block part, summed over ranks. */
static mfm_status gram(mfm_als *m, int which, const int64_t *off, float *g,
                       mfm_err *err) {
  int32_t k;
  mfm_als_shape(m, NULL, NULL, &k);
  int r = mfm_dist_rank();
  mfm_status st = mfm_als_gram_part(m, which, (int32_t)off[r],
                                    (int32_t)off[r + 1], g);
  if (st) return mfm_err_set(err, st, "als: bad block");
  return mfm_dist_sum_f32(g, (size_t)k * k, err);
}

/* Solves this rank's rows of a side, agrees with the others on whether
   anyone was stopped, then shares the rows.  *stopped = 1 when any rank
   was. */
static mfm_status half(mfm_als *m, int which, const mfm_csr *rows,
                       const float *g, const int64_t *off, float *f,
                       int *stopped, mfm_err *err) {
  int32_t k;
  mfm_als_shape(m, NULL, NULL, &k);
  int r = mfm_dist_rank();
  mfm_err e2;
  mfm_status st = mfm_als_solve_part(m, which, rows, g, (int32_t)off[r],
                                     (int32_t)off[r + 1], &e2);
  if (st && st != MFM_ECANCELED) {
    if (err) *err = e2;
    return st;
  }
  /* Every rank reaches this point, stopped or not, so the collectives
     stay matched. */
  int any = st == MFM_ECANCELED || mfm_stop_requested();
  if ((st = mfm_dist_max_int(&any, err))) return st;
  /* A rank stopped by another's SIGTERM is stopped too (its recipe then
     saves, as the others do). */
  if (any) mfm_stop_request();
  *stopped = any;
  if (any) return MFM_OK;
  return mfm_dist_allgather_rows(f, (size_t)k, off, err);
}

mfm_status mfm_dist_als_fit(mfm_als *m, const mfm_csr *ui,
                            const mfm_csr *iu, int32_t iterations,
                            mfm_als_report *report, mfm_err *err) {
  if (report) {
    memset(report, 0, sizeof *report);
    report->loss = NAN;
    report->iteration = mfm_als_iteration(m);
  }
  int32_t nu, ni, k;
  mfm_als_shape(m, &nu, &ni, &k);
  if (ui->n_rows > nu || ui->n_cols > ni || iu->n_rows > ni ||
      iu->n_cols > nu)
    return mfm_err_set(err, MFM_EINVAL, "dist als: interactions larger than "
                       "the model (%d x %d)", nu, ni);
  int size = mfm_dist_size(), rank = mfm_dist_rank();
  mfm_array arr[3];
  mfm_als_arrays(m, arr, 3);
  float *user = arr[0].data, *item = arr[1].data;
  int64_t *uoff = mfm_malloc_array(2 * ((size_t)size + 1), sizeof *uoff);
  float *g = mfm_malloc_array((size_t)k * k + 1, sizeof *g);
  mfm_status st = MFM_OK;
  if (!uoff || !g) {
    st = mfm_err_set(err, MFM_ENOMEM, "dist als: out of memory");
    goto done;
  }
  int64_t *ioff = uoff + size + 1;
  for (int r = 0; r < size; r++) {
    mfm_dist_block(nu, r, size, &uoff[r], &uoff[r + 1]);
    mfm_dist_block(ni, r, size, &ioff[r], &ioff[r + 1]);
  }
  /* The total confidence, from the owned users' rows. */
  double wsum = 0;
  for (int64_t u = uoff[rank]; u < uoff[rank + 1] && u < ui->n_rows; u++)
    for (int64_t q = ui->indptr[u]; q < ui->indptr[u + 1]; q++)
      wsum += ui->data[q];
  if ((st = mfm_dist_sum_f64(&wsum, 1, err))) goto done;
  double total = (double)nu * ni + mfm_als_params_of(m)->alpha * wsum;
  float lambda = mfm_als_params_of(m)->regularization;
  for (int32_t it = 0; it < iterations; it++) {
    double t0 = now();
    int stopped = 0;
    if ((st = gram(m, 1, ioff, g, err))) goto done;
    if ((st = half(m, 0, ui, g, uoff, user, &stopped, err))) goto done;
    if (stopped) goto canceled;
    if ((st = gram(m, 0, uoff, g, err))) goto done;
    if ((st = half(m, 1, iu, g, ioff, item, &stopped, err))) goto done;
    if (stopped) goto canceled;
    mfm_als_step_done(m);
    /* Loss: every rank its users' rows, the item penalty once. */
    if ((st = gram(m, 1, ioff, g, err))) goto done;
    double l = 0;
    if ((st = mfm_als_loss_part(m, ui, g, (int32_t)uoff[rank],
                                (int32_t)uoff[rank + 1], &l, err)))
      goto done;
    if ((st = mfm_dist_sum_f64(&l, 1, err))) goto done;
    double y2 = 0;
    for (size_t i = 0; i < (size_t)ni * k; i++) y2 += (double)item[i] * item[i];
    l += lambda * y2;
    if (report) {
      report->iterations++;
      report->seconds += now() - t0;
      report->loss = total > 0 ? l / total : 0;
      report->iteration = mfm_als_iteration(m);
    }
  }
  goto done;
canceled:
  st = mfm_err_set(err, MFM_ECANCELED, "als fit: stopped");
done:
  mfm_free(uoff);
  mfm_free(g);
  return st;
}
