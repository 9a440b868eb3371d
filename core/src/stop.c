#include "moonfm/stop.h"

#include <signal.h>

static volatile sig_atomic_t stop_flag;

void mfm_stop_request(void) { stop_flag = 1; }
int mfm_stop_requested(void) { return stop_flag != 0; }
void mfm_stop_reset(void) { stop_flag = 0; }
