-- Checkpoints (spec rules 92-97): model files with the checkpoint flag in
-- one folder, named checkpoint-<epoch>[-<step>].moonfm[.<host>], written
-- atomically, the newest N kept.  At start, leftover temporaries are
-- deleted and the newest valid checkpoint is offered for resuming; a
-- checkpoint that fails its checks is skipped with a warning.
--
--   local ck = assert(checkpoint.new { dir = env.checkpoint_dir })
--   local model, info = ck:resume()           -- nil when there is none
--   local start = info and info.epoch or 0
--   for epoch = start + 1, epochs do
--     ...train one epoch...
--     if ck:due(epoch) then assert(ck:save(epoch, model, header, idmaps,
--                                          { extras = { rng } })) end
--   end
local lfs = require "lfs"
local core = require "moonfm.core"
local modelfile = require "moonfm.modelfile"

local M = {}

M.PREFIX = "checkpoint-"
M.EXT = ".moonfm"
M.TMP_PREFIX = ".moonfm-tmp-"

-- Defaults of new(opts).
M.defaults = {
  keep = 2,          -- newest N kept (rule 96)
  every = 1,         -- checkpoint every N epochs (rule 97); 0 = never
  interval = nil,    -- seconds: also due when this much time has passed
  enabled = true,    -- false: save does nothing, resume finds nothing
  host = nil,        -- multi-host: names end in ".<host>" (rule 95)
}

local function logger()
  local ok, l = pcall(require, "moonfm.log")
  if ok then return l end
  local function w(fmt, ...) io.stderr:write(string.format(fmt, ...), "\n") end
  return { info = w, warn = w, debug = function() end }
end

-- name(epoch [, step [, host]]) -> "checkpoint-000012.moonfm" ...
-- epoch is the number of completed epochs; step, for a checkpoint taken
-- inside the next epoch, the number of steps done in it.
function M.name(epoch, step, host)
  if math.type(epoch) ~= "integer" or epoch < 0 then
    error("checkpoint: epoch must be an integer >= 0", 2)
  end
  local n = string.format("%s%06d", M.PREFIX, epoch)
  if step and step > 0 then
    if math.type(step) ~= "integer" then
      error("checkpoint: step must be an integer", 2)
    end
    n = n .. string.format("-%09d", step)
  end
  n = n .. M.EXT
  if host then n = n .. "." .. host end
  return n
end

-- parse(filename [, host]) -> epoch, step | nil: only names this module
-- writes, for this host (or without a host suffix when host is nil).
function M.parse(name, host)
  local rest = name
  if host then
    local suffix = "." .. host
    if rest:sub(-#suffix) ~= suffix then return nil end
    rest = rest:sub(1, -#suffix - 1)
  end
  local e, s = rest:match("^checkpoint%-(%d+)%-(%d+)%.moonfm$")
  if not e then
    e = rest:match("^checkpoint%-(%d+)%.moonfm$")
    s = "0"
  end
  if not e or #e > 15 or #s > 15 then return nil end
  return math.tointeger(tonumber(e)), math.tointeger(tonumber(s))
end

-- mkdir -p
local function mkdirs(dir)
  if lfs.attributes(dir, "mode") == "directory" then return true end
  local path = dir:sub(1, 1) == "/" and "" or "."
  for part in dir:gmatch("[^/]+") do
    path = path .. "/" .. part
    if lfs.attributes(path, "mode") == nil then
      local ok, msg = lfs.mkdir(path)
      if not ok and lfs.attributes(path, "mode") ~= "directory" then
        return nil, "cannot create " .. path .. ": " .. tostring(msg)
      end
    end
  end
  if lfs.attributes(dir, "mode") ~= "directory" then
    return nil, dir .. " is not a directory"
  end
  return true
end

-- cleanup_temporaries(dir) -> count | nil, msg: deletes every leftover
-- temporary (".moonfm-tmp-*") in dir (rule 93).
function M.cleanup_temporaries(dir)
  if lfs.attributes(dir, "mode") ~= "directory" then return 0 end
  local n = 0
  local ok, err = pcall(function()
    for f in lfs.dir(dir) do
      if f:sub(1, #M.TMP_PREFIX) == M.TMP_PREFIX then
        local removed, msg = os.remove(dir .. "/" .. f)
        if not removed then error(msg, 0) end
        n = n + 1
      end
    end
  end)
  if not ok then return nil, "checkpoint: " .. tostring(err) end
  return n
end

local Checkpoints = {}
Checkpoints.__index = Checkpoints

-- new(opts) -> checkpoints | nil, msg
--   opts.dir (required): LocalPath of checkpointconfig.json, or
--   B/checkpoints (rule 92); created when absent.  Other keys: M.defaults,
--   plus clock (a function returning seconds) and log (info/warn/debug
--   functions, default moonfm.log), both for tests.
--   Leftover temporaries in dir are deleted here.
function M.new(opts)
  if type(opts) ~= "table" then error("checkpoint.new: a table expected", 2) end
  for k in pairs(opts) do
    if k ~= "dir" and M.defaults[k] == nil and k ~= "interval" and
       k ~= "host" and k ~= "clock" and k ~= "log" then
      error("checkpoint.new: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  if type(opts.dir) ~= "string" or opts.dir == "" then
    error("checkpoint.new: option 'dir' (a path) is required", 2)
  end
  local self = setmetatable({}, Checkpoints)
  self.dir = opts.dir:gsub("/+$", "")
  if self.dir == "" then self.dir = "/" end
  self.keep = opts.keep or M.defaults.keep
  self.every = opts.every or M.defaults.every
  self.interval = opts.interval
  self.host = opts.host
  self.enabled = opts.enabled ~= false
  self.clock = opts.clock or core.clock
  if math.type(self.keep) ~= "integer" or self.keep < 1 then
    error("checkpoint.new: 'keep' must be an integer >= 1", 2)
  end
  if math.type(self.every) ~= "integer" or self.every < 0 then
    error("checkpoint.new: 'every' must be an integer >= 0", 2)
  end
  if self.interval ~= nil and (type(self.interval) ~= "number" or
                               self.interval <= 0) then
    error("checkpoint.new: 'interval' must be a number of seconds > 0", 2)
  end
  if self.host ~= nil and (type(self.host) ~= "string" or
                           not self.host:match("^[%w%._%-]+$")) then
    error("checkpoint.new: 'host' must be a plain host name", 2)
  end
  self.log = opts.log or logger()
  self.last = self.clock()
  if self.enabled then
    local ok, msg = mkdirs(self.dir)
    if not ok then return nil, "checkpoint: " .. msg end
    local n, err = M.cleanup_temporaries(self.dir)
    if not n then return nil, err end
    if n > 0 then
      self.log.info("checkpoint: deleted %d leftover temporary file(s) in %s",
                    n, self.dir)
    end
  end
  return self
end

-- list() -> { {name, path, epoch, step}, ... } newest first.
function Checkpoints:list()
  local out = {}
  if lfs.attributes(self.dir, "mode") ~= "directory" then return out end
  for f in lfs.dir(self.dir) do
    local e, s = M.parse(f, self.host)
    if e and lfs.attributes(self.dir .. "/" .. f, "mode") == "file" then
      out[#out + 1] = { name = f, path = self.dir .. "/" .. f, epoch = e,
                        step = s }
    end
  end
  table.sort(out, function(a, b)
    if a.epoch ~= b.epoch then return a.epoch > b.epoch end
    if a.step ~= b.step then return a.step > b.step end
    return a.name > b.name
  end)
  return out
end

-- latest() -> {name, path, epoch, step, summary} | nil: the newest
-- checkpoint that passes every check; the others are skipped with a
-- warning (rule 94).
function Checkpoints:latest()
  if not self.enabled then return nil end
  for _, c in ipairs(self:list()) do
    local s, msg = modelfile.inspect(c.path)
    if s then
      c.summary = s
      return c
    end
    self.log.warn("checkpoint: skipping %s: %s", c.path, msg)
  end
  return nil
end

-- resume([opts]) -> model, info | nil: loads the newest valid checkpoint
-- (opts as for modelfile.load); info gains epoch and step.  A checkpoint
-- that cannot be loaded is skipped with a warning, falling back to older
-- ones, then to nil (a fresh start).
function Checkpoints:resume(opts)
  if not self.enabled then return nil end
  for _, c in ipairs(self:list()) do
    local model, info = modelfile.load(c.path, opts)
    -- save writes the epoch and step into both the name and the header;
    -- a file where they differ was not written by it (a negative epoch
    -- in the header failed the job later on).
    if model then
      local he, hs = info.header.epoch, info.header.step
      if (he ~= nil and math.tointeger(he) ~= c.epoch) or
         (hs ~= nil and math.tointeger(hs) ~= c.step) then
        model, info = nil, string.format("its header says epoch %s, step %s, "
          .. "its name epoch %d, step %d", tostring(he), tostring(hs),
          c.epoch, c.step)
      end
    end
    if model then
      info.epoch = math.tointeger(info.header.epoch) or c.epoch
      info.step = math.tointeger(info.header.step) or c.step
      self.log.info("checkpoint: resuming from %s (epoch %d%s)", c.path,
                    info.epoch, info.step > 0 and
                    string.format(", step %d", info.step) or "")
      return model, info
    end
    self.log.warn("checkpoint: skipping %s: %s", c.path, info)
  end
  return nil
end

-- due(epoch) -> boolean: whether the end of this epoch (completed
-- epochs) calls for a checkpoint: every `every` epochs, or when
-- `interval` seconds have passed since the last one.
function Checkpoints:due(epoch)
  if not self.enabled then return false end
  if self.every > 0 and epoch % self.every == 0 then return true end
  return self:due_time()
end

-- due_time() -> boolean: the time interval alone (for checkpoints inside
-- an epoch).
function Checkpoints:due_time()
  return self.enabled and self.interval ~= nil and
         self.clock() - self.last >= self.interval
end

-- save(epoch, model, header, idmaps [, opts]) -> path | nil, msg
-- Writes the checkpoint atomically (the epoch, and opts.step, go into the
-- header and the name), then deletes the oldest beyond `keep`.  opts as
-- for modelfile.save (extras) plus step.  On failure the previous
-- checkpoints are intact.
function Checkpoints:save(epoch, model, header, idmaps, opts)
  if not self.enabled then return nil, "checkpoint: disabled" end
  opts = opts or {}
  local step = opts.step or 0
  local name = M.name(epoch, step, self.host)
  local path = self.dir .. "/" .. name
  local h = {}
  for k, v in pairs(header or {}) do h[k] = v end
  h.epoch, h.step = epoch, step
  local ok, msg = modelfile.save(path, model, h, idmaps,
                                 { extras = opts.extras, checkpoint = true })
  if not ok then return nil, "checkpoint: " .. msg end
  self.last = self.clock()
  self.log.info("checkpoint: saved %s", path)
  self:prune()
  return path
end

-- prune() -> removed paths: keeps the newest `keep`.
function Checkpoints:prune()
  local removed = {}
  for i, c in ipairs(self:list()) do
    if i > self.keep then
      local ok, msg = os.remove(c.path)
      if ok then
        removed[#removed + 1] = c.path
      else
        self.log.warn("checkpoint: cannot delete %s: %s", c.path, msg)
      end
    end
  end
  return removed
end

return M
