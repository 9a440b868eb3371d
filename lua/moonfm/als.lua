-- Implicit-feedback ALS (Hu, Koren and Volinsky 2008) on moonfm.core.
--
--   local als = require "moonfm.als"
--   local m = als.new { factors = 64, iterations = 15 }
--   local reports = assert(m:fit(interactions))   -- moonfm.Interactions
--   local v = m:fold_in({ 3, 17 }, { 1, 2 })       -- a new user's vector
--
-- Every observed (user, item, w) has preference 1 and confidence
-- 1 + alpha * w; every other cell preference 0 and confidence 1.
local core = require "moonfm.core"
local dist = require "moonfm.dist"

local M = {}

-- Defaults, documented in docs/als.md.
M.defaults = {
  factors = 64,          -- k, the length of user and item vectors
  regularization = 0.01, -- L2 penalty on both sides (> 0)
  alpha = 1.0,           -- confidence 1 + alpha * w (>= 0)
  iterations = 15,       -- full iterations (users, then items) per fit
  solver = "cg",         -- "cg" (conjugate gradient) or "cholesky" (exact)
  cg_steps = 3,          -- CG steps per row and half-iteration
  seed = 42,             -- initial factors
  threads = 0,           -- worker threads; 0 = all cores
  init_scale = 0.01,     -- initial factors uniform in [0, init_scale)
}

local kinds = {
  factors = "integer", regularization = "number", alpha = "number",
  iterations = "integer", solver = "string", cg_steps = "integer",
  seed = "integer", threads = "integer", init_scale = "number",
}

local function check_opts(opts, level)
  for k, v in pairs(opts) do
    local want = kinds[k]
    if not want then
      error(string.format("als: unknown option '%s'", tostring(k)), level)
    end
    local ok
    if want == "integer" then ok = math.type(v) == "integer"
      or (math.type(v) == "float" and math.tointeger(v) ~= nil)
    else ok = type(v) == want end
    if not ok then
      error(string.format("als: option '%s' must be %s %s, got %s", k,
        want == "integer" and "an" or "a", want, tostring(v)), level)
    end
  end
  if opts.solver and opts.solver ~= "cg" and opts.solver ~= "cholesky" then
    error("als: option 'solver' must be \"cg\" or \"cholesky\"", level)
  end
end

local ALS = {}
ALS.__index = ALS
ALS.__name = "moonfm.als"

-- new(opts): validates every option up front (unknown keys are errors).
-- The core model is created by the first fit, sized by the interactions
-- (or earlier by :init(n_users, n_items)).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("als: options must be a table", 2) end
  check_opts(opts, 3)
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts) do
    o[k] = kinds[k] == "integer" and math.tointeger(v) or v
  end
  -- Let the core check ranges now rather than at the first fit.
  local probe = core.als_new(0, 0, o)
  probe:close()
  return setmetatable({ opts = o, model = nil }, ALS)
end

-- The underlying moonfm.ALS (for evaluation, top-k and the model file),
-- or nil before the first fit.
function ALS:core() return self.model end

-- Creates the core model for n_users x n_items (done by fit when needed;
-- call it yourself to size the model larger than the training data).
function ALS:init(n_users, n_items)
  if self.model then self.model:close() end
  self.model = core.als_new(n_users, n_items, self.opts)
  return self
end

-- Inside a job, the two metric lines of each iteration go through the
-- job's metric logger (leader only, names checked); elsewhere nothing.
local function default_report(r)
  if not require("moonfm.job").current then return end
  local m = require("moonfm").metrics()
  m:epoch(r.iteration, "train", "fit_seconds", r.seconds, "loss")
  m:epoch(r.iteration, "train", "loss", r.loss, "loss")
end

-- fit(interactions [, {iterations=, threads=, on_iteration=fn}]) runs the
-- iterations one by one; after each, on_iteration(report) is called with
-- {iteration=, seconds=, loss=} (default: print the two metric lines
-- `train fit_seconds <loss>=S` and `train loss <loss>=L`).  Returns the
-- list of reports, or nil, "stopped" when the stop flag was raised (the
-- model keeps the iterations done so far).
function ALS:fit(interactions, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "iterations" and k ~= "threads" and k ~= "on_iteration" then
      error(string.format("als fit: unknown option '%s'", tostring(k)), 2)
    end
  end
  local iterations = opts.iterations or self.opts.iterations
  if math.type(iterations) ~= "integer" or iterations < 0 then
    error("als fit: iterations must be an integer >= 0", 2)
  end
  local on_iteration = opts.on_iteration or default_report
  if not self.model then
    local ok, nu, ni = pcall(function() return interactions:shape() end)
    if not ok or math.type(nu) ~= "integer" then
      error("als fit: cannot size the model from the interactions; call "
        .. ":init(n_users, n_items) first", 2)
    end
    self:init(nu, ni)
  end
  local reports = {}
  for _ = 1, iterations do
    local r, err
    if dist.active() then -- several hosts: this rank's blocks (dist.lua)
      r, err = dist.als_iteration(self.model, interactions)
    else
      r, err = self.model:fit(interactions,
        { iterations = 1, threads = opts.threads or self.opts.threads })
    end
    if not r then return nil, err end
    local rep = { iteration = r.iteration, seconds = r.seconds, loss = r.loss }
    reports[#reports + 1] = rep
    on_iteration(rep)
  end
  return reports
end

-- fold_in(items, weights): the vector (a table of factors numbers) of a user
-- not seen in training, from 1-based item indices and optional weights.
function ALS:fold_in(items, weights)
  if not self.model then error("als fold_in: the model is not trained", 2) end
  return self.model:fold_in(items, weights)
end

function ALS:shape()
  if not self.model then return nil end
  return self.model:shape()
end

function ALS:params()
  local p = {}
  for k, v in pairs(self.opts) do p[k] = v end
  return p
end

function ALS:close()
  if self.model then self.model:close() end
  self.model = nil
end
ALS.__close = ALS.close

return M
