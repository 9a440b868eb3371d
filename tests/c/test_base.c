/* The foundation: status messages, allocation and its fault injection, the
   random generator, atomic writes, the parallel runner. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "check.h"
#include "moonfm/mfm.h"

static void test_status(void) {
  mfm_err err;
  CHECK(mfm_err_set(&err, MFM_EINVAL, "bad %d", 7) == MFM_EINVAL);
  CHECK(strcmp(err.msg, "bad 7") == 0 && err.code == MFM_EINVAL);
  CHECK(mfm_err_set(NULL, MFM_EIO, "x") == MFM_EIO);
  CHECK(strcmp(mfm_status_string(MFM_ECANCELED), "stopped") == 0);
  mfm_err_clear(&err);
  CHECK(err.code == MFM_OK && err.msg[0] == '\0');
}

static void test_alloc(void) {
  void *p = mfm_alloc_aligned(100, 4);
  CHECK(p && ((uintptr_t)p % 64) == 0);
  CHECK(((unsigned char *)p)[399] == 0);
  mfm_free_aligned(p);
  CHECK(mfm_malloc_array((size_t)-1, 16) == NULL);
  CHECK(mfm_alloc_aligned((size_t)-1, 16) == NULL);
  mfm_alloc_fail_at(2);
  void *a = mfm_malloc(8), *b = mfm_malloc(8), *c = mfm_malloc(8);
  CHECK(a != NULL && b == NULL && c != NULL);
  CHECK(mfm_alloc_fail_at(0) == 3);
  mfm_free(a);
  mfm_free(c);
}

static void test_rng(void) {
  mfm_rng r1, r2;
  mfm_rng_seed(&r1, 42);
  mfm_rng_seed(&r2, 42);
  int same = 1, in_range = 1;
  double sum = 0;
  int counts[10] = {0};
  for (int i = 0; i < 100000; i++) {
    uint64_t a = mfm_rng_next(&r1), b = mfm_rng_next(&r2);
    same &= a == b;
    uint32_t x = mfm_rng_below(&r1, 10);
    mfm_rng_below(&r2, 10);
    in_range &= x < 10;
    counts[x < 10 ? x : 0]++;
    float f = mfm_rng_float(&r1);
    mfm_rng_float(&r2);
    in_range &= f >= 0.0f && f < 1.0f;
    sum += f;
  }
  CHECK(same);
  CHECK(in_range);
  CHECK(fabs(sum / 100000 - 0.5) < 0.01);
  for (int i = 0; i < 10; i++) CHECK(abs(counts[i] - 10000) < 600);
}

static const char *tmpdir(void) {
  static char dir[512];
  const char *base = getenv("MFM_TEST_TMP");
  snprintf(dir, sizeof dir, "%s/base-%d", base ? base : "/tmp", (int)getpid());
  char cmd[600];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
  if (system(cmd) != 0) return "/tmp";
  return dir;
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.' || strncmp(e->d_name, ".moonfm-tmp-", 12) == 0)
      n++;
  if (d) closedir(d);
  return n;
}

static void test_atomic(void) {
  const char *dir = tmpdir();
  char path[600];
  snprintf(path, sizeof path, "%s/out.txt", dir);
  mfm_err err;
  CHECK(mfm_write_atomic(path, "hello", 5, &err) == MFM_OK);
  char buf[16] = {0};
  FILE *f = fopen(path, "r");
  CHECK(f && fread(buf, 1, sizeof buf, f) == 5);
  if (f) fclose(f);
  CHECK(strcmp(buf, "hello") == 0);
  /* An aborted write leaves the old file and no temporary behind. */
  mfm_atomic_file *af;
  CHECK(mfm_atomic_open(path, &af, &err) == MFM_OK);
  CHECK(mfm_atomic_write(af, "partial", 7, &err) == MFM_OK);
  CHECK(count_entries(dir) == 2);
  mfm_atomic_abort(af);
  CHECK(count_entries(dir) == 1);
  f = fopen(path, "r");
  memset(buf, 0, sizeof buf);
  CHECK(f && fread(buf, 1, sizeof buf, f) == 5);
  if (f) fclose(f);
  /* The second-SIGTERM path (rule 76) removes every temporary still being
     written, committed files stay, and the writers can still be closed. */
  mfm_atomic_file *w[3];
  char other[640];
  snprintf(other, sizeof other, "%s/other.txt", dir);
  CHECK(mfm_atomic_open(path, &w[0], &err) == MFM_OK);
  CHECK(mfm_atomic_open(other, &w[1], &err) == MFM_OK);
  CHECK(mfm_atomic_open(other, &w[2], &err) == MFM_OK);
  CHECK(mfm_atomic_commit(w[2], &err) == MFM_OK);
  CHECK(count_entries(dir) == 4);
  mfm_atomic_unlink_all();
  CHECK(count_entries(dir) == 2); /* out.txt and the committed other.txt */
  mfm_atomic_abort(w[0]);
  mfm_atomic_abort(w[1]);
  CHECK(count_entries(dir) == 2);
  unlink(other);
  /* A folder that does not exist is an I/O error naming the path. */
  CHECK(mfm_write_atomic("/nonexistent-dir/x", "a", 1, &err) == MFM_EIO);
  CHECK(strstr(err.msg, "/nonexistent-dir/x") != NULL);
  /* Allocation failures are reported, not crashed on. */
  for (size_t n = 1; n <= 4; n++) {
    mfm_alloc_fail_at(n);
    mfm_status st = mfm_write_atomic(path, "again", 5, &err);
    mfm_alloc_fail_at(0);
    CHECK(st == MFM_OK || st == MFM_ENOMEM);
  }
  CHECK(count_entries(dir) == 1);
  unlink(path);
  rmdir(dir);
}

static void add_one(void *ctx, int i) {
  int *slots = ctx;
  slots[i] += i + 1;
}

static void test_parallel(void) {
  int slots[4] = {0};
  CHECK(mfm_parallel(4, add_one, slots) == MFM_OK);
  for (int i = 0; i < 4; i++) CHECK(slots[i] == i + 1);
  CHECK(mfm_cpu_count() >= 1);
  CHECK(mfm_threads_resolve(0) == mfm_cpu_count());
  CHECK(mfm_threads_resolve(3) == 3);
}

/* A team of 4 in 200 steps: after each sync, every member has finished
   the step (a sync that did not wait would let a member look early). */
typedef struct team_ctx {
  atomic_int done[4];
  atomic_int early, calls;
} team_ctx;

static void team_member(void *p, int i, mfm_team *tm) {
  team_ctx *c = p;
  atomic_fetch_add(&c->calls, 1);
  for (int s = 0; s < 200; s++) {
    atomic_fetch_add(&c->done[i], 1);
    mfm_team_sync(tm);
    for (int j = 0; j < 4; j++)
      if (atomic_load(&c->done[j]) < s + 1) atomic_fetch_add(&c->early, 1);
  }
}

static void test_team(void) {
  team_ctx c = {0};
  CHECK(mfm_team_run(4, team_member, &c) == MFM_OK);
  CHECK(atomic_load(&c.calls) == 4 && atomic_load(&c.early) == 0);
  for (int j = 0; j < 4; j++) CHECK(atomic_load(&c.done[j]) == 200);
  /* Without its bookkeeping the team does not run at all. */
  team_ctx d = {0};
  mfm_alloc_fail_at(1);
  CHECK(mfm_team_run(4, team_member, &d) == MFM_ENOMEM);
  mfm_alloc_fail_at(0);
  CHECK(atomic_load(&d.calls) == 0);
}

/* The pool of workers: calls in a row, calls that need more workers than
   it has, a call from inside a job and calls from two threads at once
   (those two take threads of their own) all run every index once. */
typedef struct sum_ctx {
  atomic_long sum;
  int nested;
} sum_ctx;

/* Adds i + 1; a nested one adds 100 times what a call of 3 inside adds
   (CHECK is for the main thread only). */
static void add_index(void *p, int i) {
  sum_ctx *c = p;
  atomic_fetch_add(&c->sum, i + 1);
  if (c->nested) {
    sum_ctx in = {0};
    if (mfm_parallel(3, add_index, &in) == MFM_OK)
      atomic_fetch_add(&c->sum, 100 * atomic_load(&in.sum));
  }
}

static long calls_sum(int calls, int n) {
  long bad = 0;
  for (int k = 0; k < calls; k++) {
    sum_ctx c = {0};
    if (mfm_parallel(n, add_index, &c) != MFM_OK ||
        atomic_load(&c.sum) != (long)n * (n + 1) / 2)
      bad++;
  }
  return bad;
}

static void *calls_thread(void *p) {
  *(long *)p = calls_sum(500, 2);
  return NULL;
}

static void test_pool(void) {
  CHECK(calls_sum(2000, 2) == 0);
  CHECK(calls_sum(20, 7) == 0); /* more workers than there were */
  CHECK(calls_sum(20, 3) == 0);
  sum_ctx c = {0, 1};
  CHECK(mfm_parallel(2, add_index, &c) == MFM_OK);
  CHECK(atomic_load(&c.sum) == 3 + 2 * 600);
  long bad[2] = {-1, -1};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, calls_thread, &bad[0]) == 0);
  calls_thread(&bad[1]);
  pthread_join(t, NULL);
  CHECK(bad[0] == 0 && bad[1] == 0);
  team_ctx d = {0};
  CHECK(mfm_team_run(4, team_member, &d) == MFM_OK);
  CHECK(atomic_load(&d.calls) == 4 && atomic_load(&d.early) == 0);
}

static void test_stop(void) {
  CHECK(!mfm_stop_requested());
  mfm_stop_request();
  CHECK(mfm_stop_requested());
  mfm_stop_reset();
  CHECK(!mfm_stop_requested());
}

/* Writes text to dir/name, making dir first. */
static void put(const char *dir, const char *name, const char *text) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && printf '%%s' '%s' > '%s/%s'",
           dir, text, dir, name);
  CHECK(system(cmd) == 0);
}

/* The cgroup CPU quota, on fake /sys/fs/cgroup and /proc/self/cgroup. */
static void test_cpu_quota(void) {
  char top[600], root[700], d[900], proc[700];
  snprintf(top, sizeof top, "%s/quota", tmpdir());
  snprintf(root, sizeof root, "%s/cg", top);
  snprintf(proc, sizeof proc, "%s/proc-cgroup", top);
  CHECK(mfm_cpu_quota(root, proc) == 0); /* no files: none */
  put(top, "proc-cgroup", "0::/\n");
  CHECK(mfm_cpu_quota(root, proc) == 0);
  /* v2 in a container (docker run --cpus=1.5): rounded up. */
  put(root, "cpu.max", "150000 100000\n");
  CHECK(mfm_cpu_quota(root, proc) == 2);
  put(root, "cpu.max", "max 100000\n");
  CHECK(mfm_cpu_quota(root, proc) == 0);
  /* v2 on a host: the least limit of the cgroup and its parents. */
  put(top, "proc-cgroup", "0::/a/b\n");
  snprintf(d, sizeof d, "%s/a/b", root);
  put(d, "cpu.max", "max 100000\n");
  snprintf(d, sizeof d, "%s/a", root);
  put(d, "cpu.max", "300000 100000\n");
  CHECK(mfm_cpu_quota(root, proc) == 3);
  put(d, "cpu.max", "garbage\n");
  CHECK(mfm_cpu_quota(root, proc) == 0);
  /* v1: the cpu controller's quota and period (-1: none). */
  put(top, "proc-cgroup", "4:memory:/x\n2:cpu,cpuacct:/\n0::/\n");
  snprintf(d, sizeof d, "%s/cpu,cpuacct", root);
  put(d, "cpu.cfs_quota_us", "250000\n");
  put(d, "cpu.cfs_period_us", "100000\n");
  CHECK(mfm_cpu_quota(root, proc) == 3);
  put(d, "cpu.cfs_quota_us", "-1\n");
  CHECK(mfm_cpu_quota(root, proc) == 0);
  CHECK(mfm_cpu_count() >= 1);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
  CHECK(system(cmd) == 0);
}

int main(void) {
  test_status();
  test_cpu_quota();
  test_alloc();
  test_rng();
  test_atomic();
  test_parallel();
  test_team();
  test_pool();
  test_stop();
  DONE("base");
}
