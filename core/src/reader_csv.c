/* Delimited text: CSV, TSV and friends, with or without a header, quoted
   fields (RFC 4180 quoting on one line), CRLF, a UTF-8 BOM. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reader_impl.h"

/* Names a header (or a JSON key) may use for each column, compared
   without case: the generic ones, then those of public datasets people
   try first (MovieLens, Amazon reviews, Yelp, Goodreads, Book-Crossing,
   Last.fm, RetailRocket, Steam, anime), so their files read as they
   come. */
static const char *const known[MFM_N_COLS][24] = {
  {"user", "user_id", "userid", "uid", "user id", "user-id", "customer_id",
   "customerid", "customer", "visitor_id", "visitorid", "session_id",
   "reviewerid", "member_id", "account_id", "client_id", NULL},
  {"item", "item_id", "itemid", "iid", "item id", "product_id",
   "productid", "product", "movie_id", "movieid", "article_id", "asin",
   "business_id", "book_id", "bookid", "isbn", "artist_id", "artistid",
   "track_id", "song_id", "anime_id", "game_id", "sku", NULL},
  {"weight", "rating", "score", "value", "count", "quantity",
   "confidence", "label", "overall", "stars", "book-rating", "plays",
   "playcount", "play_count", "hours", NULL},
  {"timestamp", "time", "ts", "date", "datetime", "event_time",
   "unixreviewtime", "created_at", NULL},
};

static int same_nocase(const char *a, size_t n, const char *b) {
  size_t k;
  for (k = 0; k < n && b[k]; k++) {
    char x = a[k], y = b[k];
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y) return 0;
  }
  return k == n && b[k] == '\0';
}

int mfm_reader_known_col(const char *s, size_t n) {
  for (int c = 0; c < MFM_N_COLS; c++)
    for (int k = 0; known[c][k]; k++)
      if (same_nocase(s, n, known[c][k])) return c;
  return -1;
}

/* The next "::" in [s, e) (delimiter ':'), or e: a single ':' belongs to
   its field. */
static const char *find_colons(const char *s, const char *e) {
  for (const char *q = s; (q = memchr(q, ':', (size_t)(e - q))); q++)
    if (q + 1 < e && q[1] == ':') return q;
  return e;
}

/* The iterator's next start after a field that ends at q (a separator,
   or e): past the separator (one byte, two colons for ':', a run of
   blanks for ' '), which may leave an empty last field; NULL at the
   line's end. */
static const char *next_start(const char *q, const char *e, char delim) {
  if (q >= e) return NULL;
  if (delim == ' ') {
    while (q < e && mfm_is_space(*q)) q++;
    return q < e ? q : NULL;
  }
  return q + (delim == ':' ? 2 : 1);
}

/* Field iterator over one line [*sp, e).  Returns 1 with the field in
   *fp and *fn, 0 when the line has no more fields, -1 on a quoting error
   (*why says which).  *sp is NULL once the last field was given. */
static int next_field(mfm_reader *r, const char **sp, const char *e,
                      char delim, const char **fp, size_t *fn,
                      const char **why, mfm_err *err) {
  const char *s = *sp;
  if (!s) return 0;
  while (s < e && (*s == ' ' || (*s == '\t' && delim != '\t'))) s++;
  if (delim == ' ' && s == e) {
    *sp = NULL;
    return 0;
  }
  if (s < e && *s == '"') {
    /* Quoted: "" inside stands for one quote; decoded into scratch. */
    const char *q = s + 1;
    const char *close = memchr(q, '"', (size_t)(e - q));
    if (!close) {
      *why = "unterminated quote (quoted fields cannot span lines)";
      return -1;
    }
    if (close + 1 < e && close[1] == '"') {
      size_t line = (size_t)(e - s);
      if (mfm_reader_scratch(r, r->scratch_used + line, err) != MFM_OK) {
        *why = NULL;
        return -1;
      }
      char *out = r->scratch + r->scratch_used, *o = out;
      for (;;) {
        close = memchr(q, '"', (size_t)(e - q));
        if (!close) {
          *why = "unterminated quote (quoted fields cannot span lines)";
          return -1;
        }
        memcpy(o, q, (size_t)(close - q));
        o += close - q;
        if (close + 1 < e && close[1] == '"') {
          *o++ = '"';
          q = close + 2;
          continue;
        }
        break;
      }
      *fp = out;
      *fn = (size_t)(o - out);
      r->scratch_used += *fn;
    } else {
      *fp = q;
      *fn = (size_t)(close - q);
    }
    s = close + 1;
    while (s < e && (*s == ' ' || (*s == '\t' && delim != '\t'))) s++;
    if (s < e && (*s != delim || (delim == ':' && find_colons(s, e) != s))) {
      *why = "unexpected text after a closing quote";
      return -1;
    }
    *sp = next_start(s, e, delim);
    return 1;
  }
  const char *q;
  if (delim == ' ') {
    q = s;
    while (q < e && !mfm_is_space(*q)) q++;
  } else if (delim == ':') {
    q = find_colons(s, e);
  } else {
    q = memchr(s, delim, (size_t)(e - s));
    if (!q) q = e;
  }
  const char *t = q;
  while (t > s && (t[-1] == ' ' || (t[-1] == '\t' && delim != '\t'))) t--;
  *fp = s;
  *fn = (size_t)(t - s);
  *sp = next_start(q, e, delim);
  return 1;
}

static char detect_delimiter(const char *s, const char *e) {
  static const char cands[] = {'\t', ',', ';', '|'};
  int in_quote = 0;
  size_t count[4] = {0, 0, 0, 0};
  for (const char *p = s; p < e; p++) {
    if (*p == '"') in_quote = !in_quote;
    if (in_quote) continue;
    for (int k = 0; k < 4; k++)
      if (*p == cands[k]) count[k]++;
  }
  for (int k = 0; k < 4; k++)
    if (count[k]) return cands[k];
  if (find_colons(s, e) != e) return ':'; /* MovieLens' ratings.dat */
  for (const char *p = s; p < e; p++)
    if (*p == ' ') return ' ';
  return ',';
}

/* Where the line is, for messages that are not about one bad row. */
static mfm_status fail_at(mfm_reader *r, mfm_status st, mfm_err *err,
                          const char *what) {
  return mfm_err_set(err, st, "%s%s%s%s%s%sline %lld: %s",
                     r->o.channel ? "channel '" : "",
                     r->o.channel ? r->o.channel : "",
                     r->o.channel ? "': " : "", r->file ? "file " : "",
                     r->file ? r->file : "", r->file ? ", " : "",
                     (long long)r->line, what);
}

/* Positions from a header line (names) or, without one, from the number
   of fields of the first row. */
static mfm_status set_positions(mfm_reader *r, const char *s, const char *e,
                                int is_header, mfm_err *err) {
  const char *names[64];
  size_t lens[64];
  int n = 0, st_f;
  const char *sp = s, *fp, *why = NULL;
  size_t fn;
  r->scratch_used = 0;
  while ((st_f = next_field(r, &sp, e, r->delim, &fp, &fn, &why, err)) > 0) {
    if (n < 64) {
      names[n] = fp;
      lens[n] = fn;
    }
    n++;
  }
  if (st_f < 0) {
    if (!why) return MFM_ENOMEM;
    char msg[160];
    snprintf(msg, sizeof msg, "cannot read the %s: %s",
             is_header ? "header" : "first row", why);
    return fail_at(r, MFM_EFORMAT, err, msg);
  }
  int nn = n < 64 ? n : 64;
  int any_known = 0;
  if (is_header)
    for (int k = 0; k < nn; k++) any_known |= mfm_reader_known_col(names[k], lens[k]) >= 0;
  r->named = 0;
  for (int c = 0; c < MFM_N_COLS; c++) {
    int pos = r->o.col_pos[c];
    if (pos != 0) {
      r->pos[c] = pos < 0 ? 0 : pos;
      continue;
    }
    r->pos[c] = 0;
    if (r->o.col_name[c]) {
      const char *want = r->o.col_name[c];
      size_t wn = strlen(want);
      for (int k = 0; k < nn && !r->pos[c]; k++)
        if (lens[k] == wn && memcmp(names[k], want, wn) == 0) r->pos[c] = k + 1;
      for (int k = 0; k < nn && !r->pos[c]; k++)
        if (same_nocase(names[k], lens[k], want)) r->pos[c] = k + 1;
      if (!r->pos[c]) {
        char msg[400];
        int m = snprintf(msg, sizeof msg, "the %s column '%s' is not in the "
                         "header (its columns:", mfm_col_names[c], want);
        for (int k = 0; k < nn && m < 300; k++)
          m += snprintf(msg + m, sizeof msg - (size_t)m, "%s %.*s",
                        k ? "," : "", (int)(lens[k] > 40 ? 40 : lens[k]),
                        names[k]);
        snprintf(msg + m, sizeof msg - (size_t)m, ")");
        return fail_at(r, MFM_EFORMAT, err, msg);
      }
      r->named = 1;
      continue;
    }
    if (is_header && any_known) {
      for (int k = 0; k < nn && !r->pos[c]; k++)
        if (mfm_reader_known_col(names[k], lens[k]) == c) r->pos[c] = k + 1;
      if (r->pos[c]) r->named = 1;
    }
    if (!r->pos[c] && c + 1 <= n) {
      /* Positional defaults: 1, 2, and 3, 4 when the rows have them and
         no column found by name took that place.  Under a header whose
         user and item are named elsewhere than 1 and 2, the columns are
         not in that order, so the third is not a weight (RetailRocket's
         "timestamp,visitorid,event,itemid": "event" is not). */
      int taken = 0;
      for (int d = 0; d < c; d++) taken |= r->pos[d] == c + 1;
      if (is_header && any_known && c >= MFM_COL_WEIGHT)
        taken |= (c < nn && mfm_reader_known_col(names[c], lens[c]) >= 0) ||
                 r->pos[MFM_COL_USER] != 1 || r->pos[MFM_COL_ITEM] != 2;
      if (!taken) r->pos[c] = c + 1;
    }
  }
  if (!r->pos[MFM_COL_USER] || !r->pos[MFM_COL_ITEM]) {
    char msg[200];
    snprintf(msg, sizeof msg, "the %s has %d field%s, too few for a user "
             "and an item column (is the delimiter '%s' right?)",
             is_header ? "header" : "first row", n, n == 1 ? "" : "s",
             r->delim == '\t'  ? "\\t"
             : r->delim == ':' ? "::"
                               : (char[]){r->delim, 0});
    return fail_at(r, MFM_EFORMAT, err, msg);
  }
  if (r->pos[MFM_COL_USER] == r->pos[MFM_COL_ITEM])
    return fail_at(r, MFM_EFORMAT, err, "the user and item columns are the "
                   "same column");
  r->max_pos = 0;
  for (int c = 0; c < MFM_N_COLS; c++) {
    if (r->pos[c] > r->max_pos) r->max_pos = r->pos[c];
    r->rep.col_pos[c] = r->pos[c];
  }
  mfm_reader_csv_fast_layout(r);
  return MFM_OK;
}

/* Header words of feature files (ids x features), for detection only. */
static int id_or_feature_name(const char *s, size_t n) {
  static const char *const names[] = {"id", "feature", "features", "tag",
                                      "tags", "feature_id", "feature_name",
                                      "attribute", NULL};
  for (int k = 0; names[k]; k++)
    if (same_nocase(s, n, names[k])) return 1;
  return 0;
}

static int detect_header(mfm_reader *r, const char *s, const char *e,
                         mfm_err *err) {
  const char *sp = s, *fp, *why;
  size_t fn;
  int k = 0, wpos = r->o.col_pos[MFM_COL_WEIGHT];
  int upos = r->o.col_pos[MFM_COL_USER], ipos = r->o.col_pos[MFM_COL_ITEM];
  if (wpos == 0) wpos = 3;
  if (upos == 0) upos = 1;
  if (ipos == 0) ipos = 2;
  r->scratch_used = 0;
  while (next_field(r, &sp, e, r->delim, &fp, &fn, &why, err) > 0) {
    k++;
    double v;
    if (k == wpos && fn > 0 && !mfm_parse_number(fp, fn, &v)) {
      r->header_guess = 1;
      return 1;
    }
    /* Any column name where an id belongs: "user,item", but also a
       feature file's "item,feature" or "id,tag". */
    if ((k == upos || k == ipos) &&
        (mfm_reader_known_col(fp, fn) >= 0 || id_or_feature_name(fp, fn)))
      return 1;
  }
  return 0;
}

static mfm_status resolve(mfm_reader *r, const char *s, const char *e,
                          mfm_err *err) {
  r->delim = r->o.delimiter ? r->o.delimiter : detect_delimiter(s, e);
  r->header = r->o.header;
  if (r->header < 0) {
    int named = 0;
    for (int c = 0; c < MFM_N_COLS; c++) named |= r->o.col_name[c] != NULL;
    r->header = named ? 1 : detect_header(r, s, e, err);
  }
  r->rep.delimiter = r->delim;
  r->rep.header = r->header;
  r->resolved = 1;
  return set_positions(r, s, e, r->header == 1, err);
}

static mfm_status csv_emit(mfm_reader *r, mfm_field *f, const char *line,
                           size_t line_n, mfm_err *err);

static mfm_status csv_row(mfm_reader *r, const char *s, const char *e,
                          const char *line, size_t line_n, mfm_err *err) {
  mfm_field f[MFM_N_COLS];
  const char *sp = s, *fp, *why = NULL;
  size_t fn;
  int k = 0, got;
  memset(f, 0, sizeof f);
  r->rep.rows++;
  r->scratch_used = 0;
  while (k < r->max_pos &&
         (got = next_field(r, &sp, e, r->delim, &fp, &fn, &why, err)) != 0) {
    k++;
    if (got < 0) {
      if (!why) return MFM_ENOMEM;
      return mfm_reader_bad(r, line, line_n, k, NULL, err, "%s", why);
    }
    for (int c = 0; c < MFM_N_COLS; c++) {
      if (r->pos[c] == k) {
        f[c].p = fp;
        f[c].n = fn;
        f[c].present = 1;
      }
    }
  }
  for (int c = 0; c < MFM_N_COLS; c++) {
    if (r->pos[c] && !f[c].present)
      return mfm_reader_bad(r, line, line_n, r->pos[c], mfm_col_names[c],
                            err, "expected at least %d fields, found %d",
                            r->max_pos, k);
  }
  return csv_emit(r, f, line, line_n, err);
}

static mfm_status csv_emit(mfm_reader *r, mfm_field *f, const char *line,
                           size_t line_n, mfm_err *err) {
  float w = r->o.default_weight;
  mfm_field *fw = &f[MFM_COL_WEIGHT];
  if (r->pos[MFM_COL_WEIGHT] && fw->n == 1 &&
      (unsigned)(fw->p[0] - '0') < 10) {
    w = (float)(fw->p[0] - '0'); /* counts and ratings: one digit */
  } else if (r->pos[MFM_COL_WEIGHT]) {
    double v;
    if (!mfm_parse_number(fw->p, fw->n, &v) && r->header_guess &&
        r->rep.rows == 1 && fw->n > 0) {
      /* The first line was taken as a header for its weight field alone,
         and the first row's is no number either: that column holds no
         weights (Last.fm's artist names, Steam's "purchase"), and the
         header was a row.  Not a row error: skipping rows cannot help. */
      char msg[400];
      snprintf(msg, sizeof msg, "column %d is not a number here (\"%.*s\") "
               "nor on the first line, which was therefore taken as a "
               "header: the column holds no weights; say which column "
               "does (weight_column=<position>, or none for a weight of 1 "
               "per row) and that the file has no header (header=absent)",
               r->pos[MFM_COL_WEIGHT], (int)(fw->n > 40 ? 40 : fw->n), fw->p);
      return fail_at(r, MFM_EFORMAT, err, msg);
    }
    if (!mfm_parse_number(fw->p, fw->n, &v))
      return mfm_reader_bad(r, line, line_n, r->pos[MFM_COL_WEIGHT],
                            "weight", err, "%s \"%.*s\" is not a number",
                            fw->n ? "weight" : "empty weight",
                            (int)(fw->n > 40 ? 40 : fw->n), fw->p);
    w = (float)v;
    if (!isfinite(w))
      return mfm_reader_bad(r, line, line_n, r->pos[MFM_COL_WEIGHT],
                            "weight", err, "weight %.*s is not finite (as a "
                            "32-bit float)", (int)(fw->n > 40 ? 40 : fw->n),
                            fw->p);
  }
  return mfm_reader_emit(r, line, line_n, f[MFM_COL_USER].p,
                         f[MFM_COL_USER].n, r->pos[MFM_COL_USER],
                         f[MFM_COL_ITEM].p, f[MFM_COL_ITEM].n,
                         r->pos[MFM_COL_ITEM], w, err);
}

mfm_status mfm_reader_csv_lines(mfm_reader *r, const char *p,
                                const char *end, mfm_err *err) {
  mfm_status st;
  /* Space-delimited rows, each document's first line and whatever the
     plain-row path does not take go to the general parser. */
  while (p < end) {
    if (r->resolved && !r->doc_fresh && r->fast_cols) {
      st = mfm_reader_csv_fast(r, &p, end, err);
      if (st != MFM_OK) return st;
      if (p == end) break;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *s = p, *e = nl;
    size_t line_n = (size_t)(nl - p);
    p = nl + 1;
    r->line++;
    if (e > s && e[-1] == '\r') e--;
    int fresh = r->doc_fresh;
    r->doc_fresh = 0;
    if (fresh) {
      if (e - s >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) s += 3;
      st = mfm_reader_check_doc(r, s, e, 0, err);
      if (st != MFM_OK) return st;
    }
    const char *t = s;
    while (t < e && mfm_is_space(*t)) t++;
    if (t == e) {
      r->rep.blank++;
      r->doc_fresh = fresh;
      continue;
    }
    if (!r->resolved) {
      st = resolve(r, s, e, err);
      if (st != MFM_OK) return st;
      fresh = 1;
    }
    if (fresh && r->header == 1) {
      r->rep.headers++;
      if (r->named) {
        st = set_positions(r, s, e, 1, err);
        if (st != MFM_OK) return st;
      }
      continue;
    }
    st = csv_row(r, s, e, nl - line_n, line_n, err);
    if (st != MFM_OK) return st;
  }
  return MFM_OK;
}
