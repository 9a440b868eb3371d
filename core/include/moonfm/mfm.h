/* libmoonfm: fast factorization kernels for recommendation, in plain C11.
 *
 * The library knows nothing of Lua or of /opt/ml; the Lua binding in
 * core/lua and the host in core/host are its only callers in moonfm.
 *
 * Conventions (see STYLE.md):
 *  - every fallible function returns mfm_status and takes a last
 *    `mfm_err *err` (may be NULL) for a message;
 *  - objects are opaque, created by *_new(..., T **out, err) and released
 *    by *_free(T *), which accepts NULL;
 *  - settings are plain structs with a *_default() and a *_check() that
 *    returns NULL or a message;
 *  - long loops honour the stop flag (stop.h) and return MFM_ECANCELED.
 */
#ifndef MOONFM_MFM_H
#define MOONFM_MFM_H

#include "alloc.h"
#include "rng.h"
#include "status.h"
#include "stop.h"
#include "threads.h"
#include "log.h"
#include "pipefeed.h"
#include "fileio.h"
#include "csr.h"
#include "factors.h"
#include "idmap.h"
#include "als.h"
#include "eval.h"
#include "fm.h"
#include "merge.h"

/* "0.1.0" */
const char *mfm_version(void);

#endif
