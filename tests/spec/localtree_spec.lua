-- moonfm.localtree: fake /opt/ml trees for local runs (rule 131), read
-- back with plain file reads and with moonfm.env.
local lfs = require "lfs"
local cjson = require("cjson").new()
local core = require "moonfm.core"
local env = require "moonfm.env"
local errors = require "moonfm.errors"
local localtree = require "moonfm.localtree"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local tmp = string.format("%s/localtree-%d", root, core.getpid())

local function sh(cmd) assert(os.execute(cmd)) end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end
local function raises(category, fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(errors.is(e), "not a moonfm error: " .. tostring(e))
  assert.equals(category, e.category)
  return e
end

describe("moonfm.localtree", function()
  local src
  setup(function()
    sh("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "/src/folder'")
    src = tmp .. "/src"
    spit(src .. "/train.csv", "user,item\na,x\nb,y\n")
    spit(src .. "/folder/part-0.csv", "user,item\nc,z\n")
  end)
  teardown(function() sh("rm -rf '" .. tmp .. "'") end)

  it("lays out the folders and config files", function()
    local d = localtree.create(tmp .. "/t1/", {
      hyperparameters = { epochs = 3, loss = "warp", lr = 0.5 },
    })
    assert.equals(tmp .. "/t1", d)
    for _, sub in ipairs { "input/config", "input/data", "model",
                           "output/data", "checkpoints" } do
      assert.equals("directory", lfs.attributes(d .. "/" .. sub, "mode"), sub)
    end
    -- Hyperparameters are JSON strings, as SageMaker writes them.
    assert.equals('{\n  "epochs": "3",\n  "loss": "warp",\n  "lr": "0.5"\n}\n',
                  slurp(d .. "/input/config/hyperparameters.json"))
    local rc = cjson.decode(slurp(d .. "/input/config/resourceconfig.json"))
    assert.same({ current_host = "algo-1", hosts = { "algo-1" },
                  network_interface_name = "eth0" }, rc)
    assert.equals("{}\n", slurp(d .. "/input/config/inputdataconfig.json"))
  end)

  it("writes a single-host resource config for opts.host", function()
    local d = localtree.create(tmp .. "/t2", { host = "algo-9" })
    local rc = cjson.decode(slurp(d .. "/input/config/resourceconfig.json"))
    assert.equals("algo-9", rc.current_host)
    assert.same({ "algo-9" }, rc.hosts)
  end)

  it("links File channels: a file inside a folder, a folder as is",
     function()
    local d = localtree.create(tmp .. "/t3", { channels = {
      { name = "train", path = src .. "/train.csv" },
      { name = "test", path = src .. "/folder", mode = "File" },
    } })
    local data = d .. "/input/data"
    assert.equals("directory", lfs.symlinkattributes(data .. "/train", "mode"))
    local link = data .. "/train/train.csv"
    assert.equals("link", lfs.symlinkattributes(link, "mode"))
    assert.equals(src .. "/train.csv", lfs.symlinkattributes(link, "target"))
    assert.equals(slurp(src .. "/train.csv"), slurp(link))
    assert.equals("link", lfs.symlinkattributes(data .. "/test", "mode"))
    assert.equals(src .. "/folder", lfs.symlinkattributes(data .. "/test",
                                                          "target"))
    assert.equals("user,item\nc,z\n", slurp(data .. "/test/part-0.csv"))
    local idc = cjson.decode(slurp(d .. "/input/config/inputdataconfig.json"))
    assert.same({
      train = { TrainingInputMode = "File", S3DistributionType =
                "FullyReplicated", RecordWrapperType = "None" },
      test = { TrainingInputMode = "File", S3DistributionType =
               "FullyReplicated", RecordWrapperType = "None" },
    }, idc)
  end)

  it("writes a Pipe channel as the file <name>_0", function()
    local d = localtree.create(tmp .. "/t4", { channels = {
      { name = "train", path = src .. "/train.csv", mode = "Pipe" },
    } })
    local p = d .. "/input/data/train_0"
    assert.equals("file", lfs.symlinkattributes(p, "mode"))
    assert.equals(slurp(src .. "/train.csv"), slurp(p))
    assert.is_nil(lfs.attributes(d .. "/input/data/train"))
    local idc = cjson.decode(slurp(d .. "/input/config/inputdataconfig.json"))
    assert.equals("Pipe", idc.train.TrainingInputMode)
    local e = raises("UsageError", function()
      localtree.create(tmp .. "/t4b", { channels = {
        { name = "train", path = src .. "/folder", mode = "Pipe" } } })
    end)
    assert.matches("must be a file", e.message, 1, true)
  end)

  it("makes a tree that moonfm.env reads without warnings", function()
    local d = localtree.create(tmp .. "/t5", {
      hyperparameters = { factors = 8 },
      channels = { { name = "train", path = src .. "/train.csv" },
                   { name = "test", path = src .. "/train.csv",
                     mode = "Pipe" } },
    })
    local e = env.load(d)
    assert.same({}, e.warnings)
    assert.same({ factors = "8" }, e.hyperparameters_raw)
    assert.same({ "test", "train" }, e.channel_names)
    assert.equals("File", e.channels.train.mode)
    assert.equals("Pipe", e.channels.test.mode)
    assert.equals(d .. "/checkpoints", e.checkpoint_dir)
  end)

  it("can lay out the same tree twice", function()
    local opts = { channels = {
      { name = "train", path = src .. "/train.csv" },
      { name = "test", path = src .. "/folder" } } }
    local d = localtree.create(tmp .. "/t6", opts)
    assert.equals(d, localtree.create(tmp .. "/t6", opts))
    assert.equals("user,item\nc,z\n", slurp(d .. "/input/data/test/part-0.csv"))
  end)

  it("refuses bad channel names and missing paths with a UsageError",
     function()
    for _, bad in ipairs { "", "a b", "a/b", string.rep("c", 65) } do
      local e = raises("UsageError", function()
        localtree.create(tmp .. "/t7", { channels = {
          { name = bad, path = src .. "/train.csv" } } })
      end)
      assert.matches("channel name '" .. bad .. "' is not valid", e.message,
                     1, true)
    end
    local e = raises("UsageError", function()
      localtree.create(tmp .. "/t7", { channels = {
        { name = "train", path = src .. "/absent.csv" } } })
    end)
    assert.matches("channel train: " .. src .. "/absent.csv does not exist",
                   e.message, 1, true)
  end)

  describe("new_run_dir", function()
    local cwd, date
    before_each(function()
      cwd = lfs.currentdir()
      sh("mkdir -p '" .. tmp .. "/runs-cwd'")
      assert(lfs.chdir(tmp .. "/runs-cwd"))
      date = os.date
    end)
    after_each(function()
      os.date = date
      lfs.chdir(cwd)
      sh("rm -rf '" .. tmp .. "/runs-cwd'")
    end)

    it("names runs/<recipe stem>-<UTC date>-<time>", function()
      local d = localtree.new_run_dir("recipes/train.lua")
      assert.matches("^runs/train%-%d%d%d%d%d%d%d%d%-%d%d%d%d%d%d$", d)
      local stamp = d:match("(%d+%-%d+)$")
      assert.is_true(stamp <= os.date("!%Y%m%d-%H%M%S"))
      assert.equals("runs/foo", localtree.new_run_dir("foo"):sub(1, 8))
    end)

    it("adds -2, -3 ... when the folder exists", function()
      local fmt
      os.date = function(f) fmt = f return "20240102-030405" end
      local a = localtree.new_run_dir("/x/als.lua")
      assert.equals("!%Y%m%d-%H%M%S", fmt)
      assert.equals("runs/als-20240102-030405", a)
      sh("mkdir -p " .. a)
      local b = localtree.new_run_dir("/x/als.lua")
      assert.equals(a .. "-2", b)
      sh("mkdir -p " .. b)
      assert.equals(a .. "-3", localtree.new_run_dir("als"))
    end)
  end)
end)
