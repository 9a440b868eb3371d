/* Evaluation, recommend and pair scores against plain references written
   here: full sorts and pair counting on small random cases.  Factors are
   multiples of 1/4 in a small range, so every score is exact in float (the
   sgemm and the reference agree to the bit) and ties are frequent. */
#include <stdlib.h>
#include <string.h>

#include "../../core/src/topk.h"
#include "check.h"
#include "moonfm/mfm.h"

typedef struct kase {
  int32_t nu, ni, k;
  float *user, *item, *ub, *ib;
  mfm_factors f;
  mfm_csr *test, *excl;
} kase;

static float qval(mfm_rng *r, int range) {
  return (float)((int)mfm_rng_below(r, (uint32_t)(2 * range + 1)) - range) /
         4.0f;
}

static mfm_csr *random_csr(mfm_rng *r, int32_t rows, int32_t cols,
                           int32_t maxcol, double dens) {
  mfm_coo c;
  memset(&c, 0, sizeof c);
  for (int32_t u = 0; u < rows; u++)
    for (int32_t j = 0; j < maxcol; j++)
      if (mfm_rng_below(r, 1000) < dens * 1000) mfm_coo_push(&c, u, j, 1);
  mfm_csr *a = NULL;
  mfm_csr_from_coo(rows, cols, c.n, c.rows, c.cols, NULL, &a, NULL);
  mfm_coo_free(&c);
  return a;
}

static void kase_make(kase *K, mfm_rng *r) {
  memset(K, 0, sizeof *K);
  K->nu = 1 + (int32_t)mfm_rng_below(r, 12);
  K->ni = 1 + (int32_t)mfm_rng_below(r, 25);
  K->k = (int32_t)mfm_rng_below(r, 4);
  int range = 1 + (int)mfm_rng_below(r, 3);
  int32_t ld = K->k + (int32_t)mfm_rng_below(r, 2);
  K->user = calloc((size_t)K->nu * ld + 1, sizeof(float));
  K->item = calloc((size_t)K->ni * ld + 1, sizeof(float));
  for (int32_t i = 0; i < K->nu * ld; i++) K->user[i] = qval(r, range);
  for (int32_t i = 0; i < K->ni * ld; i++) K->item[i] = qval(r, range);
  if (mfm_rng_below(r, 2)) {
    K->ub = calloc((size_t)K->nu, sizeof(float));
    for (int32_t i = 0; i < K->nu; i++) K->ub[i] = qval(r, 2);
  }
  if (mfm_rng_below(r, 2)) {
    K->ib = calloc((size_t)K->ni, sizeof(float));
    for (int32_t i = 0; i < K->ni; i++) K->ib[i] = qval(r, 2);
  }
  K->f = (mfm_factors){K->nu, K->ni, K->k, K->user, K->item, ld, ld,
                       K->ub, K->ib};
  /* Test rows may go past the model's users, columns past its items;
     the exclusion set may have fewer rows, and overlap the test set. */
  int32_t trows = K->nu + (int32_t)mfm_rng_below(r, 3) - 1;
  if (trows < 1) trows = 1;
  int32_t tcols = K->ni + (int32_t)mfm_rng_below(r, 3);
  double d = 0.05 + 0.1 * mfm_rng_below(r, 5);
  K->test = random_csr(r, trows, tcols, tcols, d);
  int32_t xrows = K->nu - (int32_t)mfm_rng_below(r, 2);
  if (xrows < 1) xrows = 1;
  K->excl = random_csr(r, xrows, K->ni, K->ni, 0.05 + 0.1 * mfm_rng_below(r, 4));
}

static void kase_free(kase *K) {
  free(K->user);
  free(K->item);
  free(K->ub);
  free(K->ib);
  mfm_csr_free(K->test);
  mfm_csr_free(K->excl);
}

static float ref_score(const mfm_factors *f, int32_t u, int32_t j, int ib) {
  float s = 0;
  for (int32_t t = 0; t < f->k; t++)
    s += f->user[u * f->ld_user + t] * f->item[j * f->ld_item + t];
  if (ib && f->item_bias) s += f->item_bias[j];
  return s;
}

static const float *sort_scores;
static int by_rank(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  if (sort_scores[x] != sort_scores[y])
    return sort_scores[x] > sort_scores[y] ? -1 : 1;
  return (x > y) - (x < y);
}

/* The reference: one user's value of each column; returns 0 if skipped. */
static int ref_user(const kase *K, const mfm_eval_params *p, int32_t u,
                    double *vals, int32_t *top, int32_t *ntop) {
  const mfm_factors *f = &K->f;
  int32_t ni = f->n_items;
  float *s = malloc(sizeof(float) * ni);
  int32_t *cand = malloc(sizeof(int32_t) * ni);
  char *pos = calloc((size_t)ni, 1);
  int32_t nc = 0, m = 0;
  for (int32_t j = 0; j < ni; j++) {
    s[j] = ref_score(f, u, j, p->item_bias);
    int ex = !p->include_seen && mfm_csr_has(K->excl, u, j);
    if (!ex) cand[nc++] = j;
    if (!ex && u < K->test->n_rows && mfm_csr_has(K->test, u, j)) {
      pos[j] = 1;
      m++;
    }
  }
  int ok = m > 0;
  if (ok) {
    sort_scores = s;
    qsort(cand, (size_t)nc, sizeof *cand, by_rank);
    int32_t first = 0;
    while (!pos[cand[first]]) first++;
    double pairs = 0;
    int64_t nneg = nc - m;
    for (int32_t a = 0; a < nc; a++)
      for (int32_t b = 0; b < nc; b++)
        if (pos[cand[a]] && !pos[cand[b]])
          pairs += s[cand[a]] > s[cand[b]] ? 1 : s[cand[a]] == s[cand[b]] ? 0.5 : 0;
    for (int col = 0; col < p->n_columns; col++) {
      int32_t k = p->k[col];
      double hits = 0, dcg = 0, idcg = 0, ap = 0;
      for (int32_t r = 0; r < k && r < nc; r++)
        if (pos[cand[r]]) {
          hits++;
          dcg += 1 / log2(r + 2.0);
          ap += hits / (r + 1);
        }
      for (int32_t r = 0; r < k && r < m; r++) idcg += 1 / log2(r + 2.0);
      double v = NAN;
      switch (p->metric[col]) {
      case MFM_METRIC_PRECISION: v = hits / k; break;
      case MFM_METRIC_RECALL: v = hits / m; break;
      case MFM_METRIC_HIT_RATE: v = hits > 0; break;
      case MFM_METRIC_NDCG: v = dcg / idcg; break;
      case MFM_METRIC_MAP: v = ap / (k < m ? k : m); break;
      case MFM_METRIC_MRR: v = 1.0 / (first + 1); break;
      case MFM_METRIC_AUC: v = nneg > 0 ? pairs / ((double)m * nneg) : NAN; break;
      case MFM_METRIC_COVERAGE: break;
      }
      vals[col] = v;
    }
    *ntop = nc;
    memcpy(top, cand, sizeof(int32_t) * nc);
  }
  free(s);
  free(cand);
  free(pos);
  return ok;
}

static int same(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return fabs(a - b) <= 1e-12 * (1 + fabs(a));
}

static void random_params(mfm_rng *r, mfm_eval_params *p, int32_t ni) {
  *p = mfm_eval_params_default();
  int n = 1 + (int)mfm_rng_below(r, 12);
  for (int c = 0; c < n; c++) {
    p->metric[c] = (mfm_metric)(1 + mfm_rng_below(r, 8));
    /* k from 1 to past the catalogue. */
    p->k[c] = 1 + (int32_t)mfm_rng_below(r, (uint32_t)ni + 5);
  }
  p->n_columns = n;
  p->include_seen = mfm_rng_below(r, 4) == 0;
  p->item_bias = mfm_rng_below(r, 4) != 0;
  p->threads = 1 + (int)mfm_rng_below(r, 3);
  p->block = (int32_t)mfm_rng_below(r, 5);
}

static void test_eval_random(void) {
  mfm_rng r;
  mfm_rng_seed(&r, 42);
  int mismatches = 0, cases = 0;
  for (int it = 0; it < 400; it++) {
    kase K;
    kase_make(&K, &r);
    mfm_eval_params p;
    random_params(&r, &p, K.ni);
    int32_t nknown = K.test->n_rows < K.nu ? K.test->n_rows : K.nu;
    double *pu = malloc(sizeof(double) * (size_t)(nknown * p.n_columns + 1));
    mfm_eval_result res;
    mfm_err err;
    mfm_status st = mfm_eval_run(&K.f, K.test, K.excl, &p, &res, pu, &err);
    CHECK(st == MFM_OK);
    if (st != MFM_OK) {
      fprintf(stderr, "%s\n", err.msg);
      kase_free(&K);
      free(pu);
      continue;
    }
    double sums[MFM_EVAL_MAX_COLUMNS] = {0};
    int64_t cnts[MFM_EVAL_MAX_COLUMNS] = {0};
    int32_t *minrank = malloc(sizeof(int32_t) * K.ni);
    int32_t *top = malloc(sizeof(int32_t) * K.ni);
    for (int32_t j = 0; j < K.ni; j++) minrank[j] = INT32_MAX;
    int64_t nusers = 0, skipped = 0;
    for (int32_t u = 0; u < nknown; u++) {
      double v[MFM_EVAL_MAX_COLUMNS];
      int32_t ntop = 0;
      if (!ref_user(&K, &p, u, v, top, &ntop)) {
        skipped++;
        for (int c = 0; c < p.n_columns; c++)
          if (!isnan(pu[u * p.n_columns + c])) mismatches++;
        continue;
      }
      nusers++;
      for (int32_t t = 0; t < ntop; t++)
        if (minrank[top[t]] > t + 1) minrank[top[t]] = t + 1;
      for (int c = 0; c < p.n_columns; c++) {
        if (!same(v[c], pu[u * p.n_columns + c])) {
          mismatches++;
          fprintf(stderr, "case %d user %d %s@%d: got %.17g want %.17g\n", it,
                  u, mfm_metric_name(p.metric[c]), p.k[c],
                  pu[u * p.n_columns + c], v[c]);
        }
        if (!isnan(v[c])) {
          sums[c] += v[c];
          cnts[c]++;
        }
      }
    }
    CHECK(res.n_users == nusers);
    CHECK(res.n_skipped == skipped);
    for (int c = 0; c < p.n_columns; c++) {
      double want = cnts[c] ? sums[c] / cnts[c] : NAN;
      if (p.metric[c] == MFM_METRIC_COVERAGE) {
        int64_t cov = 0;
        for (int32_t j = 0; j < K.ni; j++) cov += minrank[j] <= p.k[c];
        want = nusers ? (double)cov / K.ni : NAN;
      }
      if (!(fabs(res.mean[c] - want) <= 1e-9 ||
            (isnan(want) && isnan(res.mean[c])))) {
        mismatches++;
        fprintf(stderr, "case %d mean %s@%d: got %.17g want %.17g\n", it,
                mfm_metric_name(p.metric[c]), p.k[c], res.mean[c], want);
      }
    }
    /* Unknown counts. */
    int64_t uu = 0, ui = 0, tx = 0;
    for (int32_t u = 0; u < K.test->n_rows; u++)
      for (int64_t t = K.test->indptr[u]; t < K.test->indptr[u + 1]; t++) {
        int32_t j = K.test->indices[t];
        if (u >= K.nu) continue;
        if (j >= K.ni) ui++;
        else if (!p.include_seen && mfm_csr_has(K.excl, u, j)) tx++;
      }
    for (int32_t u = K.nu; u < K.test->n_rows; u++)
      uu += K.test->indptr[u + 1] > K.test->indptr[u];
    CHECK(res.n_unknown_items == ui);
    CHECK(res.n_test_excluded == tx);
    CHECK(res.n_unknown_users == uu);
    cases++;
    free(minrank);
    free(top);
    free(pu);
    kase_free(&K);
  }
  CHECK(mismatches == 0);
  CHECK(cases == 400);
}

/* Larger users (about 30 test items, 300 items, few ties): exercises the
   grid of the AUC/MRR pass away from its exact fallback. */
static void test_eval_large(void) {
  mfm_rng r;
  mfm_rng_seed(&r, 2024);
  kase K;
  memset(&K, 0, sizeof K);
  K.nu = 60;
  K.ni = 300;
  K.k = 8;
  K.user = malloc(sizeof(float) * K.nu * K.k);
  K.item = malloc(sizeof(float) * K.ni * K.k);
  for (int32_t i = 0; i < K.nu * K.k; i++)
    K.user[i] = ((int)mfm_rng_below(&r, 129) - 64) / 64.0f;
  for (int32_t i = 0; i < K.ni * K.k; i++)
    K.item[i] = ((int)mfm_rng_below(&r, 129) - 64) / 64.0f;
  K.f = (mfm_factors){K.nu, K.ni, K.k, K.user, K.item, K.k, K.k, NULL, NULL};
  K.test = random_csr(&r, K.nu, K.ni, K.ni, 0.1);
  K.excl = random_csr(&r, K.nu, K.ni, K.ni, 0.2);
  mfm_eval_params p = mfm_eval_params_default();
  mfm_metric ms[] = {MFM_METRIC_AUC, MFM_METRIC_MRR, MFM_METRIC_NDCG,
                     MFM_METRIC_MAP, MFM_METRIC_RECALL};
  for (int c = 0; c < 5; c++) {
    p.metric[c] = ms[c];
    p.k[c] = 20;
  }
  p.n_columns = 5;
  p.threads = 2;
  double pu[60 * 5];
  int32_t top[300], ntop;
  mfm_eval_result res;
  CHECK(mfm_eval_run(&K.f, K.test, K.excl, &p, &res, pu, NULL) == MFM_OK);
  int bad = 0;
  for (int32_t u = 0; u < K.nu; u++) {
    double v[5];
    if (!ref_user(&K, &p, u, v, top, &ntop)) continue;
    for (int c = 0; c < 5; c++) bad += !same(v[c], pu[u * 5 + c]);
  }
  CHECK(bad == 0);
  CHECK(res.n_users > 50);
  kase_free(&K);
}

/* Same results whatever the threads and block size. */
static void test_eval_threads_invariant(void) {
  mfm_rng r;
  mfm_rng_seed(&r, 7);
  int32_t nu = 300, ni = 120, k = 8;
  float *U = malloc(sizeof(float) * nu * k), *V = malloc(sizeof(float) * ni * k);
  for (int32_t i = 0; i < nu * k; i++) U[i] = mfm_rng_below(&r, 1000) / 500.0f - 1;
  for (int32_t i = 0; i < ni * k; i++) V[i] = mfm_rng_below(&r, 1000) / 500.0f - 1;
  mfm_factors f = {nu, ni, k, U, V, k, k, NULL, NULL};
  mfm_csr *te = random_csr(&r, nu, ni, ni, 0.05);
  mfm_csr *tr = random_csr(&r, nu, ni, ni, 0.1);
  mfm_eval_params p = mfm_eval_params_default();
  mfm_metric ms[] = {MFM_METRIC_PRECISION, MFM_METRIC_NDCG, MFM_METRIC_AUC,
                     MFM_METRIC_MRR, MFM_METRIC_COVERAGE, MFM_METRIC_MAP};
  for (int c = 0; c < 6; c++) {
    p.metric[c] = ms[c];
    p.k[c] = 10;
  }
  p.n_columns = 6;
  mfm_eval_result a, b;
  p.threads = 1;
  p.block = 0;
  CHECK(mfm_eval_run(&f, te, tr, &p, &a, NULL, NULL) == MFM_OK);
  p.threads = 3;
  CHECK(mfm_eval_run(&f, te, tr, &p, &b, NULL, NULL) == MFM_OK);
  int eq = 1;
  for (int c = 0; c < 6; c++) eq &= a.mean[c] == b.mean[c];
  CHECK(eq); /* bit for bit: sums are reduced in block order */
  p.block = 7;
  CHECK(mfm_eval_run(&f, te, tr, &p, &b, NULL, NULL) == MFM_OK);
  for (int c = 0; c < 6; c++) CHECK_NEAR(a.mean[c], b.mean[c], 1e-12);
  CHECK(a.mean[2] > 0.3 && a.mean[2] < 0.7); /* random factors: AUC ~ 0.5 */

  /* Fault injection: every allocation failing in turn gives ENOMEM. */
  int n_fail = 0;
  for (size_t nth = 1; nth < 200; nth++) {
    mfm_alloc_fail_at(nth);
    mfm_status st = mfm_eval_run(&f, te, tr, &p, &b, NULL, NULL);
    mfm_alloc_fail_at(0);
    if (st == MFM_OK) break;
    CHECK(st == MFM_ENOMEM);
    n_fail++;
  }
  CHECK(n_fail > 5);
  n_fail = 0;
  int32_t users[3] = {0, 1, 2}, items[30];
  for (size_t nth = 1; nth < 200; nth++) {
    mfm_alloc_fail_at(nth);
    mfm_status st = mfm_topk_recommend(&f, users, 3, 10, tr, NULL, items,
                                       NULL, NULL);
    mfm_alloc_fail_at(0);
    if (st == MFM_OK) break;
    CHECK(st == MFM_ENOMEM);
    n_fail++;
  }
  CHECK(n_fail > 3);

  /* The stop flag cancels. */
  mfm_stop_request();
  mfm_err err;
  CHECK(mfm_eval_run(&f, te, tr, &p, &b, NULL, &err) == MFM_ECANCELED);
  mfm_stop_reset();

  mfm_csr_free(te);
  mfm_csr_free(tr);
  free(U);
  free(V);
}

/* A case of a given shape: factors multiples of 1/4 in [-range/4,
   range/4] (small range: many ties), test and exclusion sets of the
   given densities; user 0 has every item excluded, user 1 every item but
   its test items (no negative), when there are users enough. */
static void kase_sized(kase *K, mfm_rng *r, int32_t nu, int32_t ni, int32_t k,
                       int range, double dt, double dx) {
  memset(K, 0, sizeof *K);
  K->nu = nu;
  K->ni = ni;
  K->k = k;
  K->user = calloc((size_t)nu * k + 1, sizeof(float));
  K->item = calloc((size_t)ni * k + 1, sizeof(float));
  for (int32_t i = 0; i < nu * k; i++) K->user[i] = qval(r, range);
  for (int32_t i = 0; i < ni * k; i++) K->item[i] = qval(r, range);
  if (mfm_rng_below(r, 2)) {
    K->ib = calloc((size_t)ni, sizeof(float));
    for (int32_t i = 0; i < ni; i++) K->ib[i] = qval(r, 2);
  }
  K->f = (mfm_factors){nu, ni, k, K->user, K->item, k, k, NULL, K->ib};
  K->test = random_csr(r, nu, ni, ni, dt);
  mfm_coo c;
  memset(&c, 0, sizeof c);
  for (int32_t u = 0; u < nu; u++)
    for (int32_t j = 0; j < ni; j++) {
      int in_test = mfm_csr_has(K->test, u, j);
      if (u == 0 || (u == 1 && !in_test) ||
          (u > 1 && mfm_rng_below(r, 1000) < dx * 1000))
        mfm_coo_push(&c, u, j, 1);
    }
  mfm_csr_from_coo(nu, ni, c.n, c.rows, c.cols, NULL, &K->excl, NULL);
  mfm_coo_free(&c);
}

/* The AVX2 kernels (when the CPU has them) and the portable loops against
   the reference and against each other, bit for bit, on catalogues of
   sizes around the vector widths and past the threshold scan's minimum,
   with ties at the k-th place, all-equal scores, k past the catalogue,
   users with every item excluded or no negative. */
/* Runs p over K on both paths (AVX2 where the CPU has it, then the
   portable one) and compares each user's values with each other and with
   the reference; returns the mismatches, each printed after `what`. */
static int both_paths_vs_ref(const kase *K, const mfm_eval_params *p,
                             const char *what) {
  int32_t nc = p->n_columns;
  double *pu[2];
  mfm_eval_result res[2];
  for (int path = 0; path < 2; path++) {
    pu[path] = malloc(sizeof(double) * (size_t)K->nu * (size_t)nc);
    mfm_kernels_force_portable(path);
    CHECK(mfm_eval_run(&K->f, K->test, K->excl, p, &res[path], pu[path],
                       NULL) == MFM_OK);
  }
  mfm_kernels_force_portable(0);
  int32_t *top = malloc(sizeof(int32_t) * (size_t)K->ni), ntop;
  double *v = malloc(sizeof(double) * (size_t)nc);
  int bad = 0;
  for (int32_t u = 0; u < K->nu; u++) {
    int ok = ref_user(K, p, u, v, top, &ntop);
    for (int c = 0; c < nc; c++) {
      double a = pu[0][u * nc + c], b = pu[1][u * nc + c];
      if (!(a == b || (isnan(a) && isnan(b)))) bad++;
      if (ok ? !same(v[c], a) : !isnan(a)) {
        bad++;
        fprintf(stderr, "%s user %d %s@%d: got %.17g want %.17g\n", what,
                (int)u, mfm_metric_name(p->metric[c]), (int)p->k[c], a,
                ok ? v[c] : NAN);
      }
    }
  }
  free(v);
  free(top);
  free(pu[0]);
  free(pu[1]);
  return bad;
}

static void test_eval_kernels(void) {
  static const int32_t sizes[] = {1, 7, 8, 9, 31, 33, 63, 255, 256, 257,
                                  300, 1003};
  mfm_rng r;
  mfm_rng_seed(&r, 314);
  int bad = 0, runs = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    for (int variant = 0; variant < 4; variant++) {
      int32_t ni = sizes[si];
      /* 0: many ties; 1: few ties; 2: every score equal; 3: sparse test */
      int32_t k = variant == 2 ? 0 : 1 + (int32_t)mfm_rng_below(&r, 4);
      int range = variant == 0 ? 2 : 40;
      kase K;
      kase_sized(&K, &r, 9, ni, k, range, variant == 3 ? 0.01 : 0.1,
                 variant == 1 ? 0.3 : 0.05);
      mfm_eval_params p = mfm_eval_params_default();
      mfm_metric ms[] = {MFM_METRIC_AUC, MFM_METRIC_MRR,
                         MFM_METRIC_PRECISION, MFM_METRIC_NDCG,
                         MFM_METRIC_MAP, MFM_METRIC_RECALL,
                         MFM_METRIC_HIT_RATE, MFM_METRIC_PRECISION};
      int32_t ks[] = {0, 0, 10, 1 + ni / 3, 32, ni + 3, 33, 3};
      for (int c = 0; c < 8; c++) {
        p.metric[c] = ms[c];
        p.k[c] = ks[c];
      }
      p.n_columns = 8;
      p.item_bias = 1;
      char what[64];
      snprintf(what, sizeof what, "kernels: %d items variant %d", (int)ni,
               variant);
      bad += both_paths_vs_ref(&K, &p, what);
      /* recommend: k around the threshold scan's limit of 32 */
      int32_t users[9];
      for (int32_t u = 0; u < 9; u++) users[u] = u;
      int32_t kr[] = {1, 10, 32, 33, ni, ni + 2};
      for (size_t ki = 0; ki < sizeof kr / sizeof *kr; ki++) {
        int32_t kk = kr[ki];
        int32_t *items[2];
        float *scores[2];
        for (int path = 0; path < 2; path++) {
          items[path] = malloc(sizeof(int32_t) * 9 * kk);
          scores[path] = malloc(sizeof(float) * 9 * kk);
          mfm_kernels_force_portable(path);
          CHECK(mfm_topk_recommend(&K.f, users, 9, kk, K.excl, NULL,
                                   items[path], scores[path], NULL) ==
                MFM_OK);
        }
        mfm_kernels_force_portable(0);
        float *s = malloc(sizeof(float) * ni);
        int32_t *cand = malloc(sizeof(int32_t) * ni);
        for (int32_t u = 0; u < 9; u++) {
          int32_t nc = 0;
          for (int32_t j = 0; j < ni; j++) {
            s[j] = ref_score(&K.f, u, j, 1);
            if (!mfm_csr_has(K.excl, u, j)) cand[nc++] = j;
          }
          sort_scores = s;
          qsort(cand, (size_t)nc, sizeof *cand, by_rank);
          for (int32_t t = 0; t < kk; t++) {
            int32_t want = t < nc ? cand[t] : -1;
            for (int path = 0; path < 2; path++)
              bad += items[path][u * kk + t] != want;
          }
        }
        free(s);
        free(cand);
        for (int path = 0; path < 2; path++) {
          free(items[path]);
          free(scores[path]);
        }
      }
      kase_free(&K);
      runs++;
    }
  }
  CHECK(bad == 0);
  CHECK(runs == 48);
}

/* The two AVX2 rank counts (compares with the test scores themselves up
   to 64 test items, in buckets of 1, 2, 4 or 8; gathers from an int32
   table above) and the portable loop, bit for bit against the reference:
   users with exactly m test items for m around each bucket size and the
   limit, on catalogues past the threshold scan's minimum, not multiples
   of 32 (the tail) and below 32, with ties (range 1 and 3: items equal to
   a test score at a bucket's start take the exact correction), with and
   without item biases (the rank pass adds them), with and without MRR
   (the AVX2 count then skips its counts), and a NaN and +inf item bias on
   excluded items (-inf + inf in the pass). */
static void test_eval_count_sizes(void) {
  static const int32_t ms[] = {1, 2, 8, 9, 16, 17, 31, 32, 33,
                               62, 63, 64, 65, 100, 127};
  static const int32_t sizes[] = {20, 45, 256, 300, 1003};
  enum { NU = sizeof ms / sizeof *ms };
  mfm_rng r;
  mfm_rng_seed(&r, 2718);
  int bad = 0, runs = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
    for (int variant = 0; variant < 8; variant++) {
      int32_t ni = sizes[si], k = 1 + (int32_t)mfm_rng_below(&r, 4);
      int mrr = variant < 4;
      kase K;
      kase_sized(&K, &r, NU, ni, k, variant & 1 ? 3 : 1, 0.0, 0.0);
      if (variant % 4 >= 2 && !K.ib) {
        K.ib = calloc((size_t)ni, sizeof(float));
        for (int32_t i = 0; i < ni; i++) K.ib[i] = qval(&r, 2);
        K.f.item_bias = K.ib;
      }
      /* User u: the first ms[u] of a random order are test items, every
         7th of the rest excluded; with a bias, item 5 is NaN and item 6
         +inf, both excluded. */
      mfm_coo ct, cx;
      memset(&ct, 0, sizeof ct);
      memset(&cx, 0, sizeof cx);
      int32_t *perm = malloc(sizeof(int32_t) * ni);
      for (int32_t u = 0; u < NU; u++) {
        for (int32_t j = 0; j < ni; j++) perm[j] = j;
        for (int32_t j = ni - 1; j > 0; j--) {
          int32_t t = (int32_t)mfm_rng_below(&r, (uint32_t)j + 1), x = perm[j];
          perm[j] = perm[t];
          perm[t] = x;
        }
        int32_t got = 0;
        for (int32_t t = 0; t < ni; t++) {
          int32_t j = perm[t];
          int special = K.ib && variant % 4 == 3 && (j == 5 || j == 6);
          if (!special && got < ms[u]) {
            mfm_coo_push(&ct, u, j, 1);
            got++;
          } else if (special || t % 7 == 0) {
            mfm_coo_push(&cx, u, j, 1);
          }
        }
      }
      free(perm);
      if (K.ib && variant % 4 == 3) {
        K.ib[5] = NAN;
        K.ib[6] = INFINITY;
      }
      mfm_csr_free(K.test);
      mfm_csr_free(K.excl);
      mfm_csr_from_coo(NU, ni, ct.n, ct.rows, ct.cols, NULL, &K.test, NULL);
      mfm_csr_from_coo(NU, ni, cx.n, cx.rows, cx.cols, NULL, &K.excl, NULL);
      mfm_coo_free(&ct);
      mfm_coo_free(&cx);
      mfm_eval_params p = mfm_eval_params_default();
      mfm_metric mt[] = {MFM_METRIC_AUC,
                         mrr ? MFM_METRIC_MRR : MFM_METRIC_MAP,
                         MFM_METRIC_PRECISION, MFM_METRIC_NDCG,
                         MFM_METRIC_RECALL};
      int32_t ks[] = {0, mrr ? 0 : 5, 10, 10, 32};
      p.n_columns = 5;
      for (int c = 0; c < 5; c++) {
        p.metric[c] = mt[c];
        p.k[c] = ks[c];
      }
      p.item_bias = variant % 4 != 1;
      char what[64];
      snprintf(what, sizeof what, "count: %d items variant %d", (int)ni,
               variant);
      bad += both_paths_vs_ref(&K, &p, what);
      kase_free(&K);
      runs++;
    }
  CHECK(bad == 0);
  CHECK(runs == 40);
}

/* The AVX2 count on 16-bit keys: an item whose key equals a test score's
   (same grid cell) is compared exactly.  Items 100-199 copy the scores of
   items 0-99 (from which the test items are drawn), 200-299 and 300-399
   are one float above and below them (same key, not equal); the test
   scores are distinct, so the key count runs (not the float compares it
   falls back to on shared keys).  With and without MRR (ties with the
   highest test score count in it), with and without item biases (a NaN
   and a +inf one on excluded items), against the reference and the
   portable path. */
static void test_eval_count_keys(void) {
  static const int32_t ms[] = {1, 5, 8, 9, 16, 17, 31, 32, 33, 60, 64};
  enum { NU = sizeof ms / sizeof *ms, NI = 700 };
  mfm_rng r;
  mfm_rng_seed(&r, 1618);
  int bad = 0;
  for (int variant = 0; variant < 4; variant++) {
    int mrr = variant & 1, bias = variant >> 1;
    kase K;
    memset(&K, 0, sizeof K);
    K.nu = NU;
    K.ni = NI;
    K.k = 1;
    K.user = malloc(sizeof(float) * NU);
    K.item = malloc(sizeof(float) * NI);
    for (int32_t u = 0; u < NU; u++) K.user[u] = 1.0f;
    for (int32_t j = 0; j < NI; j++)
      K.item[j] = (float)mfm_rng_below(&r, 1u << 20) / (1 << 17) - 4.0f;
    for (int32_t j = 100; j < 200; j++) K.item[j] = K.item[j - 100];
    for (int32_t j = 200; j < 300; j++)
      K.item[j] = nextafterf(K.item[j - 200], INFINITY);
    for (int32_t j = 300; j < 400; j++)
      K.item[j] = nextafterf(K.item[j - 300], -INFINITY);
    if (bias) {
      K.ib = malloc(sizeof(float) * NI);
      for (int32_t j = 0; j < NI; j++) K.ib[j] = 0.5f;
      K.ib[401] = NAN;
      K.ib[402] = INFINITY;
    }
    K.f = (mfm_factors){NU, NI, 1, K.user, K.item, 1, 1, NULL, K.ib};
    mfm_coo ct, cx;
    memset(&ct, 0, sizeof ct);
    memset(&cx, 0, sizeof cx);
    int32_t pool[100];
    for (int32_t u = 0; u < NU; u++) {
      for (int32_t j = 0; j < 100; j++) pool[j] = j;
      for (int32_t j = 99; j > 0; j--) {
        int32_t t = (int32_t)mfm_rng_below(&r, (uint32_t)j + 1), x = pool[j];
        pool[j] = pool[t];
        pool[t] = x;
      }
      for (int32_t t = 0; t < ms[u]; t++) mfm_coo_push(&ct, u, pool[t], 1);
      mfm_coo_push(&cx, u, 401, 1);
      mfm_coo_push(&cx, u, 402, 1);
      for (int32_t j = 403 + u; j < NI; j += 11) mfm_coo_push(&cx, u, j, 1);
    }
    mfm_csr_from_coo(NU, NI, ct.n, ct.rows, ct.cols, NULL, &K.test, NULL);
    mfm_csr_from_coo(NU, NI, cx.n, cx.rows, cx.cols, NULL, &K.excl, NULL);
    mfm_coo_free(&ct);
    mfm_coo_free(&cx);
    mfm_eval_params p = mfm_eval_params_default();
    p.n_columns = 3;
    p.metric[0] = MFM_METRIC_AUC;
    p.metric[1] = mrr ? MFM_METRIC_MRR : MFM_METRIC_RECALL;
    p.k[1] = mrr ? 0 : 20;
    p.metric[2] = MFM_METRIC_NDCG;
    p.k[2] = 10;
    char what[64];
    snprintf(what, sizeof what, "keys: variant %d", variant);
    bad += both_paths_vs_ref(&K, &p, what);
    kase_free(&K);
  }
  CHECK(bad == 0);
}

static void test_recommend_and_score(void) {
  mfm_rng r;
  mfm_rng_seed(&r, 99);
  int bad = 0;
  for (int it = 0; it < 200; it++) {
    kase K;
    kase_make(&K, &r);
    mfm_topk_params p = mfm_topk_params_default();
    p.include_seen = mfm_rng_below(&r, 3) == 0;
    p.item_bias = mfm_rng_below(&r, 3) != 0;
    p.threads = 1 + (int)mfm_rng_below(&r, 3);
    p.block = (int32_t)mfm_rng_below(&r, 4);
    int32_t k = 1 + (int32_t)mfm_rng_below(&r, (uint32_t)K.ni + 4);
    int32_t n = 1 + (int32_t)mfm_rng_below(&r, 6);
    int32_t *users = malloc(sizeof(int32_t) * n);
    for (int32_t i = 0; i < n; i++)
      users[i] = (int32_t)mfm_rng_below(&r, (uint32_t)K.nu);
    int32_t *items = malloc(sizeof(int32_t) * n * k);
    float *scores = malloc(sizeof(float) * n * k);
    CHECK(mfm_topk_recommend(&K.f, users, n, k, K.excl, &p, items, scores,
                             NULL) == MFM_OK);
    float *s = malloc(sizeof(float) * K.ni);
    int32_t *cand = malloc(sizeof(int32_t) * K.ni);
    for (int32_t i = 0; i < n; i++) {
      int32_t u = users[i], nc = 0;
      for (int32_t j = 0; j < K.ni; j++) {
        s[j] = ref_score(&K.f, u, j, p.item_bias);
        if (p.include_seen || !mfm_csr_has(K.excl, u, j)) cand[nc++] = j;
      }
      sort_scores = s;
      qsort(cand, (size_t)nc, sizeof *cand, by_rank);
      float ub = K.ub ? K.ub[u] : 0;
      for (int32_t t = 0; t < k; t++) {
        int32_t want = t < nc ? cand[t] : -1;
        if (items[i * k + t] != want) bad++;
        if (t < nc ? scores[i * k + t] != s[want] + ub
                   : !isnan(scores[i * k + t]))
          bad++;
      }
    }
    /* Pair scores: dot + both biases. */
    int32_t pu[8], pi[8];
    float out[8];
    for (int t = 0; t < 8; t++) {
      pu[t] = (int32_t)mfm_rng_below(&r, (uint32_t)K.nu);
      pi[t] = (int32_t)mfm_rng_below(&r, (uint32_t)K.ni);
    }
    CHECK(mfm_factors_score(&K.f, pu, pi, 8, out, NULL) == MFM_OK);
    for (int t = 0; t < 8; t++) {
      float want = ref_score(&K.f, pu[t], pi[t], 1) + (K.ub ? K.ub[pu[t]] : 0);
      if (out[t] != want) bad++;
    }
    free(s);
    free(cand);
    free(users);
    free(items);
    free(scores);
    kase_free(&K);
  }
  CHECK(bad == 0);
}

static void test_misuse(void) {
  float U[4] = {1, 0, 0, 1}, V[6] = {1, 0, 0, 1, 1, 1};
  mfm_factors f = {2, 3, 2, U, V, 2, 2, NULL, NULL};
  mfm_eval_params p = mfm_eval_params_default();
  CHECK(mfm_eval_params_check(&p) != NULL); /* no columns */
  p.n_columns = 1;
  p.metric[0] = MFM_METRIC_NDCG;
  p.k[0] = 0;
  CHECK(mfm_eval_params_check(&p) != NULL);
  p.k[0] = 2;
  CHECK(mfm_eval_params_check(&p) == NULL);
  p.metric[0] = MFM_METRIC_AUC;
  p.k[0] = 0;
  CHECK(mfm_eval_params_check(&p) == NULL);
  CHECK(mfm_metric_parse("hit_rate") == MFM_METRIC_HIT_RATE);
  CHECK(mfm_metric_parse("nope") == 0);
  CHECK(strcmp(mfm_metric_name(MFM_METRIC_MAP), "map") == 0);
  mfm_err err;
  int32_t users[1] = {5}, items[2];
  CHECK(mfm_topk_recommend(&f, users, 1, 2, NULL, NULL, items, NULL, &err) ==
        MFM_EINVAL);
  CHECK(strstr(err.msg, "out of range") != NULL);
  users[0] = 1;
  CHECK(mfm_topk_recommend(&f, users, 1, 0, NULL, NULL, items, NULL, &err) ==
        MFM_EINVAL);
  int32_t pu[1] = {0}, pi[1] = {3};
  float out[1];
  CHECK(mfm_factors_score(&f, pu, pi, 1, out, &err) == MFM_EINVAL);
  CHECK(strstr(err.msg, "item 3") != NULL);
  f.ld_item = 1;
  CHECK(mfm_factors_check(&f, &err) == MFM_EINVAL);

  /* A hand case: user 0 ranks items 0 (1), 2 (1), 1 (0); test {2}, with
     item 0 seen: excluded, item 2 is first. */
  f.ld_item = 2;
  int32_t tr_r[1] = {0}, tr_c[1] = {0}, te_r[1] = {0}, te_c[1] = {2};
  mfm_csr *tr, *te;
  mfm_csr_from_coo(2, 3, 1, tr_r, tr_c, NULL, &tr, NULL);
  mfm_csr_from_coo(2, 3, 1, te_r, te_c, NULL, &te, NULL);
  p = mfm_eval_params_default();
  p.n_columns = 3;
  p.metric[0] = MFM_METRIC_PRECISION;
  p.k[0] = 1;
  p.metric[1] = MFM_METRIC_MRR;
  p.metric[2] = MFM_METRIC_AUC;
  mfm_eval_result res;
  CHECK(mfm_eval_run(&f, te, tr, &p, &res, NULL, NULL) == MFM_OK);
  CHECK(res.mean[0] == 1 && res.mean[1] == 1 && res.mean[2] == 1);
  CHECK(res.n_users == 1 && res.n_skipped == 1);
  /* Seen items kept: item 0 ties item 2 and wins on index. */
  p.include_seen = 1;
  CHECK(mfm_eval_run(&f, te, tr, &p, &res, NULL, NULL) == MFM_OK);
  CHECK(res.mean[0] == 0 && res.mean[1] == 0.5 && res.mean[2] == 0.75);
  mfm_csr_free(tr);
  mfm_csr_free(te);
}

int main(void) {
  test_misuse();
  test_eval_random();
  test_eval_large();
  test_eval_threads_invariant();
  test_eval_kernels();
  test_eval_count_sizes();
  test_eval_count_keys();
  test_recommend_and_score();
  DONE("eval");
}
