/* moonfm.core system helpers the Lua layer needs and plain Lua lacks:
   environment, atomic writes, clocks, the stop flag, FIFOs, ttys. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmfm.h"

static int sys_setenv(lua_State *L) {
  const char *k = luaL_checkstring(L, 1);
  if (lua_isnil(L, 2)) {
    unsetenv(k);
  } else {
    const char *v = luaL_checkstring(L, 2);
    if (setenv(k, v, 1) != 0)
      return luaL_error(L, "setenv: %s: %s", k, strerror(errno));
  }
  return 0;
}

/* write_atomic(path, data) -> true | fail, msg */
static int sys_write_atomic(lua_State *L) {
  size_t n;
  const char *path = luaL_checkstring(L, 1);
  const char *data = luaL_checklstring(L, 2, &n);
  mfm_err err;
  mfm_status st = mfm_write_atomic(path, data, n, &err);
  if (st == MFM_ENOMEM) return lmfm_raise(L, "write", st, &err);
  if (st != MFM_OK) return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int sys_stop_requested(lua_State *L) {
  lua_pushboolean(L, mfm_stop_requested());
  return 1;
}

/* core.log_level(n): the level below which C log lines are dropped (the
   Lua layer's moonfm.log sets both). */
static int sys_log_level(lua_State *L) {
  mfm_log_set_level((int)luaL_checkinteger(L, 1));
  return 0;
}

static int sys_stop_request(lua_State *L) {
  mfm_stop_request();
  return 0;
}

static int sys_stop_reset(lua_State *L) {
  mfm_stop_reset();
  return 0;
}

static int sys_cpu_count(lua_State *L) {
  lua_pushinteger(L, mfm_cpu_count());
  return 1;
}

/* Seconds on a monotonic clock, for durations. */
static int sys_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* Seconds since the epoch, with fractions (log timestamps). */
static int sys_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* sleep(seconds) -> true, or false when the stop flag interrupted it. */
static int sys_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  while (s > 0 && !mfm_stop_requested()) {
    lua_Number step = s < 0.1 ? s : 0.1;
    struct timespec ts = {(time_t)step, (long)((step - (time_t)step) * 1e9)};
    nanosleep(&ts, NULL);
    s -= step;
  }
  lua_pushboolean(L, !mfm_stop_requested());
  return 1;
}

static int sys_mkfifo(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkfifo(path, 0644) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "mkfifo: %s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.pipe_feed(base, src) -> true | nil, msg: feeds src to the FIFOs
   base_0, base_1, ... from a thread (local Pipe mode, rule 131). */
static int sys_pipe_feed(lua_State *L) {
  mfm_err err;
  if (mfm_pipe_feed_start(luaL_checkstring(L, 1), luaL_checkstring(L, 2),
                          &err) != MFM_OK)
    return lmfm_pushfail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static int sys_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static int sys_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* geteuid() -> the effective user id (mpirun needs to be told about root) */
static int sys_geteuid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)geteuid());
  return 1;
}

/* realpath(path) -> absolute path | fail, msg */
static int sys_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *r = realpath(path, NULL);
  if (!r) {
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* Peak resident memory of this process in bytes (getrusage). */
static int sys_peak_rss(lua_State *L) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
  return 1;
}

static const luaL_Reg sys_funcs[] = {
  {"clock", sys_clock},
  {"cpu_count", sys_cpu_count},
  {"getpid", sys_getpid},
  {"geteuid", sys_geteuid},
  {"isatty", sys_isatty},
  {"log_level", sys_log_level},
  {"mkfifo", sys_mkfifo},
  {"peak_rss", sys_peak_rss},
  {"pipe_feed", sys_pipe_feed},
  {"realpath", sys_realpath},
  {"setenv", sys_setenv},
  {"sleep", sys_sleep},
  {"stop_request", sys_stop_request},
  {"stop_requested", sys_stop_requested},
  {"stop_reset", sys_stop_reset},
  {"time", sys_time},
  {"write_atomic", sys_write_atomic},
  {NULL, NULL}
};

void lmfm_open_sys(lua_State *L) { luaL_setfuncs(L, sys_funcs, 0); }
