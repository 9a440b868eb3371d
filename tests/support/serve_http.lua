-- Helpers for the serving specs: the real `moonfm serve` on a loopback
-- port (started in the background), driven with curl.
local e2e = require "support.e2e"
local q = e2e.quote

local M = {}

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

function M.sleep(s) os.execute("sleep " .. s) end

-- Starts the server on a random free-looking port (retrying when it is
-- taken); returns {pid, port, dir}.  env: extra variables.
function M.start(base, env, wait)
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local d = e2e.tmpdir("serve")
    local vars = { "SAGEMAKER_BASE_DIR=" .. q(base),
                   "SAGEMAKER_BIND_TO_PORT=" .. port,
                   "SAGEMAKER_MODEL_SERVER_WORKERS=2" }
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
    os.execute(string.format("env %s %s serve > %s/out 2> %s/err & "
      .. "echo $! > %s/pid; wait $!; echo $? > %s/rc ) &",
      table.concat(vars, " "), q(e2e.exe), q(d), q(d), q(d), q(d))
      :gsub("^", "( "))
    local s = { port = port, dir = d }
    for _ = 1, 100 do
      s.pid = (e2e.read(d .. "/pid") or ""):match("%d+")
      local err = e2e.read(d .. "/err") or ""
      if err:find("listening on") then return s end
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
function M.wait_exit(s, limit)
  for _ = 1, limit * 20 do
    local rc = e2e.read(s.dir .. "/rc")
    if rc then return tonumber(rc:match("%d+")) end
    M.sleep(0.05)
  end
end

function M.stop(s)
  os.execute("kill -TERM " .. s.pid .. " 2>/dev/null")
  return M.wait_exit(s, 25)
end

-- curl(port, path, {body=, file=, type=, accept=, method=, chunked=})
-- -> status, body
function M.curl(port, path, o)
  o = o or {}
  local d = e2e.tmpdir("curl")
  local args = { "curl -s --max-time 30 -o " .. q(d .. "/body"),
                 "-w '%{http_code}'" }
  if o.type then args[#args + 1] = "-H " .. q("Content-Type: " .. o.type) end
  if o.accept then args[#args + 1] = "-H " .. q("Accept: " .. o.accept) end
  if o.chunked then args[#args + 1] = "-H 'Transfer-Encoding: chunked'" end
  if o.body then
    e2e.write(d .. "/req", o.body)
    o.file = d .. "/req"
  end
  if o.file then args[#args + 1] = "--data-binary @" .. q(o.file) end
  args[#args + 1] = q(string.format("http://127.0.0.1:%d%s", port, path))
  local code = sh(table.concat(args, " ") .. " 2>/dev/null")
  return tonumber(code) or 0, e2e.read(d .. "/body") or ""
end

return M
