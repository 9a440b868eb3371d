#include "moonfm/mfm.h"

const char *mfm_version(void) { return MFM_VERSION_STRING; }
