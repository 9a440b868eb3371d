-- moonfm: the API recipes use.  A recipe is a plain Lua script:
--
--   local moonfm = require "moonfm"
--   local hp = moonfm.hyperparameters { epochs = { type = "int", default = 10 } }
--   local ch = moonfm.channels { train = { required = true }, test = {} }
--   local train = moonfm.read(ch.train)
--   ...
--
-- Everything here works inside `moonfm train` / `moonfm run`, where the job
-- (B, the configuration, the metric logger) is set up by moonfm.job.
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local job = require "moonfm.job"
local log = require "moonfm.log"

local M = {}

M._VERSION = core._VERSION
M.errors = errors
M.log = log

local function current()
  local j = job.current
  if not j then
    error("moonfm: this function works inside a job (moonfm train or "
          .. "moonfm run), not in a plain Lua interpreter", 3)
  end
  return j
end

-- A read-only view of t (rule 21): reads go through, nested tables come
-- back as views too, writes raise.  moonfm reads the same tables later
-- (host, rank, folders), so a recipe must not be able to change them.
local function readonly(t, views)
  if type(t) ~= "table" then return t end
  local v = views[t]
  if v then return v end
  v = setmetatable({}, {
    __name = "moonfm.Env",
    __index = function(_, k) return readonly(t[k], views) end,
    __newindex = function(_, k)
      error("the job's environment is read-only (assignment to '"
            .. tostring(k) .. "')", 2)
    end,
    __len = function() return #t end,
    __pairs = function()
      return function(_, k)
        local nk, nv = next(t, k)
        return nk, readonly(nv, views)
      end, v, nil
    end,
  })
  views[t] = v
  return v
end

-- The /opt/ml view of the running job (see moonfm.env.load for fields),
-- read-only.
function M.env()
  local j = current()
  j.env_views = j.env_views or setmetatable({}, { __mode = "k" })
  return readonly(j.env, j.env_views)
end

-- True once SIGTERM/SIGINT asked the job to stop (rule 72): save and return.
function M.stop_requested() return core.stop_requested() end

-- Declares and decodes the hyperparameters (spec section 5).  Every error is
-- collected and raised once as a HyperparameterError; undeclared keys are
-- logged once as a warning.  Returns the typed table.
function M.hyperparameters(schema, opts)
  local j = current()
  local hp = require "moonfm.hp"
  local typed, unknown = hp.apply(hp.schema(schema), j.env.hyperparameters_raw,
                                  opts)
  j.hyperparameters = typed
  j.unknown_hps = unknown
  if j.quiet then return typed end
  log.info("hyperparameters:\n%s", hp.format_for_log(typed))
  local warning = hp.unknown_warning(unknown, schema)
  if warning then log.warn("%s", warning) end
  return typed
end

-- Declares the channels the recipe reads: {name = {required = bool}}.
-- Returns name -> channel table for those present.  A missing required
-- channel is a DataError (rule 26); configured channels the recipe does not
-- declare are logged as a warning (rule 27).
function M.channels(decl)
  local j = current()
  if type(decl) ~= "table" then error("channels: a table expected", 2) end
  if j.declare_only then error(require("moonfm.declare").DONE, 0) end
  local e = j.env
  local out, missing, unused = {}, {}, {}
  for name, d in pairs(decl) do
    if type(d) ~= "table" then
      error("channels: '" .. tostring(name) .. "' must map to a table", 2)
    end
    if e.channels[name] then
      out[name] = e.channels[name]
    elseif d.required then
      missing[#missing + 1] = name
    end
  end
  for _, name in ipairs(e.channel_names) do
    if decl[name] == nil then unused[#unused + 1] = name end
  end
  if #unused > 0 then
    log.warn("channels not used by this recipe: %s", table.concat(unused, ", "))
  end
  if #missing > 0 then
    table.sort(missing)
    errors.data(string.format("required channel%s %s missing; the job has %s",
      #missing > 1 and "s" or "", table.concat(missing, ", "),
      #e.channel_names > 0 and "channels " .. table.concat(e.channel_names, ", ")
        or "no channels"),
      "Add the channel to the training job's InputDataConfig (or "
      .. "--channel NAME=PATH with moonfm run).")
  end
  j.channels = out
  return out
end

-- Declares the metrics the recipe emits, for `moonfm metric-definitions`
-- (rule 107): a list of {split = "test", name = "precision@10", kind =
-- "score" | "loss"}.  Call it before moonfm.channels.
function M.declare_metrics(list)
  local j = current()
  if type(list) ~= "table" then error("declare_metrics: a list expected", 2) end
  for i, m in ipairs(list) do
    if type(m) ~= "table" or type(m.split) ~= "string" or
       type(m.name) ~= "string" or (m.kind ~= "score" and m.kind ~= "loss") then
      error(string.format("declare_metrics: entry %d must be {split=, name=, "
        .. "kind=\"score\"|\"loss\"}", i), 2)
    end
    j.declared_metrics[#j.declared_metrics + 1] = m
  end
end

-- Declares an output the recipe will write, relative to the model folder;
-- the job fails if it is missing at the end (rule 57).
function M.declare_output(rel)
  local j = current()
  j.outputs[#j.outputs + 1] = rel
end

-- The job's metric logger (spec section 15), created on first use.
function M.metrics()
  local j = current()
  if not j.metrics then
    local metrics = require "moonfm.metrics"
    j.metrics = metrics.new { host = j.env.current_host, leader = j.env.is_leader }
  end
  return j.metrics
end

-- Reads interactions from a channel table (see moonfm.data).
function M.read(channel, opts)
  return require("moonfm.data").read(channel, opts)
end

-- Reads a feature channel (see moonfm.data).
function M.read_features(channel, opts)
  return require("moonfm.data").read_features(channel, opts)
end

-- Models (moonfm.model): moonfm.model.new{algorithm = "fm" | "als", ...}.
M.model = require "moonfm.model"

-- evaluate(model, test, opts): metrics of any model (moonfm.evaluate).
function M.evaluate(model, test, opts)
  return require("moonfm.evaluate").evaluate(model, test, opts)
end

return M
