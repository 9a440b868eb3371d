-- Helpers for the serving specs: the real `moonfm serve` on a loopback
-- port (started in the background), driven with curl.
local e2e = require "support.e2e"
local q = e2e.quote

local M = {}

local function pack(fmt, t)
  local s = {}
  for i, v in ipairs(t) do s[i] = string.pack(fmt, v) end
  return table.concat(s)
end

local function ids(list)
  local off, o = { 0 }, 0
  for _, x in ipairs(list) do
    o = o + #x
    off[#off + 1] = o
  end
  return table.concat(list), pack("<i8", off)
end

-- A tiny ALS model file in dir: users u1..u3, items i1..i5, k = 2; u1 saw
-- i4, u3 saw i1 and i5.
function M.write_test_model(dir)
  local core = require "moonfm.core"
  os.execute("mkdir -p " .. q(dir))
  local ub, uo = ids { "u1", "u2", "u3" }
  local ib, io_ = ids { "i1", "i2", "i3", "i4", "i5" }
  assert(core.mfile_write(dir .. "/model.moonfm",
    '{"kind":"als","n_users":3,"n_items":5,"factors":2,'
    .. '"params":{"regularization":0.1,"alpha":1}}', {
    { name = "user_factors", dtype = "f32", rows = 3, cols = 2,
      data = pack("<f", { 1, 0, 0, 1, 1, 1 }) },
    { name = "item_factors", dtype = "f32", rows = 5, cols = 2,
      data = pack("<f", { 1, 0, 0.5, 0.5, 0, 1, 2, 0, 0, 2 }) },
    { name = "users.ids", dtype = "u8", rows = #ub, cols = 1, data = ub },
    { name = "users.offsets", dtype = "i64", rows = 4, cols = 1, data = uo },
    { name = "items.ids", dtype = "u8", rows = #ib, cols = 1, data = ib },
    { name = "items.offsets", dtype = "i64", rows = 6, cols = 1, data = io_ },
    { name = "seen.indptr", dtype = "i64", rows = 4, cols = 1,
      data = pack("<i8", { 0, 1, 1, 3 }) },
    { name = "seen.indices", dtype = "i32", rows = 3, cols = 1,
      data = pack("<i4", { 3, 0, 4 }) },
  }))
end

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

function M.sleep(s) os.execute("sleep " .. s) end

-- Starts the server on a random free-looking port (retrying when it is
-- taken); returns {pid, port, dir}.  env: extra variables; prefix: shell
-- text before the command (`ulimit -n 200;`).
function M.start(base, env, wait, prefix)
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local d = e2e.tmpdir("serve")
    local vars = { "SAGEMAKER_BASE_DIR=" .. q(base),
                   "SAGEMAKER_BIND_TO_PORT=" .. port,
                   "SAGEMAKER_MODEL_SERVER_WORKERS=2" }
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
    os.execute(string.format("%s env %s %s serve > %s/out 2> %s/err & "
      .. "echo $! > %s/pid; wait $!; echo $? > %s/rc ) &", prefix or "",
      table.concat(vars, " "), q(e2e.exe), q(d), q(d), q(d), q(d))
      :gsub("^", "( "))
    local s = { port = port, dir = d }
    for _ = 1, 100 do
      s.pid = (e2e.read(d .. "/pid") or ""):match("%d+")
      local err = e2e.read(d .. "/err") or ""
      if s.pid and err:find("listening on") then return s end
      if e2e.read(d .. "/rc") then
        if not err:find("cannot listen") then return s end
        break
      end
      M.sleep(0.05)
    end
    if wait == false then return s end
  end
  error("could not start the server")
end

-- Waits for the server's exit; its status, or nil after `limit` seconds.
-- The shell creates rc before it writes the status, so an empty rc is
-- read as "not yet" (a run of the suite failed on that).
function M.wait_exit(s, limit)
  for _ = 1, limit * 20 do
    local rc = (e2e.read(s.dir .. "/rc") or ""):match("%d+")
    if rc then return tonumber(rc) end
    M.sleep(0.05)
  end
end

-- Opens n connections to port and leaves them idle while it runs curl on
-- path (at most 3 s); the status curl got (0: no answer).
function M.ping_beside_idle(port, n, path)
  local script = string.format([[
    for i in $(seq %d); do exec {fd}<>/dev/tcp/127.0.0.1/%d || break; done
    sleep 0.3
    curl -s -o /dev/null -w '%%{http_code}' --max-time 3 http://127.0.0.1:%d%s
  ]], n, port, port, path)
  local p = io.popen("bash -c " .. q(script) .. " 2>/dev/null")
  local s = p:read("a")
  p:close()
  return tonumber(s) or 0
end

function M.stop(s)
  os.execute("kill -TERM " .. s.pid .. " 2>/dev/null")
  return M.wait_exit(s, 25)
end

-- curl(port, path, {body=, file=, type=, accept=, method=, chunked=,
-- header = {"Name: value", ...}}) -> status, body, response headers
function M.curl(port, path, o)
  o = o or {}
  local d = e2e.tmpdir("curl")
  local args = { "curl -s --max-time 30 -o " .. q(d .. "/body"),
                 "-D " .. q(d .. "/headers"), "-w '%{http_code}'" }
  -- HEAD through -I: with -X HEAD curl waits for the body the length
  -- announces until --max-time.
  if o.method == "HEAD" then args[#args + 1] = "-I"
  elseif o.method then args[#args + 1] = "-X " .. q(o.method) end
  for _, h in ipairs(o.header or {}) do args[#args + 1] = "-H " .. q(h) end
  if o.type then args[#args + 1] = "-H " .. q("Content-Type: " .. o.type) end
  if o.accept then args[#args + 1] = "-H " .. q("Accept: " .. o.accept) end
  if o.chunked then args[#args + 1] = "-H 'Transfer-Encoding: chunked'" end
  if o.rate then args[#args + 1] = "--limit-rate " .. o.rate end
  if o.body then
    e2e.write(d .. "/req", o.body)
    o.file = d .. "/req"
  end
  if o.file then args[#args + 1] = "--data-binary @" .. q(o.file) end
  args[#args + 1] = q(string.format("http://127.0.0.1:%d%s", port, path))
  local code = sh(table.concat(args, " ") .. " 2>/dev/null")
  return tonumber(code) or 0, e2e.read(d .. "/body") or "",
    e2e.read(d .. "/headers") or ""
end

return M
