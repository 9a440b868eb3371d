/* COO -> CSR, duplicates, transpose, resize, membership. */
#include <string.h>

#include "check.h"
#include "moonfm/mfm.h"

static void test_from_coo(void) {
  int32_t r[] = {2, 0, 2, 1, 0, 2};
  int32_t c[] = {1, 3, 0, 2, 3, 1};
  float v[] = {1, 2, 3, 4, 5, 6};
  mfm_csr *a;
  mfm_err err;
  CHECK(mfm_csr_from_coo(4, 4, 6, r, c, v, &a, &err) == MFM_OK);
  CHECK(a->nnz == 4); /* (0,3) and (2,1) are duplicates, summed */
  int64_t ip[] = {0, 1, 2, 4, 4};
  CHECK(memcmp(a->indptr, ip, sizeof ip) == 0);
  CHECK(a->indices[0] == 3 && a->data[0] == 7);
  CHECK(a->indices[1] == 2 && a->data[1] == 4);
  CHECK(a->indices[2] == 0 && a->data[2] == 3);
  CHECK(a->indices[3] == 1 && a->data[3] == 7);
  CHECK(mfm_csr_has(a, 2, 1) && !mfm_csr_has(a, 2, 2) && !mfm_csr_has(a, 3, 0));
  CHECK(!mfm_csr_has(a, 9, 0));

  mfm_csr *t;
  CHECK(mfm_csr_transpose(a, &t, &err) == MFM_OK);
  CHECK(t->n_rows == 4 && t->n_cols == 4 && t->nnz == 4);
  CHECK(mfm_csr_has(t, 3, 0) && mfm_csr_has(t, 1, 2) && mfm_csr_has(t, 0, 2));
  mfm_csr *tt;
  CHECK(mfm_csr_transpose(t, &tt, &err) == MFM_OK);
  CHECK(memcmp(tt->indptr, a->indptr, sizeof ip) == 0);
  CHECK(memcmp(tt->indices, a->indices, 4 * sizeof(int32_t)) == 0);
  CHECK(memcmp(tt->data, a->data, 4 * sizeof(float)) == 0);

  mfm_csr *b;
  CHECK(mfm_csr_resize(a, 6, 5, &b, &err) == MFM_OK);
  CHECK(b->n_rows == 6 && b->n_cols == 5 && b->indptr[6] == 4 && b->indptr[5] == 4);
  mfm_csr_free(a);
  mfm_csr_free(t);
  mfm_csr_free(tt);
  mfm_csr_free(b);

  /* Out-of-range entries are refused with a message. */
  int32_t bad[] = {5};
  CHECK(mfm_csr_from_coo(4, 4, 1, bad, c, NULL, &a, &err) == MFM_EINVAL);
  CHECK(a == NULL && strstr(err.msg, "outside") != NULL);
  /* Empty matrices are fine. */
  CHECK(mfm_csr_from_coo(0, 0, 0, NULL, NULL, NULL, &a, &err) == MFM_OK);
  CHECK(a->n_rows == 0 && a->indptr[0] == 0);
  mfm_csr_free(a);
}

static void test_coo_and_faults(void) {
  mfm_coo coo = {0};
  mfm_rng rng;
  mfm_rng_seed(&rng, 7);
  for (int i = 0; i < 10000; i++)
    CHECK(mfm_coo_push(&coo, (int32_t)mfm_rng_below(&rng, 100),
                       (int32_t)mfm_rng_below(&rng, 50), 1.0f) == MFM_OK);
  CHECK(coo.n == 10000);
  mfm_csr *a;
  CHECK(mfm_csr_from_coo(100, 50, coo.n, coo.rows, coo.cols, coo.vals, &a,
                         NULL) == MFM_OK);
  double sum = 0;
  int sorted = 1;
  for (int32_t r = 0; r < a->n_rows; r++)
    for (int64_t p = a->indptr[r]; p < a->indptr[r + 1]; p++) {
      sum += a->data[p];
      if (p > a->indptr[r]) sorted &= a->indices[p - 1] < a->indices[p];
    }
  CHECK(sum == 10000.0 && sorted);
  mfm_csr_free(a);
  /* Every allocation failure is reported as ENOMEM. */
  int ok = 1;
  for (size_t n = 1; n <= 6; n++) {
    mfm_alloc_fail_at(n);
    mfm_status st = mfm_csr_from_coo(100, 50, coo.n, coo.rows, coo.cols,
                                     coo.vals, &a, NULL);
    mfm_alloc_fail_at(0);
    ok &= st == MFM_ENOMEM ? a == NULL : st == MFM_OK;
    mfm_csr_free(st == MFM_OK ? a : NULL);
  }
  CHECK(ok);
  mfm_coo_free(&coo);
  CHECK(coo.n == 0 && coo.rows == NULL);
}

int main(void) {
  test_from_coo();
  test_coo_and_faults();
  DONE("csr");
}
