-- The hybrid factorization model (LightFM class) for recipes.
--
--   local fm = require "moonfm.fm"
--   local model <close> = fm.new { loss = "warp", factors = 64 }
--   local report = assert(model:fit(train, { epochs = 20 }))
--   local s = model:score({ 1, 1 }, { 3, 7 })   -- users, items (1-based)
--
-- Scores are dot(user representation, item representation) + biases;
-- representations are weighted sums of feature embeddings, with one
-- identity feature per user and item by default.  See docs/fm.md.
local core = require "moonfm.core"
local errors = require "moonfm.errors"

local M = {}

-- Defaults (LightFM's where it has one).
M.defaults = {
  factors = 64,            -- embedding size
  loss = "warp",           -- logistic | bpr | warp | warp-kos
  schedule = "adagrad",    -- adagrad | adadelta
  learning_rate = 0.05,    -- adagrad step (adadelta ignores it)
  rho = 0.95,              -- adadelta decay
  epsilon = 1e-6,          -- adadelta epsilon
  user_alpha = 0.0,        -- L2 penalty on user parameters
  item_alpha = 0.0,        -- L2 penalty on item parameters
  max_sampled = 10,        -- warp: negatives drawn per positive at most
  kos_k = 5,               -- warp-kos: the k-th positive ...
  kos_n = 10,              -- ... of n sampled
  seed = 42,               -- everything random derives from it
  threads = 0,             -- 0 = all cores; at most 64 are used
  user_identity = true,    -- keep identity features next to side features
  item_identity = true,
  normalize = true,        -- feature weights of each row sum to one
  logistic_threshold = 0,  -- logistic: label +1 when value > threshold
  score_item_bias = true,  -- false: rank without item biases
  epochs = 10,             -- default epochs of fit / fit_partial
}

-- Options without a default: user_features / item_features (a
-- moonfm.Interactions or moonfm.CSR of users (items) x features),
-- n_users / n_items (model sizes when larger than the training data),
-- n_user_features / n_item_features (when larger than the feature data).
local optional = {
  user_features = "userdata", item_features = "userdata",
  n_users = "integer", n_items = "integer",
  n_user_features = "integer", n_item_features = "integer",
}

local kinds = {
  factors = "integer", loss = "string", schedule = "string",
  learning_rate = "number", rho = "number", epsilon = "number",
  user_alpha = "number", item_alpha = "number", max_sampled = "integer",
  kos_k = "integer", kos_n = "integer", seed = "integer",
  threads = "integer", user_identity = "boolean", item_identity = "boolean",
  normalize = "boolean", logistic_threshold = "number",
  score_item_bias = "boolean", epochs = "integer",
}

local function bad(msg) errors.hyperparameter("fm: " .. msg) end

local function kind_of(v)
  if math.type(v) == "integer" then return "integer" end
  return type(v)
end

local function check(o)
  local function range(key, ok, what)
    if not ok then bad(("option '%s' must be %s, got %s"):format(
      key, what, tostring(o[key]))) end
  end
  range("factors", o.factors >= 1 and o.factors <= 4096, "in 1..4096")
  range("loss", o.loss == "logistic" or o.loss == "bpr" or o.loss == "warp"
        or o.loss == "warp-kos", "logistic, bpr, warp or warp-kos")
  range("schedule", o.schedule == "adagrad" or o.schedule == "adadelta",
        "adagrad or adadelta")
  range("learning_rate", o.learning_rate > 0, "> 0")
  range("rho", o.rho > 0 and o.rho < 1, "in (0, 1)")
  range("epsilon", o.epsilon > 0, "> 0")
  range("user_alpha", o.user_alpha >= 0, ">= 0")
  range("item_alpha", o.item_alpha >= 0, ">= 0")
  range("max_sampled", o.max_sampled >= 1 and o.max_sampled <= 1000000,
        "in 1..1000000")
  range("kos_n", o.kos_n >= 1 and o.kos_n <= 4096, "in 1..4096")
  range("kos_k", o.kos_k >= 1 and o.kos_k <= o.kos_n,
        ("in 1..kos_n (kos_n is %s; raise kos_n or lower kos_k)"):format(
          tostring(o.kos_n)))
  range("threads", o.threads >= 0 and o.threads <= 1024, "in 0..1024")
  range("epochs", o.epochs >= 0, ">= 0")
  range("logistic_threshold", o.logistic_threshold == o.logistic_threshold,
        "a number")
end

local FM = {}
FM.__index = FM
FM.__name = "moonfm.fm"

-- new(opts) -> model (untrained until fit); unknown or ill-typed options
-- raise a HyperparameterError.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then bad("options must be a table") end
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts) do
    local want = kinds[k] or optional[k]
    if not want then
      bad(("unknown option '%s'"):format(tostring(k)))
    end
    local got = kind_of(v)
    if want == "integer" and got == "number" and math.tointeger(v) then
      v, got = math.tointeger(v), "integer"
    end
    if want == "number" and got == "integer" then got = "number" end
    if got ~= want then
      bad(("option '%s' must be a %s, got %s"):format(k, want, got))
    end
    o[k] = v
  end
  check(o)
  return setmetatable({ opts = o, model = nil }, FM)
end

-- The options of the core model.
local MAX_THREADS = 64 -- the core's MFM_FM_MAX_THREADS

local function core_opts(o)
  local c = {}
  for k in pairs(kinds) do c[k] = o[k] end
  c.epochs = nil
  -- More threads than the core runs (a 96-vCPU instance) use its most.
  c.threads = math.min(c.threads, MAX_THREADS)
  for _, k in ipairs { "user_features", "item_features", "n_user_features",
                       "n_item_features" } do
    c[k] = o[k]
  end
  return c
end

local function create(self, data)
  local rows, cols = core.fm_data_shape(data)
  local nu = math.max(rows, self.opts.n_users or 0)
  local ni = math.max(cols, self.opts.n_items or 0, 1)
  self.model = core.fm_new(nu, ni, core_opts(self.opts))
end

-- Several hosts: this rank's share, models averaged (moonfm.dist).
local function run_fit(self, interactions, fo)
  local dist = require "moonfm.dist"
  if dist.active() and not fo.weights then
    return dist.fm_fit(self.model, interactions, fo)
  end
  return self.model:fit(interactions, fo)
end

local function fit_opts(self, o)
  o = o or {}
  return { epochs = o.epochs or self.opts.epochs,
           threads = o.threads or self.opts.threads,
           weights = o.weights }
end

-- fit(interactions [, {epochs=, threads=, weights=}]) -> report | nil, msg
-- Trains a fresh model (previous training is discarded).  report has
-- epochs, loss (mean per sample of the last epoch), seconds, samples.
-- Returns nil, msg when stopped (SIGTERM); the model stays usable.
function FM:fit(interactions, o)
  if self.model then self.model:close() end
  create(self, interactions)
  return run_fit(self, interactions, fit_opts(self, o))
end

-- fit_partial(interactions [, {...}]): more epochs from the current state
-- (a fresh model the first time).  The interactions may have fewer users
-- and items than the model, not more.
function FM:fit_partial(interactions, o)
  if not self.model then create(self, interactions) end
  local rows, cols = core.fm_data_shape(interactions)
  local nu, ni = self.model:shape()
  if rows > nu or cols > ni then
    error(("fit_partial: interactions are %d x %d, the model has %d users "
           .. "x %d items; set n_users / n_items at creation to leave room")
          :format(rows, cols, nu, ni), 2)
  end
  return run_fit(self, interactions, fit_opts(self, o))
end

local function trained(self, what)
  if not self.model then
    error(what .. ": the model is not trained yet (call fit first)", 3)
  end
  return self.model
end

-- score(users, items) -> {score...}: 1-based indices, equal lengths.
function FM:score(users, items)
  return trained(self, "score"):score(users, items)
end

-- fold_in(items [, weights [, {epochs=, learning_rate=, alpha=, seed=}]])
-- -> vector, bias: a representation for a user unseen in training.
function FM:fold_in(items, weights, o)
  return trained(self, "fold_in"):fold_in(items, weights, o)
end

-- fold_in_features(features [, weights]) -> vector, bias (hybrid models).
function FM:fold_in_features(features, weights)
  return trained(self, "fold_in_features"):fold_in_features(features, weights)
end

-- score_vector(vector, bias, items) -> {score...} (a folded-in user).
function FM:score_vector(vec, bias, items)
  return trained(self, "score_vector"):score_vector(vec, bias, items)
end

-- representations("user" | "item") -> float32 strings, n, k (export).
function FM:representations(side)
  return trained(self, "representations"):representations(side)
end

-- params() -> the hyperparameters (and epochs trained, when trained).
function FM:params()
  if not self.model then
    local t = {}
    for k, v in pairs(self.opts) do
      if kinds[k] then t[k] = v end
    end
    return t
  end
  local t = self.model:params()
  t.epochs = self.opts.epochs
  t.epochs_trained = self.model:epochs()
  return t
end

-- shape() -> n_users, n_items, n_user_features, n_item_features
function FM:shape()
  return trained(self, "shape"):shape()
end

function FM:set_score_item_bias(on)
  self.opts.score_item_bias = on
  if self.model then self.model:set_score_item_bias(on) end
end

function FM:close()
  if self.model then self.model:close() end
  self.model = nil
end

FM.__close = FM.close

return M
