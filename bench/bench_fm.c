/* Speed of the factorization model's fit: seconds per epoch and million
   positives per second for each loss, factors and thread count, on
   generated data (popularity-skewed, with taste clusters).  Prints table
   rows; bench/bench-fm runs it on two sizes.  The last column is
   precision@10 on held-out interactions drawn from the same users' tastes
   (training items excluded), so a faster kernel can be checked for the
   same quality.

   bench_fm USERS ITEMS POSITIVES EPOCHS [LOSSES] [FACTORS] [THREADS] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "moonfm/mfm.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int32_t draw(const double *cdf, int32_t n, double x) {
  int32_t lo = 0, hi = n - 1;
  while (lo < hi) {
    int32_t mid = (lo + hi) / 2;
    if (cdf[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* The training data, and in *test about 10 more draws per user from the
   same tastes.  The test draws come from a second RNG, so the training
   data is the same as without them. */
static mfm_csr *generate(int32_t nu, int32_t ni, int64_t nnz,
                         mfm_csr **test) {
  enum { C = 20 };
  mfm_rng r, rt;
  mfm_rng_seed(&r, 1);
  mfm_rng_seed(&rt, 2);
  /* Global popularity: Zipf over a random order of the items, or with
     FM_IDS=popular over the ids in order (item 0 the most popular), as
     a reader numbering items by first appearance roughly gives. */
  const char *ids = getenv("FM_IDS");
  int by_pop = ids && strcmp(ids, "popular") == 0;
  int32_t *order = malloc((size_t)ni * sizeof *order);
  double *cdf = malloc((size_t)ni * sizeof *cdf);
  double *ccdf = malloc((size_t)C * ni * sizeof *ccdf);
  for (int32_t i = 0; i < ni; i++) order[i] = i;
  for (int32_t i = ni - 1; i > 0 && !by_pop; i--) {
    int32_t j = (int32_t)mfm_rng_below(&r, (uint32_t)i + 1), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  double s = 0;
  for (int32_t i = 0; i < ni; i++) cdf[i] = s += pow(i + 10.0, -1.0);
  for (int32_t i = 0; i < ni; i++) cdf[i] /= s;
  /* Clusters: each prefers a random half of the items. */
  for (int c = 0; c < C; c++) {
    double t = 0;
    for (int32_t i = 0; i < ni; i++) {
      double w = mfm_rng_double(&r) < 0.1 ? pow(i + 10.0, -1.0) * 20 : 0;
      ccdf[(int64_t)c * ni + i] = t += w + 1e-12;
    }
    for (int32_t i = 0; i < ni; i++) ccdf[(int64_t)c * ni + i] /= t;
  }
  mfm_coo coo = {0}, tc = {0};
  double per = (double)nnz / nu;
  for (int32_t u = 0; u < nu; u++) {
    int c = (int)mfm_rng_below(&r, C);
    /* Lognormal activity with the right mean. */
    int64_t n = (int64_t)(per * exp(mfm_rng_normal(&r) - 0.5)) + 1;
    if (n > ni / 2) n = ni / 2;
    for (int64_t q = 0; q < n; q++) {
      int32_t i = mfm_rng_double(&r) < 0.5
                      ? order[draw(cdf, ni, mfm_rng_double(&r))]
                      : order[draw(ccdf + (int64_t)c * ni, ni,
                                   mfm_rng_double(&r))];
      mfm_coo_push(&coo, u, i, 1.0f);
    }
    for (int q = 0; q < 10; q++) {
      int32_t i = mfm_rng_double(&rt) < 0.5
                      ? order[draw(cdf, ni, mfm_rng_double(&rt))]
                      : order[draw(ccdf + (int64_t)c * ni, ni,
                                   mfm_rng_double(&rt))];
      mfm_coo_push(&tc, u, i, 1.0f);
    }
  }
  mfm_csr_from_coo(nu, ni, tc.n, tc.rows, tc.cols, tc.vals, test, NULL);
  mfm_coo_free(&tc);
  mfm_csr *x;
  mfm_csr_from_coo(nu, ni, coo.n, coo.rows, coo.cols, coo.vals, &x, NULL);
  for (int64_t q = 0; q < x->nnz; q++) x->data[q] = 1.0f;
  mfm_coo_free(&coo);
  free(order);
  free(cdf);
  free(ccdf);
  return x;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: bench_fm USERS ITEMS POSITIVES EPOCHS "
                    "[LOSSES] [FACTORS] [THREADS]\n");
    return 2;
  }
  int32_t nu = atoi(argv[1]), ni = atoi(argv[2]);
  int64_t nnz = atoll(argv[3]);
  int epochs = atoi(argv[4]);
  const char *losses = argc > 5 ? argv[5] : "logistic,bpr,warp,warp-kos";
  const char *factors = argc > 6 ? argv[6] : "32,64";
  const char *threads = argc > 7 ? argv[7] : "1,2";
  mfm_csr *test;
  mfm_csr *x = generate(nu, ni, nnz, &test);
  char lbuf[256], fbuf[64], tbuf[64];
  snprintf(lbuf, sizeof lbuf, "%s", losses);
  for (char *l = strtok(lbuf, ","); l; l = strtok(NULL, ",")) {
    snprintf(fbuf, sizeof fbuf, "%s", factors);
    char *fs;
    for (char *f = strtok_r(fbuf, ",", &fs); f; f = strtok_r(NULL, ",", &fs)) {
      snprintf(tbuf, sizeof tbuf, "%s", threads);
      char *ts;
      for (char *t = strtok_r(tbuf, ",", &ts); t;
           t = strtok_r(NULL, ",", &ts)) {
        mfm_fm_params p = mfm_fm_params_default();
        p.loss = (mfm_fm_loss)mfm_fm_loss_parse(l);
        p.factors = atoi(f);
        if (getenv("FM_SEED")) p.seed = (uint64_t)atoll(getenv("FM_SEED"));
        mfm_fm *m;
        mfm_err err;
        if (mfm_fm_new(nu, ni, 0, 0, &p, &m, &err) != MFM_OK) {
          fprintf(stderr, "%s\n", err.msg);
          return 1;
        }
        mfm_fit_report rep;
        /* One warm-up epoch, then the timed ones, a fit call each as
           recipes/train.lua makes them (so what a call costs besides its
           epoch counts too). */
        mfm_fm_fit(m, x, NULL, 1, atoi(t), &rep, &err);
        double c0 = cpu_now(), secs = 0;
        for (int e = 0; e < epochs; e++) {
          mfm_fm_fit(m, x, NULL, 1, atoi(t), &rep, &err);
          secs += rep.seconds;
        }
        double cpe = (cpu_now() - c0) / epochs;
        double spe = secs / epochs;
        /* Positives per second: every positive of an epoch (k-OS samples
           users, but is compared on the same data). */
        mfm_factors fac;
        mfm_eval_params ep = mfm_eval_params_default();
        mfm_eval_result er;
        ep.n_columns = 1;
        ep.metric[0] = MFM_METRIC_PRECISION;
        ep.k[0] = 10;
        double p10 = NAN;
        if (mfm_fm_factors(m, &fac, &err) == MFM_OK &&
            mfm_eval_run(&fac, test, x, &ep, &er, NULL, &err) == MFM_OK)
          p10 = er.mean[0];
        printf("%-9s %7d %7d %11lld %7d %3s %10.4f %10.2f %10.4f %10.4f "
               "%8.4f\n",
               l, (int)nu, (int)ni, (long long)x->nnz, p.factors, t, spe,
               x->nnz / spe / 1e6, cpe, rep.loss, p10);
        fflush(stdout);
        mfm_fm_free(m);
      }
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("# peak RSS %.1f MB\n", ru.ru_maxrss / 1024.0);
  mfm_csr_free(x);
  mfm_csr_free(test);
  return 0;
}
