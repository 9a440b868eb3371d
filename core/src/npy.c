/* .npy v1.0 and id-list exports.  Format of .npy: "\x93NUMPY", major 1,
   minor 0, u16 little-endian header length, an ASCII Python dict padded
   with spaces and ended by '\n', then the raw data. */
#include "moonfm/npy.h"

#include <stdio.h>
#include <string.h>

#include "moonfm/fileio.h"

#define CHUNK (1 << 16)

size_t mfm_npy_header(char *buf, size_t cap, int ndim, int64_t rows,
                      int64_t cols) {
  char dict[128];
  int n;
  if (ndim == 1)
    n = snprintf(dict, sizeof dict,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld,), }",
                 (long long)rows);
  else
    n = snprintf(dict, sizeof dict,
                 "{'descr': '<f4', 'fortran_order': False, "
                 "'shape': (%lld, %lld), }",
                 (long long)rows, (long long)cols);
  if (n < 0 || (size_t)n >= sizeof dict) return 0;
  /* 10 bytes of preamble + dict + padding + '\n' = a multiple of 64. */
  size_t total = ((size_t)10 + (size_t)n + 1 + 63) / 64 * 64;
  if (total > cap) return 0;
  size_t hlen = total - 10;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  memcpy(buf + 10, dict, (size_t)n);
  memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
  buf[total - 1] = '\n';
  return total;
}

mfm_status mfm_npy_write_f32(const char *path, const float *data, int ndim,
                             int64_t rows, int64_t cols, int64_t ld,
                             mfm_err *err) {
  if (ndim == 1) {
    cols = 1;
    ld = 1;
  }
  if ((ndim != 1 && ndim != 2) || rows < 0 || cols < 0 || ld < cols ||
      (cols > 0 && rows > INT64_MAX / 4 / cols))
    return mfm_err_set(err, MFM_EINVAL, "%s: bad array shape for .npy",
                       path);
  char head[128];
  size_t hn = mfm_npy_header(head, sizeof head, ndim, rows, cols);
  if (hn == 0)
    return mfm_err_set(err, MFM_EINVAL, "%s: bad array shape for .npy", path);
  mfm_atomic_file *f;
  mfm_status st = mfm_atomic_open(path, &f, err);
  if (st != MFM_OK) return st;
  st = mfm_atomic_write(f, head, hn, err);
  static const float zeros[CHUNK / sizeof(float)];
  if (data == NULL) {
    /* Zeros, e.g. the biases of a model without biases. */
    uint64_t left = (uint64_t)rows * (uint64_t)cols * sizeof(float);
    while (st == MFM_OK && left > 0) {
      size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
      st = mfm_atomic_write(f, zeros, n, err);
      left -= n;
    }
  } else if (ld == cols) {
    st = mfm_atomic_write(f, data, (size_t)(rows * cols) * sizeof(float),
                          err);
  } else {
    for (int64_t r = 0; r < rows && st == MFM_OK; r++)
      st = mfm_atomic_write(f, data + r * ld, (size_t)cols * sizeof(float),
                            err);
  }
  if (st != MFM_OK) {
    mfm_atomic_abort(f);
    return st;
  }
  return mfm_atomic_commit(f, err);
}

mfm_status mfm_ids_write_text(const char *path, const char *bytes,
                              const int64_t *offsets, int64_t n,
                              mfm_err *err) {
  if (n < 0 || (n > 0 && (!offsets || offsets[0] < 0)))
    return mfm_err_set(err, MFM_EINVAL, "%s: bad id list", path);
  for (int64_t i = 0; i < n; i++) {
    if (offsets[i + 1] < offsets[i])
      return mfm_err_set(err, MFM_EINVAL, "%s: bad id list", path);
    if (memchr(bytes + offsets[i], '\n',
               (size_t)(offsets[i + 1] - offsets[i])))
      return mfm_err_set(err, MFM_EINVAL,
                         "%s: id %lld holds a newline; cannot write it as "
                         "one line", path, (long long)i + 1);
  }
  mfm_atomic_file *f;
  mfm_status st = mfm_atomic_open(path, &f, err);
  if (st != MFM_OK) return st;
  /* Ids are short: gather lines into a buffer rather than two writes per
     id. */
  char buf[CHUNK];
  size_t used = 0;
  for (int64_t i = 0; i < n && st == MFM_OK; i++) {
    const char *p = bytes + offsets[i];
    size_t len = (size_t)(offsets[i + 1] - offsets[i]);
    if (used + len + 1 > sizeof buf) {
      st = mfm_atomic_write(f, buf, used, err);
      used = 0;
      if (st != MFM_OK) break;
    }
    if (len + 1 > sizeof buf) {
      st = mfm_atomic_write(f, p, len, err);
      if (st == MFM_OK) st = mfm_atomic_write(f, "\n", 1, err);
    } else {
      memcpy(buf + used, p, len);
      buf[used + len] = '\n';
      used += len + 1;
    }
  }
  if (st == MFM_OK && used > 0) st = mfm_atomic_write(f, buf, used, err);
  if (st != MFM_OK) {
    mfm_atomic_abort(f);
    return st;
  }
  return mfm_atomic_commit(f, err);
}
