/* Combining data read on several hosts: id maps merged in a fixed order,
   interactions remapped and summed (see moonfm/merge.h). */
#include "moonfm/merge.h"

#include <string.h>

#include "moonfm/alloc.h"

mfm_status mfm_idmap_merge(mfm_idmap *dst, const char *bytes,
                           int64_t n_bytes, const int64_t *offsets,
                           int32_t n, int32_t *index, mfm_err *err) {
  if (n < 0 || (n > 0 && (!bytes || !offsets)))
    return mfm_err_set(err, MFM_EINVAL, "merge ids: bad arguments");
  if (n > 0 && offsets[0] != 0)
    return mfm_err_set(err, MFM_EFORMAT, "merge ids: offsets must start at "
                       "0, not %lld", (long long)offsets[0]);
  for (int32_t i = 0; i < n; i++) {
    int64_t a = offsets[i], b = offsets[i + 1];
    if (b < a || b > n_bytes)
      return mfm_err_set(err, MFM_EFORMAT, "merge ids: offset %d (%lld) "
                         "is out of order or past the %lld bytes", i + 1,
                         (long long)b, (long long)n_bytes);
    int32_t ix;
    mfm_status st = mfm_idmap_intern(dst, bytes + a, (size_t)(b - a), &ix,
                                     err);
    if (st) return st;
    if (index) index[i] = ix;
  }
  return MFM_OK;
}

static int keep(int32_t r, int32_t c, int32_t rlo, int32_t rhi, int32_t clo,
                int32_t chi) {
  return (r >= rlo && r < rhi) || (c >= clo && c < chi);
}

mfm_status mfm_csr_merge(const mfm_csr_part *parts, int n_parts,
                         int32_t n_rows, int32_t n_cols, int32_t row_lo,
                         int32_t row_hi, int32_t col_lo, int32_t col_hi,
                         mfm_csr **out, mfm_err *err) {
  *out = NULL;
  if (n_parts < 0 || n_rows < 0 || n_cols < 0)
    return mfm_err_set(err, MFM_EINVAL, "merge: bad sizes");
  /* Check every index first, and count what is kept. */
  int64_t nnz = 0;
  for (int p = 0; p < n_parts; p++) {
    const mfm_csr *a = parts[p].csr;
    const int32_t *rm = parts[p].row_map, *cm = parts[p].col_map;
    for (int32_t r = 0; r < a->n_rows; r++) {
      int32_t gr = rm ? rm[r] : r;
      if (a->indptr[r + 1] > a->indptr[r] && (gr < 0 || gr >= n_rows))
        return mfm_err_set(err, MFM_EINVAL, "merge: part %d row %d goes to "
                           "row %d, outside 0..%d", p + 1, r, gr, n_rows - 1);
      for (int64_t q = a->indptr[r]; q < a->indptr[r + 1]; q++) {
        int32_t c = a->indices[q];
        int32_t gc = cm ? (c >= 0 && c < a->n_cols ? cm[c] : -1) : c;
        if (gc < 0 || gc >= n_cols)
          return mfm_err_set(err, MFM_EINVAL, "merge: part %d column %d "
                             "goes to column %d, outside 0..%d", p + 1, c,
                             gc, n_cols - 1);
        nnz += keep(gr, gc, row_lo, row_hi, col_lo, col_hi);
      }
    }
  }
  size_t m = nnz > 0 ? (size_t)nnz : 1;
  int32_t *rows = mfm_malloc_array(m, sizeof *rows);
  int32_t *cols = mfm_malloc_array(m, sizeof *cols);
  float *vals = mfm_malloc_array(m, sizeof *vals);
  mfm_status st = MFM_OK;
  if (!rows || !cols || !vals) {
    st = mfm_err_set(err, MFM_ENOMEM, "merge: out of memory for %lld "
                     "interactions", (long long)nnz);
    goto done;
  }
  int64_t t = 0;
  for (int p = 0; p < n_parts; p++) {
    const mfm_csr *a = parts[p].csr;
    const int32_t *rm = parts[p].row_map, *cm = parts[p].col_map;
    for (int32_t r = 0; r < a->n_rows; r++) {
      int32_t gr = rm ? rm[r] : r;
      for (int64_t q = a->indptr[r]; q < a->indptr[r + 1]; q++) {
        int32_t gc = cm ? cm[a->indices[q]] : a->indices[q];
        if (!keep(gr, gc, row_lo, row_hi, col_lo, col_hi)) continue;
        rows[t] = gr;
        cols[t] = gc;
        vals[t] = a->data ? a->data[q] : 1.0f;
        t++;
      }
    }
  }
  st = mfm_csr_from_coo(n_rows, n_cols, t, rows, cols, vals, out, err);
done:
  mfm_free(rows);
  mfm_free(cols);
  mfm_free(vals);
  return st;
}

mfm_status mfm_csr_slice_rows(const mfm_csr *a, int32_t lo, int32_t hi,
                              mfm_csr **out, mfm_err *err) {
  *out = NULL;
  if (lo < 0 || hi < lo || hi > a->n_rows)
    return mfm_err_set(err, MFM_EINVAL, "slice: rows [%d, %d) outside the "
                       "%d rows", lo, hi, a->n_rows);
  mfm_csr_part part = {a, NULL, NULL};
  /* Rows [lo, hi) only: no column window. */
  return mfm_csr_merge(&part, 1, a->n_rows, a->n_cols, lo, hi, 0, 0, out,
                       err);
}
