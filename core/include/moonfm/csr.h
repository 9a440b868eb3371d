/* Sparse interactions: a growable COO buffer that readers append to, and
   the compressed sparse rows (CSR) that every model and metric reads. */
#ifndef MOONFM_CSR_H
#define MOONFM_CSR_H

#include <stdint.h>

#include "status.h"

/* Rows of a CSR are users (or items, once transposed).  Plain data: the
   arrays are owned by the struct and released by mfm_csr_free. */
typedef struct mfm_csr {
  int32_t n_rows, n_cols;
  int64_t nnz;
  int64_t *indptr;  /* n_rows + 1 offsets into indices/data */
  int32_t *indices; /* nnz column indices, ascending and unique per row */
  float *data;      /* nnz weights */
} mfm_csr;

/* Triplets as read, in file order; duplicates allowed. */
typedef struct mfm_coo {
  int64_t n, cap;
  int32_t *rows, *cols;
  float *vals;
} mfm_coo;

/* Appends one triplet, growing geometrically.  MFM_ENOMEM on failure (the
   buffer is unchanged). */
mfm_status mfm_coo_push(mfm_coo *c, int32_t row, int32_t col, float val);
/* Releases the arrays and zeroes the struct; accepts NULL. */
void mfm_coo_free(mfm_coo *c);

/* Builds a CSR of shape n_rows x n_cols from triplets (borrowed; vals may
   be NULL for all ones).  Duplicate (row, col) pairs are summed, as LightFM
   and implicit do.  Every index must be in range (MFM_EINVAL otherwise).
   Linear time (counting sort). */
mfm_status mfm_csr_from_coo(int32_t n_rows, int32_t n_cols, int64_t nnz,
                            const int32_t *rows, const int32_t *cols,
                            const float *vals, mfm_csr **out, mfm_err *err);

/* The transpose (items x users), in linear time. */
mfm_status mfm_csr_transpose(const mfm_csr *a, mfm_csr **out, mfm_err *err);

/* A copy with n_rows/n_cols grown to at least the given sizes (new rows are
   empty); used when a test set must line up with a training set. */
mfm_status mfm_csr_resize(const mfm_csr *a, int32_t n_rows, int32_t n_cols,
                          mfm_csr **out, mfm_err *err);

/* Nonzero if row r contains column c (binary search). */
int mfm_csr_has(const mfm_csr *a, int32_t r, int32_t c);

void mfm_csr_free(mfm_csr *a);

#endif
