-- The bad-input corpus (tests/bad, README.md there): every hostile input
-- must end in a clear error (exit status, failure file's first line,
-- HTTP status and reason), nothing half-written, nothing crashed.
local e2e = require "support.e2e"
local runner = require "bad.runner"
local core = require "moonfm.core"
local q = e2e.quote

local AREAS = { "config", "hyperparameters", "channels", "features", "models",
                "limits" }

local function load_cases(area)
  return dofile(e2e.source .. "/tests/bad/" .. area .. ".lua")
end

math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))

describe("bad inputs to moonfm train / inspect / serve", function()
  local ids = {}
  for _, area in ipairs(AREAS) do
    for _, c in ipairs(load_cases(area)) do
      assert(not ids[c.id], "duplicate case id " .. c.id)
      ids[c.id] = true
      -- MOONFM_BAD_ONLY (a Lua pattern) picks cases (scripts/test-valgrind).
      -- Alternatives separated by '|'.
      local only = os.getenv("MOONFM_BAD_ONLY")
      local run = only == nil
      -- ASan reserves more address space than any `ulimit -v` leaves.
      if os.getenv("MOONFM_SANITIZED") and (c.prefix or ""):find("ulimit -v", 1, true) then
        run = false
      end
      for alt in (only or ""):gmatch("[^|]+") do
        run = run or c.id:find(alt) ~= nil
      end
      ;(run and it or pending)(c.id, function()
        local r = runner.run(c)
        local p = runner.problems(c, r)
        assert(#p == 0, c.id .. ":\n  " .. table.concat(p, "\n  "))
      end)
    end
  end
end)

-- ---- HTTP ----------------------------------------------------------------

local write_model = require("support.serve_http").write_test_model

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

local function start(base)
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local d = e2e.tmpdir("serve")
    os.execute(string.format("( env SAGEMAKER_BASE_DIR=%s SAGEMAKER_BIND_TO_PORT=%d "
      .. "SAGEMAKER_MODEL_SERVER_WORKERS=2 %s serve > %s/out 2> %s/err & "
      .. "echo $! > %s/pid; wait $!; echo $? > %s/rc ) &", q(base), port,
      q(e2e.exe), q(d), q(d), q(d), q(d)))
    for _ = 1, 200 do
      local pid = (e2e.read(d .. "/pid") or ""):match("%d+")
      local err = e2e.read(d .. "/err") or ""
      if pid and err:find("listening on") then
        return { pid = pid, port = port, dir = d }
      end
      if e2e.read(d .. "/rc") then break end
      os.execute("sleep 0.05")
    end
  end
  error("could not start the server")
end

local function curl(port, path, c)
  local d = e2e.tmpdir("curl")
  local args = { "curl -s --max-time 30 -o " .. q(d .. "/body"), "-w '%{http_code}'" }
  args[#args + 1] = "-H " .. q("Content-Type: " .. (c.type or ""))
  if c.accept then args[#args + 1] = "-H " .. q("Accept: " .. c.accept) end
  if c.body then
    e2e.write(d .. "/req", c.body)
    args[#args + 1] = "--data-binary @" .. q(d .. "/req")
  end
  args[#args + 1] = q(string.format("http://127.0.0.1:%d%s", port, path))
  local code = sh(table.concat(args, " ") .. " 2>/dev/null")
  return tonumber(code) or 0, e2e.read(d .. "/body") or ""
end

local http = os.getenv("MOONFM_BAD_ONLY") == nil and describe or pending
http("bad requests to moonfm serve", function()
  local srv
  setup(function()
    local base = e2e.tmpdir("B")
    write_model(base .. "/model")
    srv = start(base)
  end)
  teardown(function()
    if srv then os.execute("kill -TERM " .. srv.pid .. " 2>/dev/null") end
  end)

  for _, c in ipairs(load_cases("http")) do
    it(c.id, function()
      local st, body = curl(srv.port, "/invocations", c)
      assert.are.equal(c.status, st, c.id .. ": " .. body:sub(1, 300))
      if c.status >= 400 then
        assert.is_true(#body > 0, c.id .. ": no reason given")
      end
      if c.reply then assert.matches(c.reply, body, 1, true) end
      assert.is_nil(e2e.read(srv.dir .. "/rc"), c.id .. ": the server exited")
      assert.are.equal(200, (curl(srv.port, "/ping", {})))
    end)
  end

  it("left no crash report on stderr", function()
    local err = e2e.read(srv.dir .. "/err") or ""
    assert.is_nil(err:find("AddressSanitizer", 1, true))
    assert.is_nil(err:find("runtime error", 1, true))
  end)
end)
