/* Implicit-feedback alternating least squares (Hu, Koren and Volinsky
   2008).  Each observed (user, item, w) has preference 1 and confidence
   c = 1 + alpha * w; every other cell has preference 0 and confidence 1.
   The loss is
     sum over all cells of c * (p - x_u . y_i)^2
       + regularization * (|X|^2 + |Y|^2),
   minimised by solving for all users with the items fixed, then for all
   items with the users fixed.  Each row uses the Gram trick: the k x k
   matrix Y'Y (+ regularization I) is shared, and only the row's own
   nonzeros are added, so a row costs O(n_row k^2 + k^3) with the exact
   (Cholesky) solver or O(n_row k steps) with conjugate gradient.

   Example:
     mfm_als_params p = mfm_als_params_default();
     p.factors = 32;
     mfm_als *m;
     if (mfm_als_new(n_users, n_items, &p, &m, &err)) ...
     mfm_als_report r;
     for (int it = 0; it < 15; it++) {
       if (mfm_als_fit(m, user_items, 1, &r, &err)) ...  // one iteration
       printf("%g s, loss %g\n", r.seconds, r.loss);
     }
     mfm_factors f; mfm_als_factors(m, &f);  // evaluation, top-k, serving
     mfm_als_free(m);
*/
#ifndef MOONFM_ALS_H
#define MOONFM_ALS_H

#include <stdint.h>

#include "csr.h"
#include "factors.h"
#include "status.h"

typedef enum mfm_als_solver {
  MFM_ALS_CG = 0,      /* conjugate gradient, warm-started (default) */
  MFM_ALS_CHOLESKY = 1 /* exact: Cholesky of each row's k x k system */
} mfm_als_solver;

typedef struct mfm_als_params {
  int32_t factors;       /* k > 0; default 64 */
  float regularization;  /* > 0; default 0.01 */
  float alpha;           /* >= 0: confidence 1 + alpha * w; default 1 */
  int32_t iterations;    /* > 0; default 15 (read by callers, not by fit) */
  mfm_als_solver solver; /* default MFM_ALS_CG */
  int32_t cg_steps;      /* > 0; CG steps per row and half-iteration; 3 */
  uint64_t seed;         /* initial factors; default 42 */
  int32_t threads;       /* our worker threads; <= 0 = all CPUs; default 0 */
  float init_scale;      /* > 0: initial factors uniform in [0, s); 0.01 */
} mfm_als_params;

mfm_als_params mfm_als_params_default(void);
/* NULL when valid, otherwise a static message naming the bad field. */
const char *mfm_als_params_check(const mfm_als_params *p);

typedef struct mfm_als mfm_als;

/* What one call to fit did. */
typedef struct mfm_als_report {
  int32_t iterations; /* completed by this call */
  double seconds;     /* wall time of those iterations, loss included */
  double loss;        /* training loss after the last one, divided by the
                         total confidence n_users*n_items + alpha*sum(w);
                         NaN when no iteration completed */
  int64_t iteration;  /* the model's iteration counter afterwards */
} mfm_als_report;

/* Creates a model of n_users x n_items with factors drawn from the seed.
   p is borrowed (copied).  MFM_EINVAL (bad sizes or params), MFM_ENOMEM. */
mfm_status mfm_als_new(int32_t n_users, int32_t n_items,
                       const mfm_als_params *p, mfm_als **out, mfm_err *err);
void mfm_als_free(mfm_als *m);

/* Runs `iterations` full iterations (users, then items) on user_items
   (borrowed; it may have fewer rows or columns than the model: missing
   rows count as users or items without interactions, whose exact factors
   are zero).  Weights must be finite and >= 0.  Uses params.threads
   worker threads, each taking blocks of rows; OpenBLAS runs one thread
   meanwhile and all of them for the Gram products.  The stop flag is
   checked between blocks of rows (well under a second of work): then
   MFM_ECANCELED, and every row holds either its old or its new vector.
   With threads == 1 a run is bit-identical to another with the same seed.
   report (may be NULL) is filled even on failure.  Not thread-safe on the
   same model. */
mfm_status mfm_als_fit(mfm_als *m, const mfm_csr *user_items,
                       int32_t iterations, mfm_als_report *report,
                       mfm_err *err);
/* The same with the transpose supplied by the caller (item_users must be
   mfm_csr_transpose(user_items); borrowed), so that a caller running one
   iteration per call does not transpose every time. */
mfm_status mfm_als_fit_transposed(mfm_als *m, const mfm_csr *user_items,
                                  const mfm_csr *item_users,
                                  int32_t iterations, mfm_als_report *report,
                                  mfm_err *err);

/* The normalised training loss (as in the report) of the current factors
   on user_items (borrowed). */
mfm_status mfm_als_loss(mfm_als *m, const mfm_csr *user_items, double *loss,
                        mfm_err *err);

/* Fold-in: the exact vector (k floats into out) of a user who was not in
   training, from their n interactions (items and weights borrowed; weights
   may be NULL for all ones), with the item factors fixed.  The model is
   not changed (it caches the item Gram matrix).  MFM_EINVAL on an item out
   of range or a negative weight.  Not thread-safe with other calls on the
   same model. */
mfm_status mfm_als_fold_in(mfm_als *m, const int32_t *items,
                           const float *weights, int32_t n, float *out,
                           mfm_err *err);

/* Sets the worker thread count of later fits (<= 0: all CPUs). */
void mfm_als_set_threads(mfm_als *m, int32_t threads);

const mfm_als_params *mfm_als_params_of(const mfm_als *m);
void mfm_als_shape(const mfm_als *m, int32_t *n_users, int32_t *n_items,
                   int32_t *factors);
/* Full iterations completed so far. */
int64_t mfm_als_iteration(const mfm_als *m);

/* The factors view (borrowed from the model; no biases). */
void mfm_als_factors(const mfm_als *m, mfm_factors *f);

/* The model's whole state as named arrays pointing into it:
   "user_factors" (n_users x k, f32), "item_factors" (n_items x k, f32),
   "iteration" (1 x 1, i64).  Writing through them is allowed (loading a
   model); the cached item Gram matrix is dropped.  Returns the count
   (3), filling at most max. */
int mfm_als_arrays(mfm_als *m, mfm_array *out, int max);

/* ---- Parts of an iteration (distributed ALS, moonfm/dist.h) -----------
   side 0 is the users, 1 the items.  Rows [lo, hi) of that side. */

/* g (k x k floats, full, without regularization) = F[lo:hi]' F[lo:hi].
   MFM_EINVAL for a bad range. */
mfm_status mfm_als_gram_part(const mfm_als *m, int side, int32_t lo,
                             int32_t hi, float *g);
/* Solves rows [lo, hi) of `side` with the other side fixed, from their
   interactions `rows` (user_items for users, item_users for items;
   borrowed) and g, the other side's whole Gram matrix (k x k, without
   regularization, borrowed).  MFM_ECANCELED on the stop flag, as fit. */
mfm_status mfm_als_solve_part(mfm_als *m, int side, const mfm_csr *rows,
                              const float *g, int32_t lo, int32_t hi,
                              mfm_err *err);
/* *sum = the unnormalised loss terms of users [lo, hi) (their rows of the
   loss, regularization of X included, that of Y not), given g = Y'Y. */
mfm_status mfm_als_loss_part(const mfm_als *m, const mfm_csr *ui,
                             const float *g, int32_t lo, int32_t hi,
                             double *sum, mfm_err *err);
/* Counts one completed iteration (after both halves). */
void mfm_als_step_done(mfm_als *m);

#endif
