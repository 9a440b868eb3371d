/* Sparse feature rows, libsvm/libfm style: "id feature[:weight] ...",
   fields separated by spaces or tabs.  A token's weight follows its last
   ':' when that suffix is a number; otherwise the whole token is the
   feature name (weight default_weight). */
#include <math.h>
#include <string.h>

#include "reader_impl.h"

static mfm_status sparse_row(mfm_reader *r, const char *s, const char *e,
                             const char *line, size_t line_n, mfm_err *err) {
  r->rep.rows++;
  while (s < e && mfm_is_space(*s)) s++;
  const char *id = s;
  while (s < e && !mfm_is_space(*s)) s++;
  size_t id_n = (size_t)(s - id);
  int col = 1, ok;
  mfm_status st = mfm_reader_check_id(r, line, line_n, 1, "id", id, id_n,
                                      &ok, err);
  if (!ok) return st;
  /* The row's id exists even without features (a cold-start entity). */
  if (r->grow_users) {
    int32_t k;
    st = mfm_idmap_intern(r->users, id, id_n, &k, err);
    if (st != MFM_OK) return st;
  }
  for (;;) {
    while (s < e && mfm_is_space(*s)) s++;
    if (s == e) break;
    const char *t = s;
    while (s < e && !mfm_is_space(*s)) s++;
    col++;
    size_t n = (size_t)(s - t);
    float w = r->o.default_weight;
    const char *colon = NULL;
    for (const char *q = s; q > t; q--)
      if (q[-1] == ':') {
        colon = q - 1;
        break;
      }
    double d;
    if (colon && mfm_parse_number(colon + 1, (size_t)(s - colon - 1), &d)) {
      n = (size_t)(colon - t);
      w = (float)d;
      if (!isfinite(w))
        return mfm_reader_bad(r, line, line_n, col, "feature", err,
                              "the weight of feature \"%.*s\" is not finite",
                              (int)(n > 40 ? 40 : n), t);
    }
    size_t before = (size_t)r->rep.bad;
    st = mfm_reader_emit(r, line, line_n, id, id_n, 1, t, n, col, w, err);
    if (st != MFM_OK || (size_t)r->rep.bad != before) return st;
  }
  return MFM_OK;
}

mfm_status mfm_reader_sparse_lines(mfm_reader *r, const char *p,
                                   const char *end, mfm_err *err) {
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *s = p, *e = nl;
    size_t line_n = (size_t)(nl - p);
    p = nl + 1;
    r->line++;
    if (e > s && e[-1] == '\r') e--;
    if (r->doc_fresh && e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
      s += 3;
    if (r->doc_fresh) {
      mfm_status st = mfm_reader_check_doc(r, s, e, 0, err);
      if (st != MFM_OK) return st;
    }
    r->doc_fresh = 0;
    const char *t = s;
    while (t < e && mfm_is_space(*t)) t++;
    if (t == e || *t == '#') {
      r->rep.blank++;
      continue;
    }
    mfm_status st = sparse_row(r, s, e, nl - line_n, line_n, err);
    if (st != MFM_OK) return st;
  }
  return MFM_OK;
}
