#include "moonfm/csr.h"

#include <string.h>

#include "moonfm/alloc.h"
#include "moonfm/factors.h"

size_t mfm_dtype_size(mfm_dtype t) {
  switch (t) {
  case MFM_U8: return 1;
  case MFM_F32: case MFM_I32: return 4;
  case MFM_I64: case MFM_F64: case MFM_U64: return 8;
  }
  return 0;
}

mfm_status mfm_coo_push(mfm_coo *c, int32_t row, int32_t col, float val) {
  if (c->n == c->cap) {
    int64_t cap = c->cap ? c->cap * 2 : 4096;
    int32_t *r = mfm_realloc(c->rows, (size_t)cap * sizeof *r);
    if (!r) return MFM_ENOMEM;
    c->rows = r;
    int32_t *k = mfm_realloc(c->cols, (size_t)cap * sizeof *k);
    if (!k) return MFM_ENOMEM;
    c->cols = k;
    float *v = mfm_realloc(c->vals, (size_t)cap * sizeof *v);
    if (!v) return MFM_ENOMEM;
    c->vals = v;
    c->cap = cap;
  }
  c->rows[c->n] = row;
  c->cols[c->n] = col;
  c->vals[c->n] = val;
  c->n++;
  return MFM_OK;
}

void mfm_coo_free(mfm_coo *c) {
  if (!c) return;
  mfm_free(c->rows);
  mfm_free(c->cols);
  mfm_free(c->vals);
  memset(c, 0, sizeof *c);
}

static mfm_csr *csr_alloc(int32_t n_rows, int32_t n_cols, int64_t nnz) {
  mfm_csr *a = mfm_calloc(1, sizeof *a);
  if (!a) return NULL;
  a->n_rows = n_rows;
  a->n_cols = n_cols;
  a->nnz = nnz;
  a->indptr = mfm_calloc((size_t)n_rows + 1, sizeof *a->indptr);
  a->indices = mfm_malloc_array((size_t)nnz, sizeof *a->indices);
  a->data = mfm_malloc_array((size_t)nnz, sizeof *a->data);
  if (!a->indptr || !a->indices || !a->data) {
    mfm_csr_free(a);
    return NULL;
  }
  return a;
}

void mfm_csr_free(mfm_csr *a) {
  if (!a) return;
  mfm_free(a->indptr);
  mfm_free(a->indices);
  mfm_free(a->data);
  mfm_free(a);
}

/* Counting sort by row, then by column inside each row (a transpose twice
   keeps it linear): first bucket triplets by column, then scatter them by
   row in column order, which leaves every row sorted. */
mfm_status mfm_csr_from_coo(int32_t n_rows, int32_t n_cols, int64_t nnz,
                            const int32_t *rows, const int32_t *cols,
                            const float *vals, mfm_csr **out, mfm_err *err) {
  *out = NULL;
  if (n_rows < 0 || n_cols < 0 || nnz < 0)
    return mfm_err_set(err, MFM_EINVAL, "negative matrix size");
  for (int64_t i = 0; i < nnz; i++) {
    if (rows[i] < 0 || rows[i] >= n_rows || cols[i] < 0 || cols[i] >= n_cols)
      return mfm_err_set(err, MFM_EINVAL,
                         "entry %lld (%d, %d) is outside %d x %d",
                         (long long)i, rows[i], cols[i], n_rows, n_cols);
  }
  mfm_status st = MFM_ENOMEM;
  int64_t *colptr = mfm_calloc((size_t)n_cols + 1, sizeof *colptr);
  int64_t *order = mfm_malloc_array((size_t)nnz, sizeof *order);
  mfm_csr *a = csr_alloc(n_rows, n_cols, nnz);
  if (!colptr || !order || !a) goto fail;

  for (int64_t i = 0; i < nnz; i++) colptr[cols[i] + 1]++;
  for (int32_t c = 0; c < n_cols; c++) colptr[c + 1] += colptr[c];
  for (int64_t i = 0; i < nnz; i++) order[colptr[cols[i]]++] = i;
  /* order now lists triplets by column (stable). */
  for (int64_t i = 0; i < nnz; i++) a->indptr[rows[i] + 1]++;
  for (int32_t r = 0; r < n_rows; r++) a->indptr[r + 1] += a->indptr[r];
  /* Reuse colptr as the per-row write cursor when it is big enough. */
  if (n_rows > n_cols) {
    mfm_free(colptr);
    colptr = mfm_malloc_array((size_t)n_rows + 1, sizeof *colptr);
    if (!colptr) goto fail;
  }
  int64_t *next = colptr;
  memcpy(next, a->indptr, (size_t)n_rows * sizeof *next);
  for (int64_t j = 0; j < nnz; j++) {
    int64_t i = order[j];
    int32_t r = rows[i];
    int64_t start = a->indptr[r];
    int64_t pos = next[r];
    float v = vals ? vals[i] : 1.0f;
    if (pos > start && a->indices[pos - 1] == cols[i]) {
      a->data[pos - 1] += v; /* duplicate: sum */
    } else {
      a->indices[pos] = cols[i];
      a->data[pos] = v;
      next[r] = pos + 1;
    }
  }
  /* Close the gaps left by duplicates. */
  int64_t w = 0;
  for (int32_t r = 0; r < n_rows; r++) {
    int64_t start = a->indptr[r], end = next[r];
    a->indptr[r] = w;
    for (int64_t p = start; p < end; p++, w++) {
      a->indices[w] = a->indices[p];
      a->data[w] = a->data[p];
    }
  }
  a->indptr[n_rows] = w;
  a->nnz = w;
  mfm_free(colptr);
  mfm_free(order);
  *out = a;
  return MFM_OK;
fail:
  mfm_free(colptr);
  mfm_free(order);
  mfm_csr_free(a);
  return mfm_err_set(err, st, "out of memory building a %d x %d matrix",
                     n_rows, n_cols);
}

mfm_status mfm_csr_transpose(const mfm_csr *a, mfm_csr **out, mfm_err *err) {
  *out = NULL;
  mfm_csr *t = csr_alloc(a->n_cols, a->n_rows, a->nnz);
  int64_t *next = mfm_malloc_array((size_t)a->n_cols + 1, sizeof *next);
  if (!t || !next) {
    mfm_csr_free(t);
    mfm_free(next);
    return mfm_err_set(err, MFM_ENOMEM, "out of memory transposing");
  }
  for (int64_t p = 0; p < a->nnz; p++) t->indptr[a->indices[p] + 1]++;
  for (int32_t c = 0; c < a->n_cols; c++) t->indptr[c + 1] += t->indptr[c];
  memcpy(next, t->indptr, (size_t)a->n_cols * sizeof *next);
  for (int32_t r = 0; r < a->n_rows; r++) {
    for (int64_t p = a->indptr[r]; p < a->indptr[r + 1]; p++) {
      int64_t q = next[a->indices[p]]++;
      t->indices[q] = r;
      t->data[q] = a->data[p];
    }
  }
  mfm_free(next);
  *out = t;
  return MFM_OK;
}

mfm_status mfm_csr_resize(const mfm_csr *a, int32_t n_rows, int32_t n_cols,
                          mfm_csr **out, mfm_err *err) {
  *out = NULL;
  if (n_rows < a->n_rows) n_rows = a->n_rows;
  if (n_cols < a->n_cols) n_cols = a->n_cols;
  mfm_csr *b = csr_alloc(n_rows, n_cols, a->nnz);
  if (!b) return mfm_err_set(err, MFM_ENOMEM, "out of memory resizing");
  memcpy(b->indptr, a->indptr, ((size_t)a->n_rows + 1) * sizeof *b->indptr);
  for (int32_t r = a->n_rows + 1; r <= n_rows; r++)
    b->indptr[r] = a->nnz;
  memcpy(b->indices, a->indices, (size_t)a->nnz * sizeof *b->indices);
  memcpy(b->data, a->data, (size_t)a->nnz * sizeof *b->data);
  *out = b;
  return MFM_OK;
}

int mfm_csr_has(const mfm_csr *a, int32_t r, int32_t c) {
  if (r < 0 || r >= a->n_rows) return 0;
  int64_t lo = a->indptr[r], hi = a->indptr[r + 1];
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a->indices[mid] < c) lo = mid + 1;
    else hi = mid;
  }
  return lo < a->indptr[r + 1] && a->indices[lo] == c;
}
