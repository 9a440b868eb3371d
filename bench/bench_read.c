/* One read, phase by phase (for profiling the reader without Lua):
     build/bench/bench_read FORMAT PATH [REPEATS]
   prints the best of REPEATS, wall and CPU time (on a shared machine the
   CPU time is the steadier), parse and CSR build apart, and the peak RSS
   growth per row of the first repeat. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "moonfm/idmap.h"
#include "moonfm/reader.h"

static double now(int which) {
  struct timespec t;
  clock_gettime(which, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long rss_kb(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * 4;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_read csv|jsonl|sparse PATH [REPEATS]\n");
    return 2;
  }
  int reps = argc > 3 ? atoi(argv[3]) : 1;
  mfm_read_opts o = mfm_read_opts_default();
  o.format = !strcmp(argv[1], "jsonl")    ? MFM_FORMAT_JSONL
             : !strcmp(argv[1], "sparse") ? MFM_FORMAT_SPARSE
                                          : MFM_FORMAT_CSV;
  o.header = 0;
  double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
  long base = rss_kb(), peak = 0;
  mfm_read_report rep;
  memset(&rep, 0, sizeof rep);
  for (int k = 0; k < reps; k++) {
    mfm_err err;
    mfm_idmap *u, *i;
    mfm_reader *r;
    mfm_source *s;
    mfm_csr *x;
    mfm_idmap_new(&u, &err);
    mfm_idmap_new(&i, &err);
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    if (mfm_reader_new(&o, u, i, 1, 1, &r, &err) ||
        mfm_source_open(argv[2], NULL, &s, &err) ||
        mfm_reader_feed(r, s, argv[2], &err)) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
    mfm_source_free(s);
    double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
    if (mfm_reader_finish(r, &x, &err)) {
      fprintf(stderr, "%s\n", err.msg);
      return 1;
    }
    double t2 = now(CLOCK_MONOTONIC), c2 = now(CLOCK_PROCESS_CPUTIME_ID);
    rep = *mfm_reader_report(r);
    mfm_reader_free(r);
    if (k == 0) {
      struct rusage ru;
      getrusage(RUSAGE_SELF, &ru);
      peak = ru.ru_maxrss - base;
    }
    double v[5] = {t1 - t0, t2 - t1, t2 - t0, c1 - c0, c2 - c1};
    for (int j = 0; j < 5; j++)
      if (v[j] < best[j]) best[j] = v[j];
    mfm_csr_free(x);
    mfm_idmap_free(u);
    mfm_idmap_free(i);
  }
  printf("wall: parse %.3fs csr %.3fs (%.0f MB/s)  cpu: parse %.3fs csr "
         "%.3fs (%.0f MB/s, %.2f Mrows/s)  peak %.1f bytes/row\n",
         best[0], best[1], (double)rep.bytes / 1e6 / best[2], best[3],
         best[4], (double)rep.bytes / 1e6 / (best[3] + best[4]),
         (double)rep.rows / 1e6 / (best[3] + best[4]),
         (double)peak * 1024 / (double)rep.rows);
  return 0;
}
