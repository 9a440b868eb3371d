-- moonfm.evaluate, core.evaluate/recommend/score and moonfm.Factors,
-- against a plain reference written here (full sorts, pair counting).
local core = require "moonfm.core"
local ev = require "moonfm.evaluate"

-- Scores are multiples of 1/4 with small k: exact in float, many ties.
local function random_case(seed)
  math.randomseed(seed)
  local nu, ni, k = math.random(1, 8), math.random(1, 12), math.random(1, 3)
  local U, V = {}, {}
  for u = 1, nu do
    U[u] = {}
    for t = 1, k do U[u][t] = math.random(-4, 4) / 4 end
  end
  for i = 1, ni do
    V[i] = {}
    for t = 1, k do V[i][t] = math.random(-4, 4) / 4 end
  end
  local ib = {}
  for i = 1, ni do ib[i] = math.random(-2, 2) / 4 end
  local test, train = { n_items = ni }, { n_items = ni }
  for u = 1, nu do
    test[u], train[u] = {}, {}
    for i = 1, ni do
      local x = math.random()
      if x < 0.25 then test[u][#test[u] + 1] = i
      elseif x < 0.45 then train[u][#train[u] + 1] = i end
    end
  end
  if nu >= 2 then test[2] = { math.random(1, ni) } end -- a one-item user
  return { nu = nu, ni = ni, U = U, V = V, ib = ib, test = test,
           train = train }
end

local function score(c, u, i)
  local s = 0
  for t = 1, #c.U[u] do s = s + c.U[u][t] * c.V[i][t] end
  return s + c.ib[i]
end

local function reference(c, metrics)
  local sums, cnts, covered, evaluated = {}, {}, {}, 0
  for u = 1, c.nu do
    local seen, pos, m = {}, {}, 0
    for _, i in ipairs(c.train[u]) do seen[i] = true end
    for _, i in ipairs(c.test[u]) do
      if not seen[i] then pos[i] = true; m = m + 1 end
    end
    if m > 0 then
      evaluated = evaluated + 1
      local cand = {}
      for i = 1, c.ni do if not seen[i] then cand[#cand + 1] = i end end
      table.sort(cand, function(a, b)
        local sa, sb = score(c, u, a), score(c, u, b)
        if sa ~= sb then return sa > sb end
        return a < b
      end)
      for _, name in ipairs(metrics) do
        local base, k = ev.parse(name)
        local v
        if base == "auc" then
          local pairs_, nneg = 0, #cand - m
          for _, a in ipairs(cand) do
            for _, b in ipairs(cand) do
              if pos[a] and not pos[b] then
                local sa, sb = score(c, u, a), score(c, u, b)
                pairs_ = pairs_ + (sa > sb and 1 or sa == sb and 0.5 or 0)
              end
            end
          end
          if nneg > 0 then v = pairs_ / (m * nneg) end
        elseif base == "mrr" then
          for r, i in ipairs(cand) do
            if pos[i] then v = 1 / r; break end
          end
        else
          local hits, dcg, idcg, ap = 0, 0, 0, 0
          for r = 1, math.min(k, #cand) do
            if pos[cand[r]] then
              hits = hits + 1
              dcg = dcg + 1 / (math.log(r + 1, 2))
              ap = ap + hits / r
            end
            covered[name] = covered[name] or {}
            covered[name][cand[r]] = true
          end
          for r = 1, math.min(k, m) do idcg = idcg + 1 / math.log(r + 1, 2) end
          v = ({ precision = hits / k, recall = hits / m,
                 hit_rate = hits > 0 and 1 or 0, ndcg = dcg / idcg,
                 map = ap / math.min(k, m) })[base]
        end
        if v then
          sums[name] = (sums[name] or 0) + v
          cnts[name] = (cnts[name] or 0) + 1
        end
      end
    end
  end
  local out = {}
  for _, name in ipairs(metrics) do
    if name:match("^coverage") and evaluated > 0 then
      local n = 0
      for _ in pairs(covered[name] or {}) do n = n + 1 end
      out[name] = n / c.ni
    elseif cnts[name] and not name:match("^coverage") then
      out[name] = sums[name] / cnts[name]
    end
  end
  return out
end

describe("moonfm.evaluate", function()
  it("runs under Lua 5.4", function() assert.equals("Lua 5.4", _VERSION) end)

  it("parses metric names", function()
    assert.same({ "ndcg", 10 }, { ev.parse("ndcg@10") })
    assert.equals("auc", (ev.parse("auc")))
    local ok, msg = ev.parse("auc@5")
    assert.is_nil(ok)
    assert.matches("takes no cut-off", msg, 1, true)
    assert.is_nil((ev.parse("bogus@3")))
    assert.is_true(ev.higher_is_better("hit_rate@5"))
    assert.is_true(ev.higher_is_better("mrr"))
  end)

  it("expands k lists and metric names into columns", function()
    assert.same({ "precision@5", "precision@10", "auc", "ndcg@3" },
      ev.columns { k = { 5, 10 }, metrics = { "precision", "auc", "ndcg@3" } })
  end)

  it("rejects bad options with clear errors", function()
    local m = core.factors({ { 1 } }, { { 1 } })
    local t = { { 1 }, n_items = 1 }
    assert.has_error(function() ev.evaluate(m, t, { bogus = 1 }) end,
      "evaluate: unknown option 'bogus'")
    assert.has_error(function() ev.evaluate(m, t, { k = { 0 } }) end)
    assert.has_error(function() ev.evaluate(m, t, { metrics = { "nope" } }) end)
    assert.has_error(function() ev.evaluate(m, t, { per_user = 1 }) end)
    local ok = pcall(core.evaluate, m, t, { metrics = { "ndcg" } })
    assert.is_false(ok)
  end)

  it("matches the reference on random cases with ties", function()
    local metrics = { "precision@1", "precision@3", "recall@2", "ndcg@3",
                      "ndcg@50", "map@4", "hit_rate@2", "mrr", "auc",
                      "coverage@2" }
    for seed = 1, 60 do
      local c = random_case(seed)
      local m = core.factors(c.U, c.V, nil, c.ib)
      local r = ev.evaluate(m, c.test, { metrics = metrics,
                                         exclude = c.train,
                                         threads = seed % 3 })
      local want = reference(c, metrics)
      for _, name in ipairs(metrics) do
        if want[name] == nil then
          assert.is_true(r[name] ~= r[name], name .. " should be NaN")
        else
          assert.is_true(math.abs(r[name] - want[name]) < 1e-9,
            string.format("seed %d %s: got %s want %s", seed, name,
                          r[name], want[name]))
        end
      end
    end
  end)

  it("counts skipped and unknown users and items", function()
    local m = core.factors({ { 1 }, { 1 } }, { { 1 }, { 2 } })
    local test = { { 1 }, {}, { 2 }, n_users = 3, n_items = 3 }
    test[1] = { 1, 3 } -- item 3 is past the model's 2 items
    local r = ev.evaluate(m, test, { metrics = { "auc" },
                                     unknown = { users = 4, items = 5 } })
    assert.equals(1, r.counts.users)
    assert.equals(1, r.counts.skipped_users)
    assert.equals(1, r.counts.unknown_users)
    assert.equals(1, r.counts.unknown_items)
    assert.equals(4, r.counts.unseen_users)
    assert.equals(0, r.auc) -- item 1 scores below item 2
  end)

  it("returns per-user arrays on request", function()
    local c = random_case(3)
    local m = core.factors(c.U, c.V, nil, c.ib)
    local r = m:evaluate(c.test, { metrics = { "ndcg@2" }, exclude = c.train,
                                   per_user = true })
    assert.equals(r.counts.users, #r.per_user.user)
    local s = 0
    for _, v in ipairs(r.per_user["ndcg@2"]) do s = s + v end
    assert.is_true(math.abs(s / #r.per_user.user - r["ndcg@2"]) < 1e-12)
  end)
end)

describe("core.recommend and core.score", function()
  it("returns the top k, seen items excluded, k past the catalogue", function()
    local m = core.factors({ { 1, 0 }, { 0, 1 } },
                           { { 1, 0 }, { 0, 1 }, { 1, 1 } }, { 10, 20 })
    local items, scores = m:recommend(nil, 5, { exclude = { { 1 }, n_items = 3 } })
    assert.same({ 3, 2 }, items[1])
    assert.same({ 11, 10 }, scores[1])
    assert.same({ 2, 3, 1 }, items[2]) -- tie 2 vs 3: lower index first
    items = core.recommend(m, { 1 }, 1, { include_seen = true })
    assert.same({ { 1 } }, items)
    assert.has_error(function() core.recommend(m, { 3 }, 1) end)
    assert.has_error(function() core.recommend(m, nil, 0) end)
  end)

  it("scores pairs with both biases", function()
    local m = core.factors({ { 1, 2 } }, { { 3, 4 } }, { 0.5 }, { 0.25 })
    assert.same({ 11.75 }, core.score(m, { 1 }, { 1 }))
    assert.has_error(function() core.score(m, { 1 }, { 2 }) end)
  end)

  it("builds factors from float32 strings", function()
    local U = string.pack("<ff", 1, 2)
    local V = string.pack("<ffff", 3, 4, 5, 6)
    local m <close> = core.factors(U, V, nil, nil, 2)
    assert.same({ 1, 2, 2 }, { m:dims() })
    assert.same({ 11, 17 }, core.score(m, { 1, 1 }, { 1, 2 }))
    assert.has_error(function() core.factors(U, V) end)
  end)
end)
