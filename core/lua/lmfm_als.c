/* moonfm.ALS: implicit-feedback ALS (core/src/als.c).
     core.als_new(n_users, n_items [, opts]) -> moonfm.ALS
     als:fit(interactions [, {iterations=1, threads=}])
        -> {iterations=, seconds=, loss=, iteration=} | fail, "stopped"
     als:fold_in(items [, weights]) -> {k numbers}  (items 1-based)
     als:shape() -> n_users, n_items, factors
     als:params() -> table;  als:iteration() -> n;  als:close() */
#include <stdlib.h>
#include <string.h>

#include "lmfm.h"

#define LMFM_ALS "moonfm.ALS"

/* The box starts like lmfm_box (evaluation reads ->p).  It also caches the
   transpose of the last interactions fitted, so that a Lua loop of
   one-iteration fits transposes once; user value 1 keeps those
   interactions alive. */
typedef struct als_box {
  void *p;
  mfm_csr *iu;
  const mfm_csr *src;
  int64_t src_nnz;
} als_box;

int lmfm_push_als_report(lua_State *L, const mfm_als_report *r) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, r->iterations);
  lua_setfield(L, -2, "iterations");
  lua_pushnumber(L, r->seconds);
  lua_setfield(L, -2, "seconds");
  lua_pushnumber(L, r->loss);
  lua_setfield(L, -2, "loss");
  lua_pushinteger(L, r->iteration);
  lua_setfield(L, -2, "iteration");
  return 1;
}

static als_box *checkbox(lua_State *L, int i) {
  als_box *b = luaL_checkudata(L, i, LMFM_ALS);
  if (b->p == NULL) luaL_error(L, "attempt to use a closed %s", LMFM_ALS);
  return b;
}

static mfm_als_solver checksolver(lua_State *L, const char *s) {
  if (strcmp(s, "cg") == 0) return MFM_ALS_CG;
  if (strcmp(s, "cholesky") == 0) return MFM_ALS_CHOLESKY;
  luaL_error(L, "als: option 'solver' must be \"cg\" or \"cholesky\", got "
                "\"%s\"", s);
  return MFM_ALS_CG;
}

static int als_new(lua_State *L) {
  lua_Integer nu = luaL_checkinteger(L, 1);
  lua_Integer ni = luaL_checkinteger(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, nu >= 0 && nu <= INT32_MAX, 1, "n_users out of range");
  luaL_argcheck(L, ni >= 0 && ni <= INT32_MAX, 2, "n_items out of range");
  mfm_als_params p = mfm_als_params_default();
  p.factors = (int32_t)lmfm_optint(L, 3, "factors", p.factors);
  p.regularization =
      (float)lmfm_optnum(L, 3, "regularization", p.regularization);
  p.alpha = (float)lmfm_optnum(L, 3, "alpha", p.alpha);
  p.iterations = (int32_t)lmfm_optint(L, 3, "iterations", p.iterations);
  p.solver = checksolver(L, lmfm_optstr(L, 3, "solver", "cg"));
  p.cg_steps = (int32_t)lmfm_optint(L, 3, "cg_steps", p.cg_steps);
  p.seed = (uint64_t)lmfm_optint(L, 3, "seed", (lua_Integer)p.seed);
  p.threads = (int32_t)lmfm_optint(L, 3, "threads", p.threads);
  p.init_scale = (float)lmfm_optnum(L, 3, "init_scale", p.init_scale);
  const char *why = mfm_als_params_check(&p);
  if (why) return luaL_error(L, "als: %s", why);
  als_box *b = lua_newuserdatauv(L, sizeof *b, 1);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, LMFM_ALS);
  mfm_err err;
  mfm_als *m;
  mfm_status st = mfm_als_new((int32_t)nu, (int32_t)ni, &p, &m, &err);
  if (st) return lmfm_raise(L, "als", st, &err);
  b->p = m;
  return 1;
}

static int als_close(lua_State *L) {
  als_box *b = luaL_checkudata(L, 1, LMFM_ALS);
  mfm_als_free(b->p);
  mfm_csr_free(b->iu);
  b->p = NULL;
  b->iu = NULL;
  b->src = NULL;
  return 0;
}

static int als_fit(lua_State *L) {
  als_box *b = checkbox(L, 1);
  const mfm_csr *ui = lmfm_checkinteractions(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer iters = lmfm_optint(L, 3, "iterations", 1);
  luaL_argcheck(L, iters >= 0 && iters <= INT32_MAX, 3,
                "iterations must be >= 0");
  int has_threads = 0;
  lua_Integer threads = 0;
  if (!lua_isnoneornil(L, 3)) {
    has_threads = lua_getfield(L, 3, "threads") != LUA_TNIL;
    lua_pop(L, 1);
    threads = lmfm_optint(L, 3, "threads", 0);
  }
  int32_t nu, ni;
  mfm_als_shape(b->p, &nu, &ni, NULL);
  if (ui->n_rows > nu || ui->n_cols > ni)
    return luaL_error(L, "als fit: interactions are %d x %d but the model "
                      "is %d x %d; create the model with the full shape",
                      ui->n_rows, ui->n_cols, nu, ni);
  mfm_err err;
  mfm_status st;
  lua_getiuservalue(L, 1, 1);
  int same = b->iu && b->src == ui && b->src_nnz == ui->nnz &&
             lua_rawequal(L, -1, 2);
  lua_pop(L, 1);
  if (!same) {
    mfm_csr_free(b->iu);
    b->iu = NULL;
    b->src = NULL;
    st = mfm_csr_transpose(ui, &b->iu, &err);
    if (st) return lmfm_raise(L, "als fit", st, &err);
    b->src = ui;
    b->src_nnz = ui->nnz;
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, 1, 1);
  }
  int32_t saved = mfm_als_params_of(b->p)->threads;
  if (has_threads) mfm_als_set_threads(b->p, (int32_t)threads);
  mfm_als_report r;
  st = mfm_als_fit_transposed(b->p, ui, b->iu, (int32_t)iters, &r, &err);
  mfm_als_set_threads(b->p, saved);
  if (st == MFM_ECANCELED) {
    luaL_pushfail(L);
    lua_pushliteral(L, "stopped");
    return 2;
  }
  if (st) return lmfm_raise(L, "als fit", st, &err);
  return lmfm_push_als_report(L, &r);
}

static int als_fold_in(lua_State *L) {
  als_box *b = checkbox(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int has_w = !lua_isnoneornil(L, 3);
  if (has_w) luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (has_w && luaL_len(L, 3) != n)
    return luaL_error(L, "als fold_in: %d items but %d weights", (int)n,
                      (int)luaL_len(L, 3));
  int32_t ni, k;
  mfm_als_shape(b->p, NULL, &ni, &k);
  /* Lua-managed buffers: a raise below leaks nothing. */
  int32_t *items = lua_newuserdatauv(L, sizeof *items * (size_t)(n + 1), 0);
  float *w = has_w ? lua_newuserdatauv(L, sizeof *w * (size_t)(n + 1), 0)
                   : NULL;
  float *x = lua_newuserdatauv(L, sizeof *x * (size_t)k, 0);
  for (lua_Integer t = 0; t < n; t++) {
    int isnum;
    lua_geti(L, 2, t + 1);
    lua_Integer i = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || i < 1 || i > ni)
      return luaL_error(L, "als fold_in: item %d must be an integer in "
                        "1..%d", (int)(t + 1), (int)ni);
    items[t] = (int32_t)(i - 1);
    if (w) {
      lua_geti(L, 3, t + 1);
      lua_Number v = lua_tonumberx(L, -1, &isnum);
      lua_pop(L, 1);
      if (!isnum || !(v >= 0))
        return luaL_error(L, "als fold_in: weight %d must be a number >= 0",
                          (int)(t + 1));
      w[t] = (float)v;
    }
  }
  mfm_err err;
  mfm_status st = mfm_als_fold_in(b->p, items, w, (int32_t)n, x, &err);
  if (st) return lmfm_raise(L, "als fold_in", st, &err);
  lua_createtable(L, k, 0);
  for (int32_t j = 0; j < k; j++) {
    lua_pushnumber(L, x[j]);
    lua_rawseti(L, -2, j + 1);
  }
  return 1;
}

static int als_shape(lua_State *L) {
  als_box *b = checkbox(L, 1);
  int32_t nu, ni, k;
  mfm_als_shape(b->p, &nu, &ni, &k);
  lua_pushinteger(L, nu);
  lua_pushinteger(L, ni);
  lua_pushinteger(L, k);
  return 3;
}

static int als_iteration(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mfm_als_iteration(checkbox(L, 1)->p));
  return 1;
}

static int als_params(lua_State *L) {
  const mfm_als_params *p = mfm_als_params_of(checkbox(L, 1)->p);
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, p->factors);
  lua_setfield(L, -2, "factors");
  lua_pushnumber(L, p->regularization);
  lua_setfield(L, -2, "regularization");
  lua_pushnumber(L, p->alpha);
  lua_setfield(L, -2, "alpha");
  lua_pushinteger(L, p->iterations);
  lua_setfield(L, -2, "iterations");
  lua_pushstring(L, p->solver == MFM_ALS_CHOLESKY ? "cholesky" : "cg");
  lua_setfield(L, -2, "solver");
  lua_pushinteger(L, p->cg_steps);
  lua_setfield(L, -2, "cg_steps");
  lua_pushinteger(L, (lua_Integer)p->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, p->threads);
  lua_setfield(L, -2, "threads");
  lua_pushnumber(L, p->init_scale);
  lua_setfield(L, -2, "init_scale");
  return 1;
}

static int als_tostring(lua_State *L) {
  als_box *b = luaL_checkudata(L, 1, LMFM_ALS);
  if (!b->p) {
    lua_pushstring(L, LMFM_ALS " (closed)");
  } else {
    int32_t nu, ni, k;
    mfm_als_shape(b->p, &nu, &ni, &k);
    lua_pushfstring(L, LMFM_ALS " (%d users, %d items, %d factors)",
                    (int)nu, (int)ni, (int)k);
  }
  return 1;
}

/* The scorer hooks for evaluation and the model file. */
static mfm_status scorer_factors(void *model, mfm_factors *f, mfm_err *err) {
  mfm_als_factors(model, f);
  return MFM_OK;
}
static int scorer_arrays(void *model, mfm_array *out, int max) {
  return mfm_als_arrays(model, out, max);
}
static const lmfm_scorer als_scorer = {scorer_factors, scorer_arrays};

static const luaL_Reg als_funcs[] = {
  {"als_new", als_new},
  {NULL, NULL}
};

static const luaL_Reg als_methods[] = {
  {"close", als_close},
  {"fit", als_fit},
  {"fold_in", als_fold_in},
  {"iteration", als_iteration},
  {"params", als_params},
  {"shape", als_shape},
  {NULL, NULL}
};

static const luaL_Reg als_meta[] = {
  {"__index", NULL},
  {"__close", als_close},
  {"__gc", als_close},
  {"__tostring", als_tostring},
  {NULL, NULL}
};

void lmfm_open_als(lua_State *L) {
  luaL_setfuncs(L, als_funcs, 0);
  lmfm_newmeta(L, LMFM_ALS, als_meta, als_methods);
  luaL_getmetatable(L, LMFM_ALS);
  lua_pushlightuserdata(L, (void *)&als_scorer);
  lua_setfield(L, -2, "__mfm_scorer");
  lua_pop(L, 1);
}
