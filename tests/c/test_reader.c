/* Readers: every format and its malformed variants, gzip, RecordIO, FIFOs,
   the in-place CSR against mfm_csr_from_coo, fault injection. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "moonfm/mfm.h"
#include "moonfm/reader.h"

static char tmpdir[400];

static const char *tpath(const char *name) {
  static char buf[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

static void write_file(const char *name, const void *data, size_t n) {
  FILE *f = fopen(tpath(name), "wb");
  if (!f) {
    perror(name);
    exit(2);
  }
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static void write_text(const char *name, const char *text) {
  write_file(name, text, strlen(text));
}

static void write_gzip(const char *name, const char *text, int append) {
  gzFile g = gzopen(tpath(name), append ? "ab" : "wb");
  gzwrite(g, text, (unsigned)strlen(text));
  gzclose(g);
}

static char *slurp(const char *name, size_t *n) {
  FILE *f = fopen(tpath(name), "rb");
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(*n + 1);
  if (fread(b, 1, *n, f) != *n) *n = 0;
  fclose(f);
  return b;
}

typedef struct run {
  mfm_status st;
  mfm_err err;
  mfm_read_report rep;
  mfm_idmap *u, *i;
  mfm_csr *x;
} run;

static void run_free(run *r) {
  mfm_idmap_free(r->u);
  mfm_idmap_free(r->i);
  mfm_csr_free(r->x);
  memset(r, 0, sizeof *r);
}

/* Reads files (NULL-terminated names) into fresh maps, or into the maps
   of `share` without growing them when share is not NULL. */
static void run_files(run *r, const char *const *names,
                      const mfm_read_opts *o, const mfm_source_opts *so,
                      run *share) {
  const char *paths[8];
  int n = 0;
  memset(r, 0, sizeof *r);
  for (; names[n]; n++) paths[n] = tpath(names[n]);
  if (share) {
    r->u = share->u;
    r->i = share->i;
  } else if (mfm_idmap_new(&r->u, NULL) != MFM_OK ||
             mfm_idmap_new(&r->i, NULL) != MFM_OK) {
    r->st = MFM_ENOMEM;
    return;
  }
  mfm_coo coo;
  r->st = mfm_read_interactions(paths, names, n, so, o, r->u, r->i,
                                share == NULL, share == NULL, &coo, &r->rep,
                                &r->err);
  if (r->st == MFM_OK)
    r->st = mfm_csr_from_coo_inplace(mfm_idmap_size(r->u),
                                     mfm_idmap_size(r->i), &coo, &r->x,
                                     &r->err);
  if (share) r->u = r->i = NULL;
}

static void run_text(run *r, const char *text, const mfm_read_opts *o) {
  write_text("t.txt", text);
  const char *names[] = {"t.txt", NULL};
  run_files(r, names, o, NULL, NULL);
}

/* Weight of (user, item), or -1 when absent. */
static float wt(const run *r, const char *u, const char *i) {
  int32_t a = mfm_idmap_find(r->u, u, strlen(u));
  int32_t b = mfm_idmap_find(r->i, i, strlen(i));
  if (a < 0 || b < 0 || !r->x || a >= r->x->n_rows) return -1;
  for (int64_t p = r->x->indptr[a]; p < r->x->indptr[a + 1]; p++)
    if (r->x->indices[p] == b) return r->x->data[p];
  return -1;
}

static int has(const char *s, const char *sub) { return strstr(s, sub) != 0; }

static mfm_read_opts opts(void) {
  mfm_read_opts o = mfm_read_opts_default();
  o.channel = "train";
  return o;
}

static void csv_basics(void) {
  mfm_read_opts o = opts();
  run r;
  run_text(&r, "user,item,rating\nu1,i1,5\nu2,i1,3\nu1,i2,1.5\n", &o);
  CHECK(r.st == MFM_OK);
  CHECK(r.rep.header == 1 && r.rep.delimiter == ',' && r.rep.headers == 1);
  CHECK(r.rep.rows == 3 && r.rep.kept == 3 && r.rep.bad == 0);
  CHECK(r.x->n_rows == 2 && r.x->n_cols == 2 && r.x->nnz == 3);
  CHECK(wt(&r, "u1", "i1") == 5 && wt(&r, "u2", "i1") == 3);
  CHECK(wt(&r, "u1", "i2") == 1.5f && wt(&r, "u2", "i2") == -1);
  CHECK(r.rep.col_pos[2] == 3 && r.rep.col_pos[3] == 0);
  run_free(&r);

  /* Integer ids, no header, no weights: all ones, first-seen order. */
  run_text(&r, "1,10\n2,20\n1,20\n", &o);
  CHECK(r.st == MFM_OK && r.rep.header == 0 && r.rep.rows == 3);
  CHECK(mfm_idmap_find(r.u, "2", 1) == 1 && mfm_idmap_find(r.i, "20", 2) == 1);
  CHECK(wt(&r, "1", "20") == 1 && r.x->nnz == 3);
  run_free(&r);

  /* MovieLens u.data: tabs, weight and timestamp by position. */
  run_text(&r, "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", &o);
  CHECK(r.st == MFM_OK && r.rep.delimiter == '\t' && r.rep.header == 0);
  CHECK(r.rep.col_pos[2] == 3 && r.rep.col_pos[3] == 4);
  CHECK(wt(&r, "186", "302") == 3);
  run_free(&r);

  /* CRLF, BOM, blank lines, spaces around fields, no final newline. */
  run_text(&r, "\xef\xbb\xbfuser_id, item_id ,score\r\n\r\na , b, 2\r\n\n"
               "c,d,4", &o);
  CHECK(r.st == MFM_OK && r.rep.rows == 2 && r.rep.blank == 2);
  CHECK(wt(&r, "a", "b") == 2 && wt(&r, "c", "d") == 4);
  run_free(&r);

  /* Header only; empty file. */
  run_text(&r, "user,item\n", &o);
  CHECK(r.st == MFM_OK && r.rep.rows == 0 && r.rep.headers == 1);
  CHECK(r.x->n_rows == 0 && r.x->nnz == 0);
  run_free(&r);
  run_text(&r, "", &o);
  CHECK(r.st == MFM_OK && r.rep.rows == 0 && r.x->nnz == 0);
  run_free(&r);

  /* Quoted fields. */
  run_text(&r, "\"a,1\",\"b\"\"x\",2\nplain,\"q\" ,3\n", &o);
  CHECK(r.st == MFM_OK && r.rep.rows == 2);
  CHECK(wt(&r, "a,1", "b\"x") == 2 && wt(&r, "plain", "q") == 3);
  run_free(&r);

  /* Duplicates are summed. */
  run_text(&r, "a,b,1\na,b,2\na,c,1\n", &o);
  CHECK(r.st == MFM_OK && r.x->nnz == 2 && wt(&r, "a", "b") == 3);
  run_free(&r);

  /* Semicolons, pipes, spaces. */
  run_text(&r, "a;b;2\n", &o);
  CHECK(r.st == MFM_OK && r.rep.delimiter == ';' && wt(&r, "a", "b") == 2);
  run_free(&r);
  run_text(&r, "a  b   2\nc\td 1\n", &o);
  CHECK(r.st == MFM_OK && r.rep.delimiter == ' ' && wt(&r, "c", "d") == 1);
  run_free(&r);
  o.delimiter = ' ';
  run_text(&r, "a  b   2\n c d 1 \n", &o);
  CHECK(r.st == MFM_OK && wt(&r, "a", "b") == 2 && wt(&r, "c", "d") == 1);
  run_free(&r);

  /* RetailRocket's events: user and item named at 2 and 4, so the third
     column ("event") is no weight. */
  o.delimiter = 0;
  run_text(&r, "timestamp,visitorid,event,itemid,transactionid\n"
               "1433221332117,257597,view,355908,\n", &o);
  CHECK(r.st == MFM_OK && wt(&r, "257597", "355908") == 1);
  run_free(&r);

  /* Last.fm 360K: the third column is an artist name on every line, so
     the first line looked like a header; the second says the column
     holds no weights, as a layout error even with skip_bad. */
  o.skip_bad = 1;
  run_text(&r, "a1\tm1\tbetty blowtorch\t2137\na1\t\tu2\t897\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "line 2: column 3 is not a "
                                   "number here (\"u2\") nor on the first"));
  CHECK(has(r.err.msg, "weight_column=") && has(r.err.msg, "header=absent"));
  run_free(&r);
  o.skip_bad = 0;
  /* A header by its weight name alone, then a bad row later: a row error. */
  run_text(&r, "a,b,w\nu1,i1,2\nu2,i2,x\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "line 3, column 3 (weight)"));
  run_free(&r);
  /* The Netflix Prize's combined_data: "1:" lines. */
  run_text(&r, "1:\r\n1488844,3,2005-09-06\r\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "line 1: the file is in the "
                                   "Netflix Prize layout"));
  run_free(&r);

  /* Book-Crossing's header names its columns. */
  o.delimiter = 0;
  run_text(&r, "\"User-ID\";\"ISBN\";\"Book-Rating\"\n\"7\";\"034545104X\";\"6\"\n",
           &o);
  CHECK(r.st == MFM_OK && r.rep.header == 1 && wt(&r, "7", "034545104X") == 6);
  run_free(&r);

  /* MovieLens' ratings.dat: "::" between fields, detected; a single ':'
     stays in its field, quotes work as with any delimiter. */
  run_text(&r, "1::1193::5::978300760\n1::661::3::978302109\n"
               "2:x::\"it::em\"::4::978300001\n", &o);
  CHECK(r.st == MFM_OK && r.rep.delimiter == ':' && r.rep.header == 0);
  CHECK(wt(&r, "1", "1193") == 5 && wt(&r, "1", "661") == 3);
  CHECK(wt(&r, "2:x", "it::em") == 4 && r.x->nnz == 3);
  run_free(&r);
  o.delimiter = ':';
  run_text(&r, "a::b\nc::d::\n", &o); /* "d::": an empty weight field */
  CHECK(r.st == MFM_OK && wt(&r, "a", "b") == 1 && wt(&r, "c", "d") == 1);
  run_free(&r);
  run_text(&r, "\"a\":b::c::1\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "after a closing quote"));
  run_free(&r);
  run_text(&r, "a:b:c\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "delimiter '::'"));
  run_free(&r);
}

static void csv_columns(void) {
  mfm_read_opts o = opts();
  run r;
  o.col_name[MFM_COL_USER] = "uid";
  o.col_name[MFM_COL_ITEM] = "iid";
  o.col_name[MFM_COL_WEIGHT] = "r";
  run_text(&r, "x,iid,uid,r\n9,i1,u1,4\n9,i2,u1,2\n", &o);
  CHECK(r.st == MFM_OK && r.rep.header == 1);
  CHECK(wt(&r, "u1", "i1") == 4 && wt(&r, "u1", "i2") == 2);
  CHECK(r.rep.col_pos[0] == 3 && r.rep.col_pos[1] == 2);
  run_free(&r);
  run_text(&r, "x,iid,user,r\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "'uid' is not in the header"));
  CHECK(has(r.err.msg, "x, iid, user, r"));
  run_free(&r);

  /* By position, weight turned off. */
  o = opts();
  o.col_pos[MFM_COL_USER] = 3;
  o.col_pos[MFM_COL_ITEM] = 1;
  o.col_pos[MFM_COL_WEIGHT] = -1;
  o.header = 0;
  run_text(&r, "i1,zz,u1,notanumber\n", &o);
  CHECK(r.st == MFM_OK && wt(&r, "u1", "i1") == 1);
  run_free(&r);

  /* Header in each file; columns named differently in the second. */
  o = opts();
  write_text("a.csv", "user,item,rating\nu1,i1,5\n");
  write_text("b.csv", "rating,item,user\n2,i2,u2\n");
  const char *names[] = {"a.csv", "b.csv", NULL};
  run_files(&r, names, &o, NULL, NULL);
  CHECK(r.st == MFM_OK && r.rep.headers == 2 && r.rep.files == 2);
  CHECK(wt(&r, "u1", "i1") == 5 && wt(&r, "u2", "i2") == 2);
  run_free(&r);

  /* Options that make no sense. */
  o = opts();
  o.col_name[MFM_COL_USER] = "u";
  o.header = 0;
  mfm_reader *rd;
  mfm_idmap *m;
  mfm_idmap_new(&m, NULL);
  CHECK(mfm_reader_new(&o, m, m, 1, 1, &rd, NULL) == MFM_EINVAL);
  o = opts();
  o.delimiter = 'x';
  CHECK(mfm_read_opts_check(&o) != NULL);
  o = opts();
  o.format = MFM_FORMAT_JSONL;
  o.col_pos[MFM_COL_USER] = 2;
  CHECK(mfm_read_opts_check(&o) != NULL);
  mfm_idmap_free(m);
}

static void csv_errors(void) {
  mfm_read_opts o = opts();
  run r;
  char text[2000] = "";
  for (int k = 1; k <= 16; k++)
    sprintf(text + strlen(text), "u%d,i%d,1.0\n", k, k);
  strcat(text, "u17,,3.0\nu18,i1,1\n");
  write_text("part-0001.csv", text);
  const char *names[] = {"part-0001.csv", NULL};
  o.header = 0;
  run_files(&r, names, &o, NULL, NULL);
  CHECK(r.st == MFM_EFORMAT);
  CHECK(strcmp(r.err.msg, "channel 'train': file part-0001.csv, line 17, "
               "column 2 (item): empty id in row \"u17,,3.0\"; fix the row "
               "or pass bad_rows=skip") == 0);
  run_free(&r);

  o.header = -1;
  run_text(&r, "u,i,w\na,b,1\nc,d,x1\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "line 3, column 3 (weight)"));
  CHECK(has(r.err.msg, "weight \"x1\" is not a number"));
  run_free(&r);
  run_text(&r, "a,b,1\nc,d,1e999\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "not finite"));
  run_free(&r);
  run_text(&r, "a,b,1\nc\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "expected at least 3 fields, "
                                   "found 1"));
  run_free(&r);
  run_text(&r, "a,b\n\"c,d\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "unterminated quote"));
  run_free(&r);
  run_text(&r, "a,b\n\"c\"x,d\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "after a closing quote"));
  run_free(&r);
  run_text(&r, "a\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "too few"));
  run_free(&r);

  /* NUL bytes are refused; other bytes (invalid UTF-8) are ids. */
  write_file("t.txt", "a,b\nc\0d,e\n", 10);
  const char *t[] = {"t.txt", NULL};
  run_files(&r, t, &o, NULL, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "NUL byte"));
  CHECK(has(r.err.msg, "\\x00"));
  run_free(&r);
  run_text(&r, "a,b\n\xff\xfe\xc3,\x80x\n", &o);
  CHECK(r.st == MFM_OK && wt(&r, "\xff\xfe\xc3", "\x80x") == 1);
  run_free(&r);
  write_file("t.txt", "\xff\xfe" "a\0,\0", 6);
  run_files(&r, t, &o, NULL, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "UTF-16"));
  run_free(&r);

  /* Skipping: counted, the first messages kept, caps enforced. */
  o.skip_bad = 1;
  run_text(&r, "a,b,1\n,b,1\nc,d,zz\ne,f,2\n", &o);
  CHECK(r.st == MFM_OK && r.rep.bad == 2 && r.rep.kept == 2);
  CHECK(r.rep.rows == 4 && r.rep.n_bad_kept == 2);
  CHECK(has(r.rep.bad_rows[0], "line 2, column 1 (user): empty id"));
  CHECK(!has(r.rep.bad_rows[0], "bad_rows=skip"));
  run_free(&r);
  o.max_bad_rows = 1;
  run_text(&r, "a,b,1\n,b,1\nc,d,zz\ne,f,2\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "max_bad_rows=1"));
  run_free(&r);
  o.max_bad_rows = -1;
  o.max_bad_fraction = 0.25;
  run_text(&r, "a,b,1\n,b,1\nc,d,zz\ne,f,2\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "2 of 4"));
  run_free(&r);
}

static void csv_big_values(void) {
  mfm_read_opts o = opts();
  run r;
  /* Ids past 2^64 stay exact: they are bytes. */
  run_text(&r, "18446744073709551616123,9223372036854775808\n", &o);
  CHECK(r.st == MFM_OK);
  CHECK(wt(&r, "18446744073709551616123", "9223372036854775808") == 1);
  run_free(&r);
  /* A 10 MB line (longer than the 4 MiB buffer). */
  size_t n = 10u << 20;
  char *line = malloc(n + 16);
  memset(line, 'x', n);
  memcpy(line + n, ",i,2\n", 6);
  write_file("t.txt", line, n + 5);
  const char *t[] = {"t.txt", NULL};
  o.header = 0;
  run_files(&r, t, &o, NULL, NULL);
  CHECK(r.st == MFM_OK && r.rep.rows == 1);
  size_t len;
  mfm_idmap_get(r.u, 0, &len);
  CHECK(len == n);
  run_free(&r);
  free(line);
  /* Numbers. */
  double v;
  CHECK(mfm_parse_number("1.5e3", 5, &v) && v == 1500);
  CHECK(mfm_parse_number("-0.25", 5, &v) && v == -0.25);
  CHECK(mfm_parse_number("+7.", 3, &v) && v == 7);
  CHECK(mfm_parse_number(".5", 2, &v) && v == 0.5);
  CHECK(mfm_parse_number("123456789012345678901234", 24, &v) &&
        fabs(v - 1.23456789012345678e23) < 1e9);
  CHECK(mfm_parse_number("1e-30", 5, &v) && fabs(v - 1e-30) < 1e-40);
  CHECK(!mfm_parse_number("", 0, &v) && !mfm_parse_number("1e", 2, &v));
  CHECK(!mfm_parse_number("1.2.3", 5, &v) && !mfm_parse_number("-", 1, &v));
  CHECK(!mfm_parse_number("abc", 3, &v) && !mfm_parse_number("1 ", 2, &v));
  CHECK(mfm_parse_number("inf", 3, &v) && isinf(v));
}

static void jsonl(void) {
  mfm_read_opts o = opts();
  run r;
  o.format = MFM_FORMAT_JSONL;
  run_text(&r,
           "{\"user\":\"u1\",\"item\":2,\"weight\":3.5}\n"
           "\n"
           " { \"item\" : \"x\\u00e9\\\"\", \"other\": {\"a\":[1,2,\"}\"]},"
           " \"user\": 12345678901234567890123 , \"flag\": true}\n"
           "{\"user_id\":\"u1\",\"item_id\":\"2\",\"rating\":\"2\"}\r\n"
           "{\"user\":\"\\ud83d\\ude00\",\"item\":\"a\\/b\\n\",\"weight\":null,"
           "\"weight\":1}\n",
           &o);
  CHECK(r.st == MFM_OK);
  if (r.st != MFM_OK) fprintf(stderr, "%s\n", r.err.msg);
  CHECK(r.rep.rows == 4 && r.rep.blank == 1);
  CHECK(wt(&r, "u1", "2") == 5.5f);
  CHECK(wt(&r, "12345678901234567890123", "x\xc3\xa9\"") == 1);
  run_free(&r);

  /* A NUL from an escape is the id's fault, not the file's encoding. */
  run_text(&r, "{\"user\":\"a\\u0000b\",\"item\":\"i1\"}\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "may not hold a NUL") &&
        !has(r.err.msg, "UTF-16"));
  run_free(&r);

  /* Public datasets' own keys: Amazon reviews, Yelp. */
  run_text(&r,
           "{\"reviewerID\":\"A1\",\"asin\":\"B07\",\"overall\":4.0,"
           "\"unixReviewTime\":1400000000,\"reviewTime\":\"02 13, 2014\"}\n"
           "{\"user_id\":\"A2\",\"business_id\":\"B07\",\"stars\":2,"
           "\"date\":\"2016-03-09 20:07:00\"}\n",
           &o);
  CHECK(r.st == MFM_OK && wt(&r, "A1", "B07") == 4 && wt(&r, "A2", "B07") == 2);
  run_free(&r);

  static const struct {
    const char *line, *msg;
  } bad[] = {
    {"{\"user\":\"a\"}", "no \"item\" field"},
    {"{\"user\":null,\"item\":1}", "must be a string or a number"},
    {"{\"user\":[1],\"item\":1}", "must be a string or a number"},
    {"[1,2]", "expected a JSON object"},
    {"{\"user\":1,\"item\":2} x", "text after the object"},
    {"{\"user\":\"a\\q\",\"item\":2}", "bad escape"},
    {"{\"user\":\"a,\"item\":2}", "expected ',' or '}'"},
    {"{\"user\":\"a\",\"item\":\"b", "unterminated string"},
    {"{\"user\":1,\"item\":2,\"weight\":\"x\"}", "not a number"},
    {"{\"user\":1 \"item\":2}", "expected ',' or '}'"},
    {"{\"user\":1,\"item\":tru}", "bad value"},
    {"{\"user\":\"\",\"item\":2}", "empty id"},
    {"{\"user\":\"\\udc00\",\"item\":2}", "unpaired surrogate"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    char text[200];
    snprintf(text, sizeof text, "{\"user\":1,\"item\":1}\n%s\n", bad[k].line);
    run_text(&r, text, &o);
    CHECK(r.st == MFM_EFORMAT && has(r.err.msg, bad[k].msg) &&
          has(r.err.msg, "line 2"));
    if (!(r.st == MFM_EFORMAT && has(r.err.msg, bad[k].msg)))
      fprintf(stderr, "case %zu: %s\n", k, r.err.msg);
    run_free(&r);
  }
  /* Keys by name. */
  o.col_name[MFM_COL_USER] = "who";
  o.col_name[MFM_COL_ITEM] = "what";
  run_text(&r, "{\"who\":\"a\",\"what\":\"b\",\"weight\":2,\"user\":\"z\"}\n",
           &o);
  CHECK(r.st == MFM_OK && wt(&r, "a", "b") == 2);
  run_free(&r);
}

static void sparse(void) {
  mfm_read_opts o = opts();
  run r;
  o.format = MFM_FORMAT_SPARSE;
  run_text(&r, "u1 f1:0.5 f2\n# comment\nu2\nu3\ta:b:2  tag:x\n", &o);
  CHECK(r.st == MFM_OK && r.rep.rows == 3 && r.rep.kept == 4);
  CHECK(mfm_idmap_size(r.u) == 3 && r.x->n_rows == 3);
  CHECK(wt(&r, "u1", "f1") == 0.5f && wt(&r, "u1", "f2") == 1);
  CHECK(wt(&r, "u3", "a:b") == 2 && wt(&r, "u3", "tag:x") == 1);
  CHECK(r.x->indptr[2] == r.x->indptr[1]); /* u2: no features */
  run_free(&r);
  run_text(&r, "u1 f:1e99\n", &o);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "column 2 (feature)"));
  run_free(&r);
}

static void unseen(void) {
  mfm_read_opts o = opts();
  run train, test;
  run_text(&train, "a,x\nb,y\n", &o);
  CHECK(train.st == MFM_OK);
  write_text("test.csv", "a,y\nc,x\nc,z\nd,x\nb,z\n");
  const char *t[] = {"test.csv", NULL};
  o.channel = "test";
  run_files(&test, t, &o, NULL, &train);
  CHECK(test.st == MFM_OK && test.rep.rows == 5 && test.rep.kept == 1);
  CHECK(test.rep.dropped == 4);
  CHECK(test.rep.unseen_user_rows == 3 && test.rep.unseen_users == 2);
  CHECK(test.rep.unseen_item_rows == 2 && test.rep.unseen_items == 1);
  CHECK(mfm_idmap_size(train.u) == 2 && mfm_idmap_size(train.i) == 2);
  CHECK(test.x->n_rows == 2 && test.x->nnz == 1);
  mfm_csr_free(test.x);
  run_free(&train);
}

static void gzip_files(void) {
  mfm_read_opts o = opts();
  run r;
  const char *csv = "user,item,w\na,b,2\nc,d,3\n";
  write_gzip("g.csv.gz", csv, 0);
  write_gzip("g.csv.gz", "e,f,4\n", 1); /* a second member */
  write_gzip("plain-name", csv, 0);     /* magic, not the name */
  const char *t[] = {"g.csv.gz", "plain-name", NULL};
  run_files(&r, t, &o, NULL, NULL);
  CHECK(r.st == MFM_OK && r.rep.rows == 5 && r.rep.headers == 2);

  CHECK(wt(&r, "e", "f") == 4 && wt(&r, "a", "b") == 4);
  CHECK(r.rep.raw_bytes < r.rep.bytes + 100);
  run_free(&r);
  /* Tiny raw blocks: every boundary case of the buffers. */
  mfm_source_opts so = {0, 16};
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_OK && r.rep.rows == 5);
  run_free(&r);
  /* Truncated and corrupt. */
  size_t n;
  char *b = slurp("g.csv.gz", &n);
  write_file("trunc.gz", b, n / 2);
  const char *tt[] = {"trunc.gz", NULL};
  run_files(&r, tt, &o, NULL, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "ends early"));
  CHECK(has(r.err.msg, "channel 'train'"));
  run_free(&r);
  b[12] ^= 0x55;
  b[13] ^= 0x55;
  write_file("trunc.gz", b, n);
  run_files(&r, tt, &o, NULL, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "gzip"));
  run_free(&r);
  free(b);
}

/* RecordIO framing by hand. */
static size_t rec(char *out, unsigned flag, const char *payload, size_t n) {
  uint32_t magic = 0xCED7230Au, h = (uint32_t)n | (uint32_t)flag << 29;
  memcpy(out, &magic, 4);
  memcpy(out + 4, &h, 4);
  memcpy(out + 8, payload, n);
  size_t pad = (4 - n % 4) % 4;
  memset(out + 8 + n, 0, pad);
  return 8 + n + pad;
}

static void recordio(void) {
  mfm_read_opts o = opts();
  mfm_source_opts so = {1, 0};
  run r;
  char buf[4096];
  size_t n = 0;
  /* Each record a whole file without a final newline, with a header. */
  n += rec(buf + n, 0, "user,item,w\na,b,2", 17);
  n += rec(buf + n, 0, "user,item,w\nc,d,3\n", 18);
  /* A multi-part record. */
  n += rec(buf + n, 1, "user,item,w\ne,", 14);
  n += rec(buf + n, 2, "f,", 2);
  n += rec(buf + n, 3, "5", 1);
  n += rec(buf + n, 0, "", 0);
  write_file("train_0", buf, n);
  const char *t[] = {"train_0", NULL};
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_OK && r.rep.rows == 3 && r.rep.headers == 3);
  CHECK(wt(&r, "a", "b") == 2 && wt(&r, "c", "d") == 3);
  CHECK(wt(&r, "e", "f") == 5);
  run_free(&r);
  /* Tiny blocks. */
  mfm_source_opts tiny = {1, 16};
  run_files(&r, t, &o, &tiny, NULL);
  CHECK(r.st == MFM_OK && r.rep.rows == 3);
  run_free(&r);
  /* gzip inside a record. */
  {
    char gz[256];
    uLongf gzn = sizeof gz;
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    const char *txt = "g,h,7\n";
    z.next_in = (Bytef *)txt;
    z.avail_in = 6;
    z.next_out = (Bytef *)gz;
    z.avail_out = (uInt)gzn;
    deflate(&z, Z_FINISH);
    gzn = z.total_out;
    deflateEnd(&z);
    size_t m = rec(buf, 0, gz, gzn);
    m += rec(buf + m, 0, "i,j,1", 5);
    write_file("train_0", buf, m);
    o.header = 0;
    run_files(&r, t, &o, &so, NULL);
    CHECK(r.st == MFM_OK && wt(&r, "g", "h") == 7 && wt(&r, "i", "j") == 1);
    run_free(&r);
  }
  /* Bad magic, truncated record, stray continuation. */
  n = rec(buf, 0, "a,b\n", 4);
  buf[n] = 0x12;
  memcpy(buf + n + 1, "garbage", 7);
  write_file("train_0", buf, n + 8);
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "bad magic"));
  CHECK(has(r.err.msg, "byte 12"));
  run_free(&r);
  n = rec(buf, 0, "a,b\nc,d\n", 8);
  write_file("train_0", buf, n - 3);
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "truncated record"));
  run_free(&r);
  write_file("train_0", buf, 5);
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "truncated record header"));
  run_free(&r);
  n = rec(buf, 2, "a,b\n", 4);
  write_file("train_0", buf, n);
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "continuation flag 2"));
  run_free(&r);
  n = rec(buf, 1, "a,b\n", 4);
  n += rec(buf + n, 0, "a,b\n", 4);
  write_file("train_0", buf, n);
  run_files(&r, t, &o, &so, NULL);
  CHECK(r.st == MFM_EFORMAT && has(r.err.msg, "not finished"));
  run_free(&r);
}

static void fifo(void) {
  const char *p = tpath("train_1");
  unlink(p);
  CHECK(mkfifo(p, 0600) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* The writer comes late and writes in pieces. */
    usleep(200000);
    FILE *f = fopen(p, "w");
    for (int k = 0; k < 2000; k++) {
      fprintf(f, "u%d,i%d,%d\n", k % 37, k % 101, 1 + k % 3);
      if (k % 500 == 0) {
        fflush(f);
        usleep(20000);
      }
    }
    fclose(f);
    _exit(0);
  }
  mfm_read_opts o = opts();
  run r;
  const char *t[] = {"train_1", NULL};
  run_files(&r, t, &o, NULL, NULL);
  int status;
  waitpid(pid, &status, 0);
  CHECK(r.st == MFM_OK && r.rep.rows == 2000);
  CHECK(mfm_idmap_size(r.u) == 37 && mfm_idmap_size(r.i) == 101);
  run_free(&r);

  /* The stop flag ends a wait for a writer that never writes. */
  mfm_source *s;
  CHECK(mfm_source_open(p, NULL, &s, NULL) == MFM_OK);
  CHECK(mfm_source_is_fifo(s));
  mfm_stop_request();
  char buf[64];
  size_t n;
  mfm_err err;
  CHECK(mfm_source_read(s, buf, sizeof buf, &n, NULL, &err) == MFM_ECANCELED);
  mfm_stop_reset();
  mfm_source_free(s);
  unlink(p);

  /* Not a file. */
  CHECK(mfm_source_open(tmpdir, NULL, &s, &err) == MFM_EIO);
  CHECK(has(err.msg, "is a directory"));
  CHECK(mfm_source_open(tpath("nope"), NULL, &s, &err) == MFM_EIO);
  CHECK(has(err.msg, "cannot open") && has(err.msg, "nope"));
}

/* The in-place build against mfm_csr_from_coo on random triplets. */
static void inplace_csr(void) {
  mfm_rng rng;
  mfm_rng_seed(&rng, 7);
  for (int trial = 0; trial < 26; trial++) {
    int32_t nr = 1 + (int32_t)mfm_rng_below(&rng, 50);
    int32_t nc = 1 + (int32_t)mfm_rng_below(&rng, trial < 10 ? 5 : 300);
    int64_t nnz = (int64_t)mfm_rng_below(&rng, 3000);
    /* Many rows: the radix passes nest two and three deep; some trials
       come sorted by row (nothing moves) or nearly so. */
    if (trial >= 20) {
      nr = trial < 23 ? 1500 + (int32_t)mfm_rng_below(&rng, 5000)
                      : 1500000 + (int32_t)mfm_rng_below(&rng, 1000000);
      nnz = 20000 + (int64_t)mfm_rng_below(&rng, 20000);
    }
    mfm_coo c = {0, 0, NULL, NULL, NULL};
    for (int64_t k = 0; k < nnz; k++)
      mfm_coo_push(&c, trial == 21 ? (int32_t)(k * nr / nnz) :
                   trial == 24 && k % 100 ? (int32_t)(k * nr / nnz) :
                   (int32_t)mfm_rng_below(&rng, (uint32_t)nr),
                   (int32_t)mfm_rng_below(&rng, (uint32_t)nc),
                   (float)(1 + mfm_rng_below(&rng, 4)));
    if (trial % 2) {
      mfm_free(c.vals);
      c.vals = NULL;
    }
    mfm_csr *a, *b;
    CHECK(mfm_csr_from_coo(nr, nc, c.n, c.rows, c.cols, c.vals, &a, NULL) ==
          MFM_OK);
    CHECK(mfm_csr_from_coo_inplace(nr, nc, &c, &b, NULL) == MFM_OK);
    CHECK(c.n == 0 && c.rows == NULL);
    int same = a->nnz == b->nnz && a->n_rows == b->n_rows;
    for (int32_t r = 0; same && r <= nr; r++)
      same = a->indptr[r] == b->indptr[r];
    for (int64_t k = 0; same && k < a->nnz; k++)
      same = a->indices[k] == b->indices[k] && a->data[k] == b->data[k];
    CHECK(same);
    mfm_csr_free(a);
    mfm_csr_free(b);
  }
  mfm_coo c = {0, 0, NULL, NULL, NULL};
  mfm_coo_push(&c, 3, 0, 1);
  mfm_csr *b;
  CHECK(mfm_csr_from_coo_inplace(2, 2, &c, &b, NULL) == MFM_EINVAL);
  CHECK(c.rows == NULL && b == NULL);
}

static void faults(void) {
  write_text("f.csv", "user,item,w\na,b,2\n\"c\"\"\",d,3\na,d,1\n");
  write_gzip("f.gz", "e,f\n", 0);
  write_text("f.jsonl", "{\"user\":\"a\\u0041\",\"item\":1}\n");
  int failures = 0, finished = 0;
  for (size_t nth = 1; nth < 400 && !finished; nth++) {
    mfm_read_opts o = opts();
    run r;
    const char *t[] = {"f.csv", "f.gz", NULL};
    mfm_alloc_fail_at(nth);
    run_files(&r, t, &o, NULL, NULL);
    if (r.st == MFM_OK) {
      run_free(&r);
      o.format = MFM_FORMAT_JSONL;
      const char *j[] = {"f.jsonl", NULL};
      run_files(&r, j, &o, NULL, NULL);
    }
    mfm_alloc_fail_at(0);
    if (r.st == MFM_OK) finished = 1;
    else if (r.st == MFM_ENOMEM) failures++;
    else {
      fprintf(stderr, "fault %zu: %s\n", nth, r.err.msg);
      CHECK(!"unexpected status");
    }
    run_free(&r);
  }
  CHECK(finished && failures > 10);
}

int main(void) {
  const char *base = getenv("MFM_TEST_TMP");
  snprintf(tmpdir, sizeof tmpdir, "%s/reader-%d", base ? base : "/tmp",
           (int)getpid());
  mkdir(base ? base : "/tmp", 0755);
  if (mkdir(tmpdir, 0755) != 0 && errno != EEXIST) {
    perror(tmpdir);
    return 2;
  }
  csv_basics();
  csv_columns();
  csv_errors();
  csv_big_values();
  jsonl();
  sparse();
  unseen();
  gzip_files();
  recordio();
  fifo();
  inplace_csr();
  faults();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  DONE("reader");
}
