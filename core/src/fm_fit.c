/* Fitting: the samples are laid out in T x T cells (fm_layout.c: users
   in T contiguous blocks of about equal work, items dealt at random into
   T blocks of about equal work), and an epoch runs T sub-epochs; in
   sub-epoch s, thread t trains on the interactions of user block t with
   item block (t + s) mod T, drawing negatives from that item block only.
   So two threads never write the same user or item rows (only shared
   side-feature rows), and cache lines stay with their core: plain
   Hogwild over the whole tables ran slower on 2 threads than on 1.
   With T = 1 this is plain SGD over a shuffled epoch.

   WARP's epoch runs in FM_ROUNDS rounds of T sub-epochs, each round over
   one slice of every user's samples of every cell.  When a user's whole
   share of a cell ran in one sub-epoch, WARP learned less per epoch the
   more threads there were (precision@10 -7% on 2 threads, -17% on 8
   after 3 epochs); with 8 rounds it matches one thread.  One thread runs
   the rounds too: on real ratings (MovieLens), one visit a user, all its
   samples in a row, cost WARP 3.5% of its precision@10 after 20 epochs
   (docs/fm.md, "One order for every thread count").  BPR and
   logistic never lost, and rounds cost them up to 30% (docs/fm.md,
   "Threads and quality").  k-OS takes one step per user and epoch, so
   rounds only spread its users over 8 times the barriers: the same
   precision@10 without them (20 epochs, seeds 1-3, 2 and 4 threads), and
   its 2-thread epoch at ML-1M size 3.7 -> 3.0 ms. */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <time.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"
#include "moonfm/threads.h"

#define FM_ROUNDS 8
_Static_assert((FM_ROUNDS & (FM_ROUNDS - 1)) == 0,
               "the kernel takes rounds modulo with a mask");

typedef struct fit_ctx {
  fm_fitenv env;
  fm_layout *L;
  fm_tstate *ts;       /* T, 64-byte aligned */
  atomic_int *stop_at; /* T: the step in which thread t stopped */
} fit_ctx;

/* Step (round r, sub-epoch s) of thread t.  Odd rounds run their
   sub-epochs backwards, so a thread keeps its item block across a round's
   end instead of fetching another from the other cores' caches. */
static void run_step(fit_ctx *c, int t, int r, int s) {
  int T = c->L->T;
  if (r & 1) s = T - 1 - s;
  c->ts[t].round = r;
  fm_run_cell(&c->env, &c->L->cells[t * T + (t + s) % T], &c->ts[t]);
}

/* One epoch on thread t of the team; all stop after the same step. */
static void epoch_member(void *p, int t, mfm_team *tm) {
  fit_ctx *c = p;
  int T = c->L->T;
  for (int r = 0, step = 0; r < c->L->R; r++)
    for (int s = 0; s < T; s++, step++) {
      run_step(c, t, r, s);
      if (c->ts[t].stopped) atomic_store(&c->stop_at[t], step);
      mfm_team_sync(tm);
      for (int u = 0; u < T; u++)
        if (atomic_load(&c->stop_at[u]) <= step) return;
    }
}

/* The same steps on this thread alone (T = 1, or no threads to be had):
   the cells of a step are disjoint, so the model is the same. */
static void epoch_serial(fit_ctx *c) {
  int T = c->L->T;
  for (int r = 0; r < c->L->R; r++)
    for (int s = 0; s < T; s++) {
      int stopped = 0;
      for (int t = 0; t < T; t++) {
        run_step(c, t, r, s);
        stopped |= c->ts[t].stopped;
      }
      if (stopped) return;
    }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The layout for this fit: the model's last one when the data, T, R, the
   loss and the seed are the same (its borrowed pointers into X renewed),
   else a new one, kept in the model for the next fit. */
static mfm_status layout_for(mfm_fm *m, const mfm_csr *X, const mfm_csr *W,
                             int T, int R, fm_layout **out) {
  const mfm_fm_params *p = &m->p;
  uint32_t thr;
  memcpy(&thr, &p->logistic_threshold, sizeof thr);
  uint64_t key[4] = {fm_data_hash(X, W, T),
                     (uint64_t)T | (uint64_t)R << 8 | (uint64_t)p->loss << 16 |
                         (uint64_t)(m->i.rows != NULL) << 24,
                     thr, p->seed};
  if (m->layout && memcmp(key, m->layout_key, sizeof key) == 0) {
    fm_layout_rebind(m->layout, X, W);
    *out = m->layout;
    return MFM_OK;
  }
  fm_layout_drop(m);
  fm_layout *L = mfm_calloc(1, sizeof *L);
  mfm_status st = L ? fm_layout_build(m, X, W, T, R, L) : MFM_ENOMEM;
  if (st != MFM_OK) {
    mfm_free(L);
    return st;
  }
  m->layout = L;
  memcpy(m->layout_key, key, sizeof key);
  *out = L;
  return MFM_OK;
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
    rep->negatives = 0;
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
  int R = p->loss == MFM_FM_WARP ? FM_ROUNDS : 1;

  int32_t k = m->k, ni = m->i.n;
  fm_layout *L = NULL;
  mfm_status st = layout_for(m, X, W, T, R, &L);
  fm_tstate *ts = mfm_alloc_aligned((size_t)T, sizeof *ts);
  float *logw = mfm_malloc_array((size_t)p->max_sampled + 1, sizeof(float));
  /* Whole cache lines per thread. */
  size_t per = (6 * (size_t)k + 3 * (size_t)p->kos_n + 15) & ~(size_t)15;
  float *scratch = mfm_alloc_aligned((size_t)T, per * sizeof(float));
  size_t seen_n = ((size_t)ni + 63) & ~(size_t)63;
  uint8_t *seen = mfm_alloc_aligned((size_t)T, seen_n);
  atomic_int *stop_at = mfm_malloc_array((size_t)T, sizeof *stop_at);
  /* Per thread: room for the largest group, in whole cache lines, and
     for the plan of the largest cell. */
  size_t gper =
      L ? ((size_t)L->max_group * sizeof(fm_sample) + 63) & ~(size_t)63 : 0;
  fm_sample *gbuf = st == MFM_OK ? mfm_alloc_aligned((size_t)T, gper) : NULL;
  fm_visit *plans =
      st == MFM_OK
          ? mfm_malloc_array((size_t)T * (size_t)L->max_groups, sizeof *plans)
          : NULL;
  if (st != MFM_OK || !ts || !logw || !scratch || !seen || !stop_at ||
      !gbuf || !plans)
    goto nomem;

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
    ts[t].seen = seen + seen_n * t;
    ts[t].seen_n = (int64_t)seen_n;
    ts[t].bits = NULL;
    ts[t].buf = (fm_sample *)((char *)gbuf + gper * t);
    ts[t].plan = plans + (size_t)L->max_groups * t;
    ts[t].rounds = R;
  }

  /* The item rows in the layout's numbering for the epochs, and back
     after them whatever happens. */
  fm_layout_permute(m, L, 1);
  fit_ctx ctx = {{m, X, W, L->ix, L->iw, logw, fm_sched_of(p)}, L, ts,
                 stop_at};
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
      if (R > 1) ts[t].salt = mfm_rng_next(&ts[t].rng);
      atomic_init(&stop_at[t], INT_MAX);
    }
    if (T > 1 && p->loss == MFM_FM_WARP_KOS) {
      uint64_t ks = mfm_rng_next(&ts[0].rng);
      for (int t = 0; t < T; t++) {
        ts[t].kos_pick = 1;
        ts[t].kos_salt = ks;
      }
    }
    if (T == 1 || mfm_team_run(T, epoch_member, &ctx) != MFM_OK)
      epoch_serial(&ctx);
    for (int t = 0; t < T; t++) stopped |= ts[t].stopped;
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
    if (stopped) {
      st = mfm_err_set(err, MFM_ECANCELED,
                       "fm fit: stopped during epoch %lld",
                       (long long)m->epoch[0] + 1);
      break;
    }
    m->epoch[0]++;
  }
  fm_layout_permute(m, L, 0);
  if (rep) {
    rep->epochs = ep;
    rep->loss = lcount ? loss / (double)lcount : 0.0;
    rep->samples = total_done;
    rep->negatives = L->negatives;
    rep->seconds = now() - t0;
  }
  goto out;
nomem:
  st = mfm_err_set(err, MFM_ENOMEM, "fm fit: out of memory");
out:
  mfm_free(stop_at);
  mfm_free_aligned(ts);
  mfm_free(logw);
  mfm_free_aligned(scratch);
  mfm_free_aligned(seen);
  mfm_free_aligned(gbuf);
  mfm_free(plans);
  return st;
}
