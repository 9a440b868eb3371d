-- Waits for SIGTERM, then saves its state (rule 73) and returns.
local moonfm = require "moonfm"
moonfm.declare_output("state.txt")
local env = moonfm.env()
local ready = assert(io.open(env.output_data_dir .. "/ready", "w"))
ready:close()
local core = require "moonfm.core"
while not moonfm.stop_requested() do core.sleep(0.05) end
if os.getenv("SLOW_SAVE") then
  local t0 = core.clock()
  while core.clock() - t0 < 30 do end -- a save that never ends
end
local f = assert(io.open(env.model_dir .. "/state.txt", "w"))
f:write("saved\n")
f:close()
