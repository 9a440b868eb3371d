#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "moonfm/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
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

struct mfm_team {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int gate; /* 0 wait, 1 go, -1 give up */
  int n;
  pthread_cond_t step; /* the members asleep in mfm_team_sync */
  _Alignas(64) atomic_uint arrived;
  _Alignas(64) atomic_uint gen; /* barriers passed */
  void (*fn)(void *ctx, int i, mfm_team *tm);
  void *ctx;
};

typedef struct member {
  mfm_team *tm;
  int i;
} member;

static void *run_member(void *p) {
  member *me = p;
  mfm_team *tm = me->tm;
  pthread_mutex_lock(&tm->mu);
  while (tm->gate == 0) pthread_cond_wait(&tm->cv, &tm->mu);
  int go = tm->gate > 0;
  pthread_mutex_unlock(&tm->mu);
  if (go) tm->fn(tm->ctx, me->i, tm);
  return NULL;
}

static void open_gate(mfm_team *tm, int gate) {
  pthread_mutex_lock(&tm->mu);
  tm->gate = gate;
  pthread_cond_broadcast(&tm->cv);
  pthread_mutex_unlock(&tm->mu);
}

mfm_status mfm_team_run(int n, void (*fn)(void *ctx, int i, mfm_team *tm),
                        void *ctx) {
  mfm_team *tm = mfm_malloc(sizeof *tm);
  pthread_t *tid = mfm_malloc_array((size_t)n, sizeof *tid);
  member *mem = mfm_malloc_array((size_t)n, sizeof *mem);
  mfm_status st = MFM_ENOMEM;
  if (!tm || !tid || !mem || n < 1) goto out;
  pthread_mutex_init(&tm->mu, NULL);
  pthread_cond_init(&tm->cv, NULL);
  pthread_cond_init(&tm->step, NULL);
  atomic_init(&tm->arrived, 0);
  atomic_init(&tm->gen, 0);
  tm->n = n;
  tm->gate = 0;
  tm->fn = fn;
  tm->ctx = ctx;
  int started = 0;
  /* Members wait at the gate until all are started: a barrier with a
     missing member would never open. */
  for (int i = 1; i < n; i++) {
    mem[i] = (member){tm, i};
    if (pthread_create(&tid[i], NULL, run_member, &mem[i]) != 0) break;
    started++;
  }
  open_gate(tm, started == n - 1 ? 1 : -1);
  if (started == n - 1) {
    fn(ctx, 0, tm);
    st = MFM_OK;
  }
  for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
  pthread_cond_destroy(&tm->step);
  pthread_cond_destroy(&tm->cv);
  pthread_mutex_destroy(&tm->mu);
out:
  mfm_free(tm);
  mfm_free(tid);
  mfm_free(mem);
  return st;
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* A barrier that spins for up to MFM_SPIN_NS before it sleeps: when the
   members' work is balanced they arrive within microseconds of each
   other, and pthread_barrier_wait, which sleeps at once, added 3 to 40 us
   a step in this VM to wake the sleeper (bench/bench_team.c). */
#define MFM_SPIN_NS 100000.0
void mfm_team_sync(mfm_team *tm) {
  unsigned g = atomic_load_explicit(&tm->gen, memory_order_acquire);
  if (atomic_fetch_add_explicit(&tm->arrived, 1, memory_order_acq_rel) + 1 ==
      (unsigned)tm->n) {
    /* The last one: no member can arrive again before gen moves. */
    atomic_store_explicit(&tm->arrived, 0, memory_order_relaxed);
    pthread_mutex_lock(&tm->mu);
    atomic_store_explicit(&tm->gen, g + 1, memory_order_release);
    pthread_cond_broadcast(&tm->step);
    pthread_mutex_unlock(&tm->mu);
    return;
  }
  double until = 0.0;
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&tm->gen, memory_order_acquire) != g) return;
    cpu_relax();
    if ((i & 255) == 0) {
      double t = now_ns();
      if (until == 0.0) until = t + MFM_SPIN_NS;
      else if (t > until) break;
    }
  }
  pthread_mutex_lock(&tm->mu);
  while (atomic_load_explicit(&tm->gen, memory_order_acquire) == g)
    pthread_cond_wait(&tm->step, &tm->mu);
  pthread_mutex_unlock(&tm->mu);
}
