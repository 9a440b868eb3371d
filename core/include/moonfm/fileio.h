/* Atomic file writes (spec rules 65, 93): data goes to a temporary file in
   the same folder, named with the reserved prefix ".moonfm-tmp-", is
   fsync'd, renamed over the target, and the folder is fsync'd.  A reader
   never sees half a file; a failed write leaves the old file intact. */
#ifndef MOONFM_FILEIO_H
#define MOONFM_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MFM_TMP_PREFIX ".moonfm-tmp-"

typedef struct mfm_atomic_file mfm_atomic_file;

/* Creates the temporary file for `path` (borrowed).  MFM_EIO on failure,
   with the path in the message. */
mfm_status mfm_atomic_open(const char *path, mfm_atomic_file **out,
                           mfm_err *err);
/* Appends n bytes; handles short writes and EINTR.  After an error, the
   file must still be passed to mfm_atomic_abort. */
mfm_status mfm_atomic_write(mfm_atomic_file *f, const void *buf, size_t n,
                            mfm_err *err);
/* Bytes written so far. */
uint64_t mfm_atomic_size(const mfm_atomic_file *f);
/* fsync, rename over the target, fsync the folder, free f. */
mfm_status mfm_atomic_commit(mfm_atomic_file *f, mfm_err *err);
/* Removes the temporary file and frees f; accepts NULL. */
void mfm_atomic_abort(mfm_atomic_file *f);

/* Removes every temporary file still being written; async-signal-safe,
   for a process about to _exit (a second SIGTERM, rule 76). */
void mfm_atomic_unlink_all(void);

/* The whole sequence for one buffer. */
mfm_status mfm_write_atomic(const char *path, const void *data, size_t n,
                            mfm_err *err);

#endif
