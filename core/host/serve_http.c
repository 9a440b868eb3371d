/* The HTTP side of `moonfm serve` (spec rules 118-127) on libmicrohttpd:
   an internal polling thread with a pool of `workers` threads, bodies
   gathered up to max_body (413 beyond, chunked too), /ping, /invocations,
   /execution-parameters, and a graceful stop on SIGTERM: quiesce (close
   the listening socket), let requests in flight finish, then stop. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "moonfm/alloc.h"
#include "moonfm/log.h"
#include "moonfm/serve.h"
#include "moonfm/stop.h"

struct mfm_http {
  mfm_http_config c;
  struct MHD_Daemon *d;
  _Atomic(mfm_http_invoke_fn) fn;
  void *_Atomic ctx;
  atomic_int ready;
  atomic_int stopping;
  atomic_int in_flight;
  atomic_llong answered;
  unsigned max_connections;
  atomic_int open;  /* connections open */
  atomic_int full;  /* said that max_connections were open */
};

/* Per request: the body gathered so far. */
typedef struct req {
  char *body;
  size_t n, cap;
  int too_big;
  int counted;
  struct timespec t0; /* its headers came */
} req;

static double since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) * 1e-9;
}


/* Set by a handler that closes its connection on purpose, having said
   why: libmicrohttpd's own line for it, in the same thread right after,
   would call it an internal error. */
static _Thread_local int closing_on_purpose;

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  if (closing_on_purpose) {
    closing_on_purpose = 0;
    return;
  }
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
  mfm_log(MFM_LOG_WARNING, "serve: http: %s", line);
}

static enum MHD_Result respond(mfm_http *h, struct MHD_Connection *con,
                            int status, const char *ctype, char *body,
                            size_t len, int owned) {
  struct MHD_Response *r;
  if (owned)
    r = MHD_create_response_from_buffer_with_free_callback(len, body,
                                                           mfm_free);
  else
    r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
  if (!r) {
    if (owned) mfm_free(body);
    return MHD_NO;
  }
  if (ctype) MHD_add_response_header(r, "Content-Type", ctype);
  /* Once stopping, keep-alive connections end after this answer. */
  if (atomic_load(&h->stopping))
    MHD_add_response_header(r, "Connection", "close");
  enum MHD_Result ok = MHD_queue_response(con, (unsigned)status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result text(mfm_http *h, struct MHD_Connection *con,
                            int status, const char *msg) {
  return respond(h, con, status, "text/plain; charset=utf-8", (char *)msg,
              strlen(msg), 0);
}

/* 405, with the Allow header RFC 9110 asks for (the methods of url). */
static enum MHD_Result not_allowed(mfm_http *h, struct MHD_Connection *con,
                                   const char *allow, const char *msg) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
  MHD_add_response_header(r, "Allow", allow);
  if (atomic_load(&h->stopping))
    MHD_add_response_header(r, "Connection", "close");
  enum MHD_Result ok = MHD_queue_response(con, 405, r);
  MHD_destroy_response(r);
  return ok;
}

/* A formatted text reply (its own buffer: the worker threads answer at
   once). */
__attribute__((format(printf, 4, 5))) static enum MHD_Result
textf(mfm_http *h, struct MHD_Connection *con, int status, const char *fmt,
      ...) {
  char *msg = mfm_malloc(256);
  if (!msg) return MHD_NO;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, 256, fmt, ap);
  va_end(ap);
  return respond(h, con, status, "text/plain; charset=utf-8", msg,
                 strlen(msg), 1);
}

/* The log line of a refused request: status and the reason's first line
   (what the client was told), so a Batch Transform or endpoint whose
   caller saw only the status can be read in the log. */
static void log_refused(int status, const char *method, const char *url,
                        const char *why, size_t n) {
  char line[201];
  size_t m = 0;
  for (; m < n && m + 1 < sizeof line && why[m] != '\n'; m++)
    line[m] = (unsigned char)why[m] < 32 ? '?' : why[m];
  line[m] = 0;
  mfm_log(status >= 500 ? MFM_LOG_ERROR : MFM_LOG_WARNING,
          "serve: %.16s %.64s: %d %s", method, url, status, line);
}

/* 413, logged. */
static enum MHD_Result too_large(mfm_http *h, struct MHD_Connection *con,
                                 const char *method, const char *url) {
  mfm_log(MFM_LOG_WARNING, "serve: %.16s %.64s: 413 body over %zu bytes",
          method, url, h->c.max_body);
  return textf(h, con, 413, "request body larger than %zu bytes (set "
               "SAGEMAKER_MAX_PAYLOAD_IN_MB for more)\n", h->c.max_body);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  mfm_http *h = cls;
  req *q = *con_cls;
  (void)version;
  if (!q) {
    q = mfm_calloc(1, sizeof *q);
    if (!q) return MHD_NO;
    *con_cls = q;
    atomic_fetch_add(&h->in_flight, 1);
    q->counted = 1;
    clock_gettime(CLOCK_MONOTONIC, &q->t0);
    const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
                                                 "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > h->c.max_body) q->too_big = 1;
    /* Too large by its Content-Length, from a client that waits for
       "100 Continue" before it sends the body (curl does above 1 MB):
       answer now, and it uploads nothing.  Others are already sending;
       closing on them could reset the connection before they read the
       413, so their body is read and dropped as before. */
    const char *ex = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
                                                 "Expect");
    if (q->too_big && ex && strcasecmp(ex, "100-continue") == 0 &&
        strcmp(method, "POST") == 0 && strcmp(url, "/invocations") == 0)
      return too_large(h, con, method, url);
    return MHD_YES;
  }
  int post = strcmp(method, "POST") == 0;
  if (*upload_size) {
    /* Gather the body (chunked or not); past the limit, drop the rest
       and answer 413 at the end. */
    size_t n = *upload_size;
    *upload_size = 0;
    /* The idle timeout does not end a body sent a byte at a time: the
       whole body gets as long as a connection may idle.  libmicrohttpd
       takes no answer before the body's end, so the connection is
       closed. */
    if (since(&q->t0) > (double)h->c.timeout) {
      mfm_log(MFM_LOG_WARNING, "serve: %.16s %.64s: the request body took "
              "more than %d s (SAGEMAKER_MODEL_SERVER_TIMEOUT); closing the "
              "connection", method, url, h->c.timeout);
      closing_on_purpose = 1;
      return MHD_NO;
    }
    if (!post || q->too_big) return MHD_YES;
    if (q->n + n > h->c.max_body) {
      q->too_big = 1;
      mfm_free(q->body);
      q->body = NULL;
      q->n = q->cap = 0;
      return MHD_YES;
    }
    if (q->n + n + 1 > q->cap) {
      size_t c = q->cap ? q->cap : 4096;
      while (c < q->n + n + 1) c *= 2;
      if (c > h->c.max_body + 1) c = h->c.max_body + 1;
      char *p = mfm_realloc(q->body, c);
      if (!p) return MHD_NO;
      q->body = p;
      q->cap = c;
    }
    memcpy(q->body + q->n, upload, n);
    q->n += n;
    return MHD_YES;
  }
  if (strcmp(url, "/ping") == 0) {
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      return not_allowed(h, con, "GET, HEAD", "use GET /ping\n");
    if (!atomic_load(&h->ready))
      return text(h, con, 503, "loading the model\n");
    return respond(h, con, 200, NULL, (char *)"", 0, 0);
  }
  if (strcmp(url, "/execution-parameters") == 0) {
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      return not_allowed(h, con, "GET, HEAD",
                         "use GET /execution-parameters\n");
    return respond(h, con, 200, "application/json", h->c.execution_parameters,
                strlen(h->c.execution_parameters), 0);
  }
  if (strcmp(url, "/invocations") != 0)
    return text(h, con, 404, "not found (POST /invocations, GET /ping)\n");
  if (!post) return not_allowed(h, con, "POST", "use POST /invocations\n");
  if (q->too_big) return too_large(h, con, method, url);
  if (!atomic_load(&h->ready))
    return text(h, con, 503, "loading the model\n");
  mfm_serve_reply r;
  mfm_http_invoke_fn fn = atomic_load(&h->fn);
  fn(atomic_load(&h->ctx), q->body ? q->body : "", q->n,
     MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type"),
     MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Accept"), &r);
  atomic_fetch_add(&h->answered, 1);
  if (!r.body) {
    log_refused(r.status ? r.status : 500, method, url, "out of memory", 13);
    return text(h, con, r.status ? r.status : 500, "out of memory\n");
  }
  if (r.status >= 400) log_refused(r.status, method, url, r.body, r.len);
  return respond(h, con, r.status, r.content_type, r.body, r.len, 1);
}

static void on_completed(void *cls, struct MHD_Connection *con,
                         void **con_cls, enum MHD_RequestTerminationCode t) {
  mfm_http *h = cls;
  req *q = *con_cls;
  (void)con;
  (void)t;
  if (!q) return;
  if (q->counted) atomic_fetch_sub(&h->in_flight, 1);
  mfm_free(q->body);
  mfm_free(q);
  *con_cls = NULL;
}

/* Counts connections.  At the limit libmicrohttpd stops accepting and a
   new connection (a /ping too) waits in the backlog without a word:
   say so once, until it falls to half. */
static void on_connection(void *cls, struct MHD_Connection *con,
                          void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
  mfm_http *h = cls;
  (void)con;
  (void)socket_ctx;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    int n = atomic_fetch_add(&h->open, 1) + 1;
    if ((unsigned)n >= h->max_connections && !atomic_exchange(&h->full, 1))
      mfm_log(MFM_LOG_WARNING, "serve: %d connections open, the most "
              "served at once; new ones wait until one closes (an idle one "
              "after SAGEMAKER_MODEL_SERVER_TIMEOUT, %d s)", n, h->c.timeout);
  } else {
    int n = atomic_fetch_sub(&h->open, 1) - 1;
    if ((unsigned)n <= h->max_connections / 2) atomic_store(&h->full, 0);
  }
}

/* The most connections open at once: idle keep-alive connections of
   many clients must not lock /ping out, so as many as the descriptors
   allow (a few kept for the model and logs), up to 4096. */
static unsigned connection_limit(int workers) {
  rlim_t n = 4096;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < n + 64)
    n = rl.rlim_cur > 128 ? rl.rlim_cur - 64 : 64;
  if (n < (rlim_t)workers) n = (rlim_t)workers;
  return (unsigned)n;
}

mfm_status mfm_http_start(const mfm_http_config *c, mfm_http **out,
                          mfm_err *err) {
  *out = NULL;
  if (c->port < 1 || c->port > 65535 || c->workers < 1)
    return mfm_err_set(err, MFM_EINVAL, "serve: port %d or workers %d out "
                       "of range", c->port, c->workers);
  mfm_http *h = mfm_calloc(1, sizeof *h);
  if (!h) return mfm_err_set(err, MFM_ENOMEM, "serve: out of memory");
  h->c = *c;
  h->max_connections = connection_limit(c->workers);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)c->port);
  if (inet_pton(AF_INET, c->address ? c->address : "0.0.0.0",
                &sa.sin_addr) != 1) {
    mfm_free(h);
    return mfm_err_set(err, MFM_EINVAL, "serve: bad address %s",
                       c->address);
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
#ifdef MHD_USE_EPOLL
  if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
    flags |= MHD_USE_EPOLL;
#endif
  h->d = MHD_start_daemon(
      flags, (uint16_t)c->port, NULL, NULL, on_request, h,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->workers,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
      MHD_OPTION_CONNECTION_LIMIT, h->max_connections,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
  if (!h->d) {
    mfm_free(h);
    return mfm_err_set(err, MFM_EIO, "serve: cannot listen on %s:%d (port "
                       "in use, or not allowed?)",
                       c->address ? c->address : "0.0.0.0", c->port);
  }
  *out = h;
  return MFM_OK;
}

void mfm_http_ready(mfm_http *h, mfm_http_invoke_fn fn, void *ctx) {
  atomic_store(&h->ctx, ctx);
  atomic_store(&h->fn, fn);
  atomic_store(&h->ready, 1);
}

static void nap(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void stop(mfm_http *h) {
  if (!h->d) return;
  atomic_store(&h->stopping, 1);
  MHD_socket s = MHD_quiesce_daemon(h->d);
  if (s != MHD_INVALID_SOCKET) close(s);
  /* Requests already received finish; idle keep-alive connections do not
     count (they are not in flight). */
  double end = now() + h->c.drain;
  while (atomic_load(&h->in_flight) > 0 && now() < end) nap(20);
  MHD_stop_daemon(h->d);
  h->d = NULL;
}

int64_t mfm_http_run(mfm_http *h) {
  while (!mfm_stop_requested()) nap(50);
  stop(h);
  return atomic_load(&h->answered);
}

void mfm_http_free(mfm_http *h) {
  if (!h) return;
  stop(h);
  mfm_free(h);
}
