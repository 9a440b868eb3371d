/* The process-wide stop flag (spec rules 69-72).  Signals are process-wide,
   so this is the one piece of global state in libmoonfm.  Long loops call
   mfm_stop_requested() at least once per second of work and return
   MFM_ECANCELED when it is set. */
#ifndef MOONFM_STOP_H
#define MOONFM_STOP_H

/* Async-signal-safe: only sets the flag. */
void mfm_stop_request(void);
/* Nonzero once a stop was requested. */
int mfm_stop_requested(void);
/* Clears the flag (tests). */
void mfm_stop_reset(void);

#endif
