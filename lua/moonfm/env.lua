-- The /opt/ml view (spec sections 2-4, 6): reads the configuration files of
-- a training job under the base directory B and describes the job: paths,
-- hosts, channels, raw hyperparameters.  Reading only; the job runner
-- (moonfm.job) decides what to do with it.
local lfs = require "lfs"
local errors = require "moonfm.errors"
local json = require "moonfm.json"

local M = {}

-- B: SAGEMAKER_BASE_DIR when set and non-empty, else /opt/ml.
function M.base_dir()
  local b = os.getenv("SAGEMAKER_BASE_DIR")
  if b and b ~= "" then return (b:gsub("/+$", "")) end
  return "/opt/ml"
end

local function exists(path) return lfs.attributes(path, "mode") ~= nil end

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s, rerr = f:read("a")
  f:close()
  if not s then return nil, rerr end
  return s
end

-- What a decoded JSON value is, for messages ("found an array").
local function kind(v)
  if v == nil then return "nothing" end
  if v == json.null then return "null" end
  local t = type(v)
  if t == "table" then
    local mt = getmetatable(v)
    if mt == json.array_mt then return #v == 0 and "an empty array" or "an array" end
    if mt == json.bigint_mt then return "a number" end
    return "an object"
  end
  if t == "number" then return "a number" end
  if t == "boolean" then return "a boolean" end
  return "a string"
end

-- A decoded value in a message: strings quoted, numbers and booleans as
-- written, anything else by its kind.
local function shown(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  return kind(v)
end

-- Reads a JSON object file; nil when the file is absent.  A file that is
-- not a JSON object is a ConfigError naming the file and position (rule
-- 16).  The strict reader (moonfm.json) names the line and column itself.
function M.read_json_object(path)
  if not exists(path) then return nil end
  local text, err = read_all(path)
  if not text then
    errors.config(string.format("cannot read %s: %s", path, err))
  end
  local value, msg = json.decode(json.strip_bom(text))
  if value == nil then
    errors.config(string.format("%s is not valid JSON: %s", path, msg),
                  "Fix the file or remove it; see docs/container.md.")
  end
  if getmetatable(value) ~= json.object_mt then
    errors.config(string.format("%s must hold a JSON object ({...}), found %s",
                                path, kind(value)))
  end
  return value
end

local function config_type_error(file, key, expected, got)
  errors.config(string.format("%s: key '%s' must be %s, found %s", file, key,
                              expected, kind(got)))
end

-- ---- resourceconfig.json (section 3) ---------------------------------

local function read_resources(cfgdir, warnings)
  local file = cfgdir .. "/resourceconfig.json"
  local rc = M.read_json_object(file)
  if not rc then
    local alt = cfgdir .. "/resourceConfig.json"
    rc = M.read_json_object(alt)
    if rc then
      file = alt
      warnings[#warnings + 1] = "read resourceConfig.json; the expected "
        .. "spelling is resourceconfig.json (all lower case)"
    end
  end
  if not rc then
    warnings[#warnings + 1] = "resourceconfig.json is missing: running as "
      .. "the single host algo-1"
    return { current_host = "algo-1", hosts = { "algo-1" },
             network_interface_name = "eth0" }, nil
  end
  local hosts = rc.hosts
  if type(hosts) ~= "table" or #hosts == 0 then
    config_type_error(file, "hosts", "a non-empty list of host names", hosts)
  end
  local seen = {}
  for i, h in ipairs(hosts) do
    if type(h) ~= "string" or h == "" then
      errors.config(string.format("%s: hosts[%d] must be a host name", file, i))
    end
    -- A repeated name would make two ranks of one host, and the job wait
    -- for a peer that never comes.
    if seen[h] then
      errors.config(string.format("%s: hosts[%d] repeats host '%s'; list "
        .. "each host once", file, i, h))
    end
    seen[h] = true
  end
  if type(rc.current_host) ~= "string" then
    config_type_error(file, "current_host", "a host name", rc.current_host)
  end
  if rc.network_interface_name ~= nil and
     type(rc.network_interface_name) ~= "string" then
    config_type_error(file, "network_interface_name", "a string",
                      rc.network_interface_name)
  end
  return rc, file
end

-- ---- inputdataconfig.json (section 4) --------------------------------

-- "text/csv; label_size=0" -> "text/csv", {label_size = "0"} (rule 25).
function M.parse_content_type(s)
  if s == nil then return nil, {} end
  local parts = {}
  for piece in (s .. ";"):gmatch("([^;]*);") do parts[#parts + 1] = piece end
  local media = (parts[1] or ""):match("^%s*(.-)%s*$"):lower()
  local params = {}
  for i = 2, #parts do
    local k, v = parts[i]:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
    if k then
      v = v:match('^"(.*)"$') or v
      params[k:lower()] = v
    end
  end
  if media == "" then return nil, params end
  return media, params
end

local valid_modes = { File = true, FastFile = true, Pipe = true }
local valid_dist = { FullyReplicated = true, ShardedByS3Key = true }
local valid_wrap = { None = true, RecordIO = true }

local function channel_name_ok(name)
  return #name >= 1 and #name <= 64 and not name:find("[^%w._-]")
end

local function read_channels(cfgdir, datadir, warnings)
  local file = cfgdir .. "/inputdataconfig.json"
  local idc = M.read_json_object(file)
  local channels = {}
  if not idc then
    warnings[#warnings + 1] = "inputdataconfig.json is missing: every folder "
      .. "of input/data is a File-mode channel"
    idc = {}
    if exists(datadir) then
      for entry in lfs.dir(datadir) do
        if entry:sub(1, 1) ~= "." and
           lfs.attributes(datadir .. "/" .. entry, "mode") == "directory" then
          idc[entry] = {}
        end
      end
    end
  end
  for name, c in pairs(idc) do
    if type(name) ~= "string" or not channel_name_ok(name) then
      errors.config(string.format("%s: channel name '%s' is not valid (1-64 "
        .. "characters from A-Z a-z 0-9 . _ -)", file, tostring(name)))
    end
    if type(c) ~= "table" then
      config_type_error(file, name, "an object", c)
    end
    local function field(key, valid, default)
      local v = c[key]
      if v == nil then return default end
      if not valid then
        if type(v) ~= "string" then
          errors.config(string.format("%s: channel '%s': %s = %s must be a "
            .. "string", file, name, key, shown(v)))
        end
      elseif type(v) ~= "string" or not valid[v] then
        local allowed = {}
        for k in pairs(valid) do allowed[#allowed + 1] = k end
        table.sort(allowed)
        errors.config(string.format("%s: channel '%s': %s = %s is not one of %s",
          file, name, key, shown(v), table.concat(allowed, ", ")))
      end
      return v
    end
    local media, params = M.parse_content_type(field("ContentType"))
    channels[name] = {
      name = name,
      path = datadir .. "/" .. name,
      mode = field("TrainingInputMode", valid_modes, "File"),
      distribution = field("S3DistributionType", valid_dist, "FullyReplicated"),
      record_wrapper = field("RecordWrapperType", valid_wrap, "None"),
      content_type = media,
      content_params = params,
      compression = field("CompressionType"),
    }
  end
  return channels, idc
end

-- ---- the whole view ---------------------------------------------------

-- load([base]) -> env table; raises ConfigError.  The table:
--   base, config_dir, input_dir, data_dir, model_dir, output_dir,
--   output_data_dir, checkpoint_dir, code_dir;
--   current_host, hosts, rank (0-based), is_leader, network_interface_name,
--   instance_type, current_group_name, instance_groups;
--   channels (name -> channel table), channel_names (sorted);
--   hyperparameters_raw (user entries, raw strings), reserved;
--   job_name, job_arn; warnings (list of strings to log).
function M.load(base)
  base = base or M.base_dir()
  local e = {
    base = base,
    config_dir = base .. "/input/config",
    input_dir = base .. "/input",
    data_dir = base .. "/input/data",
    model_dir = base .. "/model",
    output_dir = base .. "/output",
    output_data_dir = base .. "/output/data",
    code_dir = base .. "/code",
    warnings = {},
  }
  local hp = require "moonfm.hp"
  local hpfile = e.config_dir .. "/hyperparameters.json"
  local raw = {}
  if exists(hpfile) then
    raw = hp.read_file(hpfile)
  else
    e.warnings[#e.warnings + 1] = "hyperparameters.json is missing: no "
      .. "hyperparameters given"
  end
  e.hyperparameters_raw, e.reserved = hp.split_reserved(raw)

  local rc, rcfile = read_resources(e.config_dir, e.warnings)
  e.resource_config = rc
  e.hosts = rc.hosts
  e.current_host = rc.current_host
  e.rank = nil
  for i, h in ipairs(e.hosts) do
    if h == e.current_host then e.rank = i - 1 break end
  end
  if e.rank == nil then
    errors.config(string.format("%s: current_host '%s' is not one of hosts "
      .. "(%s)", rcfile or "resourceconfig.json", e.current_host,
      table.concat(e.hosts, ", ")))
  end
  e.is_leader = e.rank == 0
  e.network_interface_name = rc.network_interface_name or "eth0"
  e.instance_type = type(rc.current_instance_type) == "string"
    and rc.current_instance_type or "local"
  e.current_group_name = rc.current_group_name
  e.instance_groups = rc.instance_groups

  e.channels, e.input_data_config = read_channels(e.config_dir, e.data_dir,
                                                  e.warnings)
  e.channel_names = {}
  for name in pairs(e.channels) do e.channel_names[#e.channel_names + 1] = name end
  table.sort(e.channel_names)

  local ck = M.read_json_object(e.config_dir .. "/checkpointconfig.json")
  if ck and ck.LocalPath ~= nil and type(ck.LocalPath) ~= "string" then
    config_type_error("checkpointconfig.json", "LocalPath", "a path", ck.LocalPath)
  end
  local lp = ck and ck.LocalPath ~= "" and ck.LocalPath or nil
  if lp then
    lp = lp:gsub("(.)/+$", "%1")
    -- SageMaker gives an absolute path; a relative one (a hand-made tree)
    -- belongs to the base folder, not to wherever moonfm was started.
    if lp:sub(1, 1) ~= "/" then lp = base .. "/" .. lp end
  end
  e.checkpoint_dir = lp or base .. "/checkpoints"

  e.job_name = os.getenv("TRAINING_JOB_NAME") or ""
  e.job_arn = os.getenv("TRAINING_JOB_ARN") or ""
  return e
end

-- Creates a folder and its parents; nil, msg on failure.
function M.mkdir_p(path)
  local sofar = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. "/" .. part
    local mode = lfs.attributes(sofar, "mode")
    if mode == nil then
      local ok, err = lfs.mkdir(sofar)
      if not ok and lfs.attributes(sofar, "mode") ~= "directory" then
        return nil, string.format("cannot create %s: %s", sofar, err)
      end
    elseif mode ~= "directory" then
      if sofar == path or sofar == "./" .. path then
        return nil, string.format("%s exists and is not a folder", path)
      end
      return nil, string.format("cannot create %s: %s is not a folder", path,
                                sofar)
    end
  end
  return true
end

return M
