/* A minimal lua5.4 interpreter for scripts/test-sanitize: built with ASan,
   so that busted can load the ASan core.so without LD_PRELOAD (which
   would reach every process the specs start: sh, curl, chromium).
     lua-asan SCRIPT [ARGS...]   (what /usr/bin/busted needs: arg, exit) */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static lua_State *L; /* kept reachable: busted may os.exit without close */

static int traceback(lua_State *l) {
  const char *msg = lua_tostring(l, 1);
  luaL_traceback(l, l, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv) {
  int i, st;
  if (argc < 2) {
    fprintf(stderr, "usage: lua-asan SCRIPT [ARGS...]\n");
    return 2;
  }
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != LUA_OK) {
    fprintf(stderr, "lua-asan: %s\n", lua_tostring(L, -1));
    return 1;
  }
  for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  st = lua_pcall(L, argc - 2, 0, 1);
  if (st != LUA_OK) fprintf(stderr, "lua-asan: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return st == LUA_OK ? 0 : 1;
}
