#include "moonfm/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *mfm_status_string(mfm_status s) {
  switch (s) {
  case MFM_OK: return "ok";
  case MFM_ENOMEM: return "out of memory";
  case MFM_EINVAL: return "invalid argument";
  case MFM_EIO: return "input/output error";
  case MFM_EFORMAT: return "malformed input";
  case MFM_ECANCELED: return "stopped";
  }
  return "unknown status";
}

mfm_status mfm_err_set(mfm_err *err, mfm_status code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void mfm_err_clear(mfm_err *err) {
  if (err) {
    err->code = MFM_OK;
    err->msg[0] = '\0';
  }
}
