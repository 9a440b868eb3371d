/* The cost of a team's barrier (mfm_team_sync) against
   pthread_barrier_wait: two threads take 2,000 steps, a barrier after
   each; in every step one of them (in turn) first spins for a given time,
   the imbalance a fit's steps have.  Prints one table: per imbalance, the
   wall time per step with each barrier.  The ideal is the imbalance
   itself; what is above it is the barrier's cost.

     cmake --build build --target bench_team && build/bench/bench_team */
#include <pthread.h>
#include <stdio.h>
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

int main(void) {
  const double busy_us[] = {0, 2, 5, 10, 20, 50, 100, 200};
  printf("%12s %16s %16s\n", "imbalance-us", "pthread-us/step",
         "team-us/step");
  for (size_t q = 0; q < sizeof busy_us / sizeof *busy_us; q++) {
    double b = busy_us[q] * 1e-6;
    double p = per_step(0, b), t = per_step(1, b);
    printf("%12.0f %16.1f %16.1f\n", busy_us[q], p * 1e6, t * 1e6);
  }
  return 0;
}
