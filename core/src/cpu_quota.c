/* The CPU time a cgroup grants (`docker run --cpus=2`, a Kubernetes or ECS
   limit).  The scheduler affinity still lists every core of the host
   there, and a team of that many threads, spinning at its barriers,
   would spend the quota waiting for members the kernel has throttled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonfm/threads.h"

/* ceil(quota / period), or 0 for none or an unreadable value. */
static int ratio(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return 0;
  long long n = (quota + period - 1) / period;
  return n > 1 << 20 ? 1 << 20 : (int)n;
}

/* cgroup v2's cpu.max in dir: "max 100000" (none) or "200000 100000". */
static int v2_limit(const char *dir) {
  char path[4128], quota[32];
  long long period;
  snprintf(path, sizeof path, "%s/cpu.max", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int n = fscanf(f, "%31s %lld", quota, &period);
  fclose(f);
  if (n != 2 || strcmp(quota, "max") == 0) return 0;
  return ratio(atoll(quota), period);
}

/* cgroup v1's cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us in dir. */
static int v1_limit(const char *dir) {
  char path[4128];
  long long v[2] = {0, 0};
  const char *name[2] = {"cpu.cfs_quota_us", "cpu.cfs_period_us"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, name[i]);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = fscanf(f, "%lld", &v[i]);
    fclose(f);
    if (n != 1) return 0;
  }
  return ratio(v[0], v[1]);
}

/* The least limit of dir and its parents down to root (a limit anywhere
   above a process applies to it); 0 for none. */
static int least_up(const char *root, const char *rel, int (*limit)(const char *)) {
  char dir[4096];
  int best = 0;
  snprintf(dir, sizeof dir, "%s%s", root, strcmp(rel, "/") == 0 ? "" : rel);
  size_t stop = strlen(root);
  for (;;) {
    int n = limit(dir);
    if (n > 0 && (best == 0 || n < best)) best = n;
    char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) < stop) break;
    *slash = 0;
  }
  return best;
}

int mfm_cpu_quota(const char *sys_root, const char *proc_cgroup) {
  FILE *f = fopen(proc_cgroup, "r");
  if (!f) return 0;
  char line[4096], dir[4096];
  int best = 0;
  /* Lines "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1). */
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
    if (!b || b[1] != '/') continue;
    *a = *b = 0;
    const char *ctl = a + 1, *rel = b + 1;
    int n = 0;
    if (strcmp(line, "0") == 0 && *ctl == 0) {
      n = least_up(sys_root, rel, v2_limit);
    } else {
      /* v1: the cpu controller, alone or joined ("cpu,cpuacct"). */
      char list[256];
      snprintf(list, sizeof list, ",%s,", ctl);
      if (!strstr(list, ",cpu,")) continue;
      snprintf(dir, sizeof dir, "%s/%s", sys_root, ctl);
      n = least_up(dir, rel, v1_limit);
      if (n == 0) {
        snprintf(dir, sizeof dir, "%s/cpu", sys_root);
        n = least_up(dir, rel, v1_limit);
      }
    }
    if (n > 0 && (best == 0 || n < best)) best = n;
  }
  fclose(f);
  return best;
}
