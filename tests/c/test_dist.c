/* Multi-host building blocks.  Run plainly (one rank) by ctest, and under
   `mpirun -np 2` by tests/e2e/cluster_spec.lua: every rank then compares
   the distributed ALS with a single-process fit of the same data and
   seed, and the averaging rule with its definition. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "moonfm/alloc.h"
#include "moonfm/csr.h"
#include "moonfm/dist.h"
#include "moonfm/rng.h"

static mfm_csr *random_csr(int32_t nu, int32_t ni, int per_user) {
  mfm_rng rng;
  mfm_rng_seed(&rng, 7);
  int64_t n = (int64_t)nu * per_user;
  int32_t *r = malloc(n * sizeof *r), *c = malloc(n * sizeof *c);
  float *v = malloc(n * sizeof *v);
  int64_t m = 0;
  for (int32_t u = 0; u < nu; u++) {
    if (u % 7 == 3) continue; /* some users without interactions */
    for (int j = 0; j < per_user; j++, m++) {
      r[m] = u;
      c[m] = (int32_t)mfm_rng_below(&rng, (uint64_t)ni);
      v[m] = 1.0f + (float)mfm_rng_below(&rng, 4);
    }
  }
  mfm_csr *a = NULL;
  mfm_csr_from_coo(nu, ni, m, r, c, v, &a, NULL);
  free(r);
  free(c);
  free(v);
  return a;
}

static void test_block(void) {
  int64_t lo, hi, total = 0, prev = 0;
  for (int r = 0; r < 3; r++) {
    mfm_dist_block(10, r, 3, &lo, &hi);
    CHECK(lo == prev);
    total += hi - lo;
    prev = hi;
  }
  CHECK(total == 10);
  mfm_dist_block(10, 0, 3, &lo, &hi);
  CHECK(lo == 0 && hi == 4);
  mfm_dist_block(2, 2, 3, &lo, &hi);
  CHECK(lo == 2 && hi == 2);
}

static void test_als(mfm_als_solver solver) {
  int32_t nu = 53, ni = 37;
  mfm_csr *ui = random_csr(nu, ni, 5), *iu = NULL;
  CHECK(ui != NULL);
  mfm_csr_transpose(ui, &iu, NULL);
  mfm_als_params p = mfm_als_params_default();
  p.factors = 8;
  p.threads = 1;
  p.solver = solver;
  p.regularization = 0.1f;
  mfm_als *one, *many;
  CHECK(mfm_als_new(nu, ni, &p, &one, NULL) == MFM_OK);
  CHECK(mfm_als_new(nu, ni, &p, &many, NULL) == MFM_OK);
  mfm_als_report r1, r2;
  CHECK(mfm_als_fit(one, ui, 4, &r1, NULL) == MFM_OK);
  mfm_err err;
  mfm_status st = mfm_dist_als_fit(many, ui, iu, 4, &r2, &err);
  if (st) fprintf(stderr, "dist als: %s\n", err.msg);
  CHECK(st == MFM_OK);
  CHECK(r2.iterations == 4 && r2.iteration == 4);
  CHECK_NEAR(r1.loss, r2.loss, 1e-5);
  mfm_factors f1, f2;
  mfm_als_factors(one, &f1);
  mfm_als_factors(many, &f2);
  /* Largest difference relative to the largest factor. */
  double worst = 0, scale = 0;
  for (int32_t i = 0; i < nu * 8; i++) {
    double d = fabs(f1.user[i] - f2.user[i]);
    if (d > worst) worst = d;
    if (fabs(f1.user[i]) > scale) scale = fabs(f1.user[i]);
  }
  for (int32_t i = 0; i < ni * 8; i++) {
    double d = fabs(f1.item[i] - f2.item[i]);
    if (d > worst) worst = d;
    if (fabs(f1.item[i]) > scale) scale = fabs(f1.item[i]);
  }
  worst /= scale;
  /* Only the order of the Gram sums differs.  The exact solver shows it
     as float rounding; CG stopped after 3 steps carries it along its
     iterates, a little more. */
  CHECK(worst < (solver == MFM_ALS_CHOLESKY ? 1e-5 : 2e-3));
  if (worst >= 1e-5)
    fprintf(stderr, "solver %d: largest relative difference %g\n",
            (int)solver, worst);
  mfm_als_free(one);
  mfm_als_free(many);
  mfm_csr_free(ui);
  mfm_csr_free(iu);
}

/* Rank r changes row r (all ranks) and row 4 (only rank 0) of a 5 x 2
   array; the rule gives base + mean change over the ranks that changed. */
static void test_avg(void) {
  int size = mfm_dist_size(), rank = mfm_dist_rank();
  float x[10];
  for (int i = 0; i < 10; i++) x[i] = (float)i;
  mfm_array a;
  memset(&a, 0, sizeof a);
  strcpy(a.name, "w");
  a.dtype = MFM_F32;
  a.rows = 5;
  a.cols = 2;
  a.data = x;
  mfm_dist_avg *avg;
  CHECK(mfm_dist_avg_new(&a, 1, &avg, NULL) == MFM_OK);
  for (int j = 0; j < 2; j++) {
    x[0 * 2 + j] += (float)(rank + 1); /* every rank: mean of 1..size */
    if (rank == 0) x[4 * 2 + j] += 10; /* one rank: kept whole */
  }
  CHECK(mfm_dist_avg_sync(avg, NULL) == MFM_OK);
  CHECK_NEAR(x[0], 0 + (size + 1) / 2.0, 1e-6);
  CHECK_NEAR(x[1], 1 + (size + 1) / 2.0, 1e-6);
  CHECK_NEAR(x[8], 18, 1e-6);
  CHECK_NEAR(x[9], 19, 1e-6);
  CHECK_NEAR(x[2], 2, 0);
  /* The synced state is the next base: no change, no move. */
  CHECK(mfm_dist_avg_sync(avg, NULL) == MFM_OK);
  CHECK_NEAR(x[8], 18, 1e-6);
  mfm_dist_avg_free(avg);
}

static void test_collectives(void) {
  int size = mfm_dist_size(), rank = mfm_dist_rank();
  double v[2] = {1, (double)rank};
  CHECK(mfm_dist_sum_f64(v, 2, NULL) == MFM_OK);
  CHECK(v[0] == size);
  CHECK(v[1] == size * (size - 1) / 2.0);
  int flag = rank == size - 1;
  CHECK(mfm_dist_max_int(&flag, NULL) == MFM_OK);
  CHECK(flag == 1);
  /* Per-item arrays reduced with the maximum and the minimum. */
  double mx[3] = {(double)rank, -(double)rank, rank == 0 ? 5 : 1};
  double mn[3] = {(double)rank, -(double)rank, rank == 0 ? 5 : 1};
  CHECK(mfm_dist_reduce_f64(mx, 3, MFM_DIST_MAX, NULL) == MFM_OK);
  CHECK(mfm_dist_reduce_f64(mn, 3, MFM_DIST_MIN, NULL) == MFM_OK);
  CHECK(mx[0] == size - 1 && mx[1] == 0 && mx[2] == 5);
  CHECK(mn[0] == 0 && mn[1] == -(size - 1) && mn[2] == (size > 1 ? 1 : 5));
  double sm[1] = {2};
  CHECK(mfm_dist_reduce_f64(sm, 1, MFM_DIST_SUM, NULL) == MFM_OK);
  CHECK(sm[0] == 2.0 * size);
  float rows[3 * 7];
  int64_t off[65];
  for (int r = 0; r < size; r++) mfm_dist_block(7, r, size, &off[r], &off[r + 1]);
  for (int i = 0; i < 21; i++) rows[i] = -1;
  for (int64_t i = off[rank]; i < off[rank + 1]; i++)
    for (int j = 0; j < 3; j++) rows[i * 3 + j] = (float)(i * 3 + j);
  CHECK(mfm_dist_allgather_rows(rows, 3, off, NULL) == MFM_OK);
  int ok = 1;
  for (int i = 0; i < 21; i++) ok &= rows[i] == (float)i;
  CHECK(ok);
}

int main(void) {
  mfm_err err;
  CHECK(mfm_dist_init(120, "test", &err) == MFM_OK);
  int size = mfm_dist_size();
  CHECK(size >= 1 && size <= 64);
  test_block();
  test_collectives();
  test_als(MFM_ALS_CG);
  test_als(MFM_ALS_CHOLESKY);
  test_avg();
  char addr[64];
  CHECK(mfm_dist_resolve("localhost", 1, addr, sizeof addr, NULL) == MFM_OK);
  CHECK(mfm_dist_resolve("no-such-host.invalid", 0.3, NULL, 0, &err) ==
        MFM_EIO);
  CHECK(strstr(err.msg, "no-such-host.invalid") != NULL);
  mfm_dist_finalize();
  DONE(size > 1 ? "dist (mpi)" : "dist");
}
