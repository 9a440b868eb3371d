/* libFuzzer target: the hyperparameter coercion, which is Lua
   (lua/moonfm/hp.lua and its JSON reader lua/moonfm/json.lua), run in an
   embedded Lua 5.4 by fuzz_hp.lua.  Debian's liblua is not instrumented, so a line
   hook feeds libFuzzer the Lua lines executed (pairs of consecutive lines,
   hashed into extra counters): the search is guided by those files' own
   coverage.  Any error raised out of them aborts: that is the finding. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_COUNTERS 65536
__attribute__((section("__libfuzzer_extra_counters")))
static uint8_t counters[N_COUNTERS];

static lua_State *L;
static int prev_line;

static void line_hook(lua_State *l, lua_Debug *ar) {
  uint32_t h = (uint32_t)prev_line * 2654435761u ^ (uint32_t)ar->currentline;
  (void)l;
  prev_line = ar->currentline;
  h = (h ^ (h >> 15)) % N_COUNTERS;
  if (counters[h] < 255) counters[h]++;
}

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "package.path = '" MFM_SOURCE_DIR "/lua/?.lua;' .. "
                       "package.path") ||
      luaL_loadfile(L, MFM_SOURCE_DIR "/tests/fuzz/fuzz_hp.lua") ||
      lua_pcall(L, 0, 1, 0)) {
    fprintf(stderr, "fuzz_hp: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "fuzz_hp");
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) setup();
  if (size < 1) return 0;
  lua_getglobal(L, "fuzz_hp");
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushinteger(L, data[0]);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_hp: hp.lua raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
