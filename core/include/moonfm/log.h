/* Log lines from C, in the Lua layer's format (rule 83): an ISO-8601 UTC
   timestamp, a level, the message, on stderr; below the level set with
   mfm_log_set_level (Python's numbers, rule 49) nothing is written.  For
   threads that have no Lua state (the HTTP server's). */
#ifndef MOONFM_LOG_H
#define MOONFM_LOG_H

enum { MFM_LOG_DEBUG = 10, MFM_LOG_INFO = 20, MFM_LOG_WARNING = 30,
       MFM_LOG_ERROR = 40 };

void mfm_log_set_level(int level);

/* One line (a trailing newline in fmt's result is dropped; carriage
   returns and escapes are removed, rule 82). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void mfm_log(int level, const char *fmt, ...);

#endif
