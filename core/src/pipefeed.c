/* The local Pipe-mode feeder (moonfm/pipefeed.h). */
#include "moonfm/pipefeed.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "moonfm/alloc.h"
#include "moonfm/stop.h"

typedef struct feed {
  char base[PATH_MAX], src[PATH_MAX];
  char buf[1 << 16]; /* one per feeder: two Pipe channels run at once */
} feed;

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1; /* EPIPE: the reader stopped reading */
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Opens the FIFO for writing once a reader has it open; -1 when stopped
   or on an error.  Non-blocking polls, so the stop flag is seen. */
static int open_writer(const char *path) {
  const struct timespec nap = {0, 20 * 1000 * 1000};
  while (!mfm_stop_requested()) {
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      return fd;
    }
    if (errno != ENXIO && errno != EINTR) return -1;
    nanosleep(&nap, NULL);
  }
  return -1;
}

static void *feed_main(void *p) {
  feed *f = p;
  /* Signals stay with the threads that handle them. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  for (long k = 0; !mfm_stop_requested(); k++) {
    char path[PATH_MAX + 24];
    snprintf(path, sizeof path, "%s_%ld", f->base, k);
    if (k > 0 && mkfifo(path, 0644) != 0 && errno != EEXIST) break;
    int out = open_writer(path);
    if (out < 0) break;
    int in = open(f->src, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    while (in >= 0 && (n = read(in, f->buf, sizeof f->buf)) > 0)
      if (write_all(out, f->buf, (size_t)n) != 0) break;
    if (in >= 0) close(in);
    close(out);
  }
  mfm_free(f);
  return NULL;
}

mfm_status mfm_pipe_feed_start(const char *base, const char *src,
                               mfm_err *err) {
  if (strlen(base) >= PATH_MAX || strlen(src) >= PATH_MAX)
    return mfm_err_set(err, MFM_EINVAL, "pipe feed: path too long");
  if (access(src, R_OK) != 0)
    return mfm_err_set(err, MFM_EIO, "pipe feed: cannot read %s: %s", src,
                       strerror(errno));
  char path[PATH_MAX + 24];
  snprintf(path, sizeof path, "%s_0", base);
  if (mkfifo(path, 0644) != 0 && errno != EEXIST)
    return mfm_err_set(err, MFM_EIO, "pipe feed: cannot make the FIFO %s: "
                       "%s", path, strerror(errno));
  feed *f = mfm_calloc(1, sizeof *f);
  if (!f) return mfm_err_set(err, MFM_ENOMEM, "pipe feed: out of memory");
  snprintf(f->base, sizeof f->base, "%s", base);
  snprintf(f->src, sizeof f->src, "%s", src);
  pthread_t th;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &a, feed_main, f);
  pthread_attr_destroy(&a);
  if (rc != 0) {
    mfm_free(f);
    return mfm_err_set(err, MFM_ENOMEM, "pipe feed: cannot start a thread");
  }
  return MFM_OK;
}
