-- moonfm.job.find_recipe: the recipe selection order (rules 45-47).
local lfs = require "lfs"
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local job = require "moonfm.job"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local tmp = string.format("%s/job-%d", root, core.getpid())

local VARS = { "SAGEMAKER_PROGRAM", "MOONFM_RECIPE",
               "SAGEMAKER_SUBMIT_DIRECTORY" }

local function sh(cmd) assert(os.execute(cmd)) end
local function touch(p)
  local f = assert(io.open(p, "wb"))
  f:write("-- recipe\n")
  f:close()
end
local function raises(category, fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(errors.is(e), "not a moonfm error: " .. tostring(e))
  assert.equals(category, e.category)
  return e
end

describe("moonfm.job.find_recipe", function()
  local saved = {}
  local code, bundled, submit
  local e, host

  setup(function()
    for _, v in ipairs(VARS) do saved[v] = os.getenv(v) end
  end)
  teardown(function()
    for _, v in ipairs(VARS) do core.setenv(v, saved[v]) end
    sh("rm -rf '" .. tmp .. "'")
  end)
  before_each(function()
    for _, v in ipairs(VARS) do core.setenv(v, nil) end
    sh("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "/code' '" .. tmp
       .. "/bundled' '" .. tmp .. "/submit'")
    code, bundled, submit = tmp .. "/code", tmp .. "/bundled", tmp .. "/submit"
    e = { code_dir = code, reserved = {} }
    host = { recipe_dir = bundled }
  end)
  after_each(function()
    for _, v in ipairs(VARS) do core.setenv(v, saved[v]) end
  end)

  it("needs a recipe name", function()
    local err = raises("ConfigError", function() job.find_recipe(e, host) end)
    assert.matches("no recipe chosen: set SAGEMAKER_PROGRAM", err.message, 1,
                   true)
    core.setenv("SAGEMAKER_PROGRAM", "")
    core.setenv("MOONFM_RECIPE", "")
    raises("ConfigError", function() job.find_recipe(e, host) end)
  end)

  it("takes MOONFM_RECIPE last, a bare name gets .lua", function()
    touch(bundled .. "/train.lua")
    core.setenv("MOONFM_RECIPE", "train")
    assert.equals(bundled .. "/train.lua", job.find_recipe(e, host))
  end)

  it("prefers the hyperparameter sagemaker_program (JSON-quoted) to "
     .. "MOONFM_RECIPE", function()
    touch(bundled .. "/train.lua")
    touch(bundled .. "/als.lua")
    core.setenv("MOONFM_RECIPE", "train.lua")
    e.reserved.sagemaker_program = '"als.lua"'
    assert.equals(bundled .. "/als.lua", job.find_recipe(e, host))
    e.reserved.sagemaker_program = "als" -- unquoted works too
    assert.equals(bundled .. "/als.lua", job.find_recipe(e, host))
  end)

  it("prefers SAGEMAKER_PROGRAM to the hyperparameter", function()
    touch(bundled .. "/train.lua")
    touch(bundled .. "/als.lua")
    touch(bundled .. "/sweep.lua")
    core.setenv("MOONFM_RECIPE", "train.lua")
    e.reserved.sagemaker_program = '"als.lua"'
    core.setenv("SAGEMAKER_PROGRAM", "sweep.lua")
    assert.equals(bundled .. "/sweep.lua", job.find_recipe(e, host))
    core.setenv("SAGEMAKER_PROGRAM", "") -- empty counts as unset
    assert.equals(bundled .. "/als.lua", job.find_recipe(e, host))
  end)

  it("looks in the submit directory, then B/code, then the bundled folder",
     function()
    core.setenv("SAGEMAKER_PROGRAM", "train.lua")
    touch(bundled .. "/train.lua")
    assert.equals(bundled .. "/train.lua", job.find_recipe(e, host))
    touch(code .. "/train.lua")
    assert.equals(code .. "/train.lua", job.find_recipe(e, host))
    core.setenv("SAGEMAKER_SUBMIT_DIRECTORY", submit)
    assert.equals(code .. "/train.lua", job.find_recipe(e, host))
    touch(submit .. "/train.lua")
    assert.equals(submit .. "/train.lua", job.find_recipe(e, host))
  end)

  it("takes the submit directory from the hyperparameter too", function()
    core.setenv("SAGEMAKER_PROGRAM", "train")
    touch(code .. "/train.lua")
    touch(submit .. "/train.lua")
    e.reserved.sagemaker_submit_directory = '"' .. submit .. '"'
    assert.equals(submit .. "/train.lua", job.find_recipe(e, host))
    -- The variable wins over the hyperparameter.
    sh("mkdir -p '" .. tmp .. "/other'")
    touch(tmp .. "/other/train.lua")
    core.setenv("SAGEMAKER_SUBMIT_DIRECTORY", tmp .. "/other")
    assert.equals(tmp .. "/other/train.lua", job.find_recipe(e, host))
  end)

  it("accepts an absolute path that exists", function()
    touch(tmp .. "/mine.lua")
    core.setenv("SAGEMAKER_PROGRAM", tmp .. "/mine.lua")
    assert.equals(tmp .. "/mine.lua", job.find_recipe(e, host))
    core.setenv("SAGEMAKER_PROGRAM", tmp .. "/absent.lua")
    local err = raises("ConfigError", function() job.find_recipe(e, host) end)
    assert.matches("recipe " .. tmp .. "/absent.lua (from SAGEMAKER_PROGRAM) "
                   .. "does not exist", err.message, 1, true)
  end)

  it("names the source and the folders searched when not found", function()
    e.reserved.sagemaker_program = '"nope.lua"'
    local err = raises("ConfigError", function() job.find_recipe(e, host) end)
    assert.matches("recipe nope.lua (from hyperparameter sagemaker_program) "
                   .. "not found in " .. code .. ", " .. bundled, err.message,
                   1, true)
  end)

  it("never downloads an s3:// submit directory", function()
    core.setenv("SAGEMAKER_PROGRAM", "train.lua")
    core.setenv("SAGEMAKER_SUBMIT_DIRECTORY", "s3://bucket/code/src.tar.gz")
    local err = raises("ConfigError", function() job.find_recipe(e, host) end)
    assert.matches("moonfm does not download code", err.message, 1, true)
    assert.matches("s3://bucket/code/src.tar.gz", err.message, 1, true)
    assert.matches(code, err.message, 1, true)
    -- A recipe baked into the image is still found.
    touch(bundled .. "/train.lua")
    assert.equals(bundled .. "/train.lua", job.find_recipe(e, host))
  end)
end)
