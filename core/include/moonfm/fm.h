/* The hybrid factorization model (LightFM class).
 *
 * A user's representation is the weighted sum of the embeddings of its
 * features, and its bias the weighted sum of their biases; the same for
 * items.  By default each user and item has exactly one identity feature,
 * so plain collaborative filtering is the special case, and it is a fast
 * path that reads the embedding rows directly.
 *
 *   score(u, i) = dot(rep_u, rep_i) + bias_u + bias_i
 *
 *   mfm_fm_params p = mfm_fm_params_default();
 *   p.loss = MFM_FM_WARP;
 *   mfm_fm *m;
 *   mfm_fm_new(n_users, n_items, 0, 0, &p, &m, &err);
 *   mfm_fit_report rep;
 *   mfm_fm_fit(m, interactions, NULL, 20, 1, &rep, &err);
 *   mfm_factors f;
 *   mfm_fm_factors(m, &f, &err);     (evaluation, top-k, export)
 *   mfm_fm_free(m);
 *
 * Parameters live in float tables of rows: rows 0..n_users-1 are the
 * identity features (when kept), then the n_user_features side features;
 * same for items.  Adagrad/adadelta accumulators, the RNG states and the
 * epoch counter are part of the model, so a saved model resumes exactly.
 */
#ifndef MOONFM_FM_H
#define MOONFM_FM_H

#include <stdint.h>

#include "csr.h"
#include "factors.h"
#include "status.h"

typedef enum mfm_fm_loss {
  MFM_FM_LOGISTIC = 0,
  MFM_FM_BPR = 1,
  MFM_FM_WARP = 2,
  MFM_FM_WARP_KOS = 3
} mfm_fm_loss;

typedef enum mfm_fm_schedule {
  MFM_FM_ADAGRAD = 0,
  MFM_FM_ADADELTA = 1,
  MFM_FM_SGD = 2 /* plain steps of learning_rate; mostly for tests */
} mfm_fm_schedule;

/* Largest thread count; one RNG stream per thread is kept in the model. */
#define MFM_FM_MAX_THREADS 64

typedef struct mfm_fm_params {
  int32_t factors;          /* embedding size k, default 64 */
  mfm_fm_loss loss;         /* default MFM_FM_WARP */
  mfm_fm_schedule schedule; /* default MFM_FM_ADAGRAD */
  float learning_rate;      /* default 0.05 */
  float rho, epsilon;       /* adadelta, default 0.95 and 1e-6 */
  float user_alpha;         /* L2 penalty on user parameters, default 0 */
  float item_alpha;         /* L2 penalty on item parameters, default 0 */
  int32_t max_sampled;      /* WARP negatives per positive, default 10 */
  int32_t kos_k, kos_n;     /* k-OS WARP: k-th positive of n, 5 and 10 */
  uint64_t seed;            /* default 42 */
  int32_t threads;          /* <= 0: all CPUs; default 0 */
  /* With side features: keep the identity features (default 1).  Without
     side features the identity is always kept. */
  int user_identity, item_identity;
  /* Scale each user's (item's) feature weights, identity included, to sum
     to one (LightFM does); default 1. */
  int normalize;
  /* Logistic loss: label +1 when the interaction's value is > threshold,
     -1 otherwise (so ratings 1-5 with threshold 3.5, or +-1 data with the
     default 0). */
  float logistic_threshold;
  /* Add item biases in scores and in the factors view (default 1); 0 is a
     remedy when every user gets the same popular items. */
  int score_item_bias;
} mfm_fm_params;

mfm_fm_params mfm_fm_params_default(void);
/* NULL when valid, else a static message naming the field. */
const char *mfm_fm_params_check(const mfm_fm_params *p);
/* "warp" -> MFM_FM_WARP ...; -1 when unknown.  And back. */
int mfm_fm_loss_parse(const char *name);
const char *mfm_fm_loss_name(mfm_fm_loss l);
int mfm_fm_schedule_parse(const char *name);
const char *mfm_fm_schedule_name(mfm_fm_schedule s);

#ifndef MFM_FIT_REPORT_DEFINED
#define MFM_FIT_REPORT_DEFINED
/* What a fit did: epochs completed, mean loss per sample of the last
   epoch, wall seconds, samples (positive interactions) processed, and
   for the logistic loss how many of the data's samples are labelled -1
   (0: nothing to tell positives from, the model cannot rank). */
typedef struct mfm_fit_report {
  int32_t epochs;
  double loss;
  double seconds;
  int64_t samples;
  int64_t negatives;
} mfm_fit_report;
#endif

typedef struct mfm_fm mfm_fm;

/* A new model of n_users x n_items with n_user_features / n_item_features
   side features (0: identity only, the fast path).  Embeddings start
   uniform in (-0.5/k, 0.5/k), biases at 0, from p->seed.  p is copied.
   MFM_EINVAL with a message for bad sizes or params, MFM_ENOMEM. */
mfm_status mfm_fm_new(int32_t n_users, int32_t n_items,
                      int32_t n_user_features, int32_t n_item_features,
                      const mfm_fm_params *p, mfm_fm **out, mfm_err *err);
void mfm_fm_free(mfm_fm *m);

/* The model's settings (borrowed). */
const mfm_fm_params *mfm_fm_get_params(const mfm_fm *m);
void mfm_fm_shape(const mfm_fm *m, int32_t *n_users, int32_t *n_items,
                  int32_t *n_user_features, int32_t *n_item_features);
/* Completed epochs over the model's life. */
int64_t mfm_fm_epochs(const mfm_fm *m);
/* Changes whether scores and the factors view include item biases. */
void mfm_fm_set_score_item_bias(mfm_fm *m, int on);

/* Sets the side features: f (borrowed, copied) has rows = users (items),
   at most n_users (n_items) rows (missing rows: no side features) and
   n_cols <= n_user_features (n_item_features); values are the weights.
   Rows are normalised when params.normalize.  MFM_EINVAL on a shape
   mismatch or a model without side features. */
mfm_status mfm_fm_set_user_features(mfm_fm *m, const mfm_csr *f,
                                    mfm_err *err);
mfm_status mfm_fm_set_item_features(mfm_fm *m, const mfm_csr *f,
                                    mfm_err *err);

/* The side features as last set (borrowed from the model), or NULL: the
   model file stores them, and a loader sets them again. */
const mfm_csr *mfm_fm_user_features(const mfm_fm *m);
const mfm_csr *mfm_fm_item_features(const mfm_fm *m);

/* Runs `epochs` epochs of the loss over `interactions` (borrowed; rows =
   users, cols = items, at most the model's sizes).  Ranking losses (bpr,
   warp, warp-kos) use entries with value > 0 as positives and their value
   as sample weight; every stored entry counts as seen (never drawn as a
   negative).  Logistic uses every entry, label from the value against
   logistic_threshold, sample weight 1.  `weights` (may be NULL) has the
   same pattern as interactions and overrides the sample weights.
   threads <= 0: params.threads.  Continues from the model's state (so
   calling it again is fit_partial).  Checks the stop flag at least every
   few thousand samples and returns MFM_ECANCELED with the model
   consistent (the interrupted epoch is not counted).  rep may be NULL.
   Not thread-safe on the same model. */
mfm_status mfm_fm_fit(mfm_fm *m, const mfm_csr *interactions,
                      const mfm_csr *weights, int epochs, int threads,
                      mfm_fit_report *rep, mfm_err *err);

/* Scores for n (user, item) pairs into out.  MFM_EINVAL on an index out
   of range.  Thread-safe against other readers. */
mfm_status mfm_fm_score(const mfm_fm *m, int64_t n, const int32_t *users,
                        const int32_t *items, float *out, mfm_err *err);

/* Fills f with the model's factors (borrowed from the model, valid until
   it next changes).  Identity-only sides point straight at the embedding
   tables; hybrid sides are computed into buffers owned by the model,
   recomputed when stale.  Not thread-safe (may refresh the buffers). */
mfm_status mfm_fm_factors(mfm_fm *m, mfm_factors *f, mfm_err *err);

/* Lists the arrays of the model's whole state (embeddings, biases,
   accumulators, RNG states, epoch counter), pointing into the model, so a
   loader fills them in place; returns how many (<= max).  Calling it marks
   cached representations stale. */
int mfm_fm_arrays(mfm_fm *m, mfm_array *out, int max);

/* Fold-in options. */
typedef struct mfm_fm_foldin {
  int32_t epochs;  /* passes over the interactions, default 20 */
  float learning_rate; /* default: the model's */
  float alpha;     /* L2 penalty on the new vector, default user_alpha */
  uint64_t seed;   /* default: the model's seed */
} mfm_fm_foldin;
mfm_fm_foldin mfm_fm_foldin_default(const mfm_fm *m);

/* A representation (rep: k floats, *bias) for a user unseen in training
   from its n interactions (items borrowed, weights may be NULL for ones):
   a few epochs of the model's loss on that vector alone, items fixed.
   Does not change the model; thread-safe against other readers.
   MFM_EINVAL on an item out of range. */
mfm_status mfm_fm_fold_in(const mfm_fm *m, int64_t n, const int32_t *items,
                          const float *weights, const mfm_fm_foldin *o,
                          float *rep, float *bias, mfm_err *err);

/* A user representation from n user features (indices into the side
   features, weights may be NULL for ones), normalised as in training;
   MFM_EINVAL when the model has no such feature. */
mfm_status mfm_fm_user_from_features(const mfm_fm *m, int64_t n,
                                     const int32_t *features,
                                     const float *weights, float *rep,
                                     float *bias, mfm_err *err);

/* Scores of one user representation against n items (out: n floats). */
mfm_status mfm_fm_score_rep(const mfm_fm *m, const float *rep, float bias,
                            int64_t n, const int32_t *items, float *out,
                            mfm_err *err);

#endif
