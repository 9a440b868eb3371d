/* JSON lines: one object per line, {"user": ..., "item": ..., "weight": ...}.
   Ids may be strings or numbers (a number's id is its text as written);
   other keys are skipped whatever their value. */
#include <math.h>
#include <string.h>

#include "reader_impl.h"

enum { J_NONE, J_STR, J_NUM, J_BOOL, J_NULL, J_OTHER };

typedef struct jval {
  int type;
  const char *p;
  size_t n;
} jval;

static const char *ws(const char *s, const char *e) {
  while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
  return s;
}

static int hex4(const char *s, const char *e, unsigned *out) {
  unsigned v = 0;
  if (e - s < 4) return 0;
  for (int k = 0; k < 4; k++) {
    char c = s[k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static char *utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xc0 | cp >> 6);
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xe0 | cp >> 12);
    *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else {
    *o++ = (char)(0xf0 | cp >> 18);
    *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
    *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  }
  return o;
}

/* A string at s (which is '"'): returns the position after it and the
   decoded bytes (in place when there is no escape, else in scratch), or
   NULL with *why. */
static const char *jstring(mfm_reader *r, const char *s, const char *e,
                           const char **out, size_t *n, const char **why) {
  const char *q = s + 1, *t = q;
  while (t < e && *t != '"' && *t != '\\') t++;
  if (t < e && *t == '"') {
    *out = q;
    *n = (size_t)(t - q);
    return t + 1;
  }
  /* Escapes: decode (never longer than the source). */
  char *o0 = r->scratch + r->scratch_used, *o = o0;
  for (t = q; t < e && *t != '"'; t++) {
    if (*t != '\\') {
      *o++ = *t;
      continue;
    }
    if (++t >= e) break;
    switch (*t) {
    case '"': case '\\': case '/': *o++ = *t; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned cp, lo;
      if (!hex4(t + 1, e, &cp)) {
        *why = "bad \\u escape";
        return NULL;
      }
      t += 4;
      if (cp >= 0xd800 && cp < 0xdc00) {
        if (e - t < 7 || t[1] != '\\' || t[2] != 'u' ||
            !hex4(t + 3, e, &lo) || lo < 0xdc00 || lo >= 0xe000) {
          *why = "unpaired surrogate in a \\u escape";
          return NULL;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        t += 6;
      } else if (cp >= 0xdc00 && cp < 0xe000) {
        *why = "unpaired surrogate in a \\u escape";
        return NULL;
      }
      o = utf8(o, cp);
      break;
    }
    default:
      *why = "bad escape in a string";
      return NULL;
    }
  }
  if (t >= e) {
    *why = "unterminated string";
    return NULL;
  }
  *out = o0;
  *n = (size_t)(o - o0);
  r->scratch_used += *n;
  return t + 1;
}

/* Skips one value of any kind; NULL with *why when it is malformed. */
static const char *jskip(const char *s, const char *e, jval *v,
                         const char **why) {
  v->p = s;
  if (s >= e) {
    *why = "missing value";
    return NULL;
  }
  if (*s == '"') {
    const char *t = s + 1;
    while (t < e && *t != '"') t += *t == '\\' ? 2 : 1;
    if (t >= e) {
      *why = "unterminated string";
      return NULL;
    }
    v->type = J_STR;
    v->n = (size_t)(t + 1 - s);
    return t + 1;
  }
  if (*s == '{' || *s == '[') {
    int depth = 0;
    const char *t = s;
    for (; t < e; t++) {
      if (*t == '"') {
        t++;
        while (t < e && *t != '"') t += *t == '\\' ? 2 : 1;
        if (t >= e) break;
      } else if (*t == '{' || *t == '[') {
        depth++;
      } else if (*t == '}' || *t == ']') {
        if (--depth == 0) break;
      }
    }
    if (t >= e) {
      *why = "unterminated object or array";
      return NULL;
    }
    v->type = J_OTHER;
    v->n = (size_t)(t + 1 - s);
    return t + 1;
  }
  const char *t = s;
  while (t < e && *t != ',' && *t != '}' && *t != ']' && *t != ' ' &&
         *t != '\t' && *t != '\r')
    t++;
  v->n = (size_t)(t - s);
  if ((v->n == 4 && memcmp(s, "true", 4) == 0) ||
      (v->n == 5 && memcmp(s, "false", 5) == 0)) {
    v->type = J_BOOL;
  } else if (v->n == 4 && memcmp(s, "null", 4) == 0) {
    v->type = J_NULL;
  } else {
    double d;
    if (!mfm_parse_number(s, v->n, &d)) {
      *why = "bad value (not a string, number, true, false or null)";
      return NULL;
    }
    v->type = J_NUM;
  }
  return t;
}

/* The column a key stands for, or -1. */
static int key_col(const mfm_reader *r, const char *k, size_t n) {
  for (int c = 0; c < MFM_N_COLS; c++) {
    const char *want = r->o.col_name[c];
    if (want && strlen(want) == n && memcmp(want, k, n) == 0) return c;
  }
  int c = mfm_reader_known_col(k, n);
  if (c >= 0 && !r->o.col_name[c] && r->o.col_pos[c] >= 0) return c;
  return -1;
}

static mfm_status jrow(mfm_reader *r, const char *s, const char *e,
                       const char *line, size_t line_n, mfm_err *err) {
  jval v[MFM_N_COLS];
  const char *why = NULL;
  memset(v, 0, sizeof v);
  r->rep.rows++;
  r->scratch_used = 0;
  if (mfm_reader_scratch(r, (size_t)(e - s), err) != MFM_OK)
    return MFM_ENOMEM;
  s = ws(s, e);
  if (*s != '{')
    return mfm_reader_bad(r, line, line_n, 0, NULL, err,
                          "expected a JSON object");
  s = ws(s + 1, e);
  if (s < e && *s == '}') {
    s++;
  } else {
    for (;;) {
      const char *k;
      size_t kn;
      jval val;
      if (s >= e || *s != '"') {
        why = "expected a key";
        break;
      }
      s = jstring(r, s, e, &k, &kn, &why);
      if (!s) break;
      s = ws(s, e);
      if (s >= e || *s != ':') {
        why = "expected ':' after a key";
        break;
      }
      s = ws(s + 1, e);
      const char *vs = s;
      s = jskip(s, e, &val, &why);
      if (!s) break;
      int c = key_col(r, k, kn);
      if (c >= 0 && v[c].type == J_NONE) {
        v[c] = val;
        if (val.type == J_STR) {
          if (!jstring(r, vs, e, &v[c].p, &v[c].n, &why)) break;
        }
      }
      s = ws(s, e);
      if (s < e && *s == ',') {
        s = ws(s + 1, e);
        continue;
      }
      if (s < e && *s == '}') {
        s++;
        break;
      }
      why = "expected ',' or '}'";
      break;
    }
  }
  if (!why && ws(s, e) != e) why = "text after the object";
  if (why) return mfm_reader_bad(r, line, line_n, 0, NULL, err, "%s", why);
  for (int c = MFM_COL_USER; c <= MFM_COL_ITEM; c++) {
    const char *name = r->o.col_name[c] ? r->o.col_name[c] : mfm_col_names[c];
    if (v[c].type == J_NONE)
      return mfm_reader_bad(r, line, line_n, 0, NULL, err,
                            "no \"%s\" field", name);
    if (v[c].type != J_STR && v[c].type != J_NUM)
      return mfm_reader_bad(r, line, line_n, 0, name, err,
                            "the %s id must be a string or a number",
                            mfm_col_names[c]);
  }
  float w = r->o.default_weight;
  jval *vw = &v[MFM_COL_WEIGHT];
  if (vw->type != J_NONE && vw->type != J_NULL) { /* null: no weight */
    const char *name = r->o.col_name[MFM_COL_WEIGHT]
                           ? r->o.col_name[MFM_COL_WEIGHT] : "weight";
    double d;
    if ((vw->type != J_NUM && vw->type != J_STR) ||
        !mfm_parse_number(vw->p, vw->n, &d))
      return mfm_reader_bad(r, line, line_n, 0, name, err,
                            "the weight is not a number");
    w = (float)d;
    if (!isfinite(w))
      return mfm_reader_bad(r, line, line_n, 0, name, err,
                            "the weight is not finite (as a 32-bit float)");
  }
  return mfm_reader_emit(r, line, line_n, v[MFM_COL_USER].p,
                         v[MFM_COL_USER].n, 0, v[MFM_COL_ITEM].p,
                         v[MFM_COL_ITEM].n, 0, w, err);
}

mfm_status mfm_reader_jsonl_lines(mfm_reader *r, const char *p,
                                  const char *end, mfm_err *err) {
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *s = p, *e = nl;
    size_t line_n = (size_t)(nl - p);
    p = nl + 1;
    r->line++;
    if (r->doc_fresh && e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
      s += 3;
    mfm_status st;
    if (r->doc_fresh && (st = mfm_reader_check_doc(r, s, e, 1, err)) != MFM_OK)
      return st;
    r->doc_fresh = 0;
    const char *t = ws(s, e);
    if (t == e) {
      r->rep.blank++;
      continue;
    }
    st = jrow(r, s, e, nl - line_n, line_n, err);
    if (st != MFM_OK) return st;
  }
  return MFM_OK;
}
