-- The strict JSON reader of moonfm's configuration files: RFC 8259 and
-- nothing more, with the line and column of every error, integers kept as
-- integers (or as their digits when beyond 64 bits), and the source text
-- of values kept where the caller needs it (a hyperparameter written 64 is
-- "64", not 64.0; spec rule 29).  lua-cjson 2.1.0 accepts non-JSON (`5.`,
-- `-.5`, raw control characters in strings), turns every number into a
-- float and cannot say where a value starts and ends, so it only unescapes
-- string tokens here.  Used by moonfm.hp (hyperparameters.json, SM_HP_*).
local cjson = require "cjson"

local M = {}

-- A private cjson instance, so our settings never leak into other users.
local json = cjson.new()
json.decode_invalid_numbers(false)

-- JSON null.  The same value as cjson.null (a NULL light userdata), so tables
-- decoded by cjson elsewhere in moonfm mix with ours.
M.null = cjson.null

-- Marker metatables on decoded arrays and objects: an empty JSON array and
-- an empty object are both an empty Lua table, but SM_HPS must print them
-- back as they were (`[]` vs `{}`).
M.array_mt = { __name = "moonfm.json.array" }
M.object_mt = { __name = "moonfm.json.object" }

-- Integers beyond the 64-bit range, when decoded with {bigint = "text"}:
-- their exact digits, so SM_HP_* prints them as Python would.
M.bigint_mt = { __name = "moonfm.json.bigint",
                __tostring = function(b) return b.text end }

-- Deepest nesting the JSON reader accepts.
M.max_depth = 200

local perr_mt = {}

local function fail(pos, msg)
  error(setmetatable({ pos = pos, msg = msg }, perr_mt), 0)
end

local function skip_ws(s, i)
  local _, e = s:find("^[ \t\n\r]*", i)
  return e + 1
end

local function char_at(s, i)
  local c = s:sub(i, i)
  if c == "" then return "end of text" end
  if c:find("^[%w%p ]$") then return "'" .. c .. "'" end
  return string.format("byte 0x%02x", c:byte())
end

-- Index of the closing quote of the string token starting at i, and
-- whether it contains escapes.
local function scan_string(s, i)
  local j = i + 1
  local esc = false
  while true do
    local k = s:find('["\\\0-\31]', j)
    if not k then fail(i, "unterminated string") end
    local c = s:byte(k)
    if c == 34 then return k, esc end
    if c ~= 92 then
      fail(k, "control character in a string (it must be escaped)")
    end
    local n = s:sub(k + 1, k + 1)
    if n == "u" then
      if not s:find("^%x%x%x%x", k + 2) then
        fail(k, "invalid \\u escape (four hex digits expected)")
      end
      j = k + 6
    elseif n ~= "" and ('"\\/bfnrt'):find(n, 1, true) then
      j = k + 2
    else
      fail(k, "invalid escape '\\" .. n .. "' in a string")
    end
    esc = true
  end
end

local function parse_string(s, i)
  local k, esc = scan_string(s, i)
  if not esc then return s:sub(i + 1, k - 1), k + 1 end
  local ok, v = pcall(json.decode, s:sub(i, k))
  if not ok then fail(i, "invalid unicode escape in a string") end
  return v, k + 1
end

local function parse_number(s, i, o)
  local j = i
  if s:byte(j) == 45 then j = j + 1 end
  local a, b = s:find("^%d+", j)
  if not a then fail(i, "invalid number") end
  if b > a and s:byte(a) == 48 then
    fail(i, "invalid number (leading zero)")
  end
  j = b + 1
  local int = true
  if s:byte(j) == 46 then
    a, b = s:find("^%d+", j + 1)
    if not a then fail(i, "invalid number (digit expected after '.')") end
    j, int = b + 1, false
  end
  local c = s:byte(j)
  if c == 101 or c == 69 then
    a, b = s:find("^[+-]?%d+", j + 1)
    if not a then fail(i, "invalid number (bad exponent)") end
    j, int = b + 1, false
  end
  local text = s:sub(i, j - 1)
  local v = tonumber(text)
  if int then
    if math.type(v) ~= "integer" then
      if o.bigint == "text" then
        v = setmetatable({ text = text }, M.bigint_mt)
      end
    end
  else
    v = v + 0.0
  end
  return v, j
end

local parse_value

-- After an element of an array or object: true and the index past its
-- closing byte `close`, or false and the index of the next element.
local function after_element(s, i, close, what)
  i = skip_ws(s, i)
  local c = s:byte(i)
  if c == close then return true, i + 1 end
  if c ~= 44 then
    fail(i, ("expected ',' or '%s' in %s, found %s"):format(
      string.char(close), what, char_at(s, i)))
  end
  return false, skip_ws(s, i + 1)
end

local function parse_array(s, i, depth, o)
  local t, n = setmetatable({}, M.array_mt), 0
  i = skip_ws(s, i + 1)
  if s:byte(i) == 93 then return t, i + 1 end
  while true do
    local v
    v, i = parse_value(s, i, depth + 1, o)
    n = n + 1
    t[n] = v
    local done
    done, i = after_element(s, i, 93, "an array")
    if done then return t, i end
  end
end

local function parse_object(s, i, depth, o)
  local t = setmetatable({}, M.object_mt)
  i = skip_ws(s, i + 1)
  if s:byte(i) == 125 then return t, i + 1 end
  while true do
    if s:byte(i) ~= 34 then
      fail(i, "expected a string key in an object, found " .. char_at(s, i))
    end
    local k, v
    k, i = parse_string(s, i)
    i = skip_ws(s, i)
    if s:byte(i) ~= 58 then
      fail(i, "expected ':' after an object key, found " .. char_at(s, i))
    end
    v, i = parse_value(s, skip_ws(s, i + 1), depth + 1, o)
    t[k] = v
    local done
    done, i = after_element(s, i, 125, "an object")
    if done then return t, i end
  end
end

function parse_value(s, i, depth, o)
  if depth > M.max_depth then fail(i, "values nested too deeply") end
  local c = s:byte(i)
  if c == 34 then return parse_string(s, i)
  elseif c == 123 then return parse_object(s, i, depth, o)
  elseif c == 91 then return parse_array(s, i, depth, o)
  elseif c == 45 or (c and c >= 48 and c <= 57) then
    return parse_number(s, i, o)
  elseif c == 116 and s:sub(i, i + 3) == "true" then return true, i + 4
  elseif c == 102 and s:sub(i, i + 4) == "false" then return false, i + 5
  elseif c == 110 and s:sub(i, i + 3) == "null" then return M.null, i + 4
  end
  fail(i, "expected a JSON value, found " .. char_at(s, i))
end

local function parse_whole(s, o)
  local v, j = parse_value(s, skip_ws(s, 1), 0, o)
  j = skip_ws(s, j)
  if j <= #s then fail(j, "unexpected " .. char_at(s, j) .. " after the value") end
  return v
end

-- pcall for the reader: parse errors become nil, msg, pos; anything else
-- is a bug and propagates.
local function protect(ok, v, ...)
  if ok then return v, ... end
  if getmetatable(v) ~= perr_mt then error(v, 0) end
  return nil, v.msg, v.pos
end

-- Line and column (both from 1; the column counts UTF-8 characters when
-- the line is valid UTF-8, bytes otherwise) of byte position pos.
local function line_col(s, pos)
  local line, start = 1, 1
  for nl in s:sub(1, pos - 1):gmatch("()\n") do
    line, start = line + 1, nl + 1
  end
  local col = utf8.len(s, start, pos - 1) or (pos - start)
  return line, col + 1
end

-- decode(text [, opts]) -> value | nil, msg, pos
-- Strict RFC 8259.  Integers become Lua integers (floats beyond the 64-bit
-- range, or bigint boxes with opts.bigint = "text"), other numbers floats,
-- null M.null; arrays and objects carry M.array_mt / M.object_mt.  msg
-- names the line and column.
function M.decode(text, opts)
  if type(text) ~= "string" then
    error("json decode: string expected, got " .. type(text), 2)
  end
  local v, msg, pos = protect(pcall(parse_whole, text, opts or {}))
  if v == nil then
    local line, col = line_col(text, pos)
    return nil, string.format("line %d, column %d: %s", line, col, msg), pos
  end
  return v
end

-- string_literal(s) -> its decoded content, when s (whole) is one JSON
-- string literal; else nil.
function M.string_literal(s)
  if s:byte(1) ~= 34 then return nil end
  local v, j = protect(pcall(parse_string, s, 1))
  if v ~= nil and j == #s + 1 then return v end
  return nil
end

-- Remove the insignificant whitespace of a valid JSON text, keeping every
-- token (numbers and strings) exactly as written.
local function compact(t)
  local out, i, n = {}, 1, #t
  while i <= n do
    local a = t:find('["\t\n\r ]', i)
    if not a then
      out[#out + 1] = t:sub(i)
      break
    end
    out[#out + 1] = t:sub(i, a - 1)
    if t:byte(a) == 34 then
      local k = scan_string(t, a)
      out[#out + 1] = t:sub(a, k)
      i = k + 1
    else
      i = a + 1
    end
  end
  return table.concat(out)
end

local function read_elements(s)
  local i = skip_ws(s, 1)
  if s:byte(i) ~= 91 then fail(i, "array expected") end
  local out = {}
  i = skip_ws(s, i + 1)
  if s:byte(i) == 93 then
    if skip_ws(s, i + 1) <= #s then fail(i + 1, "text after the array") end
    return out
  end
  while true do
    local start = i
    local v
    v, i = parse_value(s, i, 1, {})
    if type(v) == "string" then
      out[#out + 1] = { text = v, string = true }
    else
      out[#out + 1] = { text = compact(s:sub(start, i - 1)), value = v }
    end
    i = skip_ws(s, i)
    local c = s:byte(i)
    if c == 93 then
      if skip_ws(s, i + 1) <= #s then fail(i + 1, "text after the array") end
      return out
    end
    if c ~= 44 then fail(i, "',' or ']' expected") end
    i = skip_ws(s, i + 1)
  end
end

-- elements(text) -> list | nil
-- The top-level elements of a JSON array text (surrounding whitespace
-- allowed): for each, {text = its decoded string, string = true} for
-- strings, else {text = its compact source text, value = the value}.  nil
-- when text is not one valid array.
function M.elements(text)
  return (protect(pcall(read_elements, text)))
end

local function kind_of(s, i)
  local c = s:sub(i, i)
  return ({ ["["] = "an array", ['"'] = "a string", t = "a boolean",
            f = "a boolean", n = "null" })[c] or
    (c:find("^[-%d]") and "a number") or "invalid text"
end

local function read_members(s)
  local raw, dups = {}, {}
  local i = skip_ws(s, 1)
  if i > #s then fail(i, "the file is empty (write {} for no entries)") end
  if s:byte(i) ~= 123 then
    fail(i, "expected a JSON object at the top level, found " .. kind_of(s, i))
  end
  i = skip_ws(s, i + 1)
  if s:byte(i) == 125 then
    i = skip_ws(s, i + 1)
    if i <= #s then fail(i, "unexpected " .. char_at(s, i) .. " after the object") end
    return raw, dups
  end
  while true do
    if s:byte(i) ~= 34 then
      fail(i, "expected a string key, found " .. char_at(s, i))
    end
    local k, v
    k, i = parse_string(s, i)
    i = skip_ws(s, i)
    if s:byte(i) ~= 58 then
      fail(i, "expected ':' after key '" .. k .. "', found " .. char_at(s, i))
    end
    i = skip_ws(s, i + 1)
    local start = i
    v, i = parse_value(s, i, 1, {})
    if raw[k] ~= nil then dups[#dups + 1] = k end
    if type(v) == "string" then
      raw[k] = v
    else
      raw[k] = compact(s:sub(start, i - 1))
    end
    i = skip_ws(s, i)
    local c = s:byte(i)
    if c == 125 then
      i = skip_ws(s, i + 1)
      if i <= #s then
        fail(i, "unexpected " .. char_at(s, i) .. " after the object")
      end
      return raw, dups
    end
    if c ~= 44 then
      fail(i, "expected ',' or '}' after the value of '" .. k ..
           "', found " .. char_at(s, i))
    end
    i = skip_ws(s, i + 1)
  end
end

-- strip_bom(text) -> text without a leading UTF-8 byte order mark, which
-- editors on Windows write and RFC 8259 lets a reader ignore.
function M.strip_bom(text)
  if text:sub(1, 3) == "\239\187\191" then return text:sub(4) end
  return text
end

-- members(text) -> raw, duplicates | nil, msg, pos
-- The members of a JSON object text as raw strings: string values decoded,
-- every other value as its compact source text (64 stays "64", 64.0 stays
-- "64.0", [1, 2] becomes "[1,2]").  Later duplicates win (like Python).
function M.members(text)
  text = M.strip_bom(text)
  local raw, x, pos = protect(pcall(read_members, text))
  if raw == nil then
    local line, col = line_col(text, pos)
    return nil, string.format("line %d, column %d: %s", line, col, x), pos
  end
  return raw, x
end

return M
