-- End-to-end: the default recipe (recipes/train.lua) through `moonfm run`
-- and `moonfm train` on the bundled sample data and on broken inputs.
local e2e = require "support.e2e"
local cjson = require "cjson"

local SAMPLE = e2e.source .. "/data/sample"

local function run(args, env)
  return e2e.run(args, { env = env })
end

-- Metric lines -> { ["split name"] = {epoch values...}, final = {...} }
local function parse_metrics(out)
  local per_epoch, final = {}, {}
  for line in out:gmatch("[^\n]+") do
    local e, split, name, v = line:match(
      "^#quality_metric: host=algo%-1, epoch=(%d+), (%S+) (%S+) <%a+>=(%S+)$")
    if e then
      local key = split .. " " .. name
      per_epoch[key] = per_epoch[key] or {}
      per_epoch[key][tonumber(e)] = tonumber(v)
    else
      split, name, v = line:match("^#quality_metric: host=algo%-1, (%S+) (%S+) <%a+>=(%S+)$")
      if split then final[split .. " " .. name] = tonumber(v) end
    end
  end
  return per_epoch, final
end

describe("recipes/train.lua", function()
  it("trains on the sample data, beats popularity, writes model and exports", function()
    local b = e2e.tmpdir("train")
    local code, out, err = run({ "run", "train.lua", "epochs=5", "threads=1",
                                 "--base-dir", b })
    assert.are.equal(0, code, err)
    local per_epoch, final = parse_metrics(out)
    assert.are.equal(5, #per_epoch["test precision@10"])
    assert.are.equal(5, #per_epoch["train fit_seconds"])
    local p, pop = final["test precision@10"], final["test popularity_precision@10"]
    assert.is_true(p > 2 * pop, ("precision %s vs popularity %s"):format(p, pop))
    assert.is_true(final["test auc"] > 0.8)
    for _, f in ipairs { "model/model.moonfm", "model/user_factors.npy",
                         "model/item_factors.npy", "model/user_ids.txt",
                         "model/item_ids.txt", "output/success",
                         "output/data/metrics.json", "output/data/report.html" } do
      assert.is_true(e2e.exists(b .. "/" .. f), f)
    end
    assert.is_nil(e2e.failure(b))
    -- The model passes inspect; checkpoints were written and pruned to 2.
    local icode, iout = run({ "inspect", b .. "/model/model.moonfm" })
    assert.are.equal(0, icode)
    assert.matches("fm", iout, 1, true)
    local n = 0
    for f in require("lfs").dir(b .. "/checkpoints") do
      if f:match("^checkpoint%-") then n = n + 1 end
    end
    assert.are.equal(2, n)
  end)

  it("prints metric lines that the metric-definitions regexes match (T10, rules 100-107)", function()
    local b = e2e.tmpdir("t10")
    local code, out, err = run({ "run", "train.lua", "epochs=3", "--base-dir", b })
    assert.are.equal(0, code, err)
    local dcode, dout = run({ "metric-definitions", "train.lua" })
    assert.are.equal(0, dcode)
    local defs = cjson.decode(dout)
    local by_name = {}
    for _, d in ipairs(defs) do by_name[d.Name] = d.Regex end
    assert.is_truthy(by_name["test:precision@10"])
    -- Check with grep -P (PCRE, like the service's regexes).
    local tmp = e2e.tmpdir("t10out") .. "/out.txt"
    e2e.write(tmp, out)
    local function count(re)
      local f = io.popen("grep -cP " .. e2e.quote(re) .. " " .. e2e.quote(tmp))
      local c = tonumber(f:read("a"))
      f:close()
      return c
    end
    assert.are.equal(1, count(by_name["test:precision@10"]))
    assert.are.equal(3, count(by_name["test:precision@10:epoch"]))
  end)

  it("trains ALS with algorithm=als and beats popularity", function()
    local b = e2e.tmpdir("als")
    local code, out, err = run({ "run", "train.lua", "algorithm=als", "epochs=5",
                                 "--base-dir", b })
    assert.are.equal(0, code, err)
    local _, final = parse_metrics(out)
    assert.is_true(final["test precision@10"] > 2 * final["test popularity_precision@10"])
    local icode, iout = run({ "inspect", b .. "/model/model.moonfm" })
    assert.are.equal(0, icode)
    assert.matches("als", iout, 1, true)
  end)

  it("resumes from a checkpoint to a bit-identical model (issue 7, rules 92-94)", function()
    -- 6 epochs straight, against 3 epochs then a restart that resumes to 6.
    local a = e2e.tmpdir("straight")
    local code, _, err = run({ "run", "train.lua", "epochs=6", "threads=1",
                               "use_features=false", "--base-dir", a })
    assert.are.equal(0, code, err)
    local b = e2e.tmpdir("resumed")
    code, _, err = run({ "run", "train.lua", "epochs=3", "threads=1",
                         "use_features=false", "--base-dir", b })
    assert.are.equal(0, code, err)
    assert.matches("checkpoints in .*: none, a fresh start", err) -- rule 81
    e2e.write(b .. "/input/config/hyperparameters.json",
      '{"epochs": "6", "threads": "1", "use_features": "false"}')
    code, _, err = run({ "train" }, { SAGEMAKER_BASE_DIR = b,
                                      SAGEMAKER_PROGRAM = "train.lua" })
    assert.are.equal(0, code, err)
    assert.matches("2 found, the newest checkpoint%-000003%.moonfm %(epoch 3%)", err)
    assert.matches("resumed from .*checkpoint%-000003%.moonfm at epoch 3", err)
    local ua = e2e.read(a .. "/model/user_factors.npy")
    local ub = e2e.read(b .. "/model/user_factors.npy")
    assert.are.equal(#ua, #ub)
    assert.is_true(ua == ub, "user factors differ after resume")
    assert.is_true(e2e.read(a .. "/model/item_factors.npy") ==
                   e2e.read(b .. "/model/item_factors.npy"))
  end)

  -- Found by the hostile-input campaign of 2026-12-05: a checkpoint of
  -- factors=16 was resumed silently under factors=32 (the model kept 16),
  -- and an fm checkpoint under algorithm=als failed the job with
  -- "HyperparameterError: fm: unknown option 'regularization'".
  it("does not resume a checkpoint of another algorithm, factors or loss (rule 94)", function()
    local b = e2e.tmpdir("foreign-ck")
    local code, _, err = run({ "run", "train.lua", "epochs=2", "threads=1", "factors=8",
                               "use_features=false", "--base-dir", b })
    assert.are.equal(0, code, err)
    for _, case in ipairs {
      { '"factors": "16"', "it holds factors=8, the hyperparameters ask 16" },
      { '"factors": "8", "loss": "bpr"', "it holds loss=warp, the hyperparameters ask bpr" },
      { '"factors": "8", "algorithm": "als"', "it holds algorithm=fm, the hyperparameters ask als" },
    } do
      local c = e2e.tmpdir("foreign-ck-run")
      os.execute(string.format("cp -r %s/. %s && rm -rf %s/model/* %s/output",
        e2e.quote(b), e2e.quote(c), e2e.quote(c), e2e.quote(c)))
      e2e.write(c .. "/input/config/hyperparameters.json",
        '{"epochs": "3", "threads": "1", "use_features": "false", ' .. case[1] .. '}')
      code, _, err = run({ "train" }, { SAGEMAKER_BASE_DIR = c,
                                        SAGEMAKER_PROGRAM = "train.lua" })
      assert.are.equal(0, code, err)
      assert.matches(case[2], err, 1, true)
      assert.is_nil(err:find("resumed from", 1, true), err)
    end
  end)

  it("reports a malformed row as a DataError with file and line (rules 62, 91)", function()
    local d = e2e.tmpdir("bad")
    e2e.write(d .. "/train.csv", "user,item,weight\nu1,i1,1\nu2,i2,2\nu3,,1\n")
    local b = d .. "/tree"
    local code, _, err = run({ "run", "train.lua", "--channel", "train=" .. d .. "/train.csv",
                               "--base-dir", b })
    assert.are.equal(3, code, err)
    local first = e2e.failure(b)
    assert.matches("^DataError: .*train%.csv.*line 4", first)
    assert.is_false(e2e.exists(b .. "/model/model.moonfm"))
    assert.is_false(e2e.exists(b .. "/output/success"))
  end)

  it("skips bad rows when bad_rows=skip and says how many", function()
    local d = e2e.tmpdir("skip")
    local rows = { "user,item" }
    for u = 1, 30 do
      for i = 1, 8 do rows[#rows + 1] = ("u%d,i%d"):format(u, (u * 7 + i * 3) % 40) end
    end
    rows[#rows + 1] = "broken-row-without-item"
    e2e.write(d .. "/train.csv", table.concat(rows, "\n") .. "\n")
    local b = d .. "/tree"
    local code, _, err = run({ "run", "train.lua", "bad_rows=skip", "epochs=2",
                               "--channel", "train=" .. d .. "/train.csv", "--base-dir", b })
    assert.are.equal(0, code, err)
    assert.matches("skipped 1", err, 1, true)
  end)

  it("reads a layout it cannot tell by itself through the layout hyperparameters",
     function()
    -- Steam-200k's rows: user, "game", behaviour, hours, 0; no header.
    local d = e2e.tmpdir("layout")
    local rows = {}
    for u = 1, 30 do
      for i = 1, 8 do
        rows[#rows + 1] = ('%d;"Game %d";play;%d.5;0'):format(u, (u * 7 + i * 3) % 40, i)
      end
    end
    e2e.write(d .. "/train.csv", table.concat(rows, "\n") .. "\n")
    local function train(...)
      local b = e2e.tmpdir("layout-run")
      local code, _, err = run({ "run", "train.lua", "epochs=1", "--channel",
                                 "train=" .. d .. "/train.csv", "--base-dir", b, ... })
      return code, err, b
    end
    -- Detected: ';', and the third column as a weight, which fails and
    -- says what to set.
    local code, err = train()
    assert.are.equal(3, code, err)
    assert.matches('column 3 is not a number here ("play")', err, 1, true)
    assert.matches('weight_column=', err, 1, true)
    code, err = train("header=absent", "weight_column=4", "delimiter=;")
    assert.are.equal(0, code, err)
    assert.matches("30 users, 40 items", err, 1, true)
    code, err = train("header=absent", "weight_column=none", "item_column=2")
    assert.are.equal(0, code, err)
    -- A tab as JSON's "\t" decodes to itself; typed, it is the two characters \t.
    for _, tab in ipairs({ "\t", "\\t", "tab" }) do
      code, err = train("header=absent", "weight_column=none", "delimiter=" .. tab)
      assert.are.equal(3, code, err)
      assert.matches("is the delimiter '\\t' right?", err, 1, true)
    end
    local b
    code, err, b = train("weight_column=0")
    assert.are.equal(2, code, err)
    assert.matches("^HyperparameterError: hyperparameter 'weight_column' = \"0\"",
                   (e2e.failure(b)))
  end)

  it("runs the complete recipe of docs/recipes.md as printed", function()
    local doc = e2e.read(e2e.source .. "/docs/recipes.md")
    local code_text = doc:match("## A complete recipe%s+```lua\n(.-)```")
    assert.is_string(code_text, "no recipe block in docs/recipes.md")
    local d = e2e.tmpdir("doc-recipe")
    e2e.write(d .. "/my-recipe.lua", code_text)
    local b = d .. "/tree"
    local code, out, err = run({ "run", d .. "/my-recipe.lua", "epochs=2", "--channel",
                                 "train=" .. SAMPLE .. "/train.csv", "--channel",
                                 "test=" .. SAMPLE .. "/test.csv", "--base-dir", b })
    assert.are.equal(0, code, err)
    assert.matches("epoch=2, test precision@10 <score>=", out, 1, true)
    assert.is_true(e2e.exists(b .. "/model/model.moonfm"))
  end)

  it("feeds a --pipe channel's file to real FIFOs, epoch after epoch (rule 131)", function()
    local d = e2e.tmpdir("pipe-feed")
    e2e.write(d .. "/epochs.lua", [[
      local moonfm = require "moonfm"
      local data = require "moonfm.data"
      local lfs = require "lfs"
      moonfm.hyperparameters { epochs = { type = "int", default = 3 } }
      local ch = moonfm.channels { train = { required = true } }
      moonfm.declare_output("seen.txt")
      local ep = data.open_epochs(ch.train, { wait_timeout = 30 })
      local seen = {}
      for _ = 1, 3 do
        local path = ch.train.path .. "_" .. ep:epoch()
        local x = assert(ep:next_epoch())
        seen[#seen + 1] = lfs.attributes(path, "mode") .. ":" .. x:nnz()
      end
      ep:close()
      local f = assert(io.open(moonfm.env().model_dir .. "/seen.txt", "w"))
      f:write(table.concat(seen, ","), "\n")
      f:close()
    ]])
    local b = d .. "/tree"
    local code, _, err = run({ "run", d .. "/epochs.lua", "--pipe",
                               "train=" .. SAMPLE .. "/train.csv", "--base-dir", b })
    assert.are.equal(0, code, err)
    local nnz = "38721"
    assert.are.equal(("named pipe:%s,named pipe:%s,named pipe:%s\n"):format(nnz, nnz, nnz),
                     e2e.read(b .. "/model/seen.txt"))
  end)

  it("checkpoints by time with checkpoint_seconds (rule 97)", function()
    local function checkpoints(...)
      local b = e2e.tmpdir("ck-seconds")
      local code, _, err = run({ "run", "train.lua", "epochs=3", "checkpoint_every=0",
                                 "checkpoint_keep=5", "--channel", "train=" .. SAMPLE
                                 .. "/train.csv", "--base-dir", b, ... })
      assert.are.equal(0, code, err)
      local n = 0
      for f in require("lfs").dir(b .. "/checkpoints") do
        if f:match("^checkpoint%-%d+%.moonfm$") then n = n + 1 end
      end
      return n
    end
    assert.are.equal(3, checkpoints("checkpoint_seconds=1e-6"))
    assert.are.equal(0, checkpoints("checkpoint_seconds=1000"))
    assert.are.equal(0, checkpoints())
  end)

  it("takes LightFM's and implicit's names for its settings", function()
    local code, _, err = run({ "run", "train.lua", "no_components=8", "iterations=1",
                               "random_state=3", "num_threads=1", "learning_schedule=adadelta",
                               "--channel", "train=" .. SAMPLE .. "/train.csv",
                               "--base-dir", e2e.tmpdir("alias") })
    assert.are.equal(0, code, err)
    for _, line in ipairs { "factors = 8 (given as no_components)",
                            "epochs = 1 (given as iterations)",
                            "seed = 3 (given as random_state)",
                            "threads = 1 (given as num_threads)",
                            'schedule = "adadelta" (given as learning_schedule)' } do
      assert.matches(line, err, 1, true)
    end
    assert.is_nil(err:find("ignoring hyperparameters", 1, true), err)
  end)

  it("says once that an empty test split is skipped, instead of NaN metrics each epoch",
     function()
    local d = e2e.tmpdir("empty-test")
    e2e.write(d .. "/test.csv", "")
    local b = d .. "/tree"
    local code, out, err = run({ "run", "train.lua", "epochs=2", "--channel",
                                 "train=" .. SAMPLE .. "/train.csv", "--channel",
                                 "test=" .. d .. "/test.csv", "--base-dir", b })
    assert.are.equal(0, code, err)
    local _, n = err:gsub("channel 'test' has no interactions", "")
    assert.are.equal(1, n, err)
    assert.is_nil(err:find("is nan", 1, true), err)
    assert.is_nil(out:find("test precision", 1, true), out)
    assert.is_true(e2e.exists(b .. "/model/model.moonfm"))
  end)

  it("rejects bad hyperparameters all at once (rule 40)", function()
    local b = e2e.tmpdir("badhp")
    local code = run({ "run", "train.lua", "epochs=0", "loss=hinge", "factors=1.5",
                       "--base-dir", b })
    assert.are.equal(2, code)
    local _, whole = e2e.failure(b)
    assert.matches("^HyperparameterError:", whole)
    for _, k in ipairs { "epochs", "loss", "factors" } do
      assert.matches(k, whole, 1, true)
    end
  end)

  it("stops on SIGTERM with a saved model and exit 0 (rules 73-75)", function()
    local d = e2e.tmpdir("stop")
    local rows = { "user,item" }
    for u = 1, 3000 do
      for i = 1, 30 do rows[#rows + 1] = ("u%d,i%d"):format(u, (u * 13 + i * 7) % 2000) end
    end
    e2e.write(d .. "/train.csv", table.concat(rows, "\n") .. "\n")
    local b = d .. "/tree"
    local cmd = string.format("cd %s && %s run train.lua epochs=100000 baseline=false "
      .. "--channel train=%s/train.csv --base-dir %s > %s/out 2> %s/err & pid=$!; "
      .. "for i in $(seq 300); do grep -q 'epoch=2,' %s/out 2>/dev/null && break; sleep 0.1; done; "
      .. "kill -TERM $pid; wait $pid; echo $? > %s/code",
      e2e.quote(d), e2e.quote(e2e.exe), d, e2e.quote(b), d, d, d, d)
    os.execute(cmd)
    assert.are.equal("0", e2e.read(d .. "/code"):match("%d+"), e2e.read(d .. "/err"))
    assert.is_true(e2e.exists(b .. "/model/model.moonfm"))
    assert.is_nil(e2e.failure(b))
    assert.matches("stopped cleanly", e2e.read(d .. "/err"), 1, true)
  end)
end)

describe("moonfm install layout", function()
  it("runs from an installed prefix with no LUA_PATH (issue 2, item 4)", function()
    local prefix = e2e.tmpdir("prefix")
    local build = e2e.exe:match("^(.*)/[^/]+$")
    local ok = os.execute(string.format("cmake --install %s --prefix %s > /dev/null",
                                        e2e.quote(build), e2e.quote(prefix)))
    assert.is_true(ok)
    local b = e2e.tmpdir("installed")
    local code, out, err = e2e.run({ "run", "train.lua", "epochs=2", "--base-dir", b },
      { exe = prefix .. "/bin/moonfm", env = { LUA_PATH = "", LUA_PATH_5_4 = "" } })
    assert.are.equal(0, code, err)
    assert.matches("test precision@10", out, 1, true)
  end)
end)
