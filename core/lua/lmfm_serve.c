/* moonfm.core.serve(opts): `moonfm serve` from Lua.  Starts the HTTP
   transport (the executable's, core/host/serve_http.c), loads the model
   while /ping says 503, then answers until SIGTERM.  The default path is
   C only; with opts.handler (a Lua file returning the recipe's serve
   table) every worker thread gets its own Lua state running
   moonfm.serve.worker. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lmfm.h"
#include "lualib.h"
#include "moonfm/alloc.h"
#include "moonfm/log.h"
#include "moonfm/serve.h"
#include "moonfm/stop.h"
#include "moonfm/threads.h"

/* Only the executable links the transport; in the loadable module these
   are NULL and core.serve says so. */
#pragma weak mfm_http_start
#pragma weak mfm_http_ready
#pragma weak mfm_http_run
#pragma weak mfm_http_free

#define MAX_WORKERS 1024

/* What the worker threads share. */
typedef struct server {
  const mfm_serve_model *m;
  const char *default_accept;
  const char *handler;     /* Lua file, or NULL */
  const char *lpath, *cpath;
  pthread_mutex_t lock;
  int n;                   /* threads seen so far */
  mfm_serve_worker *w[MAX_WORKERS];
  lua_State *L[MAX_WORKERS];
} server;

/* This thread's slot: its worker and Lua state, owned by `owner`. */
static _Thread_local const server *tls_owner;
static _Thread_local int tls_slot;

static int slot(server *s) {
  if (tls_owner == s) return tls_slot;
  pthread_mutex_lock(&s->lock);
  int i = s->n < MAX_WORKERS ? s->n++ : -1;
  pthread_mutex_unlock(&s->lock);
  if (i < 0) return -1;
  if (mfm_serve_worker_new(s->m, &s->w[i], NULL) != MFM_OK) return -1;
  tls_owner = s;
  tls_slot = i;
  return i;
}

static void default_invoke(void *ctx, const char *body, size_t len,
                           const char *ctype, const char *accept,
                           mfm_serve_reply *out) {
  server *s = ctx;
  int i = slot(s);
  if (i < 0) {
    memset(out, 0, sizeof *out);
    out->status = 500;
    return;
  }
  mfm_serve_invoke(s->w[i], body, len, ctype, accept, s->default_accept,
                   out);
}

/* ---- Lua handlers ----------------------------------------------------- */

/* predict_json(text) -> status, body: the C path on a JSON request, for
   the handlers' default predict_fn. */
static int predict_json(lua_State *L) {
  mfm_serve_worker *w = lua_touserdata(L, lua_upvalueindex(1));
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  mfm_serve_reply r;
  mfm_serve_invoke(w, text, n, "application/json", "application/json",
                   NULL, &r);
  lua_pushinteger(L, r.status);
  if (r.body) lua_pushlstring(L, r.body, r.len);
  else lua_pushliteral(L, "out of memory");
  mfm_free(r.body);
  return 2;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* A worker's state: standard libraries, the caller's paths, moonfm.core
   preloaded, and in the registry the function returned by
   require("moonfm.serve").worker(handler, predict_json). */
static int open_worker(lua_State *L) {
  server *s = lua_touserdata(L, 1);
  mfm_serve_worker *w = lua_touserdata(L, 2);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, s->lpath);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, s->cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonfm_core);
  lua_setfield(L, -2, "moonfm.core");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonfm.serve");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "worker");
  lua_pushstring(L, s->handler);
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, predict_json, 1);
  lua_call(L, 2, 1);
  luaL_checktype(L, -1, LUA_TFUNCTION);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonfm.serve.invoke");
  return 0;
}

static void reply_copy(mfm_serve_reply *out, int status, const char *ctype,
                       const char *s, size_t n) {
  out->status = status;
  out->content_type = ctype;
  out->body = mfm_malloc(n + 1);
  out->len = out->body ? n : 0;
  if (out->body) memcpy(out->body, s, n);
}

/* Content types a handler may answer with (the reply keeps static
   strings): its own is matched against these, else octet-stream. */
static const char *static_ctype(const char *t) {
  static const char *known[] = {"application/json", "application/jsonlines",
                                "text/csv", "text/plain; charset=utf-8"};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (t && strcmp(t, known[i]) == 0) return known[i];
  return "application/octet-stream";
}

static void lua_invoke(void *ctx, const char *body, size_t len,
                       const char *ctype, const char *accept,
                       mfm_serve_reply *out) {
  server *s = ctx;
  memset(out, 0, sizeof *out);
  int i = slot(s);
  if (i < 0) {
    out->status = 500;
    return;
  }
  lua_State *L = s->L[i];
  if (!L) {
    L = luaL_newstate();
    if (!L) {
      out->status = 500;
      return;
    }
    lua_pushcfunction(L, traceback);
    lua_pushcfunction(L, open_worker);
    lua_pushlightuserdata(L, s);
    lua_pushlightuserdata(L, s->w[i]);
    if (lua_pcall(L, 2, 0, 1) != LUA_OK) {
      mfm_log(MFM_LOG_ERROR, "serve: handler %s: %s", s->handler,
              lua_tostring(L, -1));
      lua_close(L);
      reply_copy(out, 500, "text/plain; charset=utf-8",
                 "the serve handler failed to load\n", 33);
      return;
    }
    lua_settop(L, 0);
    s->L[i] = L;
  }
  lua_pushcfunction(L, traceback);
  lua_getfield(L, LUA_REGISTRYINDEX, "moonfm.serve.invoke");
  lua_pushlstring(L, body, len);
  lua_pushstring(L, ctype ? ctype : "");
  lua_pushstring(L, accept ? accept : "");
  if (lua_pcall(L, 3, 3, 1) != LUA_OK) {
    /* moonfm.serve.worker catches handler errors; this is ours. */
    mfm_log(MFM_LOG_ERROR, "serve: %s", lua_tostring(L, -1));
    lua_settop(L, 0);
    reply_copy(out, 500, "text/plain; charset=utf-8", "internal error\n", 15);
    return;
  }
  size_t n;
  int st = (int)lua_tointeger(L, -3);
  const char *ct = lua_tostring(L, -2);
  const char *b = lua_tolstring(L, -1, &n);
  reply_copy(out, st >= 100 && st < 600 ? st : 500, static_ctype(ct),
             b ? b : "", b ? n : 0);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
}

/* ---- core.serve ------------------------------------------------------- */

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* serve{model_dir=, port=, workers=, timeout=, max_body=, drain=,
   execution_parameters=, default_accept=, handler=, load_delay=,
   on_listen=function} -> answered | fail, msg */
static int l_serve(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!mfm_http_start)
    return luaL_error(L, "serve: this is the loadable module; run `moonfm "
                      "serve` (the executable holds the HTTP server)");
  const char *dir = lmfm_optstr(L, 1, "model_dir", NULL);
  luaL_argcheck(L, dir != NULL, 1, "model_dir is required");
  mfm_http_config c;
  memset(&c, 0, sizeof c);
  c.address = lmfm_optstr(L, 1, "address", "0.0.0.0");
  c.port = (int)lmfm_optint(L, 1, "port", 8080);
  c.workers = (int)lmfm_optint(L, 1, "workers", mfm_cpu_count());
  c.timeout = (int)lmfm_optint(L, 1, "timeout", 60);
  c.max_body = (size_t)lmfm_optint(L, 1, "max_body", 6291456);
  c.drain = (int)lmfm_optint(L, 1, "drain", 20);
  snprintf(c.execution_parameters, sizeof c.execution_parameters, "%s",
           lmfm_optstr(L, 1, "execution_parameters", "{}"));
  long delay = (long)lmfm_optint(L, 1, "load_delay", 0);
  luaL_argcheck(L, c.port >= 1 && c.port <= 65535, 1, "port out of range");
  luaL_argcheck(L, c.workers >= 1 && c.workers <= MAX_WORKERS, 1,
                "workers out of range");
  server *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->default_accept = lmfm_optstr(L, 1, "default_accept", NULL);
  s->handler = lmfm_optstr(L, 1, "handler", NULL);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  s->lpath = lua_tostring(L, -2); /* kept alive on the stack */
  s->cpath = lua_tostring(L, -1);
  if (!s->lpath || !s->cpath)
    return luaL_error(L, "serve: package.path and cpath must be strings");
  int on_listen = lua_getfield(L, 1, "on_listen") == LUA_TFUNCTION;
  int top = lua_gettop(L);

  /* Each worker runs a one-thread sgemv/sgemm (TOOLCHAIN P9). */
  mfm_blas_threads(1);
  mfm_err err;
  mfm_http *h;
  if (mfm_http_start(&c, &h, &err) != MFM_OK) return lmfm_pushfail(L, &err);
  if (on_listen) {
    lua_pushvalue(L, top);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  for (long t = 0; t < delay && !mfm_stop_requested(); t += 10) nap_ms(10);
  mfm_serve_model *m = NULL;
  mfm_status st = mfm_serve_model_load(dir, &m, &err);
  if (st != MFM_OK) {
    mfm_http_free(h);
    return lmfm_pushfail(L, &err);
  }
  s->m = m;
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    mfm_http_free(h);
    mfm_serve_model_free(m);
    return luaL_error(L, "serve: cannot create a lock");
  }
  mfm_serve_info info;
  mfm_serve_model_info(m, &info);
  mfm_log(MFM_LOG_INFO, "serve: model %s: %d users, %d items, %d factors, "
          "%lld training interactions%s%s%s; ready", info.kind,
          (int)info.n_users, (int)info.n_items, (int)info.factors,
          (long long)info.n_seen, info.fold_in ? ", fold-in" : "",
          info.features ? ", feature users" : "",
          s->handler ? ", Lua handler" : "");
  fflush(stderr);
  mfm_http_ready(h, s->handler ? lua_invoke : default_invoke, s);
  int64_t answered = mfm_http_run(h);
  mfm_http_free(h); /* every worker thread has ended */
  for (int i = 0; i < s->n; i++) {
    if (s->L[i]) lua_close(s->L[i]);
    mfm_serve_worker_free(s->w[i]);
  }
  pthread_mutex_destroy(&s->lock);
  mfm_serve_model_free(m);
  lua_pushinteger(L, (lua_Integer)answered);
  return 1;
}

/* core.serve_check(path) -> {fold_in = bool, features = bool} | nil, msg:
   whether serve would answer from the model file or folder at path, by
   the loader's own checks, and what it could do (moonfm inspect). */
static int l_serve_check(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mfm_serve_model *m;
  mfm_err err;
  if (mfm_serve_model_load(path, &m, &err) != MFM_OK)
    return lmfm_pushfail(L, &err);
  mfm_serve_info info;
  mfm_serve_model_info(m, &info);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, info.fold_in);
  lua_setfield(L, -2, "fold_in");
  lua_pushboolean(L, info.features);
  lua_setfield(L, -2, "features");
  mfm_serve_model_free(m);
  return 1;
}

static const char *const format_names[] = {"unsupported", "json",
                                           "jsonlines", "csv", NULL};

static int push_format(lua_State *L, mfm_serve_format f) {
  if (f == MFM_SERVE_UNSUPPORTED) lua_pushnil(L);
  else lua_pushstring(L, format_names[f]);
  return 1;
}

/* core.serve_accept(text [, default]) -> "json" | "jsonlines" | nil: the
   answer type an Accept value picks, as the server picks it (nil: none
   moonfm writes); default ("json" or "jsonlines", else "json") is what
   an absent Accept or a wildcard picks. */
static int l_serve_accept(lua_State *L) {
  const char *accept = luaL_checkstring(L, 1);
  int d = luaL_checkoption(L, 2, "json", format_names);
  luaL_argcheck(L, d == MFM_SERVE_JSON || d == MFM_SERVE_JSONLINES, 2,
                "json or jsonlines expected");
  return push_format(L, mfm_serve_accept(accept, (mfm_serve_format)d));
}

/* core.serve_content_type(text) -> "json" | "jsonlines" | "csv" | nil,
   header: a request type as the server reads it; header is true for
   text/csv; header=present. */
static int l_serve_content_type(lua_State *L) {
  const char *ct = luaL_checkstring(L, 1);
  push_format(L, mfm_serve_content_type(ct));
  lua_pushboolean(L, mfm_serve_csv_header(ct));
  return 2;
}

static const luaL_Reg serve_funcs[] = {
    {"serve", l_serve},
    {"serve_accept", l_serve_accept},
    {"serve_check", l_serve_check},
    {"serve_content_type", l_serve_content_type},
    {NULL, NULL}};

void lmfm_open_serve(lua_State *L) { luaL_setfuncs(L, serve_funcs, 0); }
