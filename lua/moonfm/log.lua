-- Log lines on stderr with an ISO-8601 UTC timestamp and a level (rule 83).
-- Metric lines are not log lines: they go to stdout (moonfm.metrics).
local core = require "moonfm.core"

local M = {}

local levels = { debug = 10, info = 20, warning = 30, error = 40 }
local threshold = 20

-- set_level(n | "debug" | "info" | ...); Python numeric levels (rule 49).
function M.set_level(level)
  threshold = levels[level] or tonumber(level) or 20
  -- The same level for the C side's lines (the HTTP server's threads).
  core.log_level(math.tointeger(threshold) or math.floor(threshold))
end

local function stamp()
  local t = core.time()
  local ms = math.floor((t % 1) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", ms)
end

local function emit(level, name, fmt, ...)
  if level < threshold then return end
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  -- Rule 82: no carriage returns or control sequences.
  msg = msg:gsub("[\r\27]", "")
  io.stderr:write(stamp(), " ", name, " ", msg, "\n")
end

function M.debug(fmt, ...) emit(10, "DEBUG", fmt, ...) end
function M.info(fmt, ...) emit(20, "INFO", fmt, ...) end
function M.warn(fmt, ...) emit(30, "WARNING", fmt, ...) end
function M.error(fmt, ...) emit(40, "ERROR", fmt, ...) end

return M
