/* moonfm.core: the model file (moonfm.ModelFile) and the exports.

   core.mfile_write(path, header_json, entries [, opts]) -> true | fail, msg
     entries is a sequence; each entry is one of
       {name=, dtype="f32"|"f64"|"i32"|"i64"|"u8"|"u64", rows=, cols=,
        data=binary string of rows*cols elements, little-endian}
       {model=<any model>}       every array of the model's whole state
       {name=prefix, idmap=<moonfm.IdMap>}  arrays prefix.ids, prefix.offsets
     opts: {checkpoint=true} marks the file as a checkpoint.
   core.mfile_open(path [, "read"|"map"]) -> moonfm.ModelFile | fail, msg
   core.npy_write(path, data, rows [, cols]) -> true | fail, msg
   core.npy_write_factors(model, {user=, item=, user_bias=, item_bias=})
   core.ids_write_text(path, idmap | bytes, offsets) -> true | fail, msg
   core.crc32(s [, crc]) -> integer */
#include <string.h>

#include "lmfm.h"
#include "moonfm/mfile.h"
#include "moonfm/npy.h"

#define LMFM_MFILE "moonfm.ModelFile"

static const char *const dtype_names[] = {"f32", "i32", "i64", "u8", "f64",
                                          "u64", NULL};
static const mfm_dtype dtype_values[] = {MFM_F32, MFM_I32, MFM_I64,
                                         MFM_U8,  MFM_F64, MFM_U64};

static const char *dtype_str(mfm_dtype t) {
  for (int i = 0; dtype_names[i]; i++)
    if (dtype_values[i] == t) return dtype_names[i];
  return "?";
}

/* A model argument: its state pointer and scorer. */
static const lmfm_scorer *checkmodel(lua_State *L, int i, void **model) {
  lmfm_box *b = lua_touserdata(L, i);
  if (b == NULL || luaL_getmetafield(L, i, "__mfm_scorer") == LUA_TNIL)
    luaL_typeerror(L, i, "moonfm model");
  const lmfm_scorer *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b->p == NULL) luaL_argerror(L, i, "attempt to use a closed model");
  *model = b->p;
  return s;
}

static const mfm_idmap *checkidmap(lua_State *L, int i) {
  return lmfm_checkopen(L, i, LMFM_IDMAP);
}

/* ---- writing ---------------------------------------------------------- */

typedef struct arrlist {
  mfm_array *a;
  int n, cap;
} arrlist;

/* Grows the list, kept in a userdata at stack index `slot` so that a
   raise frees it. */
static mfm_array *arr_push(lua_State *L, arrlist *l, int slot, int extra) {
  if (l->n + extra > MFM_MFILE_MAX_ARRAYS)
    luaL_error(L, "model file: more than %d arrays", MFM_MFILE_MAX_ARRAYS);
  if (l->n + extra > l->cap) {
    int cap = l->cap * 2 + extra + 8;
    mfm_array *a = lua_newuserdatauv(L, (size_t)cap * sizeof *a, 0);
    if (l->n) memcpy(a, l->a, (size_t)l->n * sizeof *a);
    lua_replace(L, slot);
    l->a = a;
    l->cap = cap;
  }
  mfm_array *r = &l->a[l->n];
  memset(r, 0, (size_t)extra * sizeof *r);
  l->n += extra;
  return r;
}

static void set_name(lua_State *L, mfm_array *a, const char *name,
                     const char *suffix) {
  size_t n1 = strlen(name), n2 = strlen(suffix);
  if (n1 + n2 == 0 || n1 + n2 >= sizeof a->name)
    luaL_error(L, "model file: array name '%s%s' must have 1 to %d bytes",
               name, suffix, (int)sizeof a->name - 1);
  memcpy(a->name, name, n1);
  memcpy(a->name + n1, suffix, n2 + 1);
}

/* Adds entry e (a table at stack index e) to the list. */
static void add_entry(lua_State *L, int e, int k, arrlist *l, int slot) {
  if (!lua_istable(L, e))
    luaL_error(L, "model file: entry %d must be a table", k);
  if (lua_getfield(L, e, "model") != LUA_TNIL) {
    void *model;
    int top = lua_gettop(L);
    const lmfm_scorer *s = checkmodel(L, top, &model);
    int cap = 64, got;
    for (;;) {
      mfm_array *a = lua_newuserdatauv(L, (size_t)cap * sizeof *a, 0);
      got = s->arrays(model, a, cap);
      if (got < cap) {
        mfm_array *dst = arr_push(L, l, slot, got);
        memcpy(dst, a, (size_t)got * sizeof *a);
        break;
      }
      lua_pop(L, 1);
      if (cap >= MFM_MFILE_MAX_ARRAYS)
        luaL_error(L, "model file: model has too many arrays");
      cap *= 4;
    }
    lua_settop(L, top - 1);
    return;
  }
  lua_pop(L, 1);
  lua_getfield(L, e, "name");
  const char *name = lua_tostring(L, -1);
  if (!name) luaL_error(L, "model file: entry %d needs a string 'name'", k);
  if (lua_getfield(L, e, "idmap") != LUA_TNIL) {
    const mfm_idmap *m = checkidmap(L, lua_gettop(L));
    const char *bytes;
    const int64_t *offs;
    int32_t n = mfm_idmap_size(m);
    mfm_idmap_view(m, &bytes, &offs);
    mfm_array *a = arr_push(L, l, slot, 2);
    set_name(L, &a[0], name, ".ids");
    a[0].dtype = MFM_U8;
    a[0].rows = n > 0 ? offs[n] : 0;
    a[0].cols = 1;
    a[0].data = (void *)bytes;
    set_name(L, &a[1], name, ".offsets");
    a[1].dtype = MFM_I64;
    a[1].rows = (int64_t)n + 1;
    a[1].cols = 1;
    a[1].data = (void *)offs;
    if (n == 0 && offs == NULL) {
      /* An empty map may have no offsets array yet: store {0}. */
      static const int64_t zero = 0;
      a[1].data = (void *)&zero;
    }
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  mfm_array *a = arr_push(L, l, slot, 1);
  set_name(L, a, name, "");
  lua_getfield(L, e, "dtype");
  const char *dts = lua_tostring(L, -1);
  int dt = -1;
  for (int i = 0; dts && dtype_names[i]; i++)
    if (strcmp(dts, dtype_names[i]) == 0) dt = i;
  if (dt < 0)
    luaL_error(L, "model file: array '%s': dtype must be one of f32, f64, "
               "i32, i64, u8, u64", name);
  a->dtype = dtype_values[dt];
  lua_getfield(L, e, "rows");
  lua_getfield(L, e, "cols");
  int isnum1, isnum2 = 1;
  a->rows = lua_tointegerx(L, -2, &isnum1);
  a->cols = lua_isnil(L, -1) ? 1 : lua_tointegerx(L, -1, &isnum2);
  if (!isnum1 || !isnum2 || a->rows < 0 || a->cols < 0)
    luaL_error(L, "model file: array '%s': rows and cols must be integers "
               ">= 0", name);
  size_t len;
  lua_getfield(L, e, "data");
  const char *data = lua_tolstring(L, -1, &len);
  if (!data && lua_type(L, -1) != LUA_TNIL)
    luaL_error(L, "model file: array '%s': data must be a string", name);
  if (!data) len = 0;
  uint64_t es = mfm_dtype_size(a->dtype), need = 0;
  int ok = a->cols == 0 || (uint64_t)a->rows <= (uint64_t)SIZE_MAX / es /
                                                    (uint64_t)a->cols;
  if (ok) need = (uint64_t)a->rows * (uint64_t)a->cols * es;
  if (!ok || need != (uint64_t)len)
    luaL_error(L, "model file: array '%s': data has %I bytes, %s %I x %I "
               "needs %I", name, (lua_Integer)len, dtype_str(a->dtype),
               (lua_Integer)a->rows, (lua_Integer)a->cols,
               (lua_Integer)need);
  a->data = (void *)data; /* kept alive by the entries table */
  lua_pop(L, 5);
}

static int mfile_write(lua_State *L) {
  size_t hlen;
  const char *path = luaL_checkstring(L, 1);
  const char *header = luaL_checklstring(L, 2, &hlen);
  luaL_checktype(L, 3, LUA_TTABLE);
  uint32_t flags = lmfm_optbool(L, 4, "checkpoint", 0) ? MFM_MFILE_CHECKPOINT
                                                       : 0;
  lua_settop(L, 4);
  lua_pushnil(L); /* slot 5: the array list's storage */
  arrlist l = {NULL, 0, 0};
  lua_Integer n = luaL_len(L, 3);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, 3, k);
    add_entry(L, lua_gettop(L), (int)k, &l, 5);
    lua_pop(L, 1);
  }
  mfm_err err;
  mfm_status st = mfm_mfile_write(path, flags, header, hlen, l.a, l.n, &err);
  if (st == MFM_ENOMEM) return lmfm_raise(L, "save", st, &err);
  if (st == MFM_EINVAL) return luaL_error(L, "save: %s", err.msg);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- reading ---------------------------------------------------------- */

static mfm_mfile *checkfile(lua_State *L) {
  return lmfm_checkopen(L, 1, LMFM_MFILE);
}

static int mfile_open(lua_State *L) {
  static const char *const modes[] = {"read", "map", NULL};
  const char *path = luaL_checkstring(L, 1);
  int mode = luaL_checkoption(L, 2, "read", modes);
  lmfm_box *b = lmfm_newbox(L, LMFM_MFILE, 0);
  mfm_err err;
  mfm_mfile *f;
  mfm_status st = mfm_mfile_open(
      path, mode ? MFM_MFILE_MAP : MFM_MFILE_READ, &f, &err);
  if (st == MFM_ENOMEM) return lmfm_raise(L, "load", st, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  b->p = f;
  return 1;
}

static int mf_close(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_MFILE);
  mfm_mfile_free(b->p);
  b->p = NULL;
  return 0;
}

static int mf_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_MFILE);
  if (!b->p)
    lua_pushstring(L, "moonfm.ModelFile (closed)");
  else
    lua_pushfstring(L, "moonfm.ModelFile (%s)", mfm_mfile_path(b->p));
  return 1;
}

static int mf_header(lua_State *L) {
  size_t n;
  const char *h = mfm_mfile_header(checkfile(L), &n);
  lua_pushlstring(L, h, n);
  return 1;
}

static int mf_info(lua_State *L) {
  mfm_mfile *f = checkfile(L);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, mfm_mfile_path(f));
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, mfm_mfile_version(f));
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, mfm_mfile_flags(f));
  lua_setfield(L, -2, "flags");
  lua_pushboolean(L, (mfm_mfile_flags(f) & MFM_MFILE_CHECKPOINT) != 0);
  lua_setfield(L, -2, "checkpoint");
  lua_pushinteger(L, (lua_Integer)mfm_mfile_size(f));
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, mfm_mfile_checksum(f));
  lua_setfield(L, -2, "checksum");
  return 1;
}

/* arrays() -> { {name=, dtype=, rows=, cols=, nbytes=}, ... } in file order */
static int mf_arrays(lua_State *L) {
  mfm_mfile *f = checkfile(L);
  int n = mfm_mfile_count(f);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    mfm_array a;
    mfm_mfile_array(f, i, &a);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, a.name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, dtype_str(a.dtype));
    lua_setfield(L, -2, "dtype");
    lua_pushinteger(L, a.rows);
    lua_setfield(L, -2, "rows");
    lua_pushinteger(L, a.cols);
    lua_setfield(L, -2, "cols");
    lua_pushinteger(L, (lua_Integer)(a.rows * a.cols *
                                     (int64_t)mfm_dtype_size(a.dtype)));
    lua_setfield(L, -2, "nbytes");
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

/* array(name) -> data (binary string), dtype, rows, cols | nil */
static int mf_array(lua_State *L) {
  mfm_mfile *f = checkfile(L);
  int i = mfm_mfile_find(f, luaL_checkstring(L, 2));
  if (i < 0) {
    luaL_pushfail(L);
    return 1;
  }
  mfm_array a;
  mfm_mfile_array(f, i, &a);
  lua_pushlstring(L, a.data,
                  (size_t)(a.rows * a.cols) * mfm_dtype_size(a.dtype));
  lua_pushstring(L, dtype_str(a.dtype));
  lua_pushinteger(L, a.rows);
  lua_pushinteger(L, a.cols);
  return 4;
}

/* fill(model) -> true | fail, msg: copies the model's arrays in place. */
static int mf_fill(lua_State *L) {
  mfm_mfile *f = checkfile(L);
  void *model;
  const lmfm_scorer *s = checkmodel(L, 2, &model);
  int cap = 64, got;
  mfm_array *a;
  for (;;) {
    a = lua_newuserdatauv(L, (size_t)cap * sizeof *a, 0);
    got = s->arrays(model, a, cap);
    if (got < cap) break;
    lua_pop(L, 1);
    if (cap >= MFM_MFILE_MAX_ARRAYS)
      return luaL_error(L, "load: model has too many arrays");
    cap *= 4;
  }
  mfm_err err;
  mfm_status st = mfm_mfile_fill(f, a, got, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* idmap(prefix) -> moonfm.IdMap | fail, msg: the map saved as
   prefix.ids + prefix.offsets. */
static int mf_idmap(lua_State *L) {
  mfm_mfile *f = checkfile(L);
  const char *prefix = luaL_checkstring(L, 2);
  if (luaL_getmetatable(L, LMFM_IDMAP) != LUA_TTABLE)
    return luaL_error(L, "id maps are not available in this build");
  lua_pop(L, 1);
  char nm[2][64];
  snprintf(nm[0], sizeof nm[0], "%s.ids", prefix);
  snprintf(nm[1], sizeof nm[1], "%s.offsets", prefix);
  int ib = mfm_mfile_find(f, nm[0]), io = mfm_mfile_find(f, nm[1]);
  mfm_err err;
  if (ib < 0 || io < 0) {
    mfm_err_set(&err, MFM_EFORMAT, "%s: id map '%s' is missing",
                mfm_mfile_path(f), prefix);
    return lmfm_pushfail(L, &err);
  }
  mfm_array b, o;
  mfm_mfile_array(f, ib, &b);
  mfm_mfile_array(f, io, &o);
  if (b.dtype != MFM_U8 || b.cols != 1 || o.dtype != MFM_I64 ||
      o.cols != 1 || o.rows < 1 || o.rows - 1 > INT32_MAX) {
    mfm_err_set(&err, MFM_EFORMAT, "%s: id map '%s' has the wrong types",
                mfm_mfile_path(f), prefix);
    return lmfm_pushfail(L, &err);
  }
  lmfm_box *box = lmfm_newbox(L, LMFM_IDMAP, 0);
  mfm_idmap *m;
  mfm_status st = mfm_idmap_from_view(b.data, b.rows, o.data,
                                      (int32_t)(o.rows - 1), &m, &err);
  if (st == MFM_ENOMEM) return lmfm_raise(L, "load", st, &err);
  if (st != MFM_OK) {
    mfm_err e2;
    mfm_err_set(&e2, st, "%s: id map '%s': %.200s", mfm_mfile_path(f),
                prefix, err.msg);
    return lmfm_pushfail(L, &e2);
  }
  box->p = m;
  return 1;
}

/* ---- exports ---------------------------------------------------------- */

static int l_npy_write(lua_State *L) {
  size_t len;
  const char *path = luaL_checkstring(L, 1);
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer rows = luaL_checkinteger(L, 3);
  int ndim = lua_isnoneornil(L, 4) ? 1 : 2;
  lua_Integer cols = luaL_optinteger(L, 4, 1);
  luaL_argcheck(L, rows >= 0, 3, "must be >= 0");
  luaL_argcheck(L, cols >= 0, 4, "must be >= 0");
  if ((uint64_t)rows * (uint64_t)cols * 4 != (uint64_t)len)
    return luaL_error(L, "npy: %I x %I floats need %I bytes, got %I", rows,
                      cols, rows * cols * 4, (lua_Integer)len);
  mfm_err err;
  mfm_status st = mfm_npy_write_f32(path, (const float *)(const void *)data,
                                    ndim, rows, cols, cols, &err);
  if (st == MFM_ENOMEM || st == MFM_EINVAL)
    return lmfm_raise(L, "npy", st, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* npy_write_factors(model, {user=, item=, user_bias=, item_bias=}): the
   model's representations and biases (zeros when it has none); any path
   may be omitted. */
static int l_npy_write_factors(lua_State *L) {
  void *model;
  const lmfm_scorer *s = checkmodel(L, 1, &model);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *pu = lmfm_optstr(L, 2, "user", NULL);
  const char *pi = lmfm_optstr(L, 2, "item", NULL);
  const char *pub = lmfm_optstr(L, 2, "user_bias", NULL);
  const char *pib = lmfm_optstr(L, 2, "item_bias", NULL);
  mfm_factors fa;
  mfm_err err;
  mfm_status st = s->factors(model, &fa, &err);
  if (st != MFM_OK) return lmfm_raise(L, "export", st, &err);
  if (st == MFM_OK && pu)
    st = mfm_npy_write_f32(pu, fa.user, 2, fa.n_users, fa.k, fa.ld_user,
                           &err);
  if (st == MFM_OK && pi)
    st = mfm_npy_write_f32(pi, fa.item, 2, fa.n_items, fa.k, fa.ld_item,
                           &err);
  if (st == MFM_OK && pub)
    st = mfm_npy_write_f32(pub, fa.user_bias, 1, fa.n_users, 1, 1, &err);
  if (st == MFM_OK && pib)
    st = mfm_npy_write_f32(pib, fa.item_bias, 1, fa.n_items, 1, 1, &err);
  if (st == MFM_ENOMEM || st == MFM_EINVAL)
    return lmfm_raise(L, "export", st, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ids_write_text(path, idmap) or ids_write_text(path, bytes, offsets) where
   offsets is n+1 little-endian int64 values. */
static int l_ids_write_text(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *bytes;
  const int64_t *offs;
  int64_t n;
  int64_t zero = 0;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t nb, no;
    bytes = lua_tolstring(L, 2, &nb);
    const char *o = luaL_checklstring(L, 3, &no);
    luaL_argcheck(L, no >= 8 && no % 8 == 0, 3, "offsets: n+1 int64 values");
    n = (int64_t)(no / 8) - 1;
    /* Lua strings are at least 8-aligned; check the offsets here since
       the core trusts them. */
    offs = (const int64_t *)(const void *)o;
    for (int64_t i = 0; i <= n; i++)
      if (offs[i] < 0 || (uint64_t)offs[i] > nb || (i && offs[i] < offs[i-1]))
        return luaL_argerror(L, 3, "offsets out of range");
  } else {
    const mfm_idmap *m = checkidmap(L, 2);
    n = mfm_idmap_size(m);
    mfm_idmap_view(m, &bytes, &offs);
    if (!offs) offs = &zero;
  }
  mfm_err err;
  mfm_status st = mfm_ids_write_text(path, bytes, offs, n, &err);
  if (st == MFM_ENOMEM) return lmfm_raise(L, "export", st, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_crc32(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer c = luaL_optinteger(L, 2, 0);
  lua_pushinteger(L, mfm_crc32((uint32_t)c, s, n));
  return 1;
}

static const luaL_Reg mfile_funcs[] = {
  {"crc32", l_crc32},
  {"ids_write_text", l_ids_write_text},
  {"mfile_open", mfile_open},
  {"mfile_write", mfile_write},
  {"npy_write", l_npy_write},
  {"npy_write_factors", l_npy_write_factors},
  {NULL, NULL}
};

static const luaL_Reg mfile_methods[] = {
  {"array", mf_array},
  {"arrays", mf_arrays},
  {"close", mf_close},
  {"fill", mf_fill},
  {"header", mf_header},
  {"idmap", mf_idmap},
  {"info", mf_info},
  {NULL, NULL}
};

static const luaL_Reg mfile_meta[] = {
  {"__index", NULL},
  {"__gc", mf_close},
  {"__close", mf_close},
  {"__tostring", mf_tostring},
  {NULL, NULL}
};

void lmfm_open_mfile(lua_State *L) {
  lmfm_newmeta(L, LMFM_MFILE, mfile_meta, mfile_methods);
  luaL_setfuncs(L, mfile_funcs, 0);
}
