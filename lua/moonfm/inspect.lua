-- `moonfm inspect FILE`: prints what a model file or checkpoint holds and
-- exits 0 when it is valid, 3 with one line "<path>: <reason>" on stderr
-- when it is not.  A model is also loaded as `moonfm serve` loads it (id
-- maps, training items, the kind's arrays): for the kinds serve answers
-- from, a model it would refuse is not valid.
--
-- Output: kind, version, users, items, factors, metrics first, then the
-- type (model or checkpoint and its epoch), whether serve would answer
-- from it, size and checksum, the arrays and the whole header as
-- indented JSON.
local cjson = require "cjson"
local core = require "moonfm.core"
local modelfile = require "moonfm.modelfile"

local M = {}

M.EXIT_VALID = 0
M.EXIT_INVALID = 3
M.EXIT_USAGE = 2

-- The kinds `moonfm train` writes and `moonfm serve` answers from: one of
-- these that serve refuses is damaged.  Other kinds (models saved through
-- moonfm.modelfile by a recipe of one's own) only get a "serve:" line.
M.SERVED = { fm = true, als = true }

-- Shortest text that reads back as the same number.
local function num(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 2^53 then
    return string.format("%d", math.tointeger(v))
  end
  for _, p in ipairs { "%.7g", "%.15g" } do
    local s = string.format(p, v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

-- pretty(value) -> indented JSON with sorted keys.
function M.pretty(v, indent)
  indent = indent or ""
  local t = type(v)
  if v == cjson.null or v == nil then return "null" end
  if t == "number" then return num(v) end
  if t == "boolean" then return tostring(v) end
  if t == "string" then return cjson.encode(v) end
  if t ~= "table" then return cjson.encode(tostring(v)) end
  local inner = indent .. "  "
  local parts = {}
  if is_array(v) then
    local flat = true
    for _, x in ipairs(v) do flat = flat and type(x) ~= "table" end
    for _, x in ipairs(v) do parts[#parts + 1] = M.pretty(x, inner) end
    if flat then return "[" .. table.concat(parts, ", ") .. "]" end
    return "[\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" ..
           indent .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  if #keys == 0 then return "{}" end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[math.tointeger(tonumber(k))] end
    parts[#parts + 1] = cjson.encode(k) .. ": " .. M.pretty(x, inner)
  end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" ..
         indent .. "}"
end

-- A metric as the recipes' logger keeps it (moonfm.metrics
-- logger:summary(): split, name, kind, epochs = {{epoch, value}...},
-- final): its final value, else its last epoch's; the whole history is
-- in the header below.
local function metric_value(v)
  if type(v.final) == "number" then return num(v.final) end
  local last = v.epochs[#v.epochs]
  if type(last) == "table" and type(last.value) == "number" then
    local e = type(last.epoch) == "number" and num(last.epoch) or "?"
    return num(last.value) .. " (epoch " .. e .. ")"
  end
end

-- Metrics as "name=value" pairs, nested tables flattened with spaces:
-- { validation = { ["ndcg@10"] = 0.3 } } -> "validation ndcg@10=0.3".
local function flatten(t, prefix, out)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = t[k]
    k = tostring(k)
    local name = prefix and (prefix .. " " .. k) or k
    if type(v) == "table" and type(v.epochs) == "table" then
      local value = metric_value(v)
      if value then out[#out + 1] = name .. "=" .. value end
    elseif type(v) == "table" then
      flatten(v, name, out)
    elseif type(v) == "number" then
      out[#out + 1] = name .. "=" .. num(v)
    elseif v ~= cjson.null then
      out[#out + 1] = name .. "=" .. tostring(v)
    end
  end
  return out
end

local function find(arrays, name)
  for _, a in ipairs(arrays) do
    if a.name == name then return a end
  end
end

-- summary(s) -> lines of the report for a modelfile.inspect result.
function M.lines(s)
  local h = s.header
  local function pick(key, fallback)
    local v = h[key]
    if type(v) == "number" then return num(v) end
    return fallback or "?"
  end
  local uf, itf = find(s.arrays, "user_factors"), find(s.arrays, "item_factors")
  local uo = find(s.arrays, "users.offsets")
  local io_ = find(s.arrays, "items.offsets")
  local out = {}
  out[#out + 1] = "kind: " .. tostring(h.kind)
  out[#out + 1] = string.format("version: format %d, moonfm %s", s.version,
                                tostring(h.moonfm_version or "?"))
  out[#out + 1] = "users: " .. pick("n_users", uf and num(uf.rows) or
                                    uo and num(uo.rows - 1))
  out[#out + 1] = "items: " .. pick("n_items", itf and num(itf.rows) or
                                    io_ and num(io_.rows - 1))
  out[#out + 1] = "factors: " .. pick("factors", uf and num(uf.cols))
  local metrics = type(h.metrics) == "table" and flatten(h.metrics, nil, {})
                  or {}
  out[#out + 1] = "metrics: " .. (#metrics > 0 and table.concat(metrics, ", ")
                                  or "none")
  if s.checkpoint then
    out[#out + 1] = "type: checkpoint (epoch " .. pick("epoch") ..
                    (type(h.step) == "number" and h.step > 0 and
                     (", step " .. num(h.step)) or "") .. ")"
  else
    out[#out + 1] = "type: model"
  end
  if s.serve then
    local v = s.serve
    local can = {}
    if v.fold_in then can[#can + 1] = "fold-in" end
    if v.features then can[#can + 1] = "feature users" end
    out[#out + 1] = "serve: ready" .. (#can > 0 and " (" ..
                    table.concat(can, ", ") .. ")" or "")
  elseif s.serve_refused then
    out[#out + 1] = "serve: refused: " .. s.serve_refused
  end
  out[#out + 1] = string.format("file: %s, %d bytes, crc32 %08x", s.path,
                                s.size, s.checksum)
  out[#out + 1] = string.format("arrays: %d", #s.arrays)
  for _, a in ipairs(s.arrays) do
    out[#out + 1] = string.format("  %-24s %-4s %d x %d", a.name, a.dtype,
                                  a.rows, a.cols)
  end
  out[#out + 1] = "header:"
  out[#out + 1] = M.pretty(h)
  return out
end

-- main(path [, out, err]) -> exit status; out and err default to
-- io.stdout and io.stderr (anything with :write).
function M.main(path, out, err)
  out, err = out or io.stdout, err or io.stderr
  if type(path) ~= "string" or path == "" then
    err:write("usage: moonfm inspect FILE\n")
    return M.EXIT_USAGE
  end
  local prefix = path .. ": "
  local s, msg = modelfile.inspect(path)
  if s and not s.checkpoint then
    local why
    s.serve, why = core.serve_check(path)
    if not s.serve then
      why = tostring(why)
      if why:sub(1, #prefix) == prefix then why = why:sub(#prefix + 1) end
      if M.SERVED[s.header.kind] then
        s, msg = nil, why
      else
        s.serve_refused = why
      end
    end
  end
  if not s then
    -- One line, starting with the path.
    msg = tostring(msg):gsub("[\r\n]+", " ")
    if msg:sub(1, #prefix) ~= prefix then msg = prefix .. msg end
    err:write(msg, "\n")
    return M.EXIT_INVALID
  end
  out:write(table.concat(M.lines(s), "\n"), "\n")
  return M.EXIT_VALID
end

return M
