/* The layout of a fit's samples: users split into T contiguous blocks of
   about equal work, items dealt at random into T blocks of about equal
   work (deal_items), the samples of user block t with item block b in
   cell t * T + b (canonical order: by user, then item), each cell's
   samples grouped by user, and each group dealt into R slices for the
   rounds of fm_fit.c.

   Item blocks are drawn, not cut from the id range: ids often follow
   popularity (a reader numbers items in order of first appearance), and
   contiguous blocks then drew one thread's negatives from the popular
   head only and the other's from the tail (WARP's precision@10 after 10
   epochs on such data: -32% on 2 threads, -49% on 4, -58% on 8), and
   blocks of 16 consecutive ids dealt at random still lost 15% on 4
   threads in c.fm (the 16 most popular items all in one block). */
#include <math.h>
#include <stdatomic.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"
#include "moonfm/rng.h"
#include "moonfm/threads.h"

/* Splits [0, n) into T contiguous ranges of about equal weight; the
   weight of position e is weight[order[e]] (order NULL: the identity). */
static void split(const int64_t *weight, const int32_t *order, int32_t n,
                  int T, int32_t *lo) {
  int64_t total = 0;
  for (int32_t e = 0; e < n; e++) total += weight[e] + 1;
  int64_t acc = 0;
  int t = 1;
  lo[0] = 0;
  for (int32_t e = 0; e < n && t < T; e++) {
    acc += weight[order ? order[e] : e] + 1;
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
                           const mfm_csr *W, const fm_layout *L, int32_t u,
                           int64_t q) {
  fm_sample s = {u, fm_sid(L, X->indices[q]), W ? W->data[q] : X->data[q]};
  if (m->p.loss == MFM_FM_LOGISTIC) {
    float w = W ? fabsf(W->data[q]) : 1.0f;
    s.w = X->data[q] > m->p.logistic_threshold ? w : -w;
  }
  return s;
}

/* Runs body for every sample (user u, entry q of X, its cell) in
   canonical order (each row in block order, so by item within a cell);
   k-OS keeps one per user and item block (its sampler picks the
   positives itself). */
#define FOR_SAMPLES(body)                                                   \
  for (int t = 0; t < T; t++)                                              \
    for (int32_t u = ulo[t]; u < ulo[t + 1] && u < X->n_rows; u++) {       \
      int last = -1;                                                       \
      int64_t x = X->indptr[u];                                            \
      for (int64_t r = x; r < X->indptr[u + 1]; r++) {                     \
        int64_t q = pos ? x + pos[r] : r;                                  \
        if (!wanted(m, X, W, q)) continue;                                 \
        int b = pos ? L->iblk[fm_sid(L, X->indices[q])] : 0;               \
        if (kos && b == last) continue;                                    \
        last = b;                                                          \
        int cell = t * T + b;                                              \
        body;                                                              \
      }                                                                    \
    }

/* Deals the items into T blocks of about equal work (wi) at random,
   seeded by the model's seed so that every fit of a model deals alike (a
   fit resumed epoch by epoch replays an uninterrupted one): the items in
   a random order, cut into T runs of about equal work.  L->bitems lists
   them in that order, block b being bitems[ilo[b], ilo[b + 1]).

   On the identity-only item side the fit numbers the items by that
   order (L->rank, the inverse of bitems; fm_layout_permute moves the
   item rows to match), so a block is a contiguous run of rows: no line of
   a table is written by two threads, and a draw is an offset.  With item
   features, where threads share feature rows anyway, items keep their
   ids and a draw goes through bitems.  L->iblk is the block of each item
   in the numbering the samples use. */
static mfm_status deal_items(const mfm_fm *m, const int64_t *wi, int T,
                             int32_t *ilo, fm_layout *L) {
  int32_t ni = m->i.n;
  L->bitems = mfm_malloc_array((size_t)ni + 1, sizeof *L->bitems);
  L->iblk = mfm_malloc((size_t)ni + 1);
  if (!m->i.rows) {
    /* And, allocated now, what moving the rows back will need. */
    L->rank = mfm_malloc_array((size_t)ni + 1, sizeof *L->rank);
    L->done = mfm_malloc_array(FM_TABLE_PAIRS, (size_t)ni + 1);
    L->tmp = mfm_malloc_array(FM_TABLE_PAIRS * ((size_t)m->k + 1),
                              sizeof *L->tmp);
    if (!L->rank || !L->done || !L->tmp) return MFM_ENOMEM;
  }
  if (!L->bitems || !L->iblk) return MFM_ENOMEM;

  mfm_rng r;
  mfm_rng_seed(&r, m->p.seed ^ 0x6c61796f7574ull);
  for (int32_t i = 0; i < ni; i++) L->bitems[i] = i;
  for (int32_t i = ni - 1; i > 0; i--) {
    int32_t j = (int32_t)mfm_rng_below(&r, (uint32_t)i + 1), v = L->bitems[i];
    L->bitems[i] = L->bitems[j];
    L->bitems[j] = v;
  }
  split(wi, L->bitems, ni, T, ilo);
  for (int b = 0; b < T; b++)
    for (int32_t e = ilo[b]; e < ilo[b + 1]; e++) {
      if (L->rank) L->rank[L->bitems[e]] = e;
      L->iblk[L->rank ? e : L->bitems[e]] = (uint8_t)b;
    }
  return MFM_OK;
}

/* Puts each row of X in block order (stable: by id within a block):
   entry r of the order is entry x + pos[r] of X (x the row's start), and
   L->ix, L->iw get its item (as the samples number it) and (k-OS only)
   weight. */
static mfm_status order_rows(const mfm_fm *m, const mfm_csr *X,
                             const mfm_csr *W, int T, fm_layout *L,
                             uint32_t **posp) {
  int64_t nnz = X->nnz;
  int kos = m->p.loss == MFM_FM_WARP_KOS; /* the only reader of iw */
  L->own_ix = mfm_malloc_array((size_t)nnz + 1, sizeof *L->own_ix);
  if (kos) L->own_iw = mfm_malloc_array((size_t)nnz + 1, sizeof *L->own_iw);
  uint32_t *pos = *posp = mfm_malloc_array((size_t)nnz + 1, sizeof *pos);
  if (!L->own_ix || (kos && !L->own_iw) || !pos) return MFM_ENOMEM;

  const float *wd = W ? W->data : X->data;
  for (int32_t u = 0; u < X->n_rows; u++) {
    int64_t x = X->indptr[u], n = X->indptr[u + 1] - x;
    int64_t end[MFM_FM_MAX_THREADS + 1] = {0};
    for (int64_t q = 0; q < n; q++)
      end[L->iblk[fm_sid(L, X->indices[x + q])] + 1]++;
    for (int b = 0; b < T; b++) end[b + 1] += end[b];
    for (int64_t q = 0; q < n; q++)
      pos[x + end[L->iblk[fm_sid(L, X->indices[x + q])]]++] = (uint32_t)q;
    for (int64_t e = x; e < x + n; e++) {
      L->own_ix[e] = fm_sid(L, X->indices[x + pos[e]]);
      if (kos) L->own_iw[e] = wd[x + pos[e]];
    }
  }
  L->ix = L->own_ix;
  L->iw = L->own_iw;
  return MFM_OK;
}

static mfm_status cells_of(const mfm_fm *m, const mfm_csr *X,
                           const mfm_csr *W, fm_layout *L) {
  int T = L->T, kos = m->p.loss == MFM_FM_WARP_KOS;
  int32_t nu = m->u.n, ni = m->i.n;
  int32_t ulo[MFM_FM_MAX_THREADS + 1], ilo[MFM_FM_MAX_THREADS + 1];
  int64_t *wu = mfm_calloc((size_t)nu + 1, sizeof(int64_t));
  int64_t *wi = mfm_calloc((size_t)ni + 1, sizeof(int64_t));
  int64_t *cnt = mfm_calloc((size_t)T * T + 1, sizeof(int64_t));
  uint32_t *pos = NULL;
  mfm_status st = MFM_ENOMEM;
  if (!wu || !wi || !cnt) goto out;

  /* Work per user and per item, then the blocks. */
  for (int32_t u = 0; u < X->n_rows; u++)
    for (int64_t q = X->indptr[u]; q < X->indptr[u + 1]; q++)
      if (wanted(m, X, W, q)) {
        wu[u]++;
        wi[X->indices[q]]++;
      }
  split(wu, NULL, nu, T, ulo);
  if (T > 1) {
    if (deal_items(m, wi, T, ilo, L) != MFM_OK ||
        order_rows(m, X, W, T, L, &pos) != MFM_OK)
      goto out;
  } else {
    ilo[0] = 0;
    ilo[1] = ni;
    L->ix = X->indices;
    L->iw = W ? W->data : X->data;
  }

  /* A counting sort into the cells. */
  FOR_SAMPLES(cnt[cell + 1]++);
  for (int c = 0; c < T * T; c++) cnt[c + 1] += cnt[c];
  L->samples = mfm_malloc_array((size_t)cnt[T * T] + 1, sizeof *L->samples);
  if (!L->samples) goto out;
  FOR_SAMPLES(L->samples[cnt[cell]++] = sample_of(m, X, W, L, u, q));
  if (m->p.loss == MFM_FM_LOGISTIC)
    for (int64_t q = 0; q < cnt[T * T]; q++)
      L->negatives += L->samples[q].w < 0;
  for (int c = T * T; c > 0; c--) cnt[c] = cnt[c - 1];
  cnt[0] = 0;
  for (int c = 0; c < T * T; c++) {
    fm_cell *cl = &L->cells[c];
    cl->s = L->samples + cnt[c];
    cl->n = cnt[c + 1] - cnt[c];
    cl->items = T > 1 && !L->rank ? L->bitems + ilo[c % T] : NULL;
    cl->ilo = cl->items ? 0 : ilo[c % T];
    cl->ni = ilo[c % T + 1] - ilo[c % T];
    cl->id = (uint32_t)c;
  }
  st = MFM_OK;
out:
  mfm_free(wu);
  mfm_free(wi);
  mfm_free(cnt);
  mfm_free(pos);
  return st;
}

/* The first r in [0, n) whose entry x + r of ix (a row in block order)
   is in block b or later. */
static uint32_t block_start(const fm_layout *L, int64_t x, int64_t n, int b) {
  int64_t a = 0;
  while (a < n) {
    int64_t mid = a + (n - a) / 2;
    if (L->iblk[L->ix[x + mid]] < b) a = mid + 1;
    else n = mid;
  }
  return (uint32_t)a;
}

/* The user groups of each cell and, per group, the user's entries of X
   in the cell's item block (the items its negatives must avoid). */
static mfm_status groups_of(const mfm_csr *X, fm_layout *L) {
  int C = L->T * L->T;
  int64_t total = 0;
  for (int c = 0; c < C; c++)
    for (int64_t q = 0; q < L->cells[c].n; q++)
      total += q == 0 || L->cells[c].s[q].u != L->cells[c].s[q - 1].u;
  L->groups = mfm_malloc_array((size_t)total + 1, sizeof *L->groups);
  if (!L->groups) return MFM_ENOMEM;
  int64_t off = 0;
  L->max_group = L->max_groups = 1;
  for (int c = 0; c < C; c++) {
    fm_cell *cl = &L->cells[c];
    fm_group *g = L->groups + off;
    int64_t ng = 0;
    int b = c % L->T;
    for (int64_t q = 0; q < cl->n; q++) {
      if (q > 0 && cl->s[q].u == cl->s[q - 1].u) {
        g[ng - 1].n++;
        continue;
      }
      int32_t u = cl->s[q].u;
      int64_t x = X->indptr[u], n = X->indptr[u + 1] - x;
      uint32_t ra = 0, rb = (uint32_t)n;
      if (L->T > 1) {
        ra = block_start(L, x, n, b);
        rb = block_start(L, x, n, b + 1);
      }
      g[ng++] = (fm_group){q, x, 1, u, ra, rb};
    }
    for (int64_t q = 0; q < ng; q++)
      if (g[q].n > L->max_group) L->max_group = g[q].n;
    if (ng > L->max_groups) L->max_groups = ng;
    cl->grp = g;
    cl->ng = ng;
    off += ng;
  }
  return MFM_OK;
}

/* With rounds, a group is visited up to R times a cell and epoch, and
   marking its user's items in the thread's seen table at every visit was
   half of what WARP's rounds cost (S marks a sample).  So a group gets a
   seen row of its own, one bit per item of the block, when that row is no
   larger than its entries of ix (block items <= 32 x its entries): at
   most 4 bytes an entry more (samples and ix take 16), and the groups of
   the heavy users, which hold most samples, check a bit instead.  Only
   where block b is the ids [ilo, ilo + ni): on one thread (one block of
   every id), or on the identity-only item side (the ids in deal order). */
static mfm_status seen_rows(fm_layout *L) {
  if (L->R == 1 || (L->T > 1 && !L->rank)) return MFM_OK;
  int C = L->T * L->T;
  int64_t ngroups = 0, words = 0;
  for (int c = 0; c < C; c++) ngroups += L->cells[c].ng;
  L->gbits = mfm_malloc_array((size_t)ngroups + 1, sizeof *L->gbits);
  if (!L->gbits) return MFM_ENOMEM;
  int64_t o = 0;
  for (int c = 0; c < C; c++) {
    fm_cell *cl = &L->cells[c];
    int64_t w = (cl->ni + 63) / 64, *gb = L->gbits + o;
    for (int64_t q = 0; q < cl->ng; q++) {
      const fm_group *g = &cl->grp[q];
      gb[q] = 2 * w <= (int64_t)(g->rb - g->ra) ? words : -1;
      words += gb[q] >= 0 ? w : 0;
    }
    cl->gbits = gb;
    o += cl->ng;
  }
  L->bits = mfm_calloc((size_t)words + 1, sizeof *L->bits);
  if (!L->bits) return MFM_ENOMEM;
  for (int c = 0; c < C; c++) {
    fm_cell *cl = &L->cells[c];
    cl->bits = L->bits;
    for (int64_t q = 0; q < cl->ng; q++) {
      const fm_group *g = &cl->grp[q];
      if (cl->gbits[q] < 0) continue;
      uint64_t *row = L->bits + cl->gbits[q];
      for (int64_t e = g->x + g->ra; e < g->x + g->rb; e++) {
        uint32_t j = (uint32_t)(L->ix[e] - cl->ilo);
        row[j >> 6] |= 1ull << (j & 63);
      }
    }
  }
  return MFM_OK;
}

/* Deals each group into S = fm_slices(n, R) slices, every S-th sample of
   the canonical order, laid out slice after slice, so a round reads its
   slice in one piece. */
static mfm_status deal(fm_layout *L) {
  if (L->R == 1) return MFM_OK;
  fm_sample *tmp = mfm_malloc_array((size_t)L->max_group, sizeof *tmp);
  if (!tmp) return MFM_ENOMEM;
  for (int c = 0; c < L->T * L->T; c++) {
    fm_cell *cl = &L->cells[c];
    for (int64_t q = 0; q < cl->ng; q++) {
      fm_sample *s = (fm_sample *)cl->s + cl->grp[q].a;
      int64_t n = cl->grp[q].n, o = 0, S = fm_slices(n, L->R);
      for (int64_t j = 0; j < S; j++)
        for (int64_t e = j; e < n; e += S) tmp[o++] = s[e];
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
  if (st == MFM_OK) st = seen_rows(L);
  if (st != MFM_OK) fm_layout_free(L);
  return st;
}

/* Row j of a becomes row from[j] of the old a (rows of w floats), in
   place: each cycle of the permutation is followed once (done marks the
   rows already placed; tmp holds one row). */
static void permute_rows(float *a, int64_t w, int32_t n, const int32_t *from,
                         uint8_t *done, float *tmp) {
  if (!a) return;
  memset(done, 0, (size_t)n);
  for (int32_t j = 0; j < n; j++) {
    if (done[j]) continue;
    memcpy(tmp, a + j * w, (size_t)w * sizeof *a);
    int32_t cur = j;
    while (from[cur] != j) {
      memcpy(a + cur * w, a + (int64_t)from[cur] * w, (size_t)w * sizeof *a);
      done[cur] = 1;
      cur = from[cur];
    }
    memcpy(a + cur * w, tmp, (size_t)w * sizeof *a);
    done[cur] = 1;
  }
}

typedef struct permute_job {
  mfm_fm *m;
  fm_layout *L;
  const int32_t *from;
  int T;
} permute_job;

/* Pair q of the item tables (a table of rows and its column of biases:
   parameters, then the schedule's sums) on thread q mod T, with buffers
   of its own. */
static void permute_member(void *p, int t) {
  permute_job *j = p;
  fm_side *s = &j->m->i;
  float *wide[FM_TABLE_PAIRS] = {s->emb, s->acc, s->acc2};
  float *one[FM_TABLE_PAIRS] = {s->bias, s->acc_b, s->acc2_b};
  for (int q = t; q < FM_TABLE_PAIRS; q += j->T) {
    uint8_t *done = j->L->done + (size_t)q * ((size_t)s->n + 1);
    float *tmp = j->L->tmp + (size_t)q * ((size_t)j->m->k + 1);
    permute_rows(wide[q], j->m->k, s->n, j->from, done, tmp);
    permute_rows(one[q], 1, s->n, j->from, done, tmp);
  }
}

/* On the fit's threads, a pair of tables each: one after the other they
   took 170 us of a 2.3 ms k-OS fit call on 2 threads at ML-1M size. */
void fm_layout_permute(mfm_fm *m, fm_layout *L, int forward) {
  if (!L->rank) return;
  permute_job j = {m, L, forward ? L->bitems : L->rank,
                   L->T < FM_TABLE_PAIRS ? L->T : FM_TABLE_PAIRS};
  if (mfm_parallel(j.T, permute_member, &j) != MFM_OK) /* none ran */
    for (int t = 0; t < j.T; t++) permute_member(&j, t);
}

/* Four multiply-xor lanes over 8-byte words (a single chain waits on the
   multiply's latency), the tail a byte at a time. */
static void hash_bytes(uint64_t h[4], const void *p, size_t n) {
  const unsigned char *b = p;
  size_t q = 0;
  for (; q + 32 <= n; q += 32)
    for (int l = 0; l < 4; l++) {
      uint64_t w;
      memcpy(&w, b + q + 8 * l, 8);
      h[l] = (h[l] ^ w) * 0x100000001b3ull + (uint64_t)l;
    }
  for (; q < n; q++) h[0] = (h[0] ^ b[q]) * 0x100000001b3ull;
}

/* The data is hashed in chunks of 1 MB, each apart, and the chunks'
   hashes are folded in order: the same value on any number of threads,
   and on T threads about T times as fast (every fit call hashes its
   data: on one thread 0.5 ms at ML-1M size, about a tenth of a k-OS
   epoch there, and 5 ms at 10M). */
#define HASH_CHUNK ((size_t)1 << 20)

typedef struct hash_span {
  const void *p;
  size_t n;
} hash_span;

typedef struct hash_job {
  hash_span *chunk; /* the chunks, in order */
  uint64_t *out;
  size_t n;
  int T;
  atomic_size_t next; /* the first chunk no thread has taken */
} hash_job;

static uint64_t chunk_hash(hash_span c) {
  uint64_t h[4] = {0xcbf29ce484222325ull, 1, 2, 3};
  hash_bytes(h, c.p, c.n);
  return fm_mix64(h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7) ^ c.n);
}

/* Chunks are taken in turn as threads get free: the arrays' last chunks
   are short, and dealt in a fixed order they left one thread 4 of the 6.6
   MB at ML-1M size. */
static void hash_member(void *p, int t) {
  hash_job *j = p;
  (void)t;
  for (size_t q; (q = atomic_fetch_add(&j->next, 1)) < j->n;)
    j->out[q] = chunk_hash(j->chunk[q]);
}

uint64_t fm_data_hash(const mfm_csr *X, const mfm_csr *W, int T) {
  hash_span arr[8];
  int64_t shape[2][3];
  int na = 0;
  const mfm_csr *m[2] = {X, W};
  for (int e = 0; e < 2; e++) {
    if (!m[e]) continue;
    shape[e][0] = m[e]->n_rows;
    shape[e][1] = m[e]->n_cols;
    shape[e][2] = m[e]->nnz;
    arr[na++] = (hash_span){shape[e], sizeof shape[e]};
    arr[na++] = (hash_span){m[e]->indptr,
                            ((size_t)m[e]->n_rows + 1) * sizeof(int64_t)};
    arr[na++] =
        (hash_span){m[e]->indices, (size_t)m[e]->nnz * sizeof(int32_t)};
    arr[na++] = (hash_span){m[e]->data, (size_t)m[e]->nnz * sizeof(float)};
  }
  size_t n = 0;
  for (int a = 0; a < na; a++) n += (arr[a].n + HASH_CHUNK - 1) / HASH_CHUNK;
  hash_span *chunk =
      T > 1 && n > 1 ? mfm_malloc_array(n, sizeof *chunk) : NULL;
  uint64_t *out = chunk ? mfm_malloc_array(n, sizeof *out) : NULL;
  size_t q = 0;
  for (int a = 0; a < na && out; a++)
    for (size_t o = 0; o < arr[a].n; o += HASH_CHUNK) {
      size_t len = arr[a].n - o < HASH_CHUNK ? arr[a].n - o : HASH_CHUNK;
      chunk[q++] = (hash_span){(const char *)arr[a].p + o, len};
    }
  hash_job job = {chunk, out, n, T < (int)n ? T : (int)n, 0};
  if (out && mfm_parallel(job.T, hash_member, &job) != MFM_OK) {
    mfm_free(out); /* no memory for the threads: none ran */
    out = NULL;
  }
  /* The fold; without threads (or memory for them) the same, a chunk at
     a time. */
  uint64_t h = 0x6d6f6f6e666dull;
  q = 0;
  for (int a = 0; a < na; a++)
    for (size_t o = 0; o < arr[a].n; o += HASH_CHUNK, q++) {
      size_t len = arr[a].n - o < HASH_CHUNK ? arr[a].n - o : HASH_CHUNK;
      uint64_t c = out ? out[q]
                       : chunk_hash((hash_span){(const char *)arr[a].p + o,
                                                len});
      h = fm_mix64(h ^ c) + q;
    }
  mfm_free(chunk);
  mfm_free(out);
  return h;
}

void fm_layout_rebind(fm_layout *L, const mfm_csr *X, const mfm_csr *W) {
  if (!L->own_ix) L->ix = X->indices;
  if (!L->own_iw && !L->own_ix) L->iw = W ? W->data : X->data;
}

void fm_layout_drop(mfm_fm *m) {
  if (!m->layout) return;
  fm_layout_free(m->layout);
  mfm_free(m->layout);
  m->layout = NULL;
}

void fm_layout_free(fm_layout *L) {
  mfm_free(L->cells);
  mfm_free(L->samples);
  mfm_free(L->groups);
  mfm_free(L->bitems);
  mfm_free(L->rank);
  mfm_free(L->done);
  mfm_free(L->tmp);
  mfm_free(L->iblk);
  mfm_free(L->own_ix);
  mfm_free(L->own_iw);
  mfm_free(L->bits);
  mfm_free(L->gbits);
  memset(L, 0, sizeof *L);
}
