/* Requests in (JSON read by jansson, JSON lines, CSV lines), predictions
   out (written directly: a handful of ids and scores per instance), and
   mfm_serve_invoke, which ties them to the engine. */
#include "serve_impl.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "moonfm/alloc.h"

/* ---- media types ------------------------------------------------------ */

/* Compares the media type at s (up to ';', ',' or the end, spaces around
   ignored) with name, without case. */
static int media_is(const char *s, size_t n, const char *name) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  size_t e = 0;
  while (e < n && s[e] != ';' && s[e] != ',') e++;
  while (e && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
  return e == strlen(name) && strncasecmp(s, name, e) == 0;
}

static mfm_serve_format media(const char *s, size_t n) {
  if (media_is(s, n, "application/json")) return MFM_SERVE_JSON;
  if (media_is(s, n, "application/jsonlines") ||
      media_is(s, n, "application/x-jsonlines") ||
      media_is(s, n, "application/jsonl") ||
      media_is(s, n, "application/x-ndjson"))
    return MFM_SERVE_JSONLINES;
  if (media_is(s, n, "text/csv")) return MFM_SERVE_CSV;
  return MFM_SERVE_UNSUPPORTED;
}

/* Whether the media type ct has the parameter name=value (both without
   case; the value may be quoted), as in "text/csv; header=present". */
static int has_param(const char *ct, const char *name, const char *value) {
  size_t nn = strlen(name), nv = strlen(value);
  for (const char *p = strchr(ct, ';'); p; p = strchr(p, ';')) {
    p++;
    while (*p == ' ' || *p == '\t') p++;
    if (strncasecmp(p, name, nn) != 0) continue;
    const char *v = p + nn;
    while (*v == ' ' || *v == '\t') v++;
    if (*v++ != '=') continue;
    while (*v == ' ' || *v == '\t') v++;
    int quoted = *v == '"';
    v += quoted;
    if (strncasecmp(v, value, nv) != 0) continue;
    v += nv;
    v += quoted && *v == '"';
    while (*v == ' ' || *v == '\t') v++;
    if (*v == 0 || *v == ';') return 1;
  }
  return 0;
}

mfm_serve_format mfm_serve_content_type(const char *ct) {
  return ct ? media(ct, strlen(ct)) : MFM_SERVE_UNSUPPORTED;
}

int mfm_serve_csv_header(const char *ct) {
  return mfm_serve_content_type(ct) == MFM_SERVE_CSV &&
         has_param(ct, "header", "present");
}

/* The q value of the Accept entry s[0..n), in thousandths (1000 without
   one): "q=0.5" is 500, "q=0" 0.  A q that is not a number counts as 1. */
static int qvalue(const char *s, size_t n) {
  const char *e = s + n, *p = memchr(s, ';', n);
  while (p) {
    p++;
    while (p < e && (*p == ' ' || *p == '\t')) p++;
    if (e - p >= 3 && (*p == 'q' || *p == 'Q') && p[1] == '=') {
      p += 2;
      if (*p != '0' && *p != '1') return 1000;
      int q = (*p++ - '0') * 1000;
      if (p < e && *p == '.')
        for (int scale = 100, i = 1; i <= 3 && p + i < e &&
                                     p[i] >= '0' && p[i] <= '9';
             i++, scale /= 10)
          q += (p[i] - '0') * scale;
      return q > 1000 ? 1000 : q;
    }
    p = memchr(p, ';', (size_t)(e - p));
  }
  return 1000;
}

mfm_serve_format mfm_serve_accept(const char *accept, mfm_serve_format dflt) {
  if (!accept) return dflt;
  const char *s = accept;
  int blank = 1;
  for (const char *t = s; *t; t++)
    if (*t != ' ' && *t != '\t') blank = 0;
  if (blank) return dflt;
  /* Each type moonfm writes gets the q of its own entry (the first), else
     that of a wildcard; the higher q wins, q=0 refuses.  At equal q a type
     named outright beats a wildcard, the earlier named beats the later,
     and a wildcard alone gives the default. */
  int q[4] = {-1, -1, -1, -1}, at[4] = {0, 0, 0, 0}, any = -1;
  for (int pos = 1; *s; pos++) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    int w = qvalue(s, n);
    if (media_is(s, n, "*/*") || media_is(s, n, "application/*")) {
      if (w > any) any = w;
    } else {
      mfm_serve_format f = media(s, n);
      if ((f == MFM_SERVE_JSON || f == MFM_SERVE_JSONLINES) && q[f] < 0) {
        q[f] = w;
        at[f] = pos;
      }
    }
    if (!e) break;
    s = e + 1;
  }
  mfm_serve_format best = MFM_SERVE_UNSUPPORTED;
  int bq = 0, bat = 0;
  mfm_serve_format order[2] = {dflt, dflt == MFM_SERVE_JSON
                                         ? MFM_SERVE_JSONLINES
                                         : MFM_SERVE_JSON};
  for (int i = 0; i < 2; i++) {
    mfm_serve_format f = order[i];
    int w = q[f] >= 0 ? q[f] : any, pos = q[f] >= 0 ? at[f] : 1 << 20;
    if (w > bq || (w == bq && w > 0 && pos < bat)) {
      best = f;
      bq = w;
      bat = pos;
    }
  }
  return best;
}

const char *mfm_serve_format_name(mfm_serve_format f) {
  switch (f) {
  case MFM_SERVE_JSON: return "application/json";
  case MFM_SERVE_JSONLINES: return "application/jsonlines";
  case MFM_SERVE_CSV: return "text/csv";
  default: return "text/plain";
  }
}

/* ---- buffers ---------------------------------------------------------- */

void mfm_sbuf_put(serve_buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + n + 1) c *= 2;
    char *p = mfm_realloc(b->p, c);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = c;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

int mfm_serve_grow(void **p, int64_t *cap, int64_t need, size_t sz) {
  if (need <= *cap) return 1;
  int64_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = mfm_realloc(*p, (size_t)c * sz);
  if (!q) return 0;
  *p = q;
  *cap = c;
  return 1;
}

/* ---- workers ---------------------------------------------------------- */

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

/* jansson allocates through libmoonfm too, so fault injection reaches the
   decoder.  Its errors do not always say that memory ran out, so the
   wrapper records it for the thread. */
static _Thread_local int json_oom;

static void *json_alloc(size_t n) {
  void *p = mfm_malloc(n);
  if (!p) json_oom = 1;
  return p;
}

static void route_jansson(void) { json_set_alloc_funcs(json_alloc, mfm_free); }

json_t *mfm_serve_json_load(const char *s, size_t n, json_error_t *je,
                            int *oom) {
  pthread_once(&alloc_once, route_jansson);
  json_oom = 0;
  json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, je);
  *oom = json_oom || (!j && json_error_code(je) == json_error_out_of_memory);
  if (*oom) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

mfm_status mfm_serve_worker_new(const mfm_serve_model *m,
                                mfm_serve_worker **out, mfm_err *err) {
  pthread_once(&alloc_once, route_jansson);
  *out = NULL;
  mfm_serve_worker *w = mfm_calloc(1, sizeof *w);
  if (!w) goto oom;
  w->m = m;
  size_t k = m->p.factors.k > 0 ? (size_t)m->p.factors.k : 1;
  size_t ni = m->p.factors.n_items > 0 ? (size_t)m->p.factors.n_items : 1;
  w->ub = mfm_alloc_aligned(MFM_SERVE_BLOCK * k, sizeof(float));
  w->sb = mfm_alloc_aligned(MFM_SERVE_BLOCK * ni, sizeof(float));
  w->mark = mfm_calloc(ni, 1);
  w->hs = mfm_malloc_array(MFM_SERVE_MAX_K, sizeof(float));
  w->hi = mfm_malloc_array(MFM_SERVE_MAX_K, sizeof(int32_t));
  if (!w->ub || !w->sb || !w->mark || !w->hs || !w->hi) goto oom;
  *out = w;
  return MFM_OK;
oom:
  mfm_serve_worker_free(w);
  return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
}

void mfm_serve_worker_free(mfm_serve_worker *w) {
  if (!w) return;
  mfm_free_aligned(w->ub);
  mfm_free_aligned(w->sb);
  mfm_free(w->mark);
  mfm_free(w->hs);
  mfm_free(w->hi);
  mfm_free(w->inst);
  mfm_free(w->ids);
  mfm_free(w->reps);
  mfm_free(w->res_items);
  mfm_free(w->res_scores);
  mfm_free(w->out.p);
  mfm_free(w->text);
  mfm_free(w);
}

/* ---- decoding --------------------------------------------------------- */

/* Where an error is: "instances[3].", "line 4: " or "". */
typedef struct where {
  char s[48];
} where;

static mfm_status bad(mfm_err *err, const where *at, const char *field,
                      const char *what) {
  return mfm_err_set(err, MFM_EINVAL, "%s%s: %s", at->s, field, what);
}

/* The text of an id (a JSON string, or an integer written in decimal) in
   *s, *n; 0 when the value is neither. */
static int id_text(mfm_serve_worker *w, const json_t *v, const char **s,
                   size_t *n) {
  if (json_is_string(v)) {
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 1;
  }
  if (json_is_integer(v)) {
    if (w->cap_text < 32) {
      char *t = mfm_realloc(w->text, 32);
      if (!t) return -1;
      w->text = t;
      w->cap_text = 32;
    }
    *n = (size_t)snprintf(w->text, 32, "%lld",
                          (long long)json_integer_value(v));
    *s = w->text;
    return 1;
  }
  return 0;
}

/* Quotes at most 40 bytes of an id for a message. */
static void quote_id(char *dst, size_t cap, const char *s, size_t n) {
  size_t m = n > 40 ? 40 : n, o = 0;
  for (size_t i = 0; i < m && o + 2 < cap; i++)
    dst[o++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
  if (n > m && o + 4 < cap) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o] = 0;
}

/* Looks an id up: index >= 0, -1 unknown, -2 not an id, -3 no memory. */
static int32_t lookup(mfm_serve_worker *w, const mfm_idmap *map,
                      const json_t *v, char *shown, size_t cap) {
  const char *s;
  size_t n;
  int r = id_text(w, v, &s, &n);
  if (r < 0) return -3;
  if (r == 0) return -2;
  int32_t i = mfm_idmap_find(map, s, n);
  if (i < 0) quote_id(shown, cap, s, n);
  return i;
}

/* Resolves one id of `field` into *out: 400 for a wrong type or an id
   the map lacks (then `hint` follows the message). */
static mfm_status one_id(mfm_serve_worker *w, const mfm_idmap *map,
                         const json_t *v, const where *at, const char *field,
                         const char *noun, const char *hint, int32_t *out,
                         mfm_err *err) {
  char shown[64];
  *out = lookup(w, map, v, shown, sizeof shown);
  if (*out == -3) return mfm_err_set(err, MFM_ENOMEM, "out of memory");
  if (*out == -2) return bad(err, at, field, "must be a string or an integer");
  if (*out < 0)
    return mfm_err_set(err, MFM_EINVAL, "%s%s: unknown %s id '%s'%s", at->s,
                       field, noun, shown, hint);
  return MFM_OK;
}

/* Resolves a JSON array of ids into the ids pool; sets *off, *cnt. */
static mfm_status id_list(mfm_serve_worker *w, const mfm_idmap *map,
                          const json_t *a, const where *at, const char *field,
                          const char *noun, int64_t *off, int64_t *cnt,
                          mfm_err *err) {
  if (!json_is_array(a))
    return bad(err, at, field, "must be an array of ids");
  size_t n = json_array_size(a);
  if (n > MFM_SERVE_MAX_LIST)
    return mfm_err_set(err, MFM_EINVAL, "%s%s: more than %d ids", at->s,
                       field, MFM_SERVE_MAX_LIST);
  if (!mfm_serve_grow((void **)&w->ids, &w->cap_ids, w->n_ids + (int64_t)n,
                      sizeof *w->ids))
    return mfm_err_set(err, MFM_ENOMEM, "out of memory");
  *off = w->n_ids;
  /* Unknown feature names are all named (up to a few): a client fixes
     them in one go.  Unknown ids stop at the first. */
  int names = strcmp(noun, "feature") == 0;
  char list[160];
  size_t unknown = 0, used = 0;
  list[0] = 0;
  for (size_t i = 0; i < n; i++) {
    char shown[64];
    int32_t x = lookup(w, map, json_array_get(a, i), shown, sizeof shown);
    if (x == -3) return mfm_err_set(err, MFM_ENOMEM, "out of memory");
    if (x == -2)
      return mfm_err_set(err, MFM_EINVAL, "%s%s[%zu]: must be a string or "
                         "an integer", at->s, field, i);
    if (x < 0 && !names)
      return mfm_err_set(err, MFM_EINVAL, "%s%s[%zu]: unknown %s id '%s'",
                         at->s, field, i, noun, shown);
    if (x < 0) {
      if (unknown++ < 4 && used + strlen(shown) + 5 < sizeof list)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'",
                                 used ? ", " : "", shown);
      continue;
    }
    w->ids[w->n_ids++] = x;
  }
  if (unknown)
    return mfm_err_set(err, MFM_EINVAL, "%s%s: unknown feature name%s %s%s "
                       "(%zu of %zu; the model knows the feature names of "
                       "its user_features channel)", at->s, field,
                       unknown > 1 ? "s" : "", list,
                       unknown > 4 ? ", ..." : "", unknown, n);
  *cnt = (int64_t)n;
  return MFM_OK;
}

typedef struct opts {
  int32_t k;
  int exclude;
} opts;

static mfm_status read_k(const json_t *v, const where *at, int32_t *k,
                         mfm_err *err) {
  /* 10.0 is 10: clients that keep numbers as floats (Python with numpy,
     JavaScript) send it so. */
  double x = json_is_integer(v) ? (double)json_integer_value(v)
             : json_is_real(v)  ? json_real_value(v)
                                : 0.0;
  if (!(x >= 1 && x <= MFM_SERVE_MAX_K) || x != (double)(int32_t)x)
    return mfm_err_set(err, MFM_EINVAL, "%sk: must be an integer from 1 to "
                       "%d", at->s, MFM_SERVE_MAX_K);
  *k = (int32_t)x;
  return MFM_OK;
}

static mfm_status read_exclude(const json_t *v, const where *at, int *x,
                               mfm_err *err) {
  if (!json_is_boolean(v))
    return bad(err, at, "exclude_seen", "must be true or false");
  *x = json_is_true(v);
  return MFM_OK;
}

/* One request object (an instance). */
static mfm_status instance(mfm_serve_worker *w, const json_t *o,
                           const where *at, opts d, mfm_err *err) {
  const mfm_serve_parts *p = &w->m->p;
  if (!json_is_object(o)) {
    /* The place without the separator it ends with ("instances[2].",
       "line 3: "), else "request". */
    int n = (int)strlen(at->s);
    while (n > 0 && (at->s[n - 1] == '.' || at->s[n - 1] == ':' ||
                     at->s[n - 1] == ' '))
      n--;
    return mfm_err_set(err, MFM_EINVAL, "%.*s: must be an object such as "
                       "{\"user\": \"u1\", \"k\": 10}",
                       n ? n : 7, n ? at->s : "request");
  }
  if (w->n_inst >= MFM_SERVE_MAX_INSTANCES)
    return mfm_err_set(err, MFM_EINVAL, "request: more than %d instances",
                       MFM_SERVE_MAX_INSTANCES);
  if (!mfm_serve_grow((void **)&w->inst, &w->cap_inst, w->n_inst + 1,
                      sizeof *w->inst))
    return mfm_err_set(err, MFM_ENOMEM, "out of memory");
  serve_inst in;
  memset(&in, 0, sizeof in);
  in.what = INST_TOPK;
  in.k = d.k;
  in.exclude = d.exclude;
  in.user = -1;
  const json_t *user = NULL, *items = NULL, *inter = NULL, *feats = NULL,
               *similar = NULL;
  const char *key;
  json_t *v;
  mfm_status st;
  json_object_foreach((json_t *)o, key, v) {
    if (strcmp(key, "user") == 0) user = v;
    else if (strcmp(key, "items") == 0) items = v;
    else if (strcmp(key, "interactions") == 0) inter = v;
    else if (strcmp(key, "features") == 0) feats = v;
    else if (strcmp(key, "similar_to") == 0) similar = v;
    else if (strcmp(key, "k") == 0) {
      if ((st = read_k(v, at, &in.k, err))) return st;
    } else if (strcmp(key, "exclude_seen") == 0) {
      if ((st = read_exclude(v, at, &in.exclude, err))) return st;
    } else {
      char shown[64];
      quote_id(shown, sizeof shown, key, strlen(key));
      /* TensorFlow Serving's batch key: moonfm's is "instances". */
      if (!at->s[0] && strcmp(key, "inputs") == 0)
        return mfm_err_set(err, MFM_EINVAL, "inputs: unknown field (several "
                           "requests go in \"instances\")");
      return mfm_err_set(err, MFM_EINVAL, "%s%s: unknown field (fields: "
                         "user, k, exclude_seen, items, interactions, "
                         "features, similar_to)", at->s, shown);
    }
  }
  if (similar) {
    /* The items nearest an item: cosine of the item rows, the item left
       out; there is no user, so nothing else applies. */
    if (user || items || inter || feats)
      return bad(err, at, "similar_to", "give it alone (with k), not with "
                 "user, items, interactions or features");
    if ((st = one_id(w, p->items, similar, at, "similar_to", "item", "",
                     &in.item, err)))
      return st;
    in.what = INST_SIMILAR;
    w->inst[w->n_inst++] = in;
    return MFM_OK;
  }
  if (inter && feats)
    return bad(err, at, "interactions", "give interactions or features, "
               "not both");
  int32_t k = p->factors.k;
  if (inter || feats) {
    /* A user next to them only names the new user (a batch's line may
       carry its id); the model's row for that id is not used. */
    if (user && !json_is_string(user) && !json_is_integer(user))
      return bad(err, at, "user", "must be a string or an integer");
    mfm_serve_rep_fn fn = inter ? p->fold_in : p->from_features;
    void *ctx = inter ? p->fold_in_ctx : p->features_ctx;
    const char *field = inter ? "interactions" : "features";
    if (!fn)
      return mfm_err_set(err, MFM_EINVAL, "%s%s: this model (kind %s) "
                         "cannot represent a new user from %s", at->s, field,
                         w->m->kind, field);
    const mfm_idmap *map = inter ? p->items : p->features;
    if ((st = id_list(w, map, inter ? inter : feats, at, field,
                      inter ? "item" : "feature", &in.list, &in.n_list,
                      err)))
      return st;
    if (!mfm_serve_grow((void **)&w->reps, &w->cap_reps,
                        w->n_reps + k + 1, sizeof *w->reps))
      return mfm_err_set(err, MFM_ENOMEM, "out of memory");
    in.rep = w->n_reps;
    st = fn(ctx, w->ids + in.list, (int32_t)in.n_list, w->reps + in.rep,
            w->reps + in.rep + k, err);
    if (st == MFM_ENOMEM) return st;
    if (st != MFM_OK) {
      char why[sizeof err->msg];
      snprintf(why, sizeof why, "%s", err ? err->msg : "refused");
      return mfm_err_set(err, MFM_EINVAL, "%s%s: %s", at->s, field, why);
    }
    w->n_reps += k + 1;
    /* Only the fold-in items count as seen; feature users have none. */
    if (!inter) in.n_list = 0;
  } else if (user) {
    if ((st = one_id(w, p->users, user, at, "user", "user",
                     " (send \"interactions\" or \"features\" for a new "
                     "user)", &in.user, err)))
      return st;
  } else {
    return bad(err, at, "user", "missing (or send \"interactions\" or "
               "\"features\" for a new user)");
  }
  if (items) {
    int64_t off, cnt;
    if ((st = id_list(w, p->items, items, at, "items", "item", &off, &cnt,
                      err)))
      return st;
    in.what = INST_SCORE;
    in.list = off;
    in.n_list = cnt;
  }
  w->inst[w->n_inst++] = in;
  return MFM_OK;
}

static void where_line(where *at, size_t line) {
  snprintf(at->s, sizeof at->s, "line %zu: ", line);
}

static mfm_status json_error(mfm_err *err, const where *at,
                             const json_error_t *je) {
  return mfm_err_set(err, MFM_EINVAL, "%sinvalid JSON at line %d, column "
                     "%d: %s", at->s, je->line, je->column, je->text);
}

static mfm_status decode_json(mfm_serve_worker *w, const char *body,
                              size_t len, mfm_err *err) {
  json_error_t je;
  where at = {""};
  int oom;
  size_t a = 0;
  while (a < len && (body[a] == ' ' || body[a] == '\t' || body[a] == '\r' ||
                     body[a] == '\n'))
    a++;
  if (a == len)
    return mfm_err_set(err, MFM_EINVAL, "request: the body is empty (send "
                       "a JSON object such as {\"user\": \"u1\", \"k\": "
                       "10})");
  json_t *root = mfm_serve_json_load(body, len, &je, &oom);
  if (!root) {
    if (oom)
      return mfm_err_set(err, MFM_ENOMEM, "out of memory");
    return json_error(err, &at, &je);
  }
  mfm_status st = MFM_OK;
  json_t *inst = json_object_get(root, "instances");
  if (!json_is_object(root)) {
    st = mfm_err_set(err, MFM_EINVAL, "request: must be a JSON object such "
                     "as {\"user\": \"u1\", \"k\": 10}%s",
                     json_is_array(root) ? " (several go in {\"instances\": "
                     "[...]})" : "");
  } else if (inst) {
    opts d = {MFM_SERVE_DEFAULT_K, 1};
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      if (strcmp(key, "instances") == 0) continue;
      if (strcmp(key, "k") == 0) st = read_k(v, &at, &d.k, err);
      else if (strcmp(key, "exclude_seen") == 0)
        st = read_exclude(v, &at, &d.exclude, err);
      else {
        char shown[64];
        quote_id(shown, sizeof shown, key, strlen(key));
        st = mfm_err_set(err, MFM_EINVAL, "%s: unknown field beside "
                         "instances (allowed: k, exclude_seen)", shown);
      }
      if (st) break;
    }
    if (!st && !json_is_array(inst))
      st = mfm_err_set(err, MFM_EINVAL, "instances: must be an array of "
                       "request objects");
    for (size_t i = 0; !st && i < json_array_size(inst); i++) {
      snprintf(at.s, sizeof at.s, "instances[%zu].", i);
      st = instance(w, json_array_get(inst, i), &at, d, err);
    }
  } else {
    opts d = {MFM_SERVE_DEFAULT_K, 1};
    st = instance(w, root, &at, d, err);
  }
  json_decref(root);
  return st;
}

/* Calls fn on each line (without its \n and a trailing \r); blank lines
   are skipped. */
static mfm_status each_line(mfm_serve_worker *w, const char *body, size_t len,
                            mfm_status (*fn)(mfm_serve_worker *, const char *,
                                             size_t, size_t, mfm_err *),
                            mfm_err *err) {
  size_t line = 0, i = 0;
  while (i < len) {
    const char *s = body + i;
    const char *e = memchr(s, '\n', len - i);
    size_t n = e ? (size_t)(e - s) : len - i;
    i += n + (e ? 1 : 0);
    line++;
    if (n && s[n - 1] == '\r') n--;
    size_t a = 0;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
    if (a == n) continue;
    mfm_status st = fn(w, s, n, line, err);
    if (st) return st;
  }
  if (w->n_inst == 0)
    return mfm_err_set(err, MFM_EINVAL, "request: the body has no lines");
  return MFM_OK;
}

static mfm_status jsonl_line(mfm_serve_worker *w, const char *s, size_t n,
                             size_t line, mfm_err *err) {
  json_error_t je;
  where at;
  where_line(&at, line);
  int oom;
  json_t *o = mfm_serve_json_load(s, n, &je, &oom);
  if (!o) {
    if (oom)
      return mfm_err_set(err, MFM_ENOMEM, "out of memory");
    return json_error(err, &at, &je);
  }
  opts d = {MFM_SERVE_DEFAULT_K, 1};
  mfm_status st = instance(w, o, &at, d, err);
  json_decref(o);
  return st;
}

static mfm_status csv_line(mfm_serve_worker *w, const char *s, size_t n,
                           size_t line, mfm_err *err) {
  where at;
  where_line(&at, line);
  if (w->csv_header) {
    /* text/csv; header=present (RFC 4180): the first line names the
       column. */
    w->csv_header = 0;
    return MFM_OK;
  }
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') s++, n -= 2;
  if (w->n_inst >= MFM_SERVE_MAX_INSTANCES)
    return mfm_err_set(err, MFM_EINVAL, "request: more than %d lines",
                       MFM_SERVE_MAX_INSTANCES);
  if (!mfm_serve_grow((void **)&w->inst, &w->cap_inst, w->n_inst + 1,
                      sizeof *w->inst))
    return mfm_err_set(err, MFM_ENOMEM, "out of memory");
  int32_t u = mfm_idmap_find(w->m->p.users, s, n);
  if (u < 0) {
    char shown[64];
    quote_id(shown, sizeof shown, s, n);
    return mfm_err_set(err, MFM_EINVAL, "%suser: unknown user id '%s'%s",
                       at.s, shown, memchr(s, ',', n) ? " (text/csv takes "
                       "one user id a line; send JSON for k, items and the "
                       "rest)" : "");
  }
  serve_inst in;
  memset(&in, 0, sizeof in);
  in.what = INST_TOPK;
  in.user = u;
  in.k = MFM_SERVE_DEFAULT_K;
  in.exclude = 1;
  w->inst[w->n_inst++] = in;
  return MFM_OK;
}

mfm_status mfm_serve_decode(mfm_serve_worker *w, const char *body,
                            size_t len, mfm_serve_format fmt, mfm_err *err) {
  w->n_inst = w->n_ids = w->n_reps = w->n_res = 0;
  /* A UTF-8 byte order mark (Windows editors, PowerShell) is no part of
     the request, as in training files (docs/data.md). */
  if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) {
    body += 3;
    len -= 3;
  }
  switch (fmt) {
  case MFM_SERVE_JSON: return decode_json(w, body, len, err);
  case MFM_SERVE_JSONLINES: return each_line(w, body, len, jsonl_line, err);
  case MFM_SERVE_CSV: return each_line(w, body, len, csv_line, err);
  default: return mfm_err_set(err, MFM_EINVAL, "unsupported format");
  }
}

/* ---- encoding --------------------------------------------------------- */

static void put_s(serve_buf *b, const char *s) { mfm_sbuf_put(b, s, strlen(s)); }

static void put_json_string(serve_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  mfm_sbuf_put(b, "\"", 1);
  size_t a = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 32 && c != '"' && c != '\\') continue;
    mfm_sbuf_put(b, s + a, i - a);
    char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    if (c == '"' || c == '\\') {
      e[1] = (char)c;
      mfm_sbuf_put(b, e, 2);
    } else {
      mfm_sbuf_put(b, e, 6);
    }
    a = i + 1;
  }
  mfm_sbuf_put(b, s + a, n - a);
  mfm_sbuf_put(b, "\"", 1);
}

static void put_prediction(mfm_serve_worker *w, const serve_inst *in) {
  serve_buf *b = &w->out;
  char num[32];
  put_s(b, "{\"items\":[");
  for (int64_t r = 0; r < in->n_res; r++) {
    size_t n;
    const char *id = mfm_idmap_get(w->m->p.items, w->res_items[in->res + r],
                                   &n);
    if (r) mfm_sbuf_put(b, ",", 1);
    put_json_string(b, id, n);
  }
  put_s(b, "],\"scores\":[");
  for (int64_t r = 0; r < in->n_res; r++) {
    float s = w->res_scores[in->res + r];
    int n = isfinite(s) ? snprintf(num, sizeof num, "%.9g", (double)s)
                        : snprintf(num, sizeof num, "null");
    if (r) mfm_sbuf_put(b, ",", 1);
    mfm_sbuf_put(b, num, (size_t)n);
  }
  put_s(b, "]}");
}

void mfm_serve_encode(mfm_serve_worker *w, mfm_serve_format fmt) {
  serve_buf *b = &w->out;
  b->n = 0;
  b->oom = 0;
  if (fmt == MFM_SERVE_JSONLINES) {
    for (int64_t i = 0; i < w->n_inst; i++) {
      put_prediction(w, &w->inst[i]);
      mfm_sbuf_put(b, "\n", 1);
    }
    return;
  }
  put_s(b, "{\"predictions\":[");
  for (int64_t i = 0; i < w->n_inst; i++) {
    if (i) mfm_sbuf_put(b, ",", 1);
    put_prediction(w, &w->inst[i]);
  }
  put_s(b, "]}");
}

/* ---- one invocation --------------------------------------------------- */

static void reply_text(mfm_serve_reply *out, int status, const char *msg) {
  size_t n = strlen(msg);
  out->status = status;
  out->content_type = "text/plain; charset=utf-8";
  out->body = mfm_malloc(n + 2);
  out->len = 0;
  if (out->body) {
    memcpy(out->body, msg, n);
    out->body[n] = '\n';
    out->len = n + 1;
  }
}

mfm_status mfm_serve_invoke(mfm_serve_worker *w, const char *body,
                            size_t len, const char *content_type,
                            const char *accept, const char *default_accept,
                            mfm_serve_reply *out) {
  mfm_err err;
  char msg[600];
  memset(out, 0, sizeof *out);
  mfm_serve_format in = mfm_serve_content_type(content_type);
  if (in == MFM_SERVE_UNSUPPORTED) {
    if (!content_type || !*content_type)
      snprintf(msg, sizeof msg, "no Content-Type (send "
               "application/json, application/jsonlines or text/csv)");
    else
      snprintf(msg, sizeof msg, "unsupported Content-Type '%.100s' (use "
               "application/json, application/jsonlines or text/csv)",
               content_type);
    reply_text(out, 415, msg);
    return MFM_OK;
  }
  mfm_serve_format dflt = MFM_SERVE_JSON;
  if (default_accept && *default_accept) {
    dflt = mfm_serve_accept(default_accept, MFM_SERVE_JSON);
    if (dflt == MFM_SERVE_UNSUPPORTED) dflt = MFM_SERVE_JSON;
  }
  mfm_serve_format ofmt = mfm_serve_accept(accept, dflt);
  if (ofmt == MFM_SERVE_UNSUPPORTED) {
    snprintf(msg, sizeof msg, "unsupported Accept '%.100s' (use "
             "application/json or application/jsonlines)", accept);
    reply_text(out, 406, msg);
    return MFM_OK;
  }
  w->csv_header = mfm_serve_csv_header(content_type);
  mfm_status st = mfm_serve_decode(w, body, len, in, &err);
  if (st == MFM_OK) st = mfm_serve_predict(w, &err);
  if (st == MFM_ENOMEM) {
    reply_text(out, 500, "out of memory");
    return MFM_ENOMEM;
  }
  if (st != MFM_OK) {
    reply_text(out, 400, err.msg);
    return MFM_OK;
  }
  mfm_serve_encode(w, ofmt);
  if (w->out.oom) {
    reply_text(out, 500, "out of memory");
    return MFM_ENOMEM;
  }
  /* The reply takes the buffer; the worker grows a new one next time. */
  out->body = w->out.p;
  w->out.p = NULL;
  w->out.cap = 0;
  out->len = w->out.n;
  out->status = 200;
  out->content_type = mfm_serve_format_name(ofmt);
  return MFM_OK;
}
