/* moonfm.core multi-host functions (core/src/dist*.c):
     core.dist_available() -> bool (built with MPI)
     core.dist_init([timeout_s [, label]]) -> rank, size | fail, msg
     core.dist_finalize();  core.dist_abort(code)
     core.dist_rank() -> r (0-based);  core.dist_size() -> n
     core.dist_block(n, rank, size) -> lo, hi  (0-based, hi exclusive)
     core.dist_resolve(host, max_s) -> address | fail, msg
     core.dist_sum({numbers}) -> {sums}   (doubles, every rank)
     core.dist_reduce({numbers}, op) -> {results}  (doubles; op "sum",
                                          "max" or "min"; every rank)
     core.dist_any(flag) -> bool          (true when any rank's flag is)
     core.dist_bcast(s_or_nil, root) -> s (root's string, every rank)
     core.dist_barrier()
     core.dist_als(model, interactions) -> moonfm.DistALS
       dals:fit([iterations]) -> {iterations, seconds, loss, iteration}
                                  | fail, "stopped"
     core.dist_avg(model) -> moonfm.DistAvg   (any model with arrays)
       avg:sync() -> true
     core.dist_fm(model, interactions [, shard]) -> moonfm.DistFM
       dfm:fit([epochs [, threads]]) -> {epochs, loss, seconds, samples}
                                         | fail, "stopped"
       dfm:sync() -> true   (model averaging, see dist_avg.c)
     shard true (default): this rank trains on its block of users only
     (FullyReplicated data); false: on all it was given (its own shard).
   Collective calls must be made by every rank in the same order. */
#include <string.h>

#include "lmfm.h"
#include "moonfm/alloc.h"
#include "moonfm/stop.h"
#include "moonfm/dist.h"
#include "moonfm/fm.h"

#define LMFM_DISTALS "moonfm.DistALS"
#define LMFM_DISTAVG "moonfm.DistAvg"
#define LMFM_DISTFM "moonfm.DistFM"

static int raise_status(lua_State *L, const char *op, mfm_status st,
                        const mfm_err *err) {
  return lmfm_raise(L, op, st, err);
}

static int d_available(lua_State *L) {
  lua_pushboolean(L, mfm_dist_available());
  return 1;
}

static int d_init(lua_State *L) {
  lua_Number t = luaL_optnumber(L, 1, 1800);
  const char *label = luaL_optstring(L, 2, NULL);
  luaL_argcheck(L, t > 0, 1, "timeout must be > 0");
  mfm_err err;
  if (mfm_dist_init((double)t, label, &err)) return lmfm_pushfail(L, &err);
  lua_pushinteger(L, mfm_dist_rank());
  lua_pushinteger(L, mfm_dist_size());
  return 2;
}

static int d_finalize(lua_State *L) {
  mfm_dist_finalize();
  return 0;
}

static int d_abort(lua_State *L) {
  mfm_dist_abort((int)luaL_optinteger(L, 1, 1));
  return 0;
}

static int d_rank(lua_State *L) {
  lua_pushinteger(L, mfm_dist_rank());
  return 1;
}

static int d_size(lua_State *L) {
  lua_pushinteger(L, mfm_dist_size());
  return 1;
}

static int d_block(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer r = luaL_checkinteger(L, 2);
  lua_Integer s = luaL_checkinteger(L, 3);
  luaL_argcheck(L, n >= 0, 1, "n must be >= 0");
  luaL_argcheck(L, s >= 1 && s <= 1 << 20, 3, "size must be >= 1");
  luaL_argcheck(L, r >= 0 && r < s, 2, "rank must be in 0..size-1");
  int64_t lo, hi;
  mfm_dist_block(n, (int)r, (int)s, &lo, &hi);
  lua_pushinteger(L, lo);
  lua_pushinteger(L, hi);
  return 2;
}

static int d_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Number max_s = luaL_optnumber(L, 2, 900);
  char addr[64];
  mfm_err err;
  if (mfm_dist_resolve(host, (double)max_s, addr, sizeof addr, &err))
    return lmfm_pushfail(L, &err);
  lua_pushstring(L, addr);
  return 1;
}

static int d_sum(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1 << 20, 1, "too many numbers");
  double *v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    int ok;
    v[i - 1] = (double)lua_tonumberx(L, -1, &ok);
    if (!ok) return luaL_error(L, "dist_sum: entry %d is not a number",
                               (int)i);
    lua_pop(L, 1);
  }
  mfm_err err;
  mfm_status st = mfm_dist_sum_f64(v, (size_t)n, &err);
  if (st) return raise_status(L, "dist_sum", st, &err);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushnumber(L, v[i - 1]);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int d_reduce(lua_State *L) {
  static const char *const ops[] = {"sum", "max", "min", NULL};
  static const mfm_dist_op codes[] = {MFM_DIST_SUM, MFM_DIST_MAX,
                                      MFM_DIST_MIN};
  luaL_checktype(L, 1, LUA_TTABLE);
  mfm_dist_op op = codes[luaL_checkoption(L, 2, "sum", ops)];
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1 << 26, 1, "too many numbers");
  double *v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    int ok;
    lua_rawgeti(L, 1, i);
    v[i - 1] = (double)lua_tonumberx(L, -1, &ok);
    if (!ok) return luaL_error(L, "dist_reduce: entry %d is not a number",
                               (int)i);
    lua_pop(L, 1);
  }
  mfm_err err;
  mfm_status st = mfm_dist_reduce_f64(v, (size_t)n, op, &err);
  if (st) return raise_status(L, "dist_reduce", st, &err);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushnumber(L, v[i - 1]);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int d_any(lua_State *L) {
  int v = lua_toboolean(L, 1);
  mfm_err err;
  mfm_status st = mfm_dist_max_int(&v, &err);
  if (st) return raise_status(L, "dist_any", st, &err);
  lua_pushboolean(L, v);
  return 1;
}

/* The root's length first, then the bytes. */
static int d_bcast(lua_State *L) {
  lua_Integer root = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, root >= 0 && root < mfm_dist_size(), 2, "bad root");
  size_t n = 0;
  const char *s = lua_tolstring(L, 1, &n);
  int mine = mfm_dist_rank() == root;
  if (mine && !s) return luaL_argerror(L, 1, "the root must give a string");
  int64_t len = mine ? (int64_t)n : 0;
  mfm_err err;
  mfm_status st = mfm_dist_bcast(&len, sizeof len, (int)root, &err);
  if (st) return raise_status(L, "dist_bcast", st, &err);
  if (mine) {
    lua_pushvalue(L, 1);
    st = mfm_dist_bcast((void *)s, n, (int)root, &err);
    if (st) return raise_status(L, "dist_bcast", st, &err);
    return 1;
  }
  char *buf = lua_newuserdatauv(L, (size_t)len + 1, 0);
  st = mfm_dist_bcast(buf, (size_t)len, (int)root, &err);
  if (st) return raise_status(L, "dist_bcast", st, &err);
  lua_pushlstring(L, buf, (size_t)len);
  return 1;
}

static int d_barrier(lua_State *L) {
  mfm_err err;
  mfm_status st = mfm_dist_barrier(&err);
  if (st) return raise_status(L, "dist_barrier", st, &err);
  return 0;
}

/* ---- moonfm.DistALS: a model, its interactions and their transpose --- */

typedef struct dals {
  void *p;        /* mfm_csr *iu: the transpose (owned) */
  mfm_als *model; /* borrowed: user value 1 keeps the model alive */
  const mfm_csr *ui; /* borrowed: user value 2 */
} dals;

static int dals_close(lua_State *L) {
  dals *d = luaL_checkudata(L, 1, LMFM_DISTALS);
  mfm_csr_free(d->p);
  d->p = NULL;
  return 0;
}

static int d_als(lua_State *L) {
  lmfm_box *mb = luaL_checkudata(L, 1, "moonfm.ALS");
  if (!mb->p) return luaL_argerror(L, 1, "attempt to use a closed moonfm.ALS");
  const mfm_csr *ui = lmfm_checkinteractions(L, 2);
  dals *d = lua_newuserdatauv(L, sizeof *d, 2);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, LMFM_DISTALS);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  mfm_err err;
  mfm_csr *iu;
  mfm_status st = mfm_csr_transpose(ui, &iu, &err);
  if (st) return raise_status(L, "dist_als", st, &err);
  d->p = iu;
  d->model = mb->p;
  d->ui = ui;
  return 1;
}

static int dals_fit(lua_State *L) {
  lmfm_checkopen(L, 1, LMFM_DISTALS);
  dals *d = lua_touserdata(L, 1);
  lua_Integer iters = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, iters >= 0 && iters <= INT32_MAX, 2,
                "iterations must be >= 0");
  lua_getiuservalue(L, 1, 1);
  lmfm_box *mb = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!mb || !mb->p) return luaL_error(L, "dist_als: the model was closed");
  mfm_als_report r;
  mfm_err err;
  mfm_status st = mfm_dist_als_fit(mb->p, d->ui, d->p, (int32_t)iters, &r,
                                   &err);
  if (st == MFM_ECANCELED) {
    luaL_pushfail(L);
    lua_pushliteral(L, "stopped");
    return 2;
  }
  if (st == MFM_EIO) return lmfm_pushfail(L, &err);
  if (st) return raise_status(L, "dist_als fit", st, &err);
  return lmfm_push_als_report(L, &r);
}

/* ---- moonfm.DistAvg ---------------------------------------------------- */

static int davg_close(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_DISTAVG);
  mfm_dist_avg_free(b->p);
  b->p = NULL;
  return 0;
}

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Rank 0 keeps its random streams (as on one host); the others get
   streams of their own, so hosts do not draw the same negatives. */
static void mix_rng(mfm_array *a, int n) {
  int r = mfm_dist_rank();
  if (r == 0) return;
  for (int i = 0; i < n; i++) {
    if (a[i].dtype != MFM_U64 || !strstr(a[i].name, "rng")) continue;
    uint64_t *w = a[i].data, x = (uint64_t)r * 0x2545f4914f6cdd1dULL;
    for (int64_t j = 0; j < a[i].rows * a[i].cols; j++) {
      uint64_t v = w[j] ^ splitmix(&x);
      w[j] = v ? v : 1;
    }
  }
}

static int d_avg(lua_State *L) {
  lmfm_box *mb = lua_touserdata(L, 1);
  if (!mb || luaL_getmetafield(L, 1, "__mfm_scorer") == LUA_TNIL)
    return luaL_typeerror(L, 1, "moonfm model");
  const lmfm_scorer *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!mb->p) return luaL_argerror(L, 1, "attempt to use a closed model");
  mfm_array arr[MFM_DIST_AVG_MAX];
  int n = s->arrays(mb->p, arr, MFM_DIST_AVG_MAX);
  if (n > MFM_DIST_AVG_MAX) n = MFM_DIST_AVG_MAX;
  lmfm_box *b = lmfm_newbox(L, LMFM_DISTAVG, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  mix_rng(arr, n);
  mfm_err err;
  mfm_dist_avg *a;
  mfm_status st = mfm_dist_avg_new(arr, n, &a, &err);
  if (st) return raise_status(L, "dist_avg", st, &err);
  b->p = a;
  return 1;
}

static int davg_sync(lua_State *L) {
  mfm_dist_avg *a = lmfm_checkopen(L, 1, LMFM_DISTAVG);
  mfm_err err;
  mfm_status st = mfm_dist_avg_sync(a, &err);
  if (st == MFM_EIO) return lmfm_pushfail(L, &err);
  if (st) return raise_status(L, "dist_avg sync", st, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- moonfm.DistFM: data-parallel factorization model ----------------- */

typedef struct dfm {
  void *p;          /* mfm_dist_avg * (owned) */
  mfm_fm *model;    /* borrowed: user value 1 */
  mfm_csr view;     /* the rank's rows; indices/data of user value 2 */
  int64_t *indptr;  /* owned, or NULL when view is the whole data */
} dfm;

static int dfm_close(lua_State *L) {
  dfm *d = luaL_checkudata(L, 1, LMFM_DISTFM);
  mfm_dist_avg_free(d->p);
  mfm_free(d->indptr);
  d->p = NULL;
  d->indptr = NULL;
  return 0;
}

static int d_fm(lua_State *L) {
  lmfm_box *mb = luaL_checkudata(L, 1, "moonfm.FM");
  if (!mb->p) return luaL_argerror(L, 1, "attempt to use a closed moonfm.FM");
  const mfm_csr *x = lmfm_checkinteractions(L, 2);
  int shard = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__mfm_scorer");
  const lmfm_scorer *s = lua_touserdata(L, -1);
  lua_pop(L, 2);
  if (!s) return luaL_argerror(L, 1, "moonfm.FM without arrays");
  mfm_array arr[MFM_DIST_AVG_MAX];
  int n = s->arrays(mb->p, arr, MFM_DIST_AVG_MAX);
  if (n > MFM_DIST_AVG_MAX) n = MFM_DIST_AVG_MAX;
  dfm *d = lua_newuserdatauv(L, sizeof *d, 2);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, LMFM_DISTFM);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  d->model = mb->p;
  d->view = *x;
  if (shard && mfm_dist_size() > 1) {
    int64_t lo, hi;
    mfm_dist_block(x->n_rows, mfm_dist_rank(), mfm_dist_size(), &lo, &hi);
    d->indptr = mfm_malloc_array((size_t)x->n_rows + 1, sizeof(int64_t));
    if (!d->indptr) return luaL_error(L, "not enough memory");
    /* Rows outside [lo, hi) are empty; their entries are skipped. */
    for (int64_t r = 0; r <= x->n_rows; r++) {
      int64_t c = r < lo ? lo : r > hi ? hi : r;
      d->indptr[r] = x->indptr[c];
    }
    d->view.indptr = d->indptr;
  }
  mix_rng(arr, n);
  mfm_err err;
  mfm_dist_avg *a;
  mfm_status st = mfm_dist_avg_new(arr, n, &a, &err);
  if (st) return raise_status(L, "dist_fm", st, &err);
  d->p = a;
  return 1;
}

static int dfm_fit(lua_State *L) {
  lmfm_checkopen(L, 1, LMFM_DISTFM);
  dfm *d = lua_touserdata(L, 1);
  lua_Integer epochs = luaL_optinteger(L, 2, 1);
  lua_Integer threads = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, epochs >= 0 && epochs <= INT32_MAX, 2,
                "epochs must be >= 0");
  lua_getiuservalue(L, 1, 1);
  lmfm_box *mb = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!mb || !mb->p) return luaL_error(L, "dist_fm: the model was closed");
  mfm_fit_report rep;
  memset(&rep, 0, sizeof rep);
  mfm_err err;
  mfm_status st = mfm_fm_fit(mb->p, &d->view, NULL, (int)epochs,
                             (int)threads, &rep, &err);
  if (st && st != MFM_ECANCELED) return raise_status(L, "dist_fm fit", st,
                                                     &err);
  /* Every rank reaches here: agree on stopping, then combine the loss. */
  int stopped = st == MFM_ECANCELED || mfm_stop_requested();
  if ((st = mfm_dist_max_int(&stopped, &err))) return lmfm_pushfail(L, &err);
  if (stopped) {
    mfm_stop_request(); /* stopped by another rank's SIGTERM: here too */
    luaL_pushfail(L);
    lua_pushliteral(L, "stopped");
    return 2;
  }
  double v[4] = {rep.loss * (double)rep.samples, (double)rep.samples,
                 rep.seconds, (double)rep.negatives};
  if ((st = mfm_dist_sum_f64(v, 4, &err))) return lmfm_pushfail(L, &err);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, rep.epochs);
  lua_setfield(L, -2, "epochs");
  lua_pushnumber(L, v[1] > 0 ? v[0] / v[1] : rep.loss);
  lua_setfield(L, -2, "loss");
  lua_pushnumber(L, rep.seconds);
  lua_setfield(L, -2, "seconds");
  lua_pushinteger(L, (lua_Integer)v[1]);
  lua_setfield(L, -2, "samples");
  lua_pushinteger(L, (lua_Integer)v[3]);
  lua_setfield(L, -2, "negatives");
  return 1;
}

static int dfm_sync(lua_State *L) {
  lmfm_checkopen(L, 1, LMFM_DISTFM);
  dfm *d = lua_touserdata(L, 1);
  mfm_err err;
  mfm_status st = mfm_dist_avg_sync(d->p, &err);
  if (st == MFM_EIO) return lmfm_pushfail(L, &err);
  if (st) return raise_status(L, "dist_fm sync", st, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg dfm_methods[] = {
  {"close", dfm_close},
  {"fit", dfm_fit},
  {"sync", dfm_sync},
  {NULL, NULL}
};

static const luaL_Reg dfm_meta[] = {
  {"__index", NULL},
  {"__close", dfm_close},
  {"__gc", dfm_close},
  {NULL, NULL}
};

static const luaL_Reg dist_funcs[] = {
  {"dist_abort", d_abort},
  {"dist_als", d_als},
  {"dist_any", d_any},
  {"dist_available", d_available},
  {"dist_avg", d_avg},
  {"dist_barrier", d_barrier},
  {"dist_bcast", d_bcast},
  {"dist_block", d_block},
  {"dist_finalize", d_finalize},
  {"dist_fm", d_fm},
  {"dist_init", d_init},
  {"dist_rank", d_rank},
  {"dist_reduce", d_reduce},
  {"dist_resolve", d_resolve},
  {"dist_size", d_size},
  {"dist_sum", d_sum},
  {NULL, NULL}
};

static const luaL_Reg dals_methods[] = {
  {"close", dals_close},
  {"fit", dals_fit},
  {NULL, NULL}
};

static const luaL_Reg dals_meta[] = {
  {"__index", NULL},
  {"__close", dals_close},
  {"__gc", dals_close},
  {NULL, NULL}
};

static const luaL_Reg davg_methods[] = {
  {"close", davg_close},
  {"sync", davg_sync},
  {NULL, NULL}
};

static const luaL_Reg davg_meta[] = {
  {"__index", NULL},
  {"__close", davg_close},
  {"__gc", davg_close},
  {NULL, NULL}
};

void lmfm_open_dist(lua_State *L) {
  luaL_setfuncs(L, dist_funcs, 0);
  lmfm_newmeta(L, LMFM_DISTALS, dals_meta, dals_methods);
  lmfm_newmeta(L, LMFM_DISTAVG, davg_meta, davg_methods);
  lmfm_newmeta(L, LMFM_DISTFM, dfm_meta, dfm_methods);
}
