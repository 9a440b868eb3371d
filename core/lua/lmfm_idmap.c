/* moonfm.IdMap: external ids (strings; integers are taken as their
   decimal text) to 1-based indices in first-seen order. */
#include <string.h>

#include "lmfm.h"
#include "moonfm/merge.h"

static int idmap_new(lua_State *L) {
  int has_ids = !lua_isnoneornil(L, 1);
  if (has_ids) luaL_checktype(L, 1, LUA_TTABLE);
  lmfm_box *b = lmfm_newidmap(L);
  mfm_err err;
  mfm_status st = mfm_idmap_new((mfm_idmap **)&b->p, &err);
  if (st != MFM_OK) return lmfm_raise(L, "idmap", st, &err);
  if (has_ids) {
    lua_Integer n = luaL_len(L, 1);
    for (lua_Integer k = 1; k <= n; k++) {
      size_t len;
      int32_t ix;
      lua_geti(L, 1, k);
      if (!lua_isstring(L, -1))
        return luaL_error(L, "idmap: id %d is a %s, not a string",
                          (int)k, luaL_typename(L, -1));
      const char *id = lua_tolstring(L, -1, &len);
      st = mfm_idmap_intern(b->p, id, len, &ix, &err);
      if (st != MFM_OK) return lmfm_raise(L, "idmap", st, &err);
      lua_pop(L, 1);
    }
  }
  return 1;
}

mfm_idmap *lmfm_checkidmap(lua_State *L, int i) {
  return lmfm_checkopen(L, i, LMFM_IDMAP);
}

lmfm_box *lmfm_newidmap(lua_State *L) {
  return lmfm_newbox(L, LMFM_IDMAP, 0);
}

static int idmap_size(lua_State *L) {
  lua_pushinteger(L, mfm_idmap_size(lmfm_checkidmap(L, 1)));
  return 1;
}

static int idmap_find(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  size_t len;
  const char *id = luaL_checklstring(L, 2, &len);
  int32_t k = mfm_idmap_find(m, id, len);
  if (k < 0) luaL_pushfail(L);
  else lua_pushinteger(L, (lua_Integer)k + 1);
  return 1;
}

static int idmap_get(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= mfm_idmap_size(m), 2,
                "index out of range");
  size_t len;
  const char *id = mfm_idmap_get(m, (int32_t)(i - 1), &len);
  lua_pushlstring(L, id, len);
  return 1;
}

static int idmap_add(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  size_t len;
  const char *id = luaL_checklstring(L, 2, &len);
  int32_t k;
  mfm_err err;
  mfm_status st = mfm_idmap_intern(m, id, len, &k, &err);
  if (st != MFM_OK) return lmfm_raise(L, "idmap:add", st, &err);
  lua_pushinteger(L, (lua_Integer)k + 1);
  return 1;
}

static int idmap_ids(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  int32_t n = mfm_idmap_size(m);
  lua_createtable(L, n, 0);
  for (int32_t k = 0; k < n; k++) {
    size_t len;
    const char *id = mfm_idmap_get(m, k, &len);
    lua_pushlstring(L, id, len);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

/* view() -> bytes, offsets: the ids concatenated and size + 1 offsets
   (little-endian int64 string), the model file's form; e.g. to send a
   map to other hosts. */
static int idmap_view(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  const char *bytes;
  const int64_t *off;
  int32_t n = mfm_idmap_size(m);
  mfm_idmap_view(m, &bytes, &off);
  lua_pushlstring(L, bytes ? bytes : "", off ? (size_t)off[n] : 0);
  if (off) {
    lua_pushlstring(L, (const char *)off, ((size_t)n + 1) * sizeof *off);
  } else {
    int64_t z = 0;
    lua_pushlstring(L, (const char *)&z, sizeof z);
  }
  return 2;
}

/* merge(bytes, offsets) -> indices: adds the ids of another map's view()
   (those it lacks, at the end, in order) and returns each one's 0-based
   index here as a little-endian int32 string (moonfm/merge.h). */
static int idmap_merge(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  size_t nb, no;
  const char *bytes = luaL_checklstring(L, 2, &nb);
  const char *offs = luaL_checklstring(L, 3, &no);
  luaL_argcheck(L, no >= sizeof(int64_t) && no % sizeof(int64_t) == 0 &&
                no / sizeof(int64_t) - 1 <= INT32_MAX, 3,
                "offsets must be a string of n + 1 int64");
  int32_t n = (int32_t)(no / sizeof(int64_t) - 1);
  /* Copies: a Lua string need not be aligned for int64. */
  int64_t *off = lua_newuserdatauv(L, no, 0);
  memcpy(off, offs, no);
  int32_t *ix = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *ix, 0);
  mfm_err err;
  mfm_status st = mfm_idmap_merge(m, bytes, (int64_t)nb, off, n, ix, &err);
  if (st != MFM_OK) return lmfm_raise(L, "idmap:merge", st, &err);
  lua_pushlstring(L, (const char *)ix, (size_t)n * sizeof *ix);
  return 1;
}

static int idmap_clone(lua_State *L) {
  mfm_idmap *m = lmfm_checkidmap(L, 1);
  lmfm_box *b = lmfm_newidmap(L);
  mfm_err err;
  mfm_status st = mfm_idmap_clone(m, (mfm_idmap **)&b->p, &err);
  if (st != MFM_OK) return lmfm_raise(L, "idmap:clone", st, &err);
  return 1;
}

static int idmap_close(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_IDMAP);
  mfm_idmap_free(b->p);
  b->p = NULL;
  return 0;
}

static int idmap_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_IDMAP);
  if (!b->p) lua_pushliteral(L, "moonfm.IdMap (closed)");
  else lua_pushfstring(L, "moonfm.IdMap (%d ids)", (int)mfm_idmap_size(b->p));
  return 1;
}

static const luaL_Reg idmap_funcs[] = {
  {"idmap", idmap_new},
  {NULL, NULL}
};

static const luaL_Reg idmap_methods[] = {
  {"add", idmap_add},
  {"clone", idmap_clone},
  {"close", idmap_close},
  {"find", idmap_find},
  {"get", idmap_get},
  {"ids", idmap_ids},
  {"merge", idmap_merge},
  {"size", idmap_size},
  {"view", idmap_view},
  {NULL, NULL}
};

static const luaL_Reg idmap_meta[] = {
  {"__index", NULL},
  {"__close", idmap_close},
  {"__gc", idmap_close},
  {"__len", idmap_size},
  {"__tostring", idmap_tostring},
  {NULL, NULL}
};

void lmfm_open_idmap(lua_State *L) {
  lmfm_newmeta(L, LMFM_IDMAP, idmap_meta, idmap_methods);
  luaL_setfuncs(L, idmap_funcs, 0);
}
