/* Combining reads of several hosts (moonfm/merge.h): id maps merged in
   rank order and interactions remapped and summed must give what one host
   reading every host's rows in rank order gets; the row slice used for
   split evaluation; bad views; fault injection. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "moonfm/mfm.h"

#define HOSTS 3
#define ROWS 400

/* Host h's r-th row: a user and an item id (overlapping between hosts)
   and a weight. */
static void row(int h, int r, char *u, char *i, float *w) {
  unsigned x = (unsigned)(h * 7919 + r * 104729) * 2654435761u;
  sprintf(u, "u%u", (x >> 8) % 97);
  sprintf(i, "i%u", (x >> 16) % (h == 2 ? 31 : 53));
  *w = (float)(1 + (x >> 24) % 5);
}

/* Reads rows into fresh maps (or the given ones) and a CSR, as a host's
   reader would: ids in first-seen order, duplicates summed. */
static mfm_csr *read_rows(int h_from, int h_to, mfm_idmap *users,
                          mfm_idmap *items) {
  static int32_t rr[HOSTS * ROWS], cc[HOSTS * ROWS];
  static float ww[HOSTS * ROWS];
  int64_t n = 0;
  char u[32], i[32];
  for (int h = h_from; h < h_to; h++)
    for (int r = 0; r < ROWS; r++) {
      row(h, r, u, i, &ww[n]);
      mfm_idmap_intern(users, u, strlen(u), &rr[n], NULL);
      mfm_idmap_intern(items, i, strlen(i), &cc[n], NULL);
      n++;
    }
  mfm_csr *x = NULL;
  CHECK(mfm_csr_from_coo(mfm_idmap_size(users), mfm_idmap_size(items), n,
                         rr, cc, ww, &x, NULL) == MFM_OK);
  return x;
}

static int same_csr(const mfm_csr *a, const mfm_csr *b) {
  if (a->n_rows != b->n_rows || a->n_cols != b->n_cols || a->nnz != b->nnz)
    return 0;
  for (int32_t r = 0; r <= a->n_rows; r++)
    if (a->indptr[r] != b->indptr[r]) return 0;
  for (int64_t q = 0; q < a->nnz; q++)
    if (a->indices[q] != b->indices[q] || a->data[q] != b->data[q]) return 0;
  return 1;
}

static int same_map(const mfm_idmap *a, const mfm_idmap *b) {
  if (mfm_idmap_size(a) != mfm_idmap_size(b)) return 0;
  for (int32_t k = 0; k < mfm_idmap_size(a); k++) {
    size_t la, lb;
    const char *x = mfm_idmap_get(a, k, &la), *y = mfm_idmap_get(b, k, &lb);
    if (la != lb || memcmp(x, y, la) != 0) return 0;
  }
  return 1;
}

/* Every "host" merges every host's view in rank order: the same maps on
   each, and the interactions of one host reading everything. */
static void hosts_agree_with_one_host(void) {
  mfm_idmap *hu[HOSTS], *hi[HOSTS];
  mfm_csr *hx[HOSTS];
  for (int h = 0; h < HOSTS; h++) {
    mfm_idmap_new(&hu[h], NULL);
    mfm_idmap_new(&hi[h], NULL);
    hx[h] = read_rows(h, h + 1, hu[h], hi[h]);
  }
  mfm_idmap *ou, *oi;
  mfm_idmap_new(&ou, NULL);
  mfm_idmap_new(&oi, NULL);
  mfm_csr *one = read_rows(0, HOSTS, ou, oi);
  mfm_idmap *first_u = NULL, *first_i = NULL;
  for (int me = 0; me < HOSTS; me++) {
    mfm_idmap *gu, *gi;
    mfm_idmap_new(&gu, NULL);
    mfm_idmap_new(&gi, NULL);
    static int32_t rm[HOSTS][1000], cm[HOSTS][1000];
    mfm_csr_part parts[HOSTS];
    for (int h = 0; h < HOSTS; h++) {
      const char *b;
      const int64_t *o;
      mfm_idmap_view(hu[h], &b, &o);
      int32_t n = mfm_idmap_size(hu[h]);
      CHECK(mfm_idmap_merge(gu, b, o[n], o, n, rm[h], NULL) == MFM_OK);
      mfm_idmap_view(hi[h], &b, &o);
      n = mfm_idmap_size(hi[h]);
      CHECK(mfm_idmap_merge(gi, b, o[n], o, n, cm[h], NULL) == MFM_OK);
      parts[h] = (mfm_csr_part){hx[h], rm[h], cm[h]};
    }
    CHECK(same_map(gu, ou));
    CHECK(same_map(gi, oi));
    mfm_csr *g = NULL;
    CHECK(mfm_csr_merge(parts, HOSTS, mfm_idmap_size(gu), mfm_idmap_size(gi),
                        0, mfm_idmap_size(gu), 0, 0, &g, NULL) == MFM_OK);
    CHECK(g && same_csr(g, one));
    /* A window: rows [5, 9) or columns [2, 4), nothing else. */
    mfm_csr *w = NULL;
    CHECK(mfm_csr_merge(parts, HOSTS, mfm_idmap_size(gu), mfm_idmap_size(gi),
                        5, 9, 2, 4, &w, NULL) == MFM_OK);
    int64_t want = 0, bad = 0;
    for (int32_t r = 0; r < g->n_rows; r++)
      for (int64_t q = g->indptr[r]; q < g->indptr[r + 1]; q++) {
        int in = (r >= 5 && r < 9) || (g->indices[q] >= 2 &&
                                       g->indices[q] < 4);
        want += in;
        if (in && !mfm_csr_has(w, r, g->indices[q])) bad++;
      }
    CHECK(w && w->nnz == want && bad == 0);
    mfm_csr_free(w);
    mfm_csr_free(g);
    if (me == 0) {
      first_u = gu;
      first_i = gi;
    } else {
      CHECK(same_map(gu, first_u) && same_map(gi, first_i));
      mfm_idmap_free(gu);
      mfm_idmap_free(gi);
    }
  }
  mfm_idmap_free(first_u);
  mfm_idmap_free(first_i);
  for (int h = 0; h < HOSTS; h++) {
    mfm_idmap_free(hu[h]);
    mfm_idmap_free(hi[h]);
    mfm_csr_free(hx[h]);
  }
  mfm_idmap_free(ou);
  mfm_idmap_free(oi);
  mfm_csr_free(one);
}

/* The order is rank 0's ids, then rank 1's new ones; an id on both hosts
   gets one index and its entries are summed. */
static void order_and_sums(void) {
  mfm_idmap *g;
  mfm_idmap_new(&g, NULL);
  const char *b0 = "abc";
  int64_t o0[] = {0, 1, 2, 3};
  const char *b1 = "cd";
  int64_t o1[] = {0, 1, 2};
  int32_t i0[3], i1[2];
  CHECK(mfm_idmap_merge(g, b0, 3, o0, 3, i0, NULL) == MFM_OK);
  CHECK(mfm_idmap_merge(g, b1, 2, o1, 2, i1, NULL) == MFM_OK);
  CHECK(i0[0] == 0 && i0[1] == 1 && i0[2] == 2 && i1[0] == 2 && i1[1] == 3);
  CHECK(mfm_idmap_size(g) == 4);
  /* host 0: c -> item 0 (w 1); host 1: c -> item 0 (w 2), d -> item 0 */
  int32_t r0[] = {2}, c0[] = {0}, r1[] = {0, 1}, c1[] = {0, 0};
  float w0[] = {1}, w1[] = {2, 5};
  mfm_csr *x0, *x1, *m = NULL;
  CHECK(mfm_csr_from_coo(3, 1, 1, r0, c0, w0, &x0, NULL) == MFM_OK);
  CHECK(mfm_csr_from_coo(2, 1, 2, r1, c1, w1, &x1, NULL) == MFM_OK);
  mfm_csr_part parts[] = {{x0, i0, NULL}, {x1, i1, NULL}};
  CHECK(mfm_csr_merge(parts, 2, 4, 1, 0, 4, 0, 0, &m, NULL) == MFM_OK);
  CHECK(m && m->nnz == 2 && m->indptr[3] == 1 && m->data[0] == 3.0f &&
        m->data[1] == 5.0f);
  mfm_csr_free(m);
  /* A map that sends an entry outside the result. */
  mfm_err err;
  int32_t out_of_range[] = {0, 7};
  mfm_csr_part bad[] = {{x1, out_of_range, NULL}};
  CHECK(mfm_csr_merge(bad, 1, 4, 1, 0, 4, 0, 0, &m, &err) == MFM_EINVAL);
  CHECK(m == NULL && strstr(err.msg, "part 1") != NULL);
  /* Bad views. */
  int64_t past[] = {0, 1, 9};
  CHECK(mfm_idmap_merge(g, "ab", 2, past, 2, NULL, &err) == MFM_EFORMAT);
  int64_t back[] = {0, 2, 1};
  CHECK(mfm_idmap_merge(g, "ab", 2, back, 2, NULL, &err) == MFM_EFORMAT);
  int64_t none[] = {0};
  CHECK(mfm_idmap_merge(g, "", 0, none, 0, NULL, &err) == MFM_OK);
  mfm_csr_free(x0);
  mfm_csr_free(x1);
  mfm_idmap_free(g);
}

static void slices(void) {
  int32_t r[] = {0, 1, 1, 3, 4}, c[] = {1, 0, 2, 2, 0};
  mfm_csr *x, *s = NULL;
  CHECK(mfm_csr_from_coo(5, 3, 5, r, c, NULL, &x, NULL) == MFM_OK);
  CHECK(mfm_csr_slice_rows(x, 1, 4, &s, NULL) == MFM_OK);
  CHECK(s && s->n_rows == 5 && s->n_cols == 3 && s->nnz == 3);
  CHECK(s->indptr[1] == 0 && s->indptr[2] == 2 && s->indptr[4] == 3 &&
        s->indptr[5] == 3);
  CHECK(mfm_csr_has(s, 3, 2) && !mfm_csr_has(s, 0, 1));
  mfm_csr_free(s);
  CHECK(mfm_csr_slice_rows(x, 2, 2, &s, NULL) == MFM_OK && s->nnz == 0);
  mfm_csr_free(s);
  mfm_err err;
  CHECK(mfm_csr_slice_rows(x, 3, 6, &s, &err) == MFM_EINVAL && s == NULL);
  mfm_csr_free(x);
}

/* Allocation n fails: MFM_ENOMEM, nothing leaks (ASan/valgrind). */
static void faults(void) {
  int32_t r[] = {0, 1, 1}, c[] = {1, 0, 2}, map[] = {1, 0};
  mfm_csr *x;
  CHECK(mfm_csr_from_coo(2, 3, 3, r, c, NULL, &x, NULL) == MFM_OK);
  mfm_csr_part part = {x, map, NULL};
  int failures = 0, finished = 0;
  for (size_t nth = 1; nth < 50 && !finished; nth++) {
    mfm_csr *m = NULL;
    mfm_alloc_fail_at(nth);
    mfm_status st = mfm_csr_merge(&part, 1, 2, 3, 0, 2, 0, 0, &m, NULL);
    mfm_alloc_fail_at(0);
    if (st == MFM_OK) {
      finished = 1;
      CHECK(m->nnz == 3 && mfm_csr_has(m, 1, 1) && mfm_csr_has(m, 0, 2));
    } else {
      CHECK(st == MFM_ENOMEM && m == NULL);
      failures++;
    }
    mfm_csr_free(m);
  }
  CHECK(finished && failures >= 3);
  mfm_csr_free(x);
}

int main(void) {
  hosts_agree_with_one_host();
  order_and_sums();
  slices();
  faults();
  DONE("merge");
}
