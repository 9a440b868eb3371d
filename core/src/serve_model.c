/* The model a server answers from: built over caller parts, or loaded
   from a model folder (the file mapped read-only, views on its arrays). */
#include "serve_impl.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "moonfm/alloc.h"
#include "moonfm/als.h"
#include "moonfm/eval.h"
#include "moonfm/fm.h"
#include "moonfm/mfile.h"

static mfm_status check_parts(const mfm_serve_parts *p, mfm_err *err) {
  mfm_status st = mfm_factors_check(&p->factors, err);
  if (st != MFM_OK) return st;
  if (!p->users || !p->items)
    return mfm_err_set(err, MFM_EINVAL, "serve: the user and item id maps "
                       "are required");
  if (mfm_idmap_size(p->users) != p->factors.n_users)
    return mfm_err_set(err, MFM_EINVAL, "serve: %d user ids for %d users",
                       (int)mfm_idmap_size(p->users), (int)p->factors.n_users);
  if (mfm_idmap_size(p->items) != p->factors.n_items)
    return mfm_err_set(err, MFM_EINVAL, "serve: %d item ids for %d items",
                       (int)mfm_idmap_size(p->items), (int)p->factors.n_items);
  if (p->seen && p->seen->n_rows > p->factors.n_users)
    return mfm_err_set(err, MFM_EINVAL, "serve: seen items have %d rows for "
                       "%d users", (int)p->seen->n_rows,
                       (int)p->factors.n_users);
  if (p->from_features && !p->features)
    return mfm_err_set(err, MFM_EINVAL, "serve: a feature hook needs the "
                       "feature names");
  return MFM_OK;
}

mfm_status mfm_serve_model_new(const mfm_serve_parts *p,
                               mfm_serve_model **out, mfm_err *err) {
  *out = NULL;
  mfm_status st = check_parts(p, err);
  if (st != MFM_OK) return st;
  mfm_serve_model *m = mfm_calloc(1, sizeof *m);
  const mfm_factors *f = &p->factors;
  if (m) m->item_norm = mfm_malloc_array(f->n_items > 0 ? (size_t)f->n_items : 1,
                                         sizeof(float));
  if (!m || !m->item_norm) {
    mfm_serve_model_free(m);
    return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
  }
  for (int32_t j = 0; j < f->n_items; j++) {
    const float *v = f->item + (int64_t)j * f->ld_item;
    double s = 0.0;
    for (int32_t d = 0; d < f->k; d++) s += (double)v[d] * v[d];
    m->item_norm[j] = (float)sqrt(s);
  }
  m->p = *p;
  snprintf(m->kind, sizeof m->kind, "%s", p->kind ? p->kind : "factors");
  m->p.kind = m->kind;
  *out = m;
  return MFM_OK;
}

void mfm_serve_model_info(const mfm_serve_model *m, mfm_serve_info *out) {
  out->kind = m->kind;
  out->n_users = m->p.factors.n_users;
  out->n_items = m->p.factors.n_items;
  out->factors = m->p.factors.k;
  out->n_seen = m->p.seen ? m->p.seen->nnz : 0;
  out->fold_in = m->p.fold_in != NULL;
  out->features = m->p.from_features != NULL;
}

/* ---- loading ---------------------------------------------------------- */

/* What a loaded model owns besides the mapped file. */
typedef struct owned {
  mfm_mfile *file;
  mfm_idmap *users, *items;
  mfm_csr seen;
  mfm_als *als;
  pthread_mutex_t als_lock;
  int has_lock;
  mfm_fm *fm;               /* fm models: fold-in, features, hybrid reps */
  mfm_idmap *user_features; /* feature names of a hybrid user side */
} owned;

static void owned_free(owned *o) {
  mfm_idmap_free(o->users);
  mfm_idmap_free(o->items);
  mfm_idmap_free(o->user_features);
  mfm_als_free(o->als);
  if (o->has_lock) pthread_mutex_destroy(&o->als_lock);
  mfm_fm_free(o->fm);
  mfm_mfile_free(o->file);
  mfm_free(o);
}

void mfm_serve_model_free(mfm_serve_model *m) {
  if (!m) return;
  if (m->owned) owned_free(m->owned);
  mfm_free(m->item_norm);
  mfm_free(m);
}

/* ALS fold-in is exact and cheap (one k x k solve); the model caches the
   item Gram matrix, so calls are serialised. */
static mfm_status als_fold(void *ctx, const int32_t *idx, int32_t n,
                           float *rep, float *bias, mfm_err *err) {
  owned *o = ctx;
  pthread_mutex_lock(&o->als_lock);
  mfm_status st = mfm_als_fold_in(o->als, idx, NULL, n, rep, err);
  pthread_mutex_unlock(&o->als_lock);
  *bias = 0.0f;
  return st;
}

static int find_array(const mfm_mfile *f, const char *name, mfm_dtype t,
                      mfm_array *a) {
  int i = mfm_mfile_find(f, name);
  if (i < 0) return 0;
  mfm_mfile_array(f, i, a);
  return a->dtype == t && a->cols == 1 ? 1 : -1;
}

static mfm_status load_idmap(const mfm_mfile *f, const char *prefix,
                             int32_t n, mfm_idmap **out, mfm_err *err) {
  char bn[64], on[64];
  mfm_array b, o;
  snprintf(bn, sizeof bn, "%s.ids", prefix);
  snprintf(on, sizeof on, "%s.offsets", prefix);
  const char *path = mfm_mfile_path(f);
  int hb = find_array(f, bn, MFM_U8, &b), ho = find_array(f, on, MFM_I64, &o);
  if (hb == 0 || ho == 0)
    return mfm_err_set(err, MFM_EFORMAT, "%s: the model has no %s id map "
                       "(arrays %s and %s); save it with its id maps",
                       path, prefix, bn, on);
  if (hb < 0 || ho < 0 || o.rows != (int64_t)n + 1)
    return mfm_err_set(err, MFM_EFORMAT, "%s: id map %s has the wrong type "
                       "or size (%lld offsets for %d ids)", path, prefix,
                       (long long)o.rows, (int)n);
  mfm_status st = mfm_idmap_from_view(b.data, b.rows, o.data, n, out, err);
  if (st != MFM_OK && st != MFM_ENOMEM && err) {
    /* A copy: err->msg as an argument of the call that writes err->msg
       came out repeated or empty. */
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    return mfm_err_set(err, MFM_EFORMAT, "%s: id map %s: %s", path, prefix,
                       why);
  }
  return st != MFM_OK && st != MFM_ENOMEM ? MFM_EFORMAT : st;
}

/* seen.indptr (i64, n_users + 1) and seen.indices (i32): the training
   items of each user, for exclude_seen.  Optional. */
static mfm_status load_seen(const mfm_mfile *f, int32_t nu, int32_t ni,
                            mfm_csr *s, int *has, mfm_err *err) {
  mfm_array p, x;
  const char *path = mfm_mfile_path(f);
  int hp = find_array(f, "seen.indptr", MFM_I64, &p);
  int hx = find_array(f, "seen.indices", MFM_I32, &x);
  *has = 0;
  if (hp == 0 && hx == 0) return MFM_OK;
  /* Fewer rows than users is fine: users known only from their features
     come last in the id map and have no training items. */
  if (hp <= 0 || hx <= 0 || p.rows < 1 || p.rows > (int64_t)nu + 1)
    return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr (i64, at most "
                       "n_users + 1) and seen.indices (i32) must come "
                       "together", path);
  const int64_t *ip = p.data;
  const int32_t *ix = x.data;
  int32_t nr = (int32_t)(p.rows - 1);
  if (ip[0] != 0 || ip[nr] != x.rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr does not span "
                       "seen.indices", path);
  for (int32_t u = 0; u < nr; u++)
    if (ip[u + 1] < ip[u])
      return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr decreases at "
                         "user %d", path, (int)u);
  for (int64_t t = 0; t < x.rows; t++)
    if (ix[t] < 0 || ix[t] >= ni)
      return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indices[%lld] = %d is "
                         "not an item", path, (long long)t, (int)ix[t]);
  s->n_rows = nr;
  s->n_cols = ni;
  s->nnz = x.rows;
  s->indptr = (int64_t *)p.data; /* read-only mapping: never written */
  s->indices = (int32_t *)x.data;
  s->data = NULL;
  *has = 1;
  return MFM_OK;
}

/* An ALS model holding the item factors, for fold-in. */
static mfm_status load_als(owned *o, json_t *h, const mfm_factors *f,
                           mfm_err *err) {
  mfm_als_params p = mfm_als_params_default();
  json_t *params = json_object_get(h, "params");
  json_t *v;
  p.factors = f->k;
  if (json_is_object(params)) {
    if ((v = json_object_get(params, "regularization")) && json_is_number(v))
      p.regularization = (float)json_number_value(v);
    if ((v = json_object_get(params, "alpha")) && json_is_number(v))
      p.alpha = (float)json_number_value(v);
  }
  p.threads = 1;
  if (f->k < 1 || mfm_als_params_check(&p)) return MFM_OK; /* no fold-in */
  mfm_status st = mfm_als_new(1, f->n_items, &p, &o->als, err);
  if (st != MFM_OK) return st;
  mfm_array a[4];
  int n = mfm_als_arrays(o->als, a, 4);
  for (int i = 0; i < n; i++)
    if (strcmp(a[i].name, "item_factors") == 0)
      for (int32_t j = 0; j < f->n_items; j++)
        memcpy((float *)a[i].data + (size_t)j * f->k,
               f->item + j * f->ld_item, (size_t)f->k * sizeof(float));
  if (pthread_mutex_init(&o->als_lock, NULL) != 0)
    return mfm_err_set(err, MFM_ENOMEM, "serve: cannot create a lock");
  o->has_lock = 1;
  /* Computes the Gram matrix now, so requests never pay for it. */
  if (f->n_items > 0) {
    float *tmp = mfm_malloc_array((size_t)f->k, sizeof(float));
    if (!tmp) return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
    int32_t i0 = 0;
    st = mfm_als_fold_in(o->als, &i0, NULL, 1, tmp, err);
    mfm_free(tmp);
  }
  return st;
}

/* ---- the factorization model ------------------------------------------ */

static double num_field(json_t *o, const char *key, double dflt) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : dflt;
}

static int bool_field(json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  if (json_is_boolean(v)) return json_is_true(v);
  if (json_is_number(v)) return json_number_value(v) != 0;
  return dflt;
}

/* The training settings from header.params (the fm binding's names). */
static mfm_status fm_params_of(json_t *h, int32_t k, const char *path,
                               mfm_fm_params *p, mfm_err *err) {
  json_t *o = json_object_get(h, "params");
  *p = mfm_fm_params_default();
  p->factors = k;
  p->threads = 1;
  if (!json_is_object(o)) return MFM_OK;
  const char *loss = json_string_value(json_object_get(o, "loss"));
  const char *sched = json_string_value(json_object_get(o, "schedule"));
  if (loss && mfm_fm_loss_parse(loss) >= 0)
    p->loss = (mfm_fm_loss)mfm_fm_loss_parse(loss);
  if (sched && mfm_fm_schedule_parse(sched) >= 0)
    p->schedule = (mfm_fm_schedule)mfm_fm_schedule_parse(sched);
  p->learning_rate = (float)num_field(o, "learning_rate", p->learning_rate);
  p->rho = (float)num_field(o, "rho", p->rho);
  p->epsilon = (float)num_field(o, "epsilon", p->epsilon);
  p->user_alpha = (float)num_field(o, "user_alpha", p->user_alpha);
  p->item_alpha = (float)num_field(o, "item_alpha", p->item_alpha);
  p->max_sampled = (int32_t)num_field(o, "max_sampled", p->max_sampled);
  p->kos_k = (int32_t)num_field(o, "kos_k", p->kos_k);
  p->kos_n = (int32_t)num_field(o, "kos_n", p->kos_n);
  p->seed = (uint64_t)num_field(o, "seed", (double)p->seed);
  p->logistic_threshold =
      (float)num_field(o, "logistic_threshold", p->logistic_threshold);
  p->user_identity = bool_field(o, "user_identity", 1);
  p->item_identity = bool_field(o, "item_identity", 1);
  p->normalize = bool_field(o, "normalize", 1);
  p->score_item_bias = bool_field(o, "score_item_bias", 1);
  const char *why = mfm_fm_params_check(p);
  if (why)
    return mfm_err_set(err, MFM_EFORMAT, "%s: header.params: %s", path, why);
  return MFM_OK;
}

/* A side-feature matrix <side>_features.indptr/indices/data (rows at most
   n, columns below n_feat): a view on the mapped arrays, checked. */
static mfm_status load_features(const mfm_mfile *f, const char *side,
                                int32_t n, int32_t n_feat, mfm_csr *c,
                                mfm_err *err) {
  char pn[64], xn[64], dn[64];
  mfm_array p, x, d;
  const char *path = mfm_mfile_path(f);
  snprintf(pn, sizeof pn, "%s_features.indptr", side);
  snprintf(xn, sizeof xn, "%s_features.indices", side);
  snprintf(dn, sizeof dn, "%s_features.data", side);
  int hp = find_array(f, pn, MFM_I64, &p), hx = find_array(f, xn, MFM_I32, &x);
  int hd = find_array(f, dn, MFM_F32, &d);
  if (hp <= 0 || hx <= 0 || hd <= 0 || p.rows < 1 || p.rows > (int64_t)n + 1 ||
      d.rows != x.rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s: the model has %d %s features "
                       "but not the arrays %s (i64, at most n + 1), %s (i32) "
                       "and %s (f32, as many); save it again with its "
                       "features", path, (int)n_feat, side, pn, xn, dn);
  const int64_t *ip = p.data;
  const int32_t *ix = x.data;
  const float *dx = d.data;
  int32_t nr = (int32_t)(p.rows - 1);
  if (ip[0] != 0 || ip[nr] != x.rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s: %s does not span %s", path, pn,
                       xn);
  for (int32_t r = 0; r < nr; r++)
    if (ip[r + 1] < ip[r])
      return mfm_err_set(err, MFM_EFORMAT, "%s: %s decreases at row %d",
                         path, pn, (int)r);
  for (int64_t t = 0; t < x.rows; t++)
    if (ix[t] < 0 || ix[t] >= n_feat || !(dx[t] == dx[t]))
      return mfm_err_set(err, MFM_EFORMAT, "%s: %s[%lld] = %d is not one of "
                         "the %d features (or its weight is NaN)", path, xn,
                         (long long)t, (int)ix[t], (int)n_feat);
  c->n_rows = nr;
  c->n_cols = n_feat;
  c->nnz = x.rows;
  c->indptr = (int64_t *)p.data; /* read-only mapping: only read */
  c->indices = (int32_t *)x.data;
  c->data = (float *)d.data;
  return MFM_OK;
}

/* A header count: the field, or dflt when absent; -1 when malformed. */
static int64_t count_field(json_t *h, const char *key, int64_t dflt) {
  json_t *v = json_object_get(h, key);
  if (!v) return dflt;
  if (!json_is_number(v)) return -1;
  double x = json_number_value(v);
  if (x < 0 || x > INT32_MAX || x != (double)(int64_t)x) return -1;
  return (int64_t)x;
}

/* fm fold-in and feature users: the model object is only read after
   loading (its representation caches are filled once at load), and both
   functions use their own scratch, so workers call them concurrently
   without a lock. */
static mfm_status fm_fold(void *ctx, const int32_t *idx, int32_t n,
                          float *rep, float *bias, mfm_err *err) {
  owned *o = ctx;
  if (n == 0)
    return mfm_err_set(err, MFM_EINVAL, "give at least one item");
  return mfm_fm_fold_in(o->fm, n, idx, NULL, NULL, rep, bias, err);
}

static mfm_status fm_feats(void *ctx, const int32_t *idx, int32_t n,
                           float *rep, float *bias, mfm_err *err) {
  owned *o = ctx;
  if (n == 0)
    return mfm_err_set(err, MFM_EINVAL, "give at least one feature name");
  return mfm_fm_user_from_features(o->fm, n, idx, NULL, rep, bias, err);
}

/* The factorization model's tables.  Identity-only sides are served
   straight from the mapped embeddings; a side with side features (hybrid)
   has its representations computed once here, as weighted sums of its
   feature embeddings, and served from those dense rows.  An fm object
   holds what fold-in (item side) and feature users (user side) read. */
static mfm_status load_fm(owned *o, json_t *h, mfm_serve_parts *sp,
                          mfm_err *err) {
  const mfm_mfile *f = o->file;
  const char *path = mfm_mfile_path(f);
  mfm_array ue, ie;
  int iu = mfm_mfile_find(f, "user_embeddings");
  int ii = mfm_mfile_find(f, "item_embeddings");
  if (iu < 0 || ii < 0)
    return mfm_err_set(err, MFM_EFORMAT, "%s: an fm model needs the arrays "
                       "user_embeddings and item_embeddings", path);
  mfm_mfile_array(f, iu, &ue);
  mfm_mfile_array(f, ii, &ie);
  if (ue.dtype != MFM_F32 || ie.dtype != MFM_F32 || ue.cols != ie.cols ||
      ue.cols < 1 || ue.cols > 4096)
    return mfm_err_set(err, MFM_EFORMAT, "%s: user_embeddings and "
                       "item_embeddings must be f32 with the same 1..4096 "
                       "columns", path);
  int32_t k = (int32_t)ue.cols;
  int64_t nuf = count_field(h, "n_user_features", 0);
  int64_t nif = count_field(h, "n_item_features", 0);
  int64_t nu = count_field(h, "n_users", nuf ? -1 : ue.rows);
  int64_t ni = count_field(h, "n_items", nif ? -1 : ie.rows);
  if (nuf < 0 || nif < 0 || nu < 0 || ni < 1)
    return mfm_err_set(err, MFM_EFORMAT, "%s: header fields n_users, "
                       "n_items, n_user_features, n_item_features must be "
                       "counts (n_items >= 1)", path);
  mfm_fm_params fp;
  mfm_status st = fm_params_of(h, k, path, &fp, err);
  if (st != MFM_OK) return st;
  int uid = nuf == 0 || fp.user_identity, iid = nif == 0 || fp.item_identity;
  if (ue.rows != (uid ? nu : 0) + nuf || ie.rows != (iid ? ni : 0) + nif)
    return mfm_err_set(err, MFM_EFORMAT, "%s: the embeddings have %lld user "
                       "and %lld item rows, the header says %lld users + "
                       "%lld features and %lld items + %lld features",
                       path, (long long)ue.rows, (long long)ie.rows,
                       (long long)nu, (long long)nuf, (long long)ni,
                       (long long)nif);
  /* Users enter the fm object only when their side is hybrid. */
  int32_t nu_fm = nuf ? (int32_t)nu : 0;
  st = mfm_fm_new(nu_fm, (int32_t)ni, (int32_t)nuf, (int32_t)nif, &fp,
                  &o->fm, err);
  if (st != MFM_OK) return st;
  /* Only the tables representations are made of; accumulators stay at
     their start values (fold-in keeps its own). */
  static const char *const tables[] = {"item_embeddings", "item_biases",
                                       "user_embeddings", "user_biases"};
  mfm_array a[16], want[4];
  int na = mfm_fm_arrays(o->fm, a, 16), nw = 0;
  for (int q = 0; q < na; q++)
    for (int t = 0; t < (nuf ? 4 : 2); t++)
      if (strcmp(a[q].name, tables[t]) == 0) want[nw++] = a[q];
  st = mfm_mfile_fill(f, want, nw, err);
  if (st != MFM_OK) return st;
  mfm_csr uf, itf;
  if (nuf) {
    st = load_features(f, "user", (int32_t)nu, (int32_t)nuf, &uf, err);
    if (st == MFM_OK) st = mfm_fm_set_user_features(o->fm, &uf, err);
    if (st != MFM_OK) return st;
  }
  if (nif) {
    st = load_features(f, "item", (int32_t)ni, (int32_t)nif, &itf, err);
    if (st == MFM_OK) st = mfm_fm_set_item_features(o->fm, &itf, err);
    if (st != MFM_OK) return st;
  }
  mfm_factors fv;
  st = mfm_fm_factors(o->fm, &fv, err); /* fills the caches, once */
  if (st != MFM_OK) return st;
  mfm_factors *out = &sp->factors;
  memset(out, 0, sizeof *out);
  out->n_users = (int32_t)nu;
  out->n_items = (int32_t)ni;
  out->k = k;
  out->ld_user = out->ld_item = k;
  out->item = fv.item;
  out->item_bias = fv.item_bias; /* NULL when score_item_bias is off */
  if (nuf) {
    out->user = fv.user;
    out->user_bias = fv.user_bias;
  } else {
    mfm_array ub;
    int hb = find_array(f, "user_biases", MFM_F32, &ub);
    if (hb < 0 || (hb > 0 && ub.rows != nu))
      return mfm_err_set(err, MFM_EFORMAT, "%s: user_biases must be f32 "
                         "with one entry per user", path);
    out->user = ue.data;
    out->user_bias = hb > 0 ? ub.data : NULL;
  }
  sp->fold_in = fm_fold;
  sp->fold_in_ctx = o;
  if (nuf && mfm_mfile_find(f, "user_feature_names.ids") >= 0) {
    st = load_idmap(f, "user_feature_names", (int32_t)nuf,
                    &o->user_features, err);
    if (st != MFM_OK) return st;
    sp->features = o->user_features;
    sp->from_features = fm_feats;
    sp->features_ctx = o;
  }
  return MFM_OK;
}

/* The model file of a folder: model.moonfm, else the only *.moonfm; or
   dir itself when it is a file. */
static mfm_status find_file(const char *dir, char *path, size_t cap,
                            mfm_err *err) {
  struct stat sb;
  if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) {
    snprintf(path, cap, "%s", dir);
    return MFM_OK;
  }
  snprintf(path, cap, "%s/model.moonfm", dir);
  if (stat(path, &sb) == 0) return MFM_OK;
  DIR *d = opendir(dir);
  if (!d)
    return mfm_err_set(err, MFM_EIO, "%s: cannot open the model folder (is "
                       "the model unpacked there?)", dir);
  int found = 0;
  /* What is there instead, for the message: an archive not unpacked, a
     model one folder down, or any entry. */
  char tgz[256] = "", sub[256] = "", any[256] = "";
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *nm = e->d_name;
    size_t l = strlen(nm);
    if (l > 7 && strcmp(nm + l - 7, ".moonfm") == 0 &&
        strncmp(nm, ".moonfm-tmp-", 12) != 0 &&
        strncmp(nm, "checkpoint-", 11) != 0) {
      if (found++ == 0) snprintf(path, cap, "%s/%s", dir, nm);
    } else if (nm[0] != '.') {
      if (!any[0]) snprintf(any, sizeof any, "%s", nm);
      if (l > 7 && strcmp(nm + l - 7, ".tar.gz") == 0)
        snprintf(tgz, sizeof tgz, "%s", nm);
      char in[4096];
      snprintf(in, sizeof in, "%s/%s/model.moonfm", dir, nm);
      if (!sub[0] && stat(in, &sb) == 0) snprintf(sub, sizeof sub, "%s", nm);
    }
  }
  closedir(d);
  if (found == 1) return MFM_OK;
  if (found == 0 && tgz[0])
    return mfm_err_set(err, MFM_EIO, "%s: no model file (model.moonfm) in "
                       "the model folder, but an archive, %s; SageMaker "
                       "unpacks it there; to serve locally, unpack it "
                       "(tar -xzf %s)", dir, tgz, tgz);
  if (found == 0 && sub[0])
    return mfm_err_set(err, MFM_EIO, "%s: no model file (model.moonfm) in "
                       "the model folder, but one in %s/; point the model "
                       "folder there, or move the file up", dir, sub);
  if (found == 0)
    return mfm_err_set(err, MFM_EIO, "%s: no model file (model.moonfm) in "
                       "the model folder (%s%s); did training save one?",
                       dir, any[0] ? "it holds e.g. " : "it is empty", any);
  return mfm_err_set(err, MFM_EIO, "%s: %d .moonfm files and no "
                     "model.moonfm; cannot tell which to serve", dir, found);
}

mfm_status mfm_serve_model_load(const char *dir, mfm_serve_model **out,
                                mfm_err *err) {
  char path[4096];
  mfm_status st;
  json_t *h = NULL;
  *out = NULL;
  owned *o = mfm_calloc(1, sizeof *o);
  if (!o) return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
  st = find_file(dir, path, sizeof path, err);
  if (st != MFM_OK) goto fail;
  st = mfm_mfile_open(path, MFM_MFILE_MAP, &o->file, err);
  if (st != MFM_OK) goto fail;
  if (mfm_mfile_flags(o->file) & MFM_MFILE_CHECKPOINT) {
    st = mfm_err_set(err, MFM_EFORMAT, "%s: this is a checkpoint, not a "
                     "model", path);
    goto fail;
  }
  size_t hl;
  const char *ht = mfm_mfile_header(o->file, &hl);
  json_error_t je;
  int oom;
  h = mfm_serve_json_load(ht, hl, &je, &oom);
  if (oom) {
    st = mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
    goto fail;
  }
  const char *kind = h ? json_string_value(json_object_get(h, "kind")) : NULL;
  if (!h && json_error_code(&je) == json_error_out_of_memory) {
    st = mfm_err_set(err, MFM_ENOMEM, "%s: out of memory reading the header",
                     path);
    goto fail;
  }
  if (!kind) {
    st = mfm_err_set(err, MFM_EFORMAT, "%s: the header is not JSON with a "
                     "string 'kind'", path);
    goto fail;
  }
  mfm_serve_parts p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  if (strcmp(kind, "fm") == 0 &&
      mfm_mfile_find(o->file, "user_embeddings") >= 0) {
    st = load_fm(o, h, &p, err);
    if (st != MFM_OK) goto fail;
  } else {
    mfm_mfile_names names = mfm_mfile_names_default();
    st = mfm_mfile_factors(o->file, &names, &p.factors, err);
    if (st != MFM_OK) goto fail;
    json_t *jn = json_object_get(h, "n_users");
    json_t *ji = json_object_get(h, "n_items");
    if (json_is_number(jn) && json_is_number(ji) &&
        (json_number_value(jn) != p.factors.n_users ||
         json_number_value(ji) != p.factors.n_items)) {
      st = mfm_err_set(err, MFM_EFORMAT, "%s: the header says %g users x "
                       "%g items but the factors are %d x %d", path,
                       json_number_value(jn), json_number_value(ji),
                       (int)p.factors.n_users, (int)p.factors.n_items);
      goto fail;
    }
    json_t *sib = json_object_get(json_object_get(h, "params"),
                                  "score_item_bias");
    if (json_is_false(sib) ||
        (json_is_number(sib) && json_number_value(sib) == 0))
      p.factors.item_bias = NULL;
  }
  st = load_idmap(o->file, "users", p.factors.n_users, &o->users, err);
  if (st != MFM_OK) goto fail;
  st = load_idmap(o->file, "items", p.factors.n_items, &o->items, err);
  if (st != MFM_OK) goto fail;
  int has_seen;
  st = load_seen(o->file, p.factors.n_users, p.factors.n_items, &o->seen,
                 &has_seen, err);
  if (st != MFM_OK) goto fail;
  p.users = o->users;
  p.items = o->items;
  p.seen = has_seen ? &o->seen : NULL;
  if (strcmp(kind, "als") == 0) {
    st = load_als(o, h, &p.factors, err);
    if (st != MFM_OK) goto fail;
    if (o->als) {
      p.fold_in = als_fold;
      p.fold_in_ctx = o;
    }
  }
  mfm_serve_model *m;
  st = mfm_serve_model_new(&p, &m, err);
  if (st != MFM_OK) goto fail;
  m->owned = o;
  json_decref(h);
  *out = m;
  return MFM_OK;
fail:
  json_decref(h);
  owned_free(o);
  return st;
}
