/* The plain-row CSV path against the general parser: the same rows
   written plain (the fast path takes most of them) and with every field
   quoted (the general parser takes all of them) must give the same maps,
   matrix and counts; fed at once, through 16-byte gzip chunks (rows
   straddle every read), and through finish (byte weights).  Also the
   weight forms (none, bytes, floats) and the in-place CSR's tail merge. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static void write_bytes(const char *name, const char *data, size_t n,
                        int gz) {
  if (gz) {
    gzFile g = gzopen(tpath(name), "wb");
    gzwrite(g, data, (unsigned)n);
    gzclose(g);
    return;
  }
  FILE *f = fopen(tpath(name), "wb");
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

typedef struct text {
  char *p;
  size_t n, cap;
} text;

static void put(text *t, const char *s, size_t n) {
  if (t->n + n + 1 > t->cap) {
    t->cap = (t->n + n + 1) * 2;
    t->p = realloc(t->p, t->cap);
  }
  memcpy(t->p + t->n, s, n);
  t->n += n;
  t->p[t->n] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static uint32_t rnd(uint32_t *x) {
  *x = *x * 1103515245u + 12345u;
  return *x >> 8;
}

/* An id of one of many forms (with n bytes in *n; may hold a NUL). */
static void make_id(uint32_t *x, char pre, char *out, size_t *n) {
  uint32_t k = rnd(x) % 400;
  switch (rnd(x) % 14) {
  case 0: case 1: case 2: case 3:
    *n = (size_t)sprintf(out, "%u", k); /* small canonical integers */
    break;
  case 4: *n = (size_t)sprintf(out, "0%u", k % 40); break; /* "00", "07" */
  case 5: *n = (size_t)sprintf(out, "%u", 100000000u + k); break; /* 9 */
  case 6: *n = (size_t)sprintf(out, "%u", 99999000u + k); break; /* 8 */
  case 7: case 8: *n = (size_t)sprintf(out, "%c%u", pre, k); break;
  case 9: /* longer than the last-user copy and several words */
    *n = (size_t)sprintf(out, "%c-%u-abcdefghijklmnopqrstuvwxyz0123456789",
                         pre, k % 9);
    break;
  case 10: *n = (size_t)sprintf(out, "%c\xc3\xa9%u", pre, k % 30); break;
  case 11: *n = (size_t)sprintf(out, "%c!%u", pre, k % 20); break;
  case 12: *n = (size_t)sprintf(out, "%c#%u|x", pre, k % 20); break;
  default: *n = (size_t)sprintf(out, "%u", k % 7); break;
  }
}

static const char *const weights[] = {"1", "3", "0", "10", "2.5", "255",
                                      "256", "1e2", "-0", "-1.25", "7"};

/* Rows as plain and as quoted text.  bad: also rows the parser must
   refuse (counted with bad_rows=skip). */
static void make_rows(uint32_t seed, int n_rows, int bad, int wkind,
                      text *plain, text *quoted) {
  uint32_t x = seed;
  char u[128], it[128];
  size_t un = 0, in;
  for (int r = 0; r < n_rows; r++) {
    if (r == 0 || rnd(&x) % 4 == 0) make_id(&x, 'u', u, &un); /* runs */
    make_id(&x, 'i', it, &in);
    const char *w = wkind == 0 ? "1" : wkind == 1 ? weights[rnd(&x) % 4]
                                                  : weights[rnd(&x) % 11];
    const char *eol = rnd(&x) % 3 ? "\n" : "\r\n";
    int extra = r > 0 && rnd(&x) % 5 == 0;
    if (bad && r > 0 && rnd(&x) % 10 == 0) {
      /* sizeof, not strlen: one holds a NUL. */
#define ROW(s) {s, sizeof s - 1}
      static const struct {
        const char *s;
        size_t n;
      } rows[][2] = {
        {ROW(",i1,3"), ROW("\"\",\"i1\",\"3\"")},
        {ROW("u1,,3"), ROW("\"u1\",\"\",\"3\"")},
        {ROW("u1,i1,"), ROW("\"u1\",\"i1\",\"\"")},
        {ROW("u1,i1"), ROW("\"u1\",\"i1\"")},
        {ROW("u1,i1,abc"), ROW("\"u1\",\"i1\",\"abc\"")},
        {ROW("u1,i1,1e999"), ROW("\"u1\",\"i1\",\"1e999\"")},
        {ROW("u\0x,i1,2"), ROW("\"u\0x\",\"i1\",\"2\"")},
        {ROW("u1"), ROW("\"u1\"")}};
#undef ROW
      int k = (int)(rnd(&x) % 8);
      put(plain, rows[k][0].s, rows[k][0].n);
      puts_(plain, eol);
      put(quoted, rows[k][1].s, rows[k][1].n);
      puts_(quoted, eol);
      continue;
    }
    text *t[2] = {plain, quoted};
    for (int q = 0; q < 2; q++) {
      const char *qq = q ? "\"" : "";
      puts_(t[q], qq);
      put(t[q], u, un);
      puts_(t[q], qq);
      puts_(t[q], ",");
      puts_(t[q], qq);
      put(t[q], it, in);
      puts_(t[q], qq);
      puts_(t[q], ",");
      puts_(t[q], qq);
      puts_(t[q], w);
      puts_(t[q], qq);
      if (extra) puts_(t[q], ",\"x, y\", z ,9");
      puts_(t[q], eol);
    }
  }
}

typedef struct result {
  mfm_status st;
  mfm_idmap *u, *i;
  mfm_csr *x;
  mfm_read_report rep;
} result;

static void result_free(result *r) {
  mfm_idmap_free(r->u);
  mfm_idmap_free(r->i);
  mfm_csr_free(r->x);
  memset(r, 0, sizeof *r);
}

/* Reads one file through mfm_reader_finish (finish = 1: byte weights
   reach the CSR build) or mfm_read_interactions + the in-place build. */
static void read_file(result *r, const char *name, size_t block, int skip,
                      int finish) {
  mfm_read_opts o = mfm_read_opts_default();
  mfm_source_opts so = {0, block};
  mfm_err err;
  o.header = 0;
  o.skip_bad = skip;
  memset(r, 0, sizeof *r);
  mfm_idmap_new(&r->u, NULL);
  mfm_idmap_new(&r->i, NULL);
  const char *path = tpath(name);
  if (finish) {
    mfm_reader *rd;
    mfm_source *s;
    r->st = mfm_reader_new(&o, r->u, r->i, 1, 1, &rd, &err);
    if (r->st != MFM_OK) return;
    r->st = mfm_source_open(path, &so, &s, &err);
    if (r->st == MFM_OK) {
      r->st = mfm_reader_feed(rd, s, name, &err);
      mfm_source_free(s);
    }
    if (r->st == MFM_OK) r->st = mfm_reader_finish(rd, &r->x, &err);
    r->rep = *mfm_reader_report(rd);
    mfm_reader_free(rd);
  } else {
    mfm_coo coo;
    r->st = mfm_read_interactions(&path, &name, 1, &so, &o, r->u, r->i, 1,
                                  1, &coo, &r->rep, &err);
    if (r->st == MFM_OK)
      r->st = mfm_csr_from_coo_inplace(mfm_idmap_size(r->u),
                                       mfm_idmap_size(r->i), &coo, &r->x,
                                       &err);
  }
  if (r->st != MFM_OK) fprintf(stderr, "%s: %s\n", name, err.msg);
}

static int same_map(const mfm_idmap *a, const mfm_idmap *b) {
  if (mfm_idmap_size(a) != mfm_idmap_size(b)) return 0;
  for (int32_t k = 0; k < mfm_idmap_size(a); k++) {
    size_t na, nb;
    const char *sa = mfm_idmap_get(a, k, &na), *sb = mfm_idmap_get(b, k, &nb);
    if (na != nb || memcmp(sa, sb, na) != 0) return 0;
  }
  return 1;
}

static int same(const result *a, const result *b) {
  if (a->st != MFM_OK || b->st != MFM_OK) return 0;
  if (!same_map(a->u, b->u) || !same_map(a->i, b->i)) return 0;
  if (a->rep.rows != b->rep.rows || a->rep.kept != b->rep.kept ||
      a->rep.bad != b->rep.bad || a->rep.blank != b->rep.blank)
    return 0;
  const mfm_csr *x = a->x, *y = b->x;
  if (x->n_rows != y->n_rows || x->n_cols != y->n_cols || x->nnz != y->nnz)
    return 0;
  for (int32_t r = 0; r <= x->n_rows; r++)
    if (x->indptr[r] != y->indptr[r]) return 0;
  for (int64_t k = 0; k < x->nnz; k++)
    if (x->indices[k] != y->indices[k] ||
        memcmp(&x->data[k], &y->data[k], sizeof(float)) != 0)
      return 0;
  return 1;
}

static void fast_vs_general(void) {
  for (int trial = 0; trial < 12; trial++) {
    int bad = trial % 2, wkind = trial / 2 % 3, rows = 50 + trial * 400;
    text plain = {0}, quoted = {0};
    make_rows(1234u + (uint32_t)trial, rows, bad, wkind, &plain, &quoted);
    write_bytes("p.csv", plain.p, plain.n, 0);
    write_bytes("q.csv", quoted.p, quoted.n, 0);
    write_bytes("p.gz", plain.p, plain.n, 1);
    result a, b, c, d;
    read_file(&a, "q.csv", 0, bad, 0);
    read_file(&b, "p.csv", 0, bad, 0);
    CHECK(same(&a, &b));
    result_free(&b);
    read_file(&c, "p.gz", 16, bad, 0); /* rows straddle every read */
    CHECK(same(&a, &c));
    result_free(&c);
    read_file(&d, "p.csv", 0, bad, 1); /* through finish */
    CHECK(same(&a, &d));
    result_free(&d);
    read_file(&d, "p.gz", 16, bad, 1);
    CHECK(same(&a, &d));
    CHECK(a.rep.rows == rows && (bad ? a.rep.bad > 0 : a.rep.bad == 0));
    result_free(&d);
    result_free(&a);
    free(plain.p);
    free(quoted.p);
  }
}

/* Weight of (user u, item i) as ids, or -1. */
static float wt(const result *r, const char *u, const char *i) {
  int32_t a = mfm_idmap_find(r->u, u, strlen(u));
  int32_t b = mfm_idmap_find(r->i, i, strlen(i));
  if (a < 0 || b < 0) return -1;
  for (int64_t p = r->x->indptr[a]; p < r->x->indptr[a + 1]; p++)
    if (r->x->indices[p] == b) return r->x->data[p];
  return -1;
}

/* All ones, then whole weights (bytes), then a fraction (floats): each
   step keeps the earlier weights; -0 and 256 are not bytes. */
static void weight_forms(void) {
  static const char *const texts[] = {
    "a,x,1\nb,y,1\n",
    "a,x,1\nb,y,3\nc,z,255\nb,y,2\n",
    "a,x,1\nb,y,3\nc,z,0.5\nd,x,200\n",
    "a,x,1\nb,y,-0\n",
    "a,x,256\nb,y,7\n",
    "a,x,3\nb,y,1e2\nc,z,2\n"};
  static const float expect[][4] = {{1, 1, -1, -1}, {1, 5, 255, -1},
                                    {1, 3, 0.5f, 200}, {1, 0, -1, -1},
                                    {256, 7, -1, -1}, {3, 100, 2, -1}};
  for (int t = 0; t < 6; t++) {
    write_bytes("w.csv", texts[t], strlen(texts[t]), 0);
    for (int finish = 0; finish < 2; finish++) {
      result r;
      read_file(&r, "w.csv", 0, 0, finish);
      CHECK(r.st == MFM_OK);
      if (r.st != MFM_OK) continue;
      CHECK(wt(&r, "a", "x") == expect[t][0]);
      CHECK(wt(&r, "b", "y") == expect[t][1]);
      CHECK(wt(&r, "c", "z") == expect[t][2]);
      CHECK(wt(&r, "d", "x") == expect[t][3]);
      if (t == 3) {
        float v = wt(&r, "b", "y");
        CHECK(v == 0 && signbit(v)); /* -0 stays -0 */
      }
      result_free(&r);
    }
  }
  /* mfm_reader_coo hands out floats while bytes are kept. */
  mfm_read_opts o = mfm_read_opts_default();
  mfm_idmap *u, *i;
  mfm_reader *rd;
  o.header = 0;
  mfm_idmap_new(&u, NULL);
  mfm_idmap_new(&i, NULL);
  CHECK(mfm_reader_new(&o, u, i, 1, 1, &rd, NULL) == MFM_OK);
  CHECK(mfm_reader_feed_bytes(rd, "1,2,4\n3,4,1\n", 12, "b", NULL) ==
        MFM_OK);
  const mfm_coo *c = mfm_reader_coo(rd);
  CHECK(c && c->n == 2 && c->vals && c->vals[0] == 4 && c->vals[1] == 1);
  CHECK(mfm_reader_feed_bytes(rd, "5,6,9\n", 6, "c", NULL) == MFM_OK);
  c = mfm_reader_coo(rd);
  CHECK(c && c->n == 3 && c->vals[2] == 9);
  mfm_csr *x;
  CHECK(mfm_reader_finish(rd, &x, NULL) == MFM_OK && x->nnz == 3);
  /* A feed after finish gets a fresh line buffer. */
  CHECK(mfm_reader_feed_bytes(rd, "1,2,3\n", 6, "d", NULL) == MFM_OK);
  mfm_csr_free(x);
  mfm_reader_free(rd);
  mfm_idmap_free(u);
  mfm_idmap_free(i);
}

/* Rows sorted by row with a sorted tail (the merge), and with two
   breaks (the radix passes), against mfm_csr_from_coo. */
static void tail_merge(void) {
  uint32_t x = 99;
  for (int trial = 0; trial < 8; trial++) {
    int32_t nr = 50 + (int32_t)(rnd(&x) % 3000), nc = 1 + trial * 40;
    int64_t nnz = 1000 + (int64_t)(rnd(&x) % 20000);
    int64_t cut = nnz - nnz / (trial < 4 ? 9 : 20); /* tail <= nnz / 8 */
    mfm_coo c = {0, 0, NULL, NULL, NULL};
    for (int64_t k = 0; k < nnz; k++) {
      int32_t r = k < cut ? (int32_t)(k * nr / cut)
                          : (int32_t)((k - cut) * nr / (nnz - cut) / 2);
      if (trial == 7 && k == cut / 2) r = 0; /* a second break */
      mfm_coo_push(&c, r, (int32_t)(rnd(&x) % (uint32_t)nc),
                   (float)(1 + rnd(&x) % 4) * 0.25f);
    }
    if (trial % 2) {
      mfm_free(c.vals);
      c.vals = NULL;
    }
    mfm_csr *a, *b;
    CHECK(mfm_csr_from_coo(nr, nc, c.n, c.rows, c.cols, c.vals, &a, NULL) ==
          MFM_OK);
    CHECK(mfm_csr_from_coo_inplace(nr, nc, &c, &b, NULL) == MFM_OK);
    int ok = a->nnz == b->nnz;
    for (int32_t r = 0; ok && r <= nr; r++) ok = a->indptr[r] == b->indptr[r];
    for (int64_t k = 0; ok && k < a->nnz; k++)
      ok = a->indices[k] == b->indices[k] && a->data[k] == b->data[k];
    CHECK(ok);
    mfm_csr_free(a);
    mfm_csr_free(b);
  }
}

/* The direct cache proves an integer id new only while it knows every
   integer id of the map: maps filled before the reader, changed between
   feeds, or holding an id the cache could not take yet must still give
   each id one index. */
static void cache_and_shared_maps(void) {
  mfm_read_opts o = mfm_read_opts_default();
  mfm_idmap *u, *i;
  mfm_reader *rd;
  mfm_csr *x;
  int32_t k;
  o.header = 0;
  /* Filled before. */
  mfm_idmap_new(&u, NULL);
  mfm_idmap_new(&i, NULL);
  mfm_idmap_intern(u, "5", 1, &k, NULL);
  mfm_idmap_intern(u, "9", 1, &k, NULL);
  mfm_idmap_intern(u, "abc", 3, &k, NULL);
  mfm_idmap_intern(i, "1", 1, &k, NULL);
  CHECK(mfm_reader_new(&o, u, i, 1, 1, &rd, NULL) == MFM_OK);
  CHECK(mfm_reader_feed_bytes(rd, "5,1,1\n9,2,1\n6,1,1\n5,2,1\n", 24, "a",
                              NULL) == MFM_OK);
  CHECK(mfm_idmap_size(u) == 4 && mfm_idmap_size(i) == 2);
  CHECK(mfm_idmap_find(u, "5", 1) == 0 && mfm_idmap_find(u, "6", 1) == 3);
  CHECK(mfm_reader_finish(rd, &x, NULL) == MFM_OK && x->nnz == 4);
  mfm_csr_free(x);
  mfm_reader_free(rd);
  mfm_idmap_free(u);
  mfm_idmap_free(i);

  /* Changed between feeds. */
  mfm_idmap_new(&u, NULL);
  mfm_idmap_new(&i, NULL);
  CHECK(mfm_reader_new(&o, u, i, 1, 1, &rd, NULL) == MFM_OK);
  CHECK(mfm_reader_feed_bytes(rd, "1,1,1\n2,2,1\n", 12, "a", NULL) ==
        MFM_OK);
  mfm_idmap_intern(u, "7", 1, &k, NULL);
  mfm_idmap_intern(i, "3", 1, &k, NULL);
  /* (a document's first row goes the general way: 7 comes second) */
  CHECK(mfm_reader_feed_bytes(rd, "8,3,1\n7,3,1\n", 12, "b", NULL) ==
        MFM_OK);
  CHECK(mfm_idmap_size(u) == 4 && mfm_idmap_find(u, "7", 1) == 2);
  CHECK(mfm_idmap_size(i) == 3);
  CHECK(mfm_reader_finish(rd, &x, NULL) == MFM_OK && x->nnz == 4);
  CHECK(x->indptr[3] - x->indptr[2] == 1 && x->indices[x->indptr[2]] == 2);
  mfm_csr_free(x);
  mfm_reader_free(rd);
  mfm_idmap_free(u);
  mfm_idmap_free(i);

  /* 300000 is too big for the cache at first; once the cache covers it,
     it must be found in the map, not added again. */
  text t = {0};
  char row[64];
  puts_(&t, "300000,1,1\n");
  for (int v = 1; v <= 12000; v++) {
    sprintf(row, "%d,1,1\n", v);
    puts_(&t, row);
  }
  puts_(&t, "262145,1,1\n300000,2,1\n");
  mfm_idmap_new(&u, NULL);
  mfm_idmap_new(&i, NULL);
  CHECK(mfm_reader_new(&o, u, i, 1, 1, &rd, NULL) == MFM_OK);
  CHECK(mfm_reader_feed_bytes(rd, t.p, t.n, "c", NULL) == MFM_OK);
  CHECK(mfm_idmap_size(u) == 12002);
  CHECK(mfm_idmap_find(u, "300000", 6) == 0);
  CHECK(mfm_reader_finish(rd, &x, NULL) == MFM_OK);
  CHECK(x->indptr[1] - x->indptr[0] == 2); /* items 1 and 2 of 300000 */
  mfm_csr_free(x);
  mfm_reader_free(rd);
  mfm_idmap_free(u);
  mfm_idmap_free(i);
  free(t.p);
}

int main(void) {
  const char *base = getenv("MFM_TEST_TMP");
  snprintf(tmpdir, sizeof tmpdir, "%s/reader_fast-%d", base ? base : "/tmp",
           (int)getpid());
  mkdir(base ? base : "/tmp", 0755);
  if (mkdir(tmpdir, 0755) != 0 && errno != EEXIST) {
    perror(tmpdir);
    return 2;
  }
  fast_vs_general();
  weight_forms();
  tail_merge();
  cache_and_shared_maps();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  DONE("reader_fast");
}
