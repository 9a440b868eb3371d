/* libFuzzer target: the request decoder of the server (mfm_serve_invoke)
   on a tiny in-memory model (users u1..u3, items i1..i5, k = 2, seen
   items).  The first byte picks the Content-Type and the Accept. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "moonfm/alloc.h"
#include "moonfm/csr.h"
#include "moonfm/idmap.h"
#include "moonfm/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mfm_serve_worker *worker;

static void setup(void) {
  static const float uf[6] = {1, 0, 0, 1, 1, 1};
  static const float itf[10] = {1, 0, 0.5f, 0.5f, 0, 1, 2, 0, 0, 2};
  static const int32_t rows[3] = {0, 2, 2}, cols[3] = {3, 0, 4};
  static const char *uid[3] = {"u1", "u2", "u3"};
  static const char *iid[5] = {"i1", "i2", "i3", "i4", "i5"};
  mfm_idmap *users, *items;
  mfm_csr *seen;
  mfm_serve_parts p = {0};
  mfm_serve_model *m;
  mfm_err err;
  int32_t ix;
  int i;
  if (mfm_idmap_new(&users, &err) || mfm_idmap_new(&items, &err)) abort();
  for (i = 0; i < 3; i++)
    if (mfm_idmap_intern(users, uid[i], 2, &ix, &err)) abort();
  for (i = 0; i < 5; i++)
    if (mfm_idmap_intern(items, iid[i], 2, &ix, &err)) abort();
  if (mfm_csr_from_coo(3, 5, 3, rows, cols, NULL, &seen, &err)) abort();
  p.kind = "als";
  p.factors.n_users = 3;
  p.factors.n_items = 5;
  p.factors.k = 2;
  p.factors.user = uf;
  p.factors.item = itf;
  p.factors.ld_user = 2;
  p.factors.ld_item = 2;
  p.users = users;
  p.items = items;
  p.seen = seen;
  if (mfm_serve_model_new(&p, &m, &err)) abort();
  if (mfm_serve_worker_new(m, &worker, &err)) abort();
  /* users, items, seen and m live for the whole process. */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *types[4] = {"application/json", "application/jsonlines",
                                 "text/csv", "application/json; charset=utf-8"};
  static const char *accepts[4] = {NULL, "application/jsonlines",
                                   "application/json", "*/*"};
  mfm_serve_reply r;
  if (!worker) setup();
  if (size < 1) return 0;
  mfm_serve_invoke(worker, (const char *)data + 1, size - 1,
                   types[data[0] & 3], accepts[(data[0] >> 2) & 3], NULL, &r);
  if (r.status < 200 || r.status > 599) abort();
  mfm_free(r.body);
  return 0;
}
