-- `moonfm metric-definitions RECIPE`: runs the recipe's preamble only
-- (hyperparameters and metric declarations, which come before
-- moonfm.channels) and prints the MetricDefinitions JSON (rule 107).
local errors = require "moonfm.errors"
local job = require "moonfm.job"

local M = {}

-- Raised by moonfm.channels in declare-only mode to end the preamble.
M.DONE = setmetatable({}, { __tostring = function() return "declarations collected" end })

-- collect(recipe, hyperparameters [, quiet]) -> job | nil, error
-- Runs the recipe's preamble with these raw hyperparameters (key -> string)
-- and returns what it declared: job.declared_metrics, job.unknown_hps (the
-- given keys the recipe does not declare).  quiet: no log lines.
function M.collect(recipe, hyperparameters, quiet)
  local j = {
    declare_only = true, quiet = quiet,
    outputs = {},
    declared_metrics = {},
    env = {
      hyperparameters_raw = hyperparameters or {}, reserved = {},
      channels = {}, channel_names = {}, current_host = "algo-1",
      hosts = { "algo-1" }, rank = 0, is_leader = true, warnings = {},
    },
  }
  local chunk, lerr = loadfile(recipe, "t")
  if not chunk then return nil, errors.new("RecipeError", lerr) end
  local saved = job.current
  job.current = j
  local ok, err = pcall(chunk)
  job.current = saved
  if not ok and err ~= M.DONE then
    return nil, errors.is(err) and err or errors.new("RecipeError", tostring(err))
  end
  return j
end

function M.metric_definitions(recipe, hyperparameters)
  local j, e = M.collect(recipe, hyperparameters)
  if not j then
    io.stderr:write(tostring(e), "\n")
    if e.details then io.stderr:write(e.details, "\n") end
    return errors.exit_codes[e.category] or 1
  end
  if #j.declared_metrics == 0 then
    io.stderr:write("RecipeError: ", recipe, " declares no metrics; call "
      .. "moonfm.declare_metrics{...} before moonfm.channels{...}\n")
    return errors.exit_codes.RecipeError
  end
  print(require("moonfm.metrics").definitions(j.declared_metrics))
  return 0
end

return M
