-- Specs of the sweep pieces (space, results, median rule), the run report,
-- progress lines and the child-process functions of moonfm.core.
local space = require "moonfm.sweep_space"
local results = require "moonfm.sweep_results"
local report = require "moonfm.report"
local progress = require "moonfm.progress"
local core = require "moonfm.core"
local cjson = require "cjson"

local tmp_root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
local n_tmp = 0
local function tmpdir()
  n_tmp = n_tmp + 1
  local d = string.format("%s/sweep-spec-%d-%d", tmp_root, core.getpid(), n_tmp)
  os.execute("rm -rf '" .. d .. "' && mkdir -p '" .. d .. "'")
  return d
end

local function read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("moonfm.sweep_space", function()
  it("crosses grids in sorted name order, last name fastest", function()
    local t = space.trials({ b = { "grid", 1, 2 }, a = { "grid", "x", "y" },
                             c = 7 }, {})
    assert.are.same({
      { a = "x", b = 1, c = 7 }, { a = "x", b = 2, c = 7 },
      { a = "y", b = 1, c = 7 }, { a = "y", b = 2, c = 7 },
    }, t)
  end)

  it("refuses more trials than a purely grid space has", function()
    local ok, msg = pcall(space.trials, { a = { "grid", 1, 2 } }, { trials = 3 })
    assert.is_false(ok)
    assert.matches("only 2 combinations", msg, 1, true)
  end)

  it("needs a trial count when the space is random", function()
    local ok, msg = pcall(space.trials, { a = { "uniform", 0, 1 } }, {})
    assert.is_false(ok)
    assert.matches("trials = N", msg, 1, true)
  end)

  it("draws within bounds, integers for int_uniform, members for choice", function()
    local sp = { u = { "uniform", -1, 2 }, l = { "log_uniform", 1e-3, 1e-1 },
                 i = { "int_uniform", 3, 5 }, c = { "choice", "p", "q", 9 } }
    local seen_i, seen_c = {}, {}
    for _, t in ipairs(space.trials(sp, { trials = 300, seed = 5 })) do
      assert.is_true(t.u >= -1 and t.u < 2)
      assert.is_true(t.l >= 1e-3 and t.l <= 1e-1)
      assert.are.equal("integer", math.type(t.i))
      seen_i[t.i] = true
      seen_c[t.c] = true
      -- rounded to 6 significant digits: the text reads back the same
      assert.are.equal(t.u, tonumber(space.format_value(t.u)))
    end
    assert.are.same({ [3] = true, [4] = true, [5] = true }, seen_i)
    assert.are.same({ p = true, q = true, [9] = true }, seen_c)
  end)

  it("spreads log_uniform evenly over decades", function()
    local low = 0
    local n = 2000
    for _, t in ipairs(space.trials({ l = { "log_uniform", 1e-4, 1 } },
                                    { trials = n, seed = 1 })) do
      if t.l < 1e-2 then low = low + 1 end
    end
    -- half the log range is below 1e-2: about n/2 (binomial sd ~ 22)
    assert.is_true(math.abs(low - n / 2) < 150, tostring(low))
  end)

  it("gives trial i the same values whatever the trial count; seeds differ", function()
    local sp = { r = { "uniform", 0, 1 }, g = { "grid", 1, 2, 3 } }
    local a = space.trials(sp, { trials = 4, seed = 11 })
    local b = space.trials(sp, { trials = 9, seed = 11 })
    for i = 1, 4 do assert.are.same(a[i], b[i]) end
    local c = space.trials(sp, { trials = 4, seed = 12 })
    assert.are_not.equal(a[1].r, c[1].r)
    -- grid cycles under random draws
    assert.are.same({ 1, 2, 3, 1 }, { a[1].g, a[2].g, a[3].g, a[4].g })
  end)

  it("rejects bad specs with the parameter's name", function()
    for _, case in ipairs {
      { { x = { "uniform", 1, 1 } }, "space.x: lo (1) must be below hi" },
      { { x = { "log_uniform", 0, 1 } }, "space.x: log_uniform needs lo > 0" },
      { { x = { "gaussian", 0, 1 } }, "space.x: unknown distribution" },
      { { x = { "choice" } }, "space.x: choice needs at least one value" },
      { { x = { "int_uniform", 0.5, 3 } }, "integer bounds" },
      { { x = {} }, "space.x: unknown distribution" },
      -- Hostile-input campaign 2026-12-05: these drew inf or NaN, which
      -- tonumber() turns into nil, so trials silently ran the default.
      { { x = { "uniform", -math.huge, 1 } }, "space.x: the bounds of uniform must be finite" },
      { { x = { "uniform", 0, math.huge } }, "must be finite numbers" },
      { { x = { "log_uniform", 1e-3, 1 / 0 } }, "must be finite numbers" },
      { { x = { "uniform", -1e308, 1e308 } }, "space.x: the range" },
      { { x = { "int_uniform", math.mininteger, math.maxinteger } }, "too wide" },
      { { x = { "grid", 0 / 0, 0.1 } }, "space.x: value 1 (" },
      { { x = { "choice", 1, math.huge } }, "value 2 (inf) is not a finite number" },
      { { x = 0 / 0 }, "is not a finite number" },
    } do
      local ok, msg = pcall(space.info, case[1])
      assert.is_false(ok)
      assert.matches(case[2], msg, 1, true)
    end
  end)

  it("formats values as SageMaker strings", function()
    assert.are.equal("64", space.format_value(64))
    assert.are.equal("64.0", space.format_value(64.0))
    assert.are.equal("0.0123457", space.format_value(0.01234567))
    assert.are.equal("1e-05", space.format_value(1e-5))
    assert.are.equal("true", space.format_value(true))
    assert.are.equal("warp", space.format_value("warp"))
  end)
end)

describe("moonfm.sweep_results", function()
  -- Plain reference of the median rule, written out for one case.
  it("stops a trial whose best so far is below the median of running averages", function()
    local others = { { 0.1, 0.3, 0.5 }, { 0.2, 0.4, 0.6 }, { 0.0, 0.2, 0.4 } }
    -- running averages at epoch 3: 0.3, 0.4, 0.2 -> median 0.3
    local stop, med = results.median_stop({ 0.1, 0.2, 0.25 }, 3, others,
                                          { maximize = true, min_trials = 3 })
    assert.is_true(stop)
    assert.are.near(0.3, med, 1e-12)
    -- best so far 0.35 >= median 0.3: keep going
    assert.is_false((results.median_stop({ 0.35, 0.1, 0.1 }, 3, others,
                                         { maximize = true })))
    -- minimizing: a loss of 0.25 is better than a median of 0.3
    assert.is_false((results.median_stop({ 0.25, 0.5, 0.5 }, 3, others,
                                         { maximize = false })))
    assert.is_true((results.median_stop({ 0.35, 0.5, 0.5 }, 3, others,
                                        { maximize = false })))
  end)

  it("waits for min_epochs and min_trials", function()
    local others = { { 0.5, 0.5 }, { 0.5, 0.5 } }
    assert.is_false((results.median_stop({ 0.1, 0.1 }, 2, others,
      { maximize = true, min_epochs = 3, min_trials = 1 })))
    assert.is_false((results.median_stop({ 0.1, 0.1, 0.1 }, 3, others,
      { maximize = true, min_epochs = 1, min_trials = 1 })),
      "others have not reached epoch 3")
    assert.is_false((results.median_stop({ 0.1, 0.1 }, 2, others,
      { maximize = true, min_epochs = 1, min_trials = 3 })))
    assert.is_true((results.median_stop({ 0.1, 0.1 }, 2, others,
      { maximize = true, min_epochs = 1, min_trials = 2 })))
  end)

  it("ranks by objective, then completed before early-stopped, failures last", function()
    local t = {
      { trial = 1, status = "failed" },
      { trial = 2, status = "completed", objective = 0.5 },
      { trial = 3, status = "early_stopped", objective = 0.7 },
      { trial = 4, status = "completed", objective = 0.7 },
      { trial = 5, status = "completed", objective = 0.1 },
    }
    local order = {}
    for i, r in ipairs(results.rank(t, true)) do order[i] = r.trial end
    assert.are.same({ 4, 3, 2, 5, 1 }, order)
    order = {}
    for i, r in ipairs(results.rank(t, false)) do order[i] = r.trial end
    assert.are.same({ 5, 2, 4, 3, 1 }, order)
    assert.are.equal(4, results.best(t, true).trial)
    assert.is_nil(results.best({ t[1], t[3] }, true),
                  "an early-stopped trial is never the best model")
  end)

  it("writes CSV with quoting and JSON with nulls", function()
    local t = {
      { trial = 2, status = "completed", objective = 0.25, epochs = 2,
        curve = { 0.1, 0.25 }, seconds = 1.5, exit_code = 0,
        hyperparameters = { loss = "warp", lr = 0.05 } },
      { trial = 1, status = "failed", reason = 'RecipeError: bad "x", y',
        epochs = 0, curve = {}, seconds = 0.2, exit_code = 1,
        hyperparameters = { loss = "bpr", lr = 0.5 } },
    }
    local csv = results.csv(t, { "loss", "lr" })
    assert.are.equal(
      "rank,trial,status,objective,loss,lr,epochs,seconds,exit_code,reason,dir\n"
      .. "1,2,completed,0.25,warp,0.05,2,1.500,0,,\n"
      .. ',1,failed,,bpr,0.5,0,0.200,1,"RecipeError: bad ""x"", y",\n', csv)
    local doc = cjson.decode(results.json({ sweep = { seed = 1 } }, t))
    assert.are.equal(2, #doc.trials)
    assert.are.same({ 0.1, 0.25 }, doc.trials[1].curve)
    assert.are.equal(cjson.null, doc.trials[2].objective)
    assert.are.equal(cjson.null, doc.trials[2].rank)
    assert.are.equal(1, doc.sweep.seed)
  end)

  it("prints a table with aligned columns", function()
    local t = { { trial = 3, status = "completed", objective = 0.5, epochs = 4,
                  seconds = 2, hyperparameters = { k = 16 } } }
    assert.are.equal("rank  trial  status     obj  k   epochs  seconds\n"
                  .. "1     3      completed  0.5  16  4       2.0",
                     results.table_text(t, "obj", { "k" }))
  end)
end)

describe("moonfm.report", function()
  it("encodes JSON with sorted keys, marked empty arrays and nulls", function()
    assert.are.equal('{"a":[],"b":{},"c":[1,null,2.5],"d":"<\\/script>"}',
      report.json { b = {}, a = report.array(), c = { 1, report.null, 2.5 },
                    d = "</script>" })
    assert.are.equal("0.1", report.json(0.1))
    assert.are.equal(1 / 3, cjson.decode(report.json(1 / 3)))
    assert.are.equal("null", report.json(0 / 0))
  end)

  local function records()
    local r = {}
    for e = 1, 3 do
      r[#r + 1] = { epoch = e, split = "test", name = "precision@10",
                    kind = "score", value = e / 10 }
      r[#r + 1] = { epoch = e, split = "train", name = "loss", kind = "loss",
                    value = 1 / e }
    end
    r[#r + 1] = { split = "test", name = "precision@10", kind = "score",
                  value = 0.3 }
    return r
  end

  it("writes metrics.json with per-metric curves and the hyperparameters", function()
    local d = tmpdir()
    assert.is_true(report.write_run(d, { metrics = records(),
      hyperparameters = { factors = 32, loss = "warp" }, recipe = "/r/x.lua" }))
    local doc = cjson.decode(read(d .. "/metrics.json"))
    assert.are.equal("completed", doc.status)
    assert.are.same({ factors = 32, loss = "warp" }, doc.hyperparameters)
    assert.are.equal(2, #doc.metrics)
    local m = doc.metrics[1]
    assert.are.equal("test:precision@10", m.key)
    assert.are.same({ 1, 2, 3 }, m.epochs)
    assert.are.same({ 0.1, 0.2, 0.3 }, m.values)
    assert.are.equal(0.3, m.final)
    assert.are.equal("loss", doc.metrics[2].kind)
    assert.is_nil(doc.metrics[2].final)
  end)

  it("writes a self-contained report.html with the data and Chart.js inlined", function()
    local d = tmpdir()
    assert.is_true(report.write_run(d, { metrics = records(),
      hyperparameters = { loss = "<b>" }, status = "stopped" }))
    local html = read(d .. "/report.html")
    assert.matches('<script type="application/json" id="moonfm-data">',
                   html, 1, true)
    assert.matches("&lt;b&gt;", html, 1, true)
    assert.is_nil(html:find("<script src", 1, true), "nothing to fetch")
    assert.is_nil(html:find("https?://[%w.]+/[%w./-]+%.js"))
    if report.chartjs() then
      assert.matches("Chart.js v", html, 1, true)
    else
      assert.matches("The charts need Chart.js", html, 1, true)
    end
  end)

  it("writes a report for a run without metrics", function()
    local d = tmpdir()
    assert.is_true(report.write_run(d, {}))
    assert.matches("No per-epoch metrics", read(d .. "/report.html"), 1, true)
    assert.are.same({}, cjson.decode(read(d .. "/metrics.json")).metrics)
  end)

  it("returns fail, msg when the folder cannot be written and raises on misuse", function()
    local ok, msg = report.write_run("/nonexistent/dir", {})
    assert.is_nil(ok)
    assert.matches("/nonexistent/dir", msg, 1, true)
    assert.has_error(function() report.write_run(nil, {}) end)
    assert.has_error(function() report.write_run("/tmp", { metric = {} }) end,
                     "write_run: unknown option 'metric'")
  end)
end)

describe("moonfm.progress", function()
  local function fake_clock()
    local t = 0
    return function() return t end, function(dt) t = t + dt end
  end
  local function sink()
    local s = { text = "" }
    function s:write(...) for _, x in ipairs { ... } do self.text = self.text .. x end end
    function s:flush() end
    return s
  end

  it("prints one plain line per epoch and nothing else off a terminal", function()
    local clock, advance = fake_clock()
    local lines, out = {}, sink()
    local p = progress.new { epochs = 4, tty = false, clock = clock, out = out,
      log = function(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end }
    for e = 1, 4 do
      for b = 1, 10 do advance(0.1) p:update(b * 100, 1000) end
      p:epoch(e, 1000)
    end
    p:finish()
    assert.are.equal("", out.text)
    assert.are.equal(4, #lines)
    assert.are.equal("epoch 1/4: 1000 samples in 1.0 s (1000 samples/s), "
                     .. "3.0 s left", lines[1])
    assert.are.equal("epoch 4/4: 1000 samples in 1.0 s (1000 samples/s)",
                     lines[4])
    for _, l in ipairs(lines) do assert.is_nil(l:find("[\r\27]")) end
  end)

  it("redraws one line in place on a terminal, throttled", function()
    local clock, advance = fake_clock()
    local out = sink()
    local p = progress.new { epochs = 2, tty = true, clock = clock, out = out,
                             interval = 0.5 }
    for b = 1, 10 do advance(0.1) p:update(b * 10, 100) end
    local draws = select(2, out.text:gsub("\r", ""))
    assert.are.equal(2, draws) -- at 0.1 s and at 0.6 s
    -- 60 % of the first epoch in 0.6 s: 1.4 epochs of 1.0 s left
    assert.matches("epoch 1/2   60%  100 samples/s  1.4 s left", out.text, 1, true)
    p:epoch(1, 100)
    assert.matches("\r\27%[Kepoch 1/2: 100 samples in 1.0 s %(100 samples/s%), 1.0 s left\n$",
                   out.text)
  end)

  it("rejects bad options", function()
    assert.has_error(function() progress.new { epochs = 0 } end)
    assert.has_error(function() progress.new { epochs = 2, color = true } end,
                     "progress.new: unknown option 'color'")
  end)
end)

describe("moonfm.core child processes", function()
  it("spawns with redirected output and an edited environment", function()
    local d = tmpdir()
    core.setenv("MOONFM_SPEC_KEEP", "kept")
    core.setenv("MOONFM_SPEC_DROP", "dropped")
    local pid = assert(core.spawn {
      argv = { "/bin/sh", "-c", 'echo "$A|$MOONFM_SPEC_KEEP|${MOONFM_SPEC_DROP-unset}"; echo err >&2; exit 3' },
      env = { A = "a=b", MOONFM_SPEC_DROP = false },
      stdout = d .. "/out", stderr = d .. "/err",
    })
    local code, how = core.wait(pid, 10)
    assert.are.equal(3, code)
    assert.are.equal("exit", how)
    assert.are.equal("a=b|kept|unset\n", read(d .. "/out"))
    assert.are.equal("err\n", read(d .. "/err"))
  end)

  it("does not block without a timeout, and kills", function()
    local pid = assert(core.spawn { argv = { "/bin/sleep", "30" } })
    assert.is_nil(core.wait(pid))
    assert.is_true(core.kill(pid, "0"))
    assert.is_true(core.kill(pid, "TERM"))
    local code, how, sig = core.wait(pid, 10)
    assert.are.same({ 143, "signal", 15 }, { code, how, sig })
    local ok, msg = core.wait(pid)
    assert.is_nil(ok)
    assert.matches("wait: process " .. pid, msg, 1, true)
    assert.are.equal(0, core.reap())
  end)

  it("returns fail, msg for a missing program and raises on misuse", function()
    local ok, msg = core.spawn { argv = { "/nonexistent/prog" } }
    assert.is_nil(ok)
    assert.matches("spawn: /nonexistent/prog: No such file", msg, 1, true)
    assert.has_error(function() core.spawn { argv = {} } end)
    assert.has_error(function() core.spawn { argv = { "/bin/true" }, env = { 1 } } end)
    assert.has_error(function() core.kill(1, "NOPE") end)
  end)
end)
