/* Internals of the factorization model, shared by core/src/fm_*.c and the
   unit tests (tests/c/test_fm.c); not installed. */
#ifndef MOONFM_FM_IMPL_H
#define MOONFM_FM_IMPL_H

#include <stdint.h>
#include <string.h>

#include "moonfm/fm.h"
#include "moonfm/rng.h"

/* One side (users or items) of the model.  Parameter rows: identity rows
   0..n-1 first (when kept), then the side features.  `rows` maps each
   entity to its parameter rows and weights (identity included, already
   normalised); NULL on the identity-only fast path. */
typedef struct fm_side {
  int32_t n;         /* entities (users or items) */
  int32_t n_feat;    /* side features */
  int identity;      /* identity rows present */
  int64_t n_rows;    /* parameter rows */
  float *emb, *bias; /* n_rows x k, n_rows */
  float *acc, *acc_b;   /* adagrad sums / adadelta E[g^2] */
  float *acc2, *acc2_b; /* adadelta E[dx^2]; NULL for other schedules */
  mfm_csr *rows;     /* n x n_rows, NULL when identity only */
  mfm_csr *given;    /* the features as set (a copy), or NULL */
  float *rep, *rep_b; /* cached representations (hybrid), n x k, n */
  float alpha;
} fm_side;

struct mfm_fm {
  mfm_fm_params p;
  int32_t k;
  fm_side u, i;
  uint64_t rng[MFM_FM_MAX_THREADS * 4]; /* one xoshiro state per thread */
  int64_t epoch[1];
  int cache_valid;
  /* The last fit's sample layout, kept for the next fit on the same data
     (a recipe fits one epoch at a time; rebuilding the layout took a
     third of an epoch on 2 threads at ML-1M size), and what it was
     built from (fm_fit.c). */
  struct fm_layout *layout;
  uint64_t layout_key[4];
};

/* The schedule, unpacked for the kernels. */
typedef struct fm_sched {
  mfm_fm_schedule kind;
  float lr, rho, eps;
} fm_sched;

/* The kernels are inlined into fm_run_cell, which is compiled once per
   instruction set (target_clones); a helper left out of line would run
   the baseline (SSE2) code. */
#if defined(__GNUC__)
#define FM_INLINE static inline __attribute__((always_inline))
#else
#define FM_INLINE static inline
#endif

/* The splitmix64 finalizer: a well-mixed 64-bit hash of z. */
FM_INLINE uint64_t fm_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 1/sqrt(x) for x > 0 without a division: the classic bit trick and one
   Newton step.  It errs low, by up to 1.75e-3; the fast adagrad path
   multiplies it by FM_RSQRT1_CENTRE (folded into the learning rate, so
   free), which brings the error within +-0.88e-3 with no bias (a
   one-sided error made the effective learning rate 0.1% lower). */
#define FM_RSQRT1_CENTRE 1.0008764f

FM_INLINE float fm_rsqrt1(float x) {
  uint32_t b;
  float y, h = 0.5f * x;
  memcpy(&b, &x, sizeof b);
  b = 0x5f375a86u - (b >> 1);
  memcpy(&y, &b, sizeof y);
  return y * (1.5f - h * y * y);
}

/* The same with a second Newton step (relative error < 5e-6), in plain C
   that vectorizes. */
FM_INLINE float fm_rsqrt(float x) {
  float y = fm_rsqrt1(x), h = 0.5f * x;
  return y * (1.5f - h * y * y);
}

/* x -= step(scale * g + alpha * x), element-wise over k, for the
   schedule.  The accumulators belong to the same row as x. */
FM_INLINE void fm_apply_row(const fm_sched *s, float *restrict x,
                                float *restrict a1, float *restrict a2,
                                const float *restrict g, float scale,
                                float alpha, int32_t k) {
  float lr = s->lr, rho = s->rho, eps = s->eps, rho1 = 1.0f - s->rho;
  switch (s->kind) {
  case MFM_FM_ADAGRAD:
    for (int32_t j = 0; j < k; j++) {
      float gg = scale * g[j] + alpha * x[j];
      float a = a1[j] + gg * gg;
      a1[j] = a;
      x[j] -= lr * gg * fm_rsqrt(a);
    }
    break;
  case MFM_FM_ADADELTA:
    for (int32_t j = 0; j < k; j++) {
      float gg = scale * g[j] + alpha * x[j];
      float a = rho * a1[j] + rho1 * gg * gg;
      float m = a2[j] + eps;
      float step = m * fm_rsqrt(m) * fm_rsqrt(a + eps) * gg;
      a1[j] = a;
      a2[j] = rho * a2[j] + rho1 * step * step;
      x[j] -= step;
    }
    break;
  default:
    for (int32_t j = 0; j < k; j++) x[j] -= lr * (scale * g[j] + alpha * x[j]);
    break;
  }
}

/* The same for one scalar (a bias). */
FM_INLINE void fm_apply_one(const fm_sched *s, float *x, float *a1,
                                float *a2, float g, float alpha) {
  fm_apply_row(s, x, a1, a2, &g, 1.0f, alpha, 1);
}

/* Sixteen partial sums in a fixed order: GCC vectorizes this without
   -ffast-math, and the result is the same whatever the vector width. */
FM_INLINE float fm_dot(const float *restrict a, const float *restrict b,
                           int32_t k) {
  float acc[16] = {0};
  int32_t j = 0;
  for (; j + 16 <= k; j += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[j + l] * b[j + l];
  float s = 0.0f;
  for (; j < k; j++) s += a[j] * b[j];
  for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];
  return s + ((acc[0] + acc[2]) + (acc[1] + acc[3]));
}

/* dot(a, b - c), the same way. */
FM_INLINE float fm_dot_diff(const float *restrict a, const float *restrict b,
                            const float *restrict c, int32_t k) {
  float acc[16] = {0};
  int32_t j = 0;
  for (; j + 16 <= k; j += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[j + l] * (b[j + l] - c[j + l]);
  float s = 0.0f;
  for (; j < k; j++) s += a[j] * (b[j] - c[j]);
  for (int l = 0; l < 8; l++) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; l++) acc[l] += acc[l + 4];
  return s + ((acc[0] + acc[2]) + (acc[1] + acc[3]));
}

/* The representation of entity e of a side: a pointer to its embedding
   row on the identity-only path, else the weighted sum computed into
   scratch (k floats).  *b gets the bias. */
FM_INLINE const float *fm_rep(const fm_side *sd, int32_t k, int32_t e,
                                  float *restrict scratch, float *b) {
  if (!sd->rows) {
    *b = sd->bias[e];
    return sd->emb + (int64_t)e * k;
  }
  const mfm_csr *r = sd->rows;
  int64_t q = r->indptr[e], end = r->indptr[e + 1];
  if (q == end) {
    for (int32_t j = 0; j < k; j++) scratch[j] = 0.0f;
    *b = 0.0f;
    return scratch;
  }
  /* The first row initializes the sum: zeroed first (GCC: rep stos),
     the epoch took a fifth longer (docs/fm.md, "Hybrid representations"). */
  const float *row = sd->emb + (int64_t)r->indices[q] * k;
  float w = r->data[q], bb = w * sd->bias[r->indices[q]];
  for (int32_t j = 0; j < k; j++) scratch[j] = w * row[j];
  for (q++; q < end; q++) {
    row = sd->emb + (int64_t)r->indices[q] * k;
    w = r->data[q];
    for (int32_t j = 0; j < k; j++) scratch[j] += w * row[j];
    bb += w * sd->bias[r->indices[q]];
  }
  *b = bb;
  return scratch;
}

/* Applies gradient g (k floats, w.r.t. the representation) and gb (w.r.t.
   the bias) of entity e to its parameter rows. */
FM_INLINE void fm_update(const fm_side *sd, const fm_sched *s, int32_t k,
                             int32_t e, const float *restrict g, float gb,
                             int with_bias) {
  if (!sd->rows) {
    int64_t o = (int64_t)e * k;
    fm_apply_row(s, sd->emb + o, sd->acc + o, sd->acc2 ? sd->acc2 + o : NULL,
                 g, 1.0f, sd->alpha, k);
    if (with_bias)
      fm_apply_one(s, sd->bias + e, sd->acc_b + e,
                   sd->acc2_b ? sd->acc2_b + e : NULL, gb, sd->alpha);
    return;
  }
  const mfm_csr *r = sd->rows;
  for (int64_t q = r->indptr[e]; q < r->indptr[e + 1]; q++) {
    int64_t f = r->indices[q], o = f * k;
    float w = r->data[q];
    fm_apply_row(s, sd->emb + o, sd->acc + o, sd->acc2 ? sd->acc2 + o : NULL,
                 g, w, sd->alpha, k);
    if (with_bias)
      fm_apply_one(s, sd->bias + f, sd->acc_b + f,
                   sd->acc2_b ? sd->acc2_b + f : NULL, w * gb, sd->alpha);
  }
}

/* ---- The fast path: identity-only sides and adagrad ---------------- */

/* A whole pairwise step in one pass over the three rows: user row xu,
   positive row xp, negative row xn (p != n) and their accumulators, with
   d = dL/ds_p.  Each element is read once and written once, the
   gradients never go through scratch (the generic path writes and reads
   3k of them), and `reg` (0 or 1, a constant after inlining) drops the
   L2 terms when both alphas are 0.  The step of fm_pair_step on this
   path (gradients from the old values, then adagrad), except that
   1/sqrt takes one Newton step (fm_rsqrt1, centred): the second cost 10%
   of the BPR epoch, for an error of the step size under 0.09%. */
FM_INLINE void fm_ada_pair(float *restrict xu, float *restrict au,
                           float *restrict xp, float *restrict ap,
                           float *restrict xn, float *restrict an, float d,
                           float lr, float alu, float ali, int reg,
                           int32_t k) {
  for (int32_t j = 0; j < k; j++) {
    float u = xu[j], p = xp[j], n = xn[j];
    float gu = d * (p - n), gp = d * u, gn = -(d * u);
    if (reg) {
      gu += alu * u;
      gp += ali * p;
      gn += ali * n;
    }
    float su = au[j] + gu * gu, sp = ap[j] + gp * gp, sn = an[j] + gn * gn;
    au[j] = su;
    ap[j] = sp;
    an[j] = sn;
    xu[j] = u - lr * gu * fm_rsqrt1(su);
    xp[j] = p - lr * gp * fm_rsqrt1(sp);
    xn[j] = n - lr * gn * fm_rsqrt1(sn);
  }
}

/* The pointwise step (logistic) the same way: d = dL/ds. */
FM_INLINE void fm_ada_point(float *restrict xu, float *restrict au,
                            float *restrict xi, float *restrict ai, float d,
                            float lr, float alu, float ali, int reg,
                            int32_t k) {
  for (int32_t j = 0; j < k; j++) {
    float u = xu[j], i = xi[j];
    float gu = d * i, gi = d * u;
    if (reg) {
      gu += alu * u;
      gi += ali * i;
    }
    float su = au[j] + gu * gu, si = ai[j] + gi * gi;
    au[j] = su;
    ai[j] = si;
    xu[j] = u - lr * gu * fm_rsqrt1(su);
    xi[j] = i - lr * gi * fm_rsqrt1(si);
  }
}

/* Nonzero when a step of m can take the fast path above. */
static inline int fm_fast_path(const mfm_fm *m, const fm_sched *s) {
  return !m->u.rows && !m->i.rows && s->kind == MFM_FM_ADAGRAD;
}

/* The fast pairwise step of (u, p, n) with d = dL/ds_p, biases included
   (the user bias cancels in s_p - s_n). */
FM_INLINE void fm_fast_pair(mfm_fm *m, const fm_sched *s, int32_t u,
                            int32_t p, int32_t n, float d, int32_t k) {
  fm_side *U = &m->u, *I = &m->i;
  int64_t ou = (int64_t)u * k, op = (int64_t)p * k, on = (int64_t)n * k;
  float alu = U->alpha, ali = I->alpha, lr = s->lr * FM_RSQRT1_CENTRE;
  if (alu == 0.0f && ali == 0.0f)
    fm_ada_pair(U->emb + ou, U->acc + ou, I->emb + op, I->acc + op,
                I->emb + on, I->acc + on, d, lr, 0.0f, 0.0f, 0, k);
  else
    fm_ada_pair(U->emb + ou, U->acc + ou, I->emb + op, I->acc + op,
                I->emb + on, I->acc + on, d, lr, alu, ali, 1, k);
  fm_apply_one(s, I->bias + p, I->acc_b + p, NULL, d, ali);
  fm_apply_one(s, I->bias + n, I->acc_b + n, NULL, -d, ali);
}

/* The fast pointwise step of (u, i) with d = dL/ds. */
FM_INLINE void fm_fast_point(mfm_fm *m, const fm_sched *s, int32_t u,
                             int32_t i, float d, int32_t k) {
  fm_side *U = &m->u, *I = &m->i;
  int64_t ou = (int64_t)u * k, oi = (int64_t)i * k;
  float alu = U->alpha, ali = I->alpha, lr = s->lr * FM_RSQRT1_CENTRE;
  if (alu == 0.0f && ali == 0.0f)
    fm_ada_point(U->emb + ou, U->acc + ou, I->emb + oi, I->acc + oi, d, lr,
                 0.0f, 0.0f, 0, k);
  else
    fm_ada_point(U->emb + ou, U->acc + ou, I->emb + oi, I->acc + oi, d, lr,
                 alu, ali, 1, k);
  fm_apply_one(s, I->bias + i, I->acc_b + i, NULL, d, ali);
  fm_apply_one(s, U->bias + u, U->acc_b + u, NULL, d, alu);
}

/* Scratch of one thread: representations and gradients, k floats each. */
typedef struct fm_scratch {
  float *ru, *rp, *rn, *gu, *gp, *gn;
} fm_scratch;

fm_sched fm_sched_of(const mfm_fm_params *p);

/* One pairwise step: user u, positive p, negative n, with d = dL/ds_p
   (and dL/ds_n = -d).  One pointwise step (logistic): d = dL/ds.  The
   representations must be those of u, p (and n) as returned by fm_rep
   into sc->ru/rp/rn or pointing into the model. */
void fm_pair_step(mfm_fm *m, const fm_sched *s, int32_t u, int32_t p,
                  int32_t n, const float *ru, const float *rp,
                  const float *rn, float d, fm_scratch *sc);
void fm_point_step(mfm_fm *m, const fm_sched *s, int32_t u, int32_t i,
                   const float *ru, const float *ri, float d, fm_scratch *sc);

/* Loss derivatives (per unit weight): logistic on score x with label y
   (+1/-1), BPR on x = s_p - s_n.  Each returns dL/dx and the loss. */
float fm_logistic_grad(float x, float y, float *loss);
float fm_bpr_grad(float x, float *loss);

/* Recomputes side representations (hybrid) into sd->rep/rep_b. */
void fm_side_refresh(fm_side *sd, int32_t k);

/* ---- Fitting (fm_fit.c drives, fm_kernel.c runs the cells) ---------- */

/* One training sample: (user, item, weight).  Logistic keeps the label in
   the sign of w; k-OS keeps one sample per (user, item block), i unused. */
typedef struct fm_sample {
  int32_t u, i;
  float w;
} fm_sample;

/* One user's samples in a cell: s[a, a + n) of the cell; the user's
   entries of X in the cell's item block are ix[x + ra, x + rb) of the
   layout's block-sorted indices, where x = indptr[u].  One 32-byte
   record, so planning a visit reads one line per group. */
typedef struct fm_group {
  int64_t a, x;
  int32_t n, u;
  uint32_t ra, rb;
} fm_group;

/* A group's slice in a visit of its cell: samples s[a, a + n) of the
   cell, of user u, whose entries of X in the item block are
   ix[seen_a, seen_b) of the layout, or the bits of the group's seen row
   (NULL: none). */
typedef struct fm_visit {
  int64_t a, seen_a, seen_b;
  const uint64_t *bits;
  int32_t n, u;
} fm_visit;

/* The samples of one (user block, item block) cell, in canonical order
   (grouped by user, then by item), grp its groups; the block's ni items
   are items[0, ni) or, when items is NULL, the ids [ilo, ilo + ni). */
typedef struct fm_cell {
  const fm_sample *s;
  int64_t n;
  const fm_group *grp;
  int64_t ng;
  const int32_t *items;
  int32_t ilo, ni;
  uint32_t id; /* the cell's index, for the deal into rounds */
  /* Group g's seen row is bits + gbits[g] (ni bits, item ilo + j at bit
     j), or none when gbits[g] < 0 or gbits is NULL (fm_layout.c). */
  const int64_t *gbits;
  const uint64_t *bits;
} fm_cell;

/* Item r of the cell's block. */
static inline int32_t fm_cell_item(const fm_cell *c, uint32_t r) {
  return c->items ? c->items[r] : c->ilo + (int32_t)r;
}

/* A fit's samples in T x T cells, R slices per group (fm_layout.c).
   Everything in it is a function of the data, T, R, the loss and the
   model's seed, so a later fit with the same may reuse it; fits only
   read it.
   With T > 1 the items are dealt into blocks at random (seeded by the
   model's seed); on the identity-only item side the samples number the
   items by the deal (rank; the item rows are moved to match by
   fm_layout_permute for the fit), and each row of X's indices is copied
   in block order in that numbering (ix; iw the matching sample weights,
   for k-OS).  With one block ix and iw are X's own arrays. */
typedef struct fm_layout {
  int T, R;
  fm_cell *cells; /* T x T */
  fm_sample *samples;
  fm_group *groups;
  int32_t *bitems;  /* the items, block after block (T > 1) */
  int32_t *rank;    /* item id -> its place in bitems, or NULL */
  /* For fm_layout_permute, per pair of item tables: n_items flags, a
     row. */
  uint8_t *done;
  float *tmp;
  uint8_t *iblk;    /* each item's block (T > 1) */
  const int32_t *ix; /* X's indices, each row in block order */
  const float *iw;   /* the weights of ix's entries */
  int32_t *own_ix;   /* ix and iw when they are copies */
  float *own_iw;
  uint64_t *bits;     /* the groups' seen rows (cells' bits, gbits) */
  int64_t *gbits;
  int64_t negatives;  /* logistic: samples labelled -1 */
  int64_t max_group;  /* samples in the largest group */
  int64_t max_groups; /* groups in the largest cell */
} fm_layout;

/* The slices a group of n samples is dealt into, for R rounds: R, or
   fewer so that a slice holds at least FM_MIN_SLICE samples (a visit has
   a fixed cost: the user's seen items marked, its row fetched).  At 4,
   WARP on 2 threads used 7% less CPU, with the same precision@10 after 3,
   10 and 20 epochs as one sample a slice (means of 3 seeds, docs/fm.md). */
#define FM_MIN_SLICE 4
static inline int64_t fm_slices(int64_t n, int R) {
  int64_t s = (n + FM_MIN_SLICE - 1) / FM_MIN_SLICE;
  return s < R ? (s > 0 ? s : 1) : R;
}

/* MFM_ENOMEM (nothing left allocated) or MFM_OK. */
mfm_status fm_layout_build(const mfm_fm *m, const mfm_csr *X,
                           const mfm_csr *W, int T, int R, fm_layout *L);
void fm_layout_free(fm_layout *L);

/* Frees the model's kept layout, if any. */
void fm_layout_drop(mfm_fm *m);

/* Points the layout's borrowed arrays (T = 1: X's own indices and
   weights) at X and W, data equal to what it was built from. */
void fm_layout_rebind(fm_layout *L, const mfm_csr *X, const mfm_csr *W);

/* A 64-bit hash of the interactions and weights (shape and contents),
   for recognizing the data of the last fit; on T threads, the same value
   for every T. */
uint64_t fm_data_hash(const mfm_csr *X, const mfm_csr *W, int T);

/* The id of item i in the layout's samples. */
static inline int32_t fm_sid(const fm_layout *L, int32_t i) {
  return L->rank ? L->rank[i] : i;
}

/* Moves the item rows of m to the layout's numbering (forward) or back;
   nothing when the layout keeps the ids.  Cannot fail (its buffers come
   with the layout).  The item tables come in FM_TABLE_PAIRS pairs (rows
   and biases: the parameters, adagrad's or adadelta's sums, adadelta's
   steps); a pair moves on a thread of the layout's T. */
#define FM_TABLE_PAIRS 3
void fm_layout_permute(mfm_fm *m, fm_layout *L, int forward);

typedef struct fm_fitenv {
  mfm_fm *m;
  const mfm_csr *x; /* interactions: rows are the seen items */
  const mfm_csr *w; /* sample weights (same pattern) or NULL */
  const int32_t *ix; /* the layout's block-sorted indices and weights */
  const float *iw;
  const float *logw; /* WARP rank weights by draws, max_sampled + 1 */
  fm_sched sched;
} fm_fitenv;

/* One thread's state, padded to whole cache lines so that threads never
   share a line (false sharing made plain Hogwild slower than one
   thread). */
typedef struct fm_tstate {
  _Alignas(64) mfm_rng rng;
  double loss;   /* summed over the samples whose loss was computed */
  int64_t lcount; /* how many those were */
  int64_t done;
  int stopped;
  fm_scratch sc;
  float *kos_score;
  int32_t *kos_item;
  float *kos_w;
  /* The items of the cell's block seen by the visit's user carry the
     current stamp (n_items bytes): the seen check of a drawn negative is
     one L1 load instead of a binary search.  Or, when the group has a
     seen row, bit i - bits_lo of bits. */
  uint8_t *seen;
  uint8_t stamp;
  int64_t seen_n;
  const uint64_t *bits;
  int32_t bits_lo;
  int64_t run_a, run_b; /* its entries in ix of the group being walked */
  fm_visit *plan;       /* the visit's groups (room for the most) */
  int64_t nplan;
  /* This epoch's deal of each group's samples into `rounds` slices (a
     hash of salt, cell and group picks the first), and the slice to run. */
  int round, rounds;
  uint64_t salt;
  int kos_pick;      /* k-OS on T > 1 threads: one block per user */
  uint64_t kos_salt; /* the same on every thread */
  fm_sample *buf; /* the current group, shuffled (largest group size) */
} fm_tstate;

/* Marks the visit's user's items in the cell's block, where the
   negatives come from: a new stamp, and the stamp on each of them.
   Nothing is cleared (the byte table is wiped once in 255 visits); the
   bitset this replaced cost a read-modify-write per item to set and again
   to clear, 10% of WARP's time once each user's samples of a cell came in
   8 slices.  Groups with a seen row of their own skip this. */
FM_INLINE void fm_seen_visit(const int32_t *ix, fm_tstate *ts) {
  if (ts->bits) return;
  if (++ts->stamp == 0) {
    memset(ts->seen, 0, (size_t)ts->seen_n);
    ts->stamp = 1;
  }
  /* Locals: a byte store may alias anything, and GCC reloaded every
     pointer and bound after each one. */
  uint8_t *seen = ts->seen, stamp = ts->stamp;
  for (int64_t q = ts->run_a, b = ts->run_b; q < b; q++) seen[ix[q]] = stamp;
}

FM_INLINE int fm_is_seen(const fm_tstate *ts, int32_t i) {
  if (ts->bits) {
    uint32_t j = (uint32_t)(i - ts->bits_lo);
    return (int)(ts->bits[j >> 6] >> (j & 63)) & 1;
  }
  return ts->seen[i] == ts->stamp;
}

/* Shuffles the cell and runs the loss over it; stops early (ts->stopped)
   when the stop flag is raised. */
void fm_run_cell(const fm_fitenv *e, const fm_cell *c, fm_tstate *ts);

/* Nonzero if the sorted a[0..n) holds x (branch-free lower bound). */
static inline int fm_row_has(const int32_t *a, int64_t n, int32_t x) {
  if (n <= 0) return 0;
  while (n > 1) {
    int64_t half = n >> 1;
    a = a[half] <= x ? a + half : a;
    n -= half;
  }
  return *a == x;
}

#endif
