#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "moonfm/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "moonfm/alloc.h"

/* The cgroup's quota, read once: reading it took 59 us, and every fit
   call (each epoch) asks for the CPU count. */
static int quota;
static pthread_once_t quota_once = PTHREAD_ONCE_INIT;
static void read_quota(void) {
  quota = mfm_cpu_quota("/sys/fs/cgroup", "/proc/self/cgroup");
}

int mfm_cpu_count(void) {
  cpu_set_t set;
  long n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n <= 0) n = 1;
  pthread_once(&quota_once, read_quota);
  return quota > 0 && quota < n ? quota : (int)n;
}

int mfm_threads_resolve(int requested) {
  return requested > 0 ? requested : mfm_cpu_count();
}

void mfm_blas_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

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

/* How long a waiting thread spins before it sleeps: when the threads'
   work is balanced they arrive within microseconds of each other, and a
   sleeper took 3 to 40 us to wake in this VM (bench/bench_team.c). */
#define MFM_SPIN_NS 100000.0

typedef struct spin {
  unsigned i;
  double until;
} spin;

/* One turn of a bounded spin; 0 once MFM_SPIN_NS have passed. */
static int spin_on(spin *s) {
  cpu_relax();
  if ((++s->i & 255) == 0) {
    double t = now_ns();
    if (s->until == 0.0)
      s->until = t + MFM_SPIN_NS;
    else if (t > s->until)
      return 0;
  }
  return 1;
}

typedef void (*job_fn)(void *ctx, int i);

/* ---- Threads started for one call ------------------------------------ */

/* Used when the pool is taken (a call made from inside a pool job, or from
   another thread at the same time) or cannot have enough workers. */

typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* 0 wait, 1 go, -1 give up */
  job_fn fn;
  void *ctx;
} gate;

typedef struct job {
  job_fn fn;
  void *ctx;
  int i;
} job;

static void *run_job(void *p) {
  job *j = p;
  j->fn(j->ctx, j->i);
  return NULL;
}

/* A gated job waits until all its threads are started: a team's barrier
   with a member missing would never open. */
static void run_gated(void *p, int i) {
  gate *g = p;
  pthread_mutex_lock(&g->mu);
  while (g->state == 0) pthread_cond_wait(&g->cv, &g->mu);
  int go = g->state > 0;
  pthread_mutex_unlock(&g->mu);
  if (go) g->fn(g->ctx, i);
}

/* fn(ctx, i) for i in [1, n) on new threads and 0 here.  An index whose
   thread cannot be started runs here too; with all_or_none none runs
   then (MFM_ENOMEM). */
static mfm_status spawn_run(int n, job_fn fn, void *ctx, int all_or_none) {
  pthread_t *tid = mfm_malloc_array((size_t)n, sizeof *tid);
  job *jobs = mfm_malloc_array((size_t)n, sizeof *jobs);
  mfm_status st = MFM_ENOMEM;
  if (!tid || !jobs) goto out;
  gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, fn, ctx};
  for (int i = 0; i < n; i++)
    jobs[i] = all_or_none ? (job){run_gated, &g, i} : (job){fn, ctx, i};
  int started = 0;
  for (int i = 1; i < n; i++) {
    if (pthread_create(&tid[i], NULL, run_job, &jobs[i]) != 0) break;
    started++;
  }
  if (all_or_none) {
    pthread_mutex_lock(&g.mu);
    g.state = started == n - 1 ? 1 : -1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    if (started == n - 1) {
      fn(ctx, 0);
      st = MFM_OK;
    }
  } else {
    /* Started threads cannot be undone: the rest run here. */
    for (int i = started + 1; i < n; i++) fn(ctx, i);
    fn(ctx, 0);
    st = MFM_OK;
  }
  for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
out:
  mfm_free(tid);
  mfm_free(jobs);
  return st;
}

/* ---- The pool -------------------------------------------------------- */

/* Workers started on first use and kept, parked, for the next call:
   starting and joining a thread cost about 95 us a call in this VM, and a
   k-OS fit call at ML-1M size (2 ms on 2 threads) makes two parallel
   calls.  One call at a time has the pool; worker w runs index w. */
#define POOL_MAX 256

static struct {
  pthread_mutex_t mu;
  pthread_cond_t done; /* the caller, asleep until the job is done */
  int nw;              /* workers 1..nw are running */
  job_fn fn;
  void *ctx;
  _Alignas(64) atomic_uint_least64_t job; /* jobs posted << 16 | n */
  _Alignas(64) atomic_int left;           /* workers still in the job */
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
            .done = PTHREAD_COND_INITIALIZER};

static struct {
  pthread_cond_t go;    /* worker w, asleep until a job is posted */
  int asleep;           /* under pool.mu */
  uint_least64_t start; /* the job word when it was started */
} slot[POOL_MAX];

static atomic_flag pool_taken = ATOMIC_FLAG_INIT;

/* A forked child has none of the workers (posix_spawn children exec at
   once; this is for a child that goes on running our code). */
static void pool_forget(void) {
  pthread_mutex_init(&pool.mu, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.nw = 0;
  atomic_flag_clear(&pool_taken);
}

static void pool_register_fork(void) {
  pthread_atfork(NULL, NULL, pool_forget);
}

/* Waits until the job word differs from seen.  After a job of its own a
   worker spins first (the next call tends to follow within microseconds:
   a fit hashes its data, then runs its epoch); a worker the last job had
   no use for goes to sleep at once. */
static uint_least64_t pool_wait(int w, uint_least64_t seen, int spin_first) {
  uint_least64_t j;
  for (spin s = {0, 0.0}; spin_first && spin_on(&s);)
    if ((j = atomic_load_explicit(&pool.job, memory_order_acquire)) != seen)
      return j;
  pthread_mutex_lock(&pool.mu);
  slot[w].asleep = 1;
  while ((j = atomic_load_explicit(&pool.job, memory_order_acquire)) == seen)
    pthread_cond_wait(&slot[w].go, &pool.mu);
  slot[w].asleep = 0;
  pthread_mutex_unlock(&pool.mu);
  return j;
}

static void *pool_worker(void *p) {
  int w = (int)(intptr_t)p;
  uint_least64_t seen = slot[w].start;
  int mine = 0;
  for (;;) {
    seen = pool_wait(w, seen, mine);
    mine = w < (int)(seen & 0xffff);
    if (!mine) continue;
    pool.fn(pool.ctx, w);
    if (atomic_fetch_sub_explicit(&pool.left, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&pool.mu);
      pthread_cond_signal(&pool.done);
      pthread_mutex_unlock(&pool.mu);
    }
  }
  return NULL;
}

/* Starts workers until there are `want` (the pool is ours).  They take no
   asynchronous signals: those stay with the threads that were there. */
static void pool_grow(int want) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, pool_register_fork);
  if (want > POOL_MAX - 1) want = POOL_MAX - 1;
  if (pool.nw >= want) return;
  sigset_t block, old;
  sigfillset(&block);
  static const int faults[] = {SIGSEGV, SIGBUS,  SIGFPE, SIGILL,
                               SIGTRAP, SIGABRT, SIGSYS};
  for (size_t q = 0; q < sizeof faults / sizeof *faults; q++)
    sigdelset(&block, faults[q]);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  while (pool.nw < want) {
    int w = pool.nw + 1;
    pthread_t t;
    if (pthread_cond_init(&slot[w].go, NULL) != 0) break;
    slot[w].asleep = 0;
    slot[w].start = atomic_load(&pool.job);
    if (pthread_create(&t, NULL, pool_worker, (void *)(intptr_t)w) != 0) {
      pthread_cond_destroy(&slot[w].go);
      break;
    }
    pthread_detach(t);
    pool.nw = w;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Runs fn(ctx, i), i in [0, n), on workers 1..n-1 and here. */
static void pool_run(int n, job_fn fn, void *ctx) {
  pool.fn = fn;
  pool.ctx = ctx;
  atomic_store_explicit(&pool.left, n - 1, memory_order_relaxed);
  pthread_mutex_lock(&pool.mu);
  uint_least64_t j = atomic_load_explicit(&pool.job, memory_order_relaxed);
  atomic_store_explicit(&pool.job, ((j >> 16) + 1) << 16 | (unsigned)n,
                        memory_order_release);
  for (int w = 1; w < n; w++)
    if (slot[w].asleep) pthread_cond_signal(&slot[w].go);
  pthread_mutex_unlock(&pool.mu);
  fn(ctx, 0);
  for (spin s = {0, 0.0}; spin_on(&s);)
    if (atomic_load_explicit(&pool.left, memory_order_acquire) == 0) return;
  pthread_mutex_lock(&pool.mu);
  while (atomic_load_explicit(&pool.left, memory_order_acquire) != 0)
    pthread_cond_wait(&pool.done, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
}

/* On the pool when it is free and can have the workers, else on threads
   of the call's own. */
static mfm_status run_n(int n, job_fn fn, void *ctx, int all_or_none) {
  if (n <= 1) {
    fn(ctx, 0);
    return MFM_OK;
  }
  if (atomic_flag_test_and_set_explicit(&pool_taken, memory_order_acquire))
    return spawn_run(n, fn, ctx, all_or_none);
  pool_grow(n - 1);
  int ok = pool.nw >= n - 1;
  if (ok) pool_run(n, fn, ctx);
  atomic_flag_clear_explicit(&pool_taken, memory_order_release);
  return ok ? MFM_OK : spawn_run(n, fn, ctx, all_or_none);
}

mfm_status mfm_parallel(int n, void (*fn)(void *ctx, int i), void *ctx) {
  return run_n(n, fn, ctx, 0);
}

/* ---- Teams ----------------------------------------------------------- */

struct mfm_team {
  pthread_mutex_t mu;
  pthread_cond_t step; /* the members asleep in mfm_team_sync */
  int n;
  _Alignas(64) atomic_uint arrived;
  _Alignas(64) atomic_uint gen; /* barriers passed */
  void (*fn)(void *ctx, int i, mfm_team *tm);
  void *ctx;
};

static void run_member(void *p, int i) {
  mfm_team *tm = p;
  tm->fn(tm->ctx, i, tm);
}

mfm_status mfm_team_run(int n, void (*fn)(void *ctx, int i, mfm_team *tm),
                        void *ctx) {
  mfm_team *tm = n >= 1 ? mfm_malloc(sizeof *tm) : NULL;
  if (!tm) return MFM_ENOMEM;
  pthread_mutex_init(&tm->mu, NULL);
  pthread_cond_init(&tm->step, NULL);
  atomic_init(&tm->arrived, 0);
  atomic_init(&tm->gen, 0);
  tm->n = n;
  tm->fn = fn;
  tm->ctx = ctx;
  mfm_status st = run_n(n, run_member, tm, 1);
  pthread_cond_destroy(&tm->step);
  pthread_mutex_destroy(&tm->mu);
  mfm_free(tm);
  return st;
}

/* A barrier that spins for up to MFM_SPIN_NS before it sleeps:
   pthread_barrier_wait, which sleeps at once, added 3 to 40 us a step in
   this VM to wake the sleeper (bench/bench_team.c). */
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
  for (spin s = {0, 0.0}; spin_on(&s);)
    if (atomic_load_explicit(&tm->gen, memory_order_acquire) != g) return;
  pthread_mutex_lock(&tm->mu);
  while (atomic_load_explicit(&tm->gen, memory_order_acquire) == g)
    pthread_cond_wait(&tm->step, &tm->mu);
  pthread_mutex_unlock(&tm->mu);
}
