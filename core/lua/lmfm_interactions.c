/* moonfm.Interactions: a users x items CSR with its two id maps (user
   values 1 and 2), read from files by the C readers. */
#include <string.h>

#include "lmfm.h"
#include "moonfm/merge.h"
#include "moonfm/reader.h"

static const char *const col_names[MFM_N_COLS] = {"user", "item", "weight",
                                                  "timestamp"};

const mfm_csr *lmfm_checkinteractions(lua_State *L, int i) {
  return lmfm_checkopen(L, i, LMFM_INTERACTIONS);
}

/* Pushes the IdMap of option `key` of table t (checked), or a fresh one;
   returns it. */
static mfm_idmap *opt_idmap(lua_State *L, int t, const char *key) {
  if (!lua_isnoneornil(L, t) && lua_getfield(L, t, key) != LUA_TNIL) {
    if (!luaL_testudata(L, -1, LMFM_IDMAP))
      luaL_error(L, "option '%s' must be a moonfm.IdMap", key);
    return lmfm_checkidmap(L, lua_gettop(L));
  }
  if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
  lmfm_box *b = lmfm_newidmap(L);
  mfm_err err;
  mfm_status st = mfm_idmap_new((mfm_idmap **)&b->p, &err);
  if (st != MFM_OK) lmfm_raise(L, "idmap", st, &err);
  return b->p;
}

static const char *const read_keys[] = {
  "bad_rows", "block_size", "channel", "columns", "default_weight",
  "delimiter", "file_names", "format", "grow_items", "grow_users", "header",
  "items", "max_bad_fraction", "max_bad_rows", "record_wrapper", "users",
  NULL};

static void check_keys(lua_State *L, int t, const char *const *keys,
                       const char *what) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (int i = 0; keys[i] && !ok; i++) ok = strcmp(k, keys[i]) == 0;
    }
    if (!ok)
      luaL_error(L, "%s: unknown option '%s'", what,
                 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
    lua_pop(L, 1);
  }
}

/* opts.columns = {user=, item=, weight=, timestamp=}: a 1-based position,
   a name, or false (weight and timestamp only: no such column). */
static void opt_columns(lua_State *L, int t, mfm_read_opts *o) {
  if (lua_isnoneornil(L, t) || lua_getfield(L, t, "columns") == LUA_TNIL) {
    if (!lua_isnoneornil(L, t)) lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "option 'columns' must be a table");
  int c = lua_gettop(L);
  static const char *const keys[] = {"user", "item", "weight", "timestamp",
                                     NULL};
  check_keys(L, c, keys, "columns");
  for (int k = 0; k < MFM_N_COLS; k++) {
    int ty = lua_getfield(L, c, col_names[k]);
    if (ty == LUA_TNUMBER) {
      lua_Integer pos = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
      if (pos < 1 || pos > 100000)
        luaL_error(L, "columns.%s: a position must be an integer >= 1",
                   keys[k]);
      o->col_pos[k] = (int)pos;
    } else if (ty == LUA_TSTRING) {
      o->col_name[k] = lua_tostring(L, -1); /* kept alive by opts */
    } else if (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1) &&
               k >= MFM_COL_WEIGHT) {
      o->col_pos[k] = -1;
    } else if (ty != LUA_TNIL) {
      luaL_error(L, "columns.%s must be a position, a name%s", keys[k],
                 k >= MFM_COL_WEIGHT ? " or false" : "");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static mfm_format opt_format(lua_State *L, int t) {
  const char *f = lmfm_optstr(L, t, "format", "csv");
  if (strcmp(f, "csv") == 0 || strcmp(f, "tsv") == 0) return MFM_FORMAT_CSV;
  if (strcmp(f, "jsonl") == 0) return MFM_FORMAT_JSONL;
  if (strcmp(f, "sparse") == 0 || strcmp(f, "libsvm") == 0)
    return MFM_FORMAT_SPARSE;
  luaL_error(L, "option 'format' must be \"csv\", \"tsv\", \"jsonl\" or "
             "\"sparse\", got \"%s\"", f);
  return MFM_FORMAT_CSV;
}

static void read_opts(lua_State *L, int t, mfm_read_opts *o,
                      mfm_source_opts *so) {
  *o = mfm_read_opts_default();
  memset(so, 0, sizeof *so);
  if (!lua_isnoneornil(L, t)) {
    luaL_checktype(L, t, LUA_TTABLE);
    check_keys(L, t, read_keys, "read_interactions");
  }
  o->format = opt_format(L, t);
  if (strcmp(lmfm_optstr(L, t, "format", "csv"), "tsv") == 0)
    o->delimiter = '\t';
  const char *d = lmfm_optstr(L, t, "delimiter", NULL);
  if (d) {
    if (strcmp(d, "tab") == 0 || strcmp(d, "\\t") == 0) d = "\t";
    if (strcmp(d, "::") == 0) d = ":"; /* the reader's name for "::" */
    else if (strcmp(d, ":") == 0) d = "";
    if (strlen(d) != 1 || !strchr(",\t;| :", d[0]))
      luaL_error(L, "option 'delimiter' must be one of \",\", \"\\t\", "
                 "\";\", \"|\", \" \", \"::\"");
    o->delimiter = d[0];
  }
  if (!lua_isnoneornil(L, t)) {
    int ty = lua_getfield(L, t, "header");
    if (ty == LUA_TBOOLEAN) {
      o->header = lua_toboolean(L, -1);
    } else if (ty == LUA_TSTRING) {
      const char *h = lua_tostring(L, -1);
      if (strcmp(h, "present") == 0) o->header = 1;
      else if (strcmp(h, "absent") == 0) o->header = 0;
      else if (strcmp(h, "detect") == 0) o->header = -1;
      else luaL_error(L, "option 'header' must be true, false, \"present\", "
                      "\"absent\" or \"detect\"");
    } else if (ty != LUA_TNIL) {
      luaL_error(L, "option 'header' must be a boolean or a string");
    }
    lua_pop(L, 1);
  }
  opt_columns(L, t, o);
  o->channel = lmfm_optstr(L, t, "channel", NULL);
  const char *bad = lmfm_optstr(L, t, "bad_rows", "fail");
  if (strcmp(bad, "skip") == 0) o->skip_bad = 1;
  else if (strcmp(bad, "fail") != 0)
    luaL_error(L, "option 'bad_rows' must be \"fail\" or \"skip\"");
  o->max_bad_rows = lmfm_optint(L, t, "max_bad_rows", -1);
  o->max_bad_fraction = lmfm_optnum(L, t, "max_bad_fraction", 1.0);
  o->default_weight = (float)lmfm_optnum(L, t, "default_weight", 1.0);
  const char *w = lmfm_optstr(L, t, "record_wrapper", "None");
  if (strcmp(w, "RecordIO") == 0) so->record_io = 1;
  else if (strcmp(w, "None") != 0)
    luaL_error(L, "option 'record_wrapper' must be \"None\" or \"RecordIO\"");
  lua_Integer block = lmfm_optint(L, t, "block_size", 0);
  if (block < 0 || block > ((lua_Integer)1 << 30))
    luaL_error(L, "option 'block_size' must be in [0, 2^30]");
  so->block = (size_t)block;
  const char *why = mfm_read_opts_check(o);
  if (why) luaL_error(L, "read_interactions: %s", why);
}

static void push_report(lua_State *L, const mfm_read_report *r) {
  lua_createtable(L, 0, 24);
#define SETI(name) (lua_pushinteger(L, (lua_Integer)r->name), \
                    lua_setfield(L, -2, #name))
  SETI(rows);
  SETI(kept);
  SETI(bad);
  SETI(blank);
  SETI(headers);
  SETI(dropped);
  SETI(unseen_user_rows);
  SETI(unseen_item_rows);
  SETI(unseen_users);
  SETI(unseen_items);
  SETI(files);
  SETI(bytes);
  SETI(raw_bytes);
  SETI(nonpositive);
  SETI(negative);
#undef SETI
  if (r->delimiter) {
    char d[2] = {r->delimiter, 0};
    lua_pushstring(L, r->delimiter == ':' ? "::" : d);
    lua_setfield(L, -2, "delimiter");
  }
  if (r->header >= 0) {
    lua_pushboolean(L, r->header);
    lua_setfield(L, -2, "header");
  }
  lua_createtable(L, 0, 4);
  for (int c = 0; c < MFM_N_COLS; c++) {
    if (r->col_pos[c]) {
      lua_pushinteger(L, r->col_pos[c]);
      lua_setfield(L, -2, col_names[c]);
    }
  }
  lua_setfield(L, -2, "columns");
  lua_createtable(L, r->n_bad_kept, 0);
  for (int k = 0; k < r->n_bad_kept; k++) {
    lua_pushstring(L, r->bad_rows[k]);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "bad_examples");
}

static const char *status_kind(mfm_status st) {
  switch (st) {
  case MFM_EIO: return "io";
  case MFM_EFORMAT: return "format";
  case MFM_ECANCELED: return "stopped";
  default: return "error";
  }
}

/* read_interactions(paths, opts) -> interactions, report | fail, msg, kind
   kind: "io", "format" or "stopped". */
static int inter_read(lua_State *L) {
  mfm_read_opts o;
  mfm_source_opts so;
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_replace(L, 1);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  read_opts(L, 2, &o, &so);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n <= 10000000, 1, "too many paths");
  const char **paths = lua_newuserdatauv(L, (size_t)(n ? n : 1) * 2 *
                                         sizeof *paths, 0);
  const char **names = paths + n;
  int has_names = 0;
  if (lua_getfield(L, 2, "file_names") != LUA_TNIL) {
    luaL_argcheck(L, lua_istable(L, -1) && luaL_len(L, -1) == n, 2,
                  "file_names must be a table with one name per path");
    has_names = 1;
  }
  int names_t = lua_gettop(L);
  for (lua_Integer k = 1; k <= n; k++) {
    if (lua_geti(L, 1, k) != LUA_TSTRING)
      luaL_error(L, "read_interactions: path %d is not a string", (int)k);
    paths[k - 1] = lua_tostring(L, -1); /* held by the paths table */
    lua_pop(L, 1);
    names[k - 1] = paths[k - 1];
    if (has_names) {
      if (lua_geti(L, names_t, k) != LUA_TSTRING)
        luaL_error(L, "read_interactions: file name %d is not a string",
                   (int)k);
      names[k - 1] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  int grow_u = lmfm_optbool(L, 2, "grow_users", 1);
  int grow_i = lmfm_optbool(L, 2, "grow_items", 1);
  lmfm_box *box = lmfm_newbox(L, LMFM_INTERACTIONS, 2);
  int bi = lua_gettop(L);
  mfm_idmap *users = opt_idmap(L, 2, "users");
  lua_setiuservalue(L, bi, 1);
  mfm_idmap *items = opt_idmap(L, 2, "items");
  lua_setiuservalue(L, bi, 2);
  luaL_argcheck(L, users != items, 2, "users and items must be different "
                "maps");

  /* From here on, no Lua error until the C resources are released. */
  mfm_err err;
  mfm_reader *r = NULL;
  mfm_csr *x = NULL;
  mfm_read_report rep;
  mfm_status st = mfm_reader_new(&o, users, items, grow_u, grow_i, &r, &err);
  for (lua_Integer k = 0; st == MFM_OK && k < n; k++) {
    mfm_source *s;
    st = mfm_source_open(paths[k], &so, &s, &err);
    if (st != MFM_OK) {
      if (o.channel) {
        char tmp[sizeof err.msg];
        memcpy(tmp, err.msg, sizeof tmp);
        if (snprintf(err.msg, sizeof err.msg, "channel '%s': %s", o.channel,
                     tmp) < 0)
          err.msg[0] = '\0';
      }
      break;
    }
    st = mfm_reader_feed(r, s, names[k], &err);
    mfm_source_free(s);
  }
  if (st == MFM_OK) st = mfm_reader_finish(r, &x, &err);
  if (r) rep = *mfm_reader_report(r);
  mfm_reader_free(r);
  if (st == MFM_ENOMEM || st == MFM_EINVAL)
    return lmfm_raise(L, "read_interactions", st, &err);
  if (st != MFM_OK) {
    lmfm_pushfail(L, &err);
    lua_pushstring(L, status_kind(st));
    return 3;
  }
  box->p = x;
  lua_pushvalue(L, bi);
  push_report(L, &rep);
  return 2;
}

/* An id or a 1-based index (integer) of map m, as a 0-based index. */
static int32_t triplet_index(lua_State *L, mfm_idmap *m, int t,
                             lua_Integer k, const char *what, mfm_err *err,
                             mfm_status *st) {
  int32_t ix = -1;
  int ty = lua_geti(L, t, k);
  if (ty == LUA_TNUMBER && lua_isinteger(L, -1)) {
    lua_Integer v = lua_tointeger(L, -1);
    if (v < 1 || v > mfm_idmap_size(m))
      luaL_error(L, "interactions_from_triplets: %s %d: index %d is out of "
                 "range 1..%d", what, (int)k, (int)v, (int)mfm_idmap_size(m));
    ix = (int32_t)(v - 1);
  } else if (ty == LUA_TSTRING) {
    size_t len;
    const char *id = lua_tolstring(L, -1, &len);
    *st = mfm_idmap_intern(m, id, len, &ix, err);
  } else {
    luaL_error(L, "interactions_from_triplets: %s %d must be an id "
               "(string) or an index (integer)", what, (int)k);
  }
  lua_pop(L, 1);
  return ix;
}

/* interactions_from_triplets(users, items, us, is [, ws]): ids (strings,
   added to the maps) or 1-based indices (integers). */
static int inter_from_triplets(lua_State *L) {
  mfm_idmap *users = lmfm_checkidmap(L, 1);
  mfm_idmap *items = lmfm_checkidmap(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  int has_w = !lua_isnoneornil(L, 5);
  if (has_w) luaL_checktype(L, 5, LUA_TTABLE);
  luaL_argcheck(L, users != items, 2, "users and items must differ");
  lua_Integer n = luaL_len(L, 3);
  luaL_argcheck(L, luaL_len(L, 4) == n, 4, "as many items as users");
  luaL_argcheck(L, !has_w || luaL_len(L, 5) == n, 5,
                "as many weights as users");
  luaL_argcheck(L, n < INT32_MAX, 3, "too many triplets");
  /* Scratch in a userdata: freed by the GC even if a check raises. */
  /* rows, cols (int32) and vals (float): 12 bytes per triplet. */
  int32_t *rows = lua_newuserdatauv(L, ((size_t)n + 1) * 12, 0);
  int32_t *cols = rows + n;
  float *vals = (float *)(cols + n);
  mfm_err err;
  mfm_status st = MFM_OK;
  for (lua_Integer k = 1; k <= n && st == MFM_OK; k++) {
    rows[k - 1] = triplet_index(L, users, 3, k, "user", &err, &st);
    if (st == MFM_OK)
      cols[k - 1] = triplet_index(L, items, 4, k, "item", &err, &st);
  }
  if (st != MFM_OK) return lmfm_raise(L, "interactions_from_triplets", st,
                                      &err);
  if (has_w) {
    for (lua_Integer k = 1; k <= n; k++) {
      int isnum;
      lua_geti(L, 5, k);
      lua_Number w = lua_tonumberx(L, -1, &isnum);
      if (!isnum) luaL_error(L, "weight %d is not a number", (int)k);
      vals[k - 1] = (float)w;
      lua_pop(L, 1);
    }
  }
  lmfm_box *box = lmfm_newbox(L, LMFM_INTERACTIONS, 2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  mfm_csr *x;
  st = mfm_csr_from_coo(mfm_idmap_size(users), mfm_idmap_size(items),
                        (int64_t)n, rows, cols, has_w ? vals : NULL, &x,
                        &err);
  if (st != MFM_OK) return lmfm_raise(L, "interactions_from_triplets", st,
                                      &err);
  box->p = x;
  return 1;
}

/* arrays(prefix) -> the CSR as three model-file entries (binary strings):
   <prefix>.indptr (i64, rows + 1), <prefix>.indices (i32), <prefix>.data
   (f32), e.g. to save a model's training items for serving. */
static void push_entry(lua_State *L, const char *prefix, const char *name,
                       const char *dtype, int64_t rows, const void *data,
                       size_t size) {
  lua_createtable(L, 0, 5);
  lua_pushfstring(L, "%s.%s", prefix, name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, dtype);
  lua_setfield(L, -2, "dtype");
  lua_pushinteger(L, (lua_Integer)rows);
  lua_setfield(L, -2, "rows");
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "cols");
  lua_pushlstring(L, (const char *)data, (size_t)rows * size);
  lua_setfield(L, -2, "data");
}

static int inter_arrays(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  const char *prefix = luaL_checkstring(L, 2);
  lua_createtable(L, 3, 0);
  push_entry(L, prefix, "indptr", "i64", (int64_t)x->n_rows + 1, x->indptr,
             sizeof *x->indptr);
  lua_rawseti(L, -2, 1);
  push_entry(L, prefix, "indices", "i32", x->nnz, x->indices,
             sizeof *x->indices);
  lua_rawseti(L, -2, 2);
  push_entry(L, prefix, "data", "f32", x->nnz, x->data, sizeof *x->data);
  lua_rawseti(L, -2, 3);
  return 1;
}

/* item_counts() -> float32 string of the number of users of each item,
   e.g. for a popularity baseline. */
static int inter_item_counts(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  luaL_Buffer b;
  float *c = (float *)luaL_buffinitsize(L, &b, (size_t)x->n_cols * 4 + 4);
  for (int32_t j = 0; j < x->n_cols; j++) c[j] = 0.0f;
  for (int64_t p = 0; p < x->nnz; p++) c[x->indices[p]] += 1.0f;
  luaL_pushresultsize(&b, (size_t)x->n_cols * 4);
  return 1;
}

static int inter_shape(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  lua_pushinteger(L, x->n_rows);
  lua_pushinteger(L, x->n_cols);
  return 2;
}

static int inter_nnz(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lmfm_checkinteractions(L, 1)->nnz);
  return 1;
}

static int inter_users(lua_State *L) {
  lmfm_checkinteractions(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int inter_items(lua_State *L) {
  lmfm_checkinteractions(L, 1);
  lua_getiuservalue(L, 1, 2);
  return 1;
}

/* row(u) -> {item indices (1-based)}, {weights} */
static int inter_row(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  lua_Integer u = luaL_checkinteger(L, 2);
  luaL_argcheck(L, u >= 1 && u <= x->n_rows, 2, "row out of range");
  int64_t a = x->indptr[u - 1], b = x->indptr[u];
  lua_createtable(L, (int)(b - a), 0);
  lua_createtable(L, (int)(b - a), 0);
  for (int64_t p = a; p < b; p++) {
    lua_pushinteger(L, (lua_Integer)x->indices[p] + 1);
    lua_rawseti(L, -3, (lua_Integer)(p - a + 1));
    lua_pushnumber(L, x->data[p]);
    lua_rawseti(L, -2, (lua_Integer)(p - a + 1));
  }
  return 2;
}

/* resized([n_users, n_items]) -> Interactions lined up with the maps
   (default: their current sizes), sharing them. */
static int inter_resized(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  lua_getiuservalue(L, 1, 2);
  int32_t nu = mfm_idmap_size(lmfm_checkidmap(L, -2));
  int32_t ni = mfm_idmap_size(lmfm_checkidmap(L, -1));
  lua_Integer ru = luaL_optinteger(L, 2, nu), ri = luaL_optinteger(L, 3, ni);
  luaL_argcheck(L, ru >= x->n_rows && ru <= INT32_MAX, 2,
                "cannot shrink the rows");
  luaL_argcheck(L, ri >= x->n_cols && ri <= INT32_MAX, 3,
                "cannot shrink the columns");
  lmfm_box *box = lmfm_newbox(L, LMFM_INTERACTIONS, 2);
  lua_pushvalue(L, -3);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 2);
  mfm_err err;
  mfm_csr *y;
  mfm_status st = mfm_csr_resize(x, (int32_t)ru, (int32_t)ri, &y, &err);
  if (st != MFM_OK) return lmfm_raise(L, "resized", st, &err);
  box->p = y;
  return 1;
}

/* slice_rows(first, last) -> Interactions of the same shape (sharing the
   maps) whose rows outside first..last (1-based) are empty: e.g. the
   block of users one host evaluates. */
static int inter_slice_rows(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  lua_Integer first = luaL_checkinteger(L, 2);
  lua_Integer last = luaL_checkinteger(L, 3);
  luaL_argcheck(L, first >= 1 && first <= (lua_Integer)x->n_rows + 1, 2,
                "first row out of range");
  luaL_argcheck(L, last >= first - 1 && last <= x->n_rows, 3,
                "last row out of range");
  lmfm_box *box = lmfm_newbox(L, LMFM_INTERACTIONS, 2);
  lua_getiuservalue(L, 1, 1);
  lua_setiuservalue(L, -2, 1);
  lua_getiuservalue(L, 1, 2);
  lua_setiuservalue(L, -2, 2);
  mfm_err err;
  mfm_csr *y;
  mfm_status st = mfm_csr_slice_rows(x, (int32_t)(first - 1), (int32_t)last,
                                     &y, &err);
  if (st != MFM_OK) return lmfm_raise(L, "slice_rows", st, &err);
  box->p = y;
  return 1;
}

/* pack() -> string: the CSR as one binary string (n_rows, n_cols: int32;
   nnz: int64; indptr, indices, data), for interactions_merge on another
   host. */
static int inter_pack(lua_State *L) {
  const mfm_csr *x = lmfm_checkinteractions(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int32_t hdr[2] = {x->n_rows, x->n_cols};
  luaL_addlstring(&b, (const char *)hdr, sizeof hdr);
  luaL_addlstring(&b, (const char *)&x->nnz, sizeof x->nnz);
  luaL_addlstring(&b, (const char *)x->indptr,
                  ((size_t)x->n_rows + 1) * sizeof *x->indptr);
  if (x->nnz > 0) {
    luaL_addlstring(&b, (const char *)x->indices,
                    (size_t)x->nnz * sizeof *x->indices);
    luaL_addlstring(&b, (const char *)x->data,
                    (size_t)x->nnz * sizeof *x->data);
  }
  luaL_pushresult(&b);
  return 1;
}

/* A pack() string as a CSR in a userdata (pushed; copied, checked). */
static mfm_csr *unpack_csr(lua_State *L, int i, int part) {
  size_t len;
  const char *s = lua_tolstring(L, i, &len);
  int32_t hdr[2];
  int64_t nnz;
  if (!s || len < sizeof hdr + sizeof nnz)
    luaL_error(L, "interactions_merge: part %d is not a packed CSR", part);
  memcpy(hdr, s, sizeof hdr);
  memcpy(&nnz, s + sizeof hdr, sizeof nnz);
  size_t want = sizeof hdr + sizeof nnz;
  if (hdr[0] < 0 || hdr[1] < 0 || nnz < 0 || nnz > INT64_MAX / 16)
    luaL_error(L, "interactions_merge: part %d has a bad header", part);
  want += ((size_t)hdr[0] + 1) * 8 + (size_t)nnz * 8;
  if (len != want)
    luaL_error(L, "interactions_merge: part %d has %d bytes, not %d", part,
               (int)len, (int)want);
  mfm_csr *a = lua_newuserdatauv(L, sizeof *a + (len - sizeof hdr -
                                 sizeof nnz) + 8, 0);
  a->n_rows = hdr[0];
  a->n_cols = hdr[1];
  a->nnz = nnz;
  a->indptr = (int64_t *)(a + 1);
  memcpy(a->indptr, s + sizeof hdr + sizeof nnz, len - sizeof hdr -
         sizeof nnz);
  a->indices = (int32_t *)(a->indptr + a->n_rows + 1);
  a->data = (float *)(a->indices + nnz);
  if (a->indptr[0] != 0 || a->indptr[a->n_rows] != nnz)
    luaL_error(L, "interactions_merge: part %d has bad row offsets", part);
  for (int32_t r = 0; r < a->n_rows; r++)
    if (a->indptr[r + 1] < a->indptr[r])
      luaL_error(L, "interactions_merge: part %d has bad row offsets", part);
  return a;
}

/* An int32 index string (merge()) of n entries at t[key], or NULL. */
static const int32_t *opt_index(lua_State *L, int t, const char *key,
                                int32_t n, int part) {
  size_t len;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) return NULL;
  const char *s = lua_tolstring(L, -1, &len);
  if (!s || len != (size_t)n * sizeof(int32_t))
    luaL_error(L, "interactions_merge: part %d: %s must hold %d int32", part,
               key, (int)n);
  int32_t *v = lua_newuserdatauv(L, len + sizeof(int32_t), 0);
  memcpy(v, s, len);
  return v;
}

/* interactions_merge(users, items, parts [, keep]) -> Interactions of
   users:size() x items:size() with those maps: every entry of every part
   ({csr = pack() string, row_map = , col_map = }, the maps int32 strings
   from IdMap:merge taking the part's indices to these maps), summed
   where they meet.  keep = {row_lo, row_hi, col_lo, col_hi} (0-based,
   hi exclusive) keeps only entries in those rows or those columns. */
static int inter_merge(lua_State *L) {
  mfm_idmap *users = lmfm_checkidmap(L, 1);
  mfm_idmap *items = lmfm_checkidmap(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, users != items, 2, "users and items must differ");
  int32_t nu = mfm_idmap_size(users), ni = mfm_idmap_size(items);
  lua_Integer w[4] = {0, nu, 0, 0};
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    for (int k = 0; k < 4; k++) {
      lua_geti(L, 4, k + 1);
      w[k] = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_Integer n = luaL_len(L, 3);
  luaL_argcheck(L, n >= 0 && n <= 1 << 20, 3, "too many parts");
  mfm_csr_part *parts = lua_newuserdatauv(L, sizeof *parts * (size_t)(n + 1),
                                          0);
  for (lua_Integer p = 1; p <= n; p++) {
    luaL_checkstack(L, 8, "too many parts");
    if (lua_geti(L, 3, p) != LUA_TTABLE)
      return luaL_error(L, "interactions_merge: part %d is not a table",
                        (int)p);
    int t = lua_gettop(L);
    lua_getfield(L, t, "csr");
    parts[p - 1].csr = unpack_csr(L, -1, (int)p);
    parts[p - 1].row_map = opt_index(L, t, "row_map",
                                     parts[p - 1].csr->n_rows, (int)p);
    parts[p - 1].col_map = opt_index(L, t, "col_map",
                                     parts[p - 1].csr->n_cols, (int)p);
    /* Everything pushed stays on the stack until the merge is done. */
  }
  lmfm_box *box = lmfm_newbox(L, LMFM_INTERACTIONS, 2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 2);
  mfm_err err;
  mfm_csr *x;
  mfm_status st = mfm_csr_merge(parts, (int)n, nu, ni, (int32_t)w[0],
                                (int32_t)w[1], (int32_t)w[2], (int32_t)w[3],
                                &x, &err);
  if (st != MFM_OK) return lmfm_raise(L, "interactions_merge", st, &err);
  box->p = x;
  return 1;
}

static int inter_close(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_INTERACTIONS);
  mfm_csr_free(b->p);
  b->p = NULL;
  return 0;
}

static int inter_tostring(lua_State *L) {
  lmfm_box *b = luaL_checkudata(L, 1, LMFM_INTERACTIONS);
  const mfm_csr *x = b->p;
  if (!x) lua_pushliteral(L, "moonfm.Interactions (closed)");
  else lua_pushfstring(L, "moonfm.Interactions (%d users x %d items, %I "
                       "interactions)", (int)x->n_rows, (int)x->n_cols,
                       (lua_Integer)x->nnz);
  return 1;
}

static const luaL_Reg inter_funcs[] = {
  {"interactions_from_triplets", inter_from_triplets},
  {"interactions_merge", inter_merge},
  {"read_interactions", inter_read},
  {NULL, NULL}
};

static const luaL_Reg inter_methods[] = {
  {"arrays", inter_arrays},
  {"close", inter_close},
  {"item_counts", inter_item_counts},
  {"items", inter_items},
  {"nnz", inter_nnz},
  {"pack", inter_pack},
  {"resized", inter_resized},
  {"row", inter_row},
  {"shape", inter_shape},
  {"slice_rows", inter_slice_rows},
  {"users", inter_users},
  {NULL, NULL}
};

static const luaL_Reg inter_meta[] = {
  {"__index", NULL},
  {"__close", inter_close},
  {"__gc", inter_close},
  {"__tostring", inter_tostring},
  {NULL, NULL}
};

void lmfm_open_interactions(lua_State *L) {
  lmfm_newmeta(L, LMFM_INTERACTIONS, inter_meta, inter_methods);
  luaL_setfuncs(L, inter_funcs, 0);
}
