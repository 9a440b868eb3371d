#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "moonfm/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "moonfm/alloc.h"

int mfm_cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int mfm_threads_resolve(int requested) {
  return requested > 0 ? requested : mfm_cpu_count();
}

void mfm_blas_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

typedef struct job {
  void (*fn)(void *ctx, int i);
  void *ctx;
  int i;
} job;

static void *run_job(void *p) {
  job *j = p;
  j->fn(j->ctx, j->i);
  return NULL;
}

mfm_status mfm_parallel(int n, void (*fn)(void *ctx, int i), void *ctx) {
  if (n <= 1) {
    fn(ctx, 0);
    return MFM_OK;
  }
  pthread_t *tid = mfm_malloc_array((size_t)n, sizeof *tid);
  job *jobs = mfm_malloc_array((size_t)n, sizeof *jobs);
  int started = 0;
  mfm_status st = MFM_OK;
  if (!tid || !jobs) {
    st = MFM_ENOMEM;
    goto done;
  }
  for (int i = 0; i < n; i++) jobs[i] = (job){fn, ctx, i};
  /* A worker that cannot be started is run on this thread instead. */
  for (int i = 1; i < n; i++) {
    if (pthread_create(&tid[i], NULL, run_job, &jobs[i]) != 0) break;
    started++;
  }
  if (started != n - 1) {
    /* Cannot undo started threads; let them run and do the rest here. */
    for (int i = started + 1; i < n; i++) fn(ctx, i);
  }
  fn(ctx, 0);
  for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
done:
  mfm_free(tid);
  mfm_free(jobs);
  return st;
}
