/* Seconds per ALS iteration on generated data (see bench/bench-als).
   usage: als_bench [iterations] [dataset...]  datasets: ml1m, 10m */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "moonfm/mfm.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Users with skewed activity, items with Zipf-like popularity (exponent
   s), duplicates summed by the CSR builder. */
static mfm_csr *generate(int32_t users, int32_t items, int64_t nnz, double s,
                         uint64_t seed) {
  mfm_rng rng;
  mfm_rng_seed(&rng, seed);
  double *cdf = malloc(sizeof *cdf * (size_t)items);
  double tot = 0;
  for (int32_t i = 0; i < items; i++) tot += pow(i + 1.0, -s), cdf[i] = tot;
  int32_t *perm = malloc(sizeof *perm * (size_t)items);
  for (int32_t i = 0; i < items; i++) perm[i] = i;
  for (int32_t i = items - 1; i > 0; i--) {
    int32_t j = (int32_t)mfm_rng_below(&rng, (uint32_t)i + 1);
    int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  int32_t *r = malloc(sizeof *r * (size_t)nnz), *c = malloc(sizeof *c * (size_t)nnz);
  for (int64_t q = 0; q < nnz; q++) {
    /* user activity: squared uniform gives a long tail of heavy users */
    double uu = mfm_rng_double(&rng);
    r[q] = (int32_t)(uu * uu * users);
    double x = mfm_rng_double(&rng) * tot;
    int32_t lo = 0, hi = items - 1;
    while (lo < hi) {
      int32_t mid = (lo + hi) / 2;
      if (cdf[mid] < x) lo = mid + 1; else hi = mid;
    }
    c[q] = perm[lo];
  }
  mfm_csr *a;
  mfm_err err;
  if (mfm_csr_from_coo(users, items, nnz, r, c, NULL, &a, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  /* Weights 1 (confidence 1 + alpha), as the reference. */
  for (int64_t q = 0; q < a->nnz; q++) a->data[q] = 1.0f;
  free(cdf); free(perm); free(r); free(c);
  return a;
}

static double sgemm_rate(int threads) {
  int n = 1024;
  float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4),
        *c = calloc((size_t)n * n, 4);
  for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
  mfm_blas_threads(threads);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b,
              n, 0, c, n);
  double best = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    double t = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n,
                b, n, 0, c, n);
    t = now() - t;
    if (t < best) best = t;
  }
  free(a); free(b); free(c);
  return 2.0 * n * n * n / best;
}

/* CPU seconds of the process: with other jobs on the machine, steadier
   than wall time (time spent waiting for a core is not counted). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long peak_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 3;
  double rate1 = sgemm_rate(1);
  printf("sgemm 1024^3 one thread: %.1f GFLOP/s\n", rate1 / 1e9);
  printf("%-6s %7s %9s %3s %8s %9s %9s %8s %7s %7s\n", "data", "nnz",
         "solver", "thr", "factors", "s/iter", "cpu/iter", "floor_s",
         "x_floor", "loss");
  for (int d = 2; d < argc || (argc <= 2 && d < 4); d++) {
    const char *name = argc > 2 ? argv[d] : (d == 2 ? "ml1m" : "10m");
    mfm_csr *ui;
    if (strcmp(name, "ml1m") == 0)
      ui = generate(6040, 3706, 1150000, 0.9, 1);
    else
      ui = generate(200000, 50000, 11000000, 1.0, 2);
    mfm_csr *iu;
    mfm_err terr;
    if (mfm_csr_transpose(ui, &iu, &terr)) {
      fprintf(stderr, "%s\n", terr.msg);
      return 1;
    }
    int32_t ks[] = {32, 64, 128};
    /* ALS_SOLVER=cg|cholesky, ALS_FACTORS=32 and ALS_THREADS=1 narrow
       the table (shorter runs); ALS_CG_STEPS=n sets CG's steps (3). */
    const char *only_s = getenv("ALS_SOLVER"), *only_k = getenv("ALS_FACTORS"),
               *only_t = getenv("ALS_THREADS"), *steps = getenv("ALS_CG_STEPS");
    for (int s = 0; s < 2; s++)
      for (int ki = 0; ki < 3; ki++)
        for (int th = 1; th <= 2; th++) {
          if ((only_s && strcmp(only_s, s == 0 ? "cg" : "cholesky")) ||
              (only_k && atoi(only_k) != ks[ki]) ||
              (only_t && atoi(only_t) != th))
            continue;
          mfm_als_params p = mfm_als_params_default();
          p.factors = ks[ki];
          p.solver = s == 0 ? MFM_ALS_CG : MFM_ALS_CHOLESKY;
          p.threads = th;
          if (steps) p.cg_steps = atoi(steps);
          mfm_als *m;
          mfm_err err;
          mfm_als_report rep;
          double c0 = 0;
          if (mfm_als_new(ui->n_rows, ui->n_cols, &p, &m, &err) ||
              (c0 = cpu_now(),
               mfm_als_fit_transposed(m, ui, iu, iters, &rep, &err))) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
          }
          double k = ks[ki];
          double flops = 2.0 * ui->nnz * k * k +
                         (double)(ui->n_rows + ui->n_cols) * k * k * k / 3;
          double floor_s = flops / (rate1 * th);
          double spi = rep.seconds / rep.iterations;
          double cpi = (cpu_now() - c0) / rep.iterations;
          printf("%-6s %7lld %9s %3d %8d %9.4f %9.4f %8.4f %7.1f %7.4f\n",
                 name, (long long)ui->nnz, s == 0 ? "cg" : "cholesky", th,
                 ks[ki], spi, cpi, floor_s, spi / floor_s, rep.loss);
          fflush(stdout);
          mfm_als_free(m);
        }
    printf("%-6s peak memory %ld MB\n", name, peak_mb());
    mfm_csr_free(ui);
    mfm_csr_free(iu);
  }
  return 0;
}
