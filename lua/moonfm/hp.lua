-- Hyperparameters (spec rules 28-43): reading hyperparameters.json without
-- losing the text of its values, the untyped decode of the AWS toolkit, the
-- typed coercions, recipe schemas and the HyperparameterError that lists
-- every problem at once.  Recipe-facing documentation: docs/hyperparameters.md.
--
-- Values are handled as raw strings (rule 29): a hand-written file value 64
-- is the string "64", never the float lua-cjson would make of it.  The
-- strict JSON reader that keeps that text is moonfm.json.
local json = require "moonfm.json"
local errors = require "moonfm.errors"

local M = {}

-- JSON null and the marks on decoded arrays, objects and big integers
-- (moonfm.json), here for the modules that print values back (smenv).
M.null = json.null
M.array_mt = json.array_mt
M.object_mt = json.object_mt
M.bigint_mt = json.bigint_mt
M.json_decode = json.decode

-- SageMaker's limits on CreateTrainingJob.HyperParameters (rule 42).
M.limits = { entries = 100, key = 256, value = 2500 }

---------------------------------------------------------------------------
-- Small helpers

local function bytewise_less(a, b)
  -- Lua's `<` on strings follows the C library collation (strcoll); JSON
  -- and Python sort by code point, which is byte order for UTF-8.
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
M.bytewise_less = bytewise_less

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, bytewise_less)
  return keys
end

local function trim(s)
  return (s:gsub("^[ \t\n\r\f\v]+", ""):gsub("[ \t\n\r\f\v]+$", ""))
end

-- Shortest decimal digits that read back as x (x finite, > 0): digits and
-- the position of the decimal point (x = 0.D * 10^decpt).  The nearest
-- p-digit decimal is tried first, then its neighbours: at a power of two
-- the rounding interval is lopsided and a neighbour may round-trip when the
-- nearest does not.  Matches Python's repr for the values we met.
local function shortest(x)
  for p = 1, 17 do
    local s = string.format("%." .. (p - 1) .. "e", x)
    local m, e = s:match("^(%d[^e]*)e([-+]%d+)$")
    local digits = m:gsub("%D", "")
    local decpt = tonumber(e) + 1
    if tonumber(digits .. "e" .. (decpt - p)) == x then
      return digits, decpt
    end
    local n = math.tointeger(tonumber(digits))
    for _, d in ipairs { -1, 1 } do
      local cand = tostring(n + d)
      if tonumber(cand .. "e" .. (decpt - p)) == x then
        return cand, decpt - p + #cand
      end
    end
  end
  local s = string.format("%.16e", x)
  local m, e = s:match("^(%d[^e]*)e([-+]%d+)$")
  return (m:gsub("%D", "")), tonumber(e) + 1
end

-- float_repr(x): a float as Python's repr() writes it (shortest round-trip,
-- `.0` on integral values, exponent form below 1e-4 and from 1e16 on):
-- 0.1 -> "0.1", 64.0 -> "64.0", 1e-05 -> "1e-05", 1e16 -> "1e+16".
-- Independent of the C locale.  Non-finite: "NaN", "Infinity", "-Infinity"
-- (what Python's json module prints).
function M.float_repr(x)
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  if x == 0 then return (1 / x < 0) and "-0.0" or "0.0" end
  local sign = ""
  if x < 0 then sign, x = "-", -x end
  local d, decpt = shortest(x)
  d = d:gsub("0+$", "")
  if d == "" then d = "0" end
  if decpt <= -4 or decpt > 16 then
    local mant = d:sub(1, 1)
    if #d > 1 then mant = mant .. "." .. d:sub(2) end
    local e = decpt - 1
    return string.format("%s%se%s%02d", sign, mant, e < 0 and "-" or "+",
                         math.abs(e))
  elseif decpt <= 0 then
    return sign .. "0." .. string.rep("0", -decpt) .. d
  elseif decpt >= #d then
    return sign .. d .. string.rep("0", decpt - #d) .. ".0"
  else
    return sign .. d:sub(1, decpt) .. "." .. d:sub(decpt + 1)
  end
end

-- A number for messages and logs: integers as such, floats by float_repr.
local function num_text(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  return M.float_repr(v)
end

-- Show a raw value in a message: quoted, control characters escaped, cut
-- to 60 characters (rule 40) at a UTF-8 character boundary.
local show_escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                       ["\r"] = "\\r", ["\t"] = "\\t" }

local function show(raw, limit)
  limit = limit or 60
  local s = raw
  if #s > limit then
    local cut = limit - 3
    while cut > 0 do
      local b = s:byte(cut + 1)
      if not b or b < 0x80 or b >= 0xC0 then break end
      cut = cut - 1
    end
    s = s:sub(1, cut) .. "..."
  end
  s = s:gsub('[\0-\31"\\\127]', function(c)
    return show_escapes[c] or string.format("\\x%02x", c:byte())
  end)
  return '"' .. s .. '"'
end
M.show = show

---------------------------------------------------------------------------
-- Untyped decode and unquoting (rules 31, 32)

-- decode(raw [, opts]) -> value, is_json
-- The toolkit's json.loads-or-raw: the whole string as strict JSON
-- (surrounding whitespace allowed); when that fails, raw itself.  NaN,
-- Infinity, hex and leading-zero numbers are not JSON and stay strings.
-- JSON null gives M.null (not nil, so a table can hold it).  opts.bigint =
-- "text" keeps integers beyond 64 bits exact (for SM_HP_*).
function M.decode(raw, opts)
  if type(raw) ~= "string" then
    error("decode: string expected, got " .. type(raw), 2)
  end
  local v = json.decode(raw, opts)
  if v == nil then return raw, false end
  return v, true
end

-- unquote(raw) -> text, was_literal
-- Rule 32: when raw, trimmed, is a JSON string literal, its decoded
-- content (one level only); otherwise raw unchanged.
function M.unquote(raw)
  if type(raw) ~= "string" then
    error("unquote: string expected, got " .. type(raw), 2)
  end
  local v = json.string_literal(trim(raw))
  if v ~= nil then return v, true end
  return raw, false
end

---------------------------------------------------------------------------
-- Typed coercion (rules 33-38)

local INT_MAX = "9223372036854775807"
local INT_MIN = "9223372036854775808"

-- Sign and decimal digits (any leading zeros) -> integer, or nil when
-- outside the 64-bit range.
local function digits_to_int(sign, d)
  d = d:gsub("^0+", "")
  if d == "" then return 0 end
  local limit = sign == "-" and INT_MIN or INT_MAX
  if #d > #limit or (#d == #limit and d > limit) then return nil end
  return math.tointeger(tonumber(sign .. d))
end

-- Decimal/exponent notation: sign, integer digits, fraction digits and
-- exponent text, or nil.  Accepts `.5`, `5.`, `-2e-3`, `64`, `+1`.
local function float_parts(t)
  local sign, ip, dot, fp, rest = t:match("^([+-]?)(%d*)(%.?)(%d*)(.*)$")
  if not sign or #ip + #fp == 0 then return nil end
  local ex = ""
  if rest ~= "" then
    ex = rest:match("^[eE]([+-]?%d+)$")
    if not ex then return nil end
  end
  return sign, ip, fp, ex, dot
end

-- A decimal or exponent form whose value is exactly an integer (`64.0`,
-- `1e3`, `1.50e1`), computed on the digits, so `9007199254740993.0` is not
-- rounded by a float on the way.
local function exact_int(sign, ip, fp, ex)
  local d = ip .. fp
  local e = 0
  if ex ~= "" then
    local es, ed = ex:match("^([+-]?)0*(%d*)$")
    if #ed > 9 then ed = "999999999" end
    e = (tonumber(ed) or 0) * (es == "-" and -1 or 1)
  end
  local point = #ip + e
  local lead = #d:match("^0*")
  d, point = d:sub(lead + 1), point - lead
  if d == "" then return 0 end
  if point < #d then
    local frac = point >= 0 and d:sub(point + 1) or d
    if frac:find("[1-9]") then return nil end
    if point <= 0 then return 0 end
    d = d:sub(1, point)
  elseif point > 19 then
    return nil
  else
    d = d .. string.rep("0", point - #d)
  end
  return digits_to_int(sign, d)
end

local function coerce_int(t)
  t = trim(t)
  local sign, d = t:match("^([+-]?)(%d+)$")
  if sign then return digits_to_int(sign, d) end
  local s, ip, fp, ex = float_parts(t)
  if s then return exact_int(s, ip, fp, ex) end
  return nil
end

local function coerce_float(t)
  t = trim(t)
  if not float_parts(t) then return nil end
  local v = tonumber(t)
  if not v then return nil end
  v = v + 0.0
  if v ~= v or v == math.huge or v == -math.huge then return nil end
  return v
end

local function coerce_bool(t)
  t = trim(t):lower()
  if t == "true" then return true end
  if t == "false" then return false end
  return nil
end

local scalar_types = { int = true, float = true, bool = true, string = true,
                       enum = true }
local all_types = { int = true, float = true, bool = true, string = true,
                    enum = true, list = true }

-- "an integer >= 1 and <= 4096" and the like.
local function bounds_text(spec)
  local parts = {}
  if spec.min ~= nil then
    parts[#parts + 1] = (spec.min_exclusive and "> " or ">= ") ..
      num_text(spec.min)
  end
  if spec.max ~= nil then
    parts[#parts + 1] = (spec.max_exclusive and "< " or "<= ") ..
      num_text(spec.max)
  end
  if #parts == 0 then return "" end
  return " " .. table.concat(parts, " and ")
end

local function quoted_list(values)
  local q = {}
  for i, v in ipairs(values) do q[i] = show(v, 40) end
  return table.concat(q, ", ")
end

local function value_text(v)
  if type(v) == "string" then return show(v, 40) end
  if type(v) == "number" then return num_text(v) end
  if type(v) == "table" then
    local parts = {}
    for i, e in ipairs(v) do parts[i] = value_text(e) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return tostring(v)
end

local nouns = { int = "an integer", float = "a number", bool = "true or false",
                string = "a string" }
local plurals = { int = "integers", float = "numbers", bool = "booleans",
                  string = "strings" }

-- What a value of this spec must look like, for messages (rule 40).
local function expectation(spec)
  local ty = spec.type
  if ty == "enum" then
    return "one of " .. quoted_list(spec.values)
  elseif ty == "list" then
    local of = spec.of
    local what
    if of == "enum" then
      what = "values from " .. quoted_list(spec.values)
    else
      what = plurals[of] .. bounds_text(spec)
    end
    local eg = { int = "[1,2]", float = "[0.1,0.2]", bool = "[true,false]",
                 string = '["a","b"]' }
    eg.enum = spec.values and ('["' .. spec.values[1] .. '"]') or '["a"]'
    return "a JSON array of " .. what .. " (e.g. " .. eg[of] ..
      ") or a comma-separated list"
  end
  local text = nouns[ty] .. bounds_text(spec)
  if ty == "int" or ty == "float" then
    local eg = spec.default
    if type(eg) ~= "number" then eg = ty == "int" and 10 or 0.1 end
    if ty == "float" then eg = eg + 0.0 end
    text = text .. " (e.g. " .. num_text(eg) .. ")"
  end
  return text
end
M.expectation = expectation

local function in_bounds(v, spec)
  if spec.min ~= nil then
    if spec.min_exclusive then
      if not (v > spec.min) then return false end
    elseif not (v >= spec.min) then return false end
  end
  if spec.max ~= nil then
    if spec.max_exclusive then
      if not (v < spec.max) then return false end
    elseif not (v <= spec.max) then return false end
  end
  return true
end

-- Coerce text that has already been unquoted (or is an array element).
local F32_MAX, F32_MIN = 3.4028234663852886e38, 1.1754943508222875e-38

local function coerce_scalar(t, spec)
  local ty = spec.type
  local v
  if ty == "int" then v = coerce_int(t)
  elseif ty == "float" then v = coerce_float(t)
  elseif ty == "bool" then v = coerce_bool(t)
  elseif ty == "string" then return t
  elseif ty == "enum" then
    for _, allowed in ipairs(spec.values) do
      if t == allowed then return t end
    end
    -- Rule 37 wants the exact bytes; say what keeps a near miss out.
    local bare = trim(t)
    for _, allowed in ipairs(spec.values) do
      if bare == allowed then
        return nil, expectation(spec) .. " (remove the spaces around the value)"
      end
      if bare:lower() == allowed:lower() then
        return nil, expectation(spec) .. " (values are case-sensitive)"
      end
    end
    return nil, expectation(spec)
  end
  if v == nil or (type(v) == "number" and not in_bounds(v, spec)) then
    return nil, expectation(spec)
  end
  -- spec.f32: the value goes to a kernel that computes in 32-bit floats,
  -- where 1e39 would become infinity and 1e-50 zero behind the schema's
  -- back.
  if ty == "float" and spec.f32 and (math.abs(v) > F32_MAX or
                        (v ~= 0 and math.abs(v) < F32_MIN)) then
    return nil, expectation(spec) .. " that a 32-bit float holds (0, or "
      .. "a magnitude from 1.2e-38 to 3.4e38)"
  end
  return v
end

local function element_spec(spec)
  return { type = spec.of, values = spec.values, f32 = spec.f32, min = spec.min,
           max = spec.max, min_exclusive = spec.min_exclusive,
           max_exclusive = spec.max_exclusive }
end

local function coerce_list(raw, spec)
  local t = trim((M.unquote(raw)))
  local es = element_spec(spec)
  local items = {}
  if t:sub(1, 1) == "[" then
    local elems = json.elements(t)
    if not elems then return nil, expectation(spec) end
    for i, e in ipairs(elems) do
      if e.value == M.null then
        return nil, expectation(spec) .. " (element " .. i .. " is null)"
      end
      items[i] = { text = e.text, unquoted = e.string }
    end
  elseif t ~= "" then
    local n = 0
    for piece in (t .. ","):gmatch("([^,]*),") do
      n = n + 1
      items[n] = { text = piece }
    end
  end
  local out = {}
  for i, it in ipairs(items) do
    local text = it.text
    if not it.unquoted then text = trim((M.unquote(text))) end
    if es.type ~= "string" and es.type ~= "enum" then text = trim(text) end
    local v = coerce_scalar(text, es)
    if v == nil then
      return nil, expectation(spec) .. " (element " .. i .. " is " ..
        show(it.text, 30) .. ")"
    end
    out[i] = v
  end
  return out
end

local function check_spec(spec, level)
  if type(spec) ~= "table" or not all_types[spec.type] then
    error("coerce: spec.type must be one of int, float, bool, string, " ..
          "enum, list", level + 1)
  end
end

-- coerce(raw, spec) -> value | nil, expectation
-- spec is a declaration ({type=..., values=, of=, min=, max=, ...});
-- bounds are checked too.  Rules 33-38: raw is unquoted first (rule 32);
-- int, float and bool are trimmed; string and enum keep the bytes.
function M.coerce(raw, spec)
  if type(raw) ~= "string" then
    error("coerce: raw value must be a string, got " .. type(raw), 2)
  end
  check_spec(spec, 2)
  if spec.type == "list" then return coerce_list(raw, spec) end
  local t = M.unquote(raw)
  return coerce_scalar(t, spec)
end

---------------------------------------------------------------------------
-- Reading hyperparameters.json (rules 13, 16, 28)

-- read_file(path) -> raw, duplicates
-- Reads hyperparameters.json into key -> raw string (rule 28).  A missing
-- file returns nil, msg (the caller treats it as {}, rule 13); an
-- unreadable, invalid or non-object file raises a ConfigError naming the
-- file, line and column (rule 16).  duplicates lists keys given twice (the
-- last value wins, like the toolkit).  A UTF-8 byte order mark is skipped.
function M.read_file(path)
  local f, msg, code = io.open(path, "rb")
  if not f then
    if code == 2 then return nil, msg end
    errors.raise("ConfigError", "cannot read " .. path .. ": " ..
                 tostring(msg))
  end
  local text, rerr = f:read("a")
  f:close()
  if not text then
    errors.raise("ConfigError", "cannot read " .. path .. ": " ..
                 tostring(rerr))
  end
  local raw, x = json.members(text)
  if not raw then
    errors.raise("ConfigError", path .. " is not valid: " .. x ..
                 " (a JSON object of strings is expected)")
  end
  return raw, x
end

-- raw_from_json_value(v) -> string
-- For values already decoded by cjson (rule 28): strings as they are,
-- everything else as compact JSON.  cjson has turned every number into a
-- float, so integral floats print as integers (64.0 -> "64"): the file's
-- own text is lost, which is why read_file keeps it instead.
function M.raw_from_json_value(v)
  if type(v) == "string" then return v end
  return require("moonfm.smenv").json(v, { integral_floats = true })
end

-- check_limits(raw) -> list of warning strings
-- Rule 42: SageMaker rejects more than 100 entries, keys over 256 and
-- values over 2500 characters.  moonfm itself reads any size (a local file
-- may be larger); these warnings tell the user the job would not be
-- accepted by CreateTrainingJob.
function M.check_limits(raw)
  local out, n = {}, 0
  for _, k in ipairs(sorted_keys(raw)) do
    n = n + 1
    local klen = utf8.len(k) or #k
    if klen > M.limits.key then
      out[#out + 1] = string.format("hyperparameter key %s is %d characters "
        .. "long; SageMaker accepts at most %d", show(k), klen, M.limits.key)
    end
    local v = raw[k]
    local vlen = utf8.len(v) or #v
    if vlen > M.limits.value then
      out[#out + 1] = string.format("hyperparameter '%s' has a value of %d "
        .. "characters; SageMaker accepts at most %d", k, vlen, M.limits.value)
    end
  end
  if n > M.limits.entries then
    table.insert(out, 1, string.format("%d hyperparameters given; SageMaker "
      .. "accepts at most %d", n, M.limits.entries))
  end
  return out
end

---------------------------------------------------------------------------
-- Reserved entries (rule 30)

function M.is_reserved(key)
  return key:sub(1, 10) == "sagemaker_" or key == "_tuning_objective_metric"
    or key == "default_user_module_name"
end

-- split_reserved(raw) -> user, reserved (two new tables, raw strings).
function M.split_reserved(raw)
  if type(raw) ~= "table" then
    error("split_reserved: table expected, got " .. type(raw), 2)
  end
  local user, reserved = {}, {}
  for k, v in pairs(raw) do
    if M.is_reserved(k) then reserved[k] = v else user[k] = v end
  end
  return user, reserved
end

-- readonly(t) -> proxy: reads and pairs() see t, writes raise.
function M.readonly(t, what)
  what = what or "table"
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error("attempt to modify read-only " .. what .. " (key '" ..
            tostring(k) .. "')", 2)
    end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
  })
end

---------------------------------------------------------------------------
-- Schemas (rules 39-41)

local schema_mt = { __name = "moonfm.HyperparameterSchema" }
local decl_fields = { type = true, default = true, required = true, min = true,
                      max = true, min_exclusive = true, max_exclusive = true,
                      help = true, values = true, of = true, f32 = true,
                      aliases = true }

-- Is a Lua value a valid value of decl?  Returns the normalised value
-- (int defaults given as 64.0 become 64) or nil, why.
local function check_value(v, decl)
  local ty = decl.type
  if ty == "int" then
    local i = math.tointeger(v)
    if type(v) ~= "number" or not i then return nil, "not an integer" end
    if not in_bounds(i, decl) then return nil, "out of bounds" end
    return i
  elseif ty == "float" then
    if type(v) ~= "number" or v ~= v then return nil, "not a number" end
    v = v + 0.0
    if not in_bounds(v, decl) then return nil, "out of bounds" end
    return v
  elseif ty == "bool" then
    if type(v) ~= "boolean" then return nil, "not a boolean" end
    return v
  elseif ty == "string" then
    if type(v) ~= "string" then return nil, "not a string" end
    return v
  elseif ty == "enum" then
    for _, a in ipairs(decl.values) do
      if v == a then return v end
    end
    return nil, "not one of the declared values"
  else -- list
    if type(v) ~= "table" then return nil, "not a table" end
    local n = #v
    for k in pairs(v) do
      if math.type(k) ~= "integer" or k < 1 or k > n then
        return nil, "not a sequence"
      end
    end
    local es = element_spec(decl)
    local out = {}
    for i = 1, n do
      local e, why = check_value(v[i], es)
      if e == nil then return nil, "element " .. i .. ": " .. why end
      out[i] = e
    end
    return out
  end
end

local function copy_value(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for i, e in ipairs(v) do t[i] = e end
  return t
end

local function build_schema(decls, level)
  level = level + 1
  if getmetatable(decls) == schema_mt then return decls end
  if type(decls) ~= "table" then
    error("hyperparameter schema: table of declarations expected, got " ..
          type(decls), level)
  end
  local function bad(key, msg)
    error("hyperparameter schema: '" .. tostring(key) .. "': " .. msg,
          level + 1)
  end
  local out = {}
  for key, d in pairs(decls) do
    if type(key) ~= "string" or key == "" then
      bad(key, "names must be non-empty strings")
    end
    if #key > M.limits.key then
      bad(key, "names are at most " .. M.limits.key .. " characters")
    end
    if M.is_reserved(key) then
      bad(key, "the name is reserved for SageMaker (sagemaker_*, " ..
          "_tuning_objective_metric, default_user_module_name)")
    end
    if type(d) ~= "table" then bad(key, "declaration must be a table") end
    for f in pairs(d) do
      if not decl_fields[f] then
        bad(key, "unknown field '" .. tostring(f) .. "' (known: type, " ..
            "default, required, min, max, min_exclusive, max_exclusive, " ..
            "values, of, f32, help, aliases)")
      end
    end
    if not all_types[d.type] then
      bad(key, "type must be one of int, float, bool, string, enum, list " ..
          "(got " .. tostring(d.type) .. ")")
    end
    local decl = {}
    for f, v in pairs(d) do decl[f] = v end
    if d.type == "list" then
      if not scalar_types[d.of] then
        bad(key, "a list needs of = int, float, bool, string or enum")
      end
    elseif d.of ~= nil then
      bad(key, "'of' is only for lists")
    end
    local et = d.type == "list" and d.of or d.type
    if et == "enum" then
      if type(d.values) ~= "table" or #d.values == 0 then
        bad(key, "an enum needs values = { \"a\", \"b\", ... }")
      end
      local seen = {}
      for _, v in ipairs(d.values) do
        if type(v) ~= "string" then bad(key, "values must be strings") end
        if seen[v] then bad(key, "value '" .. v .. "' is listed twice") end
        seen[v] = true
      end
      decl.values = { table.unpack(d.values) }
    elseif d.values ~= nil then
      bad(key, "'values' is only for enums")
    end
    for _, f in ipairs { "min", "max" } do
      if d[f] ~= nil then
        if et ~= "int" and et ~= "float" then
          bad(key, f .. " is only for int and float values")
        end
        if type(d[f]) ~= "number" or d[f] ~= d[f] then
          bad(key, f .. " must be a number")
        end
      end
      local ex = f .. "_exclusive"
      if d[ex] ~= nil then
        if type(d[ex]) ~= "boolean" then bad(key, ex .. " must be a boolean") end
        if d[f] == nil then bad(key, ex .. " needs " .. f) end
      end
    end
    if d.min ~= nil and d.max ~= nil and d.min > d.max then
      bad(key, "min is greater than max")
    end
    if d.required ~= nil and type(d.required) ~= "boolean" then
      bad(key, "required must be a boolean")
    end
    if d.help ~= nil and type(d.help) ~= "string" then
      bad(key, "help must be a string")
    end
    if d.default ~= nil then
      if d.required then bad(key, "a required value cannot have a default") end
      local v, why = check_value(d.default, decl)
      if v == nil then
        bad(key, "default " .. value_text(d.default) .. " is invalid (" ..
            why .. "; expected " .. expectation(decl) .. ")")
      end
      decl.default = v
    end
    out[key] = decl
  end
  -- Other names of a key (another library's, e.g. LightFM's
  -- no_components for factors): given instead, they set the key.
  local alias = {}
  for key, d in pairs(out) do
    if d.aliases ~= nil then
      if type(d.aliases) ~= "table" then bad(key, "aliases must be a list of names") end
      for _, a in ipairs(d.aliases) do
        if type(a) ~= "string" or a == "" or M.is_reserved(a) then
          bad(key, "an alias must be a non-empty name not reserved for SageMaker")
        end
        if out[a] then bad(key, "alias '" .. a .. "' is a declared key itself") end
        if alias[a] then
          bad(key, "alias '" .. a .. "' is also an alias of '" .. alias[a] .. "'")
        end
        alias[a] = key
      end
      d.aliases = { table.unpack(d.aliases) }
    end
  end
  return setmetatable({ decls = out, keys = sorted_keys(out), alias = alias },
                      schema_mt)
end

-- schema(decls) -> schema
-- Validates the declarations (a bad one raises, pointing at the caller;
-- the host reports it as a RecipeError).  See docs/hyperparameters.md.
function M.schema(decls)
  return build_schema(decls, 2)
end

-- Edit distance, for "did you mean" hints.
local function distance(a, b)
  if math.abs(#a - #b) > 2 then return 3 end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggestion(key, keys)
  local best, bd = nil, 3
  for _, k in ipairs(keys) do
    local d = distance(key:lower(), k:lower())
    if d < bd then best, bd = k, d end
  end
  return best
end

-- Private state of typed tables, keyed by the proxy.
local state = setmetatable({}, { __mode = "k" })

local function typed_proxy(schema, values, raw, defaulted, via)
  local decls = schema.decls
  local proxy = {}
  state[proxy] = { schema = schema, values = values, raw = raw,
                   defaulted = defaulted, via = via }
  return setmetatable(proxy, {
    __name = "moonfm.Hyperparameters",
    __index = function(_, k)
      if decls[k] then return values[k] end
      local hint = type(k) == "string" and suggestion(k, schema.keys)
      error("hyperparameter '" .. tostring(k) .. "' is not declared by the " ..
            "recipe" .. (hint and (" (did you mean '" .. hint .. "'?)") or ""),
            2)
    end,
    __newindex = function(_, k)
      error("hyperparameters are read-only (assignment to '" ..
            tostring(k) .. "')", 2)
    end,
    __pairs = function()
      local i, keys = 0, schema.keys
      return function()
        while true do
          i = i + 1
          local k = keys[i]
          if k == nil then return nil end
          if values[k] ~= nil then return k, values[k] end
        end
      end, proxy, nil
    end,
  })
end

-- One error line of rule 40.
local function item(key, raw, expected)
  local text
  if raw == nil then
    text = string.format("hyperparameter '%s' is required but missing: " ..
                         "expected %s", key, expected)
  else
    text = string.format("hyperparameter '%s' = %s: expected %s", key,
                         show(raw), expected)
  end
  return { key = key, raw = raw, expected = expected, text = text }
end

local apply_opts = { strict = true }

-- apply(schema, raw [, opts]) -> typed, unknown
-- schema: from M.schema, or the declarations table itself.  raw: user
-- hyperparameters, key -> raw string (reserved keys are ignored).
-- typed: read-only table of the declared keys (defaults applied; reading
-- an undeclared key raises; pairs() works).  unknown: sorted list of given
-- keys the schema does not declare (warn once about them, rule 41); with
-- opts.strict = true they are errors.  Every missing, invalid and out of
-- bounds value is collected and raised once as a HyperparameterError whose
-- .items lists {key, raw, expected, text} (rule 40).
function M.apply(schema, raw, opts)
  schema = build_schema(schema, 2)
  if type(raw) ~= "table" then
    error("apply: raw hyperparameters must be a table, got " .. type(raw), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not apply_opts[k] then
      error("apply: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local user = {}
  for k, v in pairs(raw) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error("apply: raw hyperparameters must map strings to strings (key " ..
            tostring(k) .. " has a " .. type(v) .. ")", 2)
    end
    if not M.is_reserved(k) then user[k] = v end
  end
  local values, defaulted, problems, via = {}, {}, {}, {}
  -- An alias stands for its key; both given is ambiguous, so an error.
  for _, a in ipairs(sorted_keys(user)) do
    local key = schema.alias[a]
    if key and (user[key] ~= nil or via[key]) then
      local it = item(a, user[a], "one name of '" .. key .. "' only")
      it.text = string.format("hyperparameter '%s' = %s: '%s' is another "
        .. "name for '%s', and '%s' is given too; keep one", a, show(user[a]),
        a, key, via[key] or key)
      problems[#problems + 1] = it
    elseif key then
      via[key] = a
    end
  end
  for key, a in pairs(via) do user[key], user[a] = user[a], nil end
  for _, key in ipairs(schema.keys) do
    local decl = schema.decls[key]
    local r = user[key]
    if r ~= nil then
      local v, why = M.coerce(r, decl)
      if v == nil then
        problems[#problems + 1] = item(via[key] or key, r, why)
      else
        values[key] = v
      end
    elseif decl.default ~= nil then
      values[key] = copy_value(decl.default)
      defaulted[key] = true
    elseif decl.required then
      problems[#problems + 1] = item(key, nil, expectation(decl))
    end
  end
  local unknown = {}
  for _, k in ipairs(sorted_keys(user)) do
    if not schema.decls[k] and not schema.alias[k] then
      unknown[#unknown + 1] = k
    end
  end
  if opts.strict then
    for _, k in ipairs(unknown) do
      local hint = suggestion(k, schema.keys)
      local it = item(k, user[k], "no such hyperparameter in this recipe" ..
        (hint and (" (did you mean '" .. hint .. "'?)") or ""))
      it.text = string.format("hyperparameter '%s' = %s: not declared by " ..
        "the recipe%s", k, show(user[k]),
        hint and (" (did you mean '" .. hint .. "'?)") or "")
      problems[#problems + 1] = it
    end
  end
  if #problems > 0 then
    local texts = {}
    for i, p in ipairs(problems) do texts[i] = p.text end
    local msg
    if #problems == 1 then
      msg = texts[1]
    else
      msg = #problems .. " invalid hyperparameters: " ..
        table.concat(texts, "; ")
    end
    local e = errors.new("HyperparameterError", msg)
    e.items = problems
    error(e, 0)
  end
  local rawcopy = {}
  for k, v in pairs(raw) do
    if not M.is_reserved(k) then rawcopy[k] = v end
  end
  return typed_proxy(schema, values, rawcopy, defaulted, via), unknown
end

-- unknown_warning(unknown [, schema]) -> message or nil (rule 41)
function M.unknown_warning(unknown, schema)
  if not unknown or #unknown == 0 then return nil end
  local parts = {}
  for i, k in ipairs(unknown) do
    local hint = schema and suggestion(k, build_schema(schema, 2).keys)
    parts[i] = "'" .. k .. "'" ..
      (hint and (" (did you mean '" .. hint .. "'?)") or "")
  end
  return "ignoring hyperparameters the recipe does not declare: " ..
    table.concat(parts, ", ")
end

-- raw(typed) -> key -> raw string of every user entry given (rule 29).
function M.raw(typed)
  local st = state[typed]
  if not st then error("raw: typed hyperparameters expected", 2) end
  local t = {}
  for k, v in pairs(st.raw) do t[k] = v end
  return t
end

-- totable(typed) -> a plain copy of the typed values (for cjson, headers).
function M.totable(typed)
  local st = state[typed]
  if not st then error("totable: typed hyperparameters expected", 2) end
  local t = {}
  for k, v in pairs(st.values) do t[k] = copy_value(v) end
  return t
end

-- is_default(typed, key) -> true when key got its declared default.
function M.is_default(typed, key)
  local st = state[typed]
  if not st then error("is_default: typed hyperparameters expected", 2) end
  return st.defaulted[key] == true
end

local function log_value(v)
  if type(v) == "string" then return show(v, 200) end
  if type(v) == "table" then
    local parts = {}
    for i, e in ipairs(v) do parts[i] = log_value(e) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if type(v) == "number" then return num_text(v) end
  if v == nil then return "(not set)" end
  return tostring(v)
end

-- format_for_log(typed) -> one text block (rule 43), one line per key,
-- sorted, indented, for the caller's "hyperparameters:" header:
--     factors = 64 (default)
--     loss = "bpr"
-- Declared but unset optional keys show "(not set)"; no keys: "  (none)".
-- Also takes a plain table.
function M.format_for_log(typed)
  local st = state[typed]
  local keys, values, defaulted, via = nil, nil, nil, {}
  if st then
    keys, values, defaulted, via = st.schema.keys, st.values, st.defaulted, st.via
  else
    if type(typed) ~= "table" then
      error("format_for_log: table expected, got " .. type(typed), 2)
    end
    keys, values, defaulted = sorted_keys(typed), typed, {}
  end
  local lines = {}
  for _, k in ipairs(keys) do
    lines[#lines + 1] = "  " .. k .. " = " .. log_value(values[k]) ..
      (defaulted[k] and " (default)" or "") ..
      (via[k] and (" (given as " .. via[k] .. ")") or "")
  end
  if #lines == 0 then return "  (none)" end
  return table.concat(lines, "\n")
end

return M
