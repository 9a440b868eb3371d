-- moonfm.checkpoint (spec rules 92-97): names, cleanup of temporaries,
-- newest valid checkpoint, keep N, host-specific names, resume, the
-- schedule, and failed writes that leave the previous checkpoints intact.
local lfs = require "lfs"
local core = require "moonfm.core"
local checkpoint = require "moonfm.checkpoint"

local base = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(base)
local root = string.format("%s/checkpoint-%d", base, core.getpid())
os.execute("rm -rf '" .. root .. "'")
assert(lfs.mkdir(root))
local counter = 0
local function fresh_dir()
  counter = counter + 1
  return string.format("%s/c%d", root, counter)
end

local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function files(dir)
  local t = {}
  for f in lfs.dir(dir) do
    if f ~= "." and f ~= ".." then t[#t + 1] = f end
  end
  table.sort(t)
  return t
end

-- A raw model whose arrays say which epoch they are from.
local function model(epoch)
  local w = string.pack("<ffff", epoch, epoch + 0.5, -epoch, 1)
  return { arrays = {
    { name = "user_factors", dtype = "f32", rows = 2, cols = 2, data = w },
    { name = "adagrad", dtype = "f32", rows = 2, cols = 2, data = w },
  } }
end
local header = { kind = "test", n_users = 2, n_items = 0, factors = 2 }

-- Records log lines instead of printing them.
local function recorder()
  local r = { lines = {} }
  local function rec(level)
    return function(fmt, ...)
      r.lines[#r.lines + 1] = level .. " " .. string.format(fmt, ...)
    end
  end
  r.info, r.warn, r.debug = rec("INFO"), rec("WARNING"), rec("DEBUG")
  function r:has(s)
    for _, l in ipairs(self.lines) do
      if l:find(s, 1, true) then return true end
    end
    return false
  end
  return r
end

local function new(opts)
  opts.log = opts.log or recorder()
  return assert(checkpoint.new(opts))
end

describe("moonfm.checkpoint", function()
  it("names checkpoints by epoch, step and host", function()
    assert.equals("checkpoint-000012.moonfm", checkpoint.name(12))
    assert.equals("checkpoint-000012-000000345.moonfm",
                  checkpoint.name(12, 345))
    assert.equals("checkpoint-000003.moonfm.algo-2",
                  checkpoint.name(3, 0, "algo-2"))
    assert.equals("checkpoint-1234567.moonfm", checkpoint.name(1234567))
    assert.has_error(function() checkpoint.name(-1) end)
    assert.has_error(function() checkpoint.name(1.5) end)
  end)

  it("parses only its own names", function()
    assert.same({ 12, 0 }, { checkpoint.parse("checkpoint-000012.moonfm") })
    assert.same({ 12, 345 },
                { checkpoint.parse("checkpoint-000012-000000345.moonfm") })
    assert.same({ 3, 0 }, { checkpoint.parse("checkpoint-000003.moonfm.algo-2",
                                             "algo-2") })
    assert.is_nil(checkpoint.parse("checkpoint-000003.moonfm.algo-2"))
    assert.is_nil(checkpoint.parse("checkpoint-000003.moonfm.algo-1",
                                   "algo-2"))
    assert.is_nil(checkpoint.parse("checkpoint-000003.moonfm", "algo-2"))
    assert.is_nil(checkpoint.parse(
      ".moonfm-tmp-checkpoint-000009.moonfm.a1b2c3"))
    assert.is_nil(checkpoint.parse("checkpoint-x.moonfm"))
    assert.is_nil(checkpoint.parse("model.moonfm"))
  end)

  it("creates its folder and deletes leftover temporaries", function()
    local dir = fresh_dir() .. "/deep/er"
    local ck = new { dir = dir }
    assert.equals("directory", lfs.attributes(dir, "mode"))
    spit(dir .. "/.moonfm-tmp-checkpoint-000009.moonfm.XXa1b2", "half")
    spit(dir .. "/.moonfm-tmp-x", "")
    spit(dir .. "/notes.txt", "keep me")
    assert.is_true(ck:save(1, model(1), header) ~= nil)
    ck = new { dir = dir }
    assert.same({ "checkpoint-000001.moonfm", "notes.txt" }, files(dir))
    assert.is_true(ck.log:has("INFO checkpoint: deleted 2 leftover " ..
                              "temporary file(s) in " .. dir))
    assert.equals(0, checkpoint.cleanup_temporaries(dir))
    assert.equals(0, checkpoint.cleanup_temporaries(dir .. "/absent"))
  end)

  it("never resumes from a temporary, even a newer-looking one", function()
    local dir = fresh_dir()
    local ck = new { dir = dir }
    assert.truthy(ck:save(2, model(2), header))
    -- a crash after the write but before the rename leaves this:
    assert.is_true(core.mfile_write(dir .. "/.moonfm-tmp-checkpoint-000005." ..
                                    "moonfm.abc123", '{"kind":"test",' ..
                                    '"format":"moonfm"}', {}))
    local m, info = ck:resume { raw = true }
    assert.equals(2, info.epoch)
    assert.equals(model(2).arrays[1].data, m.arrays.user_factors.data)
    ck = new { dir = dir }
    assert.same({ "checkpoint-000002.moonfm" }, files(dir))
  end)

  it("saves atomically, flags checkpoints and keeps the newest N", function()
    local dir = fresh_dir()
    local ck = new { dir = dir, keep = 2 }
    local other = dir .. "/checkpoint-000001.moonfm.algo-9"
    spit(other, "another host's")
    for e = 1, 5 do
      local p = ck:save(e, model(e), header)
      assert.equals(dir .. "/" .. checkpoint.name(e), p)
    end
    assert.same({ "checkpoint-000001.moonfm.algo-9",
                  "checkpoint-000004.moonfm", "checkpoint-000005.moonfm" },
                files(dir))
    local c = ck:latest()
    assert.equals(5, c.epoch)
    assert.is_true(c.summary.checkpoint)
    assert.equals(5, c.summary.header.epoch)
    assert.is_true(ck.log:has("saved " .. dir .. "/checkpoint-000005.moonfm"))
    local n = new { dir = dir, keep = 1 }
    assert.same({ dir .. "/checkpoint-000004.moonfm" }, n:prune())
  end)

  it("orders by epoch then step, not by text", function()
    local dir = fresh_dir()
    local ck = new { dir = dir, keep = 10 }
    assert.truthy(ck:save(9, model(9), header))
    assert.truthy(ck:save(10, model(10), header))
    assert.truthy(ck:save(10, model(11), header, nil, { step = 7 }))
    local list = ck:list()
    assert.same({ 10, 10, 9 }, { list[1].epoch, list[2].epoch, list[3].epoch })
    assert.same({ 7, 0, 0 }, { list[1].step, list[2].step, list[3].step })
    local _, info = ck:resume { raw = true }
    assert.equals(10, info.epoch)
    assert.equals(7, info.step)
    assert.is_true(ck.log:has("resuming from " .. dir ..
                              "/checkpoint-000010-000000007.moonfm " ..
                              "(epoch 10, step 7)"))
  end)

  it("uses host-specific names in multi-host jobs", function()
    local dir = fresh_dir()
    local a = new { dir = dir, host = "algo-1" }
    local b = new { dir = dir, host = "algo-2" }
    assert.truthy(a:save(1, model(1), header))
    assert.truthy(b:save(1, model(21), header))
    assert.truthy(b:save(2, model(22), header))
    assert.truthy(b:save(3, model(23), header))
    assert.same({ "checkpoint-000001.moonfm.algo-1",
                  "checkpoint-000002.moonfm.algo-2",
                  "checkpoint-000003.moonfm.algo-2" }, files(dir))
    local m = a:resume { raw = true }
    assert.equals(model(1).arrays[1].data, m.arrays.user_factors.data)
    assert.has_error(function() checkpoint.new { dir = dir, host = "a/b" } end)
  end)

  it("skips checkpoints that fail their checks, with a warning", function()
    local dir = fresh_dir()
    local ck = new { dir = dir, keep = 5 }
    for e = 1, 4 do assert.truthy(ck:save(e, model(e), header)) end
    -- newest truncated, the one before bit-flipped, the next of another
    -- format version (checksum fixed so only the version is wrong)
    local p4, p3, p2 = dir .. "/checkpoint-000004.moonfm",
                       dir .. "/checkpoint-000003.moonfm",
                       dir .. "/checkpoint-000002.moonfm"
    local s = slurp(p4)
    spit(p4, s:sub(1, 100))
    s = slurp(p3)
    spit(p3, s:sub(1, 200) .. string.char(s:byte(201) ~ 1) .. s:sub(202))
    s = slurp(p2)
    s = s:sub(1, 8) .. string.pack("<I4", 9) .. s:sub(13)
    local body = s:sub(1, #s - 16)
    spit(p2, body .. string.pack("<I4", core.crc32(body)) .. s:sub(#s - 11))
    local c = ck:latest()
    assert.equals(1, c.epoch)
    assert.is_true(ck.log:has("WARNING checkpoint: skipping " .. p4))
    assert.is_true(ck.log:has("truncated"))
    assert.is_true(ck.log:has("checksum mismatch"))
    assert.is_true(ck.log:has("unsupported format version 9"))
    ck.log = recorder()
    local m, info = ck:resume { raw = true }
    assert.equals(1, info.epoch)
    assert.equals(model(1).arrays[2].data, m.arrays.adagrad.data)
    assert.is_true(ck.log:has("skipping " .. p4))
    assert.is_true(ck.log:has("resuming from " .. dir ..
                              "/checkpoint-000001.moonfm (epoch 1)"))
    -- all bad: a fresh start
    spit(dir .. "/checkpoint-000001.moonfm", "garbage")
    assert.is_nil(ck:latest())
    assert.is_nil(ck:resume { raw = true })
  end)

  it("skips a checkpoint whose header and name disagree on the epoch",
     function()
    local dir = fresh_dir()
    local ck = new { dir = dir, keep = 5 }
    assert.truthy(ck:save(1, model(1), header))
    assert.truthy(ck:save(2, model(2), header))
    -- epoch 2's file under the name of epoch 3 (valid checksum)
    os.rename(dir .. "/checkpoint-000002.moonfm", dir .. "/checkpoint-000003.moonfm")
    local _, info = ck:resume { raw = true }
    assert.equals(1, info.epoch)
    assert.is_true(ck.log:has("its header says epoch 2, step 0, its name epoch 3"))
  end)

  it("resumes extras such as a random generator state", function()
    local dir = fresh_dir()
    local ck = new { dir = dir }
    local rng = string.pack("<I8I8I8I8", 11, 22, 33, 44)
    assert.truthy(ck:save(7, model(7), header, nil, {
      extras = { { name = "rng", dtype = "u64", rows = 4, data = rng } } }))
    local _, info = ck:resume { raw = true }
    assert.equals(7, info.epoch)
    assert.equals(rng, info.extras.rng.data)
    assert.is_true(info.checkpoint)
  end)

  it("is due every N epochs or after the time interval", function()
    local now = 0
    local ck = new { dir = fresh_dir(), every = 2, interval = 60,
                     clock = function() return now end }
    assert.is_false(ck:due(1))
    assert.is_true(ck:due(2))
    now = 61
    assert.is_true(ck:due(3))
    assert.is_true(ck:due_time())
    assert.truthy(ck:save(3, model(3), header))
    assert.is_false(ck:due(3))
    local off = new { dir = fresh_dir(), every = 0 }
    assert.is_false(off:due(1))
    local dis = new { dir = fresh_dir(), enabled = false }
    assert.is_false(dis:due(1))
    assert.is_nil(dis:save(1, model(1), header))
    assert.is_nil(dis:resume())
  end)

  it("rejects bad options", function()
    assert.has_error(function() checkpoint.new {} end)
    assert.has_error(function() checkpoint.new { dir = "/x", keep = 0 } end)
    assert.has_error(function() checkpoint.new { dir = "/x", kept = 2 } end,
                     "checkpoint.new: unknown option 'kept'")
    assert.has_error(function() checkpoint.new { dir = "/x", interval = -1 }
                     end)
    local f = fresh_dir()
    spit(f, "a file, not a folder")
    local ck, msg = checkpoint.new { dir = f .. "/sub" }
    assert.is_nil(ck)
    assert.matches("checkpoint: ", msg, 1, true)
  end)

  it("keeps the previous checkpoints when a write fails", function()
    local dir = fresh_dir()
    lfs.mkdir(dir)
    -- A full disk: a 64 KiB tmpfs when mounting is permitted (root).
    if not os.execute("mount -t tmpfs -o size=64k tmpfs '" .. dir ..
                      "' 2>/dev/null") then
      pending("mounting a tmpfs is not permitted here")
      return
    end
    local ok, err = pcall(function()
      local ck = new { dir = dir, keep = 2 }
      assert.truthy(ck:save(1, model(1), header))
      local before = slurp(dir .. "/checkpoint-000001.moonfm")
      local big = { arrays = { { name = "user_factors", dtype = "f32",
                                 rows = 40000, cols = 1,
                                 data = string.rep("\0", 160000) } } }
      local p, msg = ck:save(2, big, header)
      assert.is_nil(p)
      assert.matches("checkpoint: save: ", msg, 1, true)
      assert.matches(dir .. "/checkpoint-000002.moonfm", msg, 1, true)
      assert.same({ "checkpoint-000001.moonfm" }, files(dir))
      assert.equals(before, slurp(dir .. "/checkpoint-000001.moonfm"))
      local _, info = ck:resume { raw = true }
      assert.equals(1, info.epoch)
    end)
    os.execute("umount '" .. dir .. "'")
    assert(ok, err)
  end)
end)

-- Crash safety: a writer killed with SIGKILL at arbitrary moments never
-- leaves a checkpoint that fails its checks; its temporaries are deleted
-- at the next start.  The assertions hold wherever the kill lands.
describe("moonfm.checkpoint crash safety", function()
  it("survives a writer killed at any moment", function()
    local dir = fresh_dir()
    local script = root .. "/writer.lua"
    spit(script, [[
local checkpoint = require "moonfm.checkpoint"
local dir = arg[1]
local ck = assert(checkpoint.new { dir = dir, keep = 3,
                                   log = { info = function() end,
                                           warn = function() end } })
local data = string.rep(string.pack("<f", 1.5), 1 << 20)  -- 4 MiB
for e = 1, 1000 do
  assert(ck:save(e, { arrays = { { name = "w", dtype = "f32",
    rows = 1 << 20, cols = 1, data = data } } },
    { kind = "test" }))
  if e == 1 then io.open(dir .. "/started", "w"):close() end
end
]])
    local env = string.format("LUA_PATH_5_4='%s' LUA_CPATH_5_4='%s'",
                              package.path, package.cpath)
    for round = 1, 4 do
      lfs.mkdir(dir)
      os.remove(dir .. "/started")
      local p = io.popen(string.format("%s lua5.4 %s %s >/dev/null 2>&1 & " ..
                                       "echo $!", env, script, dir))
      local pid = math.tointeger(tonumber(p:read("l")))
      p:close()
      -- Wait (bounded) for the first checkpoint, then let a few more
      -- writes start, and kill.
      for _ = 1, 300 do
        if lfs.attributes(dir .. "/started") then break end
        core.sleep(0.02)
      end
      core.sleep(0.01 * round)
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      os.execute(string.format("while kill -0 %d 2>/dev/null; do " ..
                               "sleep 0.01; done", pid))
      local ck = new { dir = dir, keep = 3 }
      for _, f in ipairs(files(dir)) do
        assert.is_nil(f:find("^%.moonfm%-tmp%-"), f)
      end
      local list = ck:list()
      assert.is_true(#list >= 1)
      for _, c in ipairs(list) do
        local s, msg = require("moonfm.modelfile").inspect(c.path)
        assert.is_table(s, msg)
      end
      local _, info = ck:resume { raw = true }
      assert.equals(list[1].epoch, info.epoch)
    end
  end)
end)
