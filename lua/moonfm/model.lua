-- One model API for recipes, whatever the algorithm: the factorization
-- model (moonfm.fm) or ALS (moonfm.als), with the evaluation, top-k,
-- saving and exports that every model shares.
--
--   local model = moonfm.model.new { algorithm = "fm", loss = "warp", factors = 32 }
--   for epoch = 1, 10 do
--     local r = assert(model:fit(train))          -- one more epoch
--     local m = model:evaluate(test, { k = { 10 } })
--   end
--   assert(model:save(env.model_dir))
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local evaluate = require "moonfm.evaluate"
local modelfile = require "moonfm.modelfile"

local M = {}

M.algorithms = { fm = "moonfm.fm", als = "moonfm.als" }

local Model = {}
Model.__index = Model
Model.__name = "moonfm.model"

-- new(opts): opts.algorithm ("fm" by default) picks the model; the other
-- options are that model's (docs/fm.md, docs/als.md) plus, for fm,
-- user_features / item_features (moonfm.Interactions of ids x features).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("model.new: options must be a table", 2) end
  local algorithm = opts.algorithm or "fm"
  local modname = M.algorithms[algorithm]
  if not modname then
    errors.hyperparameter(string.format("algorithm '%s' is not one of fm, als",
                                        tostring(algorithm)))
  end
  local o = {}
  for k, v in pairs(opts) do if k ~= "algorithm" then o[k] = v end end
  local self = setmetatable({ algorithm = algorithm, opts = o, epoch = 0 }, Model)
  if algorithm == "fm" then
    -- Validate now (sizes come with the first fit).
    require(modname).new(o)
  else
    self.impl = require(modname).new(o)
  end
  return self
end

-- The model userdata (moonfm.FM or moonfm.ALS), for evaluation and files.
function Model:core()
  if self.algorithm == "fm" then return self.impl and self.impl.model end
  return self.impl and self.impl:core()
end

-- Sizes the model from the training data's id maps (which may hold more
-- ids than the interactions, e.g. items known only from their features).
local function create(self, train)
  self.users, self.items = train:users(), train:items()
  local nu, ni = self.users:size(), self.items:size()
  if self.algorithm == "fm" then
    local o = {}
    for k, v in pairs(self.opts) do o[k] = v end
    o.n_users, o.n_items = nu, math.max(ni, 1)
    self.impl = require("moonfm.fm").new(o) -- created by its first fit
  else
    self.impl:init(nu, ni)
  end
end

-- fit(train [, {epochs = 1, threads = }]) -> report {epoch, epochs,
-- seconds, loss[, negatives]} | nil, "stopped": more epochs (iterations)
-- on train; negatives (fm): the samples labelled -1 by the logistic loss.
function Model:fit(train, o)
  o = o or {}
  local epochs = o.epochs or 1
  if not self.users then create(self, train) end
  local t0 = core.clock()
  local loss, negatives
  if self.algorithm == "fm" then
    local r, msg = self.impl:fit_partial(train, { epochs = epochs, threads = o.threads })
    if not r then return nil, msg end
    loss, negatives = r.loss, r.negatives
  else
    local rs, msg = self.impl:fit(train, { iterations = epochs, threads = o.threads,
                                           on_iteration = function() end })
    if not rs then return nil, msg end
    loss = rs[#rs] and rs[#rs].loss
  end
  self.epoch = self.epoch + epochs
  return { epoch = self.epoch, epochs = epochs, seconds = core.clock() - t0,
           loss = loss, negatives = negatives }
end

-- evaluate(test [, opts]) -> results (moonfm.evaluate): the training
-- items are excluded unless opts.exclude = false or include_seen = true.
function Model:evaluate(test, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.exclude == false then o.exclude = nil
  elseif o.exclude == nil then o.exclude = self.train end
  return evaluate.evaluate(self:core(), test, o)
end

-- recommend(user_ids, k [, opts]) -> list of {user=, items={ids}, scores={}}
-- (training items excluded by default); unknown users get empty lists.
function Model:recommend(user_ids, k, opts)
  opts = opts or {}
  local idx, pos = {}, {}
  for i, id in ipairs(user_ids) do
    local u = self.users:find(tostring(id))
    if u then idx[#idx + 1] = u; pos[#pos + 1] = i end
  end
  local out = {}
  for i, id in ipairs(user_ids) do out[i] = { user = id, items = {}, scores = {} } end
  if #idx == 0 then return out end
  local items, scores = core.recommend(self:core(), idx, k, {
    exclude = (not opts.include_seen) and self.train or nil,
    include_seen = opts.include_seen, item_bias = opts.item_bias,
  })
  for j, i in ipairs(pos) do
    local r = out[i]
    for n, item in ipairs(items[j]) do
      r.items[n] = self.items:get(item)
      r.scores[n] = scores[j][n]
    end
  end
  return out
end

-- The header of the model file.  An fm model also records its side
-- feature counts (the server rebuilds the representations from them).
function Model:header(extra)
  local nu, ni, nuf, nif = self:core():shape()
  local params = self.impl:params()
  -- Only what the model's constructor takes: the header has its own epoch.
  params.user_features, params.item_features = nil, nil
  params.epochs, params.epochs_trained = nil, nil
  local h = { kind = self.algorithm, n_users = nu, n_items = ni,
              factors = params.factors, params = params, epoch = self.epoch }
  if self.algorithm == "fm" then
    h.n_user_features, h.n_item_features = nuf or 0, nif or 0
  end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- The arrays saved next to the model's own: the training items (for
-- serving with exclude_seen) and the side-feature matrices.
function Model:extras()
  local ex = {}
  local function add(list) for _, a in ipairs(list) do ex[#ex + 1] = a end end
  if self.train then add(self.train:arrays("seen")) end
  for _, side in ipairs { "user_features", "item_features" } do
    local f = self.opts[side]
    if f then add(f:arrays(side)) end
  end
  return ex
end

-- save(dir [, {metrics=, hyperparameters=, exports=true}]) -> path | nil, msg
-- Writes dir/model.moonfm atomically, then the exports for other tools
-- (.npy arrays and id lists, docs/model-file.md).
function Model:save(dir, o)
  o = o or {}
  local path = dir .. "/" .. modelfile.FILE_NAME
  local maps = { users = self.users, items = self.items }
  -- The feature names (the columns of the side-feature matrices), so the
  -- server can answer {"features": [...]} and check the matrices' widths.
  for _, side in ipairs { "user", "item" } do
    local f = self.opts[side .. "_features"]
    if f and f.items then maps[side .. "_feature_names"] = f:items() end
  end
  local ok, msg = modelfile.save(path, self:core(), self:header {
    metrics = o.metrics, hyperparameters = o.hyperparameters,
  }, maps, { extras = self:extras() })
  if not ok then return nil, msg end
  if o.exports ~= false and require("moonfm.dist").writes_model() then
    local eok, emsg = modelfile.export_npy(self:core(), dir,
                                           { users = self.users, items = self.items })
    if not eok then return nil, emsg end
  end
  return path
end

-- Remembers the training interactions (excluded from rankings, saved for
-- serving).
function Model:set_train(train) self.train = train end

-- Rebuilds a model from a checkpoint or model file's contents: the
-- userdata (already filled) and the header.
function M.from_file(core_model, info, opts)
  local h = info.header
  local o = {}
  for k, v in pairs(opts or {}) do if k ~= "algorithm" then o[k] = v end end
  local self = setmetatable({ algorithm = h.kind, opts = o,
                              epoch = math.tointeger(h.epoch) or 0 }, Model)
  if h.kind == "fm" then
    self.impl = require("moonfm.fm").new(self.opts)
    self.impl.model = core_model
  elseif h.kind == "als" then
    self.impl = require("moonfm.als").new(self.opts)
    self.impl.model = core_model
  else
    error("model.from_file: unknown kind " .. tostring(h.kind), 2)
  end
  self.users, self.items = info.users, info.items
  return self
end

function Model:close()
  if self.impl then self.impl:close() end
  self.impl = nil
end
Model.__close = Model.close

-- The popularity baseline as a model: every user gets the most popular
-- items of train (for comparison with a trained model).
function M.popularity(train)
  local nu, ni = train:shape()
  local counts = train:item_counts()
  return core.factors(string.rep(string.pack("<f", 1.0), nu), counts, nil, nil, 1)
end

return M
