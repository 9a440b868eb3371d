-- moonfm.model: one API over fm and als, checked on a small data set
-- against references computed here from the training rows.
local lfs = require "lfs"
local core = require "moonfm.core"
local errors = require "moonfm.errors"
local model = require "moonfm.model"
local modelfile = require "moonfm.modelfile"

local root = os.getenv("MOONFM_TEST_TMP") or "/tmp"
lfs.mkdir(root)
local tmp = string.format("%s/model-%d", root, core.getpid())

local function sh(cmd) assert(os.execute(cmd)) end
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local NU, NI = 6, 9

-- Training pairs: user u likes item i when (u + i) % 3 == 0 or
-- (u * i) % 5 == 1; ids are strings "u1".."u6", "i1".."i9".
local function pairs_list()
  local us, is = {}, {}
  for u = 1, NU do
    for i = 1, NI do
      if (u + i) % 3 == 0 or (u * i) % 5 == 1 then
        us[#us + 1] = "u" .. u
        is[#is + 1] = "i" .. i
      end
    end
  end
  return us, is
end

local function make_train()
  local us, is = pairs_list()
  return core.interactions_from_triplets(core.idmap(), core.idmap(), us, is)
end

-- user id -> set of item ids, from the training rows themselves.
local function seen_by_id(train)
  local out = {}
  local users, items = train:users(), train:items()
  for u = 1, NU do
    local s = {}
    for _, i in ipairs((train:row(u))) do s[items:get(i)] = true end
    out[users:get(u)] = s
  end
  return out
end

local function fitted(algorithm, train, epochs)
  local m = model.new { algorithm = algorithm, factors = 4, threads = 1,
                        seed = 7 }
  for _ = 1, epochs or 3 do assert(m:fit(train)) end
  m:set_train(train)
  return m
end

local function raises(category, fn)
  local ok, e = pcall(fn)
  assert.is_false(ok)
  assert.is_true(errors.is(e), "not a moonfm error: " .. tostring(e))
  assert.equals(category, e.category)
  return e
end

describe("moonfm.model", function()
  local train
  setup(function()
    sh("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'")
    train = make_train()
  end)
  teardown(function()
    train:close()
    sh("rm -rf '" .. tmp .. "'")
  end)

  it("new: fm by default, als, unknown algorithms refused", function()
    assert.equals("fm", model.new().algorithm)
    assert.equals("als", model.new { algorithm = "als" }.algorithm)
    local e = raises("HyperparameterError", function()
      model.new { algorithm = "svd" }
    end)
    assert.matches("algorithm 'svd' is not one of fm, als", e.message, 1, true)
    raises("HyperparameterError", function()
      model.new { algorithm = "fm", factors = 0 }
    end)
    assert.has_error(function() model.new("fm") end)
  end)

  for _, algorithm in ipairs { "fm", "als" } do
    describe(algorithm, function()
      it("fits one epoch at a time, sized by the id maps", function()
        local m = model.new { algorithm = algorithm, factors = 4, threads = 1 }
        local r1 = assert(m:fit(train))
        assert.equals(1, r1.epoch)
        assert.equals(1, r1.epochs)
        assert.equals("number", type(r1.loss))
        assert.is_true(r1.seconds >= 0)
        local r2 = assert(m:fit(train))
        assert.equals(2, r2.epoch)
        assert.equals(2, m.epoch)
        local nu, ni = m:core():shape()
        assert.equals(NU, nu)
        assert.equals(NI, ni)
        assert.equals(train:users(), m.users)
        m:close()
      end)

      it("evaluates to metrics in [0, 1], training items excluded",
         function()
        local m = fitted(algorithm, train)
        -- Test pairs: two unseen items per user, and one seen pair.
        local tu, ti = {}, {}
        local seen = seen_by_id(train)
        for u = 1, NU do
          local n = 0
          for i = 1, NI do
            if n < 2 and not seen["u" .. u]["i" .. i] then
              tu[#tu + 1], ti[#ti + 1], n = "u" .. u, "i" .. i, n + 1
            end
          end
        end
        local su, si = pairs_list()
        tu[#tu + 1], ti[#ti + 1] = su[1], si[1]
        local test = core.interactions_from_triplets(train:users(),
                                                     train:items(), tu, ti)
        local r = assert(m:evaluate(test, { k = { 3 } }))
        for _, name in ipairs { "precision@3", "recall@3", "ndcg@3", "auc" } do
          local v = r[name]
          assert.equals("number", type(v), name)
          assert.is_true(v >= 0 and v <= 1, name .. " = " .. tostring(v))
        end
        assert.equals(NU, r.counts.users)
        assert.equals(1, r.counts.excluded_test_items)
        -- exclude = false keeps the seen pair.
        r = assert(m:evaluate(test, { k = { 3 }, exclude = false }))
        assert.equals(0, r.counts.excluded_test_items)
        test:close()
        m:close()
      end)

      it("recommends item ids, never training items, in score order",
         function()
        local m = fitted(algorithm, train)
        local seen = seen_by_id(train)
        local ids = { "u3", "u1", "u6" }
        local recs = m:recommend(ids, 4)
        assert.equals(3, #recs)
        for j, r in ipairs(recs) do
          assert.equals(ids[j], r.user)
          local n_seen = 0
          for _ in pairs(seen[r.user]) do n_seen = n_seen + 1 end
          assert.equals(math.min(4, NI - n_seen), #r.items)
          assert.equals(#r.items, #r.scores)
          for n, item in ipairs(r.items) do
            assert.matches("^i%d$", item)
            assert.is_nil(seen[r.user][item], r.user .. " saw " .. item)
            if n > 1 then assert.is_true(r.scores[n - 1] >= r.scores[n]) end
          end
          -- The same ranking as core.recommend on indices.
          local want = core.recommend(m:core(), { train:users():find(r.user) },
                                      4, { exclude = train })
          for n, i in ipairs(want[1]) do
            assert.equals(train:items():get(i), r.items[n])
          end
        end
        -- include_seen brings the training items back.
        local all = m:recommend({ "u1" }, NI, { include_seen = true })[1]
        assert.equals(NI, #all.items)
        m:close()
      end)

      it("gives unknown users an empty list", function()
        local m = fitted(algorithm, train, 1)
        local recs = m:recommend({ "nobody", "u2", 42 }, 3)
        assert.same({ user = "nobody", items = {}, scores = {} }, recs[1])
        assert.equals(3, #recs[2].items)
        assert.same({ user = 42, items = {}, scores = {} }, recs[3])
        assert.same({ { user = "x", items = {}, scores = {} } },
                    m:recommend({ "x" }, 3))
        m:close()
      end)

      it("saves the model file and the exports, loaded back with the same "
         .. "id maps", function()
        local m = fitted(algorithm, train, 2)
        local dir = tmp .. "/save-" .. algorithm
        sh("mkdir -p '" .. dir .. "'")
        local path = assert(m:save(dir, { metrics = { auc = 0.5 } }))
        assert.equals(dir .. "/model.moonfm", path)
        for _, f in ipairs { "model.moonfm", "user_factors.npy",
                             "item_factors.npy", "user_ids.txt",
                             "item_ids.txt" } do
          assert.equals("file", lfs.attributes(dir .. "/" .. f, "mode"), f)
        end
        assert.equals(table.concat(train:users():ids(), "\n") .. "\n",
                      slurp(dir .. "/user_ids.txt"))
        assert.equals(table.concat(train:items():ids(), "\n") .. "\n",
                      slurp(dir .. "/item_ids.txt"))
        local npy = slurp(dir .. "/item_factors.npy")
        assert.equals("\147NUMPY", npy:sub(1, 6))
        assert.matches("'shape': (" .. NI .. ", 4)", npy, 1, true)

        local loaded, info = modelfile.load(path)
        assert.is_not_nil(loaded, info)
        assert.equals(algorithm, info.header.kind)
        assert.equals(2, info.header.epoch)
        assert.equals(0.5, info.header.metrics.auc)
        assert.same(train:users():ids(), info.users:ids())
        assert.same(train:items():ids(), info.items:ids())
        local ia, sa = core.recommend(m:core(), nil, 5, { exclude = train })
        local ib, sb = core.recommend(loaded, nil, 5, { exclude = train })
        assert.same(ia, ib)
        for u = 1, NU do
          for n = 1, #sa[u] do
            assert.is_true(math.abs(sa[u][n] - sb[u][n]) < 1e-6)
          end
        end

        -- from_file: the same recommendations through the model API.
        local back = model.from_file(loaded, info)
        assert.equals(algorithm, back.algorithm)
        assert.equals(2, back.epoch)
        back:set_train(train)
        local ids = { "u1", "u4", "zz" }
        local want, got = m:recommend(ids, 3), back:recommend(ids, 3)
        for j = 1, #ids do assert.same(want[j].items, got[j].items) end
        -- It trains on from where it was.
        assert.equals(3, assert(back:fit(train)).epoch)
        back:close()
        m:close()
      end)
    end)
  end

  it("popularity ranks items by their number of users", function()
    local pop = model.popularity(train)
    local counts = {}
    for i = 1, NI do counts[i] = 0 end
    for u = 1, NU do
      for _, i in ipairs((train:row(u))) do counts[i] = counts[i] + 1 end
    end
    local order = {}
    for i = 1, NI do order[i] = i end
    table.sort(order, function(a, b)
      if counts[a] ~= counts[b] then return counts[a] > counts[b] end
      return a < b
    end)
    local items, scores = core.recommend(pop, { 1, NU }, NI,
                                         { include_seen = true })
    for _, row in ipairs(items) do assert.same(order, row) end
    for n, i in ipairs(order) do assert.equals(counts[i], scores[1][n]) end
    -- Seen items excluded: the most popular unseen ones, same order.
    local seen = {}
    for _, i in ipairs((train:row(2))) do seen[i] = true end
    local want = {}
    for _, i in ipairs(order) do
      if not seen[i] then want[#want + 1] = i end
    end
    assert.same({ want }, (core.recommend(pop, { 2 }, NI, { exclude = train })))
    pop:close()
  end)
end)
