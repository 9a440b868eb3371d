-- `moonfm serve` end to end (spec rules 118-127, conformance test T11): the
-- real executable on a loopback port, driven with curl.
local core = require "moonfm.core"
local e2e = require "support.e2e"
local q = e2e.quote

local http = require "support.serve_http"
local write_model = http.write_test_model
local start, stop, wait_exit, curl, sleep =
  http.start, http.stop, http.wait_exit, http.curl, http.sleep

local J = "application/json"

describe("moonfm serve", function()
  local base, srv
  setup(function()
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16))
    base = e2e.tmpdir("B")
    write_model(base .. "/model")
    srv = start(base)
  end)
  teardown(function()
    if srv then stop(srv) end
  end)

  it("answers /ping and /execution-parameters", function()
    local st, body = curl(srv.port, "/ping")
    assert.equal(200, st)
    assert.equal("", body)
    st, body = curl(srv.port, "/execution-parameters")
    assert.equal(200, st)
    assert.equal('{"MaxConcurrentTransforms":2,"BatchStrategy":'
      .. '"MULTI_RECORD","MaxPayloadInMB":6}', body)
  end)

  it("answers every request form", function()
    local st, body = curl(srv.port, "/invocations",
                          { type = J, body = '{"user": "u1", "k": 3}' })
    assert.equal(200, st)
    assert.equal('{"predictions":[{"items":["i1","i2","i3"],'
      .. '"scores":[1,0.5,0]}]}', body)
    st, body = curl(srv.port, "/invocations", { type = J, body =
      '{"instances": [{"user": "u3", "k": 3}, {"user": "u2", "items": '
      .. '["i1", "i5"]}, {"user": "u1", "k": 1, "exclude_seen": false}]}' })
    assert.equal(200, st)
    assert.equal('{"predictions":[{"items":["i4","i2","i3"],"scores":'
      .. '[2,1,1]},{"items":["i1","i5"],"scores":[0,2]},{"items":["i4"],'
      .. '"scores":[2]}]}', body)
    -- ALS fold-in of a new user; the given items are not recommended.
    st, body = curl(srv.port, "/invocations", { type = J, body =
      '{"interactions": ["i4"], "k": 2}' })
    assert.equal(200, st)
    assert.matches('^{"predictions":%[{"items":%["i1","i2"%]', body)
    st, body = curl(srv.port, "/invocations", {
      type = "application/jsonlines", accept = "application/jsonlines",
      body = '{"user": "u2", "k": 1}\n{"user": "u1", "k": 1}\n' })
    assert.equal(200, st)
    assert.equal('{"items":["i5"],"scores":[2]}\n'
      .. '{"items":["i1"],"scores":[1]}\n', body)
    st, body = curl(srv.port, "/invocations",
                    { type = "text/csv", body = "u2\r\nu3\n" })
    assert.equal(200, st)
    assert.matches('^{"predictions":%[{"items":%["i5","i3","i2","i1","i4"%]',
                   body)
  end)

  it("refuses bad requests with a reason and keeps serving", function()
    local cases = {
      { '{"user": "nobody"}', J, nil, 400, "user: unknown user id 'nobody'" },
      { '{"user": "u1", "k": "x"}', J, nil, 400, "k: must be" },
      { '{"user": ', J, nil, 400, "invalid JSON" },
      { '{"instances": [{"user": "u1", "items": ["zz"]}]}', J, nil, 400,
        "instances[0].items[0]: unknown item id 'zz'" },
      { '{"user": "u1"}', "application/x-protobuf", nil, 415,
        "unsupported Content-Type" },
      { '{"user": "u1"}', J, "text/html", 406, "unsupported Accept" },
    }
    for _, c in ipairs(cases) do
      local st, body = curl(srv.port, "/invocations",
                            { body = c[1], type = c[2], accept = c[3] })
      assert.equal(c[4], st)
      assert.matches(c[5], body, 1, true)
    end
    -- Each refusal is in the log too, with its reason (a caller such as
    -- Batch Transform reports only the status).
    local log = e2e.read(srv.dir .. "/err")
    assert.matches("WARNING serve: POST /invocations: 400 user: unknown "
                   .. "user id 'nobody'", log, 1, true)
    assert.matches("WARNING serve: POST /invocations: 406 unsupported "
                   .. "Accept 'text/html'", log, 1, true)
    assert.equal(404, (curl(srv.port, "/nothing")))
    assert.equal(405, (curl(srv.port, "/invocations")))
    assert.equal(200, (curl(srv.port, "/ping")))
  end)

  it("names the allowed methods in a 405", function()
    -- RFC 9110 asks for an Allow header; there was none.
    for _, c in ipairs {
      { "GET", "/invocations", "POST" }, { "OPTIONS", "/invocations", "POST" },
      { "PUT", "/invocations", "POST" }, { "POST", "/ping", "GET, HEAD" },
      { "DELETE", "/execution-parameters", "GET, HEAD" } } do
      local st, body, headers = curl(srv.port, c[2], { method = c[1] })
      assert.equal(405, st)
      assert.matches("use ", body, 1, true)
      assert.matches("\nAllow: " .. c[3] .. "\r\n", headers, 1, true)
    end
    assert.equal(200, (curl(srv.port, "/execution-parameters",
                            { method = "HEAD" })))
  end)

  it("answers /ping beside hundreds of idle connections", function()
    -- The limit was 64 per worker + 64 (192 here): past it /ping waited in
    -- the backlog with no answer and no word in the log.
    assert.equal(200, http.ping_beside_idle(srv.port, 300, "/ping"))
    assert.equal(200, (curl(srv.port, "/ping")))
    -- At the limit (here set by the descriptors: 200 - 64) the log says so.
    local s = start(base, nil, nil, "ulimit -n 200;")
    http.ping_beside_idle(s.port, 150, "/ping")
    assert.equal(200, (curl(s.port, "/ping")))
    assert.equal(0, stop(s))
    assert.matches("WARNING serve: 136 connections open, the most served at "
                   .. "once", e2e.read(s.dir .. "/err"), 1, true)
  end)

  it("answers 413 beyond 6 MiB, chunked or not", function()
    local big = e2e.tmpdir("big") .. "/7mb"
    os.execute("head -c 7000000 /dev/zero > " .. q(big))
    local st, body = curl(srv.port, "/invocations", { type = J, file = big })
    assert.equal(413, st)
    assert.matches("SAGEMAKER_MAX_PAYLOAD_IN_MB", body, 1, true)
    assert.matches("WARNING serve: POST /invocations: 413 body over "
                   .. "6291456 bytes", e2e.read(srv.dir .. "/err"), 1, true)
    st = curl(srv.port, "/invocations", { type = J, file = big,
                                          chunked = true })
    assert.equal(413, st)
    -- "Expect: 100-continue" (curl's above 1 MB): the 413 comes before
    -- the body, and nothing is uploaded; without it, the body is read.
    local function upload(expect)
      local p = io.popen(string.format("curl -s -o /dev/null -w '%%{http_code} "
        .. "%%{size_upload}' -H 'Content-Type: application/json' -H %s "
        .. "--expect100-timeout 20 --data-binary @%s "
        .. "http://127.0.0.1:%d/invocations", q(expect), q(big), srv.port))
      local out = p:read("a")
      p:close()
      return out
    end
    assert.equal("413 0", upload("Expect: 100-continue"))
    assert.equal("413 7000000", upload("Expect:"))
    assert.equal(200, (curl(srv.port, "/ping")))
  end)

  it("takes larger bodies with SAGEMAKER_MAX_PAYLOAD_IN_MB", function()
    local s = start(base, { SAGEMAKER_MAX_PAYLOAD_IN_MB = "8" })
    local big = e2e.tmpdir("big") .. "/7mb"
    os.execute("head -c 7000000 /dev/zero > " .. q(big))
    local st, body = curl(s.port, "/invocations", { type = J, file = big })
    assert.equal(400, st) -- read in full, then found not to be JSON
    assert.matches("invalid JSON", body, 1, true)
    assert.equal(0, stop(s))
  end)

  it("closes a connection whose body trickles past the timeout", function()
    local s = start(base, { SAGEMAKER_MODEL_SERVER_TIMEOUT = "2" })
    local slow = e2e.tmpdir("slow-body") .. "/5kb"
    e2e.write(slow, ("x"):rep(5000))
    -- 1,000 bytes a second (curl sends them at once, then waits): 5 s for
    -- the body, no gap as long as the 2 s a connection may idle.
    local t0 = core.clock()
    local st = curl(s.port, "/invocations", { type = J, file = slow,
                                              rate = 1000 })
    assert.equal(0, st) -- closed without an answer
    assert.is_true(core.clock() - t0 < 4.5)
    assert.equal(200, (curl(s.port, "/ping")))
    assert.equal(0, stop(s))
    assert.matches("POST /invocations: the request body took more than 2 s "
                   .. "(SAGEMAKER_MODEL_SERVER_TIMEOUT); closing the "
                   .. "connection\n", e2e.read(s.dir .. "/err"), 1, true)
    assert.not_matches("internal error", e2e.read(s.dir .. "/err"), 1, true)
  end)

  it("says 503 on /ping while the model loads, then 200", function()
    local s = start(base, { MOONFM_SERVE_LOAD_DELAY_MS = "1500" })
    assert.equal(503, (curl(s.port, "/ping")))
    local seen200
    for _ = 1, 100 do
      if curl(s.port, "/ping") == 200 then
        seen200 = true
        break
      end
      sleep(0.05)
    end
    assert.is_true(seen200)
    assert.equal(0, stop(s))
  end)

  it("listens on SAGEMAKER_BIND_TO_PORT only", function()
    assert.equal(200, (curl(srv.port, "/ping")))
    assert.equal(0, (curl(srv.port + 1, "/ping")))
  end)

  it("exits 2 for a bad port and 1 without a model", function()
    for _, p in ipairs { "0", "65536", "http", "-1" } do
      local code, _, err = e2e.run({ "serve" }, { env = {
        SAGEMAKER_BASE_DIR = base, SAGEMAKER_BIND_TO_PORT = p } })
      assert.equal(2, code)
      assert.matches("SAGEMAKER_BIND_TO_PORT", err, 1, true)
    end
    -- An answer type moonfm does not write is refused at start, not
    -- replaced by JSON on every request.
    local code, _, err = e2e.run({ "serve" }, { env = {
      SAGEMAKER_BASE_DIR = base, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT = "text/csv" } })
    assert.equal(2, code)
    assert.matches("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT must be", err, 1, true)
    local empty = e2e.tmpdir("nomodel")
    local s = start(empty)
    local code = wait_exit(s, 10)
    assert.equal(1, code)
    assert.matches("cannot serve: .*model", e2e.read(s.dir .. "/err"))
    -- The training log's format (rule 83) and SM_LOG_LEVEL (rule 49), for
    -- the Lua side's lines and the C side's alike.
    local stamp = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ "
    -- A port another test holds would fail to listen: try a few.
    local function serve_empty(level)
      local code, err
      for _ = 1, 10 do
        code, _, err = e2e.run({ "serve" }, { env = {
          SAGEMAKER_BASE_DIR = empty, SM_LOG_LEVEL = level,
          SAGEMAKER_BIND_TO_PORT = tostring(math.random(20000, 60000)) } })
        if not err:find("cannot listen", 1, true) then break end
      end
      return code, nil, err
    end
    local c1, _, e1 = serve_empty("20")
    assert.equal(1, c1)
    assert.matches(stamp .. "INFO serve: listening on", e1)
    assert.matches(stamp .. "ERROR serve: cannot serve: ", e1)
    local c2, _, e2 = serve_empty("40")
    assert.equal(1, c2)
    assert.is_nil(e2:find("listening on", 1, true), e2)
    assert.matches(stamp .. "ERROR serve: cannot serve: ", e2)
  end)

  it("finishes a request in flight on SIGTERM and exits within 25 s",
     function()
    local d = e2e.tmpdir("slow")
    e2e.write(d .. "/serve.lua", [[
      return { predict_fn = function(data, model)
        local t = os.clock() + 1.0
        while os.clock() < t do end
        return model.predict(data)
      end }]])
    local s = start(base, { MOONFM_SERVE_HANDLER = d .. "/serve.lua" })
    os.execute(string.format("curl -s -o %s/body -w '%%{http_code}' -H "
      .. "'Content-Type: application/json' -d '{\"user\": \"u2\", \"k\": 1}' "
      .. "http://127.0.0.1:%d/invocations > %s/code &", q(d), s.port, q(d)))
    sleep(0.4)
    local t0 = os.time()
    assert.equal(0, stop(s))
    assert.is_true(os.time() - t0 <= 25)
    sleep(0.2)
    assert.equal("200", e2e.read(d .. "/code"))
    -- The handler path re-encodes with cjson: key order is free.
    local body = e2e.read(d .. "/body")
    assert.matches('"items":["i5"]', body, 1, true)
    assert.matches('"scores":[2]', body, 1, true)
    assert.matches("stopped after", e2e.read(s.dir .. "/err"), 1, true)
  end)

  it("reads types and lists in a Lua handler's defaults as the C path does",
     function()
    -- The defaults took only the first Accept entry and only two JSON
    -- lines types, read a CSV header as a user, and refused an empty list
    -- (cjson writes {} for it).
    local d = e2e.tmpdir("defaults")
    e2e.write(d .. "/serve.lua", "return { serve = {} }")
    local s = start(base, { MOONFM_SERVE_HANDLER = d .. "/serve.lua" })
    local got = {}
    for _, c in ipairs {
      { '{"user": "u2", "k": 1}', J, "text/plain, application/json", 200,
        '"items":["i5"]' },
      { '{"user": "u2", "k": 1}', J, "application/jsonlines;q=0.5, "
        .. "application/json", 200, '{"predictions":[' },
      { '{"user": "u2", "k": 1}', J, "application/x-jsonlines", 200,
        '"items":["i5"]' },
      { '{"user": "u2", "k": 1}\r\n', "application/x-ndjson", nil, 200,
        '"items":["i5"]' },
      { "user\r\nu2\r\n", "text/csv; header=present", nil, 200,
        '"items":["i5",' },
      { '{"instances": []}', J, nil, 200, '{"predictions":[]}' },
      { '{"user": "u2", "items": []}', J, nil, 200, '"items":[]' },
      { "\n", "text/csv", nil, 400, "the body has no lines" },
      { '{"user": "u2"}', J, "text/csv", 406, "unsupported Accept" },
    } do
      local st, body = curl(s.port, "/invocations",
                            { body = c[1], type = c[2], accept = c[3] })
      got[#got + 1] = { c, st, body }
    end
    assert.equal(0, stop(s)) -- first: a server left running holds ctest
    for _, g in ipairs(got) do
      local c, st, body = g[1], g[2], g[3]
      assert.equal(c[4], st, c[2] .. " " .. tostring(c[3]))
      assert.matches(c[5], body, 1, true)
    end
  end)

  it("runs a recipe's Lua handlers", function()
    local d = e2e.tmpdir("handler")
    e2e.write(d .. "/serve.lua", [[
      local serve = {}
      function serve.input_fn(body, content_type, model)
        if content_type ~= "text/plain" then
          return model.default_input_fn(body, content_type)
        end
        return { user = body:match("%S+"), k = 2 }
      end
      function serve.output_fn(predictions, accept)
        return table.concat(predictions[1].items, " "), "text/plain; charset=utf-8"
      end
      return { serve = serve }]])
    local s = start(base, { MOONFM_SERVE_HANDLER = d .. "/serve.lua" })
    local st, body = curl(s.port, "/invocations",
                          { type = "text/plain", body = "u2\n" })
    assert.equal(200, st)
    assert.equal("i5 i3", body)
    st, body = curl(s.port, "/invocations",
                    { type = "text/plain", body = "ghost\n" })
    assert.equal(400, st)
    assert.matches("unknown user id 'ghost'", body, 1, true)
    assert.equal(0, stop(s))
  end)
end)
