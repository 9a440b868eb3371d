-- End-to-end: `moonfm sweep` for real, with tests/recipes/curve.lua (a
-- model-free recipe whose test score@1 is best at rate 0.3, kind "a").
local e2e = require "support.e2e"
local cjson = require "cjson"
local core = require "moonfm.core"
local lfs = require "lfs"

local q = e2e.quote
local CURVE = e2e.recipe("curve.lua")

-- A sweep file in a new folder; returns the folder and the file's path.
local function sweep_file(body)
  local d = e2e.tmpdir("sweep")
  local p = d .. "/sweep.lua"
  e2e.write(p, body:gsub("CURVE", CURVE))
  return d, p
end

local function results(out)
  local s = e2e.read(out .. "/results.json")
  assert.is_string(s, "no " .. out .. "/results.json")
  return cjson.decode(s)
end

local function by_trial(doc)
  local t = {}
  for _, r in ipairs(doc.trials) do t[r.trial] = r end
  return t
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("moonfm sweep", function()
  it("runs every trial, reports a failed one, ranks, keeps the best, writes CSV/JSON/report", function()
    local probe = e2e.tmpdir("probe")
    local d, f = sweep_file(([[
return {
  recipe = "CURVE",
  fixed = { epochs = 4, delay = 0.2, probe = %q },
  space = { rate = { "grid", 0.1, 0.3, 0.5 }, fail_at = { "grid", 0, 2 } },
  parallel = 2,
  objective = { metric = "test:score@1", maximize = true },
}]]):format(probe))
    local code, out, err = e2e.run({ "sweep", f, "--out", d .. "/out" })
    assert.are.equal(0, code, err)
    local o = d .. "/out"
    local doc = results(o)
    assert.are.equal(6, #doc.trials)
    local t = by_trial(doc)
    -- grid order: fail_at then rate, rate fastest (names sorted)
    assert.are.same({ fail_at = 0, rate = 0.1 }, t[1].hyperparameters)
    assert.are.same({ fail_at = 2, rate = 0.5 }, t[6].hyperparameters)
    for i = 1, 3 do
      assert.are.equal("completed", t[i].status)
      assert.are.equal(4, t[i].epochs)
    end
    for i = 4, 6 do
      assert.are.equal("failed", t[i].status)
      assert.are.equal(1, t[i].exit_code)
      assert.matches("^RecipeError: .*diverged at epoch 2", t[i].reason)
    end
    -- objective = the final line; reference: (1 - |rate - 0.3|)(1 - 0.5^4)
    assert.are.near((1 - 0.2) * (1 - 0.5 ^ 4), t[1].objective, 1e-6)
    assert.are.near(1 - 0.5 ^ 4, t[2].objective, 1e-6)
    assert.are.equal(2, doc.best.trial)
    assert.are.equal(2, doc.trials[1].trial)
    assert.are.equal(o .. "/best/model", doc.best.model_dir)
    assert.matches("rate=0.3 ", e2e.read(o .. "/best/model/model.txt"), 1, true)
    assert.matches('"rate": "0.3"', e2e.read(o .. "/best/hyperparameters.json"),
                   1, true)
    -- one leaderboard line per finished trial, then the table and the best
    local l = lines(out)
    local live = 0
    for _, x in ipairs(l) do
      if x:match("^%[%d/6%] trial %d") then live = live + 1 end
    end
    assert.are.equal(6, live)
    assert.matches("trial 5 failed after [%d.]+ s: RecipeError: [^\n]*diverged at epoch 2", out)
    assert.matches("best: trial 2, test:score@1 = 0.9375; model in " .. o
                   .. "/best/model", out, 1, true)
    assert.matches("\nrank +trial +status +test:score@1 +fail_at +rate", out)
    -- CSV: header + 6 rows, best first
    local csv = lines(e2e.read(o .. "/results.csv"))
    assert.are.equal(7, #csv)
    assert.matches("^rank,trial,status,objective,fail_at,rate,", csv[1])
    assert.matches("^1,2,completed,0.9375,0,0.3,4,", csv[2])
    assert.matches("report.html", out, 1, true)
    assert.is_true(e2e.exists(o .. "/report.html"))
    -- parallelism: never more than 2 trials at once, and 2 did overlap
    local most = 0
    for i = 1, 6 do
      local n = tonumber(e2e.read(string.format("%s/trials/%03d/output/data/concurrent.txt", o, i)))
      most = math.max(most, n)
    end
    assert.is_true(most <= 2, "at most 2 at once")
    assert.are.equal(2, most, "trials ran in parallel")
  end)

  it("stops a trial early with the median rule", function()
    local d, f = sweep_file([[
return {
  recipe = "CURVE",
  fixed = { epochs = 20, delay = 0.05 },
  space = { rate = { "grid", 0.3, 0.31, 0.29, 0.9 } },
  parallel = 1,
  objective = { metric = "test:score@1" },
  early_stopping = { rule = "median", min_epochs = 2, min_trials = 3 },
}]])
    local code, out, err = e2e.run({ "sweep", f, "--out", d .. "/out" })
    assert.are.equal(0, code, err)
    local t = by_trial(results(d .. "/out"))
    for i = 1, 3 do assert.are.equal("completed", t[i].status) end
    assert.are.equal("early_stopped", t[4].status)
    assert.is_true(t[4].stopped_at >= 2 and t[4].epochs < 20,
                   "stopped at " .. tostring(t[4].stopped_at))
    assert.matches("trial 4 stopped early at epoch %d+ %(median rule%)", out)
    assert.matches("is worse than the median", err, 1, true)
    assert.are.equal(1, results(d .. "/out").best.trial)
  end)

  -- SIGHUP (a closed terminal): found by the hostile-input campaign of
  -- 2026-12-05; it killed the sweep (status 129), left its trials running
  -- in their own process groups and wrote no results.
  for _, sig in ipairs { "TERM", "HUP" } do
  it("stops every trial on SIG" .. sig .. ", waits for them and exits 143 (rule 77)", function()
    local d, f = sweep_file([[
return {
  recipe = "CURVE",
  fixed = { epochs = 500, delay = 0.2 },
  space = { rate = { "grid", 0.1, 0.2, 0.3, 0.4 } },
  parallel = 2,
  objective = { metric = "test:score@1" },
}]])
    local o = d .. "/out"
    local pid = assert(core.spawn {
      argv = { e2e.exe, "sweep", f, "--out", o },
      stdout = d .. "/stdout", stderr = d .. "/stderr", group = false })
    -- wait until both running trials have printed a metric line
    local function started(i)
      local s = e2e.read(string.format("%s/trials/%03d/output/data/stdout.log", o, i))
      return s and s:find("#quality_metric", 1, true)
    end
    local waited = 0
    while not (started(1) and started(2)) and waited < 600 do
      core.sleep(0.1)
      waited = waited + 1
    end
    assert.is_truthy(started(1) and started(2), e2e.read(d .. "/stderr"))
    local err = e2e.read(d .. "/stderr")
    local pids = {}
    for p in err:gmatch("started %(pid (%d+)%)") do pids[#pids + 1] = tonumber(p) end
    assert.are.equal(2, #pids)
    assert.is_true(core.kill(pid, sig))
    local code = core.wait(pid, 90)
    assert.are.equal(143, code, e2e.read(d .. "/stderr"))
    -- the trials are gone (and were reaped by the sweep: no such process)
    for _, p in ipairs(pids) do assert.is_nil((core.kill(p, "0"))) end
    local doc = results(o)
    assert.is_true(doc.sweep.stopped)
    local t = by_trial(doc)
    assert.are.equal("stopped", t[1].status)
    assert.are.equal("stopped", t[2].status)
    assert.are.equal("pending", t[3].status)
    assert.are.equal("pending", t[4].status)
    assert.is_nil(doc.best)
    assert.matches("forwarding SIGTERM to 2 running trials",
                   e2e.read(d .. "/stderr"), 1, true)
    assert.is_false(e2e.exists(string.format("%s/trials/003", o)))
  end)
  end

  it("rejects a bad sweep file with exit 2 and says what to fix", function()
    for _, case in ipairs {
      { 'return { recipe = "CURVE", space = { rate = { "uniform", 0, 1 } }, objective = { metric = "test:score@1" }, trails = 3 }',
        "unknown key 'trails'" },
      { 'return { recipe = "CURVE", space = { rate = { "uniform", 0, 1 } }, objective = { metric = "test:score@1" } }',
        "trials = N" },
      { 'return { recipe = "CURVE", space = { rate = { "grid", 1 } }, objective = { metric = "score" } }',
        "must read split:name" },
      { 'return { recipe = "nope.lua", space = { rate = { "grid", 1 } }, objective = { metric = "test:x" } }',
        "recipe nope.lua not found" },
      { 'return { recipe = "CURVE", space = { rate = { "log_uniform", 0, 1 } }, trials = 2, objective = { metric = "test:x" } }',
        "space.rate: log_uniform needs lo > 0" },
      { "return 42", "must return a table" },
      -- Checked against what the recipe declares (its preamble, run once):
      -- these ran every trial to the end before.
      { 'return { recipe = "CURVE", space = { rate = { "grid", 0.1, 0.3 } }, objective = { metric = "test:score@1:epoch" } }',
        "is not a metric " },
      { 'return { recipe = "CURVE", space = { rate = { "grid", 0.1, 0.3 } }, objective = { metric = "test:score@1:epoch" } }',
        "name it test:score@1)" },
      { 'return { recipe = "CURVE", space = { rate = { "grid", 0.1, 0.3 } }, objective = { metric = "test:scor@1" } }',
        "it reports test:score@1, train:loss" },
      { 'return { recipe = "CURVE", space = { rte = { "grid", 0.1, 0.3 } }, objective = { metric = "test:score@1" } }',
        "space.rte is not a hyperparameter" },
    } do
      local d, f = sweep_file(case[1])
      local code, _, err = e2e.run({ "sweep", f, "--out", d .. "/out" })
      assert.are.equal(2, code, err)
      assert.matches(case[2], err, 1, true)
      assert.is_false(e2e.exists(d .. "/out"), "nothing created")
    end
    local code, _, err = e2e.run({ "sweep" })
    assert.are.equal(2, code)
    assert.matches("sweep needs a sweep FILE", err, 1, true)
  end)

  it("writes under the current folder by default and refuses to reuse a sweep folder", function()
    local d, f = sweep_file([[
return {
  recipe = "CURVE",
  fixed = { epochs = 2 },
  space = { rate = { "choice", 0.2, 0.3 } },
  trials = 2, seed = 4, parallel = 1,
  objective = { metric = "train:loss" },
  out = "here",
}]])
    local cwd = e2e.tmpdir("cwd")
    local code, _, err = e2e.run({ "sweep", f }, { cwd = cwd })
    assert.are.equal(0, code, err)
    local doc = results(cwd .. "/here")
    -- the kind of train:loss is a loss: minimised without being told
    assert.is_false(doc.sweep.objective.maximize)
    assert.are.equal(2, #doc.trials)
    code, _, err = e2e.run({ "sweep", f }, { cwd = cwd })
    assert.are.equal(2, code)
    assert.matches("already holds a sweep", err, 1, true)
  end)

  local example = e2e.source .. "/recipes/sweep-example.lua"
  local have_train = lfs.attributes(e2e.source .. "/recipes/train.lua")
  local run_example = have_train and it or pending
  run_example("runs recipes/sweep-example.lua on the sample data from any folder", function()
    local cwd = e2e.tmpdir("example")
    local code, out, err = e2e.run({ "sweep", example }, { cwd = cwd })
    assert.are.equal(0, code, err)
    local found
    for name in lfs.dir(cwd .. "/sweeps") do
      if name:match("^sweep%-example%-") then found = cwd .. "/sweeps/" .. name end
    end
    assert.is_truthy(found, out)
    local doc = results(found)
    assert.is_truthy(doc.best, out)
    assert.is_true(e2e.exists(found .. "/best/model"))
    assert.is_true(e2e.exists(found .. "/report.html"))
  end)
end)
