/* The layout of a fit's samples: users and items split into T contiguous
   blocks of about equal work, the samples of user block t with item block
   b in cell t * T + b (canonical order: by user, then item), each cell's
   samples grouped by user, and each group dealt into R slices for the
   rounds of fm_fit.c. */
#include <math.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"

/* Splits [0, n) into T contiguous ranges of about equal weight. */
static void split(const int64_t *weight, int32_t n, int T, int32_t *lo) {
  int64_t total = 0;
  for (int32_t e = 0; e < n; e++) total += weight[e] + 1;
  int64_t acc = 0;
  int t = 1;
  lo[0] = 0;
  for (int32_t e = 0; e < n && t < T; e++) {
    acc += weight[e] + 1;
    while (t < T && acc * T >= total * t) lo[t++] = e + 1;
  }
  while (t <= T) lo[t++] = n;
}

/* Whether entry q of X is a sample: every entry for logistic, else
   positive values (and positive weights, when given). */
static int wanted(const mfm_fm *m, const mfm_csr *X, const mfm_csr *W,
                  int64_t q) {
  if (m->p.loss == MFM_FM_LOGISTIC) return 1;
  return X->data[q] > 0 && (!W || W->data[q] > 0);
}

static fm_sample sample_of(const mfm_fm *m, const mfm_csr *X,
                           const mfm_csr *W, int32_t u, int64_t q) {
  fm_sample s = {u, X->indices[q], W ? W->data[q] : X->data[q]};
  if (m->p.loss == MFM_FM_LOGISTIC) {
    float w = W ? fabsf(W->data[q]) : 1.0f;
    s.w = X->data[q] > m->p.logistic_threshold ? w : -w;
  }
  return s;
}

/* The first of X's indices in [a, b) (sorted) that is >= v. */
static int64_t lower_bound(const int32_t *ix, int64_t a, int64_t b,
                           int32_t v) {
  while (a < b) {
    int64_t mid = a + (b - a) / 2;
    if (ix[mid] < v) a = mid + 1;
    else b = mid;
  }
  return a;
}

/* Runs body for every sample (user u, entry q of X, its cell) in
   canonical order; k-OS keeps one per user and item block (its sampler
   picks the positives itself). */
#define FOR_SAMPLES(body)                                                   \
  for (int t = 0; t < T; t++)                                              \
    for (int32_t u = ulo[t]; u < ulo[t + 1] && u < X->n_rows; u++) {       \
      int last = -1;                                                       \
      for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++) {          \
        if (!wanted(m, X, W, q)) continue;                                 \
        int b = iblk[X->indices[q]];                                       \
        if (kos && b == last) continue;                                    \
        last = b;                                                          \
        int cell = t * T + b;                                              \
        body;                                                              \
      }                                                                    \
    }

static mfm_status cells_of(const mfm_fm *m, const mfm_csr *X,
                           const mfm_csr *W, fm_layout *L) {
  int T = L->T, kos = m->p.loss == MFM_FM_WARP_KOS;
  int32_t nu = m->u.n, ni = m->i.n;
  int32_t ulo[MFM_FM_MAX_THREADS + 1], ilo[MFM_FM_MAX_THREADS + 1];
  int64_t *wu = mfm_calloc((size_t)nu + 1, sizeof(int64_t));
  int64_t *wi = mfm_calloc((size_t)ni + 1, sizeof(int64_t));
  int64_t *cnt = mfm_calloc((size_t)T * T + 1, sizeof(int64_t));
  unsigned char *iblk = mfm_malloc((size_t)ni + 1);
  mfm_status st = MFM_ENOMEM;
  if (!wu || !wi || !cnt || !iblk) goto out;

  /* Work per user and per item, then the blocks. */
  for (int32_t u = 0; u < X->n_rows; u++)
    for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++)
      if (wanted(m, X, W, q)) {
        wu[u]++;
        wi[X->indices[q]]++;
      }
  split(wu, nu, T, ulo);
  split(wi, ni, T, ilo);
  for (int b = 0; b < T; b++)
    for (int32_t i = ilo[b]; i < ilo[b + 1]; i++) iblk[i] = (unsigned char)b;

  /* A counting sort into the cells. */
  FOR_SAMPLES(cnt[cell + 1]++);
  for (int c = 0; c < T * T; c++) cnt[c + 1] += cnt[c];
  L->samples = mfm_malloc_array((size_t)cnt[T * T] + 1, sizeof *L->samples);
  if (!L->samples) goto out;
  FOR_SAMPLES(L->samples[cnt[cell]++] = sample_of(m, X, W, u, q));
  for (int c = T * T; c > 0; c--) cnt[c] = cnt[c - 1];
  cnt[0] = 0;
  for (int c = 0; c < T * T; c++) {
    fm_cell *cl = &L->cells[c];
    cl->s = L->samples + cnt[c];
    cl->n = cnt[c + 1] - cnt[c];
    cl->ilo = ilo[c % T];
    cl->ihi = ilo[c % T + 1];
    cl->id = (uint32_t)c;
  }
  st = MFM_OK;
out:
  mfm_free(wu);
  mfm_free(wi);
  mfm_free(cnt);
  mfm_free(iblk);
  return st;
}

/* The user groups of each cell and, per group, the user's entries of X
   in the cell's item block (where the negatives come from). */
static mfm_status groups_of(const mfm_csr *X, fm_layout *L) {
  int C = L->T * L->T;
  int64_t total = 0;
  for (int c = 0; c < C; c++)
    for (int64_t q = 0; q < L->cells[c].n; q++)
      total += q == 0 || L->cells[c].s[q].u != L->cells[c].s[q - 1].u;
  L->groups = mfm_malloc_array((size_t)total + 1, sizeof *L->groups);
  L->gperm = mfm_malloc_array((size_t)total + 1, sizeof *L->gperm);
  if (!L->groups || !L->gperm) return MFM_ENOMEM;
  int64_t off = 0;
  L->max_group = L->max_groups = 1;
  for (int c = 0; c < C; c++) {
    fm_cell *cl = &L->cells[c];
    fm_group *g = L->groups + off;
    int64_t ng = 0;
    for (int64_t q = 0; q < cl->n; q++) {
      if (q > 0 && cl->s[q].u == cl->s[q - 1].u) {
        g[ng - 1].n++;
        continue;
      }
      int32_t u = cl->s[q].u;
      int64_t a = X->indptr[u], b = X->indptr[u + 1];
      int64_t lo = lower_bound(X->indices, a, b, cl->ilo);
      int64_t hi = lower_bound(X->indices, lo, b, cl->ihi);
      g[ng++] = (fm_group){q, a, 1, u, (uint32_t)(lo - a), (uint32_t)(hi - a)};
    }
    for (int64_t q = 0; q < ng; q++)
      if (g[q].n > L->max_group) L->max_group = g[q].n;
    if (ng > L->max_groups) L->max_groups = ng;
    cl->grp = g;
    cl->ng = ng;
    cl->gperm = L->gperm + off;
    off += ng;
  }
  return MFM_OK;
}

/* Deals each group into R slices, every R-th sample of the canonical
   order, laid out slice after slice, so a round reads its slice in one
   piece. */
static mfm_status deal(fm_layout *L) {
  if (L->R == 1) return MFM_OK;
  fm_sample *tmp = mfm_malloc_array((size_t)L->max_group, sizeof *tmp);
  if (!tmp) return MFM_ENOMEM;
  for (int c = 0; c < L->T * L->T; c++) {
    fm_cell *cl = &L->cells[c];
    for (int64_t q = 0; q < cl->ng; q++) {
      fm_sample *s = (fm_sample *)cl->s + cl->grp[q].a;
      int64_t n = cl->grp[q].n, o = 0;
      for (int j = 0; j < L->R; j++)
        for (int64_t e = j; e < n; e += L->R) tmp[o++] = s[e];
      memcpy(s, tmp, (size_t)n * sizeof *s);
    }
  }
  mfm_free(tmp);
  return MFM_OK;
}

mfm_status fm_layout_build(const mfm_fm *m, const mfm_csr *X,
                           const mfm_csr *W, int T, int R, fm_layout *L) {
  memset(L, 0, sizeof *L);
  L->T = T;
  L->R = R;
  L->cells = mfm_calloc((size_t)T * T, sizeof *L->cells);
  mfm_status st = L->cells ? cells_of(m, X, W, L) : MFM_ENOMEM;
  if (st == MFM_OK) st = groups_of(X, L);
  if (st == MFM_OK) st = deal(L);
  if (st != MFM_OK) fm_layout_free(L);
  return st;
}

void fm_layout_free(fm_layout *L) {
  mfm_free(L->cells);
  mfm_free(L->samples);
  mfm_free(L->groups);
  mfm_free(L->gperm);
  memset(L, 0, sizeof *L);
}
