#include "lmfm.h"

void lmfm_newmeta(lua_State *L, const char *tname, const luaL_Reg *meta,
                  const luaL_Reg *methods) {
  luaL_newmetatable(L, tname);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int lmfm_pushfail(lua_State *L, const mfm_err *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err->msg[0] ? err->msg : mfm_status_string(err->code));
  return 2;
}

int lmfm_raise(lua_State *L, const char *op, mfm_status st,
               const mfm_err *err) {
  if (st == MFM_ENOMEM) return luaL_error(L, "not enough memory");
  if (err && err->msg[0]) return luaL_error(L, "%s: %s", op, err->msg);
  return luaL_error(L, "%s: %s", op, mfm_status_string(st));
}

lmfm_box *lmfm_newbox(lua_State *L, const char *tname, int nuv) {
  lmfm_box *b = lua_newuserdatauv(L, sizeof *b, nuv);
  b->p = NULL;
  luaL_setmetatable(L, tname);
  return b;
}

void *lmfm_checkopen(lua_State *L, int i, const char *tname) {
  lmfm_box *b = luaL_checkudata(L, i, tname);
  if (b->p == NULL) luaL_error(L, "attempt to use a closed %s", tname);
  return b->p;
}

static int field(lua_State *L, int t, const char *key) {
  if (lua_isnoneornil(L, t)) return LUA_TNIL;
  return lua_getfield(L, t, key);
}

lua_Integer lmfm_optint(lua_State *L, int t, const char *key, lua_Integer d) {
  int isnum;
  lua_Integer v = d;
  if (field(L, t, key) != LUA_TNIL) {
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum) luaL_error(L, "option '%s' must be an integer", key);
  }
  if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
  return v;
}

lua_Number lmfm_optnum(lua_State *L, int t, const char *key, lua_Number d) {
  int isnum;
  lua_Number v = d;
  if (field(L, t, key) != LUA_TNIL) {
    v = lua_tonumberx(L, -1, &isnum);
    if (!isnum) luaL_error(L, "option '%s' must be a number", key);
  }
  if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
  return v;
}

int lmfm_optbool(lua_State *L, int t, const char *key, int d) {
  int v = d;
  int ty = field(L, t, key);
  if (ty != LUA_TNIL) {
    if (ty != LUA_TBOOLEAN) luaL_error(L, "option '%s' must be a boolean", key);
    v = lua_toboolean(L, -1);
  }
  if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
  return v;
}

/* The returned string stays valid while the option table lives. */
const char *lmfm_optstr(lua_State *L, int t, const char *key, const char *d) {
  const char *v = d;
  int ty = field(L, t, key);
  if (ty != LUA_TNIL) {
    if (ty != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", key);
    v = lua_tostring(L, -1);
  }
  if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
  return v;
}

void lmfm_checkfactors(lua_State *L, int i, mfm_factors *f) {
  lmfm_box *b = lua_touserdata(L, i);
  if (b == NULL || luaL_getmetafield(L, i, "__mfm_scorer") == LUA_TNIL)
    luaL_typeerror(L, i, "moonfm model");
  const lmfm_scorer *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b->p == NULL) luaL_argerror(L, i, "attempt to use a closed model");
  mfm_err err;
  mfm_status st = s->factors(b->p, f, &err);
  if (st != MFM_OK) lmfm_raise(L, "model", st, &err);
}

int luaopen_moonfm_core(lua_State *L) {
  luaL_checkversion(L);
  lua_newtable(L);
  LMFM_OPEN_ALL(L);
  lua_pushstring(L, mfm_version());
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
