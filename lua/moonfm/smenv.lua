-- The SM_* environment of the AWS training toolkit (spec rules 51-55), so
-- that scripts and child processes written for toolkit containers find
-- what they expect.  build() only computes name -> value; the caller
-- (moonfm.env) exports them with core.setenv before the recipe starts.
--
-- Values follow the toolkit's formatting (rule 53): strings as they are,
-- null as "", anything else compact JSON with sorted keys and ASCII escapes,
-- i.e. Python's json.dumps(v, sort_keys=True, separators=(",", ":")).
-- Hyperparameters go through the untyped decode of rule 31 with integers
-- kept as integers, so 64 prints 64, 64.0 prints 64.0 and 1e-3 prints
-- 0.001, exactly as the toolkit does.
local hp = require "moonfm.hp"

local M = {}

-- The toolkit's own reserved hyperparameters; other sagemaker_* entries
-- are "additional framework parameters" in SM_TRAINING_ENV.
local toolkit_reserved = {
  sagemaker_program = true, sagemaker_submit_directory = true,
  sagemaker_enable_cloudwatch_metrics = true, sagemaker_region = true,
  sagemaker_container_log_level = true, sagemaker_job_name = true,
  default_user_module_name = true, _tuning_objective_metric = true,
  sagemaker_s3_output = true,
}

---------------------------------------------------------------------------
-- JSON text

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                  ["\r"] = "\\r", ["\t"] = "\\t", ["\b"] = "\\b",
                  ["\f"] = "\\f" }

local function u16(cp)
  if cp < 0x10000 then return string.format("\\u%04x", cp) end
  cp = cp - 0x10000
  return string.format("\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                       0xDC00 + (cp & 0x3FF))
end

local seq_len = function(b)
  if b >= 0xF0 then return 4 elseif b >= 0xE0 then return 3 end
  return 2
end

-- Escape a run starting with a lead byte (and any continuation bytes).
local function escape_high(run)
  local out, i = {}, 1
  while i <= #run do
    local b = run:byte(i)
    local n = (b >= 0xC2 and b <= 0xF4) and seq_len(b) or 1
    local ch = run:sub(i, i + n - 1)
    if n > 1 and #ch == n and utf8.len(ch) == 1 then
      out[#out + 1] = u16(utf8.codepoint(ch))
      i = i + n
    else
      -- Not UTF-8: each byte as the code point of the same value.
      out[#out + 1] = string.format("\\u%04x", b)
      i = i + 1
    end
  end
  return table.concat(out)
end

local function quote(s)
  if not s:find('[\0-\31"\\\127-\255]') then return '"' .. s .. '"' end
  s = s:gsub('[\0-\31"\\\127]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end)
  s = s:gsub("[\128-\255]+", escape_high)
  return '"' .. s .. '"'
end
M.quote = quote

local function is_null(v)
  return v == nil or v == hp.null
end

local encode

local function encode_table(t, o, depth, out)
  if depth > 100 then error("json: nesting too deep (cycle?)", 0) end
  local mt = getmetatable(t)
  if mt == hp.bigint_mt then
    out[#out + 1] = t.text
    return
  end
  local kind
  if mt == hp.array_mt then kind = "array"
  elseif mt == hp.object_mt then kind = "object"
  else
    local n, strings, ints = #t, 0, 0
    for k in pairs(t) do
      if type(k) == "string" then strings = strings + 1
      elseif math.type(k) == "integer" and k >= 1 and k <= n then
        ints = ints + 1
      else
        error("json: table key " .. tostring(k) .. " is neither a string " ..
              "nor a sequence index", 0)
      end
    end
    if strings > 0 and ints > 0 then
      error("json: table mixes string keys and sequence indices", 0)
    end
    kind = (ints > 0) and "array" or "object"
  end
  if kind == "array" then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode(t[i], o, depth + 1, out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error("json: object key " .. tostring(k) .. " is not a string", 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys, hp.bytewise_less)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = quote(k)
    out[#out + 1] = ":"
    encode(t[k], o, depth + 1, out)
  end
  out[#out + 1] = "}"
end

function encode(v, o, depth, out)
  local ty = type(v)
  if is_null(v) then out[#out + 1] = "null"
  elseif ty == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif ty == "string" then out[#out + 1] = quote(v)
  elseif ty == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    elseif o.integral_floats and v == math.floor(v) and v >= -2^63
           and v < 2^63 then
      out[#out + 1] = string.format("%d", math.tointeger(v))
    else
      out[#out + 1] = hp.float_repr(v)
    end
  elseif ty == "table" then encode_table(v, o, depth, out)
  else
    error("json: cannot encode a " .. ty, 0)
  end
end

-- json(v [, opts]) -> compact JSON text, keys sorted by byte order, ASCII
-- only (like Python's json.dumps(sort_keys=True, separators=(",", ":"))).
-- Integers print as integers, floats as Python's repr (64.0 -> 64.0,
-- 1e-3 -> 0.001); opts.integral_floats prints integral floats as integers
-- (for tables decoded by cjson, where every number is a float).  nil,
-- hp.null and cjson.null are null.  Tables with hp.array_mt/hp.object_mt
-- keep their kind; other empty tables are {}.  Invalid UTF-8 bytes are
-- escaped as \u00XX.
function M.json(v, opts)
  local out = {}
  local ok, err = pcall(encode, v, opts or {}, 0, out)
  if not ok then error(err, 2) end
  return table.concat(out)
end

-- value_text(v) -> rule 53: strings as-is, null as "", else json(v).
function M.value_text(v)
  if type(v) == "string" then return v end
  if is_null(v) then return "" end
  return M.json(v)
end

-- hp_text(raw) -> the SM_HP_* text of a raw hyperparameter string.
function M.hp_text(raw)
  return M.value_text((hp.decode(raw, { bigint = "text" })))
end

---------------------------------------------------------------------------
-- GPUs (rule 54)

-- num_gpus([root]) -> number of NVIDIA GPUs visible to this process: the
-- /dev/nvidia<N> device nodes.  Those are what the container runtime maps
-- in; /proc/driver/nvidia/gpus is not namespaced and would count the
-- host's GPUs in a container given none.  0 on any problem, never an
-- error.  root prefixes the path (tests).
function M.num_gpus(root)
  local ok, n = pcall(function()
    local lfs = require "lfs"
    local count = 0
    for name in lfs.dir((root or "") .. "/dev") do
      if name:find("^nvidia%d+$") then count = count + 1 end
    end
    return count
  end)
  return ok and n or 0
end

local function default_cpus()
  local ok, core = pcall(require, "moonfm.core")
  if ok and type(core) == "table" and core.cpu_count then
    local ok2, n = pcall(core.cpu_count)
    if ok2 and math.tointeger(n) then return math.tointeger(n) end
  end
  return 1
end

---------------------------------------------------------------------------
-- build

local ctx_fields = {
  base = true, hyperparameters_raw = true, reserved_raw = true,
  channels = true, resource_config = true, input_data_config = true,
  current_host = true, hosts = true, network_interface_name = true,
  num_cpus = true, num_gpus = true, log_level = true, instance_type = true,
  job_name = true, user_entry_point = true,
}

-- Upper-case ASCII letters only, whatever the C locale (rule 52).
local function upper(s)
  return (s:gsub("[a-z]", function(c) return string.char(c:byte() - 32) end))
end
M.upper = upper

local function array(t)
  return setmetatable(t, hp.array_mt)
end

local function object(t)
  return setmetatable(t, hp.object_mt)
end

local function join(base, rel)
  base = base:gsub("/+$", "")
  return base .. "/" .. rel
end

-- Deep copy of a decoded config table with integral floats made integers:
-- cjson reads 64 as 64.0, the toolkit (Python) as 64.
local function normalize(v, depth)
  if depth > 100 then error("smenv.build: config nested too deeply", 0) end
  if type(v) == "number" and math.type(v) == "float" and v == math.floor(v)
     and v >= -2^63 and v < 2^63 then
    return math.tointeger(v)
  end
  if type(v) ~= "table" or getmetatable(v) == hp.bigint_mt then return v end
  local t = {}
  for k, e in pairs(v) do t[k] = normalize(e, depth + 1) end
  return setmetatable(t, getmetatable(v))
end

local function config_table(v, what)
  if v == nil then return object({}) end
  if type(v) == "string" then
    local t, err = hp.json_decode(v)
    if t == nil then error("smenv.build: " .. what .. ": " .. err, 3) end
    return t
  end
  if type(v) ~= "table" then
    error("smenv.build: " .. what .. " must be a table or JSON text", 3)
  end
  return normalize(v, 0)
end

local function check_list(v, what)
  if type(v) ~= "table" then
    error("smenv.build: " .. what .. " must be a list of strings", 3)
  end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      error("smenv.build: " .. what .. "[" .. i .. "] is not a string", 3)
    end
  end
end

-- build(ctx) -> env, skipped
-- ctx: base (B), hyperparameters_raw (user key -> raw string; reserved keys
-- are dropped), reserved_raw (optional, sagemaker_* -> raw), channels (list
-- of names), resource_config and input_data_config (decoded tables, or the
-- files' JSON text to keep number spelling), current_host, hosts (default:
-- from resource_config), network_interface_name ("eth0"), num_cpus
-- (default core.cpu_count()), num_gpus (default num_gpus()), log_level
-- (20), instance_type (resource_config.current_instance_type or "local"),
-- job_name (""), user_entry_point (recipe path, "").
-- env: variable name -> value string.  skipped: list of messages for
-- hyperparameters whose SM_HP_ variable cannot exist (a name with '=' or
-- a NUL byte, a value with a NUL byte); warn about them.
function M.build(ctx)
  if type(ctx) ~= "table" then
    error("smenv.build: ctx table expected, got " .. type(ctx), 2)
  end
  for k in pairs(ctx) do
    if not ctx_fields[k] then
      error("smenv.build: unknown ctx field '" .. tostring(k) .. "'", 2)
    end
  end
  if type(ctx.base) ~= "string" or ctx.base == "" then
    error("smenv.build: ctx.base must be the base directory", 2)
  end
  local rc = config_table(ctx.resource_config, "resource_config")
  local idc = config_table(ctx.input_data_config, "input_data_config")
  local current = ctx.current_host or rc.current_host
  if type(current) ~= "string" then
    error("smenv.build: ctx.current_host must be a string", 2)
  end
  local hosts = ctx.hosts or rc.hosts
  check_list(hosts, "hosts")
  local channels = ctx.channels or {}
  check_list(channels, "channels")
  local hps_raw = ctx.hyperparameters_raw or {}
  local reserved_raw = ctx.reserved_raw or {}

  local B = ctx.base
  local env, skipped = {}, {}
  local function set(name, value) env[name] = value end

  local model_dir = join(B, "model")
  local input_dir = join(B, "input")
  local config_dir = join(B, "input/config")
  local output_dir = join(B, "output")
  local output_data_dir = join(B, "output/data")
  local intermediate_dir = join(B, "output/intermediate")
  set("SM_MODEL_DIR", model_dir)
  set("SM_INPUT_DIR", input_dir)
  set("SM_INPUT_CONFIG_DIR", config_dir)
  set("SM_OUTPUT_DIR", output_dir)
  set("SM_OUTPUT_DATA_DIR", output_data_dir)
  set("SM_OUTPUT_INTERMEDIATE_DIR", intermediate_dir)

  local names = {}
  for i, c in ipairs(channels) do names[i] = c end
  table.sort(names, hp.bytewise_less)
  local channel_dirs = object({})
  for _, c in ipairs(names) do
    local dir = join(B, "input/data/" .. c)
    channel_dirs[c] = dir
    set("SM_CHANNEL_" .. upper(c), dir)
  end
  set("SM_CHANNELS", M.json(array(names)))

  -- Hyperparameters: untyped decode, exact integers (rules 31, 53).
  local keys = {}
  for k, v in pairs(hps_raw) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("smenv.build: hyperparameters_raw must map strings to strings", 2)
    end
    if not hp.is_reserved(k) then keys[#keys + 1] = k end
  end
  table.sort(keys, hp.bytewise_less)
  local hps = object({})
  local args = array({})
  for _, k in ipairs(keys) do
    local v = hp.decode(hps_raw[k], { bigint = "text" })
    hps[k] = v
    local text = M.value_text(v)
    local name = "SM_HP_" .. upper(k)
    if k:find("[=\0]") then
      skipped[#skipped + 1] = string.format("hyperparameter %s: no %s " ..
        "variable, the name cannot be an environment variable",
        hp.show(k), hp.show(name))
    elseif text:find("\0", 1, true) then
      skipped[#skipped + 1] = string.format("hyperparameter '%s': no %s " ..
        "variable, the value contains a NUL byte", k, name)
    else
      set(name, text)
    end
    args[#args + 1] = ((utf8.len(k) or #k) == 1 and "-" or "--") .. k
    args[#args + 1] = text
  end
  set("SM_HPS", M.json(hps))
  set("SM_USER_ARGS", M.json(args))

  local nic = ctx.network_interface_name or rc.network_interface_name or "eth0"
  local cpus = ctx.num_cpus or default_cpus()
  local gpus = ctx.num_gpus or M.num_gpus()
  local level = ctx.log_level or 20
  local itype = ctx.instance_type or rc.current_instance_type or "local"
  for what, n in pairs { num_cpus = cpus, num_gpus = gpus, log_level = level } do
    if not math.tointeger(n) then
      error("smenv.build: ctx." .. what .. " must be an integer", 2)
    end
  end
  cpus, gpus, level = math.tointeger(cpus), math.tointeger(gpus),
    math.tointeger(level)
  set("SM_CURRENT_HOST", current)
  set("CURRENT_HOST", current)
  set("SM_HOSTS", M.json(array({ table.unpack(hosts) })))
  set("SM_NETWORK_INTERFACE_NAME", nic)
  set("SM_NUM_CPUS", tostring(cpus))
  set("SM_NUM_GPUS", tostring(gpus))
  set("SM_LOG_LEVEL", tostring(level))
  set("SM_CURRENT_INSTANCE_TYPE", itype)
  set("SM_RESOURCE_CONFIG", M.json(rc))
  set("SM_INPUT_DATA_CONFIG", M.json(idc))

  local framework = object({})
  for k, v in pairs(reserved_raw) do
    if type(k) == "string" and type(v) == "string"
       and not toolkit_reserved[k] and hp.is_reserved(k) then
      framework[k] = hp.decode(v, { bigint = "text" })
    end
  end
  local training_env = object({
    additional_framework_parameters = framework,
    channel_input_dirs = channel_dirs,
    current_host = current,
    current_instance_type = itype,
    hosts = array({ table.unpack(hosts) }),
    hyperparameters = hps,
    input_config_dir = config_dir,
    input_data_config = idc,
    input_dir = input_dir,
    is_master = current == hosts[1],
    job_name = ctx.job_name or "",
    log_level = level,
    master_hostname = hosts[1] or current,
    model_dir = model_dir,
    network_interface_name = nic,
    num_cpus = cpus,
    num_gpus = gpus,
    output_data_dir = output_data_dir,
    output_dir = output_dir,
    output_intermediate_dir = intermediate_dir,
    resource_config = rc,
    user_entry_point = ctx.user_entry_point or "",
  })
  set("SM_TRAINING_ENV", M.json(training_env))
  return env, skipped
end

return M
