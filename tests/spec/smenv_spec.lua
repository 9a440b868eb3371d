-- moonfm.smenv: spec rules 51-55 and conformance test T8.  Expected texts
-- are what Python's json.dumps(v, sort_keys=True, separators=(",", ":"))
-- prints, as the AWS training toolkit does.
local smenv = require "moonfm.smenv"
local hp = require "moonfm.hp"
local cjson = require "cjson"
local lfs = require "lfs"

local function ctx(over)
  local c = {
    base = "/opt/ml",
    hyperparameters_raw = {},
    channels = { "train" },
    resource_config = { current_host = "algo-1", hosts = { "algo-1", "algo-2" },
                        network_interface_name = "eth1" },
    input_data_config = { train = { TrainingInputMode = "File" } },
    current_host = "algo-1",
    hosts = { "algo-1", "algo-2" },
    num_cpus = 2,
    num_gpus = 0,
  }
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

describe("moonfm.smenv", function()
  describe("build (rules 51-55)", function()
    it("T8: keeps '-' and '.' in names, SM_HOSTS compact", function()
      local env = smenv.build(ctx {
        channels = { "train", "item-features", "side.info" },
        hyperparameters_raw = { ["learning-rate"] = "0.1", ["a.b"] = '"x"' },
      })
      assert.are.equal("/opt/ml/input/data/item-features",
                       env["SM_CHANNEL_ITEM-FEATURES"])
      assert.are.equal("/opt/ml/input/data/side.info", env["SM_CHANNEL_SIDE.INFO"])
      assert.are.equal("/opt/ml/input/data/train", env.SM_CHANNEL_TRAIN)
      assert.are.equal("0.1", env["SM_HP_LEARNING-RATE"])
      assert.are.equal("x", env["SM_HP_A.B"])
      assert.are.equal('["algo-1","algo-2"]', env.SM_HOSTS)
      assert.are.equal('["item-features","side.info","train"]', env.SM_CHANNELS)
    end)

    it("sets the directories, host and counts", function()
      local env = smenv.build(ctx { base = "/tmp/fake/", log_level = 10,
                                    instance_type = "ml.m5.xlarge" })
      assert.are.same({
        SM_MODEL_DIR = "/tmp/fake/model",
        SM_INPUT_DIR = "/tmp/fake/input",
        SM_INPUT_CONFIG_DIR = "/tmp/fake/input/config",
        SM_OUTPUT_DIR = "/tmp/fake/output",
        SM_OUTPUT_DATA_DIR = "/tmp/fake/output/data",
        SM_OUTPUT_INTERMEDIATE_DIR = "/tmp/fake/output/intermediate",
        SM_CHANNELS = '["train"]',
        SM_CHANNEL_TRAIN = "/tmp/fake/input/data/train",
        SM_HPS = "{}",
        SM_USER_ARGS = "[]",
        SM_CURRENT_HOST = "algo-1",
        CURRENT_HOST = "algo-1",
        SM_HOSTS = '["algo-1","algo-2"]',
        SM_NETWORK_INTERFACE_NAME = "eth1",
        SM_NUM_CPUS = "2",
        SM_NUM_GPUS = "0",
        SM_LOG_LEVEL = "10",
        SM_CURRENT_INSTANCE_TYPE = "ml.m5.xlarge",
        SM_RESOURCE_CONFIG = '{"current_host":"algo-1","hosts":["algo-1",' ..
          '"algo-2"],"network_interface_name":"eth1"}',
        SM_INPUT_DATA_CONFIG = '{"train":{"TrainingInputMode":"File"}}',
        SM_TRAINING_ENV = env.SM_TRAINING_ENV,
      }, env)
    end)

    it("uses the defaults of the contract", function()
      local env = smenv.build {
        base = "/opt/ml", current_host = "algo-1", hosts = { "algo-1" },
        num_cpus = 4,
      }
      assert.are.equal("eth0", env.SM_NETWORK_INTERFACE_NAME)
      assert.are.equal("20", env.SM_LOG_LEVEL)
      assert.are.equal("local", env.SM_CURRENT_INSTANCE_TYPE)
      assert.are.equal("[]", env.SM_CHANNELS)
      assert.are.equal("{}", env.SM_RESOURCE_CONFIG)
      assert.matches("^%d+$", env.SM_NUM_GPUS)
      assert.matches("^%d+$", smenv.build({ base = "/b", current_host = "h",
                                             hosts = { "h" } }).SM_NUM_CPUS)
      -- current_host and hosts may come from resource_config
      local env2 = smenv.build { base = "/b", num_cpus = 1, resource_config = {
        current_host = "algo-2", hosts = { "algo-1", "algo-2" },
        current_instance_type = "ml.c5.2xlarge" } }
      assert.are.equal("algo-2", env2.CURRENT_HOST)
      assert.are.equal("ml.c5.2xlarge", env2.SM_CURRENT_INSTANCE_TYPE)
    end)

    it("formats hyperparameters by the untyped decode (rules 53, 55)", function()
      local env = smenv.build(ctx { hyperparameters_raw = {
        epochs = "10", flag = "True", k = '"5"', l = "[1, 2]", lr = "1e-3",
        none = "null", opt = '"adam"', f = "64.0", z = "007", t = "true",
        sagemaker_program = '"x.lua"', _tuning_objective_metric = "m",
      } })
      assert.are.equal("10", env.SM_HP_EPOCHS)
      assert.are.equal("True", env.SM_HP_FLAG)
      assert.are.equal("5", env.SM_HP_K)
      assert.are.equal("[1,2]", env.SM_HP_L)
      assert.are.equal("0.001", env.SM_HP_LR)
      assert.are.equal("", env.SM_HP_NONE)
      assert.are.equal("adam", env.SM_HP_OPT)
      assert.are.equal("64.0", env.SM_HP_F)
      assert.are.equal("007", env.SM_HP_Z)
      assert.are.equal("true", env.SM_HP_T)
      assert.is_nil(env.SM_HP_SAGEMAKER_PROGRAM)
      assert.is_nil(env.SM_HP__TUNING_OBJECTIVE_METRIC)
      assert.are.equal('{"epochs":10,"f":64.0,"flag":"True","k":"5",' ..
        '"l":[1,2],"lr":0.001,"none":null,"opt":"adam","t":true,"z":"007"}',
        env.SM_HPS)
      assert.are.equal('["--epochs","10","-f","64.0","--flag","True",' ..
        '"-k","5","-l","[1,2]","--lr","0.001","--none","","--opt","adam",' ..
        '"-t","true","-z","007"]', env.SM_USER_ARGS)
    end)

    it("prints cjson-decoded config numbers as integers", function()
      local rc = cjson.decode('{"current_host":"algo-1","hosts":["algo-1"],' ..
                              '"n":3,"x":0.5,"g":null}')
      local env = smenv.build(ctx { resource_config = rc, hosts = { "algo-1" } })
      assert.are.equal('{"current_host":"algo-1","g":null,"hosts":["algo-1"],' ..
                       '"n":3,"x":0.5}', env.SM_RESOURCE_CONFIG)
      -- the file's text keeps 3.0 a float
      env = smenv.build(ctx { resource_config = '{"n": 3.0, "e": []}' })
      assert.are.equal('{"e":[],"n":3.0}', env.SM_RESOURCE_CONFIG)
    end)

    it("builds SM_TRAINING_ENV as JSON of the environment", function()
      local env = smenv.build(ctx {
        hyperparameters_raw = { lr = "0.1" },
        reserved_raw = { sagemaker_program = '"a.lua"',
                         sagemaker_mpi_enabled = "false" },
        job_name = "job-1", user_entry_point = "warp.lua",
      })
      local t = cjson.decode(env.SM_TRAINING_ENV)
      assert.are.equal(0.1, t.hyperparameters.lr)
      assert.are.same({ sagemaker_mpi_enabled = false },
                      t.additional_framework_parameters)
      assert.are.same({ train = "/opt/ml/input/data/train" }, t.channel_input_dirs)
      assert.is_true(t.is_master)
      assert.are.equal("algo-1", t.master_hostname)
      assert.are.equal("job-1", t.job_name)
      assert.are.equal("warp.lua", t.user_entry_point)
      assert.are.equal(2, t.num_cpus)
      assert.are.equal("/opt/ml/output/data", t.output_data_dir)
      assert.is_false(cjson.decode(smenv.build(ctx { current_host = "algo-2" })
                                   .SM_TRAINING_ENV).is_master)
    end)

    it("skips hyperparameters that cannot be environment variables", function()
      local env, skipped = smenv.build(ctx { hyperparameters_raw = {
        ["a=b"] = "1", nul = '"x\\u0000y"', ok = "2" } })
      assert.are.equal("2", env.SM_HP_OK)
      assert.is_nil(env["SM_HP_A=B"])
      assert.is_nil(env.SM_HP_NUL)
      assert.are.equal(2, #skipped)
      assert.matches("SM_HP_A=B", skipped[1], 1, true)
      assert.matches('"a=b":1', env.SM_HPS, 1, true)
    end)

    it("upper-cases ASCII letters only", function()
      assert.are.equal("SM_HP_A-B.C_Dé", "SM_HP_" .. smenv.upper("a-b.c_Dé"))
    end)

    it("rejects a bad context", function()
      assert.has_error(function() smenv.build(ctx { colour = 1 }) end)
      assert.has_error(function() smenv.build(ctx { base = "" }) end)
      assert.has_error(function() smenv.build(ctx { hosts = "algo-1" }) end)
      assert.has_error(function() smenv.build(ctx { num_cpus = 1.5 }) end)
      assert.has_error(function()
        smenv.build(ctx { hyperparameters_raw = { a = 1 } })
      end)
    end)
  end)

  describe("json", function()
    it("matches Python's compact, sorted, ASCII output", function()
      local t = setmetatable({
        ["é"] = 1, z = 2, A = 3, ["a\u{ff}"] = 4, ab = 5,
        a = setmetatable({}, hp.array_mt), b = {},
        c = "\1\127\t\"\\/€😀",
      }, nil)
      assert.are.equal('{"A":3,"a":[],"ab":5,"a\\u00ff":4,"b":{},' ..
        '"c":"\\u0001\\u007f\\t\\"\\\\/\\u20ac\\ud83d\\ude00","z":2,' ..
        '"\\u00e9":1}', smenv.json(t))
    end)

    it("prints numbers as Python does", function()
      assert.are.equal("[1,2.0,1e+16,1e-05,Infinity,-Infinity,NaN,0.1]",
        smenv.json { 1, 2.0, 1e16, 1e-5, math.huge, -math.huge, 0 / 0, 0.1 })
      assert.are.equal("[2]", smenv.json({ 2.0 }, { integral_floats = true }))
    end)

    it("escapes bytes that are not UTF-8 one by one", function()
      assert.are.equal('"a\\u00ff\\u0080b\\u00e9"', smenv.json("a\255\128b\195\169"))
      assert.are.equal('"\\u00ed\\u00a0\\u0080"', smenv.json("\237\160\128"))
    end)

    it("encodes null, booleans and nesting; refuses what JSON cannot hold", function()
      assert.are.equal("null", smenv.json(nil))
      assert.are.equal("[null,true,false]", smenv.json { hp.null, true, false })
      assert.are.equal('{"a":{"b":[[]]}}',
        smenv.json { a = { b = { setmetatable({}, hp.array_mt) } } })
      assert.has_error(function() smenv.json { 1, x = 2 } end)
      assert.has_error(function() smenv.json { [3] = 1 } end)
      assert.has_error(function() smenv.json(print) end)
      local cyc = {}
      cyc.self = cyc
      assert.has_error(function() smenv.json(cyc) end)
    end)

    it("value_text follows rule 53", function()
      assert.are.equal("abc", smenv.value_text("abc"))
      assert.are.equal("", smenv.value_text(hp.null))
      assert.are.equal("", smenv.value_text(cjson.null))
      assert.are.equal("1.5", smenv.value_text(1.5))
      assert.are.equal("false", smenv.value_text(false))
    end)
  end)

  describe("num_gpus (rule 54)", function()
    local root = os.tmpname()
    os.remove(root)

    it("counts /dev/nvidia<N> device nodes", function()
      assert(lfs.mkdir(root))
      assert(lfs.mkdir(root .. "/dev"))
      for _, n in ipairs { "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm",
                           "nvidia-caps", "null" } do
        assert(io.open(root .. "/dev/" .. n, "w")):close()
      end
      assert.are.equal(2, smenv.num_gpus(root))
    end)

    it("is 0, never an error, without a driver", function()
      assert.are.equal(0, smenv.num_gpus(root .. "/missing"))
      assert.are.equal("number", type(smenv.num_gpus()))
    end)
  end)
end)
