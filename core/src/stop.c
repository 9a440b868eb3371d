#include "moonfm/stop.h"

#include <stdatomic.h>

/* A lock-free atomic, not a volatile sig_atomic_t: a signal handler may
   set it (C11 7.14.1.1) and so may another thread (the server, tests)
   without a data race.  Relaxed: the flag publishes nothing else. */
static atomic_int stop_flag;

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop flag must be lock-free");

void mfm_stop_request(void) {
  atomic_store_explicit(&stop_flag, 1, memory_order_relaxed);
}
int mfm_stop_requested(void) {
  return atomic_load_explicit(&stop_flag, memory_order_relaxed) != 0;
}
void mfm_stop_reset(void) {
  atomic_store_explicit(&stop_flag, 0, memory_order_relaxed);
}
