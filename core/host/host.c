#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moonfm/fileio.h"

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int set(char *dst, const char *a, const char *b) {
  int n = snprintf(dst, PATH_MAX, "%s%s", a, b);
  return n > 0 && n < PATH_MAX ? 0 : -1;
}

int host_find_paths(host_paths *p) {
  char probe[2 * PATH_MAX];
  char dir[PATH_MAX];
  memset(p, 0, sizeof *p);
  ssize_t n = readlink("/proc/self/exe", p->exe, sizeof p->exe - 1);
  if (n <= 0) return -1;
  p->exe[n] = '\0';
  memcpy(dir, p->exe, (size_t)n + 1);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';

  /* Installed: <prefix>/bin/moonfm with the modules under <prefix>. */
  char prefix[PATH_MAX + 4];
  snprintf(prefix, sizeof prefix, "%s/..", dir);
  char *real = realpath(prefix, NULL); /* "/opt/moonfm", not ".../bin/.." */
  if (real && strlen(real) < sizeof prefix) strcpy(prefix, real);
  free(real);
  snprintf(probe, sizeof probe, "%s/%s/moonfm/cli.lua", prefix,
           MFM_LUA_LMOD_DIR);
  if (is_file(probe)) {
    char share[PATH_MAX];
    if (set(p->lua_dir, prefix, "/" MFM_LUA_LMOD_DIR) ||
        set(p->recipe_dir, prefix, "/" MFM_RECIPE_DIR) ||
        set(share, prefix, "/share/moonfm/data"))
      return -1;
    memcpy(p->data_dir, share, sizeof share);
    return 0;
  }
  /* Build tree: modules, recipes and data come from the source tree. */
  snprintf(probe, sizeof probe, "%s/lua/moonfm/cli.lua", MFM_SOURCE_DIR);
  if (is_file(probe)) {
    p->in_build_tree = 1;
    if (set(p->lua_dir, MFM_SOURCE_DIR, "/lua") ||
        set(p->recipe_dir, MFM_SOURCE_DIR, "/recipes") ||
        set(p->data_dir, MFM_SOURCE_DIR, "/data"))
      return -1;
    return 0;
  }
  return -1;
}

const char *host_detect_coretype(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return NULL;
  char line[8192];
  const char *type = NULL;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "flags", 5) != 0) continue;
    if (strstr(line, " avx512f")) type = "SkylakeX";
    else if (strstr(line, " avx2")) type = "Haswell";
    break;
  }
  fclose(f);
  return type;
}

void host_fatal(const char *text, int code) {
  fprintf(stderr, "%s\n", text);
  fflush(NULL);
  const char *b = getenv("SAGEMAKER_BASE_DIR");
  char out[PATH_MAX], path[PATH_MAX + 32];
  snprintf(out, sizeof out, "%s/output", b && *b ? b : "/opt/ml");
  snprintf(path, sizeof path, "%s/failure", out);
  struct stat st;
  if (stat(out, &st) == 0 && S_ISDIR(st.st_mode) && stat(path, &st) != 0) {
    /* Rule 63: at most 1024 bytes with the newline, cut at a UTF-8
       character boundary and ended by "..." (the text may hold a Lua
       traceback and paths, so not only ASCII). */
    char buf[1024];
    size_t len = strlen(text);
    if (len > sizeof buf - 1) {
      len = sizeof buf - 5;
      while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
      memcpy(buf, text, len);
      memcpy(buf + len, "...", 3);
      len += 3;
    } else {
      memcpy(buf, text, len);
    }
    buf[len++] = '\n';
    mfm_write_atomic(path, buf, len, NULL);
    /* Rule 64: the whole text too, when output/data is there. */
    snprintf(path, sizeof path, "%s/data", out);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
      size_t n = strlen(text);
      char *full = malloc(n + 1);
      snprintf(path, sizeof path, "%s/data/failure-full.txt", out);
      if (full) {
        memcpy(full, text, n);
        full[n] = '\n';
        mfm_write_atomic(path, full, n + 1, NULL);
        free(full);
      }
    }
  }
  exit(code);
}
