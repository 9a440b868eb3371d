-- A small ALS / FM recipe for the multi-host tests (tests/e2e/cluster_spec.lua,
-- scripts/local-cluster, bench/bench-dist): train, per-epoch train loss,
-- final test precision@10 and train loss, the model saved by the leader.
local moonfm = require "moonfm"
local ev = require "moonfm.evaluate"
local mf = require "moonfm.modelfile"
local hp = moonfm.hyperparameters {
  algorithm = { type = "string", default = "als" },
  epochs = { type = "int", default = 4, min = 1 },
  factors = { type = "int", default = 16, min = 1 },
  threads = { type = "int", default = 1, min = 0 },
  solver = { type = "string", default = "cholesky" },
  fail_on = { type = "string", default = "" }, -- host name: raise there
  -- Test metrics (comma-separated names for moonfm.evaluate); with
  -- compare_local, the leader also prints each value of a local
  -- (undistributed) evaluation and the counts, as "eval ..." lines.
  metrics = { type = "string", default = "precision@10" },
  compare_local = { type = "bool", default = false },
}
local names = {}
for n in hp.metrics:gmatch("[^,%s]+") do names[#names + 1] = n end
local decl = { { split = "train", name = "loss", kind = "loss" } }
for _, n in ipairs(names) do
  decl[#decl + 1] = { split = "test", name = n, kind = "score" }
end
moonfm.declare_metrics(decl)
local ch = moonfm.channels { train = { required = true }, test = {} }
local env = moonfm.env()
moonfm.declare_output("model.mfm")
if hp.fail_on == env.current_host then
  moonfm.errors.raise("DataError", "injected failure on " .. env.current_host)
end
local train = assert(moonfm.read(ch.train))
local test = ch.test and assert(moonfm.read(ch.test, {
  users = train:users(), items = train:items(),
  grow_users = false, grow_items = false }))
local m = moonfm.metrics()
local model, core_model, loss
if hp.algorithm == "als" then
  model = require("moonfm.als").new { factors = hp.factors,
    threads = hp.threads, solver = hp.solver, iterations = hp.epochs }
  assert(model:fit(train, { on_iteration = function(r)
    loss = r.loss
    m:epoch(r.iteration, "train", "loss", r.loss, "loss")
  end }))
  core_model = model:core()
else
  model = require("moonfm.fm").new { factors = hp.factors,
    threads = hp.threads, loss = "warp" }
  for e = 1, hp.epochs do
    local r = assert(model:fit_partial(train, { epochs = 1 }))
    loss = r.loss
    m:epoch(e, "train", "loss", r.loss, "loss")
  end
  core_model = model.model
end
if test then
  local clock = require("moonfm.core").clock
  local t0 = clock()
  local r = assert(ev.evaluate(core_model, test, { metrics = names,
    exclude = train, threads = hp.threads }))
  local t1 = clock()
  for _, n in ipairs(names) do m:final("test", n, r[n], "score") end
  if hp.compare_local then
    local t2 = clock()
    local l = assert(ev.evaluate(core_model, test, { metrics = names,
      exclude = train, threads = hp.threads, distributed = false }))
    if env.is_leader then
      print(string.format("eval_seconds dist=%.3f local=%.3f", t1 - t0,
                          clock() - t2))
      for _, n in ipairs(names) do
        print(string.format("eval %s dist=%.17g local=%.17g", n, r[n], l[n]))
      end
      for _, c in ipairs { "users", "skipped_users", "unknown_users",
                           "unknown_items", "excluded_test_items",
                           "test_items" } do
        print(string.format("eval count %s dist=%d local=%d", c, r.counts[c],
                            l.counts[c]))
      end
    end
  end
end
m:final("train", "loss", loss, "loss")
assert(mf.save(env.model_dir .. "/model.mfm", core_model,
  { kind = hp.algorithm }, { users = train:users(), items = train:items() }))
