/* The serving core without HTTP: request forms, answers against a plain
   reference (dot products, exclusion, tie rule), every 400/406/415, and
   allocation failures that must answer 500 and leak nothing. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "moonfm/alloc.h"
#include "moonfm/fm.h"
#include "moonfm/mfile.h"
#include "moonfm/serve.h"

#define NU 40
#define NI 300
#define K 7

static float U[NU * K], I[NI * K], UB[NU], IB[NI];
static int64_t seen_ptr[NU + 1];
static int32_t seen_idx[NU * 5];

/* Fold-in stand-in: the mean of the items' vectors, bias 0.25. */
static mfm_status fake_fold(void *ctx, const int32_t *idx, int32_t n,
                            float *rep, float *bias, mfm_err *err) {
  (void)ctx;
  if (n == 0) return mfm_err_set(err, MFM_EINVAL, "needs items");
  for (int d = 0; d < K; d++) {
    double s = 0;
    for (int32_t t = 0; t < n; t++) s += I[idx[t] * K + d];
    rep[d] = (float)(s / n);
  }
  *bias = 0.25f;
  return MFM_OK;
}

static float ref_score(const float *u, float ub, int32_t j) {
  float s = 0;
  for (int d = 0; d < K; d++) s += u[d] * I[j * K + d];
  return s + ub + IB[j];
}

/* Reference top-k of a representation, seen items marked in `ex`. */
static int ref_topk(const float *u, float ub, const uint8_t *ex, int k,
                    int32_t *out) {
  int n = 0;
  uint8_t used[NI] = {0};
  for (; n < k; n++) {
    int best = -1;
    for (int j = 0; j < NI; j++) {
      if (used[j] || (ex && ex[j])) continue;
      if (best < 0 || ref_score(u, ub, j) > ref_score(u, ub, best)) best = j;
    }
    if (best < 0) break;
    used[best] = 1;
    out[n] = best;
  }
  return n;
}

static unsigned rng = 12345;
static float rnd(void) {
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 8) & 0xffff) / 65536.0f - 0.5f;
}

typedef struct fixture {
  mfm_idmap *users, *items;
  mfm_csr seen;
  mfm_serve_model *m;
  mfm_serve_worker *w;
} fixture;

static void setup(fixture *fx) {
  char id[32];
  for (int i = 0; i < NU * K; i++) U[i] = rnd();
  for (int i = 0; i < NI * K; i++) I[i] = rnd();
  for (int i = 0; i < NU; i++) UB[i] = rnd();
  for (int i = 0; i < NI; i++) IB[i] = rnd() * 0.1f;
  mfm_idmap_new(&fx->users, NULL);
  mfm_idmap_new(&fx->items, NULL);
  int32_t x;
  for (int i = 0; i < NU; i++) {
    int n = snprintf(id, sizeof id, "u%d", i);
    mfm_idmap_intern(fx->users, id, (size_t)n, &x, NULL);
  }
  for (int i = 0; i < NI; i++) {
    int n = snprintf(id, sizeof id, i == 7 ? "it\"em\\%d" : "%d", i);
    mfm_idmap_intern(fx->items, id, (size_t)n, &x, NULL);
  }
  int64_t nnz = 0;
  for (int u = 0; u < NU; u++) {
    seen_ptr[u] = nnz;
    for (int t = 0; t < u % 5; t++) seen_idx[nnz++] = (u * 37 + t * 11) % NI;
  }
  seen_ptr[NU] = nnz;
  fx->seen = (mfm_csr){NU, NI, nnz, seen_ptr, seen_idx, NULL};
  mfm_serve_parts p;
  memset(&p, 0, sizeof p);
  p.kind = "test";
  p.factors = (mfm_factors){NU, NI, K, U, I, K, K, UB, IB};
  p.users = fx->users;
  p.items = fx->items;
  p.seen = &fx->seen;
  p.fold_in = fake_fold;
  CHECK(mfm_serve_model_new(&p, &fx->m, NULL) == MFM_OK);
  CHECK(mfm_serve_worker_new(fx->m, &fx->w, NULL) == MFM_OK);
}

static json_t *invoke(fixture *fx, const char *body, const char *ct,
                      const char *accept, int *status, char **text) {
  mfm_serve_reply r;
  mfm_serve_invoke(fx->w, body, strlen(body), ct, accept, NULL, &r);
  *status = r.status;
  json_t *j = NULL;
  if (r.status == 200 && strcmp(r.content_type, "application/json") == 0)
    j = json_loadb(r.body, r.len, 0, NULL);
  if (text) {
    *text = malloc(r.len + 1);
    memcpy(*text, r.body, r.len);
    (*text)[r.len] = 0;
  }
  mfm_free(r.body);
  return j;
}

/* Checks one prediction against the reference top-k of user u. */
static void check_topk(fixture *fx, json_t *p, const float *rep, float ub,
                       const uint8_t *ex, int k) {
  int32_t want[NI];
  int n = ref_topk(rep, ub, ex, k, want);
  json_t *items = json_object_get(p, "items"), *sc = json_object_get(p,
                                                                  "scores");
  CHECK((int)json_array_size(items) == n);
  CHECK((int)json_array_size(sc) == n);
  for (int r = 0; r < n && r < (int)json_array_size(items); r++) {
    size_t len;
    const char *id = mfm_idmap_get(fx->items, want[r], &len);
    const char *got = json_string_value(json_array_get(items, r));
    CHECK(got && strlen(got) == len && memcmp(got, id, len) == 0);
    CHECK_NEAR(json_number_value(json_array_get(sc, r)),
               ref_score(rep, ub, want[r]), 1e-5);
  }
}

static void seen_mask(int u, uint8_t *ex) {
  memset(ex, 0, NI);
  for (int64_t t = seen_ptr[u]; t < seen_ptr[u + 1]; t++) ex[seen_idx[t]] = 1;
}

static void test_forms(fixture *fx) {
  int st;
  uint8_t ex[NI];
  char body[4096];
  /* One user, default k and exclude_seen. */
  json_t *j = invoke(fx, "{\"user\": \"u3\"}", "application/json", NULL, &st,
                     NULL);
  CHECK(st == 200 && j);
  seen_mask(3, ex);
  check_topk(fx, json_array_get(json_object_get(j, "predictions"), 0),
             U + 3 * K, UB[3], ex, 10);
  json_decref(j);
  /* Many users in blocks (more than MFM_SERVE_BLOCK), own k and options. */
  int n = snprintf(body, sizeof body, "{\"k\": 4, \"instances\": [");
  for (int u = 0; u < NU; u++)
    n += snprintf(body + n, sizeof body - n, "%s{\"user\": \"u%d\"%s}",
                  u ? "," : "", u,
                  u % 3 == 0 ? ", \"k\": 6, \"exclude_seen\": false" : "");
  snprintf(body + n, sizeof body - n, "]}");
  j = invoke(fx, body, "application/json; charset=utf-8", "*/*", &st, NULL);
  CHECK(st == 200 && j);
  CHECK((int)json_array_size(json_object_get(j, "predictions")) == NU);
  for (int u = 0; u < NU; u++) {
    seen_mask(u, ex);
    check_topk(fx, json_array_get(json_object_get(j, "predictions"), u),
               U + u * K, UB[u], u % 3 == 0 ? NULL : ex, u % 3 ? 4 : 6);
  }
  json_decref(j);
  /* Integer ids and scoring given items, in the given order. */
  j = invoke(fx, "{\"instances\": [{\"user\": \"u5\", \"items\": [12, 3, "
             "\"it\\\"em\\\\7\"]}]}", "application/json", NULL, &st, NULL);
  CHECK(st == 200 && j);
  json_t *p = json_array_get(json_object_get(j, "predictions"), 0);
  int32_t want[3] = {12, 3, 7};
  for (int r = 0; r < 3; r++)
    CHECK_NEAR(json_number_value(json_array_get(json_object_get(p, "scores"),
                                                r)),
               ref_score(U + 5 * K, UB[5], want[r]), 1e-5);
  CHECK(strcmp(json_string_value(json_array_get(json_object_get(p, "items"),
                                                2)), "it\"em\\7") == 0);
  json_decref(j);
  /* Fold-in: a new user from items; those items are excluded. */
  j = invoke(fx, "{\"interactions\": [\"1\", \"2\", \"250\"], \"k\": 5}",
             "application/json", NULL, &st, NULL);
  CHECK(st == 200 && j);
  float rep[K], b;
  int32_t fi[3] = {1, 2, 250};
  fake_fold(NULL, fi, 3, rep, &b, NULL);
  memset(ex, 0, NI);
  ex[1] = ex[2] = ex[250] = 1;
  check_topk(fx, json_array_get(json_object_get(j, "predictions"), 0), rep, b,
             ex, 5);
  json_decref(j);
  /* JSON lines in and out; CSV in. */
  char *text;
  invoke(fx, "{\"user\": \"u1\", \"k\": 2}\n\n{\"user\": \"u2\", \"k\": 1}\r\n",
         "application/jsonlines", "application/jsonlines", &st, &text);
  CHECK(st == 200);
  char *nl = strchr(text, '\n');
  CHECK(nl && strchr(nl + 1, '\n') && !strchr(strchr(nl + 1, '\n') + 1,
                                               '\n'));
  j = json_loadb(text, (size_t)(nl - text), 0, NULL);
  seen_mask(1, ex);
  check_topk(fx, j, U + 1 * K, UB[1], ex, 2);
  json_decref(j);
  free(text);
  j = invoke(fx, "u4\n\"u6\"\n", "text/csv", "application/json", &st, NULL);
  CHECK(st == 200 && j);
  CHECK(json_array_size(json_object_get(j, "predictions")) == 2);
  seen_mask(6, ex);
  check_topk(fx, json_array_get(json_object_get(j, "predictions"), 1),
             U + 6 * K, UB[6], ex, 10);
  json_decref(j);
  /* text/csv; header=present (RFC 4180): the first line is a header, not
     a user id, with blank lines and CRLF before it too. */
  j = invoke(fx, "\r\nuser\r\nu4\r\nu6", "text/csv; Header=\"present\"",
             "application/json", &st, NULL);
  CHECK(st == 200 && j);
  CHECK(json_array_size(json_object_get(j, "predictions")) == 2);
  check_topk(fx, json_array_get(json_object_get(j, "predictions"), 1),
             U + 6 * K, UB[6], ex, 10);
  json_decref(j);
  /* Without it, that line is a user and an error names it. */
  j = invoke(fx, "user\nu4\n", "text/csv; header=absent", "application/json",
             &st, &text);
  CHECK(st == 400 && strstr(text, "line 1: user: unknown user id 'user'"));
  json_decref(j);
  free(text);
}

static void expect(fixture *fx, const char *body, const char *ct,
                   const char *accept, int status, const char *needle) {
  int st;
  char *text;
  json_t *j = invoke(fx, body, ct, accept, &st, &text);
  json_decref(j);
  CHECK(st == status);
  CHECK(strstr(text, needle) != NULL);
  if (st != status || !strstr(text, needle))
    fprintf(stderr, "  body %s -> %d %s", body, st, text);
  free(text);
}

static void test_errors(fixture *fx) {
  const char *J = "application/json";
  expect(fx, "{}", "text/plain", NULL, 415, "Content-Type");
  expect(fx, "{}", NULL, NULL, 415, "Content-Type");
  expect(fx, "{}", J, "text/html", 406, "Accept");
  expect(fx, "{\"user\": \"nobody\"}", J, NULL, 400, "user: unknown user id "
         "'nobody'");
  expect(fx, "{\"user\": 1.5}", J, NULL, 400, "user: must be");
  expect(fx, "{\"user\": \"u1\", \"k\": 0}", J, NULL, 400, "k: must be");
  expect(fx, "{\"user\": \"u1\", \"k\": \"3\"}", J, NULL, 400, "k: must be");
  expect(fx, "{\"user\": \"u1\", \"k\": 100000}", J, NULL, 400, "k: must be");
  expect(fx, "{\"user\": \"u1\", \"exclude_seen\": 1}", J, NULL, 400,
         "exclude_seen");
  expect(fx, "{\"user\": \"u1\", \"colour\": 1}", J, NULL, 400,
         "colour: unknown field");
  expect(fx, "{\"user\": \"u1\"", J, NULL, 400, "invalid JSON");
  expect(fx, "", J, NULL, 400, "request: the body is empty");
  expect(fx, "[1, 2]", J, NULL, 400, "must be a JSON object");
  expect(fx, "{\"user\": \"u1\", \"user\": \"u2\"}", J, NULL, 400,
         "invalid JSON");
  expect(fx, "{\"instances\": 3}", J, NULL, 400, "instances: must be");
  expect(fx, "{\"instances\": [{\"user\": \"u1\"}, 7]}", J, NULL, 400,
         "instances[1]");
  expect(fx, "{\"instances\": [{\"user\": \"u1\", \"items\": [\"1\", \"x\"]}]}",
         J, NULL, 400, "instances[0].items[1]: unknown item id 'x'");
  expect(fx, "{\"instances\": [], \"kk\": 1}", J, NULL, 400, "kk");
  expect(fx, "{\"interactions\": []}", J, NULL, 400, "interactions: needs");
  expect(fx, "{\"interactions\": [\"nope\"]}", J, NULL, 400,
         "interactions[0]: unknown item id");
  expect(fx, "{\"features\": [\"a\"]}", J, NULL, 400, "cannot represent");
  expect(fx, "{\"k\": 3}", J, NULL, 400, "user: missing");
  expect(fx, "{\"user\": \"u1\"}\nnot json\n", "application/jsonlines", NULL,
         400, "line 2: invalid JSON");
  expect(fx, "u1\nghost\n", "text/csv", NULL, 400, "line 2: user: unknown");
  expect(fx, "\n\n", "text/csv", NULL, 400, "no lines");
  /* Empty instances is a valid, empty answer. */
  expect(fx, "{\"instances\": []}", J, NULL, 200, "{\"predictions\":[]}");
}

/* similar_to: the k items nearest by cosine of the item rows, against a
   plain reference in double; the item itself never among them. */
static void test_similar(fixture *fx) {
  for (int i = 0; i < NI; i += 37) {
    double len[NI], cs[NI];
    for (int j = 0; j < NI; j++) {
      double s = 0;
      for (int d = 0; d < K; d++) s += (double)I[j * K + d] * I[j * K + d];
      len[j] = sqrt(s);
    }
    for (int j = 0; j < NI; j++) {
      double s = 0;
      for (int d = 0; d < K; d++) s += (double)I[i * K + d] * I[j * K + d];
      cs[j] = s / (len[i] * len[j]);
    }
    char body[96];
    snprintf(body, sizeof body, "{\"instances\": [{\"similar_to\": %d, "
             "\"k\": 6}]}", i);
    int st;
    json_t *j = invoke(fx, body, "application/json", NULL, &st, NULL);
    CHECK(st == 200 && j);
    json_t *p = json_array_get(json_object_get(j, "predictions"), 0);
    json_t *items = json_object_get(p, "items"), *sc = json_object_get(p,
                                                                    "scores");
    CHECK(json_array_size(items) == 6 && json_array_size(sc) == 6);
    uint8_t used[NI] = {0};
    used[i] = 1;
    for (size_t r = 0; r < json_array_size(items); r++) {
      int best = -1;
      for (int c = 0; c < NI; c++)
        if (!used[c] && (best < 0 || cs[c] > cs[best])) best = c;
      used[best] = 1;
      char want[16];
      snprintf(want, sizeof want, "%d", best);
      const char *got = json_string_value(json_array_get(items, r));
      CHECK(got && strcmp(got, want) == 0);
      CHECK_NEAR(json_number_value(json_array_get(sc, r)), cs[best], 1e-5);
    }
    json_decref(j);
  }
  const char *J = "application/json";
  expect(fx, "{\"similar_to\": \"nope\"}", J, NULL, 400,
         "similar_to: unknown item id 'nope'");
  expect(fx, "{\"similar_to\": \"3\", \"user\": \"u1\"}", J, NULL, 400,
         "similar_to: give it alone");
  expect(fx, "{\"similar_to\": [3]}", J, NULL, 400,
         "similar_to: must be a string or an integer");
  expect(fx, "{\"similar_to\": \"3\", \"k\": 2}", "application/jsonlines",
         NULL, 200, "\"items\":[");
}

static void test_faults(fixture *fx) {
  const char *body = "{\"instances\": [{\"user\": \"u1\"}, {\"interactions\": "
                     "[\"1\"]}, {\"user\": \"u2\", \"items\": [\"5\"]}]}";
  int ok = 0;
  for (size_t nth = 1; nth < 200 && !ok; nth++) {
    mfm_serve_worker *w;
    if (mfm_serve_worker_new(fx->m, &w, NULL) != MFM_OK) {
      CHECK(0);
      return;
    }
    mfm_serve_reply r;
    mfm_alloc_fail_at(nth);
    mfm_status st = mfm_serve_invoke(w, body, strlen(body),
                                     "application/json", NULL, NULL, &r);
    size_t made = mfm_alloc_fail_at(0);
    if (st == MFM_OK) {
      CHECK(r.status == 200);
      if (r.status != 200)
        fprintf(stderr, "  fail at %zu: %d %.*s", nth, r.status, (int)r.len,
                r.body ? r.body : "");
      ok = made < nth;
    } else {
      CHECK(st == MFM_ENOMEM && r.status == 500);
    }
    mfm_free(r.body);
    mfm_serve_worker_free(w);
  }
  CHECK(ok);
  /* Worker creation under failure. */
  for (size_t nth = 1; nth < 8; nth++) {
    mfm_serve_worker *w = NULL;
    mfm_alloc_fail_at(nth);
    mfm_status st = mfm_serve_worker_new(fx->m, &w, NULL);
    mfm_alloc_fail_at(0);
    CHECK(st == MFM_OK || (st == MFM_ENOMEM && w == NULL));
    mfm_serve_worker_free(w);
  }
}

static void test_media(void) {
  CHECK(mfm_serve_content_type("Application/JSON ; charset=UTF-8") ==
        MFM_SERVE_JSON);
  CHECK(mfm_serve_content_type("application/jsonlines") ==
        MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_content_type("text/csv") == MFM_SERVE_CSV);
  CHECK(mfm_serve_content_type("application/x-recordio-protobuf") == 0);
  CHECK(mfm_serve_accept(NULL, MFM_SERVE_JSON) == MFM_SERVE_JSON);
  CHECK(mfm_serve_accept("", MFM_SERVE_JSONLINES) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("text/html, application/jsonlines;q=0.9",
                         MFM_SERVE_JSON) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("*/*", MFM_SERVE_JSONLINES) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("text/csv", MFM_SERVE_JSON) == 0);
  /* q values: the higher wins wherever it is listed, q=0 refuses. */
  CHECK(mfm_serve_accept("application/jsonlines;q=0.5, application/json",
                         MFM_SERVE_JSON) == MFM_SERVE_JSON);
  CHECK(mfm_serve_accept("application/json;q=0, application/jsonlines",
                         MFM_SERVE_JSON) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("application/json; q=0", MFM_SERVE_JSON) == 0);
  CHECK(mfm_serve_accept("application/json;q=0, */*", MFM_SERVE_JSON) ==
        MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("application/json, text/plain;q=0.9, */*;q=0.8",
                         MFM_SERVE_JSONLINES) == MFM_SERVE_JSON);
  CHECK(mfm_serve_accept("*/*;q=0.1, application/jsonlines",
                         MFM_SERVE_JSON) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("*/*, application/jsonlines", MFM_SERVE_JSON) ==
        MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("application/jsonlines;q=0.9, application/json;"
                         "q=0.9", MFM_SERVE_JSON) == MFM_SERVE_JSONLINES);
  CHECK(mfm_serve_accept("text/csv;q=1, application/json;q=0.001",
                         MFM_SERVE_JSONLINES) == MFM_SERVE_JSON);
  CHECK(mfm_serve_accept("*/*;q=0", MFM_SERVE_JSON) == 0);
}

/* ---- a hybrid fm model file, served and compared with the fm model ---- */

static void add_arr(mfm_array *a, int *n, const char *name, mfm_dtype t,
                    int64_t rows, const void *data) {
  memset(&a[*n], 0, sizeof a[*n]);
  snprintf(a[*n].name, sizeof a[*n].name, "%s", name);
  a[*n].dtype = t;
  a[*n].rows = rows;
  a[*n].cols = 1;
  a[*n].data = (void *)data;
  (*n)++;
}

static void add_map(mfm_array *a, int *n, const char *prefix,
                    mfm_idmap *m) {
  const char *b;
  const int64_t *o;
  char name[48];
  mfm_idmap_view(m, &b, &o);
  int32_t sz = mfm_idmap_size(m);
  snprintf(name, sizeof name, "%s.ids", prefix);
  add_arr(a, n, name, MFM_U8, o[sz], b);
  snprintf(name, sizeof name, "%s.offsets", prefix);
  add_arr(a, n, name, MFM_I64, sz + 1, o);
}

static mfm_idmap *names_map(const char *fmt, int n) {
  mfm_idmap *m;
  mfm_idmap_new(&m, NULL);
  for (int i = 0; i < n; i++) {
    char id[16];
    int32_t x;
    int l = snprintf(id, sizeof id, fmt, i);
    mfm_idmap_intern(m, id, (size_t)l, &x, NULL);
  }
  return m;
}

/* Scores of the answer `body` (one instance scoring items i0..i7). */
static int served_scores(mfm_serve_worker *w, const char *body, float *out) {
  mfm_serve_reply r;
  mfm_serve_invoke(w, body, strlen(body), "application/json", NULL, NULL,
                   &r);
  int ok = r.status == 200;
  if (!ok) fprintf(stderr, "  %d %.*s\n", r.status, (int)r.len, r.body);
  json_t *j = ok ? json_loadb(r.body, r.len, 0, NULL) : NULL;
  json_t *sc = json_object_get(
      json_array_get(json_object_get(j, "predictions"), 0), "scores");
  for (size_t i = 0; i < json_array_size(sc); i++)
    out[i] = (float)json_number_value(json_array_get(sc, i));
  ok = ok && json_array_size(sc) == 8;
  json_decref(j);
  mfm_free(r.body);
  return ok;
}

static void test_load_hybrid(void) {
  enum { HU = 6, HI = 8, HUF = 3, HIF = 2, HK = 4 };
  mfm_fm_params fp = mfm_fm_params_default();
  fp.factors = HK;
  fp.seed = 7;
  fp.threads = 1;
  fp.user_identity = 1;
  fp.item_identity = 0; /* items are their features only */
  mfm_fm *fm;
  CHECK(mfm_fm_new(HU, HI, HUF, HIF, &fp, &fm, NULL) == MFM_OK);
  /* users 0..4 have features (user 5 none); every item has one or two */
  int64_t up[HU] = {0, 1, 3, 4, 5, 6};
  int32_t ux[6] = {0, 1, 2, 0, 2, 1};
  float ud[6] = {1, 1, 2, 1, 1, 1};
  mfm_csr uf = {5, HUF, 6, up, ux, ud};
  int64_t ip[HI + 1] = {0, 1, 2, 4, 5, 6, 8, 9, 10};
  int32_t ix[10] = {0, 1, 0, 1, 0, 1, 0, 1, 1, 0};
  float id_[10] = {1, 1, 1, 1, 1, 1, 1, 3, 1, 1};
  mfm_csr itf = {HI, HIF, 10, ip, ix, id_};
  CHECK(mfm_fm_set_user_features(fm, &uf, NULL) == MFM_OK);
  CHECK(mfm_fm_set_item_features(fm, &itf, NULL) == MFM_OK);
  int64_t tp[HU + 1] = {0, 2, 3, 5, 6, 7, 8};
  int32_t tx[8] = {1, 4, 2, 0, 6, 3, 5, 7};
  float td[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  mfm_csr tr = {HU, HI, 8, tp, tx, td};
  CHECK(mfm_fm_fit(fm, &tr, NULL, 3, 1, NULL, NULL) == MFM_OK);
  mfm_idmap *users = names_map("u%d", HU), *items = names_map("i%d", HI);
  mfm_idmap *fnames = names_map("f%d", HUF);
  mfm_array a[40];
  int n = mfm_fm_arrays(fm, a, 20);
  add_map(a, &n, "users", users);
  add_map(a, &n, "items", items);
  add_map(a, &n, "user_feature_names", fnames);
  add_arr(a, &n, "seen.indptr", MFM_I64, HU + 1, tp);
  add_arr(a, &n, "seen.indices", MFM_I32, 8, tx);
  add_arr(a, &n, "user_features.indptr", MFM_I64, 6, up);
  add_arr(a, &n, "user_features.indices", MFM_I32, 6, ux);
  add_arr(a, &n, "user_features.data", MFM_F32, 6, ud);
  add_arr(a, &n, "item_features.indptr", MFM_I64, HI + 1, ip);
  add_arr(a, &n, "item_features.indices", MFM_I32, 10, ix);
  add_arr(a, &n, "item_features.data", MFM_F32, 10, id_);
  const char *hdr = "{\"kind\":\"fm\",\"n_users\":6,\"n_items\":8,"
                    "\"n_user_features\":3,\"n_item_features\":2,"
                    "\"factors\":4,\"params\":{\"factors\":4,\"seed\":7,"
                    "\"loss\":\"warp\",\"user_identity\":true,"
                    "\"item_identity\":false,\"normalize\":true,"
                    "\"score_item_bias\":true}}";
  const char *tmp = getenv("MFM_TEST_TMP");
  char dir[512], path[600], cmd[700];
  snprintf(dir, sizeof dir, "%s/serve-hybrid", tmp ? tmp : "/tmp");
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
  CHECK(system(cmd) == 0);
  snprintf(path, sizeof path, "%s/model.moonfm", dir);
  CHECK(mfm_mfile_write(path, 0, hdr, strlen(hdr), a, n, NULL) == MFM_OK);

  mfm_serve_model *m = NULL;
  mfm_err err;
  mfm_status st = mfm_serve_model_load(dir, &m, &err);
  CHECK(st == MFM_OK);
  if (st != MFM_OK) {
    fprintf(stderr, "  %s\n", err.msg);
    goto out;
  }
  mfm_serve_info info;
  mfm_serve_model_info(m, &info);
  CHECK(info.n_users == HU && info.n_items == HI && info.factors == HK);
  CHECK(info.fold_in && info.features && info.n_seen == 8);
  mfm_serve_worker *w;
  CHECK(mfm_serve_worker_new(m, &w, NULL) == MFM_OK);
  const char *all = "\"items\": [\"i0\",\"i1\",\"i2\",\"i3\",\"i4\",\"i5\","
                    "\"i6\",\"i7\"]";
  int32_t it[HI] = {0, 1, 2, 3, 4, 5, 6, 7};
  float got[HI], want[HI], rep[HK], b;
  char body[256];
  /* known users: their representations from identity + features */
  for (int32_t u = 0; u < HU; u++) {
    int32_t us[HI];
    for (int q = 0; q < HI; q++) us[q] = u;
    snprintf(body, sizeof body, "{\"user\": \"u%d\", %s}", (int)u, all);
    CHECK(served_scores(w, body, got));
    mfm_fm_score(fm, HI, us, it, want, NULL);
    for (int q = 0; q < HI; q++) CHECK_NEAR(got[q], want[q], 1e-5);
  }
  /* a feature user, weights normalised */
  int32_t fs[2] = {2, 0};
  mfm_fm_user_from_features(fm, 2, fs, NULL, rep, &b, NULL);
  mfm_fm_score_rep(fm, rep, b, HI, it, want, NULL);
  snprintf(body, sizeof body, "{\"features\": [\"f2\", \"f0\"], %s}", all);
  CHECK(served_scores(w, body, got));
  for (int q = 0; q < HI; q++) CHECK_NEAR(got[q], want[q], 1e-5);
  /* a folded-in user: the fm's own fold-in with its defaults */
  int32_t fi[3] = {3, 6, 1};
  mfm_fm_fold_in(fm, 3, fi, NULL, NULL, rep, &b, NULL);
  mfm_fm_score_rep(fm, rep, b, HI, it, want, NULL);
  snprintf(body, sizeof body, "{\"interactions\": [\"i3\", \"i6\", \"i1\"], "
           "%s}", all);
  CHECK(served_scores(w, body, got));
  for (int q = 0; q < HI; q++) CHECK_NEAR(got[q], want[q], 1e-5);
  mfm_serve_worker_free(w);
  mfm_serve_model_free(m);
  /* loading under allocation failure: ENOMEM or success, nothing else */
  int loaded = 0;
  for (size_t nth = 1; nth < 400 && !loaded; nth++) {
    m = NULL;
    mfm_alloc_fail_at(nth);
    st = mfm_serve_model_load(dir, &m, &err);
    size_t made = mfm_alloc_fail_at(0);
    CHECK(st == MFM_OK || (st == MFM_ENOMEM && !m));
    if (st != MFM_OK && st != MFM_ENOMEM)
      fprintf(stderr, "  fail at %zu: %s\n", nth, err.msg);
    loaded = st == MFM_OK && made < nth;
    mfm_serve_model_free(m);
  }
  CHECK(loaded);
  /* without the feature matrices the model is refused, naming them */
  n -= 6;
  CHECK(mfm_mfile_write(path, 0, hdr, strlen(hdr), a, n, NULL) == MFM_OK);
  CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EFORMAT && !m);
  CHECK(strstr(err.msg, "user_features.indptr") != NULL);
  /* a damaged id map: its reason, said once (the message was its own
     argument and came out repeated and empty) */
  n += 6;
  for (int q = 0; q < n; q++) {
    if (strcmp(a[q].name, "users.offsets") != 0) continue;
    int64_t off[HU + 1];
    memcpy(off, a[q].data, sizeof off);
    off[1] = 100;
    a[q].data = off;
    CHECK(mfm_mfile_write(path, 0, hdr, strlen(hdr), a, n, NULL) == MFM_OK);
    CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EFORMAT && !m);
    const char *at = strstr(err.msg, "id map users: ");
    CHECK(at && !strstr(at + 1, "id map users: ") &&
          strstr(at, "offset 1 (100) is out of order"));
  }
out:
  mfm_idmap_free(users);
  mfm_idmap_free(items);
  mfm_idmap_free(fnames);
  mfm_fm_free(fm);
}

static void test_load_errors(void) {
  mfm_serve_model *m = NULL;
  mfm_err err;
  const char *tmp = getenv("MFM_TEST_TMP");
  char dir[512];
  snprintf(dir, sizeof dir, "%s/serve-empty", tmp ? tmp : "/tmp");
  char cmd[1100];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
  CHECK(system(cmd) == 0);
  CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EIO && !m);
  CHECK(strstr(err.msg, "no model file") != NULL);
  CHECK(strstr(err.msg, "it is empty") != NULL);
  /* What is there instead is named: an archive not unpacked, a model
     one folder down, any other entry. */
  snprintf(cmd, sizeof cmd, "cd '%s' && mkdir -p run1 && touch notes.txt",
           dir);
  CHECK(system(cmd) == 0);
  CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EIO && !m);
  CHECK(strstr(err.msg, "it holds e.g. ") != NULL);
  snprintf(cmd, sizeof cmd, "touch '%s/run1/model.moonfm'", dir);
  CHECK(system(cmd) == 0);
  CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EIO && !m);
  CHECK(strstr(err.msg, "but one in run1/") != NULL);
  snprintf(cmd, sizeof cmd, "touch '%s/model.tar.gz'", dir);
  CHECK(system(cmd) == 0);
  CHECK(mfm_serve_model_load(dir, &m, &err) == MFM_EIO && !m);
  CHECK(strstr(err.msg, "tar -xzf model.tar.gz") != NULL);
  /* The only *.moonfm is the model, whatever else the folder holds (an
     empty file here, so the load fails on it). */
  snprintf(cmd, sizeof cmd, "touch '%s/zz.moonfm'", dir);
  CHECK(system(cmd) == 0);
  CHECK(mfm_serve_model_load(dir, &m, &err) != MFM_OK && !m);
  CHECK(strstr(err.msg, "zz.moonfm") != NULL);
  CHECK(mfm_serve_model_load("/nonexistent/model", &m, &err) == MFM_EIO);
}

int main(void) {
  fixture fx;
  memset(&fx, 0, sizeof fx);
  setup(&fx);
  test_media();
  test_forms(&fx);
  test_errors(&fx);
  test_similar(&fx);
  test_faults(&fx);
  test_load_errors();
  test_load_hybrid();
  mfm_serve_worker_free(fx.w);
  mfm_serve_model_free(fx.m);
  mfm_idmap_free(fx.users);
  mfm_idmap_free(fx.items);
  DONE("serve");
}
