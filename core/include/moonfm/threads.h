/* Thread settings, made in one place: our worker threads and OpenBLAS's own
   threads must not oversubscribe the cores (TOOLCHAIN P9). */
#ifndef MOONFM_THREADS_H
#define MOONFM_THREADS_H

/* Number of CPUs this process may run on (scheduler affinity), no more
   than its cgroup's CPU quota allows (read once a process), >= 1. */
int mfm_cpu_count(void);

/* The CPUs a cgroup's CPU quota grants this process, rounded up: the
   least over the cgroups of proc_cgroup (/proc/self/cgroup) and their
   parents under sys_root (/sys/fs/cgroup), v2's cpu.max or v1's
   cpu.cfs_quota_us / cpu.cfs_period_us.  0 when there is none. */
int mfm_cpu_quota(const char *sys_root, const char *proc_cgroup);

/* Resolves a requested thread count: <= 0 means "all CPUs". */
int mfm_threads_resolve(int requested);

/* Sets OpenBLAS's thread count (call with 1 while our own threads run, and
   with the resolved count around big single BLAS calls). */
void mfm_blas_threads(int n);

/* Runs fn(arg_i, i) for i in [0, n) on n threads (thread 0 is the caller)
   and waits for all.  A worker that cannot be started runs on the caller,
   so every i runs exactly once; MFM_ENOMEM only if the bookkeeping cannot
   be allocated (then nothing ran). */
#include "status.h"
mfm_status mfm_parallel(int n, void (*fn)(void *ctx, int i), void *ctx);

/* A team: fn(ctx, i, team) runs on n threads at once (thread 0 is the
   caller), and mfm_team_sync(team) waits until all n have reached it, so
   work can go in steps without starting threads for each step.  Either
   all n start and every fn returns, or none runs: MFM_ENOMEM when threads
   or bookkeeping cannot be had (the caller can then do the same steps on
   one thread). */
typedef struct mfm_team mfm_team;
mfm_status mfm_team_run(int n, void (*fn)(void *ctx, int i, mfm_team *tm),
                        void *ctx);
void mfm_team_sync(mfm_team *tm);

#endif
