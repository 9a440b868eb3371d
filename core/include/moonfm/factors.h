/* The common view of a trained model that evaluation, top-k and serving
   need: score(u, i) = dot(user[u], item[i]) + user_bias[u] + item_bias[i].
   Both the factorization model and ALS provide one, so evaluation is
   written once, with no knowledge of how the factors were learned. */
#ifndef MOONFM_FACTORS_H
#define MOONFM_FACTORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mfm_factors {
  int32_t n_users, n_items, k;
  const float *user;      /* n_users x k, row-major, rows ld_user apart */
  const float *item;      /* n_items x k, row-major, rows ld_item apart */
  int64_t ld_user, ld_item;
  const float *user_bias; /* n_users, or NULL for zeros */
  const float *item_bias; /* n_items, or NULL for zeros */
} mfm_factors;

/* Named arrays, the unit in which models are saved and exported. */
typedef enum mfm_dtype {
  MFM_F32 = 1,
  MFM_I32 = 2,
  MFM_I64 = 3,
  MFM_U8 = 4,
  MFM_F64 = 5,
  MFM_U64 = 6
} mfm_dtype;

typedef struct mfm_array {
  char name[48];
  mfm_dtype dtype;
  int64_t rows, cols; /* a vector has cols == 1 */
  void *data;         /* rows * cols elements, row-major */
} mfm_array;

/* Bytes of one element of dtype (0 for an unknown dtype). */
size_t mfm_dtype_size(mfm_dtype t);

#endif
