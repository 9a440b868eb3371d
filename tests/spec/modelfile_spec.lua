-- moonfm.modelfile and moonfm.inspect: round trips of raw models, the
-- header, corruption refused with fail, msg (never a raise or a crash),
-- the .npy exports read back by Debian's numpy, and `moonfm inspect`.
local lfs = require "lfs"
local core = require "moonfm.core"
local modelfile = require "moonfm.modelfile"
local inspect = require "moonfm.inspect"

local base = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(base)
local tmp = string.format("%s/modelfile-%d", base, core.getpid())
os.execute("rm -rf '" .. tmp .. "'")
assert(lfs.mkdir(tmp))

local function f32(t)
  return string.pack("<" .. string.rep("f", #t), table.unpack(t))
end
local function unf32(s)
  local t = { string.unpack("<" .. string.rep("f", #s // 4), s) }
  t[#t] = nil
  return t
end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function spit(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end

-- A small raw model: 4 users, 6 items, 3 factors, biases, id maps.
local NU, NI, K = 4, 6, 3
local function make_model()
  local u, it, ub, ib = {}, {}, {}, {}
  for i = 1, NU * K do u[i] = (i * 37 % 11) / 7 - 0.5 end
  for i = 1, NI * K do it[i] = (i * 13 % 17) / 9 - 0.8 end
  for i = 1, NU do ub[i] = i / 10 end
  for i = 1, NI do ib[i] = -i / 20 end
  local uids = { "alice", "bob", "9007199254740993", "dave" }
  local iids = { "i1", "i2", "i3", "i4", "i5", "item six" }
  local function idarrays(name, ids)
    local offs, at = { 0 }, 0
    for _, s in ipairs(ids) do at = at + #s; offs[#offs + 1] = at end
    return { name = name .. ".ids", dtype = "u8", rows = at, cols = 1,
             data = table.concat(ids) },
           { name = name .. ".offsets", dtype = "i64", rows = #offs, cols = 1,
             data = string.pack("<" .. string.rep("i8", #offs),
                                table.unpack(offs)) }
  end
  local a1, a2 = idarrays("users", uids)
  local b1, b2 = idarrays("items", iids)
  return {
    arrays = {
      { name = "user_factors", dtype = "f32", rows = NU, cols = K,
        data = f32(u) },
      { name = "item_factors", dtype = "f32", rows = NI, cols = K,
        data = f32(it) },
      { name = "user_bias", dtype = "f32", rows = NU, cols = 1,
        data = f32(ub) },
      { name = "item_bias", dtype = "f32", rows = NI, cols = 1,
        data = f32(ib) },
      a1, a2, b1, b2,
    },
  }, { u = u, it = it, ub = ub, ib = ib, uids = uids, iids = iids }
end

local header = { kind = "test", n_users = NU, n_items = NI, factors = K,
                 params = { learning_rate = 0.05, loss = "warp" },
                 metrics = { validation = { ["ndcg@10"] = 0.125,
                                            auc = 0 / 0 } } }

local function save_model(path, opts)
  local m = make_model()
  return modelfile.save(path, m, header, nil, opts)
end

describe("moonfm.modelfile", function()
  it("runs on Lua 5.4", function()
    assert.equals("Lua 5.4", _VERSION)
  end)

  it("saves and loads a raw model, header and extras", function()
    local path = tmp .. "/model.moonfm"
    local m = make_model()
    local rng = string.pack("<I8I8I8I8", 1, 2, 3, 0xdeadbeef)
    assert.is_true(modelfile.save(path, m, header, nil, {
      extras = { { name = "rng_state", dtype = "u64", rows = 4, cols = 1,
                   data = rng } } }))
    for _, map in ipairs { false, true } do
      local got, info = modelfile.load(path, { raw = true, map = map })
      assert.is_table(got)
      for _, a in ipairs(m.arrays) do
        local b = got.arrays[a.name]
        assert.equals(a.data, b.data)
        assert.equals(a.rows, b.rows)
        assert.equals(a.cols or 1, b.cols)
        assert.equals(a.dtype, b.dtype)
      end
      local h = info.header
      assert.equals("test", h.kind)
      assert.equals(NU, h.n_users)
      assert.equals("integer", math.type(h.n_users))
      assert.equals(1, h.format_version)
      assert.equals(core._VERSION, h.moonfm_version)
      assert.equals(0.05, h.params.learning_rate)
      assert.equals(0.125, h.metrics.validation["ndcg@10"])
      -- NaN cannot be JSON: it is stored as null.
      assert.equals(require("cjson").null, h.metrics.validation.auc)
      assert.is_false(info.checkpoint)
      assert.equals(rng, info.extras.rng_state.data)
      assert.equals(rng, info.extras[1].data)
      if map then
        assert.is_userdata(info.file)
        info.file:close()
      end
    end
  end)

  it("marks checkpoints", function()
    local path = tmp .. "/ck.moonfm"
    assert.is_true(save_model(path, { checkpoint = true }))
    local _, info = modelfile.load(path, { raw = true })
    assert.is_true(info.checkpoint)
  end)

  it("raises on misuse", function()
    local m = make_model()
    local p = tmp .. "/misuse.moonfm"
    assert.has_error(function() modelfile.save(p, m, {}) end,
                     "header: field 'kind' (a string) is required")
    assert.has_error(function()
      modelfile.save(p, m, { kind = "x", format_version = 3 })
    end, "header: field 'format_version' is set by moonfm")
    assert.has_error(function() modelfile.save(p, {}, { kind = "x" }) end)
    assert.has_error(function()
      modelfile.save(p, m, { kind = "x" }, nil, { bogus = 1 })
    end, "save: unknown option 'bogus'")
    assert.has_error(function()
      modelfile.save(p, { arrays = { { name = "a", dtype = "f32", rows = 2,
                                       cols = 2, data = "abc" } } },
                     { kind = "x" })
    end)
    assert.has_error(function()
      modelfile.save(p, { arrays = { { name = "a", dtype = "f16", rows = 0,
                                       data = "" } } }, { kind = "x" })
    end)
    assert.is_nil(lfs.attributes(p))
  end)

  it("returns fail, msg naming the path when the write fails", function()
    local p = tmp .. "/no/such/dir/model.moonfm"
    local ok, msg = save_model(p)
    assert.is_nil(ok)
    assert.matches("save: ", msg, 1, true)
    assert.matches(p, msg, 1, true)
  end)

  it("keeps the previous model when a save fails", function()
    local p = tmp .. "/keep.moonfm"
    assert.is_true(save_model(p))
    local before = slurp(p)
    -- A folder where the temporary file would go cannot be replaced.
    local ok, msg = modelfile.save(p .. "/x", make_model(), header)
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.equals(before, slurp(p))
  end)

  it("refuses missing and unknown files", function()
    local ok, msg = modelfile.load(tmp .. "/absent.moonfm")
    assert.is_nil(ok)
    assert.matches("load: " .. tmp .. "/absent.moonfm: ", msg, 1, true)
    spit(tmp .. "/text.moonfm", "user,item\n1,2\n")
    ok, msg = modelfile.load(tmp .. "/text.moonfm")
    assert.is_nil(ok)
    assert.matches("bad magic number", msg, 1, true)
  end)

  it("refuses truncations at every field boundary", function()
    local path = tmp .. "/t.moonfm"
    assert.is_true(save_model(path))
    local s = slurp(path)
    local n = #s
    local hlen = string.unpack("<I8", s, 33)
    local doff = string.unpack("<I8", s, 41)
    local narr = string.unpack("<I4", s, 49)
    local cuts = { 0, 1, 4, 7, 8, 11, 12, 15, 16, 23, 24, 31, 32, 39, 40, 47,
                   48, 51, 52, 55, 56, 63, 64, 64 + hlen - 1, 64 + hlen,
                   doff, n - 16, n - 9, n - 8, n - 1 }
    for i = 0, narr do cuts[#cuts + 1] = doff + 96 * i end
    for i = 0, narr - 1 do
      local off = string.unpack("<I8", s, doff + 96 * i + 72 + 1)
      local nb = string.unpack("<I8", s, doff + 96 * i + 80 + 1)
      cuts[#cuts + 1] = off
      cuts[#cuts + 1] = off + nb
    end
    local bad = tmp .. "/trunc.moonfm"
    for _, c in ipairs(cuts) do
      if c < n then
        spit(bad, s:sub(1, c))
        local ok, msg = modelfile.load(bad, { raw = true })
        assert.is_nil(ok, "cut at " .. c)
        assert.matches(bad, msg, 1, true)
        assert.matches("truncated", msg, 1, true)
        local ok2, msg2 = modelfile.inspect(bad)
        assert.is_nil(ok2)
        assert.matches(bad, msg2, 1, true)
      end
    end
  end)

  it("refuses flipped bits", function()
    local path = tmp .. "/f.moonfm"
    assert.is_true(save_model(path))
    local s = slurp(path)
    local bad = tmp .. "/flip.moonfm"
    for i = 1, #s, 3 do
      local b = s:byte(i) ~ (1 << (i % 8))
      spit(bad, s:sub(1, i - 1) .. string.char(b) .. s:sub(i + 1))
      local ok, msg = modelfile.load(bad, { raw = true, map = i % 2 == 0 })
      assert.is_nil(ok, "byte " .. i)
      assert.matches(bad, msg, 1, true)
    end
  end)

  -- Patches s at byte offset off (0-based) and fixes the checksum, as a
  -- file made by a buggy tool would look.
  local function forge(s, off, bytes)
    s = s:sub(1, off) .. bytes .. s:sub(off + #bytes + 1)
    local body = s:sub(1, #s - 16)
    return body .. string.pack("<I4", core.crc32(body)) .. s:sub(#s - 11)
  end

  it("refuses a wrong version and wrong sizes with a clear message", function()
    local path = tmp .. "/v.moonfm"
    assert.is_true(save_model(path))
    local s = slurp(path)
    local bad = tmp .. "/forged.moonfm"
    local doff = string.unpack("<I8", s, 41)
    local cases = {
      { 8, string.pack("<I4", 2), "unsupported format version 2" },
      { 8, string.pack("<I4", 0), "unsupported format version 0" },
      { 16, string.pack("<I8", #s + 64), "preamble says" },
      { 48, string.pack("<I4", 99999), "directory of 99999 arrays" },
      -- item_factors (entry 2) rows: shape and size disagree
      { doff + 96 + 56, string.pack("<i8", NI + 1),
        "array 'item_factors': shape 7 x 3 does not match" },
      -- item_factors runs past the end
      { doff + 96 + 56, string.pack("<i8i8I8I8", 100000, K, 4096, 1200000),
        "array 'item_factors' runs past the end of the file" },
      { doff + 96 * 2 + 48, string.pack("<I4", 77),
        "array 'user_bias': unknown dtype 77" },
    }
    for _, c in ipairs(cases) do
      spit(bad, forge(s, c[1], c[2]))
      local ok, msg = modelfile.load(bad, { raw = true })
      assert.is_nil(ok)
      assert.matches("load: " .. bad .. ": ", msg, 1, true)
      assert.matches(c[3], msg, 1, true)
    end
  end)

  it("refuses a header that is not moonfm JSON", function()
    local p = tmp .. "/json.moonfm"
    assert.is_true(core.mfile_write(p, "{not json", {}))
    local ok, msg = modelfile.load(p, { raw = true })
    assert.is_nil(ok)
    assert.matches(p .. ": the JSON header is not valid JSON", msg, 1, true)
    assert.is_true(core.mfile_write(p, '{"n_users": 3}', {}))
    ok, msg = modelfile.load(p, { raw = true })
    assert.matches("the header has no 'kind' field", msg, 1, true)
    assert.is_true(core.mfile_write(p, '{"kind": "fm"}', {}))
    ok, msg = modelfile.load(p, { raw = true })
    assert.matches("'format' is not \"moonfm\"", msg, 1, true)
  end)

  it("refuses unknown kinds and kinds it cannot build", function()
    local p = tmp .. "/kind.moonfm"
    assert.is_true(save_model(p))
    local ok, msg = modelfile.load(p)
    assert.is_nil(ok)
    assert.matches("unknown model kind 'test'", msg, 1, true)
    ok, msg = modelfile.load(p, { kind = "als", raw = true })
    assert.matches("holds a 'test' model, not 'als'", msg, 1, true)
    ok, msg = modelfile.load(p, { build = function() error("no room", 0) end })
    assert.matches("cannot build a 'test' model from the header: no room",
                   msg, 1, true)
  end)

  it("exports .npy and id lists that numpy reads", function()
    local m, ref = make_model()
    local dir = tmp .. "/export"
    lfs.mkdir(dir)
    local paths = assert(modelfile.export_npy(m, dir))
    assert.equals(dir .. "/user_factors.npy", paths.user)
    assert.equals(dir .. "/item_ids.txt", paths.items)
    local lines = {}
    for l in io.lines(paths.users) do lines[#lines + 1] = l end
    assert.same(ref.uids, lines)
    -- env -u: an ASan run preloads libasan, which python3 must not get.
  local py = "env -u LD_PRELOAD /usr/bin/python3"
    local probe = io.popen(py .. " -c 'import numpy' 2>&1")
    local err = probe:read("a")
    probe:close()
    if err ~= "" then
      pending("Debian's python3-numpy is not installed")
      return
    end
    -- numpy: shapes, dtypes, and the top-3 items of each user by
    -- u.i + bu + bi, compared with the same computed here.
    local script = tmp .. "/check.py"
    spit(script, string.format([[
import numpy as np
d = %q
U = np.load(d + "/user_factors.npy"); I = np.load(d + "/item_factors.npy")
bu = np.load(d + "/user_bias.npy"); bi = np.load(d + "/item_bias.npy")
users = open(d + "/user_ids.txt").read().splitlines()
items = open(d + "/item_ids.txt").read().splitlines()
assert U.dtype == np.float32 and I.dtype == np.float32
assert U.shape == (len(users), %d) and I.shape == (len(items), %d)
assert bu.shape == (len(users),) and bi.shape == (len(items),)
S = U @ I.T + bu[:, None] + bi[None, :]
for u in range(len(users)):
    top = np.argsort(-S[u], kind="stable")[:3]
    print(users[u] + ":" + ",".join(items[i] for i in top))
]], dir, K, K))
    local p = io.popen(py .. " " .. script .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    local want = {}
    for u = 1, NU do
      local scores = {}
      for i = 1, NI do
        local s = ref.ub[u] + ref.ib[i]
        for k = 1, K do
          s = s + ref.u[(u - 1) * K + k] * ref.it[(i - 1) * K + k]
        end
        scores[#scores + 1] = { i = i, s = s }
      end
      table.sort(scores, function(a, b)
        if a.s ~= b.s then return a.s > b.s end
        return a.i < b.i
      end)
      want[#want + 1] = ref.uids[u] .. ":" .. ref.iids[scores[1].i] .. "," ..
                        ref.iids[scores[2].i] .. "," .. ref.iids[scores[3].i]
    end
    assert.equals(table.concat(want, "\n") .. "\n", out)
  end)

  it("writes zeros for missing biases", function()
    local m = make_model()
    local only = { arrays = { m.arrays[1], m.arrays[2] } }
    local dir = tmp .. "/nobias"
    lfs.mkdir(dir)
    local paths = assert(modelfile.export_npy(only, dir, nil,
                                              { suffix = ".algo-1" }))
    assert.equals(dir .. "/user_bias.npy.algo-1", paths.user_bias)
    local s = slurp(paths.item_bias)
    assert.equals(128 + 4 * NI, #s)
    assert.equals(string.rep("\0", 4 * NI), s:sub(129))
    assert.matches("'shape': (6,)", s, 1, true)
    assert.is_nil(paths.users)
  end)
end)

describe("moonfm.modelfile with real models", function()
  local function same_recs(a, b, n)
    local ia, sa = core.recommend(a, nil, n)
    local ib, sb = core.recommend(b, nil, n)
    assert.same(ia, ib)
    assert.same(sa, sb)
  end

  it("round-trips a moonfm.Factors model in both modes", function()
    if not core.factors then pending("core.factors is not built") return end
    local m = core.factors({ { 1, 0 }, { 0, 1 }, { 0.5, 0.25 } },
                           { { 1, 2 }, { 3, -1 }, { 0, 0.5 }, { -2, 1 } },
                           { 0.1, 0.2, 0.3 }, nil)
    local p = tmp .. "/factors.moonfm"
    assert.is_true(modelfile.save(p, m, { kind = "factors", n_users = 3,
                                          n_items = 4, factors = 2 }))
    for _, map in ipairs { false, true } do
      local got, info = modelfile.load(p, { map = map })
      assert.is_userdata(got, info)
      assert.same({ 3, 4, 2 }, { got:dims() })
      same_recs(m, got, 4)
      if info.file then info.file:close() end
    end
    -- A file whose sizes disagree with the model built from the header.
    local bad = tmp .. "/factors-bad.moonfm"
    assert.is_true(modelfile.save(bad, m, { kind = "factors", n_users = 3,
                                            n_items = 4, factors = 3 }))
    local ok, msg = modelfile.load(bad)
    assert.is_nil(ok)
    assert.matches("array 'user_factors' is f32 3 x 2 in the file but the " ..
                   "model expects f32 3 x 3", msg, 1, true)
  end)

  it("round-trips an ALS model", function()
    if not core.als_new then pending("core.als_new is not built") return end
    local m = core.als_new(6, 9, { factors = 3, seed = 7 })
    local p = tmp .. "/als.moonfm"
    assert.is_true(modelfile.save(p, m, { kind = "als", n_users = 6,
      n_items = 9, factors = 3, params = { factors = 3, seed = 7 } }))
    local got = assert(modelfile.load(p))
    same_recs(m, got, 5)
  end)

  it("exports a model that numpy reads like model:recommend", function()
    if not core.factors then pending("core.factors is not built") return end
    local u, it = {}, {}
    for i = 1, 5 do u[i] = { i / 3, (i * 7 % 5) / 4 - 0.5, 1 / i } end
    for i = 1, 8 do it[i] = { (i * 3 % 7) / 5, -i / 8, (i % 3) / 2 } end
    local ib = {}
    for i = 1, 8 do ib[i] = (i % 4) / 10 end
    local m = core.factors(u, it, nil, ib)
    local dir = tmp .. "/export-model"
    lfs.mkdir(dir)
    local paths = assert(modelfile.export_npy(m, dir))
    local probe = io.popen("env -u LD_PRELOAD /usr/bin/python3 -c " ..
                           "'import numpy' 2>&1")
    local err = probe:read("a")
    probe:close()
    if err ~= "" then
      pending("Debian's python3-numpy is not installed")
      return
    end
    local script = tmp .. "/check-model.py"
    spit(script, string.format([[
import numpy as np
d = %q
U = np.load(d + "/user_factors.npy"); I = np.load(d + "/item_factors.npy")
bu = np.load(d + "/user_bias.npy"); bi = np.load(d + "/item_bias.npy")
assert U.shape == (5, 3) and I.shape == (8, 3) and bu.shape == (5,)
assert not bu.any()
S = U @ I.T + bu[:, None] + bi[None, :]
for u in range(5):
    print(",".join(str(i + 1) for i in np.argsort(-S[u], kind="stable")[:4]))
]], dir))
    local p = io.popen("env -u LD_PRELOAD /usr/bin/python3 " .. script ..
                       " 2>&1")
    local out = p:read("a")
    assert.is_true(p:close(), out)
    local items = m:recommend(nil, 4)
    local want = {}
    for i = 1, 5 do want[i] = table.concat(items[i], ",") end
    assert.equals(table.concat(want, "\n") .. "\n", out)
    assert.is_string(paths.user_bias)
  end)
end)

describe("moonfm.inspect", function()
  local function sink()
    local t = { text = "" }
    function t:write(...)
      for _, s in ipairs { ... } do self.text = self.text .. s end
    end
    return t
  end

  it("prints the summary and header of a valid model, exit 0", function()
    local p = tmp .. "/insp.moonfm"
    assert.is_true(save_model(p))
    local out, err = sink(), sink()
    assert.equals(0, inspect.main(p, out, err))
    assert.equals("", err.text)
    local lines = {}
    for l in out.text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("kind: test", lines[1])
    assert.equals("version: format 1, moonfm " .. core._VERSION, lines[2])
    assert.equals("users: 4", lines[3])
    assert.equals("items: 6", lines[4])
    assert.equals("factors: 3", lines[5])
    assert.equals("metrics: validation ndcg@10=0.125", lines[6])
    assert.equals("type: model", lines[7])
    assert.matches('"learning_rate": 0.05', out.text, 1, true)
    assert.matches("user_factors%s+f32%s+4 x 3", out.text)
  end)

  -- A model whose users.offsets go back (the ids overlap): the file's
  -- checksums hold, but serve refuses it.
  local function damaged_model(kind)
    local m = make_model()
    for _, a in ipairs(m.arrays) do
      if a.name == "users.offsets" then
        a.data = string.pack("<i8i8i8i8i8", 0, 5, 3, 20, 24)
      end
    end
    local h = {}
    for k, v in pairs(header) do h[k] = v end
    h.kind = kind
    local p = tmp .. "/insp-" .. kind .. ".moonfm"
    assert.is_true(modelfile.save(p, m, h))
    return p
  end

  it("says whether serve would answer from the model", function()
    local p = tmp .. "/insp-serve.moonfm"
    assert.is_true(save_model(p))
    local out = sink()
    assert.equals(0, inspect.main(p, out, sink()))
    assert.matches("\nserve: ready\n", out.text, 1, true)
    -- A kind of one's own: the refusal is a line of the report.
    p = damaged_model("test")
    out = sink()
    assert.equals(0, inspect.main(p, out, sink()))
    assert.matches("\nserve: refused: id map users: [^\n]*out of order",
                   out.text)
    assert.not_matches(p, out.text:match("serve: [^\n]*"), 1, true)
  end)

  it("exits 3 for an fm or als model that serve would refuse", function()
    local p = damaged_model("als")
    local out, err = sink(), sink()
    assert.equals(3, inspect.main(p, out, err))
    assert.equals("", out.text)
    assert.matches("^" .. p:gsub("%p", "%%%0") ..
                   ": id map users: [^\n]*out of order[^\n]*\n$", err.text)
  end)

  it("gives a logged metric's final or last epoch's value, not its history",
     function()
    local h = {}
    for k, v in pairs(header) do h[k] = v end
    h.metrics = {
      ["test:auc"] = { split = "test", name = "auc", kind = "score",
                       epochs = { { epoch = 1, value = 0.5 },
                                  { epoch = 2, value = 0.75 } } },
      ["train:loss"] = { split = "train", name = "loss", kind = "loss",
                         epochs = { { epoch = 1, value = 3 } }, final = 2.5 },
    }
    local p = tmp .. "/insp-metrics.moonfm"
    assert.is_true(modelfile.save(p, make_model(), h))
    local out = sink()
    assert.equals(0, inspect.main(p, out, sink()))
    assert.matches("\nmetrics: test:auc=0.75 (epoch 2), train:loss=2.5\n",
                   out.text, 1, true)
  end)

  it("says checkpoint and epoch for a checkpoint", function()
    local p = tmp .. "/insp-ck.moonfm"
    local h = {}
    for k, v in pairs(header) do h[k] = v end
    h.epoch = 3
    assert.is_true(modelfile.save(p, make_model(), h, nil,
                                  { checkpoint = true }))
    local out = sink()
    assert.equals(0, inspect.main(p, out, sink()))
    assert.matches("type: checkpoint (epoch 3)", out.text, 1, true)
  end)

  it("exits 3 with one line for an invalid file", function()
    local p = tmp .. "/insp-bad.moonfm"
    assert.is_true(save_model(p))
    local s = slurp(p)
    spit(p, s:sub(1, #s - 5))
    local out, err = sink(), sink()
    assert.equals(3, inspect.main(p, out, err))
    assert.equals("", out.text)
    assert.matches("^" .. p:gsub("%p", "%%%0") .. ": [^\n]+\n$", err.text)
    assert.matches("truncated", err.text, 1, true)
    err = sink()
    assert.equals(3, inspect.main(tmp .. "/nothing-here", sink(), err))
    assert.matches("No such file", err.text, 1, true)
    assert.equals(2, inspect.main(nil, sink(), sink()))
  end)

  it("pretty-prints JSON with sorted keys", function()
    assert.equals('{\n  "a": [1, 2],\n  "b": {\n    "c": "x"\n  }\n}',
                  inspect.pretty { b = { c = "x" }, a = { 1, 2 } })
    assert.equals("0.1", inspect.pretty(0.1))
    assert.equals("3", inspect.pretty(3.0))
  end)
end)
