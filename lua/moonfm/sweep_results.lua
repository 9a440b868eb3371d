-- Results of `moonfm sweep`: the median stopping rule, ranking, the live
-- leaderboard line, the final table, results.csv and results.json.  Pure
-- Lua apart from the atomic writes (tested in tests/spec/sweep_spec.lua).
--
-- A trial record (what the sweep keeps and writes):
--   { trial = i, status = "completed" | "early_stopped" | "failed" |
--     "stopped" | "pending", hyperparameters = {name = value},
--     objective = number or nil, curve = {v1, v2, ...} (per-epoch objective
--     values, index = epoch), epochs = n, seconds = s, exit_code = c,
--     reason = text or nil, stopped_at = epoch or nil, dir = path }
local M = {}

local function better(a, b, maximize)
  if maximize then return a > b end
  return a < b
end
M.better = better

local function median(xs)
  table.sort(xs)
  local n = #xs
  if n % 2 == 1 then return xs[(n + 1) // 2] end
  return (xs[n // 2] + xs[n // 2 + 1]) / 2
end
M.median = median

-- median_stop(curve, epoch, others, opts) -> stop?, median
-- The median rule of SageMaker's and Vizier's early stopping: stop a trial
-- at `epoch` when its best objective up to that epoch is worse than the
-- median of the running averages, up to the same epoch, of the completed
-- trials that reached it.  curve: the trial's per-epoch values; others:
-- the curves of completed trials; opts: maximize, min_epochs (default 3),
-- min_trials (default 3, completed trials needed before anything stops).
function M.median_stop(curve, epoch, others, opts)
  local min_epochs = opts.min_epochs or 3
  local min_trials = opts.min_trials or 3
  if epoch < min_epochs then return false end
  local best
  for e = 1, epoch do
    local v = curve[e]
    if v and (best == nil or better(v, best, opts.maximize)) then best = v end
  end
  if best == nil then return false end
  local avgs = {}
  for _, c in ipairs(others) do
    local sum, n = 0, 0
    for e = 1, epoch do
      if c[e] then sum, n = sum + c[e], n + 1 end
    end
    if c[epoch] and n > 0 then avgs[#avgs + 1] = sum / n end
  end
  if #avgs < min_trials then return false end
  local m = median(avgs)
  return better(m, best, opts.maximize), m
end

local RANKED = { completed = 1, early_stopped = 2, stopped = 3, failed = 4,
                 pending = 5 }

-- rank(trials, maximize) -> list sorted best first: trials with an
-- objective first (completed before early-stopped on ties), then the rest
-- by status, then by trial number.
function M.rank(trials, maximize)
  local t = {}
  for i, r in ipairs(trials) do t[i] = r end
  table.sort(t, function(a, b)
    local ha, hb = a.objective ~= nil, b.objective ~= nil
    if ha ~= hb then return ha end
    if ha and a.objective ~= b.objective then
      return better(a.objective, b.objective, maximize)
    end
    local ra, rb = RANKED[a.status] or 9, RANKED[b.status] or 9
    if ra ~= rb then return ra < rb end
    return a.trial < b.trial
  end)
  return t
end

-- best(trials, maximize) -> the best completed trial, or nil.  Only a
-- completed trial has a fully trained model worth keeping.
function M.best(trials, maximize)
  for _, r in ipairs(M.rank(trials, maximize)) do
    if r.status == "completed" and r.objective ~= nil then return r end
  end
  return nil
end

local function num(v)
  if v == nil then return "" end
  if math.type(v) == "integer" then return tostring(v) end
  return (string.format("%.6g", v):gsub(",", "."))
end
M.num = num

local function val(v)
  if type(v) == "number" then return num(v) end
  if v == nil then return "" end
  return tostring(v)
end

local function hp_text(r, names)
  local parts = {}
  for _, n in ipairs(names) do
    parts[#parts + 1] = n .. "=" .. val(r.hyperparameters[n])
  end
  return table.concat(parts, " ")
end

-- line(r, done, total, objective_name, leader, names) -> one leaderboard
-- line for a trial that just finished; leader is the best so far or nil.
function M.line(r, done, total, objective, leader, names)
  local head = string.format("[%d/%d] trial %d", done, total, r.trial)
  local secs = string.format("%.1f s", r.seconds or 0)
  local what
  if r.status == "completed" then
    what = string.format("completed in %s: %s=%s", secs, objective,
                         num(r.objective))
  elseif r.status == "early_stopped" then
    what = string.format("stopped early at epoch %d (median rule) in %s: "
      .. "%s=%s", r.stopped_at or 0, secs, objective, num(r.objective))
  elseif r.status == "stopped" then
    what = "stopped by the sweep's stop signal after " .. secs
  else
    what = string.format("failed after %s: %s", secs, r.reason or "?")
  end
  local best = leader and string.format("; best: trial %d = %s", leader.trial,
                                        num(leader.objective)) or ""
  return string.format("%s %s%s; %s", head, what, best, hp_text(r, names))
end

-- table_text(ranked, objective_name, names) -> the final table (text)
function M.table_text(ranked, objective, names)
  local cols = { "rank", "trial", "status", objective }
  for _, n in ipairs(names) do cols[#cols + 1] = n end
  cols[#cols + 1] = "epochs"
  cols[#cols + 1] = "seconds"
  local rows = { cols }
  for i, r in ipairs(ranked) do
    local row = { r.objective ~= nil and tostring(i) or "-", tostring(r.trial),
                  r.status, num(r.objective) }
    if row[4] == "" then row[4] = "-" end
    for _, n in ipairs(names) do row[#row + 1] = val(r.hyperparameters[n]) end
    row[#row + 1] = tostring(r.epochs or 0)
    row[#row + 1] = string.format("%.1f", r.seconds or 0)
    rows[#rows + 1] = row
  end
  local width = {}
  for _, row in ipairs(rows) do
    for j, c in ipairs(row) do width[j] = math.max(width[j] or 0, #c) end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for j, c in ipairs(row) do
      cells[j] = c .. string.rep(" ", width[j] - #c)
    end
    out[#out + 1] = (table.concat(cells, "  "):gsub("%s+$", ""))
  end
  return table.concat(out, "\n")
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- csv(ranked, names) -> text: one row per trial, best first
function M.csv(ranked, names)
  local head = { "rank", "trial", "status", "objective" }
  for _, n in ipairs(names) do head[#head + 1] = n end
  for _, c in ipairs { "epochs", "seconds", "exit_code", "reason", "dir" } do
    head[#head + 1] = c
  end
  local lines = { table.concat(head, ",") }
  for i, r in ipairs(ranked) do
    local row = { r.objective ~= nil and i or "", r.trial, r.status,
                  num(r.objective) }
    for _, n in ipairs(names) do row[#row + 1] = val(r.hyperparameters[n]) end
    row[#row + 1] = r.epochs or 0
    row[#row + 1] = string.format("%.3f", r.seconds or 0)
    row[#row + 1] = r.exit_code or ""
    row[#row + 1] = r.reason or ""
    row[#row + 1] = r.dir or ""
    for j, c in ipairs(row) do row[j] = csv_field(c) end
    lines[#lines + 1] = table.concat(row, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- json(summary, ranked) -> text.  summary: the sweep's settings and best.
function M.json(summary, ranked)
  local report = require "moonfm.report"
  local null = report.null
  local trials = report.array()
  for i, r in ipairs(ranked) do
    local curve = report.array()
    for e = 1, r.epochs or 0 do curve[e] = r.curve and r.curve[e] or null end
    trials[i] = {
      rank = r.objective ~= nil and i or null,
      trial = r.trial, status = r.status,
      objective = r.objective == nil and null or r.objective,
      hyperparameters = r.hyperparameters,
      epochs = r.epochs or 0, seconds = r.seconds or 0,
      exit_code = r.exit_code or null,
      reason = r.reason or null,
      stopped_at = r.stopped_at or null,
      dir = r.dir or null,
      curve = curve,
    }
  end
  local doc = {}
  for k, v in pairs(summary) do doc[k] = v end
  doc.trials = trials
  return report.json(doc) .. "\n"
end

return M
