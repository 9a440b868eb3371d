/* The cost of a team's barrier (mfm_team_sync) against
   pthread_barrier_wait: two threads take 2,000 steps, a barrier after
   each; in every step one of them (in turn) first spins for a given time,
   the imbalance a fit's steps have.  Prints one table: per imbalance, the
   wall time per step with each barrier.  The ideal is the imbalance
   itself; what is above it is the barrier's cost.

   Then what a parallel call of 2 threads costs besides its work (an empty
   job, 2,000 calls, median): on the pool's parked workers, and on threads
   started for the call (the way a call made from inside a pool job goes).

     cmake --build build --target bench_team && build/bench/bench_team */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "moonfm/threads.h"

enum { STEPS = 2000 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct run {
  int use_team;
  double busy; /* seconds of extra work per step */
  pthread_barrier_t pb;
} run;

static void member(void *p, int i, mfm_team *tm) {
  run *r = p;
  for (int s = 0; s < STEPS; s++) {
    if (s % 2 == i) {
      double until = now() + r->busy;
      while (now() < until) {
      }
    }
    if (r->use_team) mfm_team_sync(tm);
    else pthread_barrier_wait(&r->pb);
  }
}

static double per_step(int use_team, double busy) {
  run r = {use_team, busy, {{0}}};
  pthread_barrier_init(&r.pb, NULL, 2);
  double t0 = now();
  mfm_status st = mfm_team_run(2, member, &r);
  double t = now() - t0;
  pthread_barrier_destroy(&r.pb);
  return st == MFM_OK ? t / STEPS : -1.0;
}

static void nothing(void *ctx, int i) { (void)ctx, (void)i; }

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum { CALLS = 2000 };

/* Median seconds of an empty 2-thread mfm_parallel call. */
static double call_cost(void) {
  static double t[CALLS];
  for (int c = 0; c < CALLS; c++) {
    double t0 = now();
    mfm_parallel(2, nothing, NULL);
    t[c] = now() - t0;
  }
  qsort(t, CALLS, sizeof *t, cmp);
  return t[CALLS / 2];
}

static void from_a_job(void *ctx, int i) {
  if (i == 0) *(double *)ctx = call_cost(); /* the pool is taken */
}

int main(void) {
  const double busy_us[] = {0, 2, 5, 10, 20, 50, 100, 200};
  printf("%12s %16s %16s\n", "imbalance-us", "pthread-us/step",
         "team-us/step");
  for (size_t q = 0; q < sizeof busy_us / sizeof *busy_us; q++) {
    double b = busy_us[q] * 1e-6;
    double p = per_step(0, b), t = per_step(1, b);
    printf("%12.0f %16.1f %16.1f\n", busy_us[q], p * 1e6, t * 1e6);
  }
  double pool = call_cost(), fresh = 0.0;
  mfm_parallel(2, from_a_job, &fresh);
  printf("\n%-28s %10s\n", "empty call, 2 threads", "us/call");
  printf("%-28s %10.1f\n%-28s %10.1f\n", "pool", pool * 1e6,
         "threads started per call", fresh * 1e6);
  return 0;
}
