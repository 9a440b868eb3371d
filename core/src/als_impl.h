/* Internal to ALS: the state the row solvers share with the fit driver
   (als.c) and the solvers' entry points (als_rows.c). */
#ifndef MFM_ALS_IMPL_H
#define MFM_ALS_IMPL_H

#include <stdatomic.h>
#include <stdint.h>

#include "moonfm/als.h"

#define LANES 16    /* rows are padded to 16 floats: one 64-byte line */
#define CHUNK 1024  /* nonzeros gathered at once (long rows use several) */
#define BLOCK 64    /* rows a thread takes at a time (stop-flag period) */
#define PREFETCH 8  /* rows ahead the gather asks the cache for */

typedef struct work {
  float *z;         /* CHUNK x kp */
  float *a;         /* kp x kp */
  float *v;         /* 7 x kp: b, r, p, ap, x, inv, y */
  float *s;         /* 2 x CHUNK: Z v, then CG's Z x */
} work;

typedef struct side {
  const mfm_csr *rows; /* this side's nonzeros (n_rows may be < n) */
  int32_t n;           /* rows to solve */
  float *x;            /* n x k: solved in place */
  const float *y;      /* the other side, fixed */
  const float *gram;   /* kp x kp: Y'Y + lambda I, full */
} side;

typedef struct fit_ctx {
  side s;
  int32_t k, kp, steps;
  float alpha;
  mfm_als_solver solver;
  work *ws;
  atomic_int_fast64_t next;
  atomic_int canceled;
  const mfm_csr *ui;   /* loss pass */
  double *row_loss;
  int fused_loss;      /* solve_row leaves its row's loss terms here */
  int unstoppable;     /* fold-in: a server's answer, not cut by SIGTERM */
} fit_ctx;

typedef void (*mfm_als_rows_fn)(void *ctx, int worker);

/* The solvers built for this CPU's widest vectors (chosen once). */
typedef struct mfm_als_kernels {
  mfm_als_rows_fn solve; /* solves rows c->next.. of c->s, fused loss too */
  mfm_als_rows_fn loss;  /* loss terms of rows c->next.. into c->row_loss */
  const char *isa;       /* "avx512", "avx2" or "base" */
} mfm_als_kernels;

mfm_als_kernels mfm_als_kernels_pick(void);

/* Tests: use the instance named isa ("avx512", "avx2", "base"; NULL goes
   back to the widest).  0 when this CPU cannot run it.  Not thread-safe. */
int mfm_als_kernels_force(const char *isa);

#endif
