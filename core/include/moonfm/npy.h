/* Exports for users of other tools: NumPy .npy v1.0 files of float32
   matrices and vectors, and id lists as text (one id per line, in index
   order).  Both are written atomically (fileio.h). */
#ifndef MOONFM_NPY_H
#define MOONFM_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Writes a float32 array to path (borrowed) as .npy v1.0, little-endian,
   C order.  ndim 2: shape (rows, cols), row r at data + r * ld (ld >=
   cols); ndim 1: shape (rows,), ld ignored.  data may be NULL to write
   zeros.  MFM_EINVAL for a bad shape, MFM_EIO naming the path when the
   disk refuses (the previous file is left intact). */
mfm_status mfm_npy_write_f32(const char *path, const float *data, int ndim,
                             int64_t rows, int64_t cols, int64_t ld,
                             mfm_err *err);

/* The .npy header for a float32 array of that shape (ndim 1 or 2) into
   buf (at least 128 bytes): magic, version 1.0, the dict padded so that
   the data starts at a multiple of 64.  Returns its length, 0 when buf is
   too small. */
size_t mfm_npy_header(char *buf, size_t cap, int ndim, int64_t rows,
                      int64_t cols);

/* Writes n ids as text, one per line in index order: id i is bytes
   [offsets[i], offsets[i+1]) of bytes (the id map's serialised form,
   idmap.h).  MFM_EINVAL when an id holds a newline (a line count would
   lie), MFM_EIO naming the path. */
mfm_status mfm_ids_write_text(const char *path, const char *bytes,
                              const int64_t *offsets, int64_t n,
                              mfm_err *err);

#endif
