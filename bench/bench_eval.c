/* bench/bench-eval's program: seconds to evaluate precision@10 + NDCG@10 +
   AUC for every test user, against the bare blocked sgemm of the same
   size (the engine with a row callback that does nothing), on synthetic
   data of a given shape.  Prints one table row per configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moonfm/mfm.h"
#include "topk.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static mfm_status noop(void *ctx, int tid, int32_t blk, int32_t pos,
                       int32_t u, float *row) {
  (void)ctx; (void)tid; (void)blk; (void)pos; (void)u;
  /* Touch the row so the sgemm cannot be skipped. */
  volatile float x = row[0];
  (void)x;
  return MFM_OK;
}

/* Random interactions: per user `per` items, uniform with a popularity
   skew (squared uniform), duplicates merged. */
static mfm_csr *interactions(mfm_rng *r, int32_t nu, int32_t ni, int per) {
  int64_t n = (int64_t)nu * per;
  int32_t *rows = malloc(n * sizeof *rows), *cols = malloc(n * sizeof *cols);
  for (int64_t t = 0; t < n; t++) {
    rows[t] = (int32_t)(t / per);
    double x = mfm_rng_below(r, 1u << 30) / (double)(1u << 30);
    cols[t] = (int32_t)(x * x * ni);
  }
  mfm_csr *a = NULL;
  mfm_csr_from_coo(nu, ni, n, rows, cols, NULL, &a, NULL);
  free(rows);
  free(cols);
  return a;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: bench_eval NAME USERS ITEMS TRAIN_PER TEST_PER "
            "K [THREADS...]\n");
    return 2;
  }
  const char *name = argv[1];
  int32_t nu = atoi(argv[2]), ni = atoi(argv[3]);
  int trp = atoi(argv[4]), tep = atoi(argv[5]), k = atoi(argv[6]);
  int reps = getenv("BENCH_REPS") ? atoi(getenv("BENCH_REPS")) : 3;
  mfm_rng r;
  mfm_rng_seed(&r, 1);
  float *U = malloc(sizeof(float) * nu * k), *V = malloc(sizeof(float) * ni * k);
  for (int64_t i = 0; i < (int64_t)nu * k; i++)
    U[i] = mfm_rng_below(&r, 1 << 20) / (float)(1 << 19) - 1.0f;
  for (int64_t i = 0; i < (int64_t)ni * k; i++)
    V[i] = mfm_rng_below(&r, 1 << 20) / (float)(1 << 19) - 1.0f;
  float *ib = malloc(sizeof(float) * ni);
  for (int32_t j = 0; j < ni; j++) ib[j] = mfm_rng_below(&r, 1000) / 1000.0f;
  mfm_factors f = {nu, ni, k, U, V, k, k, NULL, ib};
  mfm_csr *train = interactions(&r, nu, ni, trp);
  mfm_csr *test = interactions(&r, nu, ni, tep);
  mfm_eval_params p = mfm_eval_params_default();
  p.n_columns = 3;
  p.metric[0] = MFM_METRIC_PRECISION;
  p.k[0] = 10;
  p.metric[1] = MFM_METRIC_NDCG;
  p.k[1] = 10;
  p.metric[2] = MFM_METRIC_AUC;
  for (int a = 7; a < argc; a++) {
    int th = atoi(argv[a]);
    p.threads = th;
    mfm_eval_result res;
    mfm_err err;
    /* Best of `reps` runs: the machine is shared. */
    double te = 1e30, ts = 1e30, t0;
    for (int rep = 0; rep < reps; rep++) {
      t0 = now();
      if (mfm_eval_run(&f, test, train, &p, &res, NULL, &err) != MFM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
      }
      if (now() - t0 < te) te = now() - t0;
    }
    /* The floor: the same blocks and sgemm calls, no selection. */
    int32_t *users = malloc(sizeof(int32_t) * nu);
    for (int32_t u = 0; u < nu; u++) users[u] = u;
    mfm_factors g = f;
    g.item_bias = NULL;
    mfm_engine e = {&g, users, (int32_t)res.n_users, 0, 0, 0, noop, NULL};
    mfm_engine_setup(&e, 0, th);
    for (int rep = 0; rep < reps; rep++) {
      t0 = now();
      mfm_engine_run(&e, NULL);
      if (now() - t0 < ts) ts = now() - t0;
    }
    printf("| %-6s | %7d x %6d | %8lld | %8lld | %2d | %2d | %8.3f | %8.3f | "
           "%5.2f | p@10 %.4f ndcg@10 %.4f auc %.4f |\n",
           name, nu, ni, (long long)train->nnz, (long long)test->nnz, k, th,
           te, ts, te / ts, res.mean[0], res.mean[1], res.mean[2]);
    fflush(stdout);
    free(users);
  }
  mfm_csr_free(train);
  mfm_csr_free(test);
  free(U);
  free(V);
  free(ib);
  return 0;
}
