-- Metric lines for SageMaker tuning and CloudWatch (spec rules 100-108):
--   #quality_metric: host=algo-1, epoch=3, validation ndcg@10 <score>=0.4127
--   #quality_metric: host=algo-1, validation ndcg@10 <score>=0.4127
--   #progress_metric: host=algo-1, completed 30 % of epochs
-- on stdout, at column 0, flushed at once; and the MetricDefinitions JSON
-- whose regexes pick them up.  Recipe-facing documentation: docs/metrics.md.
local errors = require "moonfm.errors"

local M = {}

-- Service limits (rules 101, 106, 107).
M.max_names = 40
M.max_name_length = 64
M.max_definitions = 40
M.max_definition_name = 255
M.max_regex = 500

local NAME = "^[A-Za-z0-9_@.:-]+$"
local kinds = { score = "<score>", loss = "<loss>" }

-- %.9g with '.' whatever the C locale: a locale's decimal separator (one
-- or more bytes) becomes '.'.
local function g9(v)
  return (string.format("%.9g", v):gsub("[^%d+%-eE]+", "."))
end
M.format_value = g9

local function is_finite(v)
  return v == v and v ~= math.huge and v ~= -math.huge
end

-- Misuse raises at the recipe's call site (level 3: through our method).
local function check_name(what, s, level)
  if type(s) ~= "string" then
    error("metrics: " .. what .. " must be a string, got " .. type(s), level)
  end
  if #s > M.max_name_length or not s:find(NAME) then
    error(string.format("metrics: %s %q is invalid: use 1 to %d characters " ..
      "from A-Z a-z 0-9 _ @ . : - (no spaces, commas or '=')", what, s,
      M.max_name_length), level)
  end
end

local function check_kind(kind, level)
  if not kinds[kind] then
    error("metrics: kind must be \"score\" (higher is better) or \"loss\" " ..
          "(lower is better), got " .. tostring(kind), level)
  end
end

local function default_warn(msg)
  local ok, log = pcall(require, "moonfm.log")
  if ok then log.warn("%s", msg) else io.stderr:write("WARNING ", msg, "\n") end
end

local Logger = {}
Logger.__index = Logger
Logger.__name = "moonfm.Metrics"

local new_opts = { host = true, leader = true, out = true, warn = true,
                   max_names = true }

-- new{host=, leader=true, out=io.stdout, warn=log.warn, max_names=40}
-- host: current_host (no spaces or commas).  leader: false on hosts other
-- than hosts[1]; they print no quality lines (rules 99, 108) but still
-- record values.  out: anything with :write and :flush.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("metrics.new: options table expected", 2) end
  for k in pairs(opts) do
    if not new_opts[k] then
      error("metrics.new: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local host = opts.host
  if type(host) ~= "string" or not host:find("^[^%s,]+$") then
    error("metrics.new: host must be a non-empty string without spaces " ..
          "or commas, got " .. tostring(host), 2)
  end
  if opts.leader ~= nil and type(opts.leader) ~= "boolean" then
    error("metrics.new: leader must be a boolean", 2)
  end
  local out = opts.out or io.stdout
  if (type(out) ~= "table" and type(out) ~= "userdata") then
    error("metrics.new: out must be a file (or have write and flush)", 2)
  end
  if opts.warn ~= nil and type(opts.warn) ~= "function" then
    error("metrics.new: warn must be a function", 2)
  end
  local max = opts.max_names or M.max_names
  if not math.tointeger(max) or max < 1 then
    error("metrics.new: max_names must be a positive integer", 2)
  end
  return setmetatable({
    host = host,
    leader = opts.leader ~= false,
    out = out,
    warn = opts.warn or default_warn,
    max_names = math.tointeger(max),
    kinds = {},     -- "split:name" -> kind
    order = {},     -- "split:name" in first-use order
    history = {},   -- every value recorded, in order
  }, Logger)
end

function Logger:_write(line)
  self.out:write(line, "\n")
  self.out:flush()
end

-- Register split:name (kind must stay the same; at most max_names).
function Logger:_register(split, name, kind)
  local key = split .. ":" .. name
  local known = self.kinds[key]
  if known then
    if known ~= kind then
      error(string.format("metrics: %s was reported as a %s before, now as " ..
        "a %s; a metric keeps one kind", key, known, kind), 4)
    end
    return key
  end
  if #self.order >= self.max_names then
    errors.raise("RecipeError", string.format("too many metrics: %s would " ..
      "be metric number %d, but SageMaker accepts at most %d metric " ..
      "definitions per job; report fewer metrics (first ones: %s, ...)", key,
      #self.order + 1, self.max_names,
      table.concat(self.order, ", ", 1, math.min(3, #self.order))))
  end
  self.kinds[key] = kind
  self.order[#self.order + 1] = key
  return key
end

function Logger:_emit(epoch, split, name, value, kind)
  check_name("split", split, 4)
  check_name("name", name, 4)
  check_kind(kind, 4)
  if type(value) ~= "number" then
    error("metrics: value must be a number, got " .. type(value), 4)
  end
  local key = self:_register(split, name, kind)
  value = value + 0.0
  if not is_finite(value) then
    self.warn(string.format("metric %s%s is %s; no metric line printed " ..
      "(tuning needs finite values)", key,
      epoch and (" at epoch " .. epoch) or "", tostring(value)))
    return nil
  end
  self.history[#self.history + 1] = { epoch = epoch, split = split,
    name = name, kind = kind, value = value }
  local line
  if epoch then
    line = string.format("#quality_metric: host=%s, epoch=%d, %s %s %s=%s",
      self.host, epoch, split, name, kinds[kind], g9(value))
  else
    line = string.format("#quality_metric: host=%s, %s %s %s=%s",
      self.host, split, name, kinds[kind], g9(value))
  end
  if not self.leader then return nil end
  self:_write(line)
  return line
end

-- logger:epoch(epoch, split, name, value, kind) -> line | nil
-- A per-epoch value (rule 104: after each epoch's evaluation).  epoch is
-- an integer >= 0.  Returns the line printed, nil when nothing was printed
-- (non-finite value, or not the leader).
function Logger:epoch(epoch, split, name, value, kind)
  local e = math.tointeger(epoch)
  if type(epoch) ~= "number" or not e or e < 0 then
    error("metrics: epoch must be an integer >= 0, got " .. tostring(epoch), 2)
  end
  local line = self:_emit(e, split, name, value, kind)
  return line -- not a tail call: error levels count this frame
end

-- logger:final(split, name, value, kind) -> line | nil
-- The final value of a metric, once at the end of training.
function Logger:final(split, name, value, kind)
  local line = self:_emit(nil, split, name, value, kind)
  return line
end

-- logger:progress(done, total) -> line
-- `#progress_metric: host=h, completed <p> % of epochs` where done is the
-- number of epochs completed (1..total).  Printed on every host.
function Logger:progress(done, total)
  if type(done) ~= "number" or type(total) ~= "number" or total <= 0
     or done < 0 or done > total then
    error("metrics: progress(done, total) needs 0 <= done <= total, " ..
          "total > 0", 2)
  end
  local pct = (string.format("%.2f", 100 * done / total)
    :gsub("[^%d]+", "."):gsub("%.?0+$", ""))
  if pct == "" then pct = "0" end
  local line = string.format("#progress_metric: host=%s, completed %s %% " ..
    "of epochs", self.host, pct)
  self:_write(line)
  return line
end

-- logger:records() -> copy of every value recorded, in order:
-- {epoch = e or nil (final), split =, name =, kind =, value =}.
function Logger:records()
  local t = {}
  for i, r in ipairs(self.history) do
    t[i] = { epoch = r.epoch, split = r.split, name = r.name, kind = r.kind,
             value = r.value }
  end
  return t
end

-- logger:summary() -> per metric, for metrics.json:
-- { ["split:name"] = {split=, name=, kind=, final = v or nil,
--                     epochs = { {epoch=, value=}, ... }} }
function Logger:summary()
  local t = {}
  for _, key in ipairs(self.order) do
    local split, name = key:match("^([^:]+):(.*)$")
    t[key] = { split = split, name = name, kind = self.kinds[key],
               epochs = {} }
  end
  for _, r in ipairs(self.history) do
    local m = t[r.split .. ":" .. r.name]
    if r.epoch then
      m.epochs[#m.epochs + 1] = { epoch = r.epoch, value = r.value }
    else
      m.final = r.value
    end
  end
  return t
end

-- logger:metrics() -> list of {split=, name=, kind=} in first-use order,
-- the input of metrics.definitions.
function Logger:metrics()
  local t = {}
  for i, key in ipairs(self.order) do
    local split, name = key:match("^([^:]+):(.*)$")
    t[i] = { split = split, name = name, kind = self.kinds[key] }
  end
  return t
end

---------------------------------------------------------------------------
-- Metric definitions (rule 107)

-- Escape every regex metacharacter, and < and > as the spec asks (a
-- backslash before them is a literal in Python, Java and PCRE regexes).
local function regex_escape(s)
  return (s:gsub("[\\%.%^%$|%?%*%+%(%)%[%]{}<>]", "\\%0"))
end
M.regex_escape = regex_escape

-- regexes(split, name, kind) -> final_regex, epoch_regex
function M.regexes(split, name, kind)
  check_name("split", split, 2)
  check_name("name", name, 2)
  check_kind(kind, 2)
  local tail = regex_escape(split) .. " " .. regex_escape(name) .. " " ..
    regex_escape(kinds[kind]) .. "=(\\S+)"
  return "#quality_metric: host=\\S+, " .. tail,
    "#quality_metric: host=\\S+, epoch=\\S+, " .. tail
end

local json_escapes = { ['"'] = '\\"', ["\\"] = "\\\\" }
local function jstr(s)
  return '"' .. s:gsub('["\\]', json_escapes) .. '"'
end

-- definitions(list [, opts]) -> JSON text
-- list: {split=, name=, kind=, per_epoch=true}... (a logger's :metrics()
-- fits).  For each metric: {"Name": "<split>:<name>", "Regex": final} and,
-- unless per_epoch is false (or opts.per_epoch is false), {"Name":
-- "<split>:<name>:epoch", "Regex": per-epoch}.  At most 40 definitions.
function M.definitions(list, opts)
  if type(list) ~= "table" then
    error("metrics.definitions: list of metrics expected", 2)
  end
  opts = opts or {}
  local seen, defs = {}, {}
  for i, m in ipairs(list) do
    if type(m) ~= "table" then
      error("metrics.definitions: entry " .. i .. " is not a table", 2)
    end
    local final_re, epoch_re = M.regexes(m.split, m.name, m.kind)
    local key = m.split .. ":" .. m.name
    if seen[key] and seen[key] ~= m.kind then
      error("metrics.definitions: " .. key .. " is listed as both a score " ..
            "and a loss", 2)
    end
    if not seen[key] then
      seen[key] = m.kind
      defs[#defs + 1] = { key, final_re }
      local per_epoch = m.per_epoch
      if per_epoch == nil then per_epoch = opts.per_epoch end
      if per_epoch ~= false then
        defs[#defs + 1] = { key .. ":epoch", epoch_re }
      end
    end
  end
  if #defs > M.max_definitions then
    error(string.format("metrics.definitions: %d definitions, but SageMaker " ..
      "accepts at most %d; set per_epoch = false on some metrics or list " ..
      "fewer", #defs, M.max_definitions), 2)
  end
  local lines = {}
  for i, d in ipairs(defs) do
    assert(#d[1] <= M.max_definition_name and #d[2] <= M.max_regex)
    lines[i] = '  {"Name": ' .. jstr(d[1]) .. ', "Regex": ' .. jstr(d[2]) ..
      '}'
  end
  if #lines == 0 then return "[]" end
  return "[\n" .. table.concat(lines, ",\n") .. "\n]"
end

---------------------------------------------------------------------------
-- Parsing (tests, sweeps)

-- parse_line(line) -> table | nil
--   quality: {type="quality", host=, epoch= (nil: final), split=, name=,
--             kind="score"|"loss", value=number}
--   progress: {type="progress", host=, percent=number}
function M.parse_line(line)
  if type(line) ~= "string" then return nil end
  line = line:gsub("\r?\n$", "")
  local host, rest = line:match("^#quality_metric: host=([^%s,]+), (.*)$")
  if host then
    local epoch
    local e, r = rest:match("^epoch=(%d+), (.*)$")
    if e then epoch, rest = math.tointeger(tonumber(e)), r end
    local split, name, kind, value =
      rest:match("^([%w_@.:-]+) ([%w_@.:-]+) <(%a+)>=(%S+)$")
    if not split or not kinds[kind] then return nil end
    local v = tonumber(value)
    if not v or not value:find("^[-+]?[%d.]+[eE]?[-+]?%d*$") then
      return nil
    end
    return { type = "quality", host = host, epoch = epoch, split = split,
             name = name, kind = kind, value = v + 0.0 }
  end
  local h, p = line:match("^#progress_metric: host=([^%s,]+), completed " ..
                          "(%S+) %% of epochs$")
  if h and tonumber(p) then
    return { type = "progress", host = h, percent = tonumber(p) + 0.0 }
  end
  return nil
end

return M
