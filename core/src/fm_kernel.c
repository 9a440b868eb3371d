/* The losses: per-sample gradient steps and the loops that run them over
   one cell of the training data.  No allocation here: buffers come from
   the thread state. */
#include <math.h>

#include "fm_impl.h"
#include "moonfm/stop.h"

float fm_logistic_grad(float x, float y, float *loss) {
  /* L = log(1 + exp(-y x)); dL/dx = -y sigmoid(-y x). */
  float z = -y * x;
  float ez = expf(-fabsf(z));
  float sig = z >= 0 ? 1.0f / (1.0f + ez) : ez / (1.0f + ez);
  *loss = (z > 0 ? z : 0.0f) + log1pf(ez);
  return -y * sig;
}

float fm_bpr_grad(float x, float *loss) {
  /* L = log(1 + exp(-x)) = -log sigmoid(x); dL/dx = -sigmoid(-x). */
  return fm_logistic_grad(x, 1.0f, loss);
}

/* The gradients of a step, computed before any row is written (the
   representations may point into the tables).  restrict holds here: only
   the scratch is written in this function. */
FM_INLINE void pair_grads(const float *restrict ru, const float *restrict rp,
                          const float *restrict rn, float d,
                          float *restrict gu, float *restrict gp,
                          float *restrict gn, int32_t k) {
  for (int32_t j = 0; j < k; j++) {
    gu[j] = d * (rp[j] - rn[j]);
    gp[j] = d * ru[j];
    gn[j] = -d * ru[j];
  }
}

FM_INLINE void point_grads(const float *restrict ru, const float *restrict ri,
                           float d, float *restrict gu, float *restrict gi,
                           int32_t k) {
  for (int32_t j = 0; j < k; j++) {
    gu[j] = d * ri[j];
    gi[j] = d * ru[j];
  }
}

FM_INLINE void pair_step(mfm_fm *m, const fm_sched *s, int32_t u, int32_t p,
                         int32_t n, const float *ru, const float *rp,
                         const float *rn, float d, fm_scratch *sc) {
  int32_t k = m->k;
  pair_grads(ru, rp, rn, d, sc->gu, sc->gp, sc->gn, k);
  fm_update(&m->i, s, k, p, sc->gp, d, 1);
  fm_update(&m->i, s, k, n, sc->gn, -d, 1);
  /* The user bias cancels in s_p - s_n: no gradient. */
  fm_update(&m->u, s, k, u, sc->gu, 0.0f, 0);
}

FM_INLINE void point_step(mfm_fm *m, const fm_sched *s, int32_t u,
                          int32_t i, const float *ru, const float *ri,
                          float d, fm_scratch *sc) {
  int32_t k = m->k;
  point_grads(ru, ri, d, sc->gu, sc->gp, k);
  fm_update(&m->i, s, k, i, sc->gp, d, 1);
  fm_update(&m->u, s, k, u, sc->gu, d, 1);
}

void fm_pair_step(mfm_fm *m, const fm_sched *s, int32_t u, int32_t p,
                  int32_t n, const float *ru, const float *rp,
                  const float *rn, float d, fm_scratch *sc) {
  pair_step(m, s, u, p, n, ru, rp, rn, d, sc);
}

void fm_point_step(mfm_fm *m, const fm_sched *s, int32_t u, int32_t i,
                   const float *ru, const float *ri, float d,
                   fm_scratch *sc) {
  point_step(m, s, u, i, ru, ri, d, sc);
}

#define STOP_EVERY 63 /* check the flag every 64 samples */

typedef struct walk {
  int64_t g, q, len, done;
} walk;

/* The slice of group gi that runs in round 0 of this epoch: a hash, so
   that the deal needs no storage and every round sees the same one. */
FM_INLINE uint32_t deal_offset(const fm_tstate *ts, const fm_cell *c,
                               uint32_t gi) {
  uint64_t z = fm_mix64(ts->salt + ((uint64_t)c->id << 32 | gi));
  return (uint32_t)z & (uint32_t)(ts->rounds - 1);
}

/* k-OS takes one step per user and epoch, as with one thread: of the
   user's T groups (one per item block), the one whose block holds entry
   h * len of the user's row, h in [0, 1) a hash of the user and the
   epoch. */
FM_INLINE int kos_block(const mfm_csr *X, const fm_tstate *ts,
                        const fm_group *g) {
  uint64_t len = (uint64_t)(X->indptr[g->u + 1] - g->x);
  uint64_t h = fm_mix64(ts->kos_salt + (uint64_t)g->u) >> 32;
  uint64_t at = (h * len) >> 32;
  return at >= g->ra && at < g->rb;
}

/* The visit's plan, the epoch's order: users in random order, each
   user's samples together, so that its row and seen marks stay in L1 (a
   fully random order ran 4x slower at ML-1M size).  Each group comes as
   this round's slice (of S = fm_slices(n, R), slice j holds samples j,
   j + S, ... of the canonical order, laid out by fm_layout.c; slice j
   runs in round offset + j), groups with nothing this round left out;
   then the plan is shuffled.  The groups are read in their order, not in
   the shuffled one: read at random they missed the cache (2% of WARP's
   time on 2 threads).  The order depends only on the RNG state, so a
   resumed fit replays the same epochs. */
static void plan_visit(const mfm_csr *X, const fm_cell *c, fm_tstate *ts,
                       mfm_rng *r) {
  uint32_t R = (uint32_t)ts->rounds; /* a power of two */
  int64_t np = 0;
  for (int64_t q = 0; q < c->ng; q++) {
    const fm_group *g = &c->grp[q];
    int64_t a = g->a;
    uint32_t n = (uint32_t)g->n;
    if (R > 1) {
      uint32_t j = ((uint32_t)ts->round - deal_offset(ts, c, (uint32_t)q)) &
                   (R - 1);
      uint32_t S = (uint32_t)fm_slices(n, (int)R), base = n / S, rest = n % S;
      if (j >= S) continue;
      a += (int64_t)j * base + (j < rest ? j : rest);
      n = base + (j < rest);
      if (n == 0) continue;
    }
    if (ts->kos_pick && !kos_block(X, ts, g)) continue;
    const uint64_t *bits =
        c->gbits && c->gbits[q] >= 0 ? c->bits + c->gbits[q] : NULL;
    ts->plan[np++] =
        (fm_visit){a, g->x + g->ra, g->x + g->rb, bits, (int32_t)n, g->u};
  }
  for (int64_t q = np - 1; q > 0; q--) {
    uint32_t j = mfm_rng_below(r, (uint32_t)q + 1);
    fm_visit t = ts->plan[q];
    ts->plan[q] = ts->plan[j];
    ts->plan[j] = t;
  }
  ts->nplan = np;
}

#if defined(__GNUC__) && !defined(FM_NO_PREFETCH)
/* Asks for the cache lines of [p, p + bytes), at most `lines` of them. */
FM_INLINE void prefetch_span(const void *p, size_t bytes, int lines) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, b = (uintptr_t)p + bytes;
  for (int l = 0; l < lines && a < b; l++, a += 64)
    __builtin_prefetch((const void *)a, 0);
}
#endif

/* Asks for what the walk of planned group v will read: its samples, the
   user's seen entries (or its seen row) and, on the identity-only path,
   its rows.  With rounds, visits are short, and asking for the first line
   of each run only left the rest of the seen entries to miss in the walk
   (WARP on 2 threads, 10M set: marking them was a quarter of what the
   second thread added; asking for up to 16 lines of each: CPU -4%).
   Without, visits are whole groups, the hardware's stream prefetcher
   follows them, and the same 16 lines cost one thread 3%. */
FM_INLINE void prefetch_visit(const fm_fitenv *e, const fm_cell *c,
                              const fm_visit *v, int lines) {
#if defined(__GNUC__) && !defined(FM_NO_PREFETCH)
  const mfm_fm *m = e->m;
  prefetch_span(c->s + v->a, (size_t)v->n * sizeof *c->s, lines);
  if (v->bits)
    prefetch_span(v->bits, (size_t)(c->ni + 63) / 64 * sizeof *v->bits,
                  lines);
  else
    prefetch_span(e->ix + v->seen_a,
                  (size_t)(v->seen_b - v->seen_a) * sizeof *e->ix, lines);
  if (!m->u.rows) {
    int64_t o = (int64_t)v->u * m->k;
    for (int32_t j = 0; j < m->k; j += 16) {
      __builtin_prefetch(m->u.emb + o + j, 1);
      __builtin_prefetch(m->u.acc + o + j, 1);
    }
    __builtin_prefetch(m->u.bias + v->u, 1);
  }
#else
  (void)e, (void)c, (void)v, (void)lines;
#endif
}

/* The next sample of the cell in the epoch's order; NULL at the end, or
   when the stop flag is raised (then ts->stopped is set).  Losses that
   draw negatives (seen) have the user's items marked at each visit. */
FM_INLINE fm_sample *walk_next(const fm_fitenv *e, const fm_cell *c,
                               fm_tstate *ts, walk *w, mfm_rng *rng,
                               int seen) {
  while (w->q == w->len) {
    if (w->g == ts->nplan) return NULL;
    const fm_visit *v = &ts->plan[w->g++];
    if (w->g + 1 < ts->nplan)
      prefetch_visit(e, c, v + 2, ts->rounds > 1 ? 16 : 1);
    fm_sample *b = ts->buf;
    int64_t n = v->n;
    memcpy(b, c->s + v->a, (size_t)n * sizeof *b);
    ts->run_a = v->seen_a;
    ts->run_b = v->seen_b;
    ts->bits = v->bits;
    if (seen) fm_seen_visit(e->ix, ts);
    w->len = n;
    w->q = 0;
    for (int64_t q = n - 1; q > 0; q--) {
      uint32_t j = mfm_rng_below(rng, (uint32_t)q + 1);
      fm_sample t = b[q];
      b[q] = b[j];
      b[j] = t;
    }
  }
  if ((w->done & STOP_EVERY) == 0 && mfm_stop_requested()) {
    ts->stopped = 1;
    return NULL;
  }
  w->done++;
  return &ts->buf[w->q++];
}

/* Asks for the rows of the next sample's item early: on large tables they
   come from memory, and the current step hides the wait. */
FM_INLINE void prefetch_next(const mfm_fm *m, const fm_tstate *ts,
                             const walk *w, int32_t k) {
#if defined(__GNUC__) && !defined(FM_NO_PREFETCH)
  if (w->q < w->len && !m->i.rows) {
    int64_t o = (int64_t)ts->buf[w->q].i * k;
    for (int32_t j = 0; j < k; j += 16) {
      __builtin_prefetch(m->i.emb + o + j, 1);
      __builtin_prefetch(m->i.acc + o + j, 1);
    }
  }
#else
  (void)m, (void)ts, (void)w, (void)k;
#endif
}

/* Negatives are drawn one ahead (*next), and the row of the next one is
   requested while the current one is scored: on tables larger than the
   cache each draw would otherwise wait for memory. */
/* BPR updates every negative it draws (update = 1): its accumulator row
   is requested too, for writing. */
FM_INLINE int32_t draw_ahead(const fm_cell *c, const mfm_fm *m,
                             mfm_rng *rng, int32_t *next, int update,
                             int32_t k) {
  int32_t n = *next;
  *next = fm_cell_item(c, mfm_rng_below(rng, (uint32_t)c->ni));
#if defined(__GNUC__) && !defined(FM_NO_PREFETCH)
  if (!m->i.rows) {
    int64_t o = (int64_t)*next * k;
    /* The read/write hint must be a literal for clang. */
    if (update) {
      for (int32_t j = 0; j < k; j += 16) {
        __builtin_prefetch(m->i.emb + o + j, 1);
        __builtin_prefetch(m->i.acc + o + j, 1);
      }
      __builtin_prefetch(m->i.bias + *next, 1);
    } else {
      for (int32_t j = 0; j < k; j += 16)
        __builtin_prefetch(m->i.emb + o + j, 0);
      __builtin_prefetch(m->i.bias + *next, 0);
    }
  }
#else
  (void)m, (void)update, (void)k;
#endif
  return n;
}

FM_INLINE void run_logistic(const fm_fitenv *e, const fm_cell *c,
                            fm_tstate *ts, int32_t k) {
  mfm_fm *m = e->m;
  fm_scratch *sc = &ts->sc;
  int fast = fm_fast_path(m, &e->sched);
  double loss = 0.0;
  walk wk = {0, 0, 0, 0};
  const fm_sample *x;
  while ((x = walk_next(e, c, ts, &wk, &ts->rng, 0))) {
    prefetch_next(m, ts, &wk, k);
    float bu, bi, l;
    const float *ru = fm_rep(&m->u, k, x->u, sc->ru, &bu);
    const float *ri = fm_rep(&m->i, k, x->i, sc->rp, &bi);
    float y = x->w > 0 ? 1.0f : -1.0f, w = fabsf(x->w);
    float d = w * fm_logistic_grad(fm_dot(ru, ri, k) + bu + bi, y, &l);
    loss += w * l;
    if (fast) fm_fast_point(m, &e->sched, x->u, x->i, d, k);
    else point_step(m, &e->sched, x->u, x->i, ru, ri, d, sc);
  }
  ts->loss += loss;
  ts->lcount += wk.done;
  ts->done += wk.done;
}

FM_INLINE void run_bpr(const fm_fitenv *e, const fm_cell *c, fm_tstate *ts,
                       int32_t k) {
  mfm_fm *m = e->m;
  fm_scratch *sc = &ts->sc;
  int fast = fm_fast_path(m, &e->sched);
  mfm_rng rng = ts->rng;
  /* Negatives are drawn one ahead, so the row of the next sample's
     negative is on its way while this step runs (as in WARP). */
  int32_t next = fm_cell_item(c, mfm_rng_below(&rng, (uint32_t)c->ni));
  double loss = 0.0;
  walk wk = {0, 0, 0, 0};
  const fm_sample *x;
  while ((x = walk_next(e, c, ts, &wk, &rng, 1))) {
    prefetch_next(m, ts, &wk, k);
    int32_t n = -1;
    for (int t = 0; t < 32; t++) {
      int32_t cand = draw_ahead(c, m, &rng, &next, 1, k);
      if (!fm_is_seen(ts, cand)) {
        n = cand;
        break;
      }
    }
    if (n < 0) continue; /* the user has seen (almost) the whole block */
    float bu, bp, bn, l;
    const float *ru = fm_rep(&m->u, k, x->u, sc->ru, &bu);
    const float *rp = fm_rep(&m->i, k, x->i, sc->rp, &bp);
    const float *rn = fm_rep(&m->i, k, n, sc->rn, &bn);
    float diff = fm_dot_diff(ru, rp, rn, k) + bp - bn;
    /* dL/dx = -sigmoid(-x); the reported loss is estimated from one
       sample in 8: its log costs as much as the rest of the step. */
    float ex = expf(diff < 30.0f ? diff : 30.0f);
    float d = -x->w / (1.0f + ex);
    if ((wk.done & 7) == 0) {
      fm_bpr_grad(diff, &l);
      loss += x->w * l;
      ts->lcount++;
    }
    /* n is unseen and the positive seen, so n != p. */
    if (fast) fm_fast_pair(m, &e->sched, x->u, x->i, n, d, k);
    else pair_step(m, &e->sched, x->u, x->i, n, ru, rp, rn, d, sc);
  }
  ts->rng = rng;
  ts->loss += loss;
  ts->done += wk.done;
}

/* WARP for user u and positive p (already scored: ru, sp): draws
   negatives from the block until one violates the margin; returns the
   loss added. */
FM_INLINE double warp_one(const fm_fitenv *e, const fm_cell *c,
                          fm_tstate *ts, mfm_rng *rng, int32_t *next,
                          int32_t u, int32_t p, float w, const float *ru,
                          const float *rp, float sp, int32_t k) {
  mfm_fm *m = e->m;
  int32_t ms = m->p.max_sampled;
  fm_scratch *sc = &ts->sc;
  for (int32_t draws = 1; draws <= ms; draws++) {
    int32_t n = draw_ahead(c, m, rng, next, 0, k);
    float bn;
    const float *rn = fm_rep(&m->i, k, n, sc->rn, &bn);
    float sn = fm_dot(ru, rn, k) + bn;
    if (sn > sp - 1.0f) {
      /* Only violators are checked against the seen items (cheap). */
      if (n == p || fm_is_seen(ts, n)) continue;
      float lw = e->logw[draws];
      if (fm_fast_path(m, &e->sched))
        fm_fast_pair(m, &e->sched, u, p, n, -w * lw, k);
      else
        pair_step(m, &e->sched, u, p, n, ru, rp, rn, -w * lw, sc);
      return (double)w * lw * (1.0f - sp + sn);
    }
  }
  return 0.0;
}

FM_INLINE void run_warp(const fm_fitenv *e, const fm_cell *c, fm_tstate *ts,
                        int32_t k) {
  mfm_fm *m = e->m;
  fm_scratch *sc = &ts->sc;
  mfm_rng rng = ts->rng;
  int32_t next = fm_cell_item(c, mfm_rng_below(&rng, (uint32_t)c->ni));
  double loss = 0.0;
  walk wk = {0, 0, 0, 0};
  const fm_sample *x;
  while ((x = walk_next(e, c, ts, &wk, &rng, 1))) {
    prefetch_next(m, ts, &wk, k);
    float bu, bp;
    const float *ru = fm_rep(&m->u, k, x->u, sc->ru, &bu);
    const float *rp = fm_rep(&m->i, k, x->i, sc->rp, &bp);
    float sp = fm_dot(ru, rp, k) + bp;
    loss += warp_one(e, c, ts, &rng, &next, x->u, x->i, x->w, ru, rp, sp,
                     k);
  }
  ts->rng = rng;
  ts->loss += loss;
  ts->lcount += wk.done;
  ts->done += wk.done;
}

/* k-OS WARP: per (user, block), draw kos_n positives of the block, take
   the kos_k-th best scored one as the positive of a WARP step. */
FM_INLINE void run_kos(const fm_fitenv *e, const fm_cell *c, fm_tstate *ts) {
  mfm_fm *m = e->m;
  int32_t k = m->k, kn = m->p.kos_n, kk = m->p.kos_k;
  fm_scratch *sc = &ts->sc;
  mfm_rng rng = ts->rng;
  int32_t next = fm_cell_item(c, mfm_rng_below(&rng, (uint32_t)c->ni));
  double loss = 0.0;
  walk wk = {0, 0, 0, 0};
  const fm_sample *x;
  while ((x = walk_next(e, c, ts, &wk, &rng, 1))) {
    int32_t u = x->u;
    /* The user's entries in the item block (the group's run). */
    int64_t a = ts->run_a, b = ts->run_b;
    if (b == a) continue;
    float bu;
    const float *ru = fm_rep(&m->u, k, u, sc->ru, &bu);
    int32_t got = 0;
    for (int32_t t = 0; t < kn; t++) {
      int64_t o = a + mfm_rng_below(&rng, (uint32_t)(b - a));
      float w = e->iw[o];
      if (!(w > 0)) continue;
      float bp;
      int32_t it = e->ix[o];
      const float *rp = fm_rep(&m->i, k, it, sc->rp, &bp);
      float s = fm_dot(ru, rp, k) + bp;
      /* Insertion into a descending list. */
      int32_t z = got++;
      while (z > 0 && ts->kos_score[z - 1] < s) {
        ts->kos_score[z] = ts->kos_score[z - 1];
        ts->kos_item[z] = ts->kos_item[z - 1];
        ts->kos_w[z] = ts->kos_w[z - 1];
        z--;
      }
      ts->kos_score[z] = s;
      ts->kos_item[z] = it;
      ts->kos_w[z] = w;
    }
    if (got == 0) continue;
    int32_t pick = (kk < got ? kk : got) - 1;
    int32_t p = ts->kos_item[pick];
    float bp;
    const float *rp = fm_rep(&m->i, k, p, sc->rp, &bp);
    loss += warp_one(e, c, ts, &rng, &next, u, p, ts->kos_w[pick], ru, rp,
                     ts->kos_score[pick], k);
  }
  ts->rng = rng;
  ts->loss += loss;
  ts->lcount += wk.done;
  ts->done += wk.done;
}

/* Compiled for x86-64-v4 (AVX-512), v3 (AVX2 and FMA: Haswell, Zen) and
   the baseline; picked at load time.  "avx2" alone left out FMA. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3",
                             "default")))
#endif
void fm_run_cell(const fm_fitenv *e, const fm_cell *c, fm_tstate *ts) {
  ts->bits_lo = c->ilo;
  if (c->n == 0) return; /* and maybe no items to draw from */
  plan_visit(e->x, c, ts, &ts->rng);
  int32_t k = e->m->k;
  /* An instance per loss for k = 32 and 64: with k a constant, the row
     loops (dots, steps, prefetches) unroll into straight vector code. */
#define BY_K(run)                                                           \
  (k == 32 ? run(e, c, ts, 32) : k == 64 ? run(e, c, ts, 64) : run(e, c, ts, k))
  switch (e->m->p.loss) {
  case MFM_FM_LOGISTIC: BY_K(run_logistic); break;
  case MFM_FM_BPR: BY_K(run_bpr); break;
  case MFM_FM_WARP: BY_K(run_warp); break;
  default: run_kos(e, c, ts); break;
  }
#undef BY_K
}
