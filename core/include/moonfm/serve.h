/* Serving (spec section 17): the model a server answers from, the request
   decoder, the prediction engine and the response encoder.  Pure C with no
   HTTP: the transport (core/host/serve_http.c, libmicrohttpd) hands a body
   and its headers to mfm_serve_invoke and sends back what it returns.

     mfm_serve_model *m;
     mfm_serve_model_load("/opt/ml/model", &m, &err);  (mapped read-only)
     mfm_serve_worker *w;                 (one per thread: scratch buffers)
     mfm_serve_worker_new(m, &w, &err);
     mfm_serve_reply r;
     mfm_serve_invoke(w, body, len, "application/json", "*" "/" "*", NULL, &r);
     ... send r.status, r.content_type, r.body ...
     mfm_free(r.body);

   Requests (docs/serving.md): application/json
     {"user": ID, "k": 10, "exclude_seen": true}
     {"instances": [{"user": ID, "k": 10}, ...], "k": 10}
     {"instances": [{"user": ID, "items": [ID, ...]}]}     (score these)
     {"interactions": [ID, ...]}    (a new user, folded in from items)
     {"features": [NAME, ...]}      (a new user from feature names)
   application/jsonlines: one request object per line; text/csv: one user
   id per line.  Ids are JSON strings or integers; answers give them as
   strings.  Responses: {"predictions": [{"items": [...], "scores": [...]},
   ...]} or one prediction object per line, in request order. */
#ifndef MOONFM_SERVE_H
#define MOONFM_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "csr.h"
#include "factors.h"
#include "idmap.h"
#include "status.h"

/* Limits of one request; beyond them the answer is 400 naming the field. */
#define MFM_SERVE_MAX_K 1000          /* k of one instance */
#define MFM_SERVE_MAX_INSTANCES 10000 /* instances (lines) of one request */
#define MFM_SERVE_MAX_LIST 100000     /* ids in one items/interactions list */
#define MFM_SERVE_DEFAULT_K 10

/* A new user's representation (rep: k floats, *bias) from n indices
   (items for fold-in, features for the hybrid model), with the given
   weights (may be NULL for ones).  Called from any worker thread: the
   hook must be thread-safe.  MFM_EINVAL (400) or MFM_ENOMEM. */
typedef mfm_status (*mfm_serve_rep_fn)(void *ctx, const int32_t *idx,
                                       int32_t n, float *rep, float *bias,
                                       mfm_err *err);

/* What a model is made of.  Every pointer is kept by the model built from
   it (mfm_serve_model_new) and must outlive it. */
typedef struct mfm_serve_parts {
  const char *kind;        /* "als", "fm" ... (copied) */
  mfm_factors factors;     /* user and item representations */
  const mfm_idmap *users;  /* external user ids, n_users of them */
  const mfm_idmap *items;  /* external item ids, n_items */
  const mfm_csr *seen;     /* training items per user, or NULL */
  mfm_serve_rep_fn fold_in; /* interactions -> rep, or NULL */
  void *fold_in_ctx;
  const mfm_idmap *features; /* feature names, or NULL */
  mfm_serve_rep_fn from_features; /* features -> rep, or NULL */
  void *features_ctx;
} mfm_serve_parts;

typedef struct mfm_serve_model mfm_serve_model;

/* A model over caller-owned parts (checked: sizes of the maps and of seen
   against the factors).  MFM_EINVAL, MFM_ENOMEM. */
mfm_status mfm_serve_model_new(const mfm_serve_parts *p,
                               mfm_serve_model **out, mfm_err *err);

/* Loads the model of a model folder (dir borrowed): the file
   model.moonfm, or the only *.moonfm file in it; or dir is the model file
   itself (moonfm inspect checks a file that way).  Mapped read-only and
   never written.  Reads the id maps (users.*, items.*), the factors
   (user_factors/item_factors, or the fm model's identity embeddings),
   the training items (seen.indptr, seen.indices, optional) and sets the
   fold-in hook the kind supports.  MFM_EIO / MFM_EFORMAT with a message
   naming the file and what is wrong; MFM_ENOMEM. */
mfm_status mfm_serve_model_load(const char *dir, mfm_serve_model **out,
                                mfm_err *err);
void mfm_serve_model_free(mfm_serve_model *m);

/* Kind, sizes and abilities, for the start-up log line. */
typedef struct mfm_serve_info {
  const char *kind; /* borrowed from the model */
  int32_t n_users, n_items, factors;
  int64_t n_seen;   /* training interactions kept for exclude_seen */
  int fold_in, features; /* nonzero when supported */
} mfm_serve_info;
void mfm_serve_model_info(const mfm_serve_model *m, mfm_serve_info *out);

/* Body formats.  Parsing ignores parameters ("; charset=utf-8") and case;
   in an Accept list the supported type of highest q wins (q=0 refuses
   it; at equal q a type named outright, then the earlier one), and * / *
   (or application / *) stands for the default.  0 when unsupported. */
typedef enum mfm_serve_format {
  MFM_SERVE_UNSUPPORTED = 0,
  MFM_SERVE_JSON = 1,      /* application/json */
  MFM_SERVE_JSONLINES = 2, /* application/jsonlines (also x-jsonlines) */
  MFM_SERVE_CSV = 3        /* text/csv (requests only) */
} mfm_serve_format;
mfm_serve_format mfm_serve_content_type(const char *content_type);
/* Nonzero when content_type is text/csv with header=present (RFC 4180):
   the body's first line is a header. */
int mfm_serve_csv_header(const char *content_type);
mfm_serve_format mfm_serve_accept(const char *accept, mfm_serve_format dflt);
/* The media type written for a format ("application/json" ...). */
const char *mfm_serve_format_name(mfm_serve_format f);

/* Per-thread scratch (scores of a block of users against every item,
   marks, heaps): a worker is used by one thread at a time. */
typedef struct mfm_serve_worker mfm_serve_worker;
mfm_status mfm_serve_worker_new(const mfm_serve_model *m,
                                mfm_serve_worker **out, mfm_err *err);
void mfm_serve_worker_free(mfm_serve_worker *w);

typedef struct mfm_serve_reply {
  int status;               /* 200, 400, 406, 415, 500 */
  const char *content_type; /* static */
  char *body;               /* mfm_malloc'ed (caller frees), or NULL */
  size_t len;
} mfm_serve_reply;

/* One POST /invocations: decodes body (len bytes, borrowed, need not be
   NUL-terminated) as content_type, predicts, encodes for accept (NULL or
   "" means default_accept, NULL default_accept means application/json).
   Always fills out: 200 with the predictions, or 4xx with a short
   plain-text reason naming the field ("instances[3].user: unknown user id
   'u9'"), 500 with "out of memory" when memory ran out (then body may be
   NULL: send the static text).  Returns the status of the work itself:
   MFM_OK (whatever the HTTP status), MFM_ENOMEM. */
mfm_status mfm_serve_invoke(mfm_serve_worker *w, const char *body,
                            size_t len, const char *content_type,
                            const char *accept, const char *default_accept,
                            mfm_serve_reply *out);

/* ---- The HTTP transport --------------------------------------------------
   Implemented by the moonfm executable (core/host/serve_http.c, on
   libmicrohttpd); the loadable Lua module does not have it. */

typedef struct mfm_http_config {
  const char *address; /* "0.0.0.0" */
  int port;            /* 1..65535 */
  int workers;         /* threads of the pool, >= 1 */
  int timeout;         /* seconds a connection may stay idle or slow */
  size_t max_body;     /* bytes; larger bodies get 413 */
  int drain;           /* seconds to finish requests in flight on stop */
  char execution_parameters[256]; /* GET /execution-parameters body */
} mfm_http_config;

/* Answers one POST /invocations on a worker thread; must fill out. */
typedef void (*mfm_http_invoke_fn)(void *ctx, const char *body, size_t len,
                                   const char *content_type,
                                   const char *accept, mfm_serve_reply *out);

typedef struct mfm_http mfm_http;

/* Starts listening (GET /ping answers 503 until mfm_http_ready).
   MFM_EIO with a message when the port cannot be bound. */
mfm_status mfm_http_start(const mfm_http_config *c, mfm_http **out,
                          mfm_err *err);
/* From now on /ping is 200 and /invocations calls fn (kept). */
void mfm_http_ready(mfm_http *h, mfm_http_invoke_fn fn, void *ctx);
/* Serves until the stop flag is set (SIGTERM), then stops accepting,
   finishes the requests in flight (at most c->drain seconds) and stops
   the threads.  Returns the number of requests answered. */
int64_t mfm_http_run(mfm_http *h);
/* Stops (if running) and frees; accepts NULL. */
void mfm_http_free(mfm_http *h);

#endif
