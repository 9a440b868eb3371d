/* Fold-in: representations for users unseen in training, from their
   interactions (a few epochs of the loss on that one vector, items
   fixed) or from their features (the hybrid model's sum). */
#include <math.h>
#include <stdlib.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"

mfm_fm_foldin mfm_fm_foldin_default(const mfm_fm *m) {
  mfm_fm_foldin o = {20, m->p.learning_rate, m->p.user_alpha, m->p.seed};
  return o;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

mfm_status mfm_fm_fold_in(const mfm_fm *m, int64_t n, const int32_t *items,
                          const float *weights, const mfm_fm_foldin *o,
                          float *rep, float *bias, mfm_err *err) {
  int32_t k = m->k, ni = m->i.n;
  mfm_fm_foldin def = mfm_fm_foldin_default(m);
  if (!o) o = &def;
  if (n < 0 || o->epochs < 0 || !(o->learning_rate > 0) || !(o->alpha >= 0))
    return mfm_err_set(err, MFM_EINVAL,
                       "fm fold_in: need n >= 0, epochs >= 0, "
                       "learning_rate > 0 and alpha >= 0");
  for (int64_t q = 0; q < n; q++)
    if (items[q] < 0 || items[q] >= ni)
      return mfm_err_set(err, MFM_EINVAL,
                         "fm fold_in: item %d outside the model's %d items",
                         (int)items[q], (int)ni);
  for (int32_t j = 0; j < k; j++) rep[j] = 0.0f;
  *bias = 0.0f;
  if (n == 0 || o->epochs == 0) return MFM_OK;

  int32_t *seen = mfm_malloc_array((size_t)n, sizeof *seen);
  uint32_t *perm = mfm_malloc_array((size_t)n, sizeof *perm);
  float *buf = mfm_alloc_aligned(5 * (size_t)k + 1, sizeof(float));
  if (!seen || !perm || !buf) {
    mfm_free(seen);
    mfm_free(perm);
    mfm_free_aligned(buf);
    return mfm_err_set(err, MFM_ENOMEM, "fm fold_in: out of memory");
  }
  memcpy(seen, items, (size_t)n * sizeof *seen);
  qsort(seen, (size_t)n, sizeof *seen, cmp_i32);
  float *sp_ = buf, *sn_ = buf + k, *g = buf + 2 * k, *acc = buf + 3 * k;
  float acc_b = 1.0f;
  for (int32_t j = 0; j < k; j++) acc[j] = 1.0f;
  /* Adagrad on the one vector, whatever the model's schedule: it needs no
     tuning and the vector starts from scratch. */
  fm_sched s = {MFM_FM_ADAGRAD, o->learning_rate, 0.0f, 0.0f};
  const mfm_fm_params *p = &m->p;
  mfm_rng rng;
  mfm_rng_seed(&rng, o->seed ^ 0xF01D1Full);
  for (int32_t ep = 0; ep < o->epochs; ep++) {
    for (int64_t q = 0; q < n; q++) perm[q] = (uint32_t)q;
    for (int64_t q = n - 1; q > 0; q--) {
      uint32_t j = mfm_rng_below(&rng, (uint32_t)q + 1), t = perm[q];
      perm[q] = perm[j];
      perm[j] = t;
    }
    for (int64_t q = 0; q < n; q++) {
      int32_t it = items[perm[q]];
      float w = weights ? weights[perm[q]] : 1.0f, bp, bn, l, d;
      const float *rp = fm_rep(&m->i, k, it, sp_, &bp);
      float spos = fm_dot(rep, rp, k) + bp;
      if (p->loss == MFM_FM_LOGISTIC) {
        float y = w > p->logistic_threshold ? 1.0f : -1.0f;
        d = fm_logistic_grad(spos + *bias, y, &l);
        fm_apply_row(&s, rep, acc, NULL, rp, d, o->alpha, k);
        fm_apply_one(&s, bias, &acc_b, NULL, d, o->alpha);
        continue;
      }
      if (!(w > 0)) continue;
      int32_t neg = -1, draws;
      const float *rn = NULL;
      for (draws = 1; draws <= (p->loss == MFM_FM_BPR ? 32 : p->max_sampled);
           draws++) {
        int32_t c = (int32_t)mfm_rng_below(&rng, (uint32_t)ni);
        if (fm_row_has(seen, n, c)) continue;
        rn = fm_rep(&m->i, k, c, sn_, &bn);
        if (p->loss == MFM_FM_BPR || fm_dot(rep, rn, k) + bn > spos - 1.0f) {
          neg = c;
          break;
        }
      }
      if (neg < 0) continue;
      float sneg = fm_dot(rep, rn, k) + bn;
      if (p->loss == MFM_FM_BPR) {
        d = w * fm_bpr_grad(spos - sneg, &l);
      } else {
        double r = floor((double)(ni - 1) / draws);
        d = -w * (float)log(r > 1.0 ? r : 1.0);
      }
      for (int32_t j = 0; j < k; j++) g[j] = rp[j] - rn[j];
      fm_apply_row(&s, rep, acc, NULL, g, d, o->alpha, k);
    }
  }
  mfm_free(seen);
  mfm_free(perm);
  mfm_free_aligned(buf);
  return MFM_OK;
}

mfm_status mfm_fm_user_from_features(const mfm_fm *m, int64_t n,
                                     const int32_t *features,
                                     const float *weights, float *rep,
                                     float *bias, mfm_err *err) {
  const fm_side *u = &m->u;
  int32_t k = m->k;
  if (u->n_feat == 0)
    return mfm_err_set(err, MFM_EINVAL,
                       "fm fold_in_features: the model has no user features");
  double sum = 0.0;
  for (int64_t q = 0; q < n; q++) {
    if (features[q] < 0 || features[q] >= u->n_feat)
      return mfm_err_set(err, MFM_EINVAL,
                         "fm fold_in_features: feature %d outside the "
                         "model's %d user features",
                         (int)features[q], (int)u->n_feat);
    sum += weights ? weights[q] : 1.0f;
  }
  float scale = m->p.normalize && sum != 0.0 ? (float)(1.0 / sum) : 1.0f;
  int64_t off = u->identity ? u->n : 0;
  for (int32_t j = 0; j < k; j++) rep[j] = 0.0f;
  float b = 0.0f;
  for (int64_t q = 0; q < n; q++) {
    float w = (weights ? weights[q] : 1.0f) * scale;
    const float *row = u->emb + (off + features[q]) * k;
    for (int32_t j = 0; j < k; j++) rep[j] += w * row[j];
    b += w * u->bias[off + features[q]];
  }
  *bias = b;
  return MFM_OK;
}
