/* Internal to libmoonfm: the serving model, the worker's scratch and the
   decoded request (serve_model.c, serve_codec.c, serve_engine.c). */
#ifndef MOONFM_SERVE_IMPL_H
#define MOONFM_SERVE_IMPL_H

#include <jansson.h>
#include <stdint.h>

#include "moonfm/serve.h"

struct mfm_serve_model {
  mfm_serve_parts p;
  char kind[32];
  float *item_norm; /* each item row's length, for similar_to (cosine) */
  void *owned; /* what mfm_serve_model_load allocated, or NULL */
};

/* Users scored per sgemm in the engine. */
#define MFM_SERVE_BLOCK 16

enum { INST_TOPK = 1, INST_SCORE = 2, INST_SIMILAR = 3 };

/* One decoded instance.  Lists live in the worker's pools, by offset. */
typedef struct serve_inst {
  int what;         /* INST_TOPK, INST_SCORE or INST_SIMILAR */
  int exclude;      /* exclude_seen */
  int32_t user;     /* known user, or -1: representation at rep */
  int32_t item;     /* INST_SIMILAR: the item whose neighbours are asked */
  int32_t k;
  int64_t rep;      /* offset into reps (k + 1 floats: vector, bias) */
  int64_t list, n_list; /* ids pool: items to score, or fold-in items */
  int64_t res, n_res;   /* result pools: items and scores */
} serve_inst;

/* A growable byte buffer. */
typedef struct serve_buf {
  char *p;
  size_t n, cap;
  int oom;
} serve_buf;

struct mfm_serve_worker {
  const mfm_serve_model *m;
  float *ub;      /* MFM_SERVE_BLOCK x k representations */
  float *sb;      /* MFM_SERVE_BLOCK x n_items scores */
  uint8_t *mark;  /* n_items, zero between uses */
  float *hs;      /* heap of MFM_SERVE_MAX_K */
  int32_t *hi;
  serve_inst *inst;
  int64_t n_inst, cap_inst;
  int32_t *ids;   /* list pool */
  int64_t n_ids, cap_ids;
  float *reps;    /* representations of new users */
  int64_t n_reps, cap_reps;
  int32_t *res_items; /* result pools */
  float *res_scores;
  int64_t n_res, cap_res;
  serve_buf out;
  char *text;     /* scratch for one id's text */
  size_t cap_text;
  int csv_header; /* text/csv; header=present: the next CSV line is one */
};

/* Appends; a failed allocation sets b->oom and later appends do nothing. */
void mfm_sbuf_put(serve_buf *b, const char *s, size_t n);
/* Grows *p (elements of size sz) to hold at least need; 0 on failure. */
int mfm_serve_grow(void **p, int64_t *cap, int64_t need, size_t sz);

/* json_loadb (duplicates rejected) with jansson's memory routed through
   libmoonfm; *oom set when an allocation failed (then NULL). */
json_t *mfm_serve_json_load(const char *s, size_t n, json_error_t *je,
                            int *oom);

/* Decodes the body into w->inst and the pools.  MFM_OK, MFM_EINVAL with
   err->msg the 400 reason, MFM_ENOMEM. */
mfm_status mfm_serve_decode(mfm_serve_worker *w, const char *body,
                            size_t len, mfm_serve_format fmt, mfm_err *err);
/* Computes every instance's result.  MFM_OK, MFM_EINVAL (a hook refused a
   fold-in: 400), MFM_ENOMEM. */
mfm_status mfm_serve_predict(mfm_serve_worker *w, mfm_err *err);
/* Writes the results into w->out. */
void mfm_serve_encode(mfm_serve_worker *w, mfm_serve_format fmt);

#endif
