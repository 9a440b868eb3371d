/* moonfm.Factors: a model built from given matrices (imported embeddings,
   tests).  score(u, i) = dot(user[u], item[i]) + user_bias[u] +
   item_bias[i].  It carries "__mfm_scorer" like every model type, so
   evaluation, recommend and the model file work on it. */
#include <string.h>

#include "lmfm.h"

#define LMFM_FACTORS "moonfm.Factors"

typedef struct lfactors {
  int32_t n_users, n_items, k;
  float *user, *item, *ub, *ib;
} lfactors;

static void lfactors_free(lfactors *m) {
  if (!m) return;
  mfm_free(m->user);
  mfm_free(m->item);
  mfm_free(m->ub);
  mfm_free(m->ib);
  mfm_free(m);
}

static mfm_status scorer_factors(void *p, mfm_factors *f, mfm_err *err) {
  lfactors *m = p;
  f->n_users = m->n_users;
  f->n_items = m->n_items;
  f->k = m->k;
  f->user = m->user;
  f->item = m->item;
  f->ld_user = f->ld_item = m->k;
  f->user_bias = m->ub;
  f->item_bias = m->ib;
  return MFM_OK;
}

static void set_array(mfm_array *a, const char *name, void *data,
                      int64_t rows, int64_t cols) {
  memset(a, 0, sizeof *a);
  strncpy(a->name, name, sizeof a->name - 1);
  a->dtype = MFM_F32;
  a->rows = rows;
  a->cols = cols;
  a->data = data;
}

static int scorer_arrays(void *p, mfm_array *out, int max) {
  lfactors *m = p;
  int n = 0;
  if (n < max) set_array(&out[n++], "user_factors", m->user, m->n_users, m->k);
  if (n < max) set_array(&out[n++], "item_factors", m->item, m->n_items, m->k);
  if (m->ub && n < max) set_array(&out[n++], "user_bias", m->ub, m->n_users, 1);
  if (m->ib && n < max) set_array(&out[n++], "item_bias", m->ib, m->n_items, 1);
  return n;
}

static const lmfm_scorer factors_scorer = {scorer_factors, scorer_arrays};

/* Shape of argument i: a table of rows, or a float32 string whose row
   length is k (0 when unknown yet).  Returns rows; sets *k. */
static int32_t matrix_shape(lua_State *L, int i, int32_t *k, const char *what) {
  if (lua_type(L, i) == LUA_TSTRING) {
    size_t n = lua_rawlen(L, i);
    if (*k <= 0)
      luaL_argerror(L, i, lua_pushfstring(L, "%s as a string needs k "
                                          "(argument 5)", what));
    if (n % (4 * (size_t)*k) != 0)
      luaL_argerror(L, i, lua_pushfstring(L, "%s: string length %d is not a "
                                          "multiple of 4 * k", what, (int)n));
    return (int32_t)(n / (4 * (size_t)*k));
  }
  luaL_checktype(L, i, LUA_TTABLE);
  lua_Integer rows = luaL_len(L, i);
  if (rows > INT32_MAX) luaL_argerror(L, i, "too many rows");
  for (lua_Integer r = 1; r <= rows; r++) {
    if (lua_geti(L, i, r) != LUA_TTABLE)
      luaL_argerror(L, i, lua_pushfstring(L, "%s: row %d is not a table",
                                          what, (int)r));
    lua_Integer len = luaL_len(L, -1);
    lua_pop(L, 1);
    if (*k < 0) *k = (int32_t)len;
    if (len != *k)
      luaL_argerror(L, i, lua_pushfstring(L, "%s: row %d has %d values, "
                                          "expected %d", what, (int)r,
                                          (int)len, (int)*k));
  }
  return (int32_t)rows;
}

static void matrix_fill(lua_State *L, int i, float *dst, int32_t rows,
                        int32_t k) {
  if (lua_type(L, i) == LUA_TSTRING) {
    memcpy(dst, lua_tostring(L, i), (size_t)rows * k * sizeof(float));
    return;
  }
  for (int32_t r = 0; r < rows; r++) {
    lua_geti(L, i, r + 1);
    for (int32_t t = 0; t < k; t++) {
      lua_geti(L, -1, t + 1);
      int isnum;
      lua_Number v = lua_tonumberx(L, -1, &isnum);
      if (!isnum)
        luaL_argerror(L, i, lua_pushfstring(L, "value [%d][%d] is not a "
                                            "number", (int)r + 1, (int)t + 1));
      dst[(size_t)r * k + t] = (float)v;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

/* A bias vector of n: nil, a table of numbers, or a float32 string. */
static int check_bias(lua_State *L, int i, int32_t n, const char *what) {
  if (lua_isnoneornil(L, i)) return 0;
  if (lua_type(L, i) == LUA_TSTRING) {
    if (lua_rawlen(L, i) != 4 * (size_t)n)
      luaL_argerror(L, i, lua_pushfstring(L, "%s: %d floats expected", what,
                                          (int)n));
    return 1;
  }
  luaL_checktype(L, i, LUA_TTABLE);
  if (luaL_len(L, i) != n)
    luaL_argerror(L, i, lua_pushfstring(L, "%s: %d values expected, got %d",
                                        what, (int)n, (int)luaL_len(L, i)));
  for (int32_t r = 1; r <= n; r++) {
    lua_geti(L, i, r);
    if (!lua_isnumber(L, -1))
      luaL_argerror(L, i, lua_pushfstring(L, "%s: value %d is not a number",
                                          what, (int)r));
    lua_pop(L, 1);
  }
  return 1;
}

static void bias_fill(lua_State *L, int i, float *dst, int32_t n) {
  if (lua_type(L, i) == LUA_TSTRING) {
    memcpy(dst, lua_tostring(L, i), (size_t)n * sizeof(float));
    return;
  }
  for (int32_t r = 0; r < n; r++) {
    lua_geti(L, i, r + 1);
    dst[r] = (float)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
}

/* core.factors(user, item [, user_bias [, item_bias [, k]]]) */
static int factors_new(lua_State *L) {
  int32_t k = (int32_t)luaL_optinteger(L, 5, -1);
  luaL_argcheck(L, k >= -1, 5, "k must be >= 0");
  int32_t nu = matrix_shape(L, 1, &k, "user matrix");
  int32_t ni = matrix_shape(L, 2, &k, "item matrix");
  if (k < 0) k = 0; /* empty tables and no k */
  int hub = check_bias(L, 3, nu, "user bias");
  int hib = check_bias(L, 4, ni, "item bias");
  lmfm_box *b = lmfm_newbox(L, LMFM_FACTORS, 0);
  lfactors *m = mfm_calloc(1, sizeof *m);
  if (!m) return luaL_error(L, "not enough memory");
  b->p = m; /* from here __gc frees whatever was allocated */
  m->n_users = nu;
  m->n_items = ni;
  m->k = k;
  m->user = mfm_malloc_array((size_t)nu * k + 1, sizeof(float));
  m->item = mfm_malloc_array((size_t)ni * k + 1, sizeof(float));
  m->ub = hub ? mfm_malloc_array((size_t)nu + 1, sizeof(float)) : NULL;
  m->ib = hib ? mfm_malloc_array((size_t)ni + 1, sizeof(float)) : NULL;
  if (!m->user || !m->item || (hub && !m->ub) || (hib && !m->ib))
    return luaL_error(L, "not enough memory");
  matrix_fill(L, 1, m->user, nu, k);
  matrix_fill(L, 2, m->item, ni, k);
  if (hub) bias_fill(L, 3, m->ub, nu);
  if (hib) bias_fill(L, 4, m->ib, ni);
  return 1;
}

static int factors_close(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_FACTORS);
  lfactors_free(b->p);
  b->p = NULL;
  return 0;
}

static int factors_dims(lua_State *L) {
  lfactors *m = lmfm_checkopen(L, 1, LMFM_FACTORS);
  lua_pushinteger(L, m->n_users);
  lua_pushinteger(L, m->n_items);
  lua_pushinteger(L, m->k);
  return 3;
}

static int factors_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_FACTORS);
  lfactors *m = b->p;
  if (!m) lua_pushliteral(L, "moonfm.Factors (closed)");
  else
    lua_pushfstring(L, "moonfm.Factors (%d users, %d items, k %d)",
                    (int)m->n_users, (int)m->n_items, (int)m->k);
  return 1;
}

/* model:evaluate(test, opts): the friendly layer, moonfm.evaluate. */
static int factors_evaluate(lua_State *L) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonfm.evaluate");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "evaluate");
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L) - n - 1;
}

/* model:recommend(...) and model:score(...): core.recommend / core.score */
static int forward(lua_State *L, const char *name) {
  int n = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonfm.core");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, name);
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L) - n - 1;
}
static int factors_recommend(lua_State *L) { return forward(L, "recommend"); }
static int factors_score(lua_State *L) { return forward(L, "score"); }

static const luaL_Reg factors_funcs[] = {
  {"factors", factors_new},
  {NULL, NULL}
};

static const luaL_Reg factors_methods[] = {
  {"close", factors_close},
  {"dims", factors_dims},
  {"evaluate", factors_evaluate},
  {"recommend", factors_recommend},
  {"score", factors_score},
  {NULL, NULL}
};

static const luaL_Reg factors_meta[] = {
  {"__index", NULL},
  {"__gc", factors_close},
  {"__close", factors_close},
  {"__tostring", factors_tostring},
  {NULL, NULL}
};

void lmfm_open_factors(lua_State *L) {
  luaL_setfuncs(L, factors_funcs, 0);
  lmfm_newmeta(L, LMFM_FACTORS, factors_meta, factors_methods);
  luaL_getmetatable(L, LMFM_FACTORS);
  lua_pushlightuserdata(L, (void *)&factors_scorer);
  lua_setfield(L, -2, "__mfm_scorer");
  lua_pop(L, 1);
}
