/* The prediction engine of the server: top-k for blocks of up to
   MFM_SERVE_BLOCK users (one sgemv or sgemm against every item, then the
   k-heap of topk.c), and scores of given items.  One thread, the worker's
   buffers: nothing is allocated per user except the result pools. */
#include "serve_impl.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "moonfm/alloc.h"
#include "topk.h"

/* The representation of an instance's user: k floats and the bias. */
static const float *rep_of(const mfm_serve_worker *w, const serve_inst *in,
                           float *bias) {
  const mfm_factors *f = &w->m->p.factors;
  if (in->user >= 0) {
    *bias = f->user_bias ? f->user_bias[in->user] : 0.0f;
    return f->user + in->user * f->ld_user;
  }
  *bias = w->reps[in->rep + f->k];
  return w->reps + in->rep;
}

/* Items excluded from an instance's ranking: its training row (known
   user) or its fold-in items, when exclude_seen. */
static void excluded(const mfm_serve_worker *w, const serve_inst *in,
                     const int32_t **x, int64_t *n) {
  const mfm_csr *s = w->m->p.seen;
  *x = NULL;
  *n = 0;
  if (!in->exclude) return;
  if (in->user >= 0) {
    if (s && in->user < s->n_rows) {
      *x = s->indices + s->indptr[in->user];
      *n = s->indptr[in->user + 1] - s->indptr[in->user];
    }
  } else {
    *x = w->ids + in->list;
    *n = in->n_list;
  }
}

static void topk_row(mfm_serve_worker *w, serve_inst *in, float *row) {
  const mfm_factors *f = &w->m->p.factors;
  int32_t ni = f->n_items;
  if (f->item_bias)
    for (int32_t j = 0; j < ni; j++) row[j] += f->item_bias[j];
  const int32_t *x;
  int64_t nx;
  excluded(w, in, &x, &nx);
  /* -inf as well as marked: the heap scan's threshold then holds. */
  for (int64_t t = 0; t < nx; t++) {
    w->mark[x[t]] = 1;
    row[x[t]] = -INFINITY;
  }
  mfm_heap h;
  mfm_heap_init(&h, w->hs, w->hi, in->k < ni ? in->k : ni);
  mfm_heap_scan(&h, row, ni, w->mark);
  mfm_heap_sort(&h);
  for (int64_t t = 0; t < nx; t++) w->mark[x[t]] = 0;
  float ub;
  rep_of(w, in, &ub);
  for (int32_t r = 0; r < h.n; r++) {
    w->res_items[in->res + r] = h.index[r];
    w->res_scores[in->res + r] = h.score[r] + ub;
  }
  in->n_res = h.n;
}

/* Top-k of the instances idx[0..nb), all INST_TOPK. */
static void topk_block(mfm_serve_worker *w, const int64_t *idx, int nb) {
  const mfm_factors *f = &w->m->p.factors;
  int32_t k = f->k, ni = f->n_items;
  if (ni == 0) {
    for (int b = 0; b < nb; b++) w->inst[idx[b]].n_res = 0;
    return;
  }
  if (k == 0) {
    memset(w->sb, 0, (size_t)nb * ni * sizeof *w->sb);
  } else if (nb == 1) {
    float bias;
    const float *u = rep_of(w, &w->inst[idx[0]], &bias);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, ni, k, 1.0f, f->item,
                (int)f->ld_item, u, 1, 0.0f, w->sb, 1);
  } else {
    for (int b = 0; b < nb; b++) {
      float bias;
      memcpy(w->ub + (size_t)b * k, rep_of(w, &w->inst[idx[b]], &bias),
             (size_t)k * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, ni, k, 1.0f,
                w->ub, k, f->item, (int)f->ld_item, 0.0f, w->sb, ni);
  }
  for (int b = 0; b < nb; b++)
    topk_row(w, &w->inst[idx[b]], w->sb + (size_t)b * ni);
}

/* The k items whose rows are nearest item in->item's by cosine (a row of
   length 0 is at cosine 0 from every other); the item itself left out. */
static void similar_items(mfm_serve_worker *w, serve_inst *in) {
  const mfm_factors *f = &w->m->p.factors;
  const float *len = w->m->item_norm;
  int32_t ni = f->n_items, i = in->item;
  float *row = w->sb;
  if (f->k == 0)
    memset(row, 0, (size_t)ni * sizeof *row);
  else
    cblas_sgemv(CblasRowMajor, CblasNoTrans, ni, f->k, 1.0f, f->item,
                (int)f->ld_item, f->item + (int64_t)i * f->ld_item, 1, 0.0f,
                row, 1);
  for (int32_t j = 0; j < ni; j++) {
    float d = len[i] * len[j];
    row[j] = d > 0.0f ? row[j] / d : 0.0f;
  }
  w->mark[i] = 1;
  row[i] = -INFINITY;
  mfm_heap h;
  mfm_heap_init(&h, w->hs, w->hi, in->k < ni ? in->k : ni);
  mfm_heap_scan(&h, row, ni, w->mark);
  mfm_heap_sort(&h);
  w->mark[i] = 0;
  for (int32_t r = 0; r < h.n; r++) {
    w->res_items[in->res + r] = h.index[r];
    w->res_scores[in->res + r] = h.score[r];
  }
  in->n_res = h.n;
}

static void score_items(mfm_serve_worker *w, serve_inst *in) {
  const mfm_factors *f = &w->m->p.factors;
  float ub;
  const float *u = rep_of(w, in, &ub);
  for (int64_t t = 0; t < in->n_list; t++) {
    int32_t j = w->ids[in->list + t];
    const float *v = f->item + j * f->ld_item;
    float acc[8] = {0}, s = 0.0f;
    int32_t d = 0;
    for (; d + 8 <= f->k; d += 8)
      for (int l = 0; l < 8; l++) acc[l] += u[d + l] * v[d + l];
    for (; d < f->k; d++) s += u[d] * v[d];
    for (int l = 0; l < 8; l++) s += acc[l];
    s += ub + (f->item_bias ? f->item_bias[j] : 0.0f);
    w->res_items[in->res + t] = j;
    w->res_scores[in->res + t] = s;
  }
  in->n_res = in->n_list;
}

mfm_status mfm_serve_predict(mfm_serve_worker *w, mfm_err *err) {
  int32_t ni = w->m->p.factors.n_items;
  int64_t need = 0;
  for (int64_t i = 0; i < w->n_inst; i++) {
    serve_inst *in = &w->inst[i];
    in->res = need;
    need += in->what == INST_SCORE ? in->n_list
                                   : (in->k < ni ? in->k : ni);
  }
  int64_t cap = w->cap_res;
  int64_t c0 = cap;
  if (!mfm_serve_grow((void **)&w->res_items, &cap, need + 1,
                      sizeof *w->res_items) ||
      !mfm_serve_grow((void **)&w->res_scores, &c0, need + 1,
                      sizeof *w->res_scores))
    return mfm_err_set(err, MFM_ENOMEM, "out of memory");
  w->cap_res = cap < c0 ? cap : c0;
  w->n_res = need;
  int64_t blk[MFM_SERVE_BLOCK];
  int nb = 0;
  for (int64_t i = 0; i < w->n_inst; i++) {
    serve_inst *in = &w->inst[i];
    if (in->what == INST_SCORE) {
      score_items(w, in);
      continue;
    }
    if (in->what == INST_SIMILAR) {
      similar_items(w, in);
      continue;
    }
    blk[nb++] = i;
    if (nb == MFM_SERVE_BLOCK) {
      topk_block(w, blk, nb);
      nb = 0;
    }
  }
  if (nb) topk_block(w, blk, nb);
  return MFM_OK;
}
