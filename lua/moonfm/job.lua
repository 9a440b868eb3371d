-- The `train` code path (spec sections 1-11, 15): set up B, read the
-- configuration, export the SM_* environment, pick and run the recipe, and
-- turn every way it can end into the exit status and files of the spec.
local lfs = require "lfs"
local core = require "moonfm.core"
local env = require "moonfm.env"
local errors = require "moonfm.errors"
local failure = require "moonfm.failure"
local log = require "moonfm.log"

local M = {}

-- The job being run, for the recipe API (moonfm.env() and friends).
M.current = nil

local function is_file(p) return lfs.attributes(p, "mode") == "file" end
local function is_dir(p) return lfs.attributes(p, "mode") == "directory" end

-- Recipe selection (rules 45-47): returns the recipe's path.
function M.find_recipe(e, host)
  local name = os.getenv("SAGEMAKER_PROGRAM")
  local source = "SAGEMAKER_PROGRAM"
  if not name or name == "" then
    local hp = require "moonfm.hp"
    local r = e.reserved and e.reserved.sagemaker_program
    name = r and hp.unquote(r) or nil
    source = "hyperparameter sagemaker_program"
  end
  if not name or name == "" then
    name = os.getenv("MOONFM_RECIPE")
    source = "MOONFM_RECIPE"
  end
  if not name or name == "" then
    errors.config("no recipe chosen: set SAGEMAKER_PROGRAM (or the "
      .. "hyperparameter sagemaker_program, or MOONFM_RECIPE in the image) to "
      .. "a recipe such as train.lua")
  end
  if name:sub(1, 1) == "/" then
    if is_file(name) then return name end
    errors.config(string.format("recipe %s (from %s) does not exist", name, source))
  end
  if not name:match("%.lua$") then name = name .. ".lua" end
  local dirs = {}
  local submit = os.getenv("SAGEMAKER_SUBMIT_DIRECTORY")
  if not submit or submit == "" then
    local hp = require "moonfm.hp"
    local r = e.reserved and e.reserved.sagemaker_submit_directory
    submit = r and hp.unquote(r) or nil
  end
  local remote = submit and submit:match("^s3://")
  if submit and not remote and submit ~= "" then dirs[#dirs + 1] = submit end
  dirs[#dirs + 1] = e.code_dir
  dirs[#dirs + 1] = host.recipe_dir
  for _, d in ipairs(dirs) do
    local p = d .. "/" .. name
    if is_file(p) then return p end
  end
  if remote then
    errors.config(string.format("recipe %s is not in the image or in %s, and "
      .. "the submit directory is %s: moonfm does not download code; bake the "
      .. "recipe into the image or supply it in %s", name, e.code_dir, submit,
      e.code_dir))
  end
  errors.config(string.format("recipe %s (from %s) not found in %s", name,
                              source, table.concat(dirs, ", ")))
end

-- Turns any error value into {category, message, details}.
local function classify(err, tb)
  if errors.is(err) then return err end
  local msg = tostring(err)
  -- The binding raises it with the caller's position ("data.lua:202: not
  -- enough memory"); Lua's own allocator without one.
  if msg == "not enough memory" or msg:match("^[^\n]-:%d+: not enough memory$") then
    return errors.new("OutOfMemory", "the job ran out of memory",
      "Use a larger instance, fewer factors or a smaller block size.")
  end
  return errors.new("RecipeError", msg, tb)
end

-- A short traceback: the frames that are not moonfm's own or C.
local function short_traceback(tb)
  local keep = {}
  for line in tb:gmatch("[^\n]+") do
    if line:match("^%s+") and not line:match("%[C%]") and
       not line:match("moonfm/[%w_]+%.lua") and #keep < 8 then
      keep[#keep + 1] = line:match("^%s*(.-)%s*$")
    end
  end
  if #keep == 0 then return nil end
  return "traceback:\n  " .. table.concat(keep, "\n  ")
end

-- os.exit(0) in a recipe: raised so that the recipe's end still goes
-- through train() (rule 57's outputs check, the success file).
local EXIT_OK = setmetatable({}, { __tostring = function() return "os.exit(0)" end })

-- os.exit while the recipe runs: Lua's would end the process with no
-- failure file and any status (rules 56, 58, 66).
local function recipe_exit(code)
  if code == nil or code == true or code == 0 then error(EXIT_OK, 0) end
  errors.raise("RecipeError", string.format("the recipe called os.exit(%s)",
    tostring(code)), "Raise an error (error(\"why\")) to fail the job, or "
    .. "return from the recipe to finish it: moonfm then writes the failure "
    .. "file and the exit status.")
end

local function handler(e)
  if errors.is(e) or e == EXIT_OK then return e end
  local msg = e
  if type(e) ~= "string" then
    local mt = getmetatable(e)
    msg = mt and mt.__tostring and tostring(e) or
      string.format("(error object is a %s value)", type(e))
  end
  return classify(msg, short_traceback(debug.traceback("", 2)))
end

local function log_summary(e, recipe)
  log.info("moonfm %s, mode train, recipe %s", core._VERSION, recipe)
  log.info("host %s, rank %d of %d hosts, %d CPUs, %d GPUs",
           e.current_host, e.rank, #e.hosts, core.cpu_count(),
           require("moonfm.smenv").num_gpus())
  for _, name in ipairs(e.channel_names) do
    local c = e.channels[name]
    log.info("channel %s: %s mode, %s, %s%s", name, c.mode,
             c.content_type or "no content type", c.distribution,
             c.record_wrapper ~= "None" and ", " .. c.record_wrapper or "")
  end
  if #e.channel_names == 0 then log.info("no channels") end
  -- Rule 43 allows the reserved entries; they say which code SageMaker
  -- meant to run (sagemaker_program, sagemaker_submit_directory, ...).
  local reserved = {}
  for k, v in pairs(e.reserved or {}) do
    local shown = #v > 120 and (v:sub(1, 117) .. "...") or v
    reserved[#reserved + 1] = k .. " = " .. shown
  end
  table.sort(reserved)
  if #reserved > 0 then
    log.info("reserved hyperparameters: %s", table.concat(reserved, ", "))
  end
  -- Rule 81: whether a resume will happen, as far as the folder tells
  -- (the recipe decides, and a damaged file is skipped when it loads).
  local ck = require "moonfm.checkpoint"
  local newest, count = nil, 0
  if lfs.attributes(e.checkpoint_dir, "mode") == "directory" then
    for f in lfs.dir(e.checkpoint_dir) do
      local ep, st = ck.parse(f)
      if not ep then ep, st = ck.parse(f, e.current_host) end
      if ep then
        count = count + 1
        if not newest or ep > newest.ep or (ep == newest.ep and st > newest.st) then
          newest = { name = f, ep = ep, st = st }
        end
      end
    end
  end
  if newest then
    log.info("checkpoints in %s: %d found, the newest %s (epoch %d): a "
             .. "recipe that resumes starts from it", e.checkpoint_dir, count,
             newest.name, newest.ep)
  else
    log.info("checkpoints in %s: none, a fresh start", e.checkpoint_dir)
  end
end

local function export_environment(e)
  local smenv = require "moonfm.smenv"
  local names = e.channel_names
  local vars, skipped = smenv.build {
    base = e.base,
    hyperparameters_raw = e.hyperparameters_raw,
    channels = names,
    resource_config = e.resource_config,
    input_data_config = e.input_data_config,
    current_host = e.current_host,
    hosts = e.hosts,
    network_interface_name = e.network_interface_name,
    num_cpus = core.cpu_count(),
    num_gpus = smenv.num_gpus(),
    log_level = e.log_level,
    instance_type = e.instance_type,
    reserved_raw = e.reserved,
    job_name = e.job_name,
  }
  for k, v in pairs(vars) do core.setenv(k, v) end
  for _, msg in ipairs(skipped or {}) do log.warn("%s", msg) end
end

-- The declared outputs that are missing (rule 57).
local function missing_outputs(job)
  local missing = {}
  for _, rel in ipairs(job.outputs) do
    local p = rel:sub(1, 1) == "/" and rel or job.env.model_dir .. "/" .. rel
    if not lfs.attributes(p) then missing[#missing + 1] = rel end
  end
  return missing
end

local function log_level(e)
  local hp = require "moonfm.hp"
  local lv = os.getenv("SM_LOG_LEVEL")
  if (not lv or lv == "") and e.reserved then
    local r = e.reserved.sagemaker_container_log_level
    lv = r and hp.unquote(r)
  end
  return tonumber(lv) or 20
end

-- metrics.json and report.html in output/data, on every ending; a report
-- that cannot be written is a warning, never a change of exit status.
-- Rule 99: every host's output/data goes into one archive, so a host that
-- is not the leader writes its report in a folder named after itself.
local function own_data_dir(e)
  if e.is_leader ~= false then return e.output_data_dir end
  local d = e.output_data_dir .. "/" .. e.current_host
  env.mkdir_p(d)
  return d
end

local function write_report(job, status, err, t0)
  if not job.env then return end
  local ok, r, msg = pcall(require("moonfm.report").write_run,
    own_data_dir(job.env), {
      metrics = job.metrics and job.metrics:records() or {},
      hyperparameters = job.hyperparameters,
      status = status,
      reason = err and err.message or nil,
      recipe = job.recipe,
      seconds = core.clock() - t0,
    })
  if not ok or not r then log.warn("report: %s", tostring(ok and msg or r)) end
end

-- Runs the train code path; returns the exit status.  opts.host is the
-- moonfm.host table (paths); opts.declare_only collects declarations.
local function train(host)
  local base = env.base_dir()
  local output_dir = base .. "/output"
  -- Rule 12, first: the failure file needs output/, so it comes first
  -- and model/ can fail into it.
  for _, d in ipairs { output_dir, output_dir .. "/data", base .. "/model" } do
    local ok, err = env.mkdir_p(d)
    if not ok then
      local out = d == base .. "/model" and output_dir or nil
      failure.report(out, "ConfigError", err, "Check that " .. base ..
                     " is writable (SAGEMAKER_BASE_DIR) and that nothing "
                     .. "but folders has these names.")
      return errors.exit_codes.ConfigError
    end
  end
  -- Temporaries of writes cut short by a kill are never valid (rule 93).
  local removed = require("moonfm.checkpoint").cleanup_temporaries(base .. "/model")
  if removed and removed > 0 then
    log.info("removed %d unfinished temporary file(s) from %s/model", removed, base)
  end
  local job = { outputs = {}, declared_metrics = {}, host = host }
  local t0 = core.clock()
  local os_exit = os.exit
  local ok, err = xpcall(function()
    local e = env.load(base)
    job.env = e
    if e.is_leader == false then
      failure.full_name = "failure-full." .. e.current_host .. ".txt"
    end
    e.log_level = log_level(e)
    log.set_level(e.log_level)
    for _, w in ipairs(e.warnings) do log.warn("%s", w) end
    for _, w in ipairs(require("moonfm.hp").check_limits(e.hyperparameters_raw)) do
      log.warn("%s", w)
    end
    -- Several hosts: launch or wait for the MPI job, or join it as a rank.
    job.launched = require("moonfm.dist").launch(e, host)
    if job.launched then return end
    job.recipe = M.find_recipe(e, host)
    export_environment(e)
    log_summary(e, job.recipe)
    M.current = job
    local recipe, lerr = loadfile(job.recipe, "t")
    if not recipe then errors.raise("RecipeError", lerr) end
    os.exit = recipe_exit
    recipe()
  end, handler)
  os.exit = os_exit
  if not ok and err == EXIT_OK then ok, err = true, nil end
  M.current = nil
  -- Lua skips the message handler for memory errors (LUA_ERRMEM).
  if not ok and not errors.is(err) then err = classify(err) end
  local stopped = core.stop_requested()
  if ok and job.launched then
    local l = job.launched
    if l.message then failure.report(output_dir, l.category, l.message,
                                     l.details) end
    return l.status
  end
  if ok and not require("moonfm.dist").writes_model() then
    job.outputs = {} -- rule 99: the leader writes the model
  end
  if ok then
    local missing = missing_outputs(job)
    if #missing > 0 then
      if stopped then
        log.warn("stopped before the model was saved")
        return 143 -- rule 75: no clean save
      end
      ok, err = false, errors.new("RecipeError", string.format(
        "the recipe finished without writing %s in %s",
        table.concat(missing, ", "), job.env.model_dir),
        "Save the model before the recipe returns (model:save()).")
    end
  end
  write_report(job, ok and (stopped and "stopped" or "completed") or
               (stopped and "stopped" or "failed"), not ok and err, t0)
  if ok then
    if stopped then log.info("stopped cleanly; state saved") end
    core.write_atomic(output_dir .. "/success", "")
    return 0
  end
  if stopped then
    -- Interrupted by SIGTERM without a clean save (rule 75).
    -- The recipe failed after the stop flag was raised, most often because
    -- it did not expect moonfm.read or model:fit to return nil, "stopped";
    -- say that it was stopped first, the recipe's error second.
    log.warn("stopped before the model was saved; the recipe then failed: %s "
             .. "(moonfm.read and model:fit return nil, \"stopped\" after "
             .. "SIGTERM or SIGINT)", err.message)
    return 143
  end
  failure.report(output_dir, err.category, err.message, err.details)
  return errors.exit_codes[err.category] or 1
end

function M.train(host)
  return require("moonfm.dist").finish(train(host))
end

return M
