-- Multi-host jobs on Open MPI (spec sections 3 and 14; docs/multi-host.md).
--
-- When resourceconfig.json lists more than one host, `moonfm train` runs in
-- one of three roles, the way SageMaker's training toolkit runs MPI jobs:
--   launcher on the leader (hosts[1], not under mpirun): resolves every
--     host (rule 98), waits until each answers on the remote-start command,
--     then runs `mpirun ... moonfm train` over all hosts and ends with its
--     status;
--   launcher on another host: resolves the hosts, starts sshd (when the
--     remote-start command is ssh), and waits until this host's rank of the
--     leader's job has started and ended, then ends with its status;
--   rank (under mpirun: OMPI_COMM_WORLD_SIZE is set): runs the recipe like
--     a single host; model classes consult M.size() / M.rank() and train
--     their share, exchanging what the other ranks need.
-- One host: none of this; M.size() is 1.
--
-- Environment (all optional):
--   MOONFM_MPI_AGENT       the remote-start command (default "ssh -o
--                          StrictHostKeyChecking=no -o BatchMode=yes");
--                          tests on one machine replace it
--   MOONFM_MPI_OPTIONS     more mpirun options (also the hyperparameter
--                          sagemaker_mpi_custom_mpi_options)
--   MOONFM_DIST_TIMEOUT    seconds one collective may wait (default 1800)
--   MOONFM_DIST_WAIT       seconds to wait for the other hosts to appear
--                          (default 1200, as the toolkit's 20 minutes)
--   MOONFM_DIST_RESOLVE    seconds of name-resolution retries (default 900)
--   MOONFM_DIST_STATE_DIR  where a host keeps its rank markers (/tmp)
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local log = require "moonfm.log"

local M = {}

M.default_agent = "ssh -o StrictHostKeyChecking=no -o BatchMode=yes "
  .. "-o ConnectTimeout=10"

-- Variables every rank needs from the launcher's environment (mpirun -x).
M.forwarded = {
  "PATH", "LD_LIBRARY_PATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
  "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "SM_LOG_LEVEL",
  "SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY", "MOONFM_RECIPE",
  "TRAINING_JOB_NAME", "TRAINING_JOB_ARN", "MOONFM_DIST_TIMEOUT",
  "MOONFM_DIST_SYNC", "MOONFM_NO_REEXEC", "LUA_PATH_5_4", "LUA_CPATH_5_4",
}

local function num_env(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v and v > 0 then return v end
  return default
end

local function split_words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

-- ---- inside the job -----------------------------------------------------

local state = { role = "single", rank = 0, size = 1 }

function M.role() return state.role end
function M.rank() return state.rank end
function M.size() return state.size end
function M.is_leader() return state.rank == 0 end
-- True when this process is one rank of several (model classes then train
-- their share).
function M.active() return state.size > 1 end

function M.in_mpi()
  local s = os.getenv("OMPI_COMM_WORLD_SIZE")
  return s ~= nil and s ~= ""
end

local function state_dir()
  local d = os.getenv("MOONFM_DIST_STATE_DIR")
  if d and d ~= "" then return d end
  return "/tmp"
end

local function marker(host, what)
  return string.format("%s/moonfm-dist.%s.%s", state_dir(), host, what)
end

local function read_file(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The rank's side: join the job and leave a marker for this host's
-- launcher (which waits for the rank to start and end).
local function join(e)
  local rank, size = core.dist_init(num_env("MOONFM_DIST_TIMEOUT", 1800),
                                    e.current_host)
  if not rank then
    errors.raise("InternalError", "cannot join the MPI job: " .. size)
  end
  if size ~= #e.hosts then
    errors.config(string.format("the MPI job has %d ranks but "
      .. "resourceconfig.json lists %d hosts", size, #e.hosts))
  end
  if rank ~= e.rank then
    errors.config(string.format("host %s is rank %d of the MPI job but "
      .. "rank %d in resourceconfig.json (hosts are ranked in the order "
      .. "listed)", e.current_host, rank, e.rank))
  end
  state.role, state.rank, state.size = "rank", rank, size
  state.host = e.current_host
  core.write_atomic(marker(e.current_host, "rank"),
                    tostring(core.getpid()) .. "\n")
  log.info("rank %d of %d in the MPI job (host %s)", rank, size,
           e.current_host)
end

-- Called by moonfm.job with the final exit status of a rank.
function M.finish(status)
  if state.role ~= "rank" then return status end
  core.write_atomic(marker(state.host, "done"), tostring(status) .. "\n")
  if status == 0 then core.dist_finalize() end
  -- A failing rank leaves without MPI_Finalize: mpirun then ends the job
  -- on every host (orte_abort_on_non_zero_status).
  return status
end

-- ---- launchers ------------------------------------------------------------

local function resolve_all(e)
  local max_s = num_env("MOONFM_DIST_RESOLVE", 900)
  -- Said first: a host that does not resolve is retried for up to max_s
  -- seconds, and a job that printed nothing meanwhile looked hung (found
  -- by the hostile-input campaign of 2026-12-05; rules 81, 98).
  log.info("%d hosts in resourceconfig.json (this is %s, rank %d): resolving "
    .. "their names, retrying for up to %.0f s (MOONFM_DIST_RESOLVE)",
    #e.hosts, e.current_host, e.rank or 0, max_s)
  for _, h in ipairs(e.hosts) do
    local addr, err = core.dist_resolve(h, max_s)
    if not addr then
      if core.stop_requested() then return false end
      errors.config(string.format("cannot reach the other hosts: %s", err),
        "Every host in resourceconfig.json must resolve by name (the "
        .. "container network of the training job).")
    end
    log.debug("host %s resolves to %s", h, addr)
  end
  return true
end

local function agent_words()
  local a = os.getenv("MOONFM_MPI_AGENT")
  if not a or a == "" then a = M.default_agent end
  return split_words(a), a
end

local function uses_ssh()
  local w = agent_words()
  return (w[1] or ""):match("[^/]*$") == "ssh"
end

-- Runs argv (a list; argv[1] searched in PATH) and waits, forwarding
-- SIGTERM; returns the exit code.
local function which(cmd)
  if cmd:find("/") then return cmd end
  for dir in (os.getenv("PATH") or "/usr/bin:/bin"):gmatch("[^:]+") do
    local p = dir .. "/" .. cmd
    local f = io.open(p, "rb")
    if f then f:close() return p end
  end
  return nil
end

-- Ends a child: TERM, a grace period, then KILL.
local function stop_child(pid, grace)
  core.kill(pid, "TERM")
  if core.wait(pid, grace) then return end
  core.kill(pid, "KILL")
  core.wait(pid, 5)
end

-- opts: env, stdout, stderr; timeout (seconds, then killed: nil,
-- "timed out"); started + start_timeout (a function that turns true once
-- the child has really started; if it has not within start_timeout
-- seconds, the child is stopped: nil, "stalled").
local function run(argv, opts)
  opts = opts or {}
  local path = which(argv[1])
  if not path then return nil, argv[1] .. ": command not found" end
  local a = { path }
  for i = 2, #argv do a[i] = argv[i] end
  local pid, err = core.spawn { argv = a, env = opts.env,
                                stdout = opts.stdout, stderr = opts.stderr }
  if not pid then return nil, err end
  local t0, forwarded = core.clock(), false
  local waiting_start = opts.started ~= nil
  while true do
    local code = core.wait(pid, 0.2)
    if code then return code end
    if core.stop_requested() and not forwarded then
      core.kill(pid, "TERM")
      forwarded = true
    end
    if opts.timeout and core.clock() - t0 > opts.timeout then
      core.kill(pid, "KILL")
      core.wait(pid, 5)
      return nil, "timed out"
    end
    if waiting_start and not forwarded then
      if opts.started() then
        waiting_start = false
      elseif core.clock() - t0 > opts.start_timeout then
        stop_child(pid, 10)
        return nil, "stalled"
      end
    end
  end
end

local function start_sshd()
  local sshd = "/usr/sbin/sshd"
  if not io.open(sshd, "rb") then
    errors.config("multi-host jobs need sshd, which this image lacks",
      "Install openssh-server in the image (scripts/install-deps does) or "
      .. "set MOONFM_MPI_AGENT to another remote-start command.")
  end
  require("moonfm.env").mkdir_p("/run/sshd")
  local pid, err = core.spawn { argv = { sshd, "-D" } }
  if not pid then errors.config("cannot start sshd: " .. err) end
  state.sshd = pid
end

local function stop_sshd()
  if state.sshd then
    core.kill(state.sshd, "TERM")
    core.wait(state.sshd, 5)
    state.sshd = nil
  end
end

-- The leader gives up before the MPI job ran, or the job failed: it tells
-- hosts 2..upto, through the remote-start command, which leave an "abort"
-- marker for their launcher, so that one still waiting for its rank stops
-- waiting for a job that will not come (else it waits MOONFM_DIST_WAIT
-- seconds, 20 minutes by default).  A host whose rank ran ignores it.
-- Best effort: a host that does not answer waits as before.
local function tell_followers(e, upto, why)
  local words = agent_words()
  for i = 2, upto do
    local h = e.hosts[i]
    local argv = {}
    for _, w in ipairs(words) do argv[#argv + 1] = w end
    argv[#argv + 1] = h
    argv[#argv + 1] = string.format('d="${MOONFM_DIST_STATE_DIR:-/tmp}"; '
      .. 'mkdir -p "$d" && echo %s > "$d/moonfm-dist.%s.abort"', why, h)
    run(argv, { timeout = 30, stdout = "/dev/null", stderr = "/dev/null" })
  end
end

-- Leader: wait until every other host answers, then run mpirun.
local function lead(e, host)
  local words, agent = agent_words()
  local wait_s = num_env("MOONFM_DIST_WAIT", 1200)
  if uses_ssh() then start_sshd() end
  for i = 2, #e.hosts do
    local h, t0, tries = e.hosts[i], core.clock(), 0
    while true do
      local argv = {}
      for _, w in ipairs(words) do argv[#argv + 1] = w end
      argv[#argv + 1] = h
      argv[#argv + 1] = "true"
      tries = tries + 1
      local code = run(argv, { timeout = 60, stdout = "/dev/null",
                               stderr = "/dev/null" })
      if code == 0 then break end
      if core.stop_requested() then
        stop_sshd()
        return { status = 143 }
      end
      if core.clock() - t0 > wait_s then
        stop_sshd()
        tell_followers(e, i - 1, "unanswered")
        return { status = errors.exit_codes.ConfigError,
          category = "ConfigError",
          message = string.format("host %s never answered (%d tries in "
            .. "%.0f s with '%s'); the MPI job cannot start", h, tries,
            core.clock() - t0, agent),
          details = "Every host must start moonfm train and accept the "
            .. "remote-start command (sshd with the image's root key); "
            .. "MOONFM_DIST_WAIT sets how long the leader waits." }
      end
      core.sleep(1)
    end
  end
  local hosts = table.concat(e.hosts, ",")
  local argv = { "mpirun", "--host", hosts, "-np", tostring(#e.hosts),
    "--mca", "plm_rsh_agent", agent,
    "--mca", "plm_rsh_no_tree_spawn", "1",
    "--mca", "orte_abort_on_non_zero_status", "1",
    "--mca", "btl_tcp_if_include", e.network_interface_name,
    "--mca", "oob_tcp_if_include", e.network_interface_name,
    "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
    "-bind-to", "none", "-map-by", "slot" }
  if core.geteuid() == 0 then argv[#argv + 1] = "--allow-run-as-root" end
  for _, v in ipairs(M.forwarded) do
    if os.getenv(v) then
      argv[#argv + 1] = "-x"
      argv[#argv + 1] = v
    end
  end
  local custom = os.getenv("MOONFM_MPI_OPTIONS") or ""
  local r = e.reserved and e.reserved.sagemaker_mpi_custom_mpi_options
  if r then custom = custom .. " " .. require("moonfm.hp").unquote(r) end
  for _, w in ipairs(split_words(custom)) do argv[#argv + 1] = w end
  argv[#argv + 1] = host.exe
  argv[#argv + 1] = "train"
  -- Open MPI's start-up can stall for good: mpirun waits forever for an
  -- orted that died silently after daemonizing (seen when co-located
  -- daemons collided on one session directory; scripts/local-cluster now
  -- gives each its own, docs/multi-host.md).  Rank 0 runs on this host and
  -- writes its marker once MPI_Init has returned on every rank, so no
  -- marker within MOONFM_DIST_START seconds means a stalled start: stop
  -- mpirun (its daemons end with it) and launch again.
  local start_s = num_env("MOONFM_DIST_START", 120)
  local tries = math.tointeger(num_env("MOONFM_DIST_START_TRIES", 3)) or 3
  local mine = marker(e.current_host, "rank")
  local code, err
  for try = 1, tries do
    os.remove(mine)
    log.info("starting the MPI job on %d hosts: %s%s", #e.hosts, hosts,
             try > 1 and string.format(" (try %d of %d)", try, tries) or "")
    code, err = run(argv, { env = {
      OMPI_ALLOW_RUN_AS_ROOT = "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = "1" },
      started = function() return read_file(mine) ~= nil end,
      start_timeout = start_s })
    if err ~= "stalled" then break end
    log.warn("no rank of the MPI job started within %.0f s (an Open MPI "
      .. "start-up stall); stopped mpirun", start_s)
  end
  stop_sshd()
  if err == "stalled" then
    tell_followers(e, #e.hosts, "stalled")
    return { status = errors.exit_codes.ConfigError, category = "ConfigError",
      message = string.format("the MPI job across %d hosts did not start: "
        .. "%d tries of %.0f s each, no rank came up", #e.hosts, tries,
        start_s),
      details = "mpirun's own messages are in this log. Check that every "
        .. "host can reach the others on the network interface of "
        .. "resourceconfig.json; MOONFM_DIST_START and "
        .. "MOONFM_DIST_START_TRIES set the wait and the number of tries." }
  end
  if not code then
    tell_followers(e, #e.hosts, "no-mpirun")
    return { status = errors.exit_codes.ConfigError, category = "ConfigError",
      message = "cannot start mpirun: " .. err,
      details = "Install openmpi-bin in the image (scripts/install-deps)." }
  end
  log.info("the MPI job ended with status %d", code)
  if code == 0 then return { status = 0 } end
  -- A host whose rank never started (mpirun failed first, e.g. one of its
  -- daemons did not come up) would wait for it MOONFM_DIST_WAIT seconds.
  tell_followers(e, #e.hosts, "failed")
  if core.stop_requested() then return { status = code } end
  local known = { [1] = "RecipeError", [2] = "ConfigError", [3] = "DataError",
                  [70] = "InternalError" }
  local why = code > 128 and code < 160
    and string.format("a rank was killed by signal %d (a host died or ran "
                      .. "out of memory)", code - 128)
    or "a host failed, died or could not be reached"
  return { status = known[code] and code or 1,
    category = known[code] or "RecipeError",
    message = string.format("the MPI job across %d hosts failed (mpirun "
      .. "status %d): %s", #e.hosts, code, why),
    details = "The first failing host's own failure file and log say why; "
      .. "mpirun also forwards every host's log lines into this host's log." }
end

local function pid_alive(pid)
  local ok = core.kill(pid, "0")
  return ok == true
end

-- Another host: wait for this host's rank of the leader's job.
local function follow(e)
  local h = e.current_host
  local wait_s = num_env("MOONFM_DIST_WAIT", 1200)
  require("moonfm.env").mkdir_p(state_dir())
  os.remove(marker(h, "rank"))
  os.remove(marker(h, "done"))
  os.remove(marker(h, "abort"))
  if uses_ssh() then start_sshd() end
  core.write_atomic(marker(h, "ready"), tostring(core.getpid()) .. "\n")
  log.info("waiting for the leader %s to start the MPI job", e.hosts[1])
  local t0, pid = core.clock(), nil
  while not pid do
    pid = tonumber(read_file(marker(h, "rank")) or "")
    if not pid then
      if core.stop_requested() then
        stop_sshd()
        return { status = 143 }
      end
      local abort = read_file(marker(h, "abort"))
      if abort then
        stop_sshd()
        os.remove(marker(h, "ready"))
        os.remove(marker(h, "abort"))
        return { status = errors.exit_codes.ConfigError,
          category = "ConfigError",
          message = string.format("the leader %s never started the MPI job "
            .. "on host %s: it gave up (%s) and told this host",
            e.hosts[1], h, abort:match("[%w_-]+") or "?"),
          details = "The leader's log and failure file say why." }
      end
      if core.clock() - t0 > wait_s then
        stop_sshd()
        os.remove(marker(h, "ready"))
        return { status = errors.exit_codes.ConfigError,
          category = "ConfigError",
          message = string.format("the leader %s never started the MPI job "
            .. "on host %s within %.0f s", e.hosts[1], h, wait_s),
          details = "Check the leader's log (it may have failed before "
            .. "starting, or never came up); MOONFM_DIST_WAIT sets how long "
            .. "a host waits." }
      end
      core.sleep(0.2)
    end
  end
  log.info("rank of host %s running (process %d)", h, pid)
  local forwarded = false
  while pid_alive(pid) do
    core.reap() -- as PID 1, ended orphans are ours to collect
    if core.stop_requested() and not forwarded then
      core.kill(pid, "TERM")
      forwarded = true
    end
    core.sleep(0.2)
  end
  stop_sshd()
  os.remove(marker(h, "ready"))
  os.remove(marker(h, "abort"))
  local done = tonumber(read_file(marker(h, "done")) or "")
  if done then
    log.info("this host's rank ended with status %d", done)
    return { status = math.tointeger(done) }
  end
  return { status = 1, category = "RecipeError",
    message = string.format("the MPI job ended before host %s finished its "
      .. "part: another host failed or died, or the leader stopped the job",
      h),
    details = "The leader's log and failure file say which host failed." }
end

-- The launch decision, made by moonfm.job before the recipe runs: nil to
-- run the recipe here (one host, or a rank of the MPI job), else the
-- launcher's outcome {status=, category=, message=, details=}.
function M.launch(e, host)
  if #e.hosts <= 1 then return nil end
  if M.in_mpi() then
    join(e)
    return nil
  end
  if not core.dist_available() then
    errors.config(string.format("resourceconfig.json lists %d hosts but "
      .. "this moonfm was built without Open MPI", #e.hosts),
      "Install libopenmpi-dev and rebuild (scripts/install-deps).")
  end
  if not resolve_all(e) then return { status = 143 } end
  if e.is_leader then
    state.role = "leader"
    return lead(e, host)
  end
  state.role = "follower"
  return follow(e)
end

-- Rule 99: in a job of several hosts only the leader writes B/model.
function M.writes_model() return state.rank == 0 end

-- True (after logging) when path lies in the job's model folder and this
-- rank is not the leader: moonfm.modelfile then skips the write.
function M.skip_model_write(path)
  if state.rank == 0 then return false end
  local job = package.loaded["moonfm.job"]
  local e = job and job.current and job.current.env
  if not e or path:sub(1, #e.model_dir + 1) ~= e.model_dir .. "/" then
    return false
  end
  log.debug("not writing %s: only the leader writes the model", path)
  return true
end

-- ---- model hooks (called by moonfm.als and moonfm.fm) ---------------------

-- Epochs between two model averagings of the factorization model
-- (MOONFM_DIST_SYNC, default 1; a recipe may set it).
M.sync_interval = math.tointeger(num_env("MOONFM_DIST_SYNC", 1)) or 1

-- Whether each rank trains the factorization model on its block of users
-- (the default: every rank holds the whole training data, also with
-- ShardedByS3Key, whose shards M.merge_read combines) or on all the data
-- it was given (false: for interactions a recipe split itself).
M.shard_rows = true

local function shard_rows()
  return M.shard_rows ~= false
end

local cache = setmetatable({}, { __mode = "k" })

-- ---- collectives for the Lua layer ------------------------------------------

-- Every rank's string, in rank order, on every rank (one broadcast per
-- rank).  Collective.
function M.allgather(s)
  local out = {}
  for r = 0, state.size - 1 do
    out[r + 1] = core.dist_bcast(r == state.rank and s or nil, r)
  end
  return out
end

-- False while the ranks' copies of a factorization model differ (epochs
-- trained since the last averaging, M.sync_interval > 1): evaluation then
-- stays on each rank.  The same answer on every rank.
function M.in_sync(model)
  local c = cache[model]
  return not (c and c.since and c.since > 0)
end

-- Whether to stop, agreed by every rank (one host: the stop flag).  A
-- recipe loop that checks the stop flag between collective steps must
-- use this in a multi-host job: SIGTERM reaches the ranks at different
-- moments, and a rank that leaves the loop alone leaves the others
-- waiting in the next collective.  Collective when active.
function M.stop_agreed()
  local stop = core.stop_requested()
  if state.size <= 1 then return stop end
  stop = core.dist_any(stop)
  if stop then core.stop_request() end
  return stop
end

-- Report fields of a read that are summed over the ranks.
local summed = { "rows", "files", "bytes", "bad", "dropped", "unseen_users",
  "unseen_user_rows", "unseen_items", "unseen_item_rows", "nonpositive",
  "negative" }

-- ShardedByS3Key (docs/multi-host.md): every rank has read its own files
-- into its own id maps.  Collective: the ranks exchange their id lists
-- and interactions, and each builds the same global maps (rank 0's ids in
-- its order, then rank 1's new ones, ...) and the same global
-- interactions, remapped and summed where shards meet, so that the rest
-- of the job runs as with FullyReplicated data.  A map the caller gave
-- and did not let grow (e.g. a test set read with the training maps) is
-- kept as it is.  x is nil when this rank's read was stopped: then every
-- rank returns nil, "stopped".  Returns the global interactions and the
-- report with its counts summed over the ranks.
function M.merge_read(x, rep, name, fixed_users, fixed_items)
  if core.dist_any(x == nil) then
    core.stop_request() -- another rank's stop is this one's too
    return nil, "stopped"
  end
  local ub, uo = x:users():view()
  local ib, io = x:items():view()
  local parts = M.allgather(string.pack("<s8s8s8s8s8", ub, uo, ib, io,
                                        x:pack()))
  local gu = fixed_users and x:users() or core.idmap()
  local gi = fixed_items and x:items() or core.idmap()
  local list = {}
  for r, p in ipairs(parts) do
    local pub, puo, pib, pio, csr = string.unpack("<s8s8s8s8s8", p)
    list[r] = { csr = csr,
                row_map = not fixed_users and gu:merge(pub, puo) or nil,
                col_map = not fixed_items and gi:merge(pib, pio) or nil }
    parts[r] = nil
  end
  local g = core.interactions_merge(gu, gi, list)
  local v = {}
  for k, key in ipairs(summed) do v[k] = rep[key] or 0 end
  v = core.dist_sum(v)
  for k, key in ipairs(summed) do
    if rep[key] then rep[key] = math.tointeger(v[k]) or v[k] end
  end
  local nu, ni = g:shape()
  log.info("channel '%s' (ShardedByS3Key): %d hosts' shards combined: %d "
           .. "users, %d items, %d interactions", name, state.size, nu, ni,
           g:nnz())
  return g, rep
end

-- ALS: one iteration over all ranks (users and items split in blocks).
function M.als_iteration(model, interactions)
  local c = cache[model]
  if not c or c.x ~= interactions then
    if c then c.d:close() end
    c = { x = interactions, d = core.dist_als(model, interactions) }
    cache[model] = c
  end
  return c.d:fit(1)
end

-- FM: `epochs` epochs of Hogwild on this rank's share, the models averaged
-- every M.sync_interval epochs.  Returns the report of the last epoch
-- (loss averaged over ranks) or nil, "stopped".
function M.fm_fit(model, interactions, o)
  local c = cache[model]
  if not c or c.x ~= interactions then
    if c then c.d:close() end
    -- Averaging needs one model shape (one id numbering) on every host;
    -- moonfm.read makes it so (ShardedByS3Key shards are combined), but a
    -- recipe may build its interactions itself.
    local nu, ni = model:shape()
    local mine = string.format("%d x %d", nu, ni)
    local lead = core.dist_bcast(mine, 0)
    if core.dist_any(lead ~= mine) then
      errors.raise("DataError", string.format("host %s has a %s model but "
        .. "the leader a %s one: every host must train on the same users "
        .. "and items", state.host or "?", mine, lead),
        "Read the training data with moonfm.read (which combines "
        .. "ShardedByS3Key shards), or give every host the same id lists.")
    end
    c = { x = interactions, since = 0,
          d = core.dist_fm(model, interactions, shard_rows()) }
    cache[model] = c
  end
  local total = { epochs = 0, seconds = 0, samples = 0, loss = 0 / 0 }
  for _ = 1, o.epochs or 1 do
    local r, err = c.d:fit(1, o.threads or 0)
    if not r then return nil, err end
    c.since = c.since + 1
    if c.since >= math.max(1, M.sync_interval) then
      local ok, serr = c.d:sync()
      if not ok then errors.raise("RecipeError", serr) end
      c.since = 0
    end
    total.epochs = total.epochs + r.epochs
    total.seconds = total.seconds + r.seconds
    total.samples = total.samples + r.samples
    total.negatives = r.negatives
    total.loss = r.loss
  end
  return total
end

return M
