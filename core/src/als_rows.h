/* The ALS row solvers, instantiated once per instruction set by
   als_rows.c (no include guard on purpose).  Before each inclusion:
     ALS_VW      floats per vector register: 16 (AVX-512), 8 (AVX2), 4
     ALS_SFX     the suffix of this instance's names
     ALS_TARGET  the target attribute of its two entry points
   Each instance does its arithmetic on vectors of its own width: a GCC
   vector wider than the target's registers is lowered through memory,
   which made the AVX-512-shaped kernels 8x slower on AVX2-only CPUs.
   Every width divides LANES, so the padded rows (kp floats) suit all. */

#define K(name) K_(name, ALS_SFX)
#define K_(a, b) K__(a, b)
#define K__(a, b) a##_##b
#define VEC K(vec)

typedef float VEC __attribute__((vector_size(4 * ALS_VW)));

INLINE VEC K(ld)(const float *p) {
  VEC v;
  memcpy(&v, p, sizeof v);
  return v;
}
INLINE void K(st)(float *p, VEC v) { memcpy(p, &v, sizeof v); }

/* Halves to 4 lanes: the same order at every width. */
INLINE mfm_v4 K(to4)(VEC a) {
#if ALS_VW == 16
  mfm_v8 lo = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7);
  lo += __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
#elif ALS_VW == 8
  mfm_v8 lo = a;
#endif
#if ALS_VW >= 8
  return __builtin_shufflevector(lo, lo, 0, 1, 2, 3) +
         __builtin_shufflevector(lo, lo, 4, 5, 6, 7);
#else
  return a;
#endif
}

/* The lanes' sum: halves to 4, then pairs. */
INLINE float K(hsum)(VEC a) {
  mfm_v4 l4 = K(to4)(a);
  return (l4[0] + l4[2]) + (l4[1] + l4[3]);
}

/* Four hsums at once, each in hsum's order, by a 4 x 4 transpose. */
INLINE mfm_v4 K(hsum4)(VEC a, VEC b, VEC c, VEC d) {
  mfm_v4 a4 = K(to4)(a), b4 = K(to4)(b), c4 = K(to4)(c), d4 = K(to4)(d);
  mfm_v4 ab = __builtin_shufflevector(a4, b4, 0, 1, 4, 5) +
              __builtin_shufflevector(a4, b4, 2, 3, 6, 7);
  mfm_v4 cd = __builtin_shufflevector(c4, d4, 0, 1, 4, 5) +
              __builtin_shufflevector(c4, d4, 2, 3, 6, 7);
  return __builtin_shufflevector(ab, cd, 0, 2, 4, 6) +
         __builtin_shufflevector(ab, cd, 1, 3, 5, 7);
}

/* Dot product over kp (a multiple of ALS_VW). */
INLINE float K(dotv)(const float *a, const float *b, int32_t kp) {
  VEC acc = K(ld)(a) * K(ld)(b);
  for (int32_t j = ALS_VW; j < kp; j += ALS_VW) acc += K(ld)(a + j) * K(ld)(b + j);
  return K(hsum)(acc);
}

/* s[t] = z_t . v for the m rows z_t = z + t kp, each sum in dotv's order.
   Four rows run on independent chains: one chain waits on the FMA latency
   (the hottest loop of CG at 64 factors, by perf). */
INLINE void K(dots)(const float *z, int32_t m, const float *v, int32_t kp,
                    float *s) {
  int32_t t = 0;
  for (; t + 3 < m; t += 4, z += 4 * (size_t)kp) {
    const float *z1 = z + kp, *z2 = z1 + kp, *z3 = z2 + kp;
    VEC vj = K(ld)(v);
    VEC a0 = K(ld)(z) * vj, a1 = K(ld)(z1) * vj, a2 = K(ld)(z2) * vj,
        a3 = K(ld)(z3) * vj;
    int32_t j = ALS_VW;
    if (kp % (2 * ALS_VW) == 0) {
      /* Odd vectors on chains of their own: eight chains, not four. */
      vj = K(ld)(v + j);
      VEC b0 = K(ld)(z + j) * vj, b1 = K(ld)(z1 + j) * vj,
          b2 = K(ld)(z2 + j) * vj, b3 = K(ld)(z3 + j) * vj;
      for (j += ALS_VW; j < kp; j += 2 * ALS_VW) {
        vj = K(ld)(v + j);
        VEC vk = K(ld)(v + j + ALS_VW);
        a0 += K(ld)(z + j) * vj;
        a1 += K(ld)(z1 + j) * vj;
        a2 += K(ld)(z2 + j) * vj;
        a3 += K(ld)(z3 + j) * vj;
        b0 += K(ld)(z + j + ALS_VW) * vk;
        b1 += K(ld)(z1 + j + ALS_VW) * vk;
        b2 += K(ld)(z2 + j + ALS_VW) * vk;
        b3 += K(ld)(z3 + j + ALS_VW) * vk;
      }
      a0 += b0;
      a1 += b1;
      a2 += b2;
      a3 += b3;
    }
    for (; j < kp; j += ALS_VW) {
      vj = K(ld)(v + j);
      a0 += K(ld)(z + j) * vj;
      a1 += K(ld)(z1 + j) * vj;
      a2 += K(ld)(z2 + j) * vj;
      a3 += K(ld)(z3 + j) * vj;
    }
    mfm_v4 r = K(hsum4)(a0, a1, a2, a3);
    memcpy(s + t, &r, sizeof r);
  }
  for (; t < m; t++, z += kp) s[t] = K(dotv)(z, v, kp);
}

INLINE void K(axpy)(float a, const float *x, float *y, int32_t kp) {
  for (int32_t j = 0; j < kp; j += ALS_VW) K(st)(y + j, K(ld)(y + j) + a * K(ld)(x + j));
}

INLINE float K(dot)(const float *a, const float *b, int32_t n) {
  float s = 0;
  for (int32_t j = 0; j < n; j++) s += a[j] * b[j];
  return s;
}

/* Gathers nonzeros [0, n) of a row: Z[t] = sqrt(alpha w_t) y[idx_t], and
   b += (1 + alpha w_t) y[idx_t] when b is not NULL.  Columns past k stay
   zero (the buffer is zeroed once).  When k is a whole number of vectors
   up to 64 (k == kp) the row is copied a vector at a time and b's sum is
   held in registers: with a constant k the loops unroll, and b was
   loaded and stored for every nonzero (perf put the gather at a quarter
   of CG's time, and it ran no faster with every row in L1). */
INLINE void K(gather)(const int32_t *idx, const float *w, int32_t n,
                   const float *y, int32_t k, int32_t kp, float alpha,
                   float *z, float *b) {
  enum { NB = 64 / ALS_VW };
  int regs = k == kp && k <= 64;
  VEC acc[NB];
  for (int v = 0; v < NB; v++) acc[v] = (VEC){0};
  for (int32_t t = 0; t < n; t++) {
    const float *yt = y + (size_t)idx[t] * (size_t)k;
    /* The rows are scattered over a matrix larger than the cache: ask for
       one a few iterations ahead (k floats, one line per 16). */
    if (t + PREFETCH < n) {
      const char *ahead = (const char *)(y + (size_t)idx[t + PREFETCH] * k);
      for (int32_t j = 0; j < k; j += LANES) __builtin_prefetch(ahead + 4 * j);
      __builtin_prefetch(ahead + 4 * (size_t)k - 1);
    }
    float d = alpha * w[t];
    float sd = sqrtf(d), c = 1.0f + d;
    float *zt = z + (size_t)t * kp;
    if (regs) {
      for (int32_t v = 0; v < k / ALS_VW; v++) {
        VEC yv = K(ld)(yt + v * ALS_VW);
        K(st)(zt + v * ALS_VW, sd * yv);
        if (b) acc[v] += c * yv;
      }
      continue;
    }
    for (int32_t j = 0; j < k; j++) zt[j] = sd * yt[j];
    if (b)
      for (int32_t j = 0; j < k; j++) b[j] += c * yt[j];
  }
  if (regs && b)
    for (int32_t v = 0; v < k / ALS_VW; v++)
      K(st)(b + v * ALS_VW, K(ld)(b + v * ALS_VW) + acc[v]);
}

/* Upper triangle of A += Z'Z over n gathered rows, in tiles of 4 rows x
   2 vectors held in registers for the whole pass over Z (a small GEMM
   micro-kernel: 6 loads feed 8 FMAs).  Row r is updated from column
   floor_VW(r) on; what lies left of the diagonal there is never read.
   Rows past k (up to kp) are zero in Z, so 4-row tiles never go out of
   bounds.  Each element sums its terms in the order of t. */
INLINE void K(gram_update)(float *a, const float *z, int32_t n, int32_t k,
                           int32_t kp) {
  for (int32_t rb = 0; rb < k; rb += 4) {
    float *a0 = a + (size_t)rb * kp, *a1 = a0 + kp, *a2 = a1 + kp,
          *a3 = a2 + kp;
    int32_t cb = rb / ALS_VW * ALS_VW;
    for (; cb + 2 * ALS_VW <= kp; cb += 2 * ALS_VW) {
      VEC c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0},
          c30 = {0}, c31 = {0};
      const float *zt = z;
      for (int32_t t = 0; t < n; t++, zt += kp) {
        VEC z0 = K(ld)(zt + cb), z1 = K(ld)(zt + cb + ALS_VW);
        float r0 = zt[rb], r1 = zt[rb + 1], r2 = zt[rb + 2], r3 = zt[rb + 3];
        c00 += r0 * z0;
        c01 += r0 * z1;
        c10 += r1 * z0;
        c11 += r1 * z1;
        c20 += r2 * z0;
        c21 += r2 * z1;
        c30 += r3 * z0;
        c31 += r3 * z1;
      }
      K(st)(a0 + cb, K(ld)(a0 + cb) + c00);
      K(st)(a0 + cb + ALS_VW, K(ld)(a0 + cb + ALS_VW) + c01);
      K(st)(a1 + cb, K(ld)(a1 + cb) + c10);
      K(st)(a1 + cb + ALS_VW, K(ld)(a1 + cb + ALS_VW) + c11);
      K(st)(a2 + cb, K(ld)(a2 + cb) + c20);
      K(st)(a2 + cb + ALS_VW, K(ld)(a2 + cb + ALS_VW) + c21);
      K(st)(a3 + cb, K(ld)(a3 + cb) + c30);
      K(st)(a3 + cb + ALS_VW, K(ld)(a3 + cb + ALS_VW) + c31);
    }
    if (cb < kp) { /* one vector left: an odd count from floor_VW(rb) on */
      VEC c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
      const float *zt = z;
      for (int32_t t = 0; t < n; t++, zt += kp) {
        VEC z0 = K(ld)(zt + cb);
        c0 += zt[rb] * z0;
        c1 += zt[rb + 1] * z0;
        c2 += zt[rb + 2] * z0;
        c3 += zt[rb + 3] * z0;
      }
      K(st)(a0 + cb, K(ld)(a0 + cb) + c0);
      K(st)(a1 + cb, K(ld)(a1 + cb) + c1);
      K(st)(a2 + cb, K(ld)(a2 + cb) + c2);
      K(st)(a3 + cb, K(ld)(a3 + cb) + c3);
    }
  }
}

/* Row j of the factor: U_jj = sqrt(a_jj), the row scaled by 1 / U_jj. */
INLINE int K(chol_pivot)(float *a, int32_t j, int32_t kp, float *inv) {
  float *uj = a + (size_t)j * kp;
  float d = uj[j];
  if (!(d > 0)) return 0;
  float r = 1.0f / sqrtf(d);
  inv[j] = r;
  for (int32_t c = j / ALS_VW * ALS_VW; c < kp; c += ALS_VW)
    K(st)(uj + c, K(ld)(uj + c) * r);
  return 1;
}

/* In-place Cholesky A = U'U on the upper triangle (row-major, ld kp), in
   the right-looking form whose updates are contiguous row segments; inv
   gets 1 / U_jj.  Four pivot rows at a time: the rows below take their
   four updates in one load and store (a store per update made the
   factorization store-bound), still in the order of j.  Returns 0 if A
   is not positive definite. */
INLINE int K(cholesky)(float *a, int32_t k, int32_t kp, float *inv) {
  for (int32_t j0 = 0; j0 < k; j0 += 4) {
    int32_t j1 = j0 + 4 < k ? j0 + 4 : k;
    for (int32_t j = j0; j < j1; j++) {
      if (!K(chol_pivot)(a, j, kp, inv)) return 0;
      const float *uj = a + (size_t)j * kp;
      for (int32_t i = j + 1; i < j1; i++) {
        float f = uj[i], *ai = a + (size_t)i * kp;
        for (int32_t c = i / ALS_VW * ALS_VW; c < kp; c += ALS_VW)
          K(st)(ai + c, K(ld)(ai + c) - f * K(ld)(uj + c));
      }
    }
    if (j1 == k) break; /* no rows below */
    const float *u0 = a + (size_t)j0 * kp, *u1 = u0 + kp, *u2 = u1 + kp,
                *u3 = u2 + kp;
    for (int32_t i = j1; i < k; i++) {
      float f0 = u0[i], f1 = u1[i], f2 = u2[i], f3 = u3[i];
      float *ai = a + (size_t)i * kp;
      for (int32_t c = i / ALS_VW * ALS_VW; c < kp; c += ALS_VW) {
        VEC x = K(ld)(ai + c);
        x -= f0 * K(ld)(u0 + c);
        x -= f1 * K(ld)(u1 + c);
        x -= f2 * K(ld)(u2 + c);
        x -= f3 * K(ld)(u3 + c);
        K(st)(ai + c, x);
      }
    }
  }
  return 1;
}

/* Solves U'U x = b; b and y (kp each) are scratch, x must be zeroed. */
INLINE void K(chol_solve)(const float *a, int32_t k, int32_t kp,
                       const float *inv, float *b, float *y, float *x) {
  for (int32_t i = 0; i < k; i++) { /* U'y = b */
    float yi = b[i] * inv[i];
    y[i] = yi;
    const float *ui = a + (size_t)i * kp;
    for (int32_t c = i / ALS_VW * ALS_VW; c < kp; c += ALS_VW)
      K(st)(b + c, K(ld)(b + c) - yi * K(ld)(ui + c));
  }
  for (int32_t i = k - 1; i >= 0; i--) { /* U x = y; x[i..] still 0 */
    const float *ui = a + (size_t)i * kp;
    int32_t c0 = i / ALS_VW * ALS_VW;
    x[i] = (y[i] - K(dotv)(ui + c0, x + c0, kp - c0)) * inv[i];
  }
}


/* A v into out: (Y'Y + lambda I) v + Z'(Z v) over the row's nonzeros,
   leaving Z v of the last chunk in sbuf.  When the row fits one chunk, z
   already holds it (gathered).  Z'(Z v) goes four nonzeros at a time:
   their dots, then their share of out while the four rows are still in
   L1 (a long row's Z is larger than L1, and a pass per column block read
   it from L2 that many times).  Up to 64 columns, out's sum is held in
   registers over the whole pass. */
INLINE void K(apply)(const fit_ctx *c, const int32_t *idx, const float *w,
                     int32_t n, float *z, float *sbuf, const float *v,
                     float *out, int32_t k, int32_t kp) {
  enum { NB = 64 / ALS_VW };
  const float *g = c->s.gram;
  int regs = kp <= 64;
  VEC o[NB];
  for (int32_t b = 0; b < NB; b++) o[b] = (VEC){0};
  if (regs) {
    /* A row of the Gram matrix at a time, on kp / ALS_VW chains, not
       two per column block. */
    for (int32_t j = 0; j < k; j++)
      for (int32_t cb = 0; cb < kp; cb += ALS_VW)
        o[cb / ALS_VW] += v[j] * K(ld)(g + (size_t)j * kp + cb);
  } else {
    for (int32_t cb = 0; cb < kp; cb += ALS_VW) {
      VEC a0 = {0}, a1 = {0};
      int32_t j = 0;
      for (; j + 1 < k; j += 2) {
        a0 += v[j] * K(ld)(g + (size_t)j * kp + cb);
        a1 += v[j + 1] * K(ld)(g + (size_t)(j + 1) * kp + cb);
      }
      if (j < k) a0 += v[j] * K(ld)(g + (size_t)j * kp + cb);
      K(st)(out + cb, a0 + a1);
    }
  }
  for (int32_t t0 = 0; t0 < n; t0 += CHUNK) {
    int32_t m = n - t0 < CHUNK ? n - t0 : CHUNK;
    if (n > CHUNK)
      K(gather)(idx + t0, w + t0, m, c->s.y, k, kp, c->alpha, z, NULL);
    const float *zt = z;
    int32_t t = 0;
    for (; t + 3 < m; t += 4, zt += 4 * (size_t)kp) {
      K(dots)(zt, 4, v, kp, sbuf + t);
      float s0 = sbuf[t], s1 = sbuf[t + 1], s2 = sbuf[t + 2], s3 = sbuf[t + 3];
      for (int32_t cb = 0; cb < kp; cb += ALS_VW) {
        VEC u = s0 * K(ld)(zt + cb);
        u += s1 * K(ld)(zt + kp + cb);
        u += s2 * K(ld)(zt + 2 * (size_t)kp + cb);
        u += s3 * K(ld)(zt + 3 * (size_t)kp + cb);
        if (regs) o[cb / ALS_VW] += u;
        else K(st)(out + cb, K(ld)(out + cb) + u);
      }
    }
    for (; t < m; t++, zt += kp) {
      float st = sbuf[t] = K(dotv)(zt, v, kp);
      for (int32_t cb = 0; cb < kp; cb += ALS_VW) {
        if (regs) o[cb / ALS_VW] += st * K(ld)(zt + cb);
        else K(st)(out + cb, K(ld)(out + cb) + st * K(ld)(zt + cb));
      }
    }
  }
  if (regs)
    for (int32_t cb = 0; cb < kp; cb += ALS_VW) K(st)(out + cb, o[cb / ALS_VW]);
}

/* The loss terms of the cells of a row just solved (x), from what the solve
   gathered: with d = alpha w and s = x.y, c(1-s)^2 - s^2 = 1 - 2s +
   d(1-s)^2, summed over the row = n + sum d - 2 b.x + sum (z.x)^2 since
   b = sum (1+d) y and z = sqrt(d) y.  This saves the loss pass its own
   gather of every nonzero.  zx, when not NULL, holds z.x (tracked by CG);
   otherwise z holds the row if it fit one chunk. */
INLINE double K(row_loss_of)(const fit_ctx *c, work *ws, const int32_t *idx,
                             const float *w, int32_t n, const float *bx,
                             const float *x, const float *zx) {
  int32_t k = c->k, kp = c->kp;
  double l = n - 2.0 * K(dotv)(bx, x, kp), sd = 0;
  for (int32_t t = 0; t < n; t++) sd += w[t];
  l += c->alpha * sd;
  if (zx) {
    for (int32_t t = 0; t < n; t++) l += (double)zx[t] * zx[t];
    return l;
  }
  for (int32_t t0 = 0; t0 < n; t0 += CHUNK) {
    int32_t m = n - t0 < CHUNK ? n - t0 : CHUNK;
    if (n > CHUNK)
      K(gather)(idx + t0, w + t0, m, c->s.y, k, kp, c->alpha, ws->z, NULL);
    K(dots)(ws->z, m, x, kp, ws->s);
    for (int32_t t = 0; t < m; t++) l += (double)ws->s[t] * ws->s[t];
  }
  return l;
}

/* One row's solve; k and kp are constants in the common instances. */
INLINE void K(solve_row)(const fit_ctx *c, work *ws, int32_t row, int32_t k,
                         int32_t kp) {
  float *x = c->s.x + (size_t)row * k;
  const mfm_csr *r = c->s.rows;
  int32_t n = 0;
  const int32_t *idx = NULL;
  const float *w = NULL;
  if (row < r->n_rows) {
    int64_t p0 = r->indptr[row];
    n = (int32_t)(r->indptr[row + 1] - p0);
    idx = r->indices + p0;
    w = r->data + p0;
  }
  if (n == 0) { /* b = 0: the exact solution is 0 */
    memset(x, 0, (size_t)k * 4);
    if (c->fused_loss) c->row_loss[row] = 0;
    return;
  }
  float *b = ws->v, *res = b + kp, *p = res + kp, *ap = p + kp,
        *xv = ap + kp, *inv = xv + kp, *yv = inv + kp;
  memset(b, 0, (size_t)kp * 4);
  if (c->solver == MFM_ALS_CHOLESKY) {
    memcpy(ws->a, c->s.gram, (size_t)kp * kp * 4);
    for (int32_t t0 = 0; t0 < n; t0 += CHUNK) {
      int32_t m = n - t0 < CHUNK ? n - t0 : CHUNK;
      K(gather)(idx + t0, w + t0, m, c->s.y, k, kp, c->alpha, ws->z, b);
      K(gram_update)(ws->a, ws->z, m, k, kp);
    }
    /* Positive definite by construction (lambda > 0, c >= 1). */
    if (!K(cholesky)(ws->a, k, kp, inv)) return;
    memset(xv, 0, (size_t)kp * 4);
    if (c->fused_loss) memcpy(res, b, (size_t)kp * 4);
    K(chol_solve)(ws->a, k, kp, inv, b, yv, xv);
    memcpy(x, xv, (size_t)k * 4);
    if (c->fused_loss)
      c->row_loss[row] = K(row_loss_of)(c, ws, idx, w, n, res, xv, NULL);
    return;
  }
  /* CG (as in implicit), from the previous vector. */
  if (n <= CHUNK) {
    K(gather)(idx, w, n, c->s.y, k, kp, c->alpha, ws->z, b);
  } else {
    for (int32_t t0 = 0; t0 < n; t0 += CHUNK) {
      int32_t m = n - t0 < CHUNK ? n - t0 : CHUNK;
      K(gather)(idx + t0, w + t0, m, c->s.y, k, kp, c->alpha, ws->z, b);
    }
  }
  memset(xv, 0, (size_t)kp * 4);
  memcpy(xv, x, (size_t)k * 4);
  K(apply)(c, idx, w, n, ws->z, ws->s, xv, ap, k, kp);
  /* Z x follows x through the steps (the applies give Z p), so the loss
     needs no pass of its own over z. */
  float *zx = c->fused_loss && n <= CHUNK ? ws->s + CHUNK : NULL;
  if (zx) memcpy(zx, ws->s, (size_t)n * 4);
  for (int32_t j = 0; j < kp; j++) res[j] = b[j] - ap[j];
  memcpy(p, res, (size_t)kp * 4);
  float rs = K(dotv)(res, res, kp);
  for (int32_t s = 0; s < c->steps && rs > 1e-20f; s++) {
    K(apply)(c, idx, w, n, ws->z, ws->s, p, ap, k, kp);
    float pap = K(dotv)(p, ap, kp);
    if (!(pap > 0)) break;
    float step = rs / pap;
    K(axpy)(step, p, xv, kp);
    if (zx)
      for (int32_t t = 0; t < n; t++) zx[t] += step * ws->s[t];
    K(axpy)(-step, ap, res, kp);
    float rs1 = K(dotv)(res, res, kp);
    float beta = rs1 / rs;
    for (int32_t j = 0; j < kp; j++) p[j] = res[j] + beta * p[j];
    rs = rs1;
  }
  memcpy(x, xv, (size_t)k * 4);
  if (c->fused_loss)
    c->row_loss[row] = K(row_loss_of)(c, ws, idx, w, n, b, xv, zx);
}

/* Asks the cache for the first rows the gather of `row` will read: the
   gather prefetches ahead within a row, so without this every row would
   start on cache misses (ML-1M users have 20 to 200 nonzeros). */
INLINE void K(prefetch_row)(const fit_ctx *c, int64_t row) {
  const mfm_csr *r = c->s.rows;
  if (row >= r->n_rows) return;
  int64_t p0 = r->indptr[row], p1 = r->indptr[row + 1];
  if (p1 - p0 > PREFETCH) p1 = p0 + PREFETCH;
  for (int64_t q = p0; q < p1; q++) {
    const char *y = (const char *)(c->s.y + (size_t)r->indices[q] * c->k);
    for (int32_t j = 0; j < c->k; j += LANES) __builtin_prefetch(y + 4 * j);
    __builtin_prefetch(y + 4 * (size_t)c->k - 1);
  }
}

INLINE void K(solve_rows_impl)(fit_ctx *c, int worker) {
  work *ws = &c->ws[worker];
  for (;;) {
    if (atomic_load(&c->canceled)) return;
    int64_t r0 = atomic_fetch_add(&c->next, BLOCK);
    if (r0 >= c->s.n) return;
    int64_t r1 = r0 + BLOCK < c->s.n ? r0 + BLOCK : c->s.n;
    for (int64_t r = r0; r < r1; r++) {
      /* Per row: one popular item can take milliseconds. */
      if (!c->unstoppable && mfm_stop_requested()) {
        atomic_store(&c->canceled, 1);
        return;
      }
      if (r + 1 < c->s.n) K(prefetch_row)(c, r + 1);
      /* Instances with the common sizes as constants, whose loops
         unroll into straight vector code. */
      if (c->k == 32 && c->kp == 32) K(solve_row)(c, ws, (int32_t)r, 32, 32);
      else if (c->k == 64 && c->kp == 64)
        K(solve_row)(c, ws, (int32_t)r, 64, 64);
      else K(solve_row)(c, ws, (int32_t)r, c->k, c->kp);
    }
  }
}

/* ---- Loss -------------------------------------------------------------- */

/* Per user: x'(Y'Y)x + sum over the user's items of c(1-s)^2 - s^2, where
   s = x.y (the unobserved cells contribute s^2 with confidence 1, which
   x'(Y'Y)x counts for every item). */
INLINE void K(loss_rows_impl)(void *ctx, int worker) {
  fit_ctx *c = ctx;
  work *ws = &c->ws[worker];
  int32_t k = c->k, kp = c->kp;
  for (;;) {
    int64_t r0 = atomic_fetch_add(&c->next, BLOCK);
    if (r0 >= c->s.n) return;
    int64_t r1 = r0 + BLOCK < c->s.n ? r0 + BLOCK : c->s.n;
    for (int64_t u = r0; u < r1; u++) {
      const float *x = c->s.x + (size_t)u * k;
      float *xv = ws->v, *gx = xv + kp;
      memset(xv, 0, (size_t)kp * 4);
      memcpy(xv, x, (size_t)k * 4);
      memset(gx, 0, (size_t)kp * 4);
      for (int32_t j = 0; j < k; j++)
        K(axpy)(xv[j], c->s.gram + (size_t)j * kp, gx, kp);
      double l = K(dotv)(xv, gx, kp);
      if (u < c->ui->n_rows) {
        for (int64_t q = c->ui->indptr[u]; q < c->ui->indptr[u + 1]; q++) {
          const float *y = c->s.y + (size_t)c->ui->indices[q] * k;
          double s = K(dot)(x, y, k);
          double conf = 1.0 + (double)c->alpha * c->ui->data[q];
          l += conf * (1 - s) * (1 - s) - s * s;
        }
      }
      c->row_loss[u] = l;
    }
  }
}

ALS_TARGET static void K(solve_rows)(void *ctx, int worker) {
  K(solve_rows_impl)(ctx, worker);
}

ALS_TARGET static void K(loss_rows)(void *ctx, int worker) {
  K(loss_rows_impl)(ctx, worker);
}

#undef VEC
#undef K__
#undef K_
#undef K
#undef ALS_TARGET
#undef ALS_SFX
#undef ALS_VW
