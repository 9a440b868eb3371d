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

/* The hash as first written (a byte loop for the tail): the word-load
   tail must give the same values, ids being hashed in many places. */
static uint64_t hash_ref(const unsigned char *s, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)len * 0xff51afd7ed558ccdull);
  while (len >= 8) {
    uint64_t w = 0;
    for (int k = 0; k < 8; k++) w |= (uint64_t)s[k] << (8 * k);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    s += 8;
    len -= 8;
  }
  if (len) {
    uint64_t w = 0;
    for (size_t k = 0; k < len; k++) w |= (uint64_t)s[k] << (8 * k);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 32;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static void hash_tails(void) {
  unsigned char buf[64];
  uint32_t x = 12345;
  int bad = 0;
  for (int rep = 0; rep < 200; rep++) {
    for (size_t k = 0; k < sizeof buf; k++) {
      x = x * 1103515245u + 12345u;
      buf[k] = (unsigned char)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
      for (size_t len = 0; len + off <= 40; len++)
        bad += mfm_hash_bytes(buf + off, len) != hash_ref(buf + off, len);
  }
  CHECK(bad == 0);
}

/* Ids whose hashes share the tag bits of the home slot pile up in one
   probe run; they must all stay apart, through growth too. */
static void collisions(void) {
  mfm_idmap *m;
  char id[32];
  int32_t k;
  int n = 0, ok = 1;
  CHECK(mfm_idmap_new(&m, NULL) == MFM_OK);
  for (int c = 0; n < 3000 && c < 5000000; c++) {
    int len = sprintf(id, "c%d", c);
    if (((mfm_hash_bytes(id, (size_t)len) >> 32) & 1023) != 7) continue;
    ok &= mfm_idmap_intern(m, id, (size_t)len, &k, NULL) == MFM_OK && k == n;
    n++;
  }
  CHECK(ok && n == 3000 && mfm_idmap_size(m) == 3000);
  for (int c = 0, j = 0; j < n; c++) {
    int len = sprintf(id, "c%d", c);
    if (((mfm_hash_bytes(id, (size_t)len) >> 32) & 1023) != 7) continue;
    ok &= mfm_idmap_find(m, id, (size_t)len) == j++;
  }
  CHECK(ok);
  CHECK(mfm_idmap_find(m, "c-1", 3) == -1);
  mfm_idmap_free(m);
}

/* Ids appended as new get their slots later, 64 at a time: every
   lookup still sees them, through growth, and interning them again finds
   them. */
static void append_new(void) {
  mfm_idmap *m;
  char id[32];
  int32_t k;
  int ok = 1;
  CHECK(mfm_idmap_new(&m, NULL) == MFM_OK);
  for (int v = 0; v < 5000; v++) {
    int len = sprintf(id, "%d", v * 3);
    ok &= mfm_idmap_append_new(m, id, (size_t)len, &k, NULL) == MFM_OK &&
          k == v;
    if (v % 97 == 0) /* a lookup settles the pending slots */
      ok &= mfm_idmap_find(m, id, (size_t)len) == v &&
            mfm_idmap_find(m, "x", 1) == -1;
  }
  CHECK(ok);
  for (int v = 0; v < 5000; v++) {
    int len = sprintf(id, "%d", v * 3);
    ok &= mfm_idmap_intern(m, id, (size_t)len, &k, NULL) == MFM_OK && k == v;
  }
  CHECK(ok && mfm_idmap_size(m) == 5000);
  mfm_idmap_settle(m);
  mfm_idmap *c;
  CHECK(mfm_idmap_clone(m, &c, NULL) == MFM_OK); /* no repeats in the view */
  CHECK(mfm_idmap_find(c, "14997", 5) == 4999);
  mfm_idmap_free(c);
  mfm_idmap_free(m);
}

int main(void) {
  basics();
  many();
  bad_views();
  faults();
  hash_tails();
  collisions();
  append_new();
  DONE("idmap");
}
