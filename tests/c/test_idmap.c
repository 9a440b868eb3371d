/* Id maps against a plain reference: ids "k<n>" mapped in first-seen
   order, round trips through the view, bad views, fault injection. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "moonfm/mfm.h"

static int id_of(int k, char *buf) { return sprintf(buf, "k%d", k * 7919); }

static void basics(void) {
  mfm_idmap *m;
  int32_t k;
  size_t len;
  CHECK(mfm_idmap_new(&m, NULL) == MFM_OK);
  CHECK(mfm_idmap_size(m) == 0);
  CHECK(mfm_idmap_find(m, "a", 1) == -1);
  CHECK(mfm_idmap_find(m, "", 0) == -1);
  CHECK(mfm_idmap_intern(m, "a", 1, &k, NULL) == MFM_OK && k == 0);
  CHECK(mfm_idmap_intern(m, "bb", 2, &k, NULL) == MFM_OK && k == 1);
  CHECK(mfm_idmap_intern(m, "a", 1, &k, NULL) == MFM_OK && k == 0);
  /* Bytes, not C strings: NUL inside and a prefix are different ids. */
  CHECK(mfm_idmap_intern(m, "b\0b", 3, &k, NULL) == MFM_OK && k == 2);
  CHECK(mfm_idmap_intern(m, "b", 1, &k, NULL) == MFM_OK && k == 3);
  CHECK(mfm_idmap_intern(m, "", 0, &k, NULL) == MFM_OK && k == 4);
  CHECK(mfm_idmap_find(m, "", 0) == 4);
  CHECK(mfm_idmap_find(m, "bb", 2) == 1);
  CHECK(mfm_idmap_find(m, "bbb", 3) == -1);
  const char *s = mfm_idmap_get(m, 2, &len);
  CHECK(len == 3 && memcmp(s, "b\0b", 3) == 0);
  CHECK(mfm_idmap_size(m) == 5);
  CHECK(mfm_idmap_memory(m) > 0);
  /* 20-digit integers and long ids are plain bytes too. */
  CHECK(mfm_idmap_intern(m, "18446744073709551617", 20, &k, NULL) == MFM_OK);
  CHECK(k == 5 && mfm_idmap_find(m, "18446744073709551617", 20) == 5);
  char big[5000];
  memset(big, 'x', sizeof big);
  CHECK(mfm_idmap_intern(m, big, sizeof big, &k, NULL) == MFM_OK && k == 6);
  CHECK(mfm_idmap_find(m, big, sizeof big - 1) == -1);
  CHECK(mfm_idmap_find(m, big, sizeof big) == 6);
  mfm_idmap_free(m);
  mfm_idmap_free(NULL);
}

static void many(void) {
  enum { N = 200000 };
  mfm_idmap *m;
  char buf[32];
  int32_t k;
  int ok = 1;
  CHECK(mfm_idmap_new(&m, NULL) == MFM_OK);
  /* Each id twice, interleaved: indices are first-seen order. */
  for (int i = 0; i < N; i++) {
    int n = id_of(i, buf);
    if (mfm_idmap_intern(m, buf, (size_t)n, &k, NULL) != MFM_OK || k != i)
      ok = 0;
    if (i >= 3) {
      n = id_of(i - 3, buf);
      if (mfm_idmap_intern(m, buf, (size_t)n, &k, NULL) != MFM_OK ||
          k != i - 3)
        ok = 0;
    }
  }
  CHECK(ok);
  CHECK(mfm_idmap_size(m) == N);
  ok = 1;
  for (int i = 0; i < N; i++) {
    int n = id_of(i, buf);
    size_t len;
    const char *s = mfm_idmap_get(m, i, &len);
    if (mfm_idmap_find(m, buf, (size_t)n) != i || len != (size_t)n ||
        memcmp(s, buf, len) != 0)
      ok = 0;
  }
  CHECK(ok);
  CHECK(mfm_idmap_find(m, "k1", 2) == -1);

  /* View round trip and clone. */
  const char *bytes;
  const int64_t *off;
  mfm_idmap_view(m, &bytes, &off);
  CHECK(off[0] == 0);
  mfm_idmap *m2, *m3;
  CHECK(mfm_idmap_from_view(bytes, off[N], off, N, &m2, NULL) == MFM_OK);
  CHECK(mfm_idmap_clone(m, &m3, NULL) == MFM_OK);
  ok = 1;
  for (int i = 0; i < N; i += 7) {
    int n = id_of(i, buf);
    if (mfm_idmap_find(m2, buf, (size_t)n) != i) ok = 0;
    if (mfm_idmap_find(m3, buf, (size_t)n) != i) ok = 0;
  }
  CHECK(ok);
  CHECK(mfm_idmap_size(m2) == N && mfm_idmap_size(m3) == N);
  /* The rebuilt map keeps growing. */
  CHECK(mfm_idmap_intern(m2, "new", 3, &k, NULL) == MFM_OK && k == N);
  mfm_idmap_free(m);
  mfm_idmap_free(m2);
  mfm_idmap_free(m3);
}

static void bad_views(void) {
  mfm_idmap *m;
  mfm_err err;
  const char bytes[] = "abcab";
  int64_t dup[] = {0, 2, 3, 5};  /* "ab", "c", "ab" */
  CHECK(mfm_idmap_from_view(bytes, 5, dup, 3, &m, &err) == MFM_EFORMAT);
  CHECK(m == NULL && strstr(err.msg, "repeats") != NULL);
  int64_t down[] = {0, 3, 2};
  CHECK(mfm_idmap_from_view(bytes, 5, down, 2, &m, &err) == MFM_EFORMAT);
  int64_t past[] = {0, 2, 9};
  CHECK(mfm_idmap_from_view(bytes, 5, past, 2, &m, &err) == MFM_EFORMAT);
  int64_t start[] = {1, 2};
  CHECK(mfm_idmap_from_view(bytes, 5, start, 1, &m, &err) == MFM_EFORMAT);
  int64_t empty[] = {0};
  CHECK(mfm_idmap_from_view("", 0, empty, 0, &m, &err) == MFM_OK);
  CHECK(mfm_idmap_size(m) == 0);
  mfm_idmap_free(m);
}

/* Allocation n fails: the call reports MFM_ENOMEM and the map stays
   usable and consistent (ASan/valgrind see no leak). */
static void faults(void) {
  int failures = 0, finished = 0;
  char buf[32];
  for (size_t nth = 1; nth < 200 && !finished; nth++) {
    mfm_idmap *m = NULL, *c = NULL;
    mfm_status st;
    mfm_alloc_fail_at(nth);
    st = mfm_idmap_new(&m, NULL);
    if (st == MFM_OK) {
      int32_t k;
      int i;
      for (i = 0; i < 300; i++) {
        int n = id_of(i, buf);
        st = mfm_idmap_intern(m, buf, (size_t)n, &k, NULL);
        if (st != MFM_OK) break;
      }
      if (st == MFM_OK) st = mfm_idmap_clone(m, &c, NULL);
      /* Whatever happened, what is in the map is right. */
      int ok = 1;
      for (int j = 0; j < mfm_idmap_size(m); j++) {
        int n = id_of(j, buf);
        if (mfm_idmap_find(m, buf, (size_t)n) != j) ok = 0;
      }
      CHECK(ok);
    }
    mfm_alloc_fail_at(0);
    if (st == MFM_OK) finished = 1;
    else if (st == MFM_ENOMEM) failures++;
    else CHECK(!"unexpected status");
    mfm_idmap_free(m);
    mfm_idmap_free(c);
  }
  CHECK(finished);
  CHECK(failures > 5);
}

int main(void) {
  basics();
  many();
  bad_views();
  faults();
  DONE("idmap");
}
