/* Implicit-feedback ALS: the model and the fit driver.

   Where the time goes: implicit spends it in one tiny BLAS call per
   nonzero.  Here a row's item vectors are gathered once, scaled by
   sqrt(c - 1), into a contiguous block Z (in L1/L2), then
   - Cholesky: A = Y'Y + lambda I + Z'Z is accumulated into the upper
     triangle by a small register-tiled kernel, factored by our own
     Cholesky (exact; a LAPACK call per 32 x 32 system costs more in
     overhead than the arithmetic), and solved;
   - CG: A v = (Y'Y + lambda I) v + Z'(Z v), a few steps per row, warm
     started from the row's previous vector.
   The row solvers live in als_rows.h, built for each instruction set with
   its own vector width (als_rows.c); the Grams are OpenBLAS ssyrk. */
#include "moonfm/als.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "als_impl.h"
#include "moonfm/alloc.h"
#include "moonfm/rng.h"
#include "moonfm/stop.h"
#include "moonfm/threads.h"

struct mfm_als {
  int32_t n_users, n_items, k;
  mfm_als_params p;
  float *user, *item; /* n x k, row-major, contiguous (the model file) */
  int64_t iteration;
  float *gram;        /* cached kp x kp Y'Y + lambda I for fold-in */
  int gram_valid;
};

mfm_als_params mfm_als_params_default(void) {
  mfm_als_params p;
  memset(&p, 0, sizeof p);
  p.factors = 64;
  p.regularization = 0.01f;
  p.alpha = 1.0f;
  p.iterations = 15;
  p.solver = MFM_ALS_CG;
  p.cg_steps = 3;
  p.seed = 42;
  p.threads = 0;
  p.init_scale = 0.01f;
  return p;
}

const char *mfm_als_params_check(const mfm_als_params *p) {
  if (p->factors <= 0 || p->factors > 4096)
    return "factors must be in 1..4096";
  if (!(p->regularization > 0) || !isfinite(p->regularization))
    return "regularization must be a finite number > 0";
  if (!(p->alpha >= 0) || !isfinite(p->alpha))
    return "alpha must be a finite number >= 0";
  if (p->iterations <= 0) return "iterations must be > 0";
  if (p->solver != MFM_ALS_CG && p->solver != MFM_ALS_CHOLESKY)
    return "solver must be cg or cholesky";
  if (p->cg_steps <= 0) return "cg_steps must be > 0";
  if (!(p->init_scale > 0) || !isfinite(p->init_scale))
    return "init_scale must be a finite number > 0";
  return NULL;
}

static int32_t padded(int32_t k) { return (k + LANES - 1) / LANES * LANES; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

mfm_status mfm_als_new(int32_t n_users, int32_t n_items,
                       const mfm_als_params *p, mfm_als **out, mfm_err *err) {
  *out = NULL;
  const char *why = mfm_als_params_check(p);
  if (why) return mfm_err_set(err, MFM_EINVAL, "als: %s", why);
  if (n_users < 0 || n_items < 0)
    return mfm_err_set(err, MFM_EINVAL, "als: negative shape %d x %d",
                       n_users, n_items);
  mfm_als *m = mfm_calloc(1, sizeof *m);
  if (!m) goto nomem;
  m->n_users = n_users;
  m->n_items = n_items;
  m->k = p->factors;
  m->p = *p;
  int32_t kp = padded(m->k);
  m->user = mfm_alloc_aligned((size_t)n_users * (size_t)m->k + 1,
                              sizeof(float));
  m->item = mfm_alloc_aligned((size_t)n_items * (size_t)m->k + 1,
                              sizeof(float));
  m->gram = mfm_alloc_aligned((size_t)kp * (size_t)kp, sizeof(float));
  if (!m->user || !m->item || !m->gram) goto nomem;
  /* Items first, so that their draws do not depend on n_users. */
  mfm_rng rng;
  mfm_rng_seed(&rng, p->seed);
  for (size_t i = 0; i < (size_t)n_items * (size_t)m->k; i++)
    m->item[i] = mfm_rng_float(&rng) * p->init_scale;
  for (size_t i = 0; i < (size_t)n_users * (size_t)m->k; i++)
    m->user[i] = mfm_rng_float(&rng) * p->init_scale;
  *out = m;
  return MFM_OK;
nomem:
  mfm_als_free(m);
  return mfm_err_set(err, MFM_ENOMEM, "als: out of memory for %d x %d x %d",
                     n_users, n_items, p->factors);
}

void mfm_als_free(mfm_als *m) {
  if (!m) return;
  mfm_free_aligned(m->user);
  mfm_free_aligned(m->item);
  mfm_free_aligned(m->gram);
  mfm_free(m);
}

void mfm_als_set_threads(mfm_als *m, int32_t threads) {
  m->p.threads = threads;
}
const mfm_als_params *mfm_als_params_of(const mfm_als *m) { return &m->p; }
void mfm_als_shape(const mfm_als *m, int32_t *n_users, int32_t *n_items,
                   int32_t *factors) {
  if (n_users) *n_users = m->n_users;
  if (n_items) *n_items = m->n_items;
  if (factors) *factors = m->k;
}
int64_t mfm_als_iteration(const mfm_als *m) { return m->iteration; }

void mfm_als_factors(const mfm_als *m, mfm_factors *f) {
  memset(f, 0, sizeof *f);
  f->n_users = m->n_users;
  f->n_items = m->n_items;
  f->k = m->k;
  f->user = m->user;
  f->item = m->item;
  f->ld_user = m->k;
  f->ld_item = m->k;
}

static void set_array(mfm_array *a, const char *name, mfm_dtype t,
                      int64_t rows, int64_t cols, void *data) {
  memset(a, 0, sizeof *a);
  strncpy(a->name, name, sizeof a->name - 1);
  a->dtype = t;
  a->rows = rows;
  a->cols = cols;
  a->data = data;
}

int mfm_als_arrays(mfm_als *m, mfm_array *out, int max) {
  mfm_array all[3];
  set_array(&all[0], "user_factors", MFM_F32, m->n_users, m->k, m->user);
  set_array(&all[1], "item_factors", MFM_F32, m->n_items, m->k, m->item);
  set_array(&all[2], "iteration", MFM_I64, 1, 1, &m->iteration);
  for (int i = 0; i < 3 && i < max; i++) out[i] = all[i];
  m->gram_valid = 0; /* the caller may write the factors */
  return 3;
}

/* ---- Fit --------------------------------------------------------------- */

/* Full kp x kp G = F'F (+ lambda I) with OpenBLAS on all threads. */
static void gram_of(const float *f, int32_t n, int32_t k, int32_t kp,
                    float lambda, int threads, float *g) {
  memset(g, 0, (size_t)kp * kp * 4);
  mfm_blas_threads(threads);
  if (n > 0)
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, k, n, 1.0f, f, k,
                0.0f, g, kp);
  for (int32_t i = 0; i < k; i++) {
    for (int32_t j = 0; j < i; j++) g[(size_t)j * kp + i] = g[(size_t)i * kp + j];
    g[(size_t)i * kp + i] += lambda;
  }
}

static double sumsq(const float *f, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)f[i] * f[i];
  return s;
}

static mfm_status check_input(const mfm_als *m, const mfm_csr *ui,
                              const mfm_csr *iu, mfm_err *err) {
  if (ui->n_rows > m->n_users || ui->n_cols > m->n_items)
    return mfm_err_set(err, MFM_EINVAL,
                       "als fit: interactions are %d x %d but the model is "
                       "%d x %d; create the model with the full shape",
                       ui->n_rows, ui->n_cols, m->n_users, m->n_items);
  if (iu && (iu->n_rows != ui->n_cols || iu->n_cols != ui->n_rows ||
             iu->nnz != ui->nnz))
    return mfm_err_set(err, MFM_EINVAL,
                       "als fit: item_users is not the transpose of "
                       "user_items");
  for (int64_t q = 0; q < ui->nnz; q++) {
    if (!(ui->data[q] >= 0) || !isfinite(ui->data[q]))
      return mfm_err_set(err, MFM_EINVAL,
                         "als fit: weight %g of interaction %lld is not a "
                         "finite number >= 0", (double)ui->data[q],
                         (long long)q);
  }
  return MFM_OK;
}

static void free_work(work *ws, int n) {
  if (!ws) return;
  for (int i = 0; i < n; i++) {
    mfm_free_aligned(ws[i].z);
    mfm_free_aligned(ws[i].a);
    mfm_free_aligned(ws[i].v);
    mfm_free_aligned(ws[i].s);
  }
  mfm_free(ws);
}

static work *alloc_work(int n, int32_t kp) {
  work *ws = mfm_calloc((size_t)n, sizeof *ws);
  if (!ws) return NULL;
  for (int i = 0; i < n; i++) {
    ws[i].z = mfm_alloc_aligned((size_t)CHUNK * kp, sizeof(float));
    ws[i].a = mfm_alloc_aligned((size_t)kp * kp, sizeof(float));
    ws[i].v = mfm_alloc_aligned((size_t)7 * kp, sizeof(float));
    ws[i].s = mfm_alloc_aligned(2 * CHUNK, sizeof(float));
    if (!ws[i].z || !ws[i].a || !ws[i].v || !ws[i].s) {
      free_work(ws, n);
      return NULL;
    }
  }
  return ws;
}

static mfm_status run(fit_ctx *c, int threads, mfm_als_rows_fn fn) {
  atomic_store(&c->next, 0);
  mfm_blas_threads(1);
  return mfm_parallel(threads, fn, c);
}

/* Loss of the current factors; c->s must describe the user side with the
   item Gram (Y'Y + lambda I) in c->s.gram. */
static mfm_status loss_pass(fit_ctx *c, const mfm_als *m, int threads,
                            double *loss) {
  mfm_status st = run(c, threads, mfm_als_kernels_pick().loss);
  if (st) return st;
  double l = 0;
  for (int32_t u = 0; u < m->n_users; u++) l += c->row_loss[u];
  /* x'(Y'Y + lambda I)x counted lambda |X|^2 already. */
  l += m->p.regularization * sumsq(m->item, (size_t)m->n_items * m->k);
  double wsum = 0;
  for (int64_t q = 0; q < c->ui->nnz; q++) wsum += c->ui->data[q];
  double total = (double)m->n_users * m->n_items + m->p.alpha * wsum;
  *loss = total > 0 ? l / total : 0;
  return MFM_OK;
}

/* The loss from the item half's row terms: those plus sum over users of
   x'(Y'Y + lambda I)x = trace(X'X Y'Y) + lambda |X|^2, and lambda |Y|^2.
   gx and gy are the full Grams with lambda on the diagonal. */
static double fused_loss(const fit_ctx *c, const mfm_als *m, const float *gx,
                         const float *gy) {
  int32_t k = m->k, kp = c->kp;
  float lambda = m->p.regularization;
  double l = 0;
  for (int32_t i = 0; i < m->n_items; i++) l += c->row_loss[i];
  for (int32_t i = 0; i < k; i++)
    for (int32_t j = 0; j < k; j++) {
      double a = gx[(size_t)i * kp + j], b = gy[(size_t)i * kp + j];
      if (i == j) a -= lambda, b -= lambda;
      l += a * b;
    }
  l += lambda * (sumsq(m->user, (size_t)m->n_users * k) +
                 sumsq(m->item, (size_t)m->n_items * k));
  double wsum = 0;
  for (int64_t q = 0; q < c->ui->nnz; q++) wsum += c->ui->data[q];
  double total = (double)m->n_users * m->n_items + m->p.alpha * wsum;
  return total > 0 ? l / total : 0;
}

mfm_status mfm_als_fit_transposed(mfm_als *m, const mfm_csr *ui,
                                  const mfm_csr *iu, int32_t iterations,
                                  mfm_als_report *report, mfm_err *err) {
  if (report) {
    memset(report, 0, sizeof *report);
    report->loss = NAN;
    report->iteration = m->iteration;
  }
  if (iterations < 0)
    return mfm_err_set(err, MFM_EINVAL, "als fit: iterations must be >= 0");
  mfm_status st = check_input(m, ui, iu, err);
  if (st) return st;
  int threads = mfm_threads_resolve(m->p.threads);
  int32_t k = m->k, kp = padded(k);
  fit_ctx c;
  memset(&c, 0, sizeof c);
  c.k = k;
  c.kp = kp;
  c.steps = m->p.cg_steps;
  c.alpha = m->p.alpha;
  c.solver = m->p.solver;
  c.ui = ui;
  float *gx = mfm_alloc_aligned((size_t)kp * kp, sizeof(float));
  float *gy = mfm_alloc_aligned((size_t)kp * kp, sizeof(float));
  int32_t most = m->n_users > m->n_items ? m->n_users : m->n_items;
  double *row_loss = mfm_malloc_array((size_t)most + 1, sizeof(double));
  c.ws = alloc_work(threads, kp);
  c.row_loss = row_loss;
  mfm_als_rows_fn fn = mfm_als_kernels_pick().solve;
  if (!gx || !gy || !row_loss || !c.ws) {
    st = mfm_err_set(err, MFM_ENOMEM, "als fit: out of memory");
    goto done;
  }
  float lambda = m->p.regularization;
  for (int32_t it = 0; it < iterations; it++) {
    double t0 = now();
    /* Users from items. */
    gram_of(m->item, m->n_items, k, kp, lambda, threads, gy);
    c.s = (side){ui, m->n_users, m->user, m->item, gy};
    if ((st = run(&c, threads, fn))) goto nomem;
    if (atomic_load(&c.canceled)) goto canceled;
    /* Items from users, each item's loss terms on the way. */
    gram_of(m->user, m->n_users, k, kp, lambda, threads, gx);
    c.s = (side){iu, m->n_items, m->item, m->user, gx};
    c.fused_loss = 1;
    st = run(&c, threads, fn);
    c.fused_loss = 0;
    if (st) goto nomem;
    if (atomic_load(&c.canceled)) goto canceled;
    m->gram_valid = 0;
    m->iteration++;
    /* The new item Gram: the loss's and fold-in's. */
    gram_of(m->item, m->n_items, k, kp, lambda, threads, gy);
    double loss = fused_loss(&c, m, gx, gy);
    memcpy(m->gram, gy, (size_t)kp * kp * 4);
    m->gram_valid = 1;
    if (report) {
      report->iterations++;
      report->seconds += now() - t0;
      report->loss = loss;
      report->iteration = m->iteration;
    }
  }
  st = MFM_OK;
  goto done;
canceled:
  m->gram_valid = 0;
  st = mfm_err_set(err, MFM_ECANCELED, "als fit: stopped");
  goto done;
nomem:
  st = mfm_err_set(err, st, "als fit: out of memory");
done:
  mfm_blas_threads(threads);
  mfm_free_aligned(gx);
  mfm_free_aligned(gy);
  mfm_free(row_loss);
  free_work(c.ws, threads);
  return st;
}

mfm_status mfm_als_fit(mfm_als *m, const mfm_csr *ui, int32_t iterations,
                       mfm_als_report *report, mfm_err *err) {
  if (report) {
    memset(report, 0, sizeof *report);
    report->loss = NAN;
    report->iteration = m->iteration;
  }
  mfm_status st = check_input(m, ui, NULL, err);
  if (st) return st;
  mfm_csr *iu;
  if ((st = mfm_csr_transpose(ui, &iu, err))) return st;
  st = mfm_als_fit_transposed(m, ui, iu, iterations, report, err);
  mfm_csr_free(iu);
  return st;
}

mfm_status mfm_als_loss(mfm_als *m, const mfm_csr *ui, double *loss,
                        mfm_err *err) {
  mfm_status st = check_input(m, ui, NULL, err);
  if (st) return st;
  int32_t k = m->k, kp = padded(k);
  fit_ctx c;
  memset(&c, 0, sizeof c);
  c.k = k;
  c.kp = kp;
  c.alpha = m->p.alpha;
  c.ui = ui;
  float *gy = mfm_alloc_aligned((size_t)kp * kp, sizeof(float));
  c.row_loss = mfm_malloc_array((size_t)m->n_users + 1, sizeof(double));
  c.ws = alloc_work(1, kp);
  if (!gy || !c.row_loss || !c.ws) {
    st = mfm_err_set(err, MFM_ENOMEM, "als loss: out of memory");
    goto done;
  }
  gram_of(m->item, m->n_items, k, kp, m->p.regularization, 1, gy);
  c.s = (side){ui, m->n_users, m->user, m->item, gy};
  if ((st = loss_pass(&c, m, 1, loss)))
    st = mfm_err_set(err, st, "als loss: out of memory");
done:
  mfm_free_aligned(gy);
  mfm_free(c.row_loss);
  free_work(c.ws, 1);
  return st;
}

/* ---- Fold-in ----------------------------------------------------------- */

mfm_status mfm_als_fold_in(mfm_als *m, const int32_t *items,
                           const float *weights, int32_t n, float *out,
                           mfm_err *err) {
  if (n < 0) return mfm_err_set(err, MFM_EINVAL, "als fold_in: n < 0");
  for (int32_t t = 0; t < n; t++) {
    if (items[t] < 0 || items[t] >= m->n_items)
      return mfm_err_set(err, MFM_EINVAL,
                         "als fold_in: item %d is outside 0..%d", items[t],
                         m->n_items - 1);
    if (weights && (!(weights[t] >= 0) || !isfinite(weights[t])))
      return mfm_err_set(err, MFM_EINVAL,
                         "als fold_in: weight %g is not a finite number >= 0",
                         (double)weights[t]);
  }
  int32_t k = m->k, kp = padded(k);
  float *ones = NULL;
  if (!weights) {
    ones = mfm_malloc_array((size_t)n + 1, sizeof *ones);
    if (!ones) return mfm_err_set(err, MFM_ENOMEM, "als fold_in: no memory");
    for (int32_t t = 0; t < n; t++) ones[t] = 1.0f;
    weights = ones;
  }
  work *ws = alloc_work(1, kp);
  if (!ws) {
    mfm_free(ones);
    return mfm_err_set(err, MFM_ENOMEM, "als fold_in: out of memory");
  }
  if (!m->gram_valid) {
    gram_of(m->item, m->n_items, k, kp, m->p.regularization,
            mfm_threads_resolve(m->p.threads), m->gram);
    m->gram_valid = 1;
  }
  /* One row of the exact solver, from a one-row CSR. */
  int64_t indptr[2] = {0, n};
  mfm_csr row = {1, m->n_items, n, indptr, (int32_t *)items,
                 (float *)weights};
  float *x = out;
  fit_ctx c;
  memset(&c, 0, sizeof c);
  c.k = k;
  c.kp = kp;
  c.alpha = m->p.alpha;
  c.solver = MFM_ALS_CHOLESKY;
  c.s = (side){&row, 1, x, m->item, m->gram};
  c.ws = ws;
  c.unstoppable = 1;
  atomic_store(&c.next, 0);
  mfm_als_kernels_pick().solve(&c, 0);
  free_work(ws, 1);
  mfm_free(ones);
  return MFM_OK;
}

/* ---- Parts of an iteration, for distributed ALS (dist_als.c) ----------
   A rank owns a block of users and a block of items; these run one
   half-iteration, the Gram matrix or the loss on a block only. */

static float *pad_gram(const mfm_als *m, const float *g) {
  int32_t k = m->k, kp = padded(k);
  float *gp = mfm_alloc_aligned((size_t)kp * kp, sizeof(float));
  if (!gp) return NULL;
  memset(gp, 0, (size_t)kp * kp * 4);
  for (int32_t i = 0; i < k; i++) {
    memcpy(gp + (size_t)i * kp, g + (size_t)i * k, (size_t)k * 4);
    gp[(size_t)i * kp + i] += m->p.regularization;
  }
  return gp;
}

mfm_status mfm_als_gram_part(const mfm_als *m, int which, int32_t lo,
                             int32_t hi, float *g) {
  int32_t k = m->k, n = which ? m->n_items : m->n_users;
  const float *f = which ? m->item : m->user;
  if (lo < 0 || hi > n || lo > hi) return MFM_EINVAL;
  memset(g, 0, (size_t)k * k * 4);
  mfm_blas_threads(mfm_threads_resolve(m->p.threads));
  if (hi > lo)
    cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, k, hi - lo, 1.0f,
                f + (size_t)lo * k, k, 0.0f, g, k);
  for (int32_t i = 0; i < k; i++)
    for (int32_t j = 0; j < i; j++) g[(size_t)j * k + i] = g[(size_t)i * k + j];
  return MFM_OK;
}

mfm_status mfm_als_solve_part(mfm_als *m, int which, const mfm_csr *rows,
                              const float *g, int32_t lo, int32_t hi,
                              mfm_err *err) {
  int32_t n = which ? m->n_items : m->n_users;
  if (lo < 0 || hi > n || lo > hi)
    return mfm_err_set(err, MFM_EINVAL, "als solve: rows %d..%d outside "
                       "0..%d", lo, hi, n);
  if (rows->n_rows > n || rows->n_cols > (which ? m->n_users : m->n_items))
    return mfm_err_set(err, MFM_EINVAL, "als solve: interactions are %d x "
                       "%d, larger than the model", rows->n_rows,
                       rows->n_cols);
  int threads = mfm_threads_resolve(m->p.threads);
  int32_t kp = padded(m->k);
  fit_ctx c;
  memset(&c, 0, sizeof c);
  c.k = m->k;
  c.kp = kp;
  c.steps = m->p.cg_steps;
  c.alpha = m->p.alpha;
  c.solver = m->p.solver;
  float *gp = pad_gram(m, g);
  c.ws = alloc_work(threads, kp);
  mfm_status st = MFM_OK;
  if (!gp || !c.ws) {
    st = mfm_err_set(err, MFM_ENOMEM, "als solve: out of memory");
    goto done;
  }
  c.s = (side){rows, hi, which ? m->item : m->user, which ? m->user : m->item,
               gp};
  atomic_store(&c.next, lo);
  mfm_blas_threads(1);
  if ((st = mfm_parallel(threads, mfm_als_kernels_pick().solve, &c))) {
    st = mfm_err_set(err, st, "als solve: out of memory");
    goto done;
  }
  m->gram_valid = 0;
  if (atomic_load(&c.canceled))
    st = mfm_err_set(err, MFM_ECANCELED, "als fit: stopped");
done:
  mfm_blas_threads(threads);
  mfm_free_aligned(gp);
  free_work(c.ws, threads);
  return st;
}

mfm_status mfm_als_loss_part(const mfm_als *m, const mfm_csr *ui,
                             const float *g, int32_t lo, int32_t hi,
                             double *sum, mfm_err *err) {
  if (lo < 0 || hi > m->n_users || lo > hi)
    return mfm_err_set(err, MFM_EINVAL, "als loss: rows outside the model");
  int threads = mfm_threads_resolve(m->p.threads);
  int32_t kp = padded(m->k);
  fit_ctx c;
  memset(&c, 0, sizeof c);
  c.k = m->k;
  c.kp = kp;
  c.alpha = m->p.alpha;
  c.ui = ui;
  float *gp = pad_gram(m, g);
  c.row_loss = mfm_malloc_array((size_t)hi + 1, sizeof(double));
  c.ws = alloc_work(threads, kp);
  mfm_status st = MFM_OK;
  if (!gp || !c.row_loss || !c.ws) {
    st = mfm_err_set(err, MFM_ENOMEM, "als loss: out of memory");
    goto done;
  }
  c.s = (side){ui, hi, m->user, m->item, gp};
  atomic_store(&c.next, lo);
  mfm_blas_threads(1);
  if ((st = mfm_parallel(threads, mfm_als_kernels_pick().loss, &c))) {
    st = mfm_err_set(err, st, "als loss: out of memory");
    goto done;
  }
  double l = 0;
  for (int32_t u = lo; u < hi; u++) l += c.row_loss[u];
  *sum = l;
done:
  mfm_blas_threads(threads);
  mfm_free_aligned(gp);
  mfm_free(c.row_loss);
  free_work(c.ws, threads);
  return st;
}

void mfm_als_step_done(mfm_als *m) {
  m->iteration++;
  m->gram_valid = 0;
}
