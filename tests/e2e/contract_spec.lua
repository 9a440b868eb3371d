-- End-to-end: `moonfm train` on fake trees, against the container contract
-- (spec sections 1-11 and 15; rule numbers in the test names).
local e2e = require "support.e2e"
local cjson = require "cjson"

local RC = '{"current_host":"algo-1","hosts":["algo-1"],"network_interface_name":"eth0"}'
local IDC = '{"train":{"TrainingInputMode":"File","S3DistributionType":"FullyReplicated","RecordWrapperType":"None"}}'
local DATA = "user,item\nu1,i1\nu2,i2\n"

local function tree(hps, extra)
  local config = { ["hyperparameters.json"] = hps or "{}",
                   ["resourceconfig.json"] = RC, ["inputdataconfig.json"] = IDC }
  for k, v in pairs(extra or {}) do config[k] = v or nil end
  return e2e.tree { config = config,
                    files = { ["input/data/train/part-0.csv"] = DATA } }
end

local function train(b, recipe, env)
  local vars = { SAGEMAKER_BASE_DIR = b, SAGEMAKER_PROGRAM = e2e.recipe(recipe) }
  for k, v in pairs(env or {}) do vars[k] = v end
  return e2e.run({ "train" }, { env = vars })
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("moonfm train", function()
  it("runs a recipe to success: exit 0, success file, metric lines (rules 12, 59, 100-104)", function()
    local b = tree('{"epochs": "2", "rate": "0.25"}')
    local code, out, err = train(b, "ok.lua")
    assert.are.equal(0, code, err)
    assert.is_true(e2e.exists(b .. "/output/success"))
    assert.is_nil(e2e.failure(b))
    assert.are.equal("epochs=2\n", e2e.read(b .. "/model/out.txt"))
    local l = lines_of(out)
    assert.are.same({
      "#quality_metric: host=algo-1, epoch=1, test precision@10 <score>=0.1",
      "#quality_metric: host=algo-1, epoch=2, test precision@10 <score>=0.2",
      "#quality_metric: host=algo-1, test precision@10 <score>=0.2",
    }, { l[1], l[2], l[3] })
    -- The start summary is logged with a timestamp and a level (rules 81, 83).
    assert.matches("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z INFO moonfm", err)
    assert.matches("channel train: File mode", err, 1, true)
    assert.matches("rate = 0.25", err, 1, true)
  end)

  -- moonfm's own fatal path (an error outside every recipe, here a broken
  -- installed module): the same failure file rules as a recipe's errors.
  it("cuts a long fatal error at a UTF-8 boundary with ... and keeps it whole in failure-full.txt (rules 60, 63, 64, 66; copies the executable)", function()
    local prefix = e2e.tmpdir("broken-install")
    local lmod = prefix .. "/share/moonfm/lua/moonfm"
    os.execute(string.format("mkdir -p %s/bin %s && cp %s %s/bin/moonfm",
      e2e.quote(prefix), e2e.quote(lmod), e2e.quote(e2e.exe), e2e.quote(prefix)))
    local long = ("é"):rep(800) -- 1,600 bytes of two-byte characters
    e2e.write(lmod .. "/cli.lua", "error(" .. string.format("%q", long) .. ", 0)\n")
    local b = e2e.tmpdir("broken-install-tree")
    os.execute("mkdir -p " .. e2e.quote(b .. "/output/data"))
    local code, _, err = e2e.run({ "train" }, { exe = prefix .. "/bin/moonfm",
                                                env = { SAGEMAKER_BASE_DIR = b } })
    assert.are.equal(70, code, err)
    assert.matches("InternalError: " .. long, err, 1, true)
    local f = e2e.read(b .. "/output/failure")
    assert.is_true(#f <= 1024, #f)
    assert.are.equal("InternalError: ", f:sub(1, 15))
    assert.are.equal("...\n", f:sub(-4))
    assert.are.equal(long:sub(1, #f - 19), f:sub(16, -5))
    assert.is_truthy(utf8.len(f), "cut inside a character")
    local full = e2e.read(b .. "/output/data/failure-full.txt")
    assert.are.equal("InternalError: " .. long .. "\n", full:sub(1, 16 + #long))
    assert.matches("stack traceback", full, 1, true)
  end)

  it("exports the SM_* environment like the toolkit (rules 51-55, T8)", function()
    local b = tree('{"epochs": "2", "learning-rate": "0.1"}', {
      ["inputdataconfig.json"] = '{"train":{},"item-features":{}}',
    })
    os.execute("mkdir -p " .. e2e.quote(b .. "/input/data/item-features"))
    local code, _, err = train(b, "ok.lua")
    assert.are.equal(0, code, err)
    local seen = e2e.read(b .. "/output/data/seen.txt")
    assert.matches("SM_MODEL_DIR=" .. b .. "/model\n", seen, 1, true)
    assert.matches("SM_HP_EPOCHS=2\n", seen, 1, true)
    assert.matches("SM_HP_LEARNING-RATE=0.1\n", seen, 1, true)
    assert.matches("SM_CHANNEL_ITEM-FEATURES=" .. b .. "/input/data/item-features\n", seen, 1, true)
    assert.matches('SM_HOSTS=["algo-1"]\n', seen, 1, true)
    assert.matches('SM_CHANNELS=["item-features","train"]\n', seen, 1, true)
    assert.matches("CURRENT_HOST=algo-1\n", seen, 1, true)
    assert.matches("SM_USER_ARGS=[\"--epochs\",\"2\",\"--learning-rate\",\"0.1\"]\n", seen, 1, true)
    assert.matches("SM_NUM_GPUS=0\n", seen, 1, true)
    assert.matches("rate_type=float", seen, 1, true)
    -- rule 27: item-features is configured but not declared by the recipe
    assert.matches("channels not used by this recipe: item-features", err, 1, true)
  end)

  it("splits reserved hyperparameters without warnings (rule 30, T2)", function()
    local b = tree(cjson.encode {
      sagemaker_program = '"ok.lua"', sagemaker_region = '"us-east-1"',
      _tuning_objective_metric = "test:precision@10",
      sagemaker_mpi_enabled = "false", rate = "0.3",
    })
    local code, _, err = train(b, "ok.lua")
    assert.are.equal(0, code, err)
    assert.is_nil(err:find("not used by this recipe", 1, true))
    assert.matches("rate = 0.3", err, 1, true)
    -- Rule 43's MAY: the reserved entries in one line, sorted.
    assert.matches('reserved hyperparameters: _tuning_objective_metric = '
      .. 'test:precision@10, sagemaker_mpi_enabled = false, sagemaker_program = '
      .. '"ok.lua", sagemaker_region = "us-east-1"', err, 1, true)
  end)

  it("defaults missing config files with three warnings (rules 13-15, T3)", function()
    local b = e2e.tree { files = { ["input/data/train/a.csv"] = DATA } }
    local code, _, err = train(b, "ok.lua")
    assert.are.equal(0, code, err)
    assert.matches("hyperparameters.json is missing", err, 1, true)
    assert.matches("resourceconfig.json is missing", err, 1, true)
    assert.matches("inputdataconfig.json is missing", err, 1, true)
    assert.matches("channel train: File mode", err, 1, true)
  end)

  it("accepts resourceConfig.json with a warning (rule 10)", function()
    local b = tree(nil, { ["resourceconfig.json"] = false })
    e2e.write(b .. "/input/config/resourceConfig.json", RC)
    local code, _, err = train(b, "ok.lua")
    assert.are.equal(0, code, err)
    assert.matches("read resourceConfig.json", err, 1, true)
  end)

  it("fails with ConfigError on bad JSON, naming file and position (rule 16, T4)", function()
    local b = tree(nil, { ["inputdataconfig.json"] = '{"train": {"TrainingInputMode": }' })
    local code, _, err = train(b, "ok.lua")
    assert.are.equal(2, code)
    local first, whole = e2e.failure(b)
    assert.matches("^ConfigError: .*inputdataconfig%.json is not valid JSON", first)
    assert.matches("line 1, column", whole, 1, true)
    assert.matches("ConfigError:", err, 1, true)
    assert.is_false(e2e.exists(b .. "/output/success"))
  end)

  it("fails with ConfigError when current_host is not in hosts (rule 20)", function()
    local b = tree(nil, { ["resourceconfig.json"] = '{"current_host":"algo-3","hosts":["algo-1","algo-2"]}' })
    local code = train(b, "ok.lua")
    assert.are.equal(2, code)
    assert.matches("^ConfigError: .*current_host 'algo%-3' is not one of hosts", e2e.failure(b))
  end)

  it("fails with ConfigError for a top-level array and bad field types (rule 16)", function()
    local b = tree("[1, 2]")
    assert.are.equal(2, (train(b, "ok.lua")))
    assert.matches("^ConfigError: .*hyperparameters%.json", e2e.failure(b))
    b = tree(nil, { ["inputdataconfig.json"] = '{"train":{"TrainingInputMode":"Stream"}}' })
    assert.are.equal(2, (train(b, "ok.lua")))
    assert.matches("TrainingInputMode", e2e.failure(b), 1, true)
  end)

  it("fails with HyperparameterError listing every bad value (rules 40, 56)", function()
    local b = tree('{"epochs": "abc", "rate": "fast"}')
    local code = train(b, "ok.lua")
    assert.are.equal(2, code)
    local first, whole = e2e.failure(b)
    assert.matches("^HyperparameterError:", first)
    assert.matches("epochs", whole, 1, true)
    assert.matches("rate", whole, 1, true)
    assert.is_false(e2e.exists(b .. "/model/out.txt"))
  end)

  it("fails with DataError for a missing required channel (rule 26)", function()
    local b = tree(nil, { ["inputdataconfig.json"] = '{"validation":{}}' })
    local code = train(b, "ok.lua")
    assert.are.equal(3, code)
    assert.matches("^DataError: required channel train missing; the job has channels validation",
                   e2e.failure(b))
  end)

  it("turns a Lua error into a RecipeError with the recipe's line (rules 62, 66)", function()
    local b = tree()
    local code, _, err = train(b, "fail.lua")
    assert.are.equal(1, code)
    local first, whole = e2e.failure(b)
    assert.matches("^RecipeError: .*fail%.lua:4: attempt to index a nil value", first)
    assert.matches("traceback", whole, 1, true)
    assert.matches("RecipeError:", err, 1, true)
    assert.is_truthy(e2e.read(b .. "/output/data/failure-full.txt"))
    assert.is_false(e2e.exists(b .. "/output/success"))
  end)

  it("limits the failure file to 1024 bytes of valid UTF-8 ending in ... (rules 63-64, T5)", function()
    local b = tree()
    local code, _, err = train(b, "long_error.lua")
    assert.are.equal(1, code)
    local _, whole = e2e.failure(b)
    assert.is_true(#whole <= 1024)
    assert.is_truthy(utf8.len(whole))
    assert.matches("%.%.%.\n$", whole)
    assert.matches(string.rep("é", 2500), err, 1, true) -- full text on stderr
  end)

  it("keeps a failure file the recipe wrote itself (rule 61, T6)", function()
    local b = tree()
    local code = train(b, "own_failure.lua")
    assert.are.equal(1, code)
    assert.are.equal("DataError: my own precise reason\n", e2e.read(b .. "/output/failure"))
  end)

  it("fails when a declared output is missing (rule 57)", function()
    local b = tree()
    local code = train(b, "no_output.lua")
    assert.are.equal(1, code)
    assert.matches("^RecipeError: the recipe finished without writing model%.moonfm", e2e.failure(b))
  end)

  -- ASan (scripts/test-sanitize) reserves more address space than the limit.
  ;(os.getenv("MOONFM_SANITIZED") and pending or it)(
     "reports running out of memory as OutOfMemory (rules 56, 66)", function()
    local b = tree()
    local code, _, err = e2e.run({ "train" }, {
      prefix = "ulimit -v 600000;",
      env = { SAGEMAKER_BASE_DIR = b, SAGEMAKER_PROGRAM = e2e.recipe("oom.lua") } })
    assert.are.equal(1, code, err)
    assert.matches("^OutOfMemory:", e2e.failure(b))
  end)

  it("rejects extra arguments and unknown commands with status 2 (rules 2, 3)", function()
    local b = tree()
    local code, _, err = e2e.run({ "train", "--fast" }, { env = { SAGEMAKER_BASE_DIR = b } })
    assert.are.equal(2, code)
    assert.matches("train takes no arguments", err, 1, true)
    code, _, err = e2e.run({ "bogus" }, { env = { SAGEMAKER_BASE_DIR = b } })
    assert.are.equal(2, code)
    assert.matches("unknown command 'bogus'", err, 1, true)
    code = e2e.run({}, { env = { SAGEMAKER_BASE_DIR = b } })
    assert.are.equal(2, code)
  end)

  it("fails with ConfigError when no recipe is chosen or found (rules 45-47)", function()
    local b = tree()
    local code = e2e.run({ "train" }, { env = { SAGEMAKER_BASE_DIR = b, MOONFM_RECIPE = "" } })
    assert.are.equal(2, code)
    assert.matches("^ConfigError: no recipe chosen", e2e.failure(b))
    b = tree()
    code = e2e.run({ "train" }, { env = { SAGEMAKER_BASE_DIR = b,
      SAGEMAKER_PROGRAM = "nothere.lua", SAGEMAKER_SUBMIT_DIRECTORY = "s3://bucket/code.tar.gz" } })
    assert.are.equal(2, code)
    assert.matches("does not download code", e2e.read(b .. "/output/failure"), 1, true)
  end)

  it("finds a recipe in B/code by bare name (rule 46)", function()
    local b = tree()
    e2e.write(b .. "/code/mine.lua", e2e.read(e2e.recipe("ok.lua")))
    local code, _, err = e2e.run({ "train" }, { env = { SAGEMAKER_BASE_DIR = b,
      SAGEMAKER_PROGRAM = "mine" } })
    assert.are.equal(0, code, err)
  end)

  it("stops cleanly on SIGTERM: state saved, exit 0, no failure (rules 69-75)", function()
    local b = tree()
    local d = e2e.tmpdir("sig")
    local cmd = string.format("cd %s && env SAGEMAKER_BASE_DIR=%s SAGEMAKER_PROGRAM=%s %s train "
      .. "> %s/out 2> %s/err & pid=$!; for i in $(seq 100); do [ -e %s/output/data/ready ] && break; "
      .. "sleep 0.1; done; kill -TERM $pid; wait $pid; echo $? > %s/code",
      e2e.quote(d), e2e.quote(b), e2e.quote(e2e.recipe("wait_stop.lua")), e2e.quote(e2e.exe),
      d, d, e2e.quote(b), d)
    os.execute(cmd)
    assert.are.equal("0", e2e.read(d .. "/code"):match("%d+"), e2e.read(d .. "/err"))
    assert.are.equal("saved\n", e2e.read(b .. "/model/state.txt"))
    assert.is_nil(e2e.failure(b))
  end)

  it("exits 143 at once on a second SIGTERM (rule 76)", function()
    local b = tree()
    local d = e2e.tmpdir("sig2")
    local cmd = string.format("cd %s && env SLOW_SAVE=1 SAGEMAKER_BASE_DIR=%s SAGEMAKER_PROGRAM=%s %s train "
      .. "> %s/out 2> %s/err & pid=$!; for i in $(seq 100); do [ -e %s/output/data/ready ] && break; "
      .. "sleep 0.1; done; kill -TERM $pid; sleep 0.5; kill -TERM $pid; wait $pid; echo $? > %s/code",
      e2e.quote(d), e2e.quote(b), e2e.quote(e2e.recipe("wait_stop.lua")), e2e.quote(e2e.exe),
      d, d, e2e.quote(b), d)
    os.execute(cmd)
    assert.are.equal("143", e2e.read(d .. "/code"):match("%d+"))
    assert.is_nil(e2e.failure(b))
  end)
end)

describe("moonfm train stopped before the data is read", function()
  -- Found by the hostile-input campaign of 2026-12-05: SIGTERM while the
  -- bundled recipe waited for a Pipe (or read a large file) logged
  -- "train.lua:116: attempt to index a nil value (local 'train')".
  it("exits 143 with no failure file and no Lua error (rules 71, 75, 111)", function()
    local b = e2e.tree { config = {
      ["hyperparameters.json"] = '{"epochs":"1"}', ["resourceconfig.json"] = RC,
      ["inputdataconfig.json"] = '{"train":{"TrainingInputMode":"Pipe"}}' } }
    local d = e2e.tmpdir("sigpipe")
    local cmd = string.format("cd %s && env SAGEMAKER_BASE_DIR=%s SAGEMAKER_PROGRAM=%s %s train "
      .. "> %s/out 2> %s/err & pid=$!; sleep 1; kill -TERM $pid; wait $pid; echo $? > %s/code",
      e2e.quote(d), e2e.quote(b), e2e.quote(e2e.source .. "/recipes/train.lua"),
      e2e.quote(e2e.exe), d, d, d)
    os.execute(cmd)
    local err = e2e.read(d .. "/err")
    assert.are.equal("143", e2e.read(d .. "/code"):match("%d+"), err)
    assert.is_nil(e2e.failure(b))
    assert.is_nil(err:find("attempt to index", 1, true), err)
    assert.truthy(err:find("stopped before the model was saved", 1, true), err)
    assert.is_false(e2e.exists(b .. "/output/success"))
  end)
end)

describe("moonfm train with several hosts that do not resolve", function()
  -- Found by the hostile-input campaign of 2026-12-05: the job printed
  -- nothing at all while it retried name resolution for up to 15 minutes.
  it("says it is resolving before it waits, then fails with ConfigError (rules 81, 98)", function()
    local b = tree(nil, { ["resourceconfig.json"] =
      '{"current_host":"algo-1","hosts":["algo-1","algo-2"]}' })
    local code, _, err = train(b, "wait_stop.lua", { MOONFM_DIST_RESOLVE = "1" })
    if code == 2 and err:find("built without Open MPI", 1, true) then return end
    assert.are.equal(2, code, err)
    assert.matches("2 hosts in resourceconfig.json (this is algo-1, rank 0): resolving", err, 1, true)
    assert.matches("^ConfigError: cannot reach the other hosts", e2e.failure(b))
  end)
end)

describe("moonfm metric-definitions", function()
  it("prints the regexes of the metrics a recipe declares (rule 107)", function()
    local code, out, err = e2e.run({ "metric-definitions", e2e.recipe("ok.lua") })
    assert.are.equal(0, code, err)
    local defs = cjson.decode(out)
    assert.is_true(#defs >= 1)
    local names = {}
    for _, d in ipairs(defs) do names[d.Name] = d.Regex end
    assert.is_truthy(names["test:precision@10"])
  end)
end)

describe("moonfm --version and --help", function()
  it("print and exit 0", function()
    local code, out = e2e.run({ "--version" })
    assert.are.equal(0, code)
    assert.matches("^moonfm %d+%.%d+%.%d+", out)
    code, out = e2e.run({ "--help" })
    assert.are.equal(0, code)
    assert.matches("usage: moonfm", out, 1, true)
  end)
end)
