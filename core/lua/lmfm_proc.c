/* moonfm.core child processes, for `moonfm sweep` (one `moonfm train` per
   trial): spawn with an environment and redirected output, non-blocking
   wait, signals, and reaping (spec rule 77).  Plain Lua has only
   io.popen, which blocks and gives no process id. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lmfm.h"

extern char **environ;

/* Length of the name part of "NAME=value". */
static size_t name_len(const char *kv) {
  const char *eq = strchr(kv, '=');
  return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* Collects argv (a list of strings) into a NULL-terminated array held by a
   userdata pushed on the stack; the strings stay owned by the list. */
static char **check_argv(lua_State *L, int t) {
  lua_Integer n = luaL_len(L, t);
  luaL_argcheck(L, n >= 1, 1, "spawn: option 'argv' must not be empty");
  char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, t, i) != LUA_TSTRING)
      luaL_error(L, "spawn: argv[%d] must be a string", (int)i);
    argv[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the list */
  }
  argv[n] = NULL;
  return argv;
}

/* Builds the child's environment: ours, with the entries of table `t`
   (name -> string, or false to remove) replacing or adding to it.  The
   "NAME=value" strings are anchored in a table pushed below the array. */
static char **build_env(lua_State *L, int t) {
  size_t nenv = 0, nover = 0;
  for (char **e = environ; *e; e++) nenv++;
  lua_newtable(L); /* anchor */
  int anchor = lua_gettop(L);
  if (t) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "spawn: option 'env' keys must be strings");
      const char *k = lua_tostring(L, -2);
      if (*k == '\0' || strchr(k, '='))
        luaL_error(L, "spawn: env name '%s' is not valid", k);
      if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
        lua_rawseti(L, anchor, (lua_Integer)++nover);
      } else if (!(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
        luaL_error(L, "spawn: env value of '%s' must be a string or false", k);
      }
      lua_pop(L, 1);
    }
  }
  char **envp = lua_newuserdatauv(L, (nenv + nover + 1) * sizeof *envp, 0);
  size_t n = 0;
  for (char **e = environ; *e; e++) {
    int replaced = 0;
    if (t) {
      lua_pushlstring(L, *e, name_len(*e));
      replaced = lua_rawget(L, t) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (!replaced) envp[n++] = *e;
  }
  for (size_t i = 1; i <= nover; i++) {
    lua_rawgeti(L, anchor, (lua_Integer)i);
    envp[n++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  envp[n] = NULL;
  return envp;
}

/* posix_spawn with the file actions and attributes of proc_spawn;
   returns 0 or an errno value. */
static int spawn(pid_t *pid, char **argv, char **envp, const char *out,
                 const char *errp, int group) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc) return rc;
  rc = posix_spawnattr_init(&at);
  if (rc) {
    posix_spawn_file_actions_destroy(&fa);
    return rc;
  }
  const int flags = O_WRONLY | O_CREAT | O_APPEND;
  rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!rc && out)
    rc = posix_spawn_file_actions_addopen(&fa, 1, out, flags, 0644);
  if (!rc && errp)
    rc = posix_spawn_file_actions_addopen(&fa, 2, errp, flags, 0644);
  sigset_t none, defs;
  sigemptyset(&none);
  sigemptyset(&defs);
  sigaddset(&defs, SIGTERM);
  sigaddset(&defs, SIGINT);
  sigaddset(&defs, SIGPIPE);
  sigaddset(&defs, SIGALRM);
  sigaddset(&defs, SIGCHLD);
  short f = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (group) f |= POSIX_SPAWN_SETPGROUP;
  if (!rc) rc = posix_spawnattr_setsigmask(&at, &none);
  if (!rc) rc = posix_spawnattr_setsigdefault(&at, &defs);
  if (!rc && group) rc = posix_spawnattr_setpgroup(&at, 0);
  if (!rc) rc = posix_spawnattr_setflags(&at, f);
  if (!rc) rc = posix_spawn(pid, argv[0], &fa, &at, argv, envp);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

/* spawn{argv = {path, ...}, env = {NAME = value | false}, stdout = path,
         stderr = path, group = true} -> pid | fail, msg
   Runs argv[1] (a path: no PATH search) with stdin from /dev/null and
   stdout/stderr appended to the given files (default: ours).  The child
   gets default signal handling, an empty signal mask and, unless group is
   false, its own process group, so a Ctrl-C at the terminal reaches only
   the parent, which decides what to forward. */
static int proc_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_getfield(L, 1, "argv") != LUA_TTABLE)
    return luaL_argerror(L, 1, "option 'argv' must be a list of strings");
  int targv = lua_gettop(L);
  int tenv = 0;
  int ty = lua_getfield(L, 1, "env");
  if (ty == LUA_TTABLE) tenv = lua_gettop(L);
  else if (ty != LUA_TNIL)
    return luaL_argerror(L, 1, "option 'env' must be a table");
  const char *out = lmfm_optstr(L, 1, "stdout", NULL);
  const char *errp = lmfm_optstr(L, 1, "stderr", NULL);
  int group = lmfm_optbool(L, 1, "group", 1);
  char **argv = check_argv(L, targv);
  char **envp = build_env(L, tenv);

  /* Every Lua check is done: no raising from here on (C resources). */
  pid_t pid = -1;
  int rc = spawn(&pid, argv, envp, out, errp, group);
  if (rc) {
    luaL_pushfail(L);
    lua_pushfstring(L, "spawn: %s: %s", argv[0], strerror(rc));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/* Pushes the result of a waitpid status: code, how[, signal]. */
static int push_status(lua_State *L, int st) {
  if (WIFEXITED(st)) {
    lua_pushinteger(L, WEXITSTATUS(st));
    lua_pushliteral(L, "exit");
    return 2;
  }
  int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
  lua_pushinteger(L, 128 + sig);
  lua_pushliteral(L, "signal");
  lua_pushinteger(L, sig);
  return 3;
}

/* wait(pid [, timeout]) -> nil (still running) | code, "exit" |
   128 + signal, "signal", signal | fail, msg.
   Without timeout (or 0) it does not block; otherwise it polls every
   20 ms for up to timeout seconds.  It ignores the stop flag on purpose:
   a parent that forwarded SIGTERM still has to wait for its children. */
static int proc_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  lua_Number timeout = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, pid > 0, 1, "wait: pid must be positive");
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return push_status(L, st);
    if (r < 0 && errno != EINTR) {
      luaL_pushfail(L);
      lua_pushfstring(L, "wait: process %d: %s", (int)pid, strerror(errno));
      return 2;
    }
    if (timeout <= 0) {
      lua_pushnil(L);
      return 1;
    }
    struct timespec ts = {0, 20000000L};
    nanosleep(&ts, NULL);
    timeout -= 0.02;
  }
}

static const struct {
  const char *name;
  int sig;
} signals[] = {
  {"TERM", SIGTERM}, {"INT", SIGINT}, {"KILL", SIGKILL}, {"0", 0},
  {"HUP", SIGHUP}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
};

/* kill(pid, signal) -> true | fail, msg.  signal: "TERM", "INT", "KILL",
   "HUP", "STOP", "CONT" or "0" (existence check). */
static int proc_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  const char *name = luaL_optstring(L, 2, "TERM");
  luaL_argcheck(L, pid > 0, 1, "kill: pid must be positive");
  int sig = -1;
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (strcmp(signals[i].name, name) == 0) sig = signals[i].sig;
  if (sig < 0) return luaL_argerror(L, 2, "unknown signal name");
  if (kill(pid, sig) != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "kill: process %d: %s", (int)pid, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* reap() -> n: collects every child that has ended (re-parented orphans
   too, when we are PID 1) without blocking; returns how many.  Only call it
   once the children you wait for by pid are done: it takes their status. */
static int proc_reap(lua_State *L) {
  lua_Integer n = 0;
  int st;
  while (waitpid(-1, &st, WNOHANG) > 0) n++;
  lua_pushinteger(L, n);
  return 1;
}

static const luaL_Reg proc_funcs[] = {
  {"kill", proc_kill},
  {"reap", proc_reap},
  {"spawn", proc_spawn},
  {"wait", proc_wait},
  {NULL, NULL}
};

void lmfm_open_proc(lua_State *L) { luaL_setfuncs(L, proc_funcs, 0); }
