/* The reader: line buffering over a source, id mapping, the COO, counts,
   located error messages (the in-place COO -> CSR build is csr_build.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonfm/alloc.h"
#include "moonfm/stop.h"
#include "hugepage.h"
#include "reader_impl.h"

const char *const mfm_col_names[MFM_N_COLS] = {"user", "item", "weight",
                                               "timestamp"};

mfm_read_opts mfm_read_opts_default(void) {
  mfm_read_opts o;
  memset(&o, 0, sizeof o);
  o.format = MFM_FORMAT_CSV;
  o.header = -1;
  o.default_weight = 1.0f;
  o.max_bad_rows = -1;
  o.max_bad_fraction = 1.0;
  return o;
}

const char *mfm_read_opts_check(const mfm_read_opts *o) {
  if (o->format < MFM_FORMAT_CSV || o->format > MFM_FORMAT_SPARSE)
    return "unknown format";
  if (o->delimiter && !strchr(",\t;| :", o->delimiter))
    return "delimiter must be one of ',', tab, ';', '|', space, '::'";
  if (o->header < -1 || o->header > 1)
    return "header must be -1 (detect), 0 (absent) or 1 (present)";
  for (int c = 0; c < MFM_N_COLS; c++) {
    if (o->col_pos[c] < -1) return "column positions are 1-based";
    if (o->col_pos[c] > 0 && o->col_name[c])
      return "a column is given both by position and by name";
    if (o->col_name[c] && !o->col_name[c][0]) return "empty column name";
    if (o->format != MFM_FORMAT_CSV && o->col_pos[c] > 0)
      return "only CSV columns can be given by position";
    if (o->format == MFM_FORMAT_CSV && o->col_name[c] && o->header == 0)
      return "columns given by name need a header (header is absent)";
  }
  if (o->col_pos[MFM_COL_USER] < 0 || o->col_pos[MFM_COL_ITEM] < 0)
    return "the user and item columns cannot be turned off";
  if (!isfinite(o->default_weight)) return "default weight must be finite";
  if (!(o->max_bad_fraction >= 0 && o->max_bad_fraction <= 1))
    return "max_bad_fraction must be in [0, 1]";
  return NULL;
}

/* The line buffer, with MFM_READ_PAD bytes after its capacity. */
static mfm_status line_buffer(mfm_reader *r, mfm_err *err) {
  r->cap = (size_t)4 << 20;
  r->buf = mfm_malloc(r->cap + MFM_READ_PAD);
  if (!r->buf) {
    r->cap = 0;
    return mfm_err_set(err, MFM_ENOMEM, "out of memory (reader buffer)");
  }
  return MFM_OK;
}

mfm_status mfm_reader_new(const mfm_read_opts *opts, mfm_idmap *users,
                          mfm_idmap *items, int grow_users, int grow_items,
                          mfm_reader **out, mfm_err *err) {
  *out = NULL;
  const char *why = mfm_read_opts_check(opts);
  if (why) return mfm_err_set(err, MFM_EINVAL, "read options: %s", why);
  mfm_reader *r = mfm_calloc(1, sizeof *r);
  if (!r) return mfm_err_set(err, MFM_ENOMEM, "out of memory (reader)");
  r->o = *opts;
  r->users = users;
  r->items = items;
  r->grow_users = grow_users;
  r->grow_items = grow_items;
  r->last_u = -1;
  r->rep.header = -1;
  for (int k = 0; k < 2; k++) {
    r->seen[k] = mfm_idmap_size(k ? items : users);
    r->complete[k] = r->seen[k] == 0 && opts->format == MFM_FORMAT_CSV;
    r->over_min[k] = UINT64_MAX;
  }
  if (line_buffer(r, err) != MFM_OK) {
    mfm_free(r);
    return MFM_ENOMEM;
  }
  *out = r;
  return MFM_OK;
}

void mfm_reader_free(mfm_reader *r) {
  if (!r) return;
  mfm_idmap_free(r->unseen_u);
  mfm_idmap_free(r->unseen_i);
  mfm_free(r->direct[0]);
  mfm_free(r->direct[1]);
  mfm_free(r->wcode);
  mfm_coo_free(&r->coo);
  mfm_free(r->buf);
  mfm_free(r->scratch);
  mfm_free(r);
}

const mfm_read_report *mfm_reader_report(const mfm_reader *r) {
  return &r->rep;
}

/* Byte weights become floats, with room for the COO's capacity. */
static mfm_status coo_expand(mfm_reader *r, mfm_err *err) {
  mfm_coo *c = &r->coo;
  if (!r->wcode) return MFM_OK;
  size_t cap = (size_t)(c->cap ? c->cap : 1);
  float *v = mfm_malloc_array(cap, sizeof *v);
  if (!v)
    return mfm_err_set(err, MFM_ENOMEM, "out of memory after %lld "
                       "interactions", (long long)c->n);
  for (int64_t k = 0; k < c->n; k++) v[k] = r->wcode[k];
  mfm_free(r->wcode);
  r->wcode = NULL;
  c->vals = v;
  return MFM_OK;
}

const mfm_coo *mfm_reader_coo(const mfm_reader *r) {
  /* The reader is the caller's, not const memory: the compact weights
     are its own business and become floats here. */
  if (r->wcode && coo_expand((mfm_reader *)r, NULL) != MFM_OK)
    return NULL;
  return &r->coo;
}

mfm_status mfm_reader_scratch(mfm_reader *r, size_t n, mfm_err *err) {
  if (n <= r->scratch_cap) return MFM_OK;
  size_t cap = r->scratch_cap ? r->scratch_cap : 4096;
  while (cap < n) cap *= 2;
  char *s = mfm_realloc(r->scratch, cap);
  if (!s) return mfm_err_set(err, MFM_ENOMEM, "out of memory (long row)");
  r->scratch = s;
  r->scratch_cap = cap;
  return MFM_OK;
}

/* ---- Messages ------------------------------------------------------ */

/* "channel 'c': file f, line l" into buf. */
static int where(const mfm_reader *r, char *buf, size_t n) {
  int k = 0;
  if (r->o.channel)
    k += snprintf(buf + k, n - (size_t)k, "channel '%s': ", r->o.channel);
  if (r->file)
    k += snprintf(buf + k, n - (size_t)k, "file %s, ", r->file);
  k += snprintf(buf + k, n - (size_t)k, "line %lld", (long long)r->line);
  return k;
}

/* A document's first line (s..e, after any UTF-8 BOM, without its '\n')
   that is no text moonfm reads: compressed or binary formats other than
   gzip, UTF-16, JSON that is not one object per line, lines ended by CR
   alone.  Fails with the document's place and what to do; MFM_OK when
   the line may be parsed (spec rule 62: one clear message, not a row
   error on bytes that were never rows). */
mfm_status mfm_reader_check_doc(mfm_reader *r, const char *s, const char *e,
                                int jsonl, mfm_err *err) {
  /* text: the magic is also text ("BZh", "PAR1", "ORC"), so the next
     bytes must be some no text has; fix: 1 compressed, 0 another format. */
  static const struct {
    const char *magic;
    size_t n;
    int text, compressed;
    const char *what;
  } magics[] = {
      {"BZh", 3, 1, 1, "bzip2-compressed"},
      {"\xfd" "7zXZ\0", 6, 0, 1, "xz-compressed"},
      {"\x28\xb5\x2f\xfd", 4, 0, 1, "zstd-compressed"},
      {"\x04\x22\x4d\x18", 4, 0, 1, "lz4-compressed"},
      {"PK\x03\x04", 4, 0, 0, "a zip archive"},
      {"7z\xbc\xaf\x27\x1c", 6, 0, 0, "a 7-zip archive"},
      {"PAR1", 4, 1, 0, "a Parquet file"},
      {"ORC", 3, 1, 0, "an ORC file"},
      {"Obj\x01", 4, 0, 0, "an Avro file"},
  };
  size_t n = (size_t)(e - s);
  const char *what = NULL, *fix = NULL;
  for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++) {
    size_t m = magics[i].n;
    if (n < m || memcmp(s, magics[i].magic, m) != 0) continue;
    if (magics[i].text) {
      if (m == 3 && s[0] == 'B') { /* bzip2: BZh, a level, "1AY&SY" */
        if (n < 10 || memcmp(s + 4, "1AY&SY", 6) != 0) continue;
      } else {
        unsigned char next = n > m ? (unsigned char)s[m] : 0x20;
        if (next >= 0x20 || next == '\t') continue;
      }
    }
    what = magics[i].what;
    fix = magics[i].compressed
              ? "decompress it, or compress it with gzip, which moonfm reads"
              : "export the data as CSV or JSON lines (gzip-compressed if "
                "you like)";
    break;
  }
  if (!what && n >= 2 &&
      (((unsigned char)s[0] == 0xff && (unsigned char)s[1] == 0xfe) ||
       ((unsigned char)s[0] == 0xfe && (unsigned char)s[1] == 0xff))) {
    what = "UTF-16 (it starts with a UTF-16 byte order mark)";
    fix = "save it as UTF-8";
  }
  if (!what) {
    const char *cr = memchr(s, '\r', n);
    if (cr && cr + 1 < e) {
      what = "text whose lines end with a carriage return (CR) alone, as "
             "old Mac programs write (e.g. Excel's \"CSV (Macintosh)\")";
      fix = "convert the line ends to LF or CRLF, e.g. tr '\\r' '\\n'";
    }
  }
  if (!what && !jsonl) {
    /* The Netflix Prize's combined_data_*.txt: "1:" (a movie id), then
       that movie's "user,rating,date" rows. */
    const char *t = s, *u = e;
    while (u > t && (u[-1] == ' ' || u[-1] == '\t' || u[-1] == '\r')) u--;
    while (t < u && (unsigned)(*t - '0') < 10) t++;
    if (t > s && t + 1 == u && *t == ':') {
      what = "in the Netflix Prize layout: a line \"MovieID:\" before "
             "that movie's \"CustomerID,Rating,Date\" rows";
      fix = "convert it to user,item,rating rows, e.g. awk -F, "
            "'/:$/ {m = substr($0, 1, length($0) - 1); next} "
            "{print $1 \",\" m \",\" $2}' FILE";
    }
  }
  if (!what && jsonl) {
    const char *t = s;
    while (t < e && (*t == ' ' || *t == '\t' || *t == '\r')) t++;
    const char *u = e;
    while (u > t && (u[-1] == ' ' || u[-1] == '\t' || u[-1] == '\r')) u--;
    if (t < u && *t == '[') {
      what = "one JSON array, not JSON lines (one object per line)";
      fix = "write one object per line, e.g. jq -c '.[]' FILE";
    } else if (u - t == 1 && *t == '{') {
      what = "JSON written over several lines, not JSON lines (one object "
             "per line)";
      fix = "write each object on one line, e.g. jq -c . FILE";
    }
  }
  if (!what) return MFM_OK;
  char loc[512];
  where(r, loc, sizeof loc);
  return mfm_err_set(err, MFM_EFORMAT, "%s: the file is %s; %s", loc, what,
                     fix);
}

/* The first bytes of a row, quoted, with control and non-ASCII bytes
   escaped so the message stays one clean line. */
static void snippet(const char *s, size_t n, char *out, size_t cap) {
  size_t k = 0, i;
  for (i = 0; i < n && i < 60 && k + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[k++] = '\\';
      out[k++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
    } else {
      out[k++] = (char)c;
    }
  }
  if (i < n && k + 4 < cap) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = '\0';
}

mfm_status mfm_reader_bad(mfm_reader *r, const char *line, size_t line_n,
                          int col, const char *colname, mfm_err *err,
                          const char *fmt, ...) {
  char what[200], loc[200], snip[160], msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  int k = where(r, loc, sizeof loc);
  if (col > 0 && colname)
    snprintf(loc + k, sizeof loc - (size_t)k, ", column %d (%s)", col,
             colname);
  else if (colname)
    snprintf(loc + k, sizeof loc - (size_t)k, ", field \"%s\"", colname);
  while (line_n > 0 && (line[line_n - 1] == '\n' || line[line_n - 1] == '\r'))
    line_n--;
  snippet(line, line_n, snip, sizeof snip);
  if (snprintf(msg, sizeof msg, "%s: %s in row \"%s\"", loc, what, snip) < 0)
    msg[0] = '\0';
  if (!r->o.skip_bad)
    return mfm_err_set(err, MFM_EFORMAT, "%s; fix the row or pass "
                       "bad_rows=skip", msg);
  r->rep.bad++;
  if (r->rep.n_bad_kept < MFM_REPORT_BAD_KEPT)
    memcpy(r->rep.bad_rows[r->rep.n_bad_kept++], msg, sizeof msg);
  if (r->o.max_bad_rows >= 0 && r->rep.bad > r->o.max_bad_rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s%s%stoo many malformed rows "
                       "(more than max_bad_rows=%lld); the last: %s",
                       r->o.channel ? "channel '" : "",
                       r->o.channel ? r->o.channel : "",
                       r->o.channel ? "': " : "",
                       (long long)r->o.max_bad_rows, msg);
  return MFM_OK;
}

mfm_status mfm_reader_check_id(mfm_reader *r, const char *line,
                               size_t line_n, int col, const char *what,
                               const char *id, size_t n, int *ok,
                               mfm_err *err) {
  *ok = 0;
  if (n == 0)
    return mfm_reader_bad(r, line, line_n, col, what, err, "empty id");
  /* A NUL in the row itself means a binary or UTF-16 file; one only in
     the id came from a JSON escape (\u0000). */
  if (memchr(id, '\0', n))
    return mfm_reader_bad(r, line, line_n, col, what, err,
                          memchr(line, '\0', line_n)
                              ? "NUL byte in id (the file looks binary or "
                                "UTF-16; save it as UTF-8 text)"
                              : "an id may not hold a NUL character "
                                "(\\u0000); remove it from the id");
  *ok = 1;
  return MFM_OK;
}

/* ---- Numbers ------------------------------------------------------- */

static const double pow10_exact[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int mfm_parse_number(const char *p, size_t n, double *out) {
  const char *s = p, *e = p + n;
  int neg = 0, any = 0, exp10 = 0;
  uint64_t mant = 0;
  if (s < e && (*s == '+' || *s == '-')) neg = *s++ == '-';
  while (s < e && (unsigned)(*s - '0') < 10) {
    if (mant < 100000000000000000ull) mant = mant * 10 + (unsigned)(*s - '0');
    else exp10++;
    s++;
    any = 1;
  }
  if (s < e && *s == '.') {
    s++;
    while (s < e && (unsigned)(*s - '0') < 10) {
      if (mant < 100000000000000000ull) {
        mant = mant * 10 + (unsigned)(*s - '0');
        exp10--;
      }
      s++;
      any = 1;
    }
  }
  if (!any) {
    /* inf, nan, infinity: rare, so the library does it. */
    char tmp[16];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + n || isfinite(v)) return 0;
    *out = v;
    return 1;
  }
  if (s < e && (*s == 'e' || *s == 'E')) {
    int eneg = 0, ex = 0, d = 0;
    s++;
    if (s < e && (*s == '+' || *s == '-')) eneg = *s++ == '-';
    while (s < e && (unsigned)(*s - '0') < 10) {
      if (ex < 100000) ex = ex * 10 + (*s - '0');
      s++;
      d = 1;
    }
    if (!d) return 0;
    exp10 += eneg ? -ex : ex;
  }
  if (s != e) return 0;
  double v = (double)mant;
  if (mant == 0) v = 0;
  else if (exp10 >= 0 && exp10 <= 22) v *= pow10_exact[exp10];
  else if (exp10 < 0 && exp10 >= -22) v /= pow10_exact[-exp10];
  else v *= pow(10.0, exp10);
  *out = neg ? -v : v;
  return 1;
}

/* ---- Rows ---------------------------------------------------------- */

/* Moves one COO array to a fresh block of cap entries.  Not realloc:
   glibc copies large blocks anyway, and the new block should get huge
   pages before the copy touches it. */
static void *coo_move(void *old, int64_t n, int64_t cap, size_t size) {
  void *p = mfm_malloc_array((size_t)cap, size);
  if (!p) return NULL;
  mfm_advise_huge(p, (size_t)cap * size);
  if (n) memcpy(p, old, (size_t)n * size);
  mfm_free(old);
  return p;
}

/* Room for cap entries (cap > the count). */
static mfm_status coo_reserve(mfm_reader *r, int64_t cap, mfm_err *err) {
  mfm_coo *c = &r->coo;
  int32_t *a = coo_move(c->rows, c->n, cap, sizeof *a);
  if (!a) goto nomem;
  c->rows = a;
  a = coo_move(c->cols, c->n, cap, sizeof *a);
  if (!a) goto nomem;
  c->cols = a;
  if (c->vals) {
    float *v = coo_move(c->vals, c->n, cap, sizeof *v);
    if (!v) goto nomem;
    c->vals = v;
  }
  if (r->wcode) {
    unsigned char *b = coo_move(r->wcode, c->n, cap, 1);
    if (!b) goto nomem;
    r->wcode = b;
  }
  c->cap = cap;
  return MFM_OK;
nomem:
  /* The arrays moved so far have room for cap; the others for c->cap. */
  return mfm_err_set(err, MFM_ENOMEM, "out of memory after %lld "
                     "interactions", (long long)c->n);
}

static mfm_status coo_grow(mfm_reader *r, mfm_err *err) {
  int64_t cap = r->coo.cap;
  if (r->coo_hint > cap) return coo_reserve(r, r->coo_hint, err);
  return coo_reserve(r, cap ? cap * 2 : 65536, err);
}

/* The first weight that is not 1 (w): from now on weights are stored,
   one byte each while they are all whole numbers 0..255 (ratings,
   counts), floats from the first that is not. */
static mfm_status coo_weights(mfm_reader *r, float w, mfm_err *err) {
  mfm_coo *c = &r->coo;
  size_t cap = (size_t)(c->cap ? c->cap : 1);
  if (!r->wcode && mfm_weight_byte(w)) {
    unsigned char *b = mfm_malloc(cap);
    if (!b) goto nomem;
    mfm_advise_huge(b, cap);
    memset(b, 1, (size_t)c->n);
    r->wcode = b;
    return MFM_OK;
  }
  float *v = mfm_malloc_array(cap, sizeof *v);
  if (!v) goto nomem;
  mfm_advise_huge(v, cap * sizeof *v);
  for (int64_t k = 0; k < c->n; k++) v[k] = r->wcode ? r->wcode[k] : 1.0f;
  mfm_free(r->wcode);
  r->wcode = NULL;
  c->vals = v;
  return MFM_OK;
nomem:
  return mfm_err_set(err, MFM_ENOMEM, "out of memory after %lld "
                     "interactions", (long long)c->n);
}

static mfm_status note_unseen(mfm_idmap **m, const char *id, size_t n,
                              int64_t *distinct, mfm_err *err) {
  if (!*m) {
    mfm_status st = mfm_idmap_new(m, err);
    if (st != MFM_OK) return st;
  }
  int32_t before = mfm_idmap_size(*m), k;
  mfm_status st = mfm_idmap_intern(*m, id, n, &k, err);
  if (st != MFM_OK) return st;
  if (mfm_idmap_size(*m) != before) (*distinct)++;
  return MFM_OK;
}

static mfm_status map_id(mfm_reader *r, mfm_idmap *m, int grow,
                         const char *id, size_t n, int32_t *k,
                         const char *what, mfm_err *err) {
  if (!grow) {
    *k = mfm_idmap_find(m, id, n);
    return MFM_OK;
  }
  mfm_status st = mfm_idmap_intern(m, id, n, k, err);
  if (st == MFM_OK || st == MFM_ENOMEM) return st;
  char loc[200];
  where(r, loc, sizeof loc);
  return mfm_err_set(err, st, "%s: too many distinct %s ids (the limit is "
                     "%d)", loc, what, INT32_MAX);
}

/* The value of a canonical decimal (no sign, no leading zero, <= 9
   digits), whose text and value are one-to-one. */
static int canon_uint(const char *s, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 9 || (s[0] == '0' && n > 1)) return 0;
  for (size_t k = 0; k < n; k++) {
    unsigned d = (unsigned)(s[k] - '0');
    if (d > 9) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

/* lookup() for an id whose canonical decimal value is v. */
static mfm_status lookup_num(mfm_reader *r, int which, mfm_idmap *m,
                             int grow, const char *id, size_t n, uint64_t v,
                             int32_t *k, const char *what, mfm_err *err) {
  if (v < r->direct_n[which] && r->direct[which][v]) {
    *k = r->direct[which][v] - 1;
    return MFM_OK;
  }
  mfm_status st = map_id(r, m, grow, id, n, k, what, err);
  if (st != MFM_OK || *k < 0) return st;
  if (v >= r->direct_n[which]) {
    /* Grow with the map (sparse id spaces stay in the hash table). */
    uint64_t limit = 4 * ((uint64_t)mfm_idmap_size(m) + 65536);
    if (limit > ((uint64_t)1 << 26)) limit = (uint64_t)1 << 26;
    uint64_t cap = r->direct_n[which] ? r->direct_n[which] : 4096;
    while (cap <= v) cap *= 2;
    int32_t *d = v < limit ? mfm_realloc(r->direct[which],
                                         (size_t)cap * sizeof *d)
                           : NULL;
    if (!d) { /* only a cache; it now misses an id of the map */
      if (v < r->over_min[which]) r->over_min[which] = v;
      return MFM_OK;
    }
    if (r->over_min[which] < cap) r->complete[which] = 0;
    memset(d + r->direct_n[which], 0,
           (size_t)(cap - r->direct_n[which]) * sizeof *d);
    r->direct[which] = d;
    r->direct_n[which] = cap;
  }
  r->direct[which][v] = *k + 1;
  return MFM_OK;
}

static mfm_status lookup(mfm_reader *r, int which, mfm_idmap *m, int grow,
                         const char *id, size_t n, int32_t *k,
                         const char *what, mfm_err *err) {
  uint64_t v;
  if (!canon_uint(id, n, &v)) return map_id(r, m, grow, id, n, k, what, err);
  return lookup_num(r, which, m, grow, id, n, v, k, what, err);
}

mfm_status mfm_reader_lookup(mfm_reader *r, int which, const char *id,
                             size_t n, int64_t v, int32_t *k, mfm_err *err) {
  int sparse = r->o.format == MFM_FORMAT_SPARSE;
  const char *what = which ? (sparse ? "feature" : "item")
                           : (sparse ? "id" : "user");
  mfm_idmap *m = which ? r->items : r->users;
  int grow = which ? r->grow_items : r->grow_users;
  if (v < 0) return map_id(r, m, grow, id, n, k, what, err);
  return lookup_num(r, which, m, grow, id, n, (uint64_t)v, k, what, err);
}

mfm_status mfm_reader_coo_room(mfm_reader *r, float w, mfm_err *err) {
  mfm_coo *c = &r->coo;
  mfm_status st;
  if (c->n == c->cap && (st = coo_grow(r, err)) != MFM_OK) return st;
  if (w != 1.0f && !c->vals && !(r->wcode && mfm_weight_byte(w)) &&
      (st = coo_weights(r, w, err)) != MFM_OK)
    return st;
  return MFM_OK;
}

mfm_status mfm_reader_emit(mfm_reader *r, const char *line, size_t line_n,
                           const char *u, size_t un, int ucol,
                           const char *i, size_t in, int icol, float w,
                           mfm_err *err) {
  int32_t ui, ii;
  int ok;
  mfm_status st;
  const char *un_name = r->o.format == MFM_FORMAT_SPARSE ? "id" : "user";
  const char *in_name = r->o.format == MFM_FORMAT_SPARSE ? "feature" : "item";
  if (r->last_u >= 0 && un == r->last_u_len && memcmp(u, r->last_u_id, un) == 0) {
    ui = r->last_u;
  } else {
    st = mfm_reader_check_id(r, line, line_n, ucol, un_name, u, un, &ok, err);
    if (!ok) return st;
    st = lookup(r, 0, r->users, r->grow_users, u, un, &ui, un_name, err);
    if (st != MFM_OK) return st;
    if (ui >= 0 && un <= MFM_LAST_U_MAX) {
      r->last_u = ui;
      r->last_u_len = un;
      memcpy(r->last_u_id, u, un);
    }
  }
  st = mfm_reader_check_id(r, line, line_n, icol, in_name, i, in, &ok, err);
  if (!ok) return st;
  st = lookup(r, 1, r->items, r->grow_items, i, in, &ii, in_name, err);
  if (st != MFM_OK) return st;
  if (ui < 0 || ii < 0) {
    if (ui < 0) {
      r->rep.unseen_user_rows++;
      st = note_unseen(&r->unseen_u, u, un, &r->rep.unseen_users, err);
      if (st != MFM_OK) return st;
    }
    if (ii < 0) {
      r->rep.unseen_item_rows++;
      st = note_unseen(&r->unseen_i, i, in, &r->rep.unseen_items, err);
      if (st != MFM_OK) return st;
    }
    r->rep.dropped++;
    return MFM_OK;
  }
  mfm_coo *c = &r->coo;
  if ((c->n == c->cap ||
       (w != 1.0f && !c->vals && !(r->wcode && mfm_weight_byte(w)))) &&
      (st = mfm_reader_coo_room(r, w, err)) != MFM_OK)
    return st;
  c->rows[c->n] = ui;
  c->cols[c->n] = ii;
  if (c->vals) c->vals[c->n] = w;
  else if (r->wcode) r->wcode[c->n] = (unsigned char)w;
  c->n++;
  r->rep.kept++;
  return MFM_OK;
}

/* ---- Feeding ------------------------------------------------------- */

static mfm_status parse(mfm_reader *r, const char *p, const char *end,
                        mfm_err *err) {
  switch (r->o.format) {
  case MFM_FORMAT_CSV: return mfm_reader_csv_lines(r, p, end, err);
  case MFM_FORMAT_JSONL: return mfm_reader_jsonl_lines(r, p, end, err);
  case MFM_FORMAT_SPARSE: return mfm_reader_sparse_lines(r, p, end, err);
  }
  return MFM_EINVAL;
}

/* Prefixes a source's message with the channel. */
static mfm_status located(const mfm_reader *r, mfm_status st, mfm_err *err) {
  if (err && r->o.channel) {
    char tmp[sizeof err->msg];
    memcpy(tmp, err->msg, sizeof tmp);
    if (snprintf(err->msg, sizeof err->msg, "channel '%s': %s", r->o.channel,
                 tmp) < 0)
      err->msg[0] = '\0';
  }
  return st;
}

/* Ids added to the maps by others since the last feed may be missing
   from the caches. */
static void feed_begin(mfm_reader *r) {
  for (int k = 0; k < 2; k++)
    if (mfm_idmap_size(k ? r->items : r->users) != r->seen[k])
      r->complete[k] = 0;
}

/* The maps go back to the caller whole. */
static void feed_end(mfm_reader *r) {
  mfm_idmap_settle(r->users);
  mfm_idmap_settle(r->items);
  r->seen[0] = mfm_idmap_size(r->users);
  r->seen[1] = mfm_idmap_size(r->items);
}

mfm_status mfm_reader_feed(mfm_reader *r, mfm_source *src, const char *file,
                           mfm_err *err) {
  mfm_status st = MFM_OK;
  size_t len = 0; /* bytes of an unfinished line at the front of buf */
  uint64_t raw0 = mfm_source_raw_bytes(src), size = mfm_source_size(src);
  uint64_t bytes0 = r->rep.bytes;
  int64_t n0 = r->coo.n;
  size_t parsed = 0;
  int hinted = 0;
  if (!r->buf && (st = line_buffer(r, err)) != MFM_OK) return st;
  feed_begin(r);
  r->coo_hint = 0;
  r->file = file;
  r->line = 0;
  r->doc_fresh = 1;
  r->rep.files++;
  for (;;) {
    if (mfm_stop_requested()) {
      char loc[200];
      where(r, loc, sizeof loc);
      st = mfm_err_set(err, MFM_ECANCELED, "%s: stopped while reading",
                       loc);
      break;
    }
    if (r->cap - len < r->cap / 4) {
      /* A line longer than the buffer: no fixed limit, grow. */
      char *b = mfm_realloc(r->buf, r->cap * 2 + MFM_READ_PAD);
      if (!b) {
        st = mfm_err_set(err, MFM_ENOMEM, "out of memory (a row of more "
                         "than %zu bytes)", len);
        break;
      }
      r->buf = b;
      r->cap *= 2;
    }
    size_t n;
    int doc_end;
    st = mfm_source_read(src, r->buf + len, r->cap - len, &n, &doc_end, err);
    if (st != MFM_OK) {
      located(r, st, err);
      break;
    }
    if (n == 0 && !doc_end) break;
    r->rep.bytes += n;
    char *fresh = r->buf + len, *nl = fresh + n;
    while (nl > fresh && nl[-1] != '\n') nl--;
    len += n;
    memset(r->buf + len, 0, MFM_READ_PAD);
    if (nl > fresh) {
      size_t upto = (size_t)(nl - r->buf);
      st = parse(r, r->buf, nl, err);
      if (st != MFM_OK) break;
      memmove(r->buf, nl, len - upto);
      len -= upto;
      parsed += upto;
      if (!hinted && size && parsed >= ((size_t)1 << 20)) {
        /* Rows per byte so far times the file's (decompressed) size:
           the COO is then sized once instead of copied as it grows. */
        double raw = (double)(mfm_source_raw_bytes(src) - raw0);
        double dec = (double)(r->rep.bytes - bytes0);
        double total = raw > 0 ? (double)size * dec / raw : 0;
        double est = (double)(r->coo.n - n0) * total / (double)parsed;
        if (est < 4e9) r->coo_hint = n0 + (int64_t)(est * 1.03) + 4096;
        hinted = 1;
      }
    }
    if (doc_end) r->doc_fresh = 1;
  }
  r->rep.raw_bytes += mfm_source_raw_bytes(src) - raw0;
  feed_end(r);
  return st;
}

mfm_status mfm_reader_feed_bytes(mfm_reader *r, const char *bytes, size_t n,
                                 const char *file, mfm_err *err) {
  r->file = file;
  r->line = 0;
  r->doc_fresh = 1;
  r->rep.files++;
  r->rep.bytes += n;
  r->rep.raw_bytes += n;
  if (n == 0) return MFM_OK;
  if (n + 1 > r->cap) {
    char *b = mfm_realloc(r->buf, n + 1 + MFM_READ_PAD);
    if (!b) return mfm_err_set(err, MFM_ENOMEM, "out of memory");
    r->buf = b;
    r->cap = n + 1;
  }
  memcpy(r->buf, bytes, n);
  if (r->buf[n - 1] != '\n') r->buf[n++] = '\n';
  memset(r->buf + n, 0, MFM_READ_PAD);
  feed_begin(r);
  mfm_status st = parse(r, r->buf, r->buf + n, err);
  feed_end(r);
  return st;
}

/* ---- Finishing ----------------------------------------------------- */

static mfm_status check_fraction(mfm_reader *r, mfm_err *err) {
  const mfm_read_report *p = &r->rep;
  if (r->o.skip_bad && p->rows > 0 &&
      (double)p->bad > r->o.max_bad_fraction * (double)p->rows)
    return mfm_err_set(err, MFM_EFORMAT, "%s%s%stoo many malformed rows: "
                       "%lld of %lld (more than max_bad_fraction=%g)%s%s",
                       r->o.channel ? "channel '" : "",
                       r->o.channel ? r->o.channel : "",
                       r->o.channel ? "': " : "", (long long)p->bad,
                       (long long)p->rows, r->o.max_bad_fraction,
                       p->n_bad_kept ? "; the first: " : "",
                       p->n_bad_kept ? p->bad_rows[0] : "");
  return MFM_OK;
}

mfm_status mfm_reader_finish(mfm_reader *r, mfm_csr **out, mfm_err *err) {
  *out = NULL;
  mfm_status st = check_fraction(r, err);
  if (st != MFM_OK) return st;
  /* The build is the peak of memory: the caches and the line buffer go
     first (a later feed makes a new buffer). */
  mfm_free(r->buf);
  r->buf = NULL;
  r->cap = 0;
  for (int k = 0; k < 2; k++) {
    mfm_free(r->direct[k]);
    r->direct[k] = NULL;
    r->direct_n[k] = 0;
  }
  unsigned char *codes = r->wcode;
  r->wcode = NULL; /* the build consumes them */
  int32_t bad[2];
  mfm_status st2 = mfm_csr_build(mfm_idmap_size(r->users),
                                 mfm_idmap_size(r->items), &r->coo, codes,
                                 bad, out, err);
  if (st2 == MFM_EFORMAT) {
    size_t un, in;
    const char *u = mfm_idmap_get(r->users, bad[0], &un);
    const char *i = mfm_idmap_get(r->items, bad[1], &in);
    char us[80], is[80];
    snippet(u ? u : "?", u ? un : 1, us, sizeof us);
    snippet(i ? i : "?", i ? in : 1, is, sizeof is);
    st2 = mfm_err_set(err, MFM_EFORMAT,
                      "%s%s%sthe rows of user '%s' and item '%s' repeat, and "
                      "their weights sum to more than a 32-bit float holds "
                      "(3.4e38); give the pair one row with a smaller weight",
                      r->o.channel ? "channel '" : "",
                      r->o.channel ? r->o.channel : "",
                      r->o.channel ? "': " : "", us, is);
  }
  if (st2 == MFM_OK && (*out)->data) {
    /* For the recipe: fm's ranking losses learn nothing from these, and
       ALS refuses negative ones. */
    int64_t np = 0, ng = 0;
    for (int64_t q = 0; q < (*out)->nnz; q++) {
      np += !((*out)->data[q] > 0.0f);
      ng += (*out)->data[q] < 0.0f;
    }
    r->rep.nonpositive = np;
    r->rep.negative = ng;
  }
  return st2;
}

mfm_status mfm_read_interactions(const char *const *paths,
                                 const char *const *names, int n_paths,
                                 const mfm_source_opts *sopts,
                                 const mfm_read_opts *opts, mfm_idmap *users,
                                 mfm_idmap *items, int grow_users,
                                 int grow_items, mfm_coo *out,
                                 mfm_read_report *rep, mfm_err *err) {
  mfm_reader *r;
  memset(out, 0, sizeof *out);
  mfm_status st = mfm_reader_new(opts, users, items, grow_users, grow_items,
                                 &r, err);
  if (st != MFM_OK) return st;
  for (int k = 0; k < n_paths && st == MFM_OK; k++) {
    mfm_source *s;
    st = mfm_source_open(paths[k], sopts, &s, err);
    if (st != MFM_OK) {
      located(r, st, err);
      break;
    }
    st = mfm_reader_feed(r, s, names ? names[k] : paths[k], err);
    mfm_source_free(s);
  }
  if (st == MFM_OK) st = check_fraction(r, err);
  if (st == MFM_OK) st = coo_expand(r, err);
  if (rep) *rep = r->rep;
  if (st == MFM_OK) {
    *out = r->coo;
    memset(&r->coo, 0, sizeof r->coo);
  }
  mfm_reader_free(r);
  return st;
}
