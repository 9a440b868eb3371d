/* What the host does in C before (or instead of) Lua. */
#ifndef MOONFM_HOST_H
#define MOONFM_HOST_H

#include <limits.h>

/* Rule 74: exit 143 if stop handling has not finished by then. */
#define MFM_STOP_DEADLINE_SECONDS 95

typedef struct host_paths {
  char exe[PATH_MAX];
  char lua_dir[PATH_MAX];    /* holds moonfm/cli.lua */
  char recipe_dir[PATH_MAX]; /* bundled recipes */
  char data_dir[PATH_MAX];   /* bundled sample data: <data_dir>/sample */
  int in_build_tree;
} host_paths;

/* Finds the Lua modules next to the installed executable, or in the source
   tree when run from the build tree.  0 on success. */
int host_find_paths(host_paths *p);

/* "SkylakeX", "Haswell" or NULL, from /proc/cpuinfo. */
const char *host_detect_coretype(void);

/* Last resort when Lua cannot run: prints text to stderr, writes it as the
   failure file when the output folder exists (and no failure file does),
   and exits with code. */
_Noreturn void host_fatal(const char *text, int code);

#endif
