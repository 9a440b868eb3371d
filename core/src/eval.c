/* Evaluation: ranking metrics for every test user in one pass of the block
   engine (topk.c).  Per user row, after the sgemm:
   - excluded items get -inf and mark bit 1; test items get mark 2;
   - AUC and MRR come from one pass that gives each item the number of test
     items scoring above it (ties half), exactly (eval_rank.c: compares
     with the sorted test scores, or a table indexed by a monotone grid).
     The test items themselves are at -inf during the pass (their pairs
     are known);
   - the top kmax come from mfm_heap_best (topk.c);
   - per block sums, reduced in block order, so results do not depend on
     the number of threads.
   The rank pass (eval_rank.c) also adds the item bias to the row (the
   engine is run without it) and, on AVX2, takes the top-k group maxima. */
#include "moonfm/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moonfm/alloc.h"
#include "eval_rank.h"
#include "topk.h"

static const char *const metric_names[] = {
  NULL, "precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc",
  "coverage"
};

const char *mfm_metric_name(mfm_metric m) {
  if (m < MFM_METRIC_PRECISION || m > MFM_METRIC_COVERAGE) return NULL;
  return metric_names[m];
}

mfm_metric mfm_metric_parse(const char *name) {
  for (int m = MFM_METRIC_PRECISION; m <= MFM_METRIC_COVERAGE; m++)
    if (name && strcmp(name, metric_names[m]) == 0) return (mfm_metric)m;
  return (mfm_metric)0;
}

int mfm_metric_uses_k(mfm_metric m) {
  return m != MFM_METRIC_MRR && m != MFM_METRIC_AUC;
}

mfm_eval_params mfm_eval_params_default(void) {
  mfm_eval_params p;
  memset(&p, 0, sizeof p);
  p.item_bias = 1;
  return p;
}

const char *mfm_eval_params_check(const mfm_eval_params *p) {
  if (!p) return "eval: params are NULL";
  if (p->n_columns < 1 || p->n_columns > MFM_EVAL_MAX_COLUMNS)
    return "eval: n_columns must be in [1, 64]";
  for (int c = 0; c < p->n_columns; c++) {
    if (!mfm_metric_name(p->metric[c])) return "eval: unknown metric";
    if (mfm_metric_uses_k(p->metric[c]) && p->k[c] < 1)
      return "eval: k must be >= 1 for a top-k metric";
  }
  if (p->block < 0) return "eval: block must be >= 0";
  return NULL;
}

/* ---- per-thread state ------------------------------------------------- */

typedef struct tstate {
  uint8_t *mark;   /* n_items */
  float *q;        /* test scores, max_m, sorted */
  float *qraw;     /* the same in test-row order, max_m */
  int32_t *qidx;   /* their items, max_m */
  int32_t *table;  /* grid, gmax + 2 */
  int32_t *cells;  /* MFM_RANK_CELL_CHUNK */
  float *hs;       /* heap */
  int32_t *hi;
  int32_t *minrank; /* coverage: best rank of each item, n_items */
  double *dcg, *ap; /* prefix sums, kmax + 1 */
  int32_t *hits;
} tstate;

typedef struct ectx {
  const mfm_factors *f;
  const mfm_csr *test, *exclude;
  const mfm_eval_params *p;
  int need_rank; /* AUC or MRR */
  int need_mrr;
  int need_cov;
  int32_t kmax, kheap, gmax;
  int avx2; /* mfm_kernels_avx2(), once per run */
  const float *ib; /* item bias to add to each row, or NULL */
  const double *idcg; /* idcg[n] = sum_{r=1..n} 1/log2(r+1), n <= kmax */
  tstate *ts;
  double *sums; /* nblocks x ncol */
  int64_t *cnts;
  double *per_user;
} ectx;

/* The item bias, for rows that do not take it in the rank pass; the
   excluded items go back to exactly -inf. */
static void add_bias(float *row, const float *ib, int32_t n,
                     const mfm_csr *x, int64_t xa, int64_t xz) {
  for (int32_t j = 0; j < n; j++) row[j] += ib[j];
  for (int64_t t = xa; t < xz; t++)
    if (x->indices[t] < n) row[x->indices[t]] = -INFINITY;
}

static mfm_status eval_row(void *arg, int tid, int32_t blk, int32_t pos,
                           int32_t u, float *row) {
  ectx *c = arg;
  const mfm_factors *f = c->f;
  const mfm_eval_params *p = c->p;
  const mfm_csr *x = c->exclude, *te = c->test;
  tstate *ts = &c->ts[tid];
  uint8_t *mark = ts->mark;
  int32_t ni = f->n_items, ncol = p->n_columns;
  int64_t xa = 0, xz = 0, n_excl = 0;
  if (x && u < x->n_rows) {
    xa = x->indptr[u];
    xz = x->indptr[u + 1];
    for (int64_t t = xa; t < xz; t++) {
      int32_t j = x->indices[t];
      if (j < ni) {
        mark[j] = 1;
        row[j] = -INFINITY;
        n_excl++;
      }
    }
  }
  /* The row is the bare dot product: the item bias (ib) is added by the
     rank pass, or by add_bias when there is none. */
  const float *ib = c->ib;
  float gm[32];
  int have_gm = 0;
  /* The test items, with the best one (lowest index among equal). */
  int32_t m = 0, best_j = -1;
  float best = 0;
  for (int64_t t = te->indptr[u]; t < te->indptr[u + 1]; t++) {
    int32_t j = te->indices[t];
    if (j >= ni || (mark[j] & 1)) continue;
    mark[j] = 2;
    float s = ib ? row[j] + ib[j] : row[j];
    ts->q[m++] = s;
    if (best_j < 0 || s > best) {
      best = s;
      best_j = j;
    }
  }

  double auc = NAN, mrr = NAN;
  if (c->need_rank && m > 0) {
    /* The test items leave the pass too (-inf, like the excluded ones,
       restored after): they would always land in a cell holding their own
       score and need the exact compare, the slow path of the pass. */
    memcpy(ts->qraw, ts->q, (size_t)m * sizeof *ts->q);
    mfm_rank_sort(ts->q, m, c->avx2);
    const float *q = ts->q;
    if (ib && !(isfinite(q[0]) && isfinite(q[m - 1]))) {
      add_bias(row, ib, ni, x, xa, xz);
      ib = NULL;
    }
    int32_t nt = 0;
    for (int64_t t = te->indptr[u]; t < te->indptr[u + 1]; t++) {
      int32_t j = te->indices[t];
      if (j < ni && mark[j] == 2) {
        ts->qidx[nt++] = j;
        row[j] = -INFINITY;
      }
    }
    mfm_rank_sums rs;
    have_gm = mfm_rank_pass(row, ib, ni, q, m, ts->table, c->gmax, ts->cells,
                            c->avx2, c->need_mrr, gm, &rs);
    ib = NULL;
    for (int32_t t = 0; t < nt; t++) row[ts->qidx[t]] = ts->qraw[t];
    /* The test items were -inf in the group maxima; max(s, g) as there. */
    if (have_gm)
      for (int32_t t = 0; t < nt; t++) {
        int32_t j = ts->qidx[t];
        if (j < (ni & ~31) && ts->qraw[t] > gm[j & 31])
          gm[j & 31] = ts->qraw[t];
      }
    /* Remove the pairs counted against the excluded and test items (all
       at -inf in the pass): what is left is over the negatives only. */
    int64_t acc = rs.acc - (n_excl + nt) * mfm_rank_f2(q, m, -INFINITY);
    int64_t n_neg = (int64_t)ni - n_excl - m;
    if (n_neg > 0) auc = (double)acc / (2.0 * (double)m * (double)n_neg);
    /* Rank of the best test item: items strictly above, then items tied
       with it at a lower index (ties go to the lower index); rs.eq counts
       the other items equal to the best score. */
    int64_t above = rs.above, before = 0;
    if (rs.eq > 0) {
      for (int32_t j = 0; j < best_j; j++)
        before += row[j] == best && mark[j] == 0;
    }
    mrr = 1.0 / (double)(1 + above + before);
  }

  if (ib) add_bias(row, ib, ni, x, xa, xz);

  mfm_heap h;
  h.n = 0;
  if (m > 0 && c->kheap > 0) {
    mfm_heap_init(&h, ts->hs, ts->hi, c->kheap);
    mfm_heap_best(&h, row, ni, mark, have_gm ? gm : NULL);
    int32_t nh = 0;
    double dcg = 0, ap = 0;
    ts->hits[0] = 0;
    ts->dcg[0] = 0;
    ts->ap[0] = 0;
    for (int32_t r = 1; r <= h.n; r++) {
      if (mark[h.index[r - 1]] == 2) {
        nh++;
        dcg += 1.0 / log2((double)r + 1.0);
        ap += (double)nh / (double)r;
      }
      ts->hits[r] = nh;
      ts->dcg[r] = dcg;
      ts->ap[r] = ap;
    }
    if (c->need_cov)
      for (int32_t r = 0; r < h.n; r++)
        if (ts->minrank[h.index[r]] > r + 1) ts->minrank[h.index[r]] = r + 1;
  }

  if (m > 0) {
    double *sums = c->sums + (size_t)blk * ncol;
    int64_t *cnts = c->cnts + (size_t)blk * ncol;
    double *pu = c->per_user ? c->per_user + (size_t)u * ncol : NULL;
    for (int col = 0; col < ncol; col++) {
      int32_t k = p->k[col];
      int32_t kk = k < h.n ? k : h.n;
      int32_t km = k < m ? k : m;
      double v = NAN;
      switch (p->metric[col]) {
      case MFM_METRIC_PRECISION: v = (double)ts->hits[kk] / k; break;
      case MFM_METRIC_RECALL: v = (double)ts->hits[kk] / m; break;
      case MFM_METRIC_HIT_RATE: v = ts->hits[kk] > 0; break;
      case MFM_METRIC_NDCG: v = ts->dcg[kk] / c->idcg[km]; break;
      case MFM_METRIC_MAP: v = ts->ap[kk] / km; break;
      case MFM_METRIC_MRR: v = mrr; break;
      case MFM_METRIC_AUC: v = auc; break;
      case MFM_METRIC_COVERAGE: break;
      }
      if (!isnan(v)) {
        sums[col] += v;
        cnts[col]++;
      }
      if (pu) pu[col] = v;
    }
  }

  /* The marks go: by whole vectors when the row has one mark in 32 items
     or more (ML-1M: 150 marks in 3,706 items), else one by one. */
  int64_t ta = te->indptr[u], tz = te->indptr[u + 1];
  if ((int64_t)ni <= 32 * (xz - xa + tz - ta)) {
    memset(mark, 0, (size_t)ni);
  } else {
    const int32_t *xi = x ? x->indices : NULL, *ti = te->indices;
    for (int64_t t = xa; t < xz; t++)
      if (xi[t] < ni) mark[xi[t]] = 0;
    for (int64_t t = ta; t < tz; t++)
      if (ti[t] < ni) mark[ti[t]] = 0;
  }
  return MFM_OK;
}

static void free_ts(tstate *ts, int nt) {
  if (!ts) return;
  for (int t = 0; t < nt; t++) {
    mfm_free(ts[t].mark);
    mfm_free(ts[t].q);
    mfm_free(ts[t].qraw);
    mfm_free(ts[t].qidx);
    mfm_free(ts[t].table);
    mfm_free(ts[t].cells);
    mfm_free(ts[t].hs);
    mfm_free(ts[t].hi);
    mfm_free(ts[t].minrank);
    mfm_free(ts[t].dcg);
    mfm_free(ts[t].ap);
    mfm_free(ts[t].hits);
  }
  mfm_free(ts);
}

mfm_status mfm_eval_run(const mfm_factors *f, const mfm_csr *test,
                        const mfm_csr *exclude, const mfm_eval_params *p,
                        mfm_eval_result *out, double *per_user,
                        mfm_err *err) {
  mfm_status st = mfm_factors_check(f, err);
  if (st != MFM_OK) return st;
  const char *why = mfm_eval_params_check(p);
  if (why) return mfm_err_set(err, MFM_EINVAL, "%s", why);
  if (!test || !out)
    return mfm_err_set(err, MFM_EINVAL, "eval: test and out are required");
  if (p->include_seen) exclude = NULL;

  mfm_eval_result r;
  memset(&r, 0, sizeof r);
  int ncol = p->n_columns;
  int32_t n_known = test->n_rows < f->n_users ? test->n_rows : f->n_users;
  if (per_user)
    for (size_t i = 0; i < (size_t)n_known * ncol; i++) per_user[i] = NAN;

  ectx c;
  memset(&c, 0, sizeof c);
  c.f = f;
  c.test = test;
  c.exclude = exclude;
  c.p = p;
  c.per_user = per_user;
  c.avx2 = mfm_kernels_avx2();
  for (int col = 0; col < ncol; col++) {
    mfm_metric mt = p->metric[col];
    if (mt == MFM_METRIC_AUC || mt == MFM_METRIC_MRR) c.need_rank = 1;
    if (mt == MFM_METRIC_MRR) c.need_mrr = 1;
    if (mt == MFM_METRIC_COVERAGE) c.need_cov = 1;
    if (mfm_metric_uses_k(mt) && p->k[col] > c.kmax) c.kmax = p->k[col];
  }
  c.kheap = c.kmax < f->n_items ? c.kmax : f->n_items;

  /* Which users are evaluated, and what is counted instead. */
  int32_t *users = NULL, n_users = 0, max_m = 1;
  double *idcg = NULL;
  int32_t *xm = NULL; /* xm[j] = u + 1: item j excluded for user u */
  tstate *ts = NULL;
  int nt = 0;
  users = mfm_malloc_array(n_known > 0 ? (size_t)n_known : 1, sizeof *users);
  idcg = mfm_malloc_array((size_t)c.kmax + 1, sizeof *idcg);
  xm = mfm_calloc(f->n_items > 0 ? (size_t)f->n_items : 1, sizeof *xm);
  if (!users || !idcg || !xm) {
    st = MFM_ENOMEM;
    goto done;
  }
  idcg[0] = 1; /* never read with a positive numerator */
  for (int32_t n = 1; n <= c.kmax; n++)
    idcg[n] = (n > 1 ? idcg[n - 1] : 0) + 1.0 / log2((double)n + 1.0);
  c.idcg = idcg;
  for (int32_t u = 0; u < test->n_rows; u++) {
    int64_t a = test->indptr[u], z = test->indptr[u + 1];
    if (u >= f->n_users) {
      if (z > a) {
        r.n_unknown_users++;
        r.n_unknown_user_items += z - a;
      }
      continue;
    }
    /* The exclusion row stamped in xm (u + 1: no clearing), then the test
       row looked up: no branch on the data (a merge of the two rows
       mispredicted about one branch an entry). */
    int32_t m = 0, ni = f->n_items;
    if (exclude && u < exclude->n_rows && z > a) {
      const int32_t *xi = exclude->indices;
      for (int64_t t = exclude->indptr[u]; t < exclude->indptr[u + 1]; t++)
        if (xi[t] < ni) xm[xi[t]] = u + 1;
    }
    for (int64_t t = a; t < z; t++) {
      int32_t j = test->indices[t];
      if (j >= ni) {
        r.n_unknown_items++;
      } else {
        int e = xm[j] == u + 1;
        r.n_test_excluded += e;
        m += !e;
      }
    }
    if (m == 0) {
      r.n_skipped++;
      continue;
    }
    if (m > max_m) max_m = m;
    r.n_positives += m;
    users[n_users++] = u;
  }
  r.n_users = n_users;

  /* eval_row adds the item bias itself (in the rank pass). */
  c.ib = p->item_bias ? f->item_bias : NULL;
  mfm_engine e = {f, users, n_users, 0, 0, 0, eval_row, &c};
  int32_t nblocks = mfm_engine_setup(&e, p->block, p->threads);
  nt = e.threads;
  c.gmax = 16;
  while (c.gmax < (1 << 16) &&
         (c.gmax < 128 * max_m || c.gmax < f->n_items / 4))
    c.gmax *= 2;
  size_t ni = f->n_items > 0 ? (size_t)f->n_items : 1;
  size_t kh = c.kheap > 0 ? (size_t)c.kheap : 1;
  size_t nb = nblocks > 0 ? (size_t)nblocks : 1;
  c.sums = mfm_calloc(nb * ncol, sizeof *c.sums);
  c.cnts = mfm_calloc(nb * ncol, sizeof *c.cnts);
  ts = mfm_calloc((size_t)nt, sizeof *ts);
  if (!c.sums || !c.cnts || !ts) {
    st = MFM_ENOMEM;
    goto done;
  }
  for (int t = 0; t < nt; t++) {
    tstate *s = &ts[t];
    s->mark = mfm_calloc(ni, 1);
    s->q = mfm_malloc_array((size_t)max_m, sizeof *s->q);
    s->qraw = mfm_malloc_array((size_t)max_m, sizeof *s->qraw);
    s->qidx = mfm_malloc_array((size_t)max_m, sizeof *s->qidx);
    s->table = mfm_malloc_array((size_t)c.gmax + 2, sizeof *s->table);
    s->cells = mfm_malloc_array(MFM_RANK_CELL_CHUNK, sizeof *s->cells);
    s->hs = mfm_malloc_array(kh, sizeof *s->hs);
    s->hi = mfm_malloc_array(kh, sizeof *s->hi);
    s->dcg = mfm_malloc_array(kh + 1, sizeof *s->dcg);
    s->ap = mfm_malloc_array(kh + 1, sizeof *s->ap);
    s->hits = mfm_calloc(kh + 1, sizeof *s->hits);
    s->minrank = c.need_cov ? mfm_malloc_array(ni, sizeof *s->minrank)
                            : NULL;
    if (!s->mark || !s->q || !s->qraw || !s->qidx || !s->table ||
        !s->cells || !s->hs || !s->hi || !s->dcg || !s->ap || !s->hits ||
        (c.need_cov && !s->minrank)) {
      st = MFM_ENOMEM;
      goto done;
    }
    if (c.need_cov)
      for (size_t j = 0; j < ni; j++) s->minrank[j] = INT32_MAX;
    s->dcg[0] = s->ap[0] = 0;
  }
  c.ts = ts;
  st = mfm_engine_run(&e, err);
  if (st != MFM_OK) goto done;

  for (int col = 0; col < ncol; col++) {
    double sum = 0;
    int64_t cnt = 0;
    for (int32_t b = 0; b < nblocks; b++) {
      sum += c.sums[(size_t)b * ncol + col];
      cnt += c.cnts[(size_t)b * ncol + col];
    }
    r.mean[col] = cnt > 0 ? sum / (double)cnt : NAN;
    r.n_defined[col] = cnt;
    if (p->metric[col] == MFM_METRIC_COVERAGE) {
      int64_t covered = 0;
      for (int32_t j = 0; j < f->n_items; j++) {
        int32_t best = INT32_MAX;
        for (int t = 0; t < nt; t++)
          if (ts[t].minrank[j] < best) best = ts[t].minrank[j];
        covered += best <= p->k[col];
      }
      r.mean[col] = f->n_items > 0 && n_users > 0
                        ? (double)covered / (double)f->n_items
                        : NAN;
      r.n_defined[col] = n_users;
    }
  }
  *out = r;

done:
  free_ts(ts, nt);
  mfm_free(c.sums);
  mfm_free(c.cnts);
  mfm_free(users);
  mfm_free(idcg);
  mfm_free(xm);
  if (st == MFM_ENOMEM) return mfm_err_set(err, st, "out of memory");
  return st;
}
