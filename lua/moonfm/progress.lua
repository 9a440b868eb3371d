-- Training progress for people and for CloudWatch (spec rule 82).
--
--   local progress = require "moonfm.progress"
--   local p = progress.new { epochs = hp.epochs }
--   for e = 1, hp.epochs do
--     ... p:update(done, total)      -- inside the epoch, as often as you like
--     p:epoch(e, samples)            -- once the epoch is over
--   end
--   p:finish()
--
-- On a terminal (stderr is a tty) one line is redrawn in place with the
-- epoch, the share done, samples per second and the time left, at most a
-- few times a second.  Anywhere else (a container, a file, a pipe) nothing
-- is printed during an epoch and each epoch gives one ordinary log line,
--   ... INFO epoch 3/10: 50000 samples in 1.2 s (41667 samples/s), 8.4 s left
-- with no carriage returns or control sequences.
local core = require "moonfm.core"

local M = {}

M.defaults = {
  interval = 0.25, -- seconds between redraws on a terminal
}

local OPTS = { epochs = true, out = true, tty = true, clock = true,
               interval = true, label = true, log = true }

local P = {}
P.__index = P
P.__name = "moonfm.Progress"

-- new{epochs = n, tty = bool (default: is stderr a terminal), out = file
-- (default io.stderr; used on a terminal), log = function(fmt, ...)
-- (default moonfm.log.info; used elsewhere), clock = function() seconds
-- (default core.clock), interval = seconds, label = "epoch"}
function M.new(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then
      error("progress.new: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local n = opts.epochs
  if math.type(n) ~= "integer" or n < 1 then
    error("progress.new: epochs must be a positive integer", 2)
  end
  local tty = opts.tty
  if tty == nil then tty = core.isatty(2) end
  local clock = opts.clock or core.clock
  local now = clock()
  return setmetatable({
    epochs = n, tty = tty, out = opts.out or io.stderr,
    log = opts.log or function(fmt, ...)
      require("moonfm.log").info(fmt, ...)
    end,
    clock = clock, interval = opts.interval or M.defaults.interval,
    label = opts.label or "epoch",
    t0 = now, epoch_start = now, last_draw = -math.huge, current = 1,
    epoch_seconds = 0, epochs_done = 0, drawn = false,
  }, P)
end

local function duration(s)
  if s >= 3600 then
    return string.format("%dh%02dm", s // 3600, (s % 3600) // 60)
  elseif s >= 60 then
    return string.format("%dm%02ds", s // 60, math.floor(s % 60))
  end
  return string.format("%.1f s", s)
end
M.duration = duration

local function rate(n, s)
  if s <= 0 then return "-" end
  return string.format("%.0f", n / s)
end

-- Seconds left, from the mean epoch time so far and the part of the
-- current epoch done.
function P:_left(frac)
  local per
  if self.epochs_done > 0 then
    per = self.epoch_seconds / self.epochs_done
  elseif frac and frac > 0 then
    per = (self.clock() - self.epoch_start) / frac
  else
    return nil
  end
  local remaining = self.epochs - self.epochs_done - (frac or 0)
  return math.max(0, remaining * per)
end

-- p:update(done, total): progress inside the current epoch (samples or
-- batches done out of total).  Draws on a terminal only.
function P:update(done, total)
  if not self.tty then return end
  local now = self.clock()
  if now - self.last_draw < self.interval then return end
  self.last_draw = now
  local frac = (total and total > 0) and math.min(1, done / total) or nil
  local el = now - self.epoch_start
  local left = self:_left(frac)
  local line = string.format("%s %d/%d%s  %s samples/s%s", self.label,
    self.current, self.epochs,
    frac and string.format("  %3.0f%%", 100 * frac) or "",
    rate(done, el), left and ("  " .. duration(left) .. " left") or "")
  self.out:write("\r\27[K", line)
  self.out:flush()
  self.drawn = true
end

-- p:epoch(e, samples [, extra]) -> the line: epoch e is over, after
-- `samples` samples; extra (optional) is appended (e.g. "loss 0.31").
function P:epoch(e, samples, extra)
  local now = self.clock()
  local el = now - self.epoch_start
  self.epoch_seconds = self.epoch_seconds + el
  self.epochs_done = self.epochs_done + 1
  self.current = e + 1
  self.epoch_start = now
  local left = self:_left(nil) or 0
  local line = string.format("%s %d/%d: %s samples in %s (%s samples/s)%s%s",
    self.label, e, self.epochs, samples and tostring(samples) or "?",
    duration(el), samples and rate(samples, el) or "-",
    e < self.epochs and (", " .. duration(left) .. " left") or "",
    extra and (", " .. extra) or "")
  if self.tty then
    self.out:write(self.drawn and "\r\27[K" or "", line, "\n")
    self.out:flush()
    self.drawn = false
  else
    self.log("%s", line)
  end
  return line
end

-- p:finish(): clears a half-drawn line on a terminal.
function P:finish()
  if self.tty and self.drawn then
    self.out:write("\r\27[K")
    self.out:flush()
    self.drawn = false
  end
end

return M
