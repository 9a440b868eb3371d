/* core.evaluate, core.recommend, core.score: evaluation and top-k on any
   model (through its "__mfm_scorer").  Positions are 1-based in Lua. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmfm.h"

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Interactions at argument i: a moonfm.Interactions, or a plain table
   {n_users = , n_items = , {items of user 1}, {items of user 2}, ...}
   with 1-based item positions (small cases, tests).  The CSR of a table
   lives in a userdata pushed on the stack. */
static const mfm_csr *check_csr(lua_State *L, int i, const char *what) {
  i = lua_absindex(L, i);
  if (lua_type(L, i) != LUA_TTABLE) return lmfm_checkinteractions(L, i);
  lua_Integer nu = lmfm_optint(L, i, "n_users", luaL_len(L, i));
  lua_Integer ni = lmfm_optint(L, i, "n_items", 0);
  lua_Integer rows = luaL_len(L, i);
  if (nu < rows || nu > INT32_MAX || ni < 0 || ni > INT32_MAX)
    luaL_error(L, "%s: bad n_users or n_items", what);
  int64_t nnz = 0;
  for (lua_Integer r = 1; r <= rows; r++) {
    if (lua_geti(L, i, r) != LUA_TTABLE)
      luaL_error(L, "%s: row %d is not a table", what, (int)r);
    nnz += luaL_len(L, -1);
    lua_pop(L, 1);
  }
  size_t sz = sizeof(mfm_csr) + sizeof(int64_t) * (size_t)(nu + 1) +
              sizeof(int32_t) * (size_t)(nnz + 1);
  mfm_csr *a = lua_newuserdatauv(L, sz, 0);
  a->indptr = (int64_t *)(a + 1);
  a->indices = (int32_t *)(a->indptr + nu + 1);
  a->data = NULL;
  a->n_rows = (int32_t)nu;
  a->n_cols = (int32_t)ni;
  int64_t t = 0;
  a->indptr[0] = 0;
  for (lua_Integer r = 1; r <= nu; r++) {
    int64_t start = t;
    if (r <= rows) {
      lua_geti(L, i, r);
      lua_Integer len = luaL_len(L, -1);
      for (lua_Integer c = 1; c <= len; c++) {
        lua_geti(L, -1, c);
        int isnum;
        lua_Integer j = lua_tointegerx(L, -1, &isnum);
        if (!isnum || j < 1 || j > ni)
          luaL_error(L, "%s: row %d entry %d must be an item in [1, %d]",
                     what, (int)r, (int)c, (int)ni);
        a->indices[t++] = (int32_t)(j - 1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      qsort(a->indices + start, (size_t)(t - start), sizeof(int32_t),
            cmp_i32);
      int64_t w = start; /* unique */
      for (int64_t s = start; s < t; s++)
        if (s == start || a->indices[s] != a->indices[w - 1])
          a->indices[w++] = a->indices[s];
      t = w;
    }
    a->indptr[r] = t;
  }
  a->nnz = t;
  return a;
}

/* Parses "name@k" or "name". */
static mfm_metric parse_metric(lua_State *L, const char *s, int32_t *k) {
  char name[32];
  const char *at = strchr(s, '@');
  size_t n = at ? (size_t)(at - s) : strlen(s);
  mfm_metric m = 0;
  *k = 0;
  if (n < sizeof name) {
    memcpy(name, s, n);
    name[n] = 0;
    m = mfm_metric_parse(name);
  }
  if (!m) luaL_error(L, "evaluate: unknown metric '%s' (precision@K, "
                     "recall@K, ndcg@K, map@K, hit_rate@K, coverage@K, mrr, "
                     "auc)", s);
  if (mfm_metric_uses_k(m)) {
    char *end;
    long v = at ? strtol(at + 1, &end, 10) : 0;
    if (!at || *end || v < 1 || v > INT32_MAX)
      luaL_error(L, "evaluate: metric '%s' needs a cut-off, e.g. '%s@10'", s,
                 name);
    *k = (int32_t)v;
  } else if (at) {
    luaL_error(L, "evaluate: metric '%s' takes no cut-off; use '%s'", s,
               name);
  }
  return m;
}

/* core.evaluate(model, test, {metrics = {"precision@10", "auc", ...},
   exclude = train, include_seen = false, item_bias = true,
   per_user = false, threads = 0, block = 0}) -> table: the means by
   column name, counts = {users, skipped_users, ..., model_users,
   model_items, defined = {column = users in its mean}}, per_user */
static int l_evaluate(lua_State *L) {
  mfm_factors f;
  lmfm_checkfactors(L, 1, &f);
  const mfm_csr *test = check_csr(L, 2, "evaluate: test");
  luaL_checktype(L, 3, LUA_TTABLE);
  mfm_eval_params p = mfm_eval_params_default();
  if (lua_getfield(L, 3, "metrics") != LUA_TTABLE)
    return luaL_error(L, "evaluate: option 'metrics' must be a list of "
                      "metric names");
  int mt = lua_gettop(L);
  lua_Integer nm = luaL_len(L, mt);
  if (nm < 1 || nm > MFM_EVAL_MAX_COLUMNS)
    return luaL_error(L, "evaluate: 'metrics' must list 1 to %d metrics",
                      MFM_EVAL_MAX_COLUMNS);
  for (lua_Integer c = 1; c <= nm; c++) {
    lua_geti(L, mt, c);
    const char *s = lua_tostring(L, -1);
    if (!s) return luaL_error(L, "evaluate: metric %d is not a string", (int)c);
    p.metric[c - 1] = parse_metric(L, s, &p.k[c - 1]);
    lua_pop(L, 1);
  }
  p.n_columns = (int)nm;
  p.include_seen = lmfm_optbool(L, 3, "include_seen", 0);
  p.item_bias = lmfm_optbool(L, 3, "item_bias", 1);
  int per_user = lmfm_optbool(L, 3, "per_user", 0);
  p.threads = (int)lmfm_optint(L, 3, "threads", 0);
  lua_Integer block = lmfm_optint(L, 3, "block", 0);
  if (block < 0 || block > INT32_MAX)
    return luaL_error(L, "evaluate: option 'block' must be >= 0");
  p.block = (int32_t)block;
  const mfm_csr *exclude = NULL;
  if (lua_getfield(L, 3, "exclude") != LUA_TNIL)
    exclude = check_csr(L, -1, "evaluate: exclude");
  int32_t nk = test->n_rows < f.n_users ? test->n_rows : f.n_users;
  double *pu = NULL;
  if (per_user)
    pu = lua_newuserdatauv(L, sizeof(double) * ((size_t)nk * nm + 1), 0);
  mfm_eval_result r;
  mfm_err err;
  mfm_status st = mfm_eval_run(&f, test, exclude, &p, &r, pu, &err);
  if (st == MFM_ECANCELED) return lmfm_pushfail(L, &err);
  if (st != MFM_OK) return lmfm_raise(L, "evaluate", st, &err);

  lua_createtable(L, 0, (int)nm + 2);
  int res = lua_gettop(L);
  for (lua_Integer c = 1; c <= nm; c++) {
    lua_geti(L, mt, c);
    lua_pushnumber(L, r.mean[c - 1]);
    lua_settable(L, res);
  }
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, r.n_users);
  lua_setfield(L, -2, "users");
  lua_pushinteger(L, r.n_skipped);
  lua_setfield(L, -2, "skipped_users");
  lua_pushinteger(L, r.n_unknown_users);
  lua_setfield(L, -2, "unknown_users");
  lua_pushinteger(L, r.n_unknown_user_items);
  lua_setfield(L, -2, "unknown_user_items");
  lua_pushinteger(L, r.n_unknown_items);
  lua_setfield(L, -2, "unknown_items");
  lua_pushinteger(L, r.n_test_excluded);
  lua_setfield(L, -2, "excluded_test_items");
  lua_pushinteger(L, r.n_positives);
  lua_setfield(L, -2, "test_items");
  /* What combining results of several hosts needs (moonfm.evaluate):
     the model's sizes and the users behind each mean. */
  lua_pushinteger(L, f.n_users);
  lua_setfield(L, -2, "model_users");
  lua_pushinteger(L, f.n_items);
  lua_setfield(L, -2, "model_items");
  lua_createtable(L, 0, (int)nm);
  for (lua_Integer c = 1; c <= nm; c++) {
    lua_geti(L, mt, c);
    lua_pushinteger(L, r.n_defined[c - 1]);
    lua_settable(L, -3);
  }
  lua_setfield(L, -2, "defined");
  lua_setfield(L, res, "counts");
  if (per_user) {
    /* Only evaluated users: per_user.user[i] is the 1-based user and
       per_user[metric][i] its value (NaN where undefined). */
    lua_createtable(L, 0, (int)nm + 1);
    int put = lua_gettop(L);
    lua_createtable(L, (int)r.n_users, 0);
    lua_Integer n = 0;
    for (int32_t u = 0; u < nk; u++) {
      int any = 0;
      for (int c = 0; c < (int)nm; c++) any |= !isnan(pu[(size_t)u * nm + c]);
      /* A user is evaluated iff it has test items; NaN-only rows (AUC
         without negatives, coverage) are rare, so check the CSR too. */
      if (!any) {
        int64_t a = test->indptr[u], z = test->indptr[u + 1];
        int has = 0;
        for (int64_t t = a; t < z && !has; t++)
          has = test->indices[t] < f.n_items &&
                !(exclude && !p.include_seen &&
                  mfm_csr_has(exclude, u, test->indices[t]));
        if (!has) continue;
      }
      lua_pushinteger(L, u + 1);
      lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, put, "user");
    for (int c = 0; c < (int)nm; c++) {
      lua_getfield(L, put, "user");
      lua_createtable(L, (int)n, 0);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_Integer u = lua_tointeger(L, -1) - 1;
        lua_pop(L, 1);
        lua_pushnumber(L, pu[(size_t)u * nm + c]);
        lua_rawseti(L, -2, i);
      }
      lua_geti(L, mt, c + 1);
      lua_insert(L, -2);
      lua_settable(L, put);
      lua_pop(L, 1);
    }
    lua_setfield(L, res, "per_user");
  }
  return 1;
}

/* Reads a list of 1-based positions at argument i into a userdata array
   of 0-based ones (pushed); checks range [1, n]. */
static int32_t *check_positions(lua_State *L, int i, int32_t n,
                                 const char *what, int32_t *count) {
  luaL_checktype(L, i, LUA_TTABLE);
  lua_Integer len = luaL_len(L, i);
  if (len > INT32_MAX) luaL_argerror(L, i, "list too long");
  int32_t *a = lua_newuserdatauv(L, sizeof(int32_t) * ((size_t)len + 1), 0);
  for (lua_Integer t = 1; t <= len; t++) {
    lua_geti(L, i, t);
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || v < 1 || v > n)
      luaL_argerror(L, i, lua_pushfstring(L, "%s %d: expected an integer in "
                                          "[1, %d]", what, (int)t, (int)n));
    a[t - 1] = (int32_t)(v - 1);
  }
  *count = (int32_t)len;
  return a;
}

/* core.recommend(model, users | nil, k [, {exclude = , include_seen = ,
   item_bias = , threads = }]) -> items, scores: one list per user of
   1-based items (best first) and their scores. */
static int l_recommend(lua_State *L) {
  mfm_factors f;
  lmfm_checkfactors(L, 1, &f);
  lua_Integer k = luaL_checkinteger(L, 3);
  luaL_argcheck(L, k >= 1 && k <= INT32_MAX, 3, "k must be >= 1");
  int o = lua_istable(L, 4) ? 4 : 0;
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  int32_t n;
  int32_t *users;
  if (lua_isnil(L, 2)) {
    n = f.n_users;
    users = lua_newuserdatauv(L, sizeof(int32_t) * ((size_t)n + 1), 0);
    for (int32_t u = 0; u < n; u++) users[u] = u;
  } else {
    users = check_positions(L, 2, f.n_users, "user", &n);
  }
  mfm_topk_params p = mfm_topk_params_default();
  const mfm_csr *exclude = NULL;
  if (o) {
    p.include_seen = lmfm_optbool(L, o, "include_seen", 0);
    p.item_bias = lmfm_optbool(L, o, "item_bias", 1);
    p.threads = (int)lmfm_optint(L, o, "threads", 0);
    if (lua_getfield(L, o, "exclude") != LUA_TNIL)
      exclude = check_csr(L, -1, "recommend: exclude");
  }
  size_t total = (size_t)n * (size_t)k;
  int32_t *items = lua_newuserdatauv(L, sizeof(int32_t) * (total + 1), 0);
  float *scores = lua_newuserdatauv(L, sizeof(float) * (total + 1), 0);
  mfm_err err;
  mfm_status st = mfm_topk_recommend(&f, users, n, (int32_t)k, exclude, &p,
                                     items, scores, &err);
  if (st == MFM_ECANCELED) return lmfm_pushfail(L, &err);
  if (st != MFM_OK) return lmfm_raise(L, "recommend", st, &err);
  lua_createtable(L, n, 0);
  lua_createtable(L, n, 0);
  for (int32_t i = 0; i < n; i++) {
    lua_createtable(L, (int)k, 0);
    lua_createtable(L, (int)k, 0);
    for (lua_Integer r = 0; r < k; r++) {
      size_t x = (size_t)i * k + r;
      if (items[x] < 0) break;
      lua_pushinteger(L, items[x] + 1);
      lua_rawseti(L, -3, r + 1);
      lua_pushnumber(L, scores[x]);
      lua_rawseti(L, -2, r + 1);
    }
    lua_rawseti(L, -3, i + 1);
    lua_rawseti(L, -3, i + 1);
  }
  return 2;
}

/* core.score(model, users, items) -> scores of the pairs (1-based). */
static int l_score(lua_State *L) {
  mfm_factors f;
  lmfm_checkfactors(L, 1, &f);
  int32_t nu, ni;
  int32_t *u = check_positions(L, 2, f.n_users, "user", &nu);
  int32_t *it = check_positions(L, 3, f.n_items, "item", &ni);
  luaL_argcheck(L, nu == ni, 3, "users and items must have the same length");
  float *out = lua_newuserdatauv(L, sizeof(float) * ((size_t)nu + 1), 0);
  mfm_err err;
  mfm_status st = mfm_factors_score(&f, u, it, nu, out, &err);
  if (st != MFM_OK) return lmfm_raise(L, "score", st, &err);
  lua_createtable(L, nu, 0);
  for (int32_t i = 0; i < nu; i++) {
    lua_pushnumber(L, out[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static const luaL_Reg eval_funcs[] = {
  {"evaluate", l_evaluate},
  {"recommend", l_recommend},
  {"score", l_score},
  {NULL, NULL}
};

void lmfm_open_eval(lua_State *L) { luaL_setfuncs(L, eval_funcs, 0); }
