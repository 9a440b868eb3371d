/* The model a server answers from: built over caller parts, or loaded
   from a model folder (the file mapped read-only, views on its arrays). */
#include "serve_impl.h"

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "moonfm/alloc.h"
#include "moonfm/als.h"
#include "moonfm/eval.h"
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
  if (!m) return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
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
} owned;

void mfm_serve_model_free(mfm_serve_model *m) {
  if (!m) return;
  owned *o = m->owned;
  if (o) {
    mfm_idmap_free(o->users);
    mfm_idmap_free(o->items);
    mfm_als_free(o->als);
    if (o->has_lock) pthread_mutex_destroy(&o->als_lock);
    mfm_mfile_free(o->file);
    mfm_free(o);
  }
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
  if (st != MFM_OK && st != MFM_ENOMEM)
    return mfm_err_set(err, MFM_EFORMAT, "%s: id map %s: %s", path, prefix,
                       err ? err->msg : "invalid");
  return st;
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
  if (hp <= 0 || hx <= 0 || p.rows != (int64_t)nu + 1)
    return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr (i64, n_users + 1) "
                       "and seen.indices (i32) must come together", path);
  const int64_t *ip = p.data;
  const int32_t *ix = x.data;
  if (ip[0] != 0 || ip[nu] != x.rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr does not span "
                       "seen.indices", path);
  for (int32_t u = 0; u < nu; u++)
    if (ip[u + 1] < ip[u])
      return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indptr decreases at "
                         "user %d", path, (int)u);
  for (int64_t t = 0; t < x.rows; t++)
    if (ix[t] < 0 || ix[t] >= ni)
      return mfm_err_set(err, MFM_EFORMAT, "%s: seen.indices[%lld] = %d is "
                         "not an item", path, (long long)t, (int)ix[t]);
  s->n_rows = nu;
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

/* The model file of a folder: model.moonfm, else the only *.moonfm. */
static mfm_status find_file(const char *dir, char *path, size_t cap,
                            mfm_err *err) {
  struct stat sb;
  snprintf(path, cap, "%s/model.moonfm", dir);
  if (stat(path, &sb) == 0) return MFM_OK;
  DIR *d = opendir(dir);
  if (!d)
    return mfm_err_set(err, MFM_EIO, "%s: cannot open the model folder (is "
                       "the model unpacked there?)", dir);
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 7 && strcmp(e->d_name + l - 7, ".moonfm") == 0 &&
        strncmp(e->d_name, ".moonfm-tmp-", 12) != 0 &&
        strncmp(e->d_name, "checkpoint-", 11) != 0) {
      if (found++ == 0) snprintf(path, cap, "%s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  if (found == 1) return MFM_OK;
  if (found == 0)
    return mfm_err_set(err, MFM_EIO, "%s: no model file (model.moonfm) in "
                       "the model folder; did training save one?", dir);
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
  h = json_loadb(ht, hl, JSON_REJECT_DUPLICATES, &je);
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
  mfm_mfile_names names = mfm_mfile_names_default();
  if (mfm_mfile_find(o->file, names.user) < 0 &&
      mfm_mfile_find(o->file, "user_embeddings") >= 0) {
    /* The factorization model's tables: identity rows first. */
    names.user = "user_embeddings";
    names.item = "item_embeddings";
    names.user_bias = "user_biases";
    names.item_bias = "item_biases";
  }
  mfm_serve_parts p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  st = mfm_mfile_factors(o->file, &names, &p.factors, err);
  if (st != MFM_OK) goto fail;
  json_t *jn = json_object_get(h, "n_users"), *ji = json_object_get(h,
                                                                  "n_items");
  if (json_is_number(jn) && json_is_number(ji) &&
      (json_number_value(jn) != p.factors.n_users ||
       json_number_value(ji) != p.factors.n_items)) {
    st = mfm_err_set(err, MFM_EFORMAT, "%s: the header says %g users x %g "
                     "items but the factors are %d x %d (a model with side "
                     "features cannot be served yet)", path,
                     json_number_value(jn), json_number_value(ji),
                     (int)p.factors.n_users, (int)p.factors.n_items);
    goto fail;
  }
  json_t *sib = json_object_get(json_object_get(h, "params"),
                                "score_item_bias");
  if (json_is_false(sib) || (json_is_number(sib) && json_number_value(sib) ==
                                                        0))
    p.factors.item_bias = NULL;
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
  mfm_idmap_free(o->users);
  mfm_idmap_free(o->items);
  mfm_als_free(o->als);
  if (o->has_lock) pthread_mutex_destroy(&o->als_lock);
  mfm_mfile_free(o->file);
  mfm_free(o);
  return st;
}
