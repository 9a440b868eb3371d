/* Fitting: splits users and items into T contiguous blocks of about equal
   work and runs T sub-epochs per epoch; in sub-epoch s, thread t trains
   on the interactions of user block t with item block (t + s) mod T,
   drawing negatives from that item block only.  So two threads never
   write the same user or item rows (only shared side-feature rows), and
   cache lines stay with their core: plain Hogwild over the whole tables
   ran slower on 2 threads than on 1.  With T = 1 this is plain SGD over
   a shuffled epoch. */
#include <math.h>
#include <time.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"
#include "moonfm/threads.h"

typedef struct fit_ctx {
  fm_fitenv env;
  int T, sub;
  fm_cell *cells; /* T x T */
  fm_tstate *ts;  /* T, 64-byte aligned */
} fit_ctx;

static void thread_main(void *p, int t) {
  fit_ctx *c = p;
  int b = (t + c->sub) % c->T;
  fm_run_cell(&c->env, &c->cells[t * c->T + b], &c->ts[t]);
}

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

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int wanted(const mfm_fm *m, float v) {
  return m->p.loss == MFM_FM_LOGISTIC || v > 0;
}

mfm_status mfm_fm_fit(mfm_fm *m, const mfm_csr *X, const mfm_csr *W,
                      int epochs, int threads, mfm_fit_report *rep,
                      mfm_err *err) {
  double t0 = now();
  if (rep) {
    rep->epochs = 0;
    rep->loss = 0.0;
    rep->seconds = 0.0;
    rep->samples = 0;
  }
  if (epochs < 0)
    return mfm_err_set(err, MFM_EINVAL, "fm fit: epochs must be >= 0");
  if (X->n_rows > m->u.n || X->n_cols > m->i.n)
    return mfm_err_set(err, MFM_EINVAL,
                       "fm fit: interactions are %d x %d, larger than the "
                       "model's %d users x %d items",
                       (int)X->n_rows, (int)X->n_cols, (int)m->u.n,
                       (int)m->i.n);
  if (W && (W->n_rows != X->n_rows || W->nnz != X->nnz))
    return mfm_err_set(err, MFM_EINVAL,
                       "fm fit: sample weights must have the pattern of the "
                       "interactions");
  if (epochs == 0) return MFM_OK;

  mfm_fm_params *p = &m->p;
  int T = mfm_threads_resolve(threads > 0 ? threads : p->threads);
  if (T > MFM_FM_MAX_THREADS) T = MFM_FM_MAX_THREADS;
  if (T > m->i.n) T = m->i.n;
  if (T > m->u.n) T = m->u.n > 0 ? m->u.n : 1;
  /* Tiny data: threads cost more than they save. */
  if (X->nnz < 4096 * (int64_t)T) T = (int)(X->nnz / 4096) + 1;
  if (T < 1) T = 1;

  int kos = p->loss == MFM_FM_WARP_KOS;
  int32_t k = m->k, nu = m->u.n, ni = m->i.n;
  mfm_status st = MFM_OK;
  int64_t *wu = mfm_calloc((size_t)nu + 1, sizeof(int64_t));
  int64_t *wi = mfm_calloc((size_t)ni + 1, sizeof(int64_t));
  unsigned char *iblk = mfm_malloc((size_t)ni);
  int32_t ulo[MFM_FM_MAX_THREADS + 1], ilo[MFM_FM_MAX_THREADS + 1];
  int64_t *cnt = mfm_calloc((size_t)T * T + 1, sizeof(int64_t));
  fm_cell *cells = mfm_calloc((size_t)T * T, sizeof *cells);
  fm_tstate *ts = mfm_alloc_aligned((size_t)T, sizeof *ts);
  float *logw = mfm_malloc_array((size_t)p->max_sampled + 1, sizeof(float));
  /* Whole cache lines per thread. */
  size_t per = (6 * (size_t)k + 3 * (size_t)p->kos_n + 15) & ~(size_t)15;
  float *scratch = mfm_alloc_aligned((size_t)T, per * sizeof(float));
  size_t words = (((size_t)ni + 63) / 64 + 7) & ~(size_t)7;
  uint64_t *bits = mfm_alloc_aligned((size_t)T, words * sizeof(uint64_t));
  fm_sample *samples = NULL;
  uint32_t *gperm = NULL;
  fm_sample *gbuf = NULL;
  int64_t *groups = NULL, *gcnt = NULL;
  if (!wu || !wi || !iblk || !cnt || !cells || !ts || !logw || !scratch ||
      !bits)
    goto nomem;

  /* Work per user and per item, then the blocks. */
  for (int32_t u = 0; u < X->n_rows; u++)
    for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++) {
      float v = W ? W->data[q] : X->data[q];
      if (!wanted(m, X->data[q]) || (W && !(v > 0) &&
                                     p->loss != MFM_FM_LOGISTIC))
        continue;
      wu[u]++;
      wi[X->indices[q]]++;
    }
  split(wu, nu, T, ulo);
  split(wi, ni, T, ilo);
  for (int b = 0; b < T; b++)
    for (int32_t i = ilo[b]; i < ilo[b + 1]; i++) iblk[i] = (unsigned char)b;

  /* Samples grouped by cell (counting sort, canonical order inside). */
  for (int t = 0; t < T; t++)
    for (int32_t u = ulo[t]; u < ulo[t + 1] && u < X->n_rows; u++) {
      int last = -1;
      for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++) {
        float v = W ? W->data[q] : X->data[q];
        if (!wanted(m, X->data[q]) ||
            (W && !(v > 0) && p->loss != MFM_FM_LOGISTIC))
          continue;
        int b = iblk[X->indices[q]];
        if (kos && b == last) continue;
        last = b;
        cnt[t * T + b + 1]++;
      }
    }
  for (int c = 0; c < T * T; c++) cnt[c + 1] += cnt[c];
  int64_t total = cnt[T * T];
  samples = mfm_malloc_array((size_t)total + 1, sizeof *samples);
  if (!samples) goto nomem;
  for (int c = 0; c < T * T; c++) {
    cells[c].s = samples + cnt[c];
    cells[c].n = cnt[c + 1] - cnt[c];
    cells[c].ilo = ilo[c % T];
    cells[c].ihi = ilo[c % T + 1];
  }
  for (int t = 0; t < T; t++)
    for (int32_t u = ulo[t]; u < ulo[t + 1] && u < X->n_rows; u++) {
      int last = -1;
      for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++) {
        float v = W ? W->data[q] : X->data[q];
        if (!wanted(m, X->data[q]) ||
            (W && !(v > 0) && p->loss != MFM_FM_LOGISTIC))
          continue;
        int b = iblk[X->indices[q]];
        if (kos && b == last) continue;
        last = b;
        fm_sample s = {u, X->indices[q], v};
        if (p->loss == MFM_FM_LOGISTIC) {
          float w = W ? fabsf(W->data[q]) : 1.0f;
          s.w = X->data[q] > p->logistic_threshold ? w : -w;
        }
        /* cnt[c] is used as the fill cursor, restored below. */
        ((fm_sample *)cells[t * T + b].s)[0] = s;
        cells[t * T + b].s++;
      }
    }
  for (int c = 0; c < T * T; c++) cells[c].s = samples + cnt[c];

  int64_t maxg = 1;
  /* User groups of each cell (runs of one user in canonical order). */
  gcnt = mfm_calloc((size_t)T * T + 1, sizeof(int64_t));
  if (!gcnt) goto nomem;
  for (int c = 0; c < T * T; c++)
    for (int64_t q = 0; q < cells[c].n; q++)
      gcnt[c + 1] += q == 0 || cells[c].s[q].u != cells[c].s[q - 1].u;
  for (int c = 0; c < T * T; c++) gcnt[c + 1] += gcnt[c];
  groups = mfm_malloc_array((size_t)(gcnt[T * T] + T * T), sizeof *groups);
  gperm = mfm_malloc_array((size_t)gcnt[T * T] + 1, sizeof *gperm);
  if (!groups || !gperm) goto nomem;
  for (int c = 0; c < T * T; c++) {
    int64_t *g = groups + gcnt[c] + c, ng = 0;
    for (int64_t q = 0; q < cells[c].n; q++)
      if (q == 0 || cells[c].s[q].u != cells[c].s[q - 1].u) g[ng++] = q;
    g[ng] = cells[c].n;
    cells[c].g = g;
    cells[c].ng = ng;
    cells[c].gperm = gperm + gcnt[c];
    for (int64_t q = 0; q < ng; q++)
      if (g[q + 1] - g[q] > maxg) maxg = g[q + 1] - g[q];
  }
  /* Per thread: room for the largest group, in whole cache lines. */
  size_t gper = ((size_t)maxg * sizeof(fm_sample) + 63) & ~(size_t)63;
  gbuf = mfm_alloc_aligned((size_t)T, gper);
  if (!gbuf) goto nomem;

  /* WARP's rank weight for a violator found at draw n: log(floor((N-1)/n)),
     computed once, so the inner loop has no division. */
  for (int32_t d = 0; d <= p->max_sampled; d++) {
    double r = d ? floor((double)(ni - 1) / d) : 1.0;
    logw[d] = (float)log(r > 1.0 ? r : 1.0);
  }

  for (int t = 0; t < T; t++) {
    float *b = scratch + per * t;
    ts[t].sc = (fm_scratch){b, b + k, b + 2 * k, b + 3 * k, b + 4 * k,
                            b + 5 * k};
    ts[t].kos_score = b + 6 * k;
    ts[t].kos_item = (int32_t *)(b + 6 * k + p->kos_n);
    ts[t].kos_w = b + 6 * k + 2 * p->kos_n;
    ts[t].seen = bits + words * t;
    ts[t].seen_u = -1;
    ts[t].buf = (fm_sample *)((char *)gbuf + gper * t);
  }

  fit_ctx ctx = {{m, X, W, logw, fm_sched_of(p)}, T, 0, cells, ts};
  double loss = 0.0;
  int64_t done = 0, total_done = 0, lcount = 0;
  int ep;
  for (ep = 0; ep < epochs; ep++) {
    int stopped = 0;
    for (int t = 0; t < T; t++) {
      memcpy(ts[t].rng.s, m->rng + 4 * t, sizeof ts[t].rng.s);
      ts[t].loss = 0.0;
      ts[t].lcount = 0;
      ts[t].done = 0;
      ts[t].stopped = 0;
    }
    for (int s = 0; s < T && !stopped; s++) {
      ctx.sub = s;
      st = mfm_parallel(T, thread_main, &ctx);
      if (st != MFM_OK) break;
      for (int t = 0; t < T; t++) stopped |= ts[t].stopped;
    }
    /* The RNG always advances, so a stopped epoch is not replayed. */
    for (int t = 0; t < T; t++)
      memcpy(m->rng + 4 * t, ts[t].rng.s, sizeof ts[t].rng.s);
    m->cache_valid = 0;
    loss = 0.0;
    done = 0;
    lcount = 0;
    for (int t = 0; t < T; t++) {
      loss += ts[t].loss;
      lcount += ts[t].lcount;
      done += ts[t].done;
    }
    total_done += done;
    if (st != MFM_OK) goto nomem;
    if (stopped) {
      st = mfm_err_set(err, MFM_ECANCELED,
                       "fm fit: stopped during epoch %lld",
                       (long long)m->epoch[0] + 1);
      break;
    }
    m->epoch[0]++;
  }
  if (rep) {
    rep->epochs = ep;
    rep->loss = lcount ? loss / (double)lcount : 0.0;
    rep->samples = total_done;
    rep->seconds = now() - t0;
  }
  goto out;
nomem:
  st = mfm_err_set(err, MFM_ENOMEM, "fm fit: out of memory");
out:
  mfm_free(wu);
  mfm_free(wi);
  mfm_free(iblk);
  mfm_free(cnt);
  mfm_free(cells);
  mfm_free_aligned(ts);
  mfm_free(logw);
  mfm_free_aligned(scratch);
  mfm_free_aligned(bits);
  mfm_free(samples);
  mfm_free_aligned(gbuf);
  mfm_free(gperm);
  mfm_free(groups);
  mfm_free(gcnt);
  return st;
}
