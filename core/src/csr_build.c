/* The in-place COO -> CSR build behind mfm_reader_finish and
   mfm_csr_from_coo_inplace: the entries are moved into row order where
   they are (an MSD radix sort by row, or one merge when the data is
   sorted but for a tail; then each row is sorted by column and its
   duplicates summed), so the peak of memory is the COO and the row
   pointers, not two copies of the data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moonfm/alloc.h"
#include "hugepage.h"
#include "reader_impl.h"

/* Sorts cols (and vals) of one row by column. */
static void sort_row(int32_t *c, float *v, int64_t n) {
  while (n > 16) {
    int64_t a = 0, b = n / 2, z = n - 1, m;
    /* median of three as the pivot */
    m = c[a] < c[b] ? (c[b] < c[z] ? b : (c[a] < c[z] ? z : a))
                    : (c[a] < c[z] ? a : (c[b] < c[z] ? z : b));
    /* The pivot goes first, so Hoare's scheme leaves both sides
       non-empty. */
    int32_t tc0 = c[0]; c[0] = c[m]; c[m] = tc0;
    float tv0 = v[0]; v[0] = v[m]; v[m] = tv0;
    int32_t pivot = c[0];
    int64_t i = -1, j = n;
    for (;;) {
      do i++; while (c[i] < pivot);
      do j--; while (c[j] > pivot);
      if (i >= j) break;
      int32_t tc = c[i]; c[i] = c[j]; c[j] = tc;
      float tv = v[i]; v[i] = v[j]; v[j] = tv;
    }
    /* [0, j] <= pivot <= [j + 1, n): recurse on the smaller side */
    if (j + 1 < n - j - 1) {
      sort_row(c, v, j + 1);
      c += j + 1;
      v += j + 1;
      n -= j + 1;
    } else {
      sort_row(c + j + 1, v + j + 1, n - j - 1);
      n = j + 1;
    }
  }
  for (int64_t i = 1; i < n; i++) {
    int32_t tc = c[i];
    float tv = v[i];
    int64_t j = i;
    while (j > 0 && c[j - 1] > tc) {
      c[j] = c[j - 1];
      v[j] = v[j - 1];
      j--;
    }
    c[j] = tc;
    v[j] = tv;
  }
}

/* Each entry's weight travels with it as asz bytes of aux: 4 (floats),
   1 (the reader's byte codes) or 0 (none: every weight is 1). */
static inline uint32_t aux_get(const unsigned char *aux, int asz,
                               int64_t i) {
  uint32_t v = 0;
  if (asz == 4) memcpy(&v, aux + 4 * i, 4);
  else if (asz == 1) v = aux[i];
  return v;
}

static inline void aux_put(unsigned char *aux, int asz, int64_t i,
                           uint32_t v) {
  if (asz == 4) memcpy(aux + 4 * i, &v, 4);
  else if (asz == 1) aux[i] = (unsigned char)v;
}

/* Moves the entries of rows [r0, r1) (at indptr[r0] .. indptr[r1]) into
   row order: an in-place MSD radix sort, at most 1024 buckets a pass, so
   the write cursors stay in cache however many rows there are (one
   1M-bucket pass misses the cache on every entry). */
static void place_rows(int32_t *rows, int32_t *cols, unsigned char *aux,
                       int asz, const int64_t *indptr, int32_t r0,
                       int32_t r1) {
  int64_t next[1025];
  int64_t n = (int64_t)r1 - r0;
  if (n <= 1 || indptr[r1] - indptr[r0] <= 1) return;
  int bits = 0;
  while (((int64_t)1 << bits) < n) bits++;
  int shift = bits > 10 ? bits - 10 : 0;
  int32_t nb = (int32_t)(((n - 1) >> shift) + 1);
  for (int32_t b = 0; b < nb; b++)
    next[b] = indptr[r0 + ((int64_t)b << shift)];
  next[nb] = indptr[r1];
  for (int32_t b = 0; b < nb; b++) {
    int64_t lim = b + 1 < nb ? indptr[r0 + ((int64_t)(b + 1) << shift)]
                             : indptr[r1];
    while (next[b] < lim) {
      /* Carry the entry at the cursor round its cycle until one that
         belongs here comes back. */
      int64_t i = next[b];
      int32_t r = rows[i], c = cols[i];
      uint32_t v = aux_get(aux, asz, i);
      int32_t k = (r - r0) >> shift;
      while (k != b) {
        int64_t j = next[k]++;
        int32_t tr = rows[j], tc = cols[j];
        uint32_t tv = aux_get(aux, asz, j);
        rows[j] = r; cols[j] = c; aux_put(aux, asz, j, v);
        r = tr; c = tc; v = tv;
        k = (r - r0) >> shift;
      }
      rows[i] = r; cols[i] = c; aux_put(aux, asz, i, v);
      next[b] = i + 1;
    }
  }
  if (shift)
    for (int32_t b = 0; b < nb; b++) {
      int64_t a = r0 + ((int64_t)b << shift), z = a + ((int64_t)1 << shift);
      place_rows(rows, cols, aux, asz, indptr, (int32_t)a,
                 (int32_t)(z < r1 ? z : r1));
    }
}

/* Entries [0, p) and [p, n) are each sorted by row: merges them in
   place, stably (the file's order within a row, as when nothing moves),
   from the back, through a copy of the short second part.  rows is not
   written: the build drops it next.  Returns 0 (nothing done) when the
   copy cannot be made. */
static int merge_tail(const int32_t *rows, int32_t *cols, unsigned char *aux,
                      int asz, int64_t p, int64_t n) {
  int64_t t = n - p;
  char *buf = mfm_malloc_array((size_t)t, 2 * sizeof(int32_t) + 4);
  if (!buf) return 0;
  int32_t *br = (int32_t *)(void *)buf, *bc = br + t;
  unsigned char *ba = (unsigned char *)(bc + t);
  memcpy(br, rows + p, (size_t)t * sizeof *br);
  memcpy(bc, cols + p, (size_t)t * sizeof *bc);
  if (asz) memcpy(ba, aux + p * asz, (size_t)t * (size_t)asz);
  int64_t i = p - 1, j = t - 1, w = n - 1;
  while (j >= 0) {
    /* The prefix entries above the tail's last (ties stay below it: it
       came later) move up as one block, found by galloping down. */
    int32_t key = br[j];
    if (i >= 0 && rows[i] > key) {
      int64_t lo = -1, hi = i, step = 1; /* rows[lo] <= key < rows[hi] */
      while (hi - step >= 0 && rows[hi - step] > key) {
        hi -= step;
        step *= 2;
      }
      if (hi - step >= 0) lo = hi - step;
      while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (rows[mid] > key) hi = mid;
        else lo = mid;
      }
      int64_t len = i - hi + 1;
      memmove(cols + w - len + 1, cols + hi, (size_t)len * sizeof *cols);
      if (asz)
        memmove(aux + (w - len + 1) * asz, aux + hi * asz,
                (size_t)len * (size_t)asz);
      w -= len;
      i = hi - 1;
    }
    cols[w] = bc[j];
    aux_put(aux, asz, w, aux_get(ba, asz, j));
    j--;
    w--;
  }
  mfm_free(buf);
  return 1;
}

/* mfm_csr_from_coo_inplace, also taking the reader's byte weights:
   codes (n entries, or NULL) stand for vals while those are NULL, and
   are consumed. */
mfm_status mfm_csr_build(int32_t n_rows, int32_t n_cols, mfm_coo *coo,
                         unsigned char *codes, int32_t bad[2], mfm_csr **out,
                         mfm_err *err) {
  mfm_status st;
  int64_t nnz = coo->n;
  mfm_csr *a = NULL;
  *out = NULL;
  if (n_rows < 0 || n_cols < 0) {
    st = mfm_err_set(err, MFM_EINVAL, "negative matrix size");
    goto fail;
  }
  a = mfm_calloc(1, sizeof *a);
  if (!a) goto nomem;
  a->indptr = mfm_calloc((size_t)n_rows + 1, sizeof *a->indptr);
  if (!a->indptr) goto nomem;
  /* One pass checks, counts the rows, and finds where the order by row
     first breaks (and whether it breaks again). */
  int64_t first_break = nnz, breaks = 0;
  {
    const int32_t *rows = coo->rows, *cols = coo->cols;
    int64_t *cnt = a->indptr + 1;
    int32_t prev = 0;
    for (int64_t k = 0; k < nnz; k++) {
      int32_t r = rows[k];
      if ((uint32_t)r >= (uint32_t)n_rows ||
          (uint32_t)cols[k] >= (uint32_t)n_cols) {
        st = mfm_err_set(err, MFM_EINVAL, "entry %lld (%d, %d) is outside "
                         "%d x %d", (long long)k, r, cols[k], n_rows,
                         n_cols);
        goto fail;
      }
      cnt[r]++;
      if (r < prev && !breaks++) first_break = k;
      prev = r;
    }
  }
  st = MFM_ENOMEM;
  if (!coo->cols) {
    coo->cols = mfm_malloc(sizeof(int32_t));
    if (!coo->cols) goto nomem;
  }
  int32_t *rows = coo->rows, *cols = coo->cols;
  unsigned char *aux = coo->vals ? (unsigned char *)coo->vals : codes;
  int asz = coo->vals ? 4 : codes ? 1 : 0;
  for (int32_t r = 0; r < n_rows; r++) a->indptr[r + 1] += a->indptr[r];
  /* Exports sorted by user need no moving at all; sorted ones with a
     short sorted tail (a second file, a wrapped export) one merge. */
  if (breaks == 1 && nnz - first_break <= nnz / 8 &&
      merge_tail(rows, cols, aux, asz, first_break, nnz))
    breaks = 0;
  if (breaks) place_rows(rows, cols, aux, asz, a->indptr, 0, n_rows);
  mfm_free(coo->rows);
  coo->rows = NULL;
  /* The float weights appear only now, once the row array is gone, so
     that the peak holds 1 byte (or none) per weight, not 4. */
  if (!coo->vals) {
    coo->vals = mfm_malloc_array((size_t)(nnz ? nnz : 1), sizeof(float));
    if (!coo->vals) goto nomem;
    mfm_advise_huge(coo->vals, (size_t)(nnz ? nnz : 1) * sizeof(float));
    for (int64_t k = 0; k < nnz; k++)
      coo->vals[k] = codes ? (float)codes[k] : 1.0f;
  }
  mfm_free(codes);
  codes = NULL;
  float *vals = coo->vals;
  /* Sort each row, sum duplicates, close the gaps. */
  int64_t w = 0;
  for (int32_t r = 0; r < n_rows; r++) {
    int64_t s = a->indptr[r], e = a->indptr[r + 1];
    sort_row(cols + s, vals + s, e - s);
    a->indptr[r] = w;
    int64_t p = s;
    if (w == s && p < e) {
      /* Nothing has moved yet: the entries before the row's first
         duplicate stay where they are. */
      for (p = s + 1; p < e && cols[p] != cols[p - 1]; p++) {
      }
      w = p;
    }
    for (; p < e; p++) {
      if (w > a->indptr[r] && cols[w - 1] == cols[p]) {
        vals[w - 1] += vals[p];
        /* Each weight is finite, their sum may not be (3e38 twice). */
        if (!isfinite(vals[w - 1])) {
          if (bad) bad[0] = r, bad[1] = cols[p];
          st = mfm_err_set(err, MFM_EFORMAT,
                           "the weights of the repeated entries of row %d, "
                           "column %d sum to a value that is not finite",
                           (int)r, (int)cols[p]);
          goto fail;
        }
      } else {
        cols[w] = cols[p];
        vals[w] = vals[p];
        w++;
      }
    }
  }
  a->indptr[n_rows] = w;
  if (w < nnz && w > 0) {
    /* Give back what the duplicates used; a failed shrink is harmless. */
    int32_t *c2 = mfm_realloc(cols, (size_t)w * sizeof *c2);
    if (c2) cols = c2;
    float *v2 = mfm_realloc(vals, (size_t)w * sizeof *v2);
    if (v2) vals = v2;
  }
  a->n_rows = n_rows;
  a->n_cols = n_cols;
  a->nnz = w;
  a->indices = cols;
  a->data = vals;
  coo->cols = NULL;
  coo->vals = NULL;
  mfm_coo_free(coo);
  *out = a;
  return MFM_OK;
nomem:
  st = mfm_err_set(err, MFM_ENOMEM, "out of memory building a %d x %d "
                   "matrix", n_rows, n_cols);
fail:
  mfm_free(codes);
  mfm_csr_free(a);
  mfm_coo_free(coo);
  return st;
}

mfm_status mfm_csr_from_coo_inplace(int32_t n_rows, int32_t n_cols,
                                    mfm_coo *coo, mfm_csr **out,
                                    mfm_err *err) {
  return mfm_csr_build(n_rows, n_cols, coo, NULL, NULL, out, err);
}

