-- A small recipe of its own for implicit-feedback ALS (Hu, Koren and
-- Volinsky 2008): confidence 1 + alpha * weight on observed (user, item)
-- pairs, one line of metrics per iteration.  recipes/train.lua also trains
-- ALS (algorithm=als) with checkpoints and baselines; this one shows how
-- little a recipe needs.
--
--   moonfm run als.lua factors=64 iterations=15
local moonfm = require "moonfm"

local hp = moonfm.hyperparameters {
  factors = { type = "int", default = 64, min = 1, max = 4096 },
  iterations = { type = "int", default = 15, min = 1 },
  regularization = { type = "float", f32 = true, default = 0.01, min = 0, min_exclusive = true },
  alpha = { type = "float", f32 = true, default = 1.0, min = 0 },
  solver = { type = "enum", values = { "cg", "cholesky" }, default = "cg" },
  k = { type = "int", default = 10, min = 1 },
  seed = { type = "int", default = 42 },
  threads = { type = "int", default = 0, min = 0 },
}
local at_k = "precision@" .. hp.k
moonfm.declare_metrics {
  { split = "train", name = "fit_seconds", kind = "loss" },
  { split = "train", name = "loss", kind = "loss" },
  { split = "test", name = at_k, kind = "score" },
}
local ch = moonfm.channels { train = { required = true }, test = {} }
moonfm.declare_output("model.moonfm")

local train = moonfm.read(ch.train)
if not train then return end -- stopped (SIGTERM) while reading: nothing to save
local test = ch.test and moonfm.read(ch.test, { users = train:users(), items = train:items(),
                                                grow_users = false, grow_items = false })
if ch.test and not test then return end -- stopped
local model = moonfm.model.new {
  algorithm = "als", factors = hp.factors, regularization = hp.regularization,
  alpha = hp.alpha, solver = hp.solver, seed = hp.seed, threads = hp.threads,
}
model:set_train(train)
local metrics = moonfm.metrics()
for it = 1, hp.iterations do
  local r = model:fit(train)
  if not r then break end -- stopped (SIGTERM): save what we have
  metrics:epoch(it, "train", "fit_seconds", r.seconds, "loss")
  metrics:epoch(it, "train", "loss", r.loss, "loss")
  if test then
    metrics:epoch(it, "test", at_k, model:evaluate(test, { k = hp.k, metrics = { at_k } })[at_k], "score")
  end
  if moonfm.stop_requested() then break end
end
local path = assert(model:save(moonfm.env().model_dir))
moonfm.log.info("model saved to %s", path)
if test then
  metrics:final("test", at_k, model:evaluate(test, { k = hp.k, metrics = { at_k } })[at_k], "score")
end
