-- The moonfm command line.  `train` (and `serve`) are the container's
-- ENTRYPOINT modes; the rest are local tools.
local lfs = require "lfs"
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local failure = require "moonfm.failure"

local M = {}

local USAGE = [[
usage: moonfm <command> [arguments]

Container modes (the image's ENTRYPOINT):
  train                      run the training job described under
                             $SAGEMAKER_BASE_DIR (default /opt/ml)
  serve                      host the model in $SAGEMAKER_BASE_DIR/model

Local tools:
  run RECIPE [key=value ...] [--channel NAME=PATH ...] [--pipe NAME=PATH ...]
                             [--base-dir DIR]
                             lay out a fake /opt/ml tree (default: a new
                             folder under ./runs/) and run `train` on it;
                             without --channel, the bundled sample data
  init-local DIR [key=value ...] [--channel NAME=PATH ...] [--pipe NAME=PATH ...]
                             lay out the tree only
  metric-definitions RECIPE [key=value ...]
                             print the MetricDefinitions JSON of a recipe
  sweep FILE [--out DIR] [--parallel N] [--trials N] [--seed N]
                             run the trials of a sweep file, each as its own
                             `train`, and rank them (docs/tuning.md)
  inspect FILE               check a model or checkpoint file and summarise it
  --help, --version

RECIPE is a path, or the name of a bundled recipe (train.lua, als.lua, ...).
See docs/ for recipes, the container contract and running locally.]]

local function host()
  return package.loaded["moonfm.host"] or {
    recipe_dir = "recipes", data_dir = "data", lua_dir = "lua",
  }
end

-- Usage errors: message on stderr (and the failure file when B/output
-- exists, rule 2), exit 2.
local function usage_error(msg)
  local base = require("moonfm.env").base_dir()
  local out = base .. "/output"
  -- Rule 62 knows six categories; a wrong command line is a ConfigError
  -- there (docs/container.md).
  failure.report(lfs.attributes(out, "mode") == "directory" and out or nil,
                 "ConfigError", msg, "Run `moonfm --help` for usage.")
  return 2
end

-- Parses key=value, --channel NAME=PATH, --pipe NAME=PATH, --base-dir DIR.
local function parse_local_args(args, first)
  local o = { hyperparameters = {}, channels = {}, rest = {} }
  local i = first
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    local function value()
      if inline then return inline end
      i = i + 1
      if args[i] == nil then errors.usage(flag .. " needs a value") end
      return args[i]
    end
    if flag == "--channel" or flag == "--pipe" then
      local v = value()
      local name, path = v:match("^([^=]+)=(.+)$")
      if not name then
        errors.usage(flag .. " expects NAME=PATH, got '" .. v .. "'")
      end
      o.channels[#o.channels + 1] = { name = name, path = path,
        mode = flag == "--pipe" and "Pipe" or "File" }
    elseif flag == "--base-dir" then
      o.base_dir = value()
    elseif a:match("^%-%-") then
      errors.usage("unknown option " .. a)
    else
      local k, v = a:match("^([^=]+)=(.*)$")
      if k then o.hyperparameters[k] = v else o.rest[#o.rest + 1] = a end
    end
    i = i + 1
  end
  return o
end

-- A recipe argument: a path, or the name of a bundled recipe.
local function resolve_recipe(name)
  if lfs.attributes(name, "mode") == "file" then
    return name:sub(1, 1) == "/" and name or lfs.currentdir() .. "/" .. name
  end
  local bundled = host().recipe_dir .. "/" .. name
  if not name:match("%.lua$") then bundled = bundled .. ".lua" end
  if lfs.attributes(bundled, "mode") == "file" then return bundled end
  errors.usage(string.format("recipe %s not found (neither a file nor a "
    .. "bundled recipe in %s)", name, host().recipe_dir))
end

local function default_channels()
  local dir = host().data_dir .. "/sample"
  local chans = {}
  for _, name in ipairs { "train", "test", "item_features" } do
    local p = dir .. "/" .. name .. ".csv"
    if lfs.attributes(p, "mode") == "file" then
      chans[#chans + 1] = { name = name, path = p, mode = "File" }
    end
  end
  return chans
end

local commands = {}

function commands.train(args)
  if #args > 1 then
    return usage_error("train takes no arguments, got '" .. args[2] .. "'")
  end
  return require("moonfm.job").train(host())
end

function commands.serve(args)
  if #args > 1 then
    return usage_error("serve takes no arguments, got '" .. args[2] .. "'")
  end
  return require("moonfm.serve").main(host())
end

function commands.run(args)
  if not args[2] then return usage_error("run needs a RECIPE") end
  local recipe = resolve_recipe(args[2])
  local o = parse_local_args(args, 3)
  if #o.rest > 0 then
    return usage_error("unexpected argument '" .. o.rest[1] .. "'")
  end
  if #o.channels == 0 then o.channels = default_channels() end
  local dir = require("moonfm.localtree").create(
    o.base_dir or require("moonfm.localtree").new_run_dir(recipe),
    { hyperparameters = o.hyperparameters, channels = o.channels,
      feed_pipes = true })
  core.setenv("SAGEMAKER_BASE_DIR", dir)
  core.setenv("SAGEMAKER_PROGRAM", recipe)
  local code = require("moonfm.job").train(host())
  io.stderr:write(string.format("run tree: %s (exit status %d)\n", dir, code))
  return code
end

commands["init-local"] = function(args)
  if not args[2] then return usage_error("init-local needs a DIR") end
  local o = parse_local_args(args, 3)
  if #o.rest > 0 then
    return usage_error("unexpected argument '" .. o.rest[1] .. "'")
  end
  local dir = require("moonfm.localtree").create(args[2], o)
  print(dir)
  return 0
end

commands["metric-definitions"] = function(args)
  if not args[2] then return usage_error("metric-definitions needs a RECIPE") end
  local recipe = resolve_recipe(args[2])
  local o = parse_local_args(args, 3)
  return require("moonfm.declare").metric_definitions(recipe,
                                                      o.hyperparameters)
end

function commands.sweep(args)
  return require("moonfm.sweep").main(args, host())
end

function commands.inspect(args)
  if not args[2] or args[3] then
    return usage_error("inspect needs exactly one FILE")
  end
  return require("moonfm.inspect").main(args[2])
end

commands["--help"] = function()
  print(USAGE)
  return 0
end
commands["-h"] = commands["--help"]
commands.help = commands["--help"]

commands["--version"] = function()
  print("moonfm " .. core._VERSION)
  return 0
end

-- main(args) -> exit status.  Usage errors raised as UsageError are turned
-- into exit 2 here; the train path reports its own errors.
function M.main(args)
  local cmd = args[1]
  if cmd == nil then return usage_error("missing command (train or serve)") end
  local f = commands[cmd]
  if not f then return usage_error("unknown command '" .. cmd .. "'") end
  local ok, res = pcall(f, args)
  if ok then return res end
  if errors.is(res) then
    if res.category == "UsageError" then return usage_error(res.message) end
    io.stderr:write(tostring(res), "\n")
    return errors.exit_codes[res.category] or 1
  end
  error(res, 0)
end

return M
