/* Evaluation, top-k recommendation and pair scoring on any model, through
   the mfm_factors view.  Scores of a block of users against every item are
   one sgemm; top-k is a partial selection (a k-heap behind a vectorised
   threshold test), never a sort of the catalogue.

   Conventions, fixed here and relied on by docs/evaluation.md:
   - The ranking of a user is by score, descending; ties go to the lower
     item index.  Top-k lists, precision, recall, NDCG, MAP, hit rate, MRR
     and coverage all read this one ranking.
   - Items of the exclusion set (the training interactions) are removed
     from the ranking unless include_seen is set: they are neither
     recommended nor counted as negatives.  A test item that is also in the
     exclusion set is dropped (counted in n_test_excluded).
   - precision@k = hits in the top k / k (LightFM's definition, also when
     fewer than k items can be ranked); recall@k = hits / n_test;
     hit_rate@k = 1 if any hit; NDCG@k: binary relevance, log2(rank + 1)
     discount, ideal DCG over min(k, n_test); MAP@k = sum of precision at
     each hit rank within k / min(k, n_test); MRR = 1 / rank of the first
     test item in the full ranking; AUC = fraction of (test item, negative)
     pairs where the test item scores higher, ties counting one half
     (rank counting); coverage@k = distinct items in the top-k lists of all
     evaluated users / n_items.
   - A user with no test item (after dropping unknown and excluded items)
     is skipped and counted.  AUC is undefined for a user with no negative;
     such a user is left out of the AUC mean only. */
#ifndef MOONFM_EVAL_H
#define MOONFM_EVAL_H

#include <stdint.h>

#include "csr.h"
#include "factors.h"
#include "status.h"

typedef enum mfm_metric {
  MFM_METRIC_PRECISION = 1,
  MFM_METRIC_RECALL,
  MFM_METRIC_NDCG,
  MFM_METRIC_MAP,
  MFM_METRIC_HIT_RATE,
  MFM_METRIC_MRR,
  MFM_METRIC_AUC,
  MFM_METRIC_COVERAGE
} mfm_metric;

/* "precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc",
   "coverage"; NULL for an unknown value. */
const char *mfm_metric_name(mfm_metric m);
/* The metric named `name` (as above), or 0. */
mfm_metric mfm_metric_parse(const char *name);
/* Nonzero for metrics computed on the top k (all but mrr and auc). */
int mfm_metric_uses_k(mfm_metric m);

#define MFM_EVAL_MAX_COLUMNS 64

/* One evaluation computes up to MFM_EVAL_MAX_COLUMNS (metric, k) columns
   in one pass over the users. */
typedef struct mfm_eval_params {
  int n_columns;
  mfm_metric metric[MFM_EVAL_MAX_COLUMNS];
  int32_t k[MFM_EVAL_MAX_COLUMNS]; /* >= 1 for top-k metrics, else ignored */
  int include_seen; /* 1: keep exclusion items in the ranking (default 0) */
  int item_bias;    /* 1: rank with item biases (default 1) */
  int threads;      /* worker threads, <= 0 for all CPUs (default 0) */
  int32_t block;    /* users per sgemm block, 0 for automatic (default) */
} mfm_eval_params;

/* No columns, include_seen 0, item_bias 1, threads 0, block 0. */
mfm_eval_params mfm_eval_params_default(void);
/* NULL when valid, else a message naming the bad field. */
const char *mfm_eval_params_check(const mfm_eval_params *p);

typedef struct mfm_eval_result {
  double mean[MFM_EVAL_MAX_COLUMNS]; /* NaN when no user defines it */
  int64_t n_defined[MFM_EVAL_MAX_COLUMNS]; /* users in each mean */
  int64_t n_users;         /* users evaluated */
  int64_t n_skipped;       /* known users with no usable test item */
  int64_t n_unknown_users; /* test rows beyond the model's users, with items */
  int64_t n_unknown_user_items; /* their test items */
  int64_t n_unknown_items; /* test items >= the model's n_items */
  int64_t n_test_excluded; /* test items dropped: in the exclusion set */
  int64_t n_positives;     /* test items evaluated */
} mfm_eval_result;

/* Evaluates f on the test interactions (rows = users, cols = items; rows
   or columns beyond the model are counted as unknown).  exclude (may be
   NULL) is usually the training set; its rows beyond its n_rows are empty
   and its columns >= f->n_items are ignored.  per_user, when not NULL, has
   min(test->n_rows, f->n_users) * p->n_columns doubles, row-major by user:
   each evaluated user's values, NaN elsewhere (skipped users, coverage,
   AUC without negatives).  All pointers are borrowed.  Errors: MFM_EINVAL
   (bad params or shapes), MFM_ENOMEM, MFM_ECANCELED (stop flag).
   Thread-safe for distinct outputs; sets OpenBLAS to one thread while it
   runs and restores the previous count. */
mfm_status mfm_eval_run(const mfm_factors *f, const mfm_csr *test,
                        const mfm_csr *exclude, const mfm_eval_params *p,
                        mfm_eval_result *out, double *per_user, mfm_err *err);

typedef struct mfm_topk_params {
  int include_seen; /* default 0 */
  int item_bias;    /* default 1 */
  int threads;      /* <= 0 for all CPUs */
  int32_t block;    /* 0 for automatic */
} mfm_topk_params;

mfm_topk_params mfm_topk_params_default(void);

/* Top k items of each of the n users (indices into f), best first, with
   their scores (dot + user bias + item bias when item_bias is set).  Items
   of exclude's row are left out unless include_seen.  items and scores
   (either may be NULL) hold n * k values; a user with fewer than k
   candidates gets -1 and NaN in the rest.  MFM_EINVAL for k < 1 or a
   user out of range; MFM_ENOMEM; MFM_ECANCELED. */
mfm_status mfm_topk_recommend(const mfm_factors *f, const int32_t *users,
                              int32_t n, int32_t k, const mfm_csr *exclude,
                              const mfm_topk_params *p, int32_t *items,
                              float *scores, mfm_err *err);

/* Scores of n (user, item) pairs: out[i] = score(users[i], items[i]), with
   both biases.  MFM_EINVAL (naming the pair) for an index out of range. */
mfm_status mfm_factors_score(const mfm_factors *f, const int32_t *users,
                             const int32_t *items, int64_t n, float *out,
                             mfm_err *err);

/* Checks the view: sizes >= 0, k >= 0, ld >= k, matrices present when
   there are rows.  MFM_EINVAL with a message otherwise. */
mfm_status mfm_factors_check(const mfm_factors *f, mfm_err *err);

#endif
