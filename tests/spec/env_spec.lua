-- moonfm.env: the /opt/ml view read from fake trees under a temp folder.
local lfs = require "lfs"
local core = require "moonfm.core"
local env = require "moonfm.env"
local errors = require "moonfm.errors"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local tmp = string.format("%s/env-%d", root, core.getpid())

local function sh(cmd) assert(os.execute(cmd)) end
local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

-- Runs fn, which must raise a moonfm error of category; returns it.
local function raises(category, fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(errors.is(e), "not a moonfm error: " .. tostring(e))
  assert.equals(category, e.category)
  return e
end

-- A fresh tree B with the given config files (name -> text).
local n = 0
local function tree(files)
  n = n + 1
  local b = string.format("%s/b%d", tmp, n)
  sh("mkdir -p '" .. b .. "/input/config'")
  for name, text in pairs(files or {}) do
    spit(b .. "/input/config/" .. name, text)
  end
  return b
end

local function with_env(name, value, fn)
  local old = os.getenv(name)
  core.setenv(name, value)
  local ok, e = pcall(fn)
  core.setenv(name, old)
  if not ok then error(e, 0) end
end

local ONE_HOST = '{"current_host": "algo-1", "hosts": ["algo-1"]}'

describe("moonfm.env", function()
  setup(function() sh("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'") end)
  teardown(function() sh("rm -rf '" .. tmp .. "'") end)

  it("base_dir: SAGEMAKER_BASE_DIR without trailing slashes, else /opt/ml",
     function()
    with_env("SAGEMAKER_BASE_DIR", "/x/y//", function()
      assert.equals("/x/y", env.base_dir())
    end)
    with_env("SAGEMAKER_BASE_DIR", "", function()
      assert.equals("/opt/ml", env.base_dir())
    end)
    with_env("SAGEMAKER_BASE_DIR", nil, function()
      assert.equals("/opt/ml", env.base_dir())
    end)
  end)

  it("read_json_object: absent file is nil, an object is a table", function()
    assert.is_nil(env.read_json_object(tmp .. "/nope.json"))
    spit(tmp .. "/ok.json", '{"a": "x", "b": [1, 2]}')
    local t = env.read_json_object(tmp .. "/ok.json")
    assert.equals("x", t.a)
    assert.equals(2, #t.b)
  end)

  it("read_json_object: invalid JSON names the file, line and column",
     function()
    local p = tmp .. "/bad.json"
    spit(p, '{\n  "a": 1,\n  "b": }')
    local e = raises("ConfigError", function() env.read_json_object(p) end)
    assert.matches(p .. " is not valid JSON", e.message, 1, true)
    assert.matches("line 3, column 8: expected a JSON value, found '}'",
                   e.message, 1, true)
    spit(p, "")
    e = raises("ConfigError", function() env.read_json_object(p) end)
    assert.matches("line 1, column 1", e.message, 1, true)
  end)

  it("read_json_object: arrays, null and scalars are not objects", function()
    local p = tmp .. "/arr.json"
    for text, found in pairs { ["[1, 2]"] = "an array", ["  []"] = "an empty array",
                               ["null"] = "null", ["42"] = "a number",
                               ['"s"'] = "a string", ["true"] = "a boolean" } do
      spit(p, text)
      local e = raises("ConfigError", function() env.read_json_object(p) end)
      assert.matches("must hold a JSON object ({...}), found " .. found,
                     e.message, 1, true)
    end
    spit(p, "{}")
    assert.same({}, env.read_json_object(p))
  end)

  it("config type errors name JSON kinds, never Lua types", function()
    local b = tree()
    local cfg = b .. "/input/config"
    spit(cfg .. "/resourceconfig.json", '{"current_host": "algo-1", "hosts": []}')
    local e = raises("ConfigError", function() env.load(b) end)
    assert.matches("found an empty array", e.message, 1, true)
    spit(cfg .. "/resourceconfig.json",
         '{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": null}')
    e = raises("ConfigError", function() env.load(b) end)
    assert.matches("found null", e.message, 1, true)
    assert.is_nil(e.message:find("userdata", 1, true))
  end)

  it("parse_content_type: media type and parameters", function()
    local m, p = env.parse_content_type("text/csv; label_size=0")
    assert.equals("text/csv", m)
    assert.same({ label_size = "0" }, p)
    m, p = env.parse_content_type("application/x-recordio-protobuf")
    assert.equals("application/x-recordio-protobuf", m)
    assert.same({}, p)
    m, p = env.parse_content_type("text/csv;label_size=1; header = present;junk")
    assert.equals("text/csv", m)
    assert.same({ label_size = "1", header = "present" }, p)
  end)

  it("parse_content_type: quoted values, lower-cased type and keys only",
     function()
    local m, p = env.parse_content_type(' Text/CSV ; Charset="UTF-8"; X=Ab')
    assert.equals("text/csv", m)
    assert.same({ charset = "UTF-8", x = "Ab" }, p)
  end)

  it("parse_content_type: empty or absent is nil", function()
    local m, p = env.parse_content_type("")
    assert.is_nil(m)
    assert.same({}, p)
    m, p = env.parse_content_type(nil)
    assert.is_nil(m)
    assert.same({}, p)
    m, p = env.parse_content_type("  ; a=1")
    assert.is_nil(m)
    assert.same({ a = "1" }, p)
  end)

  it("load: defaults and three warnings on an empty tree", function()
    local b = tree()
    with_env("TRAINING_JOB_NAME", nil, function()
      local e = env.load(b)
      assert.equals("", e.job_name)
      assert.equals(b, e.base)
      assert.equals(b .. "/input/config", e.config_dir)
      assert.equals(b .. "/input/data", e.data_dir)
      assert.equals(b .. "/model", e.model_dir)
      assert.equals(b .. "/output", e.output_dir)
      assert.equals(b .. "/output/data", e.output_data_dir)
      assert.equals(b .. "/code", e.code_dir)
      assert.equals(b .. "/checkpoints", e.checkpoint_dir)
      assert.equals("algo-1", e.current_host)
      assert.same({ "algo-1" }, e.hosts)
      assert.equals(0, e.rank)
      assert.is_true(e.is_leader)
      assert.equals("eth0", e.network_interface_name)
      assert.equals("local", e.instance_type)
      assert.same({}, e.channels)
      assert.same({}, e.channel_names)
      assert.same({}, e.hyperparameters_raw)
      assert.equals(3, #e.warnings)
      local all = table.concat(e.warnings, "\n")
      assert.matches("hyperparameters.json is missing", all, 1, true)
      assert.matches("resourceconfig.json is missing", all, 1, true)
      assert.matches("inputdataconfig.json is missing", all, 1, true)
    end)
  end)

  it("load: without inputdataconfig.json every folder of input/data is a "
     .. "File channel", function()
    local b = tree { ["resourceconfig.json"] = ONE_HOST,
                     ["hyperparameters.json"] = "{}" }
    sh("mkdir -p '" .. b .. "/input/data/train' '" .. b .. "/input/data/test' '"
       .. b .. "/input/data/.hidden'")
    spit(b .. "/input/data/loose.csv", "a,b\n")
    local e = env.load(b)
    assert.same({ "test", "train" }, e.channel_names)
    assert.equals("File", e.channels.train.mode)
    assert.equals(b .. "/input/data/train", e.channels.train.path)
    assert.equals(1, #e.warnings)
    assert.matches("inputdataconfig.json is missing", e.warnings[1], 1, true)
  end)

  it("load: reads hyperparameters, split into user and reserved", function()
    local b = tree { ["hyperparameters.json"] =
      '{"epochs": "3", "sagemaker_program": "\\"train.lua\\""}' }
    local e = env.load(b)
    assert.same({ epochs = "3" }, e.hyperparameters_raw)
    assert.same({ sagemaker_program = '"train.lua"' }, e.reserved)
    assert.equals(2, #e.warnings)
  end)

  it("load: resourceConfig.json is read with a spelling warning", function()
    local b = tree { ["resourceConfig.json"] =
      '{"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], '
      .. '"network_interface_name": "ethwe", '
      .. '"current_instance_type": "ml.m5.large"}' }
    local e = env.load(b)
    assert.equals("algo-2", e.current_host)
    assert.equals(1, e.rank)
    assert.is_false(e.is_leader)
    assert.equals("ethwe", e.network_interface_name)
    assert.equals("ml.m5.large", e.instance_type)
    local all = table.concat(e.warnings, "\n")
    assert.matches("read resourceConfig.json; the expected spelling is "
                   .. "resourceconfig.json", all, 1, true)
    assert.not_matches("resourceconfig.json is missing", all, 1, true)
  end)

  it("load: current_host not in hosts is a ConfigError", function()
    local b = tree { ["resourceconfig.json"] =
      '{"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}' }
    local e = raises("ConfigError", function() env.load(b) end)
    assert.matches("current_host 'algo-3' is not one of hosts (algo-1, algo-2)",
                   e.message, 1, true)
    assert.matches(b .. "/input/config/resourceconfig.json", e.message, 1, true)
  end)

  it("load: hosts must be a non-empty list of names", function()
    for _, rc in ipairs {
      '{"current_host": "algo-1", "hosts": []}',
      '{"current_host": "algo-1"}',
      '{"current_host": "algo-1", "hosts": ["algo-1", 7]}',
      '{"hosts": ["algo-1"]}',
    } do
      local b = tree { ["resourceconfig.json"] = rc }
      raises("ConfigError", function() env.load(b) end)
    end
  end)

  it("load: channel names are 1-64 characters of A-Z a-z 0-9 . _ -",
     function()
    local good = string.rep("a", 64)
    local b = tree { ["inputdataconfig.json"] =
      '{"' .. good .. '": {}, "a.b_c-D9": {}}' }
    assert.same({ "a.b_c-D9", good }, env.load(b).channel_names)
    for _, bad in ipairs { string.rep("a", 65), "bad name", "a/b", "" } do
      b = tree { ["inputdataconfig.json"] = '{"' .. bad .. '": {}}' }
      local e = raises("ConfigError", function() env.load(b) end)
      assert.matches("channel name '" .. bad .. "' is not valid", e.message,
                     1, true)
    end
    b = tree { ["inputdataconfig.json"] = '{"train": "File"}' }
    raises("ConfigError", function() env.load(b) end)
  end)

  it("load: channel fields default, and invalid values are ConfigErrors",
     function()
    local b = tree { ["inputdataconfig.json"] =
      '{"train": {}, "test": {"TrainingInputMode": "Pipe", '
      .. '"S3DistributionType": "ShardedByS3Key", '
      .. '"RecordWrapperType": "RecordIO", "CompressionType": "Gzip"}, '
      .. '"ff": {"TrainingInputMode": "FastFile"}}' }
    local e = env.load(b)
    local t = e.channels.train
    assert.equals("train", t.name)
    assert.equals(b .. "/input/data/train", t.path)
    assert.equals("File", t.mode)
    assert.equals("FullyReplicated", t.distribution)
    assert.equals("None", t.record_wrapper)
    assert.is_nil(t.content_type)
    assert.same({}, t.content_params)
    local s = e.channels.test
    assert.equals("Pipe", s.mode)
    assert.equals("ShardedByS3Key", s.distribution)
    assert.equals("RecordIO", s.record_wrapper)
    assert.equals("Gzip", s.compression)
    assert.equals("FastFile", e.channels.ff.mode)
    for key, bad in pairs { TrainingInputMode = '"Stream"',
                            S3DistributionType = '"Sharded"',
                            RecordWrapperType = '"recordio"',
                            ContentType = "7" } do
      b = tree { ["inputdataconfig.json"] =
        '{"train": {"' .. key .. '": ' .. bad .. '}}' }
      local err = raises("ConfigError", function() env.load(b) end)
      assert.matches("channel 'train': " .. key .. " = ", err.message, 1, true)
    end
    b = tree { ["inputdataconfig.json"] =
      '{"train": {"TrainingInputMode": "Stream"}}' }
    local err = raises("ConfigError", function() env.load(b) end)
    assert.matches("is not one of FastFile, File, Pipe", err.message, 1, true)
  end)

  it("load: ContentType becomes content_type and content_params", function()
    local b = tree { ["inputdataconfig.json"] =
      '{"train": {"ContentType": "Text/CSV; label_size=0"}}' }
    local c = env.load(b).channels.train
    assert.equals("text/csv", c.content_type)
    assert.same({ label_size = "0" }, c.content_params)
  end)

  it("load: checkpointconfig.json LocalPath", function()
    local b = tree { ["checkpointconfig.json"] =
      '{"LocalPath": "/opt/ml/ckpt//", "S3Uri": "s3://b/k"}' }
    assert.equals("/opt/ml/ckpt", env.load(b).checkpoint_dir)
    b = tree { ["checkpointconfig.json"] = '{"LocalPath": ""}' }
    assert.equals(b .. "/checkpoints", env.load(b).checkpoint_dir)
    b = tree { ["checkpointconfig.json"] = '{"S3Uri": "s3://b/k"}' }
    assert.equals(b .. "/checkpoints", env.load(b).checkpoint_dir)
    -- Relative: in the base folder, wherever moonfm was started (rule 92).
    b = tree { ["checkpointconfig.json"] = '{"LocalPath": "ckpt/"}' }
    assert.equals(b .. "/ckpt", env.load(b).checkpoint_dir)
    b = tree { ["checkpointconfig.json"] = '{"LocalPath": "/"}' }
    assert.equals("/", env.load(b).checkpoint_dir)
    b = tree { ["checkpointconfig.json"] = '{"LocalPath": 3}' }
    local e = raises("ConfigError", function() env.load(b) end)
    assert.matches("LocalPath", e.message, 1, true)
  end)

  it("load: any present config file that is not JSON is a ConfigError",
     function()
    for _, name in ipairs { "resourceconfig.json", "inputdataconfig.json",
                            "checkpointconfig.json",
                            "hyperparameters.json" } do
      local b = tree { [name] = "{oops" }
      local e = raises("ConfigError", function() env.load(b) end)
      assert.matches(name, e.message, 1, true)
    end
  end)

  it("load: job name and ARN from the environment", function()
    with_env("TRAINING_JOB_NAME", "job-7", function()
      with_env("TRAINING_JOB_ARN", "arn:aws:sagemaker:x", function()
        local e = env.load(tree())
        assert.equals("job-7", e.job_name)
        assert.equals("arn:aws:sagemaker:x", e.job_arn)
      end)
    end)
  end)

  it("mkdir_p creates parents, accepts existing folders, reports files",
     function()
    local p = tmp .. "/m/a/b/c"
    assert.is_true(env.mkdir_p(p))
    assert.equals("directory", lfs.attributes(p, "mode"))
    assert.is_true(env.mkdir_p(p .. "/"))
    spit(tmp .. "/m/file", "x")
    local ok, msg = env.mkdir_p(tmp .. "/m/file/sub")
    assert.is_nil(ok)
    assert.matches("cannot create " .. tmp .. "/m/file/sub", msg, 1, true)
    -- Relative paths are relative to the current folder.
    local cwd = lfs.currentdir()
    assert(lfs.chdir(tmp .. "/m"))
    local rok = env.mkdir_p("r/s")
    lfs.chdir(cwd)
    assert.is_true(rok)
    assert.equals("directory", lfs.attributes(tmp .. "/m/r/s", "mode"))
  end)

  it("moonfm.env() gives recipes a read-only view (rule 21)", function()
    local job = require "moonfm.job"
    local saved = job.current
    local raw = { current_host = "algo-1", hosts = { "algo-1", "algo-2" },
                  rank = 0, is_leader = true, channels = { train = { path = "/x" } } }
    job.current = { env = raw }
    local ok, e = pcall(function()
      local v = require("moonfm").env()
      assert.equals(v, require("moonfm").env())
      assert.equals("algo-1", v.current_host)
      assert.equals(2, #v.hosts)
      assert.equals("algo-2", v.hosts[2])
      assert.equals("/x", v.channels.train.path)
      local names = {}
      for _, h in ipairs(v.hosts) do names[#names + 1] = h end
      assert.same({ "algo-1", "algo-2" }, names)
      local keys = 0
      for _ in pairs(v) do keys = keys + 1 end
      assert.equals(5, keys)
      assert.equals("algo-1,algo-2", table.concat(v.hosts, ","))
      for _, write in ipairs {
        function() v.current_host = "evil" end,
        function() v.hosts[1] = "x" end,
        function() v.channels.train.path = "/y" end,
      } do
        local wok, msg = pcall(write)
        assert.is_false(wok)
        assert.matches("read%-only", msg)
      end
      assert.equals("algo-1", raw.current_host)
      assert.equals("algo-1", raw.hosts[1])
      assert.equals("/x", raw.channels.train.path)
    end)
    job.current = saved
    if not ok then error(e, 0) end
  end)
end)
