/* The rank pass of evaluation (eval.c): for one user row, the number of
   test scores above every item (ties half) by exact rank counting, with
   no sort of the catalogue.  On AVX2 with up to 64 test scores, the items
   are compared with the sorted test scores themselves, split into 8
   buckets: on 16-bit grid keys, 16 items a vector (count_key_avx2), or on
   the floats when two test scores share a key (count_cmp_avx2).
   Otherwise a monotone grid over the test scores maps each item to a
   cell; a table gives twice the test scores above the cell, and only
   items sharing a cell with a test score are compared exactly (AVX2
   gathers or the portable loop).  The AVX2 versions, and that of the
   small sort, are chosen at run time (topk.h); all paths give the same
   numbers. */
#include "eval_rank.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"
#ifdef MFM_X86_KERNELS
#include <immintrin.h>
#endif

/* The grid cell of s: monotone non-decreasing in s, so an item in a cell
   holding no test score compares the same way with every test score as
   the whole cell does.  NaN and -inf go to cell 0. */
static int32_t cell_of(float s, float lo, float scale, float g) {
  float x = (s - lo) * scale;
  if (!(x >= -1.0f)) x = -1.0f;
  if (x > g) x = g;
  return (int32_t)(x + 1.0f);
}

/* An item of a cell that holds test scores q[i..]: compared exactly with
   them (the test scores of lower cells are all below it). */
static void exact_item(const float *q, int32_t m, int32_t i, float s,
                       mfm_rank_sums *r) {
  int32_t lb = i, ub;
  while (lb < m && q[lb] < s) lb++;
  ub = lb;
  while (ub < m && q[ub] <= s) ub++;
  r->acc += 2 * (int64_t)(m - ub) + (ub - lb);
  r->above += lb == m;
  r->eq += s == q[m - 1];
}

/* Number of q (sorted, m) below s and at most s. */
static void bounds(const float *q, int32_t m, float s, int32_t *lb,
                   int32_t *ub) {
  int32_t a = 0, b = m;
  while (a < b) {
    int32_t h = a + (b - a) / 2;
    if (q[h] < s) a = h + 1; else b = h;
  }
  *lb = a;
  b = m;
  while (a < b) {
    int32_t h = a + (b - a) / 2;
    if (q[h] <= s) a = h + 1; else b = h;
  }
  *ub = a;
}

/* One item through the table. */
static void lookup_one(const float *q, int32_t m, int32_t t, float s,
                       mfm_rank_sums *r) {
  if (t >= 0) {
    r->acc += t;
    r->above += t == 0;
  } else {
    exact_item(q, m, -t - 1, s, r);
  }
}

/* Portable: the bias added and stored, cells over a chunk in a loop the
   compiler vectorises, then scalar lookups. */
static void lookup_portable(float *row, const float *ib, int32_t n,
                            const float *q, int32_t m, const int32_t *table,
                            float lo, float scale, float g, int32_t *cells,
                            mfm_rank_sums *r) {
  for (int32_t j0 = 0; j0 < n; j0 += MFM_RANK_CELL_CHUNK) {
    int32_t nn = n - j0 < MFM_RANK_CELL_CHUNK ? n - j0 : MFM_RANK_CELL_CHUNK;
    if (ib)
      for (int32_t j = 0; j < nn; j++) row[j0 + j] += ib[j0 + j];
    for (int32_t j = 0; j < nn; j++) {
      float x = (row[j0 + j] - lo) * scale;
      x = x >= -1.0f ? x : -1.0f;
      x = x > g ? g : x;
      cells[j] = (int32_t)(x + 1.0f);
    }
    for (int32_t j = 0; j < nn; j++)
      lookup_one(q, m, table[cells[j]], row[j0 + j], r);
  }
}

#ifdef MFM_X86_KERNELS
/* The AVX2 passes add the item bias to the row as they read it (the
   engine's own pass read each row back from L3 once more) and take the
   top-k group maxima (group_max in topk.c) in the same loop, so the row is
   read once here and once by the top-k offers. */
typedef struct grid8 {
  __m256 lo, scale, m1, g, one;
} grid8;

/* The tail of a row from item j: adds the bias to its items (stored
   back) and copies w floats into t, past the row's end NaN, which counts
   nothing in any count. */
static inline void tail_nan(float *row, const float *ib, int32_t n,
                            int32_t j, int32_t w, float *t) {
  for (int32_t l = 0; l < w; l++) {
    if (j + l < n && ib) row[j + l] += ib[j + l];
    t[l] = j + l < n ? row[j + l] : NAN;
  }
}

/* The 8 scores at row + j, biased (and stored back) when ib is set, and
   their clamped grid positions x (cell = x + 1).  The cell is computed
   with the same IEEE operations as cell_of (max/min keep its NaN and
   equality cases), so items and test scores fall in the same cells. */
__attribute__((target("avx2"), always_inline))
static inline __m256 grid_x8(float *row, const float *ib, int32_t j,
                             const grid8 *gr, __m256 *sv) {
  __m256 s = _mm256_loadu_ps(row + j);
  if (ib) {
    s = _mm256_add_ps(s, _mm256_loadu_ps(ib + j));
    _mm256_storeu_ps(row + j, s);
  }
  *sv = s;
  __m256 x = _mm256_mul_ps(_mm256_sub_ps(s, gr->lo), gr->scale);
  return _mm256_min_ps(_mm256_max_ps(x, gr->m1), gr->g);
}

__attribute__((target("avx2"), always_inline))
static inline __m256i cell8(__m256 x, const grid8 *gr) {
  return _mm256_cvttps_epi32(_mm256_add_ps(x, gr->one));
}

__attribute__((target("avx2")))
static void store_gm(float *gm, __m256 g0, __m256 g1, __m256 g2, __m256 g3) {
  _mm256_storeu_ps(gm, g0);
  _mm256_storeu_ps(gm + 8, g1);
  _mm256_storeu_ps(gm + 16, g2);
  _mm256_storeu_ps(gm + 24, g3);
}

/* Up to 64 test scores, no table (the fallback of the key count below,
   when two test scores share a key): each item is compared with the test
   scores themselves, 8 items at a time.  The sorted scores, padded with
   NaN to 8 buckets of B (1, 2, 4 or 8), are split by the first score of
   buckets 1..7: three compares (a binary search through vpermps) give the
   bucket b of each item, the number of buckets whose first score is below
   it.  Every score of the buckets before b is below the item and every
   score after bucket b is at least the item, so
     lt = #{q < s} = b B + #{j < B : Q[bB + j] < s}  exactly, and
     le = #{q <= s} = b B + #{j < B : Q[bB + j] <= s}
   unless later scores equal s, which needs Q[(b + 1) B] == s: such items
   (rare: a tie with a test score at a bucket's start) are flagged and
   corrected with the exact count.  NaN compares false, so NaN (and -inf)
   items count as below every test score, as in the grid.  The pass sums
   lt + le; an item's count 2 #{q > s} + #{q == s} is 2m - lt - le. */
#define FLUSH_VECTORS 4096 /* lane sums (<= 128 an item) stay in int32 */

typedef struct cmp8 {
  __m256 s4, t2, t3;  /* splitters: Q[4B]; Q[2B], Q[6B]; Q[B], Q[3B], ... */
  __m256 e[9];        /* e[j][b] = Q[bB + j], j <= B */
  __m256 qmax;
} cmp8;

/* Negated lt + le of the 8 scores s (flag: lanes to correct), and the
   MRR counts when mrr. */
__attribute__((target("avx2"), always_inline))
static inline __m256i cmp_count8(__m256 s, const cmp8 *c, int B, int sh,
                                 int mrr, __m256 *flag, __m256i *above,
                                 __m256i *eq) {
  const __m256i four = _mm256_set1_epi32(4), two = _mm256_set1_epi32(2),
                one = _mm256_set1_epi32(1);
  __m256i b = _mm256_and_si256(
      _mm256_castps_si256(_mm256_cmp_ps(c->s4, s, _CMP_LT_OQ)), four);
  __m256 sp = _mm256_permutevar8x32_ps(c->t2, b);
  b = _mm256_or_si256(
      b, _mm256_and_si256(
             _mm256_castps_si256(_mm256_cmp_ps(sp, s, _CMP_LT_OQ)), two));
  sp = _mm256_permutevar8x32_ps(c->t3, b);
  b = _mm256_or_si256(
      b, _mm256_and_si256(
             _mm256_castps_si256(_mm256_cmp_ps(sp, s, _CMP_LT_OQ)), one));
  __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_sll_epi32(b, _mm_cvtsi32_si128(sh)));
  for (int jj = 0; jj < B; jj++) {
    __m256 e = _mm256_permutevar8x32_ps(c->e[jj], b);
    neg = _mm256_add_epi32(
        neg, _mm256_castps_si256(_mm256_cmp_ps(e, s, _CMP_LT_OQ)));
    neg = _mm256_add_epi32(
        neg, _mm256_castps_si256(_mm256_cmp_ps(e, s, _CMP_LE_OQ)));
  }
  *flag = _mm256_cmp_ps(_mm256_permutevar8x32_ps(c->e[B], b), s,
                        _CMP_EQ_OQ);
  if (mrr) {
    *above = _mm256_add_epi32(
        *above, _mm256_castps_si256(_mm256_cmp_ps(c->qmax, s, _CMP_LT_OQ)));
    *eq = _mm256_add_epi32(
        *eq, _mm256_castps_si256(_mm256_cmp_ps(c->qmax, s, _CMP_EQ_OQ)));
  }
  return neg;
}

/* The flagged lanes of one vector: lt + le from the exact count, less what
   the vector counted (neg, negated). */
__attribute__((target("avx2")))
static int64_t cmp_fix(const float *q, int32_t m, __m256 s, __m256i neg,
                       __m256 flag) {
  float sv[8];
  int32_t nv[8];
  int64_t d = 0;
  _mm256_storeu_ps(sv, s);
  _mm256_storeu_si256((__m256i *)nv, neg);
  for (int bits = _mm256_movemask_ps(flag); bits; bits &= bits - 1) {
    int l = __builtin_ctz((unsigned)bits);
    d += mfm_rank_f2(q, m, sv[l]) - 2 * (int64_t)m - nv[l];
  }
  return d;
}

__attribute__((target("avx2"), always_inline))
static inline int cmp_body(float *row, const float *ib, int32_t n,
                           const float *q, int32_t m, int B, int sh, int mrr,
                           float *gm, mfm_rank_sums *r) {
  cmp8 c;
  float qp[8 * 8 + 1];
  for (int32_t i = 0; i < 8 * B + 1; i++) qp[i] = i < m ? q[i] : NAN;
  c.s4 = _mm256_set1_ps(qp[4 * B]);
  c.t2 = _mm256_setr_ps(qp[2 * B], 0, 0, 0, qp[6 * B], 0, 0, 0);
  c.t3 = _mm256_setr_ps(qp[B], 0, qp[3 * B], 0, qp[5 * B], 0, qp[7 * B], 0);
  for (int jj = 0; jj <= B; jj++)
    c.e[jj] = _mm256_setr_ps(qp[jj], qp[B + jj], qp[2 * B + jj],
                             qp[3 * B + jj], qp[4 * B + jj], qp[5 * B + jj],
                             qp[6 * B + jj], qp[7 * B + jj]);
  c.qmax = _mm256_set1_ps(q[m - 1]);
  __m256 g0 = _mm256_set1_ps(-INFINITY), g1 = g0, g2 = g0, g3 = g0;
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc = zero, above = zero, eq = zero;
  int64_t sum = 0, fix = 0; /* negated lt + le */
  int32_t j = 0, nvec = 0;
  __m256 flag;
#define MFM_CMP_S(SV)                                                       \
  do {                                                                      \
    __m256i n_ = cmp_count8(SV, &c, B, sh, mrr, &flag, &above, &eq);       \
    acc = _mm256_add_epi32(acc, n_);                                        \
    if (!_mm256_testz_ps(flag, flag)) fix += cmp_fix(q, m, SV, n_, flag);   \
  } while (0)
#define MFM_CMP_STEP(J, G)                                                  \
  do {                                                                      \
    __m256 s_ = _mm256_loadu_ps(row + (J));                                 \
    if (ib) {                                                               \
      s_ = _mm256_add_ps(s_, _mm256_loadu_ps(ib + (J)));                    \
      _mm256_storeu_ps(row + (J), s_);                                      \
    }                                                                       \
    G = _mm256_max_ps(s_, G);                                               \
    MFM_CMP_S(s_);                                                          \
  } while (0)
  for (; n - j >= 32; j += 32) {
    MFM_CMP_STEP(j, g0);
    MFM_CMP_STEP(j + 8, g1);
    MFM_CMP_STEP(j + 16, g2);
    MFM_CMP_STEP(j + 24, g3);
    if ((nvec += 4) >= FLUSH_VECTORS) {
      int32_t a8[8];
      _mm256_storeu_si256((__m256i *)a8, acc);
      for (int l = 0; l < 8; l++) sum += a8[l];
      acc = zero;
      nvec = 0;
    }
  }
  store_gm(gm, g0, g1, g2, g3);
  /* The rest, 8 at a time, the last vector padded with NaN (which counts
     nothing in lt + le, above or eq). */
  for (; j < n; j += 8) {
    float t[8];
    tail_nan(row, ib, n, j, 8, t);
    __m256 sv = _mm256_loadu_ps(t);
    MFM_CMP_S(sv);
  }
#undef MFM_CMP_S
#undef MFM_CMP_STEP
  int32_t a8[8];
  _mm256_storeu_si256((__m256i *)a8, acc);
  for (int l = 0; l < 8; l++) sum += a8[l];
  r->acc = 2 * (int64_t)m * n + sum + fix;
  if (mrr) {
    int32_t b8[8], e8[8];
    _mm256_storeu_si256((__m256i *)b8, above);
    _mm256_storeu_si256((__m256i *)e8, eq);
    for (int l = 0; l < 8; l++) {
      r->above -= b8[l];
      r->eq -= e8[l];
    }
  }
  return 1;
}

__attribute__((target("avx2")))
static int count_cmp_avx2(float *row, const float *ib, int32_t n,
                          const float *q, int32_t m, int mrr, float *gm,
                          mfm_rank_sums *r) {
  /* Constant B and mrr in each call, so that the loops unroll. */
  if (mrr) {
    if (m <= 8) return cmp_body(row, ib, n, q, m, 1, 1, 1, gm, r);
    if (m <= 16) return cmp_body(row, ib, n, q, m, 2, 2, 1, gm, r);
    if (m <= 32) return cmp_body(row, ib, n, q, m, 4, 3, 1, gm, r);
    return cmp_body(row, ib, n, q, m, 8, 4, 1, gm, r);
  }
  if (m <= 8) return cmp_body(row, ib, n, q, m, 1, 1, 0, gm, r);
  if (m <= 16) return cmp_body(row, ib, n, q, m, 2, 2, 0, gm, r);
  if (m <= 32) return cmp_body(row, ib, n, q, m, 4, 3, 0, gm, r);
  return cmp_body(row, ib, n, q, m, 8, 4, 0, gm, r);
}

/* The same count on 16-bit keys, 16 items a vector.  A monotone grid of
   32767 cells over [lo, hi] turns each score into a key (NaN, -inf and
   scores below lo - 1 / scale into -32768, by the conversion's overflow
   value); when the test keys are distinct (checked first), an item whose
   key equals none of them compares with every test score as with its key.
   The sorted test keys are split into 8 buckets as above, b = the number
   of buckets whose first key is at most the item's (vpshufb within each
   128-bit half takes the place of vpermps): every key before bucket b is
   below the item's and every key after it above, and a key equal to the
   item's can only be in bucket b.  With sign(item key - test key)
   (vpsignw) summed over bucket b, v = 2bB + B + that sum is lt + le in
   keys, and it is even unless one key of the bucket equals the item's:
   those items (same cell as a test score: about one in ten thousand per
   test score) are counted exactly.  Padded test keys are KEY_PAD, above
   every item's. */
#define KEY_TOP 32766.0f /* highest item key */
#define KEY_PAD 32767
#define KEY_FLUSH 128 /* vectors of v (<= 16B = 128) summed in int16 lanes */

typedef struct key16 {
  __m256 lo, scale, top;
  __m256i s4, t2, t3, e[8];
  __m256i qmax, one16, c100, c808, c404, c202;
} key16;

/* The keys of the 8 scores s (int32): min(top, x) keeps NaN for the
   conversion to turn into INT32_MIN, like -inf; vpackssdw then saturates
   it to -32768. */
__attribute__((target("avx2"), always_inline))
static inline __m256i key8(__m256 s, const key16 *k) {
  __m256 x = _mm256_mul_ps(_mm256_sub_ps(s, k->lo), k->scale);
  return _mm256_cvttps_epi32(_mm256_min_ps(k->top, x));
}

/* v (see above) of the 16 keys ks; above gains the keys past the highest
   test key when mrr. */
__attribute__((target("avx2"), always_inline))
static inline __m256i key_count16(__m256i ks, const key16 *k, int B, int lb,
                                  int mrr, __m256i *above) {
  __m256i ctl = _mm256_or_si256(
      _mm256_andnot_si256(_mm256_cmpgt_epi16(k->s4, ks), k->c808), k->c100);
  __m256i sp = _mm256_shuffle_epi8(k->t2, ctl);
  ctl = _mm256_or_si256(
      ctl, _mm256_andnot_si256(_mm256_cmpgt_epi16(sp, ks), k->c404));
  sp = _mm256_shuffle_epi8(k->t3, ctl);
  ctl = _mm256_or_si256(
      ctl, _mm256_andnot_si256(_mm256_cmpgt_epi16(sp, ks), k->c202));
  /* ctl = 0x0202 b + 0x0100 in each lane (byte indices 2b and 2b + 1),
     so ctl >> (8 - log2 B) is 2bB + B. */
  __m256i v = _mm256_srli_epi16(ctl, 8 - lb);
  for (int jj = 0; jj < B; jj++) {
    __m256i e = _mm256_shuffle_epi8(k->e[jj], ctl);
    v = _mm256_add_epi16(
        v, _mm256_sign_epi16(k->one16, _mm256_subs_epi16(ks, e)));
  }
  if (mrr)
    *above = _mm256_sub_epi16(*above, _mm256_cmpgt_epi16(ks, k->qmax));
  return v;
}

/* lt + le of s against the test scores qp (NaN after the m-th, nv
   vectors): a flagged item's exact count, without the mispredicted
   branches of a binary search. */
__attribute__((target("avx2,popcnt")))
static int32_t lt_le(const float *qp, int nv, float s) {
  __m256 sv = _mm256_set1_ps(s);
  int32_t c = 0;
  for (int i = 0; i < nv; i++) {
    __m256 x = _mm256_loadu_ps(qp + 8 * i);
    c += __builtin_popcount(
        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, sv, _CMP_LT_OQ)));
    c += __builtin_popcount(
        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, sv, _CMP_LE_OQ)));
  }
  return c;
}

/* The flagged (odd) lanes of v for the items a (8) and b (8) packed by
   vpackssdw: what r->acc must gain (v was counted as lt + le; the exact
   count gives it), and their MRR counts. */
__attribute__((target("avx2")))
static int64_t key_fix(const float *qp, int nv, float qmax, __m256 a,
                       __m256 b, __m256i v, mfm_rank_sums *r) {
  float av[8], bv[8];
  int16_t vv[16];
  int64_t d = 0;
  _mm256_storeu_ps(av, a);
  _mm256_storeu_ps(bv, b);
  _mm256_storeu_si256((__m256i *)vv, v);
  /* Bit 2l of the mask: lane l odd. */
  unsigned odd = (unsigned)_mm256_movemask_epi8(_mm256_slli_epi16(v, 7)) &
                 0x55555555u;
  for (; odd; odd &= odd - 1) {
    int l = __builtin_ctz(odd) / 2;
    /* Lanes: a0-3, b0-3 in the low half, a4-7, b4-7 in the high. */
    int i = (l & 3) + (l >> 3) * 4;
    float s = (l & 4) ? bv[i] : av[i];
    d -= lt_le(qp, nv, s) - vv[l];
    r->above += s > qmax;
    r->eq += s == qmax;
  }
  return d;
}

__attribute__((target("avx2"), always_inline))
static inline int key_body(float *row, const float *ib, int32_t n,
                           const float *q, int32_t m, const float *qp,
                           const int16_t *kq, const key16 *kc, int B, int lb,
                           int mrr, float *gm, mfm_rank_sums *r) {
  key16 k = *kc;
  int16_t kp[8 * 8];
  for (int32_t i = 0; i < 8 * B; i++) kp[i] = i < m ? kq[i] : KEY_PAD;
  k.s4 = _mm256_set1_epi16(kp[4 * B]);
  /* 16-bit tables of 8 entries, the same in both 128-bit halves. */
  int16_t t[8];
  for (int i = 0; i < 8; i++) t[i] = kp[(i & 4) * B + 2 * B];
  k.t2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
  for (int i = 0; i < 8; i++) t[i] = kp[(i | 1) * B];
  k.t3 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
  for (int jj = 0; jj < B; jj++) {
    for (int i = 0; i < 8; i++) t[i] = kp[i * B + jj];
    k.e[jj] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
  }
  k.qmax = _mm256_set1_epi16(kq[m - 1]);
  const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
  __m256 g0 = _mm256_set1_ps(-INFINITY), g1 = g0, g2 = g0, g3 = g0;
  __m256i acc = zero, above = zero;
  int64_t sum = 0, fix = 0, nab = 0;
  int32_t j = 0, nvec = 0;
  int nv = (m + 7) / 8;
#define MFM_KEY_LOAD(J, S, G)                                               \
  do {                                                                      \
    S = _mm256_loadu_ps(row + (J));                                         \
    if (ib) {                                                               \
      S = _mm256_add_ps(S, _mm256_loadu_ps(ib + (J)));                      \
      _mm256_storeu_ps(row + (J), S);                                       \
    }                                                                       \
    G = _mm256_max_ps(S, G);                                                \
  } while (0)
#define MFM_KEY_16(A, B8)                                                   \
  do {                                                                      \
    __m256i ks_ = _mm256_packs_epi32(key8(A, &k), key8(B8, &k));           \
    __m256i v_ = key_count16(ks_, &k, B, lb, mrr, &above);                  \
    acc = _mm256_add_epi16(acc, v_);                                        \
    if (!_mm256_testz_si256(v_, k.one16))                                   \
      fix += key_fix(qp, nv, q[m - 1], A, B8, v_, r);                       \
  } while (0)
#define MFM_KEY_FLUSH()                                                     \
  do {                                                                      \
    int32_t a8_[8];                                                         \
    _mm256_storeu_si256((__m256i *)a8_, _mm256_madd_epi16(acc, ones));      \
    for (int l_ = 0; l_ < 8; l_++) sum += a8_[l_];                          \
    if (mrr) {                                                              \
      _mm256_storeu_si256((__m256i *)a8_, _mm256_madd_epi16(above, ones));  \
      for (int l_ = 0; l_ < 8; l_++) nab += a8_[l_];                        \
    }                                                                       \
    acc = above = zero;                                                     \
    nvec = 0;                                                               \
  } while (0)
  for (; n - j >= 64; j += 64) {
    __m256 a0, b0, a1, b1, a2, b2, a3, b3;
    MFM_KEY_LOAD(j, a0, g0);
    MFM_KEY_LOAD(j + 8, b0, g1);
    MFM_KEY_LOAD(j + 16, a1, g2);
    MFM_KEY_LOAD(j + 24, b1, g3);
    MFM_KEY_LOAD(j + 32, a2, g0);
    MFM_KEY_LOAD(j + 40, b2, g1);
    MFM_KEY_LOAD(j + 48, a3, g2);
    MFM_KEY_LOAD(j + 56, b3, g3);
    __m256i k0 = _mm256_packs_epi32(key8(a0, &k), key8(b0, &k));
    __m256i k1 = _mm256_packs_epi32(key8(a1, &k), key8(b1, &k));
    __m256i k2 = _mm256_packs_epi32(key8(a2, &k), key8(b2, &k));
    __m256i k3 = _mm256_packs_epi32(key8(a3, &k), key8(b3, &k));
    __m256i v0 = key_count16(k0, &k, B, lb, mrr, &above);
    __m256i v1 = key_count16(k1, &k, B, lb, mrr, &above);
    __m256i v2 = key_count16(k2, &k, B, lb, mrr, &above);
    __m256i v3 = key_count16(k3, &k, B, lb, mrr, &above);
    acc = _mm256_add_epi16(acc, _mm256_add_epi16(_mm256_add_epi16(v0, v1),
                                                 _mm256_add_epi16(v2, v3)));
    __m256i odd = _mm256_or_si256(_mm256_or_si256(v0, v1),
                                  _mm256_or_si256(v2, v3));
    if (!_mm256_testz_si256(odd, k.one16)) {
      if (!_mm256_testz_si256(v0, k.one16))
        fix += key_fix(qp, nv, q[m - 1], a0, b0, v0, r);
      if (!_mm256_testz_si256(v1, k.one16))
        fix += key_fix(qp, nv, q[m - 1], a1, b1, v1, r);
      if (!_mm256_testz_si256(v2, k.one16))
        fix += key_fix(qp, nv, q[m - 1], a2, b2, v2, r);
      if (!_mm256_testz_si256(v3, k.one16))
        fix += key_fix(qp, nv, q[m - 1], a3, b3, v3, r);
    }
    if ((nvec += 4) >= KEY_FLUSH) MFM_KEY_FLUSH();
  }
  for (; n - j >= 32; j += 32) {
    __m256 a, b;
    MFM_KEY_LOAD(j, a, g0);
    MFM_KEY_LOAD(j + 8, b, g1);
    MFM_KEY_16(a, b);
    MFM_KEY_LOAD(j + 16, a, g2);
    MFM_KEY_LOAD(j + 24, b, g3);
    MFM_KEY_16(a, b);
    if ((nvec += 2) >= KEY_FLUSH) MFM_KEY_FLUSH();
  }
  store_gm(gm, g0, g1, g2, g3);
  /* The rest, 16 at a time, padded with NaN (key -32768: v = 0). */
  for (; j < n; j += 16) {
    float tv[16];
    tail_nan(row, ib, n, j, 16, tv);
    __m256 a = _mm256_loadu_ps(tv), b = _mm256_loadu_ps(tv + 8);
    MFM_KEY_16(a, b);
  }
  MFM_KEY_FLUSH();
#undef MFM_KEY_LOAD
#undef MFM_KEY_16
#undef MFM_KEY_FLUSH
  r->acc = 2 * (int64_t)m * n - sum + fix;
  if (mrr) r->above += nab;
  return 1;
}

/* Returns -1 when two test scores share a key (the caller then compares
   floats). */
__attribute__((target("avx2")))
static int count_key_avx2(float *row, const float *ib, int32_t n,
                          const float *q, int32_t m, int mrr, float *gm,
                          mfm_rank_sums *r) {
  float lo = q[0], span = q[m - 1] - q[0];
  if (!(span > 0)) span = fabsf(lo) * 1e-3f + 1e-20f;
  float scale = (KEY_TOP - 1.0f) / span;
  if (!(scale > 0 && isfinite(scale))) return -1;
  key16 k;
  k.lo = _mm256_set1_ps(lo);
  k.scale = _mm256_set1_ps(scale);
  k.top = _mm256_set1_ps(KEY_TOP);
  k.one16 = _mm256_set1_epi16(1);
  k.c100 = _mm256_set1_epi16(0x0100);
  k.c808 = _mm256_set1_epi16(0x0808);
  k.c404 = _mm256_set1_epi16(0x0404);
  k.c202 = _mm256_set1_epi16(0x0202);
  /* The test keys, by the items' own operations. */
  float qp[64];
  int32_t k32[64];
  int16_t kq[64];
  for (int32_t i = 0; i < 64; i++) qp[i] = i < m ? q[i] : NAN;
  for (int32_t i = 0; i < m; i += 8)
    _mm256_storeu_si256((__m256i *)(k32 + i),
                        key8(_mm256_loadu_ps(qp + i), &k));
  for (int32_t i = 0; i < m; i++) {
    kq[i] = (int16_t)k32[i];
    if (i > 0 && kq[i] == kq[i - 1]) return -1;
  }
  if (mrr) {
    if (m <= 8) return key_body(row, ib, n, q, m, qp, kq, &k, 1, 0, 1, gm, r);
    if (m <= 16) return key_body(row, ib, n, q, m, qp, kq, &k, 2, 1, 1, gm, r);
    if (m <= 32) return key_body(row, ib, n, q, m, qp, kq, &k, 4, 2, 1, gm, r);
    return key_body(row, ib, n, q, m, qp, kq, &k, 8, 3, 1, gm, r);
  }
  if (m <= 8) return key_body(row, ib, n, q, m, qp, kq, &k, 1, 0, 0, gm, r);
  if (m <= 16) return key_body(row, ib, n, q, m, qp, kq, &k, 2, 1, 0, gm, r);
  if (m <= 32) return key_body(row, ib, n, q, m, qp, kq, &k, 4, 2, 0, gm, r);
  return key_body(row, ib, n, q, m, qp, kq, &k, 8, 3, 0, gm, r);
}

/* More test scores: int32 table entries (as lookup_one reads them) by
   AVX2 gathers, eight items at a time.  Vectors with lanes needing the
   exact compare are noted and done after each chunk, so the loop keeps
   its registers and has no unpredictable branch; the lane sums (int32)
   are flushed per chunk, before they can overflow. */
#define AVX2_CHUNK 128 /* vectors, a multiple of 64 */

/* Notes vector v's table entries t in the lane sums, and the lanes that
   need the exact compare at a fixed place and in a bit set, without a
   branch (it would be mispredicted) and without a store address waiting
   for the gather. */
__attribute__((target("avx2"), always_inline))
static inline void note8(__m256i t, int v, __m256i *acc, __m256i *above,
                         int32_t *pend_t, int *pend_m, uint64_t *marked) {
  const __m256i zero = _mm256_setzero_si256();
  *above = _mm256_sub_epi32(*above, _mm256_cmpeq_epi32(t, zero));
  int neg = _mm256_movemask_ps(_mm256_castsi256_ps(t));
  _mm256_storeu_si256((__m256i *)(pend_t + 8 * v), t);
  pend_m[v] = neg;
  marked[v >> 6] |= (uint64_t)(neg != 0) << (v & 63);
  *acc = _mm256_add_epi32(*acc, _mm256_max_epi32(t, zero));
}

/* The table entries of the 8 items at row + j. */
__attribute__((target("avx2"), always_inline))
static inline __m256i lookup8(float *row, const float *ib, int32_t j,
                              const grid8 *gr, const int32_t *table,
                              __m256 *sv) {
  __m256 x = grid_x8(row, ib, j, gr, sv);
  return _mm256_i32gather_epi32((const int *)table, cell8(x, gr), 4);
}

/* Returns 1 when gm holds the 32 group maxima of row[0 .. n rounded down
   to 32) as topk.c's group_max would find them after the pass (the test
   items, at -inf here, are folded in by the caller). */
__attribute__((target("avx2")))
static int lookup_avx2(float *row, const float *ib, int32_t n,
                       const float *q, int32_t m, const int32_t *table,
                       float lo, float scale, float g, float *gm,
                       mfm_rank_sums *r) {
  grid8 gr = {_mm256_set1_ps(lo), _mm256_set1_ps(scale),
              _mm256_set1_ps(-1.0f), _mm256_set1_ps(g),
              _mm256_set1_ps(1.0f)};
  const __m256i zero = _mm256_setzero_si256();
  int64_t per = INT32_MAX / (2 * (int64_t)m + 2); /* vectors per flush */
  if (per > AVX2_CHUNK) per = AVX2_CHUNK;
  if (per < 1) per = 1;
  /* Groups of 32 items stay aligned only with chunks of whole groups. */
  int whole = per % 4 == 0;
  __m256 g0 = _mm256_set1_ps(-INFINITY), g1 = g0, g2 = g0, g3 = g0;
  int32_t pend_t[AVX2_CHUNK * 8];
  int pend_m[AVX2_CHUNK];
  int32_t j = 0;
  while (n - j >= 8) {
    __m256i acc = zero, above = zero;
    uint64_t marked[AVX2_CHUNK / 64] = {0};
    int32_t j0 = j, nv = (n - j) / 8 > per ? (int32_t)per : (n - j) / 8;
    int32_t v = 0;
    __m256 s;
    if (whole)
      for (; v + 4 <= nv; v += 4, j += 32) {
        __m256i t = lookup8(row, ib, j, &gr, table, &s);
        g0 = _mm256_max_ps(s, g0);
        note8(t, v, &acc, &above, pend_t, pend_m, marked);
        t = lookup8(row, ib, j + 8, &gr, table, &s);
        g1 = _mm256_max_ps(s, g1);
        note8(t, v + 1, &acc, &above, pend_t, pend_m, marked);
        t = lookup8(row, ib, j + 16, &gr, table, &s);
        g2 = _mm256_max_ps(s, g2);
        note8(t, v + 2, &acc, &above, pend_t, pend_m, marked);
        t = lookup8(row, ib, j + 24, &gr, table, &s);
        g3 = _mm256_max_ps(s, g3);
        note8(t, v + 3, &acc, &above, pend_t, pend_m, marked);
      }
    for (; v < nv; v++, j += 8)
      note8(lookup8(row, ib, j, &gr, table, &s), v, &acc, &above, pend_t,
            pend_m, marked);
    int32_t a8[8], b8[8];
    _mm256_storeu_si256((__m256i *)a8, acc);
    _mm256_storeu_si256((__m256i *)b8, above);
    for (int l = 0; l < 8; l++) {
      r->acc += a8[l];
      r->above += b8[l];
    }
    for (int w = 0; w < AVX2_CHUNK / 64; w++)
      for (uint64_t vb = marked[w]; vb; vb &= vb - 1) {
        int vi = 64 * w + __builtin_ctzll(vb);
        for (int bits = pend_m[vi]; bits; bits &= bits - 1) {
          int b = __builtin_ctz((unsigned)bits);
          exact_item(q, m, -pend_t[8 * vi + b] - 1, row[j0 + 8 * vi + b],
                     r);
        }
      }
  }
  for (; j < n; j++) {
    if (ib) row[j] += ib[j];
    lookup_one(q, m, table[cell_of(row[j], lo, scale, g)], row[j], r);
  }
  store_gm(gm, g0, g1, g2, g3);
  return whole;
}
#endif

/* p[0..n) = v; the table is refilled for every row (up to 2n cells). */
#ifdef MFM_X86_KERNELS
__attribute__((target("avx2")))
static void fill_avx2(int32_t *p, int32_t n, int32_t v) {
  __m256i x = _mm256_set1_epi32(v);
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_si256((__m256i *)(p + i), x);
  for (; i < n; i++) p[i] = v;
}

#endif

static void fill_i32(int32_t *p, int32_t n, int32_t v, int avx2) {
#ifdef MFM_X86_KERNELS
  if (avx2) {
    fill_avx2(p, n, v);
    return;
  }
#else
  (void)avx2;
#endif
  for (int32_t i = 0; i < n; i++) p[i] = v;
}

int64_t mfm_rank_f2(const float *q, int32_t m, float s) {
  int32_t lb, ub;
  bounds(q, m, s, &lb, &ub);
  return 2 * (int64_t)(m - ub) + (ub - lb);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

#ifdef MFM_X86_KERNELS
/* Ascending, for 2 <= m <= 64 NaN-free values: each goes to its rank, the
   values below it plus the equal ones before it, counted for 8 values at
   once (an insertion sort mispredicts about a branch a value).  Against
   a value l before a whole vector, the count is of values <= l; after
   it, of values < l; only the vector holding l needs both.  NB (the
   vectors) is a constant in each call, so that the loops unroll and the
   choice of compare is made at compile time. */
__attribute__((target("avx2"), always_inline))
static inline void sort_nb(float *q, int32_t m, int NB) {
  float x[64];
  int32_t rk[64];
  memcpy(x, q, (size_t)m * sizeof *x);
  for (int32_t i = m; i < 8 * NB; i++) x[i] = INFINITY;
  __m256 xv[8];
  __m256i cnt[8];
  for (int a = 0; a < NB; a++) {
    xv[a] = _mm256_loadu_ps(x + 8 * a);
    cnt[a] = _mm256_setzero_si256();
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int la = 0; la < NB; la++)
    for (int l8 = 0; l8 < 8; l8++) {
      int32_t l = 8 * la + l8;
      if (l >= m) break;
      __m256 b = _mm256_set1_ps(x[l]);
      for (int a = 0; a < NB; a++) {
        __m256 below;
        if (a < la) { /* lanes before l: l counts if < */
          below = _mm256_cmp_ps(b, xv[a], _CMP_LT_OQ);
        } else if (a > la) { /* lanes after l: l counts if <= */
          below = _mm256_cmp_ps(b, xv[a], _CMP_LE_OQ);
        } else {
          __m256 lt = _mm256_cmp_ps(b, xv[a], _CMP_LT_OQ);
          __m256 eq = _mm256_cmp_ps(b, xv[a], _CMP_EQ_OQ);
          __m256 after = _mm256_castsi256_ps(
              _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(l8)));
          below = _mm256_or_ps(lt, _mm256_and_ps(eq, after));
        }
        cnt[a] = _mm256_sub_epi32(cnt[a], _mm256_castps_si256(below));
      }
    }
  for (int a = 0; a < NB; a++)
    _mm256_storeu_si256((__m256i *)(rk + 8 * a), cnt[a]);
  for (int32_t i = 0; i < m; i++) q[rk[i]] = x[i];
}

__attribute__((target("avx2")))
static void sort_small_avx2(float *q, int32_t m) {
  switch ((m + 7) / 8) {
  case 1: sort_nb(q, m, 1); break;
  case 2: sort_nb(q, m, 2); break;
  case 3: sort_nb(q, m, 3); break;
  case 4: sort_nb(q, m, 4); break;
  case 5: sort_nb(q, m, 5); break;
  case 6: sort_nb(q, m, 6); break;
  case 7: sort_nb(q, m, 7); break;
  default: sort_nb(q, m, 8); break;
  }
}
#endif

/* Insertion sort (or the AVX2 rank sort) for the usual few dozen test
   items (qsort's calls through a pointer cost more there). */
void mfm_rank_sort(float *q, int32_t m, int avx2) {
  if (m > 48) {
    qsort(q, (size_t)m, sizeof *q, cmp_float);
    return;
  }
#ifdef MFM_X86_KERNELS
  if (avx2 && m >= 2) {
    int nan = 0;
    for (int32_t i = 0; i < m; i++) nan |= q[i] != q[i];
    if (!nan) {
      sort_small_avx2(q, m);
      return;
    }
  }
#else
  (void)avx2;
#endif
  for (int32_t i = 1; i < m; i++) {
    float v = q[i];
    int32_t t = i;
    while (t > 0 && q[t - 1] > v) {
      q[t] = q[t - 1];
      t--;
    }
    q[t] = v;
  }
}

int mfm_rank_pass(float *row, const float *ib, int32_t n, const float *q,
                  int32_t m, int32_t *table, int32_t gmax, int32_t *cells,
                  int avx2, int mrr, float *gm, mfm_rank_sums *r) {
  float lo = q[0], hi = q[m - 1];
  r->acc = r->above = r->eq = 0;
  if (isfinite(lo) && isfinite(hi)) {
#ifdef MFM_X86_KERNELS
    /* (A NaN between finite ends leaves q unsorted: the grid is safe.) */
    int nan = 0;
    for (int32_t i = 0; i < m; i++) nan |= q[i] != q[i];
    if (avx2 && m <= 64 && !nan) {
      int k = count_key_avx2(row, ib, n, q, m, mrr, gm, r);
      return k >= 0 ? k : count_cmp_avx2(row, ib, n, q, m, mrr, gm, r);
    }
#else
    (void)mrr;
#endif
    int32_t g = 16;
    /* About 128 cells per test item and at least n/4 (items sharing a
       cell with a test score take the slow exact path), at most 2n so
       that filling the table stays cheaper than the pass. */
    while (g < gmax && (g < 128 * m || g < n / 4) && g < 2 * n) g *= 2;
    float span = hi - lo;
    if (!(span > 0)) span = fabsf(lo) * 1e-3f + 1e-20f;
    float scale = (float)(g - 1) / span;
    if (!(scale > 0 && isfinite(scale))) scale = 1.0f;
    float gf = (float)g;
    /* table[c]: 2 * (test scores in cells above c), or -(1 + i) when
       test score i is the first in c itself: items in such a cell are
       compared exactly, with the few test scores from i on (test scores
       in later cells are above every item of c).  Excluded items reach
       cell 0 whether the bias made them -inf or NaN. */
    int32_t c = 0;
    for (int32_t i = 0; i < m; i++) {
      int32_t ci = cell_of(q[i], lo, scale, gf);
      if (ci < c) continue; /* same cell as the previous test score */
      fill_i32(table + c, ci - c, 2 * (m - i), avx2);
      table[ci] = -(1 + i);
      c = ci + 1;
    }
    fill_i32(table + c, g + 2 - c, 0, avx2);
#ifdef MFM_X86_KERNELS
    if (avx2) return lookup_avx2(row, ib, n, q, m, table, lo, scale, gf, gm,
                                 r);
#else
    (void)gm;
#endif
    lookup_portable(row, ib, n, q, m, table, lo, scale, gf, cells, r);
  } else {
    assert(!ib);
    for (int32_t j = 0; j < n; j++) {
      int32_t lb, ub;
      float s = row[j];
      bounds(q, m, s, &lb, &ub);
      r->acc += 2 * (int64_t)(m - ub) + (ub - lb);
      r->above += lb == m;
      r->eq += s == hi;
    }
  }
  return 0;
}
