/* Multi-host collectives on Open MPI, a watchdog against hangs, and host
   name resolution with retries (spec rule 98).  Built without MPI, every
   job has one rank and the collectives do nothing. */
#include "moonfm/dist.h"

#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "moonfm/alloc.h"
#include "moonfm/stop.h"

#ifdef MFM_HAVE_MPI
#include <mpi.h>
#endif

static int g_init, g_mpi, g_rank, g_size = 1;
static char g_label[128];
/* Watchdog: the deadline (monotonic ns) of the collective in progress,
   0 when none; what it is, for the message. */
static atomic_llong g_deadline;
static const char *_Atomic g_what;
static double g_timeout = 1800;
static pthread_t g_watch;
static atomic_int g_watch_run;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int mfm_dist_available(void) {
#ifdef MFM_HAVE_MPI
  return 1;
#else
  return 0;
#endif
}

int mfm_dist_rank(void) { return g_rank; }
int mfm_dist_size(void) { return g_size; }

void mfm_dist_set_timeout(double timeout_s) {
  if (timeout_s > 0) g_timeout = timeout_s;
}

void mfm_dist_block(int64_t n, int rank, int size, int64_t *lo,
                    int64_t *hi) {
  int64_t q = n / size, r = n % size;
  *lo = rank * q + (rank < r ? rank : r);
  *hi = *lo + q + (rank < r ? 1 : 0);
}

#ifdef MFM_HAVE_MPI
/* Sleeps in steps of 200 ms; when a collective has outlived its deadline,
   says so and ends the process (MPI cannot be interrupted otherwise). */
static void *watch(void *arg) {
  (void)arg;
  while (atomic_load(&g_watch_run)) {
    struct timespec ts = {0, 200000000L};
    nanosleep(&ts, NULL);
    long long d = atomic_load(&g_deadline);
    if (d && now_ns() > d) {
      const char *what = atomic_load(&g_what);
      fprintf(stderr,
              "moonfm: rank %d of %d (%s): no answer from the other hosts "
              "for %.0f s in %s: a host died, hung or lost the network; "
              "ending the job (raise MOONFM_DIST_TIMEOUT if one step "
              "really takes longer)\n",
              g_rank, g_size, g_label[0] ? g_label : "?", g_timeout,
              what ? what : "a collective");
      fflush(stderr);
      _exit(1);
    }
  }
  return NULL;
}

static void enter(const char *what) {
  atomic_store(&g_what, what);
  atomic_store(&g_deadline, now_ns() + (long long)(g_timeout * 1e9));
}
static void leave(void) { atomic_store(&g_deadline, 0); }

static mfm_status mpi_fail(int rc, const char *what, mfm_err *err) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  return mfm_err_set(err, MFM_EIO, "%s: MPI error on rank %d (%s): %s",
                     what, g_rank, g_label[0] ? g_label : "?", msg);
}
#endif

mfm_status mfm_dist_init(double timeout_s, const char *label, mfm_err *err) {
  if (g_init) return MFM_OK;
  if (label) snprintf(g_label, sizeof g_label, "%s", label);
  mfm_dist_set_timeout(timeout_s);
  g_rank = 0;
  g_size = 1;
#ifdef MFM_HAVE_MPI
  const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
  if (ws && *ws) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
      return mfm_err_set(err, MFM_EIO, "dist: MPI_Init failed (%d)", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_mpi = 1;
    atomic_store(&g_watch_run, 1);
    if (pthread_create(&g_watch, NULL, watch, NULL) != 0) {
      atomic_store(&g_watch_run, 0);
      return mfm_err_set(err, MFM_ENOMEM, "dist: cannot start the watchdog");
    }
  }
#endif
  g_init = 1;
  return MFM_OK;
}

void mfm_dist_finalize(void) {
  if (!g_init) return;
#ifdef MFM_HAVE_MPI
  if (g_mpi) {
    atomic_store(&g_watch_run, 0);
    pthread_join(g_watch, NULL);
    MPI_Finalize();
    g_mpi = 0;
  }
#endif
  g_init = 0;
  g_rank = 0;
  g_size = 1;
}

void mfm_dist_abort(int code) {
#ifdef MFM_HAVE_MPI
  if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  _exit(code);
}

#ifdef MFM_HAVE_MPI
/* Sums in chunks: MPI counts are ints. */
static mfm_status sum(void *buf, size_t n, size_t elem, MPI_Datatype t,
                      MPI_Op op, const char *what, mfm_err *err) {
  if (!g_mpi) return MFM_OK;
  const size_t step = (size_t)1 << 28;
  enter(what);
  for (size_t i = 0; i < n; i += step) {
    size_t m = n - i < step ? n - i : step;
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * elem, (int)m, t,
                           op, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
      leave();
      return mpi_fail(rc, what, err);
    }
  }
  leave();
  return MFM_OK;
}
#endif

mfm_status mfm_dist_sum_f32(float *buf, size_t n, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  return sum(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, "allreduce", err);
#else
  return MFM_OK;
#endif
}

mfm_status mfm_dist_sum_f64(double *buf, size_t n, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  return sum(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM, "allreduce", err);
#else
  return MFM_OK;
#endif
}

mfm_status mfm_dist_reduce_f64(double *buf, size_t n, mfm_dist_op op,
                               mfm_err *err) {
#ifdef MFM_HAVE_MPI
  MPI_Op o = op == MFM_DIST_MAX ? MPI_MAX : op == MFM_DIST_MIN ? MPI_MIN
                                                                : MPI_SUM;
  return sum(buf, n, sizeof *buf, MPI_DOUBLE, o, "allreduce", err);
#else
  (void)buf;
  (void)n;
  (void)op;
  (void)err;
  return MFM_OK;
#endif
}

mfm_status mfm_dist_sum_i64(int64_t *buf, size_t n, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  return sum(buf, n, sizeof *buf, MPI_INT64_T, MPI_SUM, "allreduce", err);
#else
  return MFM_OK;
#endif
}

mfm_status mfm_dist_max_int(int *v, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  return sum(v, 1, sizeof *v, MPI_INT, MPI_MAX, "allreduce", err);
#else
  return MFM_OK;
#endif
}

mfm_status mfm_dist_allgather_rows(float *buf, size_t row_len,
                                   const int64_t *offsets, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  if (!g_mpi || row_len == 0) return MFM_OK;
  if (offsets[g_size] > INT_MAX)
    return mfm_err_set(err, MFM_EINVAL, "allgather: %lld rows is more than "
                       "MPI counts hold", (long long)offsets[g_size]);
  int *counts = mfm_malloc_array(2 * (size_t)g_size, sizeof *counts);
  if (!counts) return mfm_err_set(err, MFM_ENOMEM, "allgather: no memory");
  int *displs = counts + g_size;
  for (int r = 0; r < g_size; r++) {
    counts[r] = (int)(offsets[r + 1] - offsets[r]);
    displs[r] = (int)offsets[r];
  }
  /* One row is one element, so counts stay small. */
  MPI_Datatype row;
  MPI_Type_contiguous((int)row_len, MPI_FLOAT, &row);
  MPI_Type_commit(&row);
  enter("allgather");
  int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts,
                          displs, row, MPI_COMM_WORLD);
  leave();
  MPI_Type_free(&row);
  mfm_free(counts);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "allgather", err);
#else
  (void)buf;
  (void)row_len;
  (void)offsets;
  (void)err;
#endif
  return MFM_OK;
}

mfm_status mfm_dist_bcast(void *buf, size_t n, int root, mfm_err *err) {
#ifdef MFM_HAVE_MPI
  if (!g_mpi) return MFM_OK;
  if (n > INT_MAX)
    return mfm_err_set(err, MFM_EINVAL, "bcast: %zu bytes is too many", n);
  enter("broadcast");
  int rc = MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
  leave();
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcast", err);
#else
  (void)buf;
  (void)n;
  (void)root;
  (void)err;
#endif
  return MFM_OK;
}

mfm_status mfm_dist_barrier(mfm_err *err) {
#ifdef MFM_HAVE_MPI
  if (!g_mpi) return MFM_OK;
  enter("barrier");
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  leave();
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "barrier", err);
#else
  (void)err;
#endif
  return MFM_OK;
}

/* Sleeps up to s seconds in slices of 100 ms; 1 when the stop flag rose. */
static int nap(double s) {
  while (s > 0) {
    if (mfm_stop_requested()) return 1;
    double d = s < 0.1 ? s : 0.1;
    struct timespec ts = {0, (long)(d * 1e9)};
    nanosleep(&ts, NULL);
    s -= d;
  }
  return mfm_stop_requested();
}

mfm_status mfm_dist_resolve(const char *host, double max_s, char *addr,
                            size_t addr_len, mfm_err *err) {
  double waited = 0, delay = 0.1;
  int tries = 0;
  for (;;) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    tries++;
    if (rc == 0) {
      if (addr && addr_len) {
        addr[0] = '\0';
        void *a = res->ai_family == AF_INET
          ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
          : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
        inet_ntop(res->ai_family, a, addr, (socklen_t)addr_len);
      }
      freeaddrinfo(res);
      return MFM_OK;
    }
    if (waited >= max_s)
      return mfm_err_set(err, MFM_EIO, "host %s did not resolve after %d "
                         "tries in %.0f s: %s", host, tries, waited,
                         gai_strerror(rc));
    double d = delay < max_s - waited ? delay : max_s - waited;
    if (nap(d))
      return mfm_err_set(err, MFM_ECANCELED, "resolving %s: stopped", host);
    waited += d;
    delay = delay * 2 < 30 ? delay * 2 : 30;
  }
}
