/* The factorization model: parameters, construction, side features, the
   factors view, the state arrays and scoring. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fm_impl.h"
#include "moonfm/alloc.h"

mfm_fm_params mfm_fm_params_default(void) {
  mfm_fm_params p;
  memset(&p, 0, sizeof p);
  p.factors = 64;
  p.loss = MFM_FM_WARP;
  p.schedule = MFM_FM_ADAGRAD;
  p.learning_rate = 0.05f;
  p.rho = 0.95f;
  p.epsilon = 1e-6f;
  p.user_alpha = 0.0f;
  p.item_alpha = 0.0f;
  p.max_sampled = 10;
  p.kos_k = 5;
  p.kos_n = 10;
  p.seed = 42;
  p.threads = 0;
  p.user_identity = 1;
  p.item_identity = 1;
  p.normalize = 1;
  p.logistic_threshold = 0.0f;
  p.score_item_bias = 1;
  return p;
}

const char *mfm_fm_params_check(const mfm_fm_params *p) {
  if (p->factors < 1 || p->factors > 4096)
    return "factors must be in 1..4096";
  if ((unsigned)p->loss > MFM_FM_WARP_KOS)
    return "loss must be logistic, bpr, warp or warp-kos";
  if ((unsigned)p->schedule > MFM_FM_SGD)
    return "schedule must be adagrad or adadelta";
  if (!(p->learning_rate > 0.0f) || !isfinite(p->learning_rate))
    return "learning_rate must be > 0";
  if (!(p->rho > 0.0f && p->rho < 1.0f)) return "rho must be in (0, 1)";
  if (!(p->epsilon > 0.0f) || !isfinite(p->epsilon))
    return "epsilon must be > 0";
  if (!(p->user_alpha >= 0.0f) || !isfinite(p->user_alpha))
    return "user_alpha must be >= 0";
  if (!(p->item_alpha >= 0.0f) || !isfinite(p->item_alpha))
    return "item_alpha must be >= 0";
  if (p->max_sampled < 1 || p->max_sampled > 1000000)
    return "max_sampled must be in 1..1000000";
  if (p->kos_n < 1 || p->kos_n > 4096) return "kos_n must be in 1..4096";
  if (p->kos_k < 1 || p->kos_k > p->kos_n)
    return "kos_k must be in 1..kos_n";
  if (p->threads > MFM_FM_MAX_THREADS) return "threads must be <= 64";
  if (!isfinite(p->logistic_threshold))
    return "logistic_threshold must be finite";
  return NULL;
}

static const char *loss_names[] = {"logistic", "bpr", "warp", "warp-kos"};
static const char *sched_names[] = {"adagrad", "adadelta", "sgd"};

int mfm_fm_loss_parse(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, loss_names[i]) == 0) return i;
  return -1;
}

const char *mfm_fm_loss_name(mfm_fm_loss l) {
  return (unsigned)l < 4 ? loss_names[l] : "?";
}

int mfm_fm_schedule_parse(const char *name) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, sched_names[i]) == 0) return i;
  return -1;
}

const char *mfm_fm_schedule_name(mfm_fm_schedule s) {
  return (unsigned)s < 3 ? sched_names[s] : "?";
}

fm_sched fm_sched_of(const mfm_fm_params *p) {
  fm_sched s = {p->schedule, p->learning_rate, p->rho, p->epsilon};
  return s;
}

static void side_free(fm_side *s) {
  mfm_free_aligned(s->emb);
  mfm_free_aligned(s->bias);
  mfm_free_aligned(s->acc);
  mfm_free_aligned(s->acc_b);
  mfm_free_aligned(s->acc2);
  mfm_free_aligned(s->acc2_b);
  mfm_free_aligned(s->rep);
  mfm_free_aligned(s->rep_b);
  mfm_csr_free(s->rows);
  mfm_csr_free(s->given);
}

void mfm_fm_free(mfm_fm *m) {
  if (!m) return;
  fm_layout_drop(m);
  side_free(&m->u);
  side_free(&m->i);
  mfm_free(m);
}

static mfm_status side_init(fm_side *s, int32_t n, int32_t n_feat, int ident,
                            int32_t k, const mfm_fm_params *p,
                            mfm_rng *rng) {
  s->n = n;
  s->n_feat = n_feat;
  s->identity = n_feat == 0 ? 1 : ident;
  s->n_rows = (s->identity ? (int64_t)n : 0) + n_feat;
  int64_t nr = s->n_rows;
  s->emb = mfm_alloc_aligned((size_t)nr, (size_t)k * sizeof(float));
  s->bias = mfm_alloc_aligned((size_t)nr, sizeof(float));
  s->acc = mfm_alloc_aligned((size_t)nr, (size_t)k * sizeof(float));
  s->acc_b = mfm_alloc_aligned((size_t)nr, sizeof(float));
  if (!s->emb || !s->bias || !s->acc || !s->acc_b) return MFM_ENOMEM;
  if (p->schedule == MFM_FM_ADADELTA) {
    s->acc2 = mfm_alloc_aligned((size_t)nr, (size_t)k * sizeof(float));
    s->acc2_b = mfm_alloc_aligned((size_t)nr, sizeof(float));
    if (!s->acc2 || !s->acc2_b) return MFM_ENOMEM;
  }
  /* LightFM's initialisation: uniform in (-0.5/k, 0.5/k), biases 0;
     adagrad sums start at 1 (so the first steps are not huge). */
  float sc = 1.0f / (float)k;
  for (int64_t q = 0; q < nr * k; q++)
    s->emb[q] = (mfm_rng_float(rng) - 0.5f) * sc;
  float a0 = p->schedule == MFM_FM_ADAGRAD ? 1.0f : 0.0f;
  for (int64_t q = 0; q < nr * k; q++) s->acc[q] = a0;
  for (int64_t q = 0; q < nr; q++) s->acc_b[q] = a0;
  return MFM_OK;
}

static mfm_status side_ready(fm_side *s, int32_t k, mfm_err *err);

mfm_status mfm_fm_new(int32_t n_users, int32_t n_items,
                      int32_t n_user_features, int32_t n_item_features,
                      const mfm_fm_params *p, mfm_fm **out, mfm_err *err) {
  *out = NULL;
  const char *why = mfm_fm_params_check(p);
  if (why) return mfm_err_set(err, MFM_EINVAL, "fm: %s", why);
  if (n_users < 0 || n_items < 1 || n_user_features < 0 ||
      n_item_features < 0)
    return mfm_err_set(err, MFM_EINVAL,
                       "fm: sizes must be >= 0 (and at least one item), "
                       "got %d users, %d items, %d and %d features",
                       (int)n_users, (int)n_items, (int)n_user_features,
                       (int)n_item_features);
  if ((int64_t)n_users + n_user_features > INT32_MAX ||
      (int64_t)n_items + n_item_features > INT32_MAX)
    return mfm_err_set(err, MFM_EINVAL, "fm: too many parameter rows");
  mfm_fm *m = mfm_calloc(1, sizeof *m);
  if (!m) return mfm_err_set(err, MFM_ENOMEM, "fm: out of memory");
  m->p = *p;
  m->k = p->factors;
  m->u.alpha = p->user_alpha;
  m->i.alpha = p->item_alpha;
  mfm_rng rng;
  mfm_rng_seed(&rng, p->seed);
  mfm_status st = side_init(&m->u, n_users, n_user_features,
                            p->user_identity, m->k, p, &rng);
  if (st == MFM_OK)
    st = side_init(&m->i, n_items, n_item_features, p->item_identity, m->k,
                   p, &rng);
  if (st == MFM_OK) st = side_ready(&m->u, m->k, err);
  if (st == MFM_OK) st = side_ready(&m->i, m->k, err);
  if (st != MFM_OK) {
    mfm_fm_free(m);
    return mfm_err_set(err, st, "fm: out of memory");
  }
  /* Independent streams: seeds far apart through splitmix64. */
  for (int t = 0; t < MFM_FM_MAX_THREADS; t++) {
    mfm_rng r;
    mfm_rng_seed(&r, p->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(t + 1)));
    memcpy(m->rng + 4 * t, r.s, sizeof r.s);
  }
  *out = m;
  return MFM_OK;
}

const mfm_fm_params *mfm_fm_get_params(const mfm_fm *m) { return &m->p; }

void mfm_fm_shape(const mfm_fm *m, int32_t *n_users, int32_t *n_items,
                  int32_t *n_user_features, int32_t *n_item_features) {
  if (n_users) *n_users = m->u.n;
  if (n_items) *n_items = m->i.n;
  if (n_user_features) *n_user_features = m->u.n_feat;
  if (n_item_features) *n_item_features = m->i.n_feat;
}

int64_t mfm_fm_epochs(const mfm_fm *m) { return m->epoch[0]; }

void mfm_fm_set_score_item_bias(mfm_fm *m, int on) {
  m->p.score_item_bias = on != 0;
}

/* Builds the entity -> parameter rows map of a side from its features. */
static mfm_status set_features(fm_side *s, const mfm_csr *f, int normalize,
                               const char *what, mfm_err *err) {
  if (s->n_feat == 0)
    return mfm_err_set(err, MFM_EINVAL,
                       "fm: %s features given to a model created without "
                       "%s features (pass their count to mfm_fm_new)",
                       what, what);
  if (f->n_rows > s->n || f->n_cols > s->n_feat)
    return mfm_err_set(err, MFM_EINVAL,
                       "fm: %s features have shape %d x %d, the model has "
                       "%d %ss and %d features",
                       what, (int)f->n_rows, (int)f->n_cols, (int)s->n, what,
                       (int)s->n_feat);
  int64_t nnz = f->nnz + (s->identity ? s->n : 0);
  mfm_csr *r = mfm_calloc(1, sizeof *r);
  if (!r) goto nomem;
  r->n_rows = s->n;
  r->n_cols = (int32_t)s->n_rows;
  r->indptr = mfm_malloc_array((size_t)s->n + 1, sizeof(int64_t));
  r->indices = mfm_malloc_array((size_t)nnz + 1, sizeof(int32_t));
  r->data = mfm_malloc_array((size_t)nnz + 1, sizeof(float));
  if (!r->indptr || !r->indices || !r->data) goto nomem;
  int32_t off = s->identity ? s->n : 0;
  int64_t q = 0;
  for (int32_t e = 0; e < s->n; e++) {
    int64_t q0 = q;
    r->indptr[e] = q;
    if (s->identity) {
      r->indices[q] = e;
      r->data[q++] = 1.0f;
    }
    if (e < f->n_rows) {
      for (int64_t a = f->indptr[e]; a < f->indptr[e + 1]; a++) {
        r->indices[q] = off + f->indices[a];
        r->data[q++] = f->data[a];
      }
    }
    if (normalize) {
      double sum = 0.0;
      for (int64_t a = q0; a < q; a++) sum += r->data[a];
      if (sum != 0.0)
        for (int64_t a = q0; a < q; a++)
          r->data[a] = (float)(r->data[a] / sum);
    }
  }
  r->indptr[s->n] = q;
  r->nnz = q;
  mfm_csr_free(s->rows);
  s->rows = r;
  return MFM_OK;
nomem:
  mfm_csr_free(r);
  return mfm_err_set(err, MFM_ENOMEM, "fm: out of memory");
}

static mfm_status ensure_cache(fm_side *s, int32_t k, mfm_err *err) {
  if (s->rep) return MFM_OK;
  s->rep = mfm_alloc_aligned((size_t)s->n, (size_t)k * sizeof(float));
  s->rep_b = mfm_alloc_aligned((size_t)s->n, sizeof(float));
  if (s->rep && s->rep_b) return MFM_OK;
  mfm_free_aligned(s->rep);
  mfm_free_aligned(s->rep_b);
  s->rep = s->rep_b = NULL;
  return mfm_err_set(err, MFM_ENOMEM, "fm: out of memory");
}

static mfm_status set_side(fm_side *s, const mfm_csr *f, int normalize,
                           int32_t k, const char *what, mfm_err *err) {
  mfm_csr *copy = NULL;
  mfm_status st = set_features(s, f, normalize, what, err);
  if (st == MFM_OK) st = ensure_cache(s, k, err);
  if (st == MFM_OK) st = mfm_csr_resize(f, f->n_rows, f->n_cols, &copy, err);
  if (st != MFM_OK) return st;
  mfm_csr_free(s->given);
  s->given = copy;
  return MFM_OK;
}

mfm_status mfm_fm_set_user_features(mfm_fm *m, const mfm_csr *f,
                                    mfm_err *err) {
  m->cache_valid = 0;
  return set_side(&m->u, f, m->p.normalize, m->k, "user", err);
}

mfm_status mfm_fm_set_item_features(mfm_fm *m, const mfm_csr *f,
                                    mfm_err *err) {
  m->cache_valid = 0;
  fm_layout_drop(m); /* it numbered the items for an identity-only side */
  return set_side(&m->i, f, m->p.normalize, m->k, "item", err);
}

const mfm_csr *mfm_fm_user_features(const mfm_fm *m) { return m->u.given; }
const mfm_csr *mfm_fm_item_features(const mfm_fm *m) { return m->i.given; }

void fm_side_refresh(fm_side *sd, int32_t k) {
  for (int32_t e = 0; e < sd->n; e++) {
    float b;
    float *dst = sd->rep + (int64_t)e * k;
    fm_rep(sd, k, e, dst, &b);
    sd->rep_b[e] = b;
  }
}

/* Until its features are set, a side with side features acts as
   identity-only when it keeps identity rows, else as all zeros. */
static mfm_status side_ready(fm_side *s, int32_t k, mfm_err *err) {
  if (s->n_feat == 0) return MFM_OK;
  mfm_csr empty = {0, s->n_feat, 0, NULL, NULL, NULL};
  int64_t zero = 0;
  empty.indptr = &zero;
  mfm_status st = set_features(s, &empty, 0, "", err);
  if (st == MFM_OK) st = ensure_cache(s, k, err);
  return st;
}

mfm_status mfm_fm_factors(mfm_fm *m, mfm_factors *f, mfm_err *err) {
  (void)err;
  if (!m->cache_valid) {
    if (m->u.rows) fm_side_refresh(&m->u, m->k);
    if (m->i.rows) fm_side_refresh(&m->i, m->k);
    m->cache_valid = 1;
  }
  f->n_users = m->u.n;
  f->n_items = m->i.n;
  f->k = m->k;
  f->ld_user = f->ld_item = m->k;
  f->user = m->u.rows ? m->u.rep : m->u.emb;
  f->user_bias = m->u.rows ? m->u.rep_b : m->u.bias;
  f->item = m->i.rows ? m->i.rep : m->i.emb;
  f->item_bias = m->p.score_item_bias ? (m->i.rows ? m->i.rep_b : m->i.bias)
                                      : NULL;
  return MFM_OK;
}

static int add_array(mfm_array *out, int n, int max, const char *name,
                     mfm_dtype t, int64_t rows, int64_t cols, void *data) {
  if (n >= max || !data) return n;
  mfm_array *a = &out[n];
  memset(a, 0, sizeof *a);
  snprintf(a->name, sizeof a->name, "%s", name);
  a->dtype = t;
  a->rows = rows;
  a->cols = cols;
  a->data = data;
  return n + 1;
}

int mfm_fm_arrays(mfm_fm *m, mfm_array *out, int max) {
  int n = 0, k = m->k;
  fm_side *u = &m->u, *i = &m->i;
  n = add_array(out, n, max, "user_embeddings", MFM_F32, u->n_rows, k, u->emb);
  n = add_array(out, n, max, "user_biases", MFM_F32, u->n_rows, 1, u->bias);
  n = add_array(out, n, max, "item_embeddings", MFM_F32, i->n_rows, k, i->emb);
  n = add_array(out, n, max, "item_biases", MFM_F32, i->n_rows, 1, i->bias);
  n = add_array(out, n, max, "user_embedding_acc", MFM_F32, u->n_rows, k,
                u->acc);
  n = add_array(out, n, max, "user_bias_acc", MFM_F32, u->n_rows, 1, u->acc_b);
  n = add_array(out, n, max, "item_embedding_acc", MFM_F32, i->n_rows, k,
                i->acc);
  n = add_array(out, n, max, "item_bias_acc", MFM_F32, i->n_rows, 1, i->acc_b);
  n = add_array(out, n, max, "user_embedding_acc2", MFM_F32, u->n_rows, k,
                u->acc2);
  n = add_array(out, n, max, "user_bias_acc2", MFM_F32, u->n_rows, 1,
                u->acc2_b);
  n = add_array(out, n, max, "item_embedding_acc2", MFM_F32, i->n_rows, k,
                i->acc2);
  n = add_array(out, n, max, "item_bias_acc2", MFM_F32, i->n_rows, 1,
                i->acc2_b);
  n = add_array(out, n, max, "rng_state", MFM_U64, MFM_FM_MAX_THREADS, 4,
                m->rng);
  n = add_array(out, n, max, "epoch", MFM_I64, 1, 1, m->epoch);
  m->cache_valid = 0; /* the caller may write through these pointers */
  return n;
}

mfm_status mfm_fm_score(const mfm_fm *m, int64_t n, const int32_t *users,
                        const int32_t *items, float *out, mfm_err *err) {
  int32_t k = m->k;
  float *buf = NULL;
  if (m->u.rows || m->i.rows) {
    buf = mfm_malloc_array(2 * (size_t)k, sizeof(float));
    if (!buf) return mfm_err_set(err, MFM_ENOMEM, "fm: out of memory");
  }
  int ib = m->p.score_item_bias;
  for (int64_t q = 0; q < n; q++) {
    int32_t u = users[q], i = items[q];
    if (u < 0 || u >= m->u.n || i < 0 || i >= m->i.n) {
      mfm_free(buf);
      return mfm_err_set(err, MFM_EINVAL,
                         "fm score: pair %lld (%d, %d) outside the model's "
                         "%d users x %d items",
                         (long long)q + 1, (int)u, (int)i, (int)m->u.n,
                         (int)m->i.n);
    }
    float bu, bi;
    const float *ru = fm_rep(&m->u, k, u, buf, &bu);
    const float *ri = fm_rep(&m->i, k, i, buf ? buf + k : NULL, &bi);
    out[q] = fm_dot(ru, ri, k) + bu + (ib ? bi : 0.0f);
  }
  mfm_free(buf);
  return MFM_OK;
}

mfm_status mfm_fm_score_rep(const mfm_fm *m, const float *rep, float bias,
                            int64_t n, const int32_t *items, float *out,
                            mfm_err *err) {
  int32_t k = m->k;
  float *buf = NULL;
  if (m->i.rows) {
    buf = mfm_malloc_array((size_t)k, sizeof(float));
    if (!buf) return mfm_err_set(err, MFM_ENOMEM, "fm: out of memory");
  }
  for (int64_t q = 0; q < n; q++) {
    int32_t i = items[q];
    if (i < 0 || i >= m->i.n) {
      mfm_free(buf);
      return mfm_err_set(err, MFM_EINVAL,
                         "fm score: item %d outside the model's %d items",
                         (int)i, (int)m->i.n);
    }
    float bi;
    const float *ri = fm_rep(&m->i, k, i, buf, &bi);
    out[q] = fm_dot(rep, ri, k) + bias + (m->p.score_item_bias ? bi : 0.0f);
  }
  mfm_free(buf);
  return MFM_OK;
}
