-- `moonfm sweep FILE`: hyperparameter sweeps from a Lua sweep file.  Each
-- trial is its own `moonfm train` process on its own fake /opt/ml tree
-- (<out>/trials/NNN), at most `parallel` at once; per-epoch metric lines
-- are read from the trials' stdout logs as they run, for median-rule early
-- stopping and the live leaderboard.  Results: <out>/results.csv,
-- results.json, report.html, and the best trial's model in <out>/best.
-- User documentation: docs/tuning.md.
local lfs = require "lfs"
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local log = require "moonfm.log"
local localtree = require "moonfm.localtree"
local space = require "moonfm.sweep_space"
local results = require "moonfm.sweep_results"

local M = {}

-- Defaults (the sweep file can set all but the last two).
M.defaults = {
  seed = 1,              -- random draws come from (seed, trial number)
  parallel = nil,        -- nil: the number of cores
  min_epochs = 3,        -- median rule: never stop before this epoch
  min_trials = 3,        -- median rule: completed trials needed first
  keep = "all",          -- "all" trial trees, or "best": drop other models
  poll = 0.1,            -- seconds between looks at the running trials
  stop_grace = 60,       -- seconds trials get after SIGTERM, then SIGKILL
}

local KEYS = { recipe = true, channels = true, fixed = true, space = true,
               trials = true, seed = true, parallel = true, objective = true,
               early_stopping = true, out = true, name = true, keep = true }

local function usage(fmt, ...) errors.usage(string.format(fmt, ...)) end

local function is_file(p) return lfs.attributes(p, "mode") == "file" end
local function is_dir(p) return lfs.attributes(p, "mode") == "directory" end

local function abspath(p, base)
  if p:sub(1, 1) == "/" then return p end
  return (base or lfs.currentdir()) .. "/" .. p
end

local function posint(v, what, path)
  if math.type(v) ~= "integer" or v < 1 then
    usage("sweep file %s: %s must be a positive integer, got %s", path, what,
          tostring(v))
  end
  return v
end

-- load(path, host) -> config: the sweep file read and checked, paths
-- resolved.  Raises UsageError with the file's name on any problem.
function M.load(path, host)
  host = host or {}
  if not is_file(path) and host.recipe_dir and not path:find("/") and
     is_file(host.recipe_dir .. "/" .. path) then
    path = host.recipe_dir .. "/" .. path -- a bundled sweep file
  end
  if not is_file(path) then usage("sweep file %s not found", path) end
  local file = abspath(path)
  local dir = file:match("^(.*)/[^/]*$")
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(file, "t", env)
  if not chunk then usage("sweep file %s", err) end
  local ok, t = pcall(chunk)
  if not ok then usage("sweep file %s: %s", path, tostring(t)) end
  if type(t) ~= "table" then
    usage("sweep file %s must return a table (return { recipe = ..., "
          .. "space = ..., objective = ... })", path)
  end
  for k in pairs(t) do
    if not KEYS[k] then
      usage("sweep file %s: unknown key '%s' (known: channels, "
        .. "early_stopping, fixed, keep, name, objective, out, parallel, "
        .. "recipe, seed, space, trials)", path, tostring(k))
    end
  end
  local c = { file = file, dir = dir }
  -- recipe: next to the sweep file, or a bundled recipe.
  if type(t.recipe) ~= "string" then
    usage("sweep file %s: recipe must name a recipe (a path or a bundled "
          .. "recipe such as train.lua)", path)
  end
  local name = t.recipe
  local cands = { abspath(name, dir) }
  if name:sub(1, 1) ~= "/" and host.recipe_dir then
    cands[2] = host.recipe_dir .. "/" .. name
    if not name:match("%.lua$") then cands[3] = cands[2] .. ".lua" end
  end
  for _, p in ipairs(cands) do
    if is_file(p) then c.recipe = p break end
  end
  if not c.recipe then
    usage("sweep file %s: recipe %s not found (looked in %s)", path, name,
          table.concat(cands, ", "))
  end
  -- channels: name -> path relative to the sweep file; default: the
  -- bundled sample data.
  c.channels = {}
  if t.channels ~= nil then
    if type(t.channels) ~= "table" then
      usage("sweep file %s: channels must map names to paths", path)
    end
    for n, p in pairs(t.channels) do
      if type(n) ~= "string" or type(p) ~= "string" then
        usage("sweep file %s: channels must map names to paths", path)
      end
      local ap = abspath(p, dir)
      if not lfs.attributes(ap) then
        usage("sweep file %s: channel %s: %s does not exist", path, n, ap)
      end
      c.channels[#c.channels + 1] = { name = n, path = ap, mode = "File" }
    end
  elseif host.data_dir then
    for _, n in ipairs { "train", "test", "item_features" } do
      local p = host.data_dir .. "/sample/" .. n .. ".csv"
      if is_file(p) then
        c.channels[#c.channels + 1] = { name = n, path = p, mode = "File" }
      end
    end
  end
  table.sort(c.channels, function(a, b) return a.name < b.name end)
  -- fixed and space
  c.fixed = t.fixed or {}
  if type(c.fixed) ~= "table" then
    usage("sweep file %s: fixed must be a table of hyperparameters", path)
  end
  for k, v in pairs(c.fixed) do
    local ty = type(v)
    if type(k) ~= "string" or (ty ~= "string" and ty ~= "number" and
                               ty ~= "boolean") then
      usage("sweep file %s: fixed.%s must be a number, string or boolean",
            path, tostring(k))
    end
    if not space.finite(v) then
      usage("sweep file %s: fixed.%s = %s is not a finite number", path, k,
            tostring(v))
    end
  end
  if type(t.space) ~= "table" or next(t.space) == nil then
    usage("sweep file %s: space must name at least one hyperparameter, as "
          .. "in space = { learning_rate = { \"log_uniform\", 0.01, 0.3 } }",
          path)
  end
  local okc, info = pcall(space.info, t.space)
  if not okc then usage("sweep file %s: %s", path, info) end
  for _, n in ipairs(info.names) do
    if c.fixed[n] ~= nil then
      usage("sweep file %s: %s is both fixed and in the space", path, n)
    end
  end
  c.space, c.names = t.space, info.names
  c.log = {}
  for _, n in ipairs(info.names) do
    if type(t.space[n]) == "table" and t.space[n][1] == "log_uniform" then
      c.log[n] = true
    end
  end
  c.seed = t.seed == nil and M.defaults.seed or t.seed
  if math.type(c.seed) ~= "integer" then
    usage("sweep file %s: seed must be an integer", path)
  end
  if t.trials ~= nil then c.trials = posint(t.trials, "trials", path) end
  if t.parallel ~= nil then c.parallel = posint(t.parallel, "parallel", path) end
  -- objective
  local o = t.objective
  if type(o) ~= "table" or type(o.metric) ~= "string" then
    usage("sweep file %s: objective must be { metric = \"split:name\", "
          .. "maximize = true|false }, as in { metric = "
          .. "\"test:precision@10\", maximize = true }", path)
  end
  local split, mname = o.metric:match("^([%w_.@-]+):([%w_@.:-]+)$")
  if not split then
    usage("sweep file %s: objective.metric %q must read split:name, as in "
          .. "test:precision@10 (see moonfm metric-definitions)", path,
          o.metric)
  end
  if o.maximize ~= nil and type(o.maximize) ~= "boolean" then
    usage("sweep file %s: objective.maximize must be true or false", path)
  end
  for k in pairs(o) do
    if k ~= "metric" and k ~= "maximize" then
      usage("sweep file %s: objective: unknown key '%s'", path, tostring(k))
    end
  end
  c.objective = { metric = o.metric, split = split, name = mname,
                  maximize = o.maximize }
  -- early stopping
  local es = t.early_stopping
  if es ~= nil and es ~= false then
    if type(es) ~= "table" or (es.rule or "median") ~= "median" then
      usage("sweep file %s: early_stopping must be { rule = \"median\", "
            .. "min_epochs = 3, min_trials = 3 } or false", path)
    end
    for k in pairs(es) do
      if k ~= "rule" and k ~= "min_epochs" and k ~= "min_trials" then
        usage("sweep file %s: early_stopping: unknown key '%s'", path,
              tostring(k))
      end
    end
    c.early_stopping = {
      min_epochs = es.min_epochs and posint(es.min_epochs,
        "early_stopping.min_epochs", path) or M.defaults.min_epochs,
      min_trials = es.min_trials and posint(es.min_trials,
        "early_stopping.min_trials", path) or M.defaults.min_trials,
    }
  end
  if t.out ~= nil and type(t.out) ~= "string" then
    usage("sweep file %s: out must be a folder path", path)
  end
  c.out = t.out
  c.name = t.name or file:match("([^/]+)$"):gsub("%.lua$", "")
  c.keep = t.keep or M.defaults.keep
  if c.keep ~= "all" and c.keep ~= "best" then
    usage("sweep file %s: keep must be \"all\" or \"best\"", path)
  end
  return c
end

-- plan(config) -> list of {trial = i, hyperparameters = {...}} (the
-- space's values only) | raises UsageError.
function M.plan(c)
  local ok, list = pcall(space.trials, c.space, { trials = c.trials,
                                                  seed = c.seed })
  if not ok then usage("sweep file %s: %s", c.file, list) end
  return list
end

---------------------------------------------------------------------------
-- Files

local function read_all(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function copy_tree(src, dst)
  assert(require("moonfm.env").mkdir_p(dst))
  for name in lfs.dir(src) do
    if name ~= "." and name ~= ".." then
      local s, d = src .. "/" .. name, dst .. "/" .. name
      local mode = lfs.attributes(s, "mode")
      if mode == "directory" then
        copy_tree(s, d)
      elseif mode == "file" then
        local data = read_all(s)
        if data then assert(core.write_atomic(d, data)) end
      end
    end
  end
end

local function remove_tree(p)
  if lfs.symlinkattributes(p, "mode") == "directory" then
    for name in lfs.dir(p) do
      if name ~= "." and name ~= ".." then remove_tree(p .. "/" .. name) end
    end
    lfs.rmdir(p)
  else
    os.remove(p)
  end
end

local function first_line(s)
  return s and s:match("^%s*([^\n]*)")
end

local function last_line(s)
  if not s then return nil end
  local last
  for l in s:gmatch("[^\n]+") do
    if l:match("%S") then last = l end
  end
  return last
end

---------------------------------------------------------------------------
-- Trials

local function strings(hps)
  local t = {}
  for k, v in pairs(hps) do t[k] = space.format_value(v) end
  return t
end

-- Reads what the trial printed since last time and folds in its metric
-- lines for the objective; returns the list of new epochs seen.
local function tail(r, c)
  local metrics = require "moonfm.metrics"
  local f = io.open(r.stdout, "rb")
  if not f then return {} end
  f:seek("set", r.offset)
  local data = f:read("a") or ""
  f:close()
  local new = {}
  local start = 1
  while true do
    local nl = data:find("\n", start, true)
    if not nl then break end
    local m = metrics.parse_line(data:sub(start, nl - 1))
    if m and m.type == "quality" and m.split == c.objective.split and
       m.name == c.objective.name then
      if c.objective.maximize == nil then
        c.objective.maximize = m.kind == "score"
      end
      if m.epoch then
        r.curve[m.epoch] = m.value
        if m.epoch > (r.epochs or 0) then r.epochs = m.epoch end
        new[#new + 1] = m.epoch
      else
        r.final = m.value
      end
    end
    start = nl + 1
  end
  r.offset = r.offset + start - 1
  return new
end

local function completed_curves(trials)
  local t = {}
  for _, r in ipairs(trials) do
    if r.status == "completed" then t[#t + 1] = r.curve end
  end
  return t
end

local function describe_exit(code, how, sig)
  if how == "signal" then return "killed by signal " .. tostring(sig) end
  return "exit status " .. tostring(code)
end

-- Settles a trial whose process ended.
local function finish(r, c, code, how, sig, stopping)
  tail(r, c)
  r.pid = nil
  r.exit_code = code
  r.seconds = core.clock() - r.started
  local last = r.curve[r.epochs or 0]
  if r.signaled == "early" then
    r.status = "early_stopped"
    r.objective = r.final or last
  elseif stopping then
    r.status = "stopped"
    r.objective = nil
  elseif code == 0 and how == "exit" then
    r.objective = r.final or last
    if r.objective == nil then
      r.status = "failed"
      r.reason = string.format("the trial finished but never reported %s "
        .. "(check objective.metric against `moonfm metric-definitions`)",
        c.objective.metric)
    else
      r.status = "completed"
    end
  else
    r.status = "failed"
    local why = first_line(read_all(r.dir .. "/output/failure"))
    if not why or why == "" then
      why = describe_exit(code, how, sig)
      local l = last_line(read_all(r.stderr))
      if l then why = why .. ": " .. l end
    end
    r.reason = why
  end
end

local function start(r, c, exe)
  local tree = r.dir
  localtree.create(tree, { hyperparameters = strings(r.all_hps),
                           channels = c.channels })
  r.stdout = tree .. "/output/data/stdout.log"
  r.stderr = tree .. "/output/data/stderr.log"
  r.offset = 0
  r.started = core.clock()
  local pid, err = core.spawn {
    argv = { exe, "train" },
    env = { SAGEMAKER_BASE_DIR = tree, SAGEMAKER_PROGRAM = c.recipe },
    stdout = r.stdout, stderr = r.stderr,
  }
  if not pid then
    r.status, r.reason, r.seconds = "failed", err, 0
    return false
  end
  r.pid = pid
  r.status = "running"
  log.info("trial %d started (pid %d): %s", r.trial, pid,
           results.line({ trial = r.trial, hyperparameters = r.hyperparameters,
                          status = "x" }, 0, 0, "", nil, c.names)
             :match("; (.*)$") or "")
  return true
end

---------------------------------------------------------------------------
-- The sweep

local function summary(c, trials, best, best_dir, stopped)
  return {
    sweep = {
      file = c.file, name = c.name, recipe = c.recipe, seed = c.seed,
      trials = #trials, parallel = c.parallel, fixed = c.fixed,
      objective = { metric = c.objective.metric,
                    maximize = c.objective.maximize ~= false },
      early_stopping = c.early_stopping or false,
      stopped = stopped or false,
    },
    best = best and { trial = best.trial, objective = best.objective,
                      hyperparameters = best.hyperparameters,
                      model_dir = best_dir and best_dir .. "/model",
                      dir = best.dir } or nil,
  }
end

local function write_results(c, trials, best, best_dir, stopped)
  local maximize = c.objective.maximize ~= false
  local ranked = results.rank(trials, maximize)
  local ok1, e1 = core.write_atomic(c.out_dir .. "/results.csv",
                                    results.csv(ranked, c.names))
  local ok2, e2 = core.write_atomic(c.out_dir .. "/results.json",
    results.json(summary(c, trials, best, best_dir, stopped), ranked))
  if not ok1 then log.warn("%s", e1) end
  if not ok2 then log.warn("%s", e2) end
  return ranked
end

-- run(config, host) -> exit status
function M.run(c, host)
  local exe = host.exe or (arg and arg[0])
  c.parallel = c.parallel or core.cpu_count()
  local out = c.out_dir
  local ok, err = require("moonfm.env").mkdir_p(out .. "/trials")
  if not ok then errors.config(err) end
  local plan = M.plan(c)
  local trials = {}
  for i, p in ipairs(plan) do
    local all = {}
    for k, v in pairs(c.fixed) do all[k] = v end
    for k, v in pairs(p) do all[k] = v end
    trials[i] = { trial = i, hyperparameters = p, all_hps = all,
                  status = "pending", curve = {}, epochs = 0,
                  dir = string.format("%s/trials/%03d", out, i) }
  end
  log.info("sweep %s: %d trials of %s, %d at a time, objective %s%s; "
    .. "results in %s", c.name, #trials, c.recipe, c.parallel,
    c.objective.metric, c.early_stopping and ", median-rule early stopping"
    or "", out)

  local nxt, running, done = 1, {}, 0
  local leader
  local stopping = false
  local function settle(r)
    done = done + 1
    local maximize = c.objective.maximize ~= false
    if r.status == "completed" and (not leader or
       results.better(r.objective, leader.objective, maximize)) then
      leader = r
    end
    io.stdout:write(results.line(r, done, #trials, c.objective.metric, leader,
                                 c.names), "\n")
    io.stdout:flush()
    write_results(c, trials, nil, nil, false)
  end

  while true do
    if core.stop_requested() and not stopping then
      stopping = true
      log.warn("stop requested: forwarding SIGTERM to %d running trial%s",
               #running, #running == 1 and "" or "s")
      for _, r in ipairs(running) do core.kill(r.pid, "TERM") end
      break
    end
    while #running < c.parallel and nxt <= #trials do
      local r = trials[nxt]
      nxt = nxt + 1
      if start(r, c, exe) then
        running[#running + 1] = r
      else
        settle(r)
      end
    end
    if #running == 0 then break end
    local still = {}
    for _, r in ipairs(running) do
      local epochs = tail(r, c)
      if c.early_stopping and not r.signaled then
        local others = completed_curves(trials)
        for _, e in ipairs(epochs) do
          local stop, med = results.median_stop(r.curve, e, others, {
            maximize = c.objective.maximize ~= false,
            min_epochs = c.early_stopping.min_epochs,
            min_trials = c.early_stopping.min_trials })
          if stop then
            r.signaled, r.stopped_at = "early", e
            log.info("trial %d: best %s up to epoch %d is worse than the "
              .. "median %s of completed trials; stopping it", r.trial,
              c.objective.metric, e, results.num(med))
            core.kill(r.pid, "TERM")
            break
          end
        end
      end
      local code, how, sig = core.wait(r.pid)
      if code then
        finish(r, c, code, how, sig, false)
        settle(r)
      else
        still[#still + 1] = r
      end
    end
    running = still
    if #running > 0 or nxt <= #trials then core.sleep(M.defaults.poll) end
  end

  if stopping then
    -- Rule 77: wait for every child, SIGKILL the ones past the grace.
    local deadline = core.clock() + M.defaults.stop_grace
    while #running > 0 do
      local still = {}
      for _, r in ipairs(running) do
        local code, how, sig = core.wait(r.pid, 0.05)
        if code then
          finish(r, c, code, how, sig, true)
          settle(r)
        else
          still[#still + 1] = r
        end
      end
      running = still
      if #running > 0 and core.clock() > deadline then
        for _, r in ipairs(running) do
          log.warn("trial %d did not stop within %d s; killing it", r.trial,
                   M.defaults.stop_grace)
          core.kill(r.pid, "KILL")
        end
        deadline = math.huge
      end
    end
    for i = nxt, #trials do trials[i].status = "pending" end
  end
  core.reap()

  local maximize = c.objective.maximize ~= false
  local best = results.best(trials, maximize)
  local best_dir
  if best then
    best_dir = out .. "/best"
    remove_tree(best_dir)
    copy_tree(best.dir .. "/model", best_dir .. "/model")
    local cfg = read_all(best.dir .. "/input/config/hyperparameters.json")
    if cfg then core.write_atomic(best_dir .. "/hyperparameters.json", cfg) end
    if c.keep == "best" then
      for _, r in ipairs(trials) do
        if r ~= best and r.dir and is_dir(r.dir .. "/model") then
          remove_tree(r.dir .. "/model")
        end
      end
    end
  end
  local ranked = write_results(c, trials, best, best_dir, stopping)
  local report = require "moonfm.report"
  local rok, rerr = report.write_sweep(out, {
    title = "moonfm sweep " .. c.name, objective = {
      metric = c.objective.metric, maximize = maximize },
    names = c.names, log = c.log, trials = ranked, best = best,
    best_dir = best_dir and best_dir .. "/model" })
  if not rok then log.warn("report: %s", rerr) end

  io.stdout:write("\n", results.table_text(ranked, c.objective.metric,
                                           c.names), "\n\n")
  if best then
    io.stdout:write(string.format("best: trial %d, %s = %s; model in %s\n",
      best.trial, c.objective.metric, results.num(best.objective),
      best_dir .. "/model"))
  else
    io.stdout:write("no trial completed; see the reasons above and the "
                    .. "trials' output/data/stderr.log\n")
  end
  io.stdout:write(string.format("results: %s/results.csv, %s/results.json, "
    .. "%s/report.html\n", out, out, out))
  io.stdout:flush()
  if stopping then
    log.warn("sweep stopped before the end: %d of %d trials finished", done,
             #trials)
    return 143
  end
  return best and 0 or 1
end

local function parse_args(args)
  local o = {}
  local i = 2
  while i <= #args do
    local a = args[i]
    local flag, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    local function value()
      if inline then return inline end
      i = i + 1
      if args[i] == nil then usage("%s needs a value", flag) end
      return args[i]
    end
    if flag == "--out" then o.out = value()
    elseif flag == "--parallel" or flag == "--trials" or flag == "--seed" then
      local v = value()
      local n = math.tointeger(tonumber(v))
      if not n or (flag ~= "--seed" and n < 1) then
        usage("%s expects a positive integer, got '%s'", flag, v)
      end
      o[flag:sub(3)] = n
    elseif a:match("^%-") then
      usage("sweep: unknown option %s (--out DIR, --parallel N, --trials N, "
            .. "--seed N)", a)
    elseif o.file then
      usage("sweep: unexpected argument '%s' (one sweep FILE)", a)
    else
      o.file = a
    end
    i = i + 1
  end
  if not o.file then usage("sweep needs a sweep FILE (see docs/tuning.md)") end
  return o
end

-- main(args, host) -> exit status.  args[1] is "sweep".
-- Checks the sweep against what the recipe declares, by running its
-- preamble with trial 1's hyperparameters (as metric-definitions does):
-- an objective it never reports would run every trial to the end and
-- fail it then, and a space key it does not declare would run the same
-- trial over and over.  A preamble that fails is left to the trials.
function M.check_recipe(c, first)
  local all = {}
  for k, v in pairs(c.fixed) do all[k] = v end
  for k, v in pairs(first or {}) do all[k] = v end
  local j = require("moonfm.declare").collect(c.recipe, strings(all), true)
  if not j then return end
  local unknown = {}
  for _, k in ipairs(j.unknown_hps or {}) do unknown[k] = true end
  for k in pairs(c.space) do
    if unknown[k] then
      usage("sweep file %s: space.%s is not a hyperparameter %s declares, so "
            .. "every trial would run with the same value; check the name",
            c.file, k, c.recipe)
    end
  end
  for k in pairs(c.fixed) do
    if unknown[k] then
      log.warn("sweep file %s: fixed.%s is not a hyperparameter %s declares; "
               .. "the trials ignore it", c.file, k, c.recipe)
    end
  end
  if #j.declared_metrics == 0 then return end
  local names = {}
  for _, m in ipairs(j.declared_metrics) do
    local n = m.split .. ":" .. m.name
    if n == c.objective.metric then return end
    names[#names + 1] = n
  end
  local hint = ""
  local bare = c.objective.metric:match("^(.*):epoch$")
  if bare then
    hint = string.format(" (the :epoch definitions are the per-epoch lines of "
                         .. "the same metric; name it %s)", bare)
  end
  usage("sweep file %s: objective.metric %s is not a metric %s reports%s; "
        .. "it reports %s", c.file, c.objective.metric, c.recipe, hint,
        table.concat(names, ", "))
end

function M.main(args, host)
  host = host or package.loaded["moonfm.host"] or {}
  local o = parse_args(args)
  local c = M.load(o.file, host)
  if o.parallel then c.parallel = o.parallel end
  if o.trials then c.trials = o.trials end
  if o.seed then c.seed = o.seed end
  M.check_recipe(c, M.plan(c)[1]) -- checked before creating anything
  local out = o.out or c.out
  if out then
    out = abspath(out)
  else
    local base = "sweeps/" .. c.name .. "-" .. os.date("!%Y%m%d-%H%M%S")
    local n = 1
    out = abspath(base)
    while lfs.attributes(out) do
      n = n + 1
      out = abspath(base .. "-" .. n)
    end
  end
  if lfs.attributes(out .. "/results.json") or
     lfs.attributes(out .. "/trials") then
    usage("sweep: %s already holds a sweep; choose another folder with "
          .. "--out DIR (or out = in the sweep file)", out)
  end
  c.out_dir = out:gsub("/+$", "")
  return M.run(c, host)
end

return M
