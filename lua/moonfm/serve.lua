-- `moonfm serve` (spec section 17): reads the serving environment, then
-- hands over to the C server (core.serve), which answers until SIGTERM.
-- Also the Lua side of custom handlers: M.worker builds, in each worker
-- thread's own Lua state, the function that runs a recipe's serve table
-- (input_fn, predict_fn, output_fn; docs/serving.md).
local M = {}

M.DEFAULT_PORT = 8080
M.DEFAULT_TIMEOUT = 60
M.DEFAULT_PAYLOAD_MB = 6
M.MAX_PAYLOAD_MB = 100
M.DRAIN_SECONDS = 20 -- rule 127: exit within 25 s of SIGTERM

local function getenv(...)
  for _, k in ipairs { ... } do
    local v = os.getenv(k)
    if v and v ~= "" then return v, k end
  end
end

-- An integer from the environment within [lo, hi], the default when unset;
-- nil, message when set to anything else.
local function int_env(lo, hi, default, ...)
  local v, name = getenv(...)
  if not v then return default end
  local n = v:match("^%s*(%d+)%s*$") and math.tointeger(tonumber(v))
  if not n or n < lo or n > hi then
    return nil, string.format("%s must be an integer from %d to %d, got '%s'",
                              name, lo, hi, v)
  end
  return n
end

-- The server settings from the environment (rules 121-125); nil, msg on
-- a bad value.
function M.config(base)
  local core = require "moonfm.core"
  local c = { model_dir = base .. "/model", drain = M.DRAIN_SECONDS }
  local err
  c.port, err = int_env(1, 65535, M.DEFAULT_PORT, "SAGEMAKER_BIND_TO_PORT")
  if not c.port then return nil, err end
  c.workers, err = int_env(1, 1024, core.cpu_count(),
                           "SAGEMAKER_MODEL_SERVER_WORKERS",
                           "MODEL_SERVER_WORKERS")
  if not c.workers then return nil, err end
  c.timeout, err = int_env(1, 3600, M.DEFAULT_TIMEOUT,
                           "SAGEMAKER_MODEL_SERVER_TIMEOUT",
                           "MODEL_SERVER_TIMEOUT")
  if not c.timeout then return nil, err end
  local mb
  mb, err = int_env(1, M.MAX_PAYLOAD_MB, M.DEFAULT_PAYLOAD_MB,
                    "SAGEMAKER_MAX_PAYLOAD_IN_MB")
  if not mb then return nil, err end
  c.max_body = mb * 1048576
  local mct
  mct, err = int_env(1, 1024, c.workers, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS")
  if not mct then return nil, err end
  local strategy = getenv("SAGEMAKER_BATCH_STRATEGY") or "MULTI_RECORD"
  if strategy ~= "MULTI_RECORD" and strategy ~= "SINGLE_RECORD" then
    return nil, "SAGEMAKER_BATCH_STRATEGY must be MULTI_RECORD or "
      .. "SINGLE_RECORD, got '" .. strategy .. "'"
  end
  -- Answered in real-time mode too (rule 125's SHOULD).
  c.execution_parameters = string.format(
    '{"MaxConcurrentTransforms":%d,"BatchStrategy":"%s","MaxPayloadInMB":%d}',
    mct, strategy, mb)
  c.batch = (getenv("SAGEMAKER_BATCH") or ""):lower() == "true"
  c.default_accept = getenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")
  -- Refused at start: taken as JSON, it would answer another type than
  -- the one the deployment asked for, silently.
  if c.default_accept and c.default_accept:find("%S")
     and not core.serve_accept(c.default_accept) then
    return nil, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT must be "
      .. "application/json or application/jsonlines (the types moonfm "
      .. "answers in), got '" .. c.default_accept .. "'"
  end
  -- A custom handler: MOONFM_SERVE_HANDLER, else model/code/serve.lua.
  local h = getenv("MOONFM_SERVE_HANDLER")
  if not h then
    local p = c.model_dir .. "/code/serve.lua"
    local f = io.open(p, "r")
    if f then
      f:close()
      h = p
    end
  end
  c.handler = h
  -- Tests only: pretend the model takes this long to load.
  c.load_delay = int_env(0, 600000, 0, "MOONFM_SERVE_LOAD_DELAY_MS") or 0
  return c
end

function M.main(host)
  local core = require "moonfm.core"
  local env = require "moonfm.env"
  local log = require "moonfm.log"
  -- Rule 49 in serve mode: the level from SM_LOG_LEVEL (there are no
  -- hyperparameters here).
  log.set_level(tonumber(os.getenv("SM_LOG_LEVEL") or "") or 20)
  local c, err = M.config(env.base_dir())
  if not c then
    log.error("serve: %s", err)
    return 2
  end
  if c.handler then
    -- Fail at start, not on the first request, when the handler is bad.
    local ok, msg = pcall(M.worker, c.handler, function() end)
    if not ok then
      log.error("serve: handler %s: %s", c.handler, tostring(msg))
      return 1
    end
  end
  c.on_listen = function()
    log.info("serve: listening on 0.0.0.0:%d, %d workers, bodies up to %d "
             .. "bytes, model %s", c.port, c.workers, c.max_body, c.model_dir)
  end
  local answered, msg = core.serve(c)
  if not answered then
    log.error("serve: cannot serve: %s", msg)
    return 1
  end
  log.info("serve: stopped after %d requests", answered)
  return 0
end

-- ---- Lua handlers --------------------------------------------------------

local function reject(status, message)
  error({ status = status, message = message }, 0)
end

-- cjson writes an empty table as {}: the lists of a request and of a
-- prediction are arrays ({"instances": []} was refused as "must be an
-- array").  A key inside a string is escaped (\"items\":{}) and is not
-- matched.
local LISTS = { "instances", "items", "interactions", "features",
                "predictions", "scores" }
local function arrays(text)
  for _, k in ipairs(LISTS) do
    text = text:gsub('"' .. k .. '":{}', '"' .. k .. '":[]')
  end
  return text
end

-- The default steps, also handed to custom ones.  Types are read as the
-- C path reads them (core.serve_content_type, core.serve_accept).
local function default_input(cjson, core)
  return function(body, content_type)
    local t, header = core.serve_content_type(content_type or "")
    if body:sub(1, 3) == "\239\187\191" then body = body:sub(4) end
    if t == "json" then
      local v, e = cjson.decode(body)
      if v == nil then reject(400, "invalid JSON: " .. tostring(e)) end
      return v
    elseif t == "jsonlines" then
      local list = {}
      for line in body:gmatch("[^\n]+") do
        if line:match("%S") then
          local v, e = cjson.decode(line)
          if v == nil then reject(400, "invalid JSON line: " .. tostring(e)) end
          list[#list + 1] = v
        end
      end
      if #list == 0 then reject(400, "request: the body has no lines") end
      return { instances = list }
    elseif t == "csv" then
      local list = {}
      for line in body:gmatch("[^\r\n]+") do
        local id = line:match("^%s*(.-)%s*$")
        if id ~= "" then
          if header then
            header = false
          else
            list[#list + 1] = { user = id:match('^"(.*)"$') or id }
          end
        end
      end
      if #list == 0 then reject(400, "request: the body has no lines") end
      return { instances = list }
    end
    reject(415, "unsupported Content-Type '" .. tostring(content_type)
      .. "' (use application/json, application/jsonlines or text/csv)")
  end
end

local function default_output(cjson, core)
  local dflt = core.serve_accept(
    os.getenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "") or "json"
  return function(predictions, accept)
    local t = core.serve_accept(accept or "", dflt)
    if t == "json" then
      return arrays(cjson.encode { predictions = predictions }),
        "application/json"
    elseif t == "jsonlines" then
      local out = {}
      for i, p in ipairs(predictions) do out[i] = arrays(cjson.encode(p)) end
      return #out > 0 and table.concat(out, "\n") .. "\n" or "",
        "application/jsonlines"
    end
    reject(406, "unsupported Accept '" .. tostring(accept)
      .. "' (use application/json or application/jsonlines)")
  end
end

-- worker(path, predict_json) -> invoke(body, content_type, accept) ->
-- status, content_type, body.  path is a Lua file returning the serve
-- table (or a table with a field serve); predict_json(text) -> status,
-- body is the C engine.  Handler errors become 400 (input_fn) or 500
-- (predict_fn, output_fn) with a one-line reason; an error value
-- {status = 4xx, message = "..."} chooses its own status.
function M.worker(path, predict_json)
  local chunk, lerr = loadfile(path, "t")
  if not chunk then error(lerr, 0) end
  local h = chunk()
  if type(h) == "table" and type(h.serve) == "table" then h = h.serve end
  if type(h) ~= "table" then
    error("the handler file must return a table with input_fn, predict_fn "
          .. "and/or output_fn", 0)
  end
  for k, v in pairs(h) do
    if k ~= "input_fn" and k ~= "predict_fn" and k ~= "output_fn" then
      error("unknown field '" .. tostring(k) .. "' in the serve table", 0)
    end
    if type(v) ~= "function" then
      error("serve." .. k .. " must be a function", 0)
    end
  end
  local cjson = require("cjson.safe").new()
  local model = {}
  -- model.predict(request) -> predictions: the built-in engine on a
  -- request table of the JSON form.
  function model.predict(request)
    local text = cjson.encode(request)
    if not text then reject(400, "request cannot be encoded as JSON") end
    text = arrays(text)
    local status, body = predict_json(text)
    if status ~= 200 then reject(status, (body:gsub("\n$", ""))) end
    return cjson.decode(body).predictions
  end
  local core = require "moonfm.core"
  model.default_input_fn = default_input(cjson, core)
  model.default_output_fn = default_output(cjson, core)
  local input_fn = h.input_fn or model.default_input_fn
  local predict_fn = h.predict_fn or function(data) return model.predict(data) end
  local output_fn = h.output_fn or model.default_output_fn
  local function fail(e, status)
    if type(e) == "table" and math.tointeger(e.status) then
      return e.status, "text/plain; charset=utf-8",
        tostring(e.message or "") .. "\n"
    end
    local msg = tostring(e):match("^[^\n]*")
    if status >= 500 then require("moonfm.log").error("serve: handler: %s", tostring(e)) end
    return status, "text/plain; charset=utf-8", msg .. "\n"
  end
  return function(body, content_type, accept)
    local ok, data = pcall(input_fn, body, content_type, model)
    if not ok then return fail(data, 400) end
    local ok2, pred = pcall(predict_fn, data, model)
    if not ok2 then return fail(pred, 500) end
    local ok3, out, ctype = pcall(output_fn, pred, accept, model)
    if not ok3 then return fail(out, 500) end
    if type(out) ~= "string" then
      return fail("output_fn must return a string", 500)
    end
    return 200, ctype or "application/json", out
  end
end

return M
