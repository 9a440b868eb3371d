/* Local Pipe mode (spec rule 131): a thread that feeds a file to the FIFOs
   <base>_0, <base>_1, ... in turn, as SageMaker feeds a Pipe channel one
   epoch after another, so a recipe can read Pipe epochs on a laptop. */
#ifndef MOONFM_PIPEFEED_H
#define MOONFM_PIPEFEED_H

#include "moonfm/status.h"

/* Starts the feeder (detached; it ends with the process or the stop
   flag): creates <base>_k, waits for a reader, writes all of src, closes,
   and goes on with k + 1.  MFM_EIO when src cannot be read or the first
   FIFO cannot be made; MFM_ENOMEM. */
mfm_status mfm_pipe_feed_start(const char *base, const char *src,
                               mfm_err *err);

#endif
