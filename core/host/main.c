/* moonfm: the container's ENTRYPOINT and the local tool.
 *
 * Like lua.c: create a state, run a protected pmain under a message handler
 * that appends a traceback, preload moonfm.core, point package.path at our
 * Lua modules, and hand the command line to moonfm.cli, which implements
 * every subcommand and the SageMaker contract.  This file only does what
 * must happen before Lua runs: line-buffered output (rule 7), the OpenBLAS
 * core type (TOOLCHAIN P8), signal handlers (rules 69-70, 76, 78). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "host.h"
#include "moonfm/fileio.h"
#include "lmfm.h"

/* ---- signals --------------------------------------------------------- */

static volatile sig_atomic_t signals_seen;

/* Both ways out leave no half-written file behind (rules 65, 93). */
static void on_alarm(int sig) {
  (void)sig;
  mfm_atomic_unlink_all();
  _exit(143); /* rule 74: stop handling took too long */
}

static void on_stop(int sig) {
  (void)sig;
  if (signals_seen++ > 0) {
    mfm_atomic_unlink_all();
    _exit(143); /* rule 76: second signal */
  }
  mfm_stop_request();
  alarm(MFM_STOP_DEADLINE_SECONDS);
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* A closed terminal (SIGHUP) stops like Ctrl-C: otherwise it killed a
     sweep outright and left its trials, each in its own process group,
     running with no one to collect them (docs/tuning.md "Stopping"). */
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL); /* rule 78: EPIPE is an ordinary error */
}

/* ---- OpenBLAS core type ---------------------------------------------- */

/* OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, before main, so the
   only way to set it from here is to re-execute ourselves with it set. */
static void ensure_coretype(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv("MOONFM_NO_REEXEC")) return;
  const char *type = host_detect_coretype();
  if (!type) return;
  setenv("OPENBLAS_CORETYPE", type, 1);
  execv("/proc/self/exe", argv);
  /* exec failed: run with the default kernels, which are only slower. */
}

/* ---- Lua ------------------------------------------------------------- */

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Runs in protected mode: libraries, paths, then moonfm.cli.main(args). */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  const host_paths *paths = lua_touserdata(L, 3);
  luaL_checkversion(L);
  luaL_openlibs(L);

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_moonfm_core);
  lua_setfield(L, -2, "moonfm.core");
  lua_pop(L, 1);

  /* package.path = <lua dir>/?.lua;<lua dir>/?/init.lua;<default> */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", paths->lua_dir,
                  paths->lua_dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  /* package.loaded["moonfm.host"]: where things are, for the Lua layer. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, paths->exe);
  lua_setfield(L, -2, "exe");
  lua_pushstring(L, paths->lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_pushstring(L, paths->recipe_dir);
  lua_setfield(L, -2, "recipe_dir");
  lua_pushstring(L, paths->data_dir);
  lua_setfield(L, -2, "data_dir");
  lua_pushboolean(L, paths->in_build_tree);
  lua_setfield(L, -2, "in_build_tree");
  lua_setfield(L, -2, "moonfm.host");
  lua_pop(L, 1);

  /* The global arg table, as lua.c builds it. */
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");

  lua_getglobal(L, "require");
  lua_pushliteral(L, "moonfm.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc > 1 ? argc - 1 : 0, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_call(L, 1, 1);
  return 1;
}

int main(int argc, char **argv) {
  /* Rule 7: neither stream is a terminal under SageMaker. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  setvbuf(stderr, NULL, _IOLBF, 0);
  install_signals();
  ensure_coretype(argv);

  host_paths paths;
  if (host_find_paths(&paths) != 0) {
    host_fatal("InternalError: moonfm cannot find its Lua modules "
               "(looked next to the executable and in the build tree); "
               "reinstall moonfm", 70);
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) host_fatal("OutOfMemory: cannot create the Lua state", 1);

  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &paths);
  int status = lua_pcall(L, 3, 1, 1);
  int code;
  if (status == LUA_OK) {
    int isnum;
    code = (int)lua_tointegerx(L, -1, &isnum);
    if (!isnum) code = 0;
  } else {
    /* moonfm.cli catches everything a recipe can raise, so an error here
       is moonfm's own: an internal error, or memory running out. */
    const char *msg = lua_tostring(L, -1);
    char text[2048];
    int oom = status == LUA_ERRMEM;
    snprintf(text, sizeof text, "%s: %s",
             oom ? "OutOfMemory" : "InternalError",
             msg ? msg : "(no message)");
    lua_close(L);
    host_fatal(text, oom ? 1 : 70);
  }
  lua_close(L);
  fflush(NULL);
  return code;
}
