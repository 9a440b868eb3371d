/* moonfm.FM: the hybrid factorization model (core/include/moonfm/fm.h),
   and moonfm.CSR, a minimal sparse matrix built from Lua tables (tests,
   small feature matrices).  Every function taking interactions or
   features accepts a moonfm.CSR or a moonfm.Interactions. */
#include <stdlib.h>
#include <string.h>

#include "lmfm.h"

#define LMFM_FM "moonfm.FM"
#define LMFM_CSR "moonfm.CSR"

/* ---- moonfm.CSR --------------------------------------------------------- */

static int csr_gc(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_CSR);
  mfm_csr_free(b->p);
  b->p = NULL;
  return 0;
}

/* Argument i as a CSR: a moonfm.CSR or a moonfm.Interactions. */
static const mfm_csr *checkcsr(lua_State *L, int i) {
  if (luaL_testudata(L, i, LMFM_CSR)) return lmfm_checkopen(L, i, LMFM_CSR);
  if (luaL_testudata(L, i, LMFM_INTERACTIONS))
    return lmfm_checkinteractions(L, i);
  luaL_typeerror(L, i, "moonfm.Interactions or moonfm.CSR");
  return NULL;
}

static int32_t *int_array(lua_State *L, int t, int64_t n, int32_t lo,
                          int32_t hi, const char *what, int argn) {
  int32_t *a = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *a, 0);
  for (int64_t q = 0; q < n; q++) {
    int isnum;
    lua_geti(L, t, q + 1);
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || v < lo + 1 || v > (lua_Integer)hi)
      luaL_argerror(L, argn,
                    lua_pushfstring(L, "%s %d must be an integer in 1..%d",
                                    what, (int)(q + 1), (int)hi));
    a[q] = (int32_t)(v - 1);
  }
  return a; /* anchored on the stack until the function returns */
}

static float *num_array(lua_State *L, int t, int64_t n, int argn) {
  float *a = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *a, 0);
  for (int64_t q = 0; q < n; q++) {
    int isnum;
    lua_geti(L, t, q + 1);
    a[q] = (float)lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum)
      luaL_argerror(L, argn, lua_pushfstring(L, "entry %d must be a number",
                                             (int)(q + 1)));
  }
  return a;
}

/* csr(n_rows, n_cols, rows, cols [, vals]) -> moonfm.CSR; rows and cols
   are 1-based; duplicates are summed. */
static int fm_csr(lua_State *L) {
  lua_Integer nr = luaL_checkinteger(L, 1), nc = luaL_checkinteger(L, 2);
  lua_settop(L, 5); /* scratch arrays go above the arguments */
  luaL_argcheck(L, nr >= 0 && nr <= INT32_MAX, 1, "must be in 0..2^31-1");
  luaL_argcheck(L, nc >= 0 && nc <= INT32_MAX, 2, "must be in 0..2^31-1");
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  int64_t n = (int64_t)luaL_len(L, 3);
  luaL_argcheck(L, (int64_t)luaL_len(L, 4) == n, 4,
                "must have as many entries as rows");
  int32_t *r = int_array(L, 3, n, 0, (int32_t)nr, "row", 3);
  int32_t *c = int_array(L, 4, n, 0, (int32_t)nc, "column", 4);
  float *v = NULL;
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    luaL_argcheck(L, (int64_t)luaL_len(L, 5) == n, 5,
                  "must have as many entries as rows");
    v = num_array(L, 5, n, 5);
  }
  lmfm_box *b = lmfm_newbox(L, LMFM_CSR, 0);
  mfm_err err;
  mfm_csr *a;
  mfm_status st = mfm_csr_from_coo((int32_t)nr, (int32_t)nc, n, r, c, v, &a,
                                   &err);
  if (st != MFM_OK) return lmfm_raise(L, "csr", st, &err);
  b->p = a;
  return 1;
}

/* x:shape() -> n_rows, n_cols, nnz */
static int csr_shape(lua_State *L) {
  const mfm_csr *a = lmfm_checkopen(L, 1, LMFM_CSR);
  lua_pushinteger(L, a->n_rows);
  lua_pushinteger(L, a->n_cols);
  lua_pushinteger(L, (lua_Integer)a->nnz);
  return 3;
}

/* fm_data_shape(x) -> n_rows, n_cols, nnz of a CSR or Interactions. */
static int fm_data_shape(lua_State *L) {
  const mfm_csr *a = checkcsr(L, 1);
  lua_pushinteger(L, a->n_rows);
  lua_pushinteger(L, a->n_cols);
  lua_pushinteger(L, (lua_Integer)a->nnz);
  return 3;
}

static int csr_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_CSR);
  const mfm_csr *a = b->p;
  if (!a) lua_pushstring(L, "moonfm.CSR (closed)");
  else
    lua_pushfstring(L, "moonfm.CSR (%d x %d, %I entries)", (int)a->n_rows,
                    (int)a->n_cols, (lua_Integer)a->nnz);
  return 1;
}

/* ---- moonfm.FM ---------------------------------------------------------- */

static mfm_fm *checkfm(lua_State *L) { return lmfm_checkopen(L, 1, LMFM_FM); }

static int fm_gc(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_FM);
  mfm_fm_free(b->p);
  b->p = NULL;
  return 0;
}

static const char *const fm_options[] = {
  "factors", "loss", "schedule", "learning_rate", "rho", "epsilon",
  "user_alpha", "item_alpha", "max_sampled", "kos_k", "kos_n", "seed",
  "threads", "user_identity", "item_identity", "normalize",
  "logistic_threshold", "score_item_bias", "user_features", "item_features",
  "n_user_features", "n_item_features", NULL
};

static void check_keys(lua_State *L, int t, const char *const *known,
                       const char *op) {
  if (lua_isnoneornil(L, t)) return;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (int q = 0; known[q]; q++) ok |= strcmp(k, known[q]) == 0;
    }
    if (!ok) {
      lua_pushvalue(L, -2);
      luaL_error(L, "%s: unknown option '%s'", op,
                 luaL_tolstring(L, -1, NULL));
    }
    lua_pop(L, 1);
  }
}

/* Optional CSR field of table t, or NULL. */
static const mfm_csr *optcsr(lua_State *L, int t, const char *key) {
  if (lua_isnoneornil(L, t)) return NULL;
  if (lua_getfield(L, t, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  const mfm_csr *a = checkcsr(L, lua_gettop(L));
  lua_pop(L, 1); /* still referenced by the option table */
  return a;
}

/* fm_new(n_users, n_items [, opts]) -> moonfm.FM */
static int fm_new(lua_State *L) {
  lua_Integer nu = luaL_checkinteger(L, 1), ni = luaL_checkinteger(L, 2);
  lua_settop(L, 3); /* scratch arrays go above the arguments */
  luaL_argcheck(L, nu >= 0 && nu <= INT32_MAX, 1, "must be in 0..2^31-1");
  luaL_argcheck(L, ni >= 1 && ni <= INT32_MAX, 2, "must be in 1..2^31-1");
  int t = 3;
  check_keys(L, t, fm_options, "fm_new");
  mfm_fm_params p = mfm_fm_params_default();
  p.factors = (int32_t)lmfm_optint(L, t, "factors", p.factors);
  const char *loss = lmfm_optstr(L, t, "loss", "warp");
  const char *sched = lmfm_optstr(L, t, "schedule", "adagrad");
  int l = mfm_fm_loss_parse(loss), s = mfm_fm_schedule_parse(sched);
  if (l < 0)
    return luaL_error(L, "fm_new: option 'loss' must be logistic, bpr, warp "
                      "or warp-kos, got '%s'", loss);
  if (s < 0)
    return luaL_error(L, "fm_new: option 'schedule' must be adagrad or "
                      "adadelta, got '%s'", sched);
  p.loss = (mfm_fm_loss)l;
  p.schedule = (mfm_fm_schedule)s;
  p.learning_rate = (float)lmfm_optnum(L, t, "learning_rate", p.learning_rate);
  p.rho = (float)lmfm_optnum(L, t, "rho", p.rho);
  p.epsilon = (float)lmfm_optnum(L, t, "epsilon", p.epsilon);
  p.user_alpha = (float)lmfm_optnum(L, t, "user_alpha", p.user_alpha);
  p.item_alpha = (float)lmfm_optnum(L, t, "item_alpha", p.item_alpha);
  p.max_sampled = (int32_t)lmfm_optint(L, t, "max_sampled", p.max_sampled);
  p.kos_k = (int32_t)lmfm_optint(L, t, "kos_k", p.kos_k);
  p.kos_n = (int32_t)lmfm_optint(L, t, "kos_n", p.kos_n);
  p.seed = (uint64_t)lmfm_optint(L, t, "seed", (lua_Integer)p.seed);
  p.threads = (int32_t)lmfm_optint(L, t, "threads", p.threads);
  p.user_identity = lmfm_optbool(L, t, "user_identity", 1);
  p.item_identity = lmfm_optbool(L, t, "item_identity", 1);
  p.normalize = lmfm_optbool(L, t, "normalize", 1);
  p.logistic_threshold =
      (float)lmfm_optnum(L, t, "logistic_threshold", p.logistic_threshold);
  p.score_item_bias = lmfm_optbool(L, t, "score_item_bias", 1);
  const char *why = mfm_fm_params_check(&p);
  if (why) return luaL_error(L, "fm_new: %s", why);
  const mfm_csr *uf = optcsr(L, t, "user_features");
  const mfm_csr *itf = optcsr(L, t, "item_features");
  lua_Integer nuf = lmfm_optint(L, t, "n_user_features", uf ? uf->n_cols : 0);
  lua_Integer nif = lmfm_optint(L, t, "n_item_features", itf ? itf->n_cols : 0);
  if (uf && (uf->n_rows > nu || uf->n_cols > nuf))
    return luaL_error(L, "fm_new: user_features are %d x %d, more than %d "
                      "users x %d features", (int)uf->n_rows,
                      (int)uf->n_cols, (int)nu, (int)nuf);
  if (itf && (itf->n_rows > ni || itf->n_cols > nif))
    return luaL_error(L, "fm_new: item_features are %d x %d, more than %d "
                      "items x %d features", (int)itf->n_rows,
                      (int)itf->n_cols, (int)ni, (int)nif);
  if (nuf < 0 || nif < 0 || nuf > INT32_MAX || nif > INT32_MAX)
    return luaL_error(L, "fm_new: feature counts must be >= 0");
  lmfm_box *b = lmfm_newbox(L, LMFM_FM, 0);
  mfm_err err;
  mfm_fm *m;
  mfm_status st = mfm_fm_new((int32_t)nu, (int32_t)ni, (int32_t)nuf,
                             (int32_t)nif, &p, &m, &err);
  if (st != MFM_OK) return lmfm_raise(L, "fm_new", st, &err);
  b->p = m; /* from here, __gc owns it */
  if (uf && (st = mfm_fm_set_user_features(m, uf, &err)) != MFM_OK)
    return lmfm_raise(L, "fm_new", st, &err);
  if (itf && (st = mfm_fm_set_item_features(m, itf, &err)) != MFM_OK)
    return lmfm_raise(L, "fm_new", st, &err);
  return 1;
}

static const char *const fit_options[] = {"epochs", "threads", "weights",
                                          NULL};

/* m:fit(interactions [, {epochs=1, threads=, weights=}]) -> report |
   fail, msg (stopped) */
static int fm_fit(lua_State *L) {
  mfm_fm *m = checkfm(L);
  lua_settop(L, 3); /* scratch arrays go above the arguments */
  const mfm_csr *x = checkcsr(L, 2);
  check_keys(L, 3, fit_options, "fit");
  lua_Integer epochs = lmfm_optint(L, 3, "epochs", 1);
  lua_Integer threads = lmfm_optint(L, 3, "threads", 0);
  luaL_argcheck(L, epochs >= 0 && epochs <= INT32_MAX, 3,
                "epochs must be >= 0");
  const mfm_csr *w = optcsr(L, 3, "weights");
  mfm_err err;
  mfm_fit_report rep;
  mfm_status st = mfm_fm_fit(m, x, w, (int)epochs, (int)threads, &rep, &err);
  if (st == MFM_ECANCELED) return lmfm_pushfail(L, &err);
  if (st != MFM_OK) return lmfm_raise(L, "fit", st, &err);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, rep.epochs);
  lua_setfield(L, -2, "epochs");
  lua_pushnumber(L, rep.loss);
  lua_setfield(L, -2, "loss");
  lua_pushnumber(L, rep.seconds);
  lua_setfield(L, -2, "seconds");
  lua_pushinteger(L, (lua_Integer)rep.samples);
  lua_setfield(L, -2, "samples");
  lua_pushinteger(L, (lua_Integer)rep.negatives);
  lua_setfield(L, -2, "negatives");
  return 1;
}

static void push_floats(lua_State *L, const float *a, int64_t n) {
  lua_createtable(L, (int)n, 0);
  for (int64_t q = 0; q < n; q++) {
    lua_pushnumber(L, a[q]);
    lua_rawseti(L, -2, q + 1);
  }
}

/* m:score(users, items) -> {score...}; 1-based indices, equal lengths. */
static int fm_score(lua_State *L) {
  mfm_fm *m = checkfm(L);
  lua_settop(L, 3); /* scratch arrays go above the arguments */
  int32_t nu, ni;
  mfm_fm_shape(m, &nu, &ni, NULL, NULL);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  int64_t n = (int64_t)luaL_len(L, 2);
  luaL_argcheck(L, (int64_t)luaL_len(L, 3) == n, 3,
                "must have as many entries as users");
  int32_t *u = int_array(L, 2, n, 0, nu, "user", 2);
  int32_t *i = int_array(L, 3, n, 0, ni, "item", 3);
  float *out = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *out, 0);
  mfm_err err;
  mfm_status st = mfm_fm_score(m, n, u, i, out, &err);
  if (st != MFM_OK) return lmfm_raise(L, "score", st, &err);
  push_floats(L, out, n);
  return 1;
}

/* m:score_vector(vec, bias, items) -> {score...}: a folded-in user. */
static int fm_score_vector(lua_State *L) {
  mfm_fm *m = checkfm(L);
  lua_settop(L, 4); /* scratch arrays go above the arguments */
  int32_t ni, k = mfm_fm_get_params(m)->factors;
  mfm_fm_shape(m, NULL, &ni, NULL, NULL);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_argcheck(L, luaL_len(L, 2) == k, 2, "must have 'factors' entries");
  float bias = (float)luaL_checknumber(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  int64_t n = (int64_t)luaL_len(L, 4);
  float *v = num_array(L, 2, k, 2);
  int32_t *i = int_array(L, 4, n, 0, ni, "item", 4);
  float *out = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *out, 0);
  mfm_err err;
  mfm_status st = mfm_fm_score_rep(m, v, bias, n, i, out, &err);
  if (st != MFM_OK) return lmfm_raise(L, "score_vector", st, &err);
  push_floats(L, out, n);
  return 1;
}

static const char *const foldin_options[] = {"epochs", "learning_rate",
                                             "alpha", "seed", NULL};

/* m:fold_in(items [, weights [, {epochs=, learning_rate=, alpha=,
   seed=}]]) -> vec, bias */
static int fm_fold_in(lua_State *L) {
  mfm_fm *m = checkfm(L);
  lua_settop(L, 4); /* scratch arrays go above the arguments */
  int32_t ni, k = mfm_fm_get_params(m)->factors;
  mfm_fm_shape(m, NULL, &ni, NULL, NULL);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t n = (int64_t)luaL_len(L, 2);
  int32_t *items = int_array(L, 2, n, 0, ni, "item", 2);
  float *w = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_argcheck(L, (int64_t)luaL_len(L, 3) == n, 3,
                  "must have as many entries as items");
    w = num_array(L, 3, n, 3);
  }
  check_keys(L, 4, foldin_options, "fold_in");
  mfm_fm_foldin o = mfm_fm_foldin_default(m);
  o.epochs = (int32_t)lmfm_optint(L, 4, "epochs", o.epochs);
  o.learning_rate = (float)lmfm_optnum(L, 4, "learning_rate", o.learning_rate);
  o.alpha = (float)lmfm_optnum(L, 4, "alpha", o.alpha);
  o.seed = (uint64_t)lmfm_optint(L, 4, "seed", (lua_Integer)o.seed);
  float *rep = lua_newuserdatauv(L, (size_t)k * sizeof *rep, 0), bias;
  mfm_err err;
  mfm_status st = mfm_fm_fold_in(m, n, items, w, &o, rep, &bias, &err);
  if (st != MFM_OK) return lmfm_raise(L, "fold_in", st, &err);
  push_floats(L, rep, k);
  lua_pushnumber(L, bias);
  return 2;
}

/* m:fold_in_features(features [, weights]) -> vec, bias (1-based user
   feature indices). */
static int fm_fold_in_features(lua_State *L) {
  mfm_fm *m = checkfm(L);
  lua_settop(L, 3); /* scratch arrays go above the arguments */
  int32_t nf, k = mfm_fm_get_params(m)->factors;
  mfm_fm_shape(m, NULL, NULL, &nf, NULL);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t n = (int64_t)luaL_len(L, 2);
  if (nf == 0) return luaL_error(L, "fold_in_features: the model has no "
                                 "user features (pass user_features)");
  int32_t *f = int_array(L, 2, n, 0, nf, "feature", 2);
  float *w = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_argcheck(L, (int64_t)luaL_len(L, 3) == n, 3,
                  "must have as many entries as features");
    w = num_array(L, 3, n, 3);
  }
  float *rep = lua_newuserdatauv(L, (size_t)k * sizeof *rep, 0), bias;
  mfm_err err;
  mfm_status st = mfm_fm_user_from_features(m, n, f, w, rep, &bias, &err);
  if (st != MFM_OK) return lmfm_raise(L, "fold_in_features", st, &err);
  push_floats(L, rep, k);
  lua_pushnumber(L, bias);
  return 2;
}

/* m:representations("user" | "item") -> embeddings, biases, n, k: the
   representations as little-endian float32 strings (n x k row-major, and
   n), as scoring uses them (for export). */
static int fm_representations(lua_State *L) {
  mfm_fm *m = checkfm(L);
  static const char *const sides[] = {"user", "item", NULL};
  int side = luaL_checkoption(L, 2, NULL, sides);
  mfm_factors f;
  mfm_err err;
  mfm_status st = mfm_fm_factors(m, &f, &err);
  if (st != MFM_OK) return lmfm_raise(L, "representations", st, &err);
  int64_t n = side ? f.n_items : f.n_users;
  const float *e = side ? f.item : f.user;
  const float *b = side ? f.item_bias : f.user_bias;
  lua_pushlstring(L, (const char *)e, (size_t)(n * f.k) * sizeof(float));
  if (b) {
    lua_pushlstring(L, (const char *)b, (size_t)n * sizeof(float));
  } else {
    luaL_Buffer buf;
    float *z = (float *)luaL_buffinitsize(L, &buf, (size_t)n * sizeof *z);
    memset(z, 0, (size_t)n * sizeof *z);
    luaL_pushresultsize(&buf, (size_t)n * sizeof *z);
  }
  lua_pushinteger(L, n);
  lua_pushinteger(L, f.k);
  return 4;
}

/* m:params() -> table of the hyperparameters */
static int fm_params(lua_State *L) {
  const mfm_fm_params *p = mfm_fm_get_params(checkfm(L));
  lua_createtable(L, 0, 18);
  lua_pushinteger(L, p->factors);
  lua_setfield(L, -2, "factors");
  lua_pushstring(L, mfm_fm_loss_name(p->loss));
  lua_setfield(L, -2, "loss");
  lua_pushstring(L, mfm_fm_schedule_name(p->schedule));
  lua_setfield(L, -2, "schedule");
  lua_pushnumber(L, p->learning_rate);
  lua_setfield(L, -2, "learning_rate");
  lua_pushnumber(L, p->rho);
  lua_setfield(L, -2, "rho");
  lua_pushnumber(L, p->epsilon);
  lua_setfield(L, -2, "epsilon");
  lua_pushnumber(L, p->user_alpha);
  lua_setfield(L, -2, "user_alpha");
  lua_pushnumber(L, p->item_alpha);
  lua_setfield(L, -2, "item_alpha");
  lua_pushinteger(L, p->max_sampled);
  lua_setfield(L, -2, "max_sampled");
  lua_pushinteger(L, p->kos_k);
  lua_setfield(L, -2, "kos_k");
  lua_pushinteger(L, p->kos_n);
  lua_setfield(L, -2, "kos_n");
  lua_pushinteger(L, (lua_Integer)p->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, p->threads);
  lua_setfield(L, -2, "threads");
  lua_pushboolean(L, p->user_identity);
  lua_setfield(L, -2, "user_identity");
  lua_pushboolean(L, p->item_identity);
  lua_setfield(L, -2, "item_identity");
  lua_pushboolean(L, p->normalize);
  lua_setfield(L, -2, "normalize");
  lua_pushnumber(L, p->logistic_threshold);
  lua_setfield(L, -2, "logistic_threshold");
  lua_pushboolean(L, p->score_item_bias);
  lua_setfield(L, -2, "score_item_bias");
  return 1;
}

/* m:shape() -> n_users, n_items, n_user_features, n_item_features */
static int fm_shape(lua_State *L) {
  int32_t a, b, c, d;
  mfm_fm_shape(checkfm(L), &a, &b, &c, &d);
  lua_pushinteger(L, a);
  lua_pushinteger(L, b);
  lua_pushinteger(L, c);
  lua_pushinteger(L, d);
  return 4;
}

static int fm_epochs(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mfm_fm_epochs(checkfm(L)));
  return 1;
}

static int fm_set_score_item_bias(lua_State *L) {
  mfm_fm *m = checkfm(L);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  mfm_fm_set_score_item_bias(m, lua_toboolean(L, 2));
  return 0;
}

static int fm_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_FM);
  if (!b->p) {
    lua_pushstring(L, "moonfm.FM (closed)");
    return 1;
  }
  int32_t nu, ni, nuf, nif;
  mfm_fm_shape(b->p, &nu, &ni, &nuf, &nif);
  const mfm_fm_params *p = mfm_fm_get_params(b->p);
  lua_pushfstring(L, "moonfm.FM (%s, %d factors, %d users x %d items, "
                  "%d + %d features)", mfm_fm_loss_name(p->loss),
                  (int)p->factors, (int)nu, (int)ni, (int)nuf, (int)nif);
  return 1;
}

/* The scorer hooks for evaluation, top-k, serving and the model file. */
static mfm_status scorer_factors(void *model, mfm_factors *f, mfm_err *err) {
  return mfm_fm_factors(model, f, err);
}

static int scorer_arrays(void *model, mfm_array *out, int max) {
  return mfm_fm_arrays(model, out, max);
}

static const lmfm_scorer fm_scorer = {scorer_factors, scorer_arrays};

static const luaL_Reg fm_funcs[] = {
  {"csr", fm_csr},
  {"fm_data_shape", fm_data_shape},
  {"fm_new", fm_new},
  {NULL, NULL}
};

static const luaL_Reg fm_methods[] = {
  {"close", fm_gc},
  {"epochs", fm_epochs},
  {"fit", fm_fit},
  {"fold_in", fm_fold_in},
  {"fold_in_features", fm_fold_in_features},
  {"params", fm_params},
  {"representations", fm_representations},
  {"score", fm_score},
  {"score_vector", fm_score_vector},
  {"set_score_item_bias", fm_set_score_item_bias},
  {"shape", fm_shape},
  {NULL, NULL}
};

static const luaL_Reg fm_meta[] = {
  {"__index", NULL},
  {"__close", fm_gc},
  {"__gc", fm_gc},
  {"__tostring", fm_tostring},
  {NULL, NULL}
};

static const luaL_Reg csr_methods[] = {
  {"close", csr_gc},
  {"shape", csr_shape},
  {NULL, NULL}
};

static const luaL_Reg csr_meta[] = {
  {"__index", NULL},
  {"__close", csr_gc},
  {"__gc", csr_gc},
  {"__tostring", csr_tostring},
  {NULL, NULL}
};

void lmfm_open_fm(lua_State *L) {
  luaL_setfuncs(L, fm_funcs, 0);
  lmfm_newmeta(L, LMFM_FM, fm_meta, fm_methods);
  luaL_getmetatable(L, LMFM_FM);
  lua_pushlightuserdata(L, (void *)&fm_scorer);
  lua_setfield(L, -2, "__mfm_scorer");
  lua_pop(L, 1);
  lmfm_newmeta(L, LMFM_CSR, csr_meta, csr_methods);
}
