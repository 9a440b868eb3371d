/* C log lines in the Lua layer's format (see moonfm/log.h). */
#include "moonfm/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int threshold = MFM_LOG_INFO;

void mfm_log_set_level(int level) { atomic_store(&threshold, level); }

void mfm_log(int level, const char *fmt, ...) {
  if (level < atomic_load(&threshold)) return;
  const char *name = level >= MFM_LOG_ERROR     ? "ERROR"
                     : level >= MFM_LOG_WARNING ? "WARNING"
                     : level >= MFM_LOG_INFO    ? "INFO"
                                                : "DEBUG";
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  /* One buffer, one write: lines of several threads do not interleave. */
  char line[1024];
  int n = (int)strftime(line, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ %s ",
                (int)(ts.tv_nsec / 1000000), name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line), w = (size_t)n;
  for (size_t r = (size_t)n; r < len; r++)
    if (line[r] != '\r' && line[r] != '\033') line[w++] = line[r];
  while (w > (size_t)n && line[w - 1] == '\n') w--;
  line[w++] = '\n';
  fwrite(line, 1, w, stderr);
  fflush(stderr);
}
