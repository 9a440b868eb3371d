/* The k-heap, the block engine (one sgemm per block of users, worker
   threads), top-k recommendation and pair scoring. */
#include "topk.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#ifdef MFM_X86_KERNELS
#include <immintrin.h>
#endif

#include "moonfm/alloc.h"
#include "moonfm/stop.h"
#include "moonfm/threads.h"

/* ---- the heap --------------------------------------------------------- */

static int worse(float sa, int32_t ia, float sb, int32_t ib) {
  return sa < sb || (sa == sb && ia > ib);
}

void mfm_heap_init(mfm_heap *h, float *score, int32_t *index, int32_t k) {
  h->k = k;
  h->n = 0;
  h->score = score;
  h->index = index;
}

static void sift_down(mfm_heap *h, int32_t i, int32_t n) {
  float s = h->score[i];
  int32_t x = h->index[i];
  for (;;) {
    int32_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n &&
        worse(h->score[c + 1], h->index[c + 1], h->score[c], h->index[c]))
      c++;
    if (!worse(h->score[c], h->index[c], s, x)) break;
    h->score[i] = h->score[c];
    h->index[i] = h->index[c];
    i = c;
  }
  h->score[i] = s;
  h->index[i] = x;
}

void mfm_heap_push(mfm_heap *h, float s, int32_t j) {
  if (h->n < h->k) {
    int32_t i = h->n++;
    while (i > 0) {
      int32_t p = (i - 1) / 2;
      if (!worse(s, j, h->score[p], h->index[p])) break;
      h->score[i] = h->score[p];
      h->index[i] = h->index[p];
      i = p;
    }
    h->score[i] = s;
    h->index[i] = j;
  } else if (h->k > 0 && worse(h->score[0], h->index[0], s, j)) {
    h->score[0] = s;
    h->index[0] = j;
    sift_down(h, 0, h->n);
  }
}

void mfm_heap_sort(mfm_heap *h) {
  /* Heapsort: moving the worst root to the end leaves the best first. */
  for (int32_t n = h->n; n > 1; n--) {
    float s = h->score[0];
    int32_t x = h->index[0];
    h->score[0] = h->score[n - 1];
    h->index[0] = h->index[n - 1];
    h->score[n - 1] = s;
    h->index[n - 1] = x;
    sift_down(h, 0, n - 1);
  }
}

/* ---- kernel choice ---------------------------------------------------- */

static atomic_int force_portable;

void mfm_kernels_force_portable(int on) {
  atomic_store(&force_portable, on != 0);
}

int mfm_kernels_avx2(void) {
  if (atomic_load_explicit(&force_portable, memory_order_relaxed)) return 0;
#ifdef MFM_X86_KERNELS
  return __builtin_cpu_supports("avx2") != 0;
#else
  return 0;
#endif
}

/* ---- the threshold scan ----------------------------------------------- */

/* Items come in increasing index, so an item tied with the root loses: once
   the heap is full only a strictly greater score enters.  The test is
   repeated per item because the root rises as items enter. */
static void offer(mfm_heap *h, const float *row, int32_t t,
                  const uint8_t *mark) {
  if (row[t] > h->score[0] && (!mark || !(mark[t] & 1)))
    mfm_heap_push(h, row[t], t);
}

#define SCAN_CHUNK 64

/* Portable: a count over a chunk (vectorised by the compiler) decides
   whether the chunk is looked at item by item. */
static void scan_portable(mfm_heap *h, const float *row, int32_t j,
                          int32_t n, const uint8_t *mark) {
  while (j < n) {
    int32_t e = n - j > SCAN_CHUNK ? j + SCAN_CHUNK : n;
    float thr = h->score[0];
    int cnt = 0;
    for (int32_t t = j; t < e; t++) cnt += row[t] > thr;
    if (cnt)
      for (int32_t t = j; t < e; t++) offer(h, row, t, mark);
    j = e;
  }
}

#ifdef MFM_X86_KERNELS
/* Bit l set when row[j + l] > thr (ge: >=), for l in [0, 32); 0 after one
   test when no item passes, the common case. */
__attribute__((target("avx2"), always_inline))
static inline uint32_t mask32(const float *row, int32_t j, __m256 thr,
                              int ge) {
  __m256 x[4];
  for (int a = 0; a < 4; a++) {
    __m256 v = _mm256_loadu_ps(row + j + 8 * a);
    x[a] = ge ? _mm256_cmp_ps(v, thr, _CMP_GE_OQ)
              : _mm256_cmp_ps(v, thr, _CMP_GT_OQ);
  }
  __m256 any = _mm256_or_ps(_mm256_or_ps(x[0], x[1]),
                            _mm256_or_ps(x[2], x[3]));
  if (_mm256_testz_ps(any, any)) return 0;
  return (uint32_t)_mm256_movemask_ps(x[0]) |
         (uint32_t)_mm256_movemask_ps(x[1]) << 8 |
         (uint32_t)_mm256_movemask_ps(x[2]) << 16 |
         (uint32_t)_mm256_movemask_ps(x[3]) << 24;
}

/* AVX2: a bit mask of the items above the root, 32 at a time; only the set
   bits are visited (a chunk-wide rescan cost more than the pushes). */
__attribute__((target("avx2")))
static void scan_avx2(mfm_heap *h, const float *row, int32_t j, int32_t n,
                      const uint8_t *mark) {
  __m256 thr = _mm256_set1_ps(h->score[0]);
  for (; j + 32 <= n; j += 32) {
    uint32_t bits = mask32(row, j, thr, 0);
    if (!bits) continue;
    for (; bits; bits &= bits - 1)
      offer(h, row, j + __builtin_ctz(bits), mark);
    thr = _mm256_set1_ps(h->score[0]);
  }
  for (; j < n; j++) offer(h, row, j, mark);
}

/* The largest of each of the 32 groups {j : j mod 32 = l} of
   row[0 .. n rounded down to 32); NaN is passed over. */
__attribute__((target("avx2")))
static void group_max_avx2(const float *row, int32_t n, float *out) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
  for (int32_t j = 0; j + 32 <= n; j += 32) {
    /* max(v, m) keeps m when v is NaN. */
    m0 = _mm256_max_ps(_mm256_loadu_ps(row + j), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(row + j + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(row + j + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(row + j + 24), m3);
  }
  _mm256_storeu_ps(out, m0);
  _mm256_storeu_ps(out + 8, m1);
  _mm256_storeu_ps(out + 16, m2);
  _mm256_storeu_ps(out + 24, m3);
}

/* The k-th largest of v[0..32) (k in [1, 32], no NaN): the largest v[i]
   that at least k of them reach, found by counting for every i at once
   (a sort of 32 values mispredicts about one branch a value). */
__attribute__((target("avx2")))
static float kth_largest_32_avx2(const float *v, int32_t k) {
  __m256 x[4];
  __m256i cnt[4];
  for (int a = 0; a < 4; a++) {
    x[a] = _mm256_loadu_ps(v + 8 * a);
    cnt[a] = _mm256_setzero_si256();
  }
  for (int l = 0; l < 32; l++) {
    __m256 b = _mm256_set1_ps(v[l]);
    for (int a = 0; a < 4; a++)
      cnt[a] = _mm256_sub_epi32(
          cnt[a], _mm256_castps_si256(_mm256_cmp_ps(b, x[a], _CMP_GE_OQ)));
  }
  __m256i kk = _mm256_set1_epi32(k - 1);
  __m256 best = _mm256_set1_ps(-INFINITY);
  for (int a = 0; a < 4; a++) {
    __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(cnt[a], kk));
    best = _mm256_max_ps(best, _mm256_blendv_ps(best, x[a], ok));
  }
  float b8[8];
  _mm256_storeu_ps(b8, best);
  float t = b8[0];
  for (int l = 1; l < 8; l++) t = b8[l] > t ? b8[l] : t;
  return t;
}

/* Offers every item scoring at least thr (heap empty on entry). */
__attribute__((target("avx2")))
static void offer_above_avx2(mfm_heap *h, const float *row, int32_t n,
                             const uint8_t *mark, float thr) {
  __m256 t = _mm256_set1_ps(thr);
  int32_t j = 0;
  for (; j + 32 <= n; j += 32)
    for (uint32_t bits = mask32(row, j, t, 1); bits; bits &= bits - 1) {
      int32_t i = j + __builtin_ctz(bits);
      if (!mark || !(mark[i] & 1)) mfm_heap_push(h, row[i], i);
    }
  for (; j < n; j++)
    if (row[j] >= thr && (!mark || !(mark[j] & 1)))
      mfm_heap_push(h, row[j], j);
}

/* Top k (at most 32) with one cheap pass for a threshold: the k-th largest
   of the 32 group maxima is a score that k distinct items reach, so when
   k unmarked items score at least that much, the k best are all among
   them and only those are offered (a dozen or so instead of the ~k ln(n/k)
   pushes of a sequential scan, each a mispredicted branch).  When marked
   items made it too high (fewer than k unmarked reach it), returns 0 and
   the caller scans normally.  The heap keeps the k best under its strict
   order whatever the order of the offers, so the result is the scan's. */
static int scan_threshold_avx2(mfm_heap *h, const float *row, int32_t n,
                               const uint8_t *mark, const float *gm) {
  float own[32];
  if (!gm) {
    group_max_avx2(row, n, own);
    gm = own;
  }
  offer_above_avx2(h, row, n, mark, kth_largest_32_avx2(gm, h->k));
  if (h->n == h->k) return 1;
  h->n = 0;
  return 0;
}

/* The threshold's candidates (at most BEST_CAP) ranked without a heap:
   each one's rank is the number of candidates better than it (higher
   score, or equal score and lower index: collected in increasing index,
   so earlier), counted for 8 at once; the k best go straight to their
   places, best first.  Pushing a dozen candidates into the heap and
   sorting it mispredicted a few branches each. */
#define BEST_CAP 64

__attribute__((target("avx2")))
static int best_threshold_avx2(mfm_heap *h, const float *row, int32_t n,
                               const uint8_t *mark, const float *gm) {
  float own[32], cs[BEST_CAP];
  int32_t ci[BEST_CAP], rk[BEST_CAP];
  if (!gm) {
    group_max_avx2(row, n, own);
    gm = own;
  }
  float thr = kth_largest_32_avx2(gm, h->k);
  __m256 t = _mm256_set1_ps(thr);
  int32_t c = 0, j = 0;
  for (; j + 32 <= n; j += 32)
    for (uint32_t bits = mask32(row, j, t, 1); bits; bits &= bits - 1) {
      int32_t i = j + __builtin_ctz(bits);
      if (mark && (mark[i] & 1)) continue;
      if (c == BEST_CAP) return 0;
      cs[c] = row[i];
      ci[c++] = i;
    }
  for (; j < n; j++)
    if (row[j] >= thr && (!mark || !(mark[j] & 1))) {
      if (c == BEST_CAP) return 0;
      cs[c] = row[j];
      ci[c++] = j;
    }
  if (c < h->k) return 0;
  int nb = (c + 7) / 8;
  for (int32_t i = c; i < 8 * nb; i++) cs[i] = -INFINITY;
  __m256i cnt[BEST_CAP / 8], pos[BEST_CAP / 8];
  __m256 x[BEST_CAP / 8];
  for (int a = 0; a < nb; a++) {
    x[a] = _mm256_loadu_ps(cs + 8 * a);
    cnt[a] = _mm256_setzero_si256();
    pos[a] = _mm256_setr_epi32(8 * a, 8 * a + 1, 8 * a + 2, 8 * a + 3,
                               8 * a + 4, 8 * a + 5, 8 * a + 6, 8 * a + 7);
  }
  for (int32_t l = 0; l < c; l++) {
    __m256 b = _mm256_set1_ps(cs[l]);
    __m256i li = _mm256_set1_epi32(l);
    for (int a = 0; a < nb; a++) {
      __m256 gt = _mm256_cmp_ps(b, x[a], _CMP_GT_OQ);
      __m256 eq = _mm256_cmp_ps(b, x[a], _CMP_EQ_OQ);
      __m256 after = _mm256_castsi256_ps(_mm256_cmpgt_epi32(pos[a], li));
      __m256 better = _mm256_or_ps(gt, _mm256_and_ps(eq, after));
      cnt[a] = _mm256_sub_epi32(cnt[a], _mm256_castps_si256(better));
    }
  }
  for (int a = 0; a < nb; a++)
    _mm256_storeu_si256((__m256i *)(rk + 8 * a), cnt[a]);
  for (int32_t i = 0; i < c; i++)
    if (rk[i] < h->k) {
      h->score[rk[i]] = cs[i];
      h->index[rk[i]] = ci[i];
    }
  h->n = h->k;
  return 1;
}
#endif

/* The scan past the threshold: fills the heap up, then the threshold
   test. */
static void scan_rest(mfm_heap *h, const float *row, int32_t n,
                      const uint8_t *mark) {
  int32_t j = 0;
  for (; j < n && h->n < h->k; j++)
    if (!mark || !(mark[j] & 1)) mfm_heap_push(h, row[j], j);
#ifdef MFM_X86_KERNELS
  if (mfm_kernels_avx2()) {
    scan_avx2(h, row, j, n, mark);
    return;
  }
#endif
  scan_portable(h, row, j, n, mark);
}

void mfm_heap_best(mfm_heap *h, const float *row, int32_t n,
                   const uint8_t *mark, const float *gm) {
  h->n = 0;
  if (h->k <= 0) return;
#ifdef MFM_X86_KERNELS
  if (h->k <= 32 && n >= 256 && mfm_kernels_avx2() &&
      best_threshold_avx2(h, row, n, mark, gm))
    return;
  /* (More than BEST_CAP candidates, as with many ties: the heap.) */
  if (h->k <= 32 && n >= 256 && mfm_kernels_avx2() &&
      scan_threshold_avx2(h, row, n, mark, gm)) {
    mfm_heap_sort(h);
    return;
  }
#else
  (void)gm;
#endif
  scan_rest(h, row, n, mark);
  mfm_heap_sort(h);
}

void mfm_heap_scan(mfm_heap *h, const float *row, int32_t n,
                   const uint8_t *mark) {
  mfm_heap_scan_max(h, row, n, mark, NULL);
}

void mfm_heap_scan_max(mfm_heap *h, const float *row, int32_t n,
                       const uint8_t *mark, const float *gm) {
  if (h->k <= 0) return;
#ifdef MFM_X86_KERNELS
  /* The threshold pays from a few hundred items on. */
  if (h->k <= 32 && n >= 256 && h->n == 0 && mfm_kernels_avx2() &&
      scan_threshold_avx2(h, row, n, mark, gm))
    return;
#else
  (void)gm;
#endif
  scan_rest(h, row, n, mark);
}

/* ---- the block engine ------------------------------------------------- */

int32_t mfm_engine_setup(mfm_engine *e, int32_t block, int threads) {
  int32_t ni = e->f->n_items > 0 ? e->f->n_items : 1;
  if (block <= 0) {
    /* About 8 MB of scores per thread: large enough for sgemm to run at
       full speed, small enough to stay near the caches. */
    block = (int32_t)((1 << 21) / ni);
    if (block < 8) block = 8;
    if (block > 256) block = 256;
  }
  if (e->n > 0 && block > e->n) block = e->n;
  if (block < 1) block = 1;
  e->block = block;
  int32_t nblocks = e->n > 0 ? (int32_t)((e->n + (int64_t)block - 1) / block)
                             : 0;
  int t = mfm_threads_resolve(threads);
  if (t > nblocks) t = nblocks;
  if (t < 1) t = 1;
  e->threads = t;
  return nblocks;
}

typedef struct engine_run {
  const mfm_engine *e;
  int32_t nblocks;
  float **ubuf, **sbuf;
  atomic_int next;
  atomic_int failed;
  mfm_status *st;
} engine_run;

static void engine_worker(void *arg, int tid) {
  engine_run *r = arg;
  const mfm_engine *e = r->e;
  const mfm_factors *f = e->f;
  int32_t k = f->k, ni = f->n_items;
  float *ub = r->ubuf[tid], *sb = r->sbuf[tid];
  for (;;) {
    if (atomic_load(&r->failed)) return;
    int32_t b = atomic_fetch_add(&r->next, 1);
    if (b >= r->nblocks) return;
    if (mfm_stop_requested()) {
      r->st[tid] = MFM_ECANCELED;
      atomic_store(&r->failed, 1);
      return;
    }
    int32_t p0 = b * e->block;
    int32_t nb = e->n - p0 < e->block ? e->n - p0 : e->block;
    if (ni > 0) {
      if (k > 0) {
        for (int32_t i = 0; i < nb; i++)
          memcpy(ub + (size_t)i * k, f->user + e->users[p0 + i] * f->ld_user,
                 (size_t)k * sizeof *ub);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, ni, k, 1.0f,
                    ub, k, f->item, (int)f->ld_item, 0.0f, sb, ni);
      } else {
        memset(sb, 0, (size_t)nb * ni * sizeof *sb);
      }
    }
    for (int32_t i = 0; i < nb; i++) {
      float *row = sb + (size_t)i * ni;
      if (e->item_bias && f->item_bias) {
        const float *ib = f->item_bias;
        for (int32_t j = 0; j < ni; j++) row[j] += ib[j];
      }
      mfm_status st = e->row(e->ctx, tid, b, p0 + i, e->users[p0 + i], row);
      if (st != MFM_OK) {
        r->st[tid] = st;
        atomic_store(&r->failed, 1);
        return;
      }
    }
  }
}

mfm_status mfm_engine_run(const mfm_engine *e, mfm_err *err) {
  engine_run r;
  int nt = e->threads;
  mfm_status st = MFM_OK;
  r.e = e;
  r.nblocks = e->n > 0 ? (int32_t)((e->n + (int64_t)e->block - 1) / e->block)
                       : 0;
  atomic_init(&r.next, 0);
  atomic_init(&r.failed, 0);
  r.ubuf = mfm_calloc((size_t)nt, sizeof *r.ubuf);
  r.sbuf = mfm_calloc((size_t)nt, sizeof *r.sbuf);
  r.st = mfm_calloc((size_t)nt, sizeof *r.st);
  if (!r.ubuf || !r.sbuf || !r.st) {
    st = MFM_ENOMEM;
    goto done;
  }
  size_t ni = e->f->n_items > 0 ? (size_t)e->f->n_items : 1;
  size_t k = e->f->k > 0 ? (size_t)e->f->k : 1;
  for (int t = 0; t < nt; t++) {
    r.ubuf[t] = mfm_alloc_aligned((size_t)e->block * k, sizeof(float));
    r.sbuf[t] = mfm_alloc_aligned((size_t)e->block * ni, sizeof(float));
    if (!r.ubuf[t] || !r.sbuf[t]) {
      st = MFM_ENOMEM;
      goto done;
    }
  }
  if (r.nblocks > 0) {
    /* Our threads each run a single-threaded sgemm (TOOLCHAIN P9). */
    int prev = openblas_get_num_threads();
    mfm_blas_threads(1);
    st = mfm_parallel(nt, engine_worker, &r);
    mfm_blas_threads(prev);
    if (st == MFM_OK)
      for (int t = 0; t < nt; t++)
        if (r.st[t] != MFM_OK) {
          st = r.st[t];
          break;
        }
  }
done:
  if (r.ubuf)
    for (int t = 0; t < nt; t++) mfm_free_aligned(r.ubuf[t]);
  if (r.sbuf)
    for (int t = 0; t < nt; t++) mfm_free_aligned(r.sbuf[t]);
  mfm_free(r.ubuf);
  mfm_free(r.sbuf);
  mfm_free(r.st);
  if (st == MFM_ENOMEM) return mfm_err_set(err, st, "out of memory");
  if (st == MFM_ECANCELED) return mfm_err_set(err, st, "stopped");
  return st;
}

/* ---- checks ----------------------------------------------------------- */

mfm_status mfm_factors_check(const mfm_factors *f, mfm_err *err) {
  if (!f) return mfm_err_set(err, MFM_EINVAL, "factors: NULL");
  if (f->n_users < 0 || f->n_items < 0 || f->k < 0)
    return mfm_err_set(err, MFM_EINVAL,
                       "factors: negative size (%d users, %d items, k %d)",
                       f->n_users, f->n_items, f->k);
  if (f->k > 0 && f->n_users > 0 && (!f->user || f->ld_user < f->k))
    return mfm_err_set(err, MFM_EINVAL,
                       "factors: user matrix missing or ld_user < k");
  if (f->k > 0 && f->n_items > 0 && (!f->item || f->ld_item < f->k))
    return mfm_err_set(err, MFM_EINVAL,
                       "factors: item matrix missing or ld_item < k");
  return MFM_OK;
}

/* ---- recommend -------------------------------------------------------- */

mfm_topk_params mfm_topk_params_default(void) {
  mfm_topk_params p = {0, 1, 0, 0};
  return p;
}

typedef struct rec_ctx {
  const mfm_factors *f;
  const mfm_csr *exclude;
  int32_t k, kk; /* asked, and kept (at most n_items) */
  int32_t *items;
  float *scores;
  uint8_t **mark;
  float **hs;
  int32_t **hi;
} rec_ctx;

static mfm_status rec_row(void *arg, int tid, int32_t blk, int32_t pos,
                          int32_t u, float *row) {
  rec_ctx *c = arg;
  const mfm_factors *f = c->f;
  const mfm_csr *x = c->exclude;
  uint8_t *mark = c->mark[tid];
  int64_t a = 0, z = 0;
  if (x && u < x->n_rows) {
    a = x->indptr[u];
    z = x->indptr[u + 1];
    /* -inf as well as marked: the heap scan's threshold then holds. */
    for (int64_t t = a; t < z; t++)
      if (x->indices[t] < f->n_items) {
        mark[x->indices[t]] = 1;
        row[x->indices[t]] = -INFINITY;
      }
  }
  mfm_heap h;
  mfm_heap_init(&h, c->hs[tid], c->hi[tid], c->kk);
  mfm_heap_best(&h, row, f->n_items, mark, NULL);
  for (int64_t t = a; t < z; t++)
    if (x->indices[t] < f->n_items) mark[x->indices[t]] = 0;
  float ub = f->user_bias ? f->user_bias[u] : 0.0f;
  size_t o = (size_t)pos * c->k;
  for (int32_t r = 0; r < c->k; r++) {
    if (c->items) c->items[o + r] = r < h.n ? h.index[r] : -1;
    if (c->scores) c->scores[o + r] = r < h.n ? h.score[r] + ub : NAN;
  }
  return MFM_OK;
}

mfm_status mfm_topk_recommend(const mfm_factors *f, const int32_t *users,
                              int32_t n, int32_t k, const mfm_csr *exclude,
                              const mfm_topk_params *p, int32_t *items,
                              float *scores, mfm_err *err) {
  mfm_topk_params dp = mfm_topk_params_default();
  if (!p) p = &dp;
  mfm_status st = mfm_factors_check(f, err);
  if (st != MFM_OK) return st;
  if (k < 1) return mfm_err_set(err, MFM_EINVAL, "recommend: k must be >= 1, "
                                "got %d", (int)k);
  if (n < 0 || (n > 0 && !users))
    return mfm_err_set(err, MFM_EINVAL, "recommend: bad user list");
  for (int32_t i = 0; i < n; i++)
    if (users[i] < 0 || users[i] >= f->n_users)
      return mfm_err_set(err, MFM_EINVAL, "recommend: user %d (entry %d) out "
                         "of range [0, %d)", (int)users[i], (int)i,
                         (int)f->n_users);
  mfm_engine e = {f, users, n, 0, 0, p->item_bias, rec_row, NULL};
  mfm_engine_setup(&e, p->block, p->threads);
  rec_ctx c = {f, p->include_seen ? NULL : exclude, k, 0, items, scores,
               NULL, NULL, NULL};
  c.kk = k < f->n_items ? k : f->n_items;
  int nt = e.threads;
  size_t hk = c.kk > 0 ? (size_t)c.kk : 1;
  size_t ni = f->n_items > 0 ? (size_t)f->n_items : 1;
  c.mark = mfm_calloc((size_t)nt, sizeof *c.mark);
  c.hs = mfm_calloc((size_t)nt, sizeof *c.hs);
  c.hi = mfm_calloc((size_t)nt, sizeof *c.hi);
  if (!c.mark || !c.hs || !c.hi) {
    st = MFM_ENOMEM;
    goto done;
  }
  for (int t = 0; t < nt; t++) {
    c.mark[t] = mfm_calloc(ni, 1);
    c.hs[t] = mfm_malloc_array(hk, sizeof(float));
    c.hi[t] = mfm_malloc_array(hk, sizeof(int32_t));
    if (!c.mark[t] || !c.hs[t] || !c.hi[t]) {
      st = MFM_ENOMEM;
      goto done;
    }
  }
  e.ctx = &c;
  st = mfm_engine_run(&e, err);
done:
  for (int t = 0; t < nt; t++) {
    if (c.mark) mfm_free(c.mark[t]);
    if (c.hs) mfm_free(c.hs[t]);
    if (c.hi) mfm_free(c.hi[t]);
  }
  mfm_free(c.mark);
  mfm_free(c.hs);
  mfm_free(c.hi);
  if (st == MFM_ENOMEM) return mfm_err_set(err, st, "out of memory");
  return st;
}

/* ---- pair scores ------------------------------------------------------ */

mfm_status mfm_factors_score(const mfm_factors *f, const int32_t *users,
                             const int32_t *items, int64_t n, float *out,
                             mfm_err *err) {
  mfm_status st = mfm_factors_check(f, err);
  if (st != MFM_OK) return st;
  for (int64_t i = 0; i < n; i++) {
    int32_t u = users[i], j = items[i];
    if (u < 0 || u >= f->n_users)
      return mfm_err_set(err, MFM_EINVAL, "score: user %d (pair %lld) out of "
                         "range [0, %d)", (int)u, (long long)i,
                         (int)f->n_users);
    if (j < 0 || j >= f->n_items)
      return mfm_err_set(err, MFM_EINVAL, "score: item %d (pair %lld) out of "
                         "range [0, %d)", (int)j, (long long)i,
                         (int)f->n_items);
    const float *a = f->user + u * f->ld_user, *b = f->item + j * f->ld_item;
    /* Eight partial sums: vectorisable without reassociation flags. */
    float acc[8] = {0};
    int32_t t = 0;
    for (; t + 8 <= f->k; t += 8)
      for (int l = 0; l < 8; l++) acc[l] += a[t + l] * b[t + l];
    float s = 0.0f;
    for (; t < f->k; t++) s += a[t] * b[t];
    for (int l = 0; l < 8; l++) s += acc[l];
    if (f->user_bias) s += f->user_bias[u];
    if (f->item_bias) s += f->item_bias[j];
    out[i] = s;
  }
  return MFM_OK;
}
