/* Status codes and error details shared by every libmoonfm function. */
#ifndef MOONFM_STATUS_H
#define MOONFM_STATUS_H

#include <stddef.h>

typedef enum mfm_status {
  MFM_OK = 0,
  MFM_ENOMEM,    /* an allocation failed */
  MFM_EINVAL,    /* bad argument from the caller */
  MFM_EIO,       /* the operating system refused a read or write */
  MFM_EFORMAT,   /* input data or a file is malformed */
  MFM_ECANCELED  /* the stop flag was raised (SIGTERM) */
} mfm_status;

/* Details of a failure.  Functions that can fail with details take a last
   argument `mfm_err *err`, which may be NULL. */
typedef struct mfm_err {
  mfm_status code;
  char msg[512];
} mfm_err;

/* "ok", "out of memory", ... ; never NULL. */
const char *mfm_status_string(mfm_status s);

/* Fills err (when not NULL) with code and a printf-style message, and
   returns code, so that error exits are one line:
     return mfm_err_set(err, MFM_EINVAL, "factors must be > 0, got %d", k); */
mfm_status mfm_err_set(mfm_err *err, mfm_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Clears err (when not NULL) to MFM_OK and an empty message. */
void mfm_err_clear(mfm_err *err);

#endif
