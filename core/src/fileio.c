#include "moonfm/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moonfm/alloc.h"

/* The temporaries being written, for mfm_atomic_unlink_all: a second
   SIGTERM ends the process at once (rule 76), and a half-written model
   must not be left for SageMaker to upload.  A slot is 0 free, 1 being
   filled, 2 holding a path; a file beyond the slots is not listed. */
#define TMP_SLOTS 8
#define TMP_PATH_MAX 4096
static atomic_int tmp_state[TMP_SLOTS];
static char tmp_path[TMP_SLOTS][TMP_PATH_MAX];

static int tmp_list(const char *path) {
  if (strlen(path) >= TMP_PATH_MAX) return -1;
  for (int i = 0; i < TMP_SLOTS; i++) {
    int free_slot = 0;
    if (atomic_compare_exchange_strong(&tmp_state[i], &free_slot, 1)) {
      strcpy(tmp_path[i], path);
      atomic_store(&tmp_state[i], 2);
      return i;
    }
  }
  return -1;
}

static void tmp_unlist(int slot) {
  if (slot >= 0) atomic_store(&tmp_state[slot], 0);
}

void mfm_atomic_unlink_all(void) {
  for (int i = 0; i < TMP_SLOTS; i++)
    if (atomic_load(&tmp_state[i]) == 2) unlink(tmp_path[i]);
}

struct mfm_atomic_file {
  int fd;
  int slot;       /* in the list above, or -1 */
  uint64_t size;
  char *path;     /* target */
  char *tmp;      /* temporary, same folder */
  char *dir;      /* their folder, for the final fsync */
};

/* The folder part of path ("." when there is none), in a new string. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 1;
  if (slash == path) n = 1; /* "/file" */
  char *d = mfm_malloc(n + 1);
  if (!d) return NULL;
  if (slash) memcpy(d, path, n); else d[0] = '.';
  d[n] = '\0';
  return d;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mfm_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

mfm_status mfm_atomic_open(const char *path, mfm_atomic_file **out,
                           mfm_err *err) {
  *out = NULL;
  mfm_atomic_file *f = mfm_calloc(1, sizeof *f);
  char *dir = dir_of(path);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (!f || !dir) goto nomem;
  f->fd = -1;
  f->slot = -1;
  f->path = dupstr(path);
  size_t n = strlen(dir) + strlen(MFM_TMP_PREFIX) + strlen(base) + 16;
  f->tmp = mfm_malloc(n);
  if (!f->path || !f->tmp) goto nomem;
  snprintf(f->tmp, n, "%s/%s%s.XXXXXX", dir, MFM_TMP_PREFIX, base);
  f->fd = mkstemp(f->tmp);
  if (f->fd < 0) {
    int e = errno;
    mfm_free(dir);
    mfm_free(f->tmp);
    f->tmp = NULL;
    mfm_atomic_abort(f);
    return mfm_err_set(err, MFM_EIO, "cannot create a file in %s: %s",
                       path, strerror(e));
  }
  fchmod(f->fd, 0644);
  f->slot = tmp_list(f->tmp);
  f->dir = dir; /* kept: commit must not allocate after the rename */
  *out = f;
  return MFM_OK;
nomem:
  mfm_free(dir);
  mfm_atomic_abort(f);
  return mfm_err_set(err, MFM_ENOMEM, "out of memory writing %s", path);
}

mfm_status mfm_atomic_write(mfm_atomic_file *f, const void *buf, size_t n,
                            mfm_err *err) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(f->fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return mfm_err_set(err, MFM_EIO, "cannot write %s: %s", f->path,
                         strerror(errno));
    }
    p += w;
    n -= (size_t)w;
    f->size += (uint64_t)w;
  }
  return MFM_OK;
}

uint64_t mfm_atomic_size(const mfm_atomic_file *f) { return f->size; }

static int fsync_dir(const char *dir) {
  int rc = -1;
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    rc = fsync(fd);
    /* Some file systems cannot fsync a folder; that is not a failure. */
    if (rc != 0 && (errno == EINVAL || errno == EROFS)) rc = 0;
    close(fd);
  }
  return rc;
}

mfm_status mfm_atomic_commit(mfm_atomic_file *f, mfm_err *err) {
  mfm_status st = MFM_OK;
  if (fsync(f->fd) != 0) {
    st = mfm_err_set(err, MFM_EIO, "cannot write %s: %s", f->path,
                     strerror(errno));
  } else if (close(f->fd) != 0) {
    f->fd = -1;
    st = mfm_err_set(err, MFM_EIO, "cannot write %s: %s", f->path,
                     strerror(errno));
  } else {
    f->fd = -1;
    tmp_unlist(f->slot);
    f->slot = -1;
    if (rename(f->tmp, f->path) != 0) {
      st = mfm_err_set(err, MFM_EIO, "cannot rename into %s: %s", f->path,
                       strerror(errno));
    } else {
      mfm_free(f->tmp);
      f->tmp = NULL; /* nothing left to remove */
      if (fsync_dir(f->dir) != 0)
        st = mfm_err_set(err, MFM_EIO, "cannot sync the folder of %s: %s",
                         f->path, strerror(errno));
    }
  }
  mfm_atomic_abort(f);
  return st;
}

void mfm_atomic_abort(mfm_atomic_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  tmp_unlist(f->slot);
  if (f->tmp) unlink(f->tmp);
  mfm_free(f->tmp);
  mfm_free(f->path);
  mfm_free(f->dir);
  mfm_free(f);
}

mfm_status mfm_write_atomic(const char *path, const void *data, size_t n,
                            mfm_err *err) {
  mfm_atomic_file *f;
  mfm_status st = mfm_atomic_open(path, &f, err);
  if (st != MFM_OK) return st;
  st = mfm_atomic_write(f, data, n, err);
  if (st != MFM_OK) {
    mfm_atomic_abort(f);
    return st;
  }
  return mfm_atomic_commit(f, err);
}
