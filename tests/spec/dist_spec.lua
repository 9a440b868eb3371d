-- The Lua side of multi-host jobs on one process: the id-map union and
-- interactions merge (ShardedByS3Key), and evaluation split over ranks,
-- with the ranks simulated as coroutines whose collectives meet in a
-- scheduler (which also checks that every rank makes the same collective
-- calls in the same order: an unmatched one would hang a real job).
local core = require "moonfm.core"
local dist = require "moonfm.dist"
local ev = require "moonfm.evaluate"

-- Runs fn(rank) for ranks 0..size-1 as coroutines.  core.dist_sum,
-- core.dist_reduce, core.dist_any and dist.allgather are replaced while it
-- runs; returns each rank's results (a list of packed returns).
local function simulate(size, fn)
  local saved = { sum = core.dist_sum, reduce = core.dist_reduce,
                  any = core.dist_any, allgather = dist.allgather }
  local current = 0
  core.dist_sum = function(t) return coroutine.yield { op = "sum", v = t } end
  core.dist_reduce = function(t, op)
    return coroutine.yield { op = "reduce " .. op, v = t }
  end
  core.dist_any = function(f) return coroutine.yield { op = "any", v = f } end
  dist.allgather = function(s)
    return coroutine.yield { op = "allgather", v = s }
  end
  local fake = { active = function() return true end,
                 in_sync = function() return true end,
                 rank = function() return current end,
                 size = function() return size end,
                 allgather = function(s) return dist.allgather(s) end }
  local real = package.loaded["moonfm.dist"]
  package.loaded["moonfm.dist"] = fake
  local cos, reqs, out = {}, {}, {}
  local ok, err = pcall(function()
    local function step(r, ...)
      current = r
      local res = table.pack(coroutine.resume(cos[r], ...))
      assert(res[1], res[2])
      if coroutine.status(cos[r]) == "dead" then
        out[r + 1] = table.pack(table.unpack(res, 2, res.n))
        return nil
      end
      return res[2]
    end
    for r = 0, size - 1 do
      cos[r] = coroutine.create(fn)
      reqs[r] = step(r, r)
    end
    while reqs[0] do
      local op = reqs[0].op
      for r = 1, size - 1 do
        assert(reqs[r] and reqs[r].op == op, "unmatched collective: rank 0 "
          .. op .. ", rank " .. r .. " " .. (reqs[r] and reqs[r].op or "left"))
      end
      local answer
      if op == "any" then
        answer = false
        for r = 0, size - 1 do answer = answer or reqs[r].v end
      elseif op == "allgather" then
        answer = {}
        for r = 0, size - 1 do answer[r + 1] = reqs[r].v end
      else
        answer = {}
        for i = 1, #reqs[0].v do
          local a = reqs[0].v[i]
          for r = 1, size - 1 do
            local b = reqs[r].v[i]
            if op == "reduce min" then a = math.min(a, b)
            elseif op == "reduce max" then a = math.max(a, b)
            else a = a + b end
          end
          answer[i] = a + 0.0
        end
      end
      -- Each rank its own copy of the answer, as over a network.
      for r = 0, size - 1 do
        local mine = answer
        if type(answer) == "table" then mine = table.move(answer, 1, #answer, 1, {}) end
        reqs[r] = step(r, mine)
      end
    end
    for r = 1, size - 1 do assert(not reqs[r], "rank " .. r .. " waits alone") end
  end)
  core.dist_sum, core.dist_reduce, core.dist_any = saved.sum, saved.reduce,
    saved.any
  dist.allgather = saved.allgather
  package.loaded["moonfm.dist"] = real
  assert(ok, err)
  return out
end

local function ids(prefix, n)
  local t = {}
  for k = 1, n do t[k] = prefix .. k end
  return t
end

describe("moonfm.dist (ranks simulated in one process)", function()
  it("IdMap:view and :merge number the ids of every shard alike", function()
    local a = core.idmap { "x", "y", "z" }
    local bytes, offs = a:view()
    assert.equals("xyz", bytes)
    assert.equals(4 * 8, #offs)
    local g = core.idmap { "y", "w" }
    local idx = g:merge(bytes, offs)
    local i1, i2, i3 = string.unpack("<i4i4i4", idx)
    assert.same({ 2, 0, 3 }, { i1, i2, i3 })
    assert.same({ "y", "w", "x", "z" }, g:ids())
    local e = core.idmap()
    local eb, eo = e:view()
    assert.equals("", eb)
    assert.equals("", g:merge(eb, eo))
    assert.has_error(function() g:merge("ab", "123") end)
  end)

  it("merge_read gives every rank one numbering and every shard's rows",
     function()
    -- Two shards: different users, items seen in another order, one
    -- interaction on both (summed, as one host reading both files does).
    local shard = {
      { { "u1", "u2", "u2", "u3" }, { "i1", "i2", "i3", "i1" }, { 1, 2, 3, 4 } },
      { { "u4", "u3", "u5" }, { "i4", "i1", "i2" }, { 5, 6, 7 } },
    }
    local out = simulate(2, function(rank)
      local s = shard[rank + 1]
      local x = core.interactions_from_triplets(core.idmap(), core.idmap(),
                                                s[1], s[2], s[3])
      local g, rep = dist.merge_read(x, { rows = #s[1], files = 1 }, "train")
      return g, rep
    end)
    local one = core.interactions_from_triplets(core.idmap(), core.idmap(),
      { "u1", "u2", "u2", "u3", "u4", "u3", "u5" },
      { "i1", "i2", "i3", "i1", "i4", "i1", "i2" }, { 1, 2, 3, 4, 5, 6, 7 })
    for r = 1, 2 do
      local g, rep = out[r][1], out[r][2]
      assert.same(one:users():ids(), g:users():ids())
      assert.same(one:items():ids(), g:items():ids())
      assert.equals(one:nnz(), g:nnz())
      assert.equals(one:pack(), g:pack())
      assert.equals(7, rep.rows)
      assert.equals(2, rep.files)
    end
    local items, w = out[1][1]:row(3) -- u3: i1 from both shards
    assert.same({ 1 }, items)
    assert.same({ 10.0 }, w)
  end)

  it("merge_read keeps a map the caller fixed (a test set read with the "
     .. "training maps)", function()
    local users, items = core.idmap(ids("u", 4)), core.idmap(ids("i", 3))
    local out = simulate(2, function(rank)
      local x = core.interactions_from_triplets(users, items,
        { rank + 1, rank + 3 }, { 1, 3 })
      return dist.merge_read(x, {}, "test", true, true)
    end)
    assert.equals(users, out[1][1]:users())
    assert.equals(4, out[2][1]:nnz())
  end)

  it("merge_read: a rank that was stopped stops every rank", function()
    local out = simulate(2, function(rank)
      local x = rank == 0 and core.interactions_from_triplets(core.idmap(),
        core.idmap(), { "a" }, { "b" }) or nil
      return dist.merge_read(x, {}, "train")
    end)
    -- ... and raises the stop flag where it was not, so that every rank's
    -- recipe stops (and saves) alike.
    local flag = core.stop_requested()
    core.stop_reset()
    assert.same({ nil, "stopped", n = 2 }, out[1])
    assert.same({ nil, "stopped", n = 2 }, out[2])
    assert.is_true(flag)
  end)

  -- A model and a test set with unknown users and items, excluded items,
  -- ties, and users with no test item.
  local function case(seed)
    math.randomseed(seed)
    local nu, ni, k = 23, 17, 3
    local U, V, ib = {}, {}, {}
    for u = 1, nu do
      U[u] = {}
      for t = 1, k do U[u][t] = math.random(-4, 4) / 4 end
    end
    for i = 1, ni do
      V[i] = {}
      for t = 1, k do V[i][t] = math.random(-4, 4) / 4 end
      ib[i] = math.random(-2, 2) / 4
    end
    local users, items = core.idmap(ids("u", nu + 3)), core.idmap(ids("i", ni + 2))
    local tu, ti, xu, xi = {}, {}, {}, {}
    for u = 1, nu + 3 do
      for i = 1, ni + 2 do
        local x = math.random()
        if x < 0.2 and u % 5 ~= 0 then tu[#tu + 1], ti[#ti + 1] = u, i
        elseif x < 0.4 and u <= nu and i <= ni then
          xu[#xu + 1], xi[#xi + 1] = u, i
        end
      end
    end
    tu[#tu + 1], ti[#ti + 1] = xu[1], xi[1] -- a test item also in train
    local test = core.interactions_from_triplets(users, items, tu, ti)
    local train = core.interactions_from_triplets(core.idmap(ids("u", nu)),
      core.idmap(ids("i", ni)), xu, xi)
    return core.factors(U, V, nil, ib), test, train
  end

  local metrics = { "precision@3", "recall@5", "ndcg@3", "map@4",
                    "hit_rate@2", "coverage@1", "coverage@4", "mrr", "auc" }

  for _, size in ipairs { 2, 3, 5 } do
    it("evaluation split over " .. size .. " ranks equals one host's",
       function()
      local model, test, train = case(size)
      local opts = { metrics = metrics, exclude = train, per_user = true,
                     unknown = { users = 2, items = 1 } }
      local want = ev.evaluate(model, test, opts)
      assert.is_true(want.counts.unknown_users > 0 and
                     want.counts.unknown_items > 0 and
                     want.counts.excluded_test_items > 0 and
                     want.counts.skipped_users > 0)
      local out = simulate(size, function()
        return ev.evaluate(model, test, opts)
      end)
      for r = 1, size do
        local got = out[r][1]
        for _, m in ipairs(metrics) do
          assert.is_true(math.abs(got[m] - want[m]) <= 1e-12, string.format(
            "rank %d %s: %.17g vs %.17g", r - 1, m, got[m], want[m]))
        end
        for key, v in pairs(want.counts) do
          if key ~= "defined" then assert.equals(v, got.counts[key], key) end
        end
        assert.same(want.counts.defined, got.counts.defined)
        assert.same(want.per_user.user, got.per_user.user)
        for _, m in ipairs(metrics) do
          for i, v in ipairs(want.per_user[m]) do
            local g = got.per_user[m][i]
            assert.is_true(v == g or (v ~= v and g ~= g), m .. " user " .. i)
          end
        end
      end
    end)
  end

  it("distributed = false evaluates everything on this rank", function()
    local model, test, train = case(7)
    local want = ev.evaluate(model, test, { metrics = metrics, exclude = train })
    local out = simulate(2, function()
      return ev.evaluate(model, test, { metrics = metrics, exclude = train,
                                        distributed = false })
    end)
    assert.same(want, out[2][1])
    assert.has_error(function()
      ev.evaluate(model, test, { distributed = "yes" })
    end, "evaluate: option 'distributed' must be a boolean")
  end)
end)
