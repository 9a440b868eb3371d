-- Fake /opt/ml trees for local runs (rule 131): `moonfm init-local` and
-- `moonfm run` lay one out; `moonfm train` then runs on it unchanged.
local cjson = require("cjson").new()
local lfs = require "lfs"
local core = require "moonfm.core"
local env = require "moonfm.env"
local errors = require "moonfm.errors"

local M = {}

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return lfs.currentdir() .. "/" .. p
end

local function write(path, text)
  local ok, err = core.write_atomic(path, text)
  if not ok then errors.config(err) end
end

-- Stable key order, so the files are easy to read and to diff.
local function encode_object(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = "  " .. cjson.encode(k) .. ": " .. cjson.encode(t[k])
  end
  if #parts == 0 then return "{}\n" end
  return "{\n" .. table.concat(parts, ",\n") .. "\n}\n"
end

-- create(dir, opts) lays out the tree and returns its absolute path.
--   opts.hyperparameters: key -> string (written as JSON strings, as
--     SageMaker does)
--   opts.channels: list of {name=, path=, mode="File"|"Pipe"}: File channels
--     become a folder with a symlink to the file (or a symlink to the
--     folder); Pipe channels a regular file <name>_0 (accepted in place of
--     the FIFO for local tests, rule 112), or with opts.feed_pipes FIFOs
--     <name>_0, <name>_1, ... that a thread of this process fills with the
--     file, one epoch after another (rule 131; `moonfm run`).
--   opts.host: current host name (default algo-1).
function M.create(dir, opts)
  opts = opts or {}
  dir = abspath(dir):gsub("/+$", "")
  for _, sub in ipairs { "input/config", "input/data", "model", "output/data",
                         "checkpoints" } do
    local ok, err = env.mkdir_p(dir .. "/" .. sub)
    if not ok then errors.config(err) end
  end
  local hps = {}
  for k, v in pairs(opts.hyperparameters or {}) do hps[k] = tostring(v) end
  write(dir .. "/input/config/hyperparameters.json", encode_object(hps))
  local host = opts.host or "algo-1"
  write(dir .. "/input/config/resourceconfig.json", cjson.encode {
    current_host = host, hosts = { host }, network_interface_name = "eth0",
  } .. "\n")
  local idc = {}
  for _, c in ipairs(opts.channels or {}) do
    if not c.name:match("^[%w._-]+$") or #c.name > 64 then
      errors.usage(string.format("channel name '%s' is not valid (1-64 "
        .. "characters from A-Z a-z 0-9 . _ -)", c.name))
    end
    local src = abspath(c.path)
    local mode = lfs.attributes(src, "mode")
    if not mode then
      errors.usage(string.format("channel %s: %s does not exist", c.name, c.path))
    end
    local target = dir .. "/input/data/" .. c.name
    if c.mode == "Pipe" then
      if mode ~= "file" then
        errors.usage(string.format("pipe channel %s: %s must be a file", c.name, c.path))
      end
      if opts.feed_pipes then
        os.remove(target .. "_0")
        local ok, err = core.pipe_feed(target, src)
        if not ok then errors.config(err) end
      else
        local inf = assert(io.open(src, "rb"))
        local data = inf:read("a")
        inf:close()
        write(target .. "_0", data)
      end
    elseif mode == "directory" then
      os.remove(target)
      assert(lfs.link(src, target, true))
    else
      local ok, err = env.mkdir_p(target)
      if not ok then errors.config(err) end
      local name = src:match("[^/]+$")
      os.remove(target .. "/" .. name)
      assert(lfs.link(src, target .. "/" .. name, true))
    end
    idc[c.name] = { TrainingInputMode = c.mode or "File",
                    S3DistributionType = "FullyReplicated",
                    RecordWrapperType = "None" }
  end
  write(dir .. "/input/config/inputdataconfig.json", encode_object(idc))
  return dir
end

-- A new folder name under ./runs/ for a run of recipe.
function M.new_run_dir(recipe)
  local stem = recipe:match("([^/]+)$"):gsub("%.lua$", "")
  local base = "runs/" .. stem .. "-" .. os.date("!%Y%m%d-%H%M%S")
  local dir, n = base, 1
  while lfs.attributes(dir) do
    n = n + 1
    dir = base .. "-" .. n
  end
  return dir
end

return M
